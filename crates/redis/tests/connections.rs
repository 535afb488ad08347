//! Per-user connection counts across nodes, healing when a node dies; the
//! shared token secret.

mod support;

use std::time::Duration;

use wsc_redis::{RedisConnectionCounter, connect, shared_token_secret};

#[tokio::test]
async fn the_cap_holds_across_nodes_and_heals_when_a_node_dies() {
    for url in support::urls() {
        cap_on(&url).await;
    }
}

async fn cap_on(url: &str) {
    let prefix = support::unique_prefix("conns");
    let lease = Duration::from_millis(400);
    let a = RedisConnectionCounter::new(connect(url).await.unwrap(), &prefix).with_lease(lease);
    let b = RedisConnectionCounter::new(connect(url).await.unwrap(), &prefix).with_lease(lease);
    assert!(a.acquire("ann", "a:1", 3).await.unwrap());
    assert!(b.acquire("ann", "b:1", 3).await.unwrap());
    assert!(a.acquire("ann", "a:2", 3).await.unwrap());
    assert!(
        !b.acquire("ann", "b:2", 3).await.unwrap(),
        "3 across both nodes"
    );
    assert!(
        a.acquire("ann", "a:2", 3).await.unwrap(),
        "re-acquiring is idempotent"
    );
    assert_eq!(b.count("ann").await.unwrap(), 3);
    b.release("ann", "b:1").await.unwrap();
    assert!(b.acquire("ann", "b:2", 3).await.unwrap());
    // Node A dies (stops renewing); node B keeps renewing its own.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.refresh(&[("ann".into(), "b:2".into())]).await.unwrap();
    }
    assert_eq!(b.count("ann").await.unwrap(), 1, "node A's entries expired");
    assert!(b.acquire("ann", "b:3", 3).await.unwrap());
    assert!(b.acquire("ann", "b:4", 3).await.unwrap());
    assert!(!b.acquire("ann", "b:5", 3).await.unwrap());
}

#[tokio::test]
async fn every_node_reads_the_same_token_secret() {
    for url in support::urls() {
        same_secret_on(&url).await;
    }
}

async fn same_secret_on(url: &str) {
    let prefix = support::unique_prefix("secret");
    let first = shared_token_secret(&connect(url).await.unwrap(), &prefix)
        .await
        .unwrap();
    let second = shared_token_secret(&connect(url).await.unwrap(), &prefix)
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_ne!(first, [0; 32]);
    let other = shared_token_secret(&connect(url).await.unwrap(), &support::unique_prefix("x"))
        .await
        .unwrap();
    assert_ne!(first, other, "random per deployment");
}

/// Leases of many users renewed in one call: on a cluster their keys fall
/// in different hash slots, renewed slot by slot.
#[tokio::test]
async fn many_users_renewed_at_once() {
    for url in support::urls() {
        let prefix = support::unique_prefix("renew");
        let lease = Duration::from_millis(600);
        let a =
            RedisConnectionCounter::new(connect(&url).await.unwrap(), &prefix).with_lease(lease);
        let pairs: Vec<(String, String)> = (0..20)
            .map(|i| (format!("user-{i}"), format!("a:{i}")))
            .collect();
        for (user, connection) in &pairs {
            assert!(a.acquire(user, connection, 1).await.unwrap());
        }
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            a.refresh(&pairs).await.unwrap();
        }
        for (user, _) in &pairs {
            assert_eq!(a.count(user).await.unwrap(), 1, "{user} renewed on {url}");
        }
    }
}
