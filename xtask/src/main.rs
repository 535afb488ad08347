//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo
//! does. `cargo xtask --help` lists the tasks.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod audit;
mod bench;
mod ci;
mod cycles;
mod fuzz;
mod provision;
mod publish;
mod python;
mod redis;
mod scale;
mod soak;

const HELP: &str = "\
cargo xtask <TASK>

Tasks:
  ci      the test command: fmt --check, import cycles, clippy -D warnings,
          tests, the examples, the legacy Python package's wheel and its
          pytest suite (as `python`), `scale --small` beside publish-check,
          docs
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
  scale   a deployment measured at size: a 3 + 3 Redis Cluster (Redis's
          default node timeout), `--gateways G` release gateways (6) and
          `--connections N` (100 000) held by `wsc-scale-client` processes
          each to its own loopback address; the idle cost (gateway memory,
          Redis memory and commands), a steady run load (`--load`, latency,
          CPU), a fan-out, a gateway SIGKILL, a rolling restart and a Redis
          master kill; writes its table to docs/scaling.md and BENCHMARKS.md
          (`--no-write`: only prints it; `--small --redis URL`: 6 gateways,
          3 000 connections and a gateway kill, the debug binaries, as ci
          runs it)
  publish-check
          every library crate has the metadata crates.io shows (description,
          license, repository, homepage, documentation, readme, keywords,
          categories) and `cargo package` verifies each (also run by ci)
  python  the legacy Python package (crates/python): its wheel built with
          maturin into target/wheels/ (`--release` for an optimized one),
          installed into target/pyenv, its pytest suite and the
          examples/python-legacy app run against it (also run by ci)
  cluster a local Redis Cluster (3 masters + 3 replicas on free ports) until
          Enter; ci starts one for the cluster tests (WSC_REDIS_CLUSTER_URL)
  help    print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::ci(),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("audit") => audit::audit(&args[1..]),
        Some("cycles") => cycles::cycles(),
        Some("soak") => soak::soak(&args[1..]),
        Some("scale") => scale::scale(&args[1..]),
        Some("cluster") => redis::cluster(),
        Some("publish-check") => publish::publish_check(),
        Some("python") => python::python(&args[1..]),
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
pub(crate) fn root() -> PathBuf {
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

/// Looks for a program on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
