//! A bounded log-linear latency histogram (microseconds).
//!
//! Values below 32 µs get one bucket each; above, every power of two is
//! split into 32 equal buckets, up to 2^36 µs (about 19 hours; larger values
//! land in the last bucket). A quantile is reported as its bucket's
//! midpoint, so it is within 1/64 (≈ 1.6 %) of the exact value. 1 024
//! `u32` counters: 4 KiB per histogram, allocated with the first sample (an
//! idle connection's histogram holds none).

/// Sub-buckets per power of two (2^5).
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Octaves above the linear region: 2^5 ..= 2^36.
const OCTAVES: usize = 31;
/// Number of buckets.
pub(crate) const BUCKETS: usize = SUB + OCTAVES * SUB;
/// Largest relative error of a reported quantile.
pub const HISTOGRAM_RELATIVE_ERROR: f64 = 1.0 / 64.0;

/// A latency distribution with count, sum, min and max.
#[derive(Clone, Debug)]
pub(crate) struct LatencyHistogram {
    /// `None` until the first sample.
    counts: Option<Box<[u32; BUCKETS]>>,
    count: u64,
    sum_us: u64,
    min_us: u64,
    max_us: u64,
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let k = 63 - v.leading_zeros(); // floor(log2 v) >= 5
    let octave = (k - SUB_BITS) as usize;
    if octave >= OCTAVES {
        return BUCKETS - 1;
    }
    let sub = ((v >> (k - SUB_BITS)) as usize) & (SUB - 1);
    SUB + octave * SUB + sub
}

/// The `[low, high)` range of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let octave = (i - SUB) / SUB;
    let sub = ((i - SUB) % SUB) as u64;
    let shift = octave as u32;
    let low = ((SUB as u64) + sub) << shift;
    (low, low + (1u64 << shift))
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: None,
            count: 0,
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }
}

impl LatencyHistogram {
    pub(crate) fn record(&mut self, us: u64) {
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let c = &mut counts[index(us)];
        *c = c.saturating_add(1);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    pub(crate) fn sum_us(&self) -> u64 {
        self.sum_us
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    pub(crate) fn min_us(&self) -> u64 {
        if self.count == 0 { 0 } else { self.min_us }
    }

    pub(crate) fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The value at quantile `q` (0..=1), as a bucket midpoint clamped to the
    /// observed min and max; 0 when empty.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let Some(counts) = &self.counts else {
            return 0.0;
        };
        let mut seen = 0u64;
        for (i, c) in counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                let (lo, hi) = bounds(i);
                let mid = if hi - lo == 1 {
                    lo as f64
                } else {
                    (lo + hi) as f64 / 2.0
                };
                return mid.clamp(self.min_us as f64, self.max_us as f64);
            }
        }
        self.max_us as f64
    }

    /// Bytes on the heap: the counters once a sample arrived, else none.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<[u32; BUCKETS]>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_tile_the_range() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (lo, hi) = bounds(i);
            assert_eq!(lo, expected_low, "bucket {i}");
            assert_eq!(index(lo), i);
            assert_eq!(index(hi - 1), i);
            expected_low = hi;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(std::mem::size_of::<[u32; BUCKETS]>(), 4096);
    }

    #[test]
    fn the_counters_are_allocated_with_the_first_sample() {
        let mut h = LatencyHistogram::default();
        assert_eq!(
            h.heap_bytes(),
            0,
            "an idle connection's histogram holds nothing"
        );
        assert_eq!(h.quantile_us(0.99), 0.0);
        h.record(7);
        assert_eq!(h.heap_bytes(), 4096);
        assert_eq!(h.quantile_us(0.5), 7.0);
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_stated_error(
            values in prop::collection::vec(prop_oneof![0u64..100, 0u64..100_000, 0u64..60_000_000], 1..400),
            q in prop::sample::select(vec![0.5, 0.9, 0.95, 0.99, 1.0]),
        ) {
            let mut h = LatencyHistogram::default();
            for v in &values {
                h.record(*v);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
            let exact = sorted[rank - 1] as f64;
            let got = h.quantile_us(q);
            let err = (got - exact).abs();
            prop_assert!(err <= exact * HISTOGRAM_RELATIVE_ERROR + 1e-9, "q{q}: {got} vs {exact}");
            prop_assert_eq!(h.count(), values.len() as u64);
            prop_assert_eq!(h.max_us(), *sorted.last().unwrap());
        }
    }
}
