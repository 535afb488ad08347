//! [`SessionStore`]: where sessions and their replay buffers live.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use wsc_core::{Timestamp, WireFrame};

use crate::buffer::{BufferLimits, PushOutcome, ReplayBuffer, ReplayGap};
use crate::error::StoreError;

/// A session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub session_id: String,
    /// Its user.
    pub user_id: String,
    /// Bumped whenever continuity is lost (a critical frame dropped).
    pub epoch: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its connection was lost (`None` while attached).
    pub detached_at: Option<Timestamp>,
    /// The last seq given out.
    pub last_seq: u64,
}

/// What appending a frame did.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    /// The buffer's push outcome (seq, drops).
    pub push: PushOutcome,
    /// The session's epoch after the append (bumped if a critical frame
    /// was dropped).
    pub epoch: u64,
}

/// Sessions and replay buffers, so several nodes can share them (the Redis
/// store implements this). Every method is one atomic step on one session;
/// the [`SessionRegistry`](crate::SessionRegistry) orders the steps of one
/// session on a node.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session (attached, epoch and seq from `record`).
    /// Returns `false` if the store is full.
    async fn create(&self, record: SessionRecord) -> Result<bool, StoreError>;

    /// The session, or `None`.
    async fn get(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Numbers and buffers an unnumbered frame (the numbered one, its text
    /// with the seq, is in the outcome). `message_id` is the frame's
    /// message id, if it has one (see
    /// [`holds_message`](Self::holds_message)). Dropping a critical frame
    /// bumps the epoch. `None` if the session is unknown.
    async fn append(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Appended>, StoreError>;

    /// Exactly the frames after `last_seq`, numbered, or why not; `None`
    /// if unknown.
    async fn replay_after(
        &self,
        session_id: &str,
        last_seq: u64,
    ) -> Result<Option<Result<Vec<WireFrame>, ReplayGap>>, StoreError>;

    /// Drops frames up to `seq` (the client has them).
    async fn ack(&self, session_id: &str, seq: u64) -> Result<(), StoreError>;

    /// Records the session as attached (`None`) or detached since a time.
    async fn set_detached(
        &self,
        session_id: &str,
        detached_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;

    /// Records that `owner` (a node's attachment) now holds the session:
    /// attached, so a late detach by a previous owner on another node
    /// changes nothing. The default suits a single node:
    /// `set_detached(None)`.
    async fn attach_owner(&self, session_id: &str, owner: &str) -> Result<(), StoreError> {
        let _ = owner;
        self.set_detached(session_id, None).await
    }

    /// Records the session detached since `at`, only if `owner` still
    /// holds it. The default suits a single node: `set_detached(Some(at))`.
    async fn detach_owner(
        &self,
        session_id: &str,
        owner: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let _ = owner;
        self.set_detached(session_id, Some(at)).await
    }

    /// Removes a session; returns whether it existed.
    async fn remove(&self, session_id: &str) -> Result<bool, StoreError>;

    /// Ids of sessions detached for longer than `ttl` at `now`.
    async fn expired(&self, now: Timestamp, ttl: Duration) -> Result<Vec<String>, StoreError>;

    /// The frames buffered in every session of a user, oldest session first.
    async fn buffered_for_user(&self, user_id: &str) -> Result<Vec<WireFrame>, StoreError>;

    /// Sessions held.
    async fn session_count(&self) -> Result<usize, StoreError>;

    /// Ids of the user's sessions (attached or resumable).
    async fn sessions_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    /// Whether the session holds a frame with this `message_id` in its
    /// buffer, or remembers one among its recent ids (what makes a publish
    /// by message id happen once, also after the frame was acknowledged or
    /// evicted).
    async fn holds_message(&self, session_id: &str, message_id: &str) -> Result<bool, StoreError>;

    /// Remembers that a frame with `message_id` was appended to the session
    /// (after [`SessionRegistry::publish_once`](crate::SessionRegistry::publish_once)
    /// appended it), so [`holds_message`](Self::holds_message) knows it after
    /// the frame leaves the buffer. The default does nothing: for stores
    /// that remember ids as they append (the Redis store does).
    async fn remember_message(&self, session_id: &str, message_id: &str) -> Result<(), StoreError> {
        let _ = (session_id, message_id);
        Ok(())
    }

    /// The `n` sessions detached longest ago, oldest first, with when each
    /// was detached (what the registry reclaims when a bound is reached).
    /// The default looks at every detached session; stores with an index
    /// by detach time override it (the Redis store does).
    async fn oldest_detached(
        &self,
        n: usize,
        now: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        let mut detached = Vec::new();
        for id in self.expired(now, Duration::ZERO).await? {
            if let Some(record) = self.get(&id).await?
                && let Some(at) = record.detached_at
            {
                detached.push((id, at));
            }
        }
        detached.sort_by_key(|(_, at)| *at);
        detached.truncate(n);
        Ok(detached)
    }

    /// About the heap the frames buffered for replay take in all sessions
    /// ([`ReplayBuffer::heap_bytes`](crate::ReplayBuffer::heap_bytes),
    /// summed), if the store keeps the count (the memory store does);
    /// `None` otherwise.
    fn buffered_bytes(&self) -> Option<usize> {
        None
    }

    /// Claims an idempotency key (a client's `start_agent` message id) in
    /// the session's memory of claimed keys: true the first time, false if
    /// it is remembered. Claimed keys should be kept apart from the ids of
    /// published frames (the memory and Redis stores keep them apart, each
    /// bounded), so a backend's publishes can never make a session forget
    /// a start and run a client's retry twice. The default checks
    /// [`holds_claimed`](Self::holds_claimed) then calls
    /// [`remember_message`](Self::remember_message) (one space for both),
    /// atomic per session under the registry's session lock.
    async fn claim_key(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        if self.holds_claimed(session_id, key).await? {
            return Ok(false);
        }
        self.remember_message(session_id, key).await?;
        Ok(true)
    }

    /// Whether the session remembers `key` as claimed by
    /// [`claim_key`](Self::claim_key). The default is
    /// [`holds_message`](Self::holds_message).
    async fn holds_claimed(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        self.holds_message(session_id, key).await
    }
}

/// How many message ids of frames published once a session of the memory
/// store remembers (as 64-bit fingerprints: 8 KiB at most, and only for
/// sessions that receive such frames) — and, apart, how many claimed start
/// keys.
pub const RECENT_MESSAGE_IDS: usize = 1024;

#[derive(Debug)]
struct Stored {
    record: SessionRecord,
    buffer: ReplayBuffer,
    /// Fingerprints of the last [`RECENT_MESSAGE_IDS`] ids published once,
    /// oldest first.
    recent_ids: std::collections::VecDeque<u64>,
    /// Fingerprints of the last [`RECENT_MESSAGE_IDS`] keys claimed (start
    /// keys), oldest first: apart from `recent_ids`, so publishes never
    /// evict them.
    claimed: std::collections::VecDeque<u64>,
}

/// The in-memory store: a `DashMap` of sessions, each with its
/// [`ReplayBuffer`], at most `max_sessions` of them.
#[derive(Debug)]
pub struct MemorySessionStore {
    sessions: DashMap<String, Mutex<Stored>, RandomState>,
    /// Each user's session ids (so a user's sessions are found without a
    /// scan).
    by_user: DashMap<String, Vec<String>, RandomState>,
    /// Bytes buffered in all sessions.
    bytes: std::sync::atomic::AtomicUsize,
    limits: BufferLimits,
    max_sessions: usize,
    /// Keyed SipHash for message-id fingerprints (unpredictable across
    /// processes, so ids cannot be crafted to collide).
    ids: std::hash::RandomState,
}

impl MemorySessionStore {
    /// A store of at most `max_sessions` sessions with buffers bounded by
    /// `limits`.
    pub fn new(limits: BufferLimits, max_sessions: usize) -> Self {
        MemorySessionStore {
            sessions: DashMap::with_hasher(RandomState::default()),
            by_user: DashMap::with_hasher(RandomState::default()),
            bytes: std::sync::atomic::AtomicUsize::new(0),
            limits,
            max_sessions,
            ids: std::hash::RandomState::new(),
        }
    }

    fn fingerprint(&self, message_id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.ids, message_id)
    }

    /// A buffered frame's key: its message id's fingerprint, never 0 (0
    /// means "no id" in the buffer).
    fn key(&self, message_id: &str) -> u64 {
        self.fingerprint(message_id).max(1)
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Stored) -> T) -> Option<T> {
        let entry = self.sessions.get(id)?;
        let mut stored = entry.lock().unwrap_or_else(|p| p.into_inner());
        let before = stored.buffer.heap_bytes();
        let out = f(&mut stored);
        let after = stored.buffer.heap_bytes();
        if after >= before {
            self.bytes.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
        Some(out)
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn create(&self, record: SessionRecord) -> Result<bool, StoreError> {
        if self.sessions.len() >= self.max_sessions {
            return Ok(false);
        }
        let buffer = ReplayBuffer::starting_at(self.limits, record.last_seq + 1);
        self.by_user
            .entry(record.user_id.clone())
            .or_default()
            .push(record.session_id.clone());
        self.sessions.insert(
            record.session_id.clone(),
            Mutex::new(Stored {
                record,
                buffer,
                recent_ids: std::collections::VecDeque::new(),
                claimed: std::collections::VecDeque::new(),
            }),
        );
        Ok(true)
    }

    async fn get(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.with(session_id, |s| s.record.clone()))
    }

    async fn append(
        &self,
        session_id: &str,
        frame: &WireFrame,
        message_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Appended>, StoreError> {
        let key = message_id.map_or(0, |id| self.key(id));
        Ok(self.with(session_id, |s| {
            let push = s.buffer.push_keyed(frame, key, now);
            s.record.last_seq = push.seq;
            if push.dropped_critical {
                s.record.epoch += 1;
            }
            Appended {
                push,
                epoch: s.record.epoch,
            }
        }))
    }

    async fn replay_after(
        &self,
        session_id: &str,
        last_seq: u64,
    ) -> Result<Option<Result<Vec<WireFrame>, ReplayGap>>, StoreError> {
        Ok(self.with(session_id, |s| s.buffer.replay_after(last_seq)))
    }

    async fn ack(&self, session_id: &str, seq: u64) -> Result<(), StoreError> {
        self.with(session_id, |s| s.buffer.ack(seq));
        Ok(())
    }

    async fn set_detached(
        &self,
        session_id: &str,
        detached_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.with(session_id, |s| s.record.detached_at = detached_at);
        Ok(())
    }

    async fn remove(&self, session_id: &str) -> Result<bool, StoreError> {
        let Some((_, stored)) = self.sessions.remove(session_id) else {
            return Ok(false);
        };
        let stored = stored.into_inner().unwrap_or_else(|p| p.into_inner());
        self.bytes
            .fetch_sub(stored.buffer.heap_bytes(), Ordering::Relaxed);
        self.by_user
            .remove_if_mut(&stored.record.user_id, |_, ids| {
                ids.retain(|id| id != session_id);
                ids.is_empty()
            });
        Ok(true)
    }

    fn buffered_bytes(&self) -> Option<usize> {
        Some(self.bytes.load(Ordering::Relaxed))
    }

    async fn expired(&self, now: Timestamp, ttl: Duration) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for entry in self.sessions.iter() {
            let s = entry.value().lock().unwrap_or_else(|p| p.into_inner());
            if s.record
                .detached_at
                .is_some_and(|at| now.duration_since(at) > ttl)
            {
                ids.push(entry.key().clone());
            }
        }
        Ok(ids)
    }

    async fn buffered_for_user(&self, user_id: &str) -> Result<Vec<WireFrame>, StoreError> {
        let mut sessions: Vec<(Timestamp, Vec<WireFrame>)> = Vec::new();
        for entry in self.sessions.iter() {
            let s = entry.value().lock().unwrap_or_else(|p| p.into_inner());
            if s.record.user_id == user_id {
                let frames = s.buffer.frames().map(|f| f.frame.clone()).collect();
                sessions.push((s.record.created_at, frames));
            }
        }
        sessions.sort_by_key(|(at, _)| *at);
        Ok(sessions.into_iter().flat_map(|(_, f)| f).collect())
    }

    async fn session_count(&self) -> Result<usize, StoreError> {
        Ok(self.sessions.len())
    }

    async fn sessions_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .by_user
            .get(user_id)
            .map(|ids| ids.clone())
            .unwrap_or_default())
    }

    async fn holds_message(&self, session_id: &str, message_id: &str) -> Result<bool, StoreError> {
        let fingerprint = self.fingerprint(message_id);
        let key = self.key(message_id);
        Ok(self
            .with(session_id, |s| {
                s.recent_ids.contains(&fingerprint) || s.buffer.holds_key(key)
            })
            .unwrap_or(false))
    }

    async fn remember_message(&self, session_id: &str, message_id: &str) -> Result<(), StoreError> {
        let fingerprint = self.fingerprint(message_id);
        self.with(session_id, |s| {
            if s.recent_ids.len() == RECENT_MESSAGE_IDS {
                s.recent_ids.pop_front();
            }
            s.recent_ids.push_back(fingerprint);
        });
        Ok(())
    }

    async fn claim_key(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        let fingerprint = self.fingerprint(key);
        Ok(self
            .with(session_id, |s| {
                if s.claimed.contains(&fingerprint) {
                    return false;
                }
                if s.claimed.len() == RECENT_MESSAGE_IDS {
                    s.claimed.pop_front();
                }
                s.claimed.push_back(fingerprint);
                true
            })
            .unwrap_or(false))
    }

    async fn holds_claimed(&self, session_id: &str, key: &str) -> Result<bool, StoreError> {
        let fingerprint = self.fingerprint(key);
        Ok(self
            .with(session_id, |s| s.claimed.contains(&fingerprint))
            .unwrap_or(false))
    }
}
