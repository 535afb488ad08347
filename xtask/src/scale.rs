//! `cargo xtask scale`: a deployment measured at size. A Redis Cluster
//! (3 masters + 3 replicas, Redis's default 15 s node timeout), N gateways
//! (`wsc-gateway serve --redis`), and client processes
//! (`wsc-scale-client`, each from its own loopback address) holding the
//! connections; then the idle cost, a steady run load, a fan-out, a
//! gateway killed, a rolling restart and a Redis master killed, each
//! measured from outside the processes: resident memory and CPU from
//! `/proc`, Redis's memory and command counts from `INFO`, the clients'
//! own tallies of what arrived.
//!
//! `--small` is the layout at the size `cargo xtask ci` runs (6 gateways,
//! 3 000 connections from two client processes, a gateway killed), with the
//! debug binaries, on a cluster it is given (`--redis`): it fails unless
//! every client comes back and no run is lost.
//!
//! The gateways log at `warn` (`WSC_SCALE_LOG` sets their `RUST_LOG`
//! instead); a failed run keeps their logs and says where.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::redis::{find_redis_cli, find_redis_server, free_port, spawn_redis, wait_accepting};
use crate::{cargo, root, target_dir};

const USAGE: &str = "cargo xtask scale [--connections N] [--gateways G] [--load RUNS] \
                     [--idle-secs S] [--small --redis URL] [--no-write]";

/// The gateways' `--api-key` (only these processes know it).
const API_KEY: &str = "scale-test-key-0123456789abcdef0123456789";

/// Connections one client process holds at most (its open-file limit is
/// 20 000 here).
const PER_CLIENT: usize = 17_000;

/// Marks the generated table in docs/scaling.md and BENCHMARKS.md.
const BEGIN: &str = "<!-- xtask scale: begin -->";
const END: &str = "<!-- xtask scale: end -->";

#[derive(Debug)]
struct Options {
    connections: usize,
    gateways: usize,
    load: usize,
    idle: Duration,
    small: bool,
    redis: Option<String>,
    write: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        connections: 100_000,
        gateways: 6,
        load: 1_000,
        idle: Duration::from_secs(30),
        small: false,
        redis: None,
        write: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value; {USAGE}"));
        let number = |v: &String| v.parse::<usize>().map_err(|e| format!("{arg} {v}: {e}"));
        match arg.as_str() {
            "--connections" => o.connections = number(value()?)?,
            "--gateways" => o.gateways = number(value()?)?.max(2),
            "--load" => o.load = number(value()?)?,
            "--idle-secs" => o.idle = Duration::from_secs(number(value()?)? as u64),
            "--redis" => o.redis = Some(value()?.clone()),
            "--small" => {
                o.small = true;
                o.connections = 3_000;
                o.gateways = 6;
                o.load = 100;
                o.idle = Duration::from_secs(5);
                o.write = false;
            }
            "--no-write" => o.write = false,
            _ => return Err(format!("unknown argument {arg}; {USAGE}")),
        }
    }
    Ok(o)
}

pub(crate) fn scale(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask scale: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(mut report) => {
            if !report.failures.is_empty() {
                report
                    .table
                    .push_str(&format!("\nMissed: {}.\n", report.failures.join("; ")));
            }
            println!("{}", report.table);
            // Written either way: a missed goal is a result too.
            if options.write
                && let Err(e) = write_table(&report.table)
            {
                eprintln!("xtask scale: {e}");
                return ExitCode::from(1);
            }
            if !report.failures.is_empty() {
                eprintln!("xtask scale: FAILED:\n  {}", report.failures.join("\n  "));
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask scale: {e}");
            ExitCode::from(1)
        }
    }
}

/// `cargo xtask ci`'s step: the layout at the small size on the ci's
/// cluster (`redis`), with the binaries the tests' build made.
pub(crate) fn small(redis: &str) -> Result<(), String> {
    let mut options = parse(&["--small".to_owned()])?;
    options.redis = Some(redis.to_owned());
    let report = run(&options)?;
    println!("{}", report.table);
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(report.failures.join("; "))
    }
}

/// The binaries: release ones built now, or (`--small`) the debug ones the
/// tests' build made (the scale client's own test needs it built).
fn binaries(small: bool) -> Result<(PathBuf, PathBuf), String> {
    let profile = if small { "debug" } else { "release" };
    if small {
        let dir = target_dir().join(profile);
        let (gateway, client) = (dir.join("wsc-gateway"), dir.join("wsc-scale-client"));
        for binary in [&gateway, &client] {
            if !binary.is_file() {
                return Err(format!(
                    "{} is missing: `cargo test --workspace` builds it",
                    binary.display()
                ));
            }
        }
        return Ok((gateway, client));
    }
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "wsc-gateway",
        "-p",
        "wsc-loadgen",
        "--bins",
    ]);
    if !small {
        build.arg("--release");
    }
    println!(
        "==> [scale] cargo {:?}",
        build.get_args().collect::<Vec<_>>()
    );
    let status = build.status().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err("building the gateway and the scale client failed".into());
    }
    let dir = target_dir().join(profile);
    Ok((dir.join("wsc-gateway"), dir.join("wsc-scale-client")))
}

/// A Redis Cluster of 3 masters and 3 replicas at Redis's default node
/// timeout, stopped when dropped.
struct Cluster {
    nodes: Vec<(u16, Child)>,
    cli: PathBuf,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, node) in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let server = find_redis_server()?;
        let cli_bin = find_redis_cli(&server).ok_or("no redis-cli")?;
        let dir = std::env::temp_dir().join(format!("wsc-scale-{}", std::process::id()));
        let mut cluster = Cluster {
            nodes: Vec::new(),
            cli: cli_bin,
            dir,
        };
        for i in 0..6 {
            let port = free_port()?;
            let node_dir = cluster.dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
            // Redis's own default node timeout (15 s): what users run.
            let child = spawn_redis(&server, port, &node_dir, &["--cluster-enabled", "yes"])?;
            cluster.nodes.push((port, child));
        }
        for (port, _) in &cluster.nodes {
            wait_accepting(*port)?;
        }
        let created = Command::new(&cluster.cli)
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(|(p, _)| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !created.success() {
            return Err("redis-cli --cluster create failed".into());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (port, _) in &cluster.nodes {
            while !cli(&cluster.cli, *port, &["cluster", "info"]).contains("cluster_state:ok") {
                if Instant::now() > deadline {
                    return Err(format!("node {port} not ok in 30 s"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(cluster)
    }

    fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}

/// `redis-cli -p PORT ARGS…`'s output (empty if it could not run).
fn cli(binary: &Path, port: u16, args: &[&str]) -> String {
    Command::new(binary)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The masters' ports, from `CLUSTER NODES` asked of any node in `ports`.
fn masters(binary: &Path, ports: &[u16]) -> Vec<u16> {
    for &port in ports {
        let nodes = cli(binary, port, &["cluster", "nodes"]);
        let found: Vec<u16> = nodes
            .lines()
            .filter(|l| {
                // id addr flags master ping pong epoch link-state slots…
                let f: Vec<&str> = l.split(' ').collect();
                f.len() > 8
                    && f[2].contains("master")
                    && !f[2].contains("fail")
                    && f[7] == "connected"
            })
            .filter_map(|l| {
                l.split(' ')
                    .nth(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// A number from `INFO`'s `field:value` lines.
fn info_field(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Calls of every command (scripts' inner commands included) since the
/// last `CONFIG RESETSTAT`.
fn command_calls(binary: &Path, port: u16) -> u64 {
    cli(binary, port, &["info", "commandstats"])
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// One gateway process.
struct Gateway {
    binary: PathBuf,
    port: u16,
    redis: String,
    max_connections: usize,
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Gateway {
    fn start(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            // Every loopback address: each client process connects to its
            // own (127.0.0.10, .11, …), so each has its own ephemeral
            // ports towards each gateway.
            .args(["--bind", &format!("0.0.0.0:{}", self.port)])
            // Dev auth (user ids from the query) on every address: only
            // for the length of this run, on a test machine.
            .arg("--insecure-dev")
            .args(["--redis", &self.redis])
            .args(["--api-key", API_KEY])
            // Loopback clients stand for many users' addresses.
            .args(["--max-handshakes-per-ip", "100000000"])
            .args(["--max-messages-per-ip-per-minute", "100000000"])
            .args(["--max-sessions", "10000000"])
            .args(["--max-connections", &self.max_connections.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("WSC_SCALE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(self.port, "/health").is_err() {
            if Instant::now() > deadline {
                return Err(format!("gateway on {} did not answer in 30 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn signal(&mut self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Sends `signal` and waits for the process to end (at most `wait`).
    fn stop(&mut self, signal: &str, wait: Duration) {
        self.signal(signal);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + wait;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn metric(&self, name: &str) -> f64 {
        http_get(self.port, "/metrics")
            .ok()
            .and_then(|body| {
                body.lines()
                    .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
                    .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            })
            .unwrap_or(0.0)
    }

    fn emfile(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|l| l.matches("Too many open files").count())
            .unwrap_or(0)
    }
}

/// `GET path` on 127.0.0.1:`port`: the body of a 200.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(response.lines().next().unwrap_or("").to_owned());
    }
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

fn rss_kib(pid: u32) -> u64 {
    crate::soak::rss_kib(pid).unwrap_or(0)
}

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command (which may hold spaces) in parens.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// One `wsc-scale-client` process.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Client {
    fn ask(&mut self, command: &str) -> Result<Value, String> {
        self.send(command)?;
        self.answer()
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        writeln!(self.stdin, "{command}").map_err(|e| format!("client: {e}"))
    }

    fn answer(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("client: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("client said {line:?}: {e}"))
    }
}

/// The clients' statuses summed (latencies: the median of their medians,
/// the largest of their 99th percentiles).
fn status(clients: &mut [Client]) -> Result<Status, String> {
    let mut all = Vec::new();
    for c in clients.iter_mut() {
        all.push(c.ask("status")?);
    }
    Ok(Status(all))
}

struct Status(Vec<Value>);

impl Status {
    fn sum(&self, field: &str) -> u64 {
        self.0.iter().map(|v| v[field].as_u64().unwrap_or(0)).sum()
    }
    fn max(&self, field: &str) -> u64 {
        self.0
            .iter()
            .map(|v| v[field].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }
    /// The connections not back: how many, the longest down and why, and
    /// clients whose event stream ended without a word.
    fn down(&self) -> String {
        let longest = self
            .0
            .iter()
            .max_by_key(|v| v["down_longest_ms"].as_u64().unwrap_or(0));
        format!(
            "{} down, the longest {:.0} s ({}), {} ended without giving up",
            self.sum("down"),
            self.max("down_longest_ms") as f64 / 1000.0,
            longest
                .and_then(|v| v["down_reason"].as_str())
                .unwrap_or(""),
            self.sum("ended")
        )
    }

    fn median(&self, field: &str) -> u64 {
        let mut v: Vec<u64> = self
            .0
            .iter()
            .map(|v| v[field].as_u64().unwrap_or(0))
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }
}

/// Waits until `done` holds of the clients' status (polled every 200 ms)
/// or `limit` passes; how long it took, or `None`.
fn wait_until(
    clients: &mut [Client],
    limit: Duration,
    done: impl Fn(&Status) -> bool,
) -> Result<Option<Duration>, String> {
    let started = Instant::now();
    loop {
        if done(&status(clients)?) {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > limit {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Report {
    table: String,
    failures: Vec<String>,
}

/// Rows of the table: what, value, goal.
struct Rows(Vec<(String, String, String)>);

impl Rows {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>, goal: impl Into<String>) {
        self.0.push((what.into(), value.into(), goal.into()));
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "not within the limit".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}

fn run(o: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let (gateway_bin, client_bin) = binaries(o.small)?;
    let own_cluster = match &o.redis {
        Some(_) => None,
        None => {
            println!("==> [scale] Redis Cluster: 3 masters + 3 replicas, default node timeout");
            Some(Cluster::start()?)
        }
    };
    let redis_url = match (&o.redis, &own_cluster) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => c.url(),
        (None, None) => unreachable!("a cluster is started when none is given"),
    };
    let cli_bin = match &own_cluster {
        Some(c) => c.cli.clone(),
        None => find_redis_cli(&find_redis_server()?).ok_or("no redis-cli")?,
    };
    let node_ports: Vec<u16> = redis_url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .filter_map(|n| n.rsplit(':').next()?.trim_end_matches('/').parse().ok())
        .collect();
    let logs = std::env::temp_dir().join(format!("wsc-scale-logs-{}", std::process::id()));
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    // Each gateway may hold twice its share, at most what its open files
    // allow with 2 000 to spare: Redis, /health, /metrics, publishes, and
    // the sockets a storm's refused handshakes hold while answered (1 000
    // were too few: EMFILE 23 times in the first full run).
    let fd_limit = open_file_limit();
    let per_gateway = o.connections.div_ceil(o.gateways);
    let max_connections = (fd_limit.saturating_sub(2_000))
        .min(per_gateway * 2)
        .max(per_gateway + 100);
    println!(
        "==> [scale] {} gateways (--max-connections {max_connections}, open-file limit {fd_limit}) on {redis_url}",
        o.gateways
    );
    let mut gateways: Vec<Gateway> = Vec::new();
    for i in 0..o.gateways {
        let mut g = Gateway {
            binary: gateway_bin.clone(),
            port: free_port()?,
            redis: redis_url.clone(),
            max_connections,
            log: logs.join(format!("gateway-{i}.log")),
            child: None,
        };
        g.start()?;
        gateways.push(g);
    }
    std::thread::sleep(Duration::from_secs(1));
    let masters_before = masters(&cli_bin, &node_ports);
    let redis_mem_base: u64 = masters_before
        .iter()
        .map(|p| info_field(&cli(&cli_bin, *p, &["info", "memory"]), "used_memory"))
        .sum();
    let rss_base: u64 = gateways.iter().map(|g| rss_kib(g.pid())).sum();

    // Clients: enough processes for their open files, at least two source
    // addresses.
    let processes = o.connections.div_ceil(PER_CLIENT).max(2);
    let mut clients = Vec::new();
    let mut first = 0;
    for p in 0..processes {
        let n = o.connections / processes + usize::from(p < o.connections % processes);
        let mut command = Command::new(&client_bin);
        // A loopback destination address per process: the kernel picks a
        // source port per (destination address, port), ~28 000 each. (Bound
        // source addresses would make it search every bound port at each
        // connect: it spent the clients' CPU on that at 100 000.)
        for g in &gateways {
            command.args(["--url", &format!("ws://127.0.0.{}:{}/ws", 10 + p, g.port)]);
        }
        for g in &gateways {
            command.args(["--api", &format!("http://127.0.0.1:{}", g.port)]);
        }
        let mut child = command
            .args(["--connections", &n.to_string()])
            .args(["--first", &first.to_string()])
            .env("WSC_API_KEY", API_KEY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", client_bin.display()))?;
        let stdin = child.stdin.take().ok_or("client stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("client stdout")?);
        clients.push(Client {
            child,
            stdin,
            stdout,
        });
        first += n;
    }
    let n = o.connections as u64;
    println!("==> [scale] {n} connections from {processes} client processes");
    let connected = wait_until(&mut clients, Duration::from_secs(600), |s| {
        s.sum("open") >= n
    })?;
    let mut rows = Rows(Vec::new());
    let mut failures = Vec::new();
    if connected.is_none() {
        let s = status(&mut clients)?;
        return Err(format!(
            "only {} of {n} connections open after 600 s (gave up: {})",
            s.sum("open"),
            s.sum("gave_up")
        ));
    }
    rows.add(
        format!(
            "{n} connections opened ({} gateways, {processes} client processes, each to its own loopback address)",
            o.gateways
        ),
        secs(connected),
        "",
    );

    // Idle.
    println!("==> [scale] idle for {:?}", o.idle);
    std::thread::sleep(Duration::from_secs(2));
    for p in &masters_before {
        cli(&cli_bin, *p, &["config", "resetstat"]);
    }
    let cpu0: f64 = gateways.iter().map(|g| cpu_secs(g.pid())).sum();
    let t0 = Instant::now();
    std::thread::sleep(o.idle);
    let window = t0.elapsed().as_secs_f64();
    let cpu_idle = (gateways.iter().map(|g| cpu_secs(g.pid())).sum::<f64>() - cpu0) / window;
    let calls: u64 = masters_before
        .iter()
        .map(|p| command_calls(&cli_bin, *p))
        .sum();
    let mut by_command: std::collections::BTreeMap<String, u64> = Default::default();
    for p in &masters_before {
        for line in cli(&cli_bin, *p, &["info", "commandstats"]).lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls = rest
                .split("calls=")
                .nth(1)
                .and_then(|r| r.split(',').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            *by_command.entry(name.to_owned()).or_default() += calls;
        }
    }
    let mut top: Vec<(String, u64)> = by_command.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    let top: Vec<String> = top
        .iter()
        .take(6)
        .map(|(name, calls)| format!("{name} {:.1}/s", *calls as f64 / window))
        .collect();
    println!("    idle Redis commands (masters): {}", top.join(", "));
    let per_1k = calls as f64 / window / (n as f64 / 1000.0);
    let rss: u64 = gateways.iter().map(|g| rss_kib(g.pid())).sum();
    let rss_per = (rss.saturating_sub(rss_base)) as f64 / n as f64;
    let redis_mem: u64 = masters_before
        .iter()
        .map(|p| info_field(&cli(&cli_bin, *p, &["info", "memory"]), "used_memory"))
        .sum();
    let redis_per = redis_mem.saturating_sub(redis_mem_base) as f64 / 1024.0 / n as f64;
    rows.add(
        "gateway memory per idle connection (RSS, all gateways)",
        format!("{rss_per:.2} KiB"),
        "≤ 10 KiB",
    );
    rows.add(
        "Redis memory per session (masters' used_memory)",
        format!("{redis_per:.2} KiB"),
        "",
    );
    rows.add(
        "Redis commands/s per 1 000 idle connections (masters)",
        format!("{per_1k:.1}"),
        "≤ 30",
    );
    rows.add(
        "gateway CPU while idle (all gateways)",
        format!("{:.1} % of a core", cpu_idle * 100.0),
        "",
    );
    // At the small size the gateways' own constant cost (the health
    // check's PINGs) outweighs the connections': the goal is per
    // connection at size.
    if per_1k > 30.0 && !o.small {
        failures.push(format!(
            "{per_1k:.1} Redis commands/s per 1 000 idle connections (goal ≤ 30)"
        ));
    }

    // Steady run load.
    let load = o.load.min(o.connections);
    let per_process = load.div_ceil(processes);
    println!("==> [scale] {load} connections running agent runs (2 tools, 100 ms steps)");
    for c in &mut clients {
        c.ask(&format!("load {per_process} 2 100"))?;
    }
    std::thread::sleep(Duration::from_secs(5));
    for c in &mut clients {
        c.ask("reset")?;
    }
    let cpu0: f64 = gateways.iter().map(|g| cpu_secs(g.pid())).sum();
    let t0 = Instant::now();
    std::thread::sleep(if o.small {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    });
    let s = status(&mut clients)?;
    let mut phases = Phases::default();
    phases.end("load", &s);
    let window = t0.elapsed().as_secs_f64();
    let cpu = gateways.iter().map(|g| cpu_secs(g.pid())).sum::<f64>() - cpu0;
    let events = s.sum("events");
    rows.add(
        format!("steady load: {load} runs at a time on top of the idle"),
        format!("{:.0} events/s", events as f64 / window),
        "",
    );
    rows.add(
        "delivery latency p50 / p99 (median of the clients' p50, largest p99)",
        format!(
            "{:.1} / {:.1} ms",
            s.median("latency_p50_us") as f64 / 1000.0,
            s.max("latency_p99_us") as f64 / 1000.0
        ),
        "p99 ≤ 50 ms",
    );
    rows.add(
        "gateway CPU under load (all gateways) / per delivered event",
        format!(
            "{:.0} % of a core / {:.1} µs",
            cpu / window * 100.0,
            cpu * 1e6 / events.max(1) as f64
        ),
        "",
    );

    // Fan-out.
    if !o.small {
        println!("==> [scale] fan-out: POST /api/publish to every user");
        let t0 = now_us();
        // Each client process publishes to its own users, all at once.
        for c in clients.iter_mut() {
            c.send("fanout 1")?;
        }
        for c in clients.iter_mut() {
            c.answer()?;
        }
        let all = wait_until(&mut clients, Duration::from_secs(600), |s| {
            s.sum("fanout_received") >= n
        })?;
        let s = status(&mut clients)?;
        phases.end("fan-out", &s);
        let last = s.max("fanout_last_us");
        rows.add(
            format!("fan-out: a publish to each of {n} users"),
            match all {
                Some(_) => format!(
                    "last delivered {:.1} s after the first publish",
                    last.saturating_sub(t0) as f64 / 1e6
                ),
                None => format!("{} of {n} delivered", s.sum("fanout_received")),
            },
            "",
        );
    }

    // A gateway killed under load.
    println!("==> [scale] SIGKILL gateway 0 under load");
    let before = status(&mut clients)?;
    let refusals = |gs: &[Gateway], name: &str| -> f64 { gs.iter().map(|g| g.metric(name)).sum() };
    let refused0 = refusals(&gateways[1..], "wsc_gateway_refused_at_capacity_total");
    let shed0 = refusals(&gateways[1..], "wsc_gateway_connections_shed_total");
    let survivors_hold = max_connections * (o.gateways - 1) >= o.connections;
    let on_killed = gateways[0].metric("wsc_gateway_open_connections") as u64;
    gateways[0].stop("-KILL", Duration::from_secs(5));
    let killed_at = Instant::now();
    let mut peak_rss = 0u64;
    let mut peak_cpu = 0.0f64;
    let mut restarted = false;
    let cpu_at = |gs: &[Gateway]| -> Vec<f64> { gs.iter().map(|g| cpu_secs(g.pid())).collect() };
    let mut last_cpu = (Instant::now(), cpu_at(&gateways[1..]));
    let back = loop {
        let s = status(&mut clients)?;
        for g in &gateways[1..] {
            peak_rss = peak_rss.max(rss_kib(g.pid()));
        }
        let now_cpu = cpu_at(&gateways[1..]);
        let dt = last_cpu.0.elapsed().as_secs_f64();
        if dt > 0.5 {
            for (a, b) in now_cpu.iter().zip(&last_cpu.1) {
                peak_cpu = peak_cpu.max((a - b) / dt);
            }
            last_cpu = (Instant::now(), now_cpu);
        }
        if s.sum("open") >= n && s.sum("reconnects") >= before.sum("reconnects") + on_killed {
            break Some(killed_at.elapsed());
        }
        if !survivors_hold && !restarted && killed_at.elapsed() > Duration::from_secs(5) {
            // The survivors' open files cannot hold everyone: a supervisor
            // brings the gateway back.
            gateways[0].start()?;
            restarted = true;
        }
        if killed_at.elapsed() > Duration::from_secs(180) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let after = status(&mut clients)?;
    phases.end("gateway kill", &after);
    let refused = refusals(&gateways[1..], "wsc_gateway_refused_at_capacity_total") - refused0;
    let shed = refusals(&gateways[1..], "wsc_gateway_connections_shed_total") - shed0;
    let emfile: usize = gateways.iter().map(Gateway::emfile).sum();
    rows.add(
        format!(
            "gateway SIGKILL under load: all {n} back{}",
            if restarted {
                " (it was restarted after 5 s: the survivors' open files cannot hold all)"
            } else {
                ""
            }
        ),
        secs(back),
        "≤ 30 s",
    );
    rows.add(
        "  … refused at capacity / shed as accepted / EMFILE in the logs / resumes refused",
        format!(
            "{refused:.0} / {shed:.0} / {emfile} / {}",
            after.sum("resumes_refused") - before.sum("resumes_refused")
        ),
        "— / — / 0 / 0",
    );
    rows.add(
        "  … survivors' peak RSS / peak CPU (one gateway)",
        format!(
            "{:.0} MiB / {:.0} % of a core",
            peak_rss as f64 / 1024.0,
            peak_cpu * 100.0
        ),
        "",
    );
    if back.is_none() {
        failures.push(format!(
            "not every client came back after the gateway kill: {}",
            after.down()
        ));
    }
    if emfile > 0 {
        failures.push(format!(
            "{emfile} \"Too many open files\" in the gateways' logs"
        ));
    }
    if !restarted {
        gateways[0].start()?;
    }

    if !o.small {
        // A rolling restart under load.
        println!("==> [scale] rolling restart (SIGTERM each gateway in turn)");
        let t0 = Instant::now();
        for (i, gateway) in gateways.iter_mut().enumerate() {
            let reconnects = status(&mut clients)?.sum("reconnects");
            let on_it = gateway.metric("wsc_gateway_open_connections") as u64;
            gateway.stop("-TERM", Duration::from_secs(30));
            gateway.start()?;
            let back = wait_until(&mut clients, Duration::from_secs(180), |s| {
                s.sum("open") >= n && s.sum("reconnects") >= reconnects + on_it
            })?;
            if back.is_none() {
                let s = status(&mut clients)?;
                failures.push(format!(
                    "not all back after restarting gateway {i} ({} open of {n}, {} reconnects of {on_it}, {} gave up; {})",
                    s.sum("open"),
                    s.sum("reconnects") - reconnects,
                    s.sum("gave_up"),
                    s.down()
                ));
                break;
            }
        }
        let s = status(&mut clients)?;
        phases.end("rolling restart", &s);
        rows.add(
            "rolling restart of every gateway under load (each back before the next)",
            format!("{:.1} s", t0.elapsed().as_secs_f64()),
            "",
        );
        rows.add(
            "  … resumes refused since the start",
            s.sum("resumes_refused").to_string(),
            "0",
        );

        // A Redis master killed.
        if let Some(cluster) = &own_cluster {
            let masters_now = masters(&cli_bin, &node_ports);
            if let Some(&victim) = masters_now.first() {
                println!("==> [scale] kill the Redis master on {victim}");
                let reconnects = status(&mut clients)?.sum("reconnects");
                let pid = cluster
                    .nodes
                    .iter()
                    .find(|(p, _)| *p == victim)
                    .map(|(_, c)| c.id());
                if let Some(pid) = pid {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                let t0 = Instant::now();
                let others: Vec<u16> = node_ports
                    .iter()
                    .copied()
                    .filter(|p| *p != victim)
                    .collect();
                let deadline = Duration::from_secs(120);
                let failover = loop {
                    // Promoted: three masters again, none of them the
                    // killed node (whose peers still call it a master
                    // until they time it out).
                    let now_masters = masters(&cli_bin, &others);
                    let ok = others.iter().all(|p| {
                        cli(&cli_bin, *p, &["cluster", "info"]).contains("cluster_state:ok")
                    });
                    if ok && now_masters.len() >= 3 && !now_masters.contains(&victim) {
                        break Some(t0.elapsed());
                    }
                    if t0.elapsed() > deadline {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                let s = status(&mut clients)?;
                phases.end("master kill", &s);
                rows.add(
                    format!("Redis master SIGKILL at {n} connections: a replica promoted"),
                    secs(failover),
                    "",
                );
                rows.add(
                    "  … connections open after it / reconnects during it",
                    format!("{} / {}", s.sum("open"), s.sum("reconnects") - reconnects),
                    format!("{n} / —"),
                );
            }
        }
    }

    // Stop the load; every run must end.
    for c in &mut clients {
        c.ask("load 0 0 0")?;
    }
    let ended = wait_until(&mut clients, Duration::from_secs(120), |s| {
        s.sum("runs_in_flight") == 0
    })?;
    let s = status(&mut clients)?;
    phases.end("the last runs", &s);
    let (completed, told, incomplete, timed_out) = (
        s.sum("runs_completed"),
        s.sum("runs_told"),
        s.sum("runs_incomplete"),
        s.sum("runs_timed_out"),
    );
    rows.add(
        "runs since the load was measured: completed / told / incomplete / timed out",
        format!("{completed} / {told} / {incomplete} / {timed_out}"),
        "— / — / 0 / 0",
    );
    rows.add(
        "duplicates dropped by clients / gaps resumed / late events of runs given up on",
        format!(
            "{} / {} / {}",
            s.sum("duplicates_dropped"),
            s.sum("gaps_detected"),
            s.sum("stray_events")
        ),
        "",
    );
    rows.add(
        "  … by the phase they ended in (completed / told / incomplete / timed out)",
        phases.render(),
        "",
    );
    if ended.is_none() || incomplete > 0 || timed_out > 0 {
        let gauge = |name: &str| -> Vec<String> {
            gateways
                .iter()
                .map(|g| format!("{:.0}", g.metric(name)))
                .collect()
        };
        failures.push(format!(
            "runs lost: {incomplete} incomplete, {timed_out} timed out, {} still going (the gateways' runs in flight: {}; their outboxes: {})",
            s.sum("runs_in_flight"),
            gauge("wsc_gateway_runs_in_flight").join(" "),
            gauge("wsc_gateway_outbox_events").join(" ")
        ));
    }
    if s.sum("resumes_refused") > 0 {
        failures.push(format!("{} resumes refused", s.sum("resumes_refused")));
    }
    drop(clients);
    drop(gateways);
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        println!(
            "<== [scale] the gateways' logs are kept in {}",
            logs.display()
        );
    }
    let table = render(o, &rows, started.elapsed());
    Ok(Report { table, failures })
}

/// The runs' outcomes at the end of each phase, to say in which phase
/// runs were lost (counted from the steady load's reset on; a run counts
/// in the phase it ended in, a timed-out one 90 s after its last event).
#[derive(Default)]
struct Phases {
    ended: Vec<(&'static str, [u64; 4])>,
}

impl Phases {
    fn end(&mut self, phase: &'static str, s: &Status) {
        let now = [
            s.sum("runs_completed"),
            s.sum("runs_told"),
            s.sum("runs_incomplete"),
            s.sum("runs_timed_out"),
        ];
        self.ended.push((phase, now));
    }

    fn render(&self) -> String {
        let mut before = [0u64; 4];
        let mut parts = Vec::new();
        for (phase, now) in &self.ended {
            let d: Vec<String> = now
                .iter()
                .zip(before)
                .map(|(n, b)| n.saturating_sub(b).to_string())
                .collect();
            parts.push(format!("{phase} {}", d.join("/")));
            before = *now;
        }
        parts.join("; ")
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// This process's soft open-file limit (what the children inherit).
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

fn render(o: &Options, rows: &Rows, took: Duration) -> String {
    let date = Command::new("date")
        .arg("+%Y-%m-%d %H:%M")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut out = format!(
        "`cargo xtask scale --connections {} --gateways {}` ({date}, {:.0} min; 2 cores shared by the gateways, the clients and Redis)\n\n| | measured | goal |\n|---|---|---|\n",
        o.connections,
        o.gateways,
        took.as_secs_f64() / 60.0
    );
    for (what, value, goal) in &rows.0 {
        out.push_str(&format!("| {what} | {value} | {goal} |\n"));
    }
    out
}

/// Puts `table` between the markers in docs/scaling.md and BENCHMARKS.md.
fn write_table(table: &str) -> Result<(), String> {
    for file in ["docs/scaling.md", "BENCHMARKS.md"] {
        let path = root().join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
        let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
            return Err(format!("{file} has no {BEGIN} … {END}"));
        };
        let new = format!("{}{BEGIN}\n{table}{}", &text[..b], &text[e..]);
        std::fs::write(&path, new).map_err(|e| format!("{file}: {e}"))?;
        println!("<== [scale] table written to {file}");
    }
    Ok(())
}
