//! [`BackgroundTask`]: a periodic tokio task driven by an injected clock.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::SharedClock;

/// A background task that runs a step every `interval` of a [`SharedClock`]
/// until it is stopped or dropped, or until the step returns `false` (e.g.
/// because what it works on was dropped). With a `ManualClock` the sleeps
/// are instant, so tests see many steps without waiting.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use wsc_core::{BackgroundTask, ManualClock};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let clock = ManualClock::default();
/// let steps = Arc::new(AtomicU32::new(0));
/// let counter = steps.clone();
/// let task = BackgroundTask::spawn_periodic(clock.shared(), Duration::from_secs(5), move || {
///     counter.fetch_add(1, Ordering::Relaxed) < 2 // stop after the third step
/// });
/// task.join().await;
/// assert_eq!(steps.load(Ordering::Relaxed), 3);
/// assert_eq!(clock.sleeps(), vec![Duration::from_secs(5); 3]);
/// # });
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the task"]
pub struct BackgroundTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BackgroundTask {
    /// Spawns the task on the current tokio runtime (must be called within
    /// one).
    pub fn spawn_periodic(
        clock: SharedClock,
        interval: Duration,
        mut step: impl FnMut() -> bool + Send + 'static,
    ) -> Self {
        Self::spawn_periodic_async(clock, interval, move || std::future::ready(step()))
    }

    /// Like [`spawn_periodic`](Self::spawn_periodic), with a step that
    /// awaits (a store call, a health check). Stopping waits for the
    /// current step to finish; the next sleep is not started.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use wsc_core::{BackgroundTask, ManualClock};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let clock = ManualClock::default();
    /// let steps = Arc::new(AtomicU32::new(0));
    /// let counter = steps.clone();
    /// let task = BackgroundTask::spawn_periodic_async(clock.shared(), Duration::from_secs(1), move || {
    ///     let counter = counter.clone();
    ///     async move {
    ///         tokio::task::yield_now().await;
    ///         counter.fetch_add(1, Ordering::Relaxed) < 1 // stop after the second step
    ///     }
    /// });
    /// task.join().await;
    /// assert_eq!(steps.load(Ordering::Relaxed), 2);
    /// # });
    /// ```
    pub fn spawn_periodic_async<F, Fut>(clock: SharedClock, interval: Duration, mut step: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = clock.sleep(interval) => {}
                }
                if !step().await {
                    break;
                }
                // With a simulated clock the sleep is instant; stay fair.
                tokio::task::yield_now().await;
            }
        });
        BackgroundTask {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the task and waits for its current step to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join_inner().await;
    }

    /// Waits until the task ends by itself (its step returned `false`).
    pub async fn join(mut self) {
        self.join_inner().await;
    }

    async fn join_inner(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
