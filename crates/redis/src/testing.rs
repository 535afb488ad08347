//! A throwaway `redis-server` for tests: started on a free loopback port in
//! a temporary directory, killed when dropped. The project's own tests use
//! it; it is public so tests of code built on wsc can too.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The `redis-server` binary: `WSC_REDIS_SERVER`, else the first on PATH.
///
/// # Panics
/// If there is none, with a message naming the Debian package.
pub fn redis_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WSC_REDIS_SERVER") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("redis-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no redis-server: install the Debian package `redis-server` (apt-get install \
         redis-server), run `cargo xtask ci` (it installs it as root), or set WSC_REDIS_SERVER"
    );
}

/// A `redis-server` process on a free loopback port; killed when dropped.
///
/// ```no_run
/// let mut server = wsc_redis::testing::RedisServer::start();
/// let url = server.url(); // redis://127.0.0.1:PORT/
/// server.kill();          // as a crash would
/// server.restart();       // same port
/// # let _ = url;
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    durable: bool,
    /// In a cluster: its `cluster-node-timeout` (ms).
    cluster: Option<u64>,
}

impl RedisServer {
    /// Starts a server without persistence (a restart comes back empty).
    ///
    /// # Panics
    /// If `redis-server` is missing or does not start within 10 s.
    pub fn start() -> RedisServer {
        Self::launch(false, None)
    }

    /// Starts a server that logs every write to an append-only file synced
    /// on each write, so a kill and restart lose nothing acknowledged.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_durable() -> RedisServer {
        Self::launch(true, None)
    }

    fn launch(durable: bool, cluster: Option<u64>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "wsc-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            durable,
            cluster,
        };
        server.restart();
        server
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts it on the same port and waits until it accepts.
    ///
    /// # Panics
    /// If it does not start within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new(redis_server_binary());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&self.dir);
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if let Some(timeout) = self.cluster {
            let timeout = timeout.to_string();
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &timeout,
            ]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of its own for a test that breaks it (kills a master):
/// 3 masters and 3 replicas on free loopback ports, created with
/// `redis-cli --cluster create`; every node killed when dropped.
///
/// ```no_run
/// let mut cluster = wsc_redis::testing::RedisCluster::start();
/// let url = cluster.url(); // redis+cluster://127.0.0.1:P1,…
/// let master = cluster.masters()[0];
/// cluster.kill(master);   // its replica takes over
/// cluster.wait_ok();
/// # let _ = url;
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// `redis-cli`: `WSC_REDIS_CLI`, else beside `redis-server`, else PATH.
fn redis_cli_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WSC_REDIS_CLI") {
        return PathBuf::from(p);
    }
    let beside = redis_server_binary().with_file_name("redis-cli");
    if beside.is_file() {
        return beside;
    }
    PathBuf::from("redis-cli")
}

impl RedisCluster {
    /// Starts the six nodes, creates the cluster and waits until every node
    /// says `cluster_state:ok` and every replica has its first copy of its
    /// master (see [`wait_ok`](Self::wait_ok)).
    ///
    /// # Panics
    /// If a node does not start, `redis-cli` is missing or the cluster is
    /// not ready within 60 s.
    pub fn start() -> RedisCluster {
        Self::start_with_node_timeout(Duration::from_secs(2))
    }

    /// The same with another `cluster-node-timeout` (how long a master is
    /// unreachable before its replica takes over; Redis's default is 15 s,
    /// [`start`](Self::start)'s 2 s).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_with_node_timeout(timeout: Duration) -> RedisCluster {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::launch(false, Some(ms)))
            .collect();
        let status = Command::new(redis_cli_binary())
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (Debian package redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,…`, every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new(redis_cli_binary())
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ports of the live masters that hold slots.
    pub fn masters(&self) -> Vec<u16> {
        let Some(alive) = self.nodes.iter().find(|n| n.child.is_some()) else {
            return Vec::new();
        };
        self.cli(alive.port, &["cluster", "nodes"])
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail") && l.split(' ').count() > 8)
            .filter_map(|l| {
                let address = l.split(' ').nth(1)?;
                address.split([':', '@']).nth(1)?.parse().ok()
            })
            .collect()
    }

    /// The port of the live master serving `key`'s hash slot, if any.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let alive = self.nodes.iter().find(|n| n.child.is_some())?;
        let slot = crate::hash_slot(key.as_bytes());
        self.cli(alive.port, &["cluster", "nodes"])
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .find_map(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                let serves = fields.iter().skip(8).any(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if (f..=t).contains(&slot))
                });
                serves
                    .then(|| fields.get(1)?.split([':', '@']).nth(1)?.parse().ok())
                    .flatten()
            })
    }

    /// Moves `slots` hash slots, with their keys, from the master on `from`
    /// to the master on `to` (`redis-cli --cluster reshard`), while the
    /// cluster serves.
    ///
    /// # Panics
    /// If `redis-cli` fails.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        let id = |port| self.cli(port, &["cluster", "myid"]).trim().to_owned();
        let status = Command::new(redis_cli_binary())
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster reshard failed");
    }

    /// Kills the node on `port` with SIGKILL, as a crash would.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
    }

    /// Waits until every live node says `cluster_state:ok` and every live
    /// replica's link to its master is up (after a kill: until the dead
    /// master's replica has taken over; after [`start`](Self::start): until
    /// every replica has its first copy, without which it could not take
    /// over).
    ///
    /// # Panics
    /// If that takes more than 60 s.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let info = self.cli(node.port, &["info", "replication"]);
                let replica_down =
                    info.contains("role:slave") && !info.contains("master_link_status:up");
                let cluster = self.cli(node.port, &["cluster", "info"]);
                if cluster.contains("cluster_state:ok") && !replica_down {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not recover in 60 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A server shared by a whole test binary: the one `cargo xtask ci` started
/// (`WSC_REDIS_URL`), else one started on first use.
pub fn shared_url() -> String {
    if let Ok(url) = std::env::var("WSC_REDIS_URL") {
        return url;
    }
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start).url()
}

/// The Redis Cluster `cargo xtask ci` started (`WSC_REDIS_CLUSTER_URL`,
/// `redis+cluster://…`; `cargo xtask cluster` starts one by hand), if any.
pub fn cluster_url() -> Option<String> {
    std::env::var("WSC_REDIS_CLUSTER_URL").ok()
}

/// Where a test that must hold on one Redis and on a cluster runs: the
/// shared server, then the cluster when there is one.
pub fn urls() -> Vec<String> {
    std::iter::once(shared_url()).chain(cluster_url()).collect()
}

/// A key prefix no other test (in any process) uses.
pub fn unique_prefix(name: &str) -> String {
    format!(
        "test:{name}:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
