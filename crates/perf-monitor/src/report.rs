//! Reports: one connection's performance report with its rating and
//! recommendations, the system-wide view with outliers, and the snapshot
//! `/metrics` renders.

use std::sync::atomic::{AtomicU64, Ordering};

use wsc_core::Timestamp;

use crate::monitor::PerformanceMonitor;
use crate::state::{ActiveAlert, Conn, Counters, entry_bytes, lock, ms};
use crate::types::{
    AlertSeverity, AlertType, PerformanceOutlier, PerformanceRating, PerformanceReport, Rated,
    SystemMetrics, ThroughputMetrics,
};

impl PerformanceMonitor {
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
        let p95 = ms(c.histogram.quantile_us(0.95));
        let avg = ms(c.histogram.mean_us());
        let processed = c.message_count + c.errors;
        let error_rate = if processed == 0 {
            0.0
        } else {
            c.errors as f64 / processed as f64
        };
        let low_throughput = c
            .alerts
            .iter()
            .any(|a| a.alert.alert_type == AlertType::LowThroughput)
            .then_some(t.window_messages_per_second);
        let (rating, recs) = PerformanceRating::rate(
            &Rated {
                p95_latency_ms: p95,
                error_rate,
                low_throughput,
                connection_time_ms: c.connection_time_ms,
            },
            &self.config.thresholds,
        );
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
        PerfSnapshot {
            totals,
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
        }
    }
}

/// What a monitor exports, taken at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct PerfSnapshot {
    /// Every connection's counters, the retired ones included.
    pub(crate) totals: Counters,
    pub(crate) untracked: u64,
    pub(crate) alerts_raised: Vec<(&'static str, u64)>,
    pub(crate) tracked: usize,
    pub(crate) active: usize,
    pub(crate) state_bytes: usize,
    pub(crate) alerts_warning: usize,
    pub(crate) alerts_critical: usize,
}
