//! [`EventMonitorConfig`] and [`AgentSession`].

use std::time::Duration;

use wsc_core::MessageType;

/// How an [`EventMonitor`](crate::EventMonitor) validates runs, when it
/// calls them unhealthy, and how much it keeps.
///
/// Every field has a default; write `EventMonitorConfig { stale_after:
/// Duration::from_secs(10), ..Default::default() }` to change one.
#[derive(Clone, Debug, PartialEq)]
pub struct EventMonitorConfig {
    /// Check that every run delivered each of [`required_events`](Self::required_events)
    /// (default `true`).
    pub track_critical_events: bool,
    /// Check the order rules (default `true`). Violations are still recorded
    /// live when `false`, but validation does not fail on them.
    pub validate_event_order: bool,
    /// Keep per-event timings for [`get_session_metrics`](crate::EventMonitor::get_session_metrics)
    /// (default `true`).
    pub metrics_enabled: bool,
    /// Let [`sweep`](crate::EventMonitor::sweep) remove ended runs older than
    /// [`completed_max_age`](Self::completed_max_age) (default `true`).
    pub auto_cleanup_enabled: bool,
    /// The events a complete run must contain (legacy synonyms count as the
    /// event they stand for). Default: [`MessageType::CRITICAL_AGENT_EVENTS`].
    pub required_events: Vec<MessageType>,
    /// A run with no event for this long is stale (default 30 s).
    pub stale_after: Duration,
    /// A `tool_executing` open this long is a stuck tool (default 60 s).
    pub tool_timeout: Duration,
    /// A run not ended this long after tracking began is marked timed out by
    /// the sweeper (default 5 min).
    pub run_timeout: Duration,
    /// Inter-event p95 latency above this makes health a warning (default 2 s).
    pub latency_warning: Duration,
    /// Inter-event p95 latency above this makes health critical (default 5 s).
    pub latency_critical: Duration,
    /// Ended runs older than this are removed by the sweeper (default 10 min).
    pub completed_max_age: Duration,
    /// How often the background sweeper runs (default 5 s).
    pub sweep_interval: Duration,
    /// Violations younger than this count as recent in health (default 5 min).
    pub health_window: Duration,
    /// This many recent violations make health critical (default 10; one
    /// makes it a warning).
    pub critical_violation_count: usize,
    /// Under [`HealthScope::Delivery`]: timed-out runs make the status
    /// worse only as a share of the ended runs, once at least this many
    /// runs have ended (default 50) …
    pub health_min_runs: usize,
    /// … and the timed-out ones come from at least this many users
    /// (default 5): one client's slow runs never page the on-call. Then 5 %
    /// is a warning, 25 % critical.
    pub health_min_users: usize,
    /// At most this many runs are tracked (default 10 000). Starting one more
    /// evicts the ended run that ended first; if no run has ended, the least
    /// recently active run.
    pub max_tracked_runs: usize,
    /// At most this many events (and violations) are stored per run (default
    /// 1 000). Past it, events are still counted and checked but not stored,
    /// and the run is flagged `events_truncated`.
    pub max_events_per_run: usize,
    /// At most this many silent failures are kept, newest first out last
    /// (default 1 000).
    pub max_silent_failures: usize,
    /// At most this many inter-event latencies feed one health check's p95
    /// (default 100 000).
    pub max_latency_samples: usize,
    /// Which signals decide the health status (default
    /// [`HealthScope::AllSignals`]).
    pub health_scope: HealthScope,
    /// At most this many bytes of events are stored per run (default 256
    /// KiB; an estimate of the heap they take: their strings and payload).
    /// Past it, events are counted and checked but not stored, like past
    /// `max_events_per_run`.
    pub max_stored_bytes_per_run: usize,
    /// At most this many bytes of events are stored for all runs together
    /// (default 128 MiB). Past it, new events are counted and checked but
    /// not stored until ended runs are removed or evicted. With
    /// `max_tracked_runs` this bounds the monitor's memory whatever clients
    /// or agents send.
    pub max_stored_bytes: usize,
    /// Whether a run keeps its events whole (payloads and all) after it has
    /// ended, until it is removed. When not, an ended run's events shrink to
    /// compact records — type, time recorded, `tool_call_id`, size — and
    /// [`EventTracker::events_received`](crate::EventTracker::events_received)
    /// is rebuilt from them (a demo run of 7 events: about 7 KiB whole,
    /// under 1 KiB compact; see `docs/performance.md`). Timings, health and
    /// validation are the same either way.
    ///
    /// `None` (the default) lets the monitor decide: an [`EventMonitor`](crate::EventMonitor)
    /// compacts; the legacy `ChatEventMonitor` of the `websocket-core`
    /// facade keeps payloads (its `events_received` contract).
    pub keep_payloads_after_end: Option<bool>,
}

/// Which of the monitor's signals decide [`HealthReport::status`](crate::HealthReport).
/// Every figure is counted and reported either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HealthScope {
    /// Every rule on [`HealthStatus`](crate::HealthStatus): agent pacing
    /// (stale runs, stuck tools, inter-event latency, no run progressing),
    /// failed and timed-out runs, order violations.
    #[default]
    AllSignals,
    /// What a gateway in front of agents controls: event order violations
    /// and runs past `run_timeout`. An agent that pauses while a model
    /// thinks, a slow tool, or an agent that reports an error do not make
    /// the status worse (they are the agent's, and show in the report's
    /// figures and the gateway's runs panel).
    Delivery,
}

impl Default for EventMonitorConfig {
    fn default() -> Self {
        EventMonitorConfig {
            track_critical_events: true,
            validate_event_order: true,
            metrics_enabled: true,
            auto_cleanup_enabled: true,
            required_events: MessageType::CRITICAL_AGENT_EVENTS.to_vec(),
            stale_after: Duration::from_secs(30),
            tool_timeout: Duration::from_secs(60),
            run_timeout: Duration::from_secs(300),
            latency_warning: Duration::from_secs(2),
            latency_critical: Duration::from_secs(5),
            completed_max_age: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(5),
            health_window: Duration::from_secs(300),
            critical_violation_count: 10,
            health_min_runs: 50,
            health_min_users: 5,
            max_tracked_runs: 10_000,
            max_events_per_run: 1_000,
            max_silent_failures: 1_000,
            max_latency_samples: 100_000,
            health_scope: HealthScope::AllSignals,
            max_stored_bytes_per_run: 256 * 1024,
            max_stored_bytes: 128 * 1024 * 1024,
            keep_payloads_after_end: None,
        }
    }
}

/// Who an agent run belongs to; given when tracking starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentSession {
    /// The user the run streams to.
    pub user_id: String,
    /// The conversation thread.
    pub thread_id: Option<String>,
    /// The run id, if distinct from the tracking key.
    pub run_id: Option<String>,
    /// The agent's name.
    pub agent_name: Option<String>,
}

impl AgentSession {
    /// A session of `user_id` with no thread, run id or agent name.
    pub fn new(user_id: impl Into<String>) -> Self {
        AgentSession {
            user_id: user_id.into(),
            ..Default::default()
        }
    }

    /// Sets `thread_id`.
    pub fn with_thread_id(mut self, id: impl Into<String>) -> Self {
        self.thread_id = Some(id.into());
        self
    }

    /// Sets `run_id`.
    pub fn with_run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// Sets `agent_name`.
    pub fn with_agent_name(mut self, name: impl Into<String>) -> Self {
        self.agent_name = Some(name.into());
        self
    }
}
