//! Rate-limit decisions per second through Redis, beside a plain `INCR` on
//! the same server in the same run: one client awaiting each call, and 64
//! calls in flight on the multiplexed connection (pipelined; decisions are
//! batched into one script call), in wall time (client and Redis share this
//! machine's cores). With `WSC_REDIS_CLUSTER_URL` (as `cargo xtask bench`
//! sets) the same 64 in flight on a Redis Cluster, beside `INCR` on the
//! cluster.
//!
//! And what one Redis core can decide: the `redis_cpu_*` groups measure the
//! server's own CPU time (`INFO cpu`) per decision, beside `INCR` and beside
//! the decision script of 2026-11-25 (one call per decision, a hash field
//! per tick: the "before" of issue 22), 64 in flight, on a simulated clock
//! so every user has a steady history: one decision per user per second (a
//! chatty user: every decision opens a new tick of the minute window) and
//! fifty (a flood: most decisions fall in the current tick).
#![allow(missing_docs)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use wsc_core::Timestamp;
use wsc_rate_limiter::{RateLimitStore, WindowLimit, WindowRequest};
use wsc_redis::testing::RedisServer;
use wsc_redis::{RedisConnection, RedisRateLimitStore, connect};

const IN_FLIGHT: usize = 64;

/// A decision (the gateway's two windows, recording) and an `INCR`, each
/// as a future, on one connection.
struct Calls {
    redis: RedisConnection,
    store: RedisRateLimitStore,
    windows: [WindowLimit; 2],
    start: Instant,
}

impl Calls {
    fn new(redis: RedisConnection) -> Self {
        Calls {
            store: RedisRateLimitStore::new(redis.clone(), "bench:"),
            redis,
            // The gateway's default windows (a minute and an hour), with
            // limits high enough that every decision admits and records.
            windows: [
                WindowLimit::new(Duration::from_secs(60), 1_000_000_000),
                WindowLimit::new(Duration::from_secs(3_600), 1_000_000_000),
            ],
            start: Instant::now(),
        }
    }

    async fn decide(&self, key: String) {
        let now = Timestamp::from_unix_micros(
            1_764_000_000_000_000 + self.start.elapsed().as_micros() as i64,
        );
        let request = WindowRequest {
            key: &key,
            windows: &self.windows,
            burst: 0,
            now,
            record: true,
        };
        self.store.decide(request).await.unwrap();
    }

    async fn incr(&self, key: String) {
        let mut redis = self.redis.clone();
        redis::cmd("INCR")
            .arg(key)
            .query_async::<i64>(&mut redis)
            .await
            .unwrap();
    }

    /// `name`: `INCR` and decisions, [`IN_FLIGHT`] at a time.
    fn in_flight(&self, c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str) {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(IN_FLIGHT as u64));
        g.bench_function("INCR (anchor)", |b| {
            b.to_async(rt)
                .iter(|| join_all((0..IN_FLIGHT).map(|i| self.incr(format!("bench:incr:{i}")))))
        });
        g.bench_function("wsc decide, two windows", |b| {
            b.to_async(rt)
                .iter(|| join_all((0..IN_FLIGHT).map(|i| self.decide(format!("user-{i}")))))
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let calls = Calls::new(rt.block_on(connect(&server.url())).unwrap());

    let mut g = c.benchmark_group("redis_one_client");
    g.throughput(Throughput::Elements(1));
    g.bench_function("INCR (anchor)", |b| {
        b.to_async(&rt).iter(|| calls.incr("bench:incr".into()))
    });
    g.bench_function("wsc decide, two windows", |b| {
        b.to_async(&rt).iter(|| calls.decide("user-1".into()))
    });
    g.finish();
    calls.in_flight(c, &rt, "redis_pipelined_64");

    if let Ok(url) = std::env::var("WSC_REDIS_CLUSTER_URL") {
        let cluster = Calls::new(rt.block_on(connect(&url)).unwrap());
        cluster.in_flight(c, &rt, "redis_cluster_64");
    }
}

/// Redis's own CPU time (user + system, from `INFO cpu`), in nanoseconds.
struct RedisCpu {
    connection: Mutex<redis::Connection>,
}

impl RedisCpu {
    fn new(url: &str) -> Self {
        let connection = redis::Client::open(url).unwrap().get_connection().unwrap();
        RedisCpu {
            connection: Mutex::new(connection),
        }
    }

    fn seconds(&self) -> f64 {
        let mut connection = self.connection.lock().unwrap();
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query(&mut *connection)
            .unwrap();
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        field("used_cpu_user") + field("used_cpu_sys")
    }
}

impl Measurement for RedisCpu {
    type Intermediate = f64;
    type Value = f64;

    fn start(&self) -> f64 {
        self.seconds()
    }

    fn end(&self, started: f64) -> f64 {
        (self.seconds() - started) * 1e9
    }

    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, value: &f64) -> f64 {
        *value
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Redis CPU time as durations, throughput as elements per Redis CPU
/// second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns cpu")
        } else if typical < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        // Elements per second of Redis CPU, in thousands.
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / 1e3);
        "Kelem/cpu-s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The decision script of 2026-11-25 (a hash per user, a field per tick,
/// `HGETALL` and a walk over every field per decision, one call per
/// decision): kept here as the "before" it was measured against.
const SCRIPT_2026_11_25: &str = r#"
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

/// Decisions of 64 users, one each per iteration, on a simulated clock
/// that advances `step` µs per iteration.
struct Steady {
    calls: Calls,
    before: redis::Script,
    step: i64,
    clock: AtomicI64,
}

impl Steady {
    fn now(&self) -> i64 {
        1_764_000_000_000_000 + self.clock.fetch_add(self.step, Ordering::Relaxed)
    }

    async fn decide(&self, now: i64, user: usize) {
        let key = format!("user-{user}");
        let request = WindowRequest {
            key: &key,
            windows: &self.calls.windows,
            burst: 0,
            now: Timestamp::from_unix_micros(now),
            record: true,
        };
        self.calls.store.decide(request).await.unwrap();
    }

    async fn decide_before(&self, now: i64, user: usize) {
        let mut redis = self.calls.redis.clone();
        let mut invocation = self.before.key(format!("before:rl:user-{user}"));
        invocation
            .arg(now)
            .arg(1)
            .arg("0:1000000/60,1:60000000/60")
            .arg(2);
        for (index, tick) in [(0, 1_000_000), (1, 60_000_000)] {
            invocation.arg(index).arg(tick).arg(60).arg(1_000_000_000);
        }
        invocation
            .invoke_async::<Vec<i64>>(&mut redis)
            .await
            .unwrap();
    }
}

fn bench_cpu(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let mut c = Criterion::default()
        .with_measurement(RedisCpu::new(&server.url()))
        .configure_from_args();
    for (name, step) in [
        ("redis_cpu_64_one_per_second", 1_000_000),
        ("redis_cpu_64_fifty_per_second", 20_000),
    ] {
        let steady = Steady {
            calls: Calls::new(rt.block_on(connect(&server.url())).unwrap()),
            before: redis::Script::new(SCRIPT_2026_11_25),
            step,
            clock: AtomicI64::new(0),
        };
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(IN_FLIGHT as u64));
        g.bench_function("INCR (anchor)", |b| {
            b.to_async(&rt).iter(|| {
                join_all((0..IN_FLIGHT).map(|i| steady.calls.incr(format!("bench:incr:{i}"))))
            })
        });
        g.bench_function("wsc decide, 2026-11-25 script (before)", |b| {
            b.to_async(&rt).iter(|| {
                let now = steady.now();
                join_all((0..IN_FLIGHT).map(|i| steady.decide_before(now, i)))
            })
        });
        g.bench_function("wsc decide, two windows", |b| {
            b.to_async(&rt).iter(|| {
                let now = steady.now();
                join_all((0..IN_FLIGHT).map(|i| steady.decide(now, i)))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench, bench_cpu);
criterion_main!(benches);
