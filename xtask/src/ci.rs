//! `cargo xtask ci`: the test command, its steps in order.

use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::provision::{prepare_chromium, prepare_python, prepare_typescript};
use crate::redis::{start_redis, start_redis_cluster};
use crate::{cargo, cycles, publish, python, root, scale, target_dir};

/// One step of a task: a cargo command with extra environment.
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) args: &'static [&'static str],
    pub(crate) env: Vec<(&'static str, String)>,
}

pub(crate) fn ci() -> ExitCode {
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
    if let Err(e) = python::build_and_test(&python, false) {
        eprintln!("xtask ci: step `python` failed: {e}");
        return ExitCode::from(1);
    }
    // The scale layout mostly waits on sockets while publish-check
    // compiles: the two run side by side.
    println!("==> [scale] cargo xtask scale --small, beside publish-check");
    let cluster_url = redis_cluster.url();
    let scale = std::thread::spawn(move || {
        let started = Instant::now();
        let outcome = scale::small(&cluster_url);
        (outcome, started.elapsed())
    });
    let published = publish::publish_check();
    match scale.join() {
        Ok((Ok(()), took)) => println!("<== [scale] ok in {took:.1?}"),
        Ok((Err(e), _)) => {
            eprintln!("xtask ci: step `scale` failed: {e}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("xtask ci: step `scale` panicked");
            return ExitCode::from(1);
        }
    }
    if published != ExitCode::SUCCESS {
        eprintln!("xtask ci: step `publish-check` failed");
        return ExitCode::from(1);
    }
    println!(
        "xtask ci: every step passed ({} cargo steps, the examples, the Python package, the scale layout, publish-check) in {:.0?}",
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
pub(crate) const EXAMPLES: &[&str] = &[
    "axum_layer",
    "custom_endpoint",
    "validate_recording",
    "prometheus_merge",
    "legacy",
];

pub(crate) fn run_examples() -> Result<(), String> {
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

/// Runs one step; `Err` carries the exit code to report (1 if the command
/// was killed by a signal or could not start).
pub(crate) fn run(step: &Step) -> Result<(), u8> {
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
