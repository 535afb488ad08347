//! The gateway's background upkeep, each part a [`BackgroundTask`] on the
//! gateway's clock: the one-second sampler (dashboard series and the cached
//! health), expiry of detached sessions (and of the runs still streaming
//! into them), the event monitor's sweeper, the
//! performance monitor's alert evaluator, the rate limiter's cleanup, and
//! with Redis its health check, outbox flushing, lease renewal, the
//! announcement listener and the listener of AG-UI runs' wake-ups. The tasks hold a weak reference to the state:
//! they end when the gateway is gone, or when the `Upkeep` is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use wsc_core::BackgroundTask;

use crate::state::{AppState, Upkeep};

/// How often the sampler runs (dashboard series, cached health).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often detached sessions past their TTL are removed.
const EXPIRE_SESSIONS_EVERY: Duration = Duration::from_secs(10);
/// How often Redis is pinged and the outbox flushed.
const REDIS_CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often this node's lease in Redis is renewed (and the sessions
/// resumed here whose runs go on elsewhere are checked).
const RENEW_LEASES_EVERY: Duration = Duration::from_secs(10);
/// How often the performance monitor evaluates alerts.
const EVALUATE_ALERTS_EVERY: Duration = Duration::from_secs(5);
/// How often the rate limiter drops inactive users.
const LIMITER_CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// A periodic async step on the state, while it exists.
fn every<F, Fut>(state: &Arc<AppState>, interval: Duration, step: F) -> BackgroundTask
where
    F: Fn(Arc<AppState>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let weak: Weak<AppState> = Arc::downgrade(state);
    let step = Arc::new(step);
    BackgroundTask::spawn_periodic_async(state.clock.clone(), interval, move || {
        let weak = weak.clone();
        let step = step.clone();
        async move {
            match weak.upgrade() {
                Some(state) => {
                    step(state).await;
                    true
                }
                None => false,
            }
        }
    })
}

/// Starts the upkeep (inside a tokio runtime).
pub(crate) fn start(state: &Arc<AppState>) -> Upkeep {
    let mut tasks = vec![
        every(state, SAMPLE_EVERY, |s| async move {
            let health = s.refresh_health().await;
            s.telemetry.sample(
                s.clock.now().as_unix_secs_f64(),
                s.stats(),
                health.system.total_active_connections as u64,
                health.sessions,
            );
        }),
        every(state, EXPIRE_SESSIONS_EVERY, |s| async move {
            s.shared.cleanup_expired().await;
            s.ag_ui_runs.expire(s.clock.now());
            cancel_unread_runs(&s);
            cancel_orphaned_runs(&s).await;
        }),
        state.monitor.spawn_sweeper(),
        state.perf.spawn_evaluator(EVALUATE_ALERTS_EVERY),
        state.limiter.spawn_cleanup(LIMITER_CLEANUP_EVERY),
    ];
    let mut listener = None;
    let mut run_listener = None;
    // A gateway on its own has no store that can fail and no counts to
    // renew.
    if state.shared.spans_gateways() {
        tasks.push(every(state, REDIS_CHECK_EVERY, |s| async move {
            s.shared.check().await;
        }));
        tasks.push(every(state, RENEW_LEASES_EVERY, |s| async move {
            s.shared.renew().await;
            s.shared.tell_watched(s.clock.now()).await;
        }));
        listener = state.shared.deliver();
        let weak = Arc::downgrade(state);
        run_listener = state
            .shared
            .broker()
            .watch_runs(Arc::new(move |kind, user, run_id| {
                if let Some(state) = weak.upgrade() {
                    crate::agui_shared::on_wakeup(&state, kind, user, run_id);
                }
            }));
    }
    Upkeep {
        tasks,
        listener,
        run_listener,
    }
}

/// Cancels the runs whose session is gone (expired here, or on another
/// gateway under Redis): no one can receive the rest, and their backend
/// request and the user's run count are released. A store that does not
/// answer cancels nothing.
async fn cancel_orphaned_runs(s: &AppState) {
    for (session_id, registry) in s.runs.sessions() {
        if let Ok(None) = registry.session(&session_id).await {
            let cancelled = s.runs.cancel_session(&session_id);
            tracing::info!(%session_id, cancelled, "runs of an expired session cancelled");
        }
    }
}

/// Cancels the AG-UI runs no one has read for the orphan timeout.
fn cancel_unread_runs(s: &AppState) {
    let timeout = s.config.agents.orphan_run_timeout;
    if timeout.is_zero() {
        return;
    }
    for log in s.ag_ui_runs.orphans(s.clock.now(), timeout) {
        if s.runs.cancel_orphan(&log.internal_id) {
            tracing::info!(run_id = %crate::logging::log_safe(&log.run_id), "an AG-UI run no one read was cancelled");
        }
    }
}
