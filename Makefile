# bgjob — build, test, demo and sanitizer runs.
#
#   make demo      build everything and run the demo (a C and a Python program)
#   make test      build everything and run every test (Rust, C, C++ and both again against a
#                  panic = "abort" build, install, examples, Python, docs)
#   make install   install the library, headers, pkg-config file and CMake package (PREFIX, DESTDIR)
#   make wheel     build the Python wheel and run the Python tests against it in a fresh venv
#   make header    regenerate include/bgjob.h after a change to the C ABI (then commit it)
#   make sanitize  the Rust tests under ThreadSanitizer and AddressSanitizer, the C tests
#                  under valgrind memcheck (any report fails)
#   make loom      model-check the core's races with loom (tests/loom.rs; not part of make test)
#   make fuzz      the API fuzzer: FUZZ_CASES proptest cases, then cargo-fuzz for FUZZ_SECONDS
#   make bench     run the benchmarks (benches/README.md): one table, bgjob against its peers
#   make soak      10-minute soak (SOAK_SECONDS, SOAK_THREADS, SOAK_SEED): 8 host threads mix every
#                  operation of the C API under an invariant checker (tests/soak/soak.c)
#   make soak-smoke  the same soak driver for 5 s (for make test)

SHELL    := bash
CARGO    ?= cargo
CC       ?= gcc
CXX      ?= g++
PROFILE  := release
OUT      := $(abspath target/$(PROFILE))
BUILD    := build
SO       := $(OUT)/libbgjob.so
HEADER   := include/bgjob.h
CFLAGS   ?= -O1 -g
CWARN    := -Wall -Wextra -Werror
LINK     := -L$(OUT) -Wl,-rpath,$(OUT) -lbgjob -pthread
C_TESTS  := $(patsubst tests/c/%.c,$(BUILD)/c/%,$(wildcard tests/c/test_*.c))
CPP_TESTS := $(patsubst tests/cpp/%.cpp,$(BUILD)/cpp/%,$(wildcard tests/cpp/test_*.cpp))
CXXFLAGS ?= -O1 -g
CPPHDR   := bindings/cpp/bgjob.hpp
# Per-program time limit: a hang is a failure, never a stuck CI.
RUN      := timeout 300

.PHONY: all build build-abort header install uninstall python tools wheel test-python test test-suites test-rust test-c test-cpp test-abort test-install test-examples test-docs test-readme test-readme-cpp test-readme-python demo sanitize sanitize-tsan sanitize-asan sanitize-memcheck rust-src loom fuzz bench bench-deps soak soak-smoke clean

all: build

# The library has a soname (libbgjob.so.$(SOVERSION)); programs linked in this tree find
# it in target/ through the same link an install makes.
build:
	$(CARGO) build --$(PROFILE) --lib
	ln -sfn libbgjob.so $(OUT)/libbgjob.so.$(SOVERSION)

$(SO) $(HEADER): build

# Rewrites the committed include/bgjob.h from the sources with cbindgen (tests/header.rs,
# which in `make test` fails while the committed header is stale).
header:
	BGJOB_UPDATE_HEADER=1 $(CARGO) test --$(PROFILE) --test header

$(BUILD)/c/%: tests/c/%.c $(wildcard tests/c/*.h) $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude -Itests/c $< -o $@ $(LINK)

# The header must be C++-clean: compile a translation unit that uses it as C++17.
$(BUILD)/cpp/header_check: tests/c/header_check.cpp $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CXX) $(CFLAGS) $(CWARN) -std=c++17 -Iinclude $< -o $@ $(LINK)

# Installs the library as a C or C++ project expects to find it: the shared library with
# its soname and version links, the static library, the headers, a pkg-config file and a
# CMake package (find_package(bgjob) -> bgjob::bgjob, bgjob::bgjob_static). PREFIX,
# LIBDIR, INCLUDEDIR and DESTDIR (a staging root) as in every GNU-style install.
VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
# cargo-c's rule, which build.rs follows too: 0.MINOR before 1.0, then MAJOR.
SOVERSION     := $(if $(filter 0,$(VERSION_MAJOR)),0.$(VERSION_MINOR),$(VERSION_MAJOR))
# What libbgjob.a needs besides itself (rustc --print native-static-libs).
EMPTY         :=
SPACE         := $(EMPTY) $(EMPTY)
STATIC_LIBS   := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
PREFIX        ?= /usr/local
LIBDIR        ?= $(PREFIX)/lib
INCLUDEDIR    ?= $(PREFIX)/include
CMAKEDIR      := $(LIBDIR)/cmake/bgjob
INSTALL_LIB   := $(DESTDIR)$(LIBDIR)
SUBST         := sed -e 's|@PREFIX@|$(PREFIX)|g' \
	-e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${exec_prefix}/%,$(LIBDIR))|g' \
	-e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|g' -e 's|@VERSION@|$(VERSION)|g' \
	-e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' -e 's|@VERSION_MINOR@|$(VERSION_MINOR)|g' \
	-e 's|@SOVERSION@|$(SOVERSION)|g' -e 's|@STATIC_LIBS@|$(STATIC_LIBS)|g' \
	-e 's|@STATIC_LIBS_CMAKE@|$(subst $(SPACE),;,$(patsubst -l%,%,$(STATIC_LIBS)))|g' \
	-e "s|@CMAKE_TO_PREFIX@|$$(realpath -m --relative-to=$(CMAKEDIR) $(PREFIX))|g" \
	-e "s|@LIBDIR_REL@|$$(realpath -m --relative-to=$(PREFIX) $(LIBDIR))|g" \
	-e "s|@INCLUDEDIR_REL@|$$(realpath -m --relative-to=$(PREFIX) $(INCLUDEDIR))|g"

install: build
	install -d $(INSTALL_LIB)/pkgconfig $(DESTDIR)$(CMAKEDIR) $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(SO) $(INSTALL_LIB)/libbgjob.so.$(VERSION)
	ln -sfn libbgjob.so.$(VERSION) $(INSTALL_LIB)/libbgjob.so.$(SOVERSION)
	ln -sfn libbgjob.so.$(SOVERSION) $(INSTALL_LIB)/libbgjob.so
	install -m 644 $(OUT)/libbgjob.a $(INSTALL_LIB)/libbgjob.a
	install -m 644 $(HEADER) bindings/cpp/bgjob.hpp $(DESTDIR)$(INCLUDEDIR)/
	$(SUBST) packaging/bgjob.pc.in > $(INSTALL_LIB)/pkgconfig/bgjob.pc
	$(SUBST) packaging/bgjobConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/bgjobConfig.cmake
	$(SUBST) packaging/bgjobConfigVersion.cmake.in > $(DESTDIR)$(CMAKEDIR)/bgjobConfigVersion.cmake

uninstall:
	rm -f $(INSTALL_LIB)/libbgjob.so $(INSTALL_LIB)/libbgjob.so.$(SOVERSION) \
	  $(INSTALL_LIB)/libbgjob.so.$(VERSION) $(INSTALL_LIB)/libbgjob.a \
	  $(INSTALL_LIB)/pkgconfig/bgjob.pc $(DESTDIR)$(INCLUDEDIR)/bgjob.h \
	  $(DESTDIR)$(INCLUDEDIR)/bgjob.hpp $(DESTDIR)$(CMAKEDIR)/bgjobConfig.cmake \
	  $(DESTDIR)$(CMAKEDIR)/bgjobConfigVersion.cmake
	-rmdir $(DESTDIR)$(CMAKEDIR)

# Runs every suite, then prints one closing line with the totals of all of them.
test:
	@mkdir -p $(BUILD)
	@set -o pipefail; $(MAKE) --no-print-directory test-suites 2>&1 | tee $(BUILD)/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } \
	      / in [0-9.]+s/ && /(passed|failed)/ && !/^test result/ { for (i = 2; i <= NF; i++) { \
	          if ($$i ~ /^passed,?$$/) p += $$(i-1); if ($$i ~ /^(failed|errors?),?$$/) f += $$(i-1) } } \
	      /^[A-Za-z_ ()+0-9-]*: [0-9]+ passed, [0-9]+ failed$$/ { p += $$(NF-3); f += $$(NF-1) } \
	      END { printf "make test: %d passed, %d failed\n", p, f; exit f > 0 }' $(BUILD)/test.log

test-suites: build test-rust test-c test-cpp test-abort test-install test-readme test-readme-cpp test-python test-readme-python test-examples test-docs soak-smoke

test-rust:
	$(CARGO) test --$(PROFILE)

test-c: build $(C_TESTS)
	@set -e; for t in $(C_TESTS); do echo "== $$t"; $(RUN) $$t; done

# The C and C++ tests once more against the library built with panic = "abort" (the
# release-abort profile): the same programs, given that library by LD_LIBRARY_PATH (they
# are linked with a RUNPATH, which it overrides); ldd proves which library they load.
ABORT_OUT := $(abspath target/release-abort)
build-abort:
	$(CARGO) build --profile release-abort --lib
	ln -sfn libbgjob.so $(ABORT_OUT)/libbgjob.so.$(SOVERSION)

test-abort: build-abort $(C_TESTS) $(CPP_TESTS)
	@LD_LIBRARY_PATH=$(ABORT_OUT) ldd $(firstword $(C_TESTS)) | grep -q '$(ABORT_OUT)/libbgjob' || \
	  { echo "test-abort: the tests do not load $(ABORT_OUT)/libbgjob.so"; exit 1; }
	@set -e; for t in $(C_TESTS) $(CPP_TESTS); do echo "== panic=abort $$t"; \
	  BGJOB_EXPECT_PANIC=abort LD_LIBRARY_PATH=$(ABORT_OUT) $(RUN) $$t; done

# The C++ wrapper's tests (C++17, warnings are errors).
$(BUILD)/cpp/%: tests/cpp/%.cpp $(wildcard tests/cpp/*.hpp) $(CPPHDR) $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(CWARN) -Wpedantic -std=c++17 -Iinclude -Ibindings/cpp -Itests/cpp $< -o $@ $(LINK)

test-cpp: build $(BUILD)/cpp/header_check $(CPP_TESTS)
	$(RUN) $(BUILD)/cpp/header_check
	@set -e; for t in $(CPP_TESTS); do echo "== $$t"; $(RUN) $$t; done

# Installs into temporary prefixes and builds against them with pkg-config and CMake (the
# venv's cmake and pkgconf from PyPI, so a machine needs neither).
test-install: build tools
	CMAKE=$(abspath $(VENV))/bin/cmake PKG_CONFIG=$(abspath $(VENV))/bin/pkg-config \
	  MAKE="$(MAKE)" $(RUN) tests/install/run.sh

# Every example, built and run as a user would, so none of them rots: each must exit 0.
EXAMPLES_C   := $(patsubst examples/c/%.c,$(BUILD)/examples/%,$(filter-out examples/c/demo.c,$(wildcard examples/c/*.c)))
EXAMPLES_CPP := $(patsubst examples/cpp/%.cpp,$(BUILD)/examples/%,$(wildcard examples/cpp/*.cpp))
EXAMPLES_PY  := $(filter-out examples/python/demo.py,$(wildcard examples/python/*.py))

$(BUILD)/examples/%: examples/c/%.c $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude $< -o $@ $(LINK)

$(BUILD)/examples/%: examples/cpp/%.cpp $(CPPHDR) $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(CWARN) -std=c++17 -Iinclude -Ibindings/cpp $< -o $@ $(LINK)

test-examples: build python $(EXAMPLES_C) $(EXAMPLES_CPP) $(BUILD)/demo
	@set -e; n=0; for e in $(EXAMPLES_C) $(EXAMPLES_CPP); do echo "== $$e"; $(RUN) $$e; n=$$((n+1)); done; \
	  for e in $(EXAMPLES_PY); do echo "== $$e"; $(RUN) $(VPY) -W error $$e; n=$$((n+1)); done; \
	  for d in "$(BUILD)/demo" "$(VPY) -W error examples/python/demo.py"; do echo "== $$d (piped)"; \
	    $(RUN) $$d | tee $(BUILD)/examples/demo.out; grep -qx 'All jobs removed. Done.' $(BUILD)/examples/demo.out; \
	    ! grep -q $$'\e' $(BUILD)/examples/demo.out; n=$$((n+1)); done; \
	  echo "examples: $$n passed, 0 failed"

# The API references in docs/reference/ are generated from the header and the docstrings.
test-docs: python
	$(VPY) docs/gen_reference.py --check

# The Python package, built with maturin into a virtual environment this Makefile makes
# (it installs maturin, pytest and mypy there itself).
VENV     := $(BUILD)/venv
VPY      := $(abspath $(VENV))/bin/python
$(VENV)/.ready:
	python3 -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.9,<2" "pytest>=8" "pytest-timeout>=2" "mypy>=1.10"
	touch $@

# cmake and pkg-config for the install test, from PyPI into the same environment.
$(VENV)/.tools: $(VENV)/.ready
	$(VPY) -m pip install -q "cmake>=3.16,<5" "pkgconf>=2"
	touch $@

tools: $(VENV)/.tools

# maturin builds in its own target directory: sharing target/ with cargo test made each of
# them rebuild the library after the other (cargo keeps one fingerprint per unit, and the
# two builds see the library's dependencies differently).
PYTARGET := target/python

# A manylinux wheel (maturin), installed into a fresh virtual environment where the Python
# tests then run against it, not against the source tree.
WHEELS   := $(BUILD)/wheels
WHEELENV := $(BUILD)/wheel-venv
wheel: $(VENV)/.ready
	rm -rf $(WHEELS) $(WHEELENV)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  maturin build --release -m bindings/python/Cargo.toml --target-dir $(PYTARGET) --out $(WHEELS)
	python3 -m venv $(WHEELENV)
	$(WHEELENV)/bin/python -m pip install -q $(WHEELS)/bgjob-*.whl "pytest>=8" "pytest-timeout>=2"
	cd /tmp && $(abspath $(WHEELENV))/bin/python -c \
	  'import bgjob, sys; assert "/wheel-venv/" in bgjob.__file__, bgjob.__file__; print("testing", bgjob.__file__)'
	cd bindings/python/tests && timeout 1800 $(abspath $(WHEELENV))/bin/python -m pytest -q -rfE \
	  -p no:cacheprovider -c ../pyproject.toml --rootdir . .
	@ls $(WHEELS)

python: $(VENV)/.ready
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  maturin develop --release -m bindings/python/Cargo.toml --target-dir $(PYTARGET)

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

# And its C++ one (built against the wrapper), printing what its comments say.
$(BUILD)/readme/first.cpp: README.md
	@mkdir -p $(dir $@)
	awk '/^```cpp$$/{on=1;next} /^```$$/{if(on)exit} on' README.md > $@

test-readme-cpp: build $(BUILD)/readme/first.cpp
	$(CXX) $(CXXFLAGS) $(CWARN) -std=c++17 -Iinclude -Ibindings/cpp $(BUILD)/readme/first.cpp -o $(BUILD)/readme/first-cpp $(LINK)
	$(RUN) $(BUILD)/readme/first-cpp | tee $(BUILD)/readme/first-cpp.out
	diff <(printf '%s\n' "adder is Completed" "output: 2" "Failed: disk full") $(BUILD)/readme/first-cpp.out
	@echo "README C++ quick start: 1 passed, 0 failed"

# And so must its Python quick start, printing what its comments say.
$(BUILD)/readme/first.py: README.md
	@mkdir -p $(dir $@)
	awk '/^```python$$/{on=1;next} /^```$$/{if(on)exit} on' README.md > $@

test-readme-python: python $(BUILD)/readme/first.py
	$(RUN) $(VPY) $(BUILD)/readme/first.py | tee $(BUILD)/readme/first-py.out
	diff <(printf '%s\n' Completed "[ProgressRecord(50, 'Adding', 'half way'), 2]" 2) $(BUILD)/readme/first-py.out
	@echo "README Python quick start: 1 passed, 0 failed"

$(BUILD)/demo: examples/c/demo.c examples/c/demo_term.h $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude $< -o $@ $(LINK)

demo: build $(BUILD)/demo python
	@echo "==== the C demo (examples/c/demo.c)"
	$(BUILD)/demo
	@echo
	@echo "==== the Python demo (examples/python/demo.py)"
	$(VPY) examples/python/demo.py

# make sanitize: the Rust tests (the library's own and every tests/*.rs) under
# ThreadSanitizer and under AddressSanitizer (with LeakSanitizer), then valgrind memcheck
# on every C test. Any report fails the run; the last line sums up all three.
# -Zsanitizer is unstable: RUSTC_BOOTSTRAP=1 lets the stable toolchain take it (there is
# no nightly here). The standard library is rebuilt instrumented (-Zbuild-std, from the
# rust-src component, added if missing): against an uninstrumented std, TSan cannot see
# std's locks and reports races that are not there (8 in the library's own tests).
# TSan cannot follow a fork of a threaded process: die_after_fork=0 lets the fork tests'
# children run on (their own checks still count). The Python extension is not sanitized.
HOST      := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
SAN_CARGO := RUSTC_BOOTSTRAP=1 $(CARGO) test -Zbuild-std --target $(HOST) --lib --tests
SAN_LOG   := $(BUILD)/sanitize

rust-src:
	@rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src

sanitize-tsan: rust-src
	@mkdir -p $(SAN_LOG)
	@set -o pipefail; RUSTFLAGS="-Zsanitizer=thread" \
	  TSAN_OPTIONS="halt_on_error=1 die_after_fork=0 second_deadlock_stack=1" \
	  $(SAN_CARGO) --target-dir target/tsan 2>&1 | tee $(SAN_LOG)/tsan.log
	@$(call san_summary,ThreadSanitizer,tsan,WARNING: ThreadSanitizer)

sanitize-asan: rust-src
	@mkdir -p $(SAN_LOG)
	@set -o pipefail; RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=1" \
	  $(SAN_CARGO) --target-dir target/asan 2>&1 | tee $(SAN_LOG)/asan.log
	@$(call san_summary,AddressSanitizer+LeakSanitizer,asan,ERROR: [A-Za-z]*Sanitizer)

# $(call san_summary,NAME,LOG,REPORT-PATTERN): one line with the programs, tests and reports.
san_summary = awk '/^test result:/ { p++; t += $$4 } /$(3)/ { r++ } \
	  END { printf "sanitize: $(1): %d test programs, %d tests passed, %d reports\n", p, t, r; exit r > 0 }' \
	  $(SAN_LOG)/$(2).log | tee $(SAN_LOG)/$(2).summary

# valgrind memcheck on every C test: any error or leak fails the run. A process job's
# child is forked under valgrind until it execs; --child-silent-after-fork keeps the leak
# report of a child whose exec failed (a copy of the test's heap) out of the output.
VALGRIND := valgrind --suppressions=tests/valgrind.supp --child-silent-after-fork=yes --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --fair-sched=yes
sanitize-memcheck: build $(C_TESTS) $(BUILD)/soak/soak
	@command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
	@mkdir -p $(SAN_LOG)
	@set -e; for t in $(C_TESTS); do echo "== valgrind $$t"; BGJOB_SANITIZE=1 $(RUN) $(VALGRIND) $$t; done
	@echo "== valgrind $(BUILD)/soak/soak (the soak driver, 20 s)"
	SOAK_SECONDS=20 $(RUN) $(VALGRIND) $(BUILD)/soak/soak
	@echo "sanitize: valgrind memcheck: $(words $(C_TESTS)) C test programs and the soak driver (20 s), no errors and no leaks" | tee $(SAN_LOG)/memcheck.summary

sanitize: sanitize-tsan sanitize-asan sanitize-memcheck
	@cat $(SAN_LOG)/tsan.summary $(SAN_LOG)/asan.summary $(SAN_LOG)/memcheck.summary

# make fuzz: the API fuzzer both ways over the same reference model (tests/fuzz_api.rs):
# the proptest state machine with FUZZ_CASES cases (make test runs 500), then cargo-fuzz
# (libFuzzer; cargo-fuzz is installed if missing) for FUZZ_SECONDS. A broken promise
# fails the run; libFuzzer keeps the input in fuzz/artifacts/api/ (fuzz/fuzz_targets/api.rs
# says how to replay it). -detect_leaks=0: see api.rs (make sanitize checks leaks).
FUZZ_CASES   ?= 20000
FUZZ_SECONDS ?= 600
fuzz:
	BGJOB_FUZZ_CASES=$(FUZZ_CASES) BGJOB_FUZZ_STATS=1 $(CARGO) test --release --test fuzz_api -- --nocapture
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p $(BUILD)/fuzz-corpus
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run api $(BUILD)/fuzz-corpus -- -max_total_time=$(FUZZ_SECONDS) \
	  -max_len=200 -len_control=0 -detect_leaks=0

# Model checks (tests/loom.rs): the core built with `--cfg loom`, its locks, atomics and
# threads loom's (src/sync.rs), each model run under every interleaving of its threads with
# at most LOOM_MAX_PREEMPTIONS preemptions (default 2; 3 takes ~15 s, 4 ~2 min). Its own
# target directory: the cfg changes every crate's build. Prints each model's execution
# count and time. Not part of `make test`.
loom:
	RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=$${LOOM_MAX_PREEMPTIONS:-2} $(CARGO) test --release -p bgjob --test loom --target-dir target/loom -- --test-threads=1 --nocapture

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

# The soak test (tests/soak/soak.c): SOAK_THREADS host threads mix every operation of the C
# API for SOAK_SECONDS under an invariant checker (no record lost or handed out twice, every
# callback once per change, every finalizer once, documented statuses, repository empty,
# threads and resident set back at the end). Not part of `make test`: soak-smoke is the same
# driver for 5 s. The driver has its own watchdog (no progress for 60 s: abort); the outer
# timeout only guards against a hang outside it. SOAK_SEED replays a run's choices.
SOAK_SECONDS ?= 600
SOAK_THREADS ?= 8
SOAK_ENV     := SOAK_THREADS=$(SOAK_THREADS) $(if $(SOAK_SEED),SOAK_SEED=$(SOAK_SEED))

$(BUILD)/soak/soak: tests/soak/soak.c $(wildcard tests/soak/*.h) $(wildcard tests/c/*.h) $(HEADER) | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CWARN) -std=c11 -Iinclude -Itests/c -Itests/soak $< -o $@ $(LINK)

soak: build $(BUILD)/soak/soak
	$(SOAK_ENV) SOAK_SECONDS=$(SOAK_SECONDS) timeout $$(( $(SOAK_SECONDS) + 900 )) $(BUILD)/soak/soak

soak-smoke: build $(BUILD)/soak/soak
	$(SOAK_ENV) SOAK_SECONDS=5 $(RUN) $(BUILD)/soak/soak
	@echo "soak-smoke: 1 passed, 0 failed"

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
