# Formatting, one config per language at the top of the tree: .swift-format (swift-format,
# shipped with the Swift toolchain as `swift format`) and .clang-format (Debian's clang-format).
#
#   make lint     check mode: fails on any difference (part of `make test`)
#   make format   rewrites the files in place; `make lint` is clean after it

CLANG_FORMAT       ?= clang-format
SWIFT_FORMAT_PATHS := Package.swift Sources Tests Benchmarks Fuzz
# Every C source and header but generated ones (the BPF skeleton) and build folders.
C_FORMAT_FILES      = $(shell find Sources Tests bench -name '*.[ch]' -not -path '*/generated/*' -not -path '*/.build*' 2>/dev/null | sort)

.PHONY: lint format

lint:
	$(SWIFT) format lint --strict --parallel --recursive $(SWIFT_FORMAT_PATHS)
	$(CLANG_FORMAT) --dry-run -Werror $(C_FORMAT_FILES)

format:
	$(SWIFT) format format --in-place --parallel --recursive $(SWIFT_FORMAT_PATHS)
	$(CLANG_FORMAT) -i $(C_FORMAT_FILES)
