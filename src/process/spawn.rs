//! Starting the process: std's `Command` (posix_spawn where it can, with the exec error
//! reported back), in a process group of its own so a stop reaches its descendants, with
//! close-on-exec pipes so no descriptor leaks into other jobs' processes.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What to run and how: argv, environment, working directory, stdin bytes.
#[derive(Clone, Debug, Default)]
pub(super) struct Program {
    pub argv: Vec<OsString>,
    /// Start from an empty environment instead of the caller's.
    pub env_clear: bool,
    /// Variables set (`Some`) or removed (`None`), in order.
    pub env: Vec<(OsString, Option<OsString>)>,
    pub cwd: Option<PathBuf>,
    /// Bytes fed to stdin, which is then closed; `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
}

/// A started process: its pid (also its process group's id) and our ends of its pipes,
/// non-blocking and close-on-exec.
pub(super) struct Spawned {
    pub pid: libc::pid_t,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts `program`. The error is the OS's (e.g. `ENOENT` for a program not found).
pub(super) fn spawn(program: &Program) -> io::Result<Spawned> {
    let (exe, args) = program
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(if program.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group (id = its pid): a stop signals it and its descendants.
        .process_group(0);
    if program.env_clear {
        cmd.env_clear();
    }
    for (k, v) in &program.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(dir) = &program.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    // Our ends are close-on-exec (std makes every pipe so): no other child inherits them.
    let stdin = child.stdin.take().map(OwnedFd::from);
    let stdout = OwnedFd::from(child.stdout.take().expect("stdout is piped"));
    let stderr = OwnedFd::from(child.stderr.take().expect("stderr is piped"));
    let pid = child.id() as libc::pid_t;
    // `Child` neither kills nor waits on drop: the reactor reaps the pid.
    drop(child);
    for fd in [Some(&stdout), Some(&stderr), stdin.as_ref()]
        .into_iter()
        .flatten()
    {
        set_nonblocking(fd)?;
    }
    Ok(Spawned {
        pid,
        stdin,
        stdout,
        stderr,
    })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0
        // SAFETY: as above.
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The argv as a person would type it in a POSIX shell: words quoted only where needed.
pub(super) fn command_line(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_only_what_a_shell_would_split() {
        let argv: Vec<OsString> = ["sh", "-c", "echo 'hi' $X", "", "a=b/c.d"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            command_line(&argv),
            r#"sh -c 'echo '\''hi'\'' $X' '' a=b/c.d"#
        );
    }
}
