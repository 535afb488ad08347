//! HTTP: the WebSocket upgrade with its checks, `/health`, `/metrics`,
//! `/api/stats`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use wsc_reconnection::ResumeRequest;

use crate::config::AuthMode;
use crate::state::{AppState, SessionHome};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/ws", get(upgrade))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .with_state(state)
}

/// A refusal before the upgrade: JSON `{error, message}`.
fn refuse(
    state: &AppState,
    status: StatusCode,
    code: &str,
    message: String,
    retry_after_secs: Option<u64>,
) -> Response {
    state
        .counters
        .refused_handshakes
        .fetch_add(1, Ordering::Relaxed);
    let body = wsc_core::HandshakeRefusal {
        error: code.to_owned(),
        message,
    };
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

/// The authenticated user, or why not.
fn authenticate(state: &AppState, query: &HashMap<String, String>) -> Result<String, String> {
    match &state.config.auth {
        AuthMode::Dev => match query.get("user_id").map(|u| u.trim()) {
            Some(u) if !u.is_empty() && u.len() <= 256 => Ok(u.to_owned()),
            Some(_) => Err("user_id must be 1 to 256 characters".to_owned()),
            None => Err("missing user_id (auth mode dev)".to_owned()),
        },
        AuthMode::Jwt { secret } => {
            let token = query.get("token").ok_or("missing token (auth mode jwt)")?;
            let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes())
                .map_err(|e| format!("the gateway's JWT secret is unusable: {e}"))?;
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            validation.set_required_spec_claims(&["exp", "sub"]);
            jsonwebtoken::decode::<Claims>(token, &key, &validation)
                .map(|data| data.claims.sub)
                .map_err(|e| format!("invalid token: {e}"))
        }
    }
}

/// The longest query string `/ws` accepts: credentials and a resume triple
/// fit in a fraction of it.
const MAX_QUERY_BYTES: usize = 4 * 1024;

async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    // Checked before anything is parsed or looked up.
    let query_len = uri.query().map_or(0, str::len);
    if query_len > MAX_QUERY_BYTES {
        state.limiter.record_handshake_failure(addr.ip());
        return refuse(
            &state,
            StatusCode::URI_TOO_LONG,
            "query_too_long",
            format!("the query string is {query_len} bytes; at most {MAX_QUERY_BYTES}"),
            None,
        );
    }
    let query: HashMap<String, String> = match Query::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_query",
                e.body_text(),
                None,
            );
        }
    };
    // A malformed resume is refused rather than read as "from seq 0",
    // which would deliver frames the client already has.
    let resume = match ResumeRequest::from_query(uri.query().unwrap_or("")) {
        Ok(resume) => resume,
        Err(e) => {
            state.limiter.record_handshake_failure(addr.ip());
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_query",
                e.to_string(),
                None,
            );
        }
    };
    if *state.shutdown.borrow() {
        return refuse(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down".into(),
            None,
        );
    }
    let ip = addr.ip();
    if let Err(e) = state.limiter.check_handshake(ip) {
        let secs = e.retry_after.map(|d| d.as_secs_f64().ceil() as u64);
        return refuse(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            e.to_string(),
            secs,
        );
    }
    let user = match authenticate(&state, &query) {
        Ok(user) => user,
        Err(message) => {
            state.limiter.record_handshake_failure(ip);
            return refuse(
                &state,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message,
                None,
            );
        }
    };
    let connection_id = state.next_id("conn");
    let permit = match state.limiter.acquire_connection(&user, &connection_id) {
        Ok(permit) => permit,
        Err(e) => {
            return refuse(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                e.to_string(),
                Some(1),
            );
        }
    };
    state.limiter.record_handshake_success(ip);
    if let Some(redis) = &state.redis {
        let unavailable = |message: &str| {
            refuse(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message.to_owned(),
                Some(1),
            )
        };
        // A session started while Redis was unreachable lives in one
        // node's memory: send its resume on (the client's next attempt
        // goes to another gateway) rather than refuse it and lose frames.
        let home = resume.as_ref().map(|r| state.session_home(&r.session_id));
        if let (Some(r), Some(SessionHome::Elsewhere)) = (&resume, home) {
            return refuse(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "session_elsewhere",
                format!(
                    "session {} is held by another gateway (it started while redis was unreachable); retry there",
                    r.session_id
                ),
                Some(1),
            );
        }
        let remote_resume = home.is_some_and(|h| h != SessionHome::Here);
        // Down: fail-closed refuses everything; fail-open still serves new
        // sessions and this node's own, but a resume must wait for the
        // store that holds it.
        if !state.counters.store_is_up() && (redis.fail_closed() || remote_resume) {
            return unavailable("shared state (redis) is unreachable; retry shortly");
        }
        let cap = state.config.max_connections_per_user;
        match redis.connections.acquire(&user, &connection_id, cap).await {
            Ok(true) => {}
            Ok(false) => {
                return refuse(
                    &state,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("user {user} is at its limit of {cap} connections (all gateways)"),
                    Some(1),
                );
            }
            Err(e) => {
                state.redis_failed();
                tracing::warn!(error = %e, "connection count unavailable");
                if redis.fail_closed() || remote_resume {
                    return unavailable("shared state (redis) is unreachable; retry shortly");
                }
            }
        }
    }
    // Frames past max_frame_bytes are closed with 1009 by the connection;
    // the transport limit only guards against absurd sizes.
    let limit = state.config.max_frame_bytes.saturating_mul(4).max(1024);
    // tungstenite reserves its read buffer up front (128 KiB by default):
    // most of an idle connection's memory. 8 KiB reads are plenty for
    // agent frames; larger frames still arrive whole, in more reads.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(8 * 1024)
        .on_upgrade(move |socket| {
            crate::connection::run(state, socket, user, connection_id, resume, permit, addr)
        })
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // Computed by the sampler once a second, not per request.
    let snapshot = state.health_snapshot().await;
    let report = &snapshot.report;
    let draining = *state.shutdown.borrow();
    // 503 while draining, so a load balancer stops sending clients here.
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Json(json!({
        "status": if draining { "shutting_down" } else { report.status.as_str() },
        "issues": report.issues,
        "connections": snapshot.system.total_active_connections,
        "sessions": snapshot.sessions,
        "runs": report.total_runs,
        "active_runs": report.active_runs,
        "alerts": snapshot.system.active_alerts,
    }));
    (code, body)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut text = state.perf.render_prometheus();
    let s = state.stats();
    let report = state.monitor.check_health().await;
    let sessions = state.sessions.session_count().await.unwrap_or(0);
    let mut add = |name: &str, kind: &str, help: &str, value: f64| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    add(
        "wsc_gateway_connections_total",
        "counter",
        "WebSocket connections accepted.",
        s.connections as f64,
    );
    add(
        "wsc_gateway_refused_handshakes_total",
        "counter",
        "Handshakes refused before the upgrade.",
        s.refused_handshakes as f64,
    );
    add(
        "wsc_gateway_rate_limited_total",
        "counter",
        "Client frames refused by the rate limiter.",
        s.rate_limited as f64,
    );
    add(
        "wsc_gateway_resumes_total",
        "counter",
        "Sessions resumed.",
        s.resumes as f64,
    );
    add(
        "wsc_gateway_resumes_refused_total",
        "counter",
        "Resumes refused.",
        s.resumes_refused as f64,
    );
    add(
        "wsc_gateway_runs_total",
        "counter",
        "Agent runs started.",
        s.runs as f64,
    );
    add(
        "wsc_gateway_frames_sent_total",
        "counter",
        "Frames sent to clients.",
        s.frames_sent as f64,
    );
    add(
        "wsc_gateway_slow_clients_total",
        "counter",
        "Connections dropped for not reading fast enough (sessions kept).",
        s.slow_clients as f64,
    );
    add(
        "wsc_gateway_http_head_timeouts_total",
        "counter",
        "Connections closed for not sending a complete request head in time.",
        s.head_timeouts as f64,
    );
    add(
        "wsc_gateway_http_heads_too_large_total",
        "counter",
        "Request heads refused with 431.",
        s.heads_too_large as f64,
    );
    add(
        "wsc_gateway_repeated_starts_total",
        "counter",
        "start_agent frames repeating a started run's message_id (no second run).",
        s.repeated_starts as f64,
    );
    add(
        "wsc_gateway_sessions",
        "gauge",
        "Sessions held.",
        sessions as f64,
    );
    add(
        "wsc_gateway_outbox_events",
        "gauge",
        "Agent events waiting for the session store to come back.",
        state.outbox.len() as f64,
    );
    add(
        "wsc_gateway_outbox_dropped_total",
        "counter",
        "Agent events dropped from the outbox (session gone or queue full).",
        state.outbox.dropped.load(Ordering::Relaxed) as f64,
    );
    if let Some(redis) = &state.redis {
        add(
            "wsc_gateway_redis_up",
            "gauge",
            "Whether Redis answered the last health check.",
            f64::from(u8::from(state.counters.store_is_up())),
        );
        add(
            "wsc_gateway_redis_errors_total",
            "counter",
            "Redis calls that failed.",
            s.redis_errors as f64,
        );
        add(
            "wsc_gateway_local_fallback_sessions_total",
            "counter",
            "Sessions started in memory while Redis was unreachable.",
            s.local_fallback_sessions as f64,
        );
        add(
            "wsc_gateway_limiter_local_decisions_total",
            "counter",
            "Rate-limit decisions made in memory while Redis was unreachable.",
            redis.limiter_store.fallbacks() as f64,
        );
    }
    add(
        "wsc_gateway_tracked_users",
        "gauge",
        "Users tracked by the rate limiter.",
        state.limiter.tracked_users() as f64,
    );
    add(
        "wsc_event_monitor_runs",
        "gauge",
        "Agent runs tracked.",
        report.total_runs as f64,
    );
    add(
        "wsc_event_monitor_silent_failures_total",
        "counter",
        "Event order violations.",
        report.total_silent_failures as f64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// The live dashboard: one self-contained page (no external assets) that
/// polls `/api/stats` every second.
async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.html"),
    )
}

async fn stats(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let snapshot = state.health_snapshot().await;
    let series = state.telemetry.series();
    Json(json!({
        "gateway": state.stats(),
        "health": snapshot.report,
        "system": snapshot.system,
        "sessions": snapshot.sessions,
        "draining": *state.shutdown.borrow(),
        "latest": series.last(),
        "series": series,
    }))
}
