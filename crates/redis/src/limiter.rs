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
/// One string per key, big-endian, like the in-memory store's rings: a
/// hash of the windows' geometry (a different geometry resets the key, as
/// in memory); a header with, per enabled window, its head (the newest tick
/// seen, i64; a clock stepped back is treated as that tick), its total (u32:
/// the admissions in the window) and the head tick's own admissions (u32);
/// then per window `span + 1` slots (u32: slot `k` counts the live tick `t`
/// with `t mod (span + 1) = k`, except the head's, kept in the header and 0
/// here).
///
/// The common decision — every head is the current tick and every window
/// admits — reads only the header (`GETRANGE`) and, when it records, writes
/// it back (`SETRANGE`): two small commands. The full path (a new tick, a
/// refusal, another geometry, no key) reads the whole string, subtracts the
/// ticks that left each window since its head (at most `span + 1`, once per
/// tick), walks the refusing window's ticks for its exact `retry_at`, and
/// writes the string back when it records or a head moved, with the key's
/// expiry: the longest window's ring plus its tick and a second, so every
/// admission of the current tick is covered until it leaves every window
/// (the common path, which runs only within the tick of that write, leaves
/// the expiry as it is). The arithmetic is the in-memory store's,
/// documented on `WindowLimit`.
///
/// KEYS: one key per request. ARGV: the number of distinct geometries in
/// the batch (usually one), each as its hash, the number of enabled
/// windows, then per window: index, tick (µs), span (ticks), allowed; then
/// per request: its geometry (1-based), now (µs), record (0/1). Returns per
/// request: admitted (0/1), the refusing window's index or -1, retry-at µs
/// or -1.
const DECIDE: &str = r#"
-- The batch's geometries, parsed once.
local shapes = {}
local a = 2
for g = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a + 1])
  local geo = {hash = tonumber(ARGV[a]), n = n, w = {}}
  a = a + 2
  local base = 8 + 16 * n
  local longest, widest = 0, 0
  for w = 0, n - 1 do
    local span = tonumber(ARGV[a + 2])
    local gw = {idx = tonumber(ARGV[a]), tick = tonumber(ARGV[a + 1]), span = span,
                allowed = tonumber(ARGV[a + 3]), ring = span + 1, base = base,
                zeros = string.rep('\0', 4 * (span + 1))}
    base = base + 4 * gw.ring
    if gw.ring * gw.tick > longest then longest = gw.ring * gw.tick end
    if gw.tick > widest then widest = gw.tick end
    geo.w[w] = gw
    a = a + 4
  end
  geo.size = base
  geo.header = 8 + 16 * n
  geo.life = math.ceil(longest / 1000) + math.ceil(widest / 1000) + 1000
  geo.format = '>i8' .. string.rep('i8I4I4', n)
  shapes[g] = geo
end

local floor, unpack_, pack = math.floor, struct.unpack, struct.pack

-- The common decision from the header alone: true when every head is the
-- current tick and every window admits (recorded when asked).
local function common(key, geo, now, record)
  local h = redis.call('GETRANGE', key, 0, geo.header - 1)
  if #h ~= geo.header or unpack_('>i8', h) ~= geo.hash then return false end
  local parts = {}
  for w = 0, geo.n - 1 do
    local gw = geo.w[w]
    local head, total, own = unpack_('>i8I4I4', h, 9 + 16 * w)
    if head ~= floor(now / gw.tick) or total >= gw.allowed then return false end
    parts[w + 1] = pack('>i8I4I4', head, total + 1, own + 1)
  end
  if record then redis.call('SETRANGE', key, 8, table.concat(parts)) end
  return true
end

-- The full decision: admitted (0/1), refusing window or -1, retry-at or -1.
-- Only the slots that change are touched: a head that moved by m ticks
-- empties m slots (and files its own count in its slot), so a decision
-- costs O(m), and O(1) for a user deciding once a tick or less.
local function full(key, geo, now, record)
  local n = geo.n
  local s = redis.call('GET', key)
  if s and (#s ~= geo.size or unpack_('>i8', s) ~= geo.hash) then s = false end
  local refused, retry = -1, -1
  -- Per window: the head, total and head tick's count after the decision,
  -- and the ring's changes: 'zero' (all empty), nil (none) or slot -> count.
  local heads, totals, owns, patches = {}, {}, {}, {}
  local moved = false
  for w = 0, n - 1 do
    local gw = geo.w[w]
    local span, ring, base = gw.span, gw.ring, gw.base
    local cur = floor(now / gw.tick)
    local total, own, patch = 0, 0, 'zero'
    if s then
      local head
      head, total, own = unpack_('>i8I4I4', s, 9 + 16 * w)
      patch = nil
      if cur < head then cur = head end
      if cur > head then
        moved = true
        if cur - head >= ring then
          patch, total = 'zero', 0
        else
          -- The old head's count goes to its slot; the ticks that left
          -- the window since (their slots are the new ticks') empty.
          patch = {[head % ring] = own}
          for t = head + 1, cur do
            local k = t % ring
            total = total - unpack_('>I4', s, base + 4 * k + 1)
            patch[k] = 0
          end
        end
        own = 0
      end
    end
    heads[w], totals[w], owns[w], patches[w] = cur, total, own, patch
    if total >= gw.allowed then
      if refused < 0 then refused = gw.idx end
      -- The oldest live ticks first, until enough admissions have left.
      local need = total - gw.allowed + 1
      local freed = 0
      local at_head = cur % ring
      for i = 0, span do
        local k = (cur - span + i) % ring
        local c
        if k == at_head then c = own
        elseif patch == 'zero' then c = 0
        elseif patch and patch[k] then c = patch[k]
        else c = unpack_('>I4', s, base + 4 * k + 1) end
        freed = freed + c
        if freed >= need then
          local at = (cur + i + 1) * gw.tick
          if at > retry then retry = at end
          break
        end
      end
    end
  end
  local recorded = refused < 0 and record and n > 0
  -- Written when it records, and when a head moved (a later decision with
  -- a clock stepped back stands at the newest tick seen).
  if recorded or (moved and s) then
    local inc = recorded and 1 or 0
    local parts = {pack('>i8', geo.hash)}
    for w = 0, n - 1 do
      parts[#parts + 1] = pack('>i8I4I4', heads[w], totals[w] + inc, owns[w] + inc)
    end
    for w = 0, n - 1 do
      local gw = geo.w[w]
      local patch = patches[w]
      if patch == 'zero' then
        parts[#parts + 1] = gw.zeros
      else
        local r = string.sub(s, gw.base + 1, gw.base + 4 * gw.ring)
        if patch then
          for k, c in pairs(patch) do
            r = string.sub(r, 1, 4 * k) .. pack('>I4', c) .. string.sub(r, 4 * k + 5)
          end
        end
        parts[#parts + 1] = r
      end
    end
    redis.call('SET', key, table.concat(parts), 'PX', geo.life)
  end
  return refused < 0 and 1 or 0, refused, retry
end

local out = {}
for r = 1, #KEYS do
  local key = KEYS[r]
  local geo = shapes[tonumber(ARGV[a])]
  local now = tonumber(ARGV[a + 1])
  local record = ARGV[a + 2] == '1'
  a = a + 3
  if geo.n > 0 and common(key, geo, now, record) then
    out[#out + 1] = 1
    out[#out + 1] = -1
    out[#out + 1] = -1
  else
    local admitted, refused, retry = full(key, geo, now, record)
    out[#out + 1] = admitted
    out[#out + 1] = refused
    out[#out + 1] = retry
  end
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

/// Windows as the script takes them: the geometry's hash, the number of
/// enabled windows and per window its index, tick, span and allowed
/// admissions.
#[derive(Debug, PartialEq, Eq)]
struct Packed {
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
        command.arg(&geometry.numbers);
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

fn geometry(windows: &[WindowLimit], burst: u32) -> (i64, Vec<Geometry>) {
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
    (shape_hash(&shape), list)
}

/// A stored string's geometry mark: FNV-1a of the windows' indexes, ticks
/// and spans, cut to 52 bits (Lua's numbers are doubles, exact to 2^53)
/// and never 0.
fn shape_hash(shape: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in shape.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::try_from(hash & ((1 << 52) - 1)).unwrap_or(1).max(1)
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
        let (hash, list) = geometry(windows, burst);
        let mut numbers = Vec::with_capacity(2 + 4 * list.len());
        numbers.extend([hash, list.len() as i64]);
        for g in &list {
            numbers.extend([g.index as i64, g.tick, g.span, i64::from(g.allowed)]);
        }
        let packed = Arc::new(Packed { numbers });
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
        let (hash, list) = geometry(windows, 0);
        let mut redis = self.redis.clone();
        let packed: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut redis)
            .await
            .map_err(store_error)?;
        let mut out = vec![0u32; windows.len()];
        let rings: i64 = list.iter().map(|g| g.span + 1).sum();
        let size = 8 + 16 * list.len() + 4 * usize::try_from(rings).unwrap_or(0);
        let int = |packed: &[u8], at: usize, n: usize| -> Option<i64> {
            let bytes = packed.get(at..at + n)?;
            let mut buf = [0u8; 8];
            buf[8 - n..].copy_from_slice(bytes);
            Some(i64::from_be_bytes(buf))
        };
        let Some(packed) = packed.filter(|p| p.len() == size && int(p, 0, 8) == Some(hash)) else {
            return Ok(out);
        };
        let now = now.as_unix_micros();
        let mut base = 8 + 16 * list.len();
        for (w, g) in list.iter().enumerate() {
            let ring = g.span + 1;
            let (Some(head), Some(mut total)) =
                (int(&packed, 8 + 16 * w, 8), int(&packed, 16 + 16 * w, 4))
            else {
                break;
            };
            let cur = now.div_euclid(g.tick).max(head);
            // The ticks that left the window since the head (never the
            // head's own slot: at most `span` of them are walked).
            if cur - head >= ring {
                total = 0;
            } else {
                for t in head + 1..=cur {
                    let k = usize::try_from(t.rem_euclid(ring)).unwrap_or(0);
                    total -= int(&packed, base + 4 * k, 4).unwrap_or(0);
                }
            }
            out[g.index] = u32::try_from(total).unwrap_or(0);
            base += 4 * usize::try_from(ring).unwrap_or(0);
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
