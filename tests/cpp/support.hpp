// Helpers shared by the C++ tests: a gate that work blocks on, a move-only object that
// counts its destruction, and a thread-safe log of state events. Include after check.hpp.
#ifndef BGJOB_TEST_SUPPORT_HPP
#define BGJOB_TEST_SUPPORT_HPP

#include "check.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

// Generous bound for anything that should happen quickly, even under valgrind.
inline constexpr std::chrono::seconds kLong{60};

// A one-way gate: work waits on it, the test opens it. A real wait (mutex + condition),
// bounded so that a broken test fails instead of hanging.
class Gate {
public:
    void open() {
        std::lock_guard<std::mutex> lock(mu_);
        open_ = true;
        cv_.notify_all();
    }
    bool wait(std::chrono::milliseconds timeout = kLong) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return open_; });
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = false;
};

// Move-only; counts how often a live (not moved-from) instance is destroyed, so a test
// can tell that the one callable bgjob held was destroyed exactly once.
class Tracker {
public:
    explicit Tracker(std::atomic<int>* destroyed) : destroyed_(destroyed) {}
    Tracker(Tracker&& other) noexcept : destroyed_(std::exchange(other.destroyed_, nullptr)) {}
    Tracker& operator=(Tracker&&) = delete;
    Tracker(const Tracker&) = delete;
    ~Tracker() {
        if (destroyed_) destroyed_->fetch_add(1);
    }

private:
    std::atomic<int>* destroyed_;
};

// A thread-safe log of (previous, new) states and reasons seen by a callback.
class EventLog {
public:
    void add(const bgjob::StateEvent& e) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(e);
    }
    std::vector<bgjob::StateEvent> events() {
        std::lock_guard<std::mutex> lock(mu_);
        return events_;
    }
    // Whether the moves seen are exactly `want`, as (previous, new) pairs.
    bool moves_are(const std::vector<std::pair<bgjob::JobState, bgjob::JobState>>& want) {
        std::vector<bgjob::StateEvent> seen = events();
        if (seen.size() != want.size()) return false;
        for (std::size_t i = 0; i < seen.size(); ++i)
            if (seen[i].previous_state_info.state != want[i].first || seen[i].state_info.state != want[i].second)
                return false;
        return true;
    }
    bgjob::StateCallback callback() {
        return [this](const bgjob::StateEvent& e) { add(e); };
    }

private:
    std::mutex mu_;
    std::vector<bgjob::StateEvent> events_;
};

// The texts of the records on `stream`, in order.
inline std::vector<std::string> texts(const std::vector<bgjob::Record>& records,
                                      bgjob::Stream stream = bgjob::Stream::Output) {
    std::vector<std::string> out;
    for (const bgjob::Record& r : records)
        if (r.stream == stream) out.push_back(r.data);
    return out;
}

// Every job of the repository, children included (for the "nothing left" checks).
inline std::size_t repository_size() {
    bgjob::JobFilter all;
    all.include_children = true;
    return bgjob::get_jobs(all).size();
}

#endif
