//! AG-UI over HTTP: `POST /ag-ui` (a drop-in endpoint for AG-UI's
//! `HttpAgent`: a `RunAgentInput` in, the run's events out as SSE),
//! `GET /ag-ui/runs/{runId}/events` (follow or resume a run: after
//! `Last-Event-ID`, live until its end, any number of readers) and
//! `POST /ag-ui/runs/{runId}/cancel`. Each SSE message is one AG-UI event
//! as the agent sent it (`data:`), numbered in its run (`id:`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agui::ReadError;
use crate::agui_shared::{RunSource, SourceError};
use crate::agui_ws::{Refused, gone_message, not_found_message, open_run, unavailable_message};
use crate::state::AppState;
use wsc_core::RunAgent;

/// The largest `RunAgentInput` accepted.
const MAX_INPUT_BYTES: usize = 1 << 20;

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refusal(self.0, self.1, self.2)
    }
}

use crate::stream::json_refusal as refusal;

/// The request's user, as `/ws` authenticates: in dev mode
/// `X-Wsc-User-Id` or `?user_id=`, with JWT `Authorization: Bearer` or
/// `?token=` (a browser `EventSource` cannot set headers).
fn user_of(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<String, Refused> {
    let mut query: HashMap<String, String> = HashMap::new();
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        query
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(user) = header("x-wsc-user-id") {
        query.insert("user_id".into(), user.to_owned());
    }
    if let Some(token) = header("authorization").and_then(|v| v.strip_prefix("Bearer ")) {
        query.insert("token".into(), token.to_owned());
    }
    crate::auth::authenticate(state, &query).map_err(|e| match e {
        crate::auth::AuthError::Unauthorized(m) => {
            Refused(StatusCode::UNAUTHORIZED, "unauthorized", m)
        }
        crate::auth::AuthError::InvalidUserId(m) => {
            Refused(StatusCode::BAD_REQUEST, "invalid_request", m)
        }
    })
}

/// Who sends the request, after the per-IP gate every request passes
/// first (draining, handshake backoff, as on `/ws`); else the refusal.
fn who(
    state: &AppState,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<String, Box<Response>> {
    if let Some(axum::Extension(ConnectInfo(peer))) = peer {
        let ip = wsc_rate_limiter::client_address(
            peer.ip(),
            headers,
            &state.config.http.trusted_proxies,
        );
        if let Some(refused) = crate::stream::gate(state, ip) {
            return Err(Box::new(refused));
        }
    }
    user_of(state, headers, uri).map_err(|r| Box::new(r.into_response()))
}

/// `POST /ag-ui`: starts the run the `RunAgentInput` names (or, for a
/// `runId` this user already runs or ran, follows that one: a repeated
/// request starts nothing) and streams its events from the first.
pub(crate) async fn run(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let user = match who(&state, peer, &headers, &uri) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    // A place for the stream first: no run is started that no one can read.
    let Some(place) = state.capacity.take() else {
        return crate::stream::at_capacity(&state);
    };
    // Read only now, the user known: at most MAX_INPUT_BYTES, within the
    // body timeout.
    let body = match crate::stream::read_body(&state, body, MAX_INPUT_BYTES).await {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be an AG-UI RunAgentInput (a JSON object)",
            );
        }
    };
    let run = match RunAgent::from_input(input) {
        Ok(run) => run,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    match open_run(&state, &user, run).await {
        Ok(source) => stream(source, 0, place),
        Err(refused) => refused.into_response(),
    }
}

/// `GET /ag-ui/runs/{runId}/events`: the run's events after
/// `Last-Event-ID` (or `?last_event_id=`; from the first without either),
/// live until its end.
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let user = match who(&state, peer, &headers, &uri) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    // The header an EventSource sends when it reconnects; else
    // `?last_event_id=` (what an app re-creating one can set).
    let given = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().map(str::to_owned).unwrap_or_default()),
        None => form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "last_event_id")
            .map(|(_, v)| v.into_owned()),
    };
    let after = match given.map(|v| v.trim().parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Last-Event-ID (or last_event_id) must be an event number",
            );
        }
    };
    let Some(place) = state.capacity.take() else {
        return crate::stream::at_capacity(&state);
    };
    let Some(mut source) = RunSource::find(&state, &user, &run_id) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            not_found_message(&run_id),
        );
    };
    match source.read_after(after).await {
        // A reader that has the run's last event: nothing more will come.
        // 204 is what stops a browser's EventSource from reconnecting.
        Ok(read) if read.ended && read.events.is_empty() => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => stream(source, after, place),
        Err(SourceError::Gone(ReadError::Gone { after, oldest })) => {
            refusal(StatusCode::GONE, "gone", gone_message(after, oldest))
        }
        Err(SourceError::NotFound) => refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            not_found_message(&run_id),
        ),
        Err(SourceError::Unavailable(e)) => unavailable(&e),
    }
}

/// 503: the store holding the run does not answer.
fn unavailable(e: &wsc_core::StoreError) -> Response {
    let mut response = refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        unavailable_message(e),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// `POST /ag-ui/runs/{runId}/cancel`: stops the run; every reader gets
/// `RUN_FINISHED {outcome: {type: "cancelled"}}` as its last event.
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let user = match who(&state, peer, &headers, &uri) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    match crate::agui_ws::stop(&state, &user, &run_id).await {
        Ok(true) => (StatusCode::ACCEPTED, Json(json!({"cancelled": run_id}))).into_response(),
        Ok(false) => refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} (or it has ended)", not_found_message(&run_id)),
        ),
        Err(e) => unavailable(&e),
    }
}

/// How often a stream with nothing to send writes an SSE comment: keeps
/// proxies from closing it, and lets the gateway notice a reader that has
/// gone (the run's orphan timeout counts from then).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// A reader of a run, for its SSE response: where it is, and where it
/// reads (counted as the run's reader while it lives).
struct Reader {
    source: RunSource,
    last: u64,
    /// Its place under the gateway's connection cap.
    _place: crate::capacity::Place,
}

/// The last message of a stream that cannot go on: an SSE `error` event,
/// never a silent end.
fn error_event(code: &str, message: String) -> Bytes {
    let data = json!({"error": code, "message": message});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// The SSE response: the run's events after `after`, then live until the
/// run's end. A reader that falls behind the log's byte budget (or whose
/// store stays unreachable) gets a last `event: error` message saying so,
/// never a silent gap. The reader counts as following the run while the
/// response lives.
fn stream(source: RunSource, after: u64, place: crate::capacity::Place) -> Response {
    let reader = Reader {
        source,
        last: after,
        _place: place,
    };
    let body = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let last = reader.last;
        loop {
            match reader.source.read_patiently(last).await {
                Err(SourceError::Gone(ReadError::Gone { oldest, .. })) => {
                    let message = format!(
                        "events after {last} are no longer held (the oldest held is {oldest})"
                    );
                    return Some((Ok::<_, std::io::Error>(error_event("gone", message)), None));
                }
                Err(SourceError::NotFound) => {
                    let message = "the run is no longer held (expired)".to_owned();
                    return Some((Ok(error_event("not_found", message)), None));
                }
                Err(SourceError::Unavailable(e)) => {
                    let message = unavailable_message(&e);
                    return Some((Ok(error_event("unavailable", message)), None));
                }
                Ok(read) if !read.events.is_empty() => {
                    let mut text =
                        String::with_capacity(read.events.iter().map(|(_, e)| e.len() + 32).sum());
                    for (number, event) in &read.events {
                        text.push_str("id: ");
                        text.push_str(&number.to_string());
                        text.push('\n');
                        for line in event.split('\n') {
                            text.push_str("data: ");
                            text.push_str(line.strip_suffix('\r').unwrap_or(line));
                            text.push('\n');
                        }
                        text.push('\n');
                    }
                    reader.last = read.events.last().map_or(last, |(n, _)| *n);
                    let more = (!read.ended).then_some(reader);
                    return Some((Ok(Bytes::from(text)), more));
                }
                Ok(read) if read.ended => return None,
                Ok(_) => {
                    tokio::select! {
                        () = reader.source.wait(last) => {
                            // Let the run append what it has at hand: one
                            // write for several events.
                            tokio::task::yield_now().await;
                        }
                        () = tokio::time::sleep(KEEP_ALIVE) => {
                            let comment = Bytes::from_static(b": keep-alive\n\n");
                            return Some((Ok(comment), Some(reader)));
                        }
                    }
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
