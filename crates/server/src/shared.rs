//! What a gateway shares with the others, and its policy for when the
//! store behind it does not answer — one wrapper ([`Shared`]) around either
//! broker (Redis, or memory for a gateway on its own).
//!
//! While the store is unreachable, fail-open starts new sessions in this
//! gateway's memory (their ids say which gateway holds them, so another
//! gateway sends their resumes here), queues agent events in the outbox
//! and publishes them, in order, when it is back; fail-closed refuses new
//! connections instead. A resume of a session the store holds always waits
//! for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use wsc_core::{MessageType, StoreError, Timestamp, WebSocketMessage, WireFrame};
use wsc_reconnection::{ResumeRequest, SessionError, SessionRegistry, SessionStart};

use crate::broker::Broker;
use crate::config::RedisFailurePolicy;
use crate::counters::Counters;
use crate::outbox::Outbox;

/// How the ids of sessions held in one gateway's memory start (see
/// [`Shared::session_home`]).
pub(crate) const LOCAL_SESSION_MARK: &str = "local-";

/// Where a session lives, judged from its id alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionHome {
    /// In the shared store (or, for a gateway on its own, its memory).
    Shared,
    /// In this gateway's memory (started while the store was unreachable).
    Here,
    /// In another gateway's memory.
    Elsewhere,
}

/// Why a connection is not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its resume names a session another gateway holds in memory.
    Elsewhere(String),
    /// The store does not answer and the policy (or a resume of a session
    /// the store holds) says wait.
    Unavailable,
    /// The user holds `cap` connections across gateways already.
    AtCap(u32),
}

/// What became of a published frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// Appended (numbered, buffered, delivered to the attached reader).
    Appended,
    /// Waiting in the outbox until the store answers again.
    Queued,
    /// Refused: the session's outbox is full (the store has not answered
    /// for that many events); the run must end, told why.
    Overflow,
    /// The session is gone: no one can receive it.
    SessionGone,
}

/// The broker, the session registries, and what the gateway does while
/// the broker's store does not answer.
pub(crate) struct Shared {
    broker: Arc<dyn Broker>,
    failure: RedisFailurePolicy,
    /// The sessions every gateway on the store shares.
    sessions: Arc<SessionRegistry>,
    /// Sessions started while the store was unreachable (the same registry
    /// as `sessions` for a gateway on its own).
    local: Arc<SessionRegistry>,
    /// The id prefix of `local`'s sessions (empty on its own).
    local_prefix: String,
    outbox: Outbox,
    counters: Arc<Counters>,
    /// Sessions resumed here while runs of other gateways go on: checked
    /// until those end, so a run whose gateway dies is told.
    watched: DashMap<String, Arc<SessionRegistry>>,
    /// Whether a catch-up of the attached sessions is under way (one at a
    /// time, beside the health checks).
    catching_up: AtomicBool,
    /// Whether the outbox is being published (one flush at a time).
    flushing: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("spans_gateways", &self.spans_gateways())
            .field("failure", &self.failure)
            .field("store_up", &self.store_up())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// `local` holds the sessions started while `sessions`' store is
    /// unreachable, their ids starting with `local_prefix`; for a gateway
    /// on its own, pass the same registry twice and an empty prefix.
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        failure: RedisFailurePolicy,
        sessions: Arc<SessionRegistry>,
        local: Arc<SessionRegistry>,
        local_prefix: String,
        counters: Arc<Counters>,
    ) -> Self {
        Shared {
            broker,
            failure,
            sessions,
            local,
            local_prefix,
            outbox: Outbox::default(),
            counters,
            watched: DashMap::new(),
            catching_up: AtomicBool::new(false),
            flushing: AtomicBool::new(false),
        }
    }

    /// Whether other gateways share the store.
    pub(crate) fn spans_gateways(&self) -> bool {
        self.broker.spans_gateways()
    }

    /// The broker itself (what the policies here do not wrap: AG-UI runs'
    /// logs).
    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Whether the gateway refuses what needs the store while it does not
    /// answer.
    pub(crate) fn fail_closed(&self) -> bool {
        self.failure == RedisFailurePolicy::FailClosed
    }

    /// Whether the store answered last.
    pub(crate) fn store_up(&self) -> bool {
        self.counters.store_is_up()
    }

    /// A store call failed with `e`: counted. A reply that timed out does
    /// not make the store unreachable on its own — a busy store, or a busy
    /// gateway, answers late — so the next health check (within 500 ms)
    /// decides: unreachable takes more than one slow reply. Any other
    /// failure marks the store unreachable until a health check answers.
    pub(crate) fn store_failed(&self, e: &StoreError) {
        if e.timed_out {
            self.counters.store_slow();
        } else {
            self.store_down();
        }
    }

    /// [`store_failed`](Self::store_failed) for a session store's error
    /// (one that is not the store's own counts as unreachable).
    pub(crate) fn session_store_failed(&self, e: &SessionError) {
        match e {
            SessionError::Store(e) => self.store_failed(e),
            _ => self.store_down(),
        }
    }

    /// The store is unreachable (logged once) until a health check answers.
    fn store_down(&self) {
        if self.counters.store_failed() {
            tracing::warn!(
                "shared store (redis) unreachable: {:?} until it is back",
                self.failure
            );
        }
    }

    /// Where `session_id` lives: ids of sessions kept in one gateway's
    /// memory carry that gateway's local prefix.
    pub(crate) fn session_home(&self, session_id: &str) -> SessionHome {
        if !session_id.starts_with(LOCAL_SESSION_MARK) || self.local_prefix.is_empty() {
            SessionHome::Shared
        } else if session_id.starts_with(&self.local_prefix) {
            SessionHome::Here
        } else {
            SessionHome::Elsewhere
        }
    }

    /// Admits `connection` of `user` (resuming `resume`): counted in the
    /// user's connections across gateways (at most `cap`), unless the
    /// store's state says otherwise. With the store down, fail-open still
    /// admits new sessions and this gateway's own; a resume of a session
    /// the store holds waits for it.
    pub(crate) async fn admit(
        &self,
        user: &str,
        connection: &str,
        cap: u32,
        resume: Option<&ResumeRequest>,
    ) -> Result<(), Refusal> {
        let home = resume.map(|r| (r, self.session_home(&r.session_id)));
        if let Some((r, SessionHome::Elsewhere)) = home {
            // Held in another gateway's memory: sent on (the client's next
            // attempt goes to another gateway) rather than refused and lost.
            return Err(Refusal::Elsewhere(r.session_id.clone()));
        }
        let must_wait = self.fail_closed() || home.is_some_and(|(_, h)| h != SessionHome::Here);
        if !self.store_up() && must_wait {
            return Err(Refusal::Unavailable);
        }
        match self.broker.acquire(user, connection, cap).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::AtCap(cap)),
            Err(e) => {
                self.store_failed(&e);
                tracing::warn!(error = %e, "connection count unavailable");
                if must_wait {
                    Err(Refusal::Unavailable)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Starts or resumes `user`'s session on the registry that holds it:
    /// this gateway's memory for sessions started while the store was
    /// unreachable, else the shared one. With the store unreachable and
    /// fail-open, a new session starts in memory (a resume waits: the
    /// handshake was refused before, and a failure here closes with 1013
    /// so the client retries).
    pub(crate) async fn start_session(
        &self,
        user: &str,
        resume: Option<&ResumeRequest>,
    ) -> (Arc<SessionRegistry>, Result<SessionStart, SessionError>) {
        if let Some(request) = resume
            && self.spans_gateways()
            && self.session_home(&request.session_id) == SessionHome::Here
            && matches!(self.local.session(&request.session_id).await, Ok(Some(_)))
        {
            let started = self.local.start(user, resume).await;
            return (self.local.clone(), started);
        }
        match self.sessions.start(user, resume).await {
            Err(SessionError::Store(e)) => {
                self.store_failed(&e);
                if resume.is_none() && !self.fail_closed() {
                    tracing::warn!(error = %e, "session store unreachable: starting a session in this gateway's memory");
                    Counters::bump(&self.counters.local_sessions);
                    let started = self.local.start(user, None).await;
                    return (self.local.clone(), started);
                }
                (self.sessions.clone(), Err(SessionError::Store(e)))
            }
            started => (self.sessions.clone(), started),
        }
    }

    /// Publishes `frame` into `session` of `registry`, or queues it in the
    /// outbox while the store does not answer (behind any frame of the
    /// session already waiting: never reordered).
    pub(crate) async fn publish(
        &self,
        registry: &SessionRegistry,
        session: &str,
        frame: WireFrame,
        message_id: String,
    ) -> Published {
        if self.outbox.holds(session) {
            return self.queue(session, frame, message_id);
        }
        match registry
            .publish_frame(session, &frame, Some(&message_id))
            .await
        {
            Ok(_) => Published::Appended,
            Err(SessionError::UnknownSession(_)) => Published::SessionGone,
            Err(e) => {
                tracing::warn!(session_id = %session, error = %e, "publishing failed: event queued until the store is back");
                self.session_store_failed(&e);
                self.queue(session, frame, message_id)
            }
        }
    }

    fn queue(&self, session: &str, frame: WireFrame, message_id: String) -> Published {
        if self.outbox.push(session, frame, message_id) {
            Published::Queued
        } else {
            Published::Overflow
        }
    }

    /// Events waiting in the outbox, and those dropped from it (session
    /// gone, or a queue full).
    pub(crate) fn outbox_counts(&self) -> (u64, u64) {
        (
            self.outbox.len(),
            self.outbox.dropped.load(Ordering::Relaxed),
        )
    }

    /// The health check: asks the store; when it is back, catches every
    /// attached session up and publishes what the outbox holds — each in a
    /// task of its own, one at a time, so neither holds up the next health
    /// check: a catch-up of thousands of sessions while a shard is still
    /// failing over takes a store timeout per session, and the outbox must
    /// be published as soon as the store answers (the runs waiting in it
    /// go on only then).
    pub(crate) async fn check(self: &Arc<Self>) {
        match self.broker.ping().await {
            Ok(()) => {
                if self.counters.store_answered() {
                    tracing::info!("shared store (redis) reachable again");
                    self.spawn_once(
                        |s| &s.catching_up,
                        |shared| async move {
                            if let Err(e) = shared.sessions.catch_up_all().await {
                                // Caught up again when the store is next back.
                                shared.session_store_failed(&e);
                            }
                        },
                    );
                }
            }
            // The health check decides: a PING unanswered is unreachable.
            Err(_) => self.store_down(),
        }
        if self.store_up() && self.outbox.len() > 0 {
            self.spawn_once(
                |s| &s.flushing,
                |shared| async move {
                    let published = shared.outbox.flush(&shared.sessions).await;
                    if published > 0 {
                        tracing::info!(published, "outbox events published");
                    }
                },
            );
        }
    }

    /// Runs `work` in a task unless the one the flag `running` picks
    /// still runs.
    fn spawn_once<F, Fut>(self: &Arc<Self>, running: fn(&Shared) -> &AtomicBool, work: F)
    where
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if running(self).swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.clone();
        let job = work(self.clone());
        tokio::spawn(async move {
            job.await;
            running(&shared).store(false, Ordering::Release);
        });
    }

    /// Drops the expired sessions of both registries.
    pub(crate) async fn cleanup_expired(&self) {
        let _ = self.sessions.cleanup_expired().await;
        if !Arc::ptr_eq(&self.sessions, &self.local) {
            let _ = self.local.cleanup_expired().await;
        }
    }

    /// Records `connection` of `user` as open here: released from the
    /// broker's counts when its [`Slot`] is dropped (nothing to release on
    /// a gateway on its own).
    pub(crate) fn hold(self: &Arc<Self>, user: &str, connection: &str) -> Slot {
        let held = self
            .spans_gateways()
            .then(|| (user.to_owned(), connection.to_owned()));
        Slot {
            shared: self.clone(),
            held,
        }
    }

    /// Renews this gateway's lease on its connections in the broker's
    /// counts.
    pub(crate) async fn renew(&self) {
        if !self.store_up() {
            return;
        }
        if let Err(e) = self.broker.refresh().await {
            self.store_failed(&e);
        }
    }

    /// Tells `session`'s client, with `agent_error {code: "gateway_lost"}`,
    /// of each of its runs whose gateway died before it ended, and keeps
    /// the session watched (see [`Shared::tell_watched`]) while runs of
    /// other gateways go on. The message id (`{run}-gateway-lost`) makes
    /// the frame land once in the session, whichever gateway tells it.
    pub(crate) async fn tell_lost_runs(
        &self,
        registry: &Arc<SessionRegistry>,
        session: &str,
        now: Timestamp,
    ) {
        let found = match self.broker.lost_runs(session).await {
            Ok(found) => found,
            Err(e) => {
                // Asked again at the next check.
                self.store_failed(&e);
                self.watched.insert(session.to_owned(), registry.clone());
                return;
            }
        };
        let mut gone = false;
        for run in &found.lost {
            let message = WebSocketMessage::new(
                MessageType::AgentError,
                serde_json::json!({
                    "run_id": run,
                    "code": "gateway_lost",
                    "message": "the gateway running this run stopped before it ended; start it again",
                }),
            )
            .with_timestamp(now);
            let id = format!("{run}-gateway-lost");
            let frame = WireFrame::encode(&message.with_message_id(id.clone()));
            tracing::info!(session_id = %session, run_id = %run, "run lost with its gateway: told");
            Counters::bump(&self.counters.runs_lost_with_gateway);
            if matches!(
                self.publish(registry, session, frame, id).await,
                Published::SessionGone
            ) {
                gone = true;
            }
        }
        if found.others_running && !gone {
            self.watched.insert(session.to_owned(), registry.clone());
        } else {
            self.watched.remove(session);
        }
    }

    /// Checks the watched sessions again (see [`Shared::tell_lost_runs`]).
    pub(crate) async fn tell_watched(&self, now: Timestamp) {
        if !self.store_up() {
            return;
        }
        let watched: Vec<(String, Arc<SessionRegistry>)> = self
            .watched
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (session, registry) in watched {
            if let Ok(None) = registry.session(&session).await {
                self.watched.remove(&session);
                continue;
            }
            self.tell_lost_runs(&registry, &session, now).await;
        }
    }

    /// Starts delivering frames other gateways append (see
    /// [`Broker::deliver_to`]).
    pub(crate) fn deliver(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.broker.deliver_to(self.sessions.clone())
    }

    /// Rate-limit decisions made in memory while the store did not answer.
    pub(crate) fn local_decisions(&self) -> u64 {
        self.broker.local_decisions()
    }
}

/// A connection's place in its user's count across gateways; released
/// when dropped (in the background: a failed release stops counting when
/// this gateway's lease ends, or with its user's key).
pub(crate) struct Slot {
    shared: Arc<Shared>,
    /// `(user, connection)` when the broker counts it.
    held: Option<(String, String)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((user, connection)) = self.held.take() else {
            return;
        };
        let broker = self.shared.broker.clone();
        tokio::spawn(async move {
            let _ = broker.release(&user, &connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use dashmap::DashMap;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use async_trait::async_trait;
    use wsc_core::{ManualClock, MessageType, StoreError, Timestamp, WebSocketMessage, WireFrame};
    use wsc_reconnection::{
        Appended, MemorySessionStore, ReplayGap, SessionConfig, SessionRecord, SessionStore,
    };

    use super::*;

    /// Switched off and on by the tests: every call fails while `down`.
    #[derive(Debug, Default)]
    struct Outage {
        down: AtomicBool,
        /// Calls time out, but a PING is answered (a busy store).
        slow: AtomicBool,
        /// Replays (a catch-up's reads) of this session never answer.
        replays_hang: std::sync::Mutex<Option<String>>,
    }

    impl Outage {
        fn check(&self) -> Result<(), StoreError> {
            self.ping()?;
            if self.slow.load(Ordering::Relaxed) {
                return Err(StoreError::timeout("the store did not answer in time"));
            }
            Ok(())
        }
        fn ping(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::Relaxed) {
                Err(StoreError::new("the store is down"))
            } else {
                Ok(())
            }
        }
        fn set(&self, down: bool) {
            self.down.store(down, Ordering::Relaxed);
        }
        fn set_slow(&self, slow: bool) {
            self.slow.store(slow, Ordering::Relaxed);
        }
    }

    /// The memory store behind an [`Outage`].
    #[derive(Debug)]
    struct FlakyStore {
        outage: Arc<Outage>,
        inner: MemorySessionStore,
    }

    #[async_trait]
    impl SessionStore for FlakyStore {
        async fn create(&self, record: SessionRecord) -> Result<bool, StoreError> {
            self.outage.check()?;
            self.inner.create(record).await
        }
        async fn get(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
            self.outage.check()?;
            self.inner.get(session_id).await
        }
        async fn append(
            &self,
            session_id: &str,
            frame: &WireFrame,
            message_id: Option<&str>,
            now: Timestamp,
        ) -> Result<Option<Appended>, StoreError> {
            self.outage.check()?;
            self.inner.append(session_id, frame, message_id, now).await
        }
        async fn replay_after(
            &self,
            session_id: &str,
            last_seq: u64,
        ) -> Result<Option<Result<Vec<WireFrame>, ReplayGap>>, StoreError> {
            self.outage.check()?;
            let hangs = self.outage.replays_hang.lock().unwrap().as_deref() == Some(session_id);
            if hangs {
                std::future::pending::<()>().await;
            }
            self.inner.replay_after(session_id, last_seq).await
        }
        async fn ack(&self, session_id: &str, seq: u64) -> Result<(), StoreError> {
            self.outage.check()?;
            self.inner.ack(session_id, seq).await
        }
        async fn set_detached(
            &self,
            session_id: &str,
            detached_at: Option<Timestamp>,
        ) -> Result<(), StoreError> {
            self.outage.check()?;
            self.inner.set_detached(session_id, detached_at).await
        }
        async fn remove(&self, session_id: &str) -> Result<bool, StoreError> {
            self.outage.check()?;
            self.inner.remove(session_id).await
        }
        async fn expired(&self, now: Timestamp, ttl: Duration) -> Result<Vec<String>, StoreError> {
            self.outage.check()?;
            self.inner.expired(now, ttl).await
        }
        async fn buffered_for_user(&self, user_id: &str) -> Result<Vec<WireFrame>, StoreError> {
            self.outage.check()?;
            self.inner.buffered_for_user(user_id).await
        }
        async fn session_count(&self) -> Result<usize, StoreError> {
            self.outage.check()?;
            self.inner.session_count().await
        }
        async fn sessions_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
            self.outage.check()?;
            self.inner.sessions_of_user(user_id).await
        }
        async fn holds_message(
            &self,
            session_id: &str,
            message_id: &str,
        ) -> Result<bool, StoreError> {
            self.outage.check()?;
            self.inner.holds_message(session_id, message_id).await
        }
    }

    /// A broker spanning gateways, behind the same [`Outage`]; a user
    /// holds at most `cap` connections.
    struct FlakyBroker {
        outage: Arc<Outage>,
        held: DashMap<String, Vec<String>>,
    }

    #[async_trait]
    impl Broker for FlakyBroker {
        fn spans_gateways(&self) -> bool {
            true
        }
        async fn acquire(
            &self,
            user: &str,
            connection: &str,
            cap: u32,
        ) -> Result<bool, StoreError> {
            self.outage.check()?;
            let mut held = self.held.entry(user.to_owned()).or_default();
            if held.len() >= cap as usize {
                return Ok(false);
            }
            held.push(connection.to_owned());
            Ok(true)
        }
        async fn release(&self, user: &str, connection: &str) -> Result<(), StoreError> {
            self.outage.check()?;
            if let Some(mut held) = self.held.get_mut(user) {
                held.retain(|c| c != connection);
            }
            Ok(())
        }
        async fn refresh(&self) -> Result<(), StoreError> {
            self.outage.check()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.outage.ping()
        }
        fn deliver_to(&self, _: Arc<SessionRegistry>) -> Option<Box<dyn std::any::Any + Send>> {
            None
        }
        fn local_decisions(&self) -> u64 {
            0
        }
    }

    const HERE: &str = "local-aaaaaaaa-";

    fn shared(failure: RedisFailurePolicy) -> (Arc<Shared>, Arc<Outage>) {
        let clock = ManualClock::default().shared();
        let outage = Arc::new(Outage::default());
        let store = FlakyStore {
            outage: outage.clone(),
            inner: MemorySessionStore::new(Default::default(), 1_000),
        };
        let sessions = Arc::new(SessionRegistry::with_store(
            SessionConfig::default(),
            clock.clone(),
            Arc::new(store),
        ));
        let local = Arc::new(SessionRegistry::with_clock(
            SessionConfig {
                id_prefix: HERE.into(),
                ..SessionConfig::default()
            },
            clock,
        ));
        let broker = FlakyBroker {
            outage: outage.clone(),
            held: DashMap::new(),
        };
        let shared = Shared::new(
            Arc::new(broker),
            failure,
            sessions,
            local,
            HERE.into(),
            Arc::new(Counters::default()),
        );
        (Arc::new(shared), outage)
    }

    fn resume(session_id: &str, resume_token: &str) -> ResumeRequest {
        ResumeRequest {
            session_id: session_id.into(),
            resume_token: resume_token.into(),
            last_seq: 0,
        }
    }

    fn frame(i: u64) -> WireFrame {
        WireFrame::encode(&WebSocketMessage::new(
            MessageType::AgentThinking,
            serde_json::json!({ "i": i }),
        ))
    }

    /// Issue 34: a busy store is not an unreachable one. Replies that time
    /// out are counted and do not flip the gateway to its failure policy;
    /// the health check's PING decides (unreachable takes more than one
    /// slow reply); any other failure flips it at once.
    #[tokio::test]
    async fn a_reply_that_timed_out_alone_does_not_make_the_store_unreachable() {
        let (shared, outage) = shared(RedisFailurePolicy::FailOpen);
        outage.set_slow(true);
        // Fail-open admits a new connection whose count timed out …
        assert_eq!(shared.admit("u", "c1", 5, None).await, Ok(()));
        // … and its session starts here, the shared store's start having
        // timed out: the store is still judged up.
        let (_, started) = shared.start_session("u", None).await;
        assert!(started.is_ok());
        assert!(shared.store_up(), "two timeouts, the store not judged yet");
        shared.check().await;
        assert!(
            shared.store_up(),
            "its PING answered: busy, not unreachable"
        );
        let stats = shared.counters.stats();
        assert_eq!((stats.redis_timeouts, stats.redis_errors), (2, 2));
        // A PING unanswered too: unreachable.
        outage.set(true);
        shared.check().await;
        assert!(!shared.store_up());
        outage.set(false);
        outage.set_slow(false);
        shared.check().await;
        assert!(shared.store_up());
        // A failure that is not a timeout: unreachable at once.
        outage.set(true);
        let _ = shared.admit("u", "c2", 5, None).await;
        assert!(!shared.store_up());
    }

    #[tokio::test]
    async fn while_the_store_is_down_fail_open_serves_new_sessions_here_and_resumes_of_shared_ones_wait()
     {
        let (shared, outage) = shared(RedisFailurePolicy::FailOpen);
        let (registry, started) = shared.start_session("u", None).await;
        let in_store = started.unwrap().attached;
        assert!(Arc::ptr_eq(&registry, &shared.sessions));

        outage.set(true);
        // A new connection: the count is unavailable, fail-open admits it.
        assert_eq!(shared.admit("u", "c2", 5, None).await, Ok(()));
        assert!(!shared.store_up(), "the failure is noticed");
        let (registry, started) = shared.start_session("u", None).await;
        let here = started.unwrap().attached;
        assert!(Arc::ptr_eq(&registry, &shared.local), "started in memory");
        assert!(here.session_id.starts_with(HERE));
        assert_eq!(shared.counters.local_sessions.load(Ordering::Relaxed), 1);

        // This gateway's own session resumes; the store's waits; another
        // gateway's is sent there.
        let own = resume(&here.session_id, &here.resume_token);
        assert_eq!(shared.admit("u", "c3", 5, Some(&own)).await, Ok(()));
        let (registry, started) = shared.start_session("u", Some(&own)).await;
        assert!(Arc::ptr_eq(&registry, &shared.local));
        assert!(started.unwrap().resumed);
        let stored = resume(&in_store.session_id, &in_store.resume_token);
        assert_eq!(
            shared.admit("u", "c4", 5, Some(&stored)).await,
            Err(Refusal::Unavailable)
        );
        let (_, started) = shared.start_session("u", Some(&stored)).await;
        assert!(
            matches!(started, Err(SessionError::Store(_))),
            "never a fresh session instead"
        );
        let other = resume("local-bbbbbbbb-0123", "t");
        assert_eq!(
            shared.admit("u", "c5", 5, Some(&other)).await,
            Err(Refusal::Elsewhere(other.session_id.clone()))
        );

        // Back: the store's session resumes again.
        outage.set(false);
        shared.check().await;
        assert!(shared.store_up());
        assert_eq!(shared.admit("u", "c6", 5, Some(&stored)).await, Ok(()));
    }

    #[tokio::test]
    async fn fail_closed_refuses_new_connections_and_sessions_while_the_store_is_down() {
        let (shared, outage) = shared(RedisFailurePolicy::FailClosed);
        outage.set(true);
        assert_eq!(
            shared.admit("u", "c1", 5, None).await,
            Err(Refusal::Unavailable)
        );
        let (_, started) = shared.start_session("u", None).await;
        assert!(matches!(started, Err(SessionError::Store(_))));
        assert_eq!(shared.counters.local_sessions.load(Ordering::Relaxed), 0);
        // Known down: refused without asking the broker again.
        assert_eq!(
            shared.admit("u", "c2", 5, None).await,
            Err(Refusal::Unavailable)
        );
    }

    #[tokio::test]
    async fn a_user_at_its_cap_across_gateways_is_refused_and_a_dropped_slot_frees_its_place() {
        let (shared, _) = shared(RedisFailurePolicy::FailOpen);
        assert_eq!(shared.admit("u", "c1", 1, None).await, Ok(()));
        let slot = shared.hold("u", "c1");
        assert_eq!(
            shared.admit("u", "c2", 1, None).await,
            Err(Refusal::AtCap(1))
        );
        assert_eq!(shared.admit("v", "c3", 1, None).await, Ok(()), "per user");
        drop(slot);
        // The release runs in the background.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(shared.admit("u", "c2", 1, None).await, Ok(()));
    }

    #[tokio::test]
    async fn events_published_during_an_outage_wait_in_order_and_are_published_when_it_ends() {
        let (shared, outage) = shared(RedisFailurePolicy::FailOpen);
        let (registry, started) = shared.start_session("u", None).await;
        let session = started.unwrap().attached;
        let id = session.session_id.as_str();
        let publish = |i: u64| {
            let (shared, registry) = (shared.clone(), registry.clone());
            let id = id.to_owned();
            async move {
                shared
                    .publish(&registry, &id, frame(i), format!("m{i}"))
                    .await
            }
        };
        assert_eq!(publish(0).await, Published::Appended);
        outage.set(true);
        assert_eq!(publish(1).await, Published::Queued);
        assert_eq!(publish(2).await, Published::Queued);
        outage.set(false);
        // The store answers, but earlier events still wait: this one
        // queues behind them.
        assert_eq!(publish(3).await, Published::Queued);
        assert_eq!(shared.outbox_counts(), (3, 0));
        shared.check().await;
        flushed(&shared).await;
        assert_eq!(publish(4).await, Published::Appended);

        let replay = registry
            .start("u", Some(&resume(id, &session.resume_token)))
            .await
            .unwrap()
            .replay;
        let order: Vec<(u64, u64)> = replay
            .iter()
            .map(|f| {
                let m = f.decode().unwrap();
                (m.seq.unwrap(), m.payload["i"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(order, [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]);
        assert_eq!(
            shared
                .publish(&registry, "gone", frame(9), "m9".into())
                .await,
            Published::SessionGone
        );
    }

    /// Waits (yielding) until the outbox's flush task has published what
    /// waits; false if it does not within 1 000 turns.
    async fn flushed(shared: &Arc<Shared>) -> bool {
        for _ in 0..1_000 {
            if shared.outbox_counts() == (0, 0) && !shared.flushing.load(Ordering::Acquire) {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    /// A catch-up of the attached sessions that does not end (a shard
    /// still failing over answers each read after its timeout, thousands
    /// of sessions long) holds up neither the health checks nor the
    /// outbox: the events waiting in it for other sessions are published
    /// as soon as the store answers.
    #[tokio::test(start_paused = true)]
    async fn a_catch_up_that_does_not_end_holds_up_neither_health_checks_nor_the_outbox() {
        let (shared, outage) = shared(RedisFailurePolicy::FailOpen);
        let (_, stuck) = shared.start_session("v", None).await;
        *outage.replays_hang.lock().unwrap() = Some(stuck.unwrap().attached.session_id);
        let (registry, started) = shared.start_session("u", None).await;
        let id = started.unwrap().attached.session_id;
        outage.set(true);
        let queued = shared.publish(&registry, &id, frame(1), "m1".into()).await;
        assert_eq!(queued, Published::Queued);
        shared.check().await;
        assert!(!shared.store_up());

        outage.set(false);
        // The store is back: the catch-up begins and never ends.
        tokio::time::timeout(Duration::from_secs(5), shared.check())
            .await
            .expect("the health check does not wait for the catch-up");
        assert!(shared.store_up());
        assert!(flushed(&shared).await, "the outbox is published meanwhile");
        // Later checks go on (and start no second catch-up).
        outage.set(true);
        tokio::time::timeout(Duration::from_secs(5), shared.check())
            .await
            .expect("a later health check runs");
        assert!(!shared.store_up(), "and still notices the store fail");
        assert!(shared.catching_up.load(Ordering::Acquire));
    }
}
