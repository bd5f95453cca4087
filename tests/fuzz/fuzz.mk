# SPDX-License-Identifier: GPL-2.0-or-later
# The libFuzzer targets, for GNU make, run by `make fuzz` (Makefile.am passes the variables).
# The sources are compiled again here with clang and the sanitizers into an archive of their
# own, so each target links only the modules it calls; the gcc-built libcfgfs.a is not used.
srcdir ?= .
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 10
FUZZ_OUT ?= tests/fuzz/out
FUZZ_TARGETS ?= names base64 zk_shape json_etcd json_consul cachefile url options perms
# From Makefile.am: the library's sources, the preprocessor and warning flags, the libraries.
FUZZ_LIB_SOURCES ?=
FUZZ_CPPFLAGS ?=
FUZZ_CFLAGS ?=
FUZZ_LIBS ?=
# The views' renderer (render.c).
FUZZ_TARGETS += render

# Undefined behaviour stops a run like a memory error does.
SAN = -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS_ALL = -std=gnu11 -g -O1 -fno-omit-frame-pointer $(FUZZ_CFLAGS) $(SAN)

lib_objs = $(patsubst %.c,$(FUZZ_OUT)/obj/%.o,$(filter %.c,$(FUZZ_LIB_SOURCES)))
bins = $(addprefix $(FUZZ_OUT)/bin/fuzz_,$(FUZZ_TARGETS))

all: $(bins)

$(FUZZ_OUT)/obj/%.o: $(srcdir)/%.c
	@mkdir -p $(@D)
	@echo "  FUZZCC   $<"
	@$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(CFLAGS_ALL) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_OUT)/libcfgfs-fuzz.a: $(lib_objs)
	@rm -f $@
	@ar rcs $@ $^

$(FUZZ_OUT)/bin/fuzz_%: $(FUZZ_OUT)/obj/tests/fuzz/fuzz_%.o $(FUZZ_OUT)/libcfgfs-fuzz.a
	@mkdir -p $(@D)
	@echo "  FUZZLD   $@"
	@$(FUZZ_CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS) -pthread

# Each target runs FUZZ_SECONDS, with its dictionary if it has one, from its seeds (read-only, so `make distcheck`'s tree works)
# and what earlier runs found; inputs that crash are kept in $(FUZZ_OUT)/crashes/NAME/.
# Every target runs even after one crashed; the run fails if any did.
run: $(bins)
	@failed=; \
	for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_OUT)/corpus/$$t $(FUZZ_OUT)/crashes/$$t; \
		echo "  FUZZ     $$t ($(FUZZ_SECONDS) s)"; \
		case $$t in json_*) dict=json ;; *) dict=$$t ;; esac; \
		dict=$(srcdir)/tests/fuzz/$$dict.dict; \
		[ -f $$dict ] && dict=-dict=$$dict || dict=; \
		if ! $(FUZZ_OUT)/bin/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 $$dict \
			-print_final_stats=1 -close_fd_mask=1 \
			-artifact_prefix=$(FUZZ_OUT)/crashes/$$t/ \
			$(FUZZ_OUT)/corpus/$$t $(srcdir)/tests/fuzz/corpus/$$t \
			>$(FUZZ_OUT)/$$t.log 2>&1; then \
			failed="$$failed $$t"; \
			tail -n 40 $(FUZZ_OUT)/$$t.log; \
		fi; \
		grep -E '^#[0-9]+ +DONE|^stat::number_of_executed_units' $(FUZZ_OUT)/$$t.log | sed 's/^/           /'; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "make fuzz: crashes in:$$failed (inputs in $(FUZZ_OUT)/crashes/)"; \
		exit 1; \
	fi

.PHONY: all run
.SECONDARY:
-include $(lib_objs:.o=.d) $(patsubst %,$(FUZZ_OUT)/obj/tests/fuzz/fuzz_%.d,$(FUZZ_TARGETS))
