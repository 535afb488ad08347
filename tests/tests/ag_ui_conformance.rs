//! AG-UI's rules against the official verifier: the same sequences —
//! generated well-formed runs, each with one event dropped, duplicated or
//! swapped, and the well-formed runs themselves — judged by
//! `wsc_event_monitor::AgUiRules` and by `@ag-ui/client` 1.0's
//! `verifyEvents` in Node (`clients/typescript/conformance/agui-verify.mjs`).
//! Wherever the official verifier refuses an event, the gateway refuses the
//! same one (so a stream it passes on never makes a frontend's verifier
//! throw); it refuses more in one documented place only: after
//! `RUN_FINISHED`, where AG-UI lets a new run start on the same stream and
//! a gateway run is over.
//!
//! `cargo xtask ci` installs the TypeScript package's npm dependencies and
//! passes `node` in `WSC_NODE`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use wsc_tests::ag_ui::{apply, build, generated, verdict};

fn official(sequences: &[Vec<Value>]) -> Vec<Option<(usize, String)>> {
    let node = std::env::var_os("WSC_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript");
    assert!(
        dir.join("node_modules/@ag-ui/client").exists(),
        "@ag-ui/client is not installed: run `npm ci` in clients/typescript (cargo xtask ci does)"
    );
    let mut child = Command::new(node)
        .arg("conformance/agui-verify.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let input = serde_json::to_vec(sequences).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the verifier script failed");
    let verdicts: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    verdicts
        .into_iter()
        .map(|v| {
            v["at"].as_u64().map(|at| {
                (
                    at as usize,
                    v["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn the_gateway_refuses_what_the_official_verifier_refuses() {
    let mut sequences = Vec::new();
    for seed in 0..1_000 {
        let (steps, fault) = generated(seed);
        let run = build(&steps);
        sequences.push(apply(run.clone(), &fault));
        if seed % 8 == 0 {
            sequences.push(run);
        }
    }
    let theirs = official(&sequences);
    let mut refused = 0;
    for (events, official) in sequences.iter().zip(theirs) {
        let ours = verdict(events);
        match (&ours, &official) {
            (None, None) => {}
            (Some((at, _)), Some((their_at, _))) if at == their_at => refused += 1,
            // Stricter in one place: an event after RUN_FINISHED that
            // AG-UI would accept (RUN_ERROR, or a new RUN_STARTED).
            (Some((at, "after_end")), _)
                if official.as_ref().is_none_or(|(their_at, _)| their_at > at) =>
            {
                let after = events[*at]["type"].as_str().unwrap();
                assert!(
                    matches!(after, "RUN_ERROR" | "RUN_STARTED"),
                    "stricter than the verifier on {after}: {events:?}"
                );
            }
            _ => panic!(
                "ours {ours:?}, the official verifier's {official:?}, on {}",
                serde_json::to_string(events).unwrap()
            ),
        }
    }
    assert!(
        refused > 100,
        "the faults were judged: {refused} refused alike"
    );
}
