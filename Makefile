# The two commands of the README, and a few conveniences around CMake.
#   make demo   install what is missing, build, serve a demo PKI's index.txt on 127.0.0.1:8080
#   make test   install what is missing, build (warnings as errors, and ASan+UBSan), run every test
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_SECONDS ?= 20

.PHONY: all deps test-deps build demo test test-asan fuzz bench clean

all: build

deps:
	bash scripts/install-deps.sh

test-deps:
	bash scripts/install-deps.sh --test

build: deps
	cmake -S . -B $(BUILD) -DREVD_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target revd

demo: build
	bash scripts/demo.sh

test: test-deps
	cmake -S . -B $(BUILD) -DREVD_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DREVD_WERROR=ON -DREVD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -j $(JOBS) --output-on-failure

fuzz:
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

bench:
	bash scripts/install-deps.sh --bench
	bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-release
