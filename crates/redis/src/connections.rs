//! [`RedisConnectionCounter`]: per-user connection counts across nodes that
//! heal when a node dies.

use std::fmt;
use std::time::Duration;

use crate::RedisConnection;
use wsc_core::StoreError;

use crate::store_error;

/// KEYS: the user's sorted set. ARGV: member, cap, lease ms. Members are
/// scored with their expiry; expired ones go first.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"#;

/// KEYS: the users' sorted sets. ARGV: lease ms, then one member per key.
const REFRESH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ms, ARGV[i + 1])
  redis.call('PEXPIRE', key, ms)
end
return #KEYS
"#;

/// Counts each user's open connections across every node sharing a Redis.
///
/// Each connection is a member of the user's sorted set, scored with an
/// expiry a lease ahead (default 30 s); a node renews its connections'
/// leases with [`refresh`](Self::refresh) (say every 10 s). A node that dies
/// stops renewing, and its connections stop counting within a lease: the
/// counts heal by themselves. Expiry uses Redis's own clock.
#[derive(Clone)]
pub struct RedisConnectionCounter {
    redis: RedisConnection,
    prefix: String,
    lease: Duration,
    acquire: redis::Script,
    refresh: redis::Script,
}

impl fmt::Debug for RedisConnectionCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnectionCounter")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisConnectionCounter {
    /// A counter on `redis` with keys under `prefix` and a 30 s lease.
    pub fn new(redis: RedisConnection, prefix: impl Into<String>) -> Self {
        RedisConnectionCounter {
            redis,
            prefix: prefix.into(),
            lease: Duration::from_secs(30),
            acquire: redis::Script::new(ACQUIRE),
            refresh: redis::Script::new(REFRESH),
        }
    }

    /// The same with another lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The lease.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn key(&self, user: &str) -> String {
        format!("{}conn:{user}", self.prefix)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Counts `connection` (unique across nodes, e.g. `node:conn-7`) for
    /// `user` if fewer than `cap` count now; `false` at the cap.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn acquire(
        &self,
        user: &str,
        connection: &str,
        cap: u32,
    ) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let ok: i64 = self
            .acquire
            .key(self.key(user))
            .arg(connection)
            .arg(cap)
            .arg(self.lease_ms())
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(ok == 1)
    }

    /// Stops counting `connection`.
    ///
    /// # Errors
    /// Redis unreachable (the entry then expires with its lease).
    pub async fn release(&self, user: &str, connection: &str) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("ZREM")
            .arg(self.key(user))
            .arg(connection)
            .query_async::<()>(&mut redis)
            .await
            .map_err(store_error)
    }

    /// Renews the leases of these `(user, connection)` pairs.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn refresh(&self, connections: &[(String, String)]) -> Result<(), StoreError> {
        // On a cluster a script's keys must share a hash slot: one call per
        // slot (users of one slot together).
        let keys: Vec<String> = connections.iter().map(|(user, _)| self.key(user)).collect();
        let groups: Vec<Vec<&(String, String)>> = self
            .redis
            .script_groups(&keys)
            .into_iter()
            .map(|members| members.into_iter().map(|i| &connections[i]).collect())
            .collect();
        for chunk in groups.iter().flat_map(|members| members.chunks(256)) {
            let mut invocation = self.refresh.prepare_invoke();
            invocation.arg(self.lease_ms());
            for (user, connection) in chunk {
                invocation.key(self.key(user)).arg(connection);
            }
            let mut redis = self.redis.clone();
            let _: i64 = invocation
                .invoke_async(&mut redis)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Connections counted for `user` now.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn count(&self, user: &str) -> Result<u64, StoreError> {
        let mut redis = self.redis.clone();
        redis::Script::new(COUNT)
            .key(self.key(user))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)
    }
}

/// KEYS: the user's sorted set.
const COUNT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#;

/// The resume-token secret shared by every node on this Redis: created
/// once (random, `SET NX`) under `{prefix}token-secret`, then read by all.
///
/// # Errors
/// Redis unreachable, or a stored secret that is not 64 hex digits.
pub async fn shared_token_secret(
    redis: &RedisConnection,
    prefix: &str,
) -> Result<[u8; 32], StoreError> {
    let key = format!("{prefix}token-secret");
    // A fresh session id is 128 random bits: two make 256.
    let random = format!(
        "{}{}",
        wsc_reconnection::new_session_id(),
        wsc_reconnection::new_session_id()
    );
    let mut redis = redis.clone();
    let _: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&random)
        .arg("NX")
        .query_async(&mut redis)
        .await
        .map_err(store_error)?;
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .map_err(store_error)?;
    if stored.len() != 64 {
        return Err(StoreError::new(format!("{key} is not 64 hex digits")));
    }
    let mut secret = [0u8; 32];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = u8::from_str_radix(&stored[2 * i..2 * i + 2], 16)
            .map_err(|_| StoreError::new(format!("{key} is not 64 hex digits")))?;
    }
    Ok(secret)
}
