//! Sliding windows with bounded state: rings of per-tick counters.
//!
//! A window of length `W` split into `B` buckets has a tick of `g = W / B`
//! (at least 1 µs). An admission at time `r` is counted in tick
//! `m = floor(r / g)`. At time `t` (tick `T`) the window counts every
//! admission with `m >= T - span`, where `span = ceil(W / g)`. So every
//! admission in the exact window `(t - W, t]` is counted — no window of
//! length `W` ever holds more than the limit — and an admission leaves the
//! count at most one tick after it is `W` old (less than two ticks when `g`
//! does not divide `W`). A ring keeps `span + 1` counters.

use std::time::Duration;

use wsc_core::Timestamp;

/// One message window: at most `limit` admissions in any span of `length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowLimit {
    /// The window's length.
    pub length: Duration,
    /// Admissions allowed within it (a limit of 0 disables the window).
    pub limit: u32,
    /// Buckets the window is split into (1 to 65 536); its granularity is
    /// `length / buckets`, at least 1 µs. More buckets: finer granularity,
    /// two more bytes each.
    pub buckets: u32,
}

impl WindowLimit {
    /// Buckets per window unless set: 60 (1 s ticks for a minute window).
    pub const DEFAULT_BUCKETS: u32 = 60;
    /// The most buckets a window may have.
    pub const MAX_BUCKETS: u32 = 1 << 16;

    /// `limit` admissions per `length`, with the default 60 buckets.
    pub fn new(length: Duration, limit: u32) -> Self {
        WindowLimit {
            length,
            limit,
            buckets: Self::DEFAULT_BUCKETS,
        }
    }

    fn length_micros(&self) -> i64 {
        i64::try_from(self.length.as_micros()).unwrap_or(i64::MAX)
    }

    /// The tick (granularity) in microseconds.
    pub fn tick_micros(&self) -> i64 {
        let buckets = i64::from(self.buckets.clamp(1, Self::MAX_BUCKETS));
        (self.length_micros() / buckets).max(1)
    }

    /// The granularity: an admission leaves the window at most this much
    /// after it is `length` old (twice this when it does not divide `length`).
    pub fn granularity(&self) -> Duration {
        Duration::from_micros(self.tick_micros().unsigned_abs())
    }

    /// Ticks an admission stays counted after its own: `ceil(length / tick)`.
    pub fn span(&self) -> i64 {
        let (w, g) = (self.length_micros(), self.tick_micros());
        w / g + i64::from(w % g != 0)
    }

    /// Whether the window limits anything (a limit and a length above zero).
    pub fn enabled(&self) -> bool {
        self.limit > 0 && !self.length.is_zero()
    }
}

/// One window's precomputed geometry.
#[derive(Clone, Debug)]
struct Geometry {
    allowed: u32,
    tick: i64,
    span: i64,
    /// Index of the window's region in the data: `[total (2 words), head
    /// tick (4 words), slot_0 .. slot_span]`, slot `i` holding the ticks
    /// congruent to `i` modulo the slot count.
    offset: usize,
    slots: usize,
    enabled: bool,
}

/// The precomputed layout of a list of windows (with a burst allowance).
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    windows: Vec<WindowLimit>,
    geometry: Vec<Geometry>,
    len: usize,
    fingerprint: u32,
}

/// Words before the first region: the shape's fingerprint.
const HEADER: usize = 2;
/// Words before a region's slots: the total (2 words) and the head tick (4).
const REGION_HEADER: usize = 6;
/// The head of a ring that has seen nothing yet.
const NEVER: i64 = i64::MIN;

impl Shape {
    pub(crate) fn new(windows: &[WindowLimit], burst: u32) -> Self {
        let mut offset = HEADER;
        let mut fingerprint: u32 = 0x811c_9dc5;
        let mut mix = |v: i64| {
            for b in v.to_le_bytes() {
                fingerprint = (fingerprint ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
        };
        let geometry = windows
            .iter()
            .map(|w| {
                let enabled = w.enabled();
                let span = w.span();
                let slots = if enabled {
                    usize::try_from(span + 1).unwrap_or(1)
                } else {
                    0
                };
                mix(w.tick_micros());
                mix(span);
                mix(i64::from(enabled));
                let g = Geometry {
                    allowed: w.limit.saturating_add(burst),
                    tick: w.tick_micros(),
                    span,
                    offset,
                    slots,
                    enabled,
                };
                if enabled {
                    offset += REGION_HEADER + slots;
                }
                g
            })
            .collect();
        Shape {
            windows: windows.to_vec(),
            geometry,
            len: offset,
            fingerprint,
        }
    }

    pub(crate) fn windows(&self) -> &[WindowLimit] {
        &self.windows
    }
}

/// The outcome of checking a set of windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowDecision {
    /// Whether the request was admitted (and, if asked, recorded in every window).
    pub admitted: bool,
    /// For a refusal: the first refusing window's index in the window list.
    pub refused_window: Option<usize>,
    /// For a refusal: the earliest instant at which every window admits.
    pub retry_at: Option<Timestamp>,
}

/// The rings of one key: one allocation for every window's counters.
#[derive(Clone, Debug)]
pub(crate) struct WindowSet {
    data: Box<[u16]>,
}

impl WindowSet {
    pub(crate) fn new(shape: &Shape) -> Self {
        let mut set = WindowSet {
            data: vec![0u16; shape.len].into_boxed_slice(),
        };
        set.data[0] = shape.fingerprint as u16;
        set.data[1] = (shape.fingerprint >> 16) as u16;
        for g in shape.geometry.iter().filter(|g| g.enabled) {
            set.set_head(g, NEVER);
        }
        set
    }

    fn fits(&self, shape: &Shape) -> bool {
        self.data.len() == shape.len
            && u32::from(self.data[0]) | (u32::from(self.data[1]) << 16) == shape.fingerprint
    }

    fn total(&self, g: &Geometry) -> u32 {
        u32::from(self.data[g.offset]) | (u32::from(self.data[g.offset + 1]) << 16)
    }

    fn set_total(&mut self, g: &Geometry, total: u32) {
        self.data[g.offset] = total as u16;
        self.data[g.offset + 1] = (total >> 16) as u16;
    }

    fn head(&self, g: &Geometry) -> i64 {
        let w = &self.data[g.offset + 2..g.offset + 6];
        let bits = u64::from(w[0])
            | (u64::from(w[1]) << 16)
            | (u64::from(w[2]) << 32)
            | (u64::from(w[3]) << 48);
        bits as i64
    }

    fn set_head(&mut self, g: &Geometry, head: i64) {
        let bits = head as u64;
        for (k, w) in self.data[g.offset + 2..g.offset + 6].iter_mut().enumerate() {
            *w = (bits >> (16 * k)) as u16;
        }
    }

    /// Moves window `g`'s ring to the tick of `now` (µs), zeroing the slots
    /// of ticks that left it, and returns the ring's tick and that tick's
    /// slot. A time earlier than the head (a clock stepped back) is treated
    /// as the head, so the ring never writes into another tick's slot.
    fn advance(&mut self, g: &Geometry, now: i64) -> (i64, usize) {
        let slots = g.slots as i64;
        let new = now.div_euclid(g.tick);
        let old = self.head(g);
        if old != NEVER && new <= old {
            return (old, old.rem_euclid(slots) as usize);
        }
        let base = g.offset + REGION_HEADER;
        if old == NEVER || new - old >= slots {
            self.data[g.offset..base + g.slots].fill(0);
        } else {
            let mut total = self.total(g);
            let mut i = old.rem_euclid(slots) as usize;
            for _ in old..new {
                i += 1;
                if i == g.slots {
                    i = 0;
                }
                total -= u32::from(self.data[base + i]);
                self.data[base + i] = 0;
            }
            self.set_total(g, total);
        }
        self.set_head(g, new);
        (new, new.rem_euclid(slots) as usize)
    }

    /// The earliest instant (µs) window `g`, at `tick` (slot `idx`), admits
    /// one more, or `None` if it admits now.
    fn admit_at(&self, g: &Geometry, tick: i64, idx: usize) -> Option<i64> {
        let base = g.offset + REGION_HEADER;
        let total = self.total(g);
        let full_slot = self.data[base + idx] == u16::MAX;
        if total < g.allowed && !full_slot {
            return None;
        }
        let mut at = if full_slot { tick + 1 } else { NEVER };
        if total >= g.allowed {
            let need = total - g.allowed + 1;
            let mut freed = 0u32;
            // The ring holds exactly ticks tick - span ..= tick; the oldest
            // is the slot after the head's.
            let mut j = idx;
            for k in 0..=g.span {
                j += 1;
                if j == g.slots {
                    j = 0;
                }
                freed += u32::from(self.data[base + j]);
                if freed >= need {
                    // Tick (tick - span + k) leaves after tick + k.
                    at = at.max(tick.saturating_add(k).saturating_add(1));
                    break;
                }
            }
        }
        Some(at.saturating_mul(g.tick))
    }

    /// Checks every window at `now`; if all admit and `record` is set,
    /// counts one admission in each. A refusal records nothing anywhere. A
    /// set built for another shape is reset first (its history cannot carry
    /// over).
    pub(crate) fn decide(&mut self, shape: &Shape, now: Timestamp, record: bool) -> WindowDecision {
        if !self.fits(shape) {
            *self = WindowSet::new(shape);
        }
        let now = now.as_unix_micros();
        let mut refused_window = None;
        let mut retry_at: Option<i64> = None;
        for (i, g) in shape.geometry.iter().enumerate() {
            if !g.enabled {
                continue;
            }
            let (tick, idx) = self.advance(g, now);
            if let Some(at) = self.admit_at(g, tick, idx) {
                refused_window.get_or_insert(i);
                retry_at = Some(retry_at.map_or(at, |r| r.max(at)));
            }
        }
        let admitted = refused_window.is_none();
        if admitted && record {
            for g in shape.geometry.iter().filter(|g| g.enabled) {
                let idx = self.head(g).rem_euclid(g.slots as i64) as usize;
                self.data[g.offset + REGION_HEADER + idx] += 1;
                let total = self.total(g) + 1;
                self.set_total(g, total);
            }
        }
        WindowDecision {
            admitted,
            refused_window,
            retry_at: retry_at.map(Timestamp::from_unix_micros),
        }
    }

    /// Admissions counted in window `i` at `now` (0 for a disabled window or
    /// a set of another shape).
    pub(crate) fn count(&mut self, shape: &Shape, i: usize, now: Timestamp) -> u32 {
        if !self.fits(shape) {
            return 0;
        }
        match shape.geometry.get(i).filter(|g| g.enabled) {
            Some(g) => {
                self.advance(g, now.as_unix_micros());
                self.total(g)
            }
            None => 0,
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<u16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_unix_micros((secs * 1e6).round() as i64)
    }

    #[test]
    fn legacy_minute_window() {
        let shape = Shape::new(&[WindowLimit::new(Duration::from_secs(60), 60)], 0);
        let mut set = WindowSet::new(&shape);
        // One message a second from t = 1000 s: the 60th admitted, the 61st refused.
        for i in 0..60 {
            assert!(set.decide(&shape, at(1000.0 + f64::from(i)), true).admitted);
        }
        let refused = set.decide(&shape, at(1059.5), true);
        assert!(!refused.admitted);
        // The first message (t = 1000) is more than 60 s old from the tick
        // after t = 1060 (1 s granularity).
        assert_eq!(refused.retry_at, Some(at(1061.0)));
        // At t = 1075, 15 messages (1000..=1014) are more than 60 s old.
        let admitted = (0..20)
            .filter(|_| set.decide(&shape, at(1075.0), true).admitted)
            .count();
        assert_eq!(admitted, 15);
    }

    #[test]
    fn a_refusal_consumes_nothing_in_any_window() {
        let shape = Shape::new(
            &[
                WindowLimit::new(Duration::from_secs(60), 100),
                WindowLimit::new(Duration::from_secs(1), 2),
            ],
            0,
        );
        let mut set = WindowSet::new(&shape);
        let now = at(50.0);
        assert!(set.decide(&shape, now, true).admitted);
        assert!(set.decide(&shape, now, true).admitted);
        let d = set.decide(&shape, now, true);
        assert_eq!(d.refused_window, Some(1));
        assert_eq!(set.count(&shape, 0, now), 2);
    }

    #[test]
    fn clock_stepping_back_does_not_corrupt() {
        let shape = Shape::new(&[WindowLimit::new(Duration::from_secs(60), 2)], 0);
        let mut set = WindowSet::new(&shape);
        assert!(set.decide(&shape, at(100.0), true).admitted);
        assert!(set.decide(&shape, at(40.0), true).admitted);
        assert!(!set.decide(&shape, at(100.0), true).admitted);
        assert_eq!(set.count(&shape, 0, at(159.0)), 2);
        assert_eq!(set.count(&shape, 0, at(161.0)), 0);
    }

    #[test]
    fn disabled_windows_and_other_shapes() {
        let shape = Shape::new(
            &[
                WindowLimit::new(Duration::from_secs(60), 0),
                WindowLimit::new(Duration::from_secs(60), 1),
            ],
            0,
        );
        let mut set = WindowSet::new(&shape);
        assert!(set.decide(&shape, at(1.0), true).admitted);
        assert_eq!(set.decide(&shape, at(1.0), true).refused_window, Some(1));
        let other = Shape::new(&[WindowLimit::new(Duration::from_secs(10), 1)], 0);
        assert!(
            set.decide(&other, at(1.0), true).admitted,
            "reset for a new shape"
        );
    }

    fn arb_windows() -> impl Strategy<Value = Vec<WindowLimit>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![1_000_000u64, 7_000_000, 10_000_000, 60_000_000]),
                1u32..12,
                prop::sample::select(vec![1u32, 3, 7, 10, 60]),
            )
                .prop_map(|(len, limit, buckets)| WindowLimit {
                    length: Duration::from_micros(len),
                    limit,
                    buckets,
                }),
            1..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Against a reference model (the plain list of admitted times):
        /// never more than the limit in any window; every refusal justified
        /// by the exact count within the documented granularity; the
        /// refusal's retry time exact.
        #[test]
        fn windows_match_the_reference_model(
            windows in arb_windows(),
            burst in 0u32..3,
            gaps in prop::collection::vec(prop_oneof![Just(0u64), 0u64..400_000, 0u64..8_000_000], 1..120),
        ) {
            let shape = Shape::new(&windows, burst);
            let mut set = WindowSet::new(&shape);
            let mut admitted: Vec<i64> = Vec::new();
            let mut t: i64 = 1_700_000_000_000_000;
            for gap in gaps {
                t += gap as i64;
                let now = Timestamp::from_unix_micros(t);
                let before = set.clone();
                let d = set.decide(&shape, now, true);
                if d.admitted {
                    admitted.push(t);
                    for w in &windows {
                        let len = w.length.as_micros() as i64;
                        let n = admitted.iter().filter(|&&a| a > t - len).count() as u32;
                        prop_assert!(n <= w.limit + burst, "{} in {:?}", n, w);
                    }
                } else {
                    let i = d.refused_window.unwrap();
                    let w = windows[i];
                    let slack = 2 * w.tick_micros();
                    let len = w.length.as_micros() as i64;
                    let exact = admitted.iter().filter(|&&a| a > t - len - slack).count() as u32;
                    prop_assert!(exact >= w.limit + burst, "unjustified refusal by {:?}", w);
                    let retry = d.retry_at.unwrap();
                    prop_assert!(retry > now);
                    let early = before.clone().decide(&shape, retry - Duration::from_micros(1), false);
                    let on_time = before.clone().decide(&shape, retry, false);
                    prop_assert!(!early.admitted && on_time.admitted, "retry_at not exact");
                }
            }
        }
    }
}
