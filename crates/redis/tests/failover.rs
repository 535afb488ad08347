//! A Redis Cluster master killed for good at Redis's default
//! `cluster-node-timeout` (15 s), under traffic, with a health check's
//! `PING` every 500 ms: the `PING`s that keep failing get the connection
//! rebuilt from its seed list, and once a replica has taken over the
//! `PING` is answered again, so whoever waits for the store to be back is
//! not left waiting for ever.

use std::time::{Duration, Instant};

use wsc_redis::connect;
use wsc_redis::testing::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_again_after_a_master_dies_for_good() {
    let mut cluster = tokio::task::spawn_blocking(|| {
        let cluster = RedisCluster::start_with_node_timeout(Duration::from_secs(15));
        cluster.wait_ok();
        cluster
    })
    .await
    .unwrap();
    let redis = connect(&cluster.url()).await.unwrap();
    redis
        .ping(Duration::from_secs(2))
        .await
        .expect("a PING before");
    // Traffic on every shard all along, as a gateway's runs make.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let (mut conn, stop) = (redis.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let _: Result<(), _> = redis::cmd("SET")
                        .arg(format!("k{i}-{}", n % 100))
                        .arg(n)
                        .query_async(&mut conn)
                        .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    // The first seed is a master: it dies, and never comes back.
    let victim = cluster.masters()[0];
    cluster.kill(victim);
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_ok();
        cluster
    });
    let mut failed = 0;
    // Health checks every 500 ms while the replica takes over.
    let cluster = loop {
        if redis.ping(Duration::from_secs(2)).await.is_err() {
            failed += 1;
        }
        if cluster.is_finished() {
            break cluster.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        failed > 0,
        "the dead master's PING failed while it was gone"
    );
    let masters = cluster.masters();
    assert!(
        !masters.contains(&victim) && masters.len() == 3,
        "{masters:?}"
    );

    // Taken over: the PING is answered again within a few checks.
    let since = Instant::now();
    let mut answered = false;
    while since.elapsed() < Duration::from_secs(30) {
        if redis.ping(Duration::from_secs(2)).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        answered,
        "PING still failing {:?} after the replica took over",
        since.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    drop(cluster);
}
