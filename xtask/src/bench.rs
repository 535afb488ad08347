//! `cargo xtask bench`: every criterion benchmark beside its anchor, the
//! scale curves and the gateway's connection and load runs, as one
//! markdown table printed and written to `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::{cargo, root, target_dir};

/// The heading from which BENCHMARKS.md keeps earlier measurements across
/// runs of `cargo xtask bench`.
const HISTORY: &str = "\n## History";

/// The heading of `cargo xtask scale`'s section, kept as it is.
const AT_SCALE: &str = "\n## At scale";

/// KiB per idle connection at 10 000 connections before issue 23
/// (2026-11-26), the anchor of the idle-connection ratios.
const BEFORE_IDLE_KIB: f64 = 26.1;

/// The goal per idle connection (issue 23), KiB.
const IDLE_GOAL_KIB: f64 = 10.0;
/// Heap bytes per ended 7-event run the event monitor kept before issue 23
/// (whole events; scale bench at 1 000 runs).
const BEFORE_ENDED_RUN_BYTES: f64 = 7055.0;
/// Issue 23's goal per ended run.
const ENDED_RUN_GOAL_BYTES: f64 = 2048.0;
/// The scale bench's component for ended runs.
const ENDED_RUN: &str = "event monitor: ended run (7 events, kept)";

/// A bench target: package and bench name.
const BENCHES: [(&str, &str); 8] = [
    ("wsc-rate-limiter", "limiter"),
    ("wsc-tests", "layer"),
    ("wsc-perf-monitor", "record"),
    ("wsc-event-monitor", "record_event"),
    ("wsc-reconnection", "replay"),
    ("wsc-gateway", "roundtrip"),
    ("wsc-gateway", "upstream"),
    ("wsc-redis", "redis"),
];

/// The harness-less benches run after the criterion ones.
const PROCESS_BENCHES: [(&str, &str); 6] = [
    ("wsc-tests", "scale"),
    ("wsc-gateway", "connections"),
    ("wsc-gateway", "load"),
    ("wsc-gateway", "fanout"),
    ("wsc-gateway", "ts_client"),
    ("wsc-gateway", "ag_ui_clients"),
];

/// What a row must reach.
#[derive(Clone, Copy)]
enum Goal {
    /// ours / anchor (time) at most this.
    RatioAtMost(f64),
    /// Ours at most this many nanoseconds.
    NanosAtMost(f64),
    /// Our throughput at least this fraction of the anchor's.
    ThroughputAtLeast(f64),
    /// Our ratio to the anchor at most `1 / gain` of the row `before`'s
    /// ratio to its anchor (both measured in the same run): `gain` times
    /// the operations per anchor operation.
    GainAtLeast {
        before: &'static str,
        gain: f64,
    },
    None,
}

struct Row {
    operation: &'static str,
    ours: &'static str,
    anchor: Option<(&'static str, &'static str)>,
    goal: Goal,
}

const fn row(
    operation: &'static str,
    ours: &'static str,
    anchor: Option<(&'static str, &'static str)>,
    goal: Goal,
) -> Row {
    Row {
        operation,
        ours,
        anchor,
        goal,
    }
}

/// The table: criterion ids (group/function[/value]) of ours and the anchor.
const ROWS: &[Row] = &[
    row(
        "rate limit decision, 1 window, one hot key, 1 thread",
        "rate_limiter/hot_key/wsc_1_window/1",
        Some(("governor", "rate_limiter/hot_key/governor/1")),
        Goal::RatioAtMost(1.0),
    ),
    row(
        "rate limit decision, 2 windows, one hot key, 1 thread",
        "rate_limiter/hot_key/wsc_2_windows/1",
        Some(("governor", "rate_limiter/hot_key/governor/1")),
        Goal::RatioAtMost(1.5),
    ),
    row(
        "rate limit decision, 1 window, 100 000 keys, 1 thread",
        "rate_limiter/100k_keys/wsc_1_window/1",
        Some(("governor", "rate_limiter/100k_keys/governor/1")),
        Goal::RatioAtMost(1.0),
    ),
    row(
        "rate limit decision, 2 windows, 100 000 keys, 1 thread",
        "rate_limiter/100k_keys/wsc_2_windows/1",
        Some(("governor", "rate_limiter/100k_keys/governor/1")),
        Goal::RatioAtMost(1.5),
    ),
    row(
        "rate limit decision, 1 window, 100 000 keys, 2 threads",
        "rate_limiter/100k_keys/wsc_1_window/2",
        Some(("governor", "rate_limiter/100k_keys/governor/2")),
        Goal::RatioAtMost(1.0),
    ),
    row(
        "rate-limit layer per request (axum, 1 024 clients), 1 window",
        "layer/per_request/wsc_1_window",
        Some(("tower_governor", "layer/per_request/tower_governor")),
        Goal::RatioAtMost(1.3),
    ),
    row(
        "rate-limit layer per request (axum, 1 024 clients), 2 windows",
        "layer/per_request/wsc_2_windows",
        Some(("tower_governor", "layer/per_request/tower_governor")),
        Goal::None,
    ),
    row(
        "latency record, 10 000 connections",
        "perf_monitor/record_10k_connections/wsc_record_message_processed",
        Some((
            "metrics histogram",
            "perf_monitor/record_10k_connections/metrics_histogram_record",
        )),
        Goal::NanosAtMost(120.0),
    ),
    row(
        "latency record, 10 000 connections (raw histogram)",
        "perf_monitor/record_10k_connections/wsc_record_message_processed",
        Some((
            "hdrhistogram",
            "perf_monitor/record_10k_connections/hdrhistogram_record",
        )),
        Goal::None,
    ),
    row(
        "event record, 100 000 runs",
        "event_monitor/record_event/wsc/100000",
        Some((
            "DashMap push",
            "event_monitor/record_event/dashmap_push/100000",
        )),
        Goal::NanosAtMost(250.0),
    ),
    row(
        "event record, 1 000 runs",
        "event_monitor/record_event/wsc/1000",
        Some((
            "DashMap push",
            "event_monitor/record_event/dashmap_push/1000",
        )),
        Goal::None,
    ),
    row(
        "replay buffer push (full buffer)",
        "reconnection/buffer_push/wsc_replay_buffer",
        Some((
            "VecDeque push+pop",
            "reconnection/buffer_push/vecdeque_push_pop",
        )),
        Goal::NanosAtMost(100.0),
    ),
    row(
        "replay of 1 000 frames",
        "reconnection/replay_1000/wsc_replay_after",
        None,
        Goal::NanosAtMost(50_000.0),
    ),
    row(
        "gateway ping→pong, 1 connection",
        "gateway/ping_pong/wsc_gateway/1",
        Some((
            "bare tokio-tungstenite echo",
            "gateway/ping_pong/bare_echo/1",
        )),
        Goal::ThroughputAtLeast(0.85),
    ),
    row(
        "gateway ping→pong, 100 connections",
        "gateway/ping_pong/wsc_gateway/100",
        Some((
            "bare tokio-tungstenite echo",
            "gateway/ping_pong/bare_echo/100",
        )),
        Goal::ThroughputAtLeast(0.85),
    ),
    row(
        "agent run from an AG-UI upstream (SSE, 1 000 frames) to the client, per frame",
        "gateway/upstream_run/through_gateway",
        Some((
            "the client reading the upstream directly",
            "gateway/upstream_run/direct",
        )),
        Goal::ThroughputAtLeast(0.8),
    ),
    row(
        "the same run through the gateway's AG-UI WebSocket dialect (events passed through), per event",
        "gateway/upstream_run/ag_ui_websocket",
        Some((
            "the client reading the upstream directly",
            "gateway/upstream_run/direct",
        )),
        Goal::ThroughputAtLeast(0.8),
    ),
    row(
        "the same run through the gateway's AG-UI SSE (`POST /ag-ui`), per event",
        "gateway/upstream_run/ag_ui_sse",
        Some((
            "the client reading the upstream directly",
            "gateway/upstream_run/direct",
        )),
        Goal::ThroughputAtLeast(0.8),
    ),
    row(
        "Redis rate limit decision, one client",
        "redis_one_client/wsc decide, two windows",
        Some(("INCR", "redis_one_client/INCR (anchor)")),
        Goal::None,
    ),
    row(
        "Redis rate limit decision, 64 in flight (per call; batched)",
        "redis_pipelined_64/wsc decide, two windows",
        Some(("INCR", "redis_pipelined_64/INCR (anchor)")),
        Goal::None,
    ),
    row(
        "Redis Cluster (3 masters) rate limit decision, 64 in flight (per call)",
        "redis_cluster_64/wsc decide, two windows",
        Some(("INCR on the cluster", "redis_cluster_64/INCR (anchor)")),
        Goal::None,
    ),
    row(
        "Redis CPU per decision, 64 in flight, each user once a second: the 2026-11-25 script",
        "redis_cpu_64_one_per_second/wsc decide, 2026-11-25 script (before)",
        Some(("INCR", "redis_cpu_64_one_per_second/INCR (anchor)")),
        Goal::None,
    ),
    row(
        "Redis CPU per decision, 64 in flight, each user once a second: now",
        "redis_cpu_64_one_per_second/wsc decide, two windows",
        Some(("INCR", "redis_cpu_64_one_per_second/INCR (anchor)")),
        Goal::GainAtLeast {
            before: "redis_cpu_64_one_per_second/wsc decide, 2026-11-25 script (before)",
            gain: 5.0,
        },
    ),
    row(
        "Redis CPU per decision, 64 in flight, each user 50 times a second: the 2026-11-25 script",
        "redis_cpu_64_fifty_per_second/wsc decide, 2026-11-25 script (before)",
        Some(("INCR", "redis_cpu_64_fifty_per_second/INCR (anchor)")),
        Goal::None,
    ),
    row(
        "Redis CPU per decision, 64 in flight, each user 50 times a second: now",
        "redis_cpu_64_fifty_per_second/wsc decide, two windows",
        Some(("INCR", "redis_cpu_64_fifty_per_second/INCR (anchor)")),
        Goal::GainAtLeast {
            before: "redis_cpu_64_fifty_per_second/wsc decide, 2026-11-25 script (before)",
            gain: 5.0,
        },
    ),
];

/// Median nanoseconds per element of every criterion result under
/// `target/criterion`, by full id.
fn criterion_results(dir: &Path) -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some((id, ns)) = read_result(&p) {
                        out.insert(id, ns);
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    out
}

fn read_result(new: &Path) -> Option<(String, f64)> {
    let bench: Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("benchmark.json")).ok()?).ok()?;
    let est: Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("estimates.json")).ok()?).ok()?;
    let id = bench["full_id"].as_str()?.to_owned();
    let ns = est["median"]["point_estimate"].as_f64()?;
    // Per element: criterion times one iteration, which may hold several.
    let elements = bench["throughput"]["Elements"].as_f64().unwrap_or(1.0);
    Some((id, ns / elements))
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn run_bench(
    package: &str,
    bench: &str,
    env: &[(&str, String)],
    quick: bool,
) -> Result<String, String> {
    // `--workspace` (not `-p`): the same feature set as the build below,
    // so nothing is compiled twice. Bench names are unique in the
    // workspace; `package` is for messages.
    let mut args = vec![
        "bench",
        "--locked",
        "--workspace",
        "--bench",
        bench,
        "--",
        "--noplot",
    ];
    if quick {
        // Short warm-up and measurement: every bench in about 2 s.
        args.extend_from_slice(&[
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
            "--quick",
        ]);
    }
    println!("==> [bench] cargo {}", args.join(" "));
    let out = cargo()
        .args(&args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo bench --workspace --bench {bench}` ({package}) failed"
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kb| format!(", {:.0} GiB", kb / 1_048_576.0));
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores, {model}{memory}; {date}")
}

pub(crate) fn bench(args: &[String]) -> ExitCode {
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    let redis = match crate::redis::find_redis_server() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            return ExitCode::from(1);
        }
    };
    // Fresh results only: a bench that fails must not leave old numbers.
    // Criterion writes under the cargo target directory (which
    // CARGO_TARGET_DIR may move).
    let target = target_dir();
    let criterion_dir = target.join("criterion");
    let _ = std::fs::remove_dir_all(&criterion_dir);
    // The cluster rows: a local 3 + 3 cluster while the benches run.
    let cluster = match crate::redis::start_redis_cluster() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            return ExitCode::from(1);
        }
    };
    let env = [
        ("WSC_REDIS_SERVER", redis.display().to_string()),
        ("WSC_REDIS_CLUSTER_URL", cluster.url()),
    ];
    let mut failures = Vec::new();
    // Build every bench target in one invocation (parallel, and each
    // dependency once) before running any.
    let mut build = vec!["bench", "--locked", "--workspace", "--no-run"];
    for (_, bench) in BENCHES.iter().chain(&PROCESS_BENCHES) {
        build.extend(["--bench", bench]);
    }
    println!("==> [bench] cargo {}", build.join(" "));
    let built = cargo().args(&build).status().is_ok_and(|s| s.success());
    if !built {
        eprintln!("xtask bench: building the benchmarks failed");
        return ExitCode::from(1);
    }
    let (mut upstream_latency, mut ag_ui_costs) = (None, None);
    for (package, bench) in BENCHES {
        match run_bench(package, bench, &env, quick) {
            Ok(out) if bench == "upstream" => {
                let lines = json_lines(&out);
                upstream_latency = lines
                    .iter()
                    .find(|v| v["upstream_latency"] == true)
                    .cloned();
                ag_ui_costs = lines.into_iter().find(|v| v["ag_ui"] == true);
            }
            Ok(_) => {}
            Err(e) => failures.push(e),
        }
    }
    let results = criterion_results(&criterion_dir);

    let mut md = String::new();
    let _ = writeln!(md, "# wsc benchmarks\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench{}` on {}. Medians from criterion; every anchor ran in the same \
         process and run as ours. Ratio = our time / the anchor's (below 1: we are faster).\n",
        if quick { " --quick" } else { "" },
        machine()
    );
    if quick {
        let _ = writeln!(
            md,
            "**Quick run** (0.5 s warm-up and 1 s of measurement per bench): indicative only; \
             rows over 100 000 keys are not warmed up. `cargo xtask bench` for real numbers.\n"
        );
    }
    let _ = writeln!(
        md,
        "| operation | ours | anchor | anchor time | ratio | goal | met |\n|---|---:|---|---:|---:|---|---|"
    );
    for r in ROWS {
        let ours = results.get(r.ours).copied();
        let anchor = r
            .anchor
            .and_then(|(name, id)| results.get(id).map(|t| (name, *t)));
        let ratio = match (ours, anchor) {
            (Some(o), Some((_, a))) if a > 0.0 => Some(o / a),
            _ => None,
        };
        let (goal, met) = match (r.goal, ours, ratio) {
            (Goal::RatioAtMost(g), _, Some(x)) => (format!("≤ {g}× anchor"), x <= g),
            (Goal::NanosAtMost(g), Some(o), _) => (format!("≤ {}", human(g)), o <= g),
            (Goal::ThroughputAtLeast(g), _, Some(x)) => {
                (format!("≥ {g}× anchor throughput"), x <= 1.0 / g)
            }
            (Goal::GainAtLeast { before, gain }, _, Some(x)) => {
                let before = results
                    .get(before)
                    .copied()
                    .zip(anchor)
                    .map(|(b, (_, a))| b / a);
                match before {
                    Some(b) => (
                        format!(
                            "≥ {gain}× the decisions per anchor of the row above (now {:.1}×)",
                            b / x
                        ),
                        b / x >= gain,
                    ),
                    None => (String::from("(no result for the row above)"), false),
                }
            }
            (Goal::None, ..) => (String::from("—"), true),
            _ => (String::from("(no result)"), false),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.operation,
            ours.map_or("—".into(), human),
            anchor.map_or("—", |(n, _)| n),
            anchor.map_or("—".into(), |(_, a)| human(a)),
            ratio.map_or("—".into(), |x| format!("{x:.2}")),
            goal,
            if matches!(r.goal, Goal::None) {
                ""
            } else if met {
                "yes"
            } else {
                "**no**"
            }
        );
    }

    if let Some(v) = &upstream_latency {
        let ns = |k: &str| human(v[k].as_f64().unwrap_or(f64::NAN));
        let _ = writeln!(
            md,
            "\n## Agent run through the gateway: latency per frame\n\n\
             The upstream row above: {} text deltas, each stamped with the time the upstream \
             handed it to its HTTP server, read by the client directly or through the gateway \
             (upstream write to client read, the run streaming as fast as it can, so queueing \
             is included).\n\n\
             | path | p50 | p99 |\n|---|---:|---:|\n\
             | direct | {} | {} |\n\
             | through the gateway | {} | {} |\n\
             | added by the gateway | {} | {} |",
            v["events"],
            ns("direct_p50_ns"),
            ns("direct_p99_ns"),
            ns("gateway_p50_ns"),
            ns("gateway_p99_ns"),
            ns("added_p50_ns"),
            ns("added_p99_ns"),
        );
    }

    if let Some(v) = &ag_ui_costs {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let allowed = |sse: &str| f(sse) + 24.0 + f("run_id_len");
        let met = |x: f64, goal: f64| if x <= goal { "yes" } else { "**no**" };
        let _ = writeln!(
            md,
            "\n## AG-UI out: what an event costs the gateway\n\n\
             The release gateway in its own process in front of the upstream above, its CPU \
             time read from `/proc`, one run at a time: the median of 5 rounds of {} events \
             (20 runs of 1 001). One run at a time, nearly every event wakes the gateway on its \
             own; the ≤ 6 µs goal is for the load it was set under (50 users × 10 runs), \
             measured in \"AG-UI clients\" below.\n\n\
             | measure | value | goal | met |\n|---|---:|---|---|\n\
             | gateway CPU per event, AG-UI dialect (passed through), one run at a time | {:.2} µs | — | |\n\
             | gateway CPU per event, wsc protocol (mapped to lifecycle frames), one run at a time | {:.2} µs | — | |\n\
             | gateway CPU per delivered event, 10 readers of each run | {:.2} µs | — | |\n\
             | bytes per text delta on the wire: WebSocket frame against the upstream's SSE event in its HTTP chunk | {:.1} | ≤ {:.1} + 24 + run id {:.1} = {:.1} | {} |\n\
             | the same without framing: WebSocket message against the SSE text | {:.1} | ≤ {:.1} + 24 + run id {:.1} = {:.1} | {} |\n\n\
             The envelope `{{\"seq\":N,\"run_id\":\"R\",\"event\":E}}` is 21 + digits(N) + |R| bytes \
             more than SSE's `data: E` and blank line; these sessions reach 5-digit seqs.",
            v["events"],
            f("cpu_us_per_event_ag_ui"),
            f("cpu_us_per_event_wsc"),
            f("cpu_us_per_delivered_event_10_readers"),
            f("ws_wire_bytes_per_delta"),
            f("sse_wire_bytes_per_delta"),
            f("run_id_len"),
            allowed("sse_wire_bytes_per_delta"),
            met(
                f("ws_wire_bytes_per_delta"),
                allowed("sse_wire_bytes_per_delta")
            ),
            f("ws_bytes_per_delta"),
            f("sse_bytes_per_delta"),
            f("run_id_len"),
            allowed("sse_bytes_per_delta"),
            met(f("ws_bytes_per_delta"), allowed("sse_bytes_per_delta")),
        );
    }

    // Scale curves.
    match run_bench("wsc-tests", "scale", &[], quick) {
        Ok(out) => {
            let _ = writeln!(
                md,
                "\n## Scale: time per operation and heap bytes per key\n\n\
                 Keys touched in a scattered order over the whole map; bytes counted by a \
                 counting allocator. \"× 1 000 keys\" compares with the same component at \
                 1 000 keys: time grows with the working set (cache and TLB misses once it \
                 outgrows the CPU caches); bytes per key should stay flat.\n\n\
                 | component | keys | time per op | × 1 000 keys | bytes per key |\n|---|---:|---:|---:|---:|"
            );
            let mut first: std::collections::HashMap<String, f64> = Default::default();
            let mut ended_runs = String::new();
            for v in json_lines(&out) {
                if v["component"] == ENDED_RUN {
                    let bytes = v["bytes_per_key"].as_f64().unwrap_or(f64::NAN);
                    let _ = writeln!(
                        ended_runs,
                        "| {} | {bytes:.0} B | {:.2} | {} |",
                        v["n"],
                        bytes / BEFORE_ENDED_RUN_BYTES,
                        if bytes <= ENDED_RUN_GOAL_BYTES {
                            "yes"
                        } else {
                            "**no**"
                        },
                    );
                }
                let component = v["component"].as_str().unwrap_or("?").to_owned();
                let ns = v["ns_per_op"].as_f64().unwrap_or(f64::NAN);
                let base = *first.entry(component.clone()).or_insert(ns);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.1} | {:.0} |",
                    component,
                    v["n"],
                    human(ns),
                    ns / base,
                    v["bytes_per_key"].as_f64().unwrap_or(f64::NAN)
                );
            }
            if !ended_runs.is_empty() {
                let _ = write!(
                    md,
                    "\n## Event monitor: bytes per ended run\n\n\
                     Heap the event monitor keeps per ended run (7 events shaped as the gateway \
                     records them) until `completed_max_age`, from the scale bench. Ratio: to the \
                     {BEFORE_ENDED_RUN_BYTES} B kept per run before issue 23 (whole events); goal \
                     ≤ {ENDED_RUN_GOAL_BYTES} B.\n\n\
                     | runs | bytes per ended run | ratio | goal met |\n|---:|---:|---:|---|\n\
                     {ended_runs}"
                );
            }
        }
        Err(e) => failures.push(e),
    }

    // The gateway with many idle connections, and under load.
    match run_bench("wsc-gateway", "connections", &[], quick) {
        Ok(out) => {
            let _ = writeln!(
                md,
                "\n## Gateway: idle connections\n\n\
                 The release `wsc-gateway serve` in its own process; memory from its resident \
                 set; round trips are ping→pong on 100 of the connections while all stay open. \
                 Ratio: to the {BEFORE_IDLE_KIB} KiB per idle connection measured at 10 000 \
                 before issue 23; goal ≤ {IDLE_GOAL_KIB} KiB from 10 000 connections up.\n\n\
                 | idle connections | memory per connection | ratio | goal met | round trip p50 | p99 |\n|---:|---:|---:|---|---:|---:|"
            );
            for v in json_lines(&out) {
                let kib = v["bytes_per_connection"].as_f64().unwrap_or(f64::NAN) / 1024.0;
                let met = match v["connections"].as_u64() {
                    Some(n) if n >= 10_000 && kib <= IDLE_GOAL_KIB => "yes",
                    Some(n) if n >= 10_000 => "**no**",
                    _ => "",
                };
                let _ = writeln!(
                    md,
                    "| {} | {kib:.2} KiB | {:.2} | {met} | {} | {} |",
                    v["connections"],
                    kib / BEFORE_IDLE_KIB,
                    human(v["rtt_p50_ns"].as_f64().unwrap_or(f64::NAN)),
                    human(v["rtt_p99_ns"].as_f64().unwrap_or(f64::NAN)),
                );
            }
        }
        Err(e) => failures.push(e),
    }
    match run_bench("wsc-gateway", "load", &[], quick) {
        Ok(out) => {
            let _ = writeln!(
                md,
                "\n## End to end: fixed offered load\n\n\
                 The same users and pacing through the gateway (the demo's load: agent runs) \
                 and through a bare tokio-tungstenite echo server (one frame echoed per event), \
                 each server in its own process; CPU is the server's.\n\n\
                 | server | messages | per second | latency p50 | p99 | server CPU per 1 000 |\n|---|---:|---:|---:|---:|---:|"
            );
            let rows = json_lines(&out);
            for v in rows.iter().filter(|v| v["server"] != "ratio") {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {} | {:.2} ms |",
                    v["server"].as_str().unwrap_or("?"),
                    v["messages"],
                    v["per_second"].as_f64().unwrap_or(f64::NAN),
                    human(v["p50_ns"].as_f64().unwrap_or(f64::NAN)),
                    human(v["p99_ns"].as_f64().unwrap_or(f64::NAN)),
                    v["cpu_ms_per_1000"].as_f64().unwrap_or(f64::NAN),
                );
            }
            if let Some(r) = rows.iter().find(|v| v["server"] == "ratio") {
                let each: Vec<String> = r["cpu_ratios"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .map(|x| format!("{x:.2}"))
                    .collect();
                let _ = writeln!(
                    md,
                    "\nGateway / echo CPU per event: **{:.2}** (median of {} rounds, the two servers \
                     alternating; each round: {}). Each row above is that server's median round.",
                    r["cpu_ratio_median"].as_f64().unwrap_or(f64::NAN),
                    r["rounds"],
                    each.join(", "),
                );
            }
        }
        Err(e) => failures.push(e),
    }
    match run_bench("wsc-gateway", "fanout", &[], quick) {
        Ok(out) => {
            let _ = writeln!(
                md,
                "\n## One run fanned out to 100 readers\n\n\
                 A backend publishes a run's frames (`POST /api/publish`) to a user with 100 \
                 connections open, one request after another; every connection receives every \
                 frame. The anchor is a bare tokio-tungstenite broadcast server handed the same \
                 frames over one WebSocket, each sent to every reader unparsed. Each server in its \
                 own process; ratio = the server's CPU per delivered frame / the anchor's.\n\n\
                 | server | frames delivered | per second | server CPU per 1 000 delivered | ratio |\n|---|---:|---:|---:|---:|"
            );
            let rows = json_lines(&out);
            let anchor = rows
                .iter()
                .find(|v| v["server"].as_str().is_some_and(|s| s.starts_with("bare")))
                .and_then(|v| v["cpu_ms_per_1000"].as_f64());
            for v in &rows {
                let cpu = v["cpu_ms_per_1000"].as_f64().unwrap_or(f64::NAN);
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.2} ms | {} |",
                    v["server"].as_str().unwrap_or("?"),
                    v["delivered"],
                    v["per_second"].as_f64().unwrap_or(f64::NAN),
                    cpu,
                    anchor.map_or_else(|| "—".to_owned(), |a| format!("{:.1}", cpu / a)),
                );
            }
        }
        Err(e) => failures.push(e),
    }
    // The TypeScript client (built first: npm ci and tsc).
    let node =
        crate::provision::prepare_typescript().map_err(|e| format!("the TypeScript client: {e}"));
    let in_node = |bench: &str| {
        node.clone().and_then(|node| {
            run_bench(
                "wsc-gateway",
                bench,
                &[("WSC_NODE", node.display().to_string())],
                quick,
            )
        })
    };
    let ts = in_node("ts_client");
    match ts {
        Ok(out) => {
            if let Some(v) = json_lines(&out)
                .into_iter()
                .find(|v| v["ts_client"] == true)
            {
                let ratio = v["ratio"].as_f64().unwrap_or(f64::NAN);
                let _ = writeln!(
                    md,
                    "\n## TypeScript client: frames per second into one Node client\n\n\
                     `@wsc/client` against a bare `ws` connection to the same release gateway, \
                     in one Node process ({} frames of 32-tool runs, 4 in flight, best of two).\n\n\
                     | client | frames/s |\n|---|---:|\n| `@wsc/client` | {:.0} |\n| bare `ws` | {:.0} |\n\n\
                     Ratio {ratio:.2} (goal ≥ 0.8: {}).",
                    v["frames"],
                    v["client_fps"].as_f64().unwrap_or(f64::NAN),
                    v["bare_ws_fps"].as_f64().unwrap_or(f64::NAN),
                    if ratio >= 0.8 { "met" } else { "**not met**" },
                );
            }
        }
        Err(e) => failures.push(e),
    }
    match in_node("ag_ui_clients") {
        Ok(out) => {
            if let Some(v) = json_lines(&out)
                .into_iter()
                .find(|v| v["ag_ui_clients"] == true)
            {
                let d = &v["deltas_per_second"];
                let cpu = &v["gateway_cpu_us_per_event"];
                let below = |us: Option<f64>| match us {
                    Some(us) if us <= 6.0 => "met",
                    _ => "**not met**",
                };
                let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                let met = |x: f64, goal: f64| if x >= goal { "yes" } else { "**no**" };
                let _ = writeln!(
                    md,
                    "\n## AG-UI clients: direct and through the gateway\n\n\
                     A fast local AG-UI backend (a tool call and 200 text deltas per run), {} users \
                     at once × {} runs each, in one Node process; the release gateway in its own; \
                     {} rounds taking turns: the median of each mode's rates, and of each \
                     round's ratio. Text deltas per second:\n\n\
                     | client | direct | through the gateway | ratio | goal | met |\n|---|---:|---:|---:|---|---|\n\
                     | lean (fetch, split SSE, JSON.parse), `POST /ag-ui` | {} | {} | {:.2} | ≥ 0.8 | {} |\n\
                     | lean WebSocket (`ws`, JSON.parse), AG-UI dialect | {} | {} | {:.2} | ≥ 0.8 | {} |\n\
                     | `@ag-ui/client` `HttpAgent` | {} | {} | {:.2} | ≥ 0.9 | {} |\n\
                     | `WscAgent` (against `HttpAgent` direct) | {} | {} | {:.2} | — | |\n\n\
                     The gateway's CPU per event it passed through (its `/proc` CPU time over a \
                     round, median), goal ≤ 6 µs: lean SSE {} µs ({}), lean WebSocket {} µs ({}); \
                     with the slower clients, which read fewer events per wake-up: `HttpAgent` {} \
                     µs, `WscAgent` {} µs.",
                    v["users"],
                    v["runs"],
                    v["rounds"],
                    d["lean_direct"],
                    d["lean_sse_gateway"],
                    f("lean_sse_vs_direct"),
                    met(f("lean_sse_vs_direct"), 0.8),
                    d["lean_direct"],
                    d["lean_ws_gateway"],
                    f("lean_ws_vs_direct"),
                    met(f("lean_ws_vs_direct"), 0.8),
                    d["http_agent_direct"],
                    d["http_agent_gateway"],
                    f("http_agent_vs_direct"),
                    met(f("http_agent_vs_direct"), 0.9),
                    d["http_agent_direct"],
                    d["wsc_agent_gateway"],
                    f("wsc_agent_vs_http_agent_direct"),
                    cpu["lean_sse_gateway"],
                    below(cpu["lean_sse_gateway"].as_f64()),
                    cpu["lean_ws_gateway"],
                    below(cpu["lean_ws_gateway"].as_f64()),
                    cpu["http_agent_gateway"],
                    cpu["wsc_agent_gateway"],
                );
            }
        }
        Err(e) => failures.push(e),
    }

    match crate::python::bench_line(quick) {
        Ok(v) => {
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "\n## The legacy Python package (`crates/python`)\n\n\
                 From Python, the optimized wheel: `record_message` of `websocket_core.rate_limiter` \
                 beside the `limits` package's moving-window limiter on its memory storage, the \
                 same limits (60 a minute, 1 000 an hour), {} admissions of {} users taking \
                 turns (best of 3); `record_event` of `websocket_core.event_monitor` per call.\n\n\
                 | call | ours | anchor | ratio | goal | met |\n|---|---:|---:|---:|---|---|\n\
                 | `record_message`, decisions/s | {:.0} | `limits` {:.0} | {:.2}× | ≥ 5× | {} |\n\
                 | `record_event`, per call | {:.2} µs | — | — | ≤ 2 µs | {} |",
                v["decisions"],
                v["users"],
                f("record_message_per_second"),
                f("limits_moving_window_per_second"),
                f("ratio"),
                if f("ratio") >= 5.0 { "yes" } else { "**no**" },
                f("record_event_us"),
                if f("record_event_us") <= 2.0 {
                    "yes"
                } else {
                    "**no**"
                },
            );
        }
        Err(e) => failures.push(e),
    }

    let _ = writeln!(
        md,
        "\nWhy the goals marked **no** are missed, with the profiles that show it: \
         [docs/performance.md](docs/performance.md)."
    );
    let _ = writeln!(
        md,
        "\n_{} in {:.0} s._",
        if failures.is_empty() {
            "Every benchmark ran".to_owned()
        } else {
            format!("Failed: {}", failures.join("; "))
        },
        started.elapsed().as_secs_f64()
    );
    println!("\n{md}");
    let path: PathBuf = root().join("BENCHMARKS.md");
    // Earlier dated measurements (from `## History` on) are kept below the
    // new tables.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    // `cargo xtask scale`'s section (its own run, its own table) stays.
    if let (Some(from), Some(to)) = (old.find(AT_SCALE), old.find(HISTORY))
        && from < to
    {
        md.push('\n');
        md.push_str(&old[from..to]);
    }
    if let Some(at) = old.find(HISTORY) {
        md.push('\n');
        md.push_str(&old[at..]);
    }
    if let Err(e) = std::fs::write(&path, &md) {
        eprintln!("xtask bench: cannot write {}: {e}", path.display());
        return ExitCode::from(1);
    }
    println!("xtask bench: wrote {}", path.display());
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
