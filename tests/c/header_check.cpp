// Proves include/bgjob.h is C++-clean: compiled as C++17 with -Wall -Wextra -Werror and
// linked against the library; it also runs one job through the header from C++.
#include "bgjob.h"

#include <cstdio>
#include <cstring>

extern "C" int32_t cpp_work(bgjob_context *ctx, void *) {
    return static_cast<int32_t>(bgjob_context_write_text(ctx, BGJOB_STREAM_OUTPUT, "from C++"));
}

int main() {
    bgjob_spec *spec = nullptr;
    if (bgjob_spec_new(&spec) != BGJOB_OK) return 1;
    if (bgjob_spec_set_work(spec, cpp_work, nullptr, nullptr) != BGJOB_OK) return 1;
    uint64_t id = 0;
    if (bgjob_start(spec, &id) != BGJOB_OK) return 1;
    bgjob_records *recs = nullptr;
    if (bgjob_receive(id, BGJOB_RECEIVE_WAIT | BGJOB_RECEIVE_AUTO_REMOVE, 0, BGJOB_INFINITE, &recs) != BGJOB_OK)
        return 1;
    bool ok = bgjob_records_count(recs) == 1 &&
              std::strcmp(reinterpret_cast<const char *>(bgjob_records_get(recs, 0)->data), "from C++") == 0;
    bgjob_records_free(recs);
    bgjob_job_state st;
    ok = ok && bgjob_get_state(id, &st) == BGJOB_E_NO_SUCH_JOB;
    std::printf("header_check (C++17): %d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
    return ok ? 0 : 1;
}
