//! Generated AG-UI runs for the tests of AG-UI's rules: well-formed runs
//! built from generator steps, one-event faults, an independent reference
//! of the rules, and `AgUiRules`' own verdict. Used by the property test
//! (`tests/ag_ui_rules.rs`) and by the conformance test against the
//! official verifier (`tests/ag_ui_conformance.rs`).

use serde_json::{Value, json};
use wsc_event_monitor::AgUiRules;

/// What a generator step does.
#[derive(Clone, Debug)]
pub enum Step {
    /// Open a new span of this kind (0 text, 1 tool call, 2 step,
    /// 3 reasoning span, 4 reasoning message, 5 subagent).
    Open(u8),
    /// Open a span of this kind (0 to 4) in the n-th open subagent
    /// (modulo; the run's own agent if none is open): its events carry the
    /// subagent's `subagentRunId`.
    OpenIn(u8, usize),
    /// An event inside the n-th open span (modulo), if any.
    Inside(usize),
    /// Close the n-th open span (modulo), if any.
    Close(usize),
    /// An event that opens nothing: custom, state, an unknown type, a
    /// chunk, a tool result.
    Neutral(u8),
}

/// A well-formed run from the steps: RUN_STARTED, the steps, every span
/// still open closed (last opened first), RUN_FINISHED.
pub fn build(steps: &[Step]) -> Vec<Value> {
    let mut events = vec![json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"})];
    // Open spans: kind, id, the subagent whose they are.
    let mut open: Vec<(u8, String, Option<String>)> = Vec::new();
    let mut next = 0;
    let laned = |mut event: Value, lane: &Option<String>| {
        if let Some(lane) = lane {
            event["subagentRunId"] = json!(lane);
        }
        event
    };
    let close = |kind: u8, id: &str, lane: &Option<String>| {
        laned(
            match kind {
                0 => json!({"type": "TEXT_MESSAGE_END", "messageId": id}),
                1 => json!({"type": "TOOL_CALL_END", "toolCallId": id}),
                2 => json!({"type": "STEP_FINISHED", "stepName": id}),
                3 => json!({"type": "REASONING_END", "messageId": id}),
                4 => json!({"type": "REASONING_MESSAGE_END", "messageId": id}),
                _ => json!({"type": "SUBAGENT_FINISHED", "subagentRunId": id}),
            },
            lane,
        )
    };
    for s in steps {
        let (kind, lane) = match s {
            Step::Open(kind) => (Some(*kind), None),
            Step::OpenIn(kind, n) => {
                let subagents: Vec<&String> = open
                    .iter()
                    .filter(|(k, _, _)| *k == 5)
                    .map(|(_, id, _)| id)
                    .collect();
                let lane = (!subagents.is_empty()).then(|| subagents[n % subagents.len()].clone());
                (Some(kind % 5), lane)
            }
            _ => (None, None),
        };
        if let Some(kind) = kind {
            next += 1;
            let id = format!("id{next}");
            let start = match kind {
                0 => json!({"type": "TEXT_MESSAGE_START", "messageId": id, "role": "assistant"}),
                1 => json!({"type": "TOOL_CALL_START", "toolCallId": id, "toolCallName": "f"}),
                2 => json!({"type": "STEP_STARTED", "stepName": id}),
                3 => json!({"type": "REASONING_START", "messageId": id}),
                4 => {
                    json!({"type": "REASONING_MESSAGE_START", "messageId": id, "role": "reasoning"})
                }
                _ => json!({"type": "SUBAGENT_STARTED", "subagentRunId": id, "name": "helper"}),
            };
            events.push(laned(start, &lane));
            open.push((kind, id, lane));
            continue;
        }
        match s {
            Step::Inside(n) if !open.is_empty() => {
                let (kind, id, lane) = &open[n % open.len()];
                let event = match kind {
                    0 => json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": id, "delta": "x"}),
                    1 => json!({"type": "TOOL_CALL_ARGS", "toolCallId": id, "delta": "{"}),
                    4 => json!({"type": "REASONING_MESSAGE_CONTENT", "messageId": id, "delta": "y"}),
                    5 => json!({"type": "CUSTOM", "name": "n", "value": 1, "subagentRunId": id}),
                    _ => json!({"type": "ACTIVITY_SNAPSHOT", "messageId": id, "activityType": "a", "content": {}}),
                };
                events.push(if *kind == 5 { event } else { laned(event, lane) });
            }
            Step::Close(n) if !open.is_empty() => {
                let (kind, id, lane) = open.remove(n % open.len());
                events.push(close(kind, &id, &lane));
            }
            Step::Neutral(k) => events.push(match k {
                0 => json!({"type": "CUSTOM", "name": "c", "value": [1]}),
                1 => json!({"type": "STATE_DELTA", "delta": []}),
                2 => json!({"type": "SOMETHING_NEWER", "x": 1}),
                3 => json!({"type": "TEXT_MESSAGE_CHUNK", "messageId": "chunked", "delta": "z"}),
                _ => json!({"type": "TOOL_CALL_RESULT", "messageId": "res", "toolCallId": "any", "content": "ok"}),
            }),
            _ => {}
        }
    }
    while let Some((kind, id, lane)) = open.pop() {
        events.push(close(kind, &id, &lane));
    }
    events.push(json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}));
    events
}

/// One fault in a sequence of events.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The event at this index (modulo the length) is lost.
    Drop(usize),
    /// It arrives twice.
    Duplicate(usize),
    /// It and the next arrive swapped.
    Swap(usize),
}

/// `events` with `fault` applied (indices taken modulo the length).
pub fn apply(mut events: Vec<Value>, fault: &Fault) -> Vec<Value> {
    let n = events.len();
    match *fault {
        Fault::Drop(i) => {
            events.remove(i % n);
        }
        Fault::Duplicate(i) => {
            let e = events[i % n].clone();
            events.insert(i % n, e);
        }
        Fault::Swap(i) if n > 1 => {
            let i = i % (n - 1);
            events.swap(i, i + 1);
        }
        Fault::Swap(_) => {}
    }
    events
}

/// Steps and a fault from a seed (a small deterministic generator, for
/// tests that cannot use proptest's).
pub fn generated(seed: u64) -> (Vec<Step>, Fault) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let steps = (0..next() % 60)
        .map(|_| match next() % 5 {
            0 => Step::Open((next() % 6) as u8),
            1 => Step::Inside(next()),
            2 => Step::Close(next()),
            3 => Step::OpenIn((next() % 5) as u8, next()),
            _ => Step::Neutral((next() % 5) as u8),
        })
        .collect();
    let fault = match next() % 3 {
        0 => Fault::Drop(next()),
        1 => Fault::Duplicate(next()),
        _ => Fault::Swap(next()),
    };
    (steps, fault)
}

/// A span an event opens or needs: its kind and id (if the event has one).
type Named = Option<(u8, Option<String>)>;

/// The reference: where a sequence first breaks the rules and which rule,
/// judging each event against the state the accepted events before it
/// built, rule by rule as the rules are written (not the same code).
pub fn reference(events: &[Value]) -> Option<(usize, &'static str)> {
    // Open things as (kind, id, the subagent that opened it); kinds as in
    // `Step::Open`; a step's id is its name within its agent.
    let mut open: Vec<(u8, String, Option<String>)> = Vec::new();
    let mut subagents_used: Vec<String> = Vec::new();
    let mut started = false;
    let mut ended = false;
    for (i, e) in events.iter().enumerate() {
        let t = e["type"].as_str().unwrap();
        let field = |name: &str| e.get(name).and_then(Value::as_str).map(str::to_owned);
        let lane = field("subagentRunId");
        if ended {
            return Some((i, "after_end"));
        }
        if !started && t != "RUN_STARTED" && t != "RUN_ERROR" {
            return Some((i, "first_event"));
        }
        let (opens, needs, closes): (Named, Named, bool) = match t {
            "RUN_STARTED" => {
                if started {
                    return Some((i, "run_started_twice"));
                }
                started = true;
                continue;
            }
            "RUN_ERROR" => {
                ended = true;
                continue;
            }
            "RUN_FINISHED" => {
                if !open.is_empty() {
                    return Some((i, "finished_with_open"));
                }
                ended = true;
                continue;
            }
            "TEXT_MESSAGE_START" => (Some((0, field("messageId"))), None, false),
            "TEXT_MESSAGE_CONTENT" => (None, Some((0, field("messageId"))), false),
            "TEXT_MESSAGE_END" => (None, Some((0, field("messageId"))), true),
            "TOOL_CALL_START" => (Some((1, field("toolCallId"))), None, false),
            "TOOL_CALL_ARGS" => (None, Some((1, field("toolCallId"))), false),
            "TOOL_CALL_END" => (None, Some((1, field("toolCallId"))), true),
            "STEP_STARTED" => (Some((2, field("stepName"))), None, false),
            "STEP_FINISHED" => (None, Some((2, field("stepName"))), true),
            "REASONING_START" => (Some((3, field("messageId"))), None, false),
            "REASONING_END" => (None, Some((3, field("messageId"))), true),
            "REASONING_MESSAGE_START" => (Some((4, field("messageId"))), None, false),
            "REASONING_MESSAGE_CONTENT" => (None, Some((4, field("messageId"))), false),
            "REASONING_MESSAGE_END" => (None, Some((4, field("messageId"))), true),
            "SUBAGENT_STARTED" => (Some((5, lane.clone())), None, false),
            "SUBAGENT_FINISHED" | "SUBAGENT_ERROR" => (None, Some((5, lane.clone())), true),
            _ => (None, None, false),
        };
        // Whose a span is: a subagent's own entry belongs to no one; a
        // step's name counts within its agent only.
        let owner = |kind: u8| if kind == 5 { None } else { lane.clone() };
        let find = |open: &[(u8, String, Option<String>)], kind: u8, id: &str| {
            open.iter()
                .position(|(k, i, o)| *k == kind && i == id && (kind != 2 || *o == lane))
        };
        if let Some((kind, id)) = opens {
            let Some(id) = id else {
                return Some((i, "missing_field"));
            };
            if find(&open, kind, &id).is_some() || (kind == 5 && subagents_used.contains(&id)) {
                return Some((i, "reused"));
            }
            open.push((kind, id, owner(kind)));
        }
        if let Some((kind, id)) = needs {
            let Some(id) = id else {
                return Some((i, "missing_field"));
            };
            let Some(at) = find(&open, kind, &id) else {
                return Some((i, "not_open"));
            };
            if kind != 5 && lane.is_some() && open[at].2 != lane {
                return Some((i, "wrong_subagent"));
            }
            if closes {
                open.remove(at);
                if kind == 5 {
                    subagents_used.push(id);
                }
            }
        }
    }
    None
}

/// Where `AgUiRules` first refuses `events`, and the rule.
pub fn verdict(events: &[Value]) -> Option<(usize, &'static str)> {
    let mut rules = AgUiRules::new();
    for (i, e) in events.iter().enumerate() {
        if let Err(v) = rules.check(&e.to_string()) {
            return Some((i, v.rule()));
        }
    }
    None
}
