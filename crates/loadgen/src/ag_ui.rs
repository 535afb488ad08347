//! The demo's users in the AG-UI dialect (`/ws?protocol=ag-ui`): each run
//! is asked for with `run_agent`, its AG-UI events arrive once and in
//! order through dropped connections (the session resumes; a refused
//! resume joins the run again after the last event received), each checked
//! against AG-UI's rules on arrival; some runs are joined by a second
//! connection of the user (`join_run`), which must get the very same run.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use wsc_core::{ErrorCode, ErrorFrame, Frame};
use wsc_event_monitor::AgUiRules;
use wsc_reconnection::{ClientConfig, ClientEvent, ResilientClient};

use crate::{DemoConfig, DemoProgress, UserOutcome};

/// A connection of user `user` in the AG-UI dialect.
fn connect(user: usize, urls: &[String], patience: Duration) -> ResilientClient {
    let mut config = ClientConfig::new(urls[0].clone())
        .with_query("user_id", format!("demo-{user}"))
        .with_query("protocol", "ag-ui");
    config.alternate_urls = urls[1..].to_vec();
    config.initial_retry_delay = Duration::from_millis(50);
    config.max_retry_delay = Duration::from_secs(1);
    config.max_retries = 20;
    // A lost connection is retried for as long as a run may take.
    config.retry_for_at_least = patience;
    config.ack_every = 16;
    ResilientClient::connect(config)
}

/// The AG-UI event types of one simulated run of the demo.
fn expected_types(config: &DemoConfig) -> Vec<&'static str> {
    let mut v = vec![
        "RUN_STARTED",
        "REASONING_START",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_END",
        "REASONING_END",
    ];
    for _ in &config.tools {
        v.extend([
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
        ]);
    }
    v.extend([
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]);
    v
}

fn is_terminal(event: &Value) -> bool {
    matches!(event["type"].as_str(), Some("RUN_FINISHED" | "RUN_ERROR"))
}

/// One user's runs, one after another.
pub(crate) async fn run_user(
    user: usize,
    urls: &[String],
    config: &DemoConfig,
    seed: u64,
    progress: &DemoProgress,
) -> UserOutcome {
    use std::sync::atomic::Ordering::Relaxed;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = connect(user, urls, config.run_timeout);
    let mut joiner: Option<ResilientClient> = None;
    let mut out = UserOutcome::default();
    let expected = expected_types(config);
    let real = config.agent.is_some();
    let mut current_url = String::new();
    let mut pending_drop = false;
    for run_index in 0..config.runs {
        let run_id = format!("demo-{user}-{run_index}");
        let input = json!({
            "threadId": format!("demo-{user}"),
            "runId": run_id,
            "messages": [{"id": format!("{run_id}-q"), "role": "user", "content": "hello"}],
            "tools": [], "context": [], "state": {},
            "forwardedProps": {
                "agent_name": "demo",
                "tools": config.tools,
                "step_delay_ms": u64::try_from(config.step_delay.as_millis()).unwrap_or(u64::MAX),
            },
        });
        let start = json!({"type": "run_agent", "message_id": format!("start-{run_id}"), "payload": {"input": input}}).to_string();
        let join = |after: usize| {
            json!({"type": "join_run", "payload": {"run_id": run_id, "after": after}}).to_string()
        };
        client.send_text(start.clone());
        let last = if real { 2 } else { expected.len() - 1 };
        let drop_after = rng
            .random_bool(config.disconnect_rate.clamp(0.0, 1.0))
            .then(|| rng.random_range(1..=last));
        let join_after = rng
            .random_bool(config.join_rate.clamp(0.0, 1.0))
            .then(|| rng.random_range(1..=last));
        let deadline = tokio::time::Instant::now() + config.run_timeout;
        let (mut rules, mut broke_rule, mut joined) = (AgUiRules::new(), false, false);
        let mut events: Vec<Value> = Vec::new();
        while !events.last().is_some_and(is_terminal) {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.recv()).await else {
                break;
            };
            match event {
                ClientEvent::AgUi {
                    run_id: of, event, ..
                } if of == run_id => {
                    broke_rule |= rules.check(&event.to_string()).is_err();
                    let ended = is_terminal(&event);
                    events.push(event);
                    out.events += 1;
                    progress.events.fetch_add(1, Relaxed);
                    if drop_after == Some(events.len()) && !ended {
                        client.drop_connection();
                        pending_drop = true;
                        progress.disconnects.fetch_add(1, Relaxed);
                    }
                    if join_after == Some(events.len()) && !joined {
                        joined = true;
                        joiner
                            .get_or_insert_with(|| connect(user, urls, config.run_timeout))
                            .send_text(join(0));
                    }
                }
                ClientEvent::Connected(outcome) => {
                    pending_drop = false;
                    let (asked, resumed) = (outcome.resume_requested, outcome.resumed);
                    out.connected(outcome, &mut current_url);
                    if asked && !resumed && !events.is_empty() {
                        // A new session has none of the run: join it again
                        // after the last event received.
                        client.send_text(join(events.len()));
                    } else if asked && events.is_empty() {
                        // The start may have died with the connection.
                        client.send_text(start.clone());
                    }
                }
                ClientEvent::Frame(msg) => {
                    if let Ok(error) = ErrorFrame::from_message(&msg)
                        && error.code == ErrorCode::RateLimited
                    {
                        out.rate_limited += 1;
                        if events.is_empty() {
                            let wait = error.retry_after_ms.unwrap_or(1_000);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                            client.send_text(start.clone());
                        }
                    }
                }
                ClientEvent::GaveUp { .. } => break,
                _ => {}
            }
        }
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect();
        let complete = !broke_rule
            && if real {
                types.first() == Some(&"RUN_STARTED") && types.last() == Some(&"RUN_FINISHED")
            } else {
                types == expected
            };
        if real {
            out.lost += u64::from(!events.last().is_some_and(is_terminal));
        } else {
            out.lost += (expected.len() as u64).saturating_sub(events.len() as u64);
            out.duplicated += (events.len() as u64).saturating_sub(expected.len() as u64);
        }
        if complete {
            out.runs_completed += 1;
        } else {
            out.failed += 1;
        }
        if joined && let Some(second) = joiner.as_mut() {
            out.joins += 1;
            let mut got: Vec<Value> = Vec::new();
            let deadline = tokio::time::Instant::now() + config.run_timeout;
            while !got.last().is_some_and(is_terminal) {
                match tokio::time::timeout_at(deadline, second.recv()).await {
                    Ok(Some(ClientEvent::AgUi {
                        run_id: of, event, ..
                    })) if of == run_id => {
                        got.push(event);
                    }
                    Ok(Some(ClientEvent::GaveUp { .. })) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
            out.joins_complete += u64::from(got == events);
        }
        progress.runs_done.fetch_add(1, Relaxed);
        let stats = client.stats();
        progress
            .resumes
            .fetch_add(stats.resumes.saturating_sub(out.resumes), Relaxed);
        out.resumes = stats.resumes;
    }
    out.finish(client, pending_drop, &mut current_url, config.run_timeout)
        .await;
    if let Some(second) = joiner {
        second.close();
    }
    out
}
