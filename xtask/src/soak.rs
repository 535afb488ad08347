//! `cargo xtask soak`: the release gateway in its own process under
//! moderate, steady load (rounds of `wsc-gateway demo --target`, with
//! dropped connections and resumes) for N minutes; its resident memory is
//! sampled every 10 s and the task says whether it stayed flat.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{cargo, target_dir};

const USAGE: &str =
    "usage: cargo xtask soak [--minutes N] [--users N]   (defaults: 10 minutes, 50 users)";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

struct Sample {
    at: Duration,
    rss_kib: u64,
    runs: u64,
}

#[derive(Default)]
struct Totals {
    rounds: u64,
    failed_rounds: u64,
    runs: u64,
    events: u64,
    lost: u64,
    duplicated: u64,
    disconnects: u64,
    resumes: u64,
}

fn parse(args: &[String]) -> Result<(u64, u64), String> {
    let (mut minutes, mut users) = (10, 50);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--minutes" => minutes = number("--minutes")?,
            "--users" => users = number("--users")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((minutes, users))
}

/// Resident set size of `pid` in KiB, from /proc.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn soak(args: &[String]) -> ExitCode {
    let (minutes, users) = match parse(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xtask soak: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!("==> [soak] building the release gateway");
    let built = cargo()
        .args(["build", "--release", "--locked", "-p", "wsc-gateway"])
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!("xtask soak: the build failed");
        return ExitCode::from(1);
    }
    let binary = target_dir().join("release/wsc-gateway");
    // Limits high enough that the load is never refused: this measures
    // memory under work, not the limiter. Sessions stay resumable 60 s.
    let mut server = match Command::new(&binary)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--max-handshakes-per-ip",
            "0",
            "--max-messages-per-ip-per-minute",
            "0",
        ])
        .args(["--max-messages-per-minute", "1000000"])
        .args(["--max-messages-per-hour", "100000000"])
        .args(["--session-ttl", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask soak: cannot start {}: {e}", binary.display());
            return ExitCode::from(1);
        }
    };
    let pid = server.id();
    let addr = server
        .stdout
        .take()
        .and_then(|out| BufReader::new(out).lines().map_while(Result::ok).next())
        .and_then(|line| line.strip_prefix("listening on http://").map(str::to_owned));
    let Some(addr) = addr else {
        eprintln!("xtask soak: the gateway did not say where it listens");
        let _ = server.kill();
        return ExitCode::from(1);
    };
    println!("==> [soak] gateway pid {pid} on {addr}; {minutes} min, {users} users per round");

    let started = Instant::now();
    let duration = Duration::from_secs(minutes * 60);
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, totals, done) = (samples.clone(), totals.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                if started.elapsed() >= next {
                    let Some(rss) = rss_kib(pid) else { break };
                    let runs = totals.lock().map_or(0, |t| t.runs);
                    let at = started.elapsed();
                    println!(
                        "    [{:>4} s] RSS {:>7.1} MiB, {runs} runs so far",
                        at.as_secs(),
                        rss as f64 / 1024.0
                    );
                    if let Ok(mut s) = samples.lock() {
                        s.push(Sample {
                            at,
                            rss_kib: rss,
                            runs,
                        });
                    }
                    next += SAMPLE_EVERY;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let url = format!("ws://{addr}/ws");
    while started.elapsed() < duration {
        let out = Command::new(&binary)
            .args(["demo", "--target", &url, "--json", "--flood-pings", "0"])
            .args(["--users", &users.to_string(), "--runs", "10"])
            .args(["--step-delay-ms", "20", "--disconnect-rate", "0.2"])
            .stderr(Stdio::null())
            .output();
        let mut t = match totals.lock() {
            Ok(t) => t,
            Err(_) => break,
        };
        t.rounds += 1;
        let report = out
            .as_ref()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        let passed = out.as_ref().is_ok_and(|o| o.status.success());
        if !passed {
            t.failed_rounds += 1;
        }
        if let Some(r) = report {
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            t.runs += n("runs_completed");
            t.events += n("events");
            t.lost += n("events_lost");
            t.duplicated += n("events_duplicated");
            t.disconnects += n("disconnects");
            t.resumes += n("resumes");
        }
    }
    // One last sample after the load.
    std::thread::sleep(Duration::from_millis(500));
    let last = rss_kib(pid);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let _ = server.kill();
    let _ = server.wait();

    let samples = samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let totals = totals
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    let report = render(&samples, &totals, last, minutes, users);
    println!("\n{}", report.text);
    let path = target_dir().join("soak-report.md");
    if std::fs::write(&path, &report.text).is_ok() {
        println!("xtask soak: report written to {}", path.display());
    }
    if report.flat && totals.failed_rounds == 0 && totals.lost == 0 && totals.duplicated == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

struct Report {
    text: String,
    flat: bool,
}

/// The verdict: memory after warm-up (the first fifth of the soak, at
/// most two minutes, while bounded structures fill up) compared with the
/// average of the last three samples. Flat means it grew by at most 10 %
/// or 4 MiB, whichever is larger.
fn render(samples: &[Sample], t: &Totals, last: Option<u64>, minutes: u64, users: u64) -> Report {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let warmup = Duration::from_secs((minutes * 60 / 5).min(120));
    let baseline = samples.iter().find(|s| s.at >= warmup).or(samples.first());
    let tail: Vec<u64> = samples.iter().rev().take(3).map(|s| s.rss_kib).collect();
    let end = if tail.is_empty() {
        0
    } else {
        tail.iter().sum::<u64>() / tail.len() as u64
    };
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let (flat, verdict) = match baseline {
        Some(b) => {
            let allowed = (b.rss_kib / 10).max(4 * 1024);
            let grown = end.saturating_sub(b.rss_kib);
            (
                grown <= allowed,
                format!(
                    "after warm-up ({} s) {:.1} MiB, at the end {:.1} MiB (mean of the last 3 samples): \
                     {:+.1} MiB; allowed {:.1} MiB -> {}",
                    b.at.as_secs(),
                    mib(b.rss_kib),
                    mib(end),
                    mib(end) - mib(b.rss_kib),
                    mib(allowed),
                    if grown <= allowed { "FLAT" } else { "GROWING" }
                ),
            )
        }
        None => (false, "no samples".to_owned()),
    };
    let mut text = format!(
        "# Soak: {minutes} min, {users} users per round\n\n\
         - rounds {} ({} failed), runs {}, events {}, lost {}, duplicated {}, drops {}, resumes {}\n\
         - RSS peak {:.1} MiB; after the load {}\n- memory: {verdict}\n\n\
         | time (s) | RSS (MiB) | runs so far |\n|---:|---:|---:|\n",
        t.rounds,
        t.failed_rounds,
        t.runs,
        t.events,
        t.lost,
        t.duplicated,
        t.disconnects,
        t.resumes,
        mib(peak),
        last.map_or("?".to_owned(), |k| format!("{:.1} MiB", mib(k))),
    );
    for s in samples {
        text.push_str(&format!(
            "| {} | {:.1} | {} |\n",
            s.at.as_secs(),
            mib(s.rss_kib),
            s.runs
        ));
    }
    Report { text, flat }
}
