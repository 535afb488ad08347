//! The checks behind the fuzz targets in `fuzz/`: each takes arbitrary
//! bytes, runs one parser or state machine on them and panics if an
//! invariant breaks. `cargo xtask fuzz` drives them with libFuzzer; the
//! `fuzz_corpus` test replays the committed seeds (`fuzz/seeds/<target>/`)
//! through the same functions in `cargo xtask ci`.
//!
//! ```
//! // Any bytes: a check returns normally unless it found a bug.
//! wsc_tests::fuzz::client_frame(br#"{"type":"ping","payload":{}}"#);
//! wsc_tests::fuzz::resume_query(b"session_id=s&resume_token=t&last_seq=3");
//! wsc_tests::fuzz::event_order(&[0, 2, 3, 1, 4]);
//! ```

use serde_json::{Value, json};
use wsc_core::{
    FrameError, ManualClock, MessageType, Timestamp, WebSocketMessage, parse_client_frame,
    parse_client_frame_with_limit, parse_server_frame, serialize,
};
use wsc_event_monitor::{
    AgentSession, EventMonitor, EventMonitorConfig, EventValidationError, ViolationKind,
};
use wsc_reconnection::{
    MAX_RESUME_TOKEN_BYTES, MAX_SESSION_ID_BYTES, ResumeQueryError, ResumeRequest,
};

/// A fuzz check: panics if its input breaks an invariant.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: what `cargo xtask fuzz` runs and the seed
/// folders the corpus test replays.
pub const TARGETS: [(&str, Check); 6] = [
    ("client_frame", client_frame),
    ("resume_query", resume_query),
    ("event_order", event_order),
    ("stream_reader", stream_reader),
    ("forwarded_for", forwarded_for),
    ("ag_ui_rules", ag_ui_rules),
];

/// `parse_client_frame` on arbitrary text: never panics; the size limit is
/// exact; a frame that is not JSON is `invalid_json`, JSON that is not an
/// object with a string `type` is refused; an accepted frame is a type a
/// client may send and survives `serialize` and parsing again unchanged.
pub fn client_frame(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let result = parse_client_frame(text);

    // The size limit (taken from the first byte) decides alone when it is
    // exceeded, and changes nothing otherwise.
    let limit = usize::from(data.first().copied().unwrap_or(0)) * 4;
    match parse_client_frame_with_limit(text, limit) {
        Err(FrameError::MessageTooLarge { size, limit: l }) => {
            assert!(text.len() > limit && size == text.len() && l == limit);
        }
        other => {
            assert!(
                text.len() <= limit,
                "{} bytes passed a {limit}-byte limit",
                text.len()
            );
            assert_eq!(other, result, "the limit changed the outcome");
        }
    }

    match serde_json::from_str::<Value>(text) {
        Err(_) => assert_eq!(
            result.as_ref().map_err(FrameError::code),
            Err("invalid_json")
        ),
        Ok(value) => {
            let has_string_type = value
                .as_object()
                .and_then(|m| m.get("type"))
                .is_some_and(Value::is_string);
            if !has_string_type {
                assert_eq!(
                    result.as_ref().map_err(FrameError::code),
                    Err("invalid_message")
                );
            }
        }
    }

    // The typed request (what the gateway acts on) is read from the same
    // frame: refused only for what it asks (a refusal keeps the message's
    // id), and what it asks is within its bounds.
    let typed = wsc_core::ClientFrame::parse(text, wsc_core::DEFAULT_MAX_FRAME_BYTES);
    match (&result, &typed) {
        (Err(e), Err(t)) => assert_eq!(&t.error, e, "the typed parse refused differently"),
        (Err(e), Ok(_)) => panic!("the typed parse took a frame the codec refused: {e}"),
        (Ok(message), Err(t)) => {
            assert_eq!(t.error.code(), "invalid_message", "{t}");
            assert_eq!(t.message_id, message.message_id);
        }
        (Ok(message), Ok(frame)) => {
            assert_eq!(&frame.message, message);
            if let wsc_core::ClientRequest::StartAgent(start) = &frame.request {
                assert!(
                    start
                        .tools
                        .as_ref()
                        .is_none_or(|t| t.len() <= wsc_core::MAX_TOOLS)
                );
                assert!(
                    start
                        .step_delay_ms
                        .is_none_or(|d| d <= wsc_core::MAX_STEP_DELAY_MS)
                );
            }
        }
    }

    // The AG-UI dialect reads the same text: its own two requests within
    // their bounds, every other frame exactly as the wsc protocol does.
    let dialect = wsc_core::AgUiClientFrame::parse(text, wsc_core::DEFAULT_MAX_FRAME_BYTES);
    let own = serde_json::from_str::<Value>(text).ok().is_some_and(|v| {
        matches!(
            v.get("type").and_then(Value::as_str),
            Some("run_agent" | "join_run")
        )
    });
    match (&dialect, own) {
        (Ok(wsc_core::AgUiClientFrame::RunAgent(run)), true) => {
            assert!((1..=256).contains(&run.run_id.len()));
            assert!((1..=256).contains(&run.thread_id.len()));
            assert_eq!(run.input["runId"], run.run_id.as_str());
        }
        (Ok(wsc_core::AgUiClientFrame::JoinRun(join)), true) => {
            assert!((1..=256).contains(&join.run_id.len()));
        }
        (Ok(wsc_core::AgUiClientFrame::Wsc(frame)), false) => {
            assert_eq!(Ok(frame), typed.as_ref());
        }
        (Err(e), false) => assert_eq!(Err(e), typed.as_ref().map(|_| ())),
        (Err(e), true) => assert_ne!(e.error.code(), "unknown_type"),
        (other, own) => panic!("the AG-UI dialect read {text:?} as {other:?} (own: {own})"),
    }

    if let Ok(message) = result {
        assert!(message.message_type.client_may_send());
        let again = serialize(&message);
        assert_eq!(
            parse_server_frame(&again).as_ref(),
            Ok(&message),
            "serialize/parse changed the frame: {again}"
        );
        assert_eq!(parse_client_frame(&again).as_ref(), Ok(&message));
        // Serialized once and numbered by splicing: the same text a
        // serialization of the numbered message gives.
        let mut unnumbered = message.clone();
        unnumbered.seq = None;
        let frame = wsc_core::WireFrame::encode(&unnumbered);
        let numbered = frame.with_seq(7).expect("7 is a seq");
        assert_eq!(numbered.as_str(), serialize(&unnumbered.with_seq(7)));
    }
    // Any text taken as a wire frame is taken or refused, never a panic;
    // numbering what was taken keeps it one JSON object.
    if let Ok(frame) = wsc_core::WireFrame::from_wire(text, None)
        && serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object())
    {
        let numbered = frame.with_seq(1).expect("1 is a seq");
        let value: Value = serde_json::from_str(numbered.as_str()).expect("still JSON");
        assert_eq!(value["seq"], 1);
    }
}

/// `ResumeRequest::from_query` on arbitrary text: never panics; agrees with
/// a reference reading of the same form-urlencoded pairs; an accepted
/// request respects the length limits and survives `to_query` unchanged.
pub fn resume_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let result = ResumeRequest::from_query(&query);
    assert_eq!(result, reference_resume(&query), "query {query:?}");
    if let Ok(Some(request)) = &result {
        assert!((1..=MAX_SESSION_ID_BYTES).contains(&request.session_id.len()));
        assert!((1..=MAX_RESUME_TOKEN_BYTES).contains(&request.resume_token.len()));
        assert_eq!(
            ResumeRequest::from_query(&request.to_query()).as_ref(),
            Ok(&Some(request.clone()))
        );
        // Extra parameters before and after change nothing.
        let padded = format!("user_id=x&{}&token=y", request.to_query());
        assert_eq!(ResumeRequest::from_query(&padded), result);
    }
}

/// The resume rules restated plainly over a list of all pairs: repeats
/// first, then presence, then each value.
fn reference_resume(query: &str) -> Result<Option<ResumeRequest>, ResumeQueryError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let all = |name: &str| -> Vec<&String> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    };
    let (sessions, tokens, seqs) = (all("session_id"), all("resume_token"), all("last_seq"));
    // The first repeated name in query order wins.
    let mut counts = [0usize; 3];
    for (k, _) in &pairs {
        let (i, name) = match k.as_str() {
            "session_id" => (0, "session_id"),
            "resume_token" => (1, "resume_token"),
            "last_seq" => (2, "last_seq"),
            _ => continue,
        };
        counts[i] += 1;
        if counts[i] == 2 {
            return Err(ResumeQueryError::Repeated(name));
        }
    }
    let Some(session_id) = sessions.first() else {
        if !tokens.is_empty() {
            return Err(ResumeQueryError::WithoutSession("resume_token"));
        }
        if !seqs.is_empty() {
            return Err(ResumeQueryError::WithoutSession("last_seq"));
        }
        return Ok(None);
    };
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_BYTES {
        return Err(ResumeQueryError::BadLength {
            field: "session_id",
            len: session_id.len(),
            max: MAX_SESSION_ID_BYTES,
        });
    }
    let Some(token) = tokens.first() else {
        return Err(ResumeQueryError::MissingToken);
    };
    if token.is_empty() || token.len() > MAX_RESUME_TOKEN_BYTES {
        return Err(ResumeQueryError::BadLength {
            field: "resume_token",
            len: token.len(),
            max: MAX_RESUME_TOKEN_BYTES,
        });
    }
    let last_seq = match seqs.first() {
        None => 0,
        Some(v) => {
            // Digits only, and the value must fit: compared as numbers.
            let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            let trimmed = v.trim_start_matches('0');
            let fits =
                trimmed.len() < 20 || (trimmed.len() == 20 && trimmed <= "18446744073709551615");
            if !(digits && fits) {
                return Err(ResumeQueryError::InvalidLastSeq {
                    value: v.chars().take(64).collect(),
                });
            }
            trimmed.parse().unwrap_or(0)
        }
    };
    Ok(Some(ResumeRequest {
        session_id: session_id.to_string(),
        resume_token: token.to_string(),
        last_seq,
    }))
}

/// One event of a fuzzed run, decoded from a byte: the low three bits pick
/// the kind, the next two a tool call id (`call-0` to `call-3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Started,
    Thinking,
    Exec(u8),
    Done(u8),
    /// A tool completion with neither id nor name: closes the oldest tool.
    DoneAnonymous,
    Completed,
    Error,
    /// A frame that is no lifecycle event (`pong`).
    Other,
}

impl Ev {
    fn decode(b: u8) -> Ev {
        let call = (b >> 3) & 3;
        match b & 7 {
            0 => Ev::Started,
            1 => Ev::Thinking,
            2 => Ev::Exec(call),
            3 => Ev::Done(call),
            4 => Ev::Completed,
            5 => Ev::Error,
            6 => Ev::DoneAnonymous,
            _ => Ev::Other,
        }
    }

    fn message(self, legacy: bool) -> WebSocketMessage {
        use MessageType as M;
        let call = |c: u8| json!({"tool_call_id": format!("call-{c}"), "tool_name": "search"});
        // The current name, or its legacy synonym.
        let name = |current, old| if legacy { old } else { current };
        let (t, payload) = match self {
            Ev::Started => (name(M::AgentStarted, M::AgentStart), json!({})),
            Ev::Thinking => (M::AgentThinking, json!({})),
            Ev::Exec(c) => (name(M::ToolExecuting, M::ToolExecute), call(c)),
            Ev::Done(c) => (name(M::ToolCompleted, M::ToolComplete), call(c)),
            Ev::DoneAnonymous => (M::ToolCompleted, json!({})),
            Ev::Completed => (name(M::AgentCompleted, M::AgentComplete), json!({})),
            Ev::Error => (M::Error, json!({"message": "boom"})),
            Ev::Other => (M::Pong, json!({})),
        };
        WebSocketMessage::new(t, payload)
    }
}

/// What a run should end as, per the reference.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Failed,
    Missing(Vec<MessageType>),
    Violations(Vec<ViolationKind>),
    Done(bool),
}

/// The order rules restated over a whole sequence.
fn reference_order(events: &[Ev]) -> Outcome {
    #[derive(PartialEq)]
    enum Phase {
        Before,
        Running,
        Completed,
        Failed,
    }
    let mut phase = Phase::Before;
    let mut open: Vec<Option<u8>> = Vec::new();
    let mut seen: Vec<MessageType> = Vec::new();
    let mut violations = Vec::new();
    for &ev in events {
        let critical = match ev {
            Ev::Started => Some(MessageType::AgentStarted),
            Ev::Thinking => Some(MessageType::AgentThinking),
            Ev::Exec(_) => Some(MessageType::ToolExecuting),
            Ev::Done(_) | Ev::DoneAnonymous => Some(MessageType::ToolCompleted),
            Ev::Completed => Some(MessageType::AgentCompleted),
            Ev::Error | Ev::Other => None,
        };
        seen.extend(critical);
        if matches!(phase, Phase::Completed | Phase::Failed) {
            violations.push(ViolationKind::EventAfterEnd);
            continue;
        }
        let before = phase == Phase::Before;
        let violation = match ev {
            Ev::Started if before => {
                phase = Phase::Running;
                None
            }
            Ev::Started => Some(ViolationKind::DuplicateStart),
            Ev::Error => {
                phase = Phase::Failed;
                None
            }
            Ev::Exec(c) => {
                open.push(Some(c));
                before.then_some(ViolationKind::EventBeforeStart)
            }
            Ev::Done(_) | Ev::DoneAnonymous => {
                // By call id; an anonymous completion closes the oldest.
                let found = match ev {
                    Ev::Done(c) => open.iter().position(|t| *t == Some(c)),
                    _ => (!open.is_empty()).then_some(0),
                };
                if let Some(i) = found {
                    open.remove(i);
                }
                if before {
                    Some(ViolationKind::EventBeforeStart)
                } else {
                    found
                        .is_none()
                        .then_some(ViolationKind::UnmatchedToolCompletion)
                }
            }
            Ev::Completed => {
                phase = Phase::Completed;
                if before {
                    Some(ViolationKind::EventBeforeStart)
                } else {
                    (!open.is_empty()).then_some(ViolationKind::CompletedWithOpenTools)
                }
            }
            Ev::Thinking | Ev::Other => before.then_some(ViolationKind::EventBeforeStart),
        };
        violations.extend(violation);
    }
    if phase == Phase::Failed {
        return Outcome::Failed;
    }
    let missing: Vec<MessageType> = MessageType::CRITICAL_AGENT_EVENTS
        .into_iter()
        .filter(|t| !seen.contains(t))
        .collect();
    if !missing.is_empty() {
        return Outcome::Missing(missing);
    }
    if !violations.is_empty() {
        return Outcome::Violations(violations);
    }
    Outcome::Done(phase == Phase::Completed)
}

/// The event monitor's order state machine on an arbitrary sequence of
/// lifecycle events (one per byte; the first byte's top bit picks legacy
/// type names): never panics, and its verdict (failed, missing events,
/// the exact violations in order, completed or not) matches
/// a plain reference model's (`reference_order`).
pub fn event_order(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let legacy = head & 0x80 != 0;
    // Longer runs add nothing the state machine has not seen; keep each
    // input fast.
    let events: Vec<Ev> = rest.iter().take(512).map(|&b| Ev::decode(b)).collect();
    let clock = ManualClock::new(Timestamp::from_unix_micros(1_700_000_000_000_000));
    let monitor = EventMonitor::with_clock(
        EventMonitorConfig {
            max_events_per_run: 1_024,
            ..EventMonitorConfig::default()
        },
        clock.shared(),
    );
    monitor.start_session_tracking("run", AgentSession::new("user"));
    for ev in &events {
        clock.advance(std::time::Duration::from_millis(u64::from(head & 0x7f)));
        monitor
            .record_event("run", ev.message(legacy))
            .expect("the run is tracked");
    }
    let got = match monitor.validate_session_completion("run") {
        Ok(done) => Outcome::Done(done),
        Err(EventValidationError::RunFailed { .. }) => Outcome::Failed,
        Err(EventValidationError::MissingCriticalEvents(e)) => Outcome::Missing(e.missing),
        Err(EventValidationError::OrderViolation {
            violations, count, ..
        }) => {
            assert_eq!(count as usize, violations.len(), "every violation kept");
            Outcome::Violations(violations.into_iter().map(|v| v.kind).collect())
        }
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(got, reference_order(&events), "events {events:?}");
    let tracker = monitor.tracker("run").expect("tracked");
    assert_eq!(tracker.total_events, events.len() as u64);
    // `is_complete` is validated completion, nothing less.
    assert_eq!(
        tracker.is_complete,
        got == Outcome::Done(true),
        "events {events:?}"
    );
}

/// `stream_reader`: the upstream stream reader on arbitrary bytes, in both
/// formats. It never panics; the events it reads, and the error that ends
/// the stream (the events before it kept), do not depend on how the bytes
/// are cut into chunks (the first byte of the input picks the cut points);
/// every event is within the limit.
pub fn stream_reader(data: &[u8]) {
    use wsc_upstream::{StreamFormat, StreamReader};
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let rest = &rest[..rest.len().min(4_096)];
    const LIMIT: usize = 64;
    for format in [StreamFormat::Sse, StreamFormat::Ndjson] {
        // The events before the end, and the error that ended the stream
        // (if any): the same however the bytes are chunked.
        let whole = StreamReader::with_limit(format, LIMIT).read_all([rest]);
        let step = usize::from(cuts % 7) + 1;
        let chunked = StreamReader::with_limit(format, LIMIT).read_all(rest.chunks(step));
        assert_eq!(
            whole, chunked,
            "{format:?}: chunks of {step} read differently"
        );
        {
            let events = &whole.0;
            for e in events {
                assert!(
                    e.len() <= LIMIT,
                    "{format:?}: an event over the limit: {e:?}"
                );
                if format == StreamFormat::Ndjson {
                    assert!(!e.contains(['\n', '\r']) && !e.trim().is_empty());
                }
            }
        }
    }
}

/// `wsc_server::client_address` on arbitrary forwarding headers: the first
/// byte picks whether the peer is a trusted proxy and which header (bit 1:
/// `Forwarded` instead of `X-Forwarded-For`); the rest, split at newlines,
/// are the header's lines (those that are not valid header values are
/// left out, as HTTP would refuse them). Never panics; an untrusted peer
/// is always the answer for an untrusted peer; otherwise the answer is
/// the peer or an address written in the headers, and never a trusted
/// proxy when the header names a client to its right.
pub fn forwarded_for(data: &[u8]) {
    use std::net::IpAddr;
    use wsc_server::{IpNet, client_address};
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let trusted: Vec<IpNet> = vec![
        "10.0.0.0/8".parse().expect("a network"),
        "fd00::/8".parse().expect("a network"),
    ];
    let peer: IpAddr = if first & 1 == 1 {
        "10.1.1.1".parse().expect("an address")
    } else {
        "198.51.100.1".parse().expect("an address")
    };
    let name = if first & 2 == 2 {
        "forwarded"
    } else {
        "x-forwarded-for"
    };
    let mut headers = axum::http::HeaderMap::new();
    let text = String::from_utf8_lossy(rest);
    for line in text.split('\n') {
        if let Ok(value) = axum::http::HeaderValue::from_str(line) {
            headers.append(name, value);
        }
    }
    let got = client_address(peer, &headers, &trusted);
    if first & 1 == 0 {
        assert_eq!(got, peer, "an untrusted peer's headers were believed");
        return;
    }
    if got != peer {
        // Written somewhere in the headers (in some spelling).
        let written = text.contains(&got.to_string())
            || text.to_ascii_lowercase().contains(&got.to_string())
            || matches!(got, IpAddr::V6(_));
        assert!(written, "{got} is not in the headers: {text:?}");
    }
}

/// `ag_ui_rules`: AG-UI's rules (`wsc_event_monitor::AgUiRules`) on
/// arbitrary events, one per line of the input. Never panics; an event
/// that breaks a rule changes nothing (the same event is refused the same
/// way again, and the count of accepted events stays); nothing is accepted
/// after the run ended, and nothing but a JSON object; unknown types are
/// among the accepted ones.
pub fn ag_ui_rules(data: &[u8]) {
    use wsc_event_monitor::AgUiRules;
    let text = String::from_utf8_lossy(&data[..data.len().min(8_192)]);
    let mut rules = AgUiRules::new();
    for line in text.lines() {
        let (before, ended) = (rules.events(), rules.is_ended());
        match rules.check(line) {
            Ok(checked) => {
                assert!(!ended, "accepted after the end: {line:?}");
                assert!(
                    line.trim_start().starts_with('{'),
                    "only a JSON object is an event: {line:?}"
                );
                assert_eq!(rules.events(), before + 1);
                assert_eq!(rules.is_ended(), checked.terminal);
            }
            Err(violation) => {
                assert_eq!(rules.events(), before, "{line:?}: {violation}");
                assert_eq!(rules.is_ended(), ended);
                assert_eq!(rules.check(line), Err(violation), "{line:?}");
                if ended {
                    assert_eq!(rules.check(line).unwrap_err().rule(), "after_end");
                }
            }
        }
        assert!(rules.unknown_events() <= rules.events());
    }
}
