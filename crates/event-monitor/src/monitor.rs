//! [`EventMonitor`]: the per-run tracker map and everything built on it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use compact_str::CompactString;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use tokio::sync::broadcast;
use wsc_core::{
    BackgroundTask, MessageType, SharedClock, SystemClock, Timestamp, WebSocketMessage,
};

use crate::config::{AgentSession, EventMonitorConfig};
use crate::error::{
    EventMonitorError, EventValidationError, MissingCriticalEventError, OrderViolation,
    SilentFailure,
};
use crate::report::{
    EventMetrics, EventTiming, EventTracker, HealthReport, HealthStatus, LatencySummary,
    MonitorEvent, SweepReport,
};
use crate::run::{Phase, Run};

/// Capacity of the [`subscribe`](EventMonitor::subscribe) channel; a
/// subscriber that falls further behind misses the oldest events.
const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Tracks agent runs and checks that each delivers its events completely
/// and in order. See the crate docs for the rules and an example.
///
/// Runs live in a `DashMap` keyed by the tracking id, so runs never contend
/// on one global lock; the events of one run apply in call order. All methods
/// take `&self`; share the monitor in an `Arc`.
#[derive(Debug)]
pub struct EventMonitor {
    config: EventMonitorConfig,
    clock: SharedClock,
    /// Runs are boxed so the table stays small (40-byte entries) and mostly
    /// cached; ids up to 24 bytes are stored inline (no miss to compare).
    runs: DashMap<CompactString, Box<Run>, RandomState>,
    /// Ended runs in the order they ended, for eviction; entries whose run is
    /// gone or was restarted are skipped lazily.
    ended: Mutex<VecDeque<(String, Timestamp)>>,
    failures: Mutex<VecDeque<SilentFailure>>,
    total_failures: AtomicU64,
    evicted: AtomicU64,
    /// Approximate bytes of all stored events (see `reserve`).
    stored_bytes: std::sync::atomic::AtomicUsize,
    last_status: Mutex<HealthStatus>,
    events: broadcast::Sender<MonitorEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, so a panic
    // elsewhere while holding the lock does not poison its meaning.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl EventMonitor {
    /// A monitor on the system clock.
    pub fn new(config: EventMonitorConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A monitor on `clock` (tests pass a `ManualClock`).
    pub fn with_clock(config: EventMonitorConfig, clock: SharedClock) -> Self {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        EventMonitor {
            config,
            clock,
            runs: DashMap::with_hasher(RandomState::default()),
            ended: Mutex::new(VecDeque::new()),
            failures: Mutex::new(VecDeque::new()),
            total_failures: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            stored_bytes: std::sync::atomic::AtomicUsize::new(0),
            last_status: Mutex::new(HealthStatus::Healthy),
            events,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EventMonitorConfig {
        &self.config
    }

    /// How many runs are tracked.
    pub fn session_count(&self) -> usize {
        self.runs.len()
    }

    /// Whether a run is tracked under `session_id` (cheaper than
    /// [`tracker`](Self::tracker): nothing is copied).
    ///
    /// ```
    /// use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig};
    /// let monitor = EventMonitor::new(EventMonitorConfig::default());
    /// assert!(!monitor.is_tracking("run-1"));
    /// monitor.start_session_tracking("run-1", AgentSession::new("alice"));
    /// assert!(monitor.is_tracking("run-1"));
    /// ```
    pub fn is_tracking(&self, session_id: &str) -> bool {
        self.runs.contains_key(session_id)
    }

    /// A snapshot of one run, or `None` if it is not tracked.
    pub fn tracker(&self, session_id: &str) -> Option<EventTracker> {
        let run = self.runs.get(session_id)?;
        Some(EventTracker {
            user_id: run.session.user_id.clone(),
            thread_id: run.session.thread_id.clone(),
            run_id: run.session.run_id.clone(),
            agent_name: run.session.agent_name.clone(),
            events_received: run.events.messages(),
            payloads_dropped: run.events.is_compact(),
            started_at: run.started_at,
            last_event_at: run.last_event_at,
            is_complete: matches!(self.validate(session_id, &run), Ok(true)),
            reached_completion: run.phase == Phase::Completed,
            is_failed: run.phase == Phase::Failed,
            is_cancelled: run.phase == Phase::Failed && run.cancelled,
            is_timeout: run.is_timeout,
            total_events: run.total_events,
            events_truncated: run.events_truncated,
            violations: run.violations.clone(),
            open_tools: run.open_tools.len(),
        })
    }

    /// The kept silent failures (order violations across all runs), oldest
    /// first; at most `max_silent_failures`.
    pub fn silent_failures(&self) -> Vec<SilentFailure> {
        lock(&self.failures).iter().cloned().collect()
    }

    /// Violations, timeouts and health changes as they happen. Slow
    /// subscribers miss the oldest events (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        self.events.subscribe()
    }

    /// Starts tracking a run under `session_id`. Tracking an id again
    /// replaces the old run. May evict a run to stay within
    /// `max_tracked_runs` (see [`EventMonitorConfig::max_tracked_runs`]).
    pub fn start_session_tracking(&self, session_id: &str, session: AgentSession) {
        let now = self.clock.now();
        let previous = self.runs.insert(
            CompactString::from(session_id),
            Box::new(Run::new(session, now)),
        );
        if let Some(old) = &previous {
            self.release(old);
        }
        let replaced = previous.is_some();
        if !replaced {
            self.enforce_capacity(session_id);
        }
    }

    /// Records one event of a run, checking the order rules live. An
    /// out-of-order event is still stored, and recorded as a violation (see
    /// [`silent_failures`](Self::silent_failures)).
    ///
    /// # Errors
    /// [`EventMonitorError::UnknownSession`] if the run is not tracked;
    /// nothing is recorded then.
    pub fn record_event(
        &self,
        session_id: &str,
        message: WebSocketMessage,
    ) -> Result<(), EventMonitorError> {
        let now = self.clock.now();
        let applied = {
            let mut run = self
                .runs
                .get_mut(session_id)
                .ok_or_else(|| EventMonitorError::UnknownSession(session_id.to_owned()))?;
            let bytes = run.events.cost_of(&message);
            let store = run.events.len() < self.config.max_events_per_run
                && run.stored_bytes + bytes <= self.config.max_stored_bytes_per_run
                && self.reserve(bytes);
            let applied = run.apply_sized(
                message,
                now,
                self.config.max_events_per_run,
                store.then_some(bytes),
            );
            if applied.ended {
                self.end_storage(&mut run);
            }
            applied
        };
        if applied.ended {
            self.push_ended(session_id, now);
        }
        if let Some(violation) = applied.violation {
            self.push_failure(session_id, violation);
        }
        Ok(())
    }

    /// Checks a run: `Ok(true)` when it completed and broke no rule,
    /// `Ok(false)` when it broke no rule but has not completed (only possible
    /// when `agent_completed` is not a required event).
    ///
    /// # Errors
    /// In this order: [`EventValidationError::UnknownSession`];
    /// [`EventValidationError::RunFailed`] for a run ended by an error;
    /// [`EventValidationError::MissingCriticalEvents`] (when
    /// `track_critical_events`); [`EventValidationError::OrderViolation`]
    /// (when `validate_event_order`).
    pub fn validate_session_completion(
        &self,
        session_id: &str,
    ) -> Result<bool, EventValidationError> {
        let run = self
            .runs
            .get(session_id)
            .ok_or_else(|| EventValidationError::UnknownSession(session_id.to_owned()))?;
        self.validate(session_id, &run)
    }

    /// The checks of [`validate_session_completion`](Self::validate_session_completion)
    /// on one run: `Ok(true)` exactly when the run is validated complete.
    fn validate(&self, session_id: &str, run: &Run) -> Result<bool, EventValidationError> {
        if run.phase == Phase::Failed && run.cancelled {
            return Err(EventValidationError::Cancelled {
                session_id: session_id.to_owned(),
            });
        }
        if run.phase == Phase::Failed {
            return Err(EventValidationError::RunFailed {
                session_id: session_id.to_owned(),
                reason: run.failure_reason.clone().unwrap_or_default(),
            });
        }
        if self.config.track_critical_events {
            let mut missing: Vec<MessageType> = Vec::new();
            for required in &self.config.required_events {
                let canonical = required.canonical();
                if !run.seen(canonical) && !missing.contains(&canonical) {
                    missing.push(canonical);
                }
            }
            if !missing.is_empty() {
                return Err(EventValidationError::MissingCriticalEvents(
                    MissingCriticalEventError { missing },
                ));
            }
        }
        if self.config.validate_event_order && run.violation_count > 0 {
            return Err(EventValidationError::OrderViolation {
                session_id: session_id.to_owned(),
                violations: run.violations.clone(),
                count: run.violation_count,
            });
        }
        Ok(run.phase == Phase::Completed)
    }

    /// Timing metrics of a run, or `None` if it is not tracked or
    /// `metrics_enabled` is off.
    pub fn get_session_metrics(&self, session_id: &str) -> Option<EventMetrics> {
        if !self.config.metrics_enabled {
            return None;
        }
        let now = self.clock.now();
        let run = self.runs.get(session_id)?;
        let mut previous: Option<Timestamp> = None;
        let event_timings = run
            .events
            .timings()
            .map(|(at, event_type, bytes)| {
                let latency_ms = previous.map(|p| ms(at.duration_since(p)));
                previous = Some(at);
                EventTiming {
                    event_type,
                    timestamp: at,
                    latency_ms,
                    approx_bytes: bytes,
                }
            })
            .collect();
        let end = run.ended_at.unwrap_or(now);
        Some(EventMetrics {
            session_id: session_id.to_owned(),
            session_duration_ms: ms(end.duration_since(run.started_at)),
            total_events: usize::try_from(run.total_events).unwrap_or(usize::MAX),
            event_timings,
        })
    }

    /// Removes ended runs (completed, failed or timed out) that ended at
    /// least `max_age` ago; returns how many it removed.
    pub fn cleanup_completed_sessions(&self, max_age: Duration) -> usize {
        self.remove_ended_older_than(max_age)
    }

    /// Whether a run that has not ended has been tracked for longer than
    /// `timeout` (or is already marked timed out). Does not mark it.
    pub fn check_session_timeout(&self, session_id: &str, timeout: Duration) -> bool {
        let now = self.clock.now();
        self.runs.get(session_id).is_some_and(|run| {
            run.is_timeout || (!run.is_ended() && now.duration_since(run.started_at) > timeout)
        })
    }

    /// Marks a run timed out. Returns `true` if it is now newly marked;
    /// `false` if it is unknown, already ended or already marked.
    pub fn mark_session_timeout(&self, session_id: &str) -> bool {
        let now = self.clock.now();
        let marked = self.runs.get_mut(session_id).is_some_and(|mut run| {
            let marked = mark_timeout(&mut run, now);
            if marked {
                self.end_storage(&mut run);
            }
            marked
        });
        if marked {
            self.push_ended(session_id, now);
            let _ = self.events.send(MonitorEvent::RunTimedOut {
                session_id: session_id.to_owned(),
            });
        }
        marked
    }

    /// Rolls stale runs, stuck tools, violations and inter-event latency up
    /// into a [`HealthReport`]; see [`HealthStatus`] for the rules.
    pub fn check_health(&self) -> HealthReport {
        self.health()
    }

    /// One sweep, as the background sweeper does it: marks runs tracked for
    /// longer than `run_timeout` without ending as timed out, removes ended
    /// runs older than `completed_max_age` (when `auto_cleanup_enabled`),
    /// checks health, and publishes timeouts and health changes.
    pub fn sweep(&self) -> SweepReport {
        let now = self.clock.now();
        let mut timed_out = Vec::new();
        for mut entry in self.runs.iter_mut() {
            let overdue =
                !entry.is_ended() && now.duration_since(entry.started_at) > self.config.run_timeout;
            if overdue && mark_timeout(&mut entry, now) {
                self.end_storage(&mut entry);
                timed_out.push(entry.key().to_string());
            }
        }
        for id in &timed_out {
            self.push_ended(id, now);
            let _ = self.events.send(MonitorEvent::RunTimedOut {
                session_id: id.clone(),
            });
        }
        let removed = if self.config.auto_cleanup_enabled {
            self.remove_ended_older_than(self.config.completed_max_age)
        } else {
            0
        };
        let health = self.health().status;
        let previous = std::mem::replace(&mut *lock(&self.last_status), health);
        if previous != health {
            let _ = self.events.send(MonitorEvent::HealthChanged {
                previous,
                current: health,
            });
        }
        SweepReport {
            timed_out: timed_out.len(),
            removed,
            health,
        }
    }

    /// Starts the background sweeper: a tokio task that calls
    /// [`sweep`](Self::sweep) every `sweep_interval` of the monitor's clock.
    /// It stops when the handle is stopped or dropped, or when the monitor is
    /// dropped. Must be called within a tokio runtime.
    pub fn spawn_sweeper(self: &Arc<Self>) -> SweeperHandle {
        let monitor: Weak<EventMonitor> = Arc::downgrade(self);
        BackgroundTask::spawn_periodic(self.clock.clone(), self.config.sweep_interval, move || {
            monitor.upgrade().map(|m| m.sweep()).is_some()
        })
    }

    fn push_ended(&self, session_id: &str, at: Timestamp) {
        let mut ended = lock(&self.ended);
        ended.push_back((session_id.to_owned(), at));
        // Stale entries (runs removed or restarted) are dropped lazily; keep
        // the queue within twice the run bound.
        if ended.len() > self.config.max_tracked_runs.saturating_mul(2).max(16) {
            ended.retain(|(id, at)| self.ended_entry_is_current(id, *at));
        }
    }

    /// Whether an entry of the ended queue still stands for its run (the run
    /// exists, has ended, and ended at that time — not restarted since).
    fn ended_entry_is_current(&self, id: &str, at: Timestamp) -> bool {
        self.runs.get(id).is_some_and(|r| r.ended_at_time(at))
    }

    fn push_failure(&self, session_id: &str, violation: OrderViolation) {
        self.total_failures.fetch_add(1, Ordering::Relaxed);
        let failure = SilentFailure {
            session_id: session_id.to_owned(),
            violation,
        };
        {
            let mut failures = lock(&self.failures);
            if failures.len() >= self.config.max_silent_failures {
                failures.pop_front();
            }
            if self.config.max_silent_failures > 0 {
                failures.push_back(failure.clone());
            }
        }
        let _ = self.events.send(MonitorEvent::Violation(failure));
    }

    /// Takes `bytes` from the budget of stored event bytes; false (and
    /// nothing taken) if they do not fit.
    fn reserve(&self, bytes: usize) -> bool {
        let max = self.config.max_stored_bytes;
        self.stored_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= max)
            })
            .is_ok()
    }

    /// What a run keeps once it has ended: its events become compact
    /// records unless payloads are kept after the end; the bytes this frees
    /// go back to the budget.
    fn end_storage(&self, run: &mut Run) {
        if self.config.keep_payloads_after_end != Some(true) {
            let freed = run.compact();
            self.stored_bytes.fetch_sub(freed, Ordering::AcqRel);
        }
    }

    /// Gives a removed run's stored bytes back to the budget.
    fn release(&self, run: &Run) {
        self.stored_bytes
            .fetch_sub(run.stored_bytes, Ordering::AcqRel);
    }

    /// Approximate bytes of the events stored for every tracked run (at
    /// most [`EventMonitorConfig::max_stored_bytes`]).
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes.load(Ordering::Acquire)
    }

    fn enforce_capacity(&self, keep: &str) {
        while self.runs.len() > self.config.max_tracked_runs.max(1) {
            if !self.evict_one(keep) {
                break;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Evicts the run that ended first, else the least recently active run
    /// other than `keep`. Returns whether a run was evicted.
    fn evict_one(&self, keep: &str) -> bool {
        loop {
            let next = lock(&self.ended).pop_front();
            let Some((id, at)) = next else { break };
            if let Some((_, run)) = self.runs.remove_if(id.as_str(), |_, r| r.ended_at_time(at)) {
                self.release(&run);
                return true;
            }
        }
        // No ended run: the slow path scans for the least recently active.
        let oldest = self
            .runs
            .iter()
            .filter(|e| e.key().as_str() != keep)
            .min_by_key(|e| e.last_event_at)
            .map(|e| e.key().to_string());
        match oldest.and_then(|id| self.runs.remove(id.as_str())) {
            Some((_, run)) => {
                self.release(&run);
                true
            }
            None => false,
        }
    }

    fn remove_ended_older_than(&self, max_age: Duration) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        self.runs.retain(|_, run| {
            let old = run.is_ended()
                && run
                    .ended_at
                    .is_some_and(|at| now.duration_since(at) >= max_age);
            removed += usize::from(old);
            if old {
                self.release(run);
            }
            !old
        });
        if removed > 0 {
            lock(&self.ended).retain(|(id, at)| self.ended_entry_is_current(id, *at));
        }
        removed
    }

    fn health(&self) -> HealthReport {
        let now = self.clock.now();
        let cfg = &self.config;
        let mut report = HealthReport {
            status: HealthStatus::Healthy,
            issues: Vec::new(),
            checked_at: now,
            total_runs: 0,
            active_runs: 0,
            completed_runs: 0,
            failed_runs: 0,
            cancelled_runs: 0,
            timed_out_runs: 0,
            timed_out_users: 0,
            stale_runs: 0,
            stuck_tools: 0,
            recent_silent_failures: 0,
            total_silent_failures: self.total_failures.load(Ordering::Relaxed),
            evicted_runs: self.evicted.load(Ordering::Relaxed),
            latency: LatencySummary::default(),
        };
        let mut progressing = 0usize;
        let (mut sum_us, mut max_us, mut count) = (0u64, 0u64, 0u64);
        let mut samples: Vec<u64> = Vec::new();
        let mut timed_out_users = std::collections::HashSet::new();
        for run in self.runs.iter() {
            report.total_runs += 1;
            if run.is_timeout {
                report.timed_out_runs += 1;
                timed_out_users.insert(run.session.user_id.clone());
            } else {
                match run.phase {
                    Phase::Completed => report.completed_runs += 1,
                    Phase::Failed if run.cancelled => report.cancelled_runs += 1,
                    Phase::Failed => report.failed_runs += 1,
                    Phase::NotStarted | Phase::Running => {
                        report.active_runs += 1;
                        let stale = now.duration_since(run.last_event_at) > cfg.stale_after;
                        let stuck = run.stuck_tools(now, cfg.tool_timeout);
                        report.stale_runs += usize::from(stale);
                        report.stuck_tools += stuck;
                        progressing += usize::from(!stale && stuck == 0);
                    }
                }
            }
            sum_us = sum_us.saturating_add(run.latency_sum_us);
            max_us = max_us.max(run.latency_max_us);
            count += run.latency_count;
            let mut previous: Option<Timestamp> = None;
            for at in run.events.times() {
                if samples.len() >= cfg.max_latency_samples {
                    break;
                }
                if let Some(p) = previous {
                    let gap = at.duration_since(p).as_micros();
                    samples.push(u64::try_from(gap).unwrap_or(u64::MAX));
                }
                previous = Some(at);
            }
        }
        let p95_us = if samples.is_empty() {
            0
        } else {
            let rank = (samples.len() * 95).div_ceil(100).max(1) - 1;
            *samples.select_nth_unstable(rank).1
        };
        report.latency = LatencySummary {
            avg_ms: if count == 0 {
                0.0
            } else {
                sum_us as f64 / count as f64 / 1000.0
            },
            max_ms: max_us as f64 / 1000.0,
            p95_ms: p95_us as f64 / 1000.0,
            samples: count,
        };
        let horizon = now - cfg.health_window;
        report.recent_silent_failures = lock(&self.failures)
            .iter()
            .filter(|f| f.violation.at >= horizon)
            .count();
        report.timed_out_users = timed_out_users.len();
        classify(&mut report, cfg, progressing);
        report
    }
}

fn mark_timeout(run: &mut Run, now: Timestamp) -> bool {
    if run.is_ended() {
        return false;
    }
    run.is_timeout = true;
    run.ended_at = Some(now);
    true
}

/// Sets `status` and `issues` from the figures (rules on [`HealthStatus`]).
fn classify(report: &mut HealthReport, cfg: &EventMonitorConfig, progressing: usize) {
    let mut status = HealthStatus::Healthy;
    let mut raise = |level: HealthStatus, issue: String, issues: &mut Vec<String>| {
        status = status.max(level);
        issues.push(issue);
    };
    let mut issues = Vec::new();
    let p95 = report.latency.p95_ms;
    if cfg.health_scope == crate::HealthScope::Delivery {
        classify_delivery(report, &mut raise, &mut issues, cfg);
        report.status = status;
        report.issues = issues;
        return;
    }
    let bad_ended = report.failed_runs + report.timed_out_runs;
    let ended = bad_ended + report.completed_runs;

    if report.active_runs > 0 && progressing == 0 {
        raise(
            HealthStatus::Failed,
            format!(
                "no run is making progress: all {} active runs are stale or stuck",
                report.active_runs
            ),
            &mut issues,
        );
    }
    if ended >= 4 && bad_ended == ended {
        raise(
            HealthStatus::Failed,
            format!("all {ended} ended runs failed or timed out"),
            &mut issues,
        );
    }
    if report.stuck_tools > 0 {
        raise(
            HealthStatus::Critical,
            format!(
                "{} tool call(s) open longer than {:?}",
                report.stuck_tools, cfg.tool_timeout
            ),
            &mut issues,
        );
    }
    if p95 > ms(cfg.latency_critical) {
        raise(
            HealthStatus::Critical,
            format!(
                "p95 inter-event latency {p95:.1} ms is over {:?}",
                cfg.latency_critical
            ),
            &mut issues,
        );
    } else if p95 > ms(cfg.latency_warning) {
        raise(
            HealthStatus::Warning,
            format!(
                "p95 inter-event latency {p95:.1} ms is over {:?}",
                cfg.latency_warning
            ),
            &mut issues,
        );
    }
    raise_violations(report, &mut raise, &mut issues, cfg);
    if bad_ended > 0 {
        raise(
            share_level(bad_ended, ended),
            format!(
                "{} run(s) failed and {} timed out of {ended} ended",
                report.failed_runs, report.timed_out_runs
            ),
            &mut issues,
        );
    }
    if report.stale_runs > 0 {
        raise(
            HealthStatus::Warning,
            format!(
                "{} run(s) with no event for {:?}",
                report.stale_runs, cfg.stale_after
            ),
            &mut issues,
        );
    }
    report.status = status;
    report.issues = issues;
}

/// `bad` runs of `ended`: critical when at least a quarter, else a warning.
fn share_level(bad: usize, ended: usize) -> HealthStatus {
    if bad * 4 >= ended {
        HealthStatus::Critical
    } else {
        HealthStatus::Warning
    }
}

/// Recent order violations: a warning; critical from
/// `critical_violation_count` in the health window.
fn raise_violations(
    report: &HealthReport,
    raise: &mut impl FnMut(HealthStatus, String, &mut Vec<String>),
    issues: &mut Vec<String>,
    cfg: &EventMonitorConfig,
) {
    let recent = report.recent_silent_failures;
    if recent == 0 {
        return;
    }
    let level = if recent >= cfg.critical_violation_count {
        HealthStatus::Critical
    } else {
        HealthStatus::Warning
    };
    raise(
        level,
        format!(
            "{recent} event order violation(s) in the last {:?}",
            cfg.health_window
        ),
        issues,
    );
}

/// [`HealthScope::Delivery`](crate::HealthScope::Delivery): order
/// violations (a warning; critical from `critical_violation_count` in the
/// window) and runs past `run_timeout` (a warning; critical when at least a
/// quarter of the ended runs timed out).
fn classify_delivery(
    report: &HealthReport,
    raise: &mut impl FnMut(HealthStatus, String, &mut Vec<String>),
    issues: &mut Vec<String>,
    cfg: &EventMonitorConfig,
) {
    raise_violations(report, raise, issues, cfg);
    let timed_out = report.timed_out_runs;
    let ended = timed_out + report.completed_runs + report.failed_runs + report.cancelled_runs;
    // A share of many runs of many users: what one client does (however
    // slow its runs) never makes the gateway look unhealthy.
    if timed_out > 0
        && ended >= cfg.health_min_runs
        && report.timed_out_users >= cfg.health_min_users
        && timed_out * 20 >= ended
    {
        raise(
            share_level(timed_out, ended),
            format!(
                "{timed_out} run(s) of {} users still running after {:?} (timed out), of {ended} ended",
                report.timed_out_users, cfg.run_timeout
            ),
            issues,
        );
    }
}

/// The background sweeper's handle: stops it when dropped or stopped.
pub type SweeperHandle = BackgroundTask;
