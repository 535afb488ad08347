//! `cargo xtask publish-check`: every library crate of the workspace is
//! ready for crates.io: the metadata its page shows is there, and
//! `cargo package` (with its verification build of the packaged sources)
//! succeeds for each.

use std::process::ExitCode;

use serde_json::Value;

use crate::cargo;

/// What crates.io and docs.rs show of a crate; each library must set all.
const REQUIRED: &[&str] = &[
    "description",
    "license",
    "repository",
    "homepage",
    "documentation",
    "readme",
];

/// The workspace's publishable library crates (a `lib` target, `publish`
/// not false), or why they could not be listed.
fn libraries() -> Result<Vec<Value>, String> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .map_err(|e| format!("cargo metadata could not run: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let metadata: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    Ok(packages
        .into_iter()
        .filter(|p| p["publish"] != Value::Array(Vec::new()))
        .filter(|p| {
            p["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.contains(&"lib".into()))
                })
            })
        })
        .collect())
}

/// What `package` lacks, one line each.
fn missing_metadata(package: &Value) -> Vec<String> {
    let name = package["name"].as_str().unwrap_or("?");
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|field| package[**field].as_str().is_none_or(str::is_empty))
        .map(|field| format!("{name}: no `{field}`"))
        .collect();
    for list in ["keywords", "categories"] {
        if package[list].as_array().is_none_or(Vec::is_empty) {
            missing.push(format!("{name}: no `{list}`"));
        }
    }
    missing
}

/// Removes what an earlier `cargo package` unpacked of these crates.
/// Packaging several crates of a workspace verifies each against the others'
/// packages through a local registry, which cargo unpacks under
/// `$CARGO_HOME/registry/src/-<hash>/NAME-VERSION` and does not unpack
/// again for the same name and version: without this, a second check from
/// the same checkout would build against the first one's sources. Only
/// those local registries (`-` directories) are touched, and only these
/// crates.
fn forget_unpacked(libraries: &[Value]) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(sources) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&sources) else {
        return;
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for library in libraries {
            let (Some(name), Some(version)) =
                (library["name"].as_str(), library["version"].as_str())
            else {
                continue;
            };
            let _ = std::fs::remove_dir_all(registry.path().join(format!("{name}-{version}")));
        }
    }
}

pub(crate) fn publish_check() -> ExitCode {
    println!("==> [publish-check] metadata and `cargo package` of every library crate");
    let libraries = match libraries() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("xtask publish-check: {e}");
            return ExitCode::from(1);
        }
    };
    let missing: Vec<String> = libraries.iter().flat_map(missing_metadata).collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask publish-check: metadata missing:\n  {}",
            missing.join("\n  ")
        );
        return ExitCode::from(1);
    }
    forget_unpacked(&libraries);
    let mut command = cargo();
    // The working tree may hold uncommitted work while iterating; a clean
    // clone has none.
    command.args(["package", "--locked", "--allow-dirty"]);
    for library in &libraries {
        command.args(["-p", library["name"].as_str().unwrap_or_default()]);
    }
    match command.status() {
        Ok(s) if s.success() => {
            println!("<== [publish-check] {} crates packaged", libraries.len());
            ExitCode::SUCCESS
        }
        Ok(s) => ExitCode::from(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask publish-check: cargo could not run: {e}");
            ExitCode::from(1)
        }
    }
}
