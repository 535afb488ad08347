//! The legacy performance-monitor behaviours, through the facade's legacy names.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use websocket_core::performance_monitor_core::{
    AlertSeverity, AlertType, ConnectionInfo, LatencyMeasurement, PerformanceAlert,
    PerformanceMetrics, PerformanceMonitor, PerformanceMonitorConfig, PerformanceRating,
    PerformanceReport, PerformanceThresholds, ResourceSampler, ResourceUsage, SystemMetrics,
    ThroughputMetrics, WebSocketPerformanceMonitor,
};
use websocket_core::time::{Clock, ManualClock, SharedClock};
use websocket_core::types::{MessageType, WebSocketMessage};

fn monitor() -> (WebSocketPerformanceMonitor, ManualClock) {
    let clock = ManualClock::default();
    let shared: SharedClock = clock.shared();
    (
        WebSocketPerformanceMonitor::with_clock(PerformanceMonitorConfig::default(), shared),
        clock,
    )
}

fn message() -> WebSocketMessage {
    WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi"}))
}

#[tokio::test]
async fn connection_time_is_measured() {
    let (m, clock) = monitor();
    m.start_connection_tracking("c1", ConnectionInfo::new("user-1"))
        .await;
    clock.advance(Duration::from_millis(120));
    m.record_connection_established("c1").await;
    let metrics: PerformanceMetrics = m.connection_metrics("c1").unwrap();
    assert_eq!(metrics.connection_time_ms, Some(120.0));
    assert!(metrics.is_connected);
    assert_eq!(metrics.user_id, "user-1");
}

#[tokio::test]
async fn latency_from_message_timestamps() {
    let (m, clock) = monitor();
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    for delay in [50u64, 100, 150] {
        let sent = clock.now() - Duration::from_millis(delay);
        m.record_message_processed("c1", &message().with_timestamp(sent))
            .await;
    }
    let metrics = m.connection_metrics("c1").unwrap();
    assert_eq!(metrics.message_count, 3);
    let lat: Vec<LatencyMeasurement> = metrics.latency_measurements;
    assert_eq!(
        lat.iter().map(|l| l.latency_ms).collect::<Vec<_>>(),
        [50.0, 100.0, 150.0]
    );
    assert_eq!(metrics.average_latency_ms, 100.0);
    assert_eq!(metrics.min_latency_ms, 50.0);
    assert_eq!(metrics.max_latency_ms, 150.0);
}

#[tokio::test]
async fn throughput_of_twenty_messages_one_ms_apart() {
    let (m, clock) = monitor();
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    for _ in 0..20 {
        clock.advance(Duration::from_millis(1));
        m.record_message_processed("c1", &message()).await;
    }
    let t: ThroughputMetrics = m.calculate_throughput("c1").await.unwrap();
    assert_eq!(t.total_messages, 20);
    assert!(t.messages_per_second > 100.0, "{t:?}");
    assert!((t.measurement_period_seconds - 0.020).abs() < 1e-9);
    assert!(t.peak_messages_per_second >= t.messages_per_second);
}

#[tokio::test]
async fn high_latency_alert_at_1500_ms() {
    let (m, _) = monitor();
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    m.record_message_latency("c1", &message(), Duration::from_millis(1500))
        .await;
    let alerts: Vec<PerformanceAlert> = m.get_active_alerts("c1").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alert_type, AlertType::HighLatency);
    assert_eq!(alerts[0].alert_type.as_str(), "high_latency");
    assert_eq!(alerts[0].severity, AlertSeverity::Warning);
    assert_eq!(alerts[0].severity.as_str(), "warning");
    assert_eq!(alerts[0].value_measured, 1500.0);
    assert_eq!(alerts[0].threshold_exceeded, 1000.0);
    assert_eq!(alerts[0].connection_id, "c1");
}

struct Calm;

impl ResourceSampler for Calm {
    fn sample(&self) -> ResourceUsage {
        ResourceUsage {
            memory_mb: 256.0,
            cpu_percent: 12.5,
        }
    }
}

#[tokio::test]
async fn resource_usage_without_alerts() {
    let (m, _) = monitor();
    let m = m.with_resource_sampler(Arc::new(Calm));
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    m.record_resource_usage("c1").await;
    let metrics = m.connection_metrics("c1").unwrap();
    assert_eq!(metrics.current_memory_usage_mb, 256.0);
    assert_eq!(metrics.current_cpu_usage_percent, 12.5);
    assert!(m.get_active_alerts("c1").await.is_empty());
}

#[tokio::test]
async fn the_default_sampler_reads_the_real_process() {
    let m = PerformanceMonitor::new(PerformanceMonitorConfig::default());
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    m.record_resource_usage("c1").await;
    let metrics = m.connection_metrics("c1").unwrap();
    assert!(metrics.current_memory_usage_mb > 1.0, "{metrics:?}");
}

#[tokio::test]
async fn report_with_rating() {
    let (m, clock) = monitor();
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    for _ in 0..10 {
        clock.advance(Duration::from_millis(100));
        m.record_message_latency("c1", &message(), Duration::from_millis(20))
            .await;
    }
    let r: PerformanceReport = m.generate_performance_report("c1").await.unwrap();
    assert_eq!(r.total_messages, 10);
    assert_eq!(r.performance_rating, PerformanceRating::Excellent);
    assert!((r.average_latency_ms - 20.0).abs() < 0.5);
    assert!(r.connection_duration_minutes > 0.0);
    assert!(r.throughput_messages_per_second > 9.0);
    assert!(m.generate_performance_report("nope").await.is_none());
}

#[tokio::test]
async fn three_connections_are_independent() {
    let (m, _) = monitor();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        m.start_connection_tracking(id, ConnectionInfo::new(format!("u{i}")))
            .await;
        for _ in 0..=i {
            m.record_message_latency(id, &message(), Duration::from_millis(10 * (i as u64 + 1)))
                .await;
        }
    }
    assert_eq!(m.connection_count(), 3);
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let metrics = m.connection_metrics(id).unwrap();
        assert_eq!(metrics.message_count, i as u64 + 1);
        assert_eq!(metrics.average_latency_ms, 10.0 * (i as f64 + 1.0));
    }
}

#[tokio::test]
async fn cleanup_drops_old_samples() {
    let (m, clock) = monitor();
    m.start_connection_tracking("c1", ConnectionInfo::new("u"))
        .await;
    m.record_message_latency("c1", &message(), Duration::from_millis(5))
        .await;
    clock.advance(Duration::from_secs(120));
    assert_eq!(m.cleanup_old_metrics().await, 1);
    let metrics = m.connection_metrics("c1").unwrap();
    assert!(metrics.latency_measurements.is_empty());
    assert_eq!(metrics.message_count, 1, "counts survive cleanup");
}

#[tokio::test]
async fn system_wide_metrics_find_the_slow_connection() {
    let (m, _) = monitor();
    for id in ["fast-1", "fast-2", "fast-3", "slow"] {
        m.start_connection_tracking(id, ConnectionInfo::new("u"))
            .await;
        m.record_connection_established(id).await;
        let ms = if id == "slow" { 2_000 } else { 20 };
        for _ in 0..10 {
            m.record_message_latency(id, &message(), Duration::from_millis(ms))
                .await;
        }
    }
    let s: SystemMetrics = m.get_system_wide_metrics().await;
    assert_eq!(s.total_active_connections, 4);
    assert_eq!(s.total_messages_processed, 40);
    assert!((s.average_system_latency_ms - 515.0).abs() < 1.0, "{s:?}");
    assert_eq!(s.performance_outliers.len(), 1);
    assert_eq!(s.performance_outliers[0].connection_id, "slow");
    assert!(s.performance_outliers[0].average_latency_ms > 1_900.0);
}

/// The legacy package's signatures, called as legacy code calls them.
#[allow(dead_code)]
fn contract_compiles(m: &WebSocketPerformanceMonitor, msg: &WebSocketMessage) {
    let _: fn(PerformanceMonitorConfig) -> WebSocketPerformanceMonitor =
        WebSocketPerformanceMonitor::new;
    let _: fn(PerformanceMonitorConfig, SharedClock) -> WebSocketPerformanceMonitor =
        WebSocketPerformanceMonitor::with_clock;
    let _: &PerformanceMonitorConfig = m.config();
    let _: &PerformanceThresholds = m.thresholds();
    let _: usize = m.connection_count();
    let _: Option<PerformanceMetrics> = m.connection_metrics("c");
    let _: String = m.render_prometheus();
    let PerformanceThresholds {
        max_message_latency_ms: _,
        max_connection_time_ms: _,
        min_throughput_messages_per_second: _,
        max_memory_usage_mb: _,
        max_cpu_usage_percent: _,
        ..
    } = PerformanceThresholds::default();
    let PerformanceMonitorConfig {
        thresholds: _,
        metrics_window: _,
        alert_enabled: _,
        detailed_tracking: _,
        auto_cleanup_enabled: _,
        ..
    } = PerformanceMonitorConfig::default();
    fn is_send<T: Send>(_: &T) {}
    is_send(&m.start_connection_tracking("c", ConnectionInfo::new("u")));
    is_send(&m.record_connection_established("c"));
    is_send(&m.record_message_processed("c", msg));
    is_send(&m.record_message_latency("c", msg, Duration::ZERO));
    is_send(&m.calculate_throughput("c"));
    is_send(&m.get_active_alerts("c"));
    is_send(&m.record_resource_usage("c"));
    is_send(&m.generate_performance_report("c"));
    is_send(&m.cleanup_old_metrics());
    is_send(&m.get_system_wide_metrics());
    fn shareable<T: Send + Sync>() {}
    shareable::<WebSocketPerformanceMonitor>();
    let _: PerformanceMonitor = PerformanceMonitor::new(PerformanceMonitorConfig::default())
        .with_resource_sampler(Arc::new(Calm));
    let t = PerformanceThresholds::default();
    assert!(t.clone() == t);
}
