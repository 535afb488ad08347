//! The broker: what one gateway shares with the others on the same store,
//! behind one trait, with an implementation for a gateway on its own
//! ([`MemoryBroker`]). The builder makes the Redis one; nothing else in the
//! server knows which store is behind it. What the gateway does while the
//! broker does not answer is the `shared` module's policy, around either.
//!
//! A session's frames cross gateways through the session registry's store
//! (append numbers and announces them); the rest is here: each user's
//! connection count across gateways, the store's health, the delivery
//! to this gateway's connections of frames other gateways append, and
//! AG-UI runs' logs (a run one gateway runs, read, resumed and cancelled
//! from any).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wsc_core::StoreError;
pub(crate) use wsc_core::{CancelAsked, RunAppended, RunClaim, RunRead, RunWakeup, RunWrite};
use wsc_reconnection::SessionRegistry;

/// A session's runs whose gateway died (see [`Broker::lost_runs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LostRuns {
    /// Runs whose gateway stopped before they ended.
    pub(crate) lost: Vec<String>,
    /// Whether runs of other (live) gateways go on.
    pub(crate) others_running: bool,
}

/// What a gateway does when a run's log changes elsewhere: called with
/// the change, the user and the run id.
pub(crate) type OnRunWakeup = Arc<dyn Fn(RunWakeup, &str, &str) + Send + Sync>;

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

    /// Renews this gateway's lease on the connections it counted (a
    /// gateway that dies stops renewing: its connections stop counting).
    async fn refresh(&self) -> Result<(), StoreError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Marks `run` of `session` as running on this gateway (so another
    /// gateway the session moves to can tell its client if this one dies
    /// before the run ends).
    async fn run_started(&self, _session: &str, _run: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Unmarks `run` of `session`: it ended here.
    async fn run_ended(&self, _session: &str, _run: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// The runs of `session` whose gateway died before they ended (each
    /// reported once), and whether other gateways' runs of it go on.
    async fn lost_runs(&self, _session: &str) -> Result<LostRuns, StoreError> {
        Ok(LostRuns::default())
    }

    /// Starts handing `sessions`' attached connections the frames other
    /// gateways append; it stops when the returned guard is dropped.
    /// `None` if it could not start.
    fn deliver_to(&self, sessions: Arc<SessionRegistry>) -> Option<Box<dyn Any + Send>>;

    /// Rate-limit decisions made in memory while the store did not answer.
    fn local_decisions(&self) -> u64;

    /// Makes `user`'s AG-UI run `run_id` this gateway's (`owner`) unless a
    /// gateway has it already. On its own, every run is new.
    async fn claim_run(
        &self,
        _user: &str,
        _run_id: &str,
        _owner: &str,
        _ttl: Duration,
    ) -> Result<RunClaim, StoreError> {
        Ok(RunClaim::New)
    }

    /// Gives up the claim of a run this gateway could not start.
    async fn release_run(
        &self,
        _user: &str,
        _run_id: &str,
        _owner: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// The owner writes its run's events (numbered, in order), keeps only
    /// those from `write.first` on, ends it if `write.ended`, renews it.
    async fn append_run(
        &self,
        _user: &str,
        _run_id: &str,
        _owner: &str,
        _write: &RunWrite<'_>,
    ) -> Result<RunAppended, StoreError> {
        Ok(RunAppended::Written {
            cancel: false,
            unread_for: Duration::MAX,
        })
    }

    /// Up to `max` events of another gateway's run after `after`; `None`
    /// if no gateway has it.
    async fn read_run(
        &self,
        _user: &str,
        _run_id: &str,
        _after: u64,
        _max: usize,
    ) -> Result<Option<RunRead>, StoreError> {
        Ok(None)
    }

    /// Asks the gateway running the run to cancel it.
    async fn cancel_run(&self, _user: &str, _run_id: &str) -> Result<CancelAsked, StoreError> {
        Ok(CancelAsked::NotFound)
    }

    /// Ends a run whose gateway has not written for `lease` with `event`.
    async fn end_abandoned_run(
        &self,
        _user: &str,
        _run_id: &str,
        _lease: Duration,
        _event: &str,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Starts calling `on_wakeup` for changes of runs' logs made by any
    /// gateway; stops when the guard is dropped. `None` if it could not
    /// start (or nothing is shared).
    fn watch_runs(&self, _on_wakeup: OnRunWakeup) -> Option<Box<dyn Any + Send>> {
        None
    }
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

    async fn refresh(&self) -> Result<(), StoreError> {
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
        broker.refresh().await.unwrap();
        broker.ping().await.unwrap();
        assert_eq!(broker.local_decisions(), 0);
        let sessions = Arc::new(SessionRegistry::new(Default::default()));
        assert!(broker.deliver_to(sessions).is_some());
    }
}
