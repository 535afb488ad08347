//! One run's state: the order state machine, stored events and timings.

use std::time::Duration;

use serde::Serialize;
use wsc_core::{MessageType, Timestamp, WebSocketMessage};

use crate::config::AgentSession;
use crate::error::{OrderViolation, ViolationKind};

/// The lifecycle events the order rules know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `agent_started` (or legacy `agent_start`).
    AgentStarted,
    /// `agent_thinking`.
    AgentThinking,
    /// `tool_executing` (or legacy `tool_execute`).
    ToolExecuting,
    /// `tool_completed` (or legacy `tool_complete`).
    ToolCompleted,
    /// `agent_completed` (or legacy `agent_complete`).
    AgentCompleted,
    /// `error` or `agent_error`: ends the run as failed.
    Error,
}

impl EventType {
    /// The lifecycle event a message type stands for, if any.
    pub fn classify(t: MessageType) -> Option<EventType> {
        match t.canonical() {
            MessageType::AgentStarted => Some(EventType::AgentStarted),
            MessageType::AgentThinking => Some(EventType::AgentThinking),
            MessageType::ToolExecuting => Some(EventType::ToolExecuting),
            MessageType::ToolCompleted => Some(EventType::ToolCompleted),
            MessageType::AgentCompleted => Some(EventType::AgentCompleted),
            MessageType::Error | MessageType::AgentError => Some(EventType::Error),
            _ => None,
        }
    }

    /// The wire value of the canonical message type (`"error"` for errors).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::AgentStarted => "agent_started",
            EventType::AgentThinking => "agent_thinking",
            EventType::ToolExecuting => "tool_executing",
            EventType::ToolCompleted => "tool_completed",
            EventType::AgentCompleted => "agent_completed",
            EventType::Error => "error",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Where a run is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    NotStarted,
    Running,
    Completed,
    Failed,
}

#[derive(Clone, Debug)]
pub(crate) struct OpenTool {
    call_id: Option<String>,
    name: Option<String>,
    pub(crate) opened_at: Timestamp,
}

/// What `apply` did with one event.
pub(crate) struct Applied {
    pub(crate) violation: Option<OrderViolation>,
    pub(crate) ended: bool,
}

/// The tracked state of one run.
///
/// `repr(C)` keeps the fields touched by every `apply` together at the front
/// (two cache lines), ahead of the ones used only on tool events, violations
/// or snapshots; at 100 000 runs each event costs cache misses, not work.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Run {
    pub(crate) total_events: u64,
    pub(crate) last_event_at: Timestamp,
    pub(crate) latency_sum_us: u64,
    pub(crate) latency_max_us: u64,
    pub(crate) latency_count: u64,
    /// Stored events with the time each was recorded.
    pub(crate) events: StoredEvents,
    pub(crate) ended_at: Option<Timestamp>,
    pub(crate) phase: Phase,
    seen: u8,
    pub(crate) is_timeout: bool,
    pub(crate) events_truncated: bool,
    pub(crate) open_tools: Vec<OpenTool>,
    pub(crate) violation_count: u64,
    pub(crate) violations: Vec<OrderViolation>,
    pub(crate) started_at: Timestamp,
    pub(crate) failure_reason: Option<String>,
    /// Approximate bytes of the stored events (see [`approx_bytes`]).
    pub(crate) stored_bytes: usize,
    /// The failing event was a cancellation (`code: "cancelled"`).
    pub(crate) cancelled: bool,
    pub(crate) session: AgentSession,
}

/// About what storing `message` costs on the heap: a stored event's fixed
/// size plus what the message points to
/// ([`WebSocketMessage::heap_bytes`]: its strings and its payload's JSON
/// tree). An estimate (not an allocator count) that grows with everything
/// a client or agent can make large.
pub(crate) fn approx_bytes(message: &WebSocketMessage) -> usize {
    std::mem::size_of::<(Timestamp, WebSocketMessage)>() + message.heap_bytes()
}

/// One stored event of an ended run, without its payload: 32 bytes, plus
/// the `tool_call_id` of a tool event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EventRecord {
    /// When the monitor recorded the event.
    pub(crate) at: Timestamp,
    /// The `tool_call_id` of a tool event that had one.
    tool_call_id: Option<Box<str>>,
    /// [`approx_bytes`] of the event as it was received (saturating).
    received_bytes: u32,
    pub(crate) message_type: MessageType,
}

impl EventRecord {
    fn of(at: Timestamp, message: &WebSocketMessage) -> Self {
        EventRecord {
            at,
            tool_call_id: tool_call_id(message).map(Box::from),
            received_bytes: u32::try_from(approx_bytes(message)).unwrap_or(u32::MAX),
            message_type: message.message_type,
        }
    }

    /// What keeping this record costs, in the units of [`approx_bytes`].
    fn cost(&self) -> usize {
        record_cost(self.tool_call_id.as_deref())
    }

    /// The message as far as the record knows it: its type, and for a tool
    /// event its `tool_call_id`.
    fn rebuild(&self) -> WebSocketMessage {
        let payload = match &self.tool_call_id {
            Some(id) => serde_json::json!({ "tool_call_id": &**id }),
            None => serde_json::Value::Null,
        };
        WebSocketMessage::new(self.message_type, payload)
    }
}

/// The `tool_call_id` a record of `message` keeps: a tool event's, if any.
fn tool_call_id(message: &WebSocketMessage) -> Option<&str> {
    let is_tool = matches!(
        EventType::classify(message.message_type),
        Some(EventType::ToolExecuting | EventType::ToolCompleted)
    );
    message.payload_str("tool_call_id").filter(|_| is_tool)
}

/// What a record costs, in the units of [`approx_bytes`].
fn record_cost(tool_call_id: Option<&str>) -> usize {
    std::mem::size_of::<EventRecord>() + tool_call_id.map_or(0, str::len)
}

/// A run's stored events: whole messages while it is in flight, compact
/// records once it has ended (unless payloads are kept after the end).
#[derive(Debug)]
pub(crate) enum StoredEvents {
    /// Whole messages with the time each was recorded.
    Whole(Vec<(Timestamp, WebSocketMessage)>),
    /// The records left after the run ended.
    Compact(Vec<EventRecord>),
}

impl StoredEvents {
    /// The whole events and the records: one of the two is empty.
    fn parts(&self) -> (&[(Timestamp, WebSocketMessage)], &[EventRecord]) {
        match self {
            StoredEvents::Whole(events) => (events, &[]),
            StoredEvents::Compact(records) => (&[], records),
        }
    }

    pub(crate) fn len(&self) -> usize {
        let (whole, compact) = self.parts();
        whole.len() + compact.len()
    }

    /// Each stored event's type, the time it was recorded and its
    /// [`approx_bytes`] as received, in order.
    pub(crate) fn timings(&self) -> impl Iterator<Item = (Timestamp, MessageType, usize)> + '_ {
        let (whole, compact) = self.parts();
        let whole = whole
            .iter()
            .map(|(at, m)| (*at, m.message_type, approx_bytes(m)));
        let compact = compact.iter().map(|r| {
            let bytes = usize::try_from(r.received_bytes).unwrap_or(usize::MAX);
            (r.at, r.message_type, bytes)
        });
        whole.chain(compact)
    }

    /// The time each stored event was recorded, in order.
    pub(crate) fn times(&self) -> impl Iterator<Item = Timestamp> + '_ {
        let (whole, compact) = self.parts();
        whole
            .iter()
            .map(|(at, _)| *at)
            .chain(compact.iter().map(|r| r.at))
    }

    /// The stored events as messages: whole, or rebuilt from records (see
    /// [`EventRecord::rebuild`]).
    pub(crate) fn messages(&self) -> Vec<WebSocketMessage> {
        match self {
            StoredEvents::Whole(events) => events.iter().map(|(_, m)| m.clone()).collect(),
            StoredEvents::Compact(records) => records.iter().map(EventRecord::rebuild).collect(),
        }
    }

    pub(crate) fn is_compact(&self) -> bool {
        matches!(self, StoredEvents::Compact(_))
    }

    /// What storing `message` costs here, in the units of [`approx_bytes`].
    pub(crate) fn cost_of(&self, message: &WebSocketMessage) -> usize {
        match self {
            StoredEvents::Whole(_) => approx_bytes(message),
            StoredEvents::Compact(_) => record_cost(tool_call_id(message)),
        }
    }

    fn push(&mut self, at: Timestamp, message: WebSocketMessage) {
        match self {
            StoredEvents::Whole(events) => events.push((at, message)),
            StoredEvents::Compact(records) => records.push(EventRecord::of(at, &message)),
        }
    }
}

impl Run {
    /// Replaces the stored whole events by compact records; returns the
    /// bytes (in the units of [`approx_bytes`]) this gives back. Nothing
    /// changes if they are already compact.
    pub(crate) fn compact(&mut self) -> usize {
        let StoredEvents::Whole(events) = &self.events else {
            return 0;
        };
        let records: Vec<EventRecord> = events
            .iter()
            .map(|(at, message)| EventRecord::of(*at, message))
            .collect();
        let kept: usize = records.iter().map(EventRecord::cost).sum();
        self.events = StoredEvents::Compact(records);
        // The spare room of lists that grew while the run was in flight
        // (four open tools' worth after the first tool call).
        self.open_tools.shrink_to_fit();
        self.violations.shrink_to_fit();
        let freed = self.stored_bytes.saturating_sub(kept);
        self.stored_bytes -= freed;
        freed
    }

    pub(crate) fn new(session: AgentSession, now: Timestamp) -> Self {
        Run {
            session,
            started_at: now,
            last_event_at: now,
            ended_at: None,
            phase: Phase::NotStarted,
            is_timeout: false,
            seen: 0,
            open_tools: Vec::new(),
            events: StoredEvents::Whole(Vec::new()),
            total_events: 0,
            events_truncated: false,
            violations: Vec::new(),
            violation_count: 0,
            failure_reason: None,
            stored_bytes: 0,
            cancelled: false,
            latency_sum_us: 0,
            latency_max_us: 0,
            latency_count: 0,
        }
    }

    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Completed | Phase::Failed) || self.is_timeout
    }

    /// Whether the run has ended, and ended exactly at `at`.
    pub(crate) fn ended_at_time(&self, at: Timestamp) -> bool {
        self.is_ended() && self.ended_at == Some(at)
    }

    pub(crate) fn seen(&self, t: MessageType) -> bool {
        EventType::classify(t).is_some_and(|e| self.seen & e.bit() != 0)
    }

    /// Records one event: updates the state machine, stores the event (up to
    /// `max_events`), and returns the violation it caused, if any.
    /// [`apply_sized`](Self::apply_sized), storing the event if the count
    /// allows (tests).
    #[cfg(test)]
    pub(crate) fn apply(
        &mut self,
        message: WebSocketMessage,
        now: Timestamp,
        max_events: usize,
    ) -> Applied {
        self.apply_sized(message, now, max_events, Some(0))
    }

    /// Applies one event; it is stored when `store` (its approximate size,
    /// already reserved in the monitor's byte budget) is given and the run
    /// holds fewer than `max_events`, else only counted and checked.
    pub(crate) fn apply_sized(
        &mut self,
        message: WebSocketMessage,
        now: Timestamp,
        max_events: usize,
        store: Option<usize>,
    ) -> Applied {
        let index = self.total_events;
        self.total_events += 1;
        if index > 0 {
            let gap = now.duration_since(self.last_event_at).as_micros();
            let gap = u64::try_from(gap).unwrap_or(u64::MAX);
            self.latency_sum_us = self.latency_sum_us.saturating_add(gap);
            self.latency_max_us = self.latency_max_us.max(gap);
            self.latency_count += 1;
        }
        self.last_event_at = now;

        let kind = EventType::classify(message.message_type);
        if let Some(k) = kind {
            self.seen |= k.bit();
        }
        let was_ended = matches!(self.phase, Phase::Completed | Phase::Failed);
        let violation = if was_ended {
            Some(ViolationKind::EventAfterEnd)
        } else {
            self.step(kind, &message, now, max_events)
        };
        let ended = !was_ended && matches!(self.phase, Phase::Completed | Phase::Failed);
        if ended {
            self.ended_at = Some(now);
        }
        if self.phase == Phase::Failed && ended {
            let reason = message
                .payload_str("message")
                .or_else(|| message.payload_str("error"))
                .unwrap_or(message.message_type.as_str());
            self.failure_reason = Some(reason.to_owned());
            self.cancelled = message.payload_str("code") == Some("cancelled");
        }

        let violation = violation.map(|kind| {
            let v = OrderViolation {
                kind,
                event_type: message.message_type,
                index,
                at: now,
            };
            self.violation_count += 1;
            if self.violations.len() < max_events {
                self.violations.push(v.clone());
            }
            v
        });

        match store {
            Some(bytes) if self.events.len() < max_events => {
                self.events.push(now, message);
                self.stored_bytes += bytes;
            }
            _ => self.events_truncated = true,
        }
        Applied { violation, ended }
    }

    /// The state machine for a run that has not ended.
    fn step(
        &mut self,
        kind: Option<EventType>,
        message: &WebSocketMessage,
        now: Timestamp,
        max_events: usize,
    ) -> Option<ViolationKind> {
        let not_started = self.phase == Phase::NotStarted;
        match kind {
            Some(EventType::AgentStarted) => {
                if not_started {
                    self.phase = Phase::Running;
                    None
                } else {
                    Some(ViolationKind::DuplicateStart)
                }
            }
            Some(EventType::Error) => {
                // An error may end a run at any point, even before it started.
                self.phase = Phase::Failed;
                None
            }
            Some(EventType::ToolExecuting) => {
                let overflow = self.open_tools.len() >= max_events.max(1);
                if overflow {
                    self.open_tools.remove(0);
                }
                self.open_tools.push(OpenTool {
                    call_id: message.payload_str("tool_call_id").map(str::to_owned),
                    name: message.payload_str("tool_name").map(str::to_owned),
                    opened_at: now,
                });
                if not_started {
                    Some(ViolationKind::EventBeforeStart)
                } else if overflow {
                    Some(ViolationKind::TooManyOpenTools)
                } else {
                    None
                }
            }
            Some(EventType::ToolCompleted) => {
                let matched = self.take_open_tool(
                    message.payload_str("tool_call_id"),
                    message.payload_str("tool_name"),
                );
                if not_started {
                    Some(ViolationKind::EventBeforeStart)
                } else if !matched {
                    Some(ViolationKind::UnmatchedToolCompletion)
                } else {
                    None
                }
            }
            Some(EventType::AgentCompleted) => {
                self.phase = Phase::Completed;
                if not_started {
                    Some(ViolationKind::EventBeforeStart)
                } else if !self.open_tools.is_empty() {
                    Some(ViolationKind::CompletedWithOpenTools)
                } else {
                    None
                }
            }
            Some(EventType::AgentThinking) | None => {
                not_started.then_some(ViolationKind::EventBeforeStart)
            }
        }
    }

    /// Closes the open tool a completion refers to: by `tool_call_id` if the
    /// completion has one, else by `tool_name`, else the oldest open tool.
    fn take_open_tool(&mut self, call_id: Option<&str>, name: Option<&str>) -> bool {
        let position = match (call_id, name) {
            (Some(id), _) => self
                .open_tools
                .iter()
                .position(|t| t.call_id.as_deref() == Some(id)),
            (None, Some(name)) => self
                .open_tools
                .iter()
                .position(|t| t.name.as_deref() == Some(name)),
            (None, None) => (!self.open_tools.is_empty()).then_some(0),
        };
        position.map(|i| self.open_tools.remove(i)).is_some()
    }

    /// The tools open for longer than `timeout` at `now`.
    pub(crate) fn stuck_tools(&self, now: Timestamp, timeout: Duration) -> usize {
        self.open_tools
            .iter()
            .filter(|t| now.duration_since(t.opened_at) > timeout)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(t: MessageType, payload: serde_json::Value) -> WebSocketMessage {
        WebSocketMessage::new(t, payload)
    }

    fn run_of(events: &[(MessageType, serde_json::Value)]) -> (Run, Vec<ViolationKind>) {
        let mut run = Run::new(AgentSession::new("u"), Timestamp::from_unix_micros(0));
        let mut kinds = Vec::new();
        for (i, (t, p)) in events.iter().enumerate() {
            let applied = run.apply(
                msg(*t, p.clone()),
                Timestamp::from_unix_micros(i as i64),
                100,
            );
            kinds.extend(applied.violation.map(|v| v.kind));
        }
        (run, kinds)
    }

    use MessageType as M;

    #[test]
    fn a_valid_run_has_no_violations() {
        let (run, v) = run_of(&[
            (M::AgentStarted, json!({})),
            (M::AgentThinking, json!({})),
            (M::ToolExecuting, json!({"tool_name": "search"})),
            (M::ToolCompleted, json!({"tool_name": "search"})),
            (M::AgentCompleted, json!({})),
        ]);
        assert!(v.is_empty());
        assert_eq!(run.phase, Phase::Completed);
        assert_eq!(run.ended_at, Some(Timestamp::from_unix_micros(4)));
    }

    #[test]
    fn rule_1_start_is_first_and_once() {
        let (_, v) = run_of(&[(M::AgentThinking, json!({})), (M::AgentStarted, json!({}))]);
        assert_eq!(v, [ViolationKind::EventBeforeStart]);
        let (_, v) = run_of(&[(M::AgentStarted, json!({})), (M::AgentStart, json!({}))]);
        assert_eq!(v, [ViolationKind::DuplicateStart]);
    }

    #[test]
    fn rule_2_events_only_inside_the_run() {
        let (_, v) = run_of(&[
            (M::ToolExecuting, json!({})),
            (M::AgentStarted, json!({})),
            (M::AgentCompleted, json!({})),
            (M::AgentThinking, json!({})),
        ]);
        assert_eq!(
            v,
            [
                ViolationKind::EventBeforeStart,
                ViolationKind::CompletedWithOpenTools,
                ViolationKind::EventAfterEnd
            ]
        );
    }

    #[test]
    fn rule_3_tool_matching_by_id_then_name_then_count() {
        // By id: two calls of the same tool closed in reverse order.
        let (run, v) = run_of(&[
            (M::AgentStarted, json!({})),
            (
                M::ToolExecuting,
                json!({"tool_call_id": "a", "tool_name": "s"}),
            ),
            (
                M::ToolExecuting,
                json!({"tool_call_id": "b", "tool_name": "s"}),
            ),
            (M::ToolCompleted, json!({"tool_call_id": "b"})),
            (M::ToolCompleted, json!({"tool_call_id": "c"})),
        ]);
        assert_eq!(v, [ViolationKind::UnmatchedToolCompletion]);
        assert_eq!(run.open_tools[0].call_id.as_deref(), Some("a"));
        // By name.
        let (_, v) = run_of(&[
            (M::AgentStarted, json!({})),
            (M::ToolExecuting, json!({"tool_name": "search"})),
            (M::ToolCompleted, json!({"tool_name": "fetch"})),
            (M::ToolCompleted, json!({"tool_name": "search"})),
        ]);
        assert_eq!(v, [ViolationKind::UnmatchedToolCompletion]);
        // By count (no id, no name).
        let (_, v) = run_of(&[
            (M::AgentStarted, json!({})),
            (M::ToolExecute, json!({})),
            (M::ToolComplete, json!({})),
            (M::ToolComplete, json!({})),
        ]);
        assert_eq!(v, [ViolationKind::UnmatchedToolCompletion]);
    }

    #[test]
    fn rule_4_completed_is_last_with_no_open_tool() {
        let (_, v) = run_of(&[
            (M::AgentStarted, json!({})),
            (M::ToolExecuting, json!({})),
            (M::AgentComplete, json!({})),
            (M::AgentCompleted, json!({})),
        ]);
        assert_eq!(
            v,
            [
                ViolationKind::CompletedWithOpenTools,
                ViolationKind::EventAfterEnd
            ]
        );
    }

    #[test]
    fn rule_5_error_fails_the_run() {
        let (run, v) = run_of(&[
            (M::AgentStarted, json!({})),
            (M::AgentError, json!({"message": "model overloaded"})),
            (M::AgentCompleted, json!({})),
        ]);
        assert_eq!(v, [ViolationKind::EventAfterEnd]);
        assert_eq!(run.phase, Phase::Failed);
        assert_eq!(run.failure_reason.as_deref(), Some("model overloaded"));
    }

    #[test]
    fn storage_cap_keeps_counting() {
        let mut run = Run::new(AgentSession::new("u"), Timestamp::from_unix_micros(0));
        run.apply(
            msg(M::AgentStarted, json!({})),
            Timestamp::from_unix_micros(0),
            2,
        );
        run.apply(
            msg(M::AgentThinking, json!({})),
            Timestamp::from_unix_micros(5),
            2,
        );
        run.apply(
            msg(M::AgentStarted, json!({})),
            Timestamp::from_unix_micros(9),
            2,
        );
        assert_eq!(run.total_events, 3);
        assert_eq!(run.events.len(), 2);
        assert!(run.events_truncated);
        assert_eq!(run.violation_count, 1);
        assert_eq!(run.latency_max_us, 5);
        assert_eq!(run.latency_sum_us, 9);
    }

    #[test]
    fn a_record_is_32_bytes() {
        assert!(std::mem::size_of::<EventRecord>() <= 32);
    }

    #[test]
    fn open_tools_are_bounded() {
        let mut run = Run::new(AgentSession::new("u"), Timestamp::from_unix_micros(0));
        run.apply(
            msg(M::AgentStarted, json!({})),
            Timestamp::from_unix_micros(0),
            3,
        );
        let mut kinds = Vec::new();
        for _ in 0..5 {
            let a = run.apply(
                msg(M::ToolExecuting, json!({})),
                Timestamp::from_unix_micros(1),
                3,
            );
            kinds.extend(a.violation.map(|v| v.kind));
        }
        assert_eq!(run.open_tools.len(), 3);
        assert_eq!(kinds, [ViolationKind::TooManyOpenTools; 2]);
    }
}
