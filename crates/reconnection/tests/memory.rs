//! Idle bytes per session with 100 000 sessions, measured with a counting
//! global allocator (the `cap` crate): each session opened, attached and
//! then detached, with an empty replay buffer. One test in this binary.

use std::alloc::System;

use cap::Cap;
use wsc_core::ManualClock;
use wsc_reconnection::{SessionConfig, SessionRegistry};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

#[test]
fn idle_sessions_are_small() {
    const SESSIONS: usize = 100_000;
    let clock = ManualClock::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let before = ALLOCATOR.allocated();
    let registry = SessionRegistry::with_clock(SessionConfig::default(), clock.shared());
    rt.block_on(async {
        for _ in 0..SESSIONS {
            let a = registry.open("user-123").await.unwrap();
            registry.detach(&a.session_id, a.attachment).await.unwrap();
        }
    });
    let after = ALLOCATOR.allocated();
    let per_session = (after - before) as f64 / SESSIONS as f64;
    println!("measured {per_session:.0} idle bytes per session");
    assert_eq!(rt.block_on(registry.session_count()).unwrap(), SESSIONS);
    assert!(
        per_session < 1_024.0,
        "{per_session:.0} bytes per idle session"
    );
}
