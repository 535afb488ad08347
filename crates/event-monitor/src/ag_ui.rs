//! AG-UI's rules for one run, beside the legacy order rules: [`AgUiRules`]
//! checks each event of an AG-UI run (as an AG-UI agent streams it) the way
//! `@ag-ui/client` 1.0 verifies the events it receives, so that a stream
//! the gateway passes on never makes a frontend's own verifier throw. Each
//! broken rule is an [`AgUiViolation`], named by [`AgUiViolation::rule`]
//! (a stable label for metrics).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

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
    /// An event naming a subagent (`subagentRunId`) continues or ends
    /// what another agent opened.
    #[error("{event} from subagent {subagent:?} for {kind} {id:?}, which another agent opened")]
    WrongSubagent {
        /// The event's type.
        event: AgUiEventType,
        /// What it continues.
        kind: AgUiOpen,
        /// Its id.
        id: String,
        /// The subagent the event names.
        subagent: String,
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
    /// `after_end`, `not_open`, `reused`, `wrong_subagent`,
    /// `finished_with_open`, `too_many_open`.
    pub fn rule(&self) -> &'static str {
        match self {
            AgUiViolation::Malformed(_) => "malformed",
            AgUiViolation::MissingField { .. } => "missing_field",
            AgUiViolation::FirstEvent(_) => "first_event",
            AgUiViolation::RunStartedTwice => "run_started_twice",
            AgUiViolation::AfterEnd { .. } => "after_end",
            AgUiViolation::NotOpen { .. } => "not_open",
            AgUiViolation::Reused { .. } => "reused",
            AgUiViolation::WrongSubagent { .. } => "wrong_subagent",
            AgUiViolation::FinishedWithOpen { .. } => "finished_with_open",
            AgUiViolation::TooManyOpen { .. } => "too_many_open",
        }
    }

    /// Every rule name [`rule`](Self::rule) returns.
    pub const RULES: [&'static str; 10] = [
        "malformed",
        "missing_field",
        "first_event",
        "run_started_twice",
        "after_end",
        "not_open",
        "reused",
        "wrong_subagent",
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

/// A field's value as the rules see it: a string, or anything else.
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose<'a> {
    Str(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

impl Loose<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            Loose::Other(_) => None,
        }
    }
}

/// The fields the rules read; everything else is left unparsed. Each is
/// `None` when absent, `Some(None)` when `null`.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "messageId", default, borrow, deserialize_with = "present")]
    message_id: Option<Option<Loose<'a>>>,
    #[serde(rename = "toolCallId", default, borrow, deserialize_with = "present")]
    tool_call_id: Option<Option<Loose<'a>>>,
    #[serde(rename = "stepName", default, borrow, deserialize_with = "present")]
    step_name: Option<Option<Loose<'a>>>,
    #[serde(
        rename = "subagentRunId",
        default,
        borrow,
        deserialize_with = "present"
    )]
    subagent_run_id: Option<Option<Loose<'a>>>,
    #[serde(
        rename = "parentSubagentRunId",
        default,
        borrow,
        deserialize_with = "present"
    )]
    parent_subagent_run_id: Option<Option<Loose<'a>>>,
    #[serde(default, borrow, deserialize_with = "present")]
    name: Option<Option<Loose<'a>>>,
    #[serde(default, borrow, deserialize_with = "present")]
    message: Option<Option<Loose<'a>>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<serde::de::IgnoredAny>>,
    #[serde(rename = "parentToolCallId", default, deserialize_with = "present")]
    parent_tool_call_id: Option<Option<serde::de::IgnoredAny>>,
    #[serde(rename = "parentMessageId", default, deserialize_with = "present")]
    parent_message_id: Option<Option<serde::de::IgnoredAny>>,
    #[serde(default, deserialize_with = "present")]
    code: Option<Option<serde::de::IgnoredAny>>,
    #[serde(default, deserialize_with = "present")]
    outcome: Option<Option<Outcome<'a>>>,
}

/// A subagent's `outcome`: only its `type` is read.
#[derive(Deserialize)]
struct Outcome<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Loose<'a>>,
}

/// A field that is present (perhaps `null`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field's string: `None` when absent, `null` or not a string.
fn text<'f>(field: &'f Option<Option<Loose<'_>>>) -> Option<&'f str> {
    field.as_ref()?.as_ref()?.as_str()
}

/// One AG-UI run's rules, event by event, as `@ag-ui/client` 1.0's
/// `verifyEvents` applies them to a run:
///
/// - the first event is `RUN_STARTED` (or `RUN_ERROR`), and there is one;
/// - `TEXT_MESSAGE_CONTENT`/`END` only for an open `messageId`;
///   `TOOL_CALL_ARGS`/`END` only for an open `toolCallId`; `STEP_FINISHED`
///   only for a `stepName` started by the same agent (the run's, or the
///   subagent its `subagentRunId` names); `REASONING_MESSAGE_CONTENT`/`END`
///   and `REASONING_END` only for an open reasoning message or span;
///   `SUBAGENT_FINISHED`/`ERROR` only for an active subagent;
/// - an event naming a `subagentRunId` continues only what that subagent
///   opened (`wrong_subagent`);
/// - an id is not opened again while it is open (a subagent's never again;
///   a subagent's parent must have started);
/// - nothing after `RUN_FINISHED` or `RUN_ERROR`; `RUN_FINISHED` with
///   anything still open is a violation;
/// - the ids these rules read are strings, present where the type requires
///   them; a `SUBAGENT_STARTED` has a `name`, a `SUBAGENT_ERROR` a
///   `message`; `subagentRunId` and a subagent event's optional fields are
///   never `null`, and a subagent's `outcome` is `success` or `suspended`.
///
/// Chunk events (`TEXT_MESSAGE_CHUNK`, `TOOL_CALL_CHUNK`,
/// `REASONING_MESSAGE_CHUNK`) and types AG-UI 1.0 does not define pass.
/// An event that breaks a rule changes nothing. Where AG-UI lets a new run
/// start on the same stream after `RUN_FINISHED`, a gateway's run is over
/// (`after_end`).
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
    /// What is open, by kind: id (for steps, the step's key) -> the
    /// subagent that opened it (`None`: the run's own agent).
    open: [HashMap<String, Option<String>>; 6],
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

    /// The events that close everything still open — text messages, tool
    /// calls, reasoning messages and spans, steps, then subagents — each as
    /// its JSON text, in an order these rules accept, so that a
    /// `RUN_FINISHED` may follow (a gateway ending a run early, for
    /// instance on cancel).
    pub fn closing_events(&self) -> Vec<String> {
        let order = [
            (AgUiOpen::TextMessage, "TEXT_MESSAGE_END", "messageId"),
            (AgUiOpen::ToolCall, "TOOL_CALL_END", "toolCallId"),
            (
                AgUiOpen::ReasoningMessage,
                "REASONING_MESSAGE_END",
                "messageId",
            ),
            (AgUiOpen::ReasoningSpan, "REASONING_END", "messageId"),
            (AgUiOpen::Step, "STEP_FINISHED", "stepName"),
        ];
        let mut events = Vec::new();
        for (what, kind, field) in order {
            let mut open: Vec<(&String, &Option<String>)> =
                self.open[what.index()].iter().collect();
            open.sort();
            for (id, lane) in open {
                let id = id.split('\u{0}').next().unwrap_or(id);
                let mut event = serde_json::json!({"type": kind, field: id});
                if let Some(lane) = lane {
                    event["subagentRunId"] = serde_json::Value::from(lane.as_str());
                }
                events.push(event.to_string());
            }
        }
        let mut subagents: Vec<&String> = self.open[AgUiOpen::Subagent.index()].keys().collect();
        subagents.sort();
        for id in subagents {
            events.push(
                serde_json::json!({"type": "SUBAGENT_FINISHED", "subagentRunId": id}).to_string(),
            );
        }
        events
    }

    /// Checks one event (its JSON text) against the run so far and, if it
    /// breaks no rule, applies it.
    ///
    /// # Errors
    /// The [`AgUiViolation`] it commits; the run's state is unchanged.
    pub fn check(&mut self, event: &str) -> Result<AgUiChecked, AgUiViolation> {
        // A derived struct would also read a JSON array, by position.
        if !event.trim_start().starts_with('{') {
            return Err(AgUiViolation::Malformed("not a JSON object".into()));
        }
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
        let lane = match &fields.subagent_run_id {
            None => None,
            Some(Some(Loose::Str(id))) => Some(id.as_ref()),
            Some(_) => {
                return Err(AgUiViolation::Malformed(format!(
                    "{} with a `subagentRunId` that is not a string (omit the field)",
                    truncated(&fields.kind)
                )));
            }
        };
        let Some(kind) = kind else {
            self.events += 1;
            self.unknown += 1;
            return Ok(AgUiChecked {
                event_type: None,
                terminal: false,
            });
        };
        match self.judge(kind, &fields, lane)? {
            Change::None => {}
            Change::Open(what, id) => {
                self.open[what.index()].insert(id, lane.map(str::to_owned));
            }
            Change::Close(what, id) => {
                self.open[what.index()].remove(&id);
                if what == AgUiOpen::Subagent {
                    self.subagents_done.insert(id);
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
    fn judge(
        &self,
        kind: AgUiEventType,
        fields: &Fields<'_>,
        lane: Option<&str>,
    ) -> Result<Change, AgUiViolation> {
        use AgUiEventType as T;
        let required = |value: &Option<Option<Loose<'_>>>, field: &'static str| {
            text(value)
                .map(str::to_owned)
                .ok_or(AgUiViolation::MissingField { event: kind, field })
        };
        // A step is keyed by its name within the agent that runs it.
        let step = || {
            required(&fields.step_name, "stepName").map(|name| match lane {
                Some(lane) => format!("{name}\u{0}{lane}"),
                None => name,
            })
        };
        match kind {
            T::RunStarted if self.started => Err(AgUiViolation::RunStartedTwice),
            T::RunStarted => Ok(Change::Start),
            T::RunError => Ok(Change::End),
            T::RunFinished => {
                for what in AgUiOpen::ALL {
                    let ids = &self.open[what.index()];
                    if !ids.is_empty() {
                        let mut listed: Vec<&str> = ids
                            .keys()
                            .map(|id| id.split('\u{0}').next().unwrap_or(id))
                            .collect();
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
            T::TextMessageStart => self.open_one(
                kind,
                AgUiOpen::TextMessage,
                required(&fields.message_id, "messageId")?,
            ),
            T::TextMessageContent => self.continue_one(
                kind,
                AgUiOpen::TextMessage,
                required(&fields.message_id, "messageId")?,
                lane,
                false,
            ),
            T::TextMessageEnd => self.continue_one(
                kind,
                AgUiOpen::TextMessage,
                required(&fields.message_id, "messageId")?,
                lane,
                true,
            ),
            T::ToolCallStart => self.open_one(
                kind,
                AgUiOpen::ToolCall,
                required(&fields.tool_call_id, "toolCallId")?,
            ),
            T::ToolCallArgs => self.continue_one(
                kind,
                AgUiOpen::ToolCall,
                required(&fields.tool_call_id, "toolCallId")?,
                lane,
                false,
            ),
            T::ToolCallEnd => self.continue_one(
                kind,
                AgUiOpen::ToolCall,
                required(&fields.tool_call_id, "toolCallId")?,
                lane,
                true,
            ),
            T::StepStarted => self.open_one(kind, AgUiOpen::Step, step()?),
            T::StepFinished => {
                let key = step()?;
                if self.open[AgUiOpen::Step.index()].contains_key(&key) {
                    Ok(Change::Close(AgUiOpen::Step, key))
                } else {
                    Err(AgUiViolation::NotOpen {
                        event: kind,
                        kind: AgUiOpen::Step,
                        id: truncated(key.split('\u{0}').next().unwrap_or(&key)),
                    })
                }
            }
            T::ReasoningStart => self.open_one(
                kind,
                AgUiOpen::ReasoningSpan,
                required(&fields.message_id, "messageId")?,
            ),
            T::ReasoningEnd => self.continue_one(
                kind,
                AgUiOpen::ReasoningSpan,
                required(&fields.message_id, "messageId")?,
                lane,
                true,
            ),
            T::ReasoningMessageStart => self.open_one(
                kind,
                AgUiOpen::ReasoningMessage,
                required(&fields.message_id, "messageId")?,
            ),
            T::ReasoningMessageContent => self.continue_one(
                kind,
                AgUiOpen::ReasoningMessage,
                required(&fields.message_id, "messageId")?,
                lane,
                false,
            ),
            T::ReasoningMessageEnd => self.continue_one(
                kind,
                AgUiOpen::ReasoningMessage,
                required(&fields.message_id, "messageId")?,
                lane,
                true,
            ),
            T::SubagentStarted | T::SubagentFinished | T::SubagentError => {
                self.judge_subagent(kind, fields, lane)
            }
            _ => Ok(Change::None),
        }
    }

    /// `SUBAGENT_STARTED`, `SUBAGENT_FINISHED`, `SUBAGENT_ERROR`.
    fn judge_subagent(
        &self,
        kind: AgUiEventType,
        fields: &Fields<'_>,
        lane: Option<&str>,
    ) -> Result<Change, AgUiViolation> {
        use AgUiEventType as T;
        let null = |field: &str| {
            AgUiViolation::Malformed(format!("{kind} with `{field}: null` (omit the field)"))
        };
        let nulls: &[(bool, &str)] = match kind {
            T::SubagentStarted => &[
                (matches!(fields.description, Some(None)), "description"),
                (
                    matches!(fields.parent_subagent_run_id, Some(None)),
                    "parentSubagentRunId",
                ),
                (
                    matches!(fields.parent_tool_call_id, Some(None)),
                    "parentToolCallId",
                ),
                (
                    matches!(fields.parent_message_id, Some(None)),
                    "parentMessageId",
                ),
            ],
            T::SubagentFinished => &[(matches!(fields.outcome, Some(None)), "outcome")],
            _ => &[(matches!(fields.code, Some(None)), "code")],
        };
        if let Some((_, field)) = nulls.iter().find(|(is_null, _)| *is_null) {
            return Err(null(field));
        }
        if let Some(Some(outcome)) = &fields.outcome {
            let t = outcome.kind.as_ref().and_then(Loose::as_str);
            if !matches!(t, Some("success" | "suspended")) {
                return Err(AgUiViolation::Malformed(format!(
                    "{kind} with an outcome that is neither success nor suspended"
                )));
            }
        }
        let id = lane.ok_or(AgUiViolation::MissingField {
            event: kind,
            field: "subagentRunId",
        })?;
        let active = &self.open[AgUiOpen::Subagent.index()];
        match kind {
            T::SubagentStarted => {
                if text(&fields.name).is_none() {
                    return Err(AgUiViolation::MissingField {
                        event: kind,
                        field: "name",
                    });
                }
                if active.contains_key(id) || self.subagents_done.contains(id) {
                    return Err(AgUiViolation::Reused {
                        event: kind,
                        kind: AgUiOpen::Subagent,
                        id: truncated(id),
                    });
                }
                if let Some(parent) = text(&fields.parent_subagent_run_id)
                    && !active.contains_key(parent)
                    && !self.subagents_done.contains(parent)
                {
                    return Err(AgUiViolation::NotOpen {
                        event: kind,
                        kind: AgUiOpen::Subagent,
                        id: truncated(parent),
                    });
                }
                if active.len() >= MAX_OPEN_PER_KIND
                    || self.subagents_done.len() >= MAX_OPEN_PER_KIND
                {
                    return Err(AgUiViolation::TooManyOpen {
                        kind: AgUiOpen::Subagent,
                    });
                }
                Ok(Change::Open(AgUiOpen::Subagent, id.to_owned()))
            }
            _ => {
                if kind == T::SubagentError && text(&fields.message).is_none() {
                    return Err(AgUiViolation::MissingField {
                        event: kind,
                        field: "message",
                    });
                }
                if active.contains_key(id) {
                    Ok(Change::Close(AgUiOpen::Subagent, id.to_owned()))
                } else {
                    Err(AgUiViolation::NotOpen {
                        event: kind,
                        kind: AgUiOpen::Subagent,
                        id: truncated(id),
                    })
                }
            }
        }
    }

    fn open_one(
        &self,
        event: AgUiEventType,
        what: AgUiOpen,
        id: String,
    ) -> Result<Change, AgUiViolation> {
        let ids = &self.open[what.index()];
        if ids.contains_key(&id) {
            return Err(AgUiViolation::Reused {
                event,
                kind: what,
                id: truncated(id.split('\u{0}').next().unwrap_or(&id)),
            });
        }
        if ids.len() >= MAX_OPEN_PER_KIND {
            return Err(AgUiViolation::TooManyOpen { kind: what });
        }
        Ok(Change::Open(what, id))
    }

    /// Content of (or the end of, `closes`) an open message, tool call or
    /// reasoning span: it must be open, and an event naming a subagent
    /// continues only what that subagent opened.
    fn continue_one(
        &self,
        event: AgUiEventType,
        what: AgUiOpen,
        id: String,
        lane: Option<&str>,
        closes: bool,
    ) -> Result<Change, AgUiViolation> {
        let Some(owner) = self.open[what.index()].get(&id) else {
            return Err(AgUiViolation::NotOpen {
                event,
                kind: what,
                id: truncated(&id),
            });
        };
        if let Some(lane) = lane
            && owner.as_deref() != Some(lane)
        {
            return Err(AgUiViolation::WrongSubagent {
                event,
                kind: what,
                id: truncated(&id),
                subagent: truncated(lane),
            });
        }
        Ok(if closes {
            Change::Close(what, id)
        } else {
            Change::None
        })
    }
}

/// What an event that broke no rule changes.
enum Change {
    None,
    Open(AgUiOpen, String),
    Close(AgUiOpen, String),
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
        let cases: [(&[&str], &str); 15] = [
            (&["[1]"], "malformed"),
            (&[r#"["RUN_STARTED", "m"]"#], "malformed"),
            (
                &[START, r#"{"type":"TEXT_MESSAGE_START","messageId":7}"#],
                "missing_field",
            ),
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
                    r#"{"type":"TEXT_MESSAGE_START","messageId":"m"}"#,
                    r#"{"type":"TEXT_MESSAGE_END","messageId":"m","subagentRunId":"s"}"#,
                ],
                "wrong_subagent",
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
    fn closing_events_close_everything_so_the_run_may_finish() {
        let mut rules = AgUiRules::new();
        for e in [
            START,
            r#"{"type":"STEP_STARTED","stepName":"plan"}"#,
            r#"{"type":"SUBAGENT_STARTED","subagentRunId":"s","name":"helper"}"#,
            r#"{"type":"STEP_STARTED","stepName":"plan","subagentRunId":"s"}"#,
            r#"{"type":"TEXT_MESSAGE_START","messageId":"m","subagentRunId":"s"}"#,
            r#"{"type":"TOOL_CALL_START","toolCallId":"c","toolCallName":"f"}"#,
            r#"{"type":"REASONING_START","messageId":"r"}"#,
            r#"{"type":"REASONING_MESSAGE_START","messageId":"rm"}"#,
        ] {
            rules.check(e).unwrap();
        }
        let closing = rules.closing_events();
        assert_eq!(closing.len(), 7);
        for e in &closing {
            rules.check(e).unwrap_or_else(|v| panic!("{e}: {v}"));
        }
        rules.check(FINISH).unwrap();
        assert!(AgUiRules::new().closing_events().is_empty());
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
