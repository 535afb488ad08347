//! The broker: what one gateway shares with the others on the same store,
//! behind one trait, and the gateway's policy for when it does not answer.
//!
//! A session's frames cross gateways through the session registry's store
//! (append numbers and announces them); the rest is here: each user's
//! connection count across gateways, the store's health, and the delivery
//! to this gateway's connections of frames other gateways append. The
//! builder makes the broker (today: on Redis); nothing else in the server
//! knows which store is behind it.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use wsc_core::StoreError;
use wsc_reconnection::SessionRegistry;

use crate::config::RedisFailurePolicy;

/// What crosses gateways besides the sessions' frames.
#[async_trait]
pub(crate) trait Broker: Send + Sync {
    /// Counts `connection` in `user`'s connections across gateways: false
    /// (nothing counted) if the user holds `cap` already.
    async fn acquire(&self, user: &str, connection: &str, cap: u32) -> Result<bool, StoreError>;

    /// Takes `connection` out of `user`'s count.
    async fn release(&self, user: &str, connection: &str) -> Result<(), StoreError>;

    /// Renews this gateway's open connections `(user, connection)` in the
    /// counts (a gateway that dies stops renewing: its connections expire).
    async fn refresh(&self, open: &[(String, String)]) -> Result<(), StoreError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Starts handing `sessions`' attached connections the frames other
    /// gateways append; it stops when the returned guard is dropped.
    /// `None` if it could not start.
    fn deliver_to(&self, sessions: Arc<SessionRegistry>) -> Option<Box<dyn Any + Send>>;

    /// Rate-limit decisions made in memory while the store did not answer.
    fn local_decisions(&self) -> u64;
}

/// The broker, and what the gateway does while it does not answer
/// (`failure`): fail-open serves new sessions from this gateway's memory
/// and queues agent events in the outbox; fail-closed refuses.
pub(crate) struct Shared {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) failure: RedisFailurePolicy,
    /// This gateway's open connections (connection -> user), for
    /// [`Broker::refresh`].
    pub(crate) open: DashMap<String, String>,
}

impl Shared {
    pub(crate) fn new(broker: Arc<dyn Broker>, failure: RedisFailurePolicy) -> Self {
        Shared {
            broker,
            failure,
            open: DashMap::new(),
        }
    }

    pub(crate) fn fail_closed(&self) -> bool {
        self.failure == RedisFailurePolicy::FailClosed
    }

    /// Records `connection` of `user` as open here (renewed until
    /// [`close`](Self::close)).
    pub(crate) fn hold(&self, user: &str, connection: &str) {
        self.open.insert(connection.to_owned(), user.to_owned());
    }

    /// Takes `connection` out of the count, in the background (a failed
    /// release expires with its lease).
    pub(crate) fn close(&self, user: String, connection: String) {
        self.open.remove(&connection);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let _ = broker.release(&user, &connection).await;
        });
    }

    /// The open connections as `(user, connection)`.
    pub(crate) fn open_connections(&self) -> Vec<(String, String)> {
        self.open
            .iter()
            .map(|e| (e.value().clone(), e.key().clone()))
            .collect()
    }
}
