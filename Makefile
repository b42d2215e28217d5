# Magnetar: the commands a newcomer types. Everything real lives in CMake; this file installs
# dependencies, configures once and forwards.
#
#   make run [MODEL=path.gguf]   build and chat with the model (default: a tiny demo model, random weights)
#   make test                    build and run every test, then fuzz the GGUF reader for a while
#   make build                   just build
#
# Variables: BUILD (build dir), CUDA_ARCH (default 90a), FUZZ_SECONDS (default 60), MODEL,
# CHAT_ARGS (extra `magnetar chat` flags).

BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CUDA_ARCH ?= 90a
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc)
DEMO_MODEL := models/demo-tiny-random-weights.gguf
MAGNETAR := $(BUILD)/src/cli/magnetar

# nvcc is usually installed outside PATH; CMake finds it (and enables the CUDA backend) here.
ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
export PATH := $(PATH):/usr/local/cuda/bin
endif

.PHONY: all deps configure build test unit-tests fuzz run demo-model format clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCUDA_ARCH=$(CUDA_ARCH)

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

unit-tests: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# libFuzzer needs clang: the fuzz target has its own CPU-only build directory.
fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DMAGNETAR_FUZZ=ON -DMAGNETAR_CUDA=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target gguf_fuzzer make_gguf_corpus
	tests/fuzz/run_fuzzer.sh $(BUILD)-fuzz $(FUZZ_SECONDS)

# Fuzzing first, so that CTest's summary is the last thing printed.
test: build fuzz
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

$(DEMO_MODEL): | build
	@mkdir -p models
	$(MAGNETAR) synth --preset tiny -o $@

demo-model: build $(DEMO_MODEL)

# Lands in `magnetar chat`; CHAT_ARGS adds flags (e.g. CHAT_ARGS="--nothink --ctx 65536").
run: build
ifeq ($(MODEL),)
	@$(MAKE) --no-print-directory demo-model
	@echo "== no MODEL given: chatting with the tiny demo model (RANDOM WEIGHTS: its answers are noise) =="
	$(MAGNETAR) chat -m $(DEMO_MODEL) -n 64 $(CHAT_ARGS)
else
	$(MAGNETAR) chat -m $(MODEL) $(CHAT_ARGS)
endif

format:
	clang-format -i $$(git ls-files '*.h' '*.cc' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
