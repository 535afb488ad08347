//! The gateway's control frames as types: what the server sends
//! ([`ConnectionEstablished`], [`ErrorFrame`] — `rate_limited` among its
//! codes —, [`Ack`] of a client message) and what a client sends
//! ([`StartAgent`], [`Ack`] of a seq), plus the JSON body of a refused
//! handshake ([`HandshakeRefusal`]). The server, the resilient client, the
//! load generator and the tests all build and read frames through these,
//! so the protocol is written once. (The resume triple of a handshake's
//! query string is `wsc_reconnection::ResumeRequest`.)
//!
//! Each frame type implements [`Frame`]: `to_message` gives the
//! [`WebSocketMessage`] to send, `from_message` reads one back and says
//! what is wrong with it.
//!
//! ```
//! use wsc_core::{Ack, ConnectionEstablished, ErrorCode, ErrorFrame, Frame, MessageType};
//!
//! let hello = ConnectionEstablished {
//!     session_id: "s1".into(),
//!     connection_id: "c1".into(),
//!     resume_token: "1.ab".into(),
//!     epoch: 1,
//!     resumed: false,
//!     replayed: 0,
//!     heartbeat_interval_ms: 15_000,
//!     reason: None,
//! };
//! let msg = hello.to_message();
//! assert_eq!(msg.message_type, MessageType::ConnectionEstablished);
//! assert_eq!(ConnectionEstablished::from_message(&msg), Ok(hello));
//!
//! let refused = ErrorFrame::new(ErrorCode::RateLimited, "slow down").with_retry_after_ms(1_500);
//! let back = ErrorFrame::from_message(&refused.to_message()).unwrap();
//! assert_eq!((back.code, back.retry_after_ms), (ErrorCode::RateLimited, Some(1_500)));
//!
//! // A frame of another type is refused with a reason.
//! assert!(Ack::from_message(&msg).is_err());
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::codec::{ErrorCode, FrameError};
use crate::{MessageType, WebSocketMessage};

/// Why a message is not the frame it was read as.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The message has another `type`.
    #[error("expected a `{expected}` frame, got `{got}`")]
    WrongType {
        /// The frame's type.
        expected: MessageType,
        /// The message's type.
        got: MessageType,
    },
    /// The payload lacks a field or has one of the wrong shape.
    #[error("invalid `{frame}` payload: {reason}")]
    Payload {
        /// The frame's type.
        frame: MessageType,
        /// What serde said.
        reason: String,
    },
}

/// A control frame of the protocol: its message type and payload shape.
pub trait Frame: Serialize + DeserializeOwned {
    /// The `type` of the frame on the wire.
    const TYPE: MessageType;

    /// The message to send (the payload is this frame, as a JSON object).
    fn to_message(&self) -> WebSocketMessage {
        let payload =
            serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()));
        WebSocketMessage::new(Self::TYPE, payload)
    }

    /// Reads the frame back from a message.
    ///
    /// # Errors
    /// [`ProtocolError::WrongType`] for a message of another type,
    /// [`ProtocolError::Payload`] when a field is missing or malformed.
    fn from_message(message: &WebSocketMessage) -> Result<Self, ProtocolError> {
        if message.message_type != Self::TYPE {
            return Err(ProtocolError::WrongType {
                expected: Self::TYPE,
                got: message.message_type,
            });
        }
        Self::deserialize(&message.payload).map_err(|e| ProtocolError::Payload {
            frame: Self::TYPE,
            reason: e.to_string(),
        })
    }
}

/// The server's first frame on every connection: the session it is
/// attached to, how to resume it, and whether this connection resumed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ConnectionEstablished {
    /// The session (keep it to resume).
    pub session_id: String,
    /// This connection.
    pub connection_id: String,
    /// The token that proves the session is yours on resume.
    pub resume_token: String,
    /// The session's epoch.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub epoch: u64,
    /// This connection resumed the session asked for.
    pub resumed: bool,
    /// Frames replayed after this one (those after the client's `last_seq`).
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub replayed: u64,
    /// How often the server pings; a client silent for two intervals is
    /// dropped (its session stays resumable).
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub heartbeat_interval_ms: u64,
    /// Why a resume asked for was refused (a fresh session was started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Frame for ConnectionEstablished {
    const TYPE: MessageType = MessageType::ConnectionEstablished;
}

/// An `error` frame: a client frame was refused; the connection stays open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ErrorFrame {
    /// What kind of error.
    #[cfg_attr(feature = "typescript", ts(type = "string"))]
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
    /// For `rate_limited`: when the window admits again, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub retry_after_ms: Option<u64>,
    /// The `message_id` of the refused frame, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_message_id: Option<String>,
    /// For `rate_limited`: which limit refused. [`LIMIT_RUNS_IN_FLIGHT`]
    /// for a start over the user's runs in flight (waiting for a run to
    /// end admits it; retrying sooner does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// [`ErrorFrame::limit`] of a start refused because the user has as many
/// runs in flight as the gateway allows.
pub const LIMIT_RUNS_IN_FLIGHT: &str = "runs_in_flight";

impl ErrorFrame {
    /// An error frame with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorFrame {
            code,
            message: message.into(),
            retry_after_ms: None,
            ref_message_id: None,
            limit: None,
        }
    }

    /// Sets `limit`.
    pub fn with_limit(mut self, limit: impl Into<String>) -> Self {
        self.limit = Some(limit.into());
        self
    }

    /// Sets `retry_after_ms`.
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    /// Sets `ref_message_id`.
    pub fn with_ref_message_id(mut self, id: impl Into<String>) -> Self {
        self.ref_message_id = Some(id.into());
        self
    }
}

impl Frame for ErrorFrame {
    const TYPE: MessageType = MessageType::Error;
}

/// An `ack`: from the server, of a client message with a `message_id`; from
/// a client, of every frame up to `seq` (the server may drop them from the
/// replay buffer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Ack {
    /// The acknowledged client message (server to client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The last seq received (client to server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub seq: Option<u64>,
}

impl Ack {
    /// The server's ack of a client message.
    pub fn message(id: impl Into<String>) -> Self {
        Ack {
            message_id: Some(id.into()),
            seq: None,
        }
    }

    /// A client's ack of every frame up to `seq`.
    pub fn seq(seq: u64) -> Self {
        Ack {
            message_id: None,
            seq: Some(seq),
        }
    }
}

impl Frame for Ack {
    const TYPE: MessageType = MessageType::Ack;
}

/// The longest agent or tool name the server keeps (characters).
pub const MAX_NAME_CHARS: usize = 64;
/// The most tools one `start_agent` may name.
pub const MAX_TOOLS: usize = 32;
/// The longest `step_delay_ms` the server honours.
pub const MAX_STEP_DELAY_MS: u64 = 10_000;

/// A client's `start_agent`: run an agent in this session. Its message's
/// `message_id` (set on the [`WebSocketMessage`]) makes the start
/// idempotent within the session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct StartAgent {
    /// What the user asked: the run's input (an upstream agent gets it as
    /// the run's one user message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The agent to run (server default `"assistant"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Tools it should call (server default `["search"]` for the
    /// simulated agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// The simulated agent's delay between events, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub step_delay_ms: Option<u64>,
    /// The conversation thread (else the message's `thread_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

impl Frame for StartAgent {
    const TYPE: MessageType = MessageType::StartAgent;
}

impl StartAgent {
    /// Reads a `start_agent` payload the way the server does: never fails.
    /// Fields of the wrong type count as absent, non-string tools are
    /// skipped, names are cut to [`MAX_NAME_CHARS`] characters, tools to
    /// [`MAX_TOOLS`], `step_delay_ms` to [`MAX_STEP_DELAY_MS`].
    ///
    /// ```
    /// use serde_json::json;
    /// use wsc_core::StartAgent;
    ///
    /// let s = StartAgent::lenient(&json!({"agent_name": 7, "tools": ["a", 1, "b"], "step_delay_ms": 99999}));
    /// assert_eq!(s.agent_name, None);
    /// assert_eq!(s.tools, Some(vec!["a".to_owned(), "b".to_owned()]));
    /// assert_eq!(s.step_delay_ms, Some(10_000));
    /// ```
    pub fn lenient(payload: &Value) -> Self {
        let cut = |s: &str| s.chars().take(MAX_NAME_CHARS).collect::<String>();
        StartAgent {
            input: payload
                .get("input")
                .and_then(Value::as_str)
                .map(str::to_owned),
            agent_name: payload.get("agent_name").and_then(Value::as_str).map(cut),
            tools: payload.get("tools").and_then(Value::as_array).map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .take(MAX_TOOLS)
                    .map(cut)
                    .collect()
            }),
            step_delay_ms: payload
                .get("step_delay_ms")
                .and_then(Value::as_u64)
                .map(|ms| ms.min(MAX_STEP_DELAY_MS)),
            thread_id: payload
                .get("thread_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// A client's `stop_agent`: cancel one of its runs in flight; the run ends
/// with `agent_error {code: "cancelled"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct StopAgent {
    /// The run to stop.
    pub run_id: String,
}

impl Frame for StopAgent {
    const TYPE: MessageType = MessageType::StopAgent;
}

/// The JSON body of a handshake refused before the upgrade (401, 400,
/// 414, 429, 503): `{"error": CODE, "message": TEXT}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct HandshakeRefusal {
    /// `unauthorized`, `invalid_query`, `query_too_long`, `rate_limited`,
    /// `shutting_down`, `unavailable` or `session_elsewhere`.
    pub error: String,
    /// What happened and what to do.
    pub message: String,
}

impl ErrorCode {
    /// An `error` frame `{code, message}` with this code. For
    /// `retry_after_ms` or `ref_message_id`, build an [`ErrorFrame`].
    ///
    /// ```
    /// use wsc_core::{ErrorCode, MessageType};
    ///
    /// let frame = ErrorCode::RateLimited.frame("slow down");
    /// assert_eq!(frame.message_type, MessageType::Error);
    /// assert_eq!(frame.payload["code"], "rate_limited");
    /// ```
    pub fn frame(&self, message: impl Into<String>) -> WebSocketMessage {
        ErrorFrame::new(*self, message).to_message()
    }
}

impl FrameError {
    /// The `error` frame that answers this error.
    pub fn to_error_frame(&self) -> WebSocketMessage {
        self.error_code().frame(self.to_string())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_error_code_round_trips() {
        for code in ErrorCode::ALL {
            let frame = ErrorFrame::new(code, "x").with_ref_message_id("m1");
            assert_eq!(ErrorFrame::from_message(&frame.to_message()), Ok(frame));
        }
    }

    #[test]
    fn the_codec_error_frame_reads_as_an_error_frame() {
        let frame = ErrorCode::InvalidJson.frame("bad");
        let read = ErrorFrame::from_message(&frame).unwrap();
        assert_eq!(read, ErrorFrame::new(ErrorCode::InvalidJson, "bad"));
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let msg =
            WebSocketMessage::new(MessageType::ConnectionEstablished, json!({"session_id": 1}));
        let err = ConnectionEstablished::from_message(&msg).unwrap_err();
        assert!(matches!(err, ProtocolError::Payload { .. }), "{err}");
        let msg = WebSocketMessage::new(MessageType::Error, json!({"code": "nope", "message": ""}));
        assert!(
            ErrorFrame::from_message(&msg)
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
    }

    #[test]
    fn acks_carry_one_of_two_fields() {
        assert_eq!(Ack::seq(7).to_message().payload, json!({"seq": 7}));
        assert_eq!(
            Ack::message("m").to_message().payload,
            json!({"message_id": "m"})
        );
    }

    #[test]
    fn a_strict_start_refuses_what_the_lenient_reading_skips() {
        let msg = WebSocketMessage::new(MessageType::StartAgent, json!({"tools": ["a", 1]}));
        assert!(StartAgent::from_message(&msg).is_err());
        assert_eq!(
            StartAgent::lenient(&msg.payload).tools,
            Some(vec!["a".into()])
        );
        let long = "x".repeat(100);
        let s = StartAgent::lenient(&json!({"agent_name": long, "tools": vec!["t"; 50]}));
        assert_eq!(s.agent_name.unwrap().len(), MAX_NAME_CHARS);
        assert_eq!(s.tools.unwrap().len(), MAX_TOOLS);
    }
}
