//! # wsc-gateway
//!
//! The runnable WebSocket gateway that wires the wsc crates together, to the
//! protocol in the project's `PROTOCOL.md`: every client frame is parsed
//! with typed errors and rate limited; every agent event goes through the
//! event monitor and the session's replay buffer (which numbers it) before
//! it is sent; every connection is measured; a client that loses its
//! connection resumes with exactly the frames it missed.
//!
//! Start one with [`Gateway::new`] and [`Gateway::serve`], or run the
//! `wsc-gateway serve` binary. Agents plug in through [`AgentRunner`];
//! [`SimulatedAgent`] is built in. `GET /` is a live dashboard.
//! [`run_demo`] drives simulated users that drop and resume their
//! connections against a gateway and reports what arrived (the
//! `wsc-gateway demo` command). [`Gateway::with_redis`] shares limits,
//! sessions and connection counts with every gateway on the same Redis.
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
mod demo;
mod http;
mod outbox;
mod server;
mod state;
mod telemetry;

pub use agent::{AgentRequest, AgentRunner, EventSink, SimulatedAgent};
pub use config::{AuthMode, GatewayConfig, RedisFailurePolicy, RedisSettings};
pub use demo::{DemoConfig, DemoProgress, DemoProgressSnapshot, DemoReport, run_demo};
pub use state::{Gateway, GatewayStats};
pub use telemetry::StatsSample;
