//! The broker: what one gateway shares with the others on the same store,
//! behind one trait, with an implementation for a gateway on its own
//! ([`MemoryBroker`]). The builder makes the Redis one; nothing else in the
//! server knows which store is behind it. What the gateway does while the
//! broker does not answer is the `shared` module's policy, around either.
//!
//! A session's frames cross gateways through the session registry's store
//! (append numbers and announces them); the rest is here: each user's
//! connection count across gateways, the store's health, and the delivery
//! to this gateway's connections of frames other gateways append.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use wsc_core::StoreError;
use wsc_reconnection::SessionRegistry;

/// What crosses gateways besides the sessions' frames.
#[async_trait]
pub(crate) trait Broker: Send + Sync {
    /// Whether other gateways share this broker's store (false for a
    /// gateway on its own: nothing is shared, nothing can be unreachable).
    fn spans_gateways(&self) -> bool;

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

/// The broker of a gateway on its own: sessions live in its memory, so a
/// frame appended reaches every reader directly, and the user's
/// connections are all here, where the rate limiter already caps them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemoryBroker;

#[async_trait]
impl Broker for MemoryBroker {
    fn spans_gateways(&self) -> bool {
        false
    }

    /// Always admits: the gateway's own per-user cap (the rate limiter's,
    /// checked first) counts every connection there is.
    async fn acquire(&self, _user: &str, _connection: &str, _cap: u32) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release(&self, _user: &str, _connection: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn refresh(&self, _open: &[(String, String)]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Nothing to deliver: no other gateway appends to this memory.
    fn deliver_to(&self, _sessions: Arc<SessionRegistry>) -> Option<Box<dyn Any + Send>> {
        Some(Box::new(()))
    }

    fn local_decisions(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_broker_always_answers_and_shares_nothing() {
        let broker = MemoryBroker;
        assert!(!broker.spans_gateways());
        assert!(broker.acquire("u", "c1", 1).await.unwrap());
        assert!(broker.acquire("u", "c2", 1).await.unwrap());
        broker.release("u", "c1").await.unwrap();
        broker.refresh(&[("u".into(), "c2".into())]).await.unwrap();
        broker.ping().await.unwrap();
        assert_eq!(broker.local_decisions(), 0);
        let sessions = Arc::new(SessionRegistry::new(Default::default()));
        assert!(broker.deliver_to(sessions).is_some());
    }
}
