//! `cargo xtask python`: the legacy Python package (`crates/python`) built
//! as a wheel into `target/wheels/` with maturin, installed into the venv of
//! `target/pyenv`, and its pytest suite run against the installed wheel
//! (the package's own tests, the README's quick start and the
//! `examples/python-legacy` app).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::provision::prepare_python;
use crate::{root, target_dir};

pub(crate) fn python(args: &[String]) -> ExitCode {
    let release = args.iter().any(|a| a == "--release");
    let result = prepare_python().and_then(|python| build_and_test(&python, release));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask python: {e}");
            ExitCode::from(1)
        }
    }
}

/// Builds the wheel (the dev profile unless `release`: the tests step has
/// compiled the crates it needs), installs it into `python`'s venv and runs
/// the suite.
pub(crate) fn build_and_test(python: &Path, release: bool) -> Result<(), String> {
    let started = Instant::now();
    build_and_install(python, release)?;
    // From the crate's directory the tests would import the sources, not
    // the installed wheel: run them from elsewhere.
    let tests = root().join("crates").join("python").join("tests");
    let example = root().join("examples").join("python-legacy");
    println!("==> [python] pytest (the package's suite and the example app) against the wheel");
    run(
        Command::new(python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-c"])
            .arg(root().join("crates").join("python").join("pyproject.toml"))
            .arg(&tests)
            .arg(&example)
            .current_dir(target_dir()),
        "pytest",
    )?;
    println!("<== [python] ok in {:.1?}", started.elapsed());
    Ok(())
}

/// `cargo xtask bench`'s Python row: an optimized wheel installed into the
/// venv, then `crates/python/bench/bench_legacy.py`; its JSON line.
pub(crate) fn bench_line(quick: bool) -> Result<serde_json::Value, String> {
    let python = prepare_python()?;
    build_and_install(&python, true)?;
    let mut bench = Command::new(&python);
    bench
        .arg(
            root()
                .join("crates")
                .join("python")
                .join("bench")
                .join("bench_legacy.py"),
        )
        .current_dir(target_dir());
    if quick {
        bench.arg("--quick");
    }
    let output = bench
        .output()
        .map_err(|e| format!("the Python benchmark could not start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the Python benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no JSON line from the Python benchmark: {stdout}"))
}

/// Builds the wheel into `target/wheels/` (optimized with `release`, else
/// in the dev profile the tests step has compiled for) and installs it into
/// `python`'s venv in place of any earlier one.
fn build_and_install(python: &Path, release: bool) -> Result<(), String> {
    let wheels = target_dir().join("wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    println!("==> [python] maturin build into {}", wheels.display());
    let mut build = Command::new(python);
    build
        .args(["-m", "maturin", "build", "--quiet", "--interpreter"])
        .arg(python)
        .arg("--out")
        .arg(&wheels)
        .arg("--manifest-path")
        .arg(root().join("crates").join("python").join("Cargo.toml"))
        .current_dir(root());
    if release {
        build.arg("--release");
    } else {
        build.args(["--profile", "dev"]);
    }
    run(&mut build, "maturin build")?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("no wheel in {}: {e}", wheels.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("maturin wrote no wheel into {}", wheels.display()))?;
    println!("==> [python] pip install {}", wheel.display());
    run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
        "pip install",
    )
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
