//! `HealthCache`: the event monitor's health report and the performance
//! monitor's system metrics as of the last sample. `/metrics`, `/health`
//! and `/api/stats` read it instead of scanning every tracked run per
//! request. Imports no other module of the crate.

use std::sync::{Arc, RwLock};

use wsc_event_monitor::HealthReport;
use wsc_perf_monitor::SystemMetrics;

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
