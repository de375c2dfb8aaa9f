# The service: install/uninstall, man pages, and the service tests (docs/operations.md).
#
#   make install      binaries, systemd unit, config (an existing one is kept), preload and C
#                     client libraries with their header, man pages, docs; PREFIX and DESTDIR aware
#   make uninstall    removes what `make install` put there (a config you changed is kept)
#   make man          man pages from the command-line definitions (argument-parser's generate-manual)
#   make deb          a Debian binary package (a second, static-stdlib build in .build-static)
#   make deb-test     builds it and checks it without installing it (not in make test)
#   make svc-test     unit verify + install/uninstall check, the netns service suite, the demo,
#                     the contrib/ alert rules (promtool) and dashboard
#
# Settable: PREFIX (/usr/local), DESTDIR, SYSCONFDIR (/etc), SYSTEMD_UNIT_DIR
# ($(PREFIX)/lib/systemd/system, which systemd searches for /usr and /usr/local alike).

BINDIR           ?= $(PREFIX)/bin
SBINDIR          ?= $(PREFIX)/sbin
SYSCONFDIR       ?= /etc
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
MANDIR           ?= $(PREFIX)/share/man
DOCDIR           ?= $(PREFIX)/share/doc/nfq-redirect

MAN_OUTPUT := .build/plugins/GenerateManual/outputs
MAN_PAGES  := $(MAN_OUTPUT)/nfq-redirectd/nfq-redirectd.8 $(MAN_OUTPUT)/nfq-redirect/nfq-redirect.8
CONFIG     := $(DESTDIR)$(SYSCONFDIR)/nfq-redirect/nfq-redirect.toml

# Everything `make install` writes, but the config (kept when changed): what uninstall removes.
INSTALLED := $(BINDIR)/nfq-redirect $(SBINDIR)/nfq-redirectd \
             $(SYSTEMD_UNIT_DIR)/nfq-redirect.service $(SYSTEMD_UNIT_DIR)/nfq-redirect-gave-up.service \
             $(PREFIX)/lib/libnfq-redirect-preload.so $(PREFIX)/lib/libnfq-redirect-client.a \
             $(PREFIX)/include/nfq_redirect.h \
             $(MANDIR)/man8/nfq-redirectd.8 $(MANDIR)/man8/nfq-redirect.8 \
             $(DOCDIR)/operations.md $(DOCDIR)/lookup-protocol.md $(DOCDIR)/nfq-redirect.toml \
             $(DOCDIR)/LICENSE $(DOCDIR)/CHANGELOG.md

.PHONY: install uninstall man svc-test svc-install-test svc-netns-test svc-demo-test svc-contrib-test deb deb-test

# argument-parser's plugin builds the package (release) and writes one page per command.
man: release
	$(SWIFT) package generate-manual --configuration release --section 8 >/dev/null
	@for page in $(MAN_PAGES); do [ -s "$$page" ] || { echo "man: $$page was not generated"; exit 1; }; done

install: release man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR) \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/nfq-redirect
	install -m 0755 $(RELEASE_DIR)/nfq-redirect $(DESTDIR)$(BINDIR)/
	install -m 0755 $(RELEASE_DIR)/nfq-redirectd $(DESTDIR)$(SBINDIR)/
	for unit in nfq-redirect.service nfq-redirect-gave-up.service; do \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	        systemd/$$unit.in >$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit && chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit || exit 1; \
	done
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 docs/operations.md docs/lookup-protocol.md config/nfq-redirect.toml LICENSE CHANGELOG.md $(DESTDIR)$(DOCDIR)/
	@if [ -e $(CONFIG) ]; then \
	    echo "kept $(CONFIG); the shipped one is $(DESTDIR)$(DOCDIR)/nfq-redirect.toml"; \
	else \
	    install -m 0640 config/nfq-redirect.toml $(CONFIG); \
	fi
	$(MAKE) --no-print-directory preload-install BUILD_DIR=$(RELEASE_DIR) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -e $(CONFIG) ] && cmp -s $(CONFIG) config/nfq-redirect.toml; then rm -f $(CONFIG); \
	elif [ -e $(CONFIG) ]; then echo "kept $(CONFIG): it differs from the shipped one"; fi
	-rmdir $(DESTDIR)$(SYSCONFDIR)/nfq-redirect $(DESTDIR)$(DOCDIR) 2>/dev/null

svc-install-test: release
	$(REPORT) install -- Tests/service/install_test.sh

svc-netns-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --suite service

svc-demo-test: release
	$(REPORT) demo -- Tests/service/demo_test.sh

# contrib/: promtool checks and unit-tests the alert rules; the dashboard's JSON and the names
# both use are checked against the metrics the daemon exports (no build needed).
svc-contrib-test:
	$(REPORT) contrib -- Tests/service/contrib_test.py

svc-test: svc-install-test svc-netns-test svc-demo-test svc-contrib-test

deb:
	scripts/build-deb.sh

deb-test:
	$(REPORT) deb -- Tests/service/deb_test.sh
