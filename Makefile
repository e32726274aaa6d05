# Thin wrapper over CMake for the README's commands.
#   make run     set up, build (release), start the relay with the defaults
#   make test    set up, build, run every test through CTest
#   make asan    the whole suite under AddressSanitizer + UBSan
#   make fuzz    build the libFuzzer targets with clang and run each briefly
#   make valgrind  the whole suite (tests and the servers they start) under memcheck
#   make bench   release build; room, fanout, unreliable, connect -> bench-results/
#   make bench-compare  the same workloads on the relay and on NATS over TLS, side by side
#   make bench-instr    instructions per delivery under callgrind (fanout, room, global)
#   make bench-lossy    run after run over a delaying, lossy UDP proxy; fails on a stall
#   make install PREFIX=/usr/local

BUILD      ?= build
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECS  ?= 30
CTEST_ARGS ?=

.PHONY: all deps build release run test asan fuzz bench bench-compare bench-instr bench-lossy valgrind install format clean

all: build

deps:
	@scripts/deps.sh build

release: deps
	@JOBS=$(JOBS) scripts/build-release.sh $(BUILD)/release

run: release
	$(BUILD)/release/issun-server $(ARGS)

build:
	@scripts/deps.sh test
	@cmake -S . -B $(BUILD)/debug -DCMAKE_BUILD_TYPE=RelWithDebInfo -DISSUN_WERROR=ON >/dev/null
	@cmake --build $(BUILD)/debug -j $(JOBS)

test: build
	cd $(BUILD)/debug && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

asan:
	@scripts/deps.sh test
	@cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DISSUN_WERROR=ON -DISSUN_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

bench: deps
	@BUILD_DIR=$(BUILD)/bench scripts/bench.sh $(WORKLOADS)

bench-compare: deps
	@BUILD_DIR=$(BUILD)/bench scripts/bench-compare.sh $(WORKLOADS)

bench-instr:
	@scripts/deps.sh test
	@BUILD_DIR=$(BUILD)/bench scripts/bench-instr.sh $(WORKLOADS)

bench-lossy: deps
	@BUILD_DIR=$(BUILD)/bench scripts/lossy-soak.sh $(RUNS) $(LOSS)

valgrind:
	@scripts/deps.sh test
	@cmake -S . -B $(BUILD)/valgrind -DCMAKE_BUILD_TYPE=Debug -DISSUN_WERROR=ON >/dev/null
	@cmake --build $(BUILD)/valgrind -j $(JOBS)
	@scripts/valgrind.sh $(BUILD)/valgrind $(VALGRIND_TESTS)

fuzz:
	@scripts/deps.sh fuzz
	@CC=clang cmake -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=Debug -DISSUN_FUZZ=ON -DISSUN_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BUILD)/fuzz -j $(JOBS)
	@scripts/run-fuzz.sh $(BUILD)/fuzz $(FUZZ_SECS)

install: release
	@cmake -S . -B $(BUILD)/release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD)/release -j $(JOBS)
	@cmake --install $(BUILD)/release

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
