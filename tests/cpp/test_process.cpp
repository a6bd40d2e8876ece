// Process jobs through the C++ wrapper (PowerShell's Start-Job): output and error lines,
// environment, working directory, stdin, exit codes, a start refused by the OS, stop,
// callbacks and an inline run.
#include "support.hpp"

#include <cerrno>

using bgjob::Job;
using bgjob::JobState;
using bgjob::Stream;

// A receive that waits until `n` records are there (or the job finished).
static std::vector<bgjob::Record> receive_at_least(Job job, std::size_t n) {
    bgjob::ReceiveOptions options;
    options.wait = true;
    options.max = n;
    options.timeout = kLong;
    return job.receive(options);
}

// stdout lines are Output records, stderr lines Error records; exit 0 completes.
static void test_process_output() {
    bgjob::ProcessOptions options;
    options.name = "cpp-process";
    Job job = bgjob::start_process({"sh", "-c", "echo one; echo two; echo oops >&2; printf tail"}, options);
    CHECK(job.wait(kLong));
    bgjob::JobInfo info = job.info();
    CHECK(info.state() == JobState::Completed);
    CHECK(info.type_name() == "ProcessJob");
    CHECK(info.name() == "cpp-process");
    CHECK(info.command().find("echo one") != std::string::npos);
    std::vector<bgjob::Record> records = job.receive();
    CHECK(texts(records) == (std::vector<std::string>{"one", "two", "tail"}));
    CHECK(texts(records, Stream::Error) == std::vector<std::string>{"oops"});
    job.remove();
}

// The environment (set, unset), working directory and stdin reach the process.
static void test_process_env_cwd_stdin() {
    bgjob::ProcessOptions options;
    options.env = {{"BGJOB_CPP_FOO", "bar"}};
    options.unset_env = {"HOME"};
    options.working_directory = "/";
    options.standard_input = "line from stdin\n";
    Job job = bgjob::start_process({"sh", "-c", "echo \"$BGJOB_CPP_FOO\"; echo \"${HOME-unset}\"; pwd; cat"}, options);
    CHECK(job.wait(kLong));
    CHECK(job.state() == JobState::Completed);
    CHECK(texts(job.receive()) == (std::vector<std::string>{"bar", "unset", "/", "line from stdin"}));
    job.remove();

    // A cleared environment passes only what is set.
    bgjob::ProcessOptions bare;
    bare.clear_env = true;
    bare.env = {{"ONLY", "this"}};
    Job env_job = bgjob::start_process({"/usr/bin/env"}, bare);
    CHECK(env_job.wait(kLong));
    CHECK(texts(env_job.receive()) == std::vector<std::string>{"ONLY=this"});
    env_job.remove();
}

// A non-zero exit fails the job with the code as the reason; a missing directory throws at
// the start. (A program that cannot be exec'd is left to the C tests: under valgrind the
// forked child reports the parent's heap as its own leaks before it exits.)
static void test_process_failures() {
    Job job = bgjob::start_process({"sh", "-c", "echo partial; exit 3"});
    CHECK(job.wait(kLong));
    bgjob::StateInfo info = job.state_info();
    CHECK(info.state == JobState::Failed);
    CHECK(info.reason == std::optional<std::string>("exited with code 3"));
    CHECK(texts(job.receive()) == std::vector<std::string>{"partial"});  // nothing lost
    job.remove();

    bgjob::ProcessOptions nowhere;
    nowhere.working_directory = "/nonexistent/bgjob-cpp-test";
    try {
        bgjob::start_process({"true"}, nowhere);
        check::fail(__FILE__, __LINE__, "a missing working directory did not throw");
    } catch (const bgjob::error& e) {
        CHECK(e.status() == BGJOB_E_SYSTEM);
        CHECK(e.os_error() == ENOENT);
        CHECK(std::string(e.what()).find("/nonexistent/bgjob-cpp-test") != std::string::npos);
    }
    CHECK(repository_size() == 0);  // nothing left behind

    CHECK_THROWS(bgjob::start_process({}), BGJOB_E_INVALID_ARGUMENT);
}

// Stop sends SIGTERM to a running process; the job ends Stopped. The callbacks see it.
static void test_process_stop_and_callbacks() {
    EventLog log;
    bgjob::ProcessOptions options;
    options.on_state_changed = log.callback();
    options.stop_grace = std::chrono::milliseconds(5000);
    Job job = bgjob::start_process({"sh", "-c", "echo ready; exec sleep 60"}, options);
    // The process said it runs: a real wait (receive blocks until the record is there).
    CHECK(texts(receive_at_least(job, 1)) == std::vector<std::string>{"ready"});
    CHECK(job.state() == JobState::Running);
    CHECK(job.stop(kLong));
    CHECK(job.state() == JobState::Stopped);
    CHECK(log.moves_are({{JobState::NotStarted, JobState::Running},
                         {JobState::Running, JobState::Stopping},
                         {JobState::Stopping, JobState::Stopped}}));
    job.remove();
}

// Chunk mode hands the bytes as read; an inline run runs here and returns finished.
static void test_process_chunks_and_inline() {
    bgjob::Spec spec;
    spec.argv({"printf", "a\\nb"}).output_mode(bgjob::OutputMode::Chunks);
    Job job = spec.run_inline();
    CHECK(job.state() == JobState::Completed);
    std::string all;
    for (const std::string& chunk : texts(job.receive())) all += chunk;
    CHECK(all == "a\nb");
    job.remove();
}

static void test_repository_is_empty_at_the_end() { CHECK(repository_size() == 0); }

int main() {
    RUN_TEST(test_process_output);
    RUN_TEST(test_process_env_cwd_stdin);
    RUN_TEST(test_process_failures);
    RUN_TEST(test_process_stop_and_callbacks);
    RUN_TEST(test_process_chunks_and_inline);
    RUN_TEST(test_repository_is_empty_at_the_end);
    CHECK(bgjob::shutdown(bgjob::forever));
    return check::summary("test_process");
}
