//! Many idle connections held open against gateways, some of them running
//! agent runs on command, for measuring a deployment at scale: the
//! [`Hold`] behind the `wsc-scale-client` binary that `cargo xtask scale`
//! starts several of.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use wsc_core::{Clock, ErrorFrame, Frame, MessageType, StartAgent, SystemClock, WebSocketMessage};
use wsc_reconnection::{ClientConfig, ClientEvent, ResilientClient};

/// What a [`Hold`] opens.
#[derive(Clone, Debug)]
pub struct HoldConfig {
    /// The gateways' WebSocket URLs (`ws://host:port/ws`). Connection `j`
    /// goes to `urls[j % n]` first and, after a loss, to the next ones.
    pub urls: Vec<String>,
    /// Connections to open, each its own user.
    pub connections: usize,
    /// The index of the first connection: users are
    /// `{user_prefix}{first + i}`, unique across processes.
    pub first: usize,
    /// The user ids' prefix.
    pub user_prefix: String,
    /// The local address to connect from (see
    /// [`ClientConfig::local_address`]: for many connections, prefer
    /// several destination addresses of the gateways in `urls`).
    pub local_address: Option<IpAddr>,
    /// Connections being opened at once (default 128).
    pub open_at_once: usize,
}

impl HoldConfig {
    /// `connections` connections to `urls`.
    pub fn new(urls: Vec<String>, connections: usize) -> Self {
        HoldConfig {
            urls,
            connections,
            first: 0,
            user_prefix: "scale-".into(),
            local_address: None,
            open_at_once: 128,
        }
    }
}

/// The runs a [`Hold`] keeps going: its first `connections` connections
/// each run one after another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunLoad {
    /// How many connections run (0: none).
    pub connections: usize,
    /// Tools each run calls.
    pub tools: usize,
    /// The simulated agent's delay between events, ms.
    pub step_delay_ms: u64,
}

impl RunLoad {
    /// Events in one run: started, thinking, executing + completed per
    /// tool, completed.
    pub fn events_per_run(&self) -> u64 {
        3 + 2 * self.tools as u64
    }
}

/// The least wait after a refused start before the next.
const REFUSED_START_WAIT: Duration = Duration::from_secs(1);

/// A run gets this long without an event before it counts as timed out
/// (lost, not told).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Default)]
struct Counters {
    open: AtomicU64,
    ever_connected: AtomicU64,
    reconnects: AtomicU64,
    resumes: AtomicU64,
    resumes_refused: AtomicU64,
    disconnects: AtomicU64,
    gave_up: AtomicU64,
    duplicates_dropped: AtomicU64,
    gaps_detected: AtomicU64,
    runs_started: AtomicU64,
    runs_completed: AtomicU64,
    runs_incomplete: AtomicU64,
    runs_told: AtomicU64,
    runs_timed_out: AtomicU64,
    /// Runs going on now (a gauge: `reset` leaves it).
    runs_in_flight: AtomicU64,
    run_errors: AtomicU64,
    events: AtomicU64,
    stray_events: AtomicU64,
    fanout_id: AtomicU64,
    fanout_received: AtomicU64,
    fanout_last_us: AtomicU64,
    /// Clients whose event stream ended without giving up (a bug).
    ended: AtomicU64,
    /// Connections lost and not back yet: when, and why.
    down: Mutex<std::collections::BTreeMap<usize, (std::time::Instant, String)>>,
}

impl Counters {
    /// A run in flight ended as `outcome` counts it.
    fn run_ended(&self, outcome: &AtomicU64) {
        outcome.fetch_add(1, Ordering::Relaxed);
        self.runs_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a [`Hold`] saw so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HoldStatus {
    /// Connections asked for.
    pub connections: usize,
    /// Open now.
    pub open: u64,
    /// Connected at least once.
    pub ever_connected: u64,
    /// Connections established again after a loss.
    pub reconnects: u64,
    /// Of those, resumes the gateway accepted.
    pub resumes: u64,
    /// Resumes refused (a fresh session: what it held is lost, told).
    pub resumes_refused: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Clients that gave up (told).
    pub gave_up: u64,
    /// Numbered frames received twice (dropped by the client).
    pub duplicates_dropped: u64,
    /// Frames that skipped ahead (the client resumed from its last seq).
    pub gaps_detected: u64,
    /// Runs started.
    pub runs_started: u64,
    /// Runs ended with every event, in order.
    pub runs_completed: u64,
    /// Runs ended with events missing.
    pub runs_incomplete: u64,
    /// Runs ended by an error event or a refused resume (told).
    pub runs_told: u64,
    /// Runs with no event for 90 s (lost, not told).
    pub runs_timed_out: u64,
    /// Runs going on now.
    pub runs_in_flight: u64,
    /// Error frames about runs (refused starts among them).
    pub run_errors: u64,
    /// Run events received.
    pub events: u64,
    /// Run events of no run in flight here (late events of a run given
    /// up on).
    pub stray_events: u64,
    /// Delivery latency of run events (gateway timestamp to receipt), µs.
    pub latency_p50_us: u64,
    /// The same, 99th percentile.
    pub latency_p99_us: u64,
    /// The same, largest.
    pub latency_max_us: u64,
    /// Connections that received the current fan-out frame.
    pub fanout_received: u64,
    /// When the last of them arrived (µs since the Unix epoch).
    pub fanout_last_us: u64,
    /// Clients whose event stream ended without their giving up (should
    /// stay 0: such a connection is neither open nor told).
    pub ended: u64,
    /// Connections lost and not back yet.
    pub down: u64,
    /// The longest any of them has been down, ms.
    pub down_longest_ms: u64,
    /// Why that one was lost.
    pub down_reason: String,
}

/// Connections held open against gateways (see the module docs).
pub struct Hold {
    config: HoldConfig,
    counters: Arc<Counters>,
    latency: Arc<Mutex<Histogram<u64>>>,
    load: watch::Sender<RunLoad>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now_us() -> u64 {
    SystemClock.now().as_unix_micros().max(0) as u64
}

impl Hold {
    /// Starts opening the connections (in the background; inside a tokio
    /// runtime).
    pub fn start(config: HoldConfig) -> Hold {
        let counters = Arc::new(Counters::default());
        let latency = Arc::new(Mutex::new(
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
        ));
        let (load, _) = watch::channel(RunLoad::default());
        let opening = Arc::new(Semaphore::new(config.open_at_once.max(1)));
        let n = config.urls.len().max(1);
        for i in 0..config.connections {
            let j = config.first + i;
            let mut urls = (0..n).map(|k| config.urls[(j + k) % n].clone());
            let mut client = ClientConfig::new(urls.next().unwrap_or_default())
                .with_query("user_id", format!("{}{j}", config.user_prefix));
            client.alternate_urls = urls.collect();
            client.local_address = config.local_address;
            client.initial_retry_delay = Duration::from_millis(200);
            client.max_retries = 30;
            client.retry_for_at_least = Duration::from_secs(600);
            client.connect_timeout = Duration::from_secs(30);
            let connection = Connection {
                index: i,
                user: format!("{}{j}", config.user_prefix),
                counters: counters.clone(),
                latency: latency.clone(),
                load: load.subscribe(),
            };
            let opening = opening.clone();
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.ok();
                connection.run(client, permit).await;
            });
        }
        Hold {
            config,
            counters,
            latency,
            load,
        }
    }

    /// Sets the runs to keep going (the first `load.connections`
    /// connections start one when they have none).
    pub fn set_load(&self, load: RunLoad) {
        self.load.send_replace(load);
    }

    /// Forgets the latencies measured so far and the run counts.
    pub fn reset(&self) {
        lock(&self.latency).reset();
        let c = &self.counters;
        for counter in [
            &c.runs_started,
            &c.runs_completed,
            &c.runs_incomplete,
            &c.runs_told,
            &c.runs_timed_out,
            &c.run_errors,
            &c.events,
            &c.stray_events,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Starts counting receipts of the fan-out frame `id` (sent as
    /// `agent_progress {"fanout": id}`, by [`fanout_body`]).
    pub fn expect_fanout(&self, id: u64) {
        self.counters.fanout_id.store(id, Ordering::Relaxed);
        self.counters.fanout_received.store(0, Ordering::Relaxed);
        self.counters.fanout_last_us.store(0, Ordering::Relaxed);
    }

    /// The users this hold's connections are.
    pub fn users(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.config.connections)
            .map(|i| format!("{}{}", self.config.user_prefix, self.config.first + i))
    }

    /// What it saw so far.
    pub fn status(&self) -> HoldStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let latency = lock(&self.latency);
        let started = get(&c.runs_started);
        let down = lock(&c.down);
        let longest = down.values().min_by_key(|(at, _)| *at);
        HoldStatus {
            connections: self.config.connections,
            open: get(&c.open),
            ever_connected: get(&c.ever_connected),
            reconnects: get(&c.reconnects),
            resumes: get(&c.resumes),
            resumes_refused: get(&c.resumes_refused),
            disconnects: get(&c.disconnects),
            gave_up: get(&c.gave_up),
            duplicates_dropped: get(&c.duplicates_dropped),
            gaps_detected: get(&c.gaps_detected),
            runs_started: started,
            runs_completed: get(&c.runs_completed),
            runs_incomplete: get(&c.runs_incomplete),
            runs_told: get(&c.runs_told),
            runs_timed_out: get(&c.runs_timed_out),
            runs_in_flight: get(&c.runs_in_flight),
            run_errors: get(&c.run_errors),
            events: get(&c.events),
            stray_events: get(&c.stray_events),
            latency_p50_us: latency.value_at_quantile(0.5),
            latency_p99_us: latency.value_at_quantile(0.99),
            latency_max_us: latency.max(),
            fanout_received: get(&c.fanout_received),
            fanout_last_us: get(&c.fanout_last_us),
            ended: get(&c.ended),
            down: down.len() as u64,
            down_longest_ms: longest.map_or(0, |(at, _)| at.elapsed().as_millis() as u64),
            down_reason: longest.map(|(_, why)| why.clone()).unwrap_or_default(),
        }
    }
}

/// The body of a `POST /api/publish` of fan-out frame `id` to `user`.
pub fn fanout_body(user: &str, id: u64) -> String {
    json!({
        "user_id": user,
        "type": "agent_progress",
        "payload": {"fanout": id},
        "message_id": format!("fanout-{id}"),
    })
    .to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One held connection.
struct Connection {
    index: usize,
    user: String,
    counters: Arc<Counters>,
    latency: Arc<Mutex<Histogram<u64>>>,
    load: watch::Receiver<RunLoad>,
}

/// A run in flight on a connection.
struct Run {
    start: WebSocketMessage,
    /// Its thread id (unique per run), on each of its events.
    thread: String,
    /// Its id, from its first event.
    id: Option<String>,
    events: u64,
    expected: u64,
    last_event: tokio::time::Instant,
}

impl Connection {
    async fn run(
        mut self,
        config: ClientConfig,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let c = self.counters.clone();
        let mut client = ResilientClient::connect(config);
        let mut permit = permit;
        let mut connected_once = false;
        let mut is_open = false;
        let mut seen = wsc_reconnection::ClientStats::default();
        let mut run: Option<Run> = None;
        // No start before this (a refused start's wait).
        let mut not_before: Option<tokio::time::Instant> = None;
        let mut runs = 0u64;
        loop {
            // A run's silence ends it; without one, a refused start's
            // wait ends before the next start.
            let deadline = run
                .as_ref()
                .map(|r| r.last_event + RUN_TIMEOUT)
                .or(not_before);
            tokio::select! {
                event = client.recv() => {
                    let Some(event) = event else {
                        c.ended.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    match event {
                        ClientEvent::Connected(outcome) => {
                            permit.take();
                            is_open = true;
                            c.open.fetch_add(1, Ordering::Relaxed);
                            lock(&c.down).remove(&self.index);
                            if !connected_once {
                                connected_once = true;
                                c.ever_connected.fetch_add(1, Ordering::Relaxed);
                            } else {
                                c.reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            if outcome.resume_requested {
                                if outcome.resumed {
                                    c.resumes.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    c.resumes_refused.fetch_add(1, Ordering::Relaxed);
                                    if run.take().is_some() {
                                        // The rest of the run stayed in the
                                        // old session: told by the refusal.
                                        c.run_ended(&c.runs_told);
                                    }
                                }
                            }
                            self.account(&client, &mut seen);
                            // A start lost with the connection is sent again
                            // (its message id makes it idempotent).
                            if let Some(r) = &run && r.events == 0 {
                                client.send(r.start.clone());
                            }
                        }
                        ClientEvent::Disconnected { reason } => {
                            lock(&c.down).insert(self.index, (std::time::Instant::now(), reason));
                            if std::mem::take(&mut is_open) {
                                c.open.fetch_sub(1, Ordering::Relaxed);
                            }
                            c.disconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        ClientEvent::GaveUp { .. } => {
                            permit.take();
                            lock(&c.down).remove(&self.index);
                            if std::mem::take(&mut is_open) {
                                c.open.fetch_sub(1, Ordering::Relaxed);
                            }
                            c.gave_up.fetch_add(1, Ordering::Relaxed);
                            if run.take().is_some() {
                                c.run_ended(&c.runs_told);
                            }
                            break;
                        }
                        ClientEvent::Frame(msg) => {
                            if let Some(wait) = self.frame(&msg, &mut run) {
                                not_before = Some(tokio::time::Instant::now() + wait);
                            }
                        }
                        ClientEvent::AgUi { .. } => {}
                    }
                }
                changed = self.load.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if run.take().is_some() {
                        c.run_ended(&c.runs_timed_out);
                    } else {
                        not_before = None;
                    }
                }
            }
            if run.is_none() && is_open && not_before.is_none() {
                let load = self.load.borrow().clone();
                if self.index < load.connections {
                    runs += 1;
                    // Each run its own thread: its events carry it, so
                    // late events of a run given up on are told apart
                    // from the next run's, even before either's id is
                    // known.
                    let thread = format!("{}-{runs}", self.user);
                    let start = StartAgent {
                        input: Some("scale".into()),
                        agent_name: Some("demo".into()),
                        tools: Some((0..load.tools).map(|t| format!("tool{t}")).collect()),
                        step_delay_ms: Some(load.step_delay_ms),
                        thread_id: Some(thread.clone()),
                    }
                    .to_message()
                    .with_message_id(format!("start-{thread}"));
                    client.send(start.clone());
                    c.runs_started.fetch_add(1, Ordering::Relaxed);
                    c.runs_in_flight.fetch_add(1, Ordering::Relaxed);
                    run = Some(Run {
                        start,
                        thread,
                        id: None,
                        events: 0,
                        expected: load.events_per_run(),
                        last_event: tokio::time::Instant::now(),
                    });
                }
            }
        }
        if is_open {
            c.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Adds what the client dropped or skipped since last time.
    fn account(&self, client: &ResilientClient, seen: &mut wsc_reconnection::ClientStats) {
        let now = client.stats();
        let c = &self.counters;
        c.duplicates_dropped.fetch_add(
            now.duplicates_dropped
                .saturating_sub(seen.duplicates_dropped),
            Ordering::Relaxed,
        );
        c.gaps_detected.fetch_add(
            now.gaps_detected.saturating_sub(seen.gaps_detected),
            Ordering::Relaxed,
        );
        *seen = now;
    }

    /// Counts a frame; after a refused start, how long to wait before
    /// the next one.
    fn frame(&self, msg: &WebSocketMessage, run: &mut Option<Run>) -> Option<Duration> {
        let c = &self.counters;
        if let Ok(error) = ErrorFrame::from_message(msg) {
            c.run_errors.fetch_add(1, Ordering::Relaxed);
            // A refused start (the store failing over, a gateway shutting
            // down): the run will not be, and the client was told.
            if let Some(r) = run
                && error.ref_message_id.is_some()
                && error.ref_message_id == r.start.message_id
            {
                c.run_ended(&c.runs_told);
                *run = None;
                let wait = error
                    .retry_after_ms
                    .map_or(REFUSED_START_WAIT, Duration::from_millis);
                return Some(wait.max(REFUSED_START_WAIT));
            }
            return None;
        }
        if msg.message_type == MessageType::AgentProgress
            && msg.payload.get("fanout").and_then(Value::as_u64)
                == Some(c.fanout_id.load(Ordering::Relaxed))
        {
            c.fanout_received.fetch_add(1, Ordering::Relaxed);
            c.fanout_last_us.fetch_max(now_us(), Ordering::Relaxed);
            return None;
        }
        if !msg.message_type.is_agent_event() || msg.seq.is_none() {
            return None;
        }
        c.events.fetch_add(1, Ordering::Relaxed);
        if let Some(emitted) = msg.timestamp {
            let us = SystemClock.now().duration_since(emitted).as_micros() as u64;
            let _ = lock(&self.latency).record(us.max(1));
        }
        // Events of a run carry its thread; a gateway's word about a run
        // it did not run (`gateway_lost`) carries none and is matched by
        // the run id below.
        let Some(r) = run
            .as_mut()
            .filter(|r| msg.thread_id.as_ref().is_none_or(|t| *t == r.thread))
        else {
            // An earlier run's (one given up on) late event.
            c.stray_events.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let id = msg.payload.get("run_id").and_then(Value::as_str);
        match (&r.id, id) {
            (None, Some(id)) => r.id = Some(id.to_owned()),
            (Some(mine), Some(id)) if mine != id => {
                // An earlier run's (one given up on) late event.
                c.stray_events.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            _ => {}
        }
        r.events += 1;
        r.last_event = tokio::time::Instant::now();
        if msg.message_type.is_terminal() {
            let counter = if msg.message_type.canonical() != MessageType::AgentCompleted {
                &c.runs_told
            } else if r.events == r.expected {
                &c.runs_completed
            } else {
                &c.runs_incomplete
            };
            c.run_ended(counter);
            *run = None;
        }
        None
    }
}
