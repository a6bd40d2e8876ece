// bgjob.hpp: a header-only C++17 face of bgjob (PowerShell's background-job model) over its
// C ABI, include/bgjob.h. Link with -lbgjob -pthread.
//
// The rules this file keeps, and why:
// - Every opaque C object is owned by a move-only handle (`detail::Handle`, a unique_ptr
//   with the matching `_free`), taken the moment C hands it over, so an exception thrown
//   half-way through any function leaks nothing.
// - Nothing unwinds through C: every function C calls back (work, state callbacks,
//   finalizers) is `noexcept` and catches everything. An exception escaping a job's work
//   fails that job with `what()` as its reason; one escaping a state-change callback goes
//   to the callback error handler (`set_callback_error_handler`; by default a line on
//   stderr) and the job goes on as if the callback had returned.
// - User code handed to C (a work callable, a callback) moves to the heap and is deleted
//   by the C finalizer, which bgjob runs exactly once.
// - A failing C call throws `bgjob::error` with the status and bgjob's own message; the
//   two expected "not yet" answers (a wait or stop that timed out) return false instead.
#ifndef BGJOB_HPP
#define BGJOB_HPP

#include "bgjob.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace bgjob {

// ---------------------------------------------------------------------------------------
// Enumerations: the C numbers, typed so that a state cannot be passed as a stream.

/// A job state; the numbers are PowerShell's `JobState` (and the C `BGJOB_STATE_*`).
enum class JobState : bgjob_job_state {
    NotStarted = BGJOB_STATE_NOT_STARTED,     ///< Created and queued; its work has not begun.
    Running = BGJOB_STATE_RUNNING,            ///< Its work is running.
    Completed = BGJOB_STATE_COMPLETED,        ///< Its work returned normally (finished).
    Failed = BGJOB_STATE_FAILED,              ///< Its work failed; see the reason (finished).
    Stopped = BGJOB_STATE_STOPPED,            ///< It was stopped (finished).
    Blocked = BGJOB_STATE_BLOCKED,            ///< It waits for input from the host.
    Suspended = BGJOB_STATE_SUSPENDED,        ///< It is paused at a checkpoint.
    Disconnected = BGJOB_STATE_DISCONNECTED,  ///< Its remote end is out of reach.
    Suspending = BGJOB_STATE_SUSPENDING,      ///< A suspend was asked; no checkpoint reached yet.
    Stopping = BGJOB_STATE_STOPPING,          ///< A stop was asked; the work has not ended yet.
    AtBreakpoint = BGJOB_STATE_AT_BREAKPOINT, ///< It is halted at a breakpoint.
};

/// The record streams a job writes to (the C `BGJOB_STREAM_*`).
enum class Stream : bgjob_stream {
    Output = BGJOB_STREAM_OUTPUT,           ///< Results.
    Error = BGJOB_STREAM_ERROR,             ///< Non-terminating errors (the job can still complete).
    Warning = BGJOB_STREAM_WARNING,         ///< Warnings.
    Verbose = BGJOB_STREAM_VERBOSE,         ///< Verbose messages.
    Debug = BGJOB_STREAM_DEBUG,             ///< Debug messages.
    Information = BGJOB_STREAM_INFORMATION, ///< Informational messages.
    Progress = BGJOB_STREAM_PROGRESS,       ///< Progress reports (see `Record::percent_complete`).
};

/// How a process job's stdout and stderr become records.
enum class OutputMode : bgjob_output_mode {
    Lines = BGJOB_OUTPUT_LINES,   ///< One record per line, without its newline (the default).
    Chunks = BGJOB_OUTPUT_CHUNKS, ///< One record per read from the pipe, cut where reads cut.
};

/// Whether a receive takes the records (each is handed out once) or copies them (-Keep).
enum class ReceiveMode { Consume, Keep };

/// Whether a wait over several jobs ends when all of them are done or when any is.
enum class WaitMode { All, Any };

/// The state's name as PowerShell spells it ("Running"); static, never null.
inline const char* to_string(JobState state) noexcept {
    return bgjob_state_name(static_cast<bgjob_job_state>(state));
}

/// The stream's name ("Output"); static, never null.
inline const char* to_string(Stream stream) noexcept {
    return bgjob_stream_name(static_cast<bgjob_stream>(stream));
}

/// Whether nothing can leave this state: Completed, Failed or Stopped.
inline bool is_finished(JobState state) noexcept {
    return bgjob_state_is_finished(static_cast<bgjob_job_state>(state));
}

/// Prints the state's name, so `std::cout << job.state()` reads "Completed".
inline std::ostream& operator<<(std::ostream& os, JobState state) { return os << to_string(state); }

/// Prints the stream's name.
inline std::ostream& operator<<(std::ostream& os, Stream stream) { return os << to_string(stream); }

/// The library's version ("0.1.0").
inline const char* version() noexcept { return bgjob_version(); }

// ---------------------------------------------------------------------------------------
// Errors.

/// What every failing call throws: bgjob's status code and its message for the failure.
class error : public std::runtime_error {
public:
    /// An error with `status` and `message`; `os_error` is the errno of a BGJOB_E_SYSTEM.
    error(bgjob_status status, const std::string& message, int os_error = 0)
        : std::runtime_error(message), status_(status), os_error_(os_error) {}

    /// The C status (`BGJOB_E_NO_SUCH_JOB`, ...), for a program to branch on.
    bgjob_status status() const noexcept { return status_; }

    /// The status's name ("BGJOB_E_NO_SUCH_JOB"), for messages.
    const char* status_name() const noexcept { return bgjob_status_name(status_); }

    /// The OS's error number when status() is BGJOB_E_SYSTEM (e.g. ENOENT), else 0.
    int os_error() const noexcept { return os_error_; }

private:
    bgjob_status status_;
    int os_error_;
};

namespace detail {

/// Throws the calling thread's last bgjob failure if `status` is one. The message is
/// copied at once: C keeps it only until this thread's next failing call.
inline void check(bgjob_status status) {
    if (status != BGJOB_OK)
        throw error(status, bgjob_last_error_message(), bgjob_last_error_errno());
}

/// For waits and stops, whose timeout is an answer, not a failure: false on timeout.
inline bool check_unless_timeout(bgjob_status status) {
    if (status == BGJOB_E_TIMEOUT) return false;
    check(status);
    return true;
}

/// A C string that may be null (a NULL snapshot gives one), as a std::string.
inline std::string to_string_or_empty(const char* text) { return text ? text : ""; }

/// A C string whose NULL means "none".
inline std::optional<std::string> to_optional(const char* text) {
    if (text == nullptr) return std::nullopt;
    return std::string(text);
}

/// Nanoseconds since the Unix epoch as a time point.
inline std::chrono::system_clock::time_point to_time_point(std::int64_t ns) {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
}

/// Frees through the C `_free` function `Free`; those accept NULL, so no test is needed.
template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept { Free(p); }
};

/// The owner of one opaque C object: move-only, freed exactly once.
template <class T, auto Free>
using Handle = std::unique_ptr<T, Deleter<Free>>;

using SpecHandle = Handle<bgjob_spec, bgjob_spec_free>;
using PoolHandle = Handle<bgjob_pool, bgjob_pool_free>;
using FilterHandle = Handle<bgjob_filter, bgjob_filter_free>;
using ListHandle = Handle<bgjob_job_list, bgjob_job_list_free>;
using InfoHandle = Handle<bgjob_job_info, bgjob_job_info_free>;
using RecordsHandle = Handle<bgjob_records, bgjob_records_free>;
using QueueHandle = Handle<bgjob_event_queue, bgjob_event_queue_free>;

/// Calls a C constructor `create(&out)` and owns what it wrote *before* checking its
/// status, so that nothing it made can leak whatever it returned.
template <class H, class Create>
H acquire(Create&& create) {
    typename H::pointer raw = nullptr;
    bgjob_status status = create(&raw);
    H owner(raw);
    check(status);
    return owner;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Timeouts.

/// A timeout for every wait: built implicitly from any std::chrono duration (rounded up to
/// whole milliseconds, so a short timeout never turns into a poll), or `bgjob::forever`.
/// Zero or negative durations poll: they answer with what is true now.
class Timeout {
public:
    /// From any duration; beyond ~31,000 years it means forever (C would overflow).
    template <class Rep, class Period>
    Timeout(std::chrono::duration<Rep, Period> duration) noexcept
        : ms_(from_ms(std::chrono::duration<double, std::milli>(duration).count())) {}

    /// A timeout that never elapses (`BGJOB_INFINITE`).
    static constexpr Timeout infinite() noexcept { return Timeout(BGJOB_INFINITE); }

    /// The C value: milliseconds, 0 = poll, -1 = no limit.
    constexpr std::int64_t milliseconds() const noexcept { return ms_; }

    /// Whether this is `forever`.
    constexpr bool is_infinite() const noexcept { return ms_ == BGJOB_INFINITE; }

private:
    constexpr explicit Timeout(std::int64_t ms) noexcept : ms_(ms) {}

    static std::int64_t from_ms(double ms) noexcept {
        constexpr double beyond = 1e15;  // ms; C adds the timeout to "now" and must not overflow
        if (!(ms > 0)) return 0;         // negative, zero or NaN: poll
        if (ms >= beyond) return BGJOB_INFINITE;
        return static_cast<std::int64_t>(std::ceil(ms));
    }

    std::int64_t ms_;
};

/// The default of every timeout: wait as long as it takes.
inline constexpr Timeout forever = Timeout::infinite();

// ---------------------------------------------------------------------------------------
// The job and what it hands out.

struct Record;
struct StateInfo;
struct StateEvent;
struct ReceiveOptions;
class JobInfo;
class Subscription;

/// What a state-change callback is: it gets each change of the job(s) it watches, in order.
using StateCallback = std::function<void(const StateEvent&)>;

/// A job, named by its process-wide id: a cheap value to copy, compare and keep. It does
/// not own the job (the repository does, until `remove`), so a Job for a removed id is
/// still a valid value; calls on it throw `error` with BGJOB_E_NO_SUCH_JOB.
class Job {
public:
    /// No job (id 0, which bgjob never gives out).
    constexpr Job() noexcept = default;

    /// The job with this id (not checked: a call on an unknown id throws).
    constexpr explicit Job(std::uint64_t id) noexcept : id_(id) {}

    /// The id: process-wide, never reused.
    constexpr std::uint64_t id() const noexcept { return id_; }

    /// The current state (Get-Job's State), without taking a snapshot.
    JobState state() const;

    /// The current state and, if an error caused it, why (e.g. a Failed job's reason).
    StateInfo state_info() const;

    /// A snapshot of every field (Get-Job's output object).
    JobInfo info() const;

    /// The name (default `Job<id>`).
    std::string name() const;

    /// Wait-Job: true once the job is done (finished, or Suspended/Disconnected unless
    /// `force`) and the callbacks of that change returned; false if `timeout` came first.
    /// Throws BGJOB_E_BLOCKED if the job waits for input (only send_input moves it on)
    /// and BGJOB_E_WOULD_DEADLOCK when called from the job's own work.
    bool wait(Timeout timeout = forever, bool force = false) const;

    /// Receive-Job: the records present now (the job's and its children's, in time
    /// order), taken or, with ReceiveMode::Keep, copied.
    std::vector<Record> receive(ReceiveMode mode = ReceiveMode::Consume) const;

    /// Receive-Job with every option: at most `max`, waiting, auto-removing.
    std::vector<Record> receive(const ReceiveOptions& options) const;

    /// Stop-Job: asks the job (and its children) to stop; true once it is finished, false
    /// if it is still Stopping when `timeout` elapses. A finished job is left alone.
    bool stop(Timeout timeout = forever) const;

    /// Remove-Job: frees a finished job and its records at once; an unfinished one
    /// throws BGJOB_E_NOT_FINISHED unless `force`, which stops it first.
    void remove(bool force = false) const;

    /// Suspend-Job: the work parks at its next `Context::checkpoint`.
    void suspend() const;

    /// Resume-Job: a Suspended job runs on.
    void resume() const;

    /// Answers a Blocked job's `Context::read_input` with these bytes.
    void send_input(std::string_view data) const;

    /// Registers `callback` for this job's changes from now on (earlier ones are not
    /// replayed: to miss none, use StartOptions::on_state_changed). The registration
    /// lasts as long as the returned Subscription, or until the job is removed.
    [[nodiscard]] Subscription on_state_changed(StateCallback callback) const;

    /// Jobs are equal when their ids are.
    friend constexpr bool operator==(Job a, Job b) noexcept { return a.id_ == b.id_; }
    /// Jobs differ when their ids do.
    friend constexpr bool operator!=(Job a, Job b) noexcept { return a.id_ != b.id_; }
    /// Orders by id, i.e. by creation.
    friend constexpr bool operator<(Job a, Job b) noexcept { return a.id_ < b.id_; }

private:
    std::uint64_t id_ = 0;
};

/// A state and, if an error caused the change to it, the error's message.
struct StateInfo {
    JobState state = JobState::NotStarted;  ///< The state.
    std::optional<std::string> reason{};    ///< Why, if an error caused it.
};

/// One state change as a callback or an EventQueue sees it. Its strings are copies, so it
/// may be kept after the callback returns (the C event's are not).
struct StateEvent {
    Job job{};                        ///< The job that changed.
    StateInfo state_info{};           ///< Its new state.
    StateInfo previous_state_info{};  ///< Its state before the change.
};

/// One record a job wrote, copied out of the C batch.
struct Record {
    Stream stream = Stream::Output;  ///< The stream it was written to.
    /// Its bytes: the text written (any bytes, NULs included); for a progress record its
    /// status text; empty when `has_data` is false.
    std::string data{};
    /// False for a record that holds a foreign object without bytes (written from Python).
    bool has_data = true;
    std::uint64_t sequence = 0;  ///< Process-wide, increasing in write order.
    Job job{};                   ///< The job that wrote it (a child, when received from a parent).
    std::int64_t time_ns = 0;    ///< When it was written, ns since the Unix epoch.
    /// For a progress record: percent complete (0-100, or -1 = unknown); otherwise -1.
    std::int32_t percent_complete = -1;
    /// For a progress record: its activity; otherwise none.
    std::optional<std::string> activity{};

    /// When it was written.
    std::chrono::system_clock::time_point time() const { return detail::to_time_point(time_ns); }
};

/// What Job::receive may do besides taking what is there.
struct ReceiveOptions {
    ReceiveMode mode = ReceiveMode::Consume;  ///< Take, or copy (-Keep).
    std::size_t max = 0;                      ///< At most this many records (0 = all); the rest stay.
    bool wait = false;          ///< Block until the job is finished, `max` records are there, or timeout.
    Timeout timeout = forever;  ///< How long `wait` may block; a timeout is not an error.
    bool auto_remove = false;   ///< With `wait`, not Keep: remove the finished job after.
};

/// The latest progress report of a job.
struct Progress {
    std::int32_t percent_complete = -1;  ///< 0-100, or -1 = unknown.
    std::string activity{};              ///< What is being done.
    std::string status{};                ///< How far it got.
};

/// A snapshot of one job's fields (Get-Job's output object): move-only, since it owns the
/// C snapshot. Getters return copies, so nothing dangles when the snapshot goes.
class JobInfo {
public:
    /// Takes a snapshot of `job`; throws BGJOB_E_NO_SUCH_JOB for an unknown id.
    explicit JobInfo(Job job)
        : h_(detail::acquire<detail::InfoHandle>(
              [&](bgjob_job_info** out) { return bgjob_get_job(job.id(), out); })) {}

    /// The job.
    Job job() const noexcept { return Job(bgjob_job_info_id(get())); }
    /// Its parent, or none for a top-level job.
    std::optional<Job> parent() const noexcept {
        std::uint64_t id = bgjob_job_info_parent_id(get());
        return id ? std::optional<Job>(Job(id)) : std::nullopt;
    }
    /// The instance id, a UUID in text form.
    std::string instance_id() const { return detail::to_string_or_empty(bgjob_job_info_instance_id(get())); }
    /// The name.
    std::string name() const { return detail::to_string_or_empty(bgjob_job_info_name(get())); }
    /// The command text.
    std::string command() const { return detail::to_string_or_empty(bgjob_job_info_command(get())); }
    /// The type name (`ThreadJob`, `ProcessJob`, `ParallelJob`, ...).
    std::string type_name() const { return detail::to_string_or_empty(bgjob_job_info_type_name(get())); }
    /// Where it runs (`localhost`).
    std::string location() const { return detail::to_string_or_empty(bgjob_job_info_location(get())); }
    /// The status message ("" if none; a parent shows `finished/total completed`).
    std::string status_message() const {
        return detail::to_string_or_empty(bgjob_job_info_status_message(get()));
    }
    /// The state when the snapshot was taken.
    JobState state() const noexcept { return static_cast<JobState>(bgjob_job_info_state(get())); }
    /// The state and its reason.
    StateInfo state_info() const { return {state(), detail::to_optional(bgjob_job_info_reason(get()))}; }
    /// What a Blocked job asked for (answer with Job::send_input); none otherwise.
    std::optional<std::string> prompt() const { return detail::to_optional(bgjob_job_info_prompt(get())); }
    /// When it first ran; none if it never did.
    std::optional<std::chrono::system_clock::time_point> begin_time() const {
        return time_or_none(bgjob_job_info_begin_time_ns(get()));
    }
    /// When it finished; none if it has not.
    std::optional<std::chrono::system_clock::time_point> end_time() const {
        return time_or_none(bgjob_job_info_end_time_ns(get()));
    }
    /// Whether it or its children held unread records.
    bool has_more_data() const noexcept { return bgjob_job_info_has_more_data(get()); }
    /// Its children, in creation order (empty for a leaf job).
    std::vector<Job> children() const {
        std::vector<Job> jobs(bgjob_job_info_child_count(get()));
        for (std::size_t i = 0; i < jobs.size(); ++i) jobs[i] = Job(bgjob_job_info_child_id(get(), i));
        return jobs;
    }
    /// The latest progress report, if any.
    std::optional<Progress> progress() const {
        Progress p;
        const char* activity = nullptr;
        const char* status = nullptr;
        if (!bgjob_job_info_progress(get(), &p.percent_complete, &activity, &status)) return std::nullopt;
        p.activity = detail::to_string_or_empty(activity);
        p.status = detail::to_string_or_empty(status);
        return p;
    }
    /// The C snapshot, for calls this wrapper does not make; owned by this object.
    const bgjob_job_info* native() const noexcept { return h_.get(); }

private:
    const bgjob_job_info* get() const noexcept { return h_.get(); }
    static std::optional<std::chrono::system_clock::time_point> time_or_none(std::int64_t ns) {
        if (ns == 0) return std::nullopt;
        return detail::to_time_point(ns);
    }

    detail::InfoHandle h_;
};

/// A state-change registration (Register-ObjectEvent's subscription): move-only; its
/// destructor unregisters, so keep it as long as the callback should run, or `release()`
/// it to keep the callback until the job is removed. Unregistering a registration that
/// already ended (its job was removed) is harmless.
class Subscription {
public:
    /// No registration.
    Subscription() noexcept = default;

    /// Adopts registration `registration` of job `job_id` (0 = repository-wide), e.g. one
    /// made through the C ABI.
    Subscription(std::uint64_t job_id, std::uint64_t registration) noexcept
        : job_id_(job_id), registration_(registration) {}

    /// Takes over `other`'s registration.
    Subscription(Subscription&& other) noexcept
        : job_id_(other.job_id_), registration_(std::exchange(other.registration_, 0)) {}

    /// Unregisters this one's, then takes over `other`'s.
    Subscription& operator=(Subscription&& other) noexcept {
        if (this != &other) {
            unregister();
            job_id_ = other.job_id_;
            registration_ = std::exchange(other.registration_, 0);
        }
        return *this;
    }

    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    /// Unregisters.
    ~Subscription() { unregister(); }

    /// Ends the registration now: no later change calls the callback (one already under
    /// way on another thread may finish). Never throws: it is also the destructor's job.
    void unregister() noexcept {
        if (registration_ != 0) bgjob_unregister(job_id_, std::exchange(registration_, 0));
    }

    /// Lets the registration outlive this object (until its job is removed; a
    /// repository-wide one for the rest of the process). Returns its id.
    std::uint64_t release() noexcept { return std::exchange(registration_, 0); }

    /// Whether this object holds a registration.
    explicit operator bool() const noexcept { return registration_ != 0; }

private:
    std::uint64_t job_id_ = 0;
    std::uint64_t registration_ = 0;
};

// ---------------------------------------------------------------------------------------
// The work's side.

/// What a job's work gets: its way to write records, report progress, see a stop and
/// fail. Valid only while the work runs; the work may use it from its own threads
/// meanwhile. Every call throws `error` on failure, which, escaping the work, fails it.
class Context {
public:
    /// Wraps a live C context (bgjob makes these for C++ work; a C work function may
    /// wrap its own).
    explicit Context(bgjob_context* ctx) noexcept : ctx_(ctx) {}

    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    /// The job this work runs for.
    Job job() const noexcept { return Job(bgjob_context_job_id(ctx_)); }

    /// Writes `data` (any bytes; copied) as one record to `stream`.
    void write(std::string_view data, Stream stream = Stream::Output) {
        detail::check(bgjob_context_write(ctx_, static_cast<bgjob_stream>(stream), data.data(), data.size()));
    }

    /// Reports progress: `percent_complete` 0-100 (-1 = unknown), what and how far. Also
    /// writes a progress record.
    void progress(std::int32_t percent_complete, const std::string& activity, const std::string& status = {}) {
        detail::check(bgjob_context_progress(ctx_, percent_complete, activity.c_str(), status.c_str()));
    }

    /// Sets the job's status message (UTF-8).
    void set_status_message(const std::string& message) {
        detail::check(bgjob_context_set_status_message(ctx_, message.c_str()));
    }

    /// Whether a stop was asked: cooperative work checks it and returns early.
    bool stop_requested() const noexcept { return bgjob_context_stop_requested(ctx_); }

    /// Parks here while the job is suspended; check stop_requested() after it.
    void checkpoint() { detail::check(bgjob_context_checkpoint(ctx_)); }

    /// Fails the job with `reason` (UTF-8) when the work returns, however it returns.
    /// Throwing from the work does the same with the exception's what().
    void fail(const std::string& reason) { detail::check(bgjob_context_fail(ctx_, reason.c_str())); }

    /// A parallel job child's input bytes; valid while the work runs.
    std::string_view input() const {
        const std::uint8_t* data = nullptr;
        std::size_t len = 0;
        detail::check(bgjob_context_input(ctx_, &data, &len));
        return {reinterpret_cast<const char*>(data), len};
    }

    /// Asks the host for input: the job is Blocked, showing `prompt`, until the host
    /// answers with Job::send_input; returns the answer. Throws BGJOB_E_INVALID_STATE if
    /// the job is stopped instead.
    std::string read_input(const std::string& prompt) {
        std::uint8_t* data = nullptr;
        std::size_t len = 0;
        detail::check(bgjob_context_read_input(ctx_, prompt.c_str(), &data, &len));
        // Owned from here: freed even if the copy below throws.
        auto free_buffer = [len](std::uint8_t* p) { bgjob_buffer_free(p, len); };
        std::unique_ptr<std::uint8_t, decltype(free_buffer)> owner(data, free_buffer);
        return std::string(reinterpret_cast<const char*>(data), len);
    }

    /// The C context, for calls this wrapper does not make.
    bgjob_context* native() const noexcept { return ctx_; }

private:
    bgjob_context* ctx_;
};

/// What handles an exception escaping a state-change callback: it gets the job whose
/// change was being reported and the exception. It runs on the callback's thread; an
/// exception escaping the handler itself is dropped with a line on stderr.
using CallbackErrorHandler = void (*)(Job job, std::exception_ptr error);

namespace detail {

/// The message of an exception: what() for a std::exception. The pointer lives as long
/// as `e` does; no allocation, so it is safe in a handler of last resort.
inline const char* describe(const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "unknown C++ exception";
    }
}

/// The default CallbackErrorHandler: one line on stderr, then the job goes on.
inline void print_callback_error(Job job, std::exception_ptr error) {
    std::fprintf(stderr, "bgjob: a state-change callback of job %llu threw: %s\n",
                 static_cast<unsigned long long>(job.id()), describe(error));
}

/// The process-wide handler; atomic because callbacks run on any thread.
inline std::atomic<CallbackErrorHandler> callback_error_handler{&print_callback_error};

/// Hands an escaped callback exception to the handler, which must not throw either.
inline void report_callback_error(Job job, std::exception_ptr error) noexcept {
    try {
        callback_error_handler.load()(job, error);
    } catch (...) {
        std::fputs("bgjob: the callback error handler threw; the exception is dropped\n", stderr);
    }
}

/// A finalizer: deletes the heap object C held. Catches what a throwing destructor
/// throws, since it runs inside C.
template <class T>
void destroy(void* user_data) noexcept {
    try {
        delete static_cast<T*>(user_data);
    } catch (...) {
        std::fputs("bgjob: a destructor of a callable handed to bgjob threw; ignored\n", stderr);
    }
}

/// The C state info, copied (C's reason is valid during the callback only).
inline StateInfo to_state_info(const bgjob_state_info& info) {
    return {static_cast<JobState>(info.state), to_optional(info.reason)};
}

/// The C event, copied.
inline StateEvent to_state_event(const bgjob_state_event& event) {
    return {Job(event.job_id), to_state_info(event.state_info), to_state_info(event.previous_state_info)};
}

/// The state-change trampoline C calls: nothing escapes it.
inline void on_state_event(const bgjob_state_event* event, void* user_data) noexcept {
    try {
        (*static_cast<StateCallback*>(user_data))(to_state_event(*event));
    } catch (...) {
        report_callback_error(Job(event->job_id), std::current_exception());
    }
}

/// Refuses an empty std::function up front: it would throw on every change.
inline void require_callback(const StateCallback& callback) {
    if (!callback) throw error(BGJOB_E_INVALID_ARGUMENT, "the state-change callback is empty");
}

/// Registers `callback` on job `job_id` (0 = every job). C owns the heap copy from the
/// call on and finalizes it even if the call fails.
inline Subscription subscribe(std::uint64_t job_id, StateCallback callback) {
    require_callback(callback);
    auto* heap = new StateCallback(std::move(callback));
    std::uint64_t registration = 0;
    check(job_id == 0 ? bgjob_on_any_state_changed(on_state_event, heap, destroy<StateCallback>, &registration)
                      : bgjob_on_state_changed(job_id, on_state_event, heap, destroy<StateCallback>, &registration));
    return Subscription(job_id, registration);
}

/// Whether `Fn` is work: callable as fn(Context&) or fn(), returning void. Returning a
/// value is refused rather than ignored: results go through Context::write.
template <class Fn>
constexpr bool is_work() {
    if constexpr (std::is_invocable_v<Fn&, Context&>)
        return std::is_void_v<std::invoke_result_t<Fn&, Context&>>;
    else if constexpr (std::is_invocable_v<Fn&>)
        return std::is_void_v<std::invoke_result_t<Fn&>>;
    else
        return false;
}

/// Fails the work with `reason`; a reason C refuses (not UTF-8) still fails it, saying so.
inline std::int32_t fail_work(bgjob_context* ctx, const char* reason) noexcept {
    if (bgjob_context_fail(ctx, reason) != BGJOB_OK)
        bgjob_context_fail(ctx, "a C++ exception whose message is not valid UTF-8");
    return 1;
}

/// The work trampoline C calls: runs the callable; an exception fails the job with its
/// what() ("unknown C++ exception" for anything else) and goes no further.
template <class Fn>
std::int32_t run_work(bgjob_context* ctx, void* user_data) noexcept {
    try {
        Fn& fn = *static_cast<Fn*>(user_data);
        Context context(ctx);
        if constexpr (std::is_invocable_v<Fn&, Context&>)
            fn(context);
        else
            fn();
        return 0;
    } catch (const std::exception& e) {
        return fail_work(ctx, e.what());
    } catch (...) {
        return fail_work(ctx, "unknown C++ exception");
    }
}

/// Job ids for C.
inline std::vector<std::uint64_t> ids_of(const std::vector<Job>& jobs) {
    std::vector<std::uint64_t> ids;
    ids.reserve(jobs.size());
    for (Job job : jobs) ids.push_back(job.id());
    return ids;
}

/// A C record, copied.
inline Record to_record(const bgjob_record& r) {
    Record out;
    out.stream = static_cast<Stream>(r.stream);
    out.has_data = r.data != nullptr;
    if (out.has_data) out.data.assign(reinterpret_cast<const char*>(r.data), r.len);
    out.sequence = r.sequence;
    out.job = Job(r.job_id);
    out.time_ns = r.time_ns;
    out.percent_complete = r.percent_complete;
    out.activity = to_optional(r.activity);
    return out;
}

}  // namespace detail

/// Sets what handles exceptions escaping state-change callbacks (nullptr restores the
/// default, a line on stderr) and returns the previous handler. Such an exception never
/// reaches bgjob: the job's change goes on as if the callback had returned.
inline CallbackErrorHandler set_callback_error_handler(CallbackErrorHandler handler) noexcept {
    return detail::callback_error_handler.exchange(handler ? handler : &detail::print_callback_error);
}

// ---------------------------------------------------------------------------------------
// Pools and specs.

/// A pool of worker threads with a throttle limit (PowerShell's -ThrottleLimit as an
/// explicit value). Move-only. Jobs started on it keep it alive; dropping the last handle
/// shuts it down without waiting (queued jobs are Stopped, running ones asked to stop).
class Pool {
public:
    /// `threads` workers (0 = one per core), at most `throttle` jobs at once (0 = no limit
    /// beyond the threads).
    explicit Pool(std::uint32_t threads = 0, std::uint32_t throttle = 0)
        : h_(detail::acquire<detail::PoolHandle>(
              [&](bgjob_pool** out) { return bgjob_pool_new(threads, throttle, out); })) {}

    /// Stops accepting jobs, stops queued and running ones and waits up to `timeout` for
    /// the threads to exit; false if work still runs then. Repeatable.
    bool shutdown(Timeout timeout = forever) const {
        return detail::check_unless_timeout(bgjob_pool_shutdown(h_.get(), timeout.milliseconds()));
    }

    /// The C pool, for calls this wrapper does not make; owned by this object.
    bgjob_pool* native() const noexcept { return h_.get(); }

private:
    detail::PoolHandle h_;
};

/// The options every start takes. An aggregate, so `bgjob::start({"name"}, work)` works.
struct StartOptions {
    std::string name{};                ///< The job's name; empty = `Job<id>`.
    std::string command{};             ///< The command text shown; empty = the default.
    const Pool* pool = nullptr;        ///< Where it runs; null = the default pool.
    StateCallback on_state_changed{};  ///< Called for every change, the first included; empty = none.
    std::uint32_t throttle_limit = 0;  ///< A parallel job's: children running at once (0 = pool's limit).
};

/// The options of a process job (PowerShell's Start-Job): StartOptions, plus the process's.
struct ProcessOptions : StartOptions {
    std::vector<std::pair<std::string, std::string>> env{};  ///< Variables set over the inherited ones.
    std::vector<std::string> unset_env{};                  ///< Variables removed from the environment.
    bool clear_env = false;           ///< Start from an empty environment: only `env` passes.
    std::string working_directory{};  ///< Where it runs; empty = here. A missing one throws BGJOB_E_SYSTEM.
    std::string standard_input{};     ///< Bytes fed to its stdin, then end of file.
    std::optional<std::chrono::milliseconds> stop_grace{};  ///< SIGTERM to SIGKILL on a stop (default 5 s).
    OutputMode output_mode = OutputMode::Lines;             ///< Lines or raw chunks.
};

/// What to start (the C spec), built with chained setters and consumed by start() or
/// run_inline(). Move-only; dropping an unstarted one frees everything it holds, the work
/// callable included (deleted exactly once). After start() it is empty, and every call on
/// it throws BGJOB_E_INVALID_ARGUMENT.
class Spec {
public:
    /// An empty spec.
    Spec() : h_(detail::acquire<detail::SpecHandle>(bgjob_spec_new)) {}

    /// Sets the name (UTF-8; default `Job<id>`).
    Spec& name(const std::string& name) { return set(bgjob_spec_set_name(live(), name.c_str())); }

    /// Sets the command text shown (UTF-8).
    Spec& command(const std::string& command) { return set(bgjob_spec_set_command(live(), command.c_str())); }

    /// Runs the job on `pool` (the spec keeps its own reference to it).
    Spec& pool(const Pool& pool) { return set(bgjob_spec_set_pool(live(), pool.native())); }

    /// Sets the work: any callable as `f(bgjob::Context&)` or `f()`, returning void (move-only
    /// ones too). It is moved to the heap and deleted exactly once by bgjob's finalizer:
    /// after the work returned, when the job is stopped before it ran, or with the unstarted
    /// spec. For a parallel job it runs once per input, possibly on several threads at once.
    template <class F>
    Spec& work(F&& f) {
        using Fn = std::decay_t<F>;
        static_assert(detail::is_work<Fn>(), "bgjob work must be callable as f(bgjob::Context&) or f(), returning void");
        bgjob_spec* spec = live();  // before the allocation: a throw here leaks nothing
        auto* heap = new Fn(std::forward<F>(f));
        // C owns `heap` from this call on, even if it fails.
        return set(bgjob_spec_set_work(spec, detail::run_work<Fn>, heap, detail::destroy<Fn>));
    }

    /// Adds a state-change callback, registered before the job can run, so it sees every
    /// change. It lives until the job is removed.
    Spec& on_state_changed(StateCallback callback) {
        detail::require_callback(callback);
        bgjob_spec* spec = live();
        auto* heap = new StateCallback(std::move(callback));
        return set(bgjob_spec_on_state_changed(spec, detail::on_state_event, heap, detail::destroy<StateCallback>));
    }

    /// Adds an input (any bytes), making this a parallel job: one child per input.
    Spec& add_input(std::string_view data) { return set(bgjob_spec_add_input(live(), data.data(), data.size())); }

    /// A parallel job's throttle: at most `limit` children at once (0 = the pool's limit).
    Spec& throttle_limit(std::uint32_t limit) { return set(bgjob_spec_set_throttle_limit(live(), limit)); }

    /// Makes this a process job running `argv` (no shell; argv[0] looked up in PATH).
    Spec& argv(const std::vector<std::string>& argv) {
        std::vector<const char*> c_argv;
        c_argv.reserve(argv.size());
        for (const std::string& arg : argv) c_argv.push_back(arg.c_str());
        return set(bgjob_spec_set_argv(live(), c_argv.data(), c_argv.size()));
    }

    /// Sets an environment variable of the process.
    Spec& env(const std::string& name, const std::string& value) {
        return set(bgjob_spec_set_env(live(), name.c_str(), value.c_str()));
    }

    /// Removes an environment variable from the process's environment.
    Spec& unset_env(const std::string& name) { return set(bgjob_spec_set_env(live(), name.c_str(), nullptr)); }

    /// Starts the process from an empty environment (only `env` variables pass).
    Spec& clear_env() { return set(bgjob_spec_clear_env(live())); }

    /// Runs the process in `dir`; checked at the start (BGJOB_E_SYSTEM if missing).
    Spec& working_directory(const std::string& dir) {
        return set(bgjob_spec_set_working_directory(live(), dir.c_str()));
    }

    /// Feeds `data` to the process's stdin, then end of file.
    Spec& standard_input(std::string_view data) {
        return set(bgjob_spec_set_stdin(live(), data.data(), data.size()));
    }

    /// How long a stop waits between SIGTERM and SIGKILL.
    Spec& stop_grace(std::chrono::milliseconds grace) {
        return set(bgjob_spec_set_stop_grace(live(), grace.count()));
    }

    /// How the process's output becomes records.
    Spec& output_mode(OutputMode mode) {
        return set(bgjob_spec_set_output_mode(live(), static_cast<bgjob_output_mode>(mode)));
    }

    /// Applies StartOptions (unset fields are left alone).
    Spec& apply(const StartOptions& options) {
        if (!options.name.empty()) name(options.name);
        if (!options.command.empty()) command(options.command);
        if (options.pool != nullptr) pool(*options.pool);
        if (options.on_state_changed) on_state_changed(options.on_state_changed);
        if (options.throttle_limit != 0) throttle_limit(options.throttle_limit);
        return *this;
    }

    /// Applies ProcessOptions: the StartOptions part, then the process's settings.
    Spec& apply(const ProcessOptions& options) {
        apply(static_cast<const StartOptions&>(options));
        if (options.clear_env) clear_env();
        for (const auto& [var, value] : options.env) env(var, value);
        for (const std::string& var : options.unset_env) unset_env(var);
        if (!options.working_directory.empty()) working_directory(options.working_directory);
        if (!options.standard_input.empty()) standard_input(options.standard_input);
        if (options.stop_grace) stop_grace(*options.stop_grace);
        if (options.output_mode != OutputMode::Lines) output_mode(options.output_mode);
        return *this;
    }

    /// Start-Job: starts the job and returns at once. Consumes the spec, even when it
    /// throws (then nothing is left behind and the work callable is deleted).
    Job start() { return consume(bgjob_start); }

    /// The same job run here, on this thread; returns once it is finished. Consumes the
    /// spec. A job that ran and failed is returned, not thrown: read its state.
    Job run_inline() { return consume(bgjob_run_inline); }

    /// The C spec, for calls this wrapper does not make; owned by this object.
    bgjob_spec* native() const noexcept { return h_.get(); }

private:
    bgjob_spec* live() const {
        if (!h_) throw error(BGJOB_E_INVALID_ARGUMENT, "this bgjob::Spec was already started or moved from");
        return h_.get();
    }

    Spec& set(bgjob_status status) {
        detail::check(status);
        return *this;
    }

    /// C consumes the spec whatever the result: hand it over before looking at the status.
    Job consume(bgjob_status (*run)(bgjob_spec*, std::uint64_t*)) {
        live();  // an empty spec throws our message, not C's "spec is NULL"
        std::uint64_t id = 0;
        detail::check(run(h_.release(), &id));
        return Job(id);
    }

    detail::SpecHandle h_;
};

// ---------------------------------------------------------------------------------------
// Start-Job and friends.

/// Start-ThreadJob: runs `work` (f(bgjob::Context&) or f()) on the default pool; returns at
/// once. An exception escaping it fails the job with what() as the reason.
template <class F>
Job start(F&& work) {
    return Spec().work(std::forward<F>(work)).start();
}

/// Start-ThreadJob with options: `bgjob::start({"name"}, work)`.
template <class F>
Job start(const StartOptions& options, F&& work) {
    return Spec().apply(options).work(std::forward<F>(work)).start();
}

/// ForEach-Object -Parallel -AsJob: a parent with one child per input, each running
/// `work`, which reads its input with Context::input(). Returns the parent.
template <class F>
Job start_parallel(const StartOptions& options, const std::vector<std::string>& inputs, F&& work) {
    Spec spec;
    spec.apply(options);
    for (const std::string& input : inputs) spec.add_input(input);
    return spec.work(std::forward<F>(work)).start();
}

/// start_parallel with default options.
template <class F>
Job start_parallel(const std::vector<std::string>& inputs, F&& work) {
    return start_parallel(StartOptions{}, inputs, std::forward<F>(work));
}

/// Start-Job: runs the program `argv` (no shell) in a process of its own; each stdout line
/// becomes an Output record, each stderr line an Error record; exit 0 completes it.
inline Job start_process(const std::vector<std::string>& argv, const ProcessOptions& options = {}) {
    return Spec().argv(argv).apply(options).start();
}

// ---------------------------------------------------------------------------------------
// Get-Job, Wait-Job.

/// Which jobs get_jobs lists; unset fields do not filter. Top-level jobs only unless
/// `include_children`.
struct JobFilter {
    std::string name{};                  ///< Name wildcard (`*`, `?`, `[a-z]`; case-insensitive).
    std::string command{};               ///< Command wildcard.
    std::optional<JobState> state{};     ///< Only jobs in this state.
    std::optional<bool> has_more_data{}; ///< Only jobs with (or without) unread records.
    std::optional<std::size_t> newest{}; ///< Only the newest N matches.
    bool include_children = false;       ///< List child jobs too.
};

/// Get-Job: the jobs matching `filter`, sorted by id.
inline std::vector<Job> get_jobs(const JobFilter& filter = {}) {
    auto f = detail::acquire<detail::FilterHandle>(bgjob_filter_new);
    if (!filter.name.empty()) detail::check(bgjob_filter_set_name(f.get(), filter.name.c_str()));
    if (!filter.command.empty()) detail::check(bgjob_filter_set_command(f.get(), filter.command.c_str()));
    if (filter.state) detail::check(bgjob_filter_set_state(f.get(), static_cast<bgjob_job_state>(*filter.state)));
    if (filter.has_more_data) detail::check(bgjob_filter_set_has_more_data(f.get(), *filter.has_more_data));
    if (filter.newest) detail::check(bgjob_filter_set_newest(f.get(), *filter.newest));
    if (filter.include_children) detail::check(bgjob_filter_set_include_children(f.get(), true));
    auto list = detail::acquire<detail::ListHandle>(
        [&](bgjob_job_list** out) { return bgjob_get_jobs(f.get(), out); });
    std::vector<Job> jobs(bgjob_job_list_count(list.get()));
    for (std::size_t i = 0; i < jobs.size(); ++i) jobs[i] = Job(bgjob_job_list_get(list.get(), i));
    return jobs;
}

/// Get-Job -InstanceId: the job with this UUID (any case).
inline Job get_job_by_instance_id(const std::string& instance_id) {
    auto info = detail::acquire<detail::InfoHandle>(
        [&](bgjob_job_info** out) { return bgjob_get_job_by_instance_id(instance_id.c_str(), out); });
    return Job(bgjob_job_info_id(info.get()));
}

/// Wait-Job over several jobs: returns those done (in the order given) when all (or any)
/// are, or when `timeout` elapses. `force`: only finished counts, not Suspended. Throws
/// BGJOB_E_BLOCKED if every job still waited for is Blocked waiting for input.
inline std::vector<Job> wait_jobs(const std::vector<Job>& jobs, WaitMode mode, Timeout timeout = forever,
                                  bool force = false) {
    std::vector<std::uint64_t> ids = detail::ids_of(jobs);
    std::vector<std::uint64_t> done(ids.size());
    std::size_t done_count = 0;
    std::uint32_t c_mode = (mode == WaitMode::Any ? BGJOB_WAIT_ANY : BGJOB_WAIT_ALL) | (force ? BGJOB_WAIT_FORCE : 0);
    detail::check_unless_timeout(
        bgjob_wait(ids.data(), ids.size(), c_mode, timeout.milliseconds(), done.data(), &done_count));
    std::vector<Job> result(done_count);
    for (std::size_t i = 0; i < done_count; ++i) result[i] = Job(done[i]);
    return result;
}

/// Wait-Job: true once every job is done, false if `timeout` came first.
inline bool wait_all(const std::vector<Job>& jobs, Timeout timeout = forever) {
    return wait_jobs(jobs, WaitMode::All, timeout).size() == jobs.size();
}

/// Wait-Job -Any: the first job done (the first in the order given, if several were done
/// by then), or none if `timeout` came first.
inline std::optional<Job> wait_any(const std::vector<Job>& jobs, Timeout timeout = forever) {
    std::vector<Job> done = wait_jobs(jobs, WaitMode::Any, timeout);
    if (done.empty()) return std::nullopt;
    return done.front();
}

/// Registers `callback` for every change of every job (called after each job's own
/// callbacks), for as long as the returned Subscription lives.
[[nodiscard]] inline Subscription on_any_state_changed(StateCallback callback) {
    return detail::subscribe(0, std::move(callback));
}

/// Configures the default pool before its first use: `threads` (0 = one per core) and
/// `throttle` (0 = none). Throws BGJOB_E_ALREADY_INITIALIZED once it exists.
inline void configure_default_pool(std::uint32_t threads, std::uint32_t throttle = 0) {
    detail::check(bgjob_configure_default_pool(threads, throttle));
}

/// Shuts the default pool down (queued jobs Stopped, running ones asked to stop) and waits
/// up to `timeout` for its threads; false if work still runs. For hosts that want every
/// bgjob thread gone before exit; later starts without a pool throw BGJOB_E_SHUT_DOWN.
inline bool shutdown(Timeout timeout = forever) {
    return detail::check_unless_timeout(bgjob_shutdown(timeout.milliseconds()));
}

// ---------------------------------------------------------------------------------------
// Event queue: state changes drained on the host's own thread (an event loop).

/// A queue of state changes to poll (its fd()) and drain (next()) on your own thread, for
/// event loops that must not run code on bgjob's threads. Move-only.
class EventQueue {
public:
    /// The changes of `jobs` from now on (an empty list watches nothing).
    static EventQueue open(const std::vector<Job>& jobs) {
        std::vector<std::uint64_t> ids = detail::ids_of(jobs);
        std::uint64_t none = 0;  // C reads NULL with count 0 as "every job": never pass it
        return EventQueue(ids.empty() ? &none : ids.data(), ids.size());
    }

    /// The changes of every job, those started later included.
    static EventQueue open_all() { return EventQueue(nullptr, 0); }

    /// Readable (POLLIN) while events are pending; owned by the queue: never read or close it.
    int fd() const noexcept { return bgjob_event_queue_fd(h_.get()); }

    /// The next pending event, or none (never blocks).
    std::optional<StateEvent> next() {
        bgjob_state_event event{};
        bool got = false;
        detail::check(bgjob_event_queue_next(h_.get(), &event, &got));
        if (!got) return std::nullopt;
        return detail::to_state_event(event);
    }

    /// The C queue, for calls this wrapper does not make; owned by this object.
    bgjob_event_queue* native() const noexcept { return h_.get(); }

private:
    EventQueue(const std::uint64_t* ids, std::size_t count)
        : h_(detail::acquire<detail::QueueHandle>(
              [&](bgjob_event_queue** out) { return bgjob_event_queue_open(ids, count, out); })) {}

    detail::QueueHandle h_;
};

// ---------------------------------------------------------------------------------------
// Job's members, defined here because they use the types above.

inline JobState Job::state() const {
    bgjob_job_state state = 0;
    detail::check(bgjob_get_state(id_, &state));
    return static_cast<JobState>(state);
}

inline StateInfo Job::state_info() const { return info().state_info(); }

inline JobInfo Job::info() const { return JobInfo(*this); }

inline std::string Job::name() const { return info().name(); }

inline bool Job::wait(Timeout timeout, bool force) const {
    std::uint32_t mode = BGJOB_WAIT_ALL | (force ? BGJOB_WAIT_FORCE : 0);
    return detail::check_unless_timeout(bgjob_wait(&id_, 1, mode, timeout.milliseconds(), nullptr, nullptr));
}

inline std::vector<Record> Job::receive(ReceiveMode mode) const {
    ReceiveOptions options;
    options.mode = mode;
    return receive(options);
}

inline std::vector<Record> Job::receive(const ReceiveOptions& options) const {
    std::uint32_t flags = (options.mode == ReceiveMode::Keep ? BGJOB_RECEIVE_KEEP : 0) |
                          (options.wait ? BGJOB_RECEIVE_WAIT : 0) |
                          (options.auto_remove ? BGJOB_RECEIVE_AUTO_REMOVE : 0);
    auto batch = detail::acquire<detail::RecordsHandle>([&](bgjob_records** out) {
        return bgjob_receive(id_, flags, options.max, options.timeout.milliseconds(), out);
    });
    std::size_t count = bgjob_records_count(batch.get());
    std::vector<Record> records;
    records.reserve(count);
    for (std::size_t i = 0; i < count; ++i) records.push_back(detail::to_record(*bgjob_records_get(batch.get(), i)));
    return records;
}

inline bool Job::stop(Timeout timeout) const {
    return detail::check_unless_timeout(bgjob_stop(id_, timeout.milliseconds()));
}

inline void Job::remove(bool force) const { detail::check(bgjob_remove(id_, force)); }

inline void Job::suspend() const { detail::check(bgjob_suspend(id_)); }

inline void Job::resume() const { detail::check(bgjob_resume(id_)); }

inline void Job::send_input(std::string_view data) const {
    detail::check(bgjob_send_input(id_, data.data(), data.size()));
}

inline Subscription Job::on_state_changed(StateCallback callback) const {
    return detail::subscribe(id_, std::move(callback));
}

}  // namespace bgjob

#endif  // BGJOB_HPP
