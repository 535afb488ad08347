//! Helpers of the process-level benchmarks: start the built `wsc-gateway`
//! binary (or the bare echo anchor, this benchmark binary itself run with
//! `WSC_BENCH_ECHO`) as a child process and read its memory and CPU from
//! /proc.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `wsc-gateway ARGS` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsc-gateway"));
        command.args(args);
        Self::spawn(command)
    }

    /// Starts `wsc-gateway serve` on a free loopback port with every
    /// per-IP limit off (all of a benchmark's clients share one address),
    /// plus `extra` flags.
    pub fn start_gateway(extra: &[&str]) -> Server {
        let mut args = vec![
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--max-handshakes-per-ip",
            "0",
            "--max-messages-per-ip-per-minute",
            "0",
        ];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Starts the bare echo anchor ([`echo_if_asked`]) in its own process:
    /// this benchmark binary again, with `WSC_BENCH_ECHO` set.
    pub fn start_echo() -> Server {
        let exe = std::env::current_exe().expect("the benchmark's own path");
        let mut command = Command::new(exe);
        command.env(ECHO_ENV, "127.0.0.1:0");
        Self::spawn(command)
    }

    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server process starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("a listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    /// Resident memory, bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// CPU time used so far (user + system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the line: 11 and 12 here.
        (ticks(11) + ticks(12)) / clock_ticks()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The system's clock ticks per second (the unit of /proc's CPU times).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The p-th quantile of sorted nanoseconds.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Set to an address: the benchmark binary runs the echo anchor instead.
const ECHO_ENV: &str = "WSC_BENCH_ECHO";

/// When `WSC_BENCH_ECHO` is set, serves the bare echo anchor on it until
/// killed, and never returns; otherwise returns at once. Call first thing
/// in the benchmark's `main`.
///
/// The anchor: accept, upgrade with tokio-tungstenite, send every data
/// frame back. No parsing, no limits, no bookkeeping.
pub fn echo_if_asked() {
    serve_if_asked(ECHO_ENV, |stream, _| echo_connection(stream));
}

/// When the environment variable `env` names an address, serves an anchor
/// on it — every accepted connection (`TCP_NODELAY`, numbered from 1)
/// handed to `connection` in a task of its own — until killed, and never
/// returns; otherwise returns at once. Prints `listening on http://ADDR`
/// first, which [`Server::spawn`] waits for.
pub fn serve_if_asked<F, Fut>(env: &str, connection: F)
where
    F: Fn(tokio::net::TcpStream, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(bind) = std::env::var(env) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .expect("the anchor binds");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("an address")
        );
        let mut next = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            next += 1;
            tokio::spawn(connection(stream, next));
        }
    });
    std::process::exit(0);
}

/// One echo connection: every text or binary frame sent back.
pub async fn echo_connection(stream: tokio::net::TcpStream) {
    use futures_util::{SinkExt, StreamExt};
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Runs `script` of the built TypeScript package (`clients/typescript`,
/// e.g. `dist/bench/ag-ui.js`) in Node (`WSC_NODE`, else `node`) with
/// `args`, and prints the JSON line it ends with (on stdout, for `cargo
/// xtask bench`, and on stderr after `label`).
///
/// # Panics
/// If the package is not built or the script fails.
pub fn node_bench(script: &str, args: &[String], label: &str) {
    let package =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    assert!(
        package.join(script).exists(),
        "the TypeScript client is not built: run `npm ci && npm run build` in clients/typescript"
    );
    let node = std::env::var_os("WSC_NODE").map_or_else(
        || std::path::PathBuf::from("node"),
        std::path::PathBuf::from,
    );
    let output = Command::new(node)
        .arg(script)
        .args(args)
        .current_dir(&package)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the Node benchmark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    eprintln!("{label}: {line}");
    println!("{line}");
}
