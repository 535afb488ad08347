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
}

impl RedisServer {
    /// Starts a server without persistence (a restart comes back empty).
    ///
    /// # Panics
    /// If `redis-server` is missing or does not start within 10 s.
    pub fn start() -> RedisServer {
        Self::launch(false)
    }

    /// Starts a server that logs every write to an append-only file synced
    /// on each write, so a kill and restart lose nothing acknowledged.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_durable() -> RedisServer {
        Self::launch(true)
    }

    fn launch(durable: bool) -> RedisServer {
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
