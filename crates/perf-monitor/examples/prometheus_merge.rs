//! The performance monitor's metrics merged into your application's own
//! `prometheus-client` registry, next to your metrics, in one scrape.
//!
//! `cargo run -p wsc-perf-monitor --example prometheus_merge`

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::json;
use wsc_core::{Clock, MessageType, SystemClock, WebSocketMessage};
use wsc_perf_monitor::{
    ConnectionInfo, MonitorCollector, PerformanceMonitor, PerformanceMonitorConfig,
    ProcessCollector,
};

fn main() -> Result<(), std::fmt::Error> {
    let monitor = Arc::new(PerformanceMonitor::new(PerformanceMonitorConfig::default()));

    // Your application's registry and one metric of its own.
    let mut registry = Registry::default();
    let orders = Counter::<u64>::default();
    registry.register("shop_orders", "Orders placed", orders.clone());
    // The monitor's metrics (and the process's) join it.
    registry.register_collector(Box::new(MonitorCollector::new(monitor.clone())));
    registry.register_collector(Box::new(ProcessCollector));

    // Some traffic: one connection, three messages sent 5 ms ago.
    monitor.start_connection_tracking("conn-1", ConnectionInfo::new("user-1"));
    monitor.record_connection_established("conn-1");
    for _ in 0..3 {
        let sent = SystemClock.now() - std::time::Duration::from_millis(5);
        let msg = WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi"}));
        monitor.record_message_processed("conn-1", &msg.with_timestamp(sent));
    }
    orders.inc();

    let mut scrape = String::new();
    encode(&mut scrape, &registry)?;
    for line in scrape.lines().filter(|l| {
        l.starts_with("shop_")
            || l.starts_with("wsc_messages")
            || l.starts_with("wsc_message_latency_seconds_count")
    }) {
        println!("{line}");
    }
    assert!(scrape.contains("shop_orders_total 1"));
    assert!(scrape.contains("wsc_messages_processed_total 3"));
    Ok(())
}
