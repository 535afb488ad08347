//! Alerts: each connection's metrics checked against the thresholds, one
//! active alert per (connection, kind), raised with a severity and
//! resolved when the metric recovers; the background evaluator.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use wsc_core::{BackgroundTask, Timestamp};

use crate::monitor::PerformanceMonitor;
use crate::state::{ActiveAlert, Conn, lock};
use crate::types::{AlertEvent, AlertSeverity, AlertType, PerformanceAlert, ThroughputMetrics};

impl PerformanceMonitor {
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

    pub(crate) fn evaluate(
        &self,
        c: &mut Conn,
        id: &str,
        now: Timestamp,
        events: &mut Vec<AlertEvent>,
    ) {
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

    pub(crate) fn check_throughput(
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

    pub(crate) fn check_error_rate(
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
    pub(crate) fn breach(
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
        let severity = AlertSeverity::of_breach(value, thr, high_is_bad);
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
    pub(crate) fn recover(
        &self,
        c: &mut Conn,
        kind: AlertType,
        now: Timestamp,
        events: &mut Vec<AlertEvent>,
    ) {
        let hysteresis = self.config.alert_hysteresis;
        if let Some(i) = c.alerts.iter().position(|a| {
            a.alert.alert_type == kind && now.duration_since(a.last_breach) >= hysteresis
        }) {
            let active = c.alerts.swap_remove(i);
            events.push(self.resolved(&active, now));
        }
    }

    pub(crate) fn resolved(&self, active: &ActiveAlert, now: Timestamp) -> AlertEvent {
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

    pub(crate) fn resolve_all(&self, c: Conn, now: Timestamp) {
        let events = c.alerts.iter().map(|a| self.resolved(a, now)).collect();
        self.publish(events);
    }

    pub(crate) fn publish(&self, events: Vec<AlertEvent>) {
        for e in events {
            let _ = self.events.send(e);
        }
    }
}
/// The background evaluator's handle: stops it when dropped or stopped.
pub type EvaluatorHandle = BackgroundTask;
