//! [`RateLimitExceeded`]: every refusal, with its kind and exact retry time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// The user is at its cap of concurrent connections.
    Connections,
    /// A message window is full.
    MessageWindow {
        /// The window's length.
        window: Duration,
    },
    /// The user is blocked after repeated violations.
    ViolationBackoff,
    /// The client IP made too many handshake attempts in its window.
    IpHandshakes,
    /// The client IP is backing off after failed handshakes.
    IpBackoff,
    /// A keyed or adaptive limit.
    Keyed,
    /// The shared store could not be reached and the policy is fail-closed.
    StoreUnavailable,
}

impl LimitKind {
    /// A short machine-readable name, e.g. `"message_window"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LimitKind::Connections => "connections",
            LimitKind::MessageWindow { .. } => "message_window",
            LimitKind::ViolationBackoff => "violation_backoff",
            LimitKind::IpHandshakes => "ip_handshakes",
            LimitKind::IpBackoff => "ip_backoff",
            LimitKind::Keyed => "keyed",
            LimitKind::StoreUnavailable => "store_unavailable",
        }
    }

    /// Whether this refusal is about messages (windows or violation backoff).
    pub fn is_message_limit(&self) -> bool {
        matches!(
            self,
            LimitKind::MessageWindow { .. } | LimitKind::ViolationBackoff
        )
    }
}

/// A request refused by a limit (legacy name `RateLimitExceededException`).
///
/// `retry_after` is exact: the same request made `retry_after` from the
/// moment of refusal is the earliest that would be admitted (assuming no
/// other request of the same key in between). It is `None` when waiting
/// alone cannot help (a connection cap: close a connection first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RateLimitExceeded {
    /// The limit that refused.
    pub kind: LimitKind,
    /// The limit's size (connections, messages per window, attempts).
    pub limit: u32,
    /// How long until the same request would be admitted.
    pub retry_after: Option<Duration>,
    /// The user id or client IP the limit applies to (shared with the
    /// limiter's own key, so refusing allocates nothing).
    pub key: Arc<str>,
}

/// Legacy name of [`RateLimitExceeded`].
pub type RateLimitExceededException = RateLimitExceeded;

impl fmt::Display for RateLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let limit = self.limit;
        match self.kind {
            LimitKind::Connections => write!(
                f,
                "connection limit of {limit} reached for user {key:?}: close a connection first"
            )?,
            LimitKind::MessageWindow { window } => write!(
                f,
                "message rate limit of {limit} per {window:?} exceeded for user {key:?}"
            )?,
            LimitKind::ViolationBackoff => write!(
                f,
                "message rate limit: user {key:?} is blocked after repeated violations"
            )?,
            LimitKind::IpHandshakes => write!(
                f,
                "handshake rate limit of {limit} attempts exceeded for client {key}"
            )?,
            LimitKind::IpBackoff => write!(
                f,
                "handshake backoff: client {key} is blocked after {limit} failed handshakes"
            )?,
            LimitKind::Keyed => write!(f, "rate limit of {limit} exceeded for {key:?}")?,
            LimitKind::StoreUnavailable => write!(
                f,
                "message rate limit store unavailable for user {key:?}; refusing (fail-closed)"
            )?,
        }
        if let Some(d) = self.retry_after {
            write!(f, "; retry after {:.3} s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// A failure of a [`RateLimitStore`](crate::RateLimitStore): the store
/// error shared by every wsc component.
pub use wsc_core::StoreError;
