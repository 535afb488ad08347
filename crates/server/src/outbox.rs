//! The outbox: agent events of sessions whose store is unreachable wait
//! here, in order, and are published when it is back — so an outage delays
//! events but never drops or reorders them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use wsc_core::WireFrame;
use wsc_reconnection::{SessionError, SessionRegistry};

/// Events held per session at most; past it an event is refused (its run
/// is ended and told why), never dropped — a terminal frame is always
/// taken, so the run's end reaches its client once the store is back.
pub(crate) const MAX_PER_SESSION: usize = 10_000;

/// A waiting event: its frame (serialized once) and message id.
type Waiting = (WireFrame, String);

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queues: DashMap<String, VecDeque<Waiting>>,
    held: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Outbox {
    /// Whether events of `session` are waiting (later ones must queue
    /// behind them).
    pub(crate) fn holds(&self, session: &str) -> bool {
        self.queues.contains_key(session)
    }

    /// Queues `frame` behind the session's others; false (not queued,
    /// counted) when the session holds [`MAX_PER_SESSION`] already and the
    /// frame is not a run's terminal one.
    pub(crate) fn push(&self, session: &str, frame: WireFrame, message_id: String) -> bool {
        let mut queue = self.queues.entry(session.to_owned()).or_default();
        if queue.len() >= MAX_PER_SESSION && !frame.message_type().is_terminal() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        queue.push_back((frame, message_id));
        true
    }

    /// Events waiting now.
    pub(crate) fn len(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Publishes what waits, in order per session, until the store fails
    /// again. Returns how many were published.
    pub(crate) async fn flush(&self, registry: &SessionRegistry) -> u64 {
        let sessions: Vec<String> = self.queues.iter().map(|e| e.key().clone()).collect();
        let mut published = 0;
        for session in sessions {
            // Not `while let`: the map guard must be released before the
            // body touches the same entry again.
            #[allow(clippy::while_let_loop)]
            loop {
                let Some(next) = self.queues.get(&session).and_then(|q| q.front().cloned()) else {
                    break;
                };
                let (frame, message_id) = next;
                match registry
                    .publish_frame(&session, &frame, Some(&message_id))
                    .await
                {
                    Ok(_) => {}
                    Err(SessionError::UnknownSession(_)) => {
                        // The session is gone (expired, or Redis lost it):
                        // nobody can receive these any more.
                        if let Some((_, q)) = self.queues.remove(&session) {
                            self.held.fetch_sub(q.len() as u64, Ordering::Relaxed);
                            self.dropped.fetch_add(q.len() as u64, Ordering::Relaxed);
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            session_id = %session,
                            error = %e,
                            published,
                            waiting = self.len(),
                            "outbox flush stopped: retried at the next health check"
                        );
                        return published;
                    }
                }
                published += 1;
                self.held.fetch_sub(1, Ordering::Relaxed);
                if let Some(mut q) = self.queues.get_mut(&session) {
                    q.pop_front();
                }
                // Removed only if still empty (an emit may have queued more).
                self.queues.remove_if(&session, |_, q| q.is_empty());
            }
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wsc_core::{MessageType, WebSocketMessage};

    use super::*;

    fn frame(t: MessageType) -> WireFrame {
        WireFrame::encode(&WebSocketMessage::new(t, json!({"run_id": "r"})))
    }

    /// A full session's queue refuses an event instead of dropping one it
    /// holds (dropping would lose it silently: seqs are given when the
    /// store is back), and still takes the run's terminal frame, so the
    /// run can be ended and its client told.
    #[test]
    fn a_full_queue_refuses_never_drops_and_takes_a_terminal_frame() {
        let outbox = Outbox::default();
        for n in 0..MAX_PER_SESSION {
            assert!(outbox.push("s", frame(MessageType::AgentThinking), format!("m{n}")));
        }
        assert!(!outbox.push("s", frame(MessageType::AgentThinking), "over".into()));
        assert!(
            outbox.push("other", frame(MessageType::AgentThinking), "o".into()),
            "per session"
        );
        assert!(outbox.push("s", frame(MessageType::AgentError), "end".into()));
        let queue = outbox.queues.get("s").unwrap();
        assert_eq!(queue.len(), MAX_PER_SESSION + 1);
        assert_eq!(queue.front().unwrap().1, "m0", "the oldest is kept");
        assert_eq!(queue.back().unwrap().1, "end");
        assert_eq!(outbox.dropped.load(Ordering::Relaxed), 1);
    }
}
