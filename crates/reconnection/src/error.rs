//! The crate's errors.

/// A failure of a [`SessionStore`](crate::SessionStore): the store error
/// shared by every wsc component.
pub use wsc_core::StoreError;

/// An error from the [`SessionRegistry`](crate::SessionRegistry).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No session has this id (never created, or expired and removed).
    #[error("unknown session {0:?}")]
    UnknownSession(String),
    /// The registry holds `max_sessions` sessions, every one attached (a
    /// detached one would have been reclaimed); try again later.
    #[error("session limit of {0} reached")]
    TooManySessions(usize),
    /// The user holds `max_sessions_per_user` sessions, every one attached.
    #[error("this user already holds {0} sessions, all connected: close one first")]
    TooManySessionsForUser(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
