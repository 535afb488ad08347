//! The Redis servers `cargo xtask ci` starts for the tests (one
//! `redis-server`, and a Redis Cluster of 3 masters + 3 replicas) and
//! `cargo xtask cluster`.
//!
//! `wsc_redis::testing::RedisCluster` starts the same kind of cluster for
//! the tests that break one (kill a master, reshard). It is not shared
//! here on purpose: xtask is built first in every CI run and depends on
//! `serde_json` alone; using the testing module would make it compile
//! redis, tokio and the workspace's crates before any check can run, and
//! this starter reports errors as values where the tests' helper panics.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::provision::apt_install;
use crate::which;

/// A `redis-server` the tests share, on a free port in a temporary
/// directory, stopped (and its directory removed) when dropped.
pub(crate) struct RedisForTests {
    child: std::process::Child,
    pub(crate) binary: PathBuf,
    pub(crate) url: String,
    dir: PathBuf,
}

impl Drop for RedisForTests {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("<== [redis] stopped");
    }
}

/// `redis-server`: `WSC_REDIS_SERVER`, else PATH, else — as root —
/// installed with `apt-get install redis-server`.
pub(crate) fn find_redis_server() -> Result<PathBuf, String> {
    let missing = "no redis-server for the Redis tests: install the Debian package `redis-server` \
                   (apt-get install redis-server) or set WSC_REDIS_SERVER to its binary";
    match env::var_os("WSC_REDIS_SERVER") {
        Some(p) => Ok(PathBuf::from(p)),
        None => match which("redis-server") {
            Some(p) => Ok(p),
            None => {
                println!("    installing with apt-get (root): apt-get install -y redis-server");
                if !apt_install("redis-server") {
                    return Err(missing.into());
                }
                which("redis-server").ok_or_else(|| missing.to_owned())
            }
        },
    }
}

/// A free loopback port.
pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts `redis-server` on `port` with its files in `dir`, no persistence,
/// and `extra` options.
pub(crate) fn spawn_redis(
    binary: &Path,
    port: u16,
    dir: &Path,
    extra: &[&str],
) -> Result<std::process::Child, String> {
    Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}

/// Waits until `port` accepts connections (at most 10 s).
pub(crate) fn wait_accepting(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server on port {port} did not start within 10 s"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Finds `redis-server` (`WSC_REDIS_SERVER`, else PATH, else — as root —
/// `apt-get install redis-server`) and starts it for the tests.
pub(crate) fn start_redis() -> Result<RedisForTests, String> {
    println!("==> [redis] a redis-server for the Redis tests");
    let binary = find_redis_server()?;
    let port = free_port()?;
    let dir = env::temp_dir().join(format!("wsc-xtask-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let child = spawn_redis(&binary, port, &dir, &[])?;
    let redis = RedisForTests {
        child,
        binary,
        url: format!("redis://127.0.0.1:{port}/"),
        dir,
    };
    wait_accepting(port)?;
    println!("<== [redis] {} on {}", redis.binary.display(), redis.url);
    Ok(redis)
}

/// A local Redis Cluster for the tests: 3 masters and 3 replicas on free
/// loopback ports (`redis-server --cluster-enabled yes`, then
/// `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`);
/// every node stopped (and its directory removed) when dropped.
pub(crate) struct RedisClusterForTests {
    nodes: Vec<std::process::Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Drop for RedisClusterForTests {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("<== [redis-cluster] stopped");
    }
}

impl RedisClusterForTests {
    /// `redis+cluster://127.0.0.1:P1,…` (every node, masters and replicas).
    pub(crate) fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}

/// `redis-cli`: `WSC_REDIS_CLI`, else beside `redis-server`, else PATH.
pub(crate) fn find_redis_cli(server: &Path) -> Option<PathBuf> {
    if let Some(p) = env::var_os("WSC_REDIS_CLI") {
        return Some(PathBuf::from(p));
    }
    let beside = server.with_file_name("redis-cli");
    if beside.is_file() {
        return Some(beside);
    }
    which("redis-cli")
}

/// Starts [`RedisClusterForTests`] and waits until every node says
/// `cluster_state:ok`.
pub(crate) fn start_redis_cluster() -> Result<RedisClusterForTests, String> {
    println!("==> [redis-cluster] 3 masters + 3 replicas for the cluster tests");
    let server = find_redis_server()?;
    let cli = find_redis_cli(&server)
        .ok_or("no redis-cli (Debian package redis-tools) for `--cluster create`")?;
    let dir = env::temp_dir().join(format!("wsc-xtask-cluster-{}", std::process::id()));
    let mut cluster = RedisClusterForTests {
        nodes: Vec::new(),
        ports: Vec::new(),
        dir,
    };
    for i in 0..6 {
        let port = free_port()?;
        let node_dir = cluster.dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| format!("cannot create {}: {e}", node_dir.display()))?;
        let options = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
        cluster
            .nodes
            .push(spawn_redis(&server, port, &node_dir, &options)?);
        cluster.ports.push(port);
    }
    for &port in &cluster.ports {
        wait_accepting(port)?;
    }
    let created = Command::new(&cli)
        .arg("--cluster")
        .arg("create")
        .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
    if !created.success() {
        return Err("`redis-cli --cluster create` failed".into());
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    for &port in &cluster.ports {
        loop {
            let info = Command::new(&cli)
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {port} did not reach cluster_state:ok in 30 s"
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    println!("<== [redis-cluster] {}", cluster.url());
    Ok(cluster)
}

/// `cargo xtask cluster`: a local cluster until Enter (or end of input),
/// for running the cluster tests by hand
/// (`WSC_REDIS_CLUSTER_URL=… cargo test -p wsc-redis`).
pub(crate) fn cluster() -> ExitCode {
    match start_redis_cluster() {
        Ok(cluster) => {
            println!(
                "export WSC_REDIS_CLUSTER_URL={}\n(press Enter to stop it; it stops at the end of input)",
                cluster.url()
            );
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(cluster);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask cluster: {e}");
            ExitCode::from(1)
        }
    }
}
