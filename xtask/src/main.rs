//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo
//! does. `cargo xtask --help` lists the tasks.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const HELP: &str = "\
cargo xtask <TASK>

Tasks:
  ci      the test command: fmt --check, clippy -D warnings, tests, docs
          (prepares target/pyenv with Python's `websockets` for the gateway's
          cross-language test; stops at the first failing step with its code)
  help    print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
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

/// One step of a task: a cargo command with extra environment.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
    env: Vec<(&'static str, String)>,
}

/// Makes sure a Python with the `websockets` package exists for the
/// gateway's cross-language test: a venv under `target/pyenv`. Returns its
/// interpreter.
fn prepare_python() -> Result<PathBuf, String> {
    let venv = root().join("target").join("pyenv");
    let python = venv.join("bin").join("python");
    println!(
        "==> [python] a venv with `websockets` at {}",
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
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "websockets>=13,<18"])
            .status()
            .map_err(|e| format!("pip could not run: {e}"))?;
        if !status.success() {
            return Err("`pip install websockets` failed (is PyPI reachable?)".into());
        }
    }
    println!("<== [python] ok");
    Ok(python)
}

fn ci() -> ExitCode {
    let python = match prepare_python() {
        Ok(p) => p,
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
            env: vec![("WSC_PYTHON", python.display().to_string())],
        },
        Step {
            name: "docs",
            args: &["doc", "--workspace", "--no-deps", "--locked"],
            env: vec![("RUSTDOCFLAGS", "-D warnings".to_owned())],
        },
    ];
    let started = Instant::now();
    for step in &steps {
        if let Err(code) = run(step) {
            eprintln!("xtask ci: step `{}` failed (exit code {code})", step.name);
            return ExitCode::from(code);
        }
    }
    println!(
        "xtask ci: all {} steps passed in {:.0?}",
        steps.len(),
        started.elapsed()
    );
    ExitCode::SUCCESS
}

/// Runs one step; `Err` carries the exit code to report (1 if the command
/// was killed by a signal or could not start).
fn run(step: &Step) -> Result<(), u8> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
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
    let status = Command::new(&cargo)
        .args(step.args)
        .envs(step.env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(root())
        .status();
    match status {
        Ok(s) if s.success() => {
            println!("<== [{}] ok in {:.1?}", step.name, started.elapsed());
            Ok(())
        }
        Ok(s) => Err(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: could not start `{cargo}`: {e}");
            Err(1)
        }
    }
}
