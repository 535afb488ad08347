//! Admission at the accept loop, so a reconnect storm never runs the
//! process out of open files (EMFILE). Every accepted socket is counted
//! until it closes — upgraded WebSockets and SSE streams included, since
//! the count travels with the socket ([`Counted`]) — and the process's
//! other open files (the store's and agents' sockets, the listener, logs)
//! are sampled from `/proc/self/fd` while it matters. When they near the
//! open-file limit, a new connection is shed: answered 503 with a
//! jittered `Retry-After` at once and closed, holding its file for no
//! longer than that. The last few files are kept for `GET /health` and
//! `GET /metrics`, so an operator can still see a gateway in a storm.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::counters::Counters;

/// How long a connection let into the files kept for `/health` and
/// `/metrics` may take to show its request line before it is shed.
const PEEK: Duration = Duration::from_millis(100);

/// How often the other open files are counted again while the sockets
/// hold a quarter of the limit or more.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The other open files assumed before the first count (or where
/// `/proc/self/fd` cannot be read).
const OTHERS_FLOOR: usize = 32;

/// Files never used by accepted sockets: what the other files may grow
/// by between two counts (a hundredth of the limit, at least 16).
fn margin(limit: usize) -> usize {
    (limit / 100).max(16)
}

/// Files above the margin kept for `GET /health` and `GET /metrics`
/// (a hundredth of the limit, at least 16).
fn health_room(limit: usize) -> usize {
    (limit / 100).max(16)
}

/// What to do with a socket just accepted.
pub(crate) enum Admit {
    /// Serve it.
    Serve(Ticket),
    /// Serve it only if its request is `GET /health` or `GET /metrics`
    /// (see [`Admission::health_only`]).
    HealthOnly(Ticket, Peeking),
    /// Answer 503 and close it ([`Admission::shed`]).
    Shed,
}

/// Accepted sockets and the process's open-file limit.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The open-file limit; `None`: unknown or unlimited, nothing is shed.
    limit: Option<usize>,
    /// Accepted sockets not yet closed.
    sockets: AtomicUsize,
    /// Connections waiting to show whether they ask for `/health`.
    peeking: AtomicUsize,
    /// The process's open files other than accepted sockets, as last
    /// counted.
    others: AtomicUsize,
    /// When they were last counted (milliseconds since `born`).
    counted_ms: AtomicU64,
    /// Whether a count is under way.
    counting: AtomicBool,
    born: Instant,
    counters: Arc<Counters>,
    /// When shedding was last logged (milliseconds since `born`, 0: never).
    logged_ms: AtomicU64,
}

/// An accepted socket's place in the count; given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<Admission>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place among the connections waiting to show their request line.
#[derive(Debug)]
pub(crate) struct Peeking(Arc<Admission>);

impl Drop for Peeking {
    fn drop(&mut self) {
        self.0.peeking.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// Admission for a process allowed `limit` open files (`None`:
    /// unlimited).
    pub(crate) fn new(limit: Option<u64>, counters: Arc<Counters>) -> Arc<Self> {
        let admission = Arc::new(Admission {
            limit: limit.and_then(|l| usize::try_from(l).ok()),
            sockets: AtomicUsize::new(0),
            peeking: AtomicUsize::new(0),
            others: AtomicUsize::new(OTHERS_FLOOR),
            counted_ms: AtomicU64::new(0),
            counting: AtomicBool::new(false),
            born: Instant::now(),
            counters,
            logged_ms: AtomicU64::new(0),
        });
        if admission.limit.is_some() {
            admission.count_others();
        }
        admission
    }

    /// Accepted sockets not yet closed.
    pub(crate) fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Acquire)
    }

    /// Decides on a socket just accepted (it is already counted when this
    /// returns `Serve` or `HealthOnly`).
    pub(crate) fn admit(self: &Arc<Self>) -> Admit {
        let Some(limit) = self.limit else {
            self.sockets.fetch_add(1, Ordering::AcqRel);
            return Admit::Serve(Ticket(self.clone()));
        };
        self.count_others_if_due(limit);
        let others = self.others.load(Ordering::Acquire);
        // Sockets a connection may be served within: all of them, and a
        // little more for `/health` alone.
        let usable = limit.saturating_sub(others + margin(limit));
        let served = usable.saturating_sub(health_room(limit));
        if self.take(served) {
            return Admit::Serve(Ticket(self.clone()));
        }
        let room = health_room(limit);
        let peeking = self
            .peeking
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p < room).then_some(p + 1)
            })
            .is_ok();
        if peeking {
            let peeking = Peeking(self.clone());
            if self.take(usable) {
                return Admit::HealthOnly(Ticket(self.clone()), peeking);
            }
        }
        Admit::Shed
    }

    /// One more socket, if fewer than `below` are held.
    fn take(&self, below: usize) -> bool {
        self.sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s < below).then_some(s + 1)
            })
            .is_ok()
    }

    /// Sheds a connection: counts it, logs shedding (at most every
    /// 10 s) and answers it ([`answer_shed`]).
    pub(crate) fn shed(&self, stream: TcpStream) {
        answer_shed(stream);
        Counters::bump(&self.counters.shed);
        let now = self.millis();
        let last = self.logged_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .logged_ms
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                sockets = self.sockets(),
                other_files = self.others.load(Ordering::Relaxed),
                limit = self.limit,
                "near the open-file limit: new connections are shed with 503 until sockets close"
            );
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts the other open files again (off the accept loop) if the
    /// sockets hold a quarter of the limit and the last count is old.
    fn count_others_if_due(self: &Arc<Self>, limit: usize) {
        if self.sockets() < limit / 4 {
            return;
        }
        let due = self
            .millis()
            .saturating_sub(self.counted_ms.load(Ordering::Relaxed))
            >= SAMPLE_EVERY.as_millis() as u64;
        if due && !self.counting.swap(true, Ordering::AcqRel) {
            let admission = self.clone();
            tokio::task::spawn_blocking(move || admission.count_others());
        }
    }

    /// Counts the open files in `/proc/self/fd` and keeps those that are
    /// not accepted sockets.
    fn count_others(&self) {
        if let Some(open) = open_files() {
            let others = open.saturating_sub(self.sockets()).max(OTHERS_FLOOR);
            self.others.store(others, Ordering::Release);
        }
        self.counted_ms.store(self.millis(), Ordering::Relaxed);
        self.counting.store(false, Ordering::Release);
    }

    /// Whether a connection let into the files kept for `/health` asks
    /// for `GET /health` or `GET /metrics`: waits up to [`PEEK`] for its
    /// request line without reading it.
    pub(crate) async fn health_only(stream: &TcpStream) -> bool {
        let mut head = [0u8; 16];
        match tokio::time::timeout(PEEK, stream.peek(&mut head)).await {
            Ok(Ok(n)) => asks_for_health(&head[..n]),
            _ => false,
        }
    }
}

/// Whether a request line begins `GET /health` or `GET /metrics` (the path
/// ending there or at a query).
fn asks_for_health(head: &[u8]) -> bool {
    [&b"GET /health"[..], &b"GET /metrics"[..]]
        .iter()
        .any(|path| {
            head.strip_prefix(*path)
                .is_some_and(|rest| matches!(rest.first(), Some(b' ' | b'?')))
        })
}

/// The number of files open in this process (`/proc/self/fd`, less the
/// directory's own); `None` where it cannot be read.
fn open_files() -> Option<usize> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count().saturating_sub(1))
}

/// Answers a shed connection 503 with a `Retry-After` of 1 to 5 s
/// (jittered) and closes it. What the client already sent is read first
/// (without waiting), so closing does not reset the connection before
/// the answer is read; dropping the stream closes it.
fn answer_shed(stream: TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    let body = r#"{"error":"overloaded","message":"this gateway is near its open-file limit: retry shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        crate::capacity::retry_after_secs(),
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// A socket that holds its [`Ticket`] for as long as it is open, wherever
/// it goes (hyper's upgrade hands it to the WebSocket).
pub(crate) struct Counted {
    stream: TcpStream,
    _ticket: Ticket,
}

impl Counted {
    pub(crate) fn new(stream: TcpStream, ticket: Ticket) -> Self {
        Counted {
            stream,
            _ticket: ticket,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admission for `limit` files with `others` other files, never
    /// counted again.
    fn fixed(limit: usize, others: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limit: Some(limit),
            sockets: AtomicUsize::new(0),
            peeking: AtomicUsize::new(0),
            others: AtomicUsize::new(others),
            counted_ms: AtomicU64::new(0),
            counting: AtomicBool::new(true),
            born: Instant::now(),
            counters: Arc::new(Counters::default()),
            logged_ms: AtomicU64::new(0),
        })
    }

    #[test]
    fn sockets_are_served_up_to_the_margin_and_the_health_room_then_shed() {
        let admission = fixed(300, 40);
        // 300 - 40 others - 16 margin = 244 usable; 16 of them for /health.
        let mut held = Vec::new();
        for _ in 0..228 {
            match admission.admit() {
                Admit::Serve(t) => held.push(t),
                _ => panic!("served below the health room"),
            }
        }
        let mut peeking = Vec::new();
        for _ in 0..16 {
            match admission.admit() {
                Admit::HealthOnly(t, p) => peeking.push((t, p)),
                _ => panic!("the health room lets in /health"),
            }
        }
        assert!(matches!(admission.admit(), Admit::Shed));
        assert_eq!(admission.sockets(), 244);
        // Closed sockets make room again: first the health room's, then
        // the served ones'.
        drop(peeking);
        assert!(matches!(admission.admit(), Admit::HealthOnly(..)));
        held.pop();
        assert!(matches!(admission.admit(), Admit::Serve(_)));
        assert_eq!(admission.sockets(), 227);
    }

    #[test]
    fn without_a_limit_nothing_is_shed() {
        let admission = Admission::new(None, Arc::new(Counters::default()));
        let held: Vec<_> = (0..1000).map(|_| admission.admit()).collect();
        assert!(held.iter().all(|a| matches!(a, Admit::Serve(_))));
        assert_eq!(admission.sockets(), 1000);
        drop(held);
        assert_eq!(admission.sockets(), 0);
    }

    #[test]
    fn the_other_open_files_are_counted() {
        let admission = Admission::new(Some(100_000), Arc::new(Counters::default()));
        let before = admission.others.load(Ordering::Relaxed);
        let files: Vec<_> = (0..200)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        admission.count_others();
        let after = admission.others.load(Ordering::Relaxed);
        drop(files);
        // Other tests open files meanwhile: at least these 200 are seen.
        assert!(
            after >= before.max(OTHERS_FLOOR) + 200 - 50,
            "{before} -> {after}"
        );
    }

    #[test]
    fn only_health_and_metrics_request_lines_are_let_into_the_health_room() {
        for yes in [
            "GET /health HTTP/1.1",
            "GET /metrics HTTP/1.1",
            "GET /health?x=1 H",
        ] {
            assert!(asks_for_health(yes.as_bytes()), "{yes}");
        }
        for no in [
            "GET /ws?user_id=a",
            "GET /healthz HTTP/1.1",
            "POST /health HTTP/1.1",
            "GET /metric",
            "",
        ] {
            assert!(!asks_for_health(no.as_bytes()), "{no}");
        }
    }

    proptest::proptest! {
        /// Whatever is admitted and closed, in any order, the sockets held
        /// never pass the limit less the other files and the margin; only
        /// connections waiting for `/health` use the last room; and the
        /// count is exactly the tickets alive.
        #[test]
        fn never_past_the_limit(
            limit in 16usize..600,
            others in 0usize..200,
            steps in proptest::collection::vec(0u8..4, 1..400),
        ) {
            let admission = fixed(limit, others);
            let usable = limit.saturating_sub(others + margin(limit));
            let mut served = Vec::new();
            let mut waiting = Vec::new();
            for step in steps {
                match step {
                    0 | 1 => match admission.admit() {
                        Admit::Serve(t) => {
                            proptest::prop_assert!(admission.sockets() <= usable.saturating_sub(health_room(limit)));
                            served.push(t);
                        }
                        Admit::HealthOnly(t, p) => waiting.push((t, p)),
                        Admit::Shed => proptest::prop_assert!(
                            admission.sockets() >= usable.saturating_sub(health_room(limit))
                        ),
                    },
                    2 => { served.pop(); }
                    _ => { waiting.pop(); }
                }
                proptest::prop_assert!(admission.sockets() <= usable);
                proptest::prop_assert!(waiting.len() <= health_room(limit));
                proptest::prop_assert_eq!(admission.sockets(), served.len() + waiting.len());
            }
        }
    }
}
