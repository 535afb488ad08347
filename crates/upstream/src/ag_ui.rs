//! [`AgUiMapper`]: AG-UI events (one JSON object each, as an AG-UI backend
//! streams them) turned into wsc lifecycle frames, per the mapping in
//! the project's `docs/agents.md`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value, json};
use wsc_core::MessageType;

/// One wsc frame the mapper produced: its type and payload (the gateway adds
/// `run_id` and `agent_name`, numbers and buffers it).
#[derive(Clone, Debug, PartialEq)]
pub struct MappedFrame {
    /// The frame's type.
    pub message_type: MessageType,
    /// Its payload, a JSON object.
    pub payload: Map<String, Value>,
}

impl MappedFrame {
    fn new(message_type: MessageType, payload: Value) -> Self {
        let payload = match payload {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        MappedFrame {
            message_type,
            payload,
        }
    }
}

/// Why an AG-UI event could not be mapped. The run must then end with
/// [`AgUiMapper::fail`] (`agent_error {code: "upstream_error"}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgUiError {
    /// The event is not a JSON object with a string `type`.
    #[error("not an AG-UI event: {0}")]
    NotAnEvent(String),
    /// A field the event type requires is missing or not a string.
    #[error("AG-UI {event} without a string `{field}`")]
    MissingField {
        /// The event's type.
        event: String,
        /// The field.
        field: &'static str,
    },
    /// A tool call event refers to a call that was not started (or already
    /// ended, for `TOOL_CALL_ARGS`/`TOOL_CALL_END`).
    #[error("AG-UI {event} for tool call {tool_call_id:?}, which is not open")]
    UnknownToolCall {
        /// The event's type.
        event: String,
        /// The call it names.
        tool_call_id: String,
    },
    /// A `TOOL_CALL_START` for a call that is already open.
    #[error("AG-UI TOOL_CALL_START for tool call {0:?}, which is already open")]
    DuplicateToolCall(String),
    /// A second `RUN_STARTED` in one run.
    #[error("a second AG-UI RUN_STARTED in one run")]
    DuplicateRunStarted,
    /// An event other than `RUN_STARTED` (or `RUN_ERROR`) came first.
    #[error("AG-UI {0} before RUN_STARTED")]
    NotStarted(String),
    /// An event came after the run's `RUN_FINISHED` or `RUN_ERROR`; it
    /// produces nothing (the run has its one terminal frame).
    #[error("AG-UI {0} after the run ended")]
    AfterEnd(String),
    /// More tool calls open at once than [`MAX_OPEN_TOOL_CALLS`], or their
    /// arguments over [`MAX_TOOL_ARGS_BYTES`].
    #[error("AG-UI tool calls over the limit: {0}")]
    TooLarge(String),
}

/// Tool calls one run may have open (started, not yet given a result).
pub const MAX_OPEN_TOOL_CALLS: usize = 64;
/// Bytes of arguments one tool call may stream.
pub const MAX_TOOL_ARGS_BYTES: usize = 1 << 20;
/// Bytes of assistant text kept for `agent_completed {result}` (the chunks
/// themselves are all forwarded).
pub const MAX_RESULT_TEXT_BYTES: usize = 1 << 20;

/// A tool call between its `TOOL_CALL_START` and its `TOOL_CALL_RESULT`.
#[derive(Debug)]
struct Call {
    name: String,
    args: String,
    ended: bool,
}

/// Maps one run's AG-UI events to wsc frames, in order:
///
/// | AG-UI | wsc frame |
/// |---|---|
/// | `RUN_STARTED` | `agent_started` |
/// | the run's first `STEP_STARTED`, `REASONING_*`/`THINKING_*` or `TEXT_MESSAGE_START` | `agent_thinking` (reasoning text: `agent_thinking {delta}`) |
/// | `TOOL_CALL_START` … `TOOL_CALL_END` | `tool_executing {tool_name, tool_call_id, args}` at the end (args from the deltas) |
/// | `TOOL_CALL_RESULT` | `tool_completed {tool_name, tool_call_id, result}` |
/// | `TEXT_MESSAGE_CONTENT` | `agent_response_chunk {message_id, delta}` |
/// | state, activity, messages, custom and raw events | `agent_progress {ag_ui: <the event>}` |
/// | `RUN_FINISHED` | `agent_completed {result: the assistant text, outcome}` |
/// | `RUN_ERROR` | `agent_error {code: "agent_error", message}` |
///
/// Other events produce nothing. A run must open with `RUN_STARTED` (or fail
/// at once with `RUN_ERROR`); a tool call's events come in order (start,
/// argument deltas, end, result). After the terminal frame nothing more is
/// produced: a run has exactly one; [`finish`](Self::finish) supplies it
/// when the stream ends without one, [`fail`](Self::fail) when the
/// upstream failed. An incoherent event is an [`AgUiError`].
///
/// ```
/// use serde_json::json;
/// use wsc_core::MessageType;
/// use wsc_upstream::AgUiMapper;
///
/// let mut run = AgUiMapper::new();
/// let mut types = Vec::new();
/// for event in [
///     json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
///     json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
///     json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "Hi"}),
///     json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
///     json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}),
/// ] {
///     types.extend(run.push(&event).unwrap().into_iter().map(|f| f.message_type));
/// }
/// assert_eq!(types, [
///     MessageType::AgentStarted,
///     MessageType::AgentThinking,
///     MessageType::AgentResponseChunk,
///     MessageType::AgentCompleted,
/// ]);
/// assert_eq!(run.finish(), None, "it ended");
/// ```
#[derive(Debug, Default)]
pub struct AgUiMapper {
    started: bool,
    thinking_sent: bool,
    ended: bool,
    calls: HashMap<String, Call>,
    text: String,
    /// Frames only counted: text deltas and progress without payloads.
    counting: bool,
    /// AG-UI's rules, checked on the event's text (`push_event`).
    rules: wsc_event_monitor::AgUiRules,
}

/// The `messageId` and `delta` of an event given as its text, if it is a
/// `TEXT_MESSAGE_CONTENT` with both as strings: read into its fields, not
/// into a [`Value`] (most events of a run are this one). `None` for any
/// other event.
pub(crate) fn parse_text_content(text: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    #[derive(serde::Deserialize)]
    struct Content<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(rename = "messageId", borrow)]
        message_id: Cow<'a, str>,
        #[serde(borrow)]
        delta: Cow<'a, str>,
    }
    let content: Content<'_> = serde_json::from_str(text).ok()?;
    (content.kind == "TEXT_MESSAGE_CONTENT").then_some((content.message_id, content.delta))
}

fn str_field<'a>(event: &'a Value, kind: &str, field: &'static str) -> Result<&'a str, AgUiError> {
    event
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| AgUiError::MissingField {
            event: kind.to_owned(),
            field,
        })
}

impl AgUiMapper {
    /// A mapper for a new run.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mapper for a run whose frames are only counted, not read: the
    /// same frames, in the same order, with the same errors, but text
    /// deltas (`agent_response_chunk`) and progress (`agent_progress`)
    /// carry no payload, and `agent_completed` no `result` text.
    ///
    /// ```
    /// use serde_json::json;
    /// use wsc_core::MessageType;
    /// use wsc_upstream::AgUiMapper;
    ///
    /// let mut run = AgUiMapper::counting();
    /// run.push(&json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"})).unwrap();
    /// let delta = json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "Hi"});
    /// let frames = run.push(&delta).unwrap();
    /// assert_eq!(frames[0].message_type, MessageType::AgentResponseChunk);
    /// assert!(frames[0].payload.is_empty());
    /// ```
    pub fn counting() -> Self {
        AgUiMapper {
            counting: true,
            ..Self::default()
        }
    }

    /// Whether the run's terminal frame was produced.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The AG-UI events that close what the run still holds open, so that
    /// a `RUN_FINISHED` may follow (see
    /// [`AgUiRules::closing_events`](wsc_event_monitor::AgUiRules::closing_events)).
    pub fn closing_events(&self) -> Vec<String> {
        self.rules.closing_events()
    }

    pub(crate) fn rules_mut(&mut self) -> &mut wsc_event_monitor::AgUiRules {
        &mut self.rules
    }

    /// The frames one AG-UI event maps to (often none).
    ///
    /// # Errors
    /// An [`AgUiError`] for an event that is not AG-UI or not coherent with
    /// the run so far; nothing is produced for it, and the run should end
    /// with [`fail`](Self::fail).
    pub fn push(&mut self, event: &Value) -> Result<Vec<MappedFrame>, AgUiError> {
        let kind = event
            .as_object()
            .and_then(|o| o.get("type"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                let mut shown = event.to_string();
                shown.truncate(120);
                AgUiError::NotAnEvent(shown)
            })?;
        self.admit(kind)?;
        let mut out = Vec::new();
        match kind {
            "RUN_STARTED" if self.started => {
                return Err(AgUiError::DuplicateRunStarted);
            }
            "RUN_STARTED" => {
                self.started = true;
                out.push(MappedFrame::new(MessageType::AgentStarted, json!({})));
            }
            "RUN_FINISHED" => {
                let outcome = event.get("outcome").cloned().unwrap_or(json!("success"));
                self.ended = true;
                out.push(MappedFrame::new(
                    MessageType::AgentCompleted,
                    json!({"result": self.text, "outcome": outcome}),
                ));
            }
            "RUN_ERROR" => {
                let message = event
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the agent reported an error");
                self.ended = true;
                out.push(MappedFrame::new(
                    MessageType::AgentError,
                    json!({"code": "agent_error", "message": message}),
                ));
            }
            "STEP_STARTED" | "TEXT_MESSAGE_START" => self.thinking(None, &mut out),
            "REASONING_MESSAGE_CONTENT" | "THINKING_TEXT_MESSAGE_CONTENT" => {
                let delta = str_field(event, kind, "delta")?;
                self.thinking(Some(delta), &mut out);
            }
            k if k.starts_with("REASONING_") || k.starts_with("THINKING_") => {
                self.thinking(None, &mut out)
            }
            "TEXT_MESSAGE_CONTENT" => {
                let message_id = str_field(event, kind, "messageId")?;
                let delta = str_field(event, kind, "delta")?;
                out.push(self.text_content(message_id, delta));
            }
            "TOOL_CALL_START" => {
                let id = str_field(event, kind, "toolCallId")?;
                let name = str_field(event, kind, "toolCallName")?;
                if self.calls.contains_key(id) {
                    return Err(AgUiError::DuplicateToolCall(id.to_owned()));
                }
                if self.calls.len() >= MAX_OPEN_TOOL_CALLS {
                    return Err(AgUiError::TooLarge(format!(
                        "more than {MAX_OPEN_TOOL_CALLS} tool calls open"
                    )));
                }
                self.calls.insert(
                    id.to_owned(),
                    Call {
                        name: name.to_owned(),
                        args: String::new(),
                        ended: false,
                    },
                );
            }
            "TOOL_CALL_ARGS" => {
                let id = str_field(event, kind, "toolCallId")?;
                let delta = str_field(event, kind, "delta")?;
                let call = self.open_call(kind, id)?;
                if call.args.len() + delta.len() > MAX_TOOL_ARGS_BYTES {
                    return Err(AgUiError::TooLarge(format!(
                        "tool call {id:?} arguments over {MAX_TOOL_ARGS_BYTES} bytes"
                    )));
                }
                call.args.push_str(delta);
            }
            "TOOL_CALL_END" => {
                let id = str_field(event, kind, "toolCallId")?;
                let call = self.open_call(kind, id)?;
                call.ended = true;
                // Arguments are JSON text; kept as text when they are not.
                let args = serde_json::from_str::<Value>(&call.args)
                    .unwrap_or_else(|_| Value::String(call.args.clone()));
                let frame = json!({"tool_name": call.name, "tool_call_id": id, "args": args});
                out.push(MappedFrame::new(MessageType::ToolExecuting, frame));
            }
            "TOOL_CALL_RESULT" => {
                let id = str_field(event, kind, "toolCallId")?;
                let call = match self.calls.get(id) {
                    Some(call) if call.ended => self.calls.remove(id),
                    _ => None,
                }
                .ok_or_else(|| AgUiError::UnknownToolCall {
                    event: kind.to_owned(),
                    tool_call_id: id.to_owned(),
                })?;
                let result = event.get("content").cloned().unwrap_or(Value::Null);
                out.push(MappedFrame::new(
                    MessageType::ToolCompleted,
                    json!({"tool_name": call.name, "tool_call_id": id, "result": result}),
                ));
            }
            "STATE_SNAPSHOT" | "STATE_DELTA" | "MESSAGES_SNAPSHOT" | "ACTIVITY_SNAPSHOT"
            | "ACTIVITY_DELTA" | "CUSTOM" | "RAW" => out.push(MappedFrame::new(
                MessageType::AgentProgress,
                if self.counting {
                    Value::Null
                } else {
                    json!({"ag_ui": event})
                },
            )),
            // TEXT_MESSAGE_END, STEP_FINISHED, chunk events and types this
            // version does not know produce nothing.
            _ => {}
        }
        Ok(out)
    }

    /// The terminal frame for a stream that ended now: `None` if the run
    /// already ended, else `agent_error {code: "upstream_error"}` (the
    /// stream ended without `RUN_FINISHED` or `RUN_ERROR`).
    pub fn finish(&mut self) -> Option<MappedFrame> {
        (!self.ended).then(|| {
            self.fail(
                "upstream_error",
                "the agent's stream ended without RUN_FINISHED or RUN_ERROR",
            )
        })
    }

    /// Ends the run with `agent_error {code, message}` (`upstream_error`,
    /// `upstream_timeout`, `cancelled`): the run's one terminal frame. Call
    /// it only while the run has not ended.
    pub fn fail(&mut self, code: &str, message: &str) -> MappedFrame {
        self.ended = true;
        MappedFrame::new(
            MessageType::AgentError,
            json!({"code": code, "message": message}),
        )
    }

    /// Whether an event of type `kind` may come now.
    pub(crate) fn admit(&self, kind: &str) -> Result<(), AgUiError> {
        if self.ended {
            return Err(AgUiError::AfterEnd(kind.to_owned()));
        }
        if !self.started && !matches!(kind, "RUN_STARTED" | "RUN_ERROR") {
            return Err(AgUiError::NotStarted(kind.to_owned()));
        }
        Ok(())
    }

    /// A `TEXT_MESSAGE_CONTENT`'s frame (without its payload, and its text
    /// not kept, when counting).
    pub(crate) fn text_content(&mut self, message_id: &str, delta: &str) -> MappedFrame {
        if self.counting {
            return MappedFrame::new(MessageType::AgentResponseChunk, Value::Null);
        }
        if self.text.len() + delta.len() <= MAX_RESULT_TEXT_BYTES {
            self.text.push_str(delta);
        }
        MappedFrame::new(
            MessageType::AgentResponseChunk,
            json!({"message_id": message_id, "delta": delta}),
        )
    }

    fn thinking(&mut self, delta: Option<&str>, out: &mut Vec<MappedFrame>) {
        match delta {
            Some(delta) => {
                self.thinking_sent = true;
                out.push(MappedFrame::new(
                    MessageType::AgentThinking,
                    json!({"delta": delta}),
                ));
            }
            None if !self.thinking_sent => {
                self.thinking_sent = true;
                out.push(MappedFrame::new(MessageType::AgentThinking, json!({})));
            }
            None => {}
        }
    }

    fn open_call(&mut self, kind: &str, id: &str) -> Result<&mut Call, AgUiError> {
        match self.calls.get_mut(id) {
            Some(call) if !call.ended => Ok(call),
            _ => Err(AgUiError::UnknownToolCall {
                event: kind.to_owned(),
                tool_call_id: id.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(events: &[Value]) -> Vec<MappedFrame> {
        let mut m = AgUiMapper::new();
        let mut out: Vec<MappedFrame> = events
            .iter()
            .flat_map(|e| m.push(e).expect("maps"))
            .collect();
        out.extend(m.finish());
        out
    }

    fn types(frames: &[MappedFrame]) -> Vec<MessageType> {
        frames.iter().map(|f| f.message_type).collect()
    }

    use MessageType as M;

    #[test]
    fn every_row_of_the_table() {
        let frames = map(&[
            json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
            json!({"type": "STEP_STARTED", "stepName": "plan"}),
            json!({"type": "REASONING_MESSAGE_CONTENT", "messageId": "x", "delta": "hmm"}),
            json!({"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search"}),
            json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "{\"q\":"}),
            json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "\"rust\"}"}),
            json!({"type": "TOOL_CALL_END", "toolCallId": "c1"}),
            json!({"type": "TOOL_CALL_RESULT", "messageId": "m0", "toolCallId": "c1", "content": "3 hits"}),
            json!({"type": "STATE_DELTA", "delta": [{"op": "add", "path": "/a", "value": 1}]}),
            json!({"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"}),
            json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Found "}),
            json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "3."}),
            json!({"type": "TEXT_MESSAGE_END", "messageId": "m1"}),
            json!({"type": "STEP_FINISHED", "stepName": "plan"}),
            json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}),
        ]);
        assert_eq!(
            types(&frames),
            [
                M::AgentStarted,
                M::AgentThinking,
                M::AgentThinking,
                M::ToolExecuting,
                M::ToolCompleted,
                M::AgentProgress,
                M::AgentResponseChunk,
                M::AgentResponseChunk,
                M::AgentCompleted
            ]
        );
        assert_eq!(frames[2].payload["delta"], "hmm");
        assert_eq!(
            Value::Object(frames[3].payload.clone()),
            json!({"tool_name": "search", "tool_call_id": "c1", "args": {"q": "rust"}})
        );
        assert_eq!(
            Value::Object(frames[4].payload.clone()),
            json!({"tool_name": "search", "tool_call_id": "c1", "result": "3 hits"})
        );
        assert_eq!(frames[5].payload["ag_ui"]["type"], "STATE_DELTA");
        assert_eq!(frames[6].payload["message_id"], "m1");
        assert_eq!(
            Value::Object(frames[8].payload.clone()),
            json!({"result": "Found 3.", "outcome": "success"})
        );
    }

    #[test]
    fn interleaved_tool_calls_keep_their_own_names_and_args() {
        let frames = map(&[
            json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
            json!({"type": "TOOL_CALL_START", "toolCallId": "a", "toolCallName": "search"}),
            json!({"type": "TOOL_CALL_START", "toolCallId": "b", "toolCallName": "fetch"}),
            json!({"type": "TOOL_CALL_ARGS", "toolCallId": "b", "delta": "not json"}),
            json!({"type": "TOOL_CALL_END", "toolCallId": "b"}),
            json!({"type": "TOOL_CALL_END", "toolCallId": "a"}),
            json!({"type": "TOOL_CALL_RESULT", "messageId": "x", "toolCallId": "a", "content": 1}),
            json!({"type": "TOOL_CALL_RESULT", "messageId": "y", "toolCallId": "b", "content": 2}),
            json!({"type": "RUN_ERROR", "message": "model overloaded"}),
        ]);
        assert_eq!(
            types(&frames),
            [
                M::AgentStarted,
                M::ToolExecuting,
                M::ToolExecuting,
                M::ToolCompleted,
                M::ToolCompleted,
                M::AgentError
            ],
            "one terminal frame: nothing after RUN_ERROR"
        );
        assert_eq!(frames[1].payload["tool_name"], "fetch");
        assert_eq!(frames[1].payload["args"], "not json");
        assert_eq!(frames[3].payload["tool_name"], "search");
        assert_eq!(frames[5].payload["code"], "agent_error");
        assert_eq!(frames[5].payload["message"], "model overloaded");
    }

    #[test]
    fn a_stream_without_an_end_ends_with_one_upstream_error() {
        let frames = map(&[json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"})]);
        assert_eq!(types(&frames), [M::AgentStarted, M::AgentError]);
        assert_eq!(frames[1].payload["code"], "upstream_error");
        let mut m = AgUiMapper::new();
        let _ = m.fail("cancelled", "stopped by the user");
        assert!(m.is_ended());
        assert_eq!(m.finish(), None);
        assert_eq!(
            m.push(&json!({"type": "RUN_FINISHED"})),
            Err(AgUiError::AfterEnd("RUN_FINISHED".into())),
            "one terminal frame: nothing after the end"
        );
    }

    #[test]
    fn incoherent_events_are_errors_that_produce_nothing() {
        let mut m = AgUiMapper::new();
        assert_eq!(
            m.push(&json!({"type": "TEXT_MESSAGE_START", "messageId": "m"})),
            Err(AgUiError::NotStarted("TEXT_MESSAGE_START".into()))
        );
        m.push(&json!({"type": "RUN_STARTED"})).unwrap();
        assert_eq!(
            m.push(&json!({"type": "RUN_STARTED"})),
            Err(AgUiError::DuplicateRunStarted)
        );
        assert!(matches!(
            m.push(&json!("text")),
            Err(AgUiError::NotAnEvent(_))
        ));
        assert!(matches!(
            m.push(&json!({"no": "type"})),
            Err(AgUiError::NotAnEvent(_))
        ));
        assert!(matches!(
            m.push(&json!({"type": "TOOL_CALL_ARGS", "toolCallId": "nope", "delta": "x"})),
            Err(AgUiError::UnknownToolCall { .. })
        ));
        assert!(matches!(
            m.push(&json!({"type": "TOOL_CALL_START", "toolCallId": "a"})),
            Err(AgUiError::MissingField {
                field: "toolCallName",
                ..
            })
        ));
        // A result before the call ended is not coherent either.
        m.push(&json!({"type": "TOOL_CALL_START", "toolCallId": "a", "toolCallName": "s"}))
            .unwrap();
        assert_eq!(
            m.push(&json!({"type": "TOOL_CALL_START", "toolCallId": "a", "toolCallName": "s"})),
            Err(AgUiError::DuplicateToolCall("a".into()))
        );
        assert!(matches!(
            m.push(&json!({"type": "TOOL_CALL_RESULT", "toolCallId": "a", "content": ""})),
            Err(AgUiError::UnknownToolCall { .. })
        ));
        assert!(!m.is_ended());
    }

    #[test]
    fn open_calls_and_arguments_are_bounded() {
        let mut m = AgUiMapper::new();
        m.push(&json!({"type": "RUN_STARTED"})).unwrap();
        for i in 0..MAX_OPEN_TOOL_CALLS {
            m.push(&json!({"type": "TOOL_CALL_START", "toolCallId": i.to_string(), "toolCallName": "t"}))
                .unwrap();
        }
        assert!(matches!(
            m.push(
                &json!({"type": "TOOL_CALL_START", "toolCallId": "one more", "toolCallName": "t"})
            ),
            Err(AgUiError::TooLarge(_))
        ));
        let big = "x".repeat(MAX_TOOL_ARGS_BYTES);
        m.push(&json!({"type": "TOOL_CALL_ARGS", "toolCallId": "0", "delta": big}))
            .unwrap();
        assert!(matches!(
            m.push(&json!({"type": "TOOL_CALL_ARGS", "toolCallId": "0", "delta": "y"})),
            Err(AgUiError::TooLarge(_))
        ));
    }
}
