//! The gateway's counters and their snapshot, [`GatewayStats`]. Imports no
//! other module of the crate: everything else writes here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// This gateway's ids of connections and runs: `{prefix}-{node}-{n}`, one
/// counter for all of them, the node tag telling gateways apart.
#[derive(Debug)]
pub(crate) struct Ids {
    node_tag: String,
    next: AtomicU64,
}

impl Ids {
    pub(crate) fn new(node_tag: String) -> Self {
        Ids {
            node_tag,
            next: AtomicU64::new(1),
        }
    }

    /// The next id with `prefix` (`conn`, `run`).
    pub(crate) fn next(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            self.node_tag,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Gateway-level counters (also in `/metrics` and `/api/stats`).
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) refused_handshakes: AtomicU64,
    pub(crate) at_capacity: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) redis_timeouts: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) resumes_refused: AtomicU64,
    pub(crate) runs: AtomicU64,
    pub(crate) runs_lost_with_gateway: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) slow_clients: AtomicU64,
    pub(crate) sessions_moved: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) local_sessions: AtomicU64,
    pub(crate) head_timeouts: AtomicU64,
    pub(crate) heads_too_large: AtomicU64,
    pub(crate) repeated_starts: AtomicU64,
    /// Whether the shared store (Redis) answered the last health check or
    /// call; always true without Redis.
    pub(crate) store_up: AtomicBool,
    /// Runs ended for breaking an AG-UI rule, per rule (in the order of
    /// `AgUiViolation::RULES`).
    pub(crate) agui_violations: [AtomicU64; AGUI_RULES],
}

/// How many AG-UI rules are counted.
const AGUI_RULES: usize = wsc_event_monitor::AgUiViolation::RULES.len();

/// A snapshot of the gateway's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GatewayStats {
    /// Connections accepted.
    pub connections: u64,
    /// Handshakes refused (401, 429, 503).
    pub refused_handshakes: u64,
    /// Connections and SSE streams refused because the gateway held as
    /// many as it may (503 `at_capacity`, see
    /// [`LimitsConfig::max_connections`](crate::LimitsConfig::max_connections)).
    pub at_capacity: u64,
    /// Connections shed as they were accepted because the process neared
    /// its open-file limit (503 `overloaded` written at once, then closed).
    pub connections_shed: u64,
    /// Client frames refused by the rate limiter.
    pub rate_limited: u64,
    /// Sessions resumed.
    pub resumes: u64,
    /// Runs whose gateway died before they ended, told to their session
    /// here (`agent_error {code: "gateway_lost"}`).
    pub runs_lost_with_gateway: u64,
    /// Resumes refused (a fresh session was started).
    pub resumes_refused: u64,
    /// Agent runs started.
    pub runs: u64,
    /// Frames sent to clients.
    pub frames_sent: u64,
    /// Client frames answered with an error.
    pub bad_frames: u64,
    /// Connections dropped because the client did not read fast enough
    /// (their sessions stay resumable).
    pub slow_clients: u64,
    /// Connections closed because another connection resumed their
    /// session (1013 "session moved").
    pub sessions_moved: u64,
    /// Redis calls that failed.
    pub redis_errors: u64,
    /// Redis calls that failed because the reply did not come within the
    /// reply timeout (counted in `redis_errors` too; alone they do not
    /// make Redis unreachable).
    pub redis_timeouts: u64,
    /// Sessions started in this node's memory while Redis was unreachable.
    pub local_fallback_sessions: u64,
    /// Connections closed for not sending a complete request head within
    /// [`HttpConfig::handshake_timeout`](crate::HttpConfig::handshake_timeout) (slow or silent clients).
    pub head_timeouts: u64,
    /// Request heads refused with 431 (over
    /// [`HttpConfig::max_header_bytes`](crate::HttpConfig::max_header_bytes) or too many headers).
    pub heads_too_large: u64,
    /// `start_agent` frames repeating the `message_id` of a run already
    /// started in the session (a client unsure its start arrived); no
    /// second run was started.
    pub repeated_starts: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            connections: AtomicU64::new(0),
            refused_handshakes: AtomicU64::new(0),
            at_capacity: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            redis_timeouts: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            runs_lost_with_gateway: AtomicU64::new(0),
            resumes_refused: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            slow_clients: AtomicU64::new(0),
            sessions_moved: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            local_sessions: AtomicU64::new(0),
            head_timeouts: AtomicU64::new(0),
            heads_too_large: AtomicU64::new(0),
            repeated_starts: AtomicU64::new(0),
            store_up: AtomicBool::new(true),
            agui_violations: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    /// Counts a run ended for breaking AG-UI's rule `rule` (a name of
    /// `AgUiViolation::RULES`; others are not counted).
    pub(crate) fn agui_violation(&self, rule: &str) {
        let rules = wsc_event_monitor::AgUiViolation::RULES;
        if let Some(i) = rules.iter().position(|r| *r == rule) {
            self.agui_violations[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each AG-UI rule with the runs ended for breaking it.
    pub(crate) fn agui_violations(&self) -> Vec<(&'static str, u64)> {
        wsc_event_monitor::AgUiViolation::RULES
            .into_iter()
            .zip(&self.agui_violations)
            .map(|(rule, n)| (rule, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the shared store answered last.
    pub(crate) fn store_is_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    /// A store reply timed out: counted (as an error, and as a timeout),
    /// the store not judged by it.
    pub(crate) fn store_slow(&self) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.redis_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A store call failed: the store is presumably down until the next
    /// health check says otherwise. Returns whether it was up until now.
    pub(crate) fn store_failed(&self) -> bool {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.store_up.swap(false, Ordering::Relaxed)
    }

    /// A health check succeeded. Returns whether the store was down.
    pub(crate) fn store_answered(&self) -> bool {
        !self.store_up.swap(true, Ordering::Relaxed)
    }

    /// A snapshot.
    pub(crate) fn stats(&self) -> GatewayStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayStats {
            connections: get(&self.connections),
            refused_handshakes: get(&self.refused_handshakes),
            at_capacity: get(&self.at_capacity),
            connections_shed: get(&self.shed),
            redis_timeouts: get(&self.redis_timeouts),
            rate_limited: get(&self.rate_limited),
            resumes: get(&self.resumes),
            runs_lost_with_gateway: get(&self.runs_lost_with_gateway),
            resumes_refused: get(&self.resumes_refused),
            runs: get(&self.runs),
            frames_sent: get(&self.frames_sent),
            bad_frames: get(&self.bad_frames),
            slow_clients: get(&self.slow_clients),
            sessions_moved: get(&self.sessions_moved),
            redis_errors: get(&self.redis_errors),
            local_fallback_sessions: get(&self.local_sessions),
            head_timeouts: get(&self.head_timeouts),
            heads_too_large: get(&self.heads_too_large),
            repeated_starts: get(&self.repeated_starts),
        }
    }
}
