//! # wsc-server
//!
//! The embeddable wsc gateway: one axum router that carries AI-agent runs
//! to clients over WebSocket, to the protocol in the project's
//! `docs/protocol.md`. Every client frame is parsed with typed errors and
//! rate limited; every agent event goes through the event monitor and the
//! session's replay buffer (which numbers it) before it is sent; every
//! connection is measured; a client that loses its connection resumes with
//! exactly the frames it missed, on any gateway sharing the same Redis.
//!
//! Build one with [`Gateway::new`] or [`Gateway::builder`] (clock, agent
//! runner, Redis), then [`Gateway::serve`] it, or merge
//! [`Gateway::router`] into your own axum app. Agents plug in through
//! [`AgentRunner`]; [`SimulatedAgent`] is built in. `GET /` is a live
//! dashboard, `GET /metrics` Prometheus text. The library has no command
//! line, progress display or log setup: the `wsc-gateway` binary owns
//! those, and `wsc-loadgen` the demo load.
//!
//! ## Example
//!
//! ```no_run
//! use wsc_server::{Gateway, GatewayConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let gateway = Gateway::new(GatewayConfig::default());
//! println!("listening on http://{}", listener.local_addr()?);
//! gateway.serve(listener, std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]

mod admission;
mod agui;
mod agui_http;
mod agui_shared;
mod agui_ws;
mod auth;
mod broker;
mod builder;
mod capacity;
mod config;
mod connection;
mod counters;
mod dispatch;
mod health;
mod http;
mod logging;
mod metrics;
mod outbox;
mod publish;
mod run;
mod runs;
mod server;
mod shared;
mod simulated;
mod state;
mod stream;
mod telemetry;
mod upkeep;
mod upstream;

pub use builder::{Gateway, GatewayBuilder};
pub use config::{
    AgentsConfig, ApiKey, AuthMode, DEFAULT_REDIS_TIMEOUT, GatewayConfig, HttpConfig, JwtAuth,
    LimitsConfig, MAX_USER_ID_BYTES, MIN_API_KEY_BYTES, MIN_JWT_SECRET_BYTES, RedisFailurePolicy,
    RedisSettings, SessionsConfig, WeakApiKey, WeakJwtSecret,
};
pub use counters::GatewayStats;
pub use run::{AgentRequest, AgentRunner, EventSink, ForwardError};
pub use simulated::SimulatedAgent;
pub use stream::{AgentStream, AgentStreams, ResumeQuery, RunStart};
pub use telemetry::StatsSample;
pub use upstream::{HttpAgent, HttpAgentConfig};
/// The `prometheus-client` crate of [`Gateway::register_metrics`]'s
/// registry, re-exported so versions match.
pub use wsc_perf_monitor::prometheus_client;
/// CIDR networks, for [`HttpConfig::trusted_proxies`].
pub use wsc_rate_limiter::IpNet;
/// The client address behind trusted proxies (what every per-IP limit counts).
pub use wsc_rate_limiter::client_address;
pub use wsc_upstream::AgentProtocol;

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
