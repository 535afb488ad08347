//! `cargo xtask fuzz`: runs the cargo-fuzz (libFuzzer) targets in `fuzz/`
//! for a while each, from the committed seeds plus a working corpus kept
//! under `target/`, and reports runs, coverage and crashes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use crate::{cargo, has_cargo_subcommand, root};

/// The targets, in the order they run (the `[[bin]]`s of `fuzz/Cargo.toml`).
const TARGETS: [&str; 6] = [
    "client_frame",
    "resume_query",
    "event_order",
    "stream_reader",
    "forwarded_for",
    "ag_ui_rules",
];

pub(crate) const HELP: &str = "\
cargo xtask fuzz [--seconds N] [--update-seeds] [TARGET ...]

Runs each fuzz target (default: all of client_frame, resume_query,
event_order, stream_reader, forwarded_for, ag_ui_rules) for N seconds (default 60) with cargo-fuzz on the stable
toolchain (RUSTC_BOOTSTRAP=1). Inputs start from fuzz/seeds/<target>/ and
a working corpus in target/fuzz-corpus/<target>/; a crash is saved in
target/fuzz-artifacts/<target>/ and the task exits 1. --update-seeds
merges the inputs that add coverage into fuzz/seeds/ (commit them).
Needs cargo-fuzz: cargo install cargo-fuzz.
";

struct Options {
    seconds: u64,
    update_seeds: bool,
    targets: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 60,
        update_seeds: false,
        targets: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = args.next().ok_or("--seconds needs a number")?;
                options.seconds = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--seconds: `{n}` is not a positive number"))?;
            }
            "--update-seeds" => options.update_seeds = true,
            "--help" | "-h" => return Err(String::new()),
            t if TARGETS.contains(&t) => options.targets.push(t.to_owned()),
            other => return Err(format!("unknown argument or target `{other}`")),
        }
    }
    if options.targets.is_empty() {
        options.targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(options)
}

/// What one target's run printed that is worth reporting.
#[derive(Default)]
struct Summary {
    runs: Option<String>,
    last_status: Option<String>,
}

pub(crate) fn fuzz(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("xtask fuzz: {e}\n");
            }
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
    };
    if !has_cargo_subcommand("fuzz") {
        eprintln!("xtask fuzz: cargo-fuzz is not installed; run `cargo install cargo-fuzz`");
        return ExitCode::from(1);
    }
    let root = root();
    let fuzz_dir = root.join("fuzz");
    let mut failed = Vec::new();
    let started = Instant::now();
    let mut report = Vec::new();
    for target in &options.targets {
        let corpus = root.join("target/fuzz-corpus").join(target);
        let artifacts = root.join("target/fuzz-artifacts").join(target);
        let seeds = fuzz_dir.join("seeds").join(target);
        for dir in [&corpus, &artifacts] {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("xtask fuzz: cannot create {}: {e}", dir.display());
                return ExitCode::from(1);
            }
        }
        println!(
            "==> [fuzz {target}] {} s, corpus {}",
            options.seconds,
            corpus.display()
        );
        let mut child = match cargo()
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", options.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("xtask fuzz: cannot start cargo fuzz: {e}");
                return ExitCode::from(1);
            }
        };
        let summary = follow(&mut child);
        let ok = child.wait().is_ok_and(|s| s.success());
        let corpus_size = count_files(&corpus);
        let line = format!(
            "| {target} | {} | {} | {corpus_size} | {} |",
            summary.runs.as_deref().unwrap_or("?"),
            summary.last_status.as_deref().unwrap_or("?"),
            if ok { "none" } else { "CRASH" },
        );
        println!("<== [fuzz {target}] {}", if ok { "ok" } else { "FAILED" });
        report.push(line);
        if !ok {
            failed.push(target.clone());
            println!(
                "    the crashing input is in {}; reproduce with\n    \
                 (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} <that file>);\n    \
                 once fixed, copy it into fuzz/seeds/{target}/ so `cargo xtask ci` keeps checking it",
                artifacts.display()
            );
        } else if options.update_seeds {
            let merged = cargo()
                .args(["fuzz", "run", target])
                .arg(&seeds)
                .arg(&corpus)
                .args(["--", "-merge=1"])
                .env("RUSTC_BOOTSTRAP", "1")
                .current_dir(&fuzz_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            println!(
                "    seeds: {} files in {} after merging{}",
                count_files(&seeds),
                seeds.display(),
                if merged { "" } else { " (the merge FAILED)" }
            );
        }
    }
    println!("\n| target | runs | last status | corpus files | crashes |");
    println!("|---|---|---|---|---|");
    for line in &report {
        println!("{line}");
    }
    println!("\nxtask fuzz: {:.0?} in all", started.elapsed());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask fuzz: crashes in {}", failed.join(", "));
        ExitCode::from(1)
    }
}

/// Passes libFuzzer's output through (its periodic status lines and
/// anything about a crash) and keeps the final numbers.
fn follow(child: &mut std::process::Child) -> Summary {
    let mut summary = Summary::default();
    let Some(stderr) = child.stderr.take() else {
        return summary;
    };
    // From a panic to libFuzzer's summary everything is shown: the
    // assertion's message says what broke.
    let mut crashing = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("panicked at") {
            crashing = true;
        }
        if crashing {
            println!("    {line}");
            if line.starts_with("SUMMARY") {
                crashing = false;
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Done ") {
            summary.runs = rest.split_whitespace().next().map(str::to_owned);
            println!("    {line}");
        } else if line.starts_with('#') && (line.contains("pulse") || line.contains("DONE")) {
            summary.last_status = Some(status_of(&line));
            println!("    {line}");
        } else if line.contains("ERROR")
            || line.contains("panicked")
            || line.contains("SUMMARY")
            || line.contains("Test unit written")
            || line.starts_with("error")
        {
            println!("    {line}");
        } else if line.starts_with('#') && line.contains("cov:") {
            summary.last_status = Some(status_of(&line));
        }
    }
    summary
}

/// `cov: N ft: M` from a libFuzzer status line.
fn status_of(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let pick = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("?")
    };
    format!("cov {} ft {}", pick("cov:"), pick("ft:"))
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}
