# The lookup suite: hostile clients against the real daemon (CLI, example proxy). Included by
# the top Makefile. The lookup benchmarks are in mk/bench.mk.
#
#   lookup-test    hostile lookup clients against the real daemon, the example proxy, in both
#                  datapath modes (root; in CI)

.PHONY: lookup-test

lookup-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/lookup/run.sh
	NFQR_DATAPATH=kernel-nat NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/lookup/run.sh
