# bgjob — build, test, demo and sanitizer runs.
#
#   make demo      build everything and run the demo (a C and a Python program)
#   make test      build everything and run every test (Rust, C, C++ header check)
#   make header    regenerate include/bgjob.h after a change to the C ABI (then commit it)
#   make sanitize  run the C tests under valgrind memcheck (leaks and errors are fatal)
#   make bench     run the benchmarks (benches/README.md): one table, bgjob against its peers

SHELL    := bash
CARGO    ?= cargo
CC       ?= gcc
CXX      ?= g++
PROFILE  := release
LIBDIR   := $(abspath target/$(PROFILE))
BUILD    := build
SO       := $(LIBDIR)/libbgjob.so
HEADER   := include/bgjob.h
CFLAGS   ?= -O1 -g
CWARN    := -Wall -Wextra -Werror
LINK     := -L$(LIBDIR) -Wl,-rpath,$(LIBDIR) -lbgjob -pthread
C_TESTS  := $(patsubst tests/c/%.c,$(BUILD)/c/%,$(wildcard tests/c/test_*.c))
# Per-program time limit: a hang is a failure, never a stuck CI.
RUN      := timeout 300

.PHONY: all build header python test-python test test-suites test-rust test-c test-cpp test-readme test-readme-python demo sanitize bench bench-deps clean

all: build

build:
	$(CARGO) build --$(PROFILE) --lib

$(SO) $(HEADER): build

# Rewrites the committed include/bgjob.h from the sources (a plain build leaves it alone, so
# the header test in `make test` catches a header nobody regenerated).
header:
	BGJOB_UPDATE_HEADER=1 $(CARGO) build --$(PROFILE) --lib

$(BUILD)/c/%: tests/c/%.c $(wildcard tests/c/*.h) $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude -Itests/c $< -o $@ $(LINK)

# The header must be C++-clean: compile a translation unit that uses it as C++17.
$(BUILD)/cpp/header_check: tests/c/header_check.cpp $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CXX) $(CFLAGS) $(CWARN) -std=c++17 -Iinclude $< -o $@ $(LINK)

# Runs every suite, then prints one closing line with the totals of all of them.
test:
	@mkdir -p $(BUILD)
	@set -o pipefail; $(MAKE) --no-print-directory test-suites 2>&1 | tee $(BUILD)/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } \
	      / in [0-9.]+s/ && /(passed|failed)/ && !/^test result/ { for (i = 2; i <= NF; i++) { \
	          if ($$i ~ /^passed,?$$/) p += $$(i-1); if ($$i ~ /^(failed|errors?),?$$/) f += $$(i-1) } } \
	      /^[A-Za-z_ ()+0-9-]*: [0-9]+ passed, [0-9]+ failed$$/ { p += $$(NF-3); f += $$(NF-1) } \
	      END { printf "make test: %d passed, %d failed\n", p, f; exit f > 0 }' $(BUILD)/test.log

test-suites: build test-rust test-c test-cpp test-readme test-python test-readme-python

test-rust:
	$(CARGO) test --$(PROFILE)

test-c: build $(C_TESTS)
	@set -e; for t in $(C_TESTS); do echo "== $$t"; $(RUN) $$t; done

test-cpp: build $(BUILD)/cpp/header_check
	$(RUN) $(BUILD)/cpp/header_check

# The Python package, built with maturin into a virtual environment this Makefile makes
# (it installs maturin, pytest and mypy there itself).
VENV     := $(BUILD)/venv
VPY      := $(abspath $(VENV))/bin/python
$(VENV)/.ready:
	python3 -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.9,<2" "pytest>=8" "pytest-timeout>=2" "mypy>=1.10"
	touch $@

python: $(VENV)/.ready
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  maturin develop --release -m bindings/python/Cargo.toml

# Each test has its own time limit (pytest-timeout, in pyproject.toml), which names a hung
# test; the outer limit only guards against a hang outside any test.
test-python: python
	cd bindings/python && timeout 1800 $(VPY) -m pytest -q -rfE -p no:cacheprovider
	cd bindings/python && $(VPY) -m mypy.stubtest bgjob

# The README's C example must compile as written and print what it says.
$(BUILD)/readme/first.c: README.md
	@mkdir -p $(dir $@)
	awk '/^```c$$/{on=1;next} /^```$$/{if(on)exit} on' README.md > $@

test-readme: build $(BUILD)/readme/first.c
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude $(BUILD)/readme/first.c -o $(BUILD)/readme/first $(LINK)
	$(RUN) $(BUILD)/readme/first | tee $(BUILD)/readme/first.out
	grep -q '^job [0-9]* is Completed$$' $(BUILD)/readme/first.out
	grep -q '^output: 2$$' $(BUILD)/readme/first.out

# And so must its Python quick start, printing what its comments say.
$(BUILD)/readme/first.py: README.md
	@mkdir -p $(dir $@)
	awk '/^```python$$/{on=1;next} /^```$$/{if(on)exit} on' README.md > $@

test-readme-python: python $(BUILD)/readme/first.py
	$(RUN) $(VPY) $(BUILD)/readme/first.py | tee $(BUILD)/readme/first-py.out
	diff <(printf '%s\n' Completed "[ProgressRecord(50, 'Adding', 'half way'), 2]" 2) $(BUILD)/readme/first-py.out
	@echo "README Python quick start: 1 passed, 0 failed"

$(BUILD)/demo: examples/c/demo.c $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude $< -o $@ $(LINK)

demo: build $(BUILD)/demo python
	@echo "==== the C demo (examples/c/demo.c)"
	$(BUILD)/demo
	@echo
	@echo "==== the Python demo (examples/python/demo.py)"
	$(VPY) examples/python/demo.py

# valgrind memcheck on every C test: any error or leak fails the run. A process job's
# child is forked under valgrind until it execs; --child-silent-after-fork keeps the leak
# report of a child whose exec failed (a copy of the test's heap) out of the output.
VALGRIND := valgrind --suppressions=tests/valgrind.supp --child-silent-after-fork=yes --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --fair-sched=yes
sanitize: build $(C_TESTS)
	@command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
	@set -e; for t in $(C_TESTS); do echo "== valgrind $$t"; BGJOB_SANITIZE=1 $(RUN) $(VALGRIND) $$t; done
	@echo "sanitize: valgrind memcheck found no errors and no leaks in $(words $(C_TESTS)) C test programs"

# Benchmarks (benches/README.md): C programs built optimised — bgjob's against the release
# library, the peers' against libuv and GLib (Debian packages, installed here if missing)
# —, the criterion bench benches/floor.rs, and a Python driver (in the test virtual
# environment, with the package built) that runs them all, runs the Python workloads and
# prints one table. Timing claims live here, never in tests. 2 cores: ~3 min built, ~6-10 fresh.
BENCH_C  := $(patsubst benches/c/%.c,$(BUILD)/bench/%,$(wildcard benches/c/bench_*.c))
BENCH_H  := $(wildcard benches/c/*.h)

$(BUILD)/bench/%: benches/%.c $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) -O2 $(CWARN) -std=c11 -Iinclude $< -o $@ $(LINK)

$(BUILD)/bench/bench_bgjob: benches/c/bench_bgjob.c $(BENCH_H) $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) -O2 $(CWARN) -std=c11 -Iinclude -Ibenches/c $< -o $@ $(LINK)

$(BUILD)/bench/bench_uv: benches/c/bench_uv.c $(BENCH_H) | bench-deps
	@mkdir -p $(dir $@)
	$(CC) -O2 $(CWARN) -std=c11 -Ibenches/c $< -o $@ $$(pkg-config --cflags --libs libuv) -pthread

$(BUILD)/bench/bench_glib: benches/c/bench_glib.c $(BENCH_H) | bench-deps
	@mkdir -p $(dir $@)
	$(CC) -O2 $(CWARN) -std=c11 -Ibenches/c $< -o $@ $$(pkg-config --cflags --libs glib-2.0) -pthread

bench-deps:
	@dpkg -s libuv1-dev libglib2.0-dev pkg-config >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -q libuv1-dev libglib2.0-dev pkg-config)

# run.py runs every program (the criterion bench too), then prints the table last; it
# exits non-zero if any of them failed. The table is also kept in build/bench/results.txt.
bench: bench-deps build python $(BENCH_C) $(BUILD)/bench/process_spawn
	$(CARGO) bench --bench floor --no-run
	CARGO="$(CARGO)" $(VPY) benches/run.py --bin-dir $(BUILD)/bench --out $(BUILD)/bench/results.txt

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
