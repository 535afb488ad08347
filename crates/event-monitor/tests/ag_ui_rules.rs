//! AG-UI's rules, as properties: every generated well-formed run passes
//! whole; and for any single drop, duplicate or swap of its events, the
//! verdict of `AgUiRules` (where the run first breaks a rule, and which
//! rule) equals an independent reference written from the rules' text.

use proptest::prelude::*;
use serde_json::{Value, json};
use wsc_event_monitor::AgUiRules;

/// What a generator step does.
#[derive(Clone, Debug)]
enum Step {
    /// Open a new span of this kind (0 text, 1 tool call, 2 step,
    /// 3 reasoning span, 4 reasoning message, 5 subagent).
    Open(u8),
    /// An event inside the n-th open span (modulo), if any.
    Inside(usize),
    /// Close the n-th open span (modulo), if any.
    Close(usize),
    /// An event that opens nothing: custom, state, an unknown type, a
    /// chunk, a tool result.
    Neutral(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6).prop_map(Step::Open),
        any::<usize>().prop_map(Step::Inside),
        any::<usize>().prop_map(Step::Close),
        (0u8..5).prop_map(Step::Neutral),
    ]
}

/// A well-formed run from the steps: RUN_STARTED, the steps, every span
/// still open closed (last opened first), RUN_FINISHED.
fn build(steps: &[Step]) -> Vec<Value> {
    let mut events = vec![json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"})];
    let mut open: Vec<(u8, String)> = Vec::new();
    let mut next = 0;
    let close = |kind: u8, id: &str| match kind {
        0 => json!({"type": "TEXT_MESSAGE_END", "messageId": id}),
        1 => json!({"type": "TOOL_CALL_END", "toolCallId": id}),
        2 => json!({"type": "STEP_FINISHED", "stepName": id}),
        3 => json!({"type": "REASONING_END", "messageId": id}),
        4 => json!({"type": "REASONING_MESSAGE_END", "messageId": id}),
        _ => json!({"type": "SUBAGENT_FINISHED", "subagentRunId": id}),
    };
    for s in steps {
        match s {
            Step::Open(kind) => {
                next += 1;
                let id = format!("id{next}");
                events.push(match kind {
                    0 => json!({"type": "TEXT_MESSAGE_START", "messageId": id, "role": "assistant"}),
                    1 => json!({"type": "TOOL_CALL_START", "toolCallId": id, "toolCallName": "f"}),
                    2 => json!({"type": "STEP_STARTED", "stepName": id}),
                    3 => json!({"type": "REASONING_START", "messageId": id}),
                    4 => json!({"type": "REASONING_MESSAGE_START", "messageId": id, "role": "reasoning"}),
                    _ => json!({"type": "SUBAGENT_STARTED", "subagentRunId": id, "name": "helper"}),
                });
                open.push((*kind, id));
            }
            Step::Inside(n) if !open.is_empty() => {
                let (kind, id) = &open[n % open.len()];
                events.push(match kind {
                    0 => json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": id, "delta": "x"}),
                    1 => json!({"type": "TOOL_CALL_ARGS", "toolCallId": id, "delta": "{"}),
                    4 => json!({"type": "REASONING_MESSAGE_CONTENT", "messageId": id, "delta": "y"}),
                    5 => json!({"type": "CUSTOM", "name": "n", "value": 1, "subagentRunId": id}),
                    _ => json!({"type": "ACTIVITY_SNAPSHOT", "messageId": id, "activityType": "a", "content": {}}),
                });
            }
            Step::Close(n) if !open.is_empty() => {
                let (kind, id) = open.remove(n % open.len());
                events.push(close(kind, &id));
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
    while let Some((kind, id)) = open.pop() {
        events.push(close(kind, &id));
    }
    events.push(json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}));
    events
}

/// A span an event opens or needs: its kind and id (if the event has one).
type Named = Option<(u8, Option<String>)>;

/// The reference: where a sequence first breaks the rules and which rule,
/// judging each event against the state the accepted events before it
/// built, rule by rule as the rules are written (not the same code).
fn reference(events: &[Value]) -> Option<(usize, &'static str)> {
    // Open things as (kind, id); kinds as in `Step::Open`.
    let mut open: Vec<(u8, String)> = Vec::new();
    let mut subagents_used: Vec<String> = Vec::new();
    let mut started = false;
    let mut ended = false;
    for (i, e) in events.iter().enumerate() {
        let t = e["type"].as_str().unwrap();
        let field = |name: &str| e.get(name).and_then(Value::as_str).map(str::to_owned);
        if ended {
            return Some((i, "after_end"));
        }
        if !started && t != "RUN_STARTED" && t != "RUN_ERROR" {
            return Some((i, "first_event"));
        }
        if let Some(sub) = field("subagentRunId")
            && t != "SUBAGENT_STARTED"
            && !open.contains(&(5, sub))
        {
            return Some((i, "not_open"));
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
            "SUBAGENT_STARTED" => (Some((5, field("subagentRunId"))), None, false),
            "SUBAGENT_FINISHED" | "SUBAGENT_ERROR" => {
                (None, Some((5, field("subagentRunId"))), true)
            }
            _ => (None, None, false),
        };
        if let Some((kind, id)) = opens {
            let Some(id) = id else {
                return Some((i, "missing_field"));
            };
            if open.contains(&(kind, id.clone())) || (kind == 5 && subagents_used.contains(&id)) {
                return Some((i, "reused"));
            }
            open.push((kind, id));
        }
        if let Some((kind, id)) = needs {
            if id.is_none() {
                return Some((i, "missing_field"));
            }
            if !id
                .as_ref()
                .is_some_and(|id| open.contains(&(kind, id.clone())))
            {
                return Some((i, "not_open"));
            }
            if closes {
                let id = id.unwrap();
                open.retain(|o| o != &(kind, id.clone()));
                if kind == 5 {
                    subagents_used.push(id);
                }
            }
        }
    }
    None
}

fn verdict(events: &[Value]) -> Option<(usize, &'static str)> {
    let mut rules = AgUiRules::new();
    for (i, e) in events.iter().enumerate() {
        if let Err(v) = rules.check(&e.to_string()) {
            return Some((i, v.rule()));
        }
    }
    None
}

#[derive(Clone, Debug)]
enum Fault {
    Drop(usize),
    Duplicate(usize),
    Swap(usize),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        any::<usize>().prop_map(Fault::Drop),
        any::<usize>().prop_map(Fault::Duplicate),
        any::<usize>().prop_map(Fault::Swap),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_well_formed_run_passes_whole(steps in prop::collection::vec(step(), 0..60)) {
        let events = build(&steps);
        prop_assert_eq!(reference(&events), None);
        let mut rules = AgUiRules::new();
        for e in &events {
            let checked = rules.check(&e.to_string());
            prop_assert!(checked.is_ok(), "{}: {:?}", e, checked);
        }
        prop_assert!(rules.is_ended());
        prop_assert_eq!(rules.events(), events.len() as u64);
    }

    #[test]
    fn one_drop_duplicate_or_swap_is_judged_as_the_reference_judges_it(
        steps in prop::collection::vec(step(), 0..60),
        fault in fault(),
    ) {
        let mut events = build(&steps);
        let n = events.len();
        match fault {
            Fault::Drop(i) => { events.remove(i % n); }
            Fault::Duplicate(i) => { let e = events[i % n].clone(); events.insert(i % n, e); }
            Fault::Swap(i) => { let i = i % (n - 1); events.swap(i, i + 1); }
        }
        prop_assert_eq!(verdict(&events), reference(&events), "{:?}", events);
    }
}
