// A tiny test harness for the C++ tests, modeled on tests/c/check.h: CHECK records a
// failure and goes on; each program ends with "<program>: N passed, M failed" and exits
// non-zero on any failure. An exception escaping a test fails that test, not the program.
#ifndef BGJOB_TEST_CHECK_HPP
#define BGJOB_TEST_CHECK_HPP

#include "bgjob.hpp"

#include <cstdio>
#include <exception>

namespace check {
inline int failures = 0;      // failed CHECKs
inline int passes = 0;        // tests without a failed CHECK
inline int failed_tests = 0;  // tests with one
inline const char* current = "";

inline void fail(const char* file, int line, const char* what, const char* detail = "") {
    std::fprintf(stderr, "  FAIL %s (%s:%d): %s%s%s\n", current, file, line, what, *detail ? " -> " : "", detail);
    ++failures;
}

// Runs one test; an exception escaping it is a failure (so tests call bgjob freely).
template <class Test>
void run(const char* name, Test test) {
    int before = failures;
    current = name;
    try {
        test();
    } catch (const bgjob::error& e) {
        std::fprintf(stderr, "  FAIL %s: escaped bgjob::error %s: %s\n", name, e.status_name(), e.what());
        ++failures;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "  FAIL %s: escaped exception: %s\n", name, e.what());
        ++failures;
    }
    if (failures == before) {
        ++passes;
        std::printf("  ok   %s\n", name);
    } else {
        ++failed_tests;
        std::printf("  FAIL %s\n", name);
    }
    std::fflush(stdout);
}

inline int summary(const char* program) {
    std::printf("%s: %d passed, %d failed\n", program, passes, failed_tests);
    return failures ? 1 : 0;
}
}  // namespace check

#define CHECK(cond)                                          \
    do {                                                     \
        if (!(cond)) check::fail(__FILE__, __LINE__, #cond); \
    } while (0)

// Checks that `expr` throws bgjob::error with status `want`.
#define CHECK_THROWS(expr, want)                                                     \
    do {                                                                             \
        try {                                                                        \
            (void)(expr);                                                            \
            check::fail(__FILE__, __LINE__, #expr, "did not throw");                 \
        } catch (const bgjob::error& check_e_) {                                     \
            if (check_e_.status() != (want))                                         \
                check::fail(__FILE__, __LINE__, #expr, check_e_.status_name());      \
        } catch (const std::exception& check_e_) {                                   \
            check::fail(__FILE__, __LINE__, #expr, check_e_.what());                 \
        }                                                                            \
    } while (0)

#define RUN_TEST(fn) check::run(#fn, fn)

#endif
