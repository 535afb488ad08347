//! [`ClientFrame`]: a client's frame parsed once, into what it asks for,
//! with every bound checked.

use serde_json::Value;

use crate::codec::{self, FrameError, MAX_CLIENT_ID_BYTES};
use crate::protocol::{Ack, ErrorFrame, Frame, StartAgent, StopAgent};
use crate::{MessageType, WebSocketMessage};

/// What a client's frame asks the server to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientRequest {
    /// `ping`: answer `pong` with the same payload.
    Ping,
    /// `start_agent`: run an agent (its fields cut to their bounds, see
    /// [`StartAgent::lenient`]).
    StartAgent(StartAgent),
    /// `stop_agent`: cancel one of the client's runs.
    StopAgent(StopAgent),
    /// `user_message` or `chat`: text for the agent (its `content`; empty
    /// when absent or not a string).
    Chat {
        /// The text.
        content: String,
    },
    /// `ack` of a seq: the client has every frame through it.
    AckSeq(u64),
    /// Anything else a client may send (heartbeats, typing, an `ack` of a
    /// message id): nothing for the server to do but count it.
    Other,
}

/// A client's frame: the message as sent (its ids, timestamp and payload,
/// what rate limits and measurements look at) and what it asks for.
///
/// Parsed once ([`parse`](Self::parse)), with every bound checked there:
/// the frame's size, its JSON (no duplicate keys, no integer beyond 64
/// bits), its ids' lengths, who may send its type, and its request's own
/// fields. A bad frame is a [`ClientFrameError`] whose `error` frame names
/// the message it refuses.
///
/// ```
/// use wsc_core::{ClientFrame, ClientRequest, DEFAULT_MAX_FRAME_BYTES};
///
/// let frame = ClientFrame::parse(
///     r#"{"type": "chat", "payload": {"content": "hi"}, "message_id": "m1"}"#,
///     DEFAULT_MAX_FRAME_BYTES,
/// )
/// .unwrap();
/// assert_eq!(frame.request, ClientRequest::Chat { content: "hi".into() });
/// // A chat asks for the run a start with its content as input would.
/// assert_eq!(frame.start().unwrap().input.as_deref(), Some("hi"));
///
/// let refused = ClientFrame::parse(
///     r#"{"type": "stop_agent", "payload": {}, "message_id": "m2"}"#,
///     DEFAULT_MAX_FRAME_BYTES,
/// )
/// .unwrap_err();
/// assert_eq!(refused.error.code(), "invalid_message");
/// assert_eq!(refused.message_id.as_deref(), Some("m2"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ClientFrame {
    /// The message as the client sent it.
    pub message: WebSocketMessage,
    /// What it asks for.
    pub request: ClientRequest,
}

/// Why a client's frame was refused, and which message it was (when that
/// much could be read).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ClientFrameError {
    /// What is wrong, with its protocol code.
    pub error: FrameError,
    /// The refused message's `message_id`, if it was read.
    pub message_id: Option<String>,
}

impl ClientFrameError {
    /// The `error` frame that answers it (with `ref_message_id` when the
    /// message's id is known).
    pub fn to_error_frame(&self) -> WebSocketMessage {
        let mut frame = ErrorFrame::new(self.error.error_code(), self.error.to_string());
        if let Some(id) = &self.message_id {
            frame = frame.with_ref_message_id(id.clone());
        }
        frame.to_message()
    }
}

impl From<FrameError> for ClientFrameError {
    fn from(error: FrameError) -> Self {
        ClientFrameError {
            error,
            message_id: None,
        }
    }
}

impl ClientFrame {
    /// Parses a client's text frame of at most `max_bytes` (see
    /// [`parse_client_frame_with_limit`](crate::parse_client_frame_with_limit)
    /// for the frame's own rules), then its request.
    ///
    /// # Errors
    /// A [`ClientFrameError`] for anything the server would not act on.
    pub fn parse(text: &str, max_bytes: usize) -> Result<ClientFrame, ClientFrameError> {
        let message = codec::parse_client_frame_with_limit(text, max_bytes)?;
        Self::from_message(message)
    }

    /// Reads the request of a message a client sent (already a valid
    /// client frame as a message: [`parse`](Self::parse) does both).
    ///
    /// # Errors
    /// [`FrameError::NotAllowed`] for a server-only type;
    /// [`FrameError::InvalidMessage`] for a request whose fields are
    /// missing, malformed or over their bounds (a `start_agent`'s
    /// `thread_id` or a `stop_agent`'s `run_id` over
    /// [`MAX_CLIENT_ID_BYTES`]).
    pub fn from_message(message: WebSocketMessage) -> Result<ClientFrame, ClientFrameError> {
        let refuse = |reason: String, message: &WebSocketMessage| ClientFrameError {
            error: FrameError::InvalidMessage { reason },
            message_id: message.message_id.clone(),
        };
        if !message.message_type.client_may_send() {
            return Err(ClientFrameError {
                error: FrameError::NotAllowed {
                    message_type: message.message_type,
                },
                message_id: message.message_id.clone(),
            });
        }
        let request = match message.message_type {
            MessageType::Ping => ClientRequest::Ping,
            MessageType::StartAgent => {
                let start = StartAgent::lenient(&message.payload);
                // Copied into every event of the run and kept by the
                // monitor: bounded like the frame's own ids.
                if let Some(thread) = message.payload.get("thread_id").and_then(Value::as_str)
                    && thread.len() > MAX_CLIENT_ID_BYTES
                {
                    return Err(refuse(
                        format!(
                            "`thread_id` is {} bytes; at most {MAX_CLIENT_ID_BYTES}",
                            thread.len()
                        ),
                        &message,
                    ));
                }
                ClientRequest::StartAgent(start)
            }
            MessageType::StopAgent => match StopAgent::from_message(&message) {
                Ok(stop) if stop.run_id.len() > MAX_CLIENT_ID_BYTES => {
                    return Err(refuse(
                        format!(
                            "`run_id` is {} bytes; at most {MAX_CLIENT_ID_BYTES}",
                            stop.run_id.len()
                        ),
                        &message,
                    ));
                }
                Ok(stop) => ClientRequest::StopAgent(stop),
                Err(e) => return Err(refuse(e.to_string(), &message)),
            },
            MessageType::UserMessage | MessageType::Chat => ClientRequest::Chat {
                content: message
                    .payload
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            MessageType::Ack => match Ack::from_message(&message) {
                Ok(Ack { seq: Some(seq), .. }) => ClientRequest::AckSeq(seq),
                _ => ClientRequest::Other,
            },
            _ => ClientRequest::Other,
        };
        Ok(ClientFrame { message, request })
    }

    /// The run this frame asks for: a `start_agent`'s own fields, or a
    /// `user_message`/`chat` as a start whose input is its content (what
    /// a gateway with a real agent behind it does with chat). `None` for
    /// other requests.
    pub fn start(&self) -> Option<StartAgent> {
        match &self.request {
            ClientRequest::StartAgent(start) => Some(start.clone()),
            ClientRequest::Chat { content } => Some(StartAgent {
                input: Some(content.clone()),
                ..StartAgent::default()
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_MAX_FRAME_BYTES;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<ClientFrame, ClientFrameError> {
        ClientFrame::parse(text, DEFAULT_MAX_FRAME_BYTES)
    }

    #[test]
    fn each_request_is_read_once() {
        assert_eq!(
            parse(r#"{"type":"ping","payload":{"n":1}}"#)
                .unwrap()
                .request,
            ClientRequest::Ping
        );
        let start = parse(
            r#"{"type":"start_agent","payload":{"input":"x","tools":["a",1],"step_delay_ms":99999}}"#,
        )
        .unwrap();
        let ClientRequest::StartAgent(s) = &start.request else {
            panic!("{start:?}")
        };
        assert_eq!(s.tools, Some(vec!["a".to_owned()]));
        assert_eq!(s.step_delay_ms, Some(crate::MAX_STEP_DELAY_MS));
        assert_eq!(
            parse(r#"{"type":"stop_agent","payload":{"run_id":"r1"}}"#)
                .unwrap()
                .request,
            ClientRequest::StopAgent(StopAgent {
                run_id: "r1".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"user_message","payload":{"content":7}}"#)
                .unwrap()
                .request,
            ClientRequest::Chat {
                content: String::new()
            }
        );
        assert_eq!(
            parse(r#"{"type":"ack","payload":{"seq":9}}"#)
                .unwrap()
                .request,
            ClientRequest::AckSeq(9)
        );
        assert_eq!(
            parse(r#"{"type":"ack","payload":{"message_id":"m"}}"#)
                .unwrap()
                .request,
            ClientRequest::Other
        );
        assert_eq!(
            parse(r#"{"type":"heartbeat"}"#).unwrap().request,
            ClientRequest::Other
        );
    }

    #[test]
    fn bounds_are_checked_at_the_parse_and_name_the_message() {
        let big = "t".repeat(MAX_CLIENT_ID_BYTES + 1);
        let start = json!({"type":"start_agent","payload":{"thread_id": big},"message_id":"m"});
        let e = parse(&start.to_string()).unwrap_err();
        assert_eq!(e.error.code(), "invalid_message");
        assert!(e.error.to_string().contains("thread_id"), "{e}");
        let reply = e.to_error_frame();
        assert_eq!(reply.payload["ref_message_id"], "m");
        let stop = json!({"type":"stop_agent","payload":{"run_id": big}});
        assert!(
            parse(&stop.to_string())
                .unwrap_err()
                .to_string()
                .contains("run_id")
        );
        let ok = "t".repeat(MAX_CLIENT_ID_BYTES);
        let start = json!({"type":"start_agent","payload":{"thread_id": ok}});
        assert!(parse(&start.to_string()).is_ok(), "at the bound: taken");
        assert_eq!(
            parse(r#"{"type":"agent_started"}"#)
                .unwrap_err()
                .error
                .code(),
            "not_allowed"
        );
        assert_eq!(parse("{").unwrap_err().error.code(), "invalid_json");
    }

    proptest! {
        /// Any text is a request or a typed refusal, never a panic; a
        /// request is what parsing its message alone gives.
        #[test]
        fn any_text_is_a_request_or_a_refusal(text in ".{0,200}") {
            if let Ok(frame) = parse(&text) {
                let again = ClientFrame::from_message(frame.message.clone()).unwrap();
                prop_assert_eq!(again, frame);
            }
        }

        /// A start's fields are within their bounds whatever was sent.
        #[test]
        fn a_start_is_bounded(
            name in ".{0,300}",
            tools in prop::collection::vec(".{0,100}", 0..100),
            delay in any::<u64>(),
        ) {
            let text = json!({"type":"start_agent","payload":{
                "agent_name": name, "tools": tools, "step_delay_ms": delay}}).to_string();
            if let Ok(ClientFrame { request: ClientRequest::StartAgent(s), .. }) = parse(&text) {
                prop_assert!(s.agent_name.unwrap().chars().count() <= crate::MAX_NAME_CHARS);
                let tools = s.tools.unwrap();
                prop_assert!(tools.len() <= crate::MAX_TOOLS);
                prop_assert!(tools.iter().all(|t| t.chars().count() <= crate::MAX_NAME_CHARS));
                prop_assert!(s.step_delay_ms.unwrap() <= crate::MAX_STEP_DELAY_MS);
            }
        }
    }
}
