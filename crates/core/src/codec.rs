//! The wire codec: parsing client frames with precise errors, serializing
//! server frames, and the protocol's error and close codes.

use std::fmt;

use serde_json::{Map, Value};

use crate::{MessageType, Timestamp, WebSocketMessage};

/// The default largest text frame accepted from a client: 64 KiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// The `code` of an `error` frame, as listed in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// Valid JSON but not a valid message (not an object, no type, payload
    /// not an object, bad field, binary frame).
    InvalidMessage,
    /// `type` names no known message type.
    UnknownType,
    /// A server-only type was sent by a client.
    NotAllowed,
    /// The user is over a message window; see `retry_after_ms`.
    RateLimited,
    /// The frame is over the size limit.
    MessageTooLarge,
    /// Bad or missing credentials.
    Unauthorized,
    /// The server failed; not the client's fault.
    Internal,
    /// What the frame names does not exist for this user (an AG-UI
    /// `join_run` of a run that is not the user's, or expired).
    NotFound,
    /// What the frame asks for is no longer held (the events after a
    /// `join_run`'s `after` outgrew the run's byte budget).
    Gone,
}

impl ErrorCode {
    /// Every error code.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidMessage,
        ErrorCode::UnknownType,
        ErrorCode::NotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::MessageTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Internal,
        ErrorCode::NotFound,
        ErrorCode::Gone,
    ];

    /// The wire value, e.g. `"invalid_json"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Gone => "gone",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WebSocket close code (RFC 6455 section 7.4) used by the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is shutting down (the session stays resumable).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1007: a text frame that is not UTF-8 (RFC 6455 §7.4.1).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation (e.g. a client that cannot keep up).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame over the size limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: internal server error.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
}

/// Why a client frame was refused. Each variant maps to one protocol error
/// code ([`code`](Self::code)); the `Display` text is a human message fit for
/// the `message` field of the `error` frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is not valid JSON.
    #[error("frame is not valid JSON: {detail}")]
    InvalidJson {
        /// What the JSON parser reported.
        detail: String,
    },
    /// Valid JSON that is not a valid message.
    #[error("frame is not a valid message: {reason}")]
    InvalidMessage {
        /// What is wrong and what was expected.
        reason: String,
    },
    /// `type` names no known message type.
    #[error("unknown message type {type_name:?}")]
    UnknownType {
        /// The type as sent.
        type_name: String,
    },
    /// A server-only message type sent by a client.
    #[error("message type \"{message_type}\" is sent by the server only")]
    NotAllowed {
        /// The refused type.
        message_type: MessageType,
    },
    /// The frame is larger than the limit.
    #[error("frame of {size} bytes is over the limit of {limit} bytes")]
    MessageTooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl FrameError {
    /// The protocol error code, e.g. `"invalid_json"`.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The protocol error code as an [`ErrorCode`].
    pub fn error_code(&self) -> ErrorCode {
        match self {
            FrameError::InvalidJson { .. } => ErrorCode::InvalidJson,
            FrameError::InvalidMessage { .. } => ErrorCode::InvalidMessage,
            FrameError::UnknownType { .. } => ErrorCode::UnknownType,
            FrameError::NotAllowed { .. } => ErrorCode::NotAllowed,
            FrameError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        FrameError::InvalidMessage {
            reason: reason.into(),
        }
    }
}

/// Parses a text frame from a client, with the default size limit
/// ([`DEFAULT_MAX_FRAME_BYTES`]).
///
/// Never panics: every bad input is a [`FrameError`] carrying its protocol
/// code. Server-only types (such as `agent_started`) are refused with
/// [`FrameError::NotAllowed`]. A missing `payload` becomes `{}`; `timestamp`
/// must be Unix seconds as a number; `message_id`, `user_id` and `thread_id`
/// must be strings and `seq` a non-negative integer when present (`null`
/// counts as absent). Unknown keys are ignored.
///
/// ```
/// use wsc_core::{parse_client_frame, MessageType};
///
/// let msg = parse_client_frame(r#"{"type": "ping", "payload": {"n": 1}}"#).unwrap();
/// assert_eq!(msg.message_type, MessageType::Ping);
///
/// let err = parse_client_frame(r#"{"type": "agent_started"}"#).unwrap_err();
/// assert_eq!(err.code(), "not_allowed");
/// assert_eq!(parse_client_frame("{").unwrap_err().code(), "invalid_json");
/// ```
pub fn parse_client_frame(text: &str) -> Result<WebSocketMessage, FrameError> {
    parse_client_frame_with_limit(text, DEFAULT_MAX_FRAME_BYTES)
}

/// [`parse_client_frame`] with a size limit of `max_bytes`.
pub fn parse_client_frame_with_limit(
    text: &str,
    max_bytes: usize,
) -> Result<WebSocketMessage, FrameError> {
    if text.len() > max_bytes {
        return Err(FrameError::MessageTooLarge {
            size: text.len(),
            limit: max_bytes,
        });
    }
    client_message(strict_value(text)?)
}

/// A client frame's message from its JSON value (as
/// [`strict_value`] gave it): every rule of [`parse_client_frame`] but
/// the size.
pub(crate) fn client_message(value: Value) -> Result<WebSocketMessage, FrameError> {
    let msg = decode_value(value)?;
    for (field, value) in [
        ("message_id", &msg.message_id),
        ("user_id", &msg.user_id),
        ("thread_id", &msg.thread_id),
    ] {
        if let Some(v) = value
            && v.len() > MAX_CLIENT_ID_BYTES
        {
            return Err(FrameError::invalid(format!(
                "`{field}` is {} bytes; at most {MAX_CLIENT_ID_BYTES}",
                v.len()
            )));
        }
    }
    if !msg.message_type.client_may_send() {
        return Err(FrameError::NotAllowed {
            message_type: msg.message_type,
        });
    }
    Ok(msg)
}

/// The longest `message_id`, `user_id` or `thread_id` a client frame may
/// carry, in bytes. The gateway copies ids into every event of a run and
/// the event monitor keeps them: unbounded, one frame could multiply into
/// megabytes kept for minutes.
pub const MAX_CLIENT_ID_BYTES: usize = 256;

/// Parses a client frame's JSON strictly: an object key given twice (at
/// any depth) is refused, as is an integer beyond 64 bits (it would come
/// back as a float, not the number sent). Serde's parser decides the JSON
/// itself; this only adds the two checks.
pub(crate) fn strict_value(text: &str) -> Result<Value, FrameError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            let detail = e.to_string();
            match detail.strip_prefix(DUPLICATE_KEY) {
                Some(rest) => FrameError::invalid(format!(
                    "a key appears twice in one object: {}",
                    rest.split(" at line").next().unwrap_or(rest)
                )),
                None => FrameError::InvalidJson { detail },
            }
        })?;
    if let Some(n) = oversized_integer(text) {
        return Err(FrameError::invalid(format!(
            "the integer {n} does not fit in 64 bits; send it as a string"
        )));
    }
    Ok(value)
}

const DUPLICATE_KEY: &str = "duplicate key ";

/// Builds a [`Value`] like serde_json's own, refusing duplicate keys.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format!(
                    "{DUPLICATE_KEY}{shown:?}"
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The first integer literal in valid JSON `text` that fits neither `i64`
/// nor `u64` (numbers inside strings are skipped), shortened for a
/// message.
fn oversized_integer(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                    return Some(token.chars().take(40).collect());
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Parses a frame sent by the server (any message type allowed); what a
/// client uses. Same rules as [`parse_client_frame`] otherwise, with no size
/// limit.
pub fn parse_server_frame(text: &str) -> Result<WebSocketMessage, FrameError> {
    parse_json(text)
}

fn parse_json(text: &str) -> Result<WebSocketMessage, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError::InvalidJson {
        detail: e.to_string(),
    })?;
    decode_value(value)
}

/// Serializes a frame to its JSON text.
///
/// ```
/// use serde_json::json;
/// use wsc_core::{serialize, MessageType, WebSocketMessage};
///
/// let text = serialize(&WebSocketMessage::new(MessageType::Pong, json!({})));
/// assert_eq!(text, r#"{"type":"pong","payload":{}}"#);
/// ```
pub fn serialize(message: &WebSocketMessage) -> String {
    match serde_json::to_string(message) {
        Ok(text) => text,
        // Unreachable for these types (string keys, finite numbers); answer
        // with a well-formed internal error rather than panicking.
        Err(_) => String::from(
            r#"{"type":"error","payload":{"code":"internal","message":"frame could not be serialized"}}"#,
        ),
    }
}

fn optional_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, FrameError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FrameError::invalid(format!(
            "`{key}` must be a string, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes a JSON value into a message (any message type).
pub(crate) fn decode_value(value: Value) -> Result<WebSocketMessage, FrameError> {
    let mut map = match value {
        Value::Object(map) => map,
        other => {
            return Err(FrameError::invalid(format!(
                "expected a JSON object, got {}",
                kind(&other)
            )));
        }
    };
    let message_type = match map.remove("type") {
        Some(Value::String(s)) => s
            .parse::<MessageType>()
            .map_err(|_| FrameError::UnknownType { type_name: s })?,
        Some(other) => {
            return Err(FrameError::invalid(format!(
                "`type` must be a string, got {}",
                kind(&other)
            )));
        }
        None => return Err(FrameError::invalid("missing `type`")),
    };
    let payload = match map.remove("payload") {
        None => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(other) => {
            return Err(FrameError::invalid(format!(
                "`payload` must be an object, got {}",
                kind(&other)
            )));
        }
    };
    let timestamp = match map.remove("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let ts = n.as_f64().and_then(Timestamp::from_unix_secs_f64);
            Some(ts.ok_or_else(|| {
                FrameError::invalid(format!(
                    "`timestamp` {n} is out of range: expected Unix seconds between years 1 and 9999"
                ))
            })?)
        }
        Some(other) => {
            return Err(FrameError::invalid(format!(
                "`timestamp` must be Unix seconds as a number, got {}",
                kind(&other)
            )));
        }
    };
    let seq = match map.remove("seq") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(other) => {
            return Err(FrameError::invalid(format!(
                "`seq` must be a non-negative integer, got {other}"
            )));
        }
    };
    Ok(WebSocketMessage {
        message_type,
        payload,
        timestamp,
        message_id: optional_string(&mut map, "message_id")?,
        user_id: optional_string(&mut map, "user_id")?,
        thread_id: optional_string(&mut map, "thread_id")?,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn code(text: &str) -> &'static str {
        parse_client_frame(text).unwrap_err().code()
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"type":"ping","type":"start_agent"}"#,
            r#"{"type":"ping","payload":{"a":1,"a":2}}"#,
            r#"{"type":"ping","payload":{"x":[{"k":1,"k":1}]}}"#,
            r#"{"type":"ping","message_id":"a","message_id":"b"}"#,
        ] {
            let err = parse_client_frame(text).unwrap_err();
            assert_eq!(err.code(), "invalid_message", "{text}");
            assert!(err.to_string().contains("appears twice"), "{err}");
        }
        // The same key in sibling objects is fine.
        let ok = parse_client_frame(r#"{"type":"ping","payload":{"a":{"k":1},"b":{"k":2}}}"#);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_and_the_rest_kept_exactly() {
        for big in [
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
        ] {
            let text = format!(r#"{{"type":"ping","payload":{{"n":{big}}}}}"#);
            let err = parse_client_frame(&text).unwrap_err();
            assert_eq!(err.code(), "invalid_message", "{text}");
            assert!(err.to_string().contains("64 bits"), "{err}");
        }
        for exact in [
            "18446744073709551615",
            "-9223372036854775808",
            "0",
            "1.5e+300",
            "2.0",
        ] {
            let text = format!(r#"{{"type":"ping","payload":{{"n":{exact}}}}}"#);
            let msg = parse_client_frame(&text).unwrap();
            assert_eq!(msg.payload["n"].to_string(), exact, "{text}");
        }
        // Digits inside strings are text, however long.
        let text = r#"{"type":"ping","payload":{"s":"123456789012345678901234567890 \" 99999999999999999999999"}}"#;
        assert!(parse_client_frame(text).is_ok());
    }

    #[test]
    fn client_ids_are_bounded() {
        for field in ["message_id", "user_id", "thread_id"] {
            let ok = format!(
                r#"{{"type":"ping","{field}":"{}"}}"#,
                "x".repeat(MAX_CLIENT_ID_BYTES)
            );
            assert!(parse_client_frame(&ok).is_ok(), "{field}");
            let long = format!(
                r#"{{"type":"ping","{field}":"{}"}}"#,
                "x".repeat(MAX_CLIENT_ID_BYTES + 1)
            );
            let err = parse_client_frame(&long).unwrap_err();
            assert_eq!(err.code(), "invalid_message");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn each_bad_input_has_its_code() {
        assert_eq!(code("not json"), "invalid_json");
        assert_eq!(code(""), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_message");
        assert_eq!(code("\"ping\""), "invalid_message");
        assert_eq!(code("{}"), "invalid_message");
        assert_eq!(code(r#"{"type": 5}"#), "invalid_message");
        assert_eq!(code(r#"{"type": "warp_drive"}"#), "unknown_type");
        assert_eq!(
            code(r#"{"type": "ping", "payload": [1]}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type": "ping", "payload": null}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type": "ping", "timestamp": "soon"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type": "ping", "timestamp": 1e300}"#),
            "invalid_message"
        );
        assert_eq!(code(r#"{"type": "ping", "seq": -1}"#), "invalid_message");
        assert_eq!(code(r#"{"type": "ping", "user_id": 7}"#), "invalid_message");
        assert_eq!(code(r#"{"type": "tool_completed"}"#), "not_allowed");
        assert_eq!(code(r#"{"type": "error"}"#), "not_allowed");
        let big = format!(
            r#"{{"type":"chat","payload":{{"content":"{}"}}}}"#,
            "x".repeat(70_000)
        );
        assert_eq!(code(&big), "message_too_large");
    }

    #[test]
    fn lenient_where_documented() {
        let msg = parse_client_frame(
            r#"{"type": "user", "timestamp": 1700000000, "message_id": null, "extra": true}"#,
        )
        .unwrap();
        assert_eq!(msg.message_type, MessageType::UserMessage);
        assert_eq!(msg.payload, json!({}));
        assert_eq!(
            msg.timestamp,
            Some(Timestamp::from_unix_micros(1_700_000_000_000_000))
        );
        assert_eq!(msg.message_id, None);
    }

    #[test]
    fn error_frames_carry_code_and_message() {
        let err = parse_client_frame(r#"{"type": "nope"}"#).unwrap_err();
        let frame = err.to_error_frame();
        assert_eq!(frame.payload["code"], "unknown_type");
        assert_eq!(frame.payload["message"], "unknown message type \"nope\"");
        assert!(parse_server_frame(&serialize(&frame)).is_ok());
    }

    #[test]
    fn server_frames_accept_server_types() {
        let msg = parse_server_frame(r#"{"type": "agent_started", "seq": 3}"#).unwrap();
        assert_eq!(msg.seq, Some(3));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
            prop::sample::select(vec!["ping", "agent_started", "user", "chat", "nope"])
                .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "type",
                        "payload",
                        "timestamp",
                        "seq",
                        "user_id",
                        "message_id",
                        "thread_id",
                        "x"
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_message() -> impl Strategy<Value = WebSocketMessage> {
        (
            prop::sample::select(MessageType::ALL.to_vec()),
            prop::collection::btree_map("[a-z_]{1,8}", any::<i32>(), 0..4),
            prop::option::of(-(1i64 << 51)..(1i64 << 51)),
            prop::option::of(".{0,10}"),
            prop::option::of(".{0,10}"),
            prop::option::of(".{0,10}"),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(t, payload, ts, mid, uid, tid, seq)| {
                let payload: Map<String, Value> =
                    payload.into_iter().map(|(k, v)| (k, json!(v))).collect();
                WebSocketMessage {
                    message_type: t,
                    payload: Value::Object(payload),
                    timestamp: ts.map(Timestamp::from_unix_micros),
                    message_id: mid,
                    user_id: uid,
                    thread_id: tid,
                    seq,
                }
            })
    }

    proptest! {
        #[test]
        fn serialize_then_parse_round_trips(msg in arb_message()) {
            let text = serialize(&msg);
            prop_assert_eq!(parse_server_frame(&text), Ok(msg.clone()));
            let via_serde: WebSocketMessage = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&via_serde, &msg);
            match parse_client_frame(&text) {
                Ok(parsed) => prop_assert_eq!(parsed, msg),
                Err(e) => {
                    prop_assert_eq!(e.code(), "not_allowed");
                    prop_assert!(!msg.message_type.client_may_send());
                }
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(text in ".{0,200}") {
            if let Err(e) = parse_client_frame(&text) {
                prop_assert!(ErrorCode::ALL.contains(&e.error_code()));
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn arbitrary_json_gives_ok_or_typed_error(value in arb_json()) {
            let text = value.to_string();
            match parse_client_frame(&text) {
                Ok(msg) => {
                    prop_assert!(msg.payload.is_object());
                    prop_assert!(msg.message_type.client_may_send());
                }
                Err(FrameError::InvalidJson { .. }) => prop_assert!(false, "valid JSON reported invalid"),
                Err(e) => prop_assert!(!e.code().is_empty()),
            }
        }

        /// Without duplicate keys or oversized integers (a map's keys are
        /// unique; `arb_json` has only 64-bit integers), the strict parse
        /// is exactly serde_json's.
        #[test]
        fn the_strict_parse_is_serde_jsons_for_unambiguous_json(value in arb_json()) {
            let text = value.to_string();
            prop_assert_eq!(strict_value(&text).unwrap(), serde_json::from_str::<Value>(&text).unwrap());
        }

        /// An integer literal is refused exactly when it fits neither i64
        /// nor u64, wherever it sits; inside a string it is text.
        #[test]
        fn oversized_integers_are_found_exactly(n in any::<i128>(), depth in 0usize..4, quoted in any::<bool>()) {
            let literal = if quoted { format!("\"{n}\"") } else { n.to_string() };
            let text = format!("{}{literal}{}", "[".repeat(depth), "]".repeat(depth));
            let fits = i64::try_from(n).is_ok() || u64::try_from(n).is_ok();
            prop_assert_eq!(oversized_integer(&text).is_some(), !quoted && !fits, "{}", text);
        }

        #[test]
        fn oversize_frames_are_refused_before_parsing(extra in 1usize..100) {
            let text = "x".repeat(64 + extra);
            prop_assert_eq!(
                parse_client_frame_with_limit(&text, 64),
                Err(FrameError::MessageTooLarge { size: 64 + extra, limit: 64 })
            );
        }
    }
}
