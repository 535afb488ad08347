//! Cross-crate and end-to-end tests for wsc; the tests live in `tests/`, one
//! binary per area. This library holds helpers they share.
#![forbid(unsafe_code)]

use websocket_core::time::{ManualClock, Timestamp};

pub mod ag_ui;
pub mod fuzz;

/// A [`ManualClock`] standing at a fixed, readable instant
/// (2025-01-01T00:00:00Z), so test output is reproducible.
pub fn test_clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_micros(1_735_689_600_000_000))
}

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
