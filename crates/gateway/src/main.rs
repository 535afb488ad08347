//! `wsc-gateway`: run the gateway (`serve`). See `--help`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use wsc_gateway::{AuthMode, Gateway, GatewayConfig};

/// The wsc WebSocket gateway.
#[derive(Parser, Debug)]
#[command(name = "wsc-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the gateway until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Auth {
    Dev,
    Jwt,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WSC_BIND", default_value = "127.0.0.1:8765")]
    bind: String,
    /// Authentication mode.
    #[arg(long, env = "WSC_AUTH", value_enum, default_value = "dev")]
    auth: Auth,
    /// HS256 secret for --auth jwt.
    #[arg(long, env = "WSC_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Concurrent connections per user.
    #[arg(long, env = "WSC_MAX_CONNECTIONS_PER_USER", default_value_t = 5)]
    max_connections_per_user: u32,
    /// Client frames per user per minute.
    #[arg(long, env = "WSC_MAX_MESSAGES_PER_MINUTE", default_value_t = 120)]
    max_messages_per_minute: u32,
    /// Client frames per user per hour.
    #[arg(long, env = "WSC_MAX_MESSAGES_PER_HOUR", default_value_t = 3600)]
    max_messages_per_hour: u32,
    /// Largest client frame in bytes (larger: close 1009).
    #[arg(long, env = "WSC_MAX_FRAME_BYTES", default_value_t = 65536)]
    max_frame_bytes: usize,
    /// Frames kept per session for resume.
    #[arg(long, env = "WSC_REPLAY_BUFFER", default_value_t = 1000)]
    replay_buffer: usize,
    /// Bytes (serialized frames) kept per session for resume.
    #[arg(long, env = "WSC_REPLAY_BUFFER_BYTES", default_value_t = 1 << 20)]
    replay_buffer_bytes: usize,
    /// Seconds a lost session stays resumable.
    #[arg(long, env = "WSC_SESSION_TTL", default_value_t = 300)]
    session_ttl: u64,
    /// Shared state in Redis (not available yet: the Redis issue).
    #[arg(long, env = "WSC_REDIS")]
    redis: Option<String>,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.redis.is_some() {
        anyhow::bail!("--redis is not available yet in this build: state is in memory only");
    }
    let auth = match args.auth {
        Auth::Dev => AuthMode::Dev,
        Auth::Jwt => AuthMode::Jwt {
            secret: args
                .jwt_secret
                .context("--auth jwt needs --jwt-secret (or WSC_JWT_SECRET)")?,
        },
    };
    let config = GatewayConfig {
        auth,
        max_connections_per_user: args.max_connections_per_user,
        max_messages_per_minute: args.max_messages_per_minute,
        max_messages_per_hour: args.max_messages_per_hour,
        max_frame_bytes: args.max_frame_bytes,
        replay_buffer: args.replay_buffer,
        replay_buffer_bytes: args.replay_buffer_bytes,
        session_ttl: Duration::from_secs(args.session_ttl),
        ..Default::default()
    };
    let listener = TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = listener.local_addr()?;
    let gateway = Gateway::new(config);
    println!("listening on http://{addr}");
    tracing::info!(%addr, "gateway started");
    gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    }
}
