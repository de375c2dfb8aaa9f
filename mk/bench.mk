# Benchmarks: see docs/performance.md. SwiftPM microbenchmarks live in Benchmarks/, runs on the
# real kernel (side by side with the kernel's own REDIRECT / SO_ORIGINAL_DST) in bench/.
#   make bench        kernel REDIRECT vs nfq-redirectd, userspace and kernel-nat datapaths, side by
#                     side (root, about 10 min; not in CI) (new connections also with the daemon's
#                     getsockopt hook off: --no-getsockopt-hook)
#   make microbench   package-benchmark microbenchmarks of the datapath core; fails on any
#                     malloc in a per-packet or flow-table operation (Benchmarks/Thresholds)
#   make lookup-bench lookups/s and p50/p99 of the daemon next to the kernel's SO_ORIGINAL_DST
#                     (root; bench/lookup/daemon.sh)
#   make preload-bench lookup latency through the preload library against the kernel's (root;
#                     bench/lookup/preload.sh)

BENCH_ARGS ?=
MICROBENCH_ARGS ?=
BENCH_DEPS := iperf3 wrk nginx-light

.PHONY: bench bench-deps microbench lookup-bench preload-bench

bench-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make bench-deps: run as root (it installs Debian packages)"; exit 1; fi
	dpkg -s $(BENCH_DEPS) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEPS) >/dev/null; }

bench: bench-deps release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) bench/run.sh $(BENCH_ARGS)

microbench:
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark thresholds check --path Thresholds --no-progress $(MICROBENCH_ARGS)

LOOKUP_BENCH_DIR := $(BUILD_DIR)/nfqr-lookup-bench

$(LOOKUP_BENCH_DIR)/daemon_lookup: bench/lookup/daemon_lookup.c $(CLIENT_LIB) Sources/CPreload/include/nfq_redirect.h
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -std=gnu11 -ISources/CPreload/include -o $@ $< $(CLIENT_LIB) -pthread

$(LOOKUP_BENCH_DIR)/preload_lookup: bench/lookup/preload_lookup.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -std=gnu11 -o $@ $< -pthread

lookup-bench: release $(LOOKUP_BENCH_DIR)/daemon_lookup
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) NFQR_BENCH_BIN=$(CURDIR)/$(LOOKUP_BENCH_DIR) bench/lookup/daemon.sh $(LOOKUP_BENCH_ARGS)

preload-bench: $(PRELOAD_LIB) $(LOOKUP_BENCH_DIR)/preload_lookup
	NFQR_PRELOAD_LIB=$(abspath $(PRELOAD_LIB)) NFQR_BENCH_BIN=$(abspath $(LOOKUP_BENCH_DIR)) \
	    NFQR_FAKE_DAEMON=$(CURDIR)/Tests/preload/fake_daemon.py bench/lookup/preload.sh $(LOOKUP_BENCH_ARGS)
