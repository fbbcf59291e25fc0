# khyve — build, test, install.  See README.md.
#
#   make              khyve, khyvectl and the test guests (build/)
#   make SAN=1        the same with ASan+UBSan (build-san/)
#   make check        unit tests (plain and sanitized), fuzz-check,
#                     integration tests
#   make unit         unit tests only
#   make fuzz-check   every fuzz harness: corpus replayed, 5 s of fuzzing
#   make fuzz         every fuzz harness for TIME s (default 60)
#   make bench        benchmarks side by side with QEMU
#   make linux-guest  build the project's Linux guest (docs/linux-guest.md)
#   make install PREFIX=/usr/local

CC ?= cc
PREFIX ?= /usr/local
SAN ?= 0
VERSION := 0.1.0

ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

# Sanitizer reports must never look like a pass or like khyve's own exit
# statuses (1 = powered off is ASan's/UBSan's default). A combined
# ASan+UBSan runtime shares one exit code among its parts, set by the
# options string it parses last (gcc: LSAN_OPTIONS', clang: UBSAN_OPTIONS'),
# so LSan's equals ASan's. Measured with gcc 12: ASan and leaks exit 86,
# UBSan 87. Exported to every recipe: the SAN unit run, tests/run-integration.sh.
ASAN_OPTIONS ?= exitcode=86:detect_leaks=1
UBSAN_OPTIONS ?= exitcode=87:halt_on_error=1:print_stacktrace=1
LSAN_OPTIONS ?= exitcode=86
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	  -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
	  -fno-strict-aliasing -D_GNU_SOURCE -DKHYVE_VERSION='"$(VERSION)"' \
	  -Isrc -Isrc/arch/x86 -Isrc/dev -Isrc/snap $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
include libs.mk
LDLIBS := $(KHYVE_LDLIBS)

LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c src/arch/x86/*.c src/dev/*.c src/snap/*.c))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)

KHYVE := $(BUILD)/khyve
KHYVECTL := $(BUILD)/khyvectl
LIBKHYVE := $(BUILD)/libkhyve.a

.SECONDARY:

.PHONY: nested-integration linux-guest all guests unit check integration bench install clean format format-check lint fuzz fuzz-check

all: $(KHYVE) $(KHYVECTL) guests

# The project's Linux guest (kernel + test module + rootfs), cached.
linux-guest:
	guest/linux/build.sh $(CURDIR)/build/linux

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIBKHYVE): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(KHYVE): $(BUILD)/src/main.o $(LIBKHYVE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(KHYVECTL): $(BUILD)/tools/khyvectl.o $(LIBKHYVE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIBKHYVE)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The fast test guests are freestanding; they never take the sanitizers.
guests:
	@if [ -f tests/guests/Makefile ]; then $(MAKE) -s -C tests/guests OUT=$(CURDIR)/build/guests; fi

unit: $(UNIT_BINS) $(KHYVECTL)
	@sh tests/run-unit.sh $(UNIT_BINS)

integration: all
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

# The integration tests on kvm_amd inside QEMU (for hosts without /dev/kvm).
nested-integration: all
	tests/nested/run.sh /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

check:
	$(MAKE) format-check lint
	$(MAKE) all
	$(MAKE) SAN=1 build-san/khyve build-san/khyvectl
	$(MAKE) unit
	$(MAKE) SAN=1 unit
	$(MAKE) fuzz-check
	sh tests/run-integration.sh

bench: all
	bench/run.sh

fuzz:
	$(MAKE) -C tests/fuzz
	$(MAKE) -C tests/fuzz run

# Every libFuzzer harness: its committed corpus and regressions replayed,
# then a few seconds of fuzzing (tests/fuzz/Makefile). Part of make check.
fuzz-check:
	$(MAKE) -C tests/fuzz check

install: $(KHYVE) $(KHYVECTL)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(KHYVE) $(KHYVECTL) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 man/khyve.8 man/khyvectl.8 $(DESTDIR)$(PREFIX)/share/man/man8/

# Rewrites what format-check checks: src/ and tools/ (tests/ and the
# guests keep their own layout; guest/linux is kernel code, kernel style).
format:
	clang-format -i $(FORMAT_FILES)

# src/ and tools/ as .clang-format says (Debian's clang-format 14); part
# of make check. `make format` rewrites them.
FORMAT_FILES = $$(git ls-files 'src/*.[ch]' 'tools/*.[ch]')
format-check:
	@bad=0; for f in $(FORMAT_FILES); do \
		clang-format "$$f" | cmp -s - "$$f" || { echo "format: $$f differs from .clang-format (make format)"; bad=1; }; \
	done; exit $$bad

# cppcheck, and no function in src/ or tools/ over 80 lines but a flat
# switch or table named here (config_parse: one short case per option).
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
		--suppress=missingIncludeSystem -D_GNU_SOURCE -Isrc -Isrc/arch/x86 -Isrc/dev -Isrc/snap src tools
	@/usr/bin/python3 scripts/func-length.py 80 --allow config_parse \
		$$(git ls-files 'src/*.c' 'tools/*.c')

clean:
	rm -rf build build-san

-include $(UNIT_BINS:%=%.d) $(LIB_OBJS:.o=.d) $(BUILD)/src/main.d $(BUILD)/tools/khyvectl.d
