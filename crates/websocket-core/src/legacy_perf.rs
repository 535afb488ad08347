//! The legacy performance monitor: [`WebSocketPerformanceMonitor`], async as
//! the legacy methods were, over the synchronous [`PerformanceMonitor`].

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use wsc_core::{SharedClock, WebSocketMessage};
use wsc_perf_monitor::{
    ConnectionInfo, PerformanceAlert, PerformanceMonitor, PerformanceMonitorConfig,
    PerformanceReport, ResourceSampler, SystemMetrics, ThroughputMetrics,
};

/// The legacy performance monitor (legacy `WebSocketPerformanceMonitor`):
/// the methods the legacy package had as coroutines are `async` here, each
/// a thin wrapper of the synchronous [`PerformanceMonitor`] method of the
/// same name; everything else ([`connection_metrics`](PerformanceMonitor::connection_metrics),
/// [`render_prometheus`](PerformanceMonitor::render_prometheus), ...) is
/// reached through `Deref`.
///
/// ```
/// use websocket_core::performance_monitor_core::{
///     ConnectionInfo, PerformanceMonitorConfig, WebSocketPerformanceMonitor,
/// };
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let monitor = WebSocketPerformanceMonitor::new(PerformanceMonitorConfig::default());
/// monitor.start_connection_tracking("c1", ConnectionInfo::new("alice")).await;
/// assert_eq!(monitor.connection_count(), 1); // through Deref
/// # });
/// ```
#[derive(Debug)]
pub struct WebSocketPerformanceMonitor {
    inner: PerformanceMonitor,
}

impl Deref for WebSocketPerformanceMonitor {
    type Target = PerformanceMonitor;
    fn deref(&self) -> &PerformanceMonitor {
        &self.inner
    }
}

impl From<PerformanceMonitor> for WebSocketPerformanceMonitor {
    fn from(inner: PerformanceMonitor) -> Self {
        WebSocketPerformanceMonitor { inner }
    }
}

impl WebSocketPerformanceMonitor {
    /// A monitor on the system clock.
    pub fn new(config: PerformanceMonitorConfig) -> Self {
        PerformanceMonitor::new(config).into()
    }

    /// A monitor on `clock` (tests pass a `ManualClock`).
    pub fn with_clock(config: PerformanceMonitorConfig, clock: SharedClock) -> Self {
        PerformanceMonitor::with_clock(config, clock).into()
    }

    /// Replaces the resource sampler (tests inject fixed values).
    pub fn with_resource_sampler(self, sampler: Arc<dyn ResourceSampler>) -> Self {
        self.inner.with_resource_sampler(sampler).into()
    }

    /// The synchronous monitor inside.
    pub fn into_inner(self) -> PerformanceMonitor {
        self.inner
    }

    /// See [`PerformanceMonitor::start_connection_tracking`].
    pub async fn start_connection_tracking(&self, connection_id: &str, info: ConnectionInfo) {
        self.inner.start_connection_tracking(connection_id, info);
    }

    /// See [`PerformanceMonitor::record_connection_established`].
    pub async fn record_connection_established(&self, connection_id: &str) {
        self.inner.record_connection_established(connection_id);
    }

    /// See [`PerformanceMonitor::record_connection_closed`].
    pub async fn record_connection_closed(&self, connection_id: &str) {
        self.inner.record_connection_closed(connection_id);
    }

    /// See [`PerformanceMonitor::stop_connection_tracking`].
    pub async fn stop_connection_tracking(&self, connection_id: &str) -> bool {
        self.inner.stop_connection_tracking(connection_id)
    }

    /// See [`PerformanceMonitor::record_message_processed`].
    pub async fn record_message_processed(&self, connection_id: &str, message: &WebSocketMessage) {
        self.inner.record_message_processed(connection_id, message);
    }

    /// See [`PerformanceMonitor::record_message_latency`].
    pub async fn record_message_latency(
        &self,
        connection_id: &str,
        message: &WebSocketMessage,
        latency: Duration,
    ) {
        self.inner
            .record_message_latency(connection_id, message, latency);
    }

    /// See [`PerformanceMonitor::calculate_throughput`].
    pub async fn calculate_throughput(&self, connection_id: &str) -> Option<ThroughputMetrics> {
        self.inner.calculate_throughput(connection_id)
    }

    /// See [`PerformanceMonitor::get_active_alerts`].
    pub async fn get_active_alerts(&self, connection_id: &str) -> Vec<PerformanceAlert> {
        self.inner.get_active_alerts(connection_id)
    }

    /// See [`PerformanceMonitor::record_resource_usage`].
    pub async fn record_resource_usage(&self, connection_id: &str) {
        self.inner.record_resource_usage(connection_id);
    }

    /// See [`PerformanceMonitor::generate_performance_report`].
    pub async fn generate_performance_report(
        &self,
        connection_id: &str,
    ) -> Option<PerformanceReport> {
        self.inner.generate_performance_report(connection_id)
    }

    /// See [`PerformanceMonitor::cleanup_old_metrics`].
    pub async fn cleanup_old_metrics(&self) -> usize {
        self.inner.cleanup_old_metrics()
    }

    /// See [`PerformanceMonitor::get_system_wide_metrics`].
    pub async fn get_system_wide_metrics(&self) -> SystemMetrics {
        self.inner.get_system_wide_metrics()
    }
}
