//! The HTTP/1.1 accept loop: hyper with a deadline for the request head and
//! a cap on its size, which `axum::serve` does not offer. Each connection
//! runs the router with its peer address as `ConnectInfo`; what is
//! accepted is admitted first (`crate::admission`), so a storm of
//! connections is shed before the process runs out of open files.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::admission::{Admission, Admit, Counted, Ticket};

/// How long in-flight HTTP requests (not WebSockets, which close with 1001
/// on their own) may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// Limits on what a client may do before its request is routed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadLimits {
    /// Time to send a complete request head.
    pub(crate) timeout: Duration,
    /// Largest request head in bytes (431 beyond it).
    pub(crate) max_bytes: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and gives in-flight requests up to [`DRAIN`] to finish.
/// `on_error` sees every connection that ended with an HTTP error (head
/// timeouts and oversized heads among them), for the metrics.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HeadLimits,
    admission: Arc<Admission>,
    on_error: impl Fn(&hyper::Error) + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_header_size(limits.max_bytes);
    // Every connection task holds a receiver: `true` asks it to finish its
    // request and close; `closed()` tells when the last one is gone.
    let (drain, draining) = tokio::sync::watch::channel(false);
    let serving = Arc::new(Serving {
        builder,
        router,
        draining,
        on_error,
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match admission.admit() {
            Admit::Serve(ticket) => {
                tokio::spawn(serving.clone().connection(stream, ticket, peer));
            }
            Admit::HealthOnly(ticket, peeking) => {
                let (serving, admission) = (serving.clone(), admission.clone());
                tokio::spawn(async move {
                    let health = Admission::health_only(&stream).await;
                    drop(peeking);
                    if health {
                        serving.connection(stream, ticket, peer).await;
                    } else {
                        drop(ticket);
                        admission.shed(stream);
                    }
                });
            }
            Admit::Shed => admission.shed(stream),
        }
    }
    drop(listener);
    let _ = drain.send(true);
    drop(serving);
    if tokio::time::timeout(DRAIN, drain.closed()).await.is_err() {
        tracing::warn!("in-flight http requests still running after the drain period");
    }
    Ok(())
}

/// What every connection is served with.
struct Serving<E> {
    builder: http1::Builder,
    router: Router,
    draining: tokio::sync::watch::Receiver<bool>,
    on_error: E,
}

impl<E: Fn(&hyper::Error) + Send + Sync + 'static> Serving<E> {
    /// Serves one admitted connection until it closes (or is upgraded:
    /// the socket, and its ticket, then live on in the WebSocket).
    async fn connection(self: Arc<Self>, stream: TcpStream, ticket: Ticket, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let router = self.router.clone();
        let service =
            hyper::service::service_fn(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(Counted::new(stream, ticket)), service)
            .with_upgrades();
        let mut draining = self.draining.clone();
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = until_draining(&mut draining) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        // Timeouts, oversized heads and resets end here; the client was
        // answered (431) or simply closed.
        if let Err(e) = ended {
            (self.on_error)(&e);
            tracing::debug!(%peer, error = %e, "http connection ended with an error");
        }
    }
}

/// Completes once shutdown begins (or the server is gone).
async fn until_draining(draining: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = draining.wait_for(|d| *d).await.map(|_| ());
}

/// An accept error: per-connection ones (reset before accept) are skipped;
/// others (out of file descriptors) are logged and retried after a pause,
/// so the loop does not spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
