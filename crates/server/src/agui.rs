//! AG-UI runs as their readers see them: each run's AG-UI events, in
//! order, numbered 1, 2, 3 … ([`RunLog`]), kept while the run streams and
//! for a retention time after it ended, so any number of readers can follow
//! it live, join it late or resume after event N (`Last-Event-ID`). The
//! events are the agent's own text, never re-serialized. [`AgUiRuns`] holds
//! one gateway's logs, per user.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;
use wsc_core::Timestamp;

/// Why events cannot be read from a run's log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReadError {
    /// The events after `after` are no longer all held (the run's log
    /// outgrew its byte budget and dropped its oldest).
    #[error("events after {after} are no longer held: the oldest held is {oldest}")]
    Gone {
        /// What the reader asked for.
        after: u64,
        /// The oldest event still held.
        oldest: u64,
    },
}

/// A read: the events after the reader's position (each with its number),
/// and whether the run has ended with the last of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Read {
    pub(crate) events: Vec<(u64, Arc<str>)>,
    pub(crate) ended: bool,
}

/// The bytes every run's events take together, and their bound.
#[derive(Debug)]
pub(crate) struct Budget {
    used: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Budget {
            used: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// Takes `bytes` if they fit.
    fn reserve(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    /// Takes `bytes` whether they fit or not.
    fn force(&self, bytes: usize) {
        self.used
            .fetch_add(bytes, std::sync::atomic::Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }

    /// Bytes taken now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct Held {
    /// The events held, the oldest first; the first is number `first`.
    events: VecDeque<Arc<str>>,
    first: u64,
    bytes: usize,
    ended_at: Option<Timestamp>,
}

impl Held {
    /// The number of the last event appended (0 before the first).
    fn last(&self) -> u64 {
        self.first + self.events.len() as u64 - 1
    }
}

/// One AG-UI run's events. Appending wakes every reader.
#[derive(Debug)]
pub(crate) struct RunLog {
    /// Whose run it is.
    pub(crate) user: String,
    /// The run's id as its client chose it (`runId`).
    pub(crate) run_id: String,
    /// Its thread (`threadId`).
    pub(crate) thread_id: String,
    /// The run table's id for it.
    pub(crate) internal_id: String,
    max_bytes: usize,
    budget: Arc<Budget>,
    held: Mutex<Held>,
    /// The number of the last event, and whether the run ended.
    last: watch::Sender<(u64, bool)>,
    /// Readers following it now.
    readers: std::sync::atomic::AtomicUsize,
    /// Batches appending now ([`RunLog::batch`]): readers are woken when
    /// the last one ends, not per event.
    batches: std::sync::atomic::AtomicUsize,
    /// When it was made or last lost its last reader.
    unread_since: Mutex<Timestamp>,
}

impl RunLog {
    pub(crate) fn new(
        user: &str,
        run_id: &str,
        thread_id: &str,
        internal_id: &str,
        max_bytes: usize,
        budget: Arc<Budget>,
        now: Timestamp,
    ) -> Self {
        RunLog {
            user: user.to_owned(),
            run_id: run_id.to_owned(),
            thread_id: thread_id.to_owned(),
            internal_id: internal_id.to_owned(),
            max_bytes: max_bytes.max(1),
            budget,
            held: Mutex::new(Held {
                first: 1,
                ..Held::default()
            }),
            last: watch::Sender::new((0, false)),
            readers: std::sync::atomic::AtomicUsize::new(0),
            batches: std::sync::atomic::AtomicUsize::new(0),
            unread_since: Mutex::new(now),
        }
    }

    /// A reader starts following the run; it stops when the guard is
    /// dropped (`now` is read then from `clock`).
    pub(crate) fn follow(self: &Arc<Self>, clock: wsc_core::SharedClock) -> Follower {
        self.readers
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Follower {
            log: self.clone(),
            clock,
        }
    }

    /// Since when no one has read the run, if no one reads it now.
    pub(crate) fn unread_since(&self) -> Option<Timestamp> {
        (self.readers.load(std::sync::atomic::Ordering::Acquire) == 0)
            .then(|| *self.unread_since.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one event; `terminal` ends the run (nothing is appended
    /// after). Returns its number, or `None` after the end. Past the run's
    /// byte budget, or the gateway's for all runs, the run's oldest events
    /// are dropped (a reader that needs them gets [`ReadError::Gone`]); a
    /// run always keeps its newest event.
    pub(crate) fn push(&self, event: Arc<str>, terminal: bool, now: Timestamp) -> Option<u64> {
        let mut held = self.held();
        if held.ended_at.is_some() {
            return None;
        }
        let size = event.len();
        loop {
            let fits_run = held.bytes + size <= self.max_bytes;
            if fits_run && self.budget.reserve(size) {
                break;
            }
            let Some(old) = held.events.pop_front() else {
                self.budget.force(size);
                break;
            };
            held.bytes -= old.len();
            held.first += 1;
            self.budget.release(old.len());
        }
        held.bytes += size;
        held.events.push_back(event);
        if terminal {
            held.ended_at = Some(now);
        }
        let number = held.last();
        drop(held);
        // Within a batch, the readers are woken once at its end (the end
        // of a run at once).
        if terminal || self.batches.load(std::sync::atomic::Ordering::Acquire) == 0 {
            self.last.send_replace((number, terminal));
        }
        Some(number)
    }

    /// Starts a batch of appends: until the returned guard is dropped,
    /// appending does not wake the run's readers; dropping it wakes them
    /// once for all it appended. What a runner appends from one read of
    /// its agent's stream reaches each reader as one read (one write to
    /// its client), not one wake-up per event.
    pub(crate) fn batch(self: &Arc<Self>) -> Batch {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Batch { log: self.clone() }
    }

    /// Wakes the readers if events were appended since the last wake-up.
    fn wake(&self) {
        let held = self.held();
        let last = (held.last(), held.ended_at.is_some());
        drop(held);
        // Only forward: an append outside a batch may have woken them
        // for a later event meanwhile.
        self.last.send_if_modified(|seen| {
            let newer = last.0 > seen.0 || (last.1 && !seen.1);
            if newer {
                *seen = last;
            }
            newer
        });
    }

    /// The number of the oldest event held.
    pub(crate) fn first_held(&self) -> u64 {
        self.held().first
    }

    /// Readers on other gateways read the run `unread_for` before `now`:
    /// it is no orphan from then (as if a reader here had left then).
    pub(crate) fn read_elsewhere(&self, now: Timestamp, unread_for: Duration) {
        let at = now - unread_for;
        let mut since = self.unread_since.lock().unwrap_or_else(|p| p.into_inner());
        if at > *since {
            *since = at;
        }
    }

    /// Whether the run has ended, and when.
    pub(crate) fn ended_at(&self) -> Option<Timestamp> {
        self.held().ended_at
    }

    /// The events after number `after`.
    ///
    /// # Errors
    /// [`ReadError::Gone`] when some of them are no longer held.
    pub(crate) fn read_after(&self, after: u64) -> Result<Read, ReadError> {
        let held = self.held();
        if after + 1 < held.first {
            return Err(ReadError::Gone {
                after,
                oldest: held.first,
            });
        }
        let skip = usize::try_from(after + 1 - held.first).unwrap_or(usize::MAX);
        let events = held
            .events
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, e)| (held.first + i as u64, e.clone()))
            .collect();
        Ok(Read {
            events,
            ended: held.ended_at.is_some(),
        })
    }

    /// The number of the run's last event and whether it ended, as they
    /// change (what a reader that waits many times keeps).
    pub(crate) fn changes(&self) -> watch::Receiver<(u64, bool)> {
        self.last.subscribe()
    }
}

/// A batch of appends to a run's log ([`RunLog::batch`]): its readers are
/// woken when it is dropped.
#[derive(Debug)]
pub(crate) struct Batch {
    log: Arc<RunLog>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self
            .log
            .batches
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.log.wake();
        }
    }
}

/// A reader of a run; counted while it lives.
#[derive(Debug)]
pub(crate) struct Follower {
    log: Arc<RunLog>,
    clock: wsc_core::SharedClock,
}

impl Drop for Follower {
    fn drop(&mut self) {
        let log = &self.log;
        let mut since = log.unread_since.lock().unwrap_or_else(|p| p.into_inner());
        if log
            .readers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            *since = self.clock.now();
        }
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(|p| p.into_inner());
        self.budget.release(held.bytes);
    }
}

/// Readers of other gateways' runs waiting here, by (user, run id): each
/// wake-up for a run bumps its version.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    waiting: DashMap<(String, String), watch::Sender<u64>>,
}

impl Wakeups {
    /// A receiver of the run's wake-ups (dropped with its last reader).
    pub(crate) fn watch(&self, user: &str, run_id: &str) -> watch::Receiver<u64> {
        self.waiting
            .entry((user.to_owned(), run_id.to_owned()))
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// The run changed (every run, for an empty user: wake-ups may have
    /// been missed).
    pub(crate) fn wake(&self, user: &str, run_id: &str) {
        if user.is_empty() {
            for entry in &self.waiting {
                entry.send_modify(|v| *v += 1);
            }
        } else if let Some(entry) = self.waiting.get(&(user.to_owned(), run_id.to_owned())) {
            entry.send_modify(|v| *v += 1);
        }
    }

    /// Forgets the runs no reader waits on any more.
    pub(crate) fn forget_unwatched(&self) {
        self.waiting.retain(|_, sender| sender.receiver_count() > 0);
    }
}

/// Why a run's log could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LogRefused {
    /// The user holds as many runs as it may.
    #[error("at most {0} AG-UI runs are kept per user: wait for older ones to expire")]
    PerUser(usize),
    /// The gateway holds as many runs as it may.
    #[error("at most {0} AG-UI runs are kept: retry shortly")]
    Total(usize),
}

/// The AG-UI runs of one gateway, by user and run id: held while they
/// stream and for `retention` after they end; at most `max_per_user` per
/// user and `max_total` in all.
#[derive(Debug)]
pub(crate) struct AgUiRuns {
    runs: DashMap<(String, String), Arc<RunLog>>,
    per_user: DashMap<String, usize>,
    retention: Duration,
    max_per_user: usize,
    max_total: usize,
    max_bytes_per_run: usize,
    budget: Arc<Budget>,
    /// What each WebSocket session got of each run, by (user, run id,
    /// session): whether a follower copies it now, and the number of the
    /// last event it published into the session. Kept while the run is.
    joined: Arc<DashMap<(String, String, String), Arc<JoinState>>>,
    /// Readers here of runs other gateways hold, waiting for wake-ups.
    wakeups: Wakeups,
}

/// What a session got of a run.
#[derive(Debug, Default)]
pub(crate) struct JoinState {
    following: std::sync::atomic::AtomicBool,
    published: std::sync::atomic::AtomicU64,
    /// When a follower last stopped (microseconds since the epoch): what
    /// a session got of another gateway's run is kept for the retention
    /// from then (this gateway does not know when that run ends).
    left_at: std::sync::atomic::AtomicI64,
}

/// A WebSocket session following a run; it stops when this is dropped.
#[derive(Debug)]
pub(crate) struct Joined {
    state: Arc<JoinState>,
    /// Where the follower starts: after this event.
    pub(crate) from: u64,
    clock: wsc_core::SharedClock,
}

impl Joined {
    /// The session now holds the run's events through `number`.
    pub(crate) fn published(&self, number: u64) {
        self.state
            .published
            .fetch_max(number, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let now = self.clock.now().as_unix_micros();
        self.state.left_at.store(now, Ordering::Release);
        self.state.following.store(false, Ordering::Release);
    }
}

/// What [`AgUiRuns::open`] found or made.
#[derive(Debug)]
pub(crate) enum Opened {
    /// A new log: the caller starts its run.
    New(Arc<RunLog>),
    /// The user's run with this id already exists (a repeated request).
    Existing(Arc<RunLog>),
}

impl AgUiRuns {
    pub(crate) fn new(
        retention: Duration,
        max_per_user: usize,
        max_total: usize,
        max_bytes_per_run: usize,
        max_bytes: usize,
    ) -> Self {
        AgUiRuns {
            runs: DashMap::new(),
            per_user: DashMap::new(),
            retention,
            max_per_user: max_per_user.max(1),
            max_total: max_total.max(1),
            max_bytes_per_run,
            budget: Arc::new(Budget::new(max_bytes)),
            joined: Arc::default(),
            wakeups: Wakeups::default(),
        }
    }

    /// The readers here of other gateways' runs, by run.
    pub(crate) fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// The session `session` starts following `user`'s run `run_id` after
    /// event `after`: `None` if a follower copies it into the session
    /// already. A session that got some of the run before starts after the
    /// last it got, so however often it asks for a run, each event is in
    /// it once.
    pub(crate) fn join(
        &self,
        session: &str,
        user: &str,
        run_id: &str,
        after: u64,
        clock: &wsc_core::SharedClock,
    ) -> Option<Joined> {
        use std::sync::atomic::Ordering;
        let key = (user.to_owned(), run_id.to_owned(), session.to_owned());
        let state = self.joined.entry(key).or_default().clone();
        if state.following.swap(true, Ordering::AcqRel) {
            return None;
        }
        let from = after.max(state.published.load(Ordering::Acquire));
        Some(Joined {
            state,
            from,
            clock: clock.clone(),
        })
    }

    /// The bytes every run's events take now.
    pub(crate) fn bytes(&self) -> usize {
        self.budget.used()
    }

    /// Runs held now (in flight or within their retention).
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    /// The user's run `run_id`, if held.
    pub(crate) fn get(&self, user: &str, run_id: &str) -> Option<Arc<RunLog>> {
        self.runs
            .get(&(user.to_owned(), run_id.to_owned()))
            .map(|r| r.clone())
    }

    /// The user's run `run_id`: the one held, or a new log for it.
    ///
    /// # Errors
    /// [`LogRefused`] when the user or the gateway holds as many as it may.
    pub(crate) fn open(
        &self,
        user: &str,
        run_id: &str,
        thread_id: &str,
        internal_id: &str,
        now: Timestamp,
    ) -> Result<Opened, LogRefused> {
        let key = (user.to_owned(), run_id.to_owned());
        if let Some(log) = self.runs.get(&key) {
            return Ok(Opened::Existing(log.clone()));
        }
        if self.runs.len() >= self.max_total {
            return Err(LogRefused::Total(self.max_total));
        }
        let mut count = self.per_user.entry(user.to_owned()).or_default();
        if *count >= self.max_per_user {
            return Err(LogRefused::PerUser(self.max_per_user));
        }
        match self.runs.entry(key) {
            dashmap::Entry::Occupied(e) => Ok(Opened::Existing(e.get().clone())),
            dashmap::Entry::Vacant(e) => {
                *count += 1;
                let log = Arc::new(RunLog::new(
                    user,
                    run_id,
                    thread_id,
                    internal_id,
                    self.max_bytes_per_run,
                    self.budget.clone(),
                    now,
                ));
                e.insert(log.clone());
                Ok(Opened::New(log))
            }
        }
    }

    /// Drops the runs that ended more than the retention time before `now`;
    /// returns how many.
    pub(crate) fn expire(&self, now: Timestamp) -> usize {
        let mut gone = Vec::new();
        self.runs.retain(|_, log| {
            let keep = log
                .ended_at()
                .is_none_or(|at| now.duration_since(at) < self.retention);
            if !keep {
                gone.push(log.user.clone());
            }
            keep
        });
        // What sessions got of runs no longer held here (another gateway's
        // runs: for the retention after the session's follower stopped).
        let now_micros = now.as_unix_micros();
        let retention = i64::try_from(self.retention.as_micros()).unwrap_or(i64::MAX);
        self.joined.retain(|(user, run, _), state| {
            use std::sync::atomic::Ordering;
            self.runs.contains_key(&(user.clone(), run.clone()))
                || state.following.load(Ordering::Acquire)
                || now_micros.saturating_sub(state.left_at.load(Ordering::Acquire)) < retention
        });
        self.wakeups.forget_unwatched();
        for user in &gone {
            self.per_user.remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
        gone.len()
    }

    /// The runs in flight that no one has read for `timeout` at `now`.
    pub(crate) fn orphans(&self, now: Timestamp, timeout: Duration) -> Vec<Arc<RunLog>> {
        self.runs
            .iter()
            .filter(|log| {
                log.ended_at().is_none()
                    && log
                        .unread_since()
                        .is_some_and(|since| now.duration_since(since) >= timeout)
            })
            .map(|log| log.clone())
            .collect()
    }

    /// Forgets the user's run `run_id` (its run could not start).
    pub(crate) fn remove(&self, user: &str, run_id: &str) {
        if self
            .runs
            .remove(&(user.to_owned(), run_id.to_owned()))
            .is_some()
        {
            self.per_user.remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_micros(secs * 1_000_000)
    }

    fn text(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// A run's log keeping at most `max_bytes`, in an ample gateway budget.
    fn log_of(max_bytes: usize) -> RunLog {
        RunLog::new(
            "u",
            "r",
            "t",
            "run-1",
            max_bytes,
            Arc::new(Budget::new(1 << 30)),
            at(0),
        )
    }

    #[test]
    fn events_are_numbered_read_after_any_number_and_end_once() {
        let log = log_of(1 << 20);
        assert_eq!(log.push(text("a"), false, at(0)), Some(1));
        assert_eq!(log.push(text("b"), false, at(0)), Some(2));
        let read = log.read_after(0).unwrap();
        assert_eq!(read.events.len(), 2);
        assert!(!read.ended);
        assert_eq!(log.push(text("c"), true, at(1)), Some(3));
        assert_eq!(
            log.push(text("late"), false, at(2)),
            None,
            "nothing after the end"
        );
        let read = log.read_after(1).unwrap();
        let got: Vec<(u64, &str)> = read.events.iter().map(|(n, e)| (*n, &**e)).collect();
        assert_eq!(got, [(2, "b"), (3, "c")]);
        assert!(read.ended);
        assert!(log.read_after(3).unwrap().events.is_empty());
        assert!(log.read_after(99).unwrap().events.is_empty());
    }

    #[test]
    fn past_its_byte_budget_a_log_drops_its_oldest_and_says_so() {
        let log = log_of(10);
        for e in ["aaaa", "bbbb", "cccc"] {
            log.push(text(e), false, at(0));
        }
        assert_eq!(
            log.read_after(0).unwrap_err(),
            ReadError::Gone {
                after: 0,
                oldest: 2
            }
        );
        let read = log.read_after(1).unwrap();
        assert_eq!(
            read.events.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn all_runs_together_stay_within_the_gateways_budget_and_give_it_back() {
        let runs = AgUiRuns::new(Duration::from_secs(60), 10, 10, 1 << 20, 10);
        let (Opened::New(a), Opened::New(b)) = (
            runs.open("u", "a", "t", "i1", at(0)).unwrap(),
            runs.open("u", "b", "t", "i2", at(0)).unwrap(),
        ) else {
            panic!("new")
        };
        a.push(text("aaaa"), false, at(0));
        a.push(text("aaaa"), false, at(0));
        assert_eq!(runs.bytes(), 8);
        // b's event does not fit beside a's: b has nothing older to drop,
        // so it keeps its newest over the budget by at most one event...
        b.push(text("bbbb"), false, at(0));
        assert_eq!(runs.bytes(), 12);
        // ...and a's next drops a's oldest until it fits.
        a.push(text("aa"), false, at(0));
        assert_eq!(runs.bytes(), 10);
        assert_eq!(
            a.read_after(0).unwrap_err(),
            ReadError::Gone {
                after: 0,
                oldest: 2
            }
        );
        a.push(text("end"), true, at(1));
        b.push(text("end"), true, at(1));
        drop((a, b));
        assert_eq!(runs.expire(at(61)), 2);
        assert_eq!(runs.bytes(), 0, "expired runs give their bytes back");
    }

    #[test]
    fn a_run_no_one_reads_for_the_timeout_is_an_orphan() {
        let runs = AgUiRuns::new(Duration::from_secs(60), 10, 10, 1 << 20, 1 << 20);
        let clock = wsc_core::ManualClock::new(at(0));
        let (Opened::New(read), Opened::New(_unread)) = (
            runs.open("u", "read", "t", "i1", at(0)).unwrap(),
            runs.open("u", "unread", "t", "i2", at(0)).unwrap(),
        ) else {
            panic!("new")
        };
        let follower = read.follow(clock.shared());
        let orphans = |secs| -> Vec<String> {
            runs.orphans(at(secs), Duration::from_secs(60))
                .iter()
                .map(|l| l.run_id.clone())
                .collect()
        };
        assert!(orphans(59).is_empty());
        assert_eq!(orphans(60), ["unread"], "read while followed");
        clock.set(at(100));
        drop(follower);
        assert_eq!(orphans(159), ["unread"], "unread from when its reader left");
        assert_eq!(orphans(160).len(), 2);
        read.push(text("end"), true, at(200));
        assert_eq!(orphans(1_000), ["unread"], "an ended run is no orphan");
    }

    proptest::proptest! {
        /// For any run (its events, appended while a reader reads) and any
        /// cut points (each read's batch cut after any prefix, the reader
        /// resuming after the last event it kept): the reader ends with
        /// exactly the run's events, in order, numbered 1, 2, 3 …, and sees
        /// the end once it has the last.
        #[test]
        fn a_reader_cut_anywhere_resumes_to_exactly_the_run(
            events in proptest::collection::vec(".{0,12}", 1..40),
            steps in proptest::collection::vec((0usize..5, 0usize..8), 1..60),
        ) {
            let log = log_of(1 << 20);
            let (mut appended, mut got, mut last) = (0usize, Vec::<(u64, String)>::new(), 0u64);
            // The generated steps, then whole reads until the end.
            let mut steps = steps.into_iter().chain(std::iter::repeat((1, usize::MAX)));
            loop {
                let (append, keep) = steps.next().unwrap_or((1, usize::MAX));
                // The agent appends a few (the last one ends the run).
                for _ in 0..append.max(usize::from(appended == 0)) {
                    if appended < events.len() {
                        let terminal = appended + 1 == events.len();
                        log.push(text(&events[appended]), terminal, at(0));
                        appended += 1;
                    }
                }
                // The reader reads; the cut keeps a prefix of the batch.
                let read = log.read_after(last).unwrap();
                let kept = keep.min(read.events.len());
                for (n, e) in &read.events[..kept] {
                    got.push((*n, e.to_string()));
                    last = *n;
                }
                if read.ended && kept == read.events.len() {
                    break;
                }
                if appended == events.len() && read.events.is_empty() {
                    proptest::prop_assert!(read.ended, "all appended: the run has ended");
                }
            }
            let want: Vec<(u64, String)> = events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64 + 1, e.clone()))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[tokio::test]
    async fn a_reader_wakes_when_an_event_is_appended_or_the_run_ends() {
        let log = Arc::new(log_of(1 << 20));
        let mut changes = log.changes();
        let waiting = tokio::spawn(async move {
            let _ = changes.wait_for(|(n, ended)| *n > 0 || *ended).await;
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        log.push(text("a"), false, at(0));
        waiting.await.unwrap();
        // Already past: at once.
        let _ = log.changes().wait_for(|(n, _)| *n > 0).await;
        // The end wakes a reader that has every event.
        let mut changes = log.changes();
        let ending = tokio::spawn(async move {
            let _ = changes.wait_for(|(n, ended)| *n > 1 || *ended).await;
        });
        tokio::task::yield_now().await;
        assert!(!ending.is_finished());
        log.push(text("end"), true, at(1));
        ending.await.unwrap();
    }

    #[test]
    fn a_batch_wakes_its_readers_once_at_its_end() {
        let log = Arc::new(log_of(1 << 20));
        let mut changes = log.changes();
        changes.mark_unchanged();
        {
            let _outer = log.batch();
            let inner = log.batch();
            for e in ["a", "b", "c"] {
                log.push(text(e), false, at(0));
            }
            drop(inner);
            assert!(!changes.has_changed().unwrap(), "no wake-up within a batch");
        }
        assert!(changes.has_changed().unwrap(), "its end wakes them");
        assert_eq!(
            *changes.borrow_and_update(),
            (3, false),
            "once, for all three"
        );
        // An empty batch wakes no one; the end of a run wakes them at once.
        drop(log.batch());
        assert!(!changes.has_changed().unwrap());
        let batch = log.batch();
        log.push(text("end"), true, at(1));
        assert_eq!(*changes.borrow_and_update(), (4, true));
        drop(batch);
        assert!(!changes.has_changed().unwrap());
    }

    #[test]
    fn runs_are_per_user_bounded_and_expire_after_their_retention() {
        let runs = AgUiRuns::new(Duration::from_secs(60), 2, 4, 1 << 20, 1 << 30);
        let Opened::New(a) = runs.open("u", "r1", "t", "i1", at(0)).unwrap() else {
            panic!("new")
        };
        assert!(matches!(
            runs.open("u", "r1", "t", "i9", at(0)),
            Ok(Opened::Existing(_))
        ));
        assert!(
            matches!(runs.open("v", "r1", "t", "i2", at(0)), Ok(Opened::New(_))),
            "per user"
        );
        assert!(matches!(
            runs.open("u", "r2", "t", "i3", at(0)),
            Ok(Opened::New(_))
        ));
        assert_eq!(
            runs.open("u", "r3", "t", "i4", at(0)).unwrap_err(),
            LogRefused::PerUser(2)
        );
        assert!(matches!(
            runs.open("w", "r1", "t", "i5", at(0)),
            Ok(Opened::New(_))
        ));
        assert_eq!(
            runs.open("x", "r1", "t", "i6", at(0)).unwrap_err(),
            LogRefused::Total(4)
        );
        // In flight: kept however old.
        assert_eq!(runs.expire(at(1_000)), 0);
        a.push(text("end"), true, at(1_000));
        assert_eq!(runs.expire(at(1_059)), 0);
        assert_eq!(runs.expire(at(1_060)), 1);
        assert!(runs.get("u", "r1").is_none());
        assert!(
            matches!(runs.open("u", "r3", "t", "i7", at(0)), Ok(Opened::New(_))),
            "its place is free"
        );
    }
}
