//! What `cargo xtask ci` provisions for the tests: a Python venv with the
//! packages the cross-language tests need, the TypeScript client's build,
//! and headless Chromium (installed with apt-get when run as root).

use std::env;
use std::path::PathBuf;
use std::process::Command;

use crate::{is_root, root, which};

/// What the venv needs: `websockets` for the cross-language client test,
/// the example agent backends' requirements (`examples/*/requirements.txt`:
/// the official `ag-ui-protocol` package, Starlette, uvicorn), and what the
/// legacy Python package's wheel is built and tested with (maturin, pytest,
/// pytest-asyncio, Hypothesis, its dependency psutil, and `limits`, the
/// anchor of its benchmark).
pub(crate) const PYTHON_PACKAGES: &[&str] = &[
    "websockets>=13,<18",
    "ag-ui-protocol>=1,<2",
    "starlette>=0.40,<2",
    "uvicorn>=0.30,<1",
    "maturin>=1.5,<2",
    "pytest>=8,<10",
    "pytest-asyncio>=0.23,<2",
    "hypothesis>=6,<7",
    "psutil>=5.9",
    "limits>=3,<6",
];

/// Makes sure a Python with [`PYTHON_PACKAGES`] exists for the gateway's
/// cross-language tests: a venv under `target/pyenv`. Returns its
/// interpreter.
pub(crate) fn prepare_python() -> Result<PathBuf, String> {
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
            "import websockets, ag_ui.core, ag_ui.encoder, starlette, uvicorn, maturin, pytest, \
             pytest_asyncio, hypothesis, psutil, limits",
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

/// Makes sure headless Chromium exists for the dashboard's browser test:
/// `WSC_CHROMIUM`, else `chromium` (or a Chrome) on PATH, else — as root —
/// `apt-get install chromium`. Returns its path.
pub(crate) fn prepare_chromium() -> Result<PathBuf, String> {
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
pub(crate) fn apt_install(package: &str) -> bool {
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
