//! An exact sliding log: every admission's time kept, each window counted
//! over them. The rule of the legacy Python package, whose callers keep
//! (and may rewrite) the list of admission times themselves.

use std::time::Duration;

use wsc_core::Timestamp;

use crate::window::{WindowDecision, WindowLimit};

/// Every admission's time, in the order the caller keeps them — not
/// necessarily sorted, since a caller may rewrite any entry — and the
/// decisions over them: a window of length `W` at time `t` counts the
/// entries after `t - W` (entries in the future count too).
///
/// Exact where [`WindowLimit`]'s rings are bounded: it costs 8 bytes per
/// admission kept and a scan per decision. The bucket count of a
/// [`WindowLimit`] plays no part here.
///
/// ```
/// use std::time::Duration;
/// use wsc_core::Timestamp;
/// use wsc_rate_limiter::{SlidingLog, WindowLimit};
///
/// let minute = [WindowLimit::new(Duration::from_secs(60), 2)];
/// let at = |s: i64| Timestamp::from_unix_micros(s * 1_000_000);
/// let mut log = SlidingLog::new();
/// assert!(log.admit(at(0), &minute).admitted);
/// assert!(log.admit(at(10), &minute).admitted);
/// let refused = log.admit(at(20), &minute);
/// assert!(!refused.admitted);
/// // The first admission leaves the window at 60 s.
/// assert_eq!(refused.retry_at, Some(at(60)));
/// assert_eq!(log.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingLog {
    times: Vec<Timestamp>,
}

impl SlidingLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log of `times`, in the caller's order.
    pub fn from_times(times: impl IntoIterator<Item = Timestamp>) -> Self {
        SlidingLog {
            times: times.into_iter().collect(),
        }
    }

    /// The entries, in the caller's order.
    pub fn times(&self) -> &[Timestamp] {
        &self.times
    }

    /// How many entries it keeps.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether it keeps none.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Appends an entry.
    pub fn push(&mut self, at: Timestamp) {
        self.times.push(at);
    }

    /// Rewrites entry `index`; false (nothing changed) if there is none.
    pub fn set(&mut self, index: usize, at: Timestamp) -> bool {
        match self.times.get_mut(index) {
            Some(slot) => {
                *slot = at;
                true
            }
            None => false,
        }
    }

    /// Replaces every entry with `times`, in their order.
    pub fn replace(&mut self, times: impl IntoIterator<Item = Timestamp>) {
        self.times.clear();
        self.times.extend(times);
    }

    /// The entries a window of `length` counts at `now`: those after
    /// `now - length`.
    pub fn count_within(&self, now: Timestamp, length: Duration) -> usize {
        let after = now - length;
        self.times.iter().filter(|t| **t > after).count()
    }

    /// Whether one more admission at `now` fits every enabled window in
    /// `windows` (a window with a zero limit or length limits nothing),
    /// and for a refusal the first refusing window and the earliest instant
    /// at which every window admits again: where enough of the oldest
    /// counted entries have left. Nothing is recorded.
    pub fn decide(&self, now: Timestamp, windows: &[WindowLimit]) -> WindowDecision {
        let mut decision = WindowDecision {
            admitted: true,
            refused_window: None,
            retry_at: None,
        };
        for (index, window) in windows.iter().enumerate() {
            if !window.enabled() {
                continue;
            }
            let after = now - window.length;
            let limit = window.limit as usize;
            // Counted first without a copy: most decisions admit.
            if self.times.iter().filter(|t| **t > after).count() < limit {
                continue;
            }
            let mut counted: Vec<Timestamp> =
                self.times.iter().copied().filter(|t| *t > after).collect();
            // Below the limit once the (count - limit + 1) oldest have
            // left: the newest of those leaves at its time + length.
            let last_to_leave = counted.len() - limit;
            let (_, leaving, _) = counted.select_nth_unstable(last_to_leave);
            let again = *leaving + window.length;
            decision.admitted = false;
            decision.refused_window.get_or_insert(index);
            decision.retry_at = Some(decision.retry_at.map_or(again, |r| r.max(again)));
        }
        decision
    }

    /// [`decide`](Self::decide), recording the admission at `now` if it
    /// is admitted; a refusal records nothing.
    pub fn admit(&mut self, now: Timestamp, windows: &[WindowLimit]) -> WindowDecision {
        let decision = self.decide(now, windows);
        if decision.admitted {
            self.times.push(now);
        }
        decision
    }

    /// Drops the entries no window in `windows` counts at `now` or later
    /// (those at or before `now` minus the longest enabled window), keeping
    /// the others in their order; for each entry before, whether it was
    /// kept. With no enabled window, nothing is needed.
    pub fn retain_needed(&mut self, now: Timestamp, windows: &[WindowLimit]) -> Vec<bool> {
        let longest = windows
            .iter()
            .filter(|w| w.enabled())
            .map(|w| w.length)
            .max();
        let keep: Vec<bool> = match longest {
            Some(length) => {
                let after = now - length;
                self.times.iter().map(|t| *t > after).collect()
            }
            None => vec![false; self.times.len()],
        };
        let mut flags = keep.iter();
        self.times.retain(|_| *flags.next().unwrap_or(&false));
        keep
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_700_000_000_000_000 + ms * 1_000)
    }

    /// The reference: counts by brute force, and the retry instant as the
    /// first candidate instant (an entry's time + a window's length) at
    /// which every window counts fewer than its limit.
    fn reference(times: &[i64], now: i64, windows: &[(i64, u32)]) -> (bool, Option<i64>) {
        let refuses = |t: i64| {
            windows
                .iter()
                .filter(|(len, limit)| *len > 0 && *limit > 0)
                .any(|(len, limit)| {
                    times.iter().filter(|x| **x > t - len).count() >= *limit as usize
                })
        };
        if !refuses(now) {
            return (true, None);
        }
        let mut candidates: Vec<i64> = times
            .iter()
            .flat_map(|x| windows.iter().map(move |(len, _)| x + len))
            .filter(|c| *c > now)
            .collect();
        candidates.sort_unstable();
        (false, candidates.into_iter().find(|c| !refuses(*c)))
    }

    fn limits(windows: &[(i64, u32)]) -> Vec<WindowLimit> {
        windows
            .iter()
            .map(|(len, limit)| {
                WindowLimit::new(
                    Duration::from_millis(u64::try_from(*len).unwrap_or(0)),
                    *limit,
                )
            })
            .collect()
    }

    proptest! {
        /// Any entries, in any order (rewritten ones included), and any
        /// windows: the decision and its retry instant equal the
        /// reference's, and a refusal records nothing.
        #[test]
        fn decisions_equal_the_reference(
            times in proptest::collection::vec(0i64..10_000, 0..40),
            now in 0i64..12_000,
            windows in proptest::collection::vec((0i64..5_000, 0u32..12), 1..3),
        ) {
            let mut log = SlidingLog::from_times(times.iter().map(|t| at(*t)));
            let decision = log.admit(at(now), &limits(&windows));
            let (admitted, retry) = reference(&times, now, &windows);
            prop_assert_eq!(decision.admitted, admitted);
            prop_assert_eq!(decision.retry_at, retry.map(at));
            prop_assert_eq!(log.len(), times.len() + usize::from(admitted));
        }

        /// Cleaning up keeps exactly the entries a window still counts, in
        /// their order, and changes no decision from then on.
        #[test]
        fn cleanup_changes_no_decision(
            times in proptest::collection::vec(0i64..10_000, 0..40),
            now in 0i64..12_000,
            later in 0i64..3_000,
            windows in proptest::collection::vec((1i64..5_000, 1u32..12), 1..3),
        ) {
            let windows = limits(&windows);
            let mut log = SlidingLog::from_times(times.iter().map(|t| at(*t)));
            let before = log.decide(at(now + later), &windows);
            let kept = log.retain_needed(at(now), &windows);
            prop_assert_eq!(kept.len(), times.len());
            let expected: Vec<Timestamp> = times
                .iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(t, _)| at(*t))
                .collect();
            prop_assert_eq!(log.times(), &expected[..]);
            prop_assert_eq!(log.decide(at(now + later), &windows), before);
        }
    }

    #[test]
    fn a_rewritten_entry_counts_where_it_now_is() {
        let minute = [WindowLimit::new(Duration::from_secs(60), 2)];
        let mut log = SlidingLog::new();
        assert!(log.admit(at(0), &minute).admitted);
        assert!(log.admit(at(1), &minute).admitted);
        assert!(!log.decide(at(2), &minute).admitted);
        // The caller makes the first entry two minutes old.
        assert!(log.set(0, at(-120_000)));
        assert!(log.decide(at(2), &minute).admitted);
        assert!(!log.set(5, at(0)));
    }
}
