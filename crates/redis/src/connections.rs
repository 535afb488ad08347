//! [`RedisConnectionCounter`]: per-user connection counts across gateways
//! that heal when a gateway dies, kept alive per gateway (not per
//! connection) so idle connections cost Redis next to nothing; and, on
//! the same gateway leases, the runs that died with their gateway.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::RedisConnection;
use wsc_core::StoreError;

use crate::store_error;

/// Separates a count entry's gateway id from its connection id.
const SEPARATOR: char = '|';

/// A user's key lives this many leases without being touched (30 min at
/// the default 30 s lease): long enough that touching it is rare.
const KEY_TTL_LEASES: u32 = 60;

/// [`RedisConnectionCounter::refresh`] touches each held connection's key
/// once in this many calls (every 10 min when called every 10 s), a slice
/// of them each call.
const TOUCH_ROUNDS: u64 = 60;

/// Counts a user's entries, dropping those of dead gateways.
///
/// Entries are `gateway|connection`, scored with the time they were
/// written. An entry counts while its gateway is live (`ARGV` from
/// `first_live` on) or it is younger than a lease (its gateway may be too
/// new to be in the caller's list); otherwise it is removed — unless
/// `prune` is 0 (the caller's list is too old to trust: everything
/// counts). Defines `count_live(key, now, lease_ms, prune, first_live,
/// mine)`, which returns the count and whether `mine` is there.
const COUNT_LIVE: &str = r#"
local function count_live(key, now, lease_ms, prune, first_live, mine)
  local live = {}
  for i = first_live, #ARGV do live[ARGV[i]] = true end
  local oldest = now - lease_ms
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local count, present = 0, false
  for i = 1, #entries, 2 do
    local member = entries[i]
    local gateway = string.match(member, '^([^|]*)|')
    if member == mine then present = true end
    if prune == 0 or live[gateway] or tonumber(entries[i + 1]) > oldest then
      count = count + 1
    else
      redis.call('ZREM', key, member)
    end
  end
  return count, present
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// KEYS: the user's sorted set. ARGV: entry, cap, key TTL ms, lease ms,
/// prune, then the live gateways.
const ACQUIRE: &str = r#"
local count, present = count_live(KEYS[1], now, tonumber(ARGV[4]), tonumber(ARGV[5]), 6, ARGV[1])
if present then return 1 end
if count >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"#;

/// KEYS: the user's sorted set. ARGV: lease ms, prune, then the live
/// gateways.
const COUNT: &str = r#"
local count = count_live(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), 3, nil)
return count
"#;

/// KEYS: the users' sorted sets. ARGV: key TTL ms, then one entry per key.
/// Writes the entries again (after this gateway lapsed) and renews the
/// keys' TTL.
const WRITE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[i + 1])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]))
end
return #KEYS
"#;

/// KEYS: the gateways' sorted set. ARGV: this gateway's id, lease ms.
/// Renews this gateway's lease, drops dead gateways; returns whether this
/// gateway had lapsed (or is new), then the live gateways.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local before = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * lease)
local lapsed = '0'
if before == false or tonumber(before) <= now then lapsed = '1' end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.insert(live, 1, lapsed)
return live
"#;

/// KEYS: a session's runs in flight. ARGV: lease ms, longest run ms,
/// prune, this gateway, then the live gateways. Entries are
/// `gateway|run` scored with their start. Returns "1" if runs of other
/// live gateways remain ("0" if not), then the runs whose gateway is gone
/// (removed). Entries older than the longest run are dropped unreported.
const LOST_RUNS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, longest, prune = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local live = {}
for i = 5, #ARGV do live[ARGV[i]] = true end
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {'0'}
for i = 1, #entries, 2 do
  local member = entries[i]
  local started = tonumber(entries[i + 1])
  local gateway, run = string.match(member, '^([^|]*)|(.*)$')
  if started < now - longest or gateway == nil then
    redis.call('ZREM', KEYS[1], member)
  elseif prune == 1 and not live[gateway] and started < now - lease then
    redis.call('ZREM', KEYS[1], member)
    table.insert(out, run)
  elseif gateway ~= ARGV[4] then
    out[1] = '1'
  end
end
return out
"#;

/// KEYS: a session's runs in flight. ARGV: entry, longest run ms.
const RUN_STARTED: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"#;

/// A session's runs whose gateway is gone, from
/// [`RedisConnectionCounter::lost_runs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LostRuns {
    /// Runs whose gateway stopped renewing its lease before they ended
    /// (reported once: they are removed).
    pub lost: Vec<String>,
    /// Whether runs of other gateways that are live (or too new to judge)
    /// are still going: asking again later may find more.
    pub others_running: bool,
}

/// What this gateway knows of the others.
#[derive(Debug, Default)]
struct Liveness {
    /// Gateways live at the last heartbeat (this one among them).
    live: Vec<String>,
    /// When that heartbeat answered.
    at: Option<Instant>,
    /// This gateway's lease lapsed (or it is new): its entries must be
    /// written again.
    lapsed: bool,
    /// Calls of `refresh` so far (which slice of keys to touch).
    rounds: u64,
}

/// Counts each user's open connections across every gateway sharing a
/// Redis (or a Redis Cluster).
///
/// Each connection is an entry in its user's sorted set, written once when
/// it is counted ([`acquire`](Self::acquire)) and removed once
/// ([`release`](Self::release)). What keeps the entries alive is the
/// gateway's own lease, not theirs: every gateway renews its lease in one
/// shared set (`{prefix}gateways`) with [`refresh`](Self::refresh) — one
/// script per gateway per call, whatever it holds — and counts only the
/// entries of live gateways. A gateway that dies stops renewing, and its
/// connections stop counting within about a lease (default 30 s): the
/// counts heal by themselves. A gateway that could not renew for a lease
/// writes its entries again when it can. A user's key expires after 60
/// leases untouched (each gateway touches its users' keys a slice at a
/// time, once every 60 calls of `refresh`), so keys of users who never
/// come back do not stay. Times are Redis's own clock.
///
/// Call `refresh` every third of the lease or so (the gateway does so
/// every 10 s), before the first `acquire` too.
///
/// The same lease tells which runs died with their gateway: a gateway
/// marks each WebSocket run of a session it runs
/// ([`run_started`](Self::run_started), [`run_ended`](Self::run_ended)),
/// and the gateway the session resumes on asks
/// [`lost_runs`](Self::lost_runs) for those whose gateway is gone.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), wsc_core::StoreError> {
/// let redis = wsc_redis::connect("redis://127.0.0.1:6379").await?;
/// let counter = wsc_redis::RedisConnectionCounter::new(redis, "wsc:");
/// counter.refresh().await?;
/// if counter.acquire("ann", "conn-1", 3).await? {
///     // ... serve the connection, calling counter.refresh() every 10 s ...
///     counter.release("ann", "conn-1").await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConnectionCounter {
    redis: RedisConnection,
    prefix: String,
    gateway: String,
    lease: Duration,
    acquire: redis::Script,
    count: redis::Script,
    write: redis::Script,
    heartbeat: redis::Script,
    lost_runs: redis::Script,
    run_started: redis::Script,
    /// This gateway's counted connections: connection -> user.
    held: Arc<Mutex<HashMap<String, String>>>,
    liveness: Arc<Mutex<Liveness>>,
    /// Held while a heartbeat is in flight.
    beating: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for RedisConnectionCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnectionCounter")
            .field("prefix", &self.prefix)
            .field("gateway", &self.gateway)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `d` in whole milliseconds, at least 1 (Redis refuses a 0 expiry).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Which slice of [`TOUCH_ROUNDS`] a connection's key is touched in.
fn touch_round(connection: &str) -> u64 {
    // FNV-1a: stable, cheap, spread enough.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in connection.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash % TOUCH_ROUNDS
}

impl RedisConnectionCounter {
    /// A counter on `redis` with keys under `prefix`, a 30 s lease and a
    /// random gateway id.
    pub fn new(redis: RedisConnection, prefix: impl Into<String>) -> Self {
        RedisConnectionCounter {
            redis,
            prefix: prefix.into(),
            gateway: wsc_reconnection::new_session_id()[..12].to_owned(),
            lease: Duration::from_secs(30),
            acquire: redis::Script::new(&format!("{COUNT_LIVE}{ACQUIRE}")),
            count: redis::Script::new(&format!("{COUNT_LIVE}{COUNT}")),
            write: redis::Script::new(WRITE),
            heartbeat: redis::Script::new(HEARTBEAT),
            lost_runs: redis::Script::new(LOST_RUNS),
            run_started: redis::Script::new(RUN_STARTED),
            held: Arc::default(),
            liveness: Arc::default(),
            beating: Arc::default(),
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

    /// This gateway's id in the counts (random, 12 hex digits).
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// How many connections this gateway holds counted.
    pub fn held(&self) -> usize {
        lock(&self.held).len()
    }

    fn key(&self, user: &str) -> String {
        format!("{}conn:{user}", self.prefix)
    }

    fn entry(&self, connection: &str) -> String {
        format!("{}{SEPARATOR}{connection}", self.gateway)
    }

    fn lease_ms(&self) -> u64 {
        millis(self.lease)
    }

    /// Removes `member` from the sorted set `key`.
    async fn zrem(&self, key: String, member: String) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("ZREM")
            .arg(key)
            .arg(member)
            .query_async::<()>(&mut redis)
            .await
            .map_err(store_error)
    }

    fn key_ttl_ms(&self) -> u64 {
        self.lease_ms().saturating_mul(u64::from(KEY_TTL_LEASES))
    }

    /// The live gateways and whether to prune by them: a list older than
    /// half a lease is not trusted (an entry of a gateway started since
    /// could be taken for a dead one's), so nothing is pruned and
    /// everything counts. Heartbeats first if this gateway never did.
    async fn live(&self) -> Result<(bool, Vec<String>), StoreError> {
        let known = {
            let liveness = lock(&self.liveness);
            liveness.at.map(|at| (at.elapsed(), liveness.live.clone()))
        };
        match known {
            Some((age, live)) if age < self.lease / 2 => Ok((true, live)),
            Some((_, live)) => Ok((false, live)),
            None => {
                let _one = self.beating.lock().await;
                // Another caller may have beaten meanwhile.
                if lock(&self.liveness).at.is_none() {
                    self.beat_now().await?;
                }
                Ok((true, lock(&self.liveness).live.clone()))
            }
        }
    }

    /// Renews this gateway's lease and reads the live gateways. One at a
    /// time: beats answered out of order would take the first one's "new"
    /// for a lapse.
    async fn beat(&self) -> Result<(), StoreError> {
        let _one = self.beating.lock().await;
        self.beat_now().await
    }

    async fn beat_now(&self) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let mut reply: Vec<String> = self
            .heartbeat
            .key(format!("{}gateways", self.prefix))
            .arg(&self.gateway)
            .arg(self.lease_ms())
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        let lapsed = !reply.is_empty() && reply.remove(0) == "1";
        let mut liveness = lock(&self.liveness);
        // New is not lapsed: nothing was written before the first beat.
        liveness.lapsed |= lapsed && liveness.at.is_some();
        liveness.live = reply;
        liveness.at = Some(Instant::now());
        Ok(())
    }

    /// Counts `connection` (unique on this gateway, e.g. `conn-7`) for
    /// `user` if fewer than `cap` count now across gateways; `false` at
    /// the cap. Counting the same connection again is a no-op.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn acquire(
        &self,
        user: &str,
        connection: &str,
        cap: u32,
    ) -> Result<bool, StoreError> {
        let (prune, live) = self.live().await?;
        let mut invocation = self.acquire.key(self.key(user));
        invocation
            .arg(self.entry(connection))
            .arg(cap)
            .arg(self.key_ttl_ms())
            .arg(self.lease_ms())
            .arg(i64::from(prune))
            .arg(live);
        let mut redis = self.redis.clone();
        let ok: i64 = invocation
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        if ok == 1 {
            lock(&self.held).insert(connection.to_owned(), user.to_owned());
        }
        Ok(ok == 1)
    }

    /// Stops counting `connection`.
    ///
    /// # Errors
    /// Redis unreachable (the entry then stays until this gateway's lease
    /// ends, or until its user's key expires).
    pub async fn release(&self, user: &str, connection: &str) -> Result<(), StoreError> {
        // Out of `held` first: an entry written again concurrently is then
        // removed again by that write's check.
        lock(&self.held).remove(connection);
        self.zrem(self.key(user), self.entry(connection)).await
    }

    /// Renews this gateway's lease (one script, whatever it holds), reads
    /// which gateways are live, touches a slice of its users' keys, and —
    /// if its lease had lapsed — writes all its entries again.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        self.beat().await?;
        let (lapsed, round) = {
            let mut liveness = lock(&self.liveness);
            liveness.rounds += 1;
            (
                std::mem::take(&mut liveness.lapsed),
                liveness.rounds % TOUCH_ROUNDS,
            )
        };
        let due: Vec<(String, String)> = lock(&self.held)
            .iter()
            .filter(|(connection, _)| lapsed || touch_round(connection) == round)
            .map(|(connection, user)| (user.clone(), connection.clone()))
            .collect();
        if let Err(e) = self.write_again(&due).await {
            if lapsed {
                lock(&self.liveness).lapsed = true;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Writes these `(user, connection)` entries again (and renews their
    /// keys), then removes those released meanwhile.
    async fn write_again(&self, due: &[(String, String)]) -> Result<(), StoreError> {
        if due.is_empty() {
            return Ok(());
        }
        // On a cluster a script's keys must share a hash slot: one call per
        // slot (users of one slot together).
        let keys: Vec<String> = due.iter().map(|(user, _)| self.key(user)).collect();
        for group in self.redis.script_groups(&keys) {
            for chunk in group.chunks(256) {
                let mut invocation = self.write.prepare_invoke();
                invocation.arg(self.key_ttl_ms());
                for &i in chunk {
                    invocation.key(&keys[i]).arg(self.entry(&due[i].1));
                }
                let mut redis = self.redis.clone();
                let _: i64 = invocation
                    .invoke_async(&mut redis)
                    .await
                    .map_err(store_error)?;
            }
        }
        let gone: Vec<&(String, String)> = {
            let held = lock(&self.held);
            due.iter()
                .filter(|(_, connection)| !held.contains_key(connection))
                .collect()
        };
        for (user, connection) in gone {
            self.zrem(self.key(user), self.entry(connection)).await?;
        }
        Ok(())
    }

    fn runs_key(&self, session: &str) -> String {
        format!("{}runs-of:{session}", self.prefix)
    }

    /// Marks `run` of `session` as running on this gateway, for at most
    /// `longest` (the entry is dropped after that).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn run_started(
        &self,
        session: &str,
        run: &str,
        longest: Duration,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: i64 = self
            .run_started
            .key(self.runs_key(session))
            .arg(self.entry(run))
            .arg(millis(longest))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Unmarks `run` of `session` (it ended here).
    ///
    /// # Errors
    /// Redis unreachable (the entry then stays until `longest` passes).
    pub async fn run_ended(&self, session: &str, run: &str) -> Result<(), StoreError> {
        self.zrem(self.runs_key(session), self.entry(run)).await
    }

    /// The runs of `session` whose gateway is gone — it stopped renewing
    /// its lease before they ended — removed as they are reported; runs
    /// older than `longest` are dropped unreported. With a list of live
    /// gateways too old to trust, nothing is reported (and
    /// `others_running` is true).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn lost_runs(
        &self,
        session: &str,
        longest: Duration,
    ) -> Result<LostRuns, StoreError> {
        let (prune, live) = self.live().await?;
        let mut invocation = self.lost_runs.key(self.runs_key(session));
        invocation
            .arg(self.lease_ms())
            .arg(millis(longest))
            .arg(i64::from(prune))
            .arg(&self.gateway)
            .arg(live);
        let mut redis = self.redis.clone();
        let mut reply: Vec<String> = invocation
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        let others_running = !reply.is_empty() && reply.remove(0) == "1";
        Ok(LostRuns {
            lost: reply,
            others_running: others_running || !prune,
        })
    }

    /// Connections counted for `user` now, across gateways.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn count(&self, user: &str) -> Result<u64, StoreError> {
        let (prune, live) = self.live().await?;
        let mut invocation = self.count.key(self.key(user));
        invocation
            .arg(self.lease_ms())
            .arg(i64::from(prune))
            .arg(live);
        let mut redis = self.redis.clone();
        invocation
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)
    }
}

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
