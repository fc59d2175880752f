# modelfs - a Hugging Face Hub repo as a folder.
#
#   make            build build/modelfs (CPU always; CUDA when nvcc is found, CUDA=0 skips)
#   make test       unit tests, local-Hub protocol tests, real FUSE mount tests
#   make test SAN=1 the same under AddressSanitizer + UBSan (SAN=thread: TSan)
#   make bench      benchmark ratios        make demo    the README demo
#   make checksrc   style checks            make deps    install missing Debian packages
#
# Sources are found by wildcard: a new .c file in a module folder is built
# into build/libmfs.a, and tests/<area>/test_*.c becomes one test binary.

CC      ?= cc
PKGS    := fuse3 libcurl libcjson sqlite3 openblas libpcre2-8 libmicrohttpd libutf8proc libcrypto
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
CFLAGS  := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DFUSE_USE_VERSION=314 $(OPT) $(WARN) \
           -pthread -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

ifeq ($(SAN),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  BUILD   ?= build-san
endif
ifeq ($(SAN),thread)
  CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=thread
  BUILD   ?= build-tsan
endif
BUILD ?= build

NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(CUDA),0)
  NVCC :=
endif
CU_SRC := $(wildcard compute/*.cu)
ifneq ($(NVCC),)
ifneq ($(CU_SRC),)
  CFLAGS  += -DMFS_WITH_CUDA -I$(dir $(NVCC))../include
  LDLIBS  += -L$(dir $(NVCC))../lib64 -lcudart -lcublas
endif
endif

MODULES := common hub cache model compute fs tools tools/hubd
LIB_SRC := $(filter-out tools/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifneq ($(NVCC),)
  LIB_OBJ += $(CU_SRC:%.cu=$(BUILD)/%.o)
endif
TEST_SRC := $(wildcard tests/*/test_*.c)
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)

.PHONY: all test bench demo checksrc deps clean
all: $(BUILD)/modelfs $(TEST_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -I. -Xcompiler -fPIC -DMFS_WITH_CUDA -c $< -o $@

$(BUILD)/libmfs.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/modelfs: $(BUILD)/tools/main.o $(BUILD)/libmfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(BUILD)/libmfs.a $(LDLIBS)

deps:
	@tools/deps.sh

test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tests/bench/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tools/demo.sh

checksrc:
	@tools/checksrc.sh

clean:
	rm -rf build build-san build-tsan

-include $(LIB_OBJ:.o=.d) $(BUILD)/tools/main.d
