# One-command entry points; each installs missing Debian packages first (see scripts/install-deps.sh).
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

PREFIX ?= /usr/local

.PHONY: all deps configure build demo serve load-test test node-deps test-asan test-tsan install fresh-check train-model clean format

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD_DIR)/ckv

test: build node-deps
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The OpenAI Node client the server tests use, exactly as locked.
node-deps:
	@[ -d tests/openai_client/node_modules/openai ] || \
	  (cd tests/openai_client && npm ci --no-audit --no-fund --loglevel=error)

# ckv serve on the bundled model (Ctrl-C stops it).
serve: build
	@$(BUILD_DIR)/ckv serve --store /tmp/ckv-serve-store

# The server's load test (64 clients, 1,000 requests) and 20 SIGKILLs during stores.
load-test: build
	@scripts/load-test.sh $(BUILD_DIR)

# bin/ckv, the library, its headers and the bundled model/data under $(PREFIX).
install: build
	@cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# From nothing: a minimal Debian 12 root, a clone of HEAD with nothing beside it, the README's
# two commands inside it (~9 min on 2 cores; run before resolving build/deps work).
fresh-check:
	@scripts/fresh-check.sh

# The long-context model of models/ckv-long-8m (tools/train/README.md; ~2.5 h on 2 cores, not
# in CI): TRAIN_TOKENS of text, then TRAIN_REPEAT_TOKENS with doubled spans, then the copy
# stages (TRAIN_COPY_TOKENS of periodic random windows, TRAIN_COPY_MIX_TOKENS of those mixed
# with text; 0 skips them). Resumes from build-train/run/checkpoint.pt when there is one.
TRAIN_DIR ?= build-train
TRAIN_TOKENS ?= 8e6
TRAIN_REPEAT_TOKENS ?= 3e6
TRAIN_COPY_TOKENS ?= 0
TRAIN_COPY_MIX_TOKENS ?= 0
train-model: build
	@scripts/install-train-deps.sh
	@/usr/bin/python3 tools/train/corpus.py --out $(TRAIN_DIR)/corpus
	@[ -f $(TRAIN_DIR)/model/tokenizer.json ] || \
	  /usr/bin/python3 tools/train/tokenizer.py --corpus $(TRAIN_DIR)/corpus --out $(TRAIN_DIR)/model
	@/usr/bin/python3 tools/train/train.py --corpus $(TRAIN_DIR)/corpus \
	  --tokenizer $(TRAIN_DIR)/model --out $(TRAIN_DIR)/run --tokens $(TRAIN_TOKENS) \
	  --repeat-tokens $(TRAIN_REPEAT_TOKENS) --copy-tokens $(TRAIN_COPY_TOKENS) \
	  --copy-mix-tokens $(TRAIN_COPY_MIX_TOKENS)
	@/usr/bin/python3 tools/train/export.py --run $(TRAIN_DIR)/run --tokenizer $(TRAIN_DIR)/model \
	  --out $(TRAIN_DIR)/export --check $(BUILD_DIR)/ckv

# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan:
	@$(MAKE) test BUILD_DIR=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKV_SANITIZE=ON"

# The threaded parts (I/O thread, loader, store, pipeline) under ThreadSanitizer. OpenMP runs
# single-threaded here: libgomp is not instrumented, and the races we look for are between
# the I/O thread and the compute thread.
TSAN_TESTS = reprefill_test io_test store_test policy_test server_test store_context_test \
  unit_loader_test baselines_test batch_decode_test compute_gate_test store_writer_test \
  exact_context_kv_test
test-tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKV_TSAN=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS) --target $(TSAN_TESTS)
	@cd build-tsan && OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j $(JOBS) \
	  -R '(Reprefill|AlignedBuffer|BufferPool|DirectFile|EngineTest|IoEngine|LayoutRoundTrip|PrefixStore|ChunkCache|ChunkSelection|ChunkScoring|Server|StoreContext|UnitLoader|Baselines|BatchDecode|ComputeGate|StoreWriter|ExactContextKV)' \
	  -E '(WriterKilled|TenThousand|ChecksumCost)'

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf build build-asan build-tsan
