//! The task state machine: which states exist and which moves are legal.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Row written, tmux session being created.
    Starting,
    /// The session runs and produced output recently.
    Running,
    /// The session runs but has been quiet for the idle threshold.
    WaitingForInput,
    /// The command exited 0.
    Succeeded,
    /// The command exited non-zero (exit code recorded) or could not start.
    Failed,
    /// Killed through the API.
    Killed,
    /// The tmux session vanished without an exit record.
    Lost,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Starting,
        TaskState::Running,
        TaskState::WaitingForInput,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Lost,
    ];
    pub const LIVE: [TaskState; 3] = [
        TaskState::Starting,
        TaskState::Running,
        TaskState::WaitingForInput,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::WaitingForInput => "waiting_for_input",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Killed => "killed",
            TaskState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !Self::LIVE.contains(&self)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_finality() {
        for st in TaskState::ALL {
            assert_eq!(TaskState::parse(st.as_str()), Some(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert!(!TaskState::Running.is_final());
        assert!(TaskState::Lost.is_final());
        assert_eq!(TaskState::parse("done"), None);
    }
}
