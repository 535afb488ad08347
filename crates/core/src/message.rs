//! [`WebSocketMessage`], the one frame shape every wsc component handles.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::codec::{self, FrameError};
use crate::{MessageType, Timestamp};

/// One protocol frame: a typed message with a JSON-object payload.
///
/// On the wire (see the crate docs) it is a JSON object with the key `type`,
/// `payload` (always an object), and optional `timestamp` (Unix seconds),
/// `message_id`, `user_id`, `thread_id` and `seq`; absent options are omitted.
///
/// ```
/// use serde_json::json;
/// use wsc_core::{MessageType, Timestamp, WebSocketMessage};
///
/// let msg = WebSocketMessage::new(MessageType::AgentStarted, json!({"run_id": "r1"}))
///     .with_user_id("u1")
///     .with_seq(1)
///     .with_timestamp(Timestamp::from_unix_micros(1_700_000_000_500_000));
/// assert_eq!(
///     serde_json::to_value(&msg).unwrap(),
///     json!({"type": "agent_started", "payload": {"run_id": "r1"},
///            "timestamp": 1_700_000_000.5, "user_id": "u1", "seq": 1})
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WebSocketMessage {
    /// The message type (wire key `type`).
    pub message_type: MessageType,
    /// The payload; always a JSON object (see [`WebSocketMessage::new`]).
    pub payload: Value,
    /// When the sender created the message (wire: Unix seconds).
    pub timestamp: Option<Timestamp>,
    /// A sender-chosen id, echoed in `ack` frames.
    pub message_id: Option<String>,
    /// The user the message belongs to.
    pub user_id: Option<String>,
    /// The conversation thread the message belongs to.
    pub thread_id: Option<String>,
    /// The per-session sequence number the server gives buffered frames.
    pub seq: Option<u64>,
}

impl WebSocketMessage {
    /// A message of `message_type` with `payload`.
    ///
    /// The payload is kept an object: `null` becomes `{}`, and any other
    /// non-object value `v` becomes `{"value": v}`.
    pub fn new(message_type: MessageType, payload: Value) -> Self {
        WebSocketMessage {
            message_type,
            payload: into_object(payload),
            timestamp: None,
            message_id: None,
            user_id: None,
            thread_id: None,
            seq: None,
        }
    }

    /// Sets `user_id`.
    pub fn with_user_id(mut self, id: impl Into<String>) -> Self {
        self.user_id = Some(id.into());
        self
    }

    /// Sets `thread_id`.
    pub fn with_thread_id(mut self, id: impl Into<String>) -> Self {
        self.thread_id = Some(id.into());
        self
    }

    /// Sets `message_id`.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets `timestamp`.
    pub fn with_timestamp(mut self, ts: Timestamp) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// Sets `seq`.
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// The payload field `key` as a string, if present and a string.
    pub fn payload_str(&self, key: &str) -> Option<&str> {
        self.payload.get(key).and_then(Value::as_str)
    }

    /// About how many bytes of heap the message points to, not counting
    /// the struct itself: its strings, and its payload as `serde_json`
    /// holds it (every object a B-tree whose first node has room for 11
    /// entries, 632 bytes however few it holds; arrays of 32-byte values;
    /// strings). An estimate from sizes and capacities, close to what an
    /// allocator counts (the tests check it), for memory budgets.
    ///
    /// ```
    /// use serde_json::json;
    /// use wsc_core::{MessageType, WebSocketMessage};
    /// let small = WebSocketMessage::new(MessageType::AgentThinking, json!({"t": "x"}));
    /// assert!(small.heap_bytes() > 600); // one map node, whatever its size
    /// ```
    pub fn heap_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        text(&self.message_id)
            + text(&self.user_id)
            + text(&self.thread_id)
            + value_heap_bytes(&self.payload)
    }
}

/// A `serde_json` map node: parent link, index, length and room for 11 keys
/// and 11 values (the standard library's B-tree).
const MAP_LEAF_BYTES: usize =
    16 + 11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>());
/// An inner node: a leaf's fields and 12 child links.
const MAP_INNER_BYTES: usize = MAP_LEAF_BYTES + 12 * std::mem::size_of::<usize>();

/// The heap a JSON value points to (see [`WebSocketMessage::heap_bytes`]).
fn value_heap_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(value_heap_bytes).sum::<usize>()
        }
        Value::Object(map) => {
            let entries: usize = map
                .iter()
                .map(|(k, v)| k.capacity() + value_heap_bytes(v))
                .sum();
            // Nodes past the first split hold 6 to 11 entries (6 when
            // filled in key order, 11 when built at once): count 8.
            let leaves = match map.len() {
                0 => 0,
                1..=11 => 1,
                n => n.div_ceil(8),
            };
            let inner = if leaves > 1 {
                (leaves - 1).div_ceil(6)
            } else {
                0
            };
            leaves * MAP_LEAF_BYTES + inner * MAP_INNER_BYTES + entries
        }
    }
}

pub(crate) fn into_object(payload: Value) -> Value {
    match payload {
        Value::Object(_) => payload,
        Value::Null => Value::Object(Map::new()),
        other => {
            let mut map = Map::new();
            map.insert("value".to_owned(), other);
            Value::Object(map)
        }
    }
}

impl Serialize for WebSocketMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let optional = [
            self.timestamp.is_some(),
            self.message_id.is_some(),
            self.user_id.is_some(),
            self.thread_id.is_some(),
            self.seq.is_some(),
        ];
        let len = 2 + optional.iter().filter(|present| **present).count();
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("type", &self.message_type)?;
        if self.payload.is_object() {
            map.serialize_entry("payload", &self.payload)?;
        } else {
            // The field is public, so keep the wire invariant even if a caller
            // stored a non-object.
            map.serialize_entry("payload", &into_object(self.payload.clone()))?;
        }
        if let Some(ts) = &self.timestamp {
            map.serialize_entry("timestamp", ts)?;
        }
        if let Some(id) = &self.message_id {
            map.serialize_entry("message_id", id)?;
        }
        if let Some(id) = &self.user_id {
            map.serialize_entry("user_id", id)?;
        }
        if let Some(id) = &self.thread_id {
            map.serialize_entry("thread_id", id)?;
        }
        if let Some(seq) = &self.seq {
            map.serialize_entry("seq", seq)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for WebSocketMessage {
    /// Accepts exactly what [`parse_server_frame`](crate::parse_server_frame)
    /// accepts (any message type), with the same error messages.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        codec::decode_value(value).map_err(|e: FrameError| serde::de::Error::custom(e))
    }
}
