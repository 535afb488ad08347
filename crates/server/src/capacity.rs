//! The gateway's connection cap (`LimitsConfig::max_connections`): how
//! many WebSocket connections and AG-UI SSE streams it holds at once. A
//! client beyond it is refused before anything is opened for it (503
//! `at_capacity` with a jittered `Retry-After`), so the process never runs
//! out of open files: what stays below the open-file limit keeps `/health`,
//! `/metrics`, the store's and the agents' sockets working.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The share of the open-file limit the default cap leaves for everything
/// else (`/health`, `/metrics`, refused handshakes in flight, the store's
/// connections, agent requests): a fifth, at least 256.
fn reserve(open_files: u64) -> u64 {
    (open_files / 5).max(256)
}

/// The default cap for a process allowed `open_files` open files: all but
/// [`reserve`] of them, at least a quarter of them.
pub(crate) fn cap_for(open_files: u64) -> usize {
    let cap = open_files
        .saturating_sub(reserve(open_files))
        .max(open_files / 4)
        .max(1);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Connections held now, and at most.
#[derive(Debug)]
pub(crate) struct Capacity {
    open: AtomicUsize,
    max: usize,
}

/// A held connection's place under the cap; given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    capacity: Arc<Capacity>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.capacity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Capacity {
    /// A cap of `max` connections (`usize::MAX`: none).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Capacity {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A place for one more connection, unless the gateway holds `max`.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Place> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Place {
                capacity: self.clone(),
            })
    }

    /// Connections held now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// The `Retry-After` of a refusal at the cap, in seconds: 1 to 5, drawn
/// anew for each client, so the clients a full gateway refused come back
/// spread out rather than all at once.
pub(crate) fn retry_after_secs() -> u64 {
    rand::random_range(1..=5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_fifth_of_the_open_files() {
        assert_eq!(cap_for(20_000), 16_000);
        assert_eq!(cap_for(1_048_576), 838_861);
        // At least 256 are left; at least a quarter is used.
        assert_eq!(cap_for(1_024), 768);
        assert_eq!(cap_for(300), 75);
        assert_eq!(cap_for(0), 1);
    }

    proptest::proptest! {
        /// However many takes race, at most `max` places are held at
        /// once, and every place given back can be taken again.
        #[test]
        fn never_more_places_than_the_cap(max in 0usize..20, takers in 1usize..8, rounds in 1usize..40) {
            let capacity = Capacity::new(max);
            let held: Vec<Vec<Place>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..takers)
                    .map(|_| s.spawn(|| (0..rounds).filter_map(|_| capacity.take()).collect::<Vec<_>>()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let taken: usize = held.iter().map(Vec::len).sum();
            proptest::prop_assert_eq!(taken, max.min(takers * rounds));
            proptest::prop_assert_eq!(capacity.open(), taken);
            drop(held);
            proptest::prop_assert_eq!(capacity.open(), 0);
            proptest::prop_assert_eq!(capacity.take().is_some(), max > 0);
        }
    }

    #[test]
    fn retry_after_is_one_to_five_seconds_and_varies() {
        let drawn: std::collections::BTreeSet<u64> = (0..200).map(|_| retry_after_secs()).collect();
        assert!(drawn.iter().all(|s| (1..=5).contains(s)));
        assert!(drawn.len() > 1, "jittered");
    }
}
