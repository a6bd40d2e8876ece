//! Job states, state info and state-change events (PowerShell's `JobState`,
//! `JobStateInfo` and `JobStateEventArgs`).

use std::fmt;
use std::sync::Arc;

/// The state of a job. The numbers are part of the ABI and equal PowerShell's `JobState`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Created and queued; its work has not begun.
    NotStarted = 0,
    /// Its work is running.
    Running = 1,
    /// Its work returned normally.
    Completed = 2,
    /// Its work failed (non-zero return, a fail call, a panic or an exception).
    Failed = 3,
    /// It was stopped.
    Stopped = 4,
    /// It waits for input from the host.
    Blocked = 5,
    /// It is paused at a checkpoint.
    Suspended = 6,
    /// Its remote end is out of reach.
    Disconnected = 7,
    /// A suspend was asked; the work has not reached a checkpoint yet.
    Suspending = 8,
    /// A stop was asked; the work has not ended yet.
    Stopping = 9,
    /// It is halted at a breakpoint.
    AtBreakpoint = 10,
}

impl JobState {
    /// Every state, in numeric order.
    pub const ALL: [JobState; 11] = [
        JobState::NotStarted,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Stopped,
        JobState::Blocked,
        JobState::Suspended,
        JobState::Disconnected,
        JobState::Suspending,
        JobState::Stopping,
        JobState::AtBreakpoint,
    ];

    /// The state with this number, or `None` if the number is out of range.
    pub fn from_u32(value: u32) -> Option<JobState> {
        JobState::ALL.get(value as usize).copied()
    }

    /// Completed, Failed or Stopped: nothing leaves a finished state.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Stopped
        )
    }

    /// Finished, Suspended or Disconnected: a wait stops here unless forced.
    pub fn is_persistent(self) -> bool {
        self.is_finished() || matches!(self, JobState::Suspended | JobState::Disconnected)
    }

    /// Whether DESIGN §1 allows a move from `self` to `to`.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        match self {
            NotStarted => matches!(to, Running | Stopped | Failed),
            Running => matches!(
                to,
                Completed | Failed | Stopping | Blocked | Suspending | AtBreakpoint | Disconnected
            ),
            Stopping => matches!(to, Stopped | Failed | Completed),
            Blocked => matches!(to, Running | Stopping),
            Suspending => matches!(to, Suspended),
            Suspended => matches!(to, Running | Stopping),
            AtBreakpoint => matches!(to, Running),
            Disconnected => matches!(to, Running | Failed | Stopped),
            Completed | Failed | Stopped => false,
        }
    }

    /// The state's name as PowerShell spells it (`NotStarted`, `Running`, …).
    pub fn name(self) -> &'static str {
        use JobState::*;
        match self {
            NotStarted => "NotStarted",
            Running => "Running",
            Completed => "Completed",
            Failed => "Failed",
            Stopped => "Stopped",
            Blocked => "Blocked",
            Suspended => "Suspended",
            Disconnected => "Disconnected",
            Suspending => "Suspending",
            Stopping => "Stopping",
            AtBreakpoint => "AtBreakpoint",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A job's state and, if the change to it was caused by an error, that error's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStateInfo {
    /// The state.
    pub state: JobState,
    /// Why the job is in this state, when an error caused it (e.g. a failure's message).
    pub reason: Option<Arc<str>>,
}

impl JobStateInfo {
    /// State info without a reason.
    pub fn new(state: JobState) -> Self {
        JobStateInfo {
            state,
            reason: None,
        }
    }

    /// State info with a reason.
    pub fn with_reason(state: JobState, reason: impl Into<Arc<str>>) -> Self {
        JobStateInfo {
            state,
            reason: Some(reason.into()),
        }
    }
}

/// One state change of one job, as handed to state-change callbacks.
#[derive(Clone, Debug)]
pub struct StateChangedEvent {
    /// The job that changed.
    pub job_id: u64,
    /// The job itself (still usable if it was removed meanwhile).
    pub job: Arc<crate::job::Job>,
    /// Its new state info.
    pub state_info: JobStateInfo,
    /// Its state info before the change.
    pub previous_state_info: JobStateInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_powershell() {
        for (i, s) in JobState::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32);
            assert_eq!(JobState::from_u32(i as u32), Some(*s));
        }
        assert_eq!(JobState::from_u32(11), None);
        // Pinned literally, so a reordering of the enum (and of `ALL`) cannot pass.
        let powershell = [
            (JobState::NotStarted, 0),
            (JobState::Running, 1),
            (JobState::Completed, 2),
            (JobState::Failed, 3),
            (JobState::Stopped, 4),
            (JobState::Blocked, 5),
            (JobState::Suspended, 6),
            (JobState::Disconnected, 7),
            (JobState::Suspending, 8),
            (JobState::Stopping, 9),
            (JobState::AtBreakpoint, 10),
        ];
        for (state, number) in powershell {
            assert_eq!(state as u32, number, "{state}");
        }
    }

    #[test]
    fn nothing_leaves_a_finished_state() {
        for from in JobState::ALL.iter().filter(|s| s.is_finished()) {
            for to in JobState::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn legal_moves_are_exactly_designs() {
        use JobState::*;
        let legal: &[(JobState, &[JobState])] = &[
            (NotStarted, &[Running, Stopped, Failed]),
            (
                Running,
                &[
                    Completed,
                    Failed,
                    Stopping,
                    Blocked,
                    Suspending,
                    AtBreakpoint,
                    Disconnected,
                ],
            ),
            (Stopping, &[Stopped, Failed, Completed]),
            (Blocked, &[Running, Stopping]),
            (Suspending, &[Suspended]),
            (Suspended, &[Running, Stopping]),
            (AtBreakpoint, &[Running]),
            (Disconnected, &[Running, Failed, Stopped]),
        ];
        for (from, tos) in legal {
            for to in JobState::ALL {
                assert_eq!(from.can_move_to(to), tos.contains(&to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn persistent_states() {
        let p: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_persistent())
            .collect();
        use JobState::*;
        assert_eq!(p, vec![Completed, Failed, Stopped, Suspended, Disconnected]);
    }
}
