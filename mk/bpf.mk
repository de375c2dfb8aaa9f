# The cgroup/getsockopt program (Sources/CNativeAnswers/bpf/): C compiled by clang for the BPF
# target, embedded into a C header by bpftool's skeleton generator, so the daemon carries
# the object and installs no loose file. `make release` and `make unit-test` build it first.
#
#   make bpf        the object and its skeleton header (Sources/CNativeAnswers/generated/)

BPF_CLANG    ?= clang
BPFTOOL      ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
BPF_SOURCE   := Sources/CNativeAnswers/bpf/nfqr_origdst.bpf.c
BPF_OBJECT   := .build/bpf/nfqr_origdst.bpf.o
BPF_SKELETON := Sources/CNativeAnswers/generated/nfqr_origdst.skel.h
BPF_INCLUDES := -I/usr/include/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)

.PHONY: bpf

bpf: $(BPF_SKELETON)

$(BPF_OBJECT): $(BPF_SOURCE) Sources/CNativeAnswers/include/nfqr_origdst_map.h
	@mkdir -p $(dir $@)
	$(BPF_CLANG) -O2 -g -Wall -Werror -target bpf $(BPF_INCLUDES) -c $< -o $@

# The loader includes the skeleton only if it exists (__has_include): touching it makes
# SwiftPM rebuild it once the header appears.
$(BPF_SKELETON): $(BPF_OBJECT)
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen skeleton $< name nfqr_origdst > $@.tmp
	mv $@.tmp $@
	touch Sources/CNativeAnswers/nfqr_native_answers.c
