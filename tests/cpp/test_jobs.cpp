// Thread jobs through the C++ wrapper: lambda work and its records, exceptions failing a
// job, the callable's lifetime, waits with timeouts, stop, errors, RAII of the owning
// types, wait_any/wait_all, Get-Job filters, suspend/resume, input, parallel jobs, pools.
#include "support.hpp"

#include <algorithm>
#include <future>
#include <stdexcept>
#include <thread>
#include <type_traits>

using bgjob::Job;
using bgjob::JobState;
using bgjob::Stream;

// Work writes to several streams; every record comes back, in order, with its fields.
static void test_lambda_output_is_received() {
    Job job = bgjob::start({"cpp-output"}, [](bgjob::Context& ctx) {
        ctx.write("hello");
        ctx.progress(50, "Adding", "half way");
        ctx.write("careful", Stream::Warning);
        ctx.write(std::string("a\0b", 3));
        ctx.set_status_message("done soon");
    });
    CHECK(job.id() != 0);
    CHECK(job.wait(kLong));
    CHECK(job.state() == JobState::Completed);
    CHECK(job.name() == "cpp-output");
    bgjob::JobInfo info = job.info();
    CHECK(info.type_name() == "ThreadJob");
    CHECK(info.status_message() == "done soon");
    CHECK(info.has_more_data());
    CHECK(info.begin_time() && info.end_time() && *info.begin_time() <= *info.end_time());
    auto progress = info.progress();
    CHECK(progress && progress->percent_complete == 50 && progress->activity == "Adding" &&
          progress->status == "half way");

    std::vector<bgjob::Record> records = job.receive();
    CHECK(records.size() == 4);
    if (records.size() == 4) {
        CHECK(records[0].stream == Stream::Output && records[0].data == "hello");
        CHECK(records[0].percent_complete == -1 && !records[0].activity);
        CHECK(records[1].stream == Stream::Progress && records[1].percent_complete == 50);
        CHECK(records[1].activity == std::optional<std::string>("Adding") && records[1].data == "half way");
        CHECK(records[2].stream == Stream::Warning && records[2].data == "careful");
        CHECK(records[3].data == std::string("a\0b", 3));  // bytes, NUL included
        for (std::size_t i = 0; i < records.size(); ++i) {
            CHECK(records[i].job == job && records[i].has_data);
            if (i > 0) CHECK(records[i - 1].sequence < records[i].sequence);
        }
        CHECK(records[0].time() <= std::chrono::system_clock::now());
    }
    CHECK(job.receive().empty());  // consumed: each record handed out once
    CHECK(!job.info().has_more_data());
    job.remove();
}

// Keep copies; max takes at most that many and leaves the rest.
static void test_receive_keep_and_max() {
    Job job = bgjob::start([](bgjob::Context& ctx) {
        for (const char* t : {"1", "2", "3"}) ctx.write(t);
    });
    CHECK(job.wait(kLong));
    CHECK(job.receive(bgjob::ReceiveMode::Keep).size() == 3);
    CHECK(job.receive(bgjob::ReceiveMode::Keep).size() == 3);
    bgjob::ReceiveOptions two;
    two.max = 2;
    CHECK(texts(job.receive(two)) == (std::vector<std::string>{"1", "2"}));
    CHECK(texts(job.receive()) == std::vector<std::string>{"3"});
    job.remove();
}

// A receive that waits (with auto-remove) gets every record and removes the job.
static void test_receive_wait_auto_remove() {
    Gate gate;
    Job job = bgjob::start([&gate] { gate.wait(); });
    bgjob::ReceiveOptions poll;
    poll.wait = true;
    poll.timeout = 0ms;
    CHECK(job.receive(poll).empty());  // a wait that times out is not an error
    gate.open();
    bgjob::ReceiveOptions all;
    all.wait = true;
    all.timeout = kLong;
    all.auto_remove = true;
    CHECK(job.receive(all).empty());
    CHECK_THROWS(job.state(), BGJOB_E_NO_SUCH_JOB);
}

// An exception escaping the work fails the job with what() as the reason.
static void test_exception_fails_job_with_what() {
    Job job = bgjob::start([](bgjob::Context& ctx) {
        ctx.write("before");
        throw std::runtime_error("disk full");
    });
    CHECK(job.wait(kLong));
    bgjob::StateInfo info = job.state_info();
    CHECK(info.state == JobState::Failed);
    CHECK(info.reason == std::optional<std::string>("disk full"));
    CHECK(texts(job.receive()) == std::vector<std::string>{"before"});  // nothing lost
    job.remove();

    Job odd = bgjob::start([] { throw 42; });
    CHECK(odd.wait(kLong));
    CHECK(odd.state_info().reason == std::optional<std::string>("unknown C++ exception"));
    odd.remove();

    // A bgjob::error from inside the work (no input: not a parallel child) fails it too.
    Job misuse = bgjob::start([](bgjob::Context& ctx) { (void)ctx.input(); });
    CHECK(misuse.wait(kLong));
    bgjob::StateInfo m = misuse.state_info();
    CHECK(m.state == JobState::Failed && m.reason && !m.reason->empty());
    misuse.remove();

    // Context::fail fails a work that returns normally.
    Job failed = bgjob::start([](bgjob::Context& ctx) { ctx.fail("bad input"); });
    CHECK(failed.wait(kLong));
    CHECK(failed.state_info().reason == std::optional<std::string>("bad input"));
    failed.remove();

    // A message that is not UTF-8 still fails the job, saying so.
    Job bytes = bgjob::start([] { throw std::runtime_error("\xff\xfe"); });
    CHECK(bytes.wait(kLong));
    bgjob::StateInfo b = bytes.state_info();
    CHECK(b.state == JobState::Failed && b.reason && b.reason->find("UTF-8") != std::string::npos);
    bytes.remove();
}

// The callable (with a move-only capture) is destroyed exactly once: after its work ran,
// when a queued job is stopped before it ran, and with a spec that was never started.
static void test_callable_destroyed_exactly_once() {
    std::atomic<int> destroyed{0};
    std::atomic<int> runs{0};
    Job job = bgjob::start([t = Tracker(&destroyed), &runs] { runs++; });
    CHECK(job.wait(kLong));
    CHECK(runs == 1);
    CHECK(destroyed == 1);  // freed after the work returned, before the finished state
    job.remove();
    CHECK(destroyed == 1);

    // Queued behind a busy one-thread pool, then stopped: never runs, destroyed once.
    bgjob::Pool pool(1);
    Gate gate;
    bgjob::StartOptions on_pool;
    on_pool.pool = &pool;
    Job busy = bgjob::start(on_pool, [&gate] { gate.wait(); });
    std::atomic<int> queued_destroyed{0};
    Job queued = bgjob::start(on_pool, [t = Tracker(&queued_destroyed), &runs] { runs++; });
    CHECK(queued.stop(kLong));
    CHECK(queued.state() == JobState::Stopped);
    CHECK(queued_destroyed == 1);
    gate.open();
    CHECK(bgjob::wait_all({busy, queued}, kLong));
    busy.remove();
    queued.remove();
    CHECK(runs == 1 && queued_destroyed == 1);
    CHECK(pool.shutdown(kLong));

    // An unstarted spec frees its callable when it goes.
    std::atomic<int> unstarted{0};
    {
        bgjob::Spec spec;
        spec.work([t = Tracker(&unstarted), &runs] { runs++; });
        CHECK(unstarted == 0);
    }
    CHECK(unstarted == 1 && runs == 1);
}

// wait with a timeout answers false while the work is blocked, true once it is done.
static void test_wait_timeout_then_done() {
    Gate gate;
    Job job = bgjob::start([&gate] { gate.wait(); });
    CHECK(!job.wait(50ms));
    CHECK(!job.wait(0ms));  // a poll
    CHECK(!job.wait(-1s));  // negative: a poll too
    CHECK(!is_finished(job.state()));
    gate.open();
    CHECK(job.wait(kLong));
    CHECK(job.wait(0ms));
    CHECK(job.state() == JobState::Completed);
    job.remove();
}

// stop asks running work to stop; cooperative work sees it and the job ends Stopped.
static void test_stop_running_work() {
    std::promise<void> started;
    std::atomic<bool> saw_stop{false};
    Job job = bgjob::start([&](bgjob::Context& ctx) {
        started.set_value();
        while (!ctx.stop_requested()) std::this_thread::sleep_for(1ms);  // work, not sync
        saw_stop = true;
    });
    CHECK(started.get_future().wait_for(kLong) == std::future_status::ready);
    CHECK_THROWS(job.remove(), BGJOB_E_NOT_FINISHED);  // running: not without force
    CHECK(job.stop(kLong));
    CHECK(saw_stop);
    CHECK(job.state() == JobState::Stopped);
    CHECK(job.stop(0ms));  // stopping a finished job does nothing
    job.remove();
}

// stop with a short timeout on work that ignores it reports false; force-remove ends it.
static void test_stop_timeout_and_force_remove() {
    Gate gate;
    std::promise<void> started;
    Job job = bgjob::start([&] {
        started.set_value();
        gate.wait();
    });
    CHECK(started.get_future().wait_for(kLong) == std::future_status::ready);
    CHECK(!job.stop(10ms));
    CHECK(job.state() == JobState::Stopping);
    gate.open();
    job.remove(true);
    CHECK_THROWS(job.state(), BGJOB_E_NO_SUCH_JOB);
}

// A removed id throws bgjob::error carrying BGJOB_E_NO_SUCH_JOB and bgjob's message.
static void test_error_for_removed_job() {
    Job job = bgjob::start([] {});
    CHECK(job.wait(kLong));
    job.remove();
    try {
        job.state();
        check::fail(__FILE__, __LINE__, "state() of a removed job did not throw");
    } catch (const bgjob::error& e) {
        CHECK(e.status() == BGJOB_E_NO_SUCH_JOB);
        CHECK(std::string(e.status_name()) == "BGJOB_E_NO_SUCH_JOB");
        CHECK(std::string(e.what()) == bgjob_last_error_message());
        CHECK(!std::string(e.what()).empty());
        CHECK(e.os_error() == 0);
    }
    CHECK_THROWS(job.remove(), BGJOB_E_NO_SUCH_JOB);
    CHECK_THROWS(job.info(), BGJOB_E_NO_SUCH_JOB);
    CHECK_THROWS(job.receive(), BGJOB_E_NO_SUCH_JOB);
    CHECK_THROWS(job.wait(0ms), BGJOB_E_NO_SUCH_JOB);
    CHECK_THROWS(Job().state(), BGJOB_E_NO_SUCH_JOB);  // id 0 is never valid
    // A bgjob::error is a std::runtime_error.
    static_assert(std::is_base_of_v<std::runtime_error, bgjob::error>);
}

// The owning types are move-only; Job is a cheap value. A spec is consumed by start.
static void test_owning_types_are_move_only() {
    static_assert(!std::is_copy_constructible_v<bgjob::Spec> && std::is_nothrow_move_constructible_v<bgjob::Spec>);
    static_assert(!std::is_copy_constructible_v<bgjob::Pool> && std::is_nothrow_move_constructible_v<bgjob::Pool>);
    static_assert(!std::is_copy_constructible_v<bgjob::JobInfo> && std::is_move_constructible_v<bgjob::JobInfo>);
    static_assert(!std::is_copy_constructible_v<bgjob::EventQueue> && std::is_move_constructible_v<bgjob::EventQueue>);
    static_assert(!std::is_copy_constructible_v<bgjob::Subscription>);
    static_assert(!std::is_copy_constructible_v<bgjob::Context>);
    static_assert(std::is_trivially_copyable_v<Job> && sizeof(Job) == sizeof(std::uint64_t));

    bgjob::Spec spec;
    spec.name("cpp-moved").work([](bgjob::Context& ctx) { ctx.write("moved"); });
    bgjob::Spec moved = std::move(spec);
    CHECK(spec.native() == nullptr && moved.native() != nullptr);
    CHECK_THROWS(spec.start(), BGJOB_E_INVALID_ARGUMENT);  // moved from: empty
    Job job = moved.start();
    CHECK(moved.native() == nullptr);                            // consumed
    CHECK_THROWS(moved.name("again"), BGJOB_E_INVALID_ARGUMENT);  // and empty after
    CHECK_THROWS(moved.start(), BGJOB_E_INVALID_ARGUMENT);
    CHECK(job.wait(kLong));
    bgjob::JobInfo info = job.info();
    bgjob::JobInfo taken = std::move(info);
    CHECK(taken.name() == "cpp-moved" && taken.job() == job);
    CHECK(texts(job.receive()) == std::vector<std::string>{"moved"});
    job.remove();
    CHECK(taken.name() == "cpp-moved");  // the snapshot outlives its job
}

// An error half-way through a start leaves nothing behind: the callable is destroyed once.
static void test_error_mid_start_leaks_nothing() {
    std::atomic<int> destroyed{0};
    std::atomic<int> runs{0};
    // The name is not UTF-8: refused before the callable was moved into the spec.
    {
        auto work = [t = Tracker(&destroyed), &runs] { runs++; };
        CHECK_THROWS(bgjob::start({"\xff"}, std::move(work)), BGJOB_E_INVALID_ARGUMENT);
    }
    CHECK(destroyed == 1);
    // Work together with argv: refused by the start, which consumed the spec and its work.
    destroyed = 0;
    {
        bgjob::Spec spec;
        spec.work([t = Tracker(&destroyed), &runs] { runs++; }).argv({"true"});
        CHECK_THROWS(spec.start(), BGJOB_E_INVALID_ARGUMENT);
        CHECK(destroyed == 1);
    }
    CHECK(destroyed == 1 && runs == 0);
    // A spec without work.
    CHECK_THROWS(bgjob::Spec().start(), BGJOB_E_INVALID_ARGUMENT);
}

// wait_any returns the first job done; wait_all waits for every one.
static void test_wait_any_and_all() {
    Gate gate;
    Job slow = bgjob::start([&gate] { gate.wait(); });
    Job quick = bgjob::start([](bgjob::Context& ctx) { ctx.write("quick"); });
    std::optional<Job> first = bgjob::wait_any({slow, quick}, kLong);
    CHECK(first && *first == quick);
    CHECK(!bgjob::wait_all({slow, quick}, 20ms));
    CHECK(bgjob::wait_jobs({slow, quick}, bgjob::WaitMode::All, 0ms) == std::vector<Job>{quick});
    gate.open();
    CHECK(bgjob::wait_all({slow, quick}, kLong));
    CHECK(bgjob::wait_jobs({slow, quick}, bgjob::WaitMode::All, 0ms) == (std::vector<Job>{slow, quick}));
    CHECK(bgjob::wait_all({}, 0ms));
    CHECK(!bgjob::wait_any({}, 0ms));
    slow.remove();
    quick.remove();

    // Nothing done in time: none.
    Gate never;
    Job stuck = bgjob::start([&never] { never.wait(); });
    CHECK(!bgjob::wait_any({stuck}, 10ms));
    never.open();
    CHECK(bgjob::wait_any({stuck}, kLong) == std::optional<Job>(stuck));
    stuck.remove();
}

// get_jobs lists by name wildcard, state, newest, sorted by id.
static void test_get_jobs_with_filter() {
    Job a = bgjob::start({"cppfilter-a"}, [] {});
    Job b = bgjob::start({"cppfilter-b"}, [] { throw std::runtime_error("no"); });
    Job other = bgjob::start({"unrelated"}, [] {});
    CHECK(bgjob::wait_all({a, b, other}, kLong));
    bgjob::JobFilter by_name;
    by_name.name = "CPPFILTER-*";  // case-insensitive
    CHECK(bgjob::get_jobs(by_name) == (std::vector<Job>{a, b}));
    by_name.state = JobState::Failed;
    CHECK(bgjob::get_jobs(by_name) == std::vector<Job>{b});
    bgjob::JobFilter newest;
    newest.newest = 1;
    CHECK(bgjob::get_jobs(newest) == std::vector<Job>{other});
    CHECK(bgjob::get_jobs().size() == 3);
    CHECK(bgjob::get_job_by_instance_id(a.info().instance_id()) == a);
    for (Job j : bgjob::get_jobs()) j.remove();
    CHECK(bgjob::get_jobs().empty());
}

// Suspend parks the work at its checkpoint (a wait stops at Suspended); resume goes on.
static void test_suspend_and_resume() {
    std::promise<void> started;
    std::atomic<bool> release{false};
    std::atomic<int> checkpoints{0};
    Job job = bgjob::start([&](bgjob::Context& ctx) {
        started.set_value();
        while (!release && !ctx.stop_requested()) {
            ctx.checkpoint();
            checkpoints++;
            std::this_thread::sleep_for(1ms);  // work, not sync
        }
    });
    CHECK(started.get_future().wait_for(kLong) == std::future_status::ready);
    job.suspend();
    CHECK(job.wait(kLong));  // Suspended is persistent: a wait stops there
    CHECK(job.state() == JobState::Suspended);
    CHECK(!job.wait(10ms, true));  // forced: only a finished state counts
    int parked = checkpoints;
    job.resume();
    release = true;
    CHECK(job.wait(kLong, true));
    CHECK(job.state() == JobState::Completed);
    CHECK(checkpoints >= parked);
    job.remove();
}

// A Blocked job shows its prompt; a wait on it throws BGJOB_E_BLOCKED; input answers it.
static void test_read_input_and_send_input() {
    Job job = bgjob::start([](bgjob::Context& ctx) { ctx.write("hello " + ctx.read_input("name?")); });
    CHECK_THROWS(job.wait(kLong), BGJOB_E_BLOCKED);
    CHECK(job.state() == JobState::Blocked);
    CHECK(job.info().prompt() == std::optional<std::string>("name?"));
    job.send_input("Ada");
    CHECK(job.wait(kLong));
    CHECK(texts(job.receive()) == std::vector<std::string>{"hello Ada"});
    CHECK_THROWS(job.send_input("late"), BGJOB_E_INVALID_STATE);
    job.remove();
}

// A parallel job: one child per input, each reading its input; the parent's receive
// returns the children's records.
static void test_parallel_job() {
    bgjob::StartOptions options;
    options.name = "cpp-parallel";
    options.throttle_limit = 2;
    Job parent = bgjob::start_parallel(options, {"1", "2", "3"}, [](bgjob::Context& ctx) {
        ctx.write(std::to_string(std::stoi(std::string(ctx.input())) * 10));
    });
    CHECK(parent.wait(kLong));
    bgjob::JobInfo info = parent.info();
    CHECK(info.state() == JobState::Completed);
    CHECK(info.type_name() == "ParallelJob");
    std::vector<Job> children = info.children();
    CHECK(children.size() == 3);
    if (children.size() == 3) {
        CHECK(children[0].id() == parent.id() + 1 && children[2].id() == parent.id() + 3);
        CHECK(children[1].info().parent() == std::optional<Job>(parent));
    }
    std::vector<bgjob::Record> records = parent.receive();
    std::vector<std::string> values = texts(records);
    std::sort(values.begin(), values.end());
    CHECK(values == (std::vector<std::string>{"10", "20", "30"}));
    for (const bgjob::Record& r : records) CHECK(r.job != parent && r.job.info().parent() == std::optional<Job>(parent));
    CHECK_THROWS(children.at(0).remove(), BGJOB_E_CHILD_JOB);
    parent.remove();
}

// Jobs run on an explicit pool; an inline run runs here and returns the finished job.
static void test_pool_and_run_inline() {
    bgjob::Pool pool(2, 1);
    bgjob::Spec spec;
    spec.pool(pool).work([](bgjob::Context& ctx) { ctx.write("pooled"); });
    Job pooled = spec.start();
    CHECK(pooled.wait(kLong));
    CHECK(texts(pooled.receive()) == std::vector<std::string>{"pooled"});
    pooled.remove();

    std::thread::id here = std::this_thread::get_id();
    std::thread::id ran_on;
    Job inline_job = bgjob::Spec().work([&] { ran_on = std::this_thread::get_id(); }).run_inline();
    CHECK(ran_on == here);
    CHECK(inline_job.state() == JobState::Completed);
    inline_job.remove();

    CHECK(pool.shutdown(kLong));
    bgjob::StartOptions on_pool;
    on_pool.pool = &pool;
    CHECK_THROWS(bgjob::start(on_pool, [] {}), BGJOB_E_SHUT_DOWN);
}

// Durations convert to whole milliseconds, rounding up; forever and polls are exact.
static void test_timeout_conversion() {
    using bgjob::Timeout;
    CHECK(Timeout(1us).milliseconds() == 1);  // never a poll by rounding
    CHECK(Timeout(1500us).milliseconds() == 2);
    CHECK(Timeout(2s).milliseconds() == 2000);
    CHECK(Timeout(std::chrono::duration<double>(0.25)).milliseconds() == 250);
    CHECK(Timeout(0ms).milliseconds() == 0);
    CHECK(Timeout(-3s).milliseconds() == 0);
    CHECK(bgjob::forever.is_infinite() && bgjob::forever.milliseconds() == BGJOB_INFINITE);
    CHECK(Timeout(std::chrono::hours::max()).is_infinite());
    CHECK(!Timeout(std::chrono::hours(24 * 365)).is_infinite());
}

// Names and printing of states and streams.
static void test_names() {
    CHECK(std::string(bgjob::to_string(JobState::AtBreakpoint)) == "AtBreakpoint");
    CHECK(std::string(bgjob::to_string(Stream::Information)) == "Information");
    CHECK(bgjob::is_finished(JobState::Stopped) && !bgjob::is_finished(JobState::Suspended));
    CHECK(std::string(bgjob::version()) == bgjob_version());
}

static void test_repository_is_empty_at_the_end() { CHECK(repository_size() == 0); }

int main() {
    RUN_TEST(test_lambda_output_is_received);
    RUN_TEST(test_receive_keep_and_max);
    RUN_TEST(test_receive_wait_auto_remove);
    RUN_TEST(test_exception_fails_job_with_what);
    RUN_TEST(test_callable_destroyed_exactly_once);
    RUN_TEST(test_wait_timeout_then_done);
    RUN_TEST(test_stop_running_work);
    RUN_TEST(test_stop_timeout_and_force_remove);
    RUN_TEST(test_error_for_removed_job);
    RUN_TEST(test_owning_types_are_move_only);
    RUN_TEST(test_error_mid_start_leaks_nothing);
    RUN_TEST(test_wait_any_and_all);
    RUN_TEST(test_get_jobs_with_filter);
    RUN_TEST(test_suspend_and_resume);
    RUN_TEST(test_read_input_and_send_input);
    RUN_TEST(test_parallel_job);
    RUN_TEST(test_pool_and_run_inline);
    RUN_TEST(test_timeout_conversion);
    RUN_TEST(test_names);
    RUN_TEST(test_repository_is_empty_at_the_end);
    // Every bgjob thread gone before exit, so valgrind sees no live worker.
    CHECK(bgjob::shutdown(bgjob::forever));
    return check::summary("test_jobs");
}
