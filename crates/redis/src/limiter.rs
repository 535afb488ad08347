//! [`RedisRateLimitStore`]: the limiter's message windows in Redis, one O(1)
//! Lua script per decision, concurrent decisions pipelined together.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::RedisConnection;
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use wsc_core::{StoreError, Timestamp};
use wsc_rate_limiter::{RateLimitStore, WindowDecision, WindowLimit, WindowRequest};

use crate::store_error;

/// Decides a batch of requests in one call: for each, checks every window
/// of its key and, if all admit and `record` is set, counts one admission in
/// each — atomically, as Redis runs a script alone, and in order (a later
/// request of the batch sees an earlier one's admission).
///
/// One string per key, packed little-endian like the in-memory store's
/// rings: the windows' geometry (`shape`: a different geometry resets the
/// key, as in memory), then per enabled window its head (the newest tick
/// seen, i64; a clock stepped back is treated as that tick), its total
/// (u32: the admissions in the window) and `span + 1` slots (u32: slot `k`
/// counts the one live tick `t` with `t mod (span + 1) = k`). A decision is
/// one GET and, when it records (or is the first of a new tick), one SET
/// with the key's expiry: O(1) reads and writes whatever the windows'
/// lengths (the ticks that left a window since its head are subtracted as
/// they are met, at most `span + 1`, once per tick). Only a refusal walks
/// the refusing window's ticks, for its exact `retry_at`. The arithmetic is the in-memory store's, documented
/// on `WindowLimit`.
///
/// KEYS: one key per request. ARGV: the number of distinct geometries in
/// the batch (usually one), each as its shape, the number of enabled
/// windows, then per window: index, tick (µs), span (ticks), allowed; then
/// per request: its geometry (1-based), now (µs), record (0/1). Returns per
/// request: admitted (0/1), the refusing window's index or -1, retry-at µs
/// or -1.
const DECIDE: &str = r#"
-- The batch's geometries, parsed once.
local shapes = {}
local a = 2
for g = 1, tonumber(ARGV[1]) do
  local geo = {shape = ARGV[a], n = tonumber(ARGV[a + 1]), w = {}}
  a = a + 2
  for w = 0, geo.n - 1 do
    local span = tonumber(ARGV[a + 2])
    geo.w[w] = {idx = tonumber(ARGV[a]), tick = tonumber(ARGV[a + 1]), span = span,
                allowed = tonumber(ARGV[a + 3]), ring = span + 1}
    a = a + 4
  end
  shapes[g] = geo
end
local out = {}
for r = 1, #KEYS do
  local key = KEYS[r]
  local geo = shapes[tonumber(ARGV[a])]
  local now = tonumber(ARGV[a + 1])
  local record = ARGV[a + 2] == '1'
  a = a + 3
  local shape = geo.shape
  local n = geo.n
  local s = redis.call('GET', key)
  local start = 3 + #shape
  if s and (#s < start - 1 or string.sub(s, 3, start - 1) ~= shape) then s = false end
  local refused = -1
  local retry = -1
  local ttl = 0
  local windows = {}
  local off = start
  for w = 0, n - 1 do
    local gw = geo.w[w]
    local idx, tick, span, allowed, ring = gw.idx, gw.tick, gw.span, gw.allowed, gw.ring
    local cur = math.floor(now / tick)
    local total = 0
    local slots = nil
    if s then
      local head
      head, total = struct.unpack('<i8I4', s, off)
      if cur < head then cur = head end
      if cur > head then
        -- Ticks that left the window since the head: their slots empty.
        slots = {}
        for k = 0, span do slots[k] = struct.unpack('<I4', s, off + 12 + 4 * k) end
        if cur - head >= ring then
          for k = 0, span do slots[k] = 0 end
          total = 0
        else
          for t = head + 1, cur do
            local k = t % ring
            total = total - slots[k]
            slots[k] = 0
          end
        end
      end
    end
    windows[w] = {off = off, cur = cur, total = total, slots = slots, ring = ring}
    if total >= allowed then
      if refused < 0 then refused = idx end
      -- The oldest live ticks first, until enough admissions have left.
      local need = total - allowed + 1
      local freed = 0
      for i = 0, span do
        local k = (cur - span + i) % ring
        local c = slots and slots[k] or struct.unpack('<I4', s, off + 12 + 4 * k)
        freed = freed + c
        if freed >= need then
          local at = (cur + i + 1) * tick
          if at > retry then retry = at end
          break
        end
      end
    end
    local life = math.ceil(ring * tick / 1000) + 1000
    if life > ttl then ttl = life end
    off = off + 12 + 4 * ring
  end
  local recorded = refused < 0 and record and n > 0
  local moved = false
  for w = 0, n - 1 do
    if windows[w].slots then moved = true end
  end
  -- Written when it records, and when a window's head moved (a later
  -- decision with a clock stepped back stands at the newest tick seen).
  if recorded or (moved and s) then
    local inc = recorded and 1 or 0
    local parts = {struct.pack('<I2', #shape), shape}
    for w = 0, n - 1 do
      local v = windows[w]
      local k = v.cur % v.ring
      if v.slots == nil and s then
        -- Same tick as the head: only the total and one slot change.
        local c = struct.unpack('<I4', s, v.off + 12 + 4 * k)
        parts[#parts + 1] = struct.pack('<i8I4', v.cur, v.total + inc)
        parts[#parts + 1] = string.sub(s, v.off + 12, v.off + 11 + 4 * k)
        parts[#parts + 1] = struct.pack('<I4', c + inc)
        parts[#parts + 1] = string.sub(s, v.off + 16 + 4 * k, v.off + 11 + 4 * v.ring)
      else
        local slots = v.slots or {}
        slots[k] = (slots[k] or 0) + inc
        parts[#parts + 1] = struct.pack('<i8I4', v.cur, v.total + inc)
        for j = 0, v.ring - 1 do parts[#parts + 1] = struct.pack('<I4', slots[j] or 0) end
      end
    end
    -- An admission sets the expiry (it covers every admission so far);
    -- moving heads alone keeps it.
    if recorded then
      redis.call('SET', key, table.concat(parts), 'PX', ttl)
    else
      redis.call('SET', key, table.concat(parts), 'KEEPTTL')
    end
  end
  out[#out + 1] = refused < 0 and 1 or 0
  out[#out + 1] = refused
  out[#out + 1] = retry
end
return out
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
    redis: RedisConnection,
    prefix: String,
    script: redis::Script,
    /// The batcher's queue (started on the first decision, in its runtime;
    /// started again if that runtime has gone).
    batcher: Arc<Mutex<Option<mpsc::Sender<Pending>>>>,
    stats: Arc<Counters>,
    geometry: Arc<Mutex<GeometryCache>>,
}

/// The batcher's counters.
#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    decisions: AtomicU64,
}

/// How decisions reached Redis: [`RedisRateLimitStore::batch_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Script calls sent (one round trip each).
    pub round_trips: u64,
    /// Decisions they carried.
    pub decisions: u64,
}

/// At most this many decisions share one script call.
const MAX_BATCH: usize = 64;

/// Decisions waiting for the batcher, at most (callers wait beyond it).
const QUEUE: usize = 4 * MAX_BATCH;

/// One decision waiting for its batch: its key, time and whether it
/// records, its windows' geometry, and where its answer goes.
struct Pending {
    key: String,
    now: i64,
    record: bool,
    geometry: Arc<Packed>,
    reply: oneshot::Sender<Answer>,
}

/// What the script says of one request: admitted (0/1), the refusing
/// window or -1, retry-at µs or -1.
type Answer = Result<(i64, i64, i64), StoreError>;

/// Windows as the script takes them: the shape, then the number of enabled
/// windows and per window its index, tick, span and allowed admissions.
#[derive(Debug, PartialEq, Eq)]
struct Packed {
    shape: String,
    numbers: Vec<i64>,
}

/// The last windows seen and their packed geometry: a limiter passes the
/// same windows with every decision, so they are packed once.
type GeometryCache = Option<(Vec<WindowLimit>, u32, Arc<Packed>)>;

/// Decides the requests queued since the last round trip in one script
/// call (on a cluster, one per hash slot, in flight together), then the
/// next batch: under concurrency many decisions share one round trip and
/// one script invocation (whose fixed cost dominates a decision's); alone,
/// a decision goes at once. Ends when every store handle is gone.
async fn batches(
    redis: RedisConnection,
    script: redis::Script,
    mut queue: mpsc::Receiver<Pending>,
    stats: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        stats.round_trips.fetch_add(1, Ordering::Relaxed);
        stats
            .decisions
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // One script call per batch; on a cluster, one per hash slot (a
        // script's keys must share one), the calls in flight together.
        let groups = redis.script_groups(batch.iter().map(|p| p.key.as_bytes()));
        let calls = groups.iter().map(|members| {
            let group: Vec<&Pending> = members.iter().map(|&i| &batch[i]).collect();
            let redis = redis.clone();
            let script = &script;
            async move { decide_group(redis, script, &group).await }
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut replies: Vec<Option<Answer>> = (0..batch.len()).map(|_| None).collect();
        for (members, answer) in groups.iter().zip(answers) {
            match answer {
                Ok(answers) => {
                    for (&i, answer) in members.iter().zip(answers) {
                        replies[i] = Some(Ok(answer));
                    }
                }
                Err(e) => {
                    for &i in members {
                        replies[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        for (pending, reply) in batch.drain(..).zip(replies) {
            let reply = reply.unwrap_or_else(|| Err(StoreError::new("redis: no answer")));
            let _ = pending.reply.send(reply);
        }
    }
}

/// Decides `group` in one script call (on a cluster, its keys share a
/// slot); the answers in the group's order.
async fn decide_group(
    mut redis: RedisConnection,
    script: &redis::Script,
    group: &[&Pending],
) -> Result<Vec<(i64, i64, i64)>, StoreError> {
    // Requests of one limiter share their geometry: sent once.
    let mut geometries: Vec<&Packed> = Vec::new();
    let mut which = Vec::with_capacity(group.len());
    for pending in group {
        let geometry = pending.geometry.as_ref();
        let at = match geometries.iter().position(|g| *g == geometry) {
            Some(at) => at,
            None => {
                geometries.push(geometry);
                geometries.len() - 1
            }
        };
        which.push(at + 1);
    }
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(group.len());
    for pending in group {
        command.arg(&pending.key);
    }
    command.arg(geometries.len());
    for geometry in &geometries {
        command.arg(&geometry.shape).arg(&geometry.numbers);
    }
    for (pending, geometry) in group.iter().zip(&which) {
        command
            .arg(*geometry)
            .arg(pending.now)
            .arg(u8::from(pending.record));
    }
    let mut answers = command.query_async::<Vec<i64>>(&mut redis).await;
    // A Redis that restarted (or flushed its scripts, or a replica just
    // promoted) has lost the script: nothing of the call ran; load it (on
    // every master of a cluster) and send again.
    if matches!(&answers, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
        answers = match script.prepare_invoke().load_async(&mut redis).await {
            Ok(_) => command.query_async(&mut redis).await,
            Err(e) => Err(e),
        };
    }
    let answers = answers.map_err(store_error)?;
    if answers.len() != 3 * group.len() {
        return Err(StoreError::new(format!(
            "redis: {} numbers answered {} decisions",
            answers.len(),
            group.len()
        )));
    }
    Ok(answers
        .chunks_exact(3)
        .map(|a| (a[0], a[1], a[2]))
        .collect())
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
    pub fn new(redis: RedisConnection, prefix: impl Into<String>) -> Self {
        RedisRateLimitStore {
            redis,
            prefix: prefix.into(),
            script: redis::Script::new(DECIDE),
            batcher: Arc::new(Mutex::new(None)),
            stats: Arc::default(),
            geometry: Arc::default(),
        }
    }

    /// How many pipelines carried how many decisions so far (under
    /// concurrency, far fewer round trips than decisions).
    pub fn batch_stats(&self) -> BatchStats {
        BatchStats {
            round_trips: self.stats.round_trips.load(Ordering::Relaxed),
            decisions: self.stats.decisions.load(Ordering::Relaxed),
        }
    }

    /// `windows` packed for the script (from the cache when they are the
    /// last ones seen).
    fn packed(&self, windows: &[WindowLimit], burst: u32) -> Arc<Packed> {
        let mut cache = self.geometry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, seen_burst, packed)) = &*cache
            && seen.as_slice() == windows
            && *seen_burst == burst
        {
            return packed.clone();
        }
        let (shape, list) = geometry(windows, burst);
        let mut numbers = Vec::with_capacity(1 + 4 * list.len());
        numbers.push(list.len() as i64);
        for g in &list {
            numbers.extend([g.index as i64, g.tick, g.span, i64::from(g.allowed)]);
        }
        let packed = Arc::new(Packed { shape, numbers });
        *cache = Some((windows.to_vec(), burst, packed.clone()));
        packed
    }

    /// The batcher's queue, starting the batcher if it is not running.
    fn queue(&self) -> mpsc::Sender<Pending> {
        let mut slot = self.batcher.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(queue) if !queue.is_closed() => queue.clone(),
            _ => {
                let (queue, pending) = mpsc::channel(QUEUE);
                tokio::spawn(batches(
                    self.redis.clone(),
                    self.script.clone(),
                    pending,
                    self.stats.clone(),
                ));
                *slot = Some(queue.clone());
                queue
            }
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}rl:{key}", self.prefix)
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    async fn decide(&self, r: WindowRequest<'_>) -> Result<WindowDecision, StoreError> {
        let geometry = self.packed(r.windows, r.burst);
        let (reply, answer) = oneshot::channel();
        self.queue()
            .send(Pending {
                key: self.key(r.key),
                now: r.now.as_unix_micros(),
                record: r.record,
                geometry,
                reply,
            })
            .await
            .map_err(|_| StoreError::new("redis: the decision batcher stopped"))?;
        let (admitted, refused, retry) = answer
            .await
            .map_err(|_| StoreError::new("redis: the decision batcher stopped"))??;
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
        let packed: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        let mut out = vec![0u32; windows.len()];
        let start = 2 + shape.len();
        let Some(packed) = packed.filter(|p| p.get(2..start) == Some(shape.as_bytes())) else {
            return Ok(out);
        };
        let int = |at: usize, n: usize| -> Option<i64> {
            let bytes = packed.get(at..at + n)?;
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(bytes);
            Some(i64::from_le_bytes(buf))
        };
        let now = now.as_unix_micros();
        let mut off = start;
        for g in &list {
            let ring = g.span + 1;
            let (Some(head), Some(mut total)) = (int(off, 8), int(off + 8, 4)) else {
                break;
            };
            let cur = now.div_euclid(g.tick).max(head);
            // The ticks that left the window since the head.
            if cur - head >= ring {
                total = 0;
            } else {
                for t in head + 1..=cur {
                    let k = usize::try_from(t.rem_euclid(ring)).unwrap_or(0);
                    total -= int(off + 12 + 4 * k, 4).unwrap_or(0);
                }
            }
            out[g.index] = u32::try_from(total).unwrap_or(0);
            off += 12 + 4 * usize::try_from(ring).unwrap_or(0);
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
