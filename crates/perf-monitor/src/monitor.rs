//! [`PerformanceMonitor`]: per-connection state and everything built on it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use compact_str::CompactString;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use serde_json::Value;
use tokio::sync::broadcast;
use wsc_core::{BackgroundTask, SharedClock, SystemClock, Timestamp, WebSocketMessage};

use crate::config::{PerformanceMonitorConfig, PerformanceThresholds};
use crate::histogram::LatencyHistogram;
use crate::sampler::{ProcessSampler, ResourceSampler, ResourceUsage};
use crate::types::{
    AlertEvent, AlertSeverity, AlertType, ConnectionInfo, LatencyMeasurement, PerformanceAlert,
    PerformanceMetrics, PerformanceOutlier, PerformanceRating, PerformanceReport, SystemMetrics,
    ThroughputMetrics,
};

/// Upper bounds (seconds) of the exported latency histogram's buckets.
pub(crate) const PROMETHEUS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const EVENT_CHANNEL_CAPACITY: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

/// One recent sample, compactly.
#[derive(Debug)]
struct Recent {
    at: Timestamp,
    latency_us: u64,
    message_type: wsc_core::MessageType,
    message_id: Option<Box<str>>,
}

/// Messages per 1 s bucket over the metrics window.
#[derive(Debug)]
struct Throughput {
    /// One counter per second of the window, allocated with the first
    /// message (an idle connection holds none).
    buckets: Option<Box<[u32]>>,
    len: usize,
    head: i64,
    peak: u32,
}

impl Throughput {
    fn new(window: Duration) -> Self {
        let secs = window.as_secs().max(1) + u64::from(window.subsec_nanos() > 0);
        Throughput {
            buckets: None,
            len: usize::try_from(secs).unwrap_or(3600).min(86_400),
            head: i64::MIN,
            peak: 0,
        }
    }

    /// The counters' bytes, once allocated.
    fn heap_bytes(&self) -> usize {
        self.buckets
            .as_ref()
            .map_or(0, |b| std::mem::size_of_val(&**b))
    }

    fn record(&mut self, now: Timestamp) {
        let len = self.len;
        let buckets = self
            .buckets
            .get_or_insert_with(|| vec![0; len].into_boxed_slice());
        let b = &mut buckets[advance(buckets, &mut self.head, now)];
        *b = b.saturating_add(1);
        self.peak = self.peak.max(*b);
    }

    fn in_window(&mut self, now: Timestamp) -> u64 {
        let Some(buckets) = self.buckets.as_mut() else {
            return 0;
        };
        advance(buckets, &mut self.head, now);
        buckets.iter().map(|c| u64::from(*c)).sum()
    }
}

/// Moves `head` to `now`'s second, emptying the seconds that left the
/// window of `buckets`; the head's bucket index.
fn advance(buckets: &mut [u32], head: &mut i64, now: Timestamp) -> usize {
    let len = buckets.len() as i64;
    let sec = now.as_unix_micros().div_euclid(1_000_000);
    if *head == i64::MIN || sec - *head >= len {
        buckets.fill(0);
        *head = sec;
    } else if sec > *head {
        for s in *head + 1..=sec {
            buckets[s.rem_euclid(len) as usize] = 0;
        }
        *head = sec;
    }
    head.rem_euclid(len) as usize
}

/// An active alert. Its `message` is written when it is handed out, not on
/// every update (an alert storm must not format a string per message).
#[derive(Debug)]
struct ActiveAlert {
    alert: PerformanceAlert,
    last_breach: Timestamp,
    high_is_bad: bool,
}

impl ActiveAlert {
    fn snapshot(&self) -> PerformanceAlert {
        let a = &self.alert;
        let (kind, value, thr) = (a.alert_type, a.value_measured, a.threshold_exceeded);
        let message = if self.high_is_bad {
            format!("{kind}: {value:.2} is over the threshold of {thr:.2}")
        } else {
            format!("{kind}: {value:.2} is under the minimum of {thr:.2}")
        };
        PerformanceAlert {
            message,
            ..a.clone()
        }
    }
}

/// One tracked connection. `repr(C)` keeps the fields every record touches
/// together at the front.
#[derive(Debug)]
#[repr(C)]
struct Conn {
    message_count: u64,
    histogram: LatencyHistogram,
    throughput: Throughput,
    recent: VecDeque<Recent>,
    latency_missing: u64,
    latency_skewed: u64,
    bytes_sent: u64,
    bytes_received: u64,
    errors: u64,
    alerts: Vec<ActiveAlert>,
    /// Latency samples per exported bucket (the last is `+Inf`).
    prom_buckets: [u32; PROMETHEUS_BUCKETS.len() + 1],
    info: ConnectionInfo,
    started_at: Timestamp,
    connection_time_ms: Option<f64>,
    connected: bool,
    closed_at: Option<Timestamp>,
    usage: ResourceUsage,
}

/// One table entry's bytes: its slot, its key if not inline, and the
/// connection's state (see [`PerformanceMonitor::state_bytes`]).
fn entry_bytes(key: &CompactString, conn: &Conn) -> usize {
    let key_heap = if key.is_heap_allocated() {
        key.capacity()
    } else {
        0
    };
    std::mem::size_of::<(CompactString, Box<Conn>)>() + key_heap + conn.heap_bytes()
}

impl Conn {
    /// The bytes this connection's state takes: the boxed struct and what
    /// it points to (see [`PerformanceMonitor::state_bytes`]).
    fn heap_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let recent = self.recent.capacity() * std::mem::size_of::<Recent>()
            + self
                .recent
                .iter()
                .map(|r| r.message_id.as_ref().map_or(0, |id| id.len()))
                .sum::<usize>();
        let alerts = self.alerts.capacity() * std::mem::size_of::<ActiveAlert>()
            + self
                .alerts
                .iter()
                .map(|a| a.alert.message.capacity() + a.alert.connection_id.capacity())
                .sum::<usize>();
        std::mem::size_of::<Conn>()
            + self.histogram.heap_bytes()
            + self.throughput.heap_bytes()
            + recent
            + alerts
            + self.info.user_id.capacity()
            + text(&self.info.user_agent)
            + text(&self.info.ip_address)
    }
}

/// Counters exported to Prometheus. Tracked connections keep their own
/// (no shared atomic on the message path); a connection's counters move to
/// the retired totals when it stops being tracked, so the sums only grow.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    messages: u64,
    bytes_sent: u64,
    bytes_received: u64,
    errors: u64,
    latency_missing: u64,
    latency_skewed: u64,
    latency_sum_us: u64,
    latency_buckets: [u64; PROMETHEUS_BUCKETS.len() + 1],
}

impl Counters {
    fn of(c: &Conn) -> Self {
        let mut latency_buckets = [0u64; PROMETHEUS_BUCKETS.len() + 1];
        for (out, n) in latency_buckets.iter_mut().zip(&c.prom_buckets) {
            *out = u64::from(*n);
        }
        Counters {
            messages: c.message_count,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            errors: c.errors,
            latency_missing: c.latency_missing,
            latency_skewed: c.latency_skewed,
            latency_sum_us: c.histogram.sum_us(),
            latency_buckets,
        }
    }

    fn add(&mut self, o: &Counters) {
        self.messages += o.messages;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.errors += o.errors;
        self.latency_missing += o.latency_missing;
        self.latency_skewed += o.latency_skewed;
        self.latency_sum_us += o.latency_sum_us;
        for (a, b) in self.latency_buckets.iter_mut().zip(&o.latency_buckets) {
            *a += b;
        }
    }
}

/// Monitor-wide counters of rare events.
#[derive(Debug, Default)]
struct Totals {
    untracked: AtomicU64,
    alerts_raised: [AtomicU64; AlertType::ALL.len()],
}

/// Measures each connection's handshake time, latency distribution and
/// throughput, and raises alerts when they degrade. See the crate docs for
/// an example. Every method is synchronous (none waits); the facade crate
/// `websocket-core` wraps it as the legacy, async
/// `WebSocketPerformanceMonitor`.
///
/// Connections live in a `DashMap`: recording on one connection never waits
/// for another. All methods take `&self`; share the monitor in an `Arc`.
pub struct PerformanceMonitor {
    config: PerformanceMonitorConfig,
    clock: SharedClock,
    sampler: Arc<dyn ResourceSampler>,
    /// Keys up to 24 bytes live inline in the table: no extra cache miss
    /// to compare them.
    /// Values are boxed so the table stays small (32-byte entries) and
    /// mostly cache-resident even with many connections.
    conns: DashMap<CompactString, Box<Conn>, RandomState>,
    totals: Totals,
    /// Counters of connections no longer tracked. Held while a connection
    /// leaves the map and while rendering, so a scrape never sees a dip.
    retired: Mutex<Counters>,
    last_usage: Mutex<ResourceUsage>,
    history: Mutex<VecDeque<PerformanceAlert>>,
    events: broadcast::Sender<AlertEvent>,
}

impl std::fmt::Debug for PerformanceMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerformanceMonitor")
            .field("config", &self.config)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// Where a message's latency came from.
enum Latency {
    Sample(u64),
    Skewed,
    Missing,
}

/// A client timestamp from the payload: Unix seconds (number or numeric
/// string) or RFC 3339.
fn client_timestamp(payload: &Value) -> Option<Timestamp> {
    match payload.get("client_timestamp")? {
        Value::Number(n) => n.as_f64().and_then(Timestamp::from_unix_secs_f64),
        Value::String(s) => {
            if let Ok(secs) = s.trim().parse::<f64>() {
                return Timestamp::from_unix_secs_f64(secs);
            }
            let t = time::OffsetDateTime::parse(
                s.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            let micros = i64::try_from(t.unix_timestamp_nanos() / 1000).ok()?;
            Some(Timestamp::from_unix_micros(micros))
        }
        _ => None,
    }
}

fn latency_of(message: &WebSocketMessage, now: Timestamp) -> Latency {
    let sent = message
        .timestamp
        .or_else(|| client_timestamp(&message.payload));
    match sent {
        None => Latency::Missing,
        Some(sent) => match u64::try_from(now.signed_micros_since(sent)) {
            Ok(us) => Latency::Sample(us),
            Err(_) => Latency::Skewed,
        },
    }
}

impl PerformanceMonitor {
    /// A monitor on the system clock, sampling the real process.
    pub fn new(config: PerformanceMonitorConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A monitor on `clock` (tests pass a `ManualClock`).
    pub fn with_clock(config: PerformanceMonitorConfig, clock: SharedClock) -> Self {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        PerformanceMonitor {
            config,
            clock,
            sampler: Arc::new(ProcessSampler::default()),
            conns: DashMap::with_hasher(RandomState::default()),
            totals: Totals::default(),
            retired: Mutex::new(Counters::default()),
            last_usage: Mutex::new(ResourceUsage::default()),
            history: Mutex::new(VecDeque::new()),
            events,
        }
    }

    /// Replaces the resource sampler (tests inject fixed values).
    pub fn with_resource_sampler(mut self, sampler: Arc<dyn ResourceSampler>) -> Self {
        self.sampler = sampler;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &PerformanceMonitorConfig {
        &self.config
    }

    /// The alert thresholds.
    pub fn thresholds(&self) -> &PerformanceThresholds {
        &self.config.thresholds
    }

    /// Connections tracked now.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Heap bytes the monitor holds for the connections it tracks: each
    /// one's state, its latency histogram and throughput window (allocated
    /// with its first message), recent messages, alerts and info strings,
    /// and its slot in the table. Counted from the structures' sizes and
    /// capacities (the allocator's own rounding is not), by walking the
    /// table: a scrape's cost, not a message's.
    ///
    /// ```
    /// use wsc_perf_monitor::{ConnectionInfo, PerformanceMonitor, PerformanceMonitorConfig};
    /// let monitor = PerformanceMonitor::new(PerformanceMonitorConfig::default());
    /// assert_eq!(monitor.state_bytes(), 0);
    /// monitor.start_connection_tracking("c1", ConnectionInfo::new("alice"));
    /// assert!(monitor.state_bytes() < 1024); // an idle connection
    /// ```
    pub fn state_bytes(&self) -> usize {
        self.conns.iter().map(|c| entry_bytes(c.key(), &c)).sum()
    }

    /// Alert changes as they happen. Slow subscribers miss the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }

    /// Resolved alerts, oldest first (at most `max_alert_history`).
    pub fn alert_history(&self) -> Vec<PerformanceAlert> {
        lock(&self.history).iter().cloned().collect()
    }

    /// A snapshot of a connection's metrics, or `None` if not tracked.
    pub fn connection_metrics(&self, connection_id: &str) -> Option<PerformanceMetrics> {
        let c = self.conns.get(connection_id)?;
        let h = &c.histogram;
        Some(PerformanceMetrics {
            connection_id: connection_id.to_owned(),
            user_id: c.info.user_id.clone(),
            connection_time_ms: c.connection_time_ms,
            is_connected: c.connected,
            message_count: c.message_count,
            latency_measurements: c
                .recent
                .iter()
                .map(|r| LatencyMeasurement {
                    message_id: r.message_id.as_deref().map(str::to_owned),
                    latency_ms: ms(r.latency_us as f64),
                    timestamp: r.at,
                    message_type: r.message_type,
                })
                .collect(),
            average_latency_ms: ms(h.mean_us()),
            min_latency_ms: ms(h.min_us() as f64),
            max_latency_ms: ms(h.max_us() as f64),
            p50_latency_ms: ms(h.quantile_us(0.5)),
            p95_latency_ms: ms(h.quantile_us(0.95)),
            p99_latency_ms: ms(h.quantile_us(0.99)),
            latency_samples: h.count(),
            latency_missing: c.latency_missing,
            latency_skewed: c.latency_skewed,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            error_count: c.errors,
            current_memory_usage_mb: c.usage.memory_mb,
            current_cpu_usage_percent: c.usage.cpu_percent,
            tracking_started_at: c.started_at,
        })
    }

    /// Starts tracking a connection (before its handshake completes).
    /// Tracking an id again starts it over. Past `max_connections`, a new
    /// connection is counted (`wsc_untracked_total`) but not
    /// tracked.
    pub fn start_connection_tracking(&self, connection_id: &str, info: ConnectionInfo) {
        if self.conns.len() >= self.config.max_connections
            && !self.conns.contains_key(connection_id)
        {
            self.totals.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.clock.now();
        let conn = Conn {
            message_count: 0,
            histogram: LatencyHistogram::default(),
            throughput: Throughput::new(self.config.metrics_window),
            recent: VecDeque::new(),
            latency_missing: 0,
            latency_skewed: 0,
            bytes_sent: 0,
            bytes_received: 0,
            errors: 0,
            alerts: Vec::new(),
            prom_buckets: [0; PROMETHEUS_BUCKETS.len() + 1],
            info,
            started_at: now,
            connection_time_ms: None,
            connected: false,
            closed_at: None,
            usage: ResourceUsage::default(),
        };
        let old = {
            let mut retired = lock(&self.retired);
            let old = self
                .conns
                .insert(CompactString::from(connection_id), Box::new(conn));
            if let Some(old) = &old {
                retired.add(&Counters::of(old));
            }
            old
        };
        if let Some(old) = old {
            self.resolve_all(*old, now);
        }
    }

    /// Records that the handshake completed: the handshake time is the time
    /// since tracking began; over `max_connection_time_ms` raises
    /// `slow_connection`.
    pub fn record_connection_established(&self, connection_id: &str) {
        let now = self.clock.now();
        let mut events = Vec::new();
        if let Some(mut c) = self.conns.get_mut(connection_id) {
            let took = ms(now.signed_micros_since(c.started_at).max(0) as f64);
            c.connection_time_ms = Some(took);
            c.connected = true;
            let thr = self.config.thresholds.max_connection_time_ms;
            if took > thr {
                self.breach(
                    &mut c,
                    connection_id,
                    AlertType::SlowConnection,
                    took,
                    thr,
                    true,
                    now,
                    &mut events,
                );
            }
        }
        self.publish(events);
    }

    /// Records that the connection closed (it stays tracked until stopped
    /// or cleaned up).
    pub fn record_connection_closed(&self, connection_id: &str) {
        let now = self.clock.now();
        if let Some(mut c) = self.conns.get_mut(connection_id) {
            c.connected = false;
            c.closed_at = Some(now);
        }
    }

    /// Stops tracking a connection and frees its state; its active alerts
    /// are resolved. Returns whether it was tracked.
    pub fn stop_connection_tracking(&self, connection_id: &str) -> bool {
        let removed = {
            let mut retired = lock(&self.retired);
            let removed = self.conns.remove(connection_id);
            if let Some((_, c)) = &removed {
                retired.add(&Counters::of(c));
            }
            removed
        };
        match removed {
            Some((_, c)) => {
                self.resolve_all(*c, self.clock.now());
                true
            }
            None => false,
        }
    }

    /// Records one processed message. Its latency is now minus
    /// `message.timestamp`, else minus `payload.client_timestamp` (Unix
    /// seconds or RFC 3339); without either it is counted with no sample, and
    /// a timestamp in the future (clock skew) is counted as skew, never as a
    /// latency.
    pub fn record_message_processed(&self, connection_id: &str, message: &WebSocketMessage) {
        let now = self.clock.now();
        self.record(connection_id, message, now, latency_of(message, now));
    }

    /// Records one processed message with a latency measured by the caller.
    pub fn record_message_latency(
        &self,
        connection_id: &str,
        message: &WebSocketMessage,
        latency: Duration,
    ) {
        let now = self.clock.now();
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record(connection_id, message, now, Latency::Sample(us));
    }

    fn record(
        &self,
        connection_id: &str,
        message: &WebSocketMessage,
        now: Timestamp,
        latency: Latency,
    ) {
        let Some(mut c) = self.conns.get_mut(connection_id) else {
            self.totals.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        c.message_count += 1;
        c.throughput.record(now);
        let mut events = Vec::new();
        match latency {
            Latency::Missing => {
                c.latency_missing += 1;
            }
            Latency::Skewed => {
                c.latency_skewed += 1;
            }
            Latency::Sample(us) => {
                c.histogram.record(us);
                let bucket = PROMETHEUS_BUCKETS
                    .iter()
                    .position(|le| us as f64 <= le * 1e6)
                    .unwrap_or(PROMETHEUS_BUCKETS.len());
                c.prom_buckets[bucket] = c.prom_buckets[bucket].saturating_add(1);
                if self.config.detailed_tracking && self.config.max_recent_samples > 0 {
                    if c.recent.len() >= self.config.max_recent_samples {
                        c.recent.pop_front();
                    } else if c.recent.capacity() == 0 {
                        // Exactly the bound, not the next power of two.
                        c.recent.reserve_exact(self.config.max_recent_samples);
                    }
                    c.recent.push_back(Recent {
                        at: now,
                        latency_us: us,
                        message_type: message.message_type,
                        message_id: message.message_id.as_deref().map(Box::from),
                    });
                }
                let latency_ms = ms(us as f64);
                let thr = self.config.thresholds.max_message_latency_ms;
                if latency_ms > thr {
                    self.breach(
                        &mut c,
                        connection_id,
                        AlertType::HighLatency,
                        latency_ms,
                        thr,
                        true,
                        now,
                        &mut events,
                    );
                } else if !c.alerts.is_empty() {
                    self.recover(&mut c, AlertType::HighLatency, now, &mut events);
                }
            }
        }
        drop(c);
        self.publish(events);
    }

    /// Records bytes sent to and received from the client.
    pub fn record_bytes(&self, connection_id: &str, sent: u64, received: u64) {
        if let Some(mut c) = self.conns.get_mut(connection_id) {
            c.bytes_sent = c.bytes_sent.saturating_add(sent);
            c.bytes_received = c.bytes_received.saturating_add(received);
        }
    }

    /// Records an error on the connection (a bad frame, a failed send).
    /// Checks the error rate once `min_messages_for_throughput` messages
    /// were processed.
    pub fn record_error(&self, connection_id: &str) {
        let now = self.clock.now();
        let mut events = Vec::new();
        if let Some(mut c) = self.conns.get_mut(connection_id) {
            c.errors += 1;
            self.check_error_rate(&mut c, connection_id, now, &mut events);
        }
        self.publish(events);
    }

    /// Throughput of a connection; also checks `low_throughput`.
    pub fn calculate_throughput(&self, connection_id: &str) -> Option<ThroughputMetrics> {
        let now = self.clock.now();
        let mut events = Vec::new();
        let result = {
            let mut c = self.conns.get_mut(connection_id)?;
            let t = self.throughput_of(&mut c, now);
            self.check_throughput(&mut c, connection_id, &t, now, &mut events);
            t
        };
        self.publish(events);
        Some(result)
    }

    fn throughput_of(&self, c: &mut Conn, now: Timestamp) -> ThroughputMetrics {
        let period = now.duration_since(c.started_at).as_secs_f64();
        let rate = if period > 0.0 {
            c.message_count as f64 / period
        } else {
            0.0
        };
        let window = self.config.metrics_window.as_secs_f64().max(1.0);
        let span = period.clamp(1e-9, window);
        let in_window = c.throughput.in_window(now) as f64;
        ThroughputMetrics {
            messages_per_second: rate,
            total_messages: c.message_count,
            measurement_period_seconds: period,
            peak_messages_per_second: f64::from(c.throughput.peak).max(rate),
            window_messages_per_second: if period > 0.0 { in_window / span } else { 0.0 },
        }
    }

    /// The connection's active alerts, after re-checking the time-based ones
    /// (throughput, and resolution of alerts whose metric has stayed within
    /// its threshold for `alert_hysteresis`).
    pub fn get_active_alerts(&self, connection_id: &str) -> Vec<PerformanceAlert> {
        let now = self.clock.now();
        let mut events = Vec::new();
        let alerts = match self.conns.get_mut(connection_id) {
            Some(mut c) => {
                self.evaluate(&mut c, connection_id, now, &mut events);
                c.alerts.iter().map(ActiveAlert::snapshot).collect()
            }
            None => Vec::new(),
        };
        self.publish(events);
        alerts
    }

    /// Samples process memory and CPU, stores them on the connection, and
    /// checks `high_memory` and `high_cpu`.
    pub fn record_resource_usage(&self, connection_id: &str) {
        let usage = self.sampler.sample();
        *lock(&self.last_usage) = usage;
        let now = self.clock.now();
        let mut events = Vec::new();
        if let Some(mut c) = self.conns.get_mut(connection_id) {
            c.usage = usage;
            let th = &self.config.thresholds;
            for (kind, value, thr) in [
                (
                    AlertType::HighMemory,
                    usage.memory_mb,
                    th.max_memory_usage_mb,
                ),
                (
                    AlertType::HighCpu,
                    usage.cpu_percent,
                    th.max_cpu_usage_percent,
                ),
            ] {
                if value > thr {
                    self.breach(
                        &mut c,
                        connection_id,
                        kind,
                        value,
                        thr,
                        true,
                        now,
                        &mut events,
                    );
                } else {
                    self.recover(&mut c, kind, now, &mut events);
                }
            }
        }
        self.publish(events);
    }

    /// A report with a rating and recommendations, or `None` if the
    /// connection is not tracked.
    pub fn generate_performance_report(&self, connection_id: &str) -> Option<PerformanceReport> {
        let now = self.clock.now();
        let mut events = Vec::new();
        let report = {
            let mut c = self.conns.get_mut(connection_id)?;
            self.evaluate(&mut c, connection_id, now, &mut events);
            let t = self.throughput_of(&mut c, now);
            self.report_of(&c, connection_id, &t, now)
        };
        self.publish(events);
        Some(report)
    }

    fn report_of(
        &self,
        c: &Conn,
        id: &str,
        t: &ThroughputMetrics,
        now: Timestamp,
    ) -> PerformanceReport {
        let th = &self.config.thresholds;
        let p95 = ms(c.histogram.quantile_us(0.95));
        let avg = ms(c.histogram.mean_us());
        let processed = c.message_count + c.errors;
        let error_rate = if processed == 0 {
            0.0
        } else {
            c.errors as f64 / processed as f64
        };
        let (lt, et) = (th.max_message_latency_ms, th.max_error_rate);
        let mut rating = if p95 <= lt / 4.0 && error_rate <= et / 10.0 {
            PerformanceRating::Excellent
        } else if p95 <= lt / 2.0 && error_rate <= et / 2.0 {
            PerformanceRating::Good
        } else if p95 <= lt && error_rate <= et {
            PerformanceRating::Fair
        } else {
            PerformanceRating::Poor
        };
        let low_throughput = c
            .alerts
            .iter()
            .any(|a| a.alert.alert_type == AlertType::LowThroughput);
        if low_throughput {
            rating = rating.max(PerformanceRating::Fair);
        }
        let mut recs = Vec::new();
        if p95 > lt / 2.0 {
            recs.push(format!(
                "p95 latency is {p95:.1} ms against a {lt:.0} ms threshold: check the agent's response time and \
                 the network path, and batch small frames"
            ));
        }
        if error_rate > et / 2.0 {
            recs.push(format!(
                "{:.1} % of messages failed (threshold {:.1} %): inspect the connection's error frames",
                error_rate * 100.0,
                et * 100.0
            ));
        }
        if low_throughput {
            recs.push(format!(
                "throughput is {:.2} msg/s, under the {:.2} msg/s minimum: check for a stalled client or agent",
                t.window_messages_per_second, th.min_throughput_messages_per_second
            ));
        }
        if c.connection_time_ms
            .is_some_and(|h| h > th.max_connection_time_ms)
        {
            recs.push(
                "the handshake was slow: check authentication and TLS termination".to_owned(),
            );
        }
        if recs.is_empty() && rating >= PerformanceRating::Fair {
            recs.push(
                "latency and errors are close to their thresholds: watch this connection's alerts"
                    .to_owned(),
            );
        }
        PerformanceReport {
            connection_id: id.to_owned(),
            total_messages: c.message_count,
            average_latency_ms: avg,
            p95_latency_ms: p95,
            throughput_messages_per_second: t.messages_per_second,
            connection_duration_minutes: now.duration_since(c.started_at).as_secs_f64() / 60.0,
            performance_rating: rating,
            optimization_recommendations: recs,
            error_rate,
            active_alerts: c.alerts.iter().map(ActiveAlert::snapshot).collect(),
        }
    }

    /// Drops recent samples older than `metrics_window` and (when
    /// `auto_cleanup_enabled`) closed connections closed for that long.
    /// Returns how many samples and connections it removed.
    pub fn cleanup_old_metrics(&self) -> usize {
        let now = self.clock.now();
        let horizon = now - self.config.metrics_window;
        let mut removed = 0;
        for mut c in self.conns.iter_mut() {
            while c.recent.front().is_some_and(|r| r.at < horizon) {
                c.recent.pop_front();
                removed += 1;
            }
        }
        if self.config.auto_cleanup_enabled {
            let mut gone = Vec::new();
            {
                let mut retired = lock(&self.retired);
                self.conns.retain(|_, c| {
                    let stale = !c.connected && c.closed_at.is_some_and(|at| at <= horizon);
                    if stale {
                        retired.add(&Counters::of(c));
                        gone.push(std::mem::take(&mut c.alerts));
                    }
                    !stale
                });
            }
            removed += gone.len();
            let mut events = Vec::new();
            for alerts in gone {
                for a in &alerts {
                    events.push(self.resolved(a, now));
                }
            }
            self.publish(events);
        }
        removed
    }

    /// Aggregates across connections, with outliers.
    pub fn get_system_wide_metrics(&self) -> SystemMetrics {
        let now = self.clock.now();
        let mut active = 0;
        let (mut sum_us, mut samples) = (0f64, 0u64);
        let mut throughput = 0.0;
        let mut alerts = 0;
        let mut p95s: Vec<(String, f64, f64)> = Vec::new();
        for c in self.conns.iter() {
            active += usize::from(c.connected);
            alerts += c.alerts.len();
            let h = &c.histogram;
            sum_us += h.mean_us() * h.count() as f64;
            samples += h.count();
            let period = now.duration_since(c.started_at).as_secs_f64();
            if period > 0.0 {
                throughput += c.message_count as f64 / period;
            }
            if h.count() > 0 {
                p95s.push((
                    c.key().to_string(),
                    ms(h.mean_us()),
                    ms(h.quantile_us(0.95)),
                ));
            }
        }
        let mut sorted: Vec<f64> = p95s.iter().map(|p| p.2).collect();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        let warn = self.config.thresholds.max_message_latency_ms;
        let performance_outliers = p95s
            .into_iter()
            .filter(|(_, _, p95)| *p95 > 3.0 * median && *p95 > warn)
            .map(
                |(connection_id, average_latency_ms, p95_latency_ms)| PerformanceOutlier {
                    connection_id,
                    average_latency_ms,
                    p95_latency_ms,
                    factor_over_median: if median > 0.0 {
                        p95_latency_ms / median
                    } else {
                        f64::INFINITY
                    },
                },
            )
            .collect();
        SystemMetrics {
            total_active_connections: active,
            tracked_connections: self.conns.len(),
            total_messages_processed: lock(&self.retired).messages
                + self.conns.iter().map(|c| c.message_count).sum::<u64>(),
            average_system_latency_ms: if samples == 0 {
                0.0
            } else {
                ms(sum_us / samples as f64)
            },
            system_throughput_messages_per_second: throughput,
            performance_outliers,
            active_alerts: alerts,
        }
    }

    /// Re-checks the time-based alerts of every connection (low throughput,
    /// error rate, and hysteresis resolution), as the background evaluator
    /// does.
    pub fn evaluate_alerts(&self) {
        let now = self.clock.now();
        let mut events = Vec::new();
        for mut c in self.conns.iter_mut() {
            let id = c.key().to_string();
            self.evaluate(&mut c, &id, now, &mut events);
        }
        self.publish(events);
    }

    /// Runs [`evaluate_alerts`](Self::evaluate_alerts) every `interval` of
    /// the monitor's clock in a tokio task, until the handle is stopped or
    /// dropped or the monitor is dropped.
    pub fn spawn_evaluator(self: &Arc<Self>, interval: Duration) -> EvaluatorHandle {
        let monitor: Weak<PerformanceMonitor> = Arc::downgrade(self);
        BackgroundTask::spawn_periodic(self.clock.clone(), interval, move || {
            monitor.upgrade().map(|m| m.evaluate_alerts()).is_some()
        })
    }

    /// Bytes one connection's state holds once it has had traffic, not
    /// counting its id, user info or message ids kept in recent samples:
    /// the fixed cost per connection. An idle connection holds less: its
    /// latency histogram (4 KiB) and throughput buckets are allocated with
    /// the first sample.
    pub fn bytes_per_connection(&self) -> usize {
        let window = self.config.metrics_window;
        std::mem::size_of::<(CompactString, Box<Conn>)>()
            + std::mem::size_of::<Conn>()
            + std::mem::size_of::<[u32; crate::histogram::BUCKETS]>()
            + Throughput::new(window).len * std::mem::size_of::<u32>()
            + if self.config.detailed_tracking {
                self.config.max_recent_samples * std::mem::size_of::<Recent>()
            } else {
                0
            }
    }

    fn evaluate(&self, c: &mut Conn, id: &str, now: Timestamp, events: &mut Vec<AlertEvent>) {
        let t = self.throughput_of(c, now);
        self.check_throughput(c, id, &t, now, events);
        self.check_error_rate(c, id, now, events);
        for kind in [
            AlertType::HighLatency,
            AlertType::SlowConnection,
            AlertType::HighMemory,
            AlertType::HighCpu,
        ] {
            self.recover(c, kind, now, events);
        }
    }

    fn check_throughput(
        &self,
        c: &mut Conn,
        id: &str,
        t: &ThroughputMetrics,
        now: Timestamp,
        events: &mut Vec<AlertEvent>,
    ) {
        let cfg = &self.config;
        let warmed = now.duration_since(c.started_at) >= cfg.throughput_warmup
            && c.message_count >= cfg.min_messages_for_throughput;
        if !warmed {
            return;
        }
        let thr = cfg.thresholds.min_throughput_messages_per_second;
        if t.window_messages_per_second < thr {
            self.breach(
                c,
                id,
                AlertType::LowThroughput,
                t.window_messages_per_second,
                thr,
                false,
                now,
                events,
            );
        } else {
            self.recover(c, AlertType::LowThroughput, now, events);
        }
    }

    fn check_error_rate(
        &self,
        c: &mut Conn,
        id: &str,
        now: Timestamp,
        events: &mut Vec<AlertEvent>,
    ) {
        let processed = c.message_count + c.errors;
        if c.message_count < self.config.min_messages_for_throughput || processed == 0 {
            return;
        }
        let rate = c.errors as f64 / processed as f64;
        let thr = self.config.thresholds.max_error_rate;
        if rate > thr {
            self.breach(
                c,
                id,
                AlertType::HighErrorRate,
                rate,
                thr,
                true,
                now,
                events,
            );
        } else {
            self.recover(c, AlertType::HighErrorRate, now, events);
        }
    }

    /// Raises or updates the connection's alert of `kind` for `value`
    /// against `thr` (`high_is_bad`: over is bad, else under is bad).
    #[allow(clippy::too_many_arguments)]
    fn breach(
        &self,
        c: &mut Conn,
        id: &str,
        kind: AlertType,
        value: f64,
        thr: f64,
        high_is_bad: bool,
        now: Timestamp,
        events: &mut Vec<AlertEvent>,
    ) {
        if !self.config.alert_enabled {
            return;
        }
        let critical = if high_is_bad {
            value > 2.0 * thr
        } else {
            value < thr / 2.0
        };
        let severity = if critical {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        };
        if let Some(active) = c.alerts.iter_mut().find(|a| a.alert.alert_type == kind) {
            active.last_breach = now;
            let a = &mut active.alert;
            a.value_measured = value;
            a.timestamp = now;
            if a.severity != severity {
                a.severity = severity;
                events.push(AlertEvent::Updated(active.snapshot()));
            }
            return;
        }
        let alert = PerformanceAlert {
            alert_type: kind,
            severity,
            value_measured: value,
            threshold_exceeded: thr,
            connection_id: id.to_owned(),
            timestamp: now,
            message: String::new(),
            raised_at: now,
            resolved_at: None,
        };
        if let Some(i) = AlertType::ALL.iter().position(|k| *k == kind) {
            self.totals.alerts_raised[i].fetch_add(1, Ordering::Relaxed);
        }
        let active = ActiveAlert {
            alert,
            last_breach: now,
            high_is_bad,
        };
        events.push(AlertEvent::Raised(active.snapshot()));
        c.alerts.push(active);
    }

    /// Resolves the alert of `kind` if its metric has stayed within its
    /// threshold for the hysteresis period.
    fn recover(&self, c: &mut Conn, kind: AlertType, now: Timestamp, events: &mut Vec<AlertEvent>) {
        let hysteresis = self.config.alert_hysteresis;
        if let Some(i) = c.alerts.iter().position(|a| {
            a.alert.alert_type == kind && now.duration_since(a.last_breach) >= hysteresis
        }) {
            let active = c.alerts.swap_remove(i);
            events.push(self.resolved(&active, now));
        }
    }

    fn resolved(&self, active: &ActiveAlert, now: Timestamp) -> AlertEvent {
        let mut alert = active.snapshot();
        alert.resolved_at = Some(now);
        let mut history = lock(&self.history);
        if history.len() >= self.config.max_alert_history {
            history.pop_front();
        }
        if self.config.max_alert_history > 0 {
            history.push_back(alert.clone());
        }
        AlertEvent::Resolved(alert)
    }

    fn resolve_all(&self, c: Conn, now: Timestamp) {
        let events = c.alerts.iter().map(|a| self.resolved(a, now)).collect();
        self.publish(events);
    }

    fn publish(&self, events: Vec<AlertEvent>) {
        for e in events {
            let _ = self.events.send(e);
        }
    }

    /// The exported values now.
    pub(crate) fn metrics_snapshot(&self) -> PerfSnapshot {
        let t = &self.totals;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut connected = 0usize;
        let mut state_bytes = 0usize;
        let mut by_severity = [0usize; 2];
        let totals = {
            // Held while summing: a connection leaving the map meanwhile is
            // counted exactly once.
            let retired = lock(&self.retired);
            let mut totals = *retired;
            for c in self.conns.iter() {
                connected += usize::from(c.connected);
                state_bytes += entry_bytes(c.key(), &c);
                for a in &c.alerts {
                    by_severity[usize::from(a.alert.severity == AlertSeverity::Critical)] += 1;
                }
                totals.add(&Counters::of(&c));
            }
            totals
        };
        let latency_buckets = PROMETHEUS_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(totals.latency_buckets.iter().copied())
            .collect();
        PerfSnapshot {
            messages: totals.messages,
            bytes_sent: totals.bytes_sent,
            bytes_received: totals.bytes_received,
            errors: totals.errors,
            latency_missing: totals.latency_missing,
            latency_skewed: totals.latency_skewed,
            untracked: get(&t.untracked),
            alerts_raised: AlertType::ALL
                .iter()
                .zip(&t.alerts_raised)
                .map(|(k, n)| (k.as_str(), get(n)))
                .collect(),
            tracked: self.conns.len(),
            active: connected,
            state_bytes,
            alerts_warning: by_severity[0],
            alerts_critical: by_severity[1],
            latency_buckets,
            latency_sum_seconds: totals.latency_sum_us as f64 / 1e6,
        }
    }
}

/// What a monitor exports, taken at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct PerfSnapshot {
    pub(crate) messages: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) errors: u64,
    pub(crate) latency_missing: u64,
    pub(crate) latency_skewed: u64,
    pub(crate) untracked: u64,
    pub(crate) alerts_raised: Vec<(&'static str, u64)>,
    pub(crate) tracked: usize,
    pub(crate) active: usize,
    pub(crate) state_bytes: usize,
    pub(crate) alerts_warning: usize,
    pub(crate) alerts_critical: usize,
    /// Per-bucket counts with their upper bounds (seconds), `+Inf` last.
    pub(crate) latency_buckets: Vec<(f64, u64)>,
    pub(crate) latency_sum_seconds: f64,
}

/// The background evaluator's handle: stops it when dropped or stopped.
pub type EvaluatorHandle = BackgroundTask;
