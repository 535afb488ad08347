//! Validates a recorded stream of agent frames (NDJSON, one server frame
//! per line, as a client or the gateway's logs capture them): every run is
//! tracked by its `run_id` and checked for completeness and order.
//!
//! `cargo run -p wsc-event-monitor --example validate_recording [FILE]`
//! (default: the recording next to this example, with two interleaved
//! runs: `run-a` is sound, `run-b` completes before its tool does).

use std::collections::BTreeSet;

use wsc_core::parse_server_frame;
use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig};

const BUNDLED: &str = include_str!("recorded_run.ndjson");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recording = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => BUNDLED.to_owned(),
    };
    let monitor = EventMonitor::new(EventMonitorConfig::default());
    let mut runs = BTreeSet::new();
    for (n, line) in recording
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let frame = parse_server_frame(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let Some(run) = frame.payload["run_id"].as_str().map(str::to_owned) else {
            continue; // not a run's event (a pong, an ack)
        };
        if runs.insert(run.clone()) {
            monitor.start_session_tracking(&run, AgentSession::new("recorded").with_run_id(&run));
        }
        monitor.record_event(&run, frame)?;
    }
    let mut failed = 0;
    for run in &runs {
        match monitor.validate_session_completion(run) {
            Ok(true) => println!("{run}: complete, in order"),
            Ok(false) => println!("{run}: still in flight"),
            Err(e) => {
                failed += 1;
                println!("{run}: {e}");
            }
        }
    }
    println!(
        "{} runs, {failed} failed; health: {:?}",
        runs.len(),
        monitor.check_health().status
    );
    if std::env::args().nth(1).is_none() {
        assert_eq!(failed, 1, "the bundled recording has one broken run");
    }
    Ok(())
}
