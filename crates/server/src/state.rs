//! `AppState`: what every connection and handler shares. Built by the
//! builder; knows nothing of the router or the server, and holds the
//! upkeep's task handles without knowing what they do.

use std::sync::Arc;

use tokio::sync::watch;
use wsc_core::SharedClock;
use wsc_event_monitor::EventMonitor;
use wsc_perf_monitor::PerformanceMonitor;
use wsc_rate_limiter::WebSocketRateLimiter;
use wsc_reconnection::SessionRegistry;

use crate::config::GatewayConfig;
use crate::counters::{Counters, GatewayStats};
use crate::health::{HealthCache, HealthSnapshot};
use crate::run::AgentRunner;
use crate::telemetry::Telemetry;

pub(crate) struct AppState {
    pub(crate) config: GatewayConfig,
    pub(crate) clock: SharedClock,
    pub(crate) limiter: WebSocketRateLimiter,
    pub(crate) monitor: Arc<EventMonitor>,
    pub(crate) perf: Arc<PerformanceMonitor>,
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) runner: Arc<dyn AgentRunner>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    /// Every open WebSocket holds a receiver (taken at the upgrade):
    /// `closed()` completes when the last one has ended.
    pub(crate) open_sockets: watch::Sender<()>,
    /// The cap on connections and SSE streams held at once.
    pub(crate) capacity: Arc<crate::capacity::Capacity>,
    pub(crate) telemetry: Telemetry,
    /// What crosses gateways (the broker, Redis or this gateway's memory),
    /// and the policy while its store does not answer.
    pub(crate) shared: Arc<crate::shared::Shared>,
    /// Health and system metrics computed by the sampler once a second,
    /// read by `/metrics`, `/health` and `/api/stats`.
    pub(crate) health: HealthCache,
    /// The runs in flight, per user.
    pub(crate) runs: Arc<crate::runs::RunTable>,
    /// AG-UI runs' events, for their readers.
    pub(crate) ag_ui_runs: crate::agui::AgUiRuns,
    /// The background upkeep's tasks: held here, so the gateway and every
    /// router made from it keep them running (the tasks hold the state
    /// weakly: no cycle).
    pub(crate) upkeep: std::sync::Mutex<UpkeepSlot>,
    /// What `/metrics` serves (see the `metrics` module).
    pub(crate) metrics: std::sync::RwLock<prometheus_client::registry::Registry>,
}

/// The running upkeep (started by the `upkeep` module); dropping it stops
/// every task.
pub(crate) struct Upkeep {
    pub(crate) tasks: Vec<wsc_core::BackgroundTask>,
    /// The broker's delivery of other gateways' frames (stops when dropped).
    pub(crate) listener: Option<Box<dyn std::any::Any + Send>>,
    /// The broker's wake-ups of AG-UI runs other gateways hold (stops
    /// when dropped).
    pub(crate) run_listener: Option<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for Upkeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upkeep")
            .field("tasks", &self.tasks.len())
            .field("listener", &self.listener.is_some())
            .field("run_listener", &self.run_listener.is_some())
            .finish()
    }
}

/// Whether the upkeep runs, and whether it was stopped on purpose.
#[derive(Debug, Default)]
pub(crate) enum UpkeepSlot {
    #[default]
    NotStarted,
    /// Held for its `Drop`, which stops the tasks.
    Running {
        _upkeep: Upkeep,
    },
    Stopped,
}

impl AppState {
    pub(crate) fn next_id(&self, prefix: &str) -> String {
        self.runs.ids().next(prefix)
    }

    pub(crate) fn stats(&self) -> GatewayStats {
        self.counters.stats()
    }
}

impl AppState {
    /// Computes a fresh health snapshot (every tracked run is scanned) and
    /// caches it.
    pub(crate) async fn refresh_health(&self) -> std::sync::Arc<HealthSnapshot> {
        let mut report = self.monitor.check_health();
        crate::health::judge_delivery(&mut report, self.telemetry.latest().as_ref());
        let snapshot = std::sync::Arc::new(HealthSnapshot {
            report,
            system: self.perf.get_system_wide_metrics(),
            sessions: self.sessions.session_count().await.unwrap_or(0) as u64,
        });
        self.health.set(snapshot.clone());
        snapshot
    }

    /// The cached health snapshot; computed now if the sampler has not run
    /// yet (the first request after start).
    pub(crate) async fn health_snapshot(&self) -> std::sync::Arc<HealthSnapshot> {
        match self.health.get() {
            Some(snapshot) => snapshot,
            None => self.refresh_health().await,
        }
    }
}
