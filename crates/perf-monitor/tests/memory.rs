//! Bytes per tracked connection with the default configuration, measured
//! with a counting global allocator (the `cap` crate): 10 000 connections,
//! each with more messages (with ids) than the recent-sample ring holds.
//! And 10 000 idle connections (tracked, no message yet). The tests run one
//! at a time (a lock), so nothing else allocates meanwhile.

use std::alloc::System;
use std::time::Duration;

use cap::Cap;
use serde_json::json;
use wsc_core::{ManualClock, MessageType, WebSocketMessage};
use wsc_perf_monitor::{ConnectionInfo, PerformanceMonitor, PerformanceMonitorConfig};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The tests measure one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn an_idle_connection_costs_at_most_1_kib() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CONNECTIONS: usize = 10_000;
    let ids: Vec<String> = (0..CONNECTIONS).map(|i| format!("conn-{i:06}")).collect();
    let clock = ManualClock::default();
    let before = ALLOCATOR.allocated();
    let monitor =
        PerformanceMonitor::with_clock(PerformanceMonitorConfig::default(), clock.shared());
    for id in &ids {
        monitor.start_connection_tracking(id, ConnectionInfo::new("user"));
        monitor.record_connection_established(id);
    }
    let per_connection = (ALLOCATOR.allocated() - before) as f64 / CONNECTIONS as f64;
    println!("measured {per_connection:.0} bytes per idle connection");
    counts_what_it_holds(&monitor, per_connection, CONNECTIONS);
    assert!(
        per_connection <= 1024.0,
        "{per_connection:.0} bytes per idle connection"
    );
    drop(monitor);
}

#[test]
fn a_connection_costs_at_most_8_kib_with_the_default_config() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CONNECTIONS: usize = 10_000;
    let ids: Vec<String> = (0..CONNECTIONS).map(|i| format!("conn-{i:06}")).collect();
    let messages: Vec<WebSocketMessage> = (0..60)
        .map(|i| {
            WebSocketMessage::new(MessageType::Chat, json!({})).with_message_id(format!("m-{i:06}"))
        })
        .collect();
    let clock = ManualClock::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let before = ALLOCATOR.allocated();
    let monitor =
        PerformanceMonitor::with_clock(PerformanceMonitorConfig::default(), clock.shared());
    rt.block_on(async {
        for id in &ids {
            monitor.start_connection_tracking(id, ConnectionInfo::new("user"));
            for m in &messages {
                monitor.record_message_latency(id, m, Duration::from_millis(12));
            }
        }
    });
    let after = ALLOCATOR.allocated();
    let per_connection = (after - before) as f64 / CONNECTIONS as f64;
    println!(
        "measured {per_connection:.0} bytes per connection (fixed part by the monitor's own count: {})",
        monitor.bytes_per_connection()
    );
    assert!(
        per_connection <= 8192.0,
        "{per_connection:.0} bytes per connection"
    );
    counts_what_it_holds(&monitor, per_connection, CONNECTIONS);
    drop(monitor);
}

/// `state_bytes` (what `/metrics` exports) agrees with the allocator: at
/// most the bytes measured, and short of them by no more than the table's
/// spare room (its slots are allocated in powers of two).
fn counts_what_it_holds(monitor: &PerformanceMonitor, measured: f64, connections: usize) {
    let counted = monitor.state_bytes() as f64 / connections as f64;
    println!("state_bytes: {counted:.0} bytes per connection");
    assert!(
        counted <= measured && counted >= measured * 0.8,
        "state_bytes says {counted:.0} bytes per connection, the allocator {measured:.0}"
    );
}
