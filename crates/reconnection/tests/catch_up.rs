//! `catch_up_all` against a store whose calls are slow (a Redis Cluster
//! shard in failover: every call to it waits for its timeout): sessions are
//! caught up many at a time, so one slow shard costs a few timeouts, not
//! one per session. On paused tokio time: no real sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use wsc_core::{SystemClock, Timestamp, WireFrame};
use wsc_reconnection::{
    Appended, BufferLimits, CATCH_UP_CONCURRENCY, MemorySessionStore, ReplayGap, SessionConfig,
    SessionRecord, SessionRegistry, SessionStore, StoreError,
};

/// The memory store, with replays that take a second while `slow` is set.
#[derive(Debug)]
struct Slow {
    inner: MemorySessionStore,
    slow: AtomicBool,
}

#[async_trait]
impl SessionStore for Slow {
    async fn create(&self, record: SessionRecord) -> Result<bool, StoreError> {
        self.inner.create(record).await
    }
    async fn get(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.get(session_id).await
    }
    async fn append(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Appended>, StoreError> {
        self.inner.append(session_id, frame, message_id, now).await
    }
    async fn replay_after(
        &self,
        session_id: &str,
        last_seq: u64,
    ) -> Result<Option<Result<Vec<WireFrame>, ReplayGap>>, StoreError> {
        if self.slow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.inner.replay_after(session_id, last_seq).await
    }
    async fn ack(&self, session_id: &str, seq: u64) -> Result<(), StoreError> {
        self.inner.ack(session_id, seq).await
    }
    async fn set_detached(
        &self,
        session_id: &str,
        detached_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.inner.set_detached(session_id, detached_at).await
    }
    async fn attach_owner(&self, session_id: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.attach_owner(session_id, owner).await
    }
    async fn detach_owner(
        &self,
        session_id: &str,
        owner: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.detach_owner(session_id, owner, at).await
    }
    async fn remove(&self, session_id: &str) -> Result<bool, StoreError> {
        self.inner.remove(session_id).await
    }
    async fn expired(&self, now: Timestamp, ttl: Duration) -> Result<Vec<String>, StoreError> {
        self.inner.expired(now, ttl).await
    }
    async fn buffered_for_user(&self, user_id: &str) -> Result<Vec<WireFrame>, StoreError> {
        self.inner.buffered_for_user(user_id).await
    }
    async fn session_count(&self) -> Result<usize, StoreError> {
        self.inner.session_count().await
    }
    async fn sessions_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.sessions_of_user(user_id).await
    }
    async fn holds_message(&self, session_id: &str, message_id: &str) -> Result<bool, StoreError> {
        self.inner.holds_message(session_id, message_id).await
    }
    async fn remember_message(&self, session_id: &str, message_id: &str) -> Result<(), StoreError> {
        self.inner.remember_message(session_id, message_id).await
    }
    async fn oldest_detached(
        &self,
        n: usize,
        now: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        self.inner.oldest_detached(n, now).await
    }
    fn buffered_bytes(&self) -> Option<usize> {
        self.inner.buffered_bytes()
    }
    async fn claim_key(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        self.inner.claim_key(session_id, key).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_is_caught_up_many_sessions_at_a_time() {
    let store = Arc::new(Slow {
        inner: MemorySessionStore::new(BufferLimits::default(), 10_000),
        slow: AtomicBool::new(false),
    });
    let registry = SessionRegistry::with_store(
        SessionConfig::default(),
        SystemClock::shared(),
        store.clone(),
    );
    let sessions = 4 * CATCH_UP_CONCURRENCY;
    let mut attached = Vec::new();
    for i in 0..sessions {
        attached.push(registry.open(&format!("u{i}")).await.unwrap());
    }
    store.slow.store(true, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    registry.catch_up_all().await.unwrap();
    let took = started.elapsed();
    // Four rounds of one slow second each; one at a time would take 128.
    assert!(
        took <= Duration::from_secs(5),
        "{sessions} slow sessions caught up in {took:?}"
    );
}
