//! What the monitor keeps per connection ([`Conn`]: its counters, latency
//! histogram, throughput buckets, recent samples and active alerts) and in
//! all (the retired connections' counters, per-type alert totals).

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use compact_str::CompactString;
use wsc_core::Timestamp;

use crate::histogram::LatencyHistogram;
use crate::sampler::ResourceUsage;
use crate::types::{AlertType, ConnectionInfo, PerformanceAlert};

/// Upper bounds (seconds) of the exported latency histogram's buckets.
pub(crate) const PROMETHEUS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn ms(us: f64) -> f64 {
    us / 1000.0
}

/// One recent sample, compactly.
#[derive(Debug)]
pub(crate) struct Recent {
    pub(crate) at: Timestamp,
    pub(crate) latency_us: u64,
    pub(crate) message_type: wsc_core::MessageType,
    pub(crate) message_id: Option<Box<str>>,
}

/// Messages per 1 s bucket over the metrics window.
#[derive(Debug)]
pub(crate) struct Throughput {
    /// One counter per second of the window, allocated with the first
    /// message (an idle connection holds none).
    pub(crate) buckets: Option<Box<[u32]>>,
    pub(crate) len: usize,
    pub(crate) head: i64,
    pub(crate) peak: u32,
}

impl Throughput {
    pub(crate) fn new(window: Duration) -> Self {
        let secs = window.as_secs().max(1) + u64::from(window.subsec_nanos() > 0);
        Throughput {
            buckets: None,
            len: usize::try_from(secs).unwrap_or(3600).min(86_400),
            head: i64::MIN,
            peak: 0,
        }
    }

    /// The counters' bytes, once allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets
            .as_ref()
            .map_or(0, |b| std::mem::size_of_val(&**b))
    }

    pub(crate) fn record(&mut self, now: Timestamp) {
        let len = self.len;
        let buckets = self
            .buckets
            .get_or_insert_with(|| vec![0; len].into_boxed_slice());
        let b = &mut buckets[advance(buckets, &mut self.head, now)];
        *b = b.saturating_add(1);
        self.peak = self.peak.max(*b);
    }

    pub(crate) fn in_window(&mut self, now: Timestamp) -> u64 {
        let Some(buckets) = self.buckets.as_mut() else {
            return 0;
        };
        advance(buckets, &mut self.head, now);
        buckets.iter().map(|c| u64::from(*c)).sum()
    }
}

/// Moves `head` to `now`'s second, emptying the seconds that left the
/// window of `buckets`; the head's bucket index.
pub(crate) fn advance(buckets: &mut [u32], head: &mut i64, now: Timestamp) -> usize {
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
pub(crate) struct ActiveAlert {
    pub(crate) alert: PerformanceAlert,
    pub(crate) last_breach: Timestamp,
    pub(crate) high_is_bad: bool,
}

impl ActiveAlert {
    pub(crate) fn snapshot(&self) -> PerformanceAlert {
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
pub(crate) struct Conn {
    pub(crate) message_count: u64,
    pub(crate) histogram: LatencyHistogram,
    pub(crate) throughput: Throughput,
    pub(crate) recent: VecDeque<Recent>,
    pub(crate) latency_missing: u64,
    pub(crate) latency_skewed: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) errors: u64,
    pub(crate) alerts: Vec<ActiveAlert>,
    /// Latency samples per exported bucket (the last is `+Inf`).
    pub(crate) prom_buckets: [u32; PROMETHEUS_BUCKETS.len() + 1],
    pub(crate) info: ConnectionInfo,
    pub(crate) started_at: Timestamp,
    pub(crate) connection_time_ms: Option<f64>,
    pub(crate) connected: bool,
    pub(crate) closed_at: Option<Timestamp>,
    pub(crate) usage: ResourceUsage,
}

/// One table entry's bytes: its slot, its key if not inline, and the
/// connection's state (see [`PerformanceMonitor::state_bytes`]).
pub(crate) fn entry_bytes(key: &CompactString, conn: &Conn) -> usize {
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
    pub(crate) fn heap_bytes(&self) -> usize {
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
pub(crate) struct Counters {
    pub(crate) messages: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) errors: u64,
    pub(crate) latency_missing: u64,
    pub(crate) latency_skewed: u64,
    pub(crate) latency_sum_us: u64,
    pub(crate) latency_buckets: [u64; PROMETHEUS_BUCKETS.len() + 1],
}

impl Counters {
    pub(crate) fn of(c: &Conn) -> Self {
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

    pub(crate) fn add(&mut self, o: &Counters) {
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
pub(crate) struct Totals {
    pub(crate) untracked: AtomicU64,
    pub(crate) alerts_raised: [AtomicU64; AlertType::ALL.len()],
}
