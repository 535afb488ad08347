//! # wsc-loadgen
//!
//! Load for wsc gateways: simulated users, each a
//! `wsc_reconnection::ResilientClient` running agent runs
//! against one or more gateways while dropping its connection at random,
//! and the report of what they received: every event once, in order, or
//! counted as lost or duplicated. The `wsc-gateway demo` command, the
//! gateway's chaos and dashboard tests, the load benchmark and the soak all
//! drive it. It talks to gateways only over the wire; event monitors passed
//! to [`run_demo`] (the in-process gateways' own) validate every run a
//! second time.
//!
//! ## Example
//!
//! ```
//! use wsc_loadgen::{DemoConfig, DemoReport};
//!
//! let config = DemoConfig { users: 10, runs: 2, tools: vec!["search".into()], ..Default::default() };
//! // started, thinking, executing + completed per tool, completed
//! assert_eq!(config.events_per_run(), 5);
//! let report = DemoReport { runs: 20, runs_completed: 20, ..Default::default() };
//! assert!(report.passed());
//! assert!(report.to_table().contains("PASS"));
//! ```
//!
//! [`run_demo`] needs gateways to talk to; see the `wsc-gateway demo`
//! command or the gateway's tests.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use wsc_core::{
    Clock, ErrorCode, ErrorFrame, Frame, MessageType, StartAgent, SystemClock, WebSocketMessage,
};
use wsc_reconnection::{ClientConfig, ClientEvent, ResilientClient};

use wsc_event_monitor::EventMonitor;

mod hold;
pub use hold::{Hold, HoldConfig, HoldStatus, RunLoad, fanout_body};

/// What the demo load does.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoConfig {
    /// Simulated users, each with its own connection (default 200).
    pub users: usize,
    /// Agent runs per user, one after another (default 5).
    pub runs: usize,
    /// Chance that a run has its connection dropped once, at a random
    /// event (default 0.2).
    pub disconnect_rate: f64,
    /// Tools each run calls (default `search`, `calculator`).
    pub tools: Vec<String>,
    /// The agent's delay between events (default 150 ms).
    pub step_delay: Duration,
    /// A run not complete after this long counts its missing events as
    /// lost (default 20 s); a lost connection is retried this long too.
    /// Raise it to tell late from lost: through a store failover runs
    /// complete late (see [`DemoReport::slowest_run_ms`]).
    pub run_timeout: Duration,
    /// Seeds the random drops (default: random).
    pub seed: Option<u64>,
    /// One extra user sends this many pings at once, to show the rate
    /// limiter at work: those over the gateway's per-minute limit are
    /// answered `rate_limited` (default 200; 0: no flood).
    pub flood_pings: u32,
    /// The agent behind the gateways, for the report: `None` is the
    /// gateway's simulated agent, whose runs are checked against its exact
    /// event sequence (see [`events_per_run`](Self::events_per_run)); a
    /// name (e.g. the backend's URL) is a real agent, whose run is complete
    /// when it starts with `agent_started` and ends with `agent_completed`
    /// (the gateway's event monitor checks its order and completeness).
    pub agent: Option<String>,
    /// The protocol the users speak (default the wsc protocol).
    pub protocol: DemoProtocol,
    /// With [`DemoProtocol::AgUi`]: the chance that a second connection of
    /// the user joins a run (`join_run`, from its first event) once the
    /// run's first event arrived, and must get the whole run too (default
    /// 0.2).
    pub join_rate: f64,
}

/// The protocol of the demo's users.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemoProtocol {
    /// The wsc protocol: `start_agent`, lifecycle frames.
    #[default]
    Wsc,
    /// The AG-UI dialect (`/ws?protocol=ag-ui`): `run_agent`, each run's
    /// AG-UI events; every run checked against AG-UI's rules on arrival.
    AgUi,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            users: 200,
            runs: 5,
            disconnect_rate: 0.2,
            tools: vec!["search".into(), "calculator".into()],
            step_delay: Duration::from_millis(150),
            run_timeout: Duration::from_secs(20),
            seed: None,
            flood_pings: 200,
            agent: None,
            protocol: DemoProtocol::Wsc,
            join_rate: 0.2,
        }
    }
}

impl DemoConfig {
    /// Events one run of the simulated agent emits: in the wsc protocol
    /// started, thinking, two per tool, completed; in the AG-UI dialect
    /// `RUN_STARTED`, five of reasoning, four per tool, five of the answer
    /// (to the demo's "hello") and `RUN_FINISHED`.
    pub fn events_per_run(&self) -> u64 {
        match self.protocol {
            DemoProtocol::Wsc => 3 + 2 * self.tools.len() as u64,
            DemoProtocol::AgUi => 12 + 4 * self.tools.len() as u64,
        }
    }
}

/// Live counters of a running demo, for progress display.
#[derive(Debug, Default)]
pub struct DemoProgress {
    runs_done: AtomicU64,
    events: AtomicU64,
    disconnects: AtomicU64,
    resumes: AtomicU64,
}

/// A snapshot of [`DemoProgress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemoProgressSnapshot {
    /// Runs finished (complete or timed out).
    pub runs_done: u64,
    /// Agent events received.
    pub events: u64,
    /// Connections dropped on purpose.
    pub disconnects: u64,
    /// Sessions resumed.
    pub resumes: u64,
}

impl DemoProgress {
    /// The counters now.
    pub fn snapshot(&self) -> DemoProgressSnapshot {
        DemoProgressSnapshot {
            runs_done: self.runs_done.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            resumes: self.resumes.load(Ordering::Relaxed),
        }
    }
}

/// What the demo observed. [`DemoReport::passed`] says whether every event
/// arrived exactly once and every run validated.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DemoReport {
    /// The agent the runs ran on: `simulated`, or the real agent's name.
    pub agent: String,
    /// Gateways the users connected to.
    pub gateways: u64,
    /// Simulated users.
    pub users: u64,
    /// Runs asked for (users × runs).
    pub runs: u64,
    /// Runs whose every event arrived, once, in order, and that the
    /// gateway's event monitor validated.
    pub runs_completed: u64,
    /// Agent events received (each counted once).
    pub events: u64,
    /// Agent events the runs should have delivered.
    pub events_expected: u64,
    /// Connections dropped on purpose (abrupt transport close).
    pub disconnects: u64,
    /// Resumes the gateway accepted.
    pub resumes: u64,
    /// Resumes the gateway refused (a fresh session was started).
    pub resumes_refused: u64,
    /// Runs cut short with the client told: a refused resume (the gateway
    /// could not give the rest: `gap`, `epoch_mismatch`, `expired`, …; the
    /// client started afresh), or a client that gave up reconnecting
    /// (`ClientEvent::GaveUp`, with the last refusal) — not lost silently,
    /// so their missing events are not in
    /// [`events_lost`](Self::events_lost); but not complete either, so
    /// [`passed`](Self::passed) is false.
    pub runs_told: u64,
    /// Resumes accepted by another gateway than the one the connection
    /// was lost on.
    pub resumes_on_other_gateway: u64,
    /// Events of started runs that never arrived.
    pub events_lost: u64,
    /// Events handed to the application twice.
    pub events_duplicated: u64,
    /// Copies the client dropped by seq after a resume (expected: replay
    /// and live can overlap on the wire; not an error).
    pub wire_duplicates_dropped: u64,
    /// Client frames the gateway refused with `rate_limited` (the flooding
    /// user's pings over the limit, and any refused `start_agent`).
    pub rate_limited: u64,
    /// Runs that arrived out of order or incomplete, or that the gateway's
    /// event monitor did not validate.
    pub runs_failed_validation: u64,
    /// Median latency from the agent emitting an event to the client
    /// receiving it, ms (replayed events included).
    pub p50_latency_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_latency_ms: f64,
    /// Events received per second of the whole demo.
    pub events_per_second: f64,
    /// How long the demo took, s.
    pub elapsed_seconds: f64,
    /// The longest a complete run took, from its start to its terminal
    /// frame, ms (wsc protocol): how late the latest run was.
    pub slowest_run_ms: f64,
    /// The protocol the users spoke.
    pub protocol: DemoProtocol,
    /// Runs a second connection joined (the AG-UI dialect's `join_run`).
    pub joins: u64,
    /// Of those, runs the second reader got whole: exactly the events the
    /// first got.
    pub joins_complete: u64,
}

impl DemoReport {
    /// Nothing lost, nothing duplicated, every run complete and validated
    /// (a run whose client was told is not complete: see
    /// [`runs_told`](Self::runs_told)).
    pub fn passed(&self) -> bool {
        self.events_lost == 0
            && self.events_duplicated == 0
            && self.runs_failed_validation == 0
            && self.runs_completed == self.runs
            && self.joins_complete == self.joins
    }

    /// A latency as the table shows it (AG-UI events carry no time: none
    /// is measured for them).
    fn latency(&self, ms: f64) -> String {
        match self.protocol {
            DemoProtocol::Wsc => format!("{ms:.2} ms"),
            DemoProtocol::AgUi => "n/a".to_owned(),
        }
    }

    /// The report as an aligned two-column table.
    pub fn to_table(&self) -> String {
        let protocol = match self.protocol {
            DemoProtocol::Wsc => "wsc",
            DemoProtocol::AgUi => "ag-ui",
        };
        let rows: [(&str, String); 22] = [
            ("agent", self.agent.clone()),
            ("protocol", protocol.to_owned()),
            ("gateways", self.gateways.to_string()),
            ("users", self.users.to_string()),
            (
                "runs completed",
                format!("{} / {}", self.runs_completed, self.runs),
            ),
            (
                "events received",
                format!("{} / {}", self.events, self.events_expected),
            ),
            ("connections dropped", self.disconnects.to_string()),
            ("resumes", self.resumes.to_string()),
            ("resumes refused", self.resumes_refused.to_string()),
            ("runs told (refused, gave up)", self.runs_told.to_string()),
            (
                "resumes on another gateway",
                self.resumes_on_other_gateway.to_string(),
            ),
            ("events lost", self.events_lost.to_string()),
            ("events duplicated", self.events_duplicated.to_string()),
            (
                "wire copies dropped by seq",
                self.wire_duplicates_dropped.to_string(),
            ),
            (
                "second readers complete",
                format!("{} / {}", self.joins_complete, self.joins),
            ),
            ("rate-limited frames", self.rate_limited.to_string()),
            (
                "runs failing validation",
                self.runs_failed_validation.to_string(),
            ),
            ("event latency p50", self.latency(self.p50_latency_ms)),
            ("event latency p99", self.latency(self.p99_latency_ms)),
            (
                "events per second",
                format!("{:.0}", self.events_per_second),
            ),
            ("slowest run", self.latency(self.slowest_run_ms)),
            ("elapsed", format!("{:.1} s", self.elapsed_seconds)),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v:>14}\n"));
        }
        out.push_str(&format!(
            "{:<width$}  {:>14}\n",
            "result",
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        out
    }
}

mod ag_ui;

/// What one user saw.
#[derive(Default)]
struct UserOutcome {
    runs_completed: u64,
    events: u64,
    lost: u64,
    duplicated: u64,
    failed: u64,
    rate_limited: u64,
    run_ids: Vec<String>,
    latency_us: Vec<u64>,
    resumes: u64,
    resumes_refused: u64,
    told: u64,
    wire_duplicates: u64,
    resumes_elsewhere: u64,
    joins: u64,
    joins_complete: u64,
    /// The longest a complete run took.
    slowest_run: Duration,
}

/// Runs the demo load against the gateways served at `ws_urls` (e.g.
/// `ws://127.0.0.1:8765/ws`), and reports. `progress` is updated live.
///
/// `monitors` are the event monitors of in-process gateways behind the
/// URLs (`Gateway::event_monitor`); every run the clients received whole
/// must also validate in one of them. Pass none for gateways elsewhere
/// (then only the clients check). With several gateways (sharing sessions
/// in Redis), user `i` starts on gateway `i mod n` and every reconnection
/// goes to the next one, so each resume lands on another gateway than the
/// one it lost. The gateways should let many handshakes come from one IP
/// (`max_handshakes_per_ip` 0 in the gateway's config).
///
/// # Panics
/// If `ws_urls` is empty.
pub async fn run_demo(
    monitors: &[Arc<EventMonitor>],
    ws_urls: &[String],
    config: &DemoConfig,
    progress: Arc<DemoProgress>,
) -> DemoReport {
    assert!(
        !ws_urls.is_empty(),
        "run_demo needs at least one gateway URL"
    );
    let started = Instant::now();
    let base_seed = config.seed.unwrap_or_else(|| rand::rng().random());
    let mut tasks = Vec::with_capacity(config.users);
    for user in 0..config.users {
        // Start on gateway user mod n; reconnect to the next ones in turn.
        let n = ws_urls.len();
        let urls: Vec<String> = (0..n).map(|k| ws_urls[(user + k) % n].clone()).collect();
        let config = config.clone();
        let progress = progress.clone();
        let seed = base_seed ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        tasks.push(tokio::spawn(async move {
            match config.protocol {
                DemoProtocol::Wsc => run_user(user, &urls, &config, seed, &progress).await,
                DemoProtocol::AgUi => {
                    crate::ag_ui::run_user(user, &urls, &config, seed, &progress).await
                }
            }
        }));
    }
    let flood = (config.flood_pings > 0).then(|| {
        let url = ws_urls[0].clone();
        let n = config.flood_pings;
        tokio::spawn(async move { flood(&url, n).await })
    });
    let mut report = DemoReport {
        agent: config
            .agent
            .clone()
            .unwrap_or_else(|| "simulated".to_owned()),
        gateways: ws_urls.len() as u64,
        protocol: config.protocol,
        users: config.users as u64,
        runs: (config.users * config.runs) as u64,
        ..Default::default()
    };
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    let mut run_ids = Vec::new();
    for task in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(_) => UserOutcome {
                failed: config.runs as u64,
                ..Default::default()
            },
        };
        report.runs_completed += outcome.runs_completed;
        report.events += outcome.events;
        report.events_lost += outcome.lost;
        report.events_duplicated += outcome.duplicated;
        report.runs_failed_validation += outcome.failed;
        report.rate_limited += outcome.rate_limited;
        report.resumes += outcome.resumes;
        report.resumes_refused += outcome.resumes_refused;
        report.runs_told += outcome.told;
        report.wire_duplicates_dropped += outcome.wire_duplicates;
        report.resumes_on_other_gateway += outcome.resumes_elsewhere;
        report.joins += outcome.joins;
        report.joins_complete += outcome.joins_complete;
        report.slowest_run_ms = report
            .slowest_run_ms
            .max(outcome.slowest_run.as_secs_f64() * 1_000.0);
        for us in outcome.latency_us {
            latency.saturating_record(us.max(1));
        }
        run_ids.extend(outcome.run_ids);
    }
    if let Some(flood) = flood {
        report.rate_limited += flood.await.unwrap_or(0);
    }
    // The gateway's own check: every run the clients received complete must
    // also validate in the event monitor (all events, in order). A run that
    // fails both checks counts once. Gateways in other processes (none
    // given) are checked by the clients only.
    // (AG-UI runs are checked by the clients against AG-UI's rules; the
    // monitor knows them by the gateway's own run ids.)
    let monitored = !monitors.is_empty() && config.protocol == DemoProtocol::Wsc;
    for run_id in run_ids.iter().filter(|_| monitored) {
        // The run is known to the gateway it ran on.
        let mut valid = false;
        for monitor in monitors {
            if let Ok(true) = monitor.validate_session_completion(run_id) {
                valid = true;
                break;
            }
        }
        if !valid {
            report.runs_failed_validation += 1;
            report.runs_completed -= 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.events_expected = if config.agent.is_none() {
        report.runs * config.events_per_run()
    } else {
        // A real agent's runs have no known length: what arrived, plus what
        // runs that never ended owe (their terminal frame at least).
        report.events + report.events_lost
    };
    report.disconnects = progress.snapshot().disconnects;
    if !latency.is_empty() {
        report.p50_latency_ms = latency.value_at_quantile(0.5) as f64 / 1_000.0;
        report.p99_latency_ms = latency.value_at_quantile(0.99) as f64 / 1_000.0;
    }
    report.events_per_second = report.events as f64 / elapsed.max(1e-9);
    report.elapsed_seconds = elapsed;
    report
}

async fn run_user(
    user: usize,
    urls: &[String],
    config: &DemoConfig,
    seed: u64,
    progress: &DemoProgress,
) -> UserOutcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client_config =
        ClientConfig::new(urls[0].clone()).with_query("user_id", format!("demo-{user}"));
    client_config.alternate_urls = urls[1..].to_vec();
    let mut current_url = String::new();
    // A drop asked for and not yet followed by a reconnection.
    let mut pending_drop = false;
    client_config.initial_retry_delay = Duration::from_millis(50);
    client_config.max_retry_delay = Duration::from_secs(1);
    client_config.max_retries = 20;
    // A lost connection is retried for as long as a run may take (a store
    // failover answers 503 meanwhile).
    client_config.retry_for_at_least = config.run_timeout;
    client_config.ack_every = 16;
    let mut client = ResilientClient::connect(client_config);
    let mut client_gave_up = false;
    let mut out = UserOutcome::default();
    let expected: Vec<MessageType> = expected_sequence(config);
    let clock = SystemClock;

    for run_index in 0..config.runs {
        // The message id makes the start idempotent: after a reconnection
        // that shows nothing of this run yet, the start may have been lost
        // with the connection, so it is sent again; the gateway starts the
        // run once.
        let start = StartAgent {
            input: Some("hello".into()),
            agent_name: Some("demo".into()),
            tools: Some(config.tools.clone()),
            step_delay_ms: Some(u64::try_from(config.step_delay.as_millis()).unwrap_or(u64::MAX)),
            thread_id: None,
        }
        .to_message()
        .with_message_id(format!("start-{user}-{run_index}"));
        client.send(start.clone());
        // Drop the connection once, after a random event of this run.
        let real = config.agent.is_some();
        let drop_after = if rng.random_bool(config.disconnect_rate.clamp(0.0, 1.0)) {
            // A real agent's run has at least start, something, end.
            Some(rng.random_range(1..=if real { 2 } else { expected.len() }))
        } else {
            None
        };
        let mut run_id: Option<String> = None;
        let mut seen_ids: HashSet<String> = HashSet::new();
        let mut received: Vec<MessageType> = Vec::with_capacity(expected.len());
        let began = tokio::time::Instant::now();
        let deadline = began + config.run_timeout;
        let mut gave_up = false;
        let mut told = false;
        while !received.last().is_some_and(MessageType::is_terminal) {
            let event = match tokio::time::timeout_at(deadline, client.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => {
                    gave_up = true;
                    // After the client gave up (it said so), nothing runs.
                    told = client_gave_up;
                    break;
                }
            };
            let msg = match event {
                ClientEvent::Frame(msg) => msg,
                ClientEvent::GaveUp { .. } => {
                    // Told: the client says it gave up (and why).
                    gave_up = true;
                    told = true;
                    client_gave_up = true;
                    break;
                }
                ClientEvent::Connected(outcome) => {
                    pending_drop = false;
                    let reconnected = outcome.resume_requested;
                    // A refused resume in the middle of this run: the rest
                    // of it stays in the old session; the client was told.
                    if reconnected && !outcome.resumed && run_id.is_some() {
                        out.connected(outcome, &mut current_url);
                        told = true;
                        break;
                    }
                    out.connected(outcome, &mut current_url);
                    if reconnected && run_id.is_none() {
                        client.send(start.clone());
                    }
                    continue;
                }
                ClientEvent::Disconnected { .. } | ClientEvent::AgUi { .. } => continue,
            };
            if let Ok(error) = ErrorFrame::from_message(&msg) {
                if error.code == ErrorCode::RateLimited {
                    out.rate_limited += 1;
                    let wait = error.retry_after_ms.unwrap_or(1_000);
                    if run_id.is_none() {
                        // Our start_agent was refused: ask again later.
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        client.send(start.clone());
                    }
                }
                continue;
            }
            if msg.seq.is_none() {
                continue; // pong, ack
            }
            let this_run = msg
                .payload
                .get("run_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if run_id.is_none() {
                run_id = this_run.clone();
            }
            if this_run != run_id {
                continue; // not this run's (cannot happen: runs are sequential)
            }
            let id = msg.message_id.clone().unwrap_or_default();
            if !seen_ids.insert(id) {
                out.duplicated += 1;
                continue;
            }
            if let Some(emitted) = msg.timestamp {
                out.latency_us
                    .push(clock.now().duration_since(emitted).as_micros() as u64);
            }
            received.push(msg.message_type);
            out.events += 1;
            progress.events.fetch_add(1, Ordering::Relaxed);
            let ended = msg.message_type.is_terminal();
            if drop_after == Some(received.len()) && !ended {
                client.drop_connection();
                pending_drop = true;
                progress.disconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        let complete = if real {
            received.first() == Some(&MessageType::AgentStarted)
                && received.last() == Some(&MessageType::AgentCompleted)
        } else {
            received == expected
        };
        let lost = if real {
            u64::from(!received.last().is_some_and(MessageType::is_terminal))
        } else {
            (expected.len() as u64).saturating_sub(received.len() as u64)
        };
        if told {
            out.told += 1;
        } else if run_id.is_some() {
            out.lost += lost;
        }
        if told {
            // Neither lost nor a failure: told.
        } else if complete {
            out.runs_completed += 1;
            out.slowest_run = out.slowest_run.max(began.elapsed());
            // The gateway's event monitor checks it too, at the end.
            out.run_ids.extend(run_id);
        } else {
            // Incomplete, out of order, or never started.
            out.failed += 1;
        }
        progress.runs_done.fetch_add(1, Ordering::Relaxed);
        let stats = client.stats();
        progress
            .resumes
            .fetch_add(stats.resumes.saturating_sub(out.resumes), Ordering::Relaxed);
        out.resumes = stats.resumes;
        if gave_up && matches!(client.stats().connections, 0) {
            // Never connected: the remaining runs cannot happen.
            break;
        }
    }
    out.finish(client, pending_drop, &mut current_url, config.run_timeout)
        .await;
    out
}

/// Sends `n` pings at once as user `demo-flood`; returns how many were
/// answered `rate_limited` (each ping gets a `pong` or a refusal).
async fn flood(url: &str, n: u32) -> u64 {
    let mut config = ClientConfig::new(url).with_query("user_id", "demo-flood");
    config.initial_retry_delay = Duration::from_millis(50);
    let mut client = ResilientClient::connect(config);
    for i in 0..n {
        client.send(WebSocketMessage::new(MessageType::Ping, json!({"n": i})));
    }
    let (mut answered, mut refused) = (0, 0);
    while answered < n {
        match tokio::time::timeout(Duration::from_secs(20), client.recv()).await {
            Ok(Some(ClientEvent::Frame(msg))) => match msg.message_type {
                MessageType::Pong => answered += 1,
                MessageType::Error => {
                    answered += 1;
                    if ErrorFrame::from_message(&msg)
                        .is_ok_and(|e| e.code == ErrorCode::RateLimited)
                    {
                        refused += 1;
                    }
                }
                _ => {}
            },
            Ok(Some(ClientEvent::GaveUp { .. })) | Ok(None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }
    client.close();
    refused
}

impl UserOutcome {
    /// The end of a user's runs: the last drop may be taken after the
    /// run's last event arrived, so its reconnection is waited for (every
    /// drop is followed by a resume, or a refusal, in the report); then
    /// the client's counts, and its close.
    async fn finish(
        &mut self,
        mut client: ResilientClient,
        mut pending_drop: bool,
        current_url: &mut String,
        timeout: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while pending_drop {
            match tokio::time::timeout_at(deadline, client.recv()).await {
                Ok(Some(ClientEvent::Connected(outcome))) => {
                    self.connected(outcome, current_url);
                    pending_drop = false;
                }
                Ok(Some(ClientEvent::GaveUp { .. })) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => {}
            }
        }
        let stats = client.stats();
        self.resumes = stats.resumes;
        self.resumes_refused = stats.resumes_refused;
        self.wire_duplicates = stats.duplicates_dropped;
        client.close();
    }

    /// Counts a (re)connection: a resume on another gateway than the
    /// last one is counted as such.
    fn connected(
        &mut self,
        outcome: wsc_reconnection::ConnectionOutcome,
        current_url: &mut String,
    ) {
        if outcome.resumed && outcome.url != *current_url {
            self.resumes_elsewhere += 1;
        }
        *current_url = outcome.url;
    }
}

fn expected_sequence(config: &DemoConfig) -> Vec<MessageType> {
    let mut v = vec![MessageType::AgentStarted, MessageType::AgentThinking];
    for _ in &config.tools {
        v.push(MessageType::ToolExecuting);
        v.push(MessageType::ToolCompleted);
    }
    v.push(MessageType::AgentCompleted);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_only_when_nothing_is_missing() {
        let good = DemoReport {
            runs: 10,
            runs_completed: 10,
            ..Default::default()
        };
        assert!(good.passed());
        assert!(good.to_table().contains("PASS"));
        for bad in [
            DemoReport {
                events_lost: 1,
                ..good.clone()
            },
            DemoReport {
                events_duplicated: 1,
                ..good.clone()
            },
            DemoReport {
                runs_failed_validation: 1,
                ..good.clone()
            },
            DemoReport {
                runs_completed: 9,
                ..good.clone()
            },
        ] {
            assert!(!bad.passed(), "{bad:?}");
            assert!(bad.to_table().contains("FAIL"));
        }
    }

    #[test]
    fn the_expected_sequence_follows_the_tools() {
        let config = DemoConfig {
            tools: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(config.events_per_run(), 5);
        assert_eq!(expected_sequence(&config).len(), 5);
    }
}

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
