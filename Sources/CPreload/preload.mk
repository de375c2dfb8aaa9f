# The LD_PRELOAD library and the C client library, built by the C compiler so that no Swift
# runtime is loaded into the proxies they serve.
#
# Included by the top Makefile (`include Sources/CPreload/preload.mk`) or run on its own from
# the repository root (`make -f Sources/CPreload/preload.mk preload-test`).
#
#   preload              $(BUILD_DIR)/libnfq-redirect-preload.so and libnfq-redirect-client.a
#   preload-test         unit, LD_PRELOAD and (as root) network-namespace tests; last line the
#                        harness's summary "preload: N passed, M failed, K skipped (T s)"
#   preload-netns-test   the root-only network-namespace tests alone
#   preload-install      the libraries and nfq_redirect.h under $(DESTDIR)$(PREFIX)
#   preload-clean
#
# Settable: CC, BUILD_DIR (default .build/release), PRELOAD_EXTRA_CFLAGS, PREFIX, DESTDIR.

CC                   ?= cc
BUILD_DIR            ?= .build/release
PREFIX               ?= /usr/local
DESTDIR              ?=
PRELOAD_EXTRA_CFLAGS ?=

NFQR_PRELOAD_DIR  := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
NFQR_PRELOAD_ROOT := $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(NFQR_PRELOAD_DIR)))))
NFQR_PRELOAD_TESTS := $(NFQR_PRELOAD_ROOT)/Tests/preload
# The test harness package (Tests/harness), as the top Makefile sets it: for a run on its own.
export PYTHONPATH := $(abspath $(NFQR_PRELOAD_ROOT)/Tests)

PRELOAD_LIB    := $(BUILD_DIR)/libnfq-redirect-preload.so
CLIENT_LIB     := $(BUILD_DIR)/libnfq-redirect-client.a
PRELOAD_OBJDIR := $(BUILD_DIR)/nfqr-preload-obj
PRELOAD_TESTDIR := $(BUILD_DIR)/nfqr-preload-tests

PRELOAD_CFLAGS := -O2 -fPIC -Wall -Wextra -Werror -std=gnu11 -fvisibility=hidden \
                  -I$(NFQR_PRELOAD_DIR)/include $(PRELOAD_EXTRA_CFLAGS)
PRELOAD_TEST_CFLAGS := -O2 -Wall -Wextra -Werror -std=gnu11 -I$(NFQR_PRELOAD_DIR)/include \
                       -I$(NFQR_PRELOAD_DIR) $(PRELOAD_EXTRA_CFLAGS)

PRELOAD_SHARED_SOURCES := address_text.c lookup_protocol.c client_config.c daemon_connection.c \
                          lookup_client.c kernel_sockaddr.c
PRELOAD_SHARED_OBJECTS := $(PRELOAD_SHARED_SOURCES:%.c=$(PRELOAD_OBJDIR)/%.o)
PRELOAD_HEADERS        := $(wildcard $(NFQR_PRELOAD_DIR)/*.h $(NFQR_PRELOAD_DIR)/include/*.h)

.PHONY: preload preload-test preload-netns-test preload-install preload-clean

preload: $(PRELOAD_LIB) $(CLIENT_LIB)

$(PRELOAD_OBJDIR)/%.o: $(NFQR_PRELOAD_DIR)/%.c $(PRELOAD_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -c $< -o $@

PRELOAD_ONLY_OBJECTS := $(PRELOAD_OBJDIR)/preload_getsockopt.o $(PRELOAD_OBJDIR)/preload_diagnostics.o

$(PRELOAD_LIB): $(PRELOAD_SHARED_OBJECTS) $(PRELOAD_ONLY_OBJECTS) $(NFQR_PRELOAD_DIR)/preload.map
	$(CC) -shared -o $@ $(PRELOAD_SHARED_OBJECTS) $(PRELOAD_ONLY_OBJECTS) \
	    -Wl,--version-script=$(NFQR_PRELOAD_DIR)/preload.map -Wl,--no-undefined -Wl,-z,relro,-z,now \
	    -ldl -pthread

$(CLIENT_LIB): $(PRELOAD_SHARED_OBJECTS) $(PRELOAD_OBJDIR)/libc_getsockopt.o
	@rm -f $@
	ar rcs $@ $^

# ---- tests --------------------------------------------------------------------------------------

PRELOAD_TEST_PROGRAMS := $(PRELOAD_TESTDIR)/unit_tests $(PRELOAD_TESTDIR)/client_tests \
                         $(PRELOAD_TESTDIR)/preload_tests $(PRELOAD_TESTDIR)/fallback_notice

$(PRELOAD_TESTDIR)/unit_tests: $(NFQR_PRELOAD_TESTS)/unit_tests.c $(NFQR_PRELOAD_TESTS)/check.h $(CLIENT_LIB)
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_TEST_CFLAGS) -o $@ $< $(CLIENT_LIB) -pthread

$(PRELOAD_TESTDIR)/client_tests: $(NFQR_PRELOAD_TESTS)/client_tests.c $(NFQR_PRELOAD_TESTS)/check.h \
                                 $(NFQR_PRELOAD_TESTS)/fake_daemon_control.h $(CLIENT_LIB)
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_TEST_CFLAGS) -o $@ $< $(CLIENT_LIB) -pthread

# Linked against nothing of ours: it sees the daemon only through LD_PRELOAD.
$(PRELOAD_TESTDIR)/preload_tests: $(NFQR_PRELOAD_TESTS)/preload_tests.c $(NFQR_PRELOAD_TESTS)/check.h \
                                  $(NFQR_PRELOAD_TESTS)/fake_daemon_control.h
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_TEST_CFLAGS) -o $@ $< -pthread

$(PRELOAD_TESTDIR)/fallback_notice: $(NFQR_PRELOAD_TESTS)/fallback_notice.c
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_TEST_CFLAGS) -o $@ $<

preload-test: $(PRELOAD_LIB) $(CLIENT_LIB) $(PRELOAD_TEST_PROGRAMS)
	NFQR_PRELOAD_LIB=$(abspath $(PRELOAD_LIB)) NFQR_TEST_BIN=$(abspath $(PRELOAD_TESTDIR)) \
	    $(NFQR_PRELOAD_TESTS)/run.sh

preload-netns-test: $(PRELOAD_LIB) $(PRELOAD_TEST_PROGRAMS)
	NFQR_PRELOAD_LIB=$(abspath $(PRELOAD_LIB)) NFQR_TEST_BIN=$(abspath $(PRELOAD_TESTDIR)) \
	    $(NFQR_PRELOAD_TESTS)/run.sh --netns-only

preload-install: $(PRELOAD_LIB) $(CLIENT_LIB)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include
	install -m 0644 $(PRELOAD_LIB) $(CLIENT_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 $(NFQR_PRELOAD_DIR)/include/nfq_redirect.h $(DESTDIR)$(PREFIX)/include/

preload-clean:
	rm -rf $(PRELOAD_LIB) $(CLIENT_LIB) $(PRELOAD_OBJDIR) $(PRELOAD_TESTDIR)
