//! [`RedisRateLimitStore`]: the limiter's message windows in Redis, one Lua
//! script per decision.

use std::fmt;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use wsc_core::{StoreError, Timestamp};
use wsc_rate_limiter::{RateLimitStore, WindowDecision, WindowLimit, WindowRequest};

use crate::store_error;

/// Checks every window of one key and, if all admit and `record` is set,
/// counts one admission in each — atomically, as Redis runs a script alone.
///
/// One hash per key. Field `shape` names the windows' geometry (a different
/// geometry resets the key, as in memory); per enabled window `i`, field
/// `i:h` is the newest tick seen (a clock stepped back is treated as that
/// tick) and `i:T` counts the admissions of tick `T`. Ticks older than
/// `span` ticks are deleted as they are met. The arithmetic is the in-memory
/// store's, documented on `WindowLimit`.
///
/// KEYS[1] the hash. ARGV: now (µs), record (0/1), shape, the number of
/// enabled windows, then per window: index, tick (µs), span (ticks),
/// allowed. Returns {admitted, refused index or -1, retry-at µs or -1}.
const DECIDE: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local record = ARGV[2] == '1'
local shape = ARGV[3]
local n = tonumber(ARGV[4])
local fields = {}
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do fields[all[i]] = all[i + 1] end
local exists = #all > 0
if exists and fields['shape'] ~= shape then
  redis.call('DEL', key)
  exists = false
  fields = {}
end
local refused = -1
local retry = -1
local curs = {}
local heads = {}
local ttl = 0
for w = 0, n - 1 do
  local b = 5 + w * 4
  local idx = ARGV[b]
  local tick = tonumber(ARGV[b + 1])
  local span = tonumber(ARGV[b + 2])
  local allowed = tonumber(ARGV[b + 3])
  local cur = math.floor(now / tick)
  local hf = idx .. ':h'
  local head = tonumber(fields[hf])
  if head and cur < head then cur = head end
  curs[w] = cur
  heads[w] = head
  local prefix = idx .. ':'
  local live = {}
  local total = 0
  for f, c in pairs(fields) do
    if f ~= hf and string.sub(f, 1, #prefix) == prefix then
      local t = tonumber(string.sub(f, #prefix + 1))
      if t < cur - span then
        redis.call('HDEL', key, f)
      else
        total = total + tonumber(c)
        live[#live + 1] = {t, tonumber(c)}
      end
    end
  end
  if exists and head ~= cur then redis.call('HSET', key, hf, string.format('%d', cur)) end
  if total >= allowed then
    if refused < 0 then refused = tonumber(idx) end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    local need = total - allowed + 1
    local freed = 0
    for _, tc in ipairs(live) do
      freed = freed + tc[2]
      if freed >= need then
        local at = (tc[1] + span + 1) * tick
        if at > retry then retry = at end
        break
      end
    end
  end
  local life = math.ceil((span + 1) * tick / 1000) + 1000
  if life > ttl then ttl = life end
end
if refused < 0 and record and n > 0 then
  local set = {}
  if not exists then set[#set + 1] = 'shape'; set[#set + 1] = shape end
  for w = 0, n - 1 do
    local idx = ARGV[5 + w * 4]
    local cur = string.format('%d', curs[w])
    redis.call('HINCRBY', key, idx .. ':' .. cur, 1)
    if not exists then set[#set + 1] = idx .. ':h'; set[#set + 1] = cur end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  redis.call('PEXPIRE', key, ttl)
end
return {refused < 0 and 1 or 0, refused, retry}
"#;

/// The rate limiter's [`RateLimitStore`] in Redis: every gateway node that
/// shares the Redis sees the same windows, with the same exact sliding
/// semantics and `retry_after` as the in-memory store.
///
/// Decisions use the `now` the limiter passes (its clock), so nodes must
/// keep their clocks in step (NTP); a node whose clock runs behind another's
/// is treated as standing at the newest tick already seen. One difference
/// from memory: the in-memory rings cap a single tick at 65 535 admissions,
/// Redis does not.
///
/// ```no_run
/// # async fn run() -> Result<(), wsc_core::StoreError> {
/// use std::sync::Arc;
/// use wsc_rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
/// use wsc_redis::{RedisRateLimitStore, connect};
///
/// let redis = connect("redis://127.0.0.1:6379").await?;
/// let store = Arc::new(RedisRateLimitStore::new(redis, "wsc:"));
/// let limiter = WebSocketRateLimiter::with_store(
///     RateLimitConfig::default(),
///     wsc_core::SystemClock::shared(),
///     store,
/// );
/// # let _ = limiter; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRateLimitStore {
    redis: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl fmt::Debug for RedisRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The enabled windows' geometry, as the script takes it.
struct Geometry {
    index: usize,
    tick: i64,
    span: i64,
    allowed: u32,
}

fn geometry(windows: &[WindowLimit], burst: u32) -> (String, Vec<Geometry>) {
    let list: Vec<Geometry> = windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.enabled())
        .map(|(index, w)| Geometry {
            index,
            tick: w.tick_micros(),
            span: w.span(),
            allowed: w.limit.saturating_add(burst),
        })
        .collect();
    let shape = list
        .iter()
        .map(|g| format!("{}:{}/{}", g.index, g.tick, g.span))
        .collect::<Vec<_>>()
        .join(",");
    (shape, list)
}

impl RedisRateLimitStore {
    /// A store on `redis`, its keys starting with `prefix` (e.g. `"wsc:"`).
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>) -> Self {
        RedisRateLimitStore {
            redis,
            prefix: prefix.into(),
            script: redis::Script::new(DECIDE),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}rl:{key}", self.prefix)
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    async fn decide(&self, r: WindowRequest<'_>) -> Result<WindowDecision, StoreError> {
        let (shape, list) = geometry(r.windows, r.burst);
        let mut invocation = self.script.key(self.key(r.key));
        invocation
            .arg(r.now.as_unix_micros())
            .arg(u8::from(r.record))
            .arg(&shape)
            .arg(list.len());
        for g in &list {
            invocation
                .arg(g.index)
                .arg(g.tick)
                .arg(g.span)
                .arg(g.allowed);
        }
        let mut redis = self.redis.clone();
        let (admitted, refused, retry): (i64, i64, i64) = invocation
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(WindowDecision {
            admitted: admitted == 1,
            refused_window: usize::try_from(refused).ok(),
            retry_at: (retry >= 0).then(|| Timestamp::from_unix_micros(retry)),
        })
    }

    async fn counts(
        &self,
        key: &str,
        windows: &[WindowLimit],
        now: Timestamp,
    ) -> Result<Vec<u32>, StoreError> {
        let (shape, list) = geometry(windows, 0);
        let mut redis = self.redis.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key(key))
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        let mut out = vec![0u32; windows.len()];
        if !fields.iter().any(|(f, v)| f == "shape" && *v == shape) {
            return Ok(out);
        }
        let now = now.as_unix_micros();
        for g in &list {
            let head = fields
                .iter()
                .find(|(f, _)| *f == format!("{}:h", g.index))
                .and_then(|(_, v)| v.parse::<i64>().ok());
            let cur = now.div_euclid(g.tick).max(head.unwrap_or(i64::MIN));
            let prefix = format!("{}:", g.index);
            let total: u64 = fields
                .iter()
                .filter_map(|(f, v)| {
                    let t: i64 = f.strip_prefix(&prefix)?.parse().ok()?;
                    (t >= cur - g.span).then(|| v.parse::<u64>().ok()).flatten()
                })
                .sum();
            out[g.index] = u32::try_from(total).unwrap_or(u32::MAX);
        }
        Ok(out)
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut redis)
            .await
            .map_err(store_error)
    }
}
