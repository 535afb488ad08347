//! The crate's errors and the violation records they carry.

use std::fmt;

use serde::Serialize;
use wsc_core::{MessageType, Timestamp};

/// An error from recording into an [`EventMonitor`](crate::EventMonitor).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventMonitorError {
    /// No run is tracked under this id; call `start_session_tracking` first.
    /// Nothing was recorded.
    #[error("unknown run {0:?}: start tracking it before recording events")]
    UnknownSession(String),
}

/// Why a run failed validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventValidationError {
    /// Some required events never arrived (checked before order).
    #[error(transparent)]
    MissingCriticalEvents(MissingCriticalEventError),
    /// The run broke an order rule.
    #[error(
        "event order violated in run {session_id:?}: {} ({count} violation(s) in all)",
        first_reason(violations)
    )]
    OrderViolation {
        /// The run.
        session_id: String,
        /// The stored violations, in the order they happened.
        violations: Vec<OrderViolation>,
        /// How many violations happened (may exceed the stored ones).
        count: u64,
    },
    /// The run ended with `error` or `agent_error`.
    #[error("run {session_id:?} failed: {reason}")]
    RunFailed {
        /// The run.
        session_id: String,
        /// The error's message, or the event type when it had none.
        reason: String,
    },
    /// The run was stopped by its user (`agent_error {code: "cancelled"}`):
    /// ended on purpose, not failed.
    #[error("run {session_id:?} was cancelled by its user")]
    Cancelled {
        /// The run.
        session_id: String,
    },
    /// No run is tracked under this id.
    #[error("unknown run {0:?}: it was never tracked, or was cleaned up")]
    UnknownSession(String),
}

fn first_reason(violations: &[OrderViolation]) -> String {
    violations
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "violation".to_owned())
}

/// Required events a run never delivered.
///
/// `Display` lists their legacy names: `missing critical events:
/// AGENT_THINKING, TOOL_COMPLETED`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MissingCriticalEventError {
    /// The missing events, in the order of the required list.
    pub missing: Vec<MessageType>,
}

impl fmt::Display for MissingCriticalEventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing critical events: ")?;
        for (i, t) in self.missing.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(t.legacy_name())?;
        }
        Ok(())
    }
}

/// Which order rule an event broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViolationKind {
    /// An event arrived before `agent_started` (rule 1 and 2).
    EventBeforeStart,
    /// A second `agent_started` (rule 1).
    DuplicateStart,
    /// An event arrived after the run ended (rule 4, 5).
    EventAfterEnd,
    /// A `tool_completed` matched no open `tool_executing` (rule 3).
    UnmatchedToolCompletion,
    /// `agent_completed` arrived while tools were still open (rule 4).
    CompletedWithOpenTools,
    /// More tools open at once than the per-run event cap allows; the oldest
    /// open tool was forgotten.
    TooManyOpenTools,
}

impl ViolationKind {
    /// A short machine-readable name, e.g. `"event_before_start"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ViolationKind::EventBeforeStart => "event_before_start",
            ViolationKind::DuplicateStart => "duplicate_start",
            ViolationKind::EventAfterEnd => "event_after_end",
            ViolationKind::UnmatchedToolCompletion => "unmatched_tool_completion",
            ViolationKind::CompletedWithOpenTools => "completed_with_open_tools",
            ViolationKind::TooManyOpenTools => "too_many_open_tools",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            ViolationKind::EventBeforeStart => "arrived before agent_started",
            ViolationKind::DuplicateStart => "is a second agent_started",
            ViolationKind::EventAfterEnd => "arrived after the run ended",
            ViolationKind::UnmatchedToolCompletion => "matches no open tool_executing",
            ViolationKind::CompletedWithOpenTools => "arrived while tools were still open",
            ViolationKind::TooManyOpenTools => "opened more tools than the run may keep open",
        }
    }
}

/// One broken order rule within a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderViolation {
    /// The rule broken.
    pub kind: ViolationKind,
    /// The offending event's type.
    pub event_type: MessageType,
    /// The offending event's position in the run (0-based, counting every
    /// event, stored or not).
    pub index: u64,
    /// When it was recorded.
    pub at: Timestamp,
}

impl fmt::Display for OrderViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event #{} ({}) {}",
            self.index,
            self.event_type,
            self.kind.describe()
        )
    }
}

/// A violation as kept in the monitor-wide list of "silent failures".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SilentFailure {
    /// The run it happened in.
    pub session_id: String,
    /// The violation.
    pub violation: OrderViolation,
}

impl SilentFailure {
    /// A human-readable reason.
    pub fn reason(&self) -> String {
        self.violation.to_string()
    }
}
