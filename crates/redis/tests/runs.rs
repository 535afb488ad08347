//! AG-UI runs' logs in Redis, shared by gateways: one owner claims and
//! writes a run, readers anywhere read after any number, a cancel reaches
//! the owner, a run whose owner stopped writing is ended by a reader, and
//! what outgrew the run's budget is said to be gone — on one Redis and on
//! a cluster.

mod support;

use std::time::Duration;

use wsc_core::{CancelAsked, RunAppended, RunClaim, RunWakeup, RunWrite};
use wsc_redis::{RedisRunLogs, connect};

#[tokio::test]
async fn one_owner_writes_readers_anywhere_read_after_any_number() {
    for url in support::urls() {
        shared_log_on(&url).await;
    }
}

const TTL: Duration = Duration::from_secs(60);

/// The owner's write of `events`, holding from `first`.
fn write<'a>(first: u64, events: &'a [(u64, &'a str)], ended: bool) -> RunWrite<'a> {
    RunWrite {
        first,
        events,
        ended,
        ttl: TTL,
    }
}

async fn shared_log_on(url: &str) {
    let prefix = support::unique_prefix("runs");
    let a = RedisRunLogs::new(connect(url).await.unwrap(), &prefix);
    let b = RedisRunLogs::new(connect(url).await.unwrap(), &prefix);
    assert_eq!(
        a.claim("ann", "r1", "gw-a", TTL).await.unwrap(),
        RunClaim::New
    );
    assert_eq!(
        b.claim("ann", "r1", "gw-b", TTL).await.unwrap(),
        RunClaim::Held("gw-a".into()),
        "a second start anywhere finds the run"
    );
    assert_eq!(
        b.read("bob", "r1", 0, 10, true).await.unwrap(),
        None,
        "per user"
    );
    let written = a
        .append(
            "ann",
            "r1",
            "gw-a",
            &write(1, &[(1, "{\"n\":1}"), (2, "{\"n\":2}")], false),
        )
        .await
        .unwrap();
    assert!(matches!(
        written,
        RunAppended::Written { cancel: false, .. }
    ));
    // A repeated write of what is there changes nothing.
    a.append(
        "ann",
        "r1",
        "gw-a",
        &write(1, &[(2, "{\"n\":2}"), (3, "{\"n\":3}")], false),
    )
    .await
    .unwrap();
    assert_eq!(
        b.append("ann", "r1", "gw-b", &write(1, &[(4, "x")], false))
            .await
            .unwrap(),
        RunAppended::Lost,
        "only the owner writes"
    );
    // Events the store does not have before them (a failover lost them)
    // are refused with what it holds: the owner writes again from there.
    assert_eq!(
        a.append("ann", "r1", "gw-a", &write(1, &[(5, "x")], false))
            .await
            .unwrap(),
        RunAppended::Behind { last: 3 }
    );
    let read = b.read("ann", "r1", 1, 10, true).await.unwrap().unwrap();
    assert_eq!(read.events, ["{\"n\":2}", "{\"n\":3}"]);
    assert_eq!((read.first, read.last, read.ended), (1, 3, false));
    let read = b.read("ann", "r1", 0, 2, false).await.unwrap().unwrap();
    assert_eq!(read.events.len(), 2, "at most what was asked");
    // Trimmed past its budget: events before `first` are gone.
    a.append("ann", "r1", "gw-a", &write(3, &[(4, "{\"n\":4}")], true))
        .await
        .unwrap();
    let read = b.read("ann", "r1", 0, 10, true).await.unwrap().unwrap();
    assert!(read.events.is_empty());
    assert_eq!((read.first, read.last, read.ended), (3, 4, true));
    let read = b.read("ann", "r1", 2, 10, true).await.unwrap().unwrap();
    assert_eq!(read.events, ["{\"n\":3}", "{\"n\":4}"]);
    assert_eq!(
        a.append("ann", "r1", "gw-a", &write(3, &[(5, "late")], false))
            .await
            .unwrap(),
        RunAppended::Lost,
        "nothing after the end"
    );
    assert_eq!(b.cancel("ann", "r1").await.unwrap(), CancelAsked::Ended);
    // A run whose record the store lost (a failover right after the
    // claim) is its owner's again, written from the owner's oldest event.
    assert_eq!(
        a.append("ann", "lost", "gw-a", &write(1, &[(7, "x")], false))
            .await
            .unwrap(),
        RunAppended::Behind { last: 0 }
    );
    a.append(
        "ann",
        "lost",
        "gw-a",
        &write(1, &[(1, "a"), (2, "b")], false),
    )
    .await
    .unwrap();
    let read = b.read("ann", "lost", 0, 10, true).await.unwrap().unwrap();
    assert_eq!(read.events, ["a", "b"]);
    assert_eq!(
        b.cancel("ann", "nope").await.unwrap(),
        CancelAsked::NotFound
    );
}

#[tokio::test]
async fn a_cancel_reaches_the_owner_and_an_abandoned_run_is_ended_once() {
    for url in support::urls() {
        cancel_and_abandon_on(&url).await;
    }
}

async fn cancel_and_abandon_on(url: &str) {
    let prefix = support::unique_prefix("runs");
    let logs = RedisRunLogs::new(connect(url).await.unwrap(), &prefix);
    logs.claim("ann", "r", "gw-a", TTL).await.unwrap();
    assert_eq!(logs.cancel("ann", "r").await.unwrap(), CancelAsked::Asked);
    let RunAppended::Written { cancel, .. } = logs
        .append("ann", "r", "gw-a", &write(1, &[], false))
        .await
        .unwrap()
    else {
        panic!("written")
    };
    assert!(cancel, "the owner learns it at its next write");

    logs.claim("ann", "s", "gw-a", TTL).await.unwrap();
    logs.append("ann", "s", "gw-a", &write(1, &[(1, "one")], false))
        .await
        .unwrap();
    let lease = Duration::from_millis(300);
    assert!(
        !logs
            .end_abandoned("ann", "s", lease, "end", TTL)
            .await
            .unwrap(),
        "the owner wrote just now"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let silent = logs.read("ann", "s", 0, 10, true).await.unwrap().unwrap();
    assert!(silent.owner_silent_for >= lease);
    assert!(
        logs.end_abandoned("ann", "s", lease, "end", TTL)
            .await
            .unwrap()
    );
    assert!(
        !logs
            .end_abandoned("ann", "s", lease, "end", TTL)
            .await
            .unwrap(),
        "ended once"
    );
    let read = logs.read("ann", "s", 0, 10, true).await.unwrap().unwrap();
    assert_eq!(read.events, ["one", "end"]);
    assert!(read.ended);
    assert_eq!(
        logs.append("ann", "s", "gw-a", &write(1, &[(2, "two")], false))
            .await
            .unwrap(),
        RunAppended::Lost,
        "the owner that comes back writes nothing more"
    );
    assert_eq!(
        logs.claim("ann", "s", "gw-b", TTL).await.unwrap(),
        RunClaim::Held(String::new()),
        "an ended run is not started again"
    );
}

#[tokio::test]
async fn each_write_wakes_the_channel() {
    let url = support::shared_url();
    let prefix = support::unique_prefix("runs");
    let logs = RedisRunLogs::new(connect(&url).await.unwrap(), &prefix);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
    let _listener = wsc_redis::spawn_channel_listener(
        &url,
        logs.channel(),
        move |m| {
            let _ = tx.send(RedisRunLogs::parse_wakeup(m));
        },
        move || {
            let _ = subscribed_tx.send(());
        },
    )
    .unwrap();
    subscribed.recv().await.unwrap();
    logs.claim("a:b", "r", "gw", TTL).await.unwrap();
    logs.append("a:b", "r", "gw", &write(1, &[(1, "x")], false))
        .await
        .unwrap();
    logs.cancel("a:b", "r").await.unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        next().await,
        Some((RunWakeup::Events, "a:b".into(), "r".into()))
    );
    assert_eq!(
        next().await,
        Some((RunWakeup::Cancel, "a:b".into(), "r".into()))
    );
}
