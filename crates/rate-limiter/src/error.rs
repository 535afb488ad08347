//! [`RateLimitExceeded`]: every refusal, with its kind and exact retry time.

use std::fmt;
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
    /// The client IP sent too many frames in its minute (all its users
    /// together).
    IpMessages,
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
            LimitKind::IpMessages => "ip_messages",
            LimitKind::Keyed => "keyed",
            LimitKind::StoreUnavailable => "store_unavailable",
        }
    }

    /// Whether this refusal is about messages (windows or violation backoff).
    pub fn is_message_limit(&self) -> bool {
        matches!(
            self,
            LimitKind::MessageWindow { .. } | LimitKind::ViolationBackoff | LimitKind::IpMessages
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
    /// The user id or client IP the limit applies to.
    pub key: LimitKey,
}

/// A user id or client IP as the limiter keeps it: inline up to 24 bytes
/// (no allocation, and no pointer to follow when the map compares keys —
/// one cache miss fewer per decision with many users), on the heap beyond.
/// Reads as a `&str`.
///
/// ```
/// use wsc_rate_limiter::LimitKey;
/// let key = LimitKey::from("user-42");
/// assert_eq!(key, "user-42");
/// assert_eq!(key.len(), 7);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LimitKey(compact_str::CompactString);

impl LimitKey {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::ops::Deref for LimitKey {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl std::borrow::Borrow<str> for LimitKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for LimitKey {
    fn from(s: &str) -> Self {
        LimitKey(compact_str::CompactString::new(s))
    }
}

impl From<String> for LimitKey {
    fn from(s: String) -> Self {
        LimitKey(compact_str::CompactString::from(s))
    }
}

impl PartialEq<str> for LimitKey {
    fn eq(&self, other: &str) -> bool {
        self.0.as_str() == other
    }
}

impl PartialEq<&str> for LimitKey {
    fn eq(&self, other: &&str) -> bool {
        self.0.as_str() == *other
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
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
            LimitKind::IpMessages => write!(
                f,
                "message rate limit of {limit} per minute exceeded for client {key} (all its users)"
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
