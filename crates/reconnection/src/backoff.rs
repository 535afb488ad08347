//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// How a backoff ceiling becomes a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The ceiling itself.
    None,
    /// Uniform in `[0, ceiling]` (the default; spreads reconnect storms best).
    #[default]
    Full,
    /// Uniform in `[ceiling / 2, ceiling]`.
    Equal,
    /// Uniform in `[initial, min(max, previous * 3)]`, from the previous delay.
    Decorrelated,
}

/// The backoff ceiling before jitter: `min(initial * multiplier^retry, max)`.
pub fn backoff_ceiling(initial: Duration, multiplier: f64, max: Duration, retry: u32) -> Duration {
    let mult = if multiplier.is_finite() && multiplier >= 1.0 {
        multiplier
    } else {
        1.0
    };
    let secs = initial.as_secs_f64() * mult.powi(i32::try_from(retry).unwrap_or(i32::MAX));
    if !secs.is_finite() || secs >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(secs.max(0.0)).min(max)
    }
}

/// The delays of one retry sequence.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
    previous: Duration,
}

impl Backoff {
    /// A sequence from `initial`, growing by `multiplier`, capped at `max`.
    pub fn new(initial: Duration, multiplier: f64, max: Duration, jitter: Jitter) -> Self {
        Backoff {
            initial,
            multiplier,
            max,
            jitter,
            previous: initial,
        }
    }

    /// The ceiling of retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        backoff_ceiling(self.initial, self.multiplier, self.max, retry)
    }

    /// The delay before retry `retry + 1`, jittered with `rng`.
    pub fn delay(&mut self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        let uniform = |rng: &mut dyn rand::RngCore, lo: Duration, hi: Duration| {
            if hi <= lo {
                lo
            } else {
                Duration::from_secs_f64(rng.random_range(lo.as_secs_f64()..=hi.as_secs_f64()))
            }
        };
        let d = match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => uniform(rng, Duration::ZERO, ceiling),
            Jitter::Equal => uniform(rng, ceiling / 2, ceiling),
            Jitter::Decorrelated => {
                let hi = self.max.min(self.previous.saturating_mul(3));
                uniform(rng, self.initial.min(hi), hi)
            }
        };
        let d = d.min(self.max);
        self.previous = d.max(self.initial);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceilings_are_exact() {
        let s = Duration::from_secs;
        let c: Vec<Duration> = (0..7)
            .map(|n| backoff_ceiling(s(1), 2.0, s(30), n))
            .collect();
        assert_eq!(c, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
        assert_eq!(backoff_ceiling(s(1), 2.0, s(30), u32::MAX), s(30));
        assert_eq!(backoff_ceiling(s(1), f64::NAN, s(30), 5), s(1));
    }

    proptest! {
        #[test]
        fn every_delay_is_within_its_bounds(
            initial_ms in 1u64..2_000,
            multiplier in 1.0f64..4.0,
            max_ms in 1u64..60_000,
            jitter in prop::sample::select(vec![Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated]),
            seed in any::<u64>(),
        ) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (initial, max) = (Duration::from_millis(initial_ms), Duration::from_millis(max_ms));
            let mut b = Backoff::new(initial, multiplier, max, jitter);
            for retry in 0..20 {
                let ceiling = b.ceiling(retry);
                prop_assert!(ceiling <= max);
                prop_assert_eq!(ceiling, backoff_ceiling(initial, multiplier, max, retry));
                let d = b.delay(retry, &mut rng);
                match jitter {
                    Jitter::None => prop_assert_eq!(d, ceiling),
                    Jitter::Full => prop_assert!(d <= ceiling),
                    Jitter::Equal => prop_assert!(d >= ceiling / 2 && d <= ceiling),
                    Jitter::Decorrelated => prop_assert!(d <= max && d >= initial.min(max)),
                }
            }
        }
    }
}
