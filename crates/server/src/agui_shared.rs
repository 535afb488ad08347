//! AG-UI runs across gateways sharing a store: the gateway that runs a run
//! (its owner) copies its log into the broker ([`mirror`]); any other
//! gateway reads it from there ([`RunSource::Remote`]), woken by the
//! broker's wake-ups and polling as a fallback, and asks the owner to
//! cancel it. A reader never waits on a run whose owner has stopped: past
//! the owner lease (`AgentsConfig::run_owner_lease`) without a write from
//! it, a reader ends the run for all with `RUN_ERROR {code:
//! "gateway_lost"}`. A gateway on its own reads
//! only its own logs ([`RunSource::Local`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::agui::{Read, ReadError, RunLog};
use crate::broker::{RunAppended, RunRead, RunWakeup, RunWrite};
use crate::state::AppState;

/// How often an owner renews a run in flight in the store (and learns of
/// a cancel asked elsewhere, and of readers elsewhere), at most: a sixth
/// of the owner lease, so a few renewals can fail within one.
pub(crate) fn owner_renew(lease: Duration) -> Duration {
    (lease / 6).min(Duration::from_secs(5))
}
/// How often a reader of another gateway's run reads again with no
/// wake-up (the wake-ups are a hint: at most once).
const REMOTE_POLL: Duration = Duration::from_secs(2);
/// How long an owner, or a reader, waits before trying a store that did
/// not answer again.
pub(crate) const STORE_RETRY: Duration = Duration::from_secs(1);
/// How long a reader of another gateway's run keeps reading a store that
/// does not answer before it gives up (and tells its client).
const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// At most this many events per write or read of the store.
const BATCH_EVENTS: usize = 256;
/// At most about this many bytes per write to the store.
const BATCH_BYTES: usize = 256 * 1024;

/// The event that ends a run whose gateway stopped.
const GATEWAY_LOST: &str = r#"{"type":"RUN_ERROR","message":"the gateway running this run stopped (or lost its store) before the run ended","code":"gateway_lost"}"#;

/// Why a run's events cannot be read.
#[derive(Debug)]
pub(crate) enum SourceError {
    /// Some of the events asked for are no longer held.
    Gone(ReadError),
    /// No such run of the user's (anymore).
    NotFound,
    /// The store holding another gateway's run does not answer.
    Unavailable(wsc_core::StoreError),
}

/// Where a reader reads a run: this gateway's log of it, or the store's
/// copy of another gateway's.
pub(crate) enum RunSource {
    /// This gateway runs (or ran) it. The follower counts as its reader.
    Local {
        log: Arc<RunLog>,
        changes: watch::Receiver<(u64, bool)>,
        _follower: crate::agui::Follower,
    },
    /// Another gateway runs it; reads go to the store (and count there as
    /// a reader, for the owner's orphan timeout).
    Remote {
        state: Arc<AppState>,
        user: String,
        run_id: String,
        wakeups: watch::Receiver<u64>,
    },
}

impl RunSource {
    /// A reader of this gateway's `log`.
    pub(crate) fn local(state: &AppState, log: Arc<RunLog>) -> Self {
        RunSource::Local {
            changes: log.changes(),
            _follower: log.follow(state.clock.clone()),
            log,
        }
    }

    /// A reader of `user`'s run `run_id` held by another gateway.
    pub(crate) fn remote(state: &Arc<AppState>, user: &str, run_id: &str) -> Self {
        RunSource::Remote {
            wakeups: state.ag_ui_runs.wakeups().watch(user, run_id),
            state: state.clone(),
            user: user.to_owned(),
            run_id: run_id.to_owned(),
        }
    }

    /// The user's run `run_id` wherever a gateway may hold it: this
    /// gateway's log, else (gateways sharing a store) the store's copy —
    /// whose first read says [`SourceError::NotFound`] if no gateway holds
    /// it. `None` on a gateway on its own that does not hold it.
    pub(crate) fn find(state: &Arc<AppState>, user: &str, run_id: &str) -> Option<Self> {
        if let Some(log) = state.ag_ui_runs.get(user, run_id) {
            return Some(RunSource::local(state, log));
        }
        state
            .shared
            .spans_gateways()
            .then(|| RunSource::remote(state, user, run_id))
    }

    /// The run's id (`runId`).
    pub(crate) fn run_id(&self) -> &str {
        match self {
            RunSource::Local { log, .. } => &log.run_id,
            RunSource::Remote { run_id, .. } => run_id,
        }
    }

    /// The events after number `after` (a batch), and whether the run has
    /// ended with the last of them.
    ///
    /// # Errors
    /// See [`SourceError`].
    pub(crate) async fn read_after(&mut self, after: u64) -> Result<Read, SourceError> {
        match self {
            RunSource::Local { log, .. } => log.read_after(after).map_err(SourceError::Gone),
            RunSource::Remote {
                state,
                user,
                run_id,
                ..
            } => {
                let broker = state.shared.broker();
                let read = broker
                    .read_run(user, run_id, after, BATCH_EVENTS)
                    .await
                    .map_err(SourceError::Unavailable)?
                    .ok_or(SourceError::NotFound)?;
                let read = match read {
                    // The owner stopped: end the run for every reader.
                    RunRead {
                        ended: false,
                        owner_silent_for,
                        ..
                    } if owner_silent_for >= state.config.agents.run_owner_lease => {
                        let retention = state.config.agents.run_retention;
                        let lease = state.config.agents.run_owner_lease;
                        broker
                            .end_abandoned_run(user, run_id, lease, GATEWAY_LOST, retention)
                            .await
                            .map_err(SourceError::Unavailable)?;
                        broker
                            .read_run(user, run_id, after, BATCH_EVENTS)
                            .await
                            .map_err(SourceError::Unavailable)?
                            .ok_or(SourceError::NotFound)?
                    }
                    read => read,
                };
                if after + 1 < read.first {
                    return Err(SourceError::Gone(ReadError::Gone {
                        after,
                        oldest: read.first,
                    }));
                }
                let got = read.events.len() as u64;
                Ok(Read {
                    events: (after + 1..)
                        .zip(read.events.into_iter().map(Arc::from))
                        .collect(),
                    ended: read.ended && after + got >= read.last,
                })
            }
        }
    }

    /// [`read_after`](Self::read_after), reading again every
    /// [`STORE_RETRY`] while the store does not answer, for at most
    /// [`STORE_PATIENCE`] (what a follower does: a failover is waited out).
    ///
    /// # Errors
    /// As `read_after`; `Unavailable` once the patience is spent.
    pub(crate) async fn read_patiently(&mut self, after: u64) -> Result<Read, SourceError> {
        let mut failing_since = None;
        loop {
            match self.read_after(after).await {
                Err(SourceError::Unavailable(e)) => {
                    let RunSource::Remote { state, .. } = &*self else {
                        return Err(SourceError::Unavailable(e));
                    };
                    let (clock, now) = (state.clock.clone(), state.clock.now());
                    let since = *failing_since.get_or_insert(now);
                    if now.duration_since(since) >= STORE_PATIENCE {
                        return Err(SourceError::Unavailable(e));
                    }
                    tracing::warn!(error = %e, "reading an AG-UI run from the store failed: retrying");
                    clock.sleep(STORE_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// Waits until the run may have events after `last`, or has ended (a
    /// reader of another gateway's run also wakes every [`REMOTE_POLL`]).
    pub(crate) async fn wait(&mut self, last: u64) {
        match self {
            RunSource::Local { changes, .. } => {
                let _ = changes.wait_for(|(n, ended)| *n > last || *ended).await;
            }
            RunSource::Remote { wakeups, .. } => {
                let _ = tokio::time::timeout(REMOTE_POLL, wakeups.changed()).await;
            }
        }
    }
}

/// Copies this gateway's `log` into the broker's store while it runs and
/// until its end is written: its events in order (and what the log
/// dropped past its byte budget), renewed every [`owner_renew`]. A cancel
/// asked on another gateway stops the run; reads on other gateways count
/// for its orphan timeout. A store that does not answer is retried (the
/// run and its readers here go on); a run its readers ended as abandoned
/// (this gateway could not write for the owner lease) is stopped here too.
pub(crate) fn mirror(state: &Arc<AppState>, log: Arc<RunLog>) {
    let state = state.clone();
    tokio::spawn(async move {
        let broker = state.shared.broker();
        let retention = state.config.agents.run_retention;
        let lease = state.config.agents.run_owner_lease;
        let in_flight_ttl = retention + 2 * lease;
        let mut changes = log.changes();
        let mut written = 0u64;
        loop {
            let first = log.first_held();
            let (batch, ended) = match log.read_after(written) {
                Ok(read) => (read.events, read.ended),
                // The log dropped events not yet written: write from its
                // oldest (readers elsewhere are told those are gone).
                Err(ReadError::Gone { oldest, .. }) => {
                    written = oldest - 1;
                    continue;
                }
            };
            let mut events: Vec<(u64, &str)> = Vec::new();
            let mut bytes = 0;
            for (number, event) in &batch {
                if events.len() == BATCH_EVENTS || (bytes > 0 && bytes + event.len() > BATCH_BYTES)
                {
                    break;
                }
                bytes += event.len();
                events.push((*number, event));
            }
            let all = events.len() == batch.len();
            let ends = ended && all;
            let ttl = if ends { retention } else { in_flight_ttl };
            match broker
                .append_run(
                    &log.user,
                    &log.run_id,
                    &log.internal_id,
                    &RunWrite {
                        first,
                        events: &events,
                        ended: ends,
                        ttl,
                    },
                )
                .await
            {
                Ok(RunAppended::Written { cancel, unread_for }) => {
                    written = events.last().map_or(written, |(n, _)| *n);
                    if ends {
                        return;
                    }
                    if cancel && state.runs.stop(&log.user, &log.internal_id) {
                        tracing::info!(run_id = %crate::logging::log_safe(&log.run_id), "an AG-UI run cancelled from another gateway");
                    }
                    log.read_elsewhere(state.clock.now(), unread_for);
                }
                Ok(RunAppended::Behind { last }) => {
                    // The store lost writes (a failover): again from what
                    // it holds.
                    tracing::warn!(run_id = %crate::logging::log_safe(&log.run_id), last, written, "the store lost events of an AG-UI run: writing them again");
                    written = last;
                    continue;
                }
                Ok(RunAppended::Lost) => {
                    // Its readers elsewhere ended it (this gateway did not
                    // write for the lease), or it expired: it stops here too.
                    tracing::warn!(run_id = %crate::logging::log_safe(&log.run_id), "an AG-UI run was ended elsewhere (this gateway did not write it in time): stopping it");
                    state.runs.stop(&log.user, &log.internal_id);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "copying an AG-UI run to the store failed: retrying");
                    let gone = log
                        .ended_at()
                        .is_some_and(|at| state.clock.now().duration_since(at) >= retention);
                    if gone {
                        return;
                    }
                    state.clock.sleep(STORE_RETRY).await;
                    continue;
                }
            }
            if !all {
                continue;
            }
            // Caught up: until the next event, or the next renewal.
            let _ = tokio::time::timeout(
                owner_renew(lease),
                changes.wait_for(|(n, ended)| *n > written || *ended),
            )
            .await;
        }
    });
}

/// What the store says of a run when a wake-up names it: readers here
/// read again; a cancel asked for a run this gateway runs stops it.
pub(crate) fn on_wakeup(state: &AppState, kind: RunWakeup, user: &str, run_id: &str) {
    match kind {
        RunWakeup::Events => state.ag_ui_runs.wakeups().wake(user, run_id),
        RunWakeup::Cancel => {
            if let Some(log) = state.ag_ui_runs.get(user, run_id)
                && log.ended_at().is_none()
            {
                state.runs.stop(user, &log.internal_id);
            }
        }
    }
}
