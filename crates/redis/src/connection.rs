//! [`RedisConnection`]: one Redis, or a Redis Cluster, behind one type.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use wsc_core::StoreError;

use crate::store_error;

/// The URL scheme of a cluster's seed list: `redis+cluster://h1:p1,h2:p2`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A managed connection to one Redis or to a Redis Cluster, from
/// [`connect`]: it reconnects by itself after a failure, and every command
/// times out after one second, so an unreachable Redis turns into a
/// [`StoreError`] quickly. On a cluster, commands go to the master of their
/// key's slot, and `MOVED`/`ASK` redirections (a resharding) are followed
/// by the cluster client; when a master dies, its slots fail until a
/// replica takes over and the client, sent elsewhere by a `MOVED`, learns
/// the new slot map (a few seconds; see the project's `docs/scaling.md`).
/// A cluster connection whose `PING`s keep failing is rebuilt from its
/// seed list ([`ClusterHandle`]).
#[derive(Clone)]
pub enum RedisConnection {
    /// One Redis (`redis://host:port/db`).
    Single(ConnectionManager),
    /// A Redis Cluster (`redis+cluster://h1:p1,h2:p2`).
    Cluster(ClusterHandle),
}

/// Consecutive failed `PING`s after which a cluster connection is rebuilt
/// from its seed list (and again after as many more).
const REBUILD_AFTER_FAILED_PINGS: u32 = 4;

/// A Redis Cluster connection that is rebuilt from its seed list when its
/// `PING`s keep failing: the cluster client learns the slot map anew from
/// a live node. A client that lost its way in a failover — its map still
/// naming a master that died for good, its `PING` (sent to every master)
/// failing long after a replica took over — would otherwise keep the
/// store "unreachable" for ever. Clones share the connection.
#[derive(Clone)]
pub struct ClusterHandle(Arc<ClusterInner>);

struct ClusterInner {
    client: ClusterClient,
    current: RwLock<ClusterConnection>,
    failed_pings: AtomicU32,
    rebuilding: AtomicBool,
    rebuilt: AtomicU64,
}

impl ClusterHandle {
    fn new(client: ClusterClient, connection: ClusterConnection) -> Self {
        ClusterHandle(Arc::new(ClusterInner {
            client,
            current: RwLock::new(connection),
            failed_pings: AtomicU32::new(0),
            rebuilding: AtomicBool::new(false),
            rebuilt: AtomicU64::new(0),
        }))
    }

    /// The connection in use now.
    fn current(&self) -> ClusterConnection {
        self.0
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many times the connection was rebuilt.
    pub fn rebuilt(&self) -> u64 {
        self.0.rebuilt.load(Ordering::Relaxed)
    }

    /// A `PING` answered or not: after [`REBUILD_AFTER_FAILED_PINGS`]
    /// failures in a row, a new connection is built in the background and
    /// takes over once it is up (commands in flight finish on the old).
    fn pinged(&self, answered: bool) {
        if answered {
            self.0.failed_pings.store(0, Ordering::Relaxed);
            return;
        }
        let failed = self.0.failed_pings.fetch_add(1, Ordering::Relaxed) + 1;
        if !failed.is_multiple_of(REBUILD_AFTER_FAILED_PINGS)
            || self.0.rebuilding.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let inner = self.0.clone();
        tokio::spawn(async move {
            match inner.client.get_async_connection().await {
                Ok(connection) => {
                    *inner
                        .current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = connection;
                    inner.rebuilt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        failed_pings = failed,
                        "redis cluster connection rebuilt from its seed list"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis cluster connection could not be rebuilt")
                }
            }
            inner.rebuilding.store(false, Ordering::Release);
        });
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Whether this is a cluster: a multi-key command must keep its keys in
    /// one hash slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }

    /// Whether Redis answers: a `PING`, answered within `timeout` (on a
    /// cluster, by the node the client picks).
    ///
    /// # Errors
    /// The command's failure, or a timeout.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let mut conn = self.clone();
        let answer = match tokio::time::timeout(
            timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(store_error(e)),
            Err(_) => Err(StoreError::timeout(format!(
                "redis did not answer PING within {timeout:?}"
            ))),
        };
        if let RedisConnection::Cluster(cluster) = self {
            cluster.pinged(answer.is_ok());
        }
        answer
    }

    /// Which of `keys` may share one script call, as groups of their
    /// indexes: all of them on one Redis; on a cluster, those of one hash
    /// slot (a script's keys must share one).
    pub(crate) fn script_groups<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Vec<Vec<usize>> {
        let keys = keys.into_iter();
        if !self.is_cluster() {
            return vec![(0..keys.count()).collect()];
        }
        let mut by_slot: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, key) in keys.enumerate() {
            by_slot.entry(hash_slot(key.as_ref())).or_default().push(i);
        }
        by_slot.into_values().collect()
    }
}

/// The nodes (`host:port`) of a cluster URL's seed list, or `None` for a
/// URL of one Redis.
pub(crate) fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let seeds = url.strip_prefix(CLUSTER_SCHEME)?;
    Some(
        seeds
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => {
                let mut connection = c.current();
                Box::pin(async move { connection.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => {
                let mut connection = c.current();
                Box::pin(async move { connection.req_packed_commands(cmd, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.current().get_db(),
        }
    }
}

/// The hash slot of `key` on a Redis Cluster (CRC16 of the key, or of its
/// `{hash tag}`, modulo 16 384): keys of one slot may share a script.
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16_384
}

/// How long a command waits for Redis's reply by default (and a new
/// connection for its handshake) before it fails as timed out.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a managed connection: to one Redis for `redis://host:port/db`
/// (or `rediss://`), to a Redis Cluster for `redis+cluster://h1:p1,h2:p2`
/// (a seed list: any reachable node tells the client the rest). Replies
/// wait at most [`DEFAULT_REPLY_TIMEOUT`]; see [`connect_with_timeout`].
///
/// # Errors
/// An invalid URL, or Redis not reachable now.
pub async fn connect(url: &str) -> Result<RedisConnection, StoreError> {
    connect_with_timeout(url, DEFAULT_REPLY_TIMEOUT).await
}

/// [`connect`], each command waiting at most `timeout` for its reply (and
/// a new connection at most `timeout` for its handshake); a command past
/// it fails with a [`StoreError`] whose `timed_out` is set.
///
/// # Errors
/// As [`connect`].
pub async fn connect_with_timeout(
    url: &str,
    timeout: Duration,
) -> Result<RedisConnection, StoreError> {
    if let Some(seeds) = cluster_seeds(url) {
        let nodes: Vec<String> = seeds.iter().map(|node| format!("redis://{node}")).collect();
        if nodes.is_empty() {
            return Err(StoreError::new(format!(
                "redis: `{url}` names no cluster node ({CLUSTER_SCHEME}host:port,host:port)"
            )));
        }
        let client = ClusterClient::builder(nodes)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(3)
            .build()
            .map_err(store_error)?;
        let connection = client.get_async_connection().await.map_err(store_error)?;
        return Ok(RedisConnection::Cluster(ClusterHandle::new(
            client, connection,
        )));
    }
    let client = redis::Client::open(url).map_err(store_error)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(2)
        .set_max_delay(200);
    let manager = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(store_error)?;
    Ok(RedisConnection::Single(manager))
}

#[cfg(test)]
mod tests {
    use super::hash_slot;

    #[test]
    fn hash_slots_are_redis_ones() {
        // Values from `CLUSTER KEYSLOT` of Redis 7.
        assert_eq!(hash_slot(b"foo"), 12_182);
        assert_eq!(hash_slot(b"123456789"), 12_739);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(
            hash_slot(b"foo{}{bar}"),
            hash_slot(b"foo{}{bar}"),
            "empty tag: whole key"
        );
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
    }
}
