# Performance (lane "speed"): see docs/performance.md.
#   make bench        kernel REDIRECT vs nfq-redirectd side by side (root, about 7 min; not in CI)
#   make microbench   package-benchmark microbenchmarks of the datapath core; fails on any
#                     malloc in a per-packet or flow-table operation (Benchmarks/Thresholds)

BENCH_ARGS ?=
MICROBENCH_ARGS ?=

.PHONY: bench microbench

bench: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) bench/run.sh $(BENCH_ARGS)

microbench:
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark thresholds check --path Thresholds --no-progress $(MICROBENCH_ARGS)
