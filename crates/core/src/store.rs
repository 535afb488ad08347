//! [`StoreError`]: the failure of any pluggable store (rate-limit windows,
//! sessions and replay buffers), shared so a Redis implementation reports
//! one error type to every component.

/// A store could not answer (unreachable, timed out, bad data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store error: {message}")]
pub struct StoreError {
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    /// A store error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
        }
    }
}
