# Performance (lane "speed"): see docs/performance.md.
#   make bench        kernel REDIRECT vs nfq-redirectd side by side (root, about 7 min; not in CI)
#                     (new connections also with the daemon's getsockopt hook off: --no-getsockopt-hook)
#   make microbench   package-benchmark microbenchmarks of the datapath core; fails on any
#                     malloc in a per-packet or flow-table operation (Benchmarks/Thresholds)

BENCH_ARGS ?=
MICROBENCH_ARGS ?=
BENCH_DEPS := iperf3 wrk nginx-light

.PHONY: bench bench-deps microbench

bench-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make bench-deps: run as root (it installs Debian packages)"; exit 1; fi
	dpkg -s $(BENCH_DEPS) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEPS) >/dev/null; }

bench: bench-deps release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) bench/run.sh $(BENCH_ARGS)

microbench:
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark thresholds check --path Thresholds --no-progress $(MICROBENCH_ARGS)
