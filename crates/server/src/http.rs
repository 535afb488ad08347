//! HTTP: the WebSocket upgrade with its checks, `/health`, `/metrics`,
//! `/api/stats`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use wsc_reconnection::ResumeRequest;

use crate::agui_ws::Dialect;
use crate::auth::{AuthError, authenticate};
use crate::state::AppState;
use crate::stream::refuse;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/ws", get(upgrade))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .route("/api/publish", axum::routing::post(publish))
        .merge(ag_ui_routes(&state))
        .with_state(state)
}

/// The AG-UI endpoints, with CORS for the configured origins (a browser
/// app on another origin: `HttpAgent`'s `POST`, an `EventSource`'s `GET`).
fn ag_ui_routes(state: &AppState) -> Router<Arc<AppState>> {
    let routes = Router::new()
        .route("/ag-ui", axum::routing::post(crate::agui_http::run))
        .route("/ag-ui/runs/{run_id}/events", get(crate::agui_http::events))
        .route(
            "/ag-ui/runs/{run_id}/cancel",
            axum::routing::post(crate::agui_http::cancel),
        );
    let origins = &state.config.http.cors_origins;
    if origins.is_empty() {
        return routes;
    }
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| axum::http::HeaderValue::from_str(o).ok()),
        )
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::ACCEPT,
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static("x-wsc-user-id"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    routes.layer(cors)
}

/// The query's parameters; a parameter given twice is refused (which one
/// would count is a guess an attacker could exploit, e.g.
/// `user_id=alice&user_id=bob`).
fn parse_query(query: &str) -> Result<HashMap<String, String>, String> {
    let mut params = HashMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if params.contains_key(key.as_ref()) {
            return Err(format!(
                "parameter `{}` appears more than once",
                crate::logging::log_safe(&key)
            ));
        }
        params.insert(key.into_owned(), value.into_owned());
    }
    Ok(params)
}

/// The longest query string `/ws` accepts: credentials and a resume triple
/// fit in a fraction of it.
const MAX_QUERY_BYTES: usize = 4 * 1024;

async fn upgrade(
    State(state): State<Arc<AppState>>,
    connect_info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    // Every per-IP budget needs the peer: a router merged into an app
    // served without it says so (once per request, not a panic).
    let Some(axum::Extension(ConnectInfo(addr))) = connect_info else {
        tracing::error!(
            "/ws has no peer address: serve the router with into_make_service_with_connect_info::<SocketAddr>()"
        );
        return refuse(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "misconfigured",
            "the server does not know the peer address: serve the router with \
             `into_make_service_with_connect_info::<SocketAddr>()`"
                .into(),
            None,
        );
    };
    // Behind a trusted proxy, the client it names; else the peer.
    let ip =
        wsc_rate_limiter::client_address(addr.ip(), &headers, &state.config.http.trusted_proxies);
    if let Some(refused) = crate::stream::gate(&state, ip) {
        return refused;
    }
    // Checked before anything is parsed or looked up.
    let query_len = uri.query().map_or(0, str::len);
    if query_len > MAX_QUERY_BYTES {
        state.limiter.record_handshake_failure(ip);
        return refuse(
            &state,
            StatusCode::URI_TOO_LONG,
            "query_too_long",
            format!("the query string is {query_len} bytes; at most {MAX_QUERY_BYTES}"),
            None,
        );
    }
    // A bad query counts against the IP's handshakes, and says what is
    // wrong with it.
    let bad_query = |message: String| {
        state.limiter.record_handshake_failure(ip);
        refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            message,
            None,
        )
    };
    let query = match parse_query(uri.query().unwrap_or("")) {
        Ok(q) => q,
        Err(message) => return bad_query(message),
    };
    // A malformed resume is refused rather than read as "from seq 0",
    // which would deliver frames the client already has.
    let resume = match ResumeRequest::from_query(uri.query().unwrap_or("")) {
        Ok(resume) => resume,
        Err(e) => return bad_query(e.to_string()),
    };
    let dialect = match Dialect::from_query(query.get("protocol").map(String::as_str)) {
        Ok(dialect) => dialect,
        Err(message) => return bad_query(message),
    };
    let user = match authenticate(&state, &query) {
        Ok(user) => user,
        Err(e) => {
            state.limiter.record_handshake_failure(ip);
            let (status, code, message) = match e {
                AuthError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
                AuthError::InvalidUserId(m) => (StatusCode::BAD_REQUEST, "invalid_query", m),
            };
            return refuse(&state, status, code, message, None);
        }
    };
    crate::stream::admit(state, ws, user, ip, resume, None, dialect).await
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // Fresh: a load balancer must see a run failing now, not a second ago.
    let snapshot = state.refresh_health().await;
    let mut report = snapshot.report.clone();
    // At its connection cap, the gateway serves whom it holds and refuses
    // new clients (503 `at_capacity`): a warning, not a failure.
    let (open, max) = (state.capacity.open(), state.capacity.max());
    if open >= max {
        report.status = report.status.max(wsc_event_monitor::HealthStatus::Warning);
        report.issues.push(format!(
            "at its connection cap ({max}): new connections are refused"
        ));
    }
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
        "open_connections": open,
        "max_connections": max,
        "sessions": snapshot.sessions,
        "runs": report.total_runs,
        "active_runs": report.active_runs,
        "alerts": snapshot.system.active_alerts,
    }));
    (code, body)
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    // The first scrape after start may come before the first sample.
    let _ = state.health_snapshot().await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = {
        let registry = state.metrics.read().unwrap_or_else(|e| e.into_inner());
        crate::metrics::encode(&registry, accept)
    };
    ([(header::CONTENT_TYPE, content_type)], body)
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
        "runs": state.runs.snapshot(state.clock.now()),
        "draining": *state.shutdown.borrow(),
        "latest": series.last(),
        "series": series,
    }))
}

/// `POST /api/publish` (see `docs/agents.md`): one server frame into a session, or
/// into every live or resumable session of a user; idempotent by
/// `message_id` per session. 404 without `--api-key`, 401 without the
/// key, 400 for a body of another shape.
async fn publish(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let plain = crate::stream::json_refusal;
    let Some(key) = &state.config.http.api_key else {
        return plain(
            StatusCode::NOT_FOUND,
            "not_found",
            "the publish API is off: start the gateway with --api-key".into(),
        );
    };
    // Who asks, before anything of the body is read: an address that keeps
    // presenting wrong keys backs off as after failed handshakes.
    let ip = peer.map(|axum::Extension(ConnectInfo(peer))| {
        wsc_rate_limiter::client_address(peer.ip(), &headers, &state.config.http.trusted_proxies)
    });
    if let Some(ip) = ip
        && let Some(refused) = crate::stream::gate(&state, ip)
    {
        return refused;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !key.matches(presented) {
        if let Some(ip) = ip {
            state.limiter.record_handshake_failure(ip);
        }
        return plain(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key (Authorization: Bearer KEY)".into(),
        );
    }
    let body =
        match crate::stream::read_body(&state, body, state.config.http.max_publish_bytes).await {
            Ok(body) => body,
            Err(refused) => return *refused,
        };
    let request = match crate::publish::PublishRequest::parse(&body) {
        Ok(request) => request,
        Err(message) => return plain(StatusCode::BAD_REQUEST, "invalid_request", message),
    };
    match crate::publish::publish(&state, request).await {
        Ok(sessions) => (StatusCode::OK, Json(json!({"sessions": sessions}))).into_response(),
        Err(crate::publish::PublishError::Unavailable(message)) => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
        Err(crate::publish::PublishError::Run(message)) => {
            plain(StatusCode::BAD_REQUEST, "run_conflict", message)
        }
        Err(crate::publish::PublishError::Invalid(message)) => {
            plain(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
        Err(crate::publish::PublishError::FanOut(message)) => {
            plain(StatusCode::PAYLOAD_TOO_LARGE, "fanout_too_large", message)
        }
    }
}
