//! [`StoreError`]: the failure of any pluggable store (rate-limit windows,
//! sessions and replay buffers), shared so a Redis implementation reports
//! one error type to every component.

/// A store could not answer (unreachable, timed out, bad data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store error: {message}")]
pub struct StoreError {
    /// What went wrong.
    pub message: String,
    /// The store did not answer in time (it may be busy, not gone).
    pub timed_out: bool,
}

impl StoreError {
    /// A store error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            timed_out: false,
        }
    }

    /// A store that did not answer within its reply timeout.
    ///
    /// ```
    /// use wsc_core::StoreError;
    /// assert!(StoreError::timeout("redis: timed out").timed_out);
    /// assert!(!StoreError::new("redis: connection refused").timed_out);
    /// ```
    pub fn timeout(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            timed_out: true,
        }
    }
}
