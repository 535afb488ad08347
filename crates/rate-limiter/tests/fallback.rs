//! `FallbackStore`: the fallback decides while the primary fails, and the
//! primary again once it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use wsc_core::{StoreError, Timestamp};
use wsc_rate_limiter::{
    FallbackStore, MemoryStore, RateLimitStore, WindowDecision, WindowLimit, WindowRequest,
};

/// A memory store that can be switched off.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

#[async_trait]
impl RateLimitStore for Flaky {
    async fn decide(&self, r: WindowRequest<'_>) -> Result<WindowDecision, StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StoreError::new("down"));
        }
        self.inner.decide(r).await
    }
    async fn counts(
        &self,
        key: &str,
        windows: &[WindowLimit],
        now: Timestamp,
    ) -> Result<Vec<u32>, StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StoreError::new("down"));
        }
        self.inner.counts(key, windows, now).await
    }
    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.inner.forget(key).await
    }
}

#[tokio::test]
async fn the_fallback_decides_while_the_primary_is_down() {
    let primary = Arc::new(Flaky::default());
    let store = FallbackStore::new(primary.clone(), Arc::new(MemoryStore::default()));
    let windows = [WindowLimit::new(Duration::from_secs(60), 2)];
    let now = Timestamp::from_unix_micros(1_000_000_000_000);
    let ask = |record| WindowRequest {
        key: "u",
        windows: &windows,
        burst: 0,
        now,
        record,
    };
    assert!(store.decide(ask(true)).await.unwrap().admitted);
    primary.down.store(true, Ordering::Relaxed);
    // The fallback has its own (empty) windows: limits hold per node.
    assert!(store.decide(ask(true)).await.unwrap().admitted);
    assert!(store.decide(ask(true)).await.unwrap().admitted);
    assert!(!store.decide(ask(true)).await.unwrap().admitted);
    assert_eq!(store.fallbacks(), 3);
    assert_eq!(store.counts("u", &windows, now).await.unwrap(), vec![2]);
    primary.down.store(false, Ordering::Relaxed);
    // Back to the primary, which counted one.
    assert_eq!(store.counts("u", &windows, now).await.unwrap(), vec![1]);
    assert!(store.decide(ask(true)).await.unwrap().admitted);
    assert!(!store.decide(ask(true)).await.unwrap().admitted);
    assert_eq!(store.fallbacks(), 4);
}
