//! # wsc-gateway
//!
//! The runnable WebSocket gateway that wires the wsc crates together, to the
//! protocol in the project's `PROTOCOL.md`: every client frame is parsed
//! with typed errors and rate limited; every agent event goes through the
//! event monitor and the session's replay buffer (which numbers it) before
//! it is sent; every connection is measured; a client that loses its
//! connection resumes with exactly the frames it missed.
//!
//! **Status:** work in progress (the gateway issue is open). Working and
//! tested over real sockets: `/ws` with dev auth, the per-IP and per-user
//! checks before the upgrade (401, 429 with `Retry-After`, 503), sessions
//! with resume and every refusal reason, the frame loop with every error
//! code, 1009 on oversize frames, rate limiting with `retry_after_ms`, the
//! simulated agent through the event monitor and the replay buffer,
//! `/health`, `/metrics`, `/api/stats`, and shutdown with 1001. JWT auth (HS256,
//! `exp` required; `alg: none`, wrong keys and expired tokens refused) and
//! server heartbeats that drop silent peers are tested too. The Python
//! client test and the benchmark are not done.
//!
//! ## Example
//!
//! ```no_run
//! use wsc_gateway::{Gateway, GatewayConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let gateway = Gateway::new(GatewayConfig::default());
//! println!("listening on http://{}", listener.local_addr()?);
//! gateway.serve(listener, std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]

mod agent;
mod config;
mod connection;
mod http;
mod state;

pub use agent::{AgentRequest, AgentRunner, EventSink, SimulatedAgent};
pub use config::{AuthMode, GatewayConfig};
pub use state::{Gateway, GatewayStats};
