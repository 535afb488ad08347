//! A tower [`Layer`] that rate-limits HTTP requests and WebSocket upgrades
//! with a [`WebSocketRateLimiter`]'s windows, keyed by the client address
//! (behind trusted proxies), a header, an axum extractor, or any function
//! of the request; a
//! refusal is answered 429 with `Retry-After` and a JSON body (the
//! [`IntoResponse`] of [`RateLimitExceeded`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::forwarded::{IpNet, client_address};
use crate::{RateLimitExceeded, WebSocketRateLimiter};

/// A function giving a request's key from its head.
pub type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The future of an extractor's key ([`KeyBy::extractor`]).
type KeyFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// An axum extractor run on a request's head, mapped to a key.
type ExtractFn = Arc<dyn for<'a> Fn(&'a mut Parts) -> KeyFuture<'a> + Send + Sync>;

/// What a request is counted under.
#[derive(Clone)]
pub enum KeyBy {
    /// The client address: the peer (`ConnectInfo<SocketAddr>`, so serve
    /// with `into_make_service_with_connect_info`), or the client a trusted
    /// proxy names (see [`client_address`]).
    PeerIp {
        /// Proxies whose `X-Forwarded-For` / `Forwarded` are believed.
        trusted_proxies: Vec<IpNet>,
    },
    /// A header's value (e.g. an API key); requests without it pass.
    Header(HeaderName),
    /// Any function of the request's head; `None` lets the request pass.
    Custom(KeyFn),
    /// An axum extractor's value (built with [`KeyBy::extractor`]).
    Extractor(ExtractFn),
}

impl std::fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyBy::PeerIp { trusted_proxies } => f
                .debug_struct("PeerIp")
                .field("trusted_proxies", trusted_proxies)
                .finish(),
            KeyBy::Header(name) => f.debug_tuple("Header").field(name).finish(),
            KeyBy::Custom(_) => f.write_str("Custom(..)"),
            KeyBy::Extractor(_) => f.write_str("Extractor(..)"),
        }
    }
}

impl KeyBy {
    /// Keyed by a function of the request's head.
    pub fn custom(f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyBy::Custom(Arc::new(f))
    }

    /// Keyed by what an axum extractor `E` (any
    /// [`FromRequestParts`] with state `()`: an authenticated user, a
    /// typed header, a path or query parameter) makes of the request,
    /// mapped to a key by `key`. A request the extractor rejects, or that
    /// `key` maps to `None`, passes uncounted: the route's own extractor
    /// answers it (put a [`KeyBy::PeerIp`] layer outside for such traffic).
    ///
    /// ```
    /// use axum::extract::Query;
    /// use std::collections::HashMap;
    /// use wsc_rate_limiter::KeyBy;
    ///
    /// let by_tenant = KeyBy::extractor(|Query(q): Query<HashMap<String, String>>| {
    ///     q.get("tenant").cloned()
    /// });
    /// # let _ = by_tenant;
    /// ```
    pub fn extractor<E, F>(key: F) -> Self
    where
        E: FromRequestParts<()> + 'static,
        F: Fn(E) -> Option<String> + Send + Sync + 'static,
    {
        let key = Arc::new(key);
        KeyBy::Extractor(Arc::new(move |parts: &mut Parts| -> KeyFuture<'_> {
            let key = key.clone();
            Box::pin(async move {
                E::from_request_parts(parts, &())
                    .await
                    .ok()
                    .and_then(|e| key(e))
            })
        }))
    }

    /// The key of a request whose head needs no extractor; `Err` for an
    /// [`Extractor`](KeyBy::Extractor), which runs in the request's future.
    fn key(&self, parts: &Parts) -> Result<Option<String>, ExtractFn> {
        Ok(match self {
            KeyBy::PeerIp { trusted_proxies } => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| {
                    client_address(addr.ip(), &parts.headers, trusted_proxies).to_string()
                }),
            KeyBy::Header(name) => parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!("{name}:{v}")),
            KeyBy::Custom(f) => f(parts),
            KeyBy::Extractor(f) => return Err(f.clone()),
        })
    }
}

/// Rate-limits every request of the wrapped service with `limiter`'s
/// message windows, per key.
///
/// ```
/// use std::net::SocketAddr;
/// use axum::{Router, routing::get};
/// use wsc_rate_limiter::{KeyBy, RateLimitConfig, RateLimitLayer, WebSocketRateLimiter};
///
/// let limiter = WebSocketRateLimiter::new(RateLimitConfig {
///     max_messages_per_minute: 60,
///     max_messages_per_hour: 0,
///     ..Default::default()
/// });
/// let app: Router = Router::new()
///     .route("/search", get(|| async { "results" }))
///     .layer(RateLimitLayer::new(limiter, KeyBy::PeerIp { trusted_proxies: vec![] }));
/// // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: WebSocketRateLimiter,
    key: KeyBy,
}

impl RateLimitLayer {
    /// A layer counting requests in `limiter`'s windows, keyed by `key`.
    pub fn new(limiter: WebSocketRateLimiter, key: KeyBy) -> Self {
        RateLimitLayer { limiter, key }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: WebSocketRateLimiter,
    key: KeyBy,
}

impl<S, B> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let (mut parts, body) = request.into_parts();
        let key = self.key.key(&parts);
        Box::pin(async move {
            let key = match key {
                Ok(key) => key,
                Err(extract) => extract(&mut parts).await,
            };
            let request = Request::from_parts(parts, body);
            if let Some(key) = key
                && let Err(refused) = limiter.record_request(&key).await
            {
                return Ok(refused.into_response());
            }
            inner.call(request).await
        })
    }
}

/// 429 Too Many Requests, `Retry-After` in whole seconds (at least 1) when
/// waiting helps, and `{"error": "rate_limited", "message", "retry_after_ms"}`.
impl IntoResponse for RateLimitExceeded {
    fn into_response(self) -> Response {
        let retry_ms = self
            .retry_after
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let body = serde_json::json!({
            "error": "rate_limited",
            "message": self.to_string(),
            "retry_after_ms": retry_ms,
        });
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
