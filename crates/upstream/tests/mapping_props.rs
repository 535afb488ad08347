//! Property: an AG-UI event sequence maps to wsc frames the event monitor
//! accepts (a completed, valid run) if and only if the sequence is
//! well-formed, per a reference reading written apart from the mapper:
//! `RUN_STARTED` first and once, `RUN_FINISHED` last and once, each tool
//! call's events in order (start, argument deltas, end, result) with every
//! call given its result before the run finishes.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use wsc_core::{ManualClock, MessageType, WebSocketMessage};
use wsc_event_monitor::{AgUiRules, AgentSession, EventMonitor, EventMonitorConfig};
use wsc_upstream::{AgUiMapper, MappedFrame, UpstreamError, UpstreamMapper};

/// One generated event (kept symbolic so the reference can read it).
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    RunStarted,
    RunFinished,
    Step,
    Reasoning(String),
    TextStart,
    TextContent(String),
    TextEnd,
    State,
    ToolStart(u8),
    ToolArgs(u8),
    ToolEnd(u8),
    ToolResult(u8),
}

impl Ev {
    fn json(&self) -> Value {
        let id = |n: &u8| format!("call-{n}");
        match self {
            Ev::RunStarted => json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
            Ev::RunFinished => json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}),
            Ev::Step => json!({"type": "STEP_STARTED", "stepName": "plan"}),
            Ev::Reasoning(d) => {
                json!({"type": "REASONING_MESSAGE_CONTENT", "messageId": "why", "delta": d})
            }
            Ev::TextStart => {
                json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"})
            }
            Ev::TextContent(d) => {
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": d})
            }
            Ev::TextEnd => json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
            Ev::State => json!({"type": "STATE_DELTA", "delta": []}),
            Ev::ToolStart(n) => {
                json!({"type": "TOOL_CALL_START", "toolCallId": id(n), "toolCallName": "search"})
            }
            Ev::ToolArgs(n) => {
                json!({"type": "TOOL_CALL_ARGS", "toolCallId": id(n), "delta": "{}"})
            }
            Ev::ToolEnd(n) => json!({"type": "TOOL_CALL_END", "toolCallId": id(n)}),
            Ev::ToolResult(n) => {
                json!({"type": "TOOL_CALL_RESULT", "messageId": "x", "toolCallId": id(n), "content": "ok"})
            }
        }
    }
}

/// A well-formed run: start, a body with interleaved tool calls, text,
/// reasoning and state, finish.
fn well_formed_run() -> impl Strategy<Value = Vec<Ev>> {
    let calls = proptest::collection::vec(0usize..3, 0..4); // args per call
    let text = proptest::collection::vec("[a-z ]{0,6}", 0..4);
    let extras = proptest::collection::vec(0u8..3, 0..4);
    (calls, text, extras, any::<bool>(), any::<u64>()).prop_map(
        |(calls, text, extras, step, seed)| {
            // Each call's events in order; merged in a seeded random order.
            let mut lanes: Vec<Vec<Ev>> = calls
                .iter()
                .enumerate()
                .map(|(i, &args)| {
                    let n = i as u8;
                    let mut lane = vec![Ev::ToolStart(n)];
                    lane.extend(std::iter::repeat_n(Ev::ToolArgs(n), args));
                    lane.extend([Ev::ToolEnd(n), Ev::ToolResult(n)]);
                    lane
                })
                .collect();
            if !text.is_empty() {
                let mut lane = vec![Ev::TextStart];
                lane.extend(text.into_iter().map(Ev::TextContent));
                lane.push(Ev::TextEnd);
                lanes.push(lane);
            }
            for e in extras {
                lanes.push(vec![match e {
                    0 => Ev::State,
                    1 => Ev::Reasoning("hm".into()),
                    _ => Ev::Step,
                }]);
            }
            let mut body = Vec::new();
            let mut state = seed;
            while lanes.iter().any(|l| !l.is_empty()) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let open: Vec<usize> = (0..lanes.len()).filter(|&i| !lanes[i].is_empty()).collect();
                let pick = open[(state >> 33) as usize % open.len()];
                body.push(lanes[pick].remove(0));
            }
            let mut run = vec![Ev::RunStarted];
            if step {
                run.push(Ev::Step);
            }
            run.extend(body);
            run.push(Ev::RunFinished);
            run
        },
    )
}

/// The reference reading of well-formedness (see the file's doc).
fn well_formed(events: &[Ev]) -> bool {
    let starts = events.iter().filter(|e| **e == Ev::RunStarted).count();
    let finishes = events.iter().filter(|e| **e == Ev::RunFinished).count();
    if starts != 1 || finishes != 1 {
        return false;
    }
    if events.first() != Some(&Ev::RunStarted) || events.last() != Some(&Ev::RunFinished) {
        return false;
    }
    // 0: started, 1: ended, 2: resulted.
    let mut calls: HashMap<u8, u8> = HashMap::new();
    for e in events {
        let ok = match e {
            Ev::ToolStart(n) => calls.insert(*n, 0).is_none_or(|s| s == 2),
            Ev::ToolArgs(n) => calls.get(n) == Some(&0),
            Ev::ToolEnd(n) => calls.get(n) == Some(&0) && calls.insert(*n, 1).is_some(),
            Ev::ToolResult(n) => calls.get(n) == Some(&1) && calls.insert(*n, 2).is_some(),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    calls.values().all(|&s| s == 2)
}

/// Whether the mapper maps the sequence without an error and the event
/// monitor validates the frames as a completed run.
fn accepted(events: &[Ev]) -> bool {
    let monitor = EventMonitor::with_clock(
        EventMonitorConfig {
            // A real run need not think or call tools.
            required_events: vec![MessageType::AgentStarted, MessageType::AgentCompleted],
            ..EventMonitorConfig::default()
        },
        ManualClock::default().shared(),
    );
    monitor.start_session_tracking("r", AgentSession::new("u"));
    let mut mapper = AgUiMapper::new();
    let mut frames = Vec::new();
    for e in events {
        match mapper.push(&e.json()) {
            Ok(f) => frames.extend(f),
            Err(_) => return false,
        }
    }
    frames.extend(mapper.finish());
    for f in frames {
        let msg = WebSocketMessage::new(f.message_type, Value::Object(f.payload));
        monitor.record_event("r", msg).expect("tracked");
    }
    monitor.validate_session_completion("r") == Ok(true)
}

#[derive(Clone, Debug)]
enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Move(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Move(a, b)),
    ]
}

fn apply(mut events: Vec<Ev>, m: &Mutation) -> Vec<Ev> {
    let n = events.len();
    match *m {
        Mutation::Drop(i) => {
            events.remove(i % n);
        }
        Mutation::Duplicate(i) => {
            let e = events[i % n].clone();
            events.insert(i % n + 1, e);
        }
        Mutation::Move(from, to) => {
            let e = events.remove(from % n);
            events.insert(to % (n - 1).max(1), e);
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn well_formed_runs_are_accepted(run in well_formed_run()) {
        prop_assert!(well_formed(&run), "the generator makes well-formed runs: {:?}", run);
        prop_assert!(accepted(&run), "{:?}", run);
    }

    #[test]
    fn a_mutated_run_is_accepted_iff_well_formed(run in well_formed_run(), m in mutation()) {
        let mutated = apply(run, &m);
        prop_assert_eq!(accepted(&mutated), well_formed(&mutated), "{:?} after {:?}", mutated, m);
    }
}

/// A text delta as an agent may send it: well-formed (escapes, other key
/// orders, extra fields) or not (a field missing, null or not a string, a
/// duplicated key, not JSON).
fn text_delta() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z \"\\\\\n\u{e9}]{0,6}".prop_map(|d| json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": d}).to_string()),
        "[a-z]{0,4}".prop_map(|d| format!(r#"{{"delta":"{d}","extra":[1,{{"x":null}}],"messageId":"m","type":"TEXT_MESSAGE_CONTENT"}}"#)),
        Just(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m"}"#.to_owned()),
        Just(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":7}"#.to_owned()),
        Just(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":null,"delta":"x"}"#.to_owned()),
        Just(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"other","delta":"x"}"#.to_owned()),
        Just(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"a","delta":"b"}"#.to_owned()),
        Just(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"x"} trailing"#.to_owned()),
    ]
}

/// What `push_event` gives for each event in turn (an error ends the run).
fn through_push_event(
    mut mapper: AgUiMapper,
    texts: &[String],
) -> Vec<Result<Vec<MappedFrame>, UpstreamError>> {
    let mut out = Vec::new();
    for text in texts {
        let got = mapper.push_event(text);
        let failed = got.is_err();
        out.push(got);
        if failed {
            break;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `push_event` reads text deltas without a `Value`: for any run with
    /// any text deltas (malformed ones too) at any place, it gives what
    /// parsing each event, checking AG-UI's rules and `push` give; a
    /// counting mapper the same frame types with empty chunk payloads.
    #[test]
    fn text_deltas_read_as_text_map_as_values_do(
        run in well_formed_run(),
        deltas in proptest::collection::vec((any::<usize>(), text_delta()), 0..6),
    ) {
        let mut texts: Vec<String> = run.iter().map(|e| e.json().to_string()).collect();
        for (at, delta) in deltas {
            let at = at % texts.len();
            texts.insert(at, delta);
        }
        // The reference: a `Value` for every event.
        let mut rules = AgUiRules::new();
        let mut mapper = AgUiMapper::new();
        let mut expected = Vec::new();
        for text in &texts {
            let got = serde_json::from_str::<Value>(text)
                .map_err(|e| UpstreamError::NotJson(e.to_string()))
                .and_then(|event| {
                    rules.check(text).map_err(UpstreamError::Protocol)?;
                    Ok(mapper.push(&event)?)
                });
            let failed = got.is_err();
            expected.push(got);
            if failed {
                break;
            }
        }
        prop_assert_eq!(&through_push_event(AgUiMapper::new(), &texts), &expected);
        let counted = through_push_event(AgUiMapper::counting(), &texts);
        prop_assert_eq!(counted.len(), expected.len());
        for (c, e) in counted.iter().zip(&expected) {
            match (c, e) {
                (Ok(c), Ok(e)) => {
                    let types = |f: &[MappedFrame]| f.iter().map(|f| f.message_type).collect::<Vec<_>>();
                    prop_assert_eq!(types(c), types(e));
                    for f in c.iter().filter(|f| f.message_type == MessageType::AgentResponseChunk) {
                        prop_assert!(f.payload.is_empty());
                    }
                }
                (c, e) => prop_assert_eq!(c, e),
            }
        }
    }
}
