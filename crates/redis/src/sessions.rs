//! [`RedisSessionStore`]: sessions and replay buffers in Redis, so a client
//! resumes on any gateway node.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::RedisConnection;
use async_trait::async_trait;
use wsc_core::{StoreError, Timestamp, WireFrame};
use wsc_reconnection::{
    Appended, BufferLimits, OverflowPolicy, PushOutcome, ReplayGap, SessionRecord, SessionStore,
    is_critical,
};

use crate::store_error;

/// Shared by the scripts: parses a stored frame's header
/// `seq|critical|bytes|at|` and pops the oldest frame, keeping the
/// session's byte count, `gone` mark and non-critical index in step.
const PRELUDE: &str = r#"
local function header(e)
  local a = string.find(e, '|', 1, true)
  local b = string.find(e, '|', a + 1, true)
  local c = string.find(e, '|', b + 1, true)
  local d = string.find(e, '|', c + 1, true)
  return tonumber(string.sub(e, 1, a - 1)), string.sub(e, a + 1, b - 1) == '1',
    tonumber(string.sub(e, b + 1, c - 1)), tonumber(string.sub(e, c + 1, d - 1))
end
local st = {dropped = 0, crit = 0}
local function pop_front(frames, noncrit, counts)
  local e = redis.call('LPOP', frames)
  if not e then return false end
  local s, c, b = header(e)
  st.bytes = st.bytes - b
  if s > st.gone then st.gone = s end
  st.dropped = st.dropped + 1
  if c then
    if counts then st.crit = 1 end
  else
    redis.call('LPOP', noncrit)
  end
  return true
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lease(keys, id, sessions, ms)
  for _, k in ipairs(keys) do redis.call('PEXPIRE', k, ms) end
  -- On a cluster the index is another slot's: the caller updates it.
  if sessions then redis.call('ZADD', sessions, now_ms() + ms, id) end
end
"#;

/// KEYS: hash, frames, noncrit, then (one Redis) sessions, user. ARGV: id,
/// user, epoch, created, last_seq, lease ms, max sessions. On a cluster the
/// indexes live in other slots: the store checks the cap and indexes the
/// session around the script.
const CREATE: &str = r#"
if KEYS[4] then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_ms())
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[7]) then return 0 end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'epoch', ARGV[3], 'created', ARGV[4],
  'detached', '-1', 'last', ARGV[5], 'gone', ARGV[5], 'bytes', '0')
lease({KEYS[1]}, ARGV[1], KEYS[4], tonumber(ARGV[6]))
if KEYS[5] then
  redis.call('SADD', KEYS[5], ARGV[1])
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[6]))
end
return 1
"#;

/// KEYS: hash, frames, noncrit, message ids, the previous generation of
/// message ids, then (one Redis) sessions. ARGV: id, now µs,
/// max frames, max bytes, max age µs, policy (0 oldest, 1 newest, 2 low
/// priority), critical, the body's bytes (the script adds the seq's), body, lease ms, channel, message id (may be
/// empty), the highest seq this node got for the session (0: none).
/// Returns {seq, dropped, dropped critical, epoch, kept, repeat, renew (the
/// attached lease had run past its half)},
/// or nil for an unknown session. A message id appended before (a publish
/// retried after an answer was lost) returns its first seq with repeat = 1
/// and appends nothing. Ids are kept in two generations of up to 4 096: a
/// full one becomes the previous (replacing the one before), so the last
/// 4 096 ids at least are always known.
const APPEND: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local mid = ARGV[12]
if mid ~= '' then
  local prev = redis.call('HGET', KEYS[4], mid) or redis.call('HGET', KEYS[5], mid)
  if prev then
    return {tonumber(prev), 0, 0, tonumber(redis.call('HGET', KEYS[1], 'epoch')), 1, 1, 0}
  end
end
local now = tonumber(ARGV[2])
local max_frames = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local max_age = tonumber(ARGV[5])
local policy = ARGV[6]
local critical = ARGV[7] == '1'
st.gone = tonumber(redis.call('HGET', KEYS[1], 'gone'))
st.bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes'))
local known = tonumber(ARGV[13])
if known > tonumber(redis.call('HGET', KEYS[1], 'last')) then
  -- This node saw frames numbered up to `known` that this store no
  -- longer has (a failover promoted a replica that had not received them).
  -- Their numbers are not reused: the buffer restarts after `known`, so a
  -- client that has every frame through `known` resumes, and one that
  -- lacks any is refused (a gap), never served a hole or a seq twice.
  while pop_front(KEYS[2], KEYS[3], false) do end
  st.gone = known
  redis.call('HSET', KEYS[1], 'last', string.format('%d', known))
end
local seq = redis.call('HINCRBY', KEYS[1], 'last', 1)
-- The numbered frame's size: the body with `,"seq":N` in it.
local size = tonumber(ARGV[8]) + 7 + string.len(string.format('%d', seq))
while true do
  local e = redis.call('LINDEX', KEYS[2], 0)
  if not e then break end
  local _, _, _, at = header(e)
  if now - at > max_age then pop_front(KEYS[2], KEYS[3], true) else break end
end
local function over()
  return redis.call('LLEN', KEYS[2]) + 1 > max_frames or st.bytes + size > max_bytes
end
local kept = 1
if over() and (policy == '1' or max_frames == 0 or size > max_bytes) then
  kept = 0
  st.gone = seq
  st.dropped = st.dropped + 1
  if critical then st.crit = 1 end
  while pop_front(KEYS[2], KEYS[3], true) do end
else
  while over() do
    local victim = nil
    if policy == '2' then victim = tonumber(redis.call('LINDEX', KEYS[3], 0)) end
    if victim then
      -- Older frames go with the victim (no replay can start before it);
      -- only the victim counts as lost.
      while true do
        local e = redis.call('LINDEX', KEYS[2], 0)
        local s = header(e)
        if s == victim then break end
        pop_front(KEYS[2], KEYS[3], false)
      end
    end
    pop_front(KEYS[2], KEYS[3], true)
  end
  redis.call('RPUSH', KEYS[2], string.format('%d|%s|%d|%d|', seq, critical and '1' or '0', size, now) .. ARGV[9])
  if not critical then redis.call('RPUSH', KEYS[3], seq) end
  st.bytes = st.bytes + size
end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
if st.crit == 1 then epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1) end
redis.call('HSET', KEYS[1], 'gone', string.format('%d', st.gone), 'bytes', st.bytes)
-- 1 when the attached lease is past its half: the index entry is renewed
-- (here on one Redis; by the store on a cluster).
local renew = 0
if redis.call('HGET', KEYS[1], 'detached') == '-1' then
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[10]) / 2 then renew = 1 end
  lease({KEYS[1], KEYS[2], KEYS[3]}, ARGV[1], KEYS[6], tonumber(ARGV[10]))
else
  -- Detached: the session's expiry stands; the lists share it.
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then
    redis.call('PEXPIRE', KEYS[2], pttl)
    redis.call('PEXPIRE', KEYS[3], pttl)
  end
end
if mid ~= '' then
  -- Recent ids only: a retry follows its failure closely.
  if redis.call('HLEN', KEYS[4]) >= 4096 then redis.call('RENAME', KEYS[4], KEYS[5]) end
  redis.call('HSET', KEYS[4], mid, seq)
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then
    redis.call('PEXPIRE', KEYS[4], pttl)
    if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('PEXPIRE', KEYS[5], pttl) end
  end
end
redis.call('PUBLISH', ARGV[11], ARGV[1] .. ':' .. seq)
return {seq, st.dropped, st.crit, epoch, kept, 0, renew}
"#;

/// KEYS: hash, frames. ARGV: last seq. Returns {0, frames...}, {-1} when
/// ahead, {-2} when a frame after it is gone, nil for an unknown session.
const REPLAY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local ls = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
local gone = tonumber(redis.call('HGET', KEYS[1], 'gone'))
if ls > last then return {-1} end
if ls < gone then return {-2} end
local out = {0}
for _, e in ipairs(redis.call('LRANGE', KEYS[2], ls - gone, -1)) do out[#out + 1] = e end
return out
"#;

/// KEYS: hash, frames, noncrit. ARGV: seq.
const ACK: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
st.gone = tonumber(redis.call('HGET', KEYS[1], 'gone'))
st.bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes'))
local upto = tonumber(ARGV[1])
while true do
  local e = redis.call('LINDEX', KEYS[2], 0)
  if not e then break end
  local s = header(e)
  if s > upto then break end
  pop_front(KEYS[2], KEYS[3], false)
end
redis.call('HSET', KEYS[1], 'gone', string.format('%d', st.gone), 'bytes', st.bytes)
return st.dropped
"#;

/// KEYS: hash, frames, noncrit, then (one Redis) sessions, detached, user.
/// ARGV: id, detached µs or -1, lease ms (attached), ttl ms (detached),
/// owner. Returns 1 when applied (the store then updates a cluster's
/// indexes). An
/// attach records its owner; a detach with an owner applies only if that
/// owner still holds the session (an empty owner matches any).
const SET_DETACHED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = ARGV[5]
if ARGV[2] == '-1' then
  redis.call('HSET', KEYS[1], 'owner', owner)
elseif owner ~= '' then
  local holder = redis.call('HGET', KEYS[1], 'owner')
  if holder and holder ~= '' and holder ~= owner then return 0 end
end
redis.call('HSET', KEYS[1], 'detached', ARGV[2])
local ms = tonumber(ARGV[3])
if ARGV[2] ~= '-1' then ms = tonumber(ARGV[4]) end
if KEYS[5] then
  if ARGV[2] == '-1' then
    redis.call('ZREM', KEYS[5], ARGV[1])
  else
    redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
  end
end
lease({KEYS[1], KEYS[2], KEYS[3]}, ARGV[1], KEYS[4], ms)
if KEYS[6] and redis.call('PTTL', KEYS[6]) < ms then redis.call('PEXPIRE', KEYS[6], ms) end
return 1
"#;

/// KEYS: hash, frames, noncrit, message ids (both generations), then (one
/// Redis) sessions, detached, user. ARGV: id.
const REMOVE: &str = r#"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
if KEYS[6] then
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('ZREM', KEYS[7], ARGV[1])
  redis.call('SREM', KEYS[8], ARGV[1])
end
return existed
"#;

/// KEYS: hash, frames, noncrit, claimed keys, their previous generation
/// (apart from the ids of published frames: publishes never evict them).
/// ARGV: key. Returns 1 if the key was new (now remembered), 0 if it was
/// remembered, or for an unknown session. Generations of up to 4 096, as
/// for message ids.
const CLAIM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[4]) >= 4096 then redis.call('RENAME', KEYS[4], KEYS[5]) end
redis.call('HSET', KEYS[4], ARGV[1], 0)
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[4], pttl)
  if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('PEXPIRE', KEYS[5], pttl) end
end
return 1
"#;

/// KEYS: sessions. ARGV: id, lease ms. (A cluster's index, kept apart.)
const INDEX_LEASE: &str = r#"
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

/// KEYS: the user's index. ARGV: id, ms: the id added, the index kept at
/// least `ms`. (A cluster's index, kept apart.)
const INDEX_USER: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 1
"#;

/// KEYS: sessions.
const COUNT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
return redis.call('ZCARD', KEYS[1])
"#;

/// Configuration of a [`RedisSessionStore`].
#[derive(Clone, Debug)]
pub struct RedisSessionConfig {
    /// Prefix of every key (default `"wsc:"`); nodes sharing sessions use
    /// the same.
    pub prefix: String,
    /// Replay buffer bounds per session (the same semantics as in memory).
    pub limits: BufferLimits,
    /// How long a detached session stays resumable; its keys expire one
    /// second after (default 300 s).
    pub session_ttl: Duration,
    /// How long an attached session's keys live without activity, renewed
    /// by every frame and attach (default 1 h): a node that dies leaves its
    /// sessions resumable elsewhere for up to this long.
    pub attached_lease: Duration,
    /// Sessions held at most across all nodes (default 1 000 000).
    pub max_sessions: usize,
}

impl Default for RedisSessionConfig {
    fn default() -> Self {
        RedisSessionConfig {
            prefix: "wsc:".into(),
            limits: BufferLimits::default(),
            session_ttl: Duration::from_secs(300),
            attached_lease: Duration::from_secs(3_600),
            max_sessions: 1_000_000,
        }
    }
}

/// Sessions and their replay buffers in Redis, for
/// [`SessionRegistry::with_store`](wsc_reconnection::SessionRegistry::with_store).
///
/// Per session: a hash (user, epoch, created, detached, last seq, the
/// highest seq gone, bytes), a list of frames (`seq|critical|bytes|at|json`,
/// oldest first, always exactly the seqs after "gone" through "last") and a
/// list of the non-critical frames' seqs (so the low-priority policy finds
/// its victim without reading frames). Every step is one Lua script, so it
/// is atomic across nodes, with the in-memory buffer's exact semantics
/// (checked side by side by a property test). A sorted set indexes live
/// sessions (for the cap and the count), another the detached ones (for
/// expiry), a set each user's; on a Redis Cluster these indexes live in
/// other slots than the session (whose keys share its id as hash tag), so
/// they are updated around the scripts rather than inside them (the cap is
/// checked before a create; an update lost to a failure leaves a session
/// unindexed, its keys still expiring with their lease). Every append also publishes
/// `session_id:seq` on the store's channel, so the node the session is
/// attached to learns of frames another node published.
///
/// ```no_run
/// # async fn run() -> Result<(), wsc_core::StoreError> {
/// use std::sync::Arc;
/// use wsc_reconnection::{SessionConfig, SessionRegistry};
/// use wsc_redis::{RedisSessionConfig, RedisSessionStore, connect};
///
/// let redis = connect("redis://127.0.0.1:6379").await?;
/// let store = RedisSessionStore::new(redis, RedisSessionConfig::default());
/// let registry = SessionRegistry::with_store(
///     SessionConfig::default(),
///     wsc_core::SystemClock::shared(),
///     Arc::new(store),
/// );
/// # let _ = registry; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSessionStore {
    redis: RedisConnection,
    config: RedisSessionConfig,
    create: redis::Script,
    append: redis::Script,
    replay: redis::Script,
    ack: redis::Script,
    set_detached: redis::Script,
    remove: redis::Script,
    count: redis::Script,
    claim: redis::Script,
    index_lease: redis::Script,
    index_user: redis::Script,
    /// The highest seq of each session this node appended or read back
    /// (replay, catch-up): an append that finds the store behind it (a
    /// failover lost acknowledged frames) skips the lost numbers (see
    /// `APPEND`). Bounded by `max_sessions`; removed with the session.
    numbered: Arc<dashmap::DashMap<String, u64>>,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}\n{body}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A stored frame `seq|critical|bytes|at|json` as the numbered frame it
/// stands for: the stored text (the frame without its seq) with the seq
/// appended, its time when it was stored — one copy, no parsing.
fn parse_frame(entry: &[u8]) -> Result<WireFrame, StoreError> {
    let text =
        std::str::from_utf8(entry).map_err(|_| StoreError::new("stored frame is not UTF-8"))?;
    let mut parts = text.splitn(5, '|');
    let seq: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::new("stored frame without a seq"))?;
    let at = parts
        .nth(2)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| StoreError::new("stored frame without a time"))?;
    let json = parts
        .next()
        .ok_or_else(|| StoreError::new("stored frame without a body"))?;
    WireFrame::from_body(json, seq, Some(Timestamp::from_unix_micros(at)))
        .map_err(|e| StoreError::new(format!("stored frame {seq} is not a frame: {e}")))
}

impl RedisSessionStore {
    /// A store on `redis` with `config`.
    pub fn new(redis: RedisConnection, config: RedisSessionConfig) -> Self {
        RedisSessionStore {
            redis,
            config,
            create: script(CREATE),
            append: script(APPEND),
            replay: script(REPLAY),
            ack: script(ACK),
            set_detached: script(SET_DETACHED),
            remove: script(REMOVE),
            count: script(COUNT),
            claim: script(CLAIM),
            index_lease: script(INDEX_LEASE),
            index_user: script(INDEX_USER),
            numbered: Arc::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RedisSessionConfig {
        &self.config
    }

    /// The pub/sub channel every append announces `session_id:seq` on.
    pub fn channel(&self) -> String {
        format!("{}frames", self.config.prefix)
    }

    /// A key of a session (`{id}` as its hash tag: a session's keys share
    /// one slot of a cluster, so its scripts may touch them together) or,
    /// for kind `u`, of a user's index.
    fn k(&self, kind: &str, id: &str) -> String {
        if kind == "u" {
            format!("{}u:{id}", self.config.prefix)
        } else {
            format!("{}{kind}:{{{id}}}", self.config.prefix)
        }
    }

    /// Whether the indexes (all sessions, the detached ones, each user's)
    /// are kept apart from the session scripts: on a cluster they live in
    /// other slots, so the store updates them around each script (not
    /// atomically with it: see [`RedisSessionStore`]).
    fn apart(&self) -> bool {
        self.redis.is_cluster()
    }

    /// Adds the indexes (all sessions, the detached ones, `user`'s) as the
    /// script's last keys on one Redis; on a cluster they are updated apart.
    fn with_indexes(&self, invocation: &mut redis::ScriptInvocation<'_>, user: &str) {
        if !self.apart() {
            invocation
                .key(self.index("sessions"))
                .key(self.index("detached"))
                .key(self.k("u", user));
        }
    }

    /// Remembers that `session_id` has frames through `seq` (bounded: past
    /// `max_sessions` entries new sessions are not tracked).
    fn remember_numbered(&self, session_id: &str, seq: u64) {
        if let Some(mut known) = self.numbered.get_mut(session_id) {
            *known = (*known).max(seq);
        } else if self.numbered.len() < self.config.max_sessions {
            self.numbered.insert(session_id.to_owned(), seq);
        }
    }

    /// A cluster's index of live sessions: `id` leased for `ms`.
    async fn index_lease(&self, id: &str, ms: u64) -> Result<(), StoreError> {
        self.index_apart(&self.index_lease, self.index("sessions"), id, ms)
            .await
    }

    /// A cluster's user index: `id` added, kept at least `ms`.
    async fn index_user(&self, user: &str, id: &str, ms: u64) -> Result<(), StoreError> {
        self.index_apart(&self.index_user, self.k("u", user), id, ms)
            .await
    }

    /// Runs an index script (`INDEX_LEASE`, `INDEX_USER`) on `key` for
    /// session `id` and `ms`.
    async fn index_apart(
        &self,
        script: &redis::Script,
        key: String,
        id: &str,
        ms: u64,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: i64 = script
            .key(key)
            .arg(id)
            .arg(ms)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// An invocation of `script` whose first keys are the session's hash,
    /// frame list and non-critical index (KEYS[1..3] of every script but
    /// the replay).
    fn on_session<'a>(&self, script: &'a redis::Script, id: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.k("s", id))
            .key(self.k("f", id))
            .key(self.k("n", id));
        invocation
    }

    /// The ids in a user's session index (some may have expired since).
    async fn user_index(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("SMEMBERS")
            .arg(self.k("u", user_id))
            .query_async(&mut redis)
            .await
            .map_err(store_error)
    }

    fn index(&self, kind: &str) -> String {
        format!("{}{kind}", self.config.prefix)
    }

    fn detached_ttl(&self) -> Duration {
        self.config.session_ttl + Duration::from_secs(1)
    }

    /// Attaches (`None`) or detaches a session, for `owner` (empty: any).
    async fn mark(
        &self,
        session_id: &str,
        detached_at: Option<Timestamp>,
        owner: &str,
    ) -> Result<(), StoreError> {
        let Some(user) = self.user_of(session_id).await? else {
            return Ok(());
        };
        let mut redis = self.redis.clone();
        let mut invocation = self.on_session(&self.set_detached, session_id);
        self.with_indexes(&mut invocation, &user);
        let applied: i64 = invocation
            .arg(session_id)
            .arg(detached_at.map_or(-1, |t| t.as_unix_micros()))
            .arg(millis(self.config.attached_lease))
            .arg(millis(self.detached_ttl()))
            .arg(owner)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        if applied == 1 && self.apart() {
            let ms = match detached_at {
                None => {
                    redis::cmd("ZREM")
                        .arg(self.index("detached"))
                        .arg(session_id)
                        .query_async::<()>(&mut redis)
                        .await
                        .map_err(store_error)?;
                    millis(self.config.attached_lease)
                }
                Some(at) => {
                    redis::cmd("ZADD")
                        .arg(self.index("detached"))
                        .arg(at.as_unix_micros())
                        .arg(session_id)
                        .query_async::<()>(&mut redis)
                        .await
                        .map_err(store_error)?;
                    millis(self.detached_ttl())
                }
            };
            self.index_lease(session_id, ms).await?;
            self.index_user(&user, session_id, ms).await?;
        }
        Ok(())
    }

    async fn user_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("HGET")
            .arg(self.k("s", id))
            .arg("user")
            .query_async(&mut redis)
            .await
            .map_err(store_error)
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, record: SessionRecord) -> Result<bool, StoreError> {
        let id = &record.session_id;
        self.numbered.remove(id);
        let lease = millis(self.config.attached_lease);
        // A cluster's cap is checked before the script (two gateways
        // creating at once may both pass it: one session over at most per
        // concurrent create).
        if self.apart() && self.session_count().await? >= self.config.max_sessions {
            return Ok(false);
        }
        let mut redis = self.redis.clone();
        let mut invocation = self.on_session(&self.create, id);
        if !self.apart() {
            invocation
                .key(self.index("sessions"))
                .key(self.k("u", &record.user_id));
        }
        let created: i64 = invocation
            .arg(id)
            .arg(&record.user_id)
            .arg(record.epoch)
            .arg(record.created_at.as_unix_micros())
            .arg(record.last_seq)
            .arg(lease)
            .arg(self.config.max_sessions)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        if created == 1 && self.apart() {
            // A failure here leaves the session unindexed, not lost: its
            // keys expire with their lease.
            self.index_lease(id, lease).await?;
            self.index_user(&record.user_id, id, lease).await?;
        }
        Ok(created == 1)
    }

    async fn get(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut redis = self.redis.clone();
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.k("s", session_id))
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let num = |name: &str| -> Result<i64, StoreError> {
            fields
                .get(name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| StoreError::new(format!("session hash without `{name}`")))
        };
        let detached = num("detached")?;
        Ok(Some(SessionRecord {
            session_id: session_id.to_owned(),
            user_id: fields.get("user").cloned().unwrap_or_default(),
            epoch: num("epoch")? as u64,
            created_at: Timestamp::from_unix_micros(num("created")?),
            detached_at: (detached >= 0).then(|| Timestamp::from_unix_micros(detached)),
            last_seq: num("last")? as u64,
        }))
    }

    async fn append(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Appended>, StoreError> {
        let limits = &self.config.limits;
        let policy = match limits.policy {
            OverflowPolicy::DropOldest => 0,
            OverflowPolicy::DropNewest => 1,
            OverflowPolicy::DropLowPriority => 2,
        };
        let critical = is_critical(frame.message_type());
        // The frame's text as it is (no seq: the script numbers it and
        // counts the seq in its size).
        let body = frame.body();
        let bytes = body.len();
        let mut redis = self.redis.clone();
        let message_id = message_id.unwrap_or_default();
        let mut invocation = self.on_session(&self.append, session_id);
        invocation
            .key(self.k("m", session_id))
            .key(self.k("m2", session_id));
        if !self.apart() {
            invocation.key(self.index("sessions"));
        }
        let out: Option<(u64, usize, u8, u64, u8, u8, u8)> = invocation
            .arg(session_id)
            .arg(now.as_unix_micros())
            .arg(limits.max_frames)
            .arg(limits.max_bytes)
            .arg(i64::try_from(limits.max_age.as_micros()).unwrap_or(i64::MAX))
            .arg(policy)
            .arg(u8::from(critical))
            .arg(bytes)
            .arg(body.as_ref())
            .arg(millis(self.config.attached_lease))
            .arg(self.channel())
            .arg(message_id)
            .arg(self.numbered.get(session_id).map_or(0, |n| *n))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        if let Some((seq, ..)) = out {
            self.remember_numbered(session_id, seq);
        }
        if let Some((.., 1)) = out
            && self.apart()
        {
            self.index_lease(session_id, millis(self.config.attached_lease))
                .await?;
        }
        out.map(
            |(seq, dropped, dropped_critical, epoch, _kept, repeat, _)| {
                // A repeat was delivered the first time (its announcement
                // reaches whoever holds the session).
                let frame = if repeat == 0 {
                    Some(
                        frame
                            .with_seq(seq)
                            .map_err(|e| StoreError::new(e.to_string()))?
                            .with_time(now),
                    )
                } else {
                    None
                };
                Ok(Appended {
                    push: PushOutcome {
                        seq,
                        frame,
                        dropped,
                        dropped_critical: dropped_critical == 1,
                    },
                    epoch,
                })
            },
        )
        .transpose()
    }

    async fn replay_after(
        &self,
        session_id: &str,
        last_seq: u64,
    ) -> Result<Option<Result<Vec<WireFrame>, ReplayGap>>, StoreError> {
        let mut redis = self.redis.clone();
        let out: Option<Vec<redis::Value>> = self
            .replay
            .key(self.k("s", session_id))
            .key(self.k("f", session_id))
            .arg(last_seq)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        let Some(items) = out else { return Ok(None) };
        let mut items = items.into_iter();
        let code = match items.next() {
            Some(redis::Value::Int(code)) => code,
            _ => return Err(StoreError::new("unexpected replay answer")),
        };
        match code {
            -1 => return Ok(Some(Err(ReplayGap::Ahead))),
            -2 => return Ok(Some(Err(ReplayGap::Dropped))),
            _ => {}
        }
        let mut frames = Vec::with_capacity(items.len());
        for item in items {
            match item {
                redis::Value::BulkString(bytes) => frames.push(parse_frame(&bytes)?),
                _ => return Err(StoreError::new("unexpected frame in replay answer")),
            }
        }
        // Frames this gateway hands out are as good as its own appends: if
        // a failover loses them, its next append numbers after them too
        // (a gateway delivering another's run, or the one a client resumed
        // on, appends next without reusing a seq the client already has).
        if let Some(seq) = frames.last().and_then(WireFrame::seq) {
            self.remember_numbered(session_id, seq);
        }
        Ok(Some(Ok(frames)))
    }

    async fn ack(&self, session_id: &str, seq: u64) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: i64 = self
            .on_session(&self.ack, session_id)
            .arg(seq)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn set_detached(
        &self,
        session_id: &str,
        detached_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.mark(session_id, detached_at, "").await
    }

    async fn attach_owner(&self, session_id: &str, owner: &str) -> Result<(), StoreError> {
        self.mark(session_id, None, owner).await
    }

    async fn detach_owner(
        &self,
        session_id: &str,
        owner: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.mark(session_id, Some(at), owner).await
    }

    async fn remove(&self, session_id: &str) -> Result<bool, StoreError> {
        self.numbered.remove(session_id);
        let user = self.user_of(session_id).await?.unwrap_or_default();
        let mut redis = self.redis.clone();
        let mut invocation = self.on_session(&self.remove, session_id);
        invocation
            .key(self.k("m", session_id))
            .key(self.k("m2", session_id));
        self.with_indexes(&mut invocation, &user);
        let existed: i64 = invocation
            .arg(session_id)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        // Its claimed keys (the same slot: the session id is their tag).
        redis::cmd("DEL")
            .arg(self.k("c", session_id))
            .arg(self.k("c2", session_id))
            .query_async::<()>(&mut redis)
            .await
            .map_err(store_error)?;
        if self.apart() {
            for (command, key) in [
                ("ZREM", self.index("sessions")),
                ("ZREM", self.index("detached")),
                ("SREM", self.k("u", &user)),
            ] {
                redis::cmd(command)
                    .arg(key)
                    .arg(session_id)
                    .query_async::<()>(&mut redis)
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(existed == 1)
    }

    async fn expired(&self, now: Timestamp, ttl: Duration) -> Result<Vec<String>, StoreError> {
        let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let bound = now.as_unix_micros().saturating_sub(ttl);
        let mut redis = self.redis.clone();
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.index("detached"))
            .arg("-inf")
            .arg(format!("({bound}"))
            .query_async(&mut redis)
            .await
            .map_err(store_error)
    }

    async fn buffered_for_user(&self, user_id: &str) -> Result<Vec<WireFrame>, StoreError> {
        let ids = self.user_index(user_id).await?;
        let mut redis = self.redis.clone();
        let mut sessions = Vec::new();
        for id in ids {
            let Some(record) = self.get(&id).await? else {
                continue;
            };
            let entries: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(self.k("f", &id))
                .arg(0)
                .arg(-1)
                .query_async(&mut redis)
                .await
                .map_err(store_error)?;
            let frames = entries
                .iter()
                .map(|e| parse_frame(e))
                .collect::<Result<Vec<_>, _>>()?;
            sessions.push((record.created_at, frames));
        }
        sessions.sort_by_key(|(at, _)| *at);
        Ok(sessions.into_iter().flat_map(|(_, f)| f).collect())
    }

    async fn session_count(&self) -> Result<usize, StoreError> {
        let mut redis = self.redis.clone();
        self.count
            .key(self.index("sessions"))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)
    }

    async fn sessions_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let ids = self.user_index(user_id).await?;
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            // The index may name a session that expired since.
            if self.get(&id).await?.is_some() {
                live.push(id);
            }
        }
        Ok(live)
    }

    async fn holds_message(&self, session_id: &str, message_id: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let (now, before): (bool, bool) = redis::pipe()
            .cmd("HEXISTS")
            .arg(self.k("m", session_id))
            .arg(message_id)
            .cmd("HEXISTS")
            .arg(self.k("m2", session_id))
            .arg(message_id)
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(now || before)
    }

    async fn oldest_detached(
        &self,
        n: usize,
        _now: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut redis = self.redis.clone();
        let oldest: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(self.index("detached"))
            .arg(0)
            .arg(n - 1)
            .arg("WITHSCORES")
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(oldest
            .into_iter()
            .map(|(id, at)| (id, Timestamp::from_unix_micros(at)))
            .collect())
    }

    async fn claim_key(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let claimed: i64 = self
            .on_session(&self.claim, session_id)
            .key(self.k("c", session_id))
            .key(self.k("c2", session_id))
            .arg(key)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(claimed == 1)
    }

    async fn holds_claimed(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let (now, before): (bool, bool) = redis::pipe()
            .cmd("HEXISTS")
            .arg(self.k("c", session_id))
            .arg(key)
            .cmd("HEXISTS")
            .arg(self.k("c2", session_id))
            .arg(key)
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(now || before)
    }
}
