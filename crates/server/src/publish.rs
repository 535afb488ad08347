//! The publish API's request (`POST /api/publish`, see `docs/agents.md`) and its
//! delivery: one server frame into a session, or into every session of a
//! user, numbered, buffered, resumable, validated like any agent frame.

use std::str::FromStr;

use serde_json::{Map, Value};
use wsc_core::{Direction, MessageType, WebSocketMessage, WireFrame};

use crate::state::AppState;

/// Whom a published frame goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One session.
    Session(String),
    /// Every live or resumable session of the user.
    User(String),
}

/// A checked publish request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PublishRequest {
    pub(crate) target: Target,
    pub(crate) message_type: MessageType,
    pub(crate) payload: Map<String, Value>,
    pub(crate) thread_id: Option<String>,
    pub(crate) run_id: Option<String>,
    pub(crate) message_id: Option<String>,
    /// The `user_id` given beside a `session_id`: the session must be
    /// that user's.
    pub(crate) session_user: Option<String>,
}

/// An optional string field; `Err` if present and not a string.
fn opt_str(body: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{field}` must be a string of 1 to 256 bytes")),
    }
}

impl PublishRequest {
    /// Reads a request body; the error says what is wrong with it.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Value::Object(body) = value else {
            return Err("the body must be a JSON object".into());
        };
        let (target, session_user) =
            match (opt_str(&body, "session_id")?, opt_str(&body, "user_id")?) {
                (Some(session), user) => (Target::Session(session), user),
                (None, Some(user)) => (Target::User(user), None),
                (None, None) => return Err("name a target: `user_id` or `session_id`".into()),
            };
        let type_name = opt_str(&body, "type")?.ok_or("`type` is missing")?;
        let message_type = MessageType::from_str(&type_name)
            .map_err(|_| format!("`type` {type_name:?} is not a message type"))?;
        if message_type.direction() == Direction::ClientToServer {
            return Err(format!(
                "`type` {type_name:?} is not a frame the server sends to clients"
            ));
        }
        if message_type.is_control() {
            return Err(format!(
                "`type` {type_name:?} belongs to the connection (only the gateway sends it): publish data"
            ));
        }
        let payload = match body.get("payload") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err("`payload` must be a JSON object".into()),
        };
        Ok(PublishRequest {
            target,
            message_type: message_type.canonical(),
            payload,
            thread_id: opt_str(&body, "thread_id")?,
            run_id: opt_str(&body, "run_id")?,
            message_id: opt_str(&body, "message_id")?,
            session_user,
        })
    }
}

/// Why a publish was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublishError {
    /// The session store failed (503).
    Unavailable(String),
    /// The frame names a run the gateway's agents run (400).
    Run(String),
    /// The request contradicts itself: a `session_id` and the `user_id` of
    /// another user (400).
    Invalid(String),
    /// The frame times its sessions is over the fan-out cap (413).
    FanOut(String),
}

/// Delivers the frame; returns how many sessions got it (a session that
/// already holds its `message_id` does not count). A frame naming the
/// `run_id` of a run the gateway's agents run is refused: a publish never
/// becomes an event of a run it did not start.
pub(crate) async fn publish(
    state: &AppState,
    request: PublishRequest,
) -> Result<usize, PublishError> {
    let unavailable = |e: wsc_reconnection::SessionError| {
        state.shared.session_store_failed(&e);
        PublishError::Unavailable(format!("the session store failed: {e}"))
    };
    if let Some(run_id) = &request.run_id {
        state
            .runs
            .check_published(run_id)
            .map_err(PublishError::Run)?;
    }
    let sessions = match &request.target {
        Target::Session(id) => {
            let owner = state
                .sessions
                .session(id)
                .await
                .map_err(unavailable)?
                .map(|record| record.user_id);
            if let (Some(user), Some(owner)) = (&request.session_user, &owner)
                && user != owner
            {
                return Err(PublishError::Invalid(
                    "`session_id` names a session of another user than `user_id`: name one, or both of the same user".into(),
                ));
            }
            vec![id.clone()]
        }
        Target::User(user) => state
            .sessions
            .sessions_of_user(user)
            .await
            .map_err(unavailable)?,
    };
    let mut payload = request.payload;
    if let Some(run_id) = &request.run_id {
        payload.insert("run_id".into(), Value::from(run_id.clone()));
    }
    let mut message = WebSocketMessage::new(request.message_type, Value::Object(payload))
        .with_timestamp(state.clock.now());
    message.thread_id = request.thread_id;
    message.message_id = request.message_id;
    // Serialized once, for every session of the user.
    let frame = WireFrame::encode(&message);
    let config = &state.config;
    let cap = config
        .http
        .max_publish_fanout_bytes
        .unwrap_or(config.sessions.max_replay_bytes_total / 8);
    let fan_out = frame.heap_bytes().saturating_mul(sessions.len());
    if fan_out > cap {
        return Err(PublishError::FanOut(format!(
            "{} sessions × {} bytes would buffer {fan_out} bytes, over the gateway's cap of {cap} per publish (--max-publish-fanout-bytes): nothing was delivered",
            sessions.len(),
            frame.heap_bytes()
        )));
    }
    let message_id = message.message_id.clone();
    let mut delivered = 0;
    for session in sessions {
        match state
            .sessions
            .publish_frame_once(&session, &frame, message_id.as_deref())
            .await
        {
            Ok(Some(_)) => delivered += 1,
            Ok(None) | Err(wsc_reconnection::SessionError::UnknownSession(_)) => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PublishRequest, String> {
        PublishRequest::parse(body.as_bytes())
    }

    #[test]
    fn requests_of_the_right_shape_parse() {
        let r = parse(
            r#"{"user_id": "u", "type": "agent_progress", "payload": {"p": 1}, "message_id": "m"}"#,
        )
        .unwrap();
        assert_eq!(r.target, Target::User("u".into()));
        assert_eq!(r.message_type, MessageType::AgentProgress);
        assert_eq!(r.message_id.as_deref(), Some("m"));
        let r = parse(r#"{"session_id": "s", "user_id": "u", "type": "agent_complete"}"#).unwrap();
        assert_eq!(r.target, Target::Session("s".into()));
        assert_eq!(
            r.session_user.as_deref(),
            Some("u"),
            "checked against the session's owner"
        );
        assert_eq!(
            r.message_type,
            MessageType::AgentCompleted,
            "legacy names canonical"
        );
        assert!(r.payload.is_empty());
    }

    #[test]
    fn every_wrong_shape_says_why() {
        for (body, says) in [
            ("not json", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"type": "agent_progress"}"#, "target"),
            (r#"{"user_id": "u"}"#, "`type` is missing"),
            (r#"{"user_id": "u", "type": "nope"}"#, "not a message type"),
            (
                r#"{"user_id": "u", "type": "start_agent"}"#,
                "not a frame the server sends",
            ),
            (
                r#"{"user_id": "u", "type": "agent_progress", "payload": [1]}"#,
                "`payload`",
            ),
            (r#"{"user_id": 7, "type": "agent_progress"}"#, "`user_id`"),
            (
                r#"{"user_id": "u", "type": "agent_progress", "message_id": ""}"#,
                "`message_id`",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(says), "{body}: {err}");
        }
        for control in ["connection_established", "pong", "ping", "error", "ack"] {
            let body = format!(r#"{{"user_id": "u", "type": "{control}"}}"#);
            let err = parse(&body).unwrap_err();
            assert!(err.contains("belongs to the connection"), "{body}: {err}");
        }
    }
}
