//! [`HttpAgent`]: an [`AgentRunner`] that runs each agent run on an
//! upstream HTTP backend (AG-UI or wsc frames over SSE or NDJSON), as the
//! project's `docs/agents.md` describes.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use wsc_upstream::{AgentProtocol, StreamFormat, StreamReader, UpstreamMapper};

use crate::run::{AgentRequest, AgentRunner, EventSink};

/// At most this many events of an agent's stream reach a run's readers in
/// one wake-up.
const BATCH_EVENTS: usize = 256;

/// Where and how to reach an upstream agent backend.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpAgentConfig {
    /// The backend's URL; one `POST` per run (`http://` only: the backend
    /// is a sidecar or an internal service).
    pub url: String,
    /// What it streams (default AG-UI).
    pub protocol: AgentProtocol,
    /// Sent as `Authorization: Bearer …` (never logged).
    pub token: Option<String>,
    /// The longest a run may take in all (default 600 s).
    pub timeout: Duration,
    /// The longest the backend may stay silent: no response head, or no
    /// complete event of the stream — bytes that complete no event do not
    /// count (default 60 s).
    pub idle_timeout: Duration,
    /// Requests to the backend open at once, all users together (default
    /// 512): each holds a socket. A run beyond it waits for one to end, at
    /// most `idle_timeout`, then ends with `agent_error {code:
    /// "upstream_busy"}`.
    pub max_requests: usize,
}

impl std::fmt::Debug for HttpAgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAgentConfig")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_requests", &self.max_requests)
            .finish()
    }
}

impl HttpAgentConfig {
    /// An AG-UI backend at `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        HttpAgentConfig {
            url: url.into(),
            protocol: AgentProtocol::AgUi,
            token: None,
            timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60),
            max_requests: 512,
        }
    }
}

/// Runs agent runs on an upstream HTTP backend: one streaming `POST` per
/// run; the backend's events (AG-UI, or wsc frames) become the run's wsc
/// frames through `wsc_upstream`, each emitted through the run's
/// [`EventSink`] (recorded, numbered, buffered, delivered). Every run ends
/// with exactly one terminal frame: `agent_completed`, or `agent_error`
/// with `code` `agent_error` (the backend said so), `upstream_error`
/// (unreachable, a non-2xx answer, a body that is not the protocol, a
/// stream that ends early), `upstream_timeout` (silent for
/// `idle_timeout`, or longer than `timeout` in all) or `upstream_busy`
/// (`max_requests` were open for all of `idle_timeout`).
#[derive(Debug)]
pub struct HttpAgent {
    config: HttpAgentConfig,
    client: Client<HttpConnector, Full<Bytes>>,
    /// One permit per request that may be open.
    requests: tokio::sync::Semaphore,
}

impl HttpAgent {
    /// A runner for `config` (call inside a tokio runtime).
    pub fn new(config: HttpAgentConfig) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let requests = tokio::sync::Semaphore::new(config.max_requests.max(1));
        HttpAgent {
            config,
            client,
            requests,
        }
    }
}

/// Why a run ended early: the terminal frame's `code` and `message`, and
/// for `upstream_protocol` the AG-UI rule the backend broke.
struct Failure(&'static str, String, Option<&'static str>);

impl Failure {
    fn new(code: &'static str, message: String) -> Self {
        Failure(code, message, None)
    }
}

impl From<wsc_upstream::UpstreamError> for Failure {
    fn from(e: wsc_upstream::UpstreamError) -> Self {
        Failure(e.code(), e.to_string(), e.rule())
    }
}

impl HttpAgent {
    fn body(&self, request: &AgentRequest) -> Value {
        let thread_id = request
            .thread_id
            .clone()
            .unwrap_or_else(|| format!("thread-{}", request.run_id));
        match self.config.protocol {
            // A client's own RunAgentInput goes to the backend unchanged.
            AgentProtocol::AgUi if request.ag_ui.is_some() => {
                request.ag_ui.clone().unwrap_or_default()
            }
            AgentProtocol::AgUi => json!({
                "threadId": thread_id,
                "runId": request.run_id,
                "messages": [{"id": format!("{}-input", request.run_id), "role": "user", "content": request.input}],
                "tools": [],
                "context": [],
                "state": {},
                "forwardedProps": {"user_id": request.user_id, "agent_name": request.agent_name},
            }),
            AgentProtocol::Wsc => json!({
                "run_id": request.run_id,
                "thread_id": thread_id,
                "user_id": request.user_id,
                "agent_name": request.agent_name,
                "input": request.input,
            }),
        }
    }

    /// Streams the run into `sink` until its terminal frame, or fails.
    async fn stream(
        &self,
        request: &AgentRequest,
        mapper: &mut dyn UpstreamMapper,
        sink: &EventSink,
    ) -> Result<(), Failure> {
        let idle = self.config.idle_timeout;
        // Held while the request is open (dropped with this future, also
        // when the run is stopped).
        let _request = tokio::time::timeout(idle, self.requests.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                Failure::new(
                    "upstream_busy",
                    format!(
                        "the gateway had {} requests open to the agent (its --max-upstream-requests) for {} s; try again later",
                        self.config.max_requests,
                        idle.as_secs_f64()
                    ),
                )
            })?;
        let mut http = hyper::Request::post(&self.config.url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::ACCEPT,
                "text/event-stream, application/x-ndjson",
            )
            .header("x-wsc-user-id", request.user_id.as_str());
        if let Some(token) = &self.config.token {
            http = http.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let http = http
            .body(Full::new(Bytes::from(self.body(request).to_string())))
            .map_err(|e| Failure::new("upstream_error", format!("bad agent URL or header: {e}")))?;
        let response = tokio::time::timeout(idle, self.client.request(http))
            .await
            .map_err(|_| {
                Failure::new(
                    "upstream_timeout",
                    format!("no answer from the agent within {} s", idle.as_secs_f64()),
                )
            })?
            .map_err(|e| Failure::new("upstream_error", unreachable_message(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::new(
                "upstream_error",
                format!("the agent answered HTTP {status}"),
            ));
        }
        let format = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(StreamFormat::Ndjson, StreamFormat::from_content_type);
        let mut reader = StreamReader::new(format);
        let mut body = response.into_body();
        // The idle timeout counts events, not bytes: a backend dripping a
        // byte now and then without completing an event is idle.
        let mut deadline = tokio::time::Instant::now() + idle;
        // What the agent sent at once (every chunk at hand, up to
        // BATCH_EVENTS events) reaches the run's readers together: they
        // are woken when the gateway would wait for the agent.
        let (mut batch, mut batched) = (None, 0);
        loop {
            let mut ready = body.frame().now_or_never();
            if ready.is_none() && batch.is_some() {
                // Let the connection's task read what the agent has sent
                // meanwhile (hyper hands a body over chunk by chunk).
                tokio::task::yield_now().await;
                ready = body.frame().now_or_never();
            }
            if ready.is_none() || batched >= BATCH_EVENTS {
                // Wakes the readers: before waiting, or past the bound.
                (batch, batched) = (None, 0);
            }
            let frame = match ready {
                Some(frame) => frame,
                None => tokio::time::timeout_at(deadline, body.frame())
                    .await
                    .map_err(|_| {
                        Failure::new(
                            "upstream_timeout",
                            format!("no event from the agent for {} s", idle.as_secs_f64()),
                        )
                    })?,
            };
            if batch.is_none() {
                batch = sink.batch();
            }
            let (events, done) = match frame {
                None => (reader.finish(), true),
                Some(Err(e)) => {
                    return Err(Failure::new(
                        "upstream_error",
                        format!("the agent's stream broke: {e}"),
                    ));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => (reader.push(&data), false),
                    Err(_) => continue, // trailers
                },
            };
            let events = events.map_err(|e| Failure::new("upstream_error", e.to_string()))?;
            if !events.is_empty() {
                deadline = tokio::time::Instant::now() + idle;
            }
            batched += events.len();
            for text in events {
                let go_on = match self.config.protocol {
                    // AG-UI: the run checks, keeps and maps the event.
                    AgentProtocol::AgUi => sink.emit_ag_ui(&text).await.map_err(Failure::from)?,
                    AgentProtocol::Wsc => {
                        let frames = mapper.push_event(&text).map_err(Failure::from)?;
                        let mut delivered = true;
                        for f in frames {
                            if !sink.emit(f.message_type, Value::Object(f.payload)).await {
                                delivered = false;
                                break;
                            }
                        }
                        delivered
                    }
                };
                // The session is gone (nobody can receive the rest), or the
                // run has its terminal frame: hang up.
                if !go_on || sink.has_ended() {
                    return Ok(());
                }
            }
            // A bad line ended the stream after the events before it.
            if let Some(e) = reader.error() {
                return Err(Failure::new("upstream_error", e.to_string()));
            }
            if done {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl AgentRunner for HttpAgent {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let mut mapper = self.config.protocol.mapper();
        let streamed = tokio::time::timeout(
            self.config.timeout,
            self.stream(&request, mapper.as_mut(), &sink),
        )
        .await;
        if sink.has_ended() {
            return;
        }
        // The run's terminal frame, since the agent did not send one (the
        // mapper here only words it: AG-UI events went through the run).
        let last = match streamed {
            Ok(Ok(())) => mapper.finish(),
            Ok(Err(Failure(code, message, rule))) => {
                tracing::info!(
                    code,
                    message = %crate::logging::log_safe_text(&message, 300),
                    "upstream run failed"
                );
                (!mapper.is_ended()).then(|| {
                    let mut frame = mapper.fail(code, &message);
                    if let Some(rule) = rule {
                        frame.payload.insert("rule".into(), Value::from(rule));
                    }
                    frame
                })
            }
            Err(_) => (!mapper.is_ended()).then(|| {
                mapper.fail(
                    "upstream_timeout",
                    &format!(
                        "the run took longer than {} s",
                        self.config.timeout.as_secs_f64()
                    ),
                )
            }),
        };
        if let Some(f) = last {
            sink.emit(f.message_type, Value::Object(f.payload)).await;
        }
    }

    /// A backend answers chat: `user_message {content}` starts a run.
    fn runs_on_user_messages(&self) -> bool {
        true
    }

    /// An AG-UI backend: a client's run goes to it as sent.
    fn speaks_ag_ui(&self) -> bool {
        self.config.protocol == AgentProtocol::AgUi
    }
}

/// What a failed request to the agent says: an answer too large or not
/// HTTP is named as such (the agent was reached), anything else is "cannot
/// reach the agent".
fn unreachable_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            if hyper.is_parse_too_large() {
                return format!("the agent's response head is over the size limit: {e}");
            }
            if hyper.is_parse() {
                return format!("the agent's answer is not HTTP: {e}");
            }
        }
        source = err.source();
    }
    format!("cannot reach the agent: {e}")
}
