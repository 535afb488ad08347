//! `HealthCache`: the event monitor's health report and the performance
//! monitor's system metrics as of the last sample. `/metrics`, `/health`
//! and `/api/stats` read it instead of scanning every tracked run per
//! request. And the gateway's own health rule: delivery latency.

use std::sync::{Arc, RwLock};

use std::time::Duration;

use wsc_event_monitor::{HealthReport, HealthStatus};
use wsc_perf_monitor::SystemMetrics;

use crate::telemetry::StatsSample;

/// Delivery latency p99 (agent emit to frame written) over this in the
/// last second makes health a warning.
pub(crate) const DELIVERY_P99_WARNING: Duration = Duration::from_secs(1);
/// ... and over this, critical.
pub(crate) const DELIVERY_P99_CRITICAL: Duration = Duration::from_secs(5);

/// Adds the gateway's delivery latency to the event monitor's verdict
/// (which covers order violations and runs past the run timeout): the
/// p99 of the last one-second sample, if it measured any frame.
pub(crate) fn judge_delivery(report: &mut HealthReport, last: Option<&StatsSample>) {
    let Some(sample) = last.filter(|s| s.latency_samples > 0) else {
        return;
    };
    let p99 = Duration::from_secs_f64(sample.p99_ms.max(0.0) / 1000.0);
    let (level, bound) = if p99 > DELIVERY_P99_CRITICAL {
        (HealthStatus::Critical, DELIVERY_P99_CRITICAL)
    } else if p99 > DELIVERY_P99_WARNING {
        (HealthStatus::Warning, DELIVERY_P99_WARNING)
    } else {
        return;
    };
    report.status = report.status.max(level);
    report.issues.push(format!(
        "p99 delivery latency {:.0} ms over {} s in the last second",
        sample.p99_ms,
        bound.as_secs()
    ));
}

/// What the sampler computed last.
#[derive(Clone, Debug)]
pub(crate) struct HealthSnapshot {
    pub(crate) report: HealthReport,
    pub(crate) system: SystemMetrics,
    pub(crate) sessions: u64,
}

/// The last [`HealthSnapshot`], replaced whole once a second.
#[derive(Debug, Default)]
pub(crate) struct HealthCache {
    last: RwLock<Option<Arc<HealthSnapshot>>>,
}

impl HealthCache {
    /// The last snapshot, if the sampler ran yet.
    pub(crate) fn get(&self) -> Option<Arc<HealthSnapshot>> {
        self.last.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the snapshot.
    pub(crate) fn set(&self, snapshot: Arc<HealthSnapshot>) {
        *self.last.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }
}
