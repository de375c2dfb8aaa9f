# Reliability: fuzzing, sanitizers, hostile packets, flood, queue overflow, soak.
# docs/reliability.md has the commands, what each shows, and the last results.

ROBUST_DEPS     := python3-scapy
FUZZ_TARGETS    ?= FuzzPacketParse FuzzPacketRewrite FuzzLookupCodec FuzzQueueMessages FuzzConfiguration
FUZZ_SECONDS    ?= 3600
FUZZ_LIMIT      ?= -max_total_time=$(FUZZ_SECONDS)
# CI fuzzes a fixed number of inputs from a fixed seed: the same inputs on every machine, so a
# red CI run is reproducible with the same command and a green one does not depend on luck.
FUZZ_CI_LIMIT   ?= -runs=1000000 -seed=20261125
# CI leaves out FuzzConfiguration: instrumenting the daemon's dependencies costs minutes of a
# 2-core machine; `make fuzz` and `make fuzz-ci FUZZ_CI_TARGETS="$(FUZZ_TARGETS)"` include it.
FUZZ_CI_TARGETS ?= FuzzPacketParse FuzzPacketRewrite FuzzLookupCodec FuzzQueueMessages
FUZZ_WORK       := fuzz-artifacts
FUZZ_BIN        := Fuzz/.build/debug
# -enable-testing: the queue-message fuzzer reaches the Kernel module's internal parser.
# The C shim and toml++ are instrumented too (-Xcc), so their bugs are found as well.
FUZZ_FLAGS      := -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
                   -Xswiftc -enable-testing -Xcc -fsanitize=fuzzer-no-link,address
SOAK_SECONDS    ?= 1800
# Leaks outside this project (TOMLKit's C++ bridge, XCTest): Tests/sanitizers/lsan.supp says which.
LSAN_ENV        := LSAN_OPTIONS="suppressions=$(CURDIR)/Tests/sanitizers/lsan.supp print_suppressions=0"

.PHONY: robust-deps fuzz-build fuzz fuzz-ci sanitize sanitize-address sanitize-thread sanitize-thread-ci \
        robust-netns-test soak robust-test

robust-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make robust-deps: run as root (it installs Debian packages)"; exit 1; fi
	dpkg -s $(ROBUST_DEPS) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(ROBUST_DEPS) >/dev/null; }

# Only the products asked for, so a run without FuzzConfiguration does not build the daemon's
# dependencies (NIO, Prometheus, TOMLKit) with instrumentation.
fuzz-build:
	@set -e; for target in $(FUZZ_TARGETS); do $(SWIFT) build --package-path Fuzz --product $$target $(FUZZ_FLAGS); done

# Each target for FUZZ_SECONDS (default an hour; e.g. `make fuzz FUZZ_SECONDS=28800` for 8 h
# each), one after the other, growing fuzz-artifacts/corpus/<target> from the committed seeds.
# A crash stops the run with the reproducer in fuzz-artifacts/<target>/.
fuzz: fuzz-build
	@set -e; for target in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_WORK)/corpus/$$target $(FUZZ_WORK)/$$target; \
	    echo "fuzz: $$target: $(FUZZ_LIMIT)"; \
	    if SWIFT_BACKTRACE=enable=no $(LSAN_ENV) $(FUZZ_BIN)/$$target $(FUZZ_LIMIT) -timeout=10 \
	        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_WORK)/$$target/ \
	        $(FUZZ_WORK)/corpus/$$target Fuzz/Corpus/$$target >$(FUZZ_WORK)/$$target/log 2>&1; then \
	        grep -E '^(#[0-9]+.*DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb)' $(FUZZ_WORK)/$$target/log; \
	    else \
	        tail -n 40 $(FUZZ_WORK)/$$target/log; \
	        echo "fuzz: $$target FAILED, reproducer in $(FUZZ_WORK)/$$target/"; exit 1; \
	    fi; \
	done

# The CI run: every target briefly, from the seeds only.
fuzz-ci:
	$(MAKE) --no-print-directory fuzz FUZZ_TARGETS="$(FUZZ_CI_TARGETS)" FUZZ_LIMIT="$(FUZZ_CI_LIMIT)" FUZZ_WORK=$(FUZZ_WORK)/ci

# Unit suites under AddressSanitizer and ThreadSanitizer, each in its own build folder.
sanitize: sanitize-address sanitize-thread

sanitize-address:
	SWIFT_BACKTRACE=enable=no $(LSAN_ENV) $(SWIFT) test --sanitize=address --scratch-path .build-asan

TSAN_ENV := SWIFT_BACKTRACE=enable=no TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/Tests/sanitizers/tsan.supp"
# Single-threaded property and table-sweep suites: under TSan they take ~160 of 180 s and share
# nothing between threads; CI leaves them to `make sanitize` (and to AddressSanitizer).
TSAN_CI_SKIP := FlowTableMemoryTests|FlowTablePropertyTests|HostilePacketTests|InternetChecksumTests|PacketRewriterTests|FlowSnapshotTests|ICMPErrorTranslationTests

sanitize-thread:
	$(TSAN_ENV) $(SWIFT) test --sanitize=thread --scratch-path .build-tsan

sanitize-thread-ci:
	$(TSAN_ENV) $(SWIFT) test --sanitize=thread --scratch-path .build-tsan --skip '$(TSAN_CI_SKIP)'

# Hostile packets, SYN flood and queue overflow through the real queued path (root).
robust-netns-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --suite robust
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --suite robust --datapath kernel-nat

# Traffic and churn for SOAK_SECONDS (default 30 min), sampling the daemon's RSS (root).
soak: release
	NFQR_SOAK_SECONDS=$(SOAK_SECONDS) NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --suite soak

robust-test: robust-deps fuzz-ci sanitize-thread-ci robust-netns-test
