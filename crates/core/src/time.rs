//! Time as every wsc component sees it: [`Timestamp`], the injectable
//! [`Clock`], the real [`SystemClock`] and the test [`ManualClock`].

use std::fmt;
use std::future::Future;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MICROS_PER_SEC: i64 = 1_000_000;

/// A point in time: microseconds since the Unix epoch (UTC).
///
/// `Timestamp + Duration` and `Timestamp - Duration` saturate at the ends of
/// the representable range instead of overflowing. Serde writes it as Unix
/// seconds, a JSON number (`1700000000.25`); the round trip through that `f64`
/// is microsecond-exact within ±2^51 µs of the epoch (years 1898 to 2041)
/// and within a microsecond or two beyond.
///
/// ```
/// use std::time::Duration;
/// use wsc_core::Timestamp;
///
/// let t = Timestamp::from_unix_micros(1_000_000);
/// assert_eq!((t + Duration::from_millis(500)).as_unix_micros(), 1_500_000);
/// assert_eq!(t.duration_since(t + Duration::from_secs(1)), Duration::ZERO); // saturating
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// The earliest instant accepted from the wire: 0001-01-01T00:00:00Z.
    pub const MIN_WIRE: Timestamp = Timestamp(-62_135_596_800 * MICROS_PER_SEC);
    /// The latest instant accepted from the wire: 9999-12-31T23:59:59Z.
    pub const MAX_WIRE: Timestamp = Timestamp(253_402_300_799 * MICROS_PER_SEC);

    /// A timestamp `us` microseconds after the Unix epoch (negative: before).
    pub const fn from_unix_micros(us: i64) -> Self {
        Timestamp(us)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_unix_micros(&self) -> i64 {
        self.0
    }

    /// A timestamp `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms.saturating_mul(1_000))
    }

    /// Milliseconds since the Unix epoch (rounded toward negative infinity).
    pub const fn as_unix_millis(&self) -> i64 {
        self.0.div_euclid(1_000)
    }

    /// Converts Unix seconds (as sent on the wire) to a timestamp, rounding
    /// to the nearest microsecond. Returns `None` for NaN, infinities and
    /// values outside [`MIN_WIRE`](Self::MIN_WIRE)..=[`MAX_WIRE`](Self::MAX_WIRE).
    pub fn from_unix_secs_f64(secs: f64) -> Option<Self> {
        if !secs.is_finite() {
            return None;
        }
        let micros = (secs * MICROS_PER_SEC as f64).round();
        let (lo, hi) = (Self::MIN_WIRE.0 as f64, Self::MAX_WIRE.0 as f64);
        if !(lo..=hi).contains(&micros) {
            return None;
        }
        Some(Timestamp(micros as i64))
    }

    /// Unix seconds as a float (the wire representation).
    pub fn as_unix_secs_f64(&self) -> f64 {
        // Split to keep full microsecond precision for present-day values.
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let micros = self.0.rem_euclid(MICROS_PER_SEC);
        secs as f64 + micros as f64 / MICROS_PER_SEC as f64
    }

    /// Converts a [`SystemTime`]; saturates outside the representable range.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp::UNIX_EPOCH + after,
            Err(before) => Timestamp::UNIX_EPOCH - before.duration(),
        }
    }

    /// How long after `earlier` this instant is; zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Timestamp) -> Duration {
        self.checked_duration_since(earlier)
            .unwrap_or(Duration::ZERO)
    }

    /// How long after `earlier` this instant is, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Timestamp) -> Option<Duration> {
        let diff = self.0.checked_sub(earlier.0)?;
        u64::try_from(diff).ok().map(Duration::from_micros)
    }

    /// The signed distance `self - earlier` in microseconds (saturating).
    pub fn signed_micros_since(&self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_micros(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_micros(d)))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Timestamp({}.{:06})",
            self.0.div_euclid(MICROS_PER_SEC),
            self.0.rem_euclid(MICROS_PER_SEC)
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_unix_secs_f64())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Timestamp::from_unix_secs_f64(secs).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "timestamp {secs} is out of range: expected Unix seconds between years 1 and 9999"
            ))
        })
    }
}

/// A source of time, injected into every wsc component.
///
/// Production code uses [`SystemClock`]; tests use [`ManualClock`] so they
/// never sleep for real.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Waits for `d` (real or simulated, depending on the clock).
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// A clock shared across components and tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock: monotonic, anchored once per process to wall time.
///
/// `now()` is the wall time read at the first call in the process plus the
/// monotonic time elapsed since (from the CPU's time-stamp counter where it
/// is reliable), so it never runs backwards even when the system clock is
/// stepped. `sleep` is `tokio::time::sleep` and needs a tokio
/// runtime with the time driver enabled.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A [`SharedClock`] of the system clock.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// The process's monotonic source and the wall time it was anchored to.
/// `quanta` reads the CPU's time-stamp counter when it is invariant
/// (calibrated once against the OS monotonic clock) — a few nanoseconds
/// instead of a `clock_gettime` call, which matters on every rate-limit
/// decision and latency record — and falls back to the OS clock otherwise.
fn anchor() -> &'static (quanta::Clock, u64, Timestamp) {
    static ANCHOR: OnceLock<(quanta::Clock, u64, Timestamp)> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        (clock, start, Timestamp::from_system_time(SystemTime::now()))
    })
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let (clock, start, wall) = anchor();
        // Raw counter reads and one scaling: no `Instant`/`Duration` on the
        // hot path.
        let nanos = clock.delta_as_nanos(*start, clock.raw());
        Timestamp(wall.0.saturating_add((nanos / 1_000) as i64))
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock on tokio's time: `now()` is the wall time when the clock was
/// made plus `tokio::time::Instant` elapsed since, and `sleep` is
/// `tokio::time::sleep`. Under paused tokio time (`#[tokio::test(start_paused
/// = true)]`, `tokio::time::advance`) both move with the simulated time, so
/// tests of servers with heartbeats and TTLs run without sleeping for real
/// while sockets stay real. Production uses [`SystemClock`].
///
/// ```
/// use std::time::Duration;
/// use wsc_core::{Clock, TokioClock};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let clock = TokioClock::new();
/// let before = clock.now();
/// clock.sleep(Duration::from_secs(300)).await; // instant: time is paused
/// assert_eq!(clock.now().duration_since(before), Duration::from_secs(300));
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
    wall: Timestamp,
}

impl TokioClock {
    /// A clock anchored at the current wall time and tokio instant (call it
    /// inside the runtime whose time it should follow).
    pub fn new() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
            wall: Timestamp::from_system_time(SystemTime::now()),
        }
    }

    /// The clock, shared.
    pub fn shared(self) -> SharedClock {
        Arc::new(self)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.wall + self.start.elapsed()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to; for tests.
///
/// Clones share one time. [`advance`](Self::advance) moves it forward;
/// [`Clock::sleep`] advances it by the requested duration, records the
/// duration (see [`sleeps`](Self::sleeps)) and returns at once.
///
/// ```
/// use std::time::Duration;
/// use wsc_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_unix_micros(0));
/// let shared = clock.shared();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(shared.now().as_unix_micros(), 2_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: AtomicI64,
    /// Every simulated sleep, in order. Unbounded by design: a test tool.
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// The instant a `ManualClock::default()` starts at: 2024-01-01T00:00:00Z.
    pub const DEFAULT_START: Timestamp = Timestamp(1_704_067_200 * MICROS_PER_SEC);

    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: AtomicI64::new(start.0),
                sleeps: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves the clock (and every clone) forward by `d`.
    pub fn advance(&self, d: Duration) {
        let step = duration_micros(d);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .inner
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(step))
            });
    }

    /// Sets the clock to `t` (which may be earlier: useful to test skew).
    pub fn set(&self, t: Timestamp) {
        self.inner.now.store(t.0, Ordering::Release);
    }

    /// This clock as a [`SharedClock`] (sharing time with `self`).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Every duration passed to [`Clock::sleep`] so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock_sleeps().clone()
    }

    fn lock_sleeps(&self) -> std::sync::MutexGuard<'_, Vec<Duration>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.inner
            .sleeps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(Self::DEFAULT_START)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.inner.now.load(Ordering::Acquire))
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.lock_sleeps().push(d);
        self.advance(d);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn system_clock_is_monotonic_and_near_wall_time() {
        let c = SystemClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        let wall = Timestamp::from_system_time(SystemTime::now());
        // Anchored once; differs from wall time only by clock steps since.
        assert!(wall.signed_micros_since(b).abs() < 60 * MICROS_PER_SEC);
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_sleep_uses_tokio_time() {
        let before = tokio::time::Instant::now();
        SystemClock.sleep(Duration::from_secs(30)).await;
        assert!(before.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test]
    async fn manual_sleep_advances_and_records() {
        let clock = ManualClock::default();
        let start = clock.now();
        clock.sleep(Duration::from_millis(250)).await;
        clock.shared().sleep(Duration::from_secs(1)).await;
        assert_eq!(clock.now(), start + Duration::from_millis(1250));
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_millis(250), Duration::from_secs(1)]
        );
    }

    #[test]
    fn arithmetic_saturates() {
        let max = Timestamp::from_unix_micros(i64::MAX);
        assert_eq!(max + Duration::from_secs(1), max);
        let min = Timestamp::from_unix_micros(i64::MIN);
        assert_eq!(min - Duration::from_secs(1), min);
        assert_eq!(min.duration_since(max), Duration::ZERO);
        assert_eq!(min.checked_duration_since(max), None);
    }

    #[test]
    fn wire_seconds_reject_nonsense() {
        assert_eq!(Timestamp::from_unix_secs_f64(f64::NAN), None);
        assert_eq!(Timestamp::from_unix_secs_f64(f64::INFINITY), None);
        assert_eq!(Timestamp::from_unix_secs_f64(1e300), None);
        assert_eq!(
            Timestamp::from_unix_secs_f64(1.5),
            Some(Timestamp::from_unix_micros(1_500_000))
        );
    }

    proptest! {
        #[test]
        fn manual_clock_clones_share_time(steps in proptest::collection::vec(0u64..10_000_000, 0..20)) {
            let a = ManualClock::new(Timestamp::from_unix_micros(0));
            let b = a.clone();
            let shared = a.shared();
            let mut total = 0u64;
            for (i, s) in steps.iter().enumerate() {
                let d = Duration::from_micros(*s);
                if i % 2 == 0 { a.advance(d) } else { b.advance(d) }
                total += s;
                prop_assert_eq!(a.now(), b.now());
                prop_assert_eq!(shared.now().as_unix_micros() as u64, total);
            }
        }

        #[test]
        fn manual_sleep_records_every_duration(steps in proptest::collection::vec(0u64..10_000_000, 0..20)) {
            let clock = ManualClock::default();
            let start = clock.now();
            let other = clock.clone();
            for s in &steps {
                // The future is ready at once: sleeping is recorded eagerly.
                drop(other.sleep(Duration::from_micros(*s)));
            }
            let want: Vec<Duration> = steps.iter().map(|s| Duration::from_micros(*s)).collect();
            prop_assert_eq!(clock.sleeps(), want);
            prop_assert_eq!(clock.now().duration_since(start).as_micros() as u64, steps.iter().sum::<u64>());
        }

        #[test]
        fn wire_seconds_round_trip(us in -(1i64 << 51)..=(1i64 << 51)) {
            // Microsecond precision survives f64 seconds within ±2^51 µs of
            // the epoch (years 1898 to 2041); see `Timestamp`'s docs.
            let t = Timestamp::from_unix_micros(us);
            prop_assert_eq!(Timestamp::from_unix_secs_f64(t.as_unix_secs_f64()), Some(t));
        }
    }
}
