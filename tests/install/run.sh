#!/usr/bin/env bash
# Installs bgjob into temporary prefixes and builds programs against the installed copy the
# ways a user's project would: with pkg-config (shared and static), and with a CMake
# project's find_package(bgjob). Also checks the layout (soname, version links), DESTDIR
# staging, a relocated prefix, version matching and uninstall.
#
#   tests/install/run.sh        (from the repository root; `make test-install` runs it)
# Tools from the environment: MAKE, CC, CMAKE, PKG_CONFIG. Ends with "install: N passed, M
# failed" and fails if any check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
MAKE=${MAKE:-make} CC=${CC:-gcc} CMAKE=${CMAKE:-cmake} PKG_CONFIG=${PKG_CONFIG:-pkg-config}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR=${VERSION%%.*} REST=${VERSION#*.} MINOR=${REST%%.*}
if [ "$MAJOR" = 0 ]; then SOVERSION=0.$MINOR; else SOVERSION=$MAJOR; fi
T=$(mktemp -d "${TMPDIR:-/tmp}/bgjob-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
# check NAME COMMAND...: runs the command, output to the log; counts the result.
check() {
    local name=$1; shift
    if "$@" >>"$T/log" 2>&1; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name"; tail -n 20 "$T/log" | sed 's/^/     /'
    fi
}
# runs NAME PROGRAM: the program must print the line hello.c prints for a healthy install.
runs() { [ "$("$1")" = "bgjob $VERSION: job Completed, output 42" ]; }
soname_of() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
needs() { readelf -d "$1" | grep -q "(NEEDED).*\[$2\]"; }
link_is() { [ -L "$1" ] && [ "$(readlink "$1")" = "$2" ]; }

P=$T/prefix L=$T/prefix/lib
check "make install PREFIX=..." $MAKE --no-print-directory install PREFIX="$P"
check "the library file carries the full version" test -f "$L/libbgjob.so.$VERSION" -a ! -L "$L/libbgjob.so.$VERSION"
check "libbgjob.so.$SOVERSION -> libbgjob.so.$VERSION" link_is "$L/libbgjob.so.$SOVERSION" "libbgjob.so.$VERSION"
check "libbgjob.so -> libbgjob.so.$SOVERSION" link_is "$L/libbgjob.so" "libbgjob.so.$SOVERSION"
check "its soname is libbgjob.so.$SOVERSION" test "$(soname_of "$L/libbgjob.so.$VERSION")" = "libbgjob.so.$SOVERSION"
check "libbgjob.a, bgjob.h, bgjob.hpp, bgjob.pc, the CMake package" test -f "$L/libbgjob.a" -a \
    -f "$P/include/bgjob.h" -a -f "$P/include/bgjob.hpp" -a -f "$L/pkgconfig/bgjob.pc" -a \
    -f "$L/cmake/bgjob/bgjobConfig.cmake" -a -f "$L/cmake/bgjob/bgjobConfigVersion.cmake"

# pkg-config, as `cc prog.c $(pkg-config --cflags --libs bgjob)`.
export PKG_CONFIG_PATH=$L/pkgconfig
check "pkg-config --modversion bgjob = $VERSION" test "$($PKG_CONFIG --modversion bgjob)" = "$VERSION"
check "pkg-config: build hello.c" $CC -std=c11 -Wall -Wextra -Werror tests/install/hello.c -o "$T/hello_pc" \
    $($PKG_CONFIG --cflags --libs bgjob) -Wl,-rpath,"$($PKG_CONFIG --variable=libdir bgjob)"
check "pkg-config: the program needs libbgjob.so.$SOVERSION (the soname)" needs "$T/hello_pc" "libbgjob.so.$SOVERSION"
check "pkg-config: the program runs" runs "$T/hello_pc"
check "pkg-config --static: build hello.c against libbgjob.a" $CC -std=c11 tests/install/hello.c -o "$T/hello_pc_static" \
    $($PKG_CONFIG --cflags bgjob) -L"$L" -Wl,-Bstatic -lbgjob -Wl,-Bdynamic \
    $($PKG_CONFIG --static --libs-only-l bgjob | sed 's/-lbgjob//')
check "pkg-config --static: the program needs no libbgjob.so" bash -c "! readelf -d '$T/hello_pc_static' | grep -q libbgjob"
check "pkg-config --static: the program runs" runs "$T/hello_pc_static"

# CMake: find_package(bgjob 0.1) and the imported targets, shared, static and C++.
B=$T/cmake-build
check "cmake: configure with find_package(bgjob $MAJOR.$MINOR)" $CMAKE -S tests/install/cmake -B "$B" \
    -DCMAKE_PREFIX_PATH="$P" -DBGJOB_WANT="$MAJOR.$MINOR" -DCMAKE_BUILD_TYPE=Release
check "cmake: build" $CMAKE --build "$B" -j 2
for prog in hello_shared hello_static hello_cpp; do check "cmake: $prog runs" runs "$B/$prog"; done
check "cmake: hello_shared needs libbgjob.so.$SOVERSION" needs "$B/hello_shared" "libbgjob.so.$SOVERSION"
check "cmake: hello_static needs no libbgjob.so" bash -c "! readelf -d '$B/hello_static' | grep -q libbgjob"
check "cmake: an incompatible version asked for is refused" bash -c "! $CMAKE -S tests/install/cmake \
    -B '$T/cmake-wrong' -DCMAKE_PREFIX_PATH='$P' -DBGJOB_WANT=$((MAJOR + 1)).0"

# The CMake package finds its files relative to itself: a moved prefix still works.
mv "$P" "$T/moved"
check "cmake: a relocated prefix configures and builds" bash -c "$CMAKE -S tests/install/cmake \
    -B '$T/cmake-moved' -DCMAKE_PREFIX_PATH='$T/moved' -DBGJOB_WANT=$MAJOR.$MINOR && $CMAKE --build '$T/cmake-moved' -j 2"
check "cmake: the relocated build runs" runs "$T/cmake-moved/hello_shared"

# DESTDIR stages the files under a root without touching the real prefix; uninstall removes them.
S=$T/stage
check "make install DESTDIR=... PREFIX=/opt/bgjob-test" $MAKE --no-print-directory install DESTDIR="$S" PREFIX=/opt/bgjob-test
check "DESTDIR: files under the stage, none in /opt/bgjob-test" test -f "$S/opt/bgjob-test/lib/libbgjob.so.$VERSION" -a ! -e /opt/bgjob-test
check "DESTDIR: bgjob.pc names the final prefix" grep -qx "prefix=/opt/bgjob-test" "$S/opt/bgjob-test/lib/pkgconfig/bgjob.pc"
check "make uninstall removes every file it installed" bash -c "$MAKE --no-print-directory uninstall \
    DESTDIR='$S' PREFIX=/opt/bgjob-test && test -z \"\$(find '$S' -type f -o -type l)\""

echo "install: $passed passed, $failed failed"
[ "$failed" = 0 ]
