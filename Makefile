# The two entry points of the README. Both do all set-up on a fresh Debian 12 machine.
BUILD     ?= build
JOBS      ?= $(shell nproc)
CTEST_JOBS ?= 3
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

export CCACHE_DIR ?= $(HOME)/.cache/edgetrust-ccache

.PHONY: all deps configure build test demo bench clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -j $(CTEST_JOBS)

demo: build
	scripts/demo $(BUILD)

bench: build
	scripts/bench $(BUILD)

clean:
	rm -rf $(BUILD)
