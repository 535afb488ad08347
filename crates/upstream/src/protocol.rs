//! The two upstream protocols behind one interface: [`AgentProtocol`] names
//! them, [`UpstreamMapper`] turns one run's events (each the text of one
//! SSE event or NDJSON line) into wsc frames; [`WscMapper`] reads backends
//! that already speak wsc frames.

use serde_json::Value;
use wsc_core::{MessageType, parse_server_frame};
use wsc_event_monitor::AgUiViolation;

use crate::ag_ui::{AgUiError, AgUiMapper, MappedFrame};

/// What an upstream agent backend streams (`--agent-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentProtocol {
    /// AG-UI events (the default).
    #[default]
    AgUi,
    /// wsc frames `{"type": "agent_thinking", "payload": {...}}`, legacy
    /// names accepted.
    Wsc,
}

impl AgentProtocol {
    /// A mapper for one new run of this protocol.
    pub fn mapper(self) -> Box<dyn UpstreamMapper> {
        match self {
            AgentProtocol::AgUi => Box::new(AgUiMapper::new()),
            AgentProtocol::Wsc => Box::new(WscMapper::new()),
        }
    }
}

impl std::str::FromStr for AgentProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ag-ui" => Ok(AgentProtocol::AgUi),
            "wsc" => Ok(AgentProtocol::Wsc),
            other => Err(format!("unknown agent protocol {other:?}: ag-ui or wsc")),
        }
    }
}

/// Why one event of an upstream stream could not be mapped; the run should
/// then end with [`UpstreamMapper::fail`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The event is not JSON.
    #[error("the agent sent an event that is not JSON: {0}")]
    NotJson(String),
    /// An AG-UI event that does not fit the run.
    #[error(transparent)]
    AgUi(#[from] AgUiError),
    /// A wsc frame that is not one an agent may send.
    #[error("the agent sent a frame that is not an agent frame: {0}")]
    NotAnAgentFrame(String),
    /// A wsc frame after the run's terminal frame.
    #[error("the agent sent {0} after the run ended")]
    AfterEnd(MessageType),
    /// An AG-UI event that breaks one of AG-UI's rules (see
    /// [`AgUiRules`](wsc_event_monitor::AgUiRules)).
    #[error("the agent broke AG-UI's rule `{rule}`: {0}", rule = .0.rule())]
    Protocol(AgUiViolation),
}

impl UpstreamError {
    /// The `code` of the run's `agent_error`: `upstream_protocol` for a
    /// broken AG-UI rule, else `upstream_error`.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Protocol(_) => "upstream_protocol",
            _ => "upstream_error",
        }
    }

    /// The AG-UI rule broken, for [`Protocol`](Self::Protocol).
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            UpstreamError::Protocol(v) => Some(v.rule()),
            _ => None,
        }
    }
}

/// One run's upstream events in, wsc frames out; exactly one terminal frame
/// per run (`agent_completed` or `agent_error`).
pub trait UpstreamMapper: Send + std::fmt::Debug {
    /// The frames one event (the text of one SSE event or NDJSON line)
    /// maps to.
    ///
    /// # Errors
    /// An [`UpstreamError`]; nothing is produced for the event.
    fn push_event(&mut self, text: &str) -> Result<Vec<MappedFrame>, UpstreamError>;
    /// The terminal frame for a stream that ended now, if the run has not
    /// ended (`agent_error {code: "upstream_error"}`).
    fn finish(&mut self) -> Option<MappedFrame>;
    /// Ends the run with `agent_error {code, message}`.
    fn fail(&mut self, code: &str, message: &str) -> MappedFrame;
    /// Whether the run's terminal frame was produced.
    fn is_ended(&self) -> bool;
}

fn json(text: &str) -> Result<Value, UpstreamError> {
    serde_json::from_str(text).map_err(|e| UpstreamError::NotJson(e.to_string()))
}

impl UpstreamMapper for AgUiMapper {
    /// Checks the event against AG-UI's rules ([`AgUiRules`](wsc_event_monitor::AgUiRules)) first: a
    /// broken rule is [`UpstreamError::Protocol`].
    fn push_event(&mut self, text: &str) -> Result<Vec<MappedFrame>, UpstreamError> {
        // Most events of a run: read without building a `Value`.
        if let Some((message_id, delta)) = crate::ag_ui::parse_text_content(text) {
            self.rules_mut()
                .check(text)
                .map_err(UpstreamError::Protocol)?;
            self.admit("TEXT_MESSAGE_CONTENT")?;
            return Ok(vec![self.text_content(&message_id, &delta)]);
        }
        let event = json(text)?;
        self.rules_mut()
            .check(text)
            .map_err(UpstreamError::Protocol)?;
        Ok(self.push(&event)?)
    }
    fn finish(&mut self) -> Option<MappedFrame> {
        AgUiMapper::finish(self)
    }
    fn fail(&mut self, code: &str, message: &str) -> MappedFrame {
        AgUiMapper::fail(self, code, message)
    }
    fn is_ended(&self) -> bool {
        AgUiMapper::is_ended(self)
    }
}

/// Reads a backend that speaks wsc frames: each event is one frame
/// `{"type", "payload"}` of an agent (`agent_started`, `agent_thinking`,
/// `tool_executing`, `tool_completed`, `agent_completed`, `agent_error`,
/// `agent_response`, `agent_response_chunk`, `agent_response_complete`,
/// `agent_progress`, `agent_status_update`, `agent_typing`; the legacy
/// names `agent_start`, `tool_execute`, `tool_complete`, `agent_complete`
/// become the current ones). The payload is kept as sent; order is the
/// event monitor's to judge. `agent_completed` or `agent_error` ends the
/// run; nothing may follow.
///
/// ```
/// use wsc_core::MessageType;
/// use wsc_upstream::{AgentProtocol, UpstreamMapper};
///
/// let mut run = AgentProtocol::Wsc.mapper();
/// let frames = run.push_event(r#"{"type": "agent_start", "payload": {"note": 1}}"#).unwrap();
/// assert_eq!(frames[0].message_type, MessageType::AgentStarted);
/// assert!(run.push_event(r#"{"type": "connection_established", "payload": {}}"#).is_err());
/// assert_eq!(run.finish().unwrap().payload["code"], "upstream_error");
/// ```
#[derive(Debug, Default)]
pub struct WscMapper {
    ended: bool,
}

impl WscMapper {
    /// A mapper for a new run.
    pub fn new() -> Self {
        Self::default()
    }
}

impl UpstreamMapper for WscMapper {
    fn push_event(&mut self, text: &str) -> Result<Vec<MappedFrame>, UpstreamError> {
        let frame = parse_server_frame(text).map_err(|e| match e {
            wsc_core::FrameError::InvalidJson { detail } => UpstreamError::NotJson(detail),
            other => UpstreamError::NotAnAgentFrame(other.to_string()),
        })?;
        let t = frame.message_type.canonical();
        if !t.is_agent_event() {
            return Err(UpstreamError::NotAnAgentFrame(t.as_str().to_owned()));
        }
        if self.ended {
            return Err(UpstreamError::AfterEnd(t));
        }
        self.ended = t.is_terminal();
        let payload = match frame.payload {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        Ok(vec![MappedFrame {
            message_type: t,
            payload,
        }])
    }

    fn finish(&mut self) -> Option<MappedFrame> {
        (!self.ended).then(|| {
            self.fail(
                "upstream_error",
                "the agent's stream ended without agent_completed or agent_error",
            )
        })
    }

    fn fail(&mut self, code: &str, message: &str) -> MappedFrame {
        self.ended = true;
        let mut payload = serde_json::Map::new();
        payload.insert("code".into(), Value::from(code));
        payload.insert("message".into(), Value::from(message));
        MappedFrame {
            message_type: MessageType::AgentError,
            payload,
        }
    }

    fn is_ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wsc_run_passes_through_with_current_names() {
        let mut m = WscMapper::new();
        let mut types = Vec::new();
        for line in [
            r#"{"type": "agent_start", "payload": {}}"#,
            r#"{"type": "agent_thinking", "payload": {"thought": "…"}}"#,
            r#"{"type": "tool_execute", "payload": {"tool_name": "s", "tool_call_id": "1"}}"#,
            r#"{"type": "tool_complete", "payload": {"tool_name": "s", "tool_call_id": "1"}}"#,
            r#"{"type": "agent_response_chunk", "payload": {"delta": "hi"}}"#,
            r#"{"type": "agent_complete", "payload": {"result": "hi"}}"#,
        ] {
            types.extend(
                m.push_event(line)
                    .unwrap()
                    .into_iter()
                    .map(|f| f.message_type),
            );
        }
        use MessageType as M;
        assert_eq!(
            types,
            [
                M::AgentStarted,
                M::AgentThinking,
                M::ToolExecuting,
                M::ToolCompleted,
                M::AgentResponseChunk,
                M::AgentCompleted
            ]
        );
        assert!(m.is_ended() && m.finish().is_none());
        assert_eq!(
            m.push_event(r#"{"type": "agent_thinking", "payload": {}}"#),
            Err(UpstreamError::AfterEnd(M::AgentThinking))
        );
    }

    #[test]
    fn what_an_agent_may_not_send_is_refused() {
        let mut m = WscMapper::new();
        for bad in [
            "not json",
            r#"{"payload": {}}"#,
            r#"{"type": "nope", "payload": {}}"#,
            r#"{"type": "connection_established", "payload": {}}"#,
            r#"{"type": "start_agent", "payload": {}}"#,
            r#"{"type": "error", "payload": {}}"#,
        ] {
            assert!(m.push_event(bad).is_err(), "{bad}");
        }
        assert!(!m.is_ended());
    }

    #[test]
    fn both_protocols_by_name() {
        assert_eq!("ag-ui".parse(), Ok(AgentProtocol::AgUi));
        assert_eq!("wsc".parse(), Ok(AgentProtocol::Wsc));
        assert!("grpc".parse::<AgentProtocol>().is_err());
        let mut m = AgentProtocol::AgUi.mapper();
        assert!(matches!(m.push_event("{"), Err(UpstreamError::NotJson(_))));
        let frames = m
            .push_event(r#"{"type": "RUN_STARTED", "threadId": "t", "runId": "r"}"#)
            .unwrap();
        assert_eq!(frames[0].message_type, MessageType::AgentStarted);
        let last = m.fail("cancelled", "stopped by the user");
        assert_eq!(last.payload["code"], "cancelled");
        assert!(m.is_ended());
    }
}
