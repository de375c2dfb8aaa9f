# nfq-redirect — the two commands of the contract are `make demo` and `make test`.
# Both run as root on a fresh Debian machine: they install what they need, build, and run.

SWIFT        ?= swift
PREFIX       ?= /usr/local
DESTDIR      ?=
RELEASE_DIR  := .build/release

# The test harness (Tests/harness/) is a Python package: every suite, bench and the demo import
# it as `harness.<module>`, found through this one search path (no sys.path edits).
export PYTHONPATH := $(CURDIR)/Tests
# Runs a suite that prints PASS/FAIL/SKIP lines and ends it with the one summary line.
REPORT := /usr/bin/python3 -m harness.report
DEBUG_DIR    := .build/debug
BUILD_DIR    := $(RELEASE_DIR)

# Debian packages: build dependencies, then what the tests and the demo run.
BUILD_DEPS   := pkg-config libnetfilter-queue-dev libnetfilter-conntrack-dev libnfnetlink-dev libmnl-dev libbpf-dev bpftool
RUN_DEPS     := iptables iproute2 kmod procps
TEST_DEPS    := python3 python3-scapy socat conntrack systemd man-db strace redsocks squid haproxy v2ray golang-go mitmproxy

.PHONY: all deps build release test unit-test unit-test-nonroot preload-test netns-test proxies-test demo clean

all: release

# Test tools, too: nft flush ruleset (the firewall-flush service test); promtool (contrib/
# alert rules); lintian and dpkg-architecture (the Debian package).
TEST_DEPS    += nftables prometheus lintian dpkg-dev
# The C formatter `make lint` runs (mk/lint.mk; swift-format ships with the toolchain).
TEST_DEPS    += clang-format

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (it installs Debian packages)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BUILD_DEPS) $(RUN_DEPS) $(TEST_DEPS) >/dev/null

include Sources/CPreload/preload.mk
include mk/bpf.mk
include mk/reliability.mk
include mk/lookup.mk
include mk/service.mk
include mk/bench.mk
include mk/lint.mk

# `swift build -c release` builds the Swift programs; the preload library is plain C (no Swift
# runtime in the proxies it is loaded into), built by the C compiler into the same folder.
release: bpf
	$(SWIFT) build -c release
	$(MAKE) --no-print-directory preload BUILD_DIR=$(RELEASE_DIR)

build: release

unit-test: bpf
	NFQR_ROOT_TESTS=1 $(SWIFT) test --parallel

# `swift test` as a user without privileges, as on a laptop: the root-only tests skip, the
# rest must pass. Its own scratch folder owned by that user (the dependencies copied from
# root's, so nothing is fetched); from a copy of the checkout (build folders left out) when
# it lies where that user cannot read it, such as a 0700 directory.
NONROOT_USER    ?= nobody
NONROOT_DIR     ?= /var/tmp/nfq-redirect-unit-test-$(NONROOT_USER)
unit-test-nonroot: bpf
	@if [ "$$(id -u)" != 0 ]; then exec $(SWIFT) test --parallel; fi; \
	set -e; [ -d .build/checkouts ] || $(SWIFT) package resolve; \
	if runuser -u $(NONROOT_USER) -- test -r $(CURDIR)/Package.swift; then package=$(CURDIR); else \
	    package=$(NONROOT_DIR)/package; rm -rf $$package; mkdir -p $$package; \
	    tar -c --exclude='./.build*' --exclude=./.git . | tar -x -C $$package; chmod -R a+rX $$package; fi; \
	scratch=$$package/.build-nonroot; [ $$package = $(CURDIR) ] || scratch=$(NONROOT_DIR)/build; \
	mkdir -p $$scratch $(NONROOT_DIR)/home; \
	[ -e $$scratch/workspace-state.json ] || cp -a .build/checkouts .build/repositories .build/workspace-state.json $$scratch/; \
	chown -R $(NONROOT_USER) $$scratch $(NONROOT_DIR)/home; \
	cd $$package && runuser -u $(NONROOT_USER) -- env -u NFQR_ROOT_TESTS HOME=$(NONROOT_DIR)/home \
	    $(SWIFT) test --parallel --scratch-path $$scratch

# The suite in daemon mode (plain; several queues with busy polling; the kernel-nat datapath),
# then its related-traffic cases (ICMP errors) against the kernel's own REDIRECT, the baseline
# they copy.
netns-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --datapath kernel-nat
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) NFQR_DAEMON_ARGS="--queues 2 --busy-poll 200 --lookup-busy-poll 200" Tests/netns/run.sh --mode daemon
	Tests/netns/run.sh --mode kernel --only related
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) $(REPORT) startup-errors -- Tests/netns/startup_errors.py

proxies-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/proxies/run.sh --mode daemon
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/proxies/run.sh --mode daemon --datapath kernel-nat
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/proxies/run.sh --mode preload
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/proxies/run.sh --mode recipes

test: deps lint release unit-test unit-test-nonroot preload-test netns-test proxies-test lookup-test robust-test svc-test

demo: deps release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) scripts/demo.sh

clean:
	rm -rf .build
