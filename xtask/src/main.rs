//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo
//! does. `cargo xtask --help` lists the tasks.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod cycles;
mod fuzz;
mod publish;
mod soak;

const HELP: &str = "\
cargo xtask <TASK>

Tasks:
  ci      the test command: fmt --check, import cycles, clippy -D warnings,
          tests, the examples, publish-check, docs
          (prepares target/pyenv with Python's `websockets` and the example
          agent backends' packages for the gateway's cross-language tests, and finds headless Chromium for the dashboard's
          browser test, installing the `chromium` package with apt-get when
          run as root, and starts a redis-server on a free port for the Redis
          tests — installing `redis-server` the same way — and a Redis
          Cluster (3 masters + 3 replicas), stopping them at the end; stops at
          the first failing step with its code)
  bench   every criterion benchmark beside its anchor, scale curves (1 000 to
          1 000 000 keys), the gateway with 100 to 10 000 idle connections and
          under a fixed load beside a bare echo; prints one markdown table
          and writes BENCHMARKS.md (`--quick`: shorter measurements)
  fuzz    run the cargo-fuzz targets (`--seconds N` each, default 60;
          `--update-seeds`; see `cargo xtask fuzz --help`)
  cycles  no import cycle between the modules of any crate (the
          `use crate::...` graph of each; also run by ci)
  audit   cargo-deny: dependency licenses and duplicate versions against
          deny.toml (`--advisories` adds the RustSec check, which needs
          network access to the advisory database)
  soak    the release gateway under moderate load for `--minutes N`
          (default 10), its RSS sampled every 10 s; says whether memory
          stayed flat (not part of ci)
  publish-check
          every library crate has the metadata crates.io shows (description,
          license, repository, homepage, documentation, readme, keywords,
          categories) and `cargo package` verifies each (also run by ci)
  cluster a local Redis Cluster (3 masters + 3 replicas on free ports) until
          Enter; ci starts one for the cluster tests (WSC_REDIS_CLUSTER_URL)
  help    print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("audit") => audit(&args[1..]),
        Some("cycles") => cycles::cycles(),
        Some("soak") => soak::soak(&args[1..]),
        Some("cluster") => cluster(),
        Some("publish-check") => publish::publish_check(),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (the parent of this crate's manifest directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A `cargo` command: the cargo running this task (`CARGO`), else the one
/// on PATH; run from the workspace root.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

/// Whether `cargo <subcommand>` is installed (`cargo fuzz`, `cargo deny`).
pub(crate) fn has_cargo_subcommand(subcommand: &str) -> bool {
    cargo()
        .args([subcommand, "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the root
/// when relative), else `target/` under the root.
pub(crate) fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root().join(t) })
        .unwrap_or_else(|| root().join("target"))
}

/// One step of a task: a cargo command with extra environment.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
    env: Vec<(&'static str, String)>,
}

/// What the venv needs: `websockets` for the cross-language client test,
/// and the example agent backends' requirements (`examples/*/requirements.txt`:
/// the official `ag-ui-protocol` package, Starlette, uvicorn).
const PYTHON_PACKAGES: &[&str] = &[
    "websockets>=13,<18",
    "ag-ui-protocol>=1,<2",
    "starlette>=0.40,<2",
    "uvicorn>=0.30,<1",
];

/// Makes sure a Python with [`PYTHON_PACKAGES`] exists for the gateway's
/// cross-language tests: a venv under `target/pyenv`. Returns its
/// interpreter.
fn prepare_python() -> Result<PathBuf, String> {
    let venv = root().join("target").join("pyenv");
    let python = venv.join("bin").join("python");
    println!(
        "==> [python] a venv with websockets and the example agents' packages at {}",
        venv.display()
    );
    if !python.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 is needed for the gateway's Python client test ({e}); on Debian: apt-get install python3 python3-venv"))?;
        if !status.success() {
            return Err("`python3 -m venv` failed; on Debian: apt-get install python3-venv".into());
        }
    }
    let has = Command::new(&python)
        .args([
            "-c",
            "import websockets, ag_ui.core, ag_ui.encoder, starlette, uvicorn",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PYTHON_PACKAGES)
            .status()
            .map_err(|e| format!("pip could not run: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`pip install {}` failed (is PyPI reachable?)",
                PYTHON_PACKAGES.join(" ")
            ));
        }
    }
    println!("<== [python] ok");
    Ok(python)
}

/// Installs the TypeScript client's locked npm dependencies (`npm ci`)
/// and builds it (`tsc`): the gateway's tests run its unit tests and drive
/// the real gateway with it. Returns the `node` binary.
pub(crate) fn prepare_typescript() -> Result<PathBuf, String> {
    let dir = root().join("clients").join("typescript");
    println!("==> [typescript] npm ci and build in {}", dir.display());
    let node = which("node").ok_or(
        "node (20 or later) and npm are needed for the TypeScript client's tests; \
         on Debian: apt-get install nodejs npm",
    )?;
    for args in [
        &["ci", "--no-audit", "--no-fund"][..],
        &["run", "build"][..],
    ] {
        let status = Command::new("npm")
            .args(args)
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm could not run ({e}); install npm"))?;
        if !status.success() {
            return Err(format!(
                "`npm {}` failed in clients/typescript (is the npm registry reachable?)",
                args.join(" ")
            ));
        }
    }
    println!("<== [typescript] ok");
    Ok(node)
}

/// Looks for a program on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure headless Chromium exists for the dashboard's browser test:
/// `WSC_CHROMIUM`, else `chromium` (or a Chrome) on PATH, else — as root —
/// `apt-get install chromium`. Returns its path.
fn prepare_chromium() -> Result<PathBuf, String> {
    println!("==> [chromium] a headless browser for the dashboard test");
    if let Some(p) = env::var_os("WSC_CHROMIUM") {
        println!(
            "<== [chromium] {} (WSC_CHROMIUM)",
            PathBuf::from(&p).display()
        );
        return Ok(PathBuf::from(p));
    }
    let find = || {
        ["chromium", "chromium-browser", "google-chrome", "chrome"]
            .iter()
            .find_map(|n| which(n))
    };
    if let Some(p) = find() {
        println!("<== [chromium] {}", p.display());
        return Ok(p);
    }
    let missing = "no Chromium for the dashboard's browser test: install the Debian package `chromium` (apt-get install chromium) or set WSC_CHROMIUM to a Chrome/Chromium binary";
    if !is_root() || which("apt-get").is_none() {
        return Err(missing.into());
    }
    println!("    installing with apt-get (root): apt-get update && apt-get install -y chromium");
    if !apt_install("chromium") {
        return Err(format!("apt-get could not install chromium; {missing}"));
    }
    let p = find().ok_or(missing)?;
    println!("<== [chromium] {}", p.display());
    Ok(p)
}

/// Installs a Debian package with apt-get (root only).
fn apt_install(package: &str) -> bool {
    let ok = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    is_root()
        && which("apt-get").is_some()
        && ok(&["update", "-qq"])
        && ok(&["install", "-y", "-qq", package])
}

/// A `redis-server` the tests share, on a free port in a temporary
/// directory, stopped (and its directory removed) when dropped.
struct RedisForTests {
    child: std::process::Child,
    binary: PathBuf,
    url: String,
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
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts `redis-server` on `port` with its files in `dir`, no persistence,
/// and `extra` options.
fn spawn_redis(
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
fn wait_accepting(port: u16) -> Result<(), String> {
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
fn start_redis() -> Result<RedisForTests, String> {
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
fn find_redis_cli(server: &Path) -> Option<PathBuf> {
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
fn cluster() -> ExitCode {
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

fn ci() -> ExitCode {
    let prepared = prepare_python()
        .and_then(|py| prepare_chromium().map(|ch| (py, ch)))
        .and_then(|p| prepare_typescript().map(|node| (p, node)));
    let ((python, chromium), node) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xtask ci: {e}");
            return ExitCode::from(1);
        }
    };
    // Stopped when `ci` returns, whatever the outcome.
    let redis = match start_redis() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xtask ci: {e}");
            return ExitCode::from(1);
        }
    };
    let redis_cluster = match start_redis_cluster() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask ci: {e}");
            return ExitCode::from(1);
        }
    };
    let steps = [
        Step {
            name: "format",
            args: &["fmt", "--all", "--", "--check"],
            env: Vec::new(),
        },
        Step {
            name: "clippy",
            args: &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            env: Vec::new(),
        },
        Step {
            name: "tests",
            args: &["test", "--workspace", "--locked"],
            env: vec![
                ("WSC_PYTHON", python.display().to_string()),
                ("WSC_CHROMIUM", chromium.display().to_string()),
                ("WSC_NODE", node.display().to_string()),
                ("WSC_REDIS_URL", redis.url.clone()),
                ("WSC_REDIS_CLUSTER_URL", redis_cluster.url()),
                ("WSC_REDIS_SERVER", redis.binary.display().to_string()),
            ],
        },
        Step {
            name: "docs",
            args: &["doc", "--workspace", "--no-deps", "--locked"],
            env: vec![("RUSTDOCFLAGS", "-D warnings".to_owned())],
        },
    ];
    let started = Instant::now();
    println!("==> [cycles] no import cycle between the modules of any crate");
    if cycles::cycles() != ExitCode::SUCCESS {
        eprintln!("xtask ci: step `cycles` failed");
        return ExitCode::from(1);
    }
    for step in &steps {
        if let Err(code) = run(step) {
            eprintln!("xtask ci: step `{}` failed (exit code {code})", step.name);
            return ExitCode::from(code);
        }
    }
    if let Err(e) = run_examples() {
        eprintln!("xtask ci: step `examples` failed: {e}");
        return ExitCode::from(1);
    }
    if publish::publish_check() != ExitCode::SUCCESS {
        eprintln!("xtask ci: step `publish-check` failed");
        return ExitCode::from(1);
    }
    println!(
        "xtask ci: every step passed ({} cargo steps, the examples, publish-check) in {:.0?}",
        steps.len(),
        started.elapsed()
    );
    ExitCode::SUCCESS
}

/// The examples (`cargo run -p CRATE --example NAME`), run to their end:
/// each checks what it shows. `cargo test --workspace` built them already
/// (with the workspace's features); they run from `target/debug/examples`
/// rather than through `cargo run -p`, which would build their
/// dependencies again with one crate's features.
const EXAMPLES: &[&str] = &[
    "axum_layer",
    "custom_endpoint",
    "validate_recording",
    "prometheus_merge",
    "legacy",
];

fn run_examples() -> Result<(), String> {
    let dir = target_dir().join("debug").join("examples");
    for name in EXAMPLES {
        println!("==> [example {name}]");
        let started = Instant::now();
        let binary = dir.join(name);
        let status = Command::new(&binary)
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("{} (built by the tests step?): {e}", binary.display()))?;
        if !status.success() {
            return Err(format!("example {name} failed ({status})"));
        }
        println!("<== [example {name}] ok in {:.1?}", started.elapsed());
    }
    Ok(())
}

/// `cargo deny check` with the policy in `deny.toml`.
fn audit(args: &[String]) -> ExitCode {
    let advisories = match args {
        [] => false,
        [a] if a == "--advisories" => true,
        _ => {
            eprintln!("usage: cargo xtask audit [--advisories]");
            return ExitCode::from(2);
        }
    };
    if !has_cargo_subcommand("deny") {
        eprintln!(
            "xtask audit: cargo-deny is not installed; run `cargo install cargo-deny --locked`"
        );
        return ExitCode::from(1);
    }
    if !advisories {
        println!(
            "xtask audit: advisories not checked (they need the RustSec database over the \
             network); run `cargo xtask audit --advisories` where it can be fetched"
        );
    }
    let step = Step {
        name: "audit",
        args: if advisories {
            &["deny", "check", "licenses", "bans", "advisories"]
        } else {
            &["deny", "check", "licenses", "bans"]
        },
        env: Vec::new(),
    };
    match run(&step) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// Runs one step; `Err` carries the exit code to report (1 if the command
/// was killed by a signal or could not start).
fn run(step: &Step) -> Result<(), u8> {
    let shown_env: String = step
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v:?} "))
        .collect();
    println!(
        "==> [{}] {shown_env}cargo {}",
        step.name,
        step.args.join(" ")
    );
    let started = Instant::now();
    let status = cargo()
        .args(step.args)
        .envs(step.env.iter().map(|(k, v)| (*k, v.as_str())))
        // A clean clone gains nothing from incremental state; it only costs
        // disk (~1.7 GB for the workspace's tests).
        .env("CARGO_INCREMENTAL", "0")
        .status();
    match status {
        Ok(s) if s.success() => {
            println!("<== [{}] ok in {:.1?}", step.name, started.elapsed());
            Ok(())
        }
        Ok(s) => Err(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: could not start cargo: {e}");
            Err(1)
        }
    }
}
