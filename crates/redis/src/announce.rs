//! Live delivery across nodes: each node listens to the store's channel and
//! hands frames published elsewhere to the connections attached to it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use wsc_core::StoreError;
use wsc_reconnection::SessionRegistry;

use crate::store_error;

/// A running announcement listener; stops when dropped.
#[derive(Debug)]
#[must_use = "dropping the listener stops it"]
pub struct AnnouncementListener {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AnnouncementListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to `channel` (see
/// [`RedisSessionStore::channel`](crate::RedisSessionStore::channel)) on
/// `url` and, for every `session_id:seq` announced, calls
/// [`SessionRegistry::deliver_remote`]: a connection attached to this node
/// gets the frames another node published, in seq order, exactly once.
///
/// Pub/sub delivers at most once, so whenever the subscription is
/// (re)established the listener also runs
/// [`SessionRegistry::catch_up_all`], and again every half second until it
/// succeeds, and after a delivery that failed (the store did not answer):
/// a frame is never left undelivered because Redis was briefly away. It
/// reconnects by itself after a failure. Must be called within a tokio
/// runtime.
///
/// On a Redis Cluster (`redis+cluster://h1:p1,h2:p2`) it subscribes on one
/// node: a cluster's classic `PUBLISH` reaches every node (the
/// announcements are small wake-ups, so sending each to every node costs
/// little, where sharded pub/sub would need one subscription per shard and
/// a resubscription on every slot move). When that node fails, the next
/// seed is tried, and the catch-up covers what was missed.
///
/// # Errors
/// An invalid URL.
pub fn spawn_announcement_listener(
    url: &str,
    channel: String,
    registry: Arc<SessionRegistry>,
) -> Result<AnnouncementListener, StoreError> {
    let serve = move |pubsub| {
        let registry = registry.clone();
        async move { listen(pubsub, &registry).await }
    };
    Ok(resubscribing(clients(url)?, channel, serve))
}

/// Subscribes to `channel` on one of `clients` (the next one after a
/// failure) and hands each subscription to `serve` until it ends, again
/// and again, until the returned listener is dropped.
fn resubscribing<F, Fut>(
    clients: Vec<redis::Client>,
    channel: String,
    serve: F,
) -> AnnouncementListener
where
    F: Fn(redis::aio::PubSub) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let task = tokio::spawn(async move {
        let mut next = 0;
        loop {
            let client = &clients[next % clients.len()];
            next += 1;
            match subscribe(client, &channel).await {
                Ok(pubsub) => {
                    serve(pubsub).await;
                    tracing::warn!(%channel, "subscription lost; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, %channel, "cannot subscribe"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    AnnouncementListener { task }
}

/// Clients of `url`'s node, or of each seed of a cluster URL.
fn clients(url: &str) -> Result<Vec<redis::Client>, StoreError> {
    let clients = match crate::connection::cluster_seeds(url) {
        Some(seeds) => seeds
            .iter()
            .map(|node| redis::Client::open(format!("redis://{node}")).map_err(store_error))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![redis::Client::open(url).map_err(store_error)?],
    };
    if clients.is_empty() {
        return Err(StoreError::new(format!("redis: `{url}` names no node")));
    }
    Ok(clients)
}

/// Subscribes to `channel` on `url` (one node of a cluster, as
/// [`spawn_announcement_listener`] does) and calls `on_message` with each
/// message's text, and `on_subscribed` each time the subscription is
/// (re)established (messages may have been missed before it: pub/sub
/// delivers at most once). Reconnects by itself; stops when dropped.
/// Must be called within a tokio runtime.
///
/// # Errors
/// An invalid URL.
pub fn spawn_channel_listener(
    url: &str,
    channel: String,
    on_message: impl Fn(&str) + Send + Sync + 'static,
    on_subscribed: impl Fn() + Send + Sync + 'static,
) -> Result<AnnouncementListener, StoreError> {
    let on_message = Arc::new(on_message);
    let serve = move |mut pubsub: redis::aio::PubSub| {
        on_subscribed();
        let on_message = on_message.clone();
        async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let text: String = message.get_payload().unwrap_or_default();
                on_message(&text);
            }
        }
    };
    Ok(resubscribing(clients(url)?, channel, serve))
}

/// Hands every announced frame to the connection attached here until the
/// subscription ends. Behind (announcements may have been missed: before
/// this subscription, or a delivery that failed), it catches up at once
/// and again every [`CATCH_UP_RETRY`] until that works.
async fn listen(mut pubsub: redis::aio::PubSub, registry: &SessionRegistry) {
    let mut behind = !catch_up(registry).await;
    let mut retry = tokio::time::interval(CATCH_UP_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                let payload: String = message.get_payload().unwrap_or_default();
                let Some((session, seq)) = payload.rsplit_once(':') else {
                    continue;
                };
                let Ok(seq) = seq.parse::<u64>() else {
                    continue;
                };
                if let Err(e) = registry.deliver_remote(session, seq).await {
                    tracing::warn!(error = %e, "delivering a remote frame failed: catching up later");
                    behind = true;
                }
            }
            _ = retry.tick(), if behind => {
                behind = !catch_up(registry).await;
            }
        }
    }
}

/// How often a listener that is behind retries its catch-up.
const CATCH_UP_RETRY: Duration = Duration::from_millis(500);

/// Catches up every session attached here; whether that worked.
async fn catch_up(registry: &SessionRegistry) -> bool {
    match registry.catch_up_all().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "catching up sessions failed: retrying");
            false
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, StoreError> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(StoreError::new("redis: subscribing timed out")),
    }
}
