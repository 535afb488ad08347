//! [`PerformanceMonitor`]: per-connection state and everything built on it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compact_str::CompactString;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use serde_json::Value;
use tokio::sync::broadcast;
use wsc_core::{SharedClock, SystemClock, Timestamp, WebSocketMessage};

use crate::config::{PerformanceMonitorConfig, PerformanceThresholds};
use crate::histogram::LatencyHistogram;
use crate::sampler::{ProcessSampler, ResourceSampler, ResourceUsage};
use crate::state::{
    Conn, Counters, PROMETHEUS_BUCKETS, Recent, Throughput, Totals, entry_bytes, lock, ms,
};
use crate::types::{
    AlertEvent, AlertType, ConnectionInfo, LatencyMeasurement, PerformanceAlert,
    PerformanceMetrics, ThroughputMetrics,
};

const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Measures each connection's handshake time, latency distribution and
/// throughput, and raises alerts when they degrade. See the crate docs for
/// an example. Every method is synchronous (none waits); the facade crate
/// `websocket-core` wraps it as the legacy, async
/// `WebSocketPerformanceMonitor`.
///
/// Connections live in a `DashMap`: recording on one connection never waits
/// for another. All methods take `&self`; share the monitor in an `Arc`.
pub struct PerformanceMonitor {
    pub(crate) config: PerformanceMonitorConfig,
    pub(crate) clock: SharedClock,
    pub(crate) sampler: Arc<dyn ResourceSampler>,
    /// Keys up to 24 bytes live inline in the table: no extra cache miss
    /// to compare them.
    /// Values are boxed so the table stays small (32-byte entries) and
    /// mostly cache-resident even with many connections.
    pub(crate) conns: DashMap<CompactString, Box<Conn>, RandomState>,
    pub(crate) totals: Totals,
    /// Counters of connections no longer tracked. Held while a connection
    /// leaves the map and while rendering, so a scrape never sees a dip.
    pub(crate) retired: Mutex<Counters>,
    pub(crate) last_usage: Mutex<ResourceUsage>,
    pub(crate) history: Mutex<VecDeque<PerformanceAlert>>,
    pub(crate) events: broadcast::Sender<AlertEvent>,
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

    pub(crate) fn throughput_of(&self, c: &mut Conn, now: Timestamp) -> ThroughputMetrics {
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
}
