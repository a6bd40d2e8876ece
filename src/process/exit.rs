//! How a process ended, as a job outcome: exit code 0 completes the job; any other code,
//! or a signal, fails it with a reason a person can read.

use crate::job::WorkResult;

/// The outcome of a process that ended with wait status `status` (from `waitpid`).
pub(super) fn outcome(status: libc::c_int) -> WorkResult {
    if libc::WIFEXITED(status) {
        return match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            code => Err(format!("exited with code {code}")),
        };
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let core = if libc::WCOREDUMP(status) {
            " (core dumped)"
        } else {
            ""
        };
        return Err(format!(
            "killed by signal {sig} ({}){core}",
            signal_name(sig)
        ));
    }
    Err(format!("ended with wait status {status:#x}"))
}

/// The conventional name of signal `sig` (`SIGKILL`), or `SIG<n>` for one without a name.
pub(super) fn signal_name(sig: libc::c_int) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("SIG{sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wait statuses as the kernel encodes them: exit code in bits 8–15; a signal in bits
    /// 0–6 with bit 7 for a core dump.
    fn exited(code: i32) -> i32 {
        code << 8
    }

    #[test]
    fn exit_codes_and_signals_read_as_people_say_them() {
        assert_eq!(outcome(exited(0)), Ok(()));
        assert_eq!(outcome(exited(3)), Err("exited with code 3".to_string()));
        assert_eq!(
            outcome(exited(255)),
            Err("exited with code 255".to_string())
        );
        assert_eq!(
            outcome(libc::SIGKILL),
            Err("killed by signal 9 (SIGKILL)".to_string())
        );
        assert_eq!(
            outcome(libc::SIGSEGV | 0x80),
            Err("killed by signal 11 (SIGSEGV) (core dumped)".to_string())
        );
        assert_eq!(signal_name(64), "SIG64");
    }
}
