//! Property tests of the order state machine: every run generated from the
//! valid-run grammar validates, and every single mutation of one (drop,
//! duplicate or move one critical event) is reported with the error kind a
//! simple reference model predicts.

use proptest::prelude::*;
use serde_json::json;
use wsc_core::{ManualClock, MessageType, WebSocketMessage};
use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig, EventValidationError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Started,
    Thinking,
    Exec,
    Done,
    Completed,
}

#[derive(Clone, Debug)]
struct Ev {
    kind: Kind,
    call: Option<u8>,
    /// Use the legacy synonym (agent_start, tool_execute, ...) where one exists.
    legacy: bool,
}

impl Ev {
    fn message(&self) -> WebSocketMessage {
        use MessageType as M;
        let t = match (self.kind, self.legacy) {
            (Kind::Started, false) => M::AgentStarted,
            (Kind::Started, true) => M::AgentStart,
            (Kind::Thinking, _) => M::AgentThinking,
            (Kind::Exec, false) => M::ToolExecuting,
            (Kind::Exec, true) => M::ToolExecute,
            (Kind::Done, false) => M::ToolCompleted,
            (Kind::Done, true) => M::ToolComplete,
            (Kind::Completed, false) => M::AgentCompleted,
            (Kind::Completed, true) => M::AgentComplete,
        };
        let payload = match self.call {
            // Every call uses the same tool name, so only the id can match.
            Some(c) => json!({"tool_call_id": format!("call-{c}"), "tool_name": "search"}),
            None => json!({}),
        };
        WebSocketMessage::new(t, payload)
    }
}

/// A valid run: start, then thinking steps and interleaved tool calls (at
/// least one of each), then completion.
fn valid_run() -> impl Strategy<Value = Vec<Ev>> {
    (
        1u8..6,
        prop::collection::vec(any::<u8>(), 40),
        prop::collection::vec(any::<bool>(), 40),
    )
        .prop_map(|(calls, choices, legacy)| {
            let mut events = vec![Ev {
                kind: Kind::Started,
                call: None,
                legacy: legacy[0],
            }];
            let mut open: Vec<u8> = Vec::new();
            let mut next = 0u8;
            let mut i = 0;
            while next < calls || !open.is_empty() {
                let c = choices[i % choices.len()];
                let l = legacy[i % legacy.len()];
                i += 1;
                match c % 3 {
                    0 => events.push(Ev {
                        kind: Kind::Thinking,
                        call: None,
                        legacy: l,
                    }),
                    1 if next < calls => {
                        open.push(next);
                        events.push(Ev {
                            kind: Kind::Exec,
                            call: Some(next),
                            legacy: l,
                        });
                        next += 1;
                    }
                    _ if !open.is_empty() => {
                        let call = open.remove(usize::from(c) % open.len());
                        events.push(Ev {
                            kind: Kind::Done,
                            call: Some(call),
                            legacy: l,
                        });
                    }
                    _ => {}
                }
            }
            if !events.iter().any(|e| e.kind == Kind::Thinking) {
                events.insert(
                    1,
                    Ev {
                        kind: Kind::Thinking,
                        call: None,
                        legacy: false,
                    },
                );
            }
            events.push(Ev {
                kind: Kind::Completed,
                call: None,
                legacy: legacy[1],
            });
            events
        })
}

#[derive(Debug, PartialEq)]
enum Expect {
    Valid,
    Missing(Vec<MessageType>),
    Order,
}

/// An obviously-correct model of the rules for runs whose tool events all
/// carry ids.
fn reference(events: &[Ev]) -> Expect {
    let count = |k: Kind| events.iter().filter(|e| e.kind == k).count();
    let required = [
        (Kind::Started, MessageType::AgentStarted),
        (Kind::Thinking, MessageType::AgentThinking),
        (Kind::Exec, MessageType::ToolExecuting),
        (Kind::Done, MessageType::ToolCompleted),
        (Kind::Completed, MessageType::AgentCompleted),
    ];
    let missing: Vec<MessageType> = required
        .iter()
        .filter(|(k, _)| count(*k) == 0)
        .map(|(_, t)| *t)
        .collect();
    if !missing.is_empty() {
        return Expect::Missing(missing);
    }
    let mut ok = events.first().map(|e| e.kind) == Some(Kind::Started)
        && events.last().map(|e| e.kind) == Some(Kind::Completed)
        && count(Kind::Started) == 1
        && count(Kind::Completed) == 1;
    let calls: std::collections::BTreeSet<u8> = events.iter().filter_map(|e| e.call).collect();
    for c in calls {
        let pos = |k: Kind| {
            events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.kind == k && e.call == Some(c))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let (exec, done) = (pos(Kind::Exec), pos(Kind::Done));
        ok &= exec.len() == 1 && done.len() == 1 && exec[0] < done[0];
    }
    if ok { Expect::Valid } else { Expect::Order }
}

fn observe(events: &[Ev]) -> Expect {
    let monitor = EventMonitor::with_clock(
        EventMonitorConfig::default(),
        ManualClock::default().shared(),
    );
    monitor.start_session_tracking("run", AgentSession::new("u"));
    for e in events {
        monitor.record_event("run", e.message()).expect("tracked");
    }
    let complete_before = monitor.tracker("run").expect("tracked").is_complete;
    let result = monitor.validate_session_completion("run");
    // `is_complete` means validated complete, before validation and after.
    let complete_after = monitor.tracker("run").expect("tracked").is_complete;
    assert_eq!(complete_before, result == Ok(true), "{result:?}");
    assert_eq!(complete_after, complete_before);
    match result {
        Ok(true) => Expect::Valid,
        Ok(false) => panic!("a run with agent_completed required reported incomplete"),
        Err(EventValidationError::MissingCriticalEvents(m)) => Expect::Missing(m.missing),
        Err(EventValidationError::OrderViolation {
            violations, count, ..
        }) => {
            assert!(count >= 1 && !violations.is_empty());
            Expect::Order
        }
        Err(other) => panic!("unexpected error {other}"),
    }
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
            events.insert(to % n, e);
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_valid_run_validates(run in valid_run()) {
        prop_assert_eq!(reference(&run), Expect::Valid);
        prop_assert_eq!(observe(&run), Expect::Valid);
    }

    #[test]
    fn every_single_mutation_is_reported_as_the_model_says(run in valid_run(), m in mutation()) {
        let mutated = apply(run, &m);
        prop_assert_eq!(observe(&mutated), reference(&mutated), "mutation {:?}", m);
    }

    #[test]
    fn dropping_a_unique_critical_event_reports_it_missing(run in valid_run(), pick in any::<usize>()) {
        // Drop every event of one critical kind: that kind is reported missing.
        let kinds = [Kind::Started, Kind::Thinking, Kind::Exec, Kind::Done, Kind::Completed];
        let kind = kinds[pick % kinds.len()];
        let mutated: Vec<Ev> = run.into_iter().filter(|e| e.kind != kind).collect();
        match observe(&mutated) {
            Expect::Missing(missing) => prop_assert_eq!(missing.len(), 1),
            other => prop_assert!(false, "expected missing, got {:?}", other),
        }
    }
}
