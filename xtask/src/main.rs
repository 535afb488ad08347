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
          (stops at the first failing step and exits with its code)
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
    env: &'static [(&'static str, &'static str)],
}

fn ci() -> ExitCode {
    let steps = [
        Step {
            name: "format",
            args: &["fmt", "--all", "--", "--check"],
            env: &[],
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
            env: &[],
        },
        Step {
            name: "tests",
            args: &["test", "--workspace", "--locked"],
            env: &[],
        },
        Step {
            name: "docs",
            args: &["doc", "--workspace", "--no-deps", "--locked"],
            env: &[("RUSTDOCFLAGS", "-D warnings")],
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
        .envs(step.env.iter().copied())
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
