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
            .args(["-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"])
            .arg(&wheel),
        "pip install",
    )?;
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
