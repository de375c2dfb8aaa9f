# The lookup lane: the lookup service against the real daemon (hostile clients, CLI, example
# proxy) and the lookup benchmark. Included by the top Makefile.
#
#   lookup-test    hostile lookup clients against the real daemon, the example proxy (root; in CI)
#   lookup-bench   lookups/s and p50/p99 of the daemon next to the kernel's SO_ORIGINAL_DST (root)

LOOKUP_TESTS   := Tests/lookup
LOOKUP_BENCH   := $(BUILD_DIR)/nfqr-lookup/lookup_bench

.PHONY: lookup-test lookup-bench

$(LOOKUP_BENCH): $(LOOKUP_TESTS)/lookup_bench.c $(CLIENT_LIB) Sources/CPreload/include/nfq_redirect.h
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -std=gnu11 -ISources/CPreload/include -o $@ $< $(CLIENT_LIB) -pthread

lookup-bench: release $(LOOKUP_BENCH)
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) NFQR_BENCH_BIN=$(CURDIR)/$(dir $(LOOKUP_BENCH)) $(LOOKUP_TESTS)/bench.sh

lookup-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) $(LOOKUP_TESTS)/run.sh
