//! PerformanceMonitor behaviour: latency sources, alerts with hysteresis,
//! throughput windows, resources, reports, cleanup, Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use wsc_core::{Clock, ManualClock, MessageType, Timestamp, WebSocketMessage};
use wsc_perf_monitor::{
    AlertEvent, AlertSeverity, AlertType, ConnectionInfo, PerformanceMonitor,
    PerformanceMonitorConfig, PerformanceRating, PerformanceThresholds, ResourceSampler,
    ResourceUsage,
};

fn setup(config: PerformanceMonitorConfig) -> (PerformanceMonitor, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_unix_micros(1_735_689_600_000_000));
    (
        PerformanceMonitor::with_clock(config, clock.shared()),
        clock,
    )
}

fn msg() -> WebSocketMessage {
    WebSocketMessage::new(MessageType::UserMessage, json!({}))
}

#[tokio::test]
async fn latency_sources_in_order_of_preference() {
    let (m, clock) = setup(PerformanceMonitorConfig::default());
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    let now = clock.now();
    // message.timestamp wins over the payload.
    let a = msg()
        .with_timestamp(now - Duration::from_millis(40))
        .with_message_id("m1");
    let mut a = a;
    a.payload = json!({"client_timestamp": 0});
    m.record_message_processed("c", &a);
    // payload.client_timestamp as RFC 3339 (2025-01-01T00:00:00Z minus 250 ms).
    let b = WebSocketMessage::new(
        MessageType::Chat,
        json!({"client_timestamp": "2024-12-31T23:59:59.750Z"}),
    );
    m.record_message_processed("c", &b);
    // ... with an offset, and as Unix seconds (number and string).
    let c = WebSocketMessage::new(
        MessageType::Chat,
        json!({"client_timestamp": "2025-01-01T00:59:59.900+01:00"}),
    );
    m.record_message_processed("c", &c);
    let d = WebSocketMessage::new(
        MessageType::Chat,
        json!({"client_timestamp": 1_735_689_599.5}),
    );
    m.record_message_processed("c", &d);
    let e = WebSocketMessage::new(
        MessageType::Chat,
        json!({"client_timestamp": "1735689599.8"}),
    );
    m.record_message_processed("c", &e);
    // None: counted without a sample. Future: skew.
    m.record_message_processed(
        "c",
        &WebSocketMessage::new(MessageType::Chat, json!({"client_timestamp": "soon"})),
    );
    m.record_message_processed("c", &msg().with_timestamp(now + Duration::from_secs(2)));

    let metrics = m.connection_metrics("c").unwrap();
    let samples: Vec<f64> = metrics
        .latency_measurements
        .iter()
        .map(|l| l.latency_ms)
        .collect();
    assert_eq!(samples, [40.0, 250.0, 100.0, 500.0, 200.0]);
    assert_eq!(
        metrics.latency_measurements[0].message_id.as_deref(),
        Some("m1")
    );
    assert_eq!(metrics.message_count, 7);
    assert_eq!(metrics.latency_missing, 1);
    assert_eq!(metrics.latency_skewed, 1);
    assert_eq!(metrics.latency_samples, 5);
    assert_eq!(metrics.max_latency_ms, 500.0);
    assert_eq!(metrics.min_latency_ms, 40.0);
}

#[tokio::test]
async fn one_alert_per_kind_updated_in_place_and_resolved_after_hysteresis() {
    let (m, clock) = setup(PerformanceMonitorConfig::default()); // 1 000 ms, 30 s
    let mut rx = m.subscribe();
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    let lat = |ms| Duration::from_millis(ms);
    m.record_message_latency("c", &msg(), lat(1_500));
    m.record_message_latency("c", &msg(), lat(1_200));
    let alerts = m.get_active_alerts("c");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, AlertSeverity::Warning);
    assert_eq!(alerts[0].value_measured, 1_200.0);
    m.record_message_latency("c", &msg(), lat(2_500));
    assert_eq!(
        m.get_active_alerts("c")[0].severity,
        AlertSeverity::Critical
    );
    // Back under the threshold, but not yet for 30 s.
    clock.advance(Duration::from_secs(20));
    m.record_message_latency("c", &msg(), lat(10));
    assert_eq!(m.get_active_alerts("c").len(), 1);
    clock.advance(Duration::from_secs(10));
    m.record_message_latency("c", &msg(), lat(10));
    assert!(m.get_active_alerts("c").is_empty());
    let events: Vec<AlertEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(matches!(&events[0], AlertEvent::Raised(a) if a.severity == AlertSeverity::Warning));
    assert!(matches!(&events[1], AlertEvent::Updated(a) if a.severity == AlertSeverity::Critical));
    assert!(matches!(&events[2], AlertEvent::Resolved(a) if a.resolved_at.is_some()));
    assert_eq!(events.len(), 3);
    assert_eq!(m.alert_history().len(), 1);
}

#[tokio::test]
async fn slow_handshake_low_throughput_and_error_rate() {
    let (m, clock) = setup(PerformanceMonitorConfig {
        thresholds: PerformanceThresholds {
            min_throughput_messages_per_second: 1.0,
            ..Default::default()
        },
        ..Default::default()
    });
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    clock.advance(Duration::from_secs(6));
    m.record_connection_established("c");
    let kinds = |alerts: Vec<wsc_perf_monitor::PerformanceAlert>| {
        let mut k: Vec<AlertType> = alerts.iter().map(|a| a.alert_type).collect();
        k.sort_by_key(|k| k.as_str());
        k
    };
    assert_eq!(kinds(m.get_active_alerts("c")), [AlertType::SlowConnection]);
    // No throughput alert before warm-up with traffic.
    for _ in 0..10 {
        m.record_message_processed("c", &msg());
    }
    assert_eq!(kinds(m.get_active_alerts("c")), [AlertType::SlowConnection]);
    // Traffic stops: after the warm-up the window rate falls under 1 msg/s.
    clock.advance(Duration::from_secs(40));
    let k = kinds(m.get_active_alerts("c"));
    assert!(k.contains(&AlertType::LowThroughput), "{k:?}");
    assert!(
        !k.contains(&AlertType::SlowConnection),
        "resolved after hysteresis"
    );
    // Errors over 5 % of messages.
    for _ in 0..2 {
        m.record_error("c");
    }
    let k = kinds(m.get_active_alerts("c"));
    assert!(k.contains(&AlertType::HighErrorRate), "{k:?}");
}

#[derive(Debug)]
struct FixedSampler(AtomicU64);

impl ResourceSampler for FixedSampler {
    fn sample(&self) -> ResourceUsage {
        let mb = self.0.load(Ordering::Relaxed) as f64;
        ResourceUsage {
            memory_mb: mb,
            cpu_percent: mb / 10.0,
        }
    }
}

#[tokio::test]
async fn resource_alerts_from_an_injected_sampler() {
    let sampler = Arc::new(FixedSampler(AtomicU64::new(100)));
    let (m, clock) = setup(PerformanceMonitorConfig::default());
    let m = m.with_resource_sampler(sampler.clone());
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    m.record_resource_usage("c");
    assert!(m.get_active_alerts("c").is_empty());
    sampler.0.store(2_500, Ordering::Relaxed); // 2 500 MB, 250 % CPU
    m.record_resource_usage("c");
    let alerts = m.get_active_alerts("c");
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.severity == AlertSeverity::Critical));
    let metrics = m.connection_metrics("c").unwrap();
    assert_eq!(metrics.current_memory_usage_mb, 2_500.0);
    sampler.0.store(100, Ordering::Relaxed);
    clock.advance(Duration::from_secs(31));
    m.record_resource_usage("c");
    assert!(m.get_active_alerts("c").is_empty());
}

#[tokio::test]
async fn report_ratings_follow_the_documented_cut_offs() {
    let (m, _) = setup(PerformanceMonitorConfig::default());
    for (id, latency_ms, rating) in [
        ("excellent", 200, PerformanceRating::Excellent),
        ("good", 400, PerformanceRating::Good),
        ("fair", 900, PerformanceRating::Fair),
        ("poor", 1_100, PerformanceRating::Poor),
    ] {
        m.start_connection_tracking(id, ConnectionInfo::new("u"));
        for _ in 0..20 {
            m.record_message_latency(id, &msg(), Duration::from_millis(latency_ms));
        }
        let report = m.generate_performance_report(id).unwrap();
        assert_eq!(report.performance_rating, rating, "{id}");
        assert_eq!(report.total_messages, 20);
        if rating >= PerformanceRating::Fair {
            assert!(!report.optimization_recommendations.is_empty(), "{id}");
        }
    }
}

#[tokio::test]
async fn cleanup_and_stop_free_state() {
    let (m, clock) = setup(PerformanceMonitorConfig {
        max_connections: 2,
        ..Default::default()
    });
    m.start_connection_tracking("a", ConnectionInfo::new("u"));
    m.start_connection_tracking("b", ConnectionInfo::new("u"));
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    assert_eq!(m.connection_count(), 2, "bounded");
    for _ in 0..3 {
        m.record_message_latency("a", &msg(), Duration::from_millis(5));
    }
    clock.advance(Duration::from_secs(61));
    m.record_message_latency("a", &msg(), Duration::from_millis(5));
    m.record_connection_established("b");
    m.record_connection_closed("b");
    clock.advance(Duration::from_secs(1));
    assert_eq!(m.cleanup_old_metrics(), 3, "three old samples");
    assert_eq!(
        m.connection_metrics("a")
            .unwrap()
            .latency_measurements
            .len(),
        1
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        m.cleanup_old_metrics(),
        2,
        "one sample and the closed connection"
    );
    assert!(m.connection_metrics("b").is_none());
    assert!(m.stop_connection_tracking("a"));
    assert!(!m.stop_connection_tracking("a"));
    assert_eq!(m.connection_count(), 0);
}

#[tokio::test]
async fn prometheus_output_parses_with_a_real_parser() {
    let (m, _) = setup(PerformanceMonitorConfig::default());
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    m.record_connection_established("c");
    for ms in [2u64, 30, 700, 1_500] {
        m.record_message_latency("c", &msg(), Duration::from_millis(ms));
    }
    m.record_bytes("c", 120, 40);
    let text = m.render_prometheus();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .collect::<Vec<_>>()
    };
    let messages = find("wsc_messages_processed_total");
    assert!(matches!(messages[0].value, prometheus_parse::Value::Counter(v) if v == 4.0));
    let hist = find("wsc_message_latency_seconds");
    match &hist[0].value {
        prometheus_parse::Value::Histogram(buckets) => {
            let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
            assert_eq!(at(0.0025), 1.0);
            assert_eq!(at(0.05), 2.0);
            assert_eq!(at(1.0), 3.0);
            assert_eq!(at(f64::INFINITY), 4.0);
        }
        other => panic!("expected a histogram, got {other:?}"),
    }
    let alerts = find("wsc_alerts_raised_total");
    assert!(
        alerts
            .iter()
            .any(|s| s.labels.get("kind") == Some("high_latency")
                && matches!(s.value, prometheus_parse::Value::Counter(v) if v == 1.0))
    );
    assert!(scrape.docs.contains_key("wsc_active_connections"));
    let sent = find("wsc_bytes_total");
    assert!(
        sent.iter()
            .any(|s| s.labels.get("direction") == Some("sent")
                && matches!(s.value, prometheus_parse::Value::Counter(v) if v == 120.0))
    );
}

#[tokio::test]
async fn background_evaluator_raises_low_throughput_on_the_injected_clock() {
    let (m, clock) = setup(PerformanceMonitorConfig::default());
    let m = Arc::new(m);
    let mut rx = m.subscribe();
    m.start_connection_tracking("c", ConnectionInfo::new("u"));
    for _ in 0..10 {
        m.record_message_processed("c", &msg());
    }
    let handle = m.spawn_evaluator(Duration::from_secs(5));
    let raised = loop {
        if let AlertEvent::Raised(a) = rx.recv().await.unwrap() {
            break a;
        }
    };
    handle.stop().await;
    assert_eq!(raised.alert_type, AlertType::LowThroughput);
    assert!(clock.sleeps().iter().all(|d| *d == Duration::from_secs(5)));
}

proptest! {
    /// The throughput window agrees with a reference count of arrivals per
    /// second over the last `window` seconds, and the peak with the busiest
    /// second.
    #[test]
    fn throughput_window_arithmetic(
        window in 1u64..10,
        gaps in prop::collection::vec(0u64..1_500_000, 1..80),
        tail in 0u64..12_000_000,
    ) {
        let (m, clock) = setup(PerformanceMonitorConfig {
            metrics_window: Duration::from_secs(window),
            ..Default::default()
        });
        m.start_connection_tracking("c", ConnectionInfo::new("u"));
        let start = clock.now().as_unix_micros();
        let mut arrivals = Vec::new();
        for g in gaps {
            clock.advance(Duration::from_micros(g));
            m.record_message_processed("c", &msg());
            arrivals.push(clock.now().as_unix_micros());
        }
        clock.advance(Duration::from_micros(tail));
        let now = clock.now().as_unix_micros();
        let t = m.calculate_throughput("c").unwrap();
        let sec = |us: i64| us.div_euclid(1_000_000);
        let in_window = arrivals.iter().filter(|a| sec(**a) > sec(now) - window as i64).count() as f64;
        let period = (now - start) as f64 / 1e6;
        let span = period.clamp(1e-9, window as f64);
        if period > 0.0 {
            prop_assert!((t.window_messages_per_second - in_window / span).abs() < 1e-6);
            prop_assert!((t.messages_per_second - arrivals.len() as f64 / period).abs() < 1e-6);
        }
        let mut per_second = std::collections::BTreeMap::new();
        for a in &arrivals {
            *per_second.entry(sec(*a)).or_insert(0u32) += 1;
        }
        let busiest = f64::from(*per_second.values().max().unwrap());
        prop_assert_eq!(t.peak_messages_per_second, busiest.max(t.messages_per_second));
        prop_assert_eq!(t.total_messages, arrivals.len() as u64);
    }

    /// Alert raise, update and resolve follow a reference state machine.
    #[test]
    fn alerts_follow_the_hysteresis_model(
        steps in prop::collection::vec((0u64..20_000, 0u64..3_000), 1..60),
    ) {
        let (m, clock) = setup(PerformanceMonitorConfig::default());
        let mut rx = m.subscribe();
        m.start_connection_tracking("c", ConnectionInfo::new("u"));
        let (thr, hyst) = (1_000.0, 30_000_000i64);
        let mut active: Option<(i64, f64)> = None; // (last breach, value)
        let (mut raised, mut resolved) = (0, 0);
        for (advance_ms, latency_ms) in steps {
            clock.advance(Duration::from_millis(advance_ms));
            let now = clock.now().as_unix_micros();
            m.record_message_latency("c", &msg(), Duration::from_millis(latency_ms));
            let l = latency_ms as f64;
            if l > thr {
                if active.is_none() { raised += 1; }
                active = Some((now, l));
            } else if let Some((last, _)) = active
                && now - last >= hyst {
                    active = None;
                    resolved += 1;
                }
            let seen = m.connection_metrics("c").unwrap();
            prop_assert_eq!(seen.message_count as usize, seen.latency_samples as usize);
            let events: Vec<AlertEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
            for e in &events {
                match e {
                    AlertEvent::Raised(a) if a.alert_type == AlertType::HighLatency => raised -= 1,
                    AlertEvent::Resolved(a) if a.alert_type == AlertType::HighLatency => resolved -= 1,
                    _ => {}
                }
            }
            prop_assert_eq!((raised, resolved), (0, 0));
            // Compare without re-evaluating (get_active_alerts would).
            let report_alerts = m.generate_performance_report("c").unwrap().active_alerts;
            let latency_alert = report_alerts.iter().find(|a| a.alert_type == AlertType::HighLatency);
            match (active, latency_alert) {
                (None, None) => {}
                (Some((_, v)), Some(a)) => {
                    prop_assert_eq!(a.value_measured, v);
                    let sev = if v > 2.0 * thr { AlertSeverity::Critical } else { AlertSeverity::Warning };
                    prop_assert_eq!(a.severity, sev);
                }
                (model, seen) => prop_assert!(false, "model {:?} vs {:?}", model, seen),
            }
        }
    }
}
