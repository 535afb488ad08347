//! A connection's queue of live frames, bounded in frames and in bytes: the
//! registry's side waits (up to the slow-client grace) for room, the
//! connection's side frees the room as it takes frames out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use wsc_core::WireFrame;

/// Bytes a queue may hold, one permit each; `None`: no byte bound.
#[derive(Clone, Debug)]
struct Room {
    permits: Arc<Semaphore>,
    /// The bound: a frame larger than it costs all of it (it waits for an
    /// empty queue instead of never fitting).
    bytes: u32,
}

impl Room {
    fn cost(&self, frame: &WireFrame) -> u32 {
        u32::try_from(frame.len())
            .unwrap_or(u32::MAX)
            .min(self.bytes)
    }
}

/// Why the registry ended an attachment (its [`LiveFrames`] ended): known
/// where it happened, so a connection closes with the truth without asking
/// a store that may not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detached {
    /// Another connection attached to the session (a resume took it).
    TakenOver,
    /// The connection's queue stayed full for the slow-client grace.
    TooSlow,
    /// Frames it had not had are gone from the session's buffer: its
    /// resume will say so (`gap`).
    Behind,
}

impl Detached {
    fn code(self) -> u8 {
        match self {
            Detached::TakenOver => 1,
            Detached::TooSlow => 2,
            Detached::Behind => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Detached::TakenOver),
            2 => Some(Detached::TooSlow),
            3 => Some(Detached::Behind),
            _ => None,
        }
    }
}

/// The live frames of one attachment, in seq order: what the connection
/// reads after its replay. The queue is bounded in frames
/// ([`SessionConfig::outbound_capacity`](crate::SessionConfig::outbound_capacity))
/// and in bytes
/// ([`SessionConfig::outbound_bytes`](crate::SessionConfig::outbound_bytes));
/// taking a frame out frees its room. It ends (`recv` gives `None`) when
/// another connection takes the session over or this one falls behind.
#[derive(Debug)]
pub struct LiveFrames {
    rx: mpsc::Receiver<WireFrame>,
    room: Option<Room>,
    ended: Arc<AtomicU8>,
}

impl LiveFrames {
    /// The next frame; `None` once the attachment has ended and every
    /// queued frame was taken.
    pub async fn recv(&mut self) -> Option<WireFrame> {
        let frame = self.rx.recv().await?;
        self.free(&frame);
        Some(frame)
    }

    /// The next frame if one is queued now.
    ///
    /// # Errors
    /// [`mpsc::error::TryRecvError::Empty`] when none is queued,
    /// `Disconnected` once the attachment has ended and the queue is empty.
    pub fn try_recv(&mut self) -> Result<WireFrame, mpsc::error::TryRecvError> {
        let frame = self.rx.try_recv()?;
        self.free(&frame);
        Ok(frame)
    }

    /// Why the registry ended this attachment, once it has (`None` while
    /// attached, or when it ended for no reason the registry recorded).
    pub fn detached(&self) -> Option<Detached> {
        Detached::from_code(self.ended.load(Ordering::Acquire))
    }

    /// Bytes of the frames queued now (0 without a byte bound).
    pub fn queued_bytes(&self) -> usize {
        self.room.as_ref().map_or(0, |room| {
            (room.bytes as usize).saturating_sub(room.permits.available_permits())
        })
    }

    fn free(&self, frame: &WireFrame) {
        if let Some(room) = &self.room {
            room.permits.add_permits(room.cost(frame) as usize);
        }
    }
}

/// The registry's end of a [`LiveFrames`] queue.
#[derive(Debug)]
pub(crate) struct Outlet {
    tx: mpsc::Sender<WireFrame>,
    room: Option<Room>,
    ended: Arc<AtomicU8>,
}

/// A queue of at most `frames` frames and `bytes` bytes (0: no byte
/// bound).
pub(crate) fn channel(frames: usize, bytes: usize) -> (Outlet, LiveFrames) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let room = (bytes > 0).then(|| {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        Room {
            permits: Arc::new(Semaphore::new(bytes as usize)),
            bytes,
        }
    });
    let ended = Arc::new(AtomicU8::new(0));
    (
        Outlet {
            tx,
            room: room.clone(),
            ended: ended.clone(),
        },
        LiveFrames { rx, room, ended },
    )
}

impl Outlet {
    /// Ends the attachment for `why` (its reader sees why once the queue
    /// is drained).
    pub(crate) fn end(self, why: Detached) {
        self.ended.store(why.code(), Ordering::Release);
    }

    /// Queues `frame`, waiting at most `grace` for room (in frames and in
    /// bytes); false if no room came in time or the reader is gone.
    pub(crate) async fn send(&self, frame: WireFrame, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        if let Some(room) = &self.room {
            let cost = room.cost(&frame);
            let taken = match room.permits.try_acquire_many(cost) {
                Ok(permit) => Some(permit),
                Err(tokio::sync::TryAcquireError::NoPermits) if !grace.is_zero() => {
                    match tokio::time::timeout_at(deadline, room.permits.acquire_many(cost)).await {
                        Ok(Ok(permit)) => Some(permit),
                        _ => None,
                    }
                }
                Err(_) => None,
            };
            let Some(permit) = taken else { return false };
            // Given back by the reader as it takes the frame out.
            permit.forget();
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(frame)) if !grace.is_zero() => matches!(
                tokio::time::timeout_at(deadline, self.tx.send(frame)).await,
                Ok(Ok(()))
            ),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wsc_core::{MessageType, WebSocketMessage};

    fn frame(bytes: usize) -> WireFrame {
        WireFrame::encode(&WebSocketMessage::new(
            MessageType::AgentThinking,
            json!({"pad": "x".repeat(bytes)}),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_bound_the_queue_as_well_as_frames() {
        let (outlet, mut live) = channel(100, 10_000);
        let big = frame(3_000);
        // Three fit in 10 000 bytes; the fourth waits out the grace.
        for _ in 0..3 {
            assert!(outlet.send(big.clone(), Duration::from_secs(1)).await);
        }
        assert_eq!(live.queued_bytes(), 3 * big.len());
        assert!(!outlet.send(big.clone(), Duration::from_secs(1)).await);
        // Taking one out makes room for one more.
        live.recv().await.unwrap();
        assert!(outlet.send(big.clone(), Duration::ZERO).await);
        assert!(!outlet.send(big, Duration::ZERO).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_larger_than_the_bound_waits_for_an_empty_queue() {
        let (outlet, mut live) = channel(100, 1_000);
        assert!(outlet.send(frame(10), Duration::ZERO).await);
        let huge = frame(5_000);
        assert!(!outlet.send(huge.clone(), Duration::ZERO).await);
        live.try_recv().unwrap();
        assert!(outlet.send(huge, Duration::ZERO).await, "alone it goes");
        assert_eq!(live.queued_bytes(), 1_000);
        live.try_recv().unwrap();
        assert_eq!(live.queued_bytes(), 0);
    }

    proptest::proptest! {
        /// For any interleaving of sends (of any sizes) and takes, the
        /// queue holds the frames sent and not taken, in order, and counts
        /// exactly their bytes, never more than its bound (a frame larger
        /// than the bound counting as the bound).
        #[test]
        fn the_queue_counts_exactly_what_it_holds(
            bound in 1_000usize..20_000,
            steps in proptest::collection::vec(proptest::option::of(0usize..8_000), 1..60),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let (outlet, mut live) = channel(16, bound);
                let mut held: std::collections::VecDeque<WireFrame> = Default::default();
                for (n, step) in steps.into_iter().enumerate() {
                    match step {
                        Some(size) => {
                            let f = WireFrame::encode(&WebSocketMessage::new(
                                MessageType::AgentThinking,
                                json!({"n": n, "pad": "x".repeat(size)}),
                            ));
                            let cost = f.len().min(bound);
                            let fits = held.len() < 16
                                && held.iter().map(|h| h.len().min(bound)).sum::<usize>() + cost <= bound;
                            proptest::prop_assert_eq!(outlet.send(f.clone(), Duration::ZERO).await, fits);
                            if fits {
                                held.push_back(f);
                            }
                        }
                        None => {
                            let got = live.try_recv().ok();
                            let want = held.pop_front();
                            proptest::prop_assert_eq!(
                                got.as_ref().map(WireFrame::as_str),
                                want.as_ref().map(WireFrame::as_str)
                            );
                        }
                    }
                    let counted: usize = held.iter().map(|h| h.len().min(bound)).sum();
                    proptest::prop_assert_eq!(live.queued_bytes(), counted);
                    proptest::prop_assert!(counted <= bound);
                }
                Ok(())
            })?;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_takes_frames_within_the_grace_keeps_the_sender_going() {
        let (outlet, mut live) = channel(2, 0);
        assert!(outlet.send(frame(1), Duration::ZERO).await);
        assert!(outlet.send(frame(1), Duration::ZERO).await);
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            live.recv().await.unwrap();
            live
        });
        assert!(outlet.send(frame(1), Duration::from_secs(1)).await);
        let live = reader.await.unwrap();
        assert_eq!(live.queued_bytes(), 0, "no byte bound: nothing counted");
    }
}
