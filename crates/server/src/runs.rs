//! `RunTable`: the runs in flight, per user, capped
//! (`GatewayConfig::max_runs_per_user`), and how `stop_agent` reaches one.

use std::sync::Arc;

use dashmap::DashMap;

use crate::agent::RunControl;

/// The runs in flight: who owns each, and how to stop it.
#[derive(Debug)]
pub(crate) struct RunTable {
    max_per_user: usize,
    runs: DashMap<String, (String, Arc<RunControl>)>,
    per_user: DashMap<String, usize>,
}

/// A run's place in its user's count; released when dropped (the run's
/// task ended, however it ended).
#[derive(Debug)]
pub(crate) struct RunSlot {
    table: Arc<RunTable>,
    user: String,
    run_id: String,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.table.runs.remove(&self.run_id);
        self.table.per_user.remove_if_mut(&self.user, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl RunTable {
    pub(crate) fn new(max_per_user: usize) -> Self {
        RunTable {
            max_per_user,
            runs: DashMap::new(),
            per_user: DashMap::new(),
        }
    }

    /// Registers a run of `user` if the user has fewer than the cap in
    /// flight; `None` at the cap.
    pub(crate) fn start(
        self: &Arc<Self>,
        user: &str,
        run_id: &str,
        control: Arc<RunControl>,
    ) -> Option<RunSlot> {
        {
            let mut n = self.per_user.entry(user.to_owned()).or_insert(0);
            if *n >= self.max_per_user {
                return None;
            }
            *n += 1;
        }
        self.runs
            .insert(run_id.to_owned(), (user.to_owned(), control));
        Some(RunSlot {
            table: self.clone(),
            user: user.to_owned(),
            run_id: run_id.to_owned(),
        })
    }

    /// Cancels `user`'s run `run_id`; false if no such run of theirs is in
    /// flight.
    pub(crate) fn stop(&self, user: &str, run_id: &str) -> bool {
        match self.runs.get(run_id) {
            Some(entry) if entry.0 == user => {
                entry.1.cancel();
                true
            }
            _ => false,
        }
    }

    /// Runs in flight for `user`.
    pub(crate) fn in_flight(&self, user: &str) -> usize {
        self.per_user.get(user).map_or(0, |n| *n)
    }

    /// Runs in flight in all.
    pub(crate) fn total(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_runs_until_their_slots_drop() {
        let table = Arc::new(RunTable::new(2));
        let a = table.start("u", "r1", Arc::new(RunControl::new())).unwrap();
        let b = table.start("u", "r2", Arc::new(RunControl::new())).unwrap();
        assert!(
            table
                .start("u", "r3", Arc::new(RunControl::new()))
                .is_none()
        );
        assert!(
            table
                .start("v", "r4", Arc::new(RunControl::new()))
                .is_some(),
            "per user"
        );
        assert_eq!(table.in_flight("u"), 2);
        drop(a);
        assert_eq!(table.in_flight("u"), 1);
        let _c = table.start("u", "r3", Arc::new(RunControl::new())).unwrap();
        drop(b);
        assert_eq!((table.in_flight("u"), table.total()), (1, 1));
    }

    #[test]
    fn only_the_owner_stops_a_run() {
        let table = Arc::new(RunTable::new(4));
        let control = Arc::new(RunControl::new());
        let _slot = table.start("u", "r1", control.clone()).unwrap();
        assert!(!table.stop("mallory", "r1"));
        assert!(!control.is_cancelled());
        assert!(!table.stop("u", "nope"));
        assert!(table.stop("u", "r1"));
        assert!(control.is_cancelled());
    }
}
