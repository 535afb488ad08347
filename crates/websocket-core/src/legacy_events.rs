//! The legacy event monitor: [`ChatEventMonitor`], async as the legacy
//! methods were, over the synchronous [`EventMonitor`].

use std::ops::Deref;
use std::time::Duration;

use wsc_core::{SharedClock, WebSocketMessage};
use wsc_event_monitor::{
    AgentSession, EventMetrics, EventMonitor, EventMonitorConfig, EventMonitorError,
    EventValidationError, HealthReport,
};

/// The legacy event monitor (legacy `ChatEventMonitor`): the methods the
/// legacy package had as coroutines are `async` here, each a thin wrapper
/// of the synchronous [`EventMonitor`] method of the same name; everything
/// else ([`tracker`](EventMonitor::tracker),
/// [`session_count`](EventMonitor::session_count), ...) is reached through
/// `Deref`.
///
/// ```
/// use websocket_core::event_monitor::{AgentSession, ChatEventMonitor, EventMonitorConfig};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let monitor = ChatEventMonitor::new(EventMonitorConfig::default());
/// monitor.start_session_tracking("run-1", AgentSession::new("alice")).await;
/// assert_eq!(monitor.session_count(), 1); // through Deref
/// # });
/// ```
#[derive(Debug)]
pub struct ChatEventMonitor {
    inner: EventMonitor,
}

/// Legacy name of [`ChatEventMonitor`].
pub type WebSocketEventMonitor = ChatEventMonitor;

impl Deref for ChatEventMonitor {
    type Target = EventMonitor;
    fn deref(&self) -> &EventMonitor {
        &self.inner
    }
}

impl From<EventMonitor> for ChatEventMonitor {
    fn from(inner: EventMonitor) -> Self {
        ChatEventMonitor { inner }
    }
}

/// The legacy monitor keeps whole events after a run ends unless the config
/// says otherwise: `events_received` stays what the legacy package returned.
fn legacy(mut config: EventMonitorConfig) -> EventMonitorConfig {
    config.keep_payloads_after_end.get_or_insert(true);
    config
}

impl ChatEventMonitor {
    /// A monitor on the system clock.
    ///
    /// Unlike [`EventMonitor`], it keeps an ended run's events whole
    /// (payloads and all) unless `config.keep_payloads_after_end` is
    /// `Some(false)`: [`EventTracker::events_received`](wsc_event_monitor::EventTracker::events_received)
    /// is what the legacy package returned. Set `Some(false)` to keep only
    /// compact records of ended runs (about 1 KiB instead of 7 for a
    /// 7-event run).
    pub fn new(config: EventMonitorConfig) -> Self {
        EventMonitor::new(legacy(config)).into()
    }

    /// A monitor on `clock` (tests pass a `ManualClock`); payloads are kept
    /// as with [`new`](Self::new).
    pub fn with_clock(config: EventMonitorConfig, clock: SharedClock) -> Self {
        EventMonitor::with_clock(legacy(config), clock).into()
    }

    /// The synchronous monitor inside.
    pub fn into_inner(self) -> EventMonitor {
        self.inner
    }

    /// See [`EventMonitor::start_session_tracking`].
    pub async fn start_session_tracking(&self, session_id: &str, session: AgentSession) {
        self.inner.start_session_tracking(session_id, session);
    }

    /// See [`EventMonitor::record_event`].
    ///
    /// # Errors
    /// As [`EventMonitor::record_event`].
    pub async fn record_event(
        &self,
        session_id: &str,
        message: WebSocketMessage,
    ) -> Result<(), EventMonitorError> {
        self.inner.record_event(session_id, message)
    }

    /// See [`EventMonitor::validate_session_completion`].
    ///
    /// # Errors
    /// As [`EventMonitor::validate_session_completion`].
    pub async fn validate_session_completion(
        &self,
        session_id: &str,
    ) -> Result<bool, EventValidationError> {
        self.inner.validate_session_completion(session_id)
    }

    /// See [`EventMonitor::get_session_metrics`].
    pub async fn get_session_metrics(&self, session_id: &str) -> Option<EventMetrics> {
        self.inner.get_session_metrics(session_id)
    }

    /// See [`EventMonitor::cleanup_completed_sessions`].
    pub async fn cleanup_completed_sessions(&self, max_age: Duration) -> usize {
        self.inner.cleanup_completed_sessions(max_age)
    }

    /// See [`EventMonitor::check_session_timeout`].
    pub async fn check_session_timeout(&self, session_id: &str, timeout: Duration) -> bool {
        self.inner.check_session_timeout(session_id, timeout)
    }

    /// See [`EventMonitor::mark_session_timeout`].
    pub async fn mark_session_timeout(&self, session_id: &str) -> bool {
        self.inner.mark_session_timeout(session_id)
    }

    /// See [`EventMonitor::check_health`].
    pub async fn check_health(&self) -> HealthReport {
        self.inner.check_health()
    }
}
