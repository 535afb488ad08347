//! [`SessionRegistry`]: sessions, resume, and live delivery without gaps.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use tokio::sync::Mutex;
use wsc_core::{SharedClock, SystemClock, WebSocketMessage, WireFrame};

use crate::buffer::{BufferLimits, ReplayGap};
use crate::error::SessionError;
use crate::handler::MessageBuffer;
use crate::live::{self, Detached, LiveFrames, Outlet};
use crate::store::{MemorySessionStore, SessionRecord, SessionStore};
use crate::token::{TokenSecret, new_session_id};

/// How many sessions [`SessionRegistry::catch_up_all`] catches up at once.
pub const CATCH_UP_CONCURRENCY: usize = 32;

/// Configuration of a [`SessionRegistry`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Replay buffer bounds per session.
    pub buffer: BufferLimits,
    /// How long a lost session stays resumable (default 5 min).
    pub session_ttl: Duration,
    /// Sessions held at most (default 100 000); past it new sessions are
    /// refused with [`SessionError::TooManySessions`].
    pub max_sessions: usize,
    /// Live frames queued per connection (default 256). A connection that
    /// falls this far behind, and stays there for `slow_client_grace`, is
    /// detached (its receiver ends) and stays resumable.
    pub outbound_capacity: usize,
    /// Bytes of live frames queued per connection (default 4 MiB; 0: no
    /// byte bound). Counted as the frames' serialized size; a client that
    /// falls this far behind is treated as one past `outbound_capacity`.
    /// A frame larger than the bound waits for an empty queue.
    pub outbound_bytes: usize,
    /// How long a publish waits for room in a full connection queue before
    /// the connection is detached (default 1 s). The wait is backpressure:
    /// a burst from a fast agent slows the agent to the client's pace
    /// instead of dropping a client that is reading; a client that stopped
    /// reading is detached after it. Zero detaches at once.
    pub slow_client_grace: Duration,
    /// The resume-token secret (default: random per registry; nodes sharing
    /// a store must share it).
    pub secret: TokenSecret,
    /// Put before every new session id (default none: ids are 32 hex
    /// digits). A gateway marks sessions it holds only in its own memory
    /// this way, so other nodes can tell where such a session lives.
    pub id_prefix: String,
    /// Sessions one user may hold (default 0: no bound). A new session
    /// beyond it reclaims that user's session detached longest ago; if
    /// every one is attached, it is refused
    /// ([`SessionError::TooManySessionsForUser`]).
    pub max_sessions_per_user: usize,
    /// Heap bytes the frames buffered for replay may take in all sessions
    /// together (see [`buffered_bytes`](SessionRegistry::buffered_bytes)),
    /// for stores that count them (the memory store; default 0: no bound).
    /// Past it, the sessions detached longest ago are reclaimed.
    pub max_buffered_bytes: usize,
}

/// How many reclaimed session ids a registry remembers, so that their
/// resumes are answered `expired` rather than `unknown_session`.
const RECLAIMED_REMEMBERED: usize = 100_000;

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            buffer: BufferLimits::default(),
            session_ttl: Duration::from_secs(300),
            max_sessions: 100_000,
            outbound_capacity: 256,
            outbound_bytes: 4 << 20,
            slow_client_grace: Duration::from_secs(1),
            secret: TokenSecret::random(),
            id_prefix: String::new(),
            max_sessions_per_user: 0,
            max_buffered_bytes: 0,
        }
    }
}

/// Why a resume was refused; the gateway sends it as `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotResumedReason {
    /// The session was lost longer than the session TTL ago.
    Expired,
    /// No such session (never existed, or cleaned up).
    UnknownSession,
    /// The token does not verify for this session and user.
    Unauthorized,
    /// A frame after `last_seq` is gone (dropped by the buffer bounds).
    Gap,
    /// Continuity was lost since the token was issued, or `last_seq` is
    /// beyond any frame this session sent.
    EpochMismatch,
}

impl NotResumedReason {
    /// The wire value: `expired`, `unknown_session`, `unauthorized`, `gap`,
    /// `epoch_mismatch`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotResumedReason::Expired => "expired",
            NotResumedReason::UnknownSession => "unknown_session",
            NotResumedReason::Unauthorized => "unauthorized",
            NotResumedReason::Gap => "gap",
            NotResumedReason::EpochMismatch => "epoch_mismatch",
        }
    }
}

impl fmt::Display for NotResumedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection attached to a session: its ids, token, and the receiver of
/// the session's live frames.
#[derive(Debug)]
pub struct Attached {
    /// The session id (32 hex digits, 128 random bits).
    pub session_id: String,
    /// The user.
    pub user_id: String,
    /// The token to resume with.
    pub resume_token: String,
    /// The session's epoch.
    pub epoch: u64,
    /// Identifies this attachment for [`SessionRegistry::detach`].
    pub attachment: u64,
    /// Live frames published after the attach, in seq order. It ends when
    /// another connection takes the session over or this one falls behind.
    pub frames: LiveFrames,
}

/// The answer to a resume.
#[derive(Debug)]
pub enum ResumeOutcome {
    /// Resumed: send `replay` (exactly the frames after `last_seq`), then
    /// the live frames from `attached.frames`.
    Resumed {
        /// The attachment.
        attached: Attached,
        /// The missed frames, in order.
        replay: Vec<WireFrame>,
    },
    /// Not resumed; nothing was changed.
    NotResumed {
        /// Why.
        reason: NotResumedReason,
    },
}

/// What a connection gets when it arrives: a resumed session, or a fresh
/// one (with the reason a requested resume was refused).
#[derive(Debug)]
pub struct SessionStart {
    /// The attachment.
    pub attached: Attached,
    /// Whether an existing session was resumed.
    pub resumed: bool,
    /// The frames to send before live ones (empty unless resumed).
    pub replay: Vec<WireFrame>,
    /// Why a requested resume was refused.
    pub reason: Option<NotResumedReason>,
}

/// A resume request from a client. Its `Debug` and `Display` leave the
/// token out, so logging one never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The session to resume.
    pub session_id: String,
    /// Its resume token.
    pub resume_token: String,
    /// The last seq the client received.
    pub last_seq: u64,
}

#[derive(Debug, Default)]
struct Live {
    attachment: Option<(u64, Outlet)>,
    /// The last seq handed to the current attachment (in its replay or its
    /// channel). Frames after it that this node did not publish (another
    /// node shares the store) are fetched from the store in order.
    delivered: u64,
}

/// Server-side sessions: every outbound frame of a session is numbered
/// (seq 1, 2, 3 ...) and buffered before it is delivered, so a client that
/// lost its connection can resume with exactly the frames it missed.
///
/// **The live/replay race.** Publishing and resuming a session take the
/// same per-session lock. A frame published before a resume's lock is in
/// its replay; one published after goes to the new attachment's channel,
/// which the connection reads only after sending the replay. So the client
/// sees every frame once, in order, whatever the interleaving.
pub struct SessionRegistry {
    config: SessionConfig,
    clock: SharedClock,
    store: Arc<dyn SessionStore>,
    live: DashMap<String, Arc<Mutex<Live>>, RandomState>,
    next_attachment: AtomicU64,
    /// This registry's id among the nodes sharing a store.
    node: String,
    /// Fingerprints of sessions reclaimed to make room, oldest first.
    reclaimed: std::sync::Mutex<Reclaimed>,
}

/// Sessions reclaimed to make room (see `SessionRegistry::reclaim`).
#[derive(Debug, Default)]
struct Reclaimed {
    order: std::collections::VecDeque<u64>,
    set: std::collections::HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl Reclaimed {
    fn fingerprint(&self, id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, id)
    }

    fn insert(&mut self, id: &str) {
        let f = self.fingerprint(id);
        if self.set.insert(f) {
            self.order.push_back(f);
            if self.order.len() > RECLAIMED_REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(&self.fingerprint(id))
    }
}

impl fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl SessionRegistry {
    /// A registry on the system clock with the in-memory store.
    pub fn new(config: SessionConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), on `clock`.
    pub fn with_clock(config: SessionConfig, clock: SharedClock) -> Self {
        let store = Arc::new(MemorySessionStore::new(config.buffer, config.max_sessions));
        Self::with_store(config, clock, store)
    }

    /// A registry over `store` (shared sessions across nodes).
    pub fn with_store(
        config: SessionConfig,
        clock: SharedClock,
        store: Arc<dyn SessionStore>,
    ) -> Self {
        SessionRegistry {
            config,
            clock,
            store,
            live: DashMap::with_hasher(RandomState::default()),
            next_attachment: AtomicU64::new(1),
            node: new_session_id(),
            reclaimed: std::sync::Mutex::new(Reclaimed::default()),
        }
    }

    /// Removes a detached session to make room; its resume will be
    /// answered `expired`. A session attached meanwhile, or busy, is left
    /// alone (false).
    async fn reclaim(&self, session_id: &str) -> Result<bool, SessionError> {
        let live = self.live(session_id);
        let Ok(guard) = live.try_lock() else {
            return Ok(false);
        };
        if guard.attachment.is_some() {
            return Ok(false);
        }
        let detached = matches!(
            self.store.get(session_id).await?,
            Some(record) if record.detached_at.is_some()
        );
        if !detached {
            return Ok(false);
        }
        self.store.remove(session_id).await?;
        drop(guard);
        self.live.remove(session_id);
        self.reclaimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session_id);
        Ok(true)
    }

    /// Reclaims the user's sessions detached longest ago until a new one
    /// fits under `max_sessions_per_user`.
    async fn make_room_for_user(&self, user_id: &str) -> Result<(), SessionError> {
        let max = self.config.max_sessions_per_user;
        if max == 0 {
            return Ok(());
        }
        let ids = self.store.sessions_of_user(user_id).await?;
        if ids.len() < max {
            return Ok(());
        }
        let mut detached = Vec::new();
        for id in ids.iter() {
            if let Some(record) = self.store.get(id).await?
                && let Some(at) = record.detached_at
            {
                detached.push((at, id.clone()));
            }
        }
        detached.sort();
        let mut held = ids.len();
        for (_, id) in detached {
            if held < max {
                break;
            }
            if self.reclaim(&id).await? {
                held -= 1;
            }
        }
        if held >= max {
            return Err(SessionError::TooManySessionsForUser(max));
        }
        Ok(())
    }

    /// Reclaims a batch of the sessions detached longest ago (1 % of
    /// `max_sessions`, 1 to 1 000, so a flood does not search per
    /// session); how many.
    async fn reclaim_oldest(&self) -> Result<usize, SessionError> {
        let batch = (self.config.max_sessions / 100).clamp(1, 1_000);
        let mut reclaimed = 0;
        for (id, _) in self.store.oldest_detached(batch, self.clock.now()).await? {
            reclaimed += usize::from(self.reclaim(&id).await?);
        }
        Ok(reclaimed)
    }

    /// Heap buffered in all sessions over `max_buffered_bytes`: reclaims
    /// the sessions detached longest ago until under it (or none is left).
    async fn enforce_buffer_budget(&self) -> Result<(), SessionError> {
        let max = self.config.max_buffered_bytes;
        if max == 0 {
            return Ok(());
        }
        while self.store.buffered_bytes().is_some_and(|used| used > max) {
            if self.reclaim_oldest().await? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Whether `session_id` was reclaimed to make room (recently).
    fn was_reclaimed(&self, session_id: &str) -> bool {
        self.reclaimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(session_id)
    }

    fn owner(&self, attachment: u64) -> String {
        format!("{}:{attachment}", self.node)
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// About the heap the frames buffered for replay take in every session
    /// (each frame's [`heap_bytes`](crate::BufferedFrame::heap_bytes): its
    /// serialized text + at most 64 bytes), when the store counts
    /// them (the memory store does; a shared store such as Redis keeps
    /// them elsewhere and says `None`).
    pub fn buffered_bytes(&self) -> Option<usize> {
        self.store.buffered_bytes()
    }

    /// Sessions held by the store.
    pub async fn session_count(&self) -> Result<usize, SessionError> {
        Ok(self.store.session_count().await?)
    }

    /// Ids of the user's sessions (attached or resumable).
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store fails.
    pub async fn sessions_of_user(&self, user_id: &str) -> Result<Vec<String>, SessionError> {
        Ok(self.store.sessions_of_user(user_id).await?)
    }

    /// Publishes `message` unless the session already got a frame with its
    /// `message_id` — one still in its buffer, or one of the last
    /// [`RECENT_MESSAGE_IDS`](crate::RECENT_MESSAGE_IDS) published once
    /// (acknowledged or evicted since; the Redis store remembers the last
    /// 4 096 to 8 192): `Ok(None)` for such a repeat (nothing is sent), else
    /// the frame's seq. Without a `message_id`, as
    /// [`publish`](Self::publish).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_once(
        &self,
        session_id: &str,
        message: WebSocketMessage,
    ) -> Result<Option<u64>, SessionError> {
        let frame = WireFrame::encode(&message);
        self.publish_frame_once(session_id, &frame, message.message_id.as_deref())
            .await
    }

    /// [`publish_once`](Self::publish_once) of a frame already serialized
    /// (unnumbered), with its message id.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_frame_once(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
    ) -> Result<Option<u64>, SessionError> {
        self.publish_inner(session_id, frame, message_id, true)
            .await
    }

    /// Whether the session remembers the idempotency key `key` (see
    /// [`claim_key`](Self::claim_key)).
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store fails.
    pub async fn holds_key(&self, session_id: &str, key: &str) -> Result<bool, SessionError> {
        Ok(self.store.holds_claimed(session_id, key).await?)
    }

    /// Claims an idempotency key for the session (the gateway keys each
    /// `start_agent` by its message id this way): true the first time,
    /// false for a repeat. The key is remembered apart from the ids of
    /// frames published once (so a backend's publishes cannot make the
    /// session forget it), for as long as the session lives, the last
    /// [`RECENT_MESSAGE_IDS`](crate::RECENT_MESSAGE_IDS) keys in memory —
    /// not by anything outside the session, so other users' load cannot
    /// make it forget.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store fails.
    pub async fn claim_key(&self, session_id: &str, key: &str) -> Result<bool, SessionError> {
        let live = self.live(session_id);
        let _live = live.lock().await;
        Ok(self.store.claim_key(session_id, key).await?)
    }

    /// The stored record of a session.
    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>, SessionError> {
        Ok(self.store.get(session_id).await?)
    }

    fn live(&self, session_id: &str) -> Arc<Mutex<Live>> {
        self.live
            .entry(session_id.to_owned())
            .or_default()
            .value()
            .clone()
    }

    /// Attaches a new connection that has every frame up to `delivered`.
    async fn attach(
        &self,
        live: &mut Live,
        record: &SessionRecord,
        delivered: u64,
    ) -> Result<Attached, SessionError> {
        let (tx, rx) = live::channel(self.config.outbound_capacity, self.config.outbound_bytes);
        let attachment = self.next_attachment.fetch_add(1, Ordering::Relaxed);
        self.store
            .attach_owner(&record.session_id, &self.owner(attachment))
            .await?;
        // Replacing the sender ends the previous connection's receiver.
        if let Some((_, previous)) = live.attachment.replace((attachment, tx)) {
            previous.end(Detached::TakenOver);
        }
        live.delivered = delivered;
        Ok(Attached {
            session_id: record.session_id.clone(),
            user_id: record.user_id.clone(),
            resume_token: self.config.secret.token(
                &record.session_id,
                &record.user_id,
                record.epoch,
            ),
            epoch: record.epoch,
            attachment,
            frames: rx,
        })
    }

    /// Opens a fresh session for `user_id`, attached.
    pub async fn open(&self, user_id: &str) -> Result<Attached, SessionError> {
        let record = SessionRecord {
            session_id: format!("{}{}", self.config.id_prefix, new_session_id()),
            user_id: user_id.to_owned(),
            epoch: 1,
            created_at: self.clock.now(),
            detached_at: None,
            last_seq: 0,
        };
        self.make_room_for_user(user_id).await?;
        if !self.store.create(record.clone()).await? {
            // Full: the sessions detached longest ago make room; a live
            // user is refused only when every session is attached.
            if self.reclaim_oldest().await? == 0 || !self.store.create(record.clone()).await? {
                return Err(SessionError::TooManySessions(self.config.max_sessions));
            }
        }
        let live = self.live(&record.session_id);
        let mut live = live.lock().await;
        self.attach(&mut live, &record, record.last_seq).await
    }

    /// Resumes a session for `user_id`: exactly the frames after
    /// `last_seq`, then live frames; or an explicit reason, with nothing
    /// changed. Checked in order: unknown session, token (for this session
    /// and user), epoch, expiry, then that every frame after `last_seq` is
    /// still buffered.
    pub async fn resume(
        &self,
        user_id: &str,
        request: &ResumeRequest,
    ) -> Result<ResumeOutcome, SessionError> {
        let not = |reason| Ok(ResumeOutcome::NotResumed { reason });
        let Some(record) = self.store.get(&request.session_id).await? else {
            if self.was_reclaimed(&request.session_id) {
                return not(NotResumedReason::Expired);
            }
            return not(NotResumedReason::UnknownSession);
        };
        if record.user_id != user_id {
            return not(NotResumedReason::Unauthorized);
        }
        let Some(token_epoch) =
            self.config
                .secret
                .verify(&request.resume_token, &record.session_id, &record.user_id)
        else {
            return not(NotResumedReason::Unauthorized);
        };
        if token_epoch != record.epoch {
            return not(NotResumedReason::EpochMismatch);
        }
        let now = self.clock.now();
        if record
            .detached_at
            .is_some_and(|at| now.duration_since(at) > self.config.session_ttl)
        {
            return not(NotResumedReason::Expired);
        }
        let live = self.live(&record.session_id);
        let mut live = live.lock().await;
        // Under the session's lock: no frame can be published in between.
        let Some(record) = self.store.get(&request.session_id).await? else {
            if self.was_reclaimed(&request.session_id) {
                return not(NotResumedReason::Expired);
            }
            return not(NotResumedReason::UnknownSession);
        };
        if token_epoch != record.epoch {
            return not(NotResumedReason::EpochMismatch);
        }
        let replay = match self
            .store
            .replay_after(&record.session_id, request.last_seq)
            .await?
        {
            None => return not(NotResumedReason::UnknownSession),
            Some(Err(ReplayGap::Ahead)) => return not(NotResumedReason::EpochMismatch),
            Some(Err(ReplayGap::Dropped)) => return not(NotResumedReason::Gap),
            Some(Ok(frames)) => frames,
        };
        let delivered = replay
            .last()
            .and_then(|f| f.seq())
            .unwrap_or(request.last_seq);
        let attached = self.attach(&mut live, &record, delivered).await?;
        Ok(ResumeOutcome::Resumed { attached, replay })
    }

    /// What the gateway does for each connection: resume if asked and
    /// possible, else open a fresh session (with the refusal's reason).
    pub async fn start(
        &self,
        user_id: &str,
        resume: Option<&ResumeRequest>,
    ) -> Result<SessionStart, SessionError> {
        let mut reason = None;
        if let Some(request) = resume {
            match self.resume(user_id, request).await? {
                ResumeOutcome::Resumed { attached, replay } => {
                    return Ok(SessionStart {
                        attached,
                        resumed: true,
                        replay,
                        reason: None,
                    });
                }
                ResumeOutcome::NotResumed { reason: r } => reason = Some(r),
            }
        }
        Ok(SessionStart {
            attached: self.open(user_id).await?,
            resumed: false,
            replay: Vec::new(),
            reason,
        })
    }

    /// Numbers, buffers and delivers one frame of a session; returns its
    /// seq. If the attached connection's queue is full, it is detached (its
    /// receiver ends) and the session stays resumable.
    ///
    /// # Errors
    /// [`SessionError::UnknownSession`]; store failures.
    pub async fn publish(
        &self,
        session_id: &str,
        message: WebSocketMessage,
    ) -> Result<u64, SessionError> {
        let frame = WireFrame::encode(&message);
        self.publish_frame(session_id, &frame, message.message_id.as_deref())
            .await
    }

    /// [`publish`](Self::publish) of a frame already serialized
    /// (unnumbered: [`WireFrame::encode`] of a message without a seq),
    /// with its message id if it has one. The frame is not serialized
    /// again: the buffer, the store and every reader share its text with
    /// the seq added.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_frame(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
    ) -> Result<u64, SessionError> {
        self.publish_inner(session_id, frame, message_id, false)
            .await
            .map(|seq| seq.unwrap_or_default())
    }

    /// [`publish_frame`](Self::publish_frame); with `once`, nothing is
    /// published (and `None` returned) if the session holds or remembers
    /// the message id already — checked under the session's lock, so two
    /// repeats cannot both pass.
    async fn publish_inner(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
        once: bool,
    ) -> Result<Option<u64>, SessionError> {
        let live = self.live(session_id);
        let mut live = live.lock().await;
        if let (true, Some(id)) = (once, message_id)
            && self.store.holds_message(session_id, id).await?
        {
            return Ok(None);
        }
        let now = self.clock.now();
        let Some(appended) = self
            .store
            .append(session_id, frame, message_id, now)
            .await?
        else {
            drop(live);
            self.live.remove(session_id);
            return Err(SessionError::UnknownSession(session_id.to_owned()));
        };
        let seq = appended.push.seq;
        if let (true, Some(id)) = (once, message_id) {
            self.store.remember_message(session_id, id).await?;
        }
        if live.attachment.is_some() && seq > live.delivered {
            match appended.push.frame {
                Some(frame) if seq == live.delivered + 1 => {
                    self.send_or_detach(session_id, &mut live, frame).await?;
                }
                // Frames published by another node came first (or this was
                // a repeat of an earlier append): catch up from the store.
                _ => self.catch_up(session_id, &mut live).await?,
            }
        }
        drop(live);
        // Outside this session's lock (reclaiming takes others').
        self.enforce_buffer_budget().await?;
        Ok(Some(seq))
    }

    /// Hands one frame to the attachment; a queue closed, or full (in
    /// frames or bytes) for `slow_client_grace`, detaches it (a slow
    /// client), and the frame stays buffered for its resume. The wait
    /// holds the session's lock, so its frames stay in order.
    async fn send_or_detach(
        &self,
        session_id: &str,
        live: &mut Live,
        frame: WireFrame,
    ) -> Result<(), SessionError> {
        let Some((_, tx)) = &live.attachment else {
            return Ok(());
        };
        let seq = frame.seq().unwrap_or(live.delivered + 1);
        if tx.send(frame, self.config.slow_client_grace).await {
            live.delivered = seq;
            return Ok(());
        }
        self.release(session_id, live, Detached::TooSlow).await
    }

    /// Ends the current attachment (its receiver ends) and records the
    /// session detached for it; the session stays resumable.
    async fn release(
        &self,
        session_id: &str,
        live: &mut Live,
        why: Detached,
    ) -> Result<(), SessionError> {
        if let Some((attachment, outlet)) = live.attachment.take() {
            outlet.end(why);
            self.store
                .detach_owner(session_id, &self.owner(attachment), self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// Hands the attachment every stored frame after the last one it got,
    /// in order. If some are gone (a buffer overflow), it is detached: its
    /// client resumes and learns why.
    async fn catch_up(&self, session_id: &str, live: &mut Live) -> Result<(), SessionError> {
        match self.store.replay_after(session_id, live.delivered).await? {
            Some(Ok(frames)) => {
                for frame in frames {
                    if live.attachment.is_none() {
                        break;
                    }
                    self.send_or_detach(session_id, live, frame).await?;
                }
            }
            // Ahead cannot happen (we never deliver past the store).
            Some(Err(_)) | None => self.release(session_id, live, Detached::Behind).await?,
        }
        Ok(())
    }

    /// Another node published frames up to `seq` into the shared store: if
    /// the session is attached here, hand its connection every frame it has
    /// not had, in order (no gap, no duplicate). Cheap when there is nothing
    /// to do. A store's announcement listener calls this (see the Redis
    /// store); announcements that are lost are made up by the next one, or
    /// by [`catch_up_all`](Self::catch_up_all).
    pub async fn deliver_remote(&self, session_id: &str, seq: u64) -> Result<(), SessionError> {
        let Some(live) = self.live.get(session_id).map(|l| l.value().clone()) else {
            return Ok(());
        };
        let mut live = live.lock().await;
        if live.attachment.is_some() && seq > live.delivered {
            self.catch_up(session_id, &mut live).await?;
        }
        Ok(())
    }

    /// Catches up every session attached here (after announcements may have
    /// been missed, e.g. when a store's listener reconnects), up to
    /// [`CATCH_UP_CONCURRENCY`] sessions at a time. A session whose store
    /// call fails does not stop the others (on a Redis Cluster one shard
    /// can be down, each call to it waiting for its timeout, while the rest
    /// answer).
    ///
    /// # Errors
    /// The first store failure, after every session was tried; calling
    /// again retries the sessions still behind.
    pub async fn catch_up_all(&self) -> Result<(), SessionError> {
        use futures_util::StreamExt;
        let sessions: Vec<(String, Arc<Mutex<Live>>)> = self
            .live
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let results: Vec<Result<(), SessionError>> = futures_util::stream::iter(sessions)
            .map(|(id, live)| async move {
                let mut live = live.lock().await;
                if live.attachment.is_some() {
                    self.catch_up(&id, &mut live).await
                } else {
                    Ok(())
                }
            })
            .buffer_unordered(CATCH_UP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    /// Detaches a connection (its socket closed). Only the current
    /// attachment can detach: an old connection that closes after a resume
    /// changes nothing. The session stays resumable for `session_ttl`.
    pub async fn detach(&self, session_id: &str, attachment: u64) -> Result<(), SessionError> {
        let Some(live) = self.live.get(session_id).map(|l| l.value().clone()) else {
            return Ok(());
        };
        let mut live = live.lock().await;
        if live
            .attachment
            .as_ref()
            .is_some_and(|(a, _)| *a == attachment)
        {
            // Its own connection closed: nobody reads why.
            self.release(session_id, &mut live, Detached::TakenOver)
                .await?;
        }
        Ok(())
    }

    /// The client has every frame up to `seq`: they may leave the buffer.
    pub async fn ack(&self, session_id: &str, seq: u64) -> Result<(), SessionError> {
        Ok(self.store.ack(session_id, seq).await?)
    }

    /// Removes sessions detached longer than `session_ttl`; returns how many.
    pub async fn cleanup_expired(&self) -> Result<usize, SessionError> {
        let now = self.clock.now();
        let ids = self.store.expired(now, self.config.session_ttl).await?;
        let mut removed = 0;
        for id in ids {
            if self.store.remove(&id).await? {
                removed += 1;
            }
            self.live.remove(&id);
        }
        Ok(removed)
    }
}

#[async_trait]
impl MessageBuffer for SessionRegistry {
    /// The frames buffered in every session of the user (a failing store
    /// yields none).
    async fn get_buffered_messages(&self, user_id: &str) -> Vec<WebSocketMessage> {
        self.store
            .buffered_for_user(user_id)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|frame| frame.decode().ok())
            .collect()
    }
}
