//! [`ReplayBuffer`]: a session's outbound frames, numbered and bounded.

use std::collections::VecDeque;
use std::time::Duration;

use wsc_core::{MessageType, Timestamp, WireFrame};

/// What to drop when a push would pass the buffer's count or byte bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Drop the oldest frame.
    DropOldest,
    /// Do not buffer the new frame (it is still delivered live).
    DropNewest,
    /// Drop the oldest non-critical frame; the oldest frame if all are
    /// critical (the default).
    #[default]
    DropLowPriority,
}

/// Bounds of a replay buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    /// Frames kept at most.
    pub max_frames: usize,
    /// Bytes (serialized frame sizes, seq included) kept at most.
    pub max_bytes: usize,
    /// Frames older than this are dropped.
    pub max_age: Duration,
    /// What overflow drops.
    pub policy: OverflowPolicy,
}

impl Default for BufferLimits {
    fn default() -> Self {
        BufferLimits {
            max_frames: 1_000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(300),
            policy: OverflowPolicy::DropLowPriority,
        }
    }
}

/// Whether losing this frame must make the session unresumable: the
/// critical agent events, and the errors that end a run.
pub fn is_critical(t: MessageType) -> bool {
    t.is_critical() || matches!(t, MessageType::AgentError | MessageType::Error)
}

/// One buffered frame: the numbered [`WireFrame`] (its text shared with
/// the live delivery and every replay; its
/// [`timestamp`](WireFrame::timestamp) when it was buffered) and the
/// fingerprint of its message id.
///
/// It takes 40 bytes in the buffer besides its text's heap: a buffered
/// frame costs its serialized size + at most 64 bytes
/// ([`heap_bytes`](Self::heap_bytes)).
#[derive(Clone, Debug, PartialEq)]
pub struct BufferedFrame {
    /// The frame, numbered, its timestamp when it was buffered.
    pub frame: WireFrame,
    /// What the store keyed it by (a fingerprint of its message id, for
    /// [`ReplayBuffer::holds_key`]; 0: none).
    pub key: u64,
}

impl BufferedFrame {
    /// When it was buffered.
    pub fn at(&self) -> Timestamp {
        self.frame.timestamp().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.frame.seq().unwrap_or_default()
    }

    /// Its serialized size in bytes.
    pub fn bytes(&self) -> usize {
        self.frame.len()
    }

    /// Whether it is critical (see [`is_critical`]).
    pub fn critical(&self) -> bool {
        is_critical(self.frame.message_type())
    }

    /// The heap it holds while buffered: its entry in the buffer and its
    /// text with the `Arc`'s counters (shared with live deliveries and
    /// replays, counted once here) — its serialized size + at most 64
    /// bytes.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<BufferedFrame>() + self.frame.heap_bytes()
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PushOutcome {
    /// The frame's sequence number.
    pub seq: u64,
    /// The numbered frame (delivered live even if it was not kept).
    pub frame: Option<WireFrame>,
    /// Frames dropped to make room (or the new frame itself, with `DropNewest`).
    pub dropped: usize,
    /// A critical frame was dropped: frames after it can never be replayed.
    pub dropped_critical: bool,
}

/// Why frames after a given seq cannot be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayGap {
    /// Some frame after it was dropped (overflow, age or ack).
    Dropped,
    /// It is beyond the last frame ever numbered.
    Ahead,
}

/// A session's outbound frames, numbered 1, 2, 3 ... and bounded by count,
/// bytes and age.
///
/// A replay never skips a frame: [`replay_after`](Self::replay_after)
/// answers exactly the frames after `last_seq`, or a [`ReplayGap`] when any
/// of them is gone.
#[derive(Clone, Debug)]
pub struct ReplayBuffer {
    frames: VecDeque<BufferedFrame>,
    bytes: usize,
    /// The frames' `heap_bytes`, summed.
    heap_bytes: usize,
    /// Frames held that are not critical (lets the common all-critical
    /// overflow skip the search for one).
    non_critical: usize,
    next_seq: u64,
    /// The highest seq that left the buffer (dropped, expired or acked).
    gone_through: u64,
    limits: BufferLimits,
}

impl ReplayBuffer {
    /// An empty buffer; the first frame gets seq 1.
    pub fn new(limits: BufferLimits) -> Self {
        Self::starting_at(limits, 1)
    }

    /// An empty buffer whose next frame gets `next_seq` (frames before it
    /// count as gone).
    pub fn starting_at(limits: BufferLimits, next_seq: u64) -> Self {
        ReplayBuffer {
            frames: VecDeque::new(),
            bytes: 0,
            heap_bytes: 0,
            non_critical: 0,
            next_seq: next_seq.max(1),
            gone_through: next_seq.max(1) - 1,
            limits,
        }
    }

    /// The seq the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last seq given out (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes held (serialized sizes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// About the heap the held frames take (their
    /// [`heap_bytes`](BufferedFrame::heap_bytes), summed): what a memory
    /// budget counts.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    /// The limits.
    pub fn limits(&self) -> &BufferLimits {
        &self.limits
    }

    /// The held frames, oldest first.
    pub fn frames(&self) -> impl Iterator<Item = &BufferedFrame> {
        self.frames.iter()
    }

    /// Numbers `frame` (its text gets the seq) and buffers it, dropping
    /// per the policy to stay within the bounds.
    pub fn push(&mut self, frame: &WireFrame, now: Timestamp) -> PushOutcome {
        self.push_keyed(frame, 0, now)
    }

    /// [`push`](Self::push), remembering `key` with the frame (a store's
    /// fingerprint of its message id; 0: none) for
    /// [`holds_key`](Self::holds_key).
    pub fn push_keyed(&mut self, frame: &WireFrame, key: u64, now: Timestamp) -> PushOutcome {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = frame
            .with_seq(seq)
            .unwrap_or_else(|_| frame.clone())
            .with_time(now);
        let bytes = frame.len();
        let critical = is_critical(frame.message_type());
        let entry = BufferedFrame { frame, key };
        let heap_bytes = entry.heap_bytes();
        let mut outcome = PushOutcome {
            seq,
            frame: Some(entry.frame.clone()),
            ..Default::default()
        };
        self.expire(now, &mut outcome);
        let limits = self.limits;
        let over = |b: &ReplayBuffer| {
            b.frames.len() + 1 > limits.max_frames || b.bytes + bytes > limits.max_bytes
        };
        if over(self)
            && (limits.policy == OverflowPolicy::DropNewest
                || limits.max_frames == 0
                || bytes > limits.max_bytes)
        {
            // The new frame is not kept.
            self.gone_through = seq;
            outcome.dropped += 1;
            outcome.dropped_critical |= critical;
            // Older frames stay, but nothing after them can be replayed past
            // this hole; drop them too so memory is not held for nothing.
            self.drop_all(&mut outcome);
            return outcome;
        }
        while over(self) {
            let victim = match limits.policy {
                OverflowPolicy::DropLowPriority if self.non_critical > 0 => {
                    self.frames.iter().position(|f| !f.critical()).unwrap_or(0)
                }
                _ => 0,
            };
            self.cut_through(victim, &mut outcome);
        }
        self.bytes += bytes;
        self.heap_bytes += heap_bytes;
        self.non_critical += usize::from(!critical);
        self.frames.push_back(entry);
        outcome
    }

    /// Whether a held frame was pushed with `key` (see
    /// [`push_keyed`](Self::push_keyed)).
    pub fn holds_key(&self, key: u64) -> bool {
        key != 0 && self.frames.iter().any(|f| f.key == key)
    }

    fn remove_at(&mut self, i: usize, outcome: &mut PushOutcome) {
        if let Some(f) = self.frames.remove(i) {
            let critical = f.critical();
            self.bytes -= f.bytes();
            self.heap_bytes -= f.heap_bytes();
            self.non_critical -= usize::from(!critical);
            self.gone_through = self.gone_through.max(f.seq());
            outcome.dropped += 1;
            outcome.dropped_critical |= critical;
        }
    }

    /// Drops the frame at `victim` and every older one: once it is gone no
    /// replay can start before it, so the older frames are dead weight. Only
    /// the victim counts as lost (`dropped_critical`).
    fn cut_through(&mut self, victim: usize, outcome: &mut PushOutcome) {
        for _ in 0..victim {
            if let Some(f) = self.frames.pop_front() {
                self.bytes -= f.bytes();
                self.heap_bytes -= f.heap_bytes();
                self.non_critical -= usize::from(!f.critical());
                outcome.dropped += 1;
            }
        }
        self.remove_at(0, outcome);
    }

    fn drop_all(&mut self, outcome: &mut PushOutcome) {
        while !self.frames.is_empty() {
            self.remove_at(0, outcome);
        }
    }

    /// Drops frames older than `max_age`.
    pub fn expire(&mut self, now: Timestamp, outcome: &mut PushOutcome) {
        let max_age = self.limits.max_age;
        while self
            .frames
            .front()
            .is_some_and(|f| now.duration_since(f.at()) > max_age)
        {
            self.remove_at(0, outcome);
        }
    }

    /// Drops frames up to and including `seq` (the client has them).
    /// Returns how many it dropped.
    pub fn ack(&mut self, seq: u64) -> usize {
        let mut outcome = PushOutcome::default();
        while self.frames.front().is_some_and(|f| f.seq() <= seq) {
            self.remove_at(0, &mut outcome);
        }
        // Acked frames are gone, but not lost: `dropped_critical` is ignored.
        outcome.dropped
    }

    /// Exactly the frames after `last_seq`, in order, or why not.
    pub fn replay_after(&self, last_seq: u64) -> Result<Vec<WireFrame>, ReplayGap> {
        if last_seq > self.last_seq() {
            return Err(ReplayGap::Ahead);
        }
        if last_seq < self.gone_through {
            return Err(ReplayGap::Dropped);
        }
        // Frames are in seq order; skip those the client has.
        let start = self.frames.partition_point(|f| f.seq() <= last_seq);
        Ok(self
            .frames
            .range(start..)
            .map(|f| f.frame.clone())
            .collect())
    }

    /// Whether a replay after `last_seq` would be complete.
    pub fn can_replay_after(&self, last_seq: u64) -> Result<(), ReplayGap> {
        if last_seq > self.last_seq() {
            Err(ReplayGap::Ahead)
        } else if last_seq < self.gone_through {
            Err(ReplayGap::Dropped)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(t: MessageType) -> WireFrame {
        WireFrame::encode(&wsc_core::WebSocketMessage::new(t, json!({})))
    }

    fn limits(frames: usize, policy: OverflowPolicy) -> BufferLimits {
        BufferLimits {
            max_frames: frames,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
            policy,
        }
    }

    const T0: Timestamp = Timestamp::from_unix_micros(1_000_000_000);

    #[derive(Clone, Debug)]
    enum Op {
        Push {
            critical: bool,
            text: usize,
            bytes: usize,
            after_s: u64,
        },
        Ack(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<bool>(), 0usize..2_000, 1usize..400, 0u64..40).prop_map(
                |(critical, text, bytes, after_s)| Op::Push { critical, text, bytes, after_s }
            ),
            1 => (0u64..60).prop_map(Op::Ack),
        ]
    }

    proptest::proptest! {
        /// Whatever is pushed, dropped, expired or acked, the buffer's two
        /// totals are the sums over the frames it holds, and each frame's
        /// heap is its entry plus what its message points to.
        #[test]
        fn the_totals_are_the_sums_of_the_frames(
            ops in proptest::collection::vec(op(), 1..80),
            frames in 1usize..12,
            policy in proptest::sample::select(vec![
                OverflowPolicy::DropOldest,
                OverflowPolicy::DropNewest,
                OverflowPolicy::DropLowPriority,
            ]),
        ) {
            let mut b = ReplayBuffer::new(BufferLimits {
                max_bytes: 2_000,
                ..limits(frames, policy)
            });
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Push { critical, text, bytes, after_s } => {
                        now = now + Duration::from_secs(after_s);
                        let t = if critical { MessageType::AgentCompleted } else { MessageType::AgentProgress };
                        let m = wsc_core::WebSocketMessage::new(t, json!({"text": "x".repeat(text + bytes)}));
                        b.push(&WireFrame::encode(&m), now);
                    }
                    Op::Ack(seq) => {
                        b.ack(seq);
                    }
                }
                let bytes: usize = b.frames().map(|f| f.bytes()).sum();
                let heap: usize = b.frames().map(|f| f.heap_bytes()).sum();
                proptest::prop_assert_eq!(b.bytes(), bytes);
                proptest::prop_assert_eq!(b.heap_bytes(), heap);
                for f in b.frames() {
                    // A frame costs its serialized size + at most 64 bytes.
                    proptest::prop_assert!(f.heap_bytes() <= f.bytes() + 64);
                    proptest::prop_assert_eq!(f.heap_bytes(), std::mem::size_of::<BufferedFrame>() + f.frame.heap_bytes());
                }
            }
        }
    }

    #[test]
    fn numbers_from_one_and_replays_exactly() {
        let mut b = ReplayBuffer::new(BufferLimits::default());
        for _ in 0..5 {
            b.push(&msg(MessageType::AgentThinking), T0);
        }
        let seqs: Vec<u64> = b
            .replay_after(2)
            .unwrap()
            .iter()
            .map(|m| m.seq().unwrap())
            .collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(b.replay_after(5).unwrap(), []);
        assert_eq!(b.replay_after(6), Err(ReplayGap::Ahead));
        assert_eq!(b.ack(3), 3);
        assert_eq!(b.replay_after(2), Err(ReplayGap::Dropped));
        assert_eq!(b.replay_after(3).unwrap().len(), 2);
    }

    #[test]
    fn low_priority_frames_go_first() {
        let mut b = ReplayBuffer::new(limits(2, OverflowPolicy::DropLowPriority));
        b.push(&msg(MessageType::AgentStarted), T0);
        b.push(&msg(MessageType::AgentProgress), T0);
        let out = b.push(&msg(MessageType::AgentThinking), T0);
        // Seq 2 (non-critical) goes, and seq 1 with it: no replay can start
        // before 2 any more. Only the non-critical frame counts as lost.
        assert_eq!((out.dropped, out.dropped_critical), (2, false));
        assert_eq!(b.frames().map(|f| f.seq()).collect::<Vec<_>>(), [3]);
        assert_eq!(b.replay_after(1), Err(ReplayGap::Dropped));
        assert!(b.replay_after(2).is_ok());
        b.push(&msg(MessageType::ToolExecuting), T0);
        let out = b.push(&msg(MessageType::AgentCompleted), T0);
        assert!(
            out.dropped_critical,
            "all critical: the oldest critical goes"
        );
    }

    #[test]
    fn drop_newest_and_bytes_and_age() {
        let mut b = ReplayBuffer::new(limits(1, OverflowPolicy::DropNewest));
        b.push(&msg(MessageType::AgentStarted), T0);
        let out = b.push(&msg(MessageType::AgentProgress), T0);
        assert_eq!(out.seq, 2);
        assert_eq!(b.replay_after(1), Err(ReplayGap::Dropped));
        assert_eq!(b.replay_after(2).unwrap(), []);

        // Room for two and a half frames (all of one size: one-digit seqs).
        let size = msg(MessageType::AgentProgress).with_seq(1).unwrap().len();
        let mut b = ReplayBuffer::new(BufferLimits {
            max_bytes: size * 5 / 2,
            ..limits(100, OverflowPolicy::DropOldest)
        });
        for _ in 0..3 {
            b.push(&msg(MessageType::AgentProgress), T0);
        }
        assert_eq!((b.len(), b.bytes()), (2, 2 * size));

        let later = T0 + Duration::from_secs(61);
        let out = b.push(&msg(MessageType::AgentProgress), later);
        assert_eq!(out.dropped, 2, "both expired");
        assert_eq!(b.len(), 1);
    }
}
