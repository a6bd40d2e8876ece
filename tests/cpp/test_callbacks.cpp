// State-change callbacks through the C++ wrapper: the order of changes, records readable
// in the finished callback, the std::function freed on remove, exceptions thrown by
// callbacks kept out of C (the error handler gets them), per-job and repository-wide
// subscriptions, and the event queue.
#include "support.hpp"

#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

using bgjob::Job;
using bgjob::JobState;
using Moves = std::vector<std::pair<JobState, JobState>>;

// What the test error handler saw: a plain function (the handler type is a function
// pointer), so its log is global.
static std::mutex g_errors_mu;
static std::vector<std::pair<Job, std::string>> g_errors;

static void record_callback_error(Job job, std::exception_ptr error) {
    std::string what;
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
        what = "(not a std::exception)";
    }
    std::lock_guard<std::mutex> lock(g_errors_mu);
    g_errors.emplace_back(job, what);
}

static std::vector<std::pair<Job, std::string>> take_errors() {
    std::lock_guard<std::mutex> lock(g_errors_mu);
    return std::exchange(g_errors, {});
}

// A handler that throws itself: its exception is dropped too.
static void throwing_handler(Job, std::exception_ptr) { throw std::logic_error("handler fails"); }

// Started with a spec callback: it sees every change, in order, with reasons.
static void test_callbacks_see_states_in_order() {
    EventLog completed_log;
    bgjob::StartOptions options;
    options.on_state_changed = completed_log.callback();
    Job completed = bgjob::start(options, [] {});
    CHECK(completed.wait(kLong));  // wait returns after the callbacks of the change
    CHECK(completed_log.moves_are(Moves{{JobState::NotStarted, JobState::Running},
                                        {JobState::Running, JobState::Completed}}));
    for (const bgjob::StateEvent& e : completed_log.events()) CHECK(e.job == completed && !e.state_info.reason);
    completed.remove();

    EventLog failed_log;
    options.on_state_changed = failed_log.callback();
    Job failed = bgjob::start(options, [] { throw std::runtime_error("boom"); });
    CHECK(failed.wait(kLong));
    CHECK(failed_log.moves_are(Moves{{JobState::NotStarted, JobState::Running},
                                     {JobState::Running, JobState::Failed}}));
    std::vector<bgjob::StateEvent> events = failed_log.events();
    CHECK(!events.empty() && events.back().state_info.reason == std::optional<std::string>("boom"));
    failed.remove();

    EventLog stopped_log;
    options.on_state_changed = stopped_log.callback();
    std::promise<void> started;
    Job stopped = bgjob::start(options, [&](bgjob::Context& ctx) {
        started.set_value();
        while (!ctx.stop_requested()) std::this_thread::sleep_for(1ms);  // work, not sync
    });
    CHECK(started.get_future().wait_for(kLong) == std::future_status::ready);
    CHECK(stopped.stop(kLong));
    CHECK(stopped_log.moves_are(Moves{{JobState::NotStarted, JobState::Running},
                                      {JobState::Running, JobState::Stopping},
                                      {JobState::Stopping, JobState::Stopped}}));
    stopped.remove();

    // Queued behind a busy one-thread pool and stopped: straight to Stopped.
    bgjob::Pool pool(1);
    Gate gate;
    bgjob::StartOptions on_pool;
    on_pool.pool = &pool;
    Job busy = bgjob::start(on_pool, [&gate] { gate.wait(); });
    EventLog queued_log;
    on_pool.on_state_changed = queued_log.callback();
    Job queued = bgjob::start(on_pool, [] {});
    CHECK(queued.stop(kLong));
    CHECK(queued_log.moves_are(Moves{{JobState::NotStarted, JobState::Stopped}}));
    gate.open();
    CHECK(busy.wait(kLong));
    busy.remove();
    queued.remove();
    CHECK(pool.shutdown(kLong));
}

// The Completed callback can receive every record the work wrote.
static void test_completed_callback_receives_everything() {
    std::vector<std::string> seen;
    bgjob::StartOptions options;
    options.on_state_changed = [&seen](const bgjob::StateEvent& e) {
        if (e.state_info.state == JobState::Completed) seen = texts(e.job.receive(bgjob::ReceiveMode::Keep));
    };
    Job job = bgjob::start(options, [](bgjob::Context& ctx) {
        for (int i = 0; i < 50; ++i) ctx.write(std::to_string(i));
    });
    CHECK(job.wait(kLong));
    CHECK(seen.size() == 50 && !seen.empty() && seen.front() == "0" && seen.back() == "49");
    job.remove();
}

// The callback's std::function (and what it captured) is freed once, when the job goes.
static void test_callback_freed_on_remove() {
    auto token = std::make_shared<int>(7);
    Job job;
    {
        bgjob::StartOptions options;
        options.on_state_changed = [token](const bgjob::StateEvent&) {};
        job = bgjob::start(options, [] {});
    }  // the options' copy is gone; bgjob holds the only other one
    CHECK(job.wait(kLong));
    CHECK(token.use_count() == 2);
    job.remove();
    CHECK(token.use_count() == 1);
}

// Exceptions thrown by callbacks never reach C: the job goes on, the handler gets them.
static void test_callback_exceptions_do_not_leak() {
    bgjob::CallbackErrorHandler previous = bgjob::set_callback_error_handler(record_callback_error);
    take_errors();
    EventLog after;  // a second callback, registered after the throwing one, still runs
    bgjob::Spec spec;
    spec.on_state_changed([](const bgjob::StateEvent& e) {
            if (e.state_info.state == JobState::Running) throw std::runtime_error("callback boom");
            throw 7;  // not a std::exception
        })
        .on_state_changed(after.callback())
        .work([](bgjob::Context& ctx) { ctx.write("still here"); });
    Job job = spec.start();
    CHECK(job.wait(kLong));
    CHECK(job.state() == JobState::Completed);
    CHECK(texts(job.receive()) == std::vector<std::string>{"still here"});
    CHECK(after.moves_are(Moves{{JobState::NotStarted, JobState::Running}, {JobState::Running, JobState::Completed}}));
    auto errors = take_errors();
    CHECK(errors.size() == 2);
    if (errors.size() == 2) {
        CHECK(errors[0].first == job && errors[0].second == "callback boom");
        CHECK(errors[1].first == job && errors[1].second == "(not a std::exception)");
    }
    job.remove();

    // A repository-wide callback that throws, handled by a handler that throws too: both
    // dropped (a line on stderr), the job unharmed.
    bgjob::set_callback_error_handler(throwing_handler);
    {
        bgjob::Subscription any = bgjob::on_any_state_changed([](const bgjob::StateEvent&) {
            throw std::runtime_error("any boom");
        });
        Job other = bgjob::start([] {});
        CHECK(other.wait(kLong));
        CHECK(other.state() == JobState::Completed);
        other.remove();
    }
    // nullptr restores the default (stderr); the previous one is returned.
    CHECK(bgjob::set_callback_error_handler(nullptr) == throwing_handler);
    bgjob::set_callback_error_handler(previous);
}

// A subscription made after the start sees the later changes, until it is destroyed.
static void test_job_subscription() {
    Gate gate;
    Job job = bgjob::start([&gate] { gate.wait(); });
    auto token = std::make_shared<int>(0);
    EventLog log;
    {
        bgjob::Subscription sub = job.on_state_changed([&log, token](const bgjob::StateEvent& e) { log.add(e); });
        CHECK(static_cast<bool>(sub));
        CHECK(token.use_count() == 2);
        gate.open();
        CHECK(job.wait(kLong));
        std::vector<bgjob::StateEvent> events = log.events();
        CHECK(!events.empty() && events.back().state_info.state == JobState::Completed);
    }
    CHECK(token.use_count() == 1);  // unregistered and freed by the destructor
    job.remove();

    // Unregistered before the change: not called. Subscribed once the work runs, so
    // the NotStarted -> Running change (and its callbacks) is over: Completed is next.
    Gate gate2, running2;
    Job job2 = bgjob::start([&gate2, &running2] {
        running2.open();
        gate2.wait();
    });
    CHECK(running2.wait());
    std::atomic<int> calls{0};
    bgjob::Subscription sub2 = job2.on_state_changed([&calls](const bgjob::StateEvent&) { calls++; });
    bgjob::Subscription moved = std::move(sub2);
    CHECK(!sub2 && moved);
    moved.unregister();
    gate2.open();
    CHECK(job2.wait(kLong));
    CHECK(calls == 0);
    job2.remove();

    // Released: lives until the job is removed.
    auto kept = std::make_shared<int>(0);
    Job job3 = bgjob::start([] {});
    job3.on_state_changed([kept](const bgjob::StateEvent&) {}).release();
    CHECK(job3.wait(kLong));
    CHECK(kept.use_count() == 2);
    job3.remove();
    CHECK(kept.use_count() == 1);

    // An empty std::function is refused up front; an unknown job throws (and the
    // callback handed over is freed all the same).
    CHECK_THROWS(bgjob::Spec().on_state_changed({}), BGJOB_E_INVALID_ARGUMENT);
    CHECK_THROWS(job3.on_state_changed([kept](const bgjob::StateEvent&) {}), BGJOB_E_NO_SUCH_JOB);
    CHECK(kept.use_count() == 1);
}

// A repository-wide subscription sees every job's changes.
static void test_any_state_changed() {
    EventLog log;
    auto token = std::make_shared<int>(0);
    Job a, b;
    {
        bgjob::Subscription sub = bgjob::on_any_state_changed([&log, token](const bgjob::StateEvent& e) { log.add(e); });
        a = bgjob::start([] {});
        b = bgjob::start([] {});
        CHECK(bgjob::wait_all({a, b}, kLong));
    }
    CHECK(token.use_count() == 1);
    int finished_a = 0, finished_b = 0;
    for (const bgjob::StateEvent& e : log.events()) {
        if (e.state_info.state == JobState::Completed) (e.job == a ? finished_a : finished_b)++;
    }
    CHECK(finished_a == 1 && finished_b == 1);
    a.remove();
    b.remove();
}

// The event queue hands the changes out on this thread, in order.
static void test_event_queue() {
    Gate gate;
    Job job = bgjob::start([&gate] { gate.wait(); });
    bgjob::EventQueue queue = bgjob::EventQueue::open({job});
    bgjob::EventQueue nothing = bgjob::EventQueue::open({});
    CHECK(queue.fd() >= 0);
    gate.open();
    CHECK(job.wait(kLong));
    std::vector<JobState> states;
    while (std::optional<bgjob::StateEvent> e = queue.next()) {
        CHECK(e->job == job);
        states.push_back(e->state_info.state);
    }
    CHECK(!states.empty() && states.back() == JobState::Completed);
    CHECK(!nothing.next());  // an empty list watches nothing, not every job
    job.remove();
}

static void test_repository_is_empty_at_the_end() { CHECK(repository_size() == 0); }

int main() {
    RUN_TEST(test_callbacks_see_states_in_order);
    RUN_TEST(test_completed_callback_receives_everything);
    RUN_TEST(test_callback_freed_on_remove);
    RUN_TEST(test_callback_exceptions_do_not_leak);
    RUN_TEST(test_job_subscription);
    RUN_TEST(test_any_state_changed);
    RUN_TEST(test_event_queue);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK(bgjob::shutdown(bgjob::forever));
    return check::summary("test_callbacks");
}
