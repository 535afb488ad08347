//! The AG-UI dialect of the WebSocket protocol (`/ws?protocol=ag-ui`): what
//! its clients send ([`AgUiClientFrame`]: `run_agent`, `join_run`, and the
//! wsc protocol's own frames), and its run-event frame
//! ([`WireFrame::ag_ui`](crate::WireFrame::ag_ui)).

use serde_json::{Map, Value};

use crate::client::{ClientFrame, ClientFrameError};
use crate::codec::{self, FrameError, MAX_CLIENT_ID_BYTES};

/// A frame a client of the AG-UI dialect sends, parsed once with every
/// bound checked.
///
/// ```
/// use wsc_core::{AgUiClientFrame, ClientRequest, DEFAULT_MAX_FRAME_BYTES};
///
/// let run = AgUiClientFrame::parse(
///     r#"{"type":"run_agent","payload":{"input":{"threadId":"t1","runId":"r1","messages":[]}}}"#,
///     DEFAULT_MAX_FRAME_BYTES,
/// )
/// .unwrap();
/// let AgUiClientFrame::RunAgent(run) = run else { panic!() };
/// assert_eq!((run.run_id.as_str(), run.thread_id.as_str()), ("r1", "t1"));
///
/// let join = AgUiClientFrame::parse(
///     r#"{"type":"join_run","payload":{"run_id":"r1","after":5}}"#,
///     DEFAULT_MAX_FRAME_BYTES,
/// )
/// .unwrap();
/// assert!(matches!(join, AgUiClientFrame::JoinRun(j) if j.after == 5));
///
/// // The wsc protocol's frames read as they do there.
/// let ping = AgUiClientFrame::parse(r#"{"type":"ping"}"#, DEFAULT_MAX_FRAME_BYTES).unwrap();
/// assert!(matches!(ping, AgUiClientFrame::Wsc(f) if f.request == ClientRequest::Ping));
///
/// // A RunAgentInput without its ids is refused with the protocol's code.
/// let refused = AgUiClientFrame::parse(
///     r#"{"type":"run_agent","payload":{"input":{"threadId":"t1"}},"message_id":"m1"}"#,
///     DEFAULT_MAX_FRAME_BYTES,
/// )
/// .unwrap_err();
/// assert_eq!(refused.error.code(), "invalid_message");
/// assert_eq!(refused.message_id.as_deref(), Some("m1"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AgUiClientFrame {
    /// `run_agent {input: RunAgentInput}`: start the run `input.runId` (a
    /// repeat follows that run), and stream its events.
    RunAgent(RunAgent),
    /// `join_run {run_id, after?}`: stream one of the user's runs from its
    /// first event, or from after event number `after`, then live.
    JoinRun(JoinRun),
    /// Any other frame (`ping`, `stop_agent`, `ack` …), as the wsc
    /// protocol reads it.
    Wsc(ClientFrame),
}

/// A `run_agent` of the AG-UI dialect.
#[derive(Clone, Debug, PartialEq)]
pub struct RunAgent {
    /// The AG-UI `RunAgentInput`, as sent.
    pub input: Value,
    /// Its `runId`: the run's id, chosen by the client.
    pub run_id: String,
    /// Its `threadId`.
    pub thread_id: String,
    /// The frame's `message_id`, if any.
    pub message_id: Option<String>,
}

/// A `join_run` of the AG-UI dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRun {
    /// The run (its AG-UI `runId`).
    pub run_id: String,
    /// The events after this number are streamed (0, the default: all).
    pub after: u64,
    /// The frame's `message_id`, if any.
    pub message_id: Option<String>,
}

/// Why a `RunAgentInput` cannot start a run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunInputError {
    /// It is not a JSON object.
    #[error("an AG-UI RunAgentInput must be a JSON object")]
    NotAnObject,
    /// One of its ids is missing, not a string, empty or too long.
    #[error("`{0}` must be a string of 1 to {MAX_CLIENT_ID_BYTES} bytes")]
    BadId(&'static str),
}

impl RunAgent {
    /// Reads the ids of an AG-UI `RunAgentInput` (`runId`, `threadId`: 1
    /// to [`MAX_CLIENT_ID_BYTES`] bytes each); the input is kept as sent.
    ///
    /// # Errors
    /// [`RunInputError`].
    ///
    /// ```
    /// use serde_json::json;
    /// use wsc_core::{RunAgent, RunInputError};
    /// let run = RunAgent::from_input(json!({"threadId": "t", "runId": "r"})).unwrap();
    /// assert_eq!(run.run_id, "r");
    /// assert_eq!(RunAgent::from_input(json!({"runId": ""})), Err(RunInputError::BadId("runId")));
    /// ```
    pub fn from_input(input: Value) -> Result<RunAgent, RunInputError> {
        let Value::Object(map) = &input else {
            return Err(RunInputError::NotAnObject);
        };
        let id = |field: &'static str| {
            map.get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= MAX_CLIENT_ID_BYTES)
                .map(str::to_owned)
                .ok_or(RunInputError::BadId(field))
        };
        let (run_id, thread_id) = (id("runId")?, id("threadId")?);
        Ok(RunAgent {
            input,
            run_id,
            thread_id,
            message_id: None,
        })
    }
}

impl AgUiClientFrame {
    /// Parses a text frame of at most `max_bytes` from a client of the
    /// AG-UI dialect: `run_agent` and `join_run` are its own; every other
    /// frame is read as [`ClientFrame::parse`] reads it (same rules).
    ///
    /// # Errors
    /// A [`ClientFrameError`] for anything the server would not act on.
    pub fn parse(text: &str, max_bytes: usize) -> Result<AgUiClientFrame, ClientFrameError> {
        if text.len() > max_bytes {
            return Err(FrameError::MessageTooLarge {
                size: text.len(),
                limit: max_bytes,
            }
            .into());
        }
        let mut map = match codec::strict_value(text)? {
            Value::Object(map)
                if matches!(
                    map.get("type").and_then(Value::as_str),
                    Some("run_agent" | "join_run")
                ) =>
            {
                map
            }
            other => {
                let message = codec::client_message(other)?;
                return ClientFrame::from_message(message).map(AgUiClientFrame::Wsc);
            }
        };
        let run = map.get("type").and_then(Value::as_str) == Some("run_agent");
        let message_id = match map.remove("message_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if id.len() <= MAX_CLIENT_ID_BYTES => Some(id),
            Some(_) => {
                return Err(FrameError::invalid(format!(
                    "`message_id` must be a string of at most {MAX_CLIENT_ID_BYTES} bytes"
                ))
                .into());
            }
        };
        let refuse = |reason: String| ClientFrameError {
            error: FrameError::invalid(reason),
            message_id: message_id.clone(),
        };
        let mut payload = match map.remove("payload") {
            Some(Value::Object(payload)) => payload,
            None => Map::new(),
            Some(_) => return Err(refuse("`payload` must be an object".into())),
        };
        if run {
            let input = payload.remove("input").unwrap_or(Value::Null);
            let mut run = RunAgent::from_input(input)
                .map_err(|e| refuse(format!("run_agent's `input`: {e}")))?;
            run.message_id = message_id;
            return Ok(AgUiClientFrame::RunAgent(run));
        }
        let run_id = payload
            .get("run_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= MAX_CLIENT_ID_BYTES)
            .map(str::to_owned)
            .ok_or_else(|| {
                refuse(format!(
                    "join_run's `run_id` must be a string of 1 to {MAX_CLIENT_ID_BYTES} bytes"
                ))
            })?;
        let after = match payload.get("after") {
            None | Some(Value::Null) => 0,
            Some(n) => n.as_u64().ok_or_else(|| {
                refuse("join_run's `after` must be an event number (0 or more)".into())
            })?,
        };
        Ok(AgUiClientFrame::JoinRun(JoinRun {
            run_id,
            after,
            message_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientRequest, DEFAULT_MAX_FRAME_BYTES};
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<AgUiClientFrame, ClientFrameError> {
        AgUiClientFrame::parse(text, DEFAULT_MAX_FRAME_BYTES)
    }

    #[test]
    fn run_agent_and_join_run_are_read_and_their_bounds_checked() {
        let AgUiClientFrame::RunAgent(run) = parse(
            r#"{"type":"run_agent","message_id":"m","payload":{"input":{"threadId":"t","runId":"r","state":{"a":1}}}}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(run.input["state"]["a"], 1);
        assert_eq!(run.message_id.as_deref(), Some("m"));
        let join = parse(r#"{"type":"join_run","payload":{"run_id":"r"}}"#).unwrap();
        assert_eq!(
            join,
            AgUiClientFrame::JoinRun(JoinRun {
                run_id: "r".into(),
                after: 0,
                message_id: None
            })
        );
        let long = "x".repeat(MAX_CLIENT_ID_BYTES + 1);
        for bad in [
            r#"{"type":"run_agent"}"#.to_owned(),
            r#"{"type":"run_agent","payload":{"input":[]}}"#.to_owned(),
            r#"{"type":"run_agent","payload":{"input":{"runId":"r","threadId":7}}}"#.to_owned(),
            format!(
                r#"{{"type":"run_agent","payload":{{"input":{{"runId":"{long}","threadId":"t"}}}}}}"#
            ),
            r#"{"type":"run_agent","payload":"x"}"#.to_owned(),
            r#"{"type":"join_run","payload":{}}"#.to_owned(),
            r#"{"type":"join_run","payload":{"run_id":"r","after":-1}}"#.to_owned(),
            r#"{"type":"join_run","payload":{"run_id":"r","after":"5"}}"#.to_owned(),
            r#"{"type":"join_run","message_id":5,"payload":{"run_id":"r"}}"#.to_owned(),
            r#"{"type":"join_run","payload":{"run_id":"r","run_id":"s"}}"#.to_owned(),
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.error.code(), "invalid_message", "{bad}: {e}");
        }
        assert_eq!(parse("{").unwrap_err().error.code(), "invalid_json");
        let big = format!(
            r#"{{"type":"ping","payload":{{"x":"{}"}}}}"#,
            "y".repeat(100)
        );
        assert_eq!(
            AgUiClientFrame::parse(&big, 50).unwrap_err().error.code(),
            "message_too_large"
        );
    }

    #[test]
    fn other_frames_read_as_the_wsc_protocol_reads_them() {
        for text in [
            r#"{"type":"stop_agent","payload":{"run_id":"r"}}"#,
            r#"{"type":"ack","payload":{"seq":3}}"#,
            r#"{"type":"agent_started"}"#,
            r#"{"type":"nope"}"#,
        ] {
            let wsc = ClientFrame::parse(text, DEFAULT_MAX_FRAME_BYTES);
            match (parse(text), wsc) {
                (Ok(AgUiClientFrame::Wsc(a)), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
        }
        assert!(matches!(
            parse(r#"{"type":"stop_agent","payload":{"run_id":"r"}}"#),
            Ok(AgUiClientFrame::Wsc(ClientFrame {
                request: ClientRequest::StopAgent(_),
                ..
            }))
        ));
    }

    proptest! {
        /// Never a panic, whatever the text.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,200}") {
            let _ = parse(&text);
            let _ = parse(&format!(r#"{{"type":"join_run","payload":{text}}}"#));
            let _ = parse(&format!(r#"{{"type":"run_agent","payload":{{"input":{text}}}}}"#));
        }
    }
}
