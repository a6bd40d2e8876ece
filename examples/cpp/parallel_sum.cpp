// parallel_sum: the sum of the squares 1..N, computed by a parallel job (PowerShell's
// ForEach-Object -Parallel -AsJob) with one child job per slice, then checked against the
// closed form N(N+1)(2N+1)/6.
//
// Build (from the repository root, after `make build`):
//   g++ -std=c++17 -Iinclude -Ibindings/cpp examples/cpp/parallel_sum.cpp -o parallel_sum
//       -Ltarget/release -Wl,-rpath,$PWD/target/release -lbgjob -pthread
#include "bgjob.hpp"

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

int main() {
    using namespace std::chrono_literals;
    const std::uint64_t n = 3'000'000;  // the sum stays below 2^64
    const std::uint64_t slices = 8;

    // One input per slice, "first last"; each child reads its own.
    std::vector<std::string> inputs;
    for (std::uint64_t k = 0; k < slices; ++k)
        inputs.push_back(std::to_string(k * n / slices + 1) + " " + std::to_string((k + 1) * n / slices));

    bgjob::StartOptions options;
    options.name = "sum-of-squares";
    options.throttle_limit = 4;  // at most 4 slices at once
    options.on_state_changed = [](const bgjob::StateEvent& e) {
        std::printf("  %s: %s -> %s\n", e.job.name().c_str(), bgjob::to_string(e.previous_state_info.state),
                    bgjob::to_string(e.state_info.state));
    };

    bgjob::Job job = bgjob::start_parallel(options, inputs, [](bgjob::Context& ctx) {
        std::uint64_t first = 0, last = 0;
        if (std::sscanf(std::string(ctx.input()).c_str(), "%" SCNu64 " %" SCNu64, &first, &last) != 2)
            throw std::invalid_argument("bad slice: " + std::string(ctx.input()));
        std::uint64_t sum = 0;
        for (std::uint64_t i = first; i <= last; ++i) {
            if (ctx.stop_requested()) return;
            sum += i * i;
        }
        ctx.write(std::to_string(sum));
    });

    if (!job.wait(60s)) {
        std::printf("timed out; stopping\n");
        job.stop(5s);
    }
    bgjob::JobInfo info = job.info();
    std::printf("%s is %s (%s)\n", info.name().c_str(), bgjob::to_string(info.state()), info.status_message().c_str());

    // Receive from the parent: its children's records, in time order.
    std::uint64_t total = 0;
    std::size_t parts = 0;
    for (const bgjob::Record& r : job.receive()) {
        if (r.stream != bgjob::Stream::Output) continue;
        total += std::stoull(r.data);
        ++parts;
    }
    job.remove();
    bgjob::shutdown(5s);

    // N(N+1)(2N+1)/6 without overflow: divide by 2 and by 3 first, where they go exactly.
    std::uint64_t half = n * (n + 1) / 2, odd = 2 * n + 1;
    std::uint64_t expected = half % 3 == 0 ? half / 3 * odd : half * (odd / 3);
    bool ok = parts == slices && expected == total;
    std::printf("sum of squares 1..%" PRIu64 " = %" PRIu64 " from %zu child jobs; closed form agrees: %s\n", n,
                total, parts, ok ? "yes" : "NO");
    return ok ? 0 : 1;
}
