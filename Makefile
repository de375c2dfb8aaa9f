# nfq-redirect — the two commands of the contract are `make demo` and `make test`.
# Both run as root on a fresh Debian machine: they install what they need, build, and run.

SWIFT        ?= swift
PREFIX       ?= /usr/local
DESTDIR      ?=
RELEASE_DIR  := .build/release
DEBUG_DIR    := .build/debug
BUILD_DIR    := $(RELEASE_DIR)

# Debian packages: build dependencies, then what the tests and the demo run.
BUILD_DEPS   := pkg-config libnetfilter-queue-dev libnfnetlink-dev libmnl-dev libbpf-dev bpftool
RUN_DEPS     := iptables iproute2 kmod procps
TEST_DEPS    := python3 python3-scapy socat conntrack systemd man-db strace redsocks squid haproxy v2ray golang-go

.PHONY: all deps build release test unit-test preload-test netns-test proxies-test demo clean

all: release

# Test tools, too: nft flush ruleset (the firewall-flush service test); promtool (contrib/
# alert rules); lintian and dpkg-architecture (the Debian package).
TEST_DEPS    += nftables prometheus lintian dpkg-dev

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (it installs Debian packages)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BUILD_DEPS) $(RUN_DEPS) $(TEST_DEPS) >/dev/null

include Sources/CPreload/preload.mk
include mk/bpf.mk
include mk/robust.mk
include mk/lookup.mk
include mk/svc.mk
include mk/speed.mk

# `swift build -c release` builds the Swift programs; the preload library is plain C (no Swift
# runtime in the proxies it is loaded into), built by the C compiler into the same folder.
release: bpf
	$(SWIFT) build -c release
	$(MAKE) --no-print-directory preload BUILD_DIR=$(RELEASE_DIR)

build: release

unit-test: bpf
	NFQR_ROOT_TESTS=1 $(SWIFT) test --parallel

# The suite in daemon mode (twice: plain, and several queues with busy polling), then its
# related-traffic cases (ICMP errors) against the kernel's own REDIRECT, the baseline they copy.
netns-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) NFQR_DAEMON_ARGS="--queues 2 --busy-poll 200 --lookup-busy-poll 200" Tests/netns/run.sh --mode daemon
	Tests/netns/run.sh --mode kernel --only related
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/startup_errors.py

proxies-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/proxies/run.sh --mode daemon
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/proxies/run.sh --mode preload

test: deps release unit-test preload-test netns-test proxies-test lookup-test robust-test svc-test

demo: deps release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) scripts/demo.sh

clean:
	rm -rf .build
