# The service: install/uninstall, man pages, the Debian package, and the service tests
# (docs/operations.md).
#
#   make install      binaries, systemd units, config (an existing one is kept), preload and C
#                     client libraries with their header, man pages, shell completions, docs;
#                     creates the system group nfq-redirect (lookup clients) when installing
#                     into / as root; PREFIX and DESTDIR aware
#   make uninstall    removes what `make install` put there (a config you changed, and the
#                     group, are kept)
#   make man          the hand-written pages of man/ with the version filled in, checked with
#                     groff -ww and man --warnings (.build/man/)
#   make deb          a Debian binary package (a second, static-stdlib build in .build-static)
#   make deb-test     builds it, runs lintian, installs it with dpkg, checks and purges it
#   make svc-test     unit verify + install/uninstall check, the man pages, the netns service
#                     suite, the demo, the Debian package, the contrib/ alert rules and dashboard
#
# Settable: PREFIX (/usr/local), DESTDIR, SYSCONFDIR (/etc), SYSTEMD_UNIT_DIR
# ($(PREFIX)/lib/systemd/system, which systemd searches for /usr and /usr/local alike), LIBDIR
# ($(PREFIX)/lib; the package uses the multiarch /usr/lib/<triplet>), NFQR_GROUP.

BINDIR           ?= $(PREFIX)/bin
SBINDIR          ?= $(PREFIX)/sbin
LIBDIR           ?= $(PREFIX)/lib
INCLUDEDIR       ?= $(PREFIX)/include
SYSCONFDIR       ?= /etc
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
MANDIR           ?= $(PREFIX)/share/man
DOCDIR           ?= $(PREFIX)/share/doc/nfq-redirect
# Shell completions where each shell looks: zsh's vendor directory for a distribution's /usr,
# its site directory for /usr/local.
BASH_COMPLETION_DIR ?= $(PREFIX)/share/bash-completion/completions
ZSH_COMPLETION_DIR  ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/share/zsh/vendor-completions,$(PREFIX)/share/zsh/site-functions)
FISH_COMPLETION_DIR ?= $(PREFIX)/share/fish/vendor_completions.d
# The system group of lookup clients: the shipped config gives it the socket (0660).
NFQR_GROUP       ?= nfq-redirect

NFQR_VERSION := $(shell sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Daemon/Support/DaemonVersion.swift)
MAN_SOURCES  := man/nfq-redirectd.8 man/nfq-redirect.8 man/nfq-redirect.toml.5 man/libnfq-redirect.3
MAN_OUTPUT   := .build/man
MAN_PAGES    := $(MAN_SOURCES:man/%=$(MAN_OUTPUT)/%)
PROGRAMS     := nfq-redirect nfq-redirectd
CONFIG       := $(DESTDIR)$(SYSCONFDIR)/nfq-redirect/nfq-redirect.toml

# Everything `make install` writes, but the config (kept when changed): what uninstall removes.
INSTALLED := $(BINDIR)/nfq-redirect $(SBINDIR)/nfq-redirectd \
             $(SYSTEMD_UNIT_DIR)/nfq-redirect.service $(SYSTEMD_UNIT_DIR)/nfq-redirect-gave-up.service \
             $(LIBDIR)/libnfq-redirect-preload.so $(LIBDIR)/libnfq-redirect-client.a \
             $(INCLUDEDIR)/nfq_redirect.h \
             $(MANDIR)/man8/nfq-redirectd.8 $(MANDIR)/man8/nfq-redirect.8 \
             $(MANDIR)/man5/nfq-redirect.toml.5 $(MANDIR)/man3/libnfq-redirect.3 \
             $(addprefix $(BASH_COMPLETION_DIR)/,$(PROGRAMS)) \
             $(addprefix $(ZSH_COMPLETION_DIR)/_,$(PROGRAMS)) \
             $(addprefix $(FISH_COMPLETION_DIR)/,$(addsuffix .fish,$(PROGRAMS))) \
             $(DOCDIR)/operations.md $(DOCDIR)/lookup-protocol.md $(DOCDIR)/nfq-redirect.toml \
             $(DOCDIR)/LICENSE $(DOCDIR)/CHANGELOG.md

.PHONY: install uninstall man svc-test svc-install-test svc-man-test svc-netns-test svc-demo-test svc-contrib-test deb deb-test

# Hand-written pages (man/); the version comes from the source, as --version's does.
$(MAN_OUTPUT)/%: man/% Sources/Daemon/Support/DaemonVersion.swift
	@mkdir -p $(@D)
	sed 's/@VERSION@/$(NFQR_VERSION)/g' $< >$@

man: $(MAN_PAGES)
	@command -v groff >/dev/null && command -v man >/dev/null || { echo "man: no groff or man-db here: pages not checked"; exit 0; }; \
	for page in $(MAN_PAGES); do \
	    out="$$(LC_ALL=C.UTF-8 groff -ww -man -z "$$page" 2>&1; LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$$page" 2>&1 >/dev/null)"; \
	    [ -z "$$out" ] || { echo "man: $$page:"; echo "$$out"; exit 1; }; \
	done

install: release man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR) \
	    $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(DOCDIR) \
	    $(DESTDIR)$(BASH_COMPLETION_DIR) $(DESTDIR)$(ZSH_COMPLETION_DIR) $(DESTDIR)$(FISH_COMPLETION_DIR) \
	    $(DESTDIR)$(SYSCONFDIR)/nfq-redirect
	install -m 0755 $(RELEASE_DIR)/nfq-redirect $(DESTDIR)$(BINDIR)/
	install -m 0755 $(RELEASE_DIR)/nfq-redirectd $(DESTDIR)$(SBINDIR)/
	for unit in nfq-redirect.service nfq-redirect-gave-up.service; do \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	        systemd/$$unit.in >$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit && chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit || exit 1; \
	done
	install -m 0644 $(filter %.8,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(filter %.5,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(filter %.3,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man3/
	@# argument-parser writes the completion scripts from the command-line definitions (bash
	@# sources its file: no #! line).
	for program in $(PROGRAMS); do \
	    $(RELEASE_DIR)/$$program --generate-completion-script bash | sed '1{/^#!/d}' >$(DESTDIR)$(BASH_COMPLETION_DIR)/$$program && \
	    $(RELEASE_DIR)/$$program --generate-completion-script zsh >$(DESTDIR)$(ZSH_COMPLETION_DIR)/_$$program && \
	    $(RELEASE_DIR)/$$program --generate-completion-script fish >$(DESTDIR)$(FISH_COMPLETION_DIR)/$$program.fish && \
	    chmod 0644 $(DESTDIR)$(BASH_COMPLETION_DIR)/$$program $(DESTDIR)$(ZSH_COMPLETION_DIR)/_$$program \
	        $(DESTDIR)$(FISH_COMPLETION_DIR)/$$program.fish || exit 1; \
	done
	install -m 0644 docs/operations.md docs/lookup-protocol.md config/nfq-redirect.toml LICENSE CHANGELOG.md $(DESTDIR)$(DOCDIR)/
	@if [ -e $(CONFIG) ]; then \
	    echo "kept $(CONFIG); the shipped one is $(DESTDIR)$(DOCDIR)/nfq-redirect.toml"; \
	else \
	    install -m 0644 config/nfq-redirect.toml $(CONFIG); \
	fi
	$(MAKE) --no-print-directory preload BUILD_DIR=$(RELEASE_DIR)
	install -m 0644 $(RELEASE_DIR)/libnfq-redirect-preload.so $(RELEASE_DIR)/libnfq-redirect-client.a $(DESTDIR)$(LIBDIR)/
	install -m 0644 Sources/CPreload/include/nfq_redirect.h $(DESTDIR)$(INCLUDEDIR)/
	@# The lookup clients' group, which the shipped config gives the socket: created on the host
	@# itself only (a DESTDIR is a staging tree; the Debian package's postinst creates it).
	@if [ -n "$(DESTDIR)" ]; then :; \
	elif getent group $(NFQR_GROUP) >/dev/null; then echo "group $(NFQR_GROUP) exists"; \
	elif [ "$$(id -u)" = 0 ]; then groupadd --system $(NFQR_GROUP) && echo "created system group $(NFQR_GROUP): add a proxy's user to it (docs/operations.md)"; \
	else echo "create the lookup clients' group as root: groupadd --system $(NFQR_GROUP)"; fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -e $(CONFIG) ] && cmp -s $(CONFIG) config/nfq-redirect.toml; then rm -f $(CONFIG); \
	elif [ -e $(CONFIG) ]; then echo "kept $(CONFIG): it differs from the shipped one"; fi
	-rmdir $(DESTDIR)$(SYSCONFDIR)/nfq-redirect $(DESTDIR)$(DOCDIR) 2>/dev/null
	@[ -n "$(DESTDIR)" ] || ! getent group $(NFQR_GROUP) >/dev/null || \
	    echo "kept group $(NFQR_GROUP) (its members would lose it; groupdel $(NFQR_GROUP) removes it)"

svc-install-test: release
	$(REPORT) install -- Tests/service/install_test.sh

svc-netns-test: release
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --suite service
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) Tests/netns/run.sh --mode daemon --suite service --datapath kernel-nat

svc-demo-test: release
	$(REPORT) demo -- Tests/service/demo_test.sh

# contrib/: promtool checks and unit-tests the alert rules; the dashboard's JSON and the names
# both use are checked against the metrics the daemon exports (no build needed).
svc-contrib-test:
	$(REPORT) contrib -- Tests/service/contrib_test.py

# The man pages against the programs' --help, the config reader's keys and the C header.
svc-man-test: release man
	NFQR_BIN_DIR=$(CURDIR)/$(RELEASE_DIR) $(REPORT) man -- Tests/service/man_test.sh

svc-test: svc-install-test svc-man-test svc-netns-test svc-demo-test deb-test svc-contrib-test

deb: release
	scripts/build-deb.sh

# Root: installs the package on this machine with dpkg and purges it again.
deb-test: release
	$(REPORT) deb -- Tests/service/deb_test.sh
