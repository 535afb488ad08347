//! AG-UI's rules for one run, beside the legacy order rules: [`AgUiRules`]
//! checks each event of an AG-UI run (as an AG-UI agent streams it) the way
//! `@ag-ui/client` 1.0 verifies the events it receives, so that a stream
//! the gateway passes on never makes a frontend's own verifier throw. Each
//! broken rule is an [`AgUiViolation`], named by [`AgUiViolation::rule`]
//! (a stable label for metrics).

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize;

macro_rules! event_types {
    ($($variant:ident => $name:literal,)*) => {
        /// The event types of AG-UI 1.0 (`ag-ui-protocol` 1.0,
        /// `@ag-ui/core` 1.0): 31 of them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AgUiEventType {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl AgUiEventType {
            /// Every type, in AG-UI's order.
            pub const ALL: [AgUiEventType; 31] = [$(AgUiEventType::$variant,)*];

            /// The wire name (`"RUN_STARTED"`).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(AgUiEventType::$variant => $name,)*
                }
            }

            /// The type a wire name names; `None` for a name AG-UI 1.0 does
            /// not define (such an event is passed through and counted).
            pub fn from_name(name: &str) -> Option<AgUiEventType> {
                match name {
                    $($name => Some(AgUiEventType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    TextMessageStart => "TEXT_MESSAGE_START",
    TextMessageContent => "TEXT_MESSAGE_CONTENT",
    TextMessageEnd => "TEXT_MESSAGE_END",
    TextMessageChunk => "TEXT_MESSAGE_CHUNK",
    ToolCallStart => "TOOL_CALL_START",
    ToolCallArgs => "TOOL_CALL_ARGS",
    ToolCallEnd => "TOOL_CALL_END",
    ToolCallChunk => "TOOL_CALL_CHUNK",
    ToolCallResult => "TOOL_CALL_RESULT",
    StateSnapshot => "STATE_SNAPSHOT",
    StateDelta => "STATE_DELTA",
    MessagesSnapshot => "MESSAGES_SNAPSHOT",
    ActivitySnapshot => "ACTIVITY_SNAPSHOT",
    ActivityDelta => "ACTIVITY_DELTA",
    Raw => "RAW",
    Custom => "CUSTOM",
    RunStarted => "RUN_STARTED",
    RunFinished => "RUN_FINISHED",
    RunError => "RUN_ERROR",
    StepStarted => "STEP_STARTED",
    StepFinished => "STEP_FINISHED",
    ReasoningStart => "REASONING_START",
    ReasoningMessageStart => "REASONING_MESSAGE_START",
    ReasoningMessageContent => "REASONING_MESSAGE_CONTENT",
    ReasoningMessageEnd => "REASONING_MESSAGE_END",
    ReasoningMessageChunk => "REASONING_MESSAGE_CHUNK",
    ReasoningEnd => "REASONING_END",
    ReasoningEncryptedValue => "REASONING_ENCRYPTED_VALUE",
    SubagentStarted => "SUBAGENT_STARTED",
    SubagentFinished => "SUBAGENT_FINISHED",
    SubagentError => "SUBAGENT_ERROR",
}

impl AgUiEventType {
    /// Whether this type ends a run (`RUN_FINISHED`, `RUN_ERROR`).
    pub fn is_terminal(&self) -> bool {
        matches!(self, AgUiEventType::RunFinished | AgUiEventType::RunError)
    }
}

impl std::fmt::Display for AgUiEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is open in a run (a text message, a tool call, …), as the rules
/// name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgUiOpen {
    /// A text message (`TEXT_MESSAGE_START` … `TEXT_MESSAGE_END`), by
    /// `messageId`.
    TextMessage,
    /// A tool call (`TOOL_CALL_START` … `TOOL_CALL_END`), by `toolCallId`.
    ToolCall,
    /// A step (`STEP_STARTED` … `STEP_FINISHED`), by `stepName`.
    Step,
    /// A reasoning span (`REASONING_START` … `REASONING_END`), by
    /// `messageId`.
    ReasoningSpan,
    /// A reasoning message (`REASONING_MESSAGE_START` …
    /// `REASONING_MESSAGE_END`), by `messageId`.
    ReasoningMessage,
    /// A subagent (`SUBAGENT_STARTED` … `SUBAGENT_FINISHED` or
    /// `SUBAGENT_ERROR`), by `subagentRunId`.
    Subagent,
}

impl AgUiOpen {
    const ALL: [AgUiOpen; 6] = [
        AgUiOpen::TextMessage,
        AgUiOpen::ToolCall,
        AgUiOpen::Step,
        AgUiOpen::ReasoningSpan,
        AgUiOpen::ReasoningMessage,
        AgUiOpen::Subagent,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// How the rules call it ("text message", "tool call", …).
    pub fn as_str(&self) -> &'static str {
        match self {
            AgUiOpen::TextMessage => "text message",
            AgUiOpen::ToolCall => "tool call",
            AgUiOpen::Step => "step",
            AgUiOpen::ReasoningSpan => "reasoning span",
            AgUiOpen::ReasoningMessage => "reasoning message",
            AgUiOpen::Subagent => "subagent",
        }
    }
}

impl std::fmt::Display for AgUiOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Things one run may hold open at once, of each kind (and subagents it
/// may start in all): past it the run breaks [`AgUiViolation::TooManyOpen`].
/// Bounds the rules' memory whatever an agent sends.
pub const MAX_OPEN_PER_KIND: usize = 1024;

/// A rule of AG-UI a run broke; the event that broke it is not part of the
/// run (a gateway ends the run with `RUN_ERROR` instead of passing it on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgUiViolation {
    /// Not a JSON object with a string `type`, or a field of the wrong
    /// JSON type.
    #[error("not an AG-UI event: {0}")]
    Malformed(String),
    /// A field the event's type requires is missing.
    #[error("AG-UI {event} without `{field}`")]
    MissingField {
        /// The event's type.
        event: AgUiEventType,
        /// The field.
        field: &'static str,
    },
    /// The first event is neither `RUN_STARTED` nor `RUN_ERROR`.
    #[error("the first event must be RUN_STARTED, not {0}")]
    FirstEvent(String),
    /// `RUN_STARTED` while the run is already started.
    #[error("RUN_STARTED while the run is already started")]
    RunStartedTwice,
    /// An event after the run's `RUN_FINISHED` or `RUN_ERROR`.
    #[error("{event} after the run ended with {ended}")]
    AfterEnd {
        /// The event's type name.
        event: String,
        /// How the run ended.
        ended: AgUiEventType,
    },
    /// An event for a message, tool call, step, reasoning span or subagent
    /// that is not open.
    #[error("{event} for {kind} {id:?}, which is not open")]
    NotOpen {
        /// The event's type.
        event: AgUiEventType,
        /// What it names.
        kind: AgUiOpen,
        /// Its id (or step name).
        id: String,
    },
    /// An id (or step name) opened again while it is still open (a
    /// subagent's id also once it has ended: they are per invocation).
    #[error("{event} for {kind} {id:?}, which is already open (or, for a subagent, was used)")]
    Reused {
        /// The event's type.
        event: AgUiEventType,
        /// What it opens.
        kind: AgUiOpen,
        /// Its id (or step name).
        id: String,
    },
    /// `RUN_FINISHED` while something is still open.
    #[error("RUN_FINISHED while {kind}s are still open: {ids}")]
    FinishedWithOpen {
        /// The first kind still open.
        kind: AgUiOpen,
        /// Their ids, comma-separated (at most ten).
        ids: String,
    },
    /// More than [`MAX_OPEN_PER_KIND`] of one kind open at once.
    #[error("more than {MAX_OPEN_PER_KIND} {kind}s open at once")]
    TooManyOpen {
        /// The kind.
        kind: AgUiOpen,
    },
}

impl AgUiViolation {
    /// The rule's stable name, for metrics labels and logs:
    /// `malformed`, `missing_field`, `first_event`, `run_started_twice`,
    /// `after_end`, `not_open`, `reused`, `finished_with_open`,
    /// `too_many_open`.
    pub fn rule(&self) -> &'static str {
        match self {
            AgUiViolation::Malformed(_) => "malformed",
            AgUiViolation::MissingField { .. } => "missing_field",
            AgUiViolation::FirstEvent(_) => "first_event",
            AgUiViolation::RunStartedTwice => "run_started_twice",
            AgUiViolation::AfterEnd { .. } => "after_end",
            AgUiViolation::NotOpen { .. } => "not_open",
            AgUiViolation::Reused { .. } => "reused",
            AgUiViolation::FinishedWithOpen { .. } => "finished_with_open",
            AgUiViolation::TooManyOpen { .. } => "too_many_open",
        }
    }

    /// Every rule name [`rule`](Self::rule) returns.
    pub const RULES: [&'static str; 9] = [
        "malformed",
        "missing_field",
        "first_event",
        "run_started_twice",
        "after_end",
        "not_open",
        "reused",
        "finished_with_open",
        "too_many_open",
    ];
}

/// What [`AgUiRules::check`] learned of an event that broke no rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgUiChecked {
    /// Its type; `None` for a type AG-UI 1.0 does not define (passed
    /// through, counted in [`AgUiRules::unknown_events`]).
    pub event_type: Option<AgUiEventType>,
    /// Whether it ended the run.
    pub terminal: bool,
}

/// The fields the rules read; everything else is left unparsed.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "messageId", default, borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(rename = "toolCallId", default, borrow)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(rename = "stepName", default, borrow)]
    step_name: Option<Cow<'a, str>>,
    /// `Some(None)` when present as `null` (refused), `None` when absent.
    #[serde(
        rename = "subagentRunId",
        default,
        borrow,
        deserialize_with = "present"
    )]
    subagent_run_id: Option<Option<Id<'a>>>,
}

/// A string that borrows from the event's text when it can.
#[derive(Deserialize)]
struct Id<'a>(#[serde(borrow)] Cow<'a, str>);

/// A field that is present (perhaps `null`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// One AG-UI run's rules, event by event:
///
/// - the first event is `RUN_STARTED` (or `RUN_ERROR`), and there is one;
/// - `TEXT_MESSAGE_CONTENT`/`END` only for an open `messageId`;
///   `TOOL_CALL_ARGS`/`END` only for an open `toolCallId`; `STEP_FINISHED`
///   only for a started `stepName`; `REASONING_MESSAGE_CONTENT`/`END` and
///   `REASONING_END` only for an open reasoning message or span;
///   `SUBAGENT_FINISHED`/`ERROR`, and any event naming a `subagentRunId`,
///   only for an active subagent;
/// - an id is not opened again while it is open (a subagent's never again);
/// - nothing after `RUN_FINISHED` or `RUN_ERROR`; `RUN_FINISHED` with
///   anything still open is a violation;
/// - the ids these rules read are strings, present where the type requires
///   them (`subagentRunId: null` is refused, as AG-UI's verifier does).
///
/// Chunk events (`TEXT_MESSAGE_CHUNK`, `TOOL_CALL_CHUNK`,
/// `REASONING_MESSAGE_CHUNK`) and types AG-UI 1.0 does not define pass.
/// An event that breaks a rule changes nothing.
///
/// ```
/// use wsc_event_monitor::{AgUiRules, AgUiViolation};
///
/// let mut run = AgUiRules::new();
/// run.check(r#"{"type":"RUN_STARTED","threadId":"t","runId":"r"}"#).unwrap();
/// run.check(r#"{"type":"TEXT_MESSAGE_START","messageId":"m","role":"assistant"}"#).unwrap();
/// let err = run.check(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"other","delta":"hi"}"#).unwrap_err();
/// assert_eq!(err.rule(), "not_open");
/// let err = run.check(r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r"}"#).unwrap_err();
/// assert!(matches!(err, AgUiViolation::FinishedWithOpen { .. }));
/// run.check(r#"{"type":"TEXT_MESSAGE_END","messageId":"m"}"#).unwrap();
/// assert!(run.check(r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r"}"#).unwrap().terminal);
/// ```
#[derive(Debug, Default)]
pub struct AgUiRules {
    started: bool,
    ended: Option<AgUiEventType>,
    open: [HashSet<String>; 6],
    /// Subagents that ended (their ids may not be used again).
    subagents_done: HashSet<String>,
    events: u64,
    unknown: u64,
}

impl AgUiRules {
    /// The rules of a new run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the run has ended (`RUN_FINISHED` or `RUN_ERROR`).
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// Events that broke no rule so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Events of a type AG-UI 1.0 does not define, among them.
    pub fn unknown_events(&self) -> u64 {
        self.unknown
    }

    /// Checks one event (its JSON text) against the run so far and, if it
    /// breaks no rule, applies it.
    ///
    /// # Errors
    /// The [`AgUiViolation`] it commits; the run's state is unchanged.
    pub fn check(&mut self, event: &str) -> Result<AgUiChecked, AgUiViolation> {
        let fields: Fields<'_> =
            serde_json::from_str(event).map_err(|e| AgUiViolation::Malformed(e.to_string()))?;
        let kind = AgUiEventType::from_name(&fields.kind);
        if let Some(ended) = self.ended {
            return Err(AgUiViolation::AfterEnd {
                event: truncated(&fields.kind),
                ended,
            });
        }
        if !self.started
            && !matches!(
                kind,
                Some(AgUiEventType::RunStarted | AgUiEventType::RunError)
            )
        {
            return Err(AgUiViolation::FirstEvent(truncated(&fields.kind)));
        }
        let Some(kind) = kind else {
            self.events += 1;
            self.unknown += 1;
            return Ok(AgUiChecked {
                event_type: None,
                terminal: false,
            });
        };
        let subagent = match &fields.subagent_run_id {
            None => None,
            Some(None) => {
                return Err(AgUiViolation::Malformed(format!(
                    "{kind} with `subagentRunId: null` (omit the field)"
                )));
            }
            Some(Some(id)) => Some(id.0.as_ref()),
        };
        let change = self.judge(kind, &fields, subagent)?;
        match change {
            Change::None => {}
            Change::Open(open, id) => {
                self.open[open.index()].insert(id.to_owned());
            }
            Change::Close(open, id) => {
                self.open[open.index()].remove(id);
                if open == AgUiOpen::Subagent {
                    self.subagents_done.insert(id.to_owned());
                }
            }
            Change::Start => self.started = true,
            Change::End => self.ended = Some(kind),
        }
        self.events += 1;
        Ok(AgUiChecked {
            event_type: Some(kind),
            terminal: kind.is_terminal(),
        })
    }

    /// The verdict on one event of a known type, and what it changes.
    fn judge<'e>(
        &self,
        kind: AgUiEventType,
        fields: &'e Fields<'e>,
        subagent: Option<&'e str>,
    ) -> Result<Change<'e>, AgUiViolation> {
        use AgUiEventType as T;
        if let Some(id) = subagent
            && kind != T::SubagentStarted
            && !self.open[AgUiOpen::Subagent.index()].contains(id)
        {
            return Err(AgUiViolation::NotOpen {
                event: kind,
                kind: AgUiOpen::Subagent,
                id: truncated(id),
            });
        }
        let required = |value: &'e Option<Cow<'e, str>>, field: &'static str| {
            value
                .as_deref()
                .ok_or(AgUiViolation::MissingField { event: kind, field })
        };
        let open = |what: AgUiOpen, id: &'e str| self.open_one(kind, what, id);
        let close = |what: AgUiOpen, id: &'e str| self.close_one(kind, what, id);
        match kind {
            T::RunStarted if self.started => Err(AgUiViolation::RunStartedTwice),
            T::RunStarted => Ok(Change::Start),
            T::RunError => Ok(Change::End),
            T::RunFinished => {
                for what in AgUiOpen::ALL {
                    let ids = &self.open[what.index()];
                    if !ids.is_empty() {
                        let mut listed: Vec<&str> = ids.iter().map(String::as_str).collect();
                        listed.sort_unstable();
                        listed.truncate(10);
                        return Err(AgUiViolation::FinishedWithOpen {
                            kind: what,
                            ids: truncated(&listed.join(", ")),
                        });
                    }
                }
                Ok(Change::End)
            }
            T::TextMessageStart => open(
                AgUiOpen::TextMessage,
                required(&fields.message_id, "messageId")?,
            ),
            T::TextMessageContent | T::TextMessageEnd => {
                let id = required(&fields.message_id, "messageId")?;
                let change = close(AgUiOpen::TextMessage, id)?;
                Ok(if kind == T::TextMessageEnd {
                    change
                } else {
                    Change::None
                })
            }
            T::ToolCallStart => open(
                AgUiOpen::ToolCall,
                required(&fields.tool_call_id, "toolCallId")?,
            ),
            T::ToolCallArgs | T::ToolCallEnd => {
                let id = required(&fields.tool_call_id, "toolCallId")?;
                let change = close(AgUiOpen::ToolCall, id)?;
                Ok(if kind == T::ToolCallEnd {
                    change
                } else {
                    Change::None
                })
            }
            T::StepStarted => open(AgUiOpen::Step, required(&fields.step_name, "stepName")?),
            T::StepFinished => close(AgUiOpen::Step, required(&fields.step_name, "stepName")?),
            T::ReasoningStart => open(
                AgUiOpen::ReasoningSpan,
                required(&fields.message_id, "messageId")?,
            ),
            T::ReasoningEnd => close(
                AgUiOpen::ReasoningSpan,
                required(&fields.message_id, "messageId")?,
            ),
            T::ReasoningMessageStart => open(
                AgUiOpen::ReasoningMessage,
                required(&fields.message_id, "messageId")?,
            ),
            T::ReasoningMessageContent | T::ReasoningMessageEnd => {
                let id = required(&fields.message_id, "messageId")?;
                let change = close(AgUiOpen::ReasoningMessage, id)?;
                Ok(if kind == T::ReasoningMessageEnd {
                    change
                } else {
                    Change::None
                })
            }
            T::SubagentStarted => {
                let id = subagent.ok_or(AgUiViolation::MissingField {
                    event: kind,
                    field: "subagentRunId",
                })?;
                if self.subagents_done.contains(id) {
                    return Err(AgUiViolation::Reused {
                        event: kind,
                        kind: AgUiOpen::Subagent,
                        id: truncated(id),
                    });
                }
                if self.subagents_done.len() >= MAX_OPEN_PER_KIND {
                    return Err(AgUiViolation::TooManyOpen {
                        kind: AgUiOpen::Subagent,
                    });
                }
                open(AgUiOpen::Subagent, id)
            }
            T::SubagentFinished | T::SubagentError => {
                let id = subagent.ok_or(AgUiViolation::MissingField {
                    event: kind,
                    field: "subagentRunId",
                })?;
                close(AgUiOpen::Subagent, id)
            }
            _ => Ok(Change::None),
        }
    }

    fn open_one<'e>(
        &self,
        event: AgUiEventType,
        what: AgUiOpen,
        id: &'e str,
    ) -> Result<Change<'e>, AgUiViolation> {
        let ids = &self.open[what.index()];
        if ids.contains(id) {
            return Err(AgUiViolation::Reused {
                event,
                kind: what,
                id: truncated(id),
            });
        }
        if ids.len() >= MAX_OPEN_PER_KIND {
            return Err(AgUiViolation::TooManyOpen { kind: what });
        }
        Ok(Change::Open(what, id))
    }

    fn close_one<'e>(
        &self,
        event: AgUiEventType,
        what: AgUiOpen,
        id: &'e str,
    ) -> Result<Change<'e>, AgUiViolation> {
        if self.open[what.index()].contains(id) {
            Ok(Change::Close(what, id))
        } else {
            Err(AgUiViolation::NotOpen {
                event,
                kind: what,
                id: truncated(id),
            })
        }
    }
}

/// What an event that broke no rule changes.
enum Change<'e> {
    None,
    Open(AgUiOpen, &'e str),
    Close(AgUiOpen, &'e str),
    Start,
    End,
}

/// At most 100 characters of a name or id an agent sent, for a message.
fn truncated(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[&str]) -> Result<AgUiRules, (usize, AgUiViolation)> {
        let mut rules = AgUiRules::new();
        for (i, e) in events.iter().enumerate() {
            rules.check(e).map_err(|v| (i, v))?;
        }
        Ok(rules)
    }

    const START: &str = r#"{"type":"RUN_STARTED","threadId":"t","runId":"r"}"#;
    const FINISH: &str = r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r"}"#;

    #[test]
    fn there_are_31_types_and_each_name_maps_back() {
        let names: HashSet<&str> = AgUiEventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), 31);
        for t in AgUiEventType::ALL {
            assert_eq!(AgUiEventType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(AgUiEventType::from_name("THINKING_START"), None);
    }

    #[test]
    fn a_run_using_every_kind_of_span_passes_and_unknown_types_are_counted() {
        let rules = run(&[
            START,
            r#"{"type":"STEP_STARTED","stepName":"plan"}"#,
            r#"{"type":"REASONING_START","messageId":"r1"}"#,
            r#"{"type":"REASONING_MESSAGE_START","messageId":"r1m","role":"reasoning"}"#,
            r#"{"type":"REASONING_MESSAGE_CONTENT","messageId":"r1m","delta":"hm"}"#,
            r#"{"type":"REASONING_MESSAGE_END","messageId":"r1m"}"#,
            r#"{"type":"REASONING_END","messageId":"r1"}"#,
            r#"{"type":"STEP_FINISHED","stepName":"plan"}"#,
            r#"{"type":"SUBAGENT_STARTED","subagentRunId":"s1","name":"helper"}"#,
            r#"{"type":"TEXT_MESSAGE_START","messageId":"m","role":"assistant","subagentRunId":"s1"}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"a","subagentRunId":"s1"}"#,
            r#"{"type":"TEXT_MESSAGE_END","messageId":"m","subagentRunId":"s1"}"#,
            r#"{"type":"SUBAGENT_FINISHED","subagentRunId":"s1"}"#,
            r#"{"type":"TOOL_CALL_START","toolCallId":"c","toolCallName":"search"}"#,
            r#"{"type":"TOOL_CALL_ARGS","toolCallId":"c","delta":"{}"}"#,
            r#"{"type":"TOOL_CALL_END","toolCallId":"c"}"#,
            r#"{"type":"TOOL_CALL_RESULT","messageId":"x","toolCallId":"c","content":"ok"}"#,
            r#"{"type":"TEXT_MESSAGE_CHUNK","messageId":"m2","delta":"b"}"#,
            r#"{"type":"STATE_SNAPSHOT","snapshot":{}}"#,
            r#"{"type":"SOMETHING_NEW","x":1}"#,
            r#"{"type":"CUSTOM","name":"n","value":1}"#,
            FINISH,
        ])
        .unwrap();
        assert!(rules.is_ended());
        assert_eq!((rules.events(), rules.unknown_events()), (22, 1));
    }

    #[test]
    fn each_rule_has_its_violation() {
        let cases: [(&[&str], &str); 14] = [
            (&["[1]"], "malformed"),
            (&[r#"{"type":"RUN_STARTED","messageId":7}"#], "malformed"),
            (
                &[START, r#"{"type":"TEXT_MESSAGE_START","role":"assistant"}"#],
                "missing_field",
            ),
            (
                &[r#"{"type":"TEXT_MESSAGE_START","messageId":"m"}"#],
                "first_event",
            ),
            (&[START, START], "run_started_twice"),
            (
                &[START, FINISH, r#"{"type":"CUSTOM","name":"n"}"#],
                "after_end",
            ),
            (
                &[r#"{"type":"RUN_ERROR","message":"x"}"#, START],
                "after_end",
            ),
            (
                &[START, r#"{"type":"TEXT_MESSAGE_END","messageId":"m"}"#],
                "not_open",
            ),
            (
                &[
                    START,
                    r#"{"type":"TOOL_CALL_ARGS","toolCallId":"c","delta":""}"#,
                ],
                "not_open",
            ),
            (
                &[START, r#"{"type":"STEP_FINISHED","stepName":"s"}"#],
                "not_open",
            ),
            (
                &[
                    START,
                    r#"{"type":"CUSTOM","name":"n","subagentRunId":"ghost"}"#,
                ],
                "not_open",
            ),
            (
                &[
                    START,
                    r#"{"type":"TOOL_CALL_START","toolCallId":"c","toolCallName":"t"}"#,
                    r#"{"type":"TOOL_CALL_START","toolCallId":"c","toolCallName":"t"}"#,
                ],
                "reused",
            ),
            (
                &[START, r#"{"type":"STEP_STARTED","stepName":"s"}"#, FINISH],
                "finished_with_open",
            ),
            (
                &[
                    START,
                    r#"{"type":"CUSTOM","name":"n","subagentRunId":null}"#,
                ],
                "malformed",
            ),
        ];
        for (events, rule) in cases {
            let (at, violation) = run(events)
                .err()
                .unwrap_or_else(|| panic!("{events:?} passed"));
            assert_eq!(at, events.len() - 1, "{events:?}: {violation}");
            assert_eq!(violation.rule(), rule, "{events:?}: {violation}");
            assert!(AgUiViolation::RULES.contains(&violation.rule()));
        }
    }

    #[test]
    fn a_subagent_id_is_used_once_and_open_things_are_bounded() {
        let err = run(&[
            START,
            r#"{"type":"SUBAGENT_STARTED","subagentRunId":"s","name":"a"}"#,
            r#"{"type":"SUBAGENT_ERROR","subagentRunId":"s","message":"x"}"#,
            r#"{"type":"SUBAGENT_STARTED","subagentRunId":"s","name":"a"}"#,
        ])
        .err()
        .unwrap();
        assert_eq!(err.1.rule(), "reused");

        let mut rules = AgUiRules::new();
        rules.check(START).unwrap();
        for i in 0..MAX_OPEN_PER_KIND {
            rules
                .check(&format!(r#"{{"type":"STEP_STARTED","stepName":"s{i}"}}"#))
                .unwrap();
        }
        let err = rules
            .check(r#"{"type":"STEP_STARTED","stepName":"one-more"}"#)
            .unwrap_err();
        assert_eq!(
            err,
            AgUiViolation::TooManyOpen {
                kind: AgUiOpen::Step
            }
        );
    }

    #[test]
    fn a_violating_event_changes_nothing() {
        let mut rules = AgUiRules::new();
        rules.check(START).unwrap();
        rules
            .check(r#"{"type":"TEXT_MESSAGE_START","messageId":"m"}"#)
            .unwrap();
        assert!(rules.check(FINISH).is_err());
        assert!(!rules.is_ended(), "the refused RUN_FINISHED did not end it");
        rules
            .check(r#"{"type":"TEXT_MESSAGE_END","messageId":"m"}"#)
            .unwrap();
        rules.check(FINISH).unwrap();
        assert_eq!(rules.events(), 4);
    }
}
