//! [`WireFrame`]: a frame serialized once, its text shared by everyone who
//! sends or keeps it.

use std::fmt;
use std::sync::Arc;

use crate::codec::{self, FrameError};
use crate::{MessageType, Timestamp, WebSocketMessage};

/// The bits of [`WireFrame`]'s packed word that hold the seq (the top 8
/// hold the message type's index).
const SEQ_BITS: u32 = 56;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// The highest seq a frame can carry (2^56 - 1: a session numbering a
/// million frames a second reaches it in two thousand years).
pub const MAX_WIRE_SEQ: u64 = SEQ_MASK;
/// "No time" in [`WireFrame`]'s time field (outside [`Timestamp`]'s wire
/// range, so no real time is mistaken for it).
const NO_TIME: i64 = i64::MIN;

/// One frame as it goes on the wire: its JSON text, serialized once and
/// shared (an [`Arc<str>`]) by the replay buffer, the store, the live
/// delivery to every reader and every replay — cloning one copies a
/// pointer, never the text.
///
/// A frame is *unnumbered* when it is made ([`encode`](Self::encode)) and
/// *numbered* when a session's buffer gives it its seq
/// ([`with_seq`](Self::with_seq)): the seq is the last key of the object,
/// so numbering appends `,"seq":N` to the text without serializing again.
/// Besides the text it keeps what the server needs without parsing: the
/// [`message_type`](Self::message_type), the [`seq`](Self::seq) and a
/// [`timestamp`](Self::timestamp); [`decode`](Self::decode) parses the
/// whole frame back when a reader needs it.
///
/// It takes 32 bytes inline and its text's length + 16 to 23 bytes of heap
/// (the `Arc`'s two counters, and padding to 8 bytes).
///
/// ```
/// use serde_json::json;
/// use wsc_core::{MessageType, WebSocketMessage, WireFrame, serialize};
///
/// let message = WebSocketMessage::new(MessageType::AgentThinking, json!({"thought": "hm"}));
/// let frame = WireFrame::encode(&message);
/// assert_eq!(frame.seq(), None);
/// assert_eq!(frame.message_type(), MessageType::AgentThinking);
///
/// // Numbering appends the seq; the text is what `serialize` gives.
/// let numbered = frame.with_seq(7).unwrap();
/// assert_eq!(numbered.as_str(), serialize(&message.clone().with_seq(7)));
/// assert_eq!(numbered.decode().unwrap().seq, Some(7));
///
/// // Clones share the text.
/// let copy = numbered.clone();
/// assert!(std::ptr::eq(copy.as_str(), numbered.as_str()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WireFrame {
    text: Arc<str>,
    /// The message type's index in [`MessageType::ALL`] (top 8 bits) and
    /// the seq (low 56 bits; 0: unnumbered — seqs start at 1).
    packed: u64,
    /// Unix microseconds, or [`NO_TIME`].
    time: i64,
}

/// Why text could not be taken as a [`WireFrame`] (see
/// [`WireFrame::from_wire`]), or a frame could not be numbered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireFrameError {
    /// The text is not a JSON object that opens with its `type`
    /// (`{"type":"agent_started",...}`), the form every frame the server
    /// sends has.
    #[error("a wire frame must be a JSON object that opens with {{\"type\":\"...\"")]
    NotAFrame,
    /// The `type` names no message type.
    #[error("unknown message type {0:?} in a wire frame")]
    UnknownType(String),
    /// The seq is 0 (seqs start at 1) or above [`MAX_WIRE_SEQ`].
    #[error("seq {0} is out of range (1 to 2^56 - 1)")]
    SeqOutOfRange(u64),
}

/// The index of `t` in [`MessageType::ALL`] (its declaration order: the
/// enum has no explicit discriminants, so the cast is the index).
fn type_index(t: MessageType) -> u64 {
    t as u64
}

/// A time as [`WireFrame`] keeps it.
fn micros(time: Option<Timestamp>) -> i64 {
    time.map_or(NO_TIME, |t| t.as_unix_micros())
}

/// How an AG-UI dialect frame opens, and the key before its event.
const AG_UI_OPENING: &str = "{\"run_id\":";
const AG_UI_EVENT: &str = ",\"event\":";

/// The legacy event an AG-UI event's type stands for (see
/// [`WireFrame::ag_ui`]).
fn ag_ui_kind(event: &str) -> MessageType {
    let name = event
        .strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    match name {
        "RUN_STARTED" => MessageType::AgentStarted,
        "RUN_FINISHED" => MessageType::AgentCompleted,
        "RUN_ERROR" => MessageType::AgentError,
        "TOOL_CALL_START" => MessageType::ToolExecuting,
        "TOOL_CALL_END" | "TOOL_CALL_RESULT" => MessageType::ToolCompleted,
        _ => MessageType::AgentThinking,
    }
}

fn seq_suffix_len(seq: u64) -> usize {
    // `,"seq":` and the digits.
    7 + seq.checked_ilog10().map_or(1, |d| d as usize + 1)
}

impl WireFrame {
    /// Serializes `message` (once); its `seq`, if set, is in the text and
    /// in [`seq`](Self::seq) (a seq of 0 or above [`MAX_WIRE_SEQ`] counts
    /// as unnumbered in [`seq`](Self::seq) — the text still has it).
    pub fn encode(message: &WebSocketMessage) -> WireFrame {
        let seq = message.seq.filter(|s| (1..=MAX_WIRE_SEQ).contains(s));
        let mut text = codec::serialize(message);
        if message.seq.is_some() && seq.is_none() {
            // Keep the invariant "the packed seq is the text's last key"
            // simple: an out-of-range seq is dropped from the text too.
            let mut m = message.clone();
            m.seq = None;
            text = codec::serialize(&m);
        }
        WireFrame {
            text: Arc::from(text),
            packed: (type_index(message.message_type) << SEQ_BITS) | seq.unwrap_or(0),
            time: micros(message.timestamp),
        }
    }

    /// Takes text that is already a frame's wire form (an unnumbered one:
    /// no `seq` key), without parsing or re-encoding it: only its opening
    /// `{"type":"..."` (or an AG-UI dialect frame's `{"run_id":…,"event":`,
    /// see [`ag_ui`](Self::ag_ui)) and closing `}` are checked. `time` is what
    /// [`timestamp`](Self::timestamp) answers (when the frame was made or
    /// stored; the text's own `timestamp` is not read).
    ///
    /// # Errors
    /// [`WireFrameError::NotAFrame`] or [`WireFrameError::UnknownType`].
    ///
    /// ```
    /// use wsc_core::{MessageType, WireFrame};
    /// let frame = WireFrame::from_wire(r#"{"type":"agent_started","payload":{}}"#, None).unwrap();
    /// assert_eq!(frame.message_type(), MessageType::AgentStarted);
    /// assert!(WireFrame::from_wire("[1,2]", None).is_err());
    /// ```
    pub fn from_wire(
        text: impl Into<Arc<str>>,
        time: Option<Timestamp>,
    ) -> Result<WireFrame, WireFrameError> {
        let text: Arc<str> = text.into();
        let t = Self::type_of(&text)?;
        Ok(WireFrame {
            text,
            packed: type_index(t) << SEQ_BITS,
            time: micros(time),
        })
    }

    /// The AG-UI dialect's frame for one event of the run `run_id`:
    /// `{"run_id":"R","event":E}`, `E` the agent's own event text verbatim
    /// (not parsed, not re-serialized: the caller has checked it is a JSON
    /// object). Numbered like every frame (`,"seq":N` appended), so a
    /// session buffers, replays and resumes it as any other.
    ///
    /// Its [`message_type`](Self::message_type) is the legacy event its
    /// AG-UI type stands for, read from the event's opening
    /// `{"type":"…"`: `agent_started` for `RUN_STARTED`, `agent_completed`
    /// for `RUN_FINISHED`, `agent_error` for `RUN_ERROR`, `tool_executing`
    /// for `TOOL_CALL_START`, `tool_completed` for `TOOL_CALL_END` and
    /// `TOOL_CALL_RESULT`, `agent_thinking` for every other event — each
    /// critical, so a buffer that overflows never drops one silently (a
    /// resumed AG-UI reader needs every event).
    ///
    /// ```
    /// use wsc_core::{MessageType, WireFrame};
    /// let frame = WireFrame::ag_ui("r1", r#"{"type":"RUN_STARTED","threadId":"t","runId":"r1"}"#, None);
    /// assert_eq!(frame.message_type(), MessageType::AgentStarted);
    /// let numbered = frame.with_seq(4).unwrap();
    /// assert_eq!(
    ///     numbered.as_str(),
    ///     r#"{"run_id":"r1","event":{"type":"RUN_STARTED","threadId":"t","runId":"r1"},"seq":4}"#
    /// );
    /// // What a store that keeps bodies gives back is the same frame.
    /// let back = WireFrame::from_body(&numbered.body(), 4, None).unwrap();
    /// assert_eq!((back.as_str(), back.message_type()), (numbered.as_str(), MessageType::AgentStarted));
    /// ```
    pub fn ag_ui(run_id: &str, event: &str, time: Option<Timestamp>) -> WireFrame {
        let id = serde_json::Value::from(run_id).to_string();
        let mut text = String::with_capacity(AG_UI_OPENING.len() + id.len() + 10 + event.len() + 1);
        text.push_str(AG_UI_OPENING);
        text.push_str(&id);
        text.push_str(AG_UI_EVENT);
        text.push_str(event);
        text.push('}');
        WireFrame {
            text: Arc::from(text),
            packed: type_index(ag_ui_kind(event)) << SEQ_BITS,
            time: micros(time),
        }
    }

    fn type_of(text: &str) -> Result<MessageType, WireFrameError> {
        const OPENING: &str = "{\"type\":\"";
        if text.starts_with(AG_UI_OPENING) && text.ends_with('}') {
            // A JSON string holds no unescaped quote, so the first
            // `,"event":` is the key's.
            let at = text.find(AG_UI_EVENT).ok_or(WireFrameError::NotAFrame)?;
            return Ok(ag_ui_kind(&text[at + AG_UI_EVENT.len()..]));
        }
        let rest = text
            .strip_prefix(OPENING)
            .filter(|_| text.ends_with('}'))
            .ok_or(WireFrameError::NotAFrame)?;
        let end = rest.find('"').ok_or(WireFrameError::NotAFrame)?;
        let name = &rest[..end];
        MessageType::from_wire(name)
            .ok_or_else(|| WireFrameError::UnknownType(name.chars().take(40).collect::<String>()))
    }

    /// This frame numbered `seq`: its text with `,"seq":N` as the last key
    /// (one copy of the text; no serialization). A numbered frame is
    /// renumbered (its old seq replaced).
    ///
    /// # Errors
    /// [`WireFrameError::SeqOutOfRange`] for 0 or above [`MAX_WIRE_SEQ`].
    pub fn with_seq(&self, seq: u64) -> Result<WireFrame, WireFrameError> {
        Self::numbered(self.open(), self.packed & !SEQ_MASK, seq, self.time)
    }

    /// A numbered frame from an unnumbered frame's text (what a store that
    /// numbers frames itself keeps, see [`body`](Self::body)), `,"seq":N`
    /// appended in one copy, with [`timestamp`](Self::timestamp) `time`.
    ///
    /// # Errors
    /// As [`from_wire`](Self::from_wire), and
    /// [`WireFrameError::SeqOutOfRange`].
    ///
    /// ```
    /// use wsc_core::{Timestamp, WireFrame};
    /// let at = Timestamp::from_unix_micros(1_700_000_000_000_000);
    /// let frame = WireFrame::from_body(r#"{"type":"agent_started","payload":{}}"#, 3, Some(at)).unwrap();
    /// assert_eq!(frame.as_str(), r#"{"type":"agent_started","payload":{},"seq":3}"#);
    /// assert_eq!((frame.seq(), frame.timestamp()), (Some(3), Some(at)));
    /// ```
    pub fn from_body(
        body: &str,
        seq: u64,
        time: Option<Timestamp>,
    ) -> Result<WireFrame, WireFrameError> {
        let t = Self::type_of(body)?;
        Self::numbered(
            &body[..body.len() - 1],
            type_index(t) << SEQ_BITS,
            seq,
            micros(time),
        )
    }

    /// `open` (a frame's text without its closing brace and seq) with the
    /// seq appended.
    fn numbered(open: &str, kind: u64, seq: u64, time: i64) -> Result<WireFrame, WireFrameError> {
        if !(1..=MAX_WIRE_SEQ).contains(&seq) {
            return Err(WireFrameError::SeqOutOfRange(seq));
        }
        let mut text = String::with_capacity(open.len() + seq_suffix_len(seq) + 1);
        text.push_str(open);
        text.push_str(",\"seq\":");
        // Writing to a String cannot fail.
        let _ = fmt::Write::write_fmt(&mut text, format_args!("{seq}}}"));
        Ok(WireFrame {
            text: Arc::from(text),
            packed: kind | seq,
            time,
        })
    }

    /// This frame with [`timestamp`](Self::timestamp) `time` (a store sets
    /// it to when it buffered the frame; the text is unchanged).
    pub fn with_time(mut self, time: Timestamp) -> WireFrame {
        self.time = time.as_unix_micros();
        self
    }

    /// The text without its seq (the unnumbered form; what a store keeps
    /// when it numbers frames itself). Borrowed for an unnumbered frame.
    pub fn body(&self) -> std::borrow::Cow<'_, str> {
        match self.seq() {
            None => std::borrow::Cow::Borrowed(&self.text),
            Some(_) => std::borrow::Cow::Owned(format!("{}}}", self.open())),
        }
    }

    /// The unnumbered text without its closing brace.
    fn open(&self) -> &str {
        let cut = match self.seq() {
            None => self.text.len() - 1,
            Some(seq) => self.text.len() - seq_suffix_len(seq) - 1,
        };
        &self.text[..cut]
    }

    /// The wire text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text's length in bytes (what the frame takes on the wire).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the text is empty (never, for a frame).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The seq, once numbered.
    pub fn seq(&self) -> Option<u64> {
        Some(self.packed & SEQ_MASK).filter(|s| *s != 0)
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        let index = (self.packed >> SEQ_BITS) as usize;
        MessageType::ALL
            .get(index)
            .copied()
            .unwrap_or(MessageType::Error)
    }

    /// When the frame was made: the message's `timestamp` for an
    /// [`encode`](Self::encode)d frame, the time given to
    /// [`from_wire`](Self::from_wire) or [`with_time`](Self::with_time)
    /// otherwise (a session's buffer sets it to when it numbered and kept
    /// the frame). Not read from the text.
    pub fn timestamp(&self) -> Option<Timestamp> {
        (self.time != NO_TIME).then(|| Timestamp::from_unix_micros(self.time))
    }

    /// Parses the text back into a message (what a reader that needs the
    /// payload does; the server never does it on the way out). An AG-UI
    /// dialect frame is no message: it does not decode.
    ///
    /// # Errors
    /// A [`FrameError`] if the text does not parse (only for text taken
    /// with [`from_wire`](Self::from_wire)).
    pub fn decode(&self) -> Result<WebSocketMessage, FrameError> {
        codec::parse_server_frame(&self.text)
    }

    /// The heap the frame points to: its text and the `Arc`'s two
    /// counters, rounded up to the allocation's alignment (shared by every
    /// clone).
    pub fn heap_bytes(&self) -> usize {
        (self.text.len() + 2 * std::mem::size_of::<usize>())
            .next_multiple_of(std::mem::align_of::<usize>())
    }
}

impl AsRef<str> for WireFrame {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl AsRef<[u8]> for WireFrame {
    fn as_ref(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

impl fmt::Debug for WireFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireFrame")
            .field("seq", &self.seq())
            .field("type", &self.message_type())
            .field("text", &&*self.text)
            .finish()
    }
}

impl fmt::Display for WireFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&WebSocketMessage> for WireFrame {
    fn from(message: &WebSocketMessage) -> Self {
        WireFrame::encode(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn arb_payload() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,12}".prop_map(Value::String),
            // Keys and text a splice could be fooled by.
            Just(json!("\"seq\":1}")),
            Just(json!("}")),
        ];
        let value = leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("seq|type|[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map("seq|type|payload|[a-z_]{1,8}", value, 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn arb_message() -> impl Strategy<Value = WebSocketMessage> {
        (
            prop::sample::select(MessageType::ALL.to_vec()),
            arb_payload(),
            prop::option::of(-(1i64 << 51)..(1i64 << 51)),
            prop::option::of(".{0,10}"),
            prop::option::of(".{0,10}"),
            prop::option::of(".{0,10}"),
        )
            .prop_map(|(t, payload, ts, mid, uid, tid)| WebSocketMessage {
                message_type: t,
                payload,
                timestamp: ts.map(Timestamp::from_unix_micros),
                message_id: mid,
                user_id: uid,
                thread_id: tid,
                seq: None,
            })
    }

    proptest! {
        /// Numbering a frame gives exactly the text serializing the
        /// numbered message gives, and renumbering one replaces its seq:
        /// the splice is a serialization's equal, whatever the payload.
        #[test]
        fn numbering_equals_serializing_with_the_seq(
            msg in arb_message(),
            seq in 1..=MAX_WIRE_SEQ,
            again in 1..=MAX_WIRE_SEQ,
        ) {
            let frame = WireFrame::encode(&msg);
            prop_assert_eq!(frame.as_str(), codec::serialize(&msg));
            prop_assert_eq!(frame.seq(), None);
            prop_assert_eq!(frame.message_type(), msg.message_type);
            prop_assert_eq!(frame.timestamp(), msg.timestamp);
            let numbered = frame.with_seq(seq).unwrap();
            prop_assert_eq!(numbered.as_str(), codec::serialize(&msg.clone().with_seq(seq)));
            prop_assert_eq!(numbered.seq(), Some(seq));
            prop_assert_eq!(numbered.body(), frame.as_str());
            prop_assert_eq!(numbered.decode().unwrap(), msg.clone().with_seq(seq));
            let renumbered = numbered.with_seq(again).unwrap();
            prop_assert_eq!(renumbered.as_str(), codec::serialize(&msg.clone().with_seq(again)));
            // Text taken as it is gives the same frame.
            let taken = WireFrame::from_wire(frame.as_str(), msg.timestamp).unwrap();
            let taken = taken.with_seq(seq).unwrap();
            prop_assert_eq!(taken.as_str(), numbered.as_str());
        }

        /// An AG-UI dialect frame is the envelope and the event verbatim,
        /// whatever the run id (quotes, escapes) and the event's keys; its
        /// body read back (what a store keeps) is the same frame, kind
        /// and all.
        #[test]
        fn an_ag_ui_frame_wraps_the_event_verbatim(
            run_id in ".{0,16}",
            event in arb_payload(),
            seq in 1..=MAX_WIRE_SEQ,
        ) {
            let text = event.to_string();
            let frame = WireFrame::ag_ui(&run_id, &text, None);
            let numbered = frame.with_seq(seq).unwrap();
            let parsed: Value = serde_json::from_str(numbered.as_str()).unwrap();
            prop_assert_eq!(&parsed, &json!({"run_id": run_id, "event": event, "seq": seq}));
            prop_assert!(numbered.as_str().contains(&text), "verbatim");
            prop_assert_eq!(
                numbered.len(),
                text.len() + serde_json::Value::from(run_id.as_str()).to_string().len() + 20
                    + seq_suffix_len(seq)
            );
            let back = WireFrame::from_body(&numbered.body(), seq, None).unwrap();
            prop_assert_eq!(back.as_str(), numbered.as_str());
            prop_assert_eq!(back.message_type(), frame.message_type());
        }

        /// Any text is taken or refused with a typed error, never a panic.
        #[test]
        fn any_text_is_taken_or_refused(text in ".{0,80}") {
            let _ = WireFrame::from_wire(text.as_str(), None).map(|f| f.with_seq(1));
        }
    }

    #[test]
    fn an_ag_ui_frame_is_kept_as_the_legacy_event_its_type_stands_for() {
        for (kind, want) in [
            ("RUN_STARTED", MessageType::AgentStarted),
            ("RUN_FINISHED", MessageType::AgentCompleted),
            ("RUN_ERROR", MessageType::AgentError),
            ("TOOL_CALL_START", MessageType::ToolExecuting),
            ("TOOL_CALL_END", MessageType::ToolCompleted),
            ("TOOL_CALL_RESULT", MessageType::ToolCompleted),
            ("TEXT_MESSAGE_CONTENT", MessageType::AgentThinking),
            ("SOMETHING_NEW", MessageType::AgentThinking),
        ] {
            let event = format!(r#"{{"type":"{kind}","x":1}}"#);
            let frame = WireFrame::ag_ui("r", &event, None);
            assert_eq!(frame.message_type(), want, "{kind}");
            assert!(frame.message_type().is_critical() || want == MessageType::AgentError);
            let taken = WireFrame::from_wire(frame.as_str(), None).unwrap();
            assert_eq!(taken.message_type(), want, "{kind}");
        }
        // Another key order: still an event, still critical.
        let frame = WireFrame::ag_ui("r", r#"{"delta":"x","type":"RUN_FINISHED"}"#, None);
        assert_eq!(frame.message_type(), MessageType::AgentThinking);
    }

    #[test]
    fn encoding_a_numbered_message_keeps_its_seq() {
        let msg = WebSocketMessage::new(MessageType::AgentCompleted, json!({"a": 1})).with_seq(42);
        let frame = WireFrame::encode(&msg);
        assert_eq!(frame.seq(), Some(42));
        assert_eq!(frame.as_str(), codec::serialize(&msg));
        let mut body = msg.clone();
        body.seq = None;
        assert_eq!(frame.body(), codec::serialize(&body));
        // Out of range: unnumbered, text and all.
        let far = WireFrame::encode(&msg.clone().with_seq(u64::MAX));
        assert_eq!(far.seq(), None);
        assert_eq!(far.as_str(), codec::serialize(&body));
        assert_eq!(frame.with_seq(0), Err(WireFrameError::SeqOutOfRange(0)));
    }

    #[test]
    fn text_that_is_not_a_frame_is_refused() {
        for text in [
            "",
            "{}",
            "[]",
            r#"{"payload":{},"type":"ping"}"#,
            r#"{"type":"ping""#,
        ] {
            assert_eq!(
                WireFrame::from_wire(text, None),
                Err(WireFrameError::NotAFrame),
                "{text}"
            );
        }
        assert_eq!(
            WireFrame::from_wire(r#"{"type":"nope","payload":{}}"#, None),
            Err(WireFrameError::UnknownType("nope".into()))
        );
    }

    #[test]
    fn a_type_index_is_its_place_in_all() {
        for (i, t) in MessageType::ALL.iter().enumerate() {
            assert_eq!(type_index(*t), i as u64, "{t}");
        }
    }

    #[test]
    fn a_frame_is_small() {
        assert_eq!(std::mem::size_of::<WireFrame>(), 32);
    }
}
