//! Starting the `wsc-gateway` binary in its own process, for the tests that
//! need the real process (signals, logs, refusals at startup).

#![allow(dead_code)] // each test binary uses part of it

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `wsc-gateway serve ARGS` with the environment variables `env`, stdout
/// piped, stderr as given, killed when dropped.
pub(crate) fn spawn_serve(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Child {
    serve_with(
        Command::new(env!("CARGO_BIN_EXE_wsc-gateway")),
        args,
        env,
        stderr,
    )
}

/// `command` (the gateway binary, or a program that runs it) with
/// `serve ARGS` appended, the environment `env`, stdout piped, stderr as
/// given, killed when dropped.
fn serve_with(mut command: Command, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Child {
    command
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("the gateway binary starts")
}

/// The first line the process prints (`listening on http://ADDR` once it
/// serves), or `None` if it exits first.
pub(crate) async fn first_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.take()?;
    BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .ok()
        .flatten()
}

/// The address from a `listening on http://ADDR` line.
pub(crate) fn listening_address(line: &str) -> String {
    line.strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
        .to_owned()
}

/// Sends SIGTERM and waits (at most `within`) for the process to exit; its
/// exit status.
pub(crate) async fn terminate(
    child: &mut Child,
    within: std::time::Duration,
) -> std::process::ExitStatus {
    let pid = child.id().expect("still running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    tokio::time::timeout(within, child.wait())
        .await
        .expect("the gateway exits")
        .expect("its status")
}

/// `wsc-gateway serve ARGS` run by `prlimit` with at most `open_files`
/// open files (soft and hard), stdout piped, stderr as given, killed when
/// dropped.
pub(crate) fn spawn_serve_with_open_files(open_files: u64, args: &[&str], stderr: Stdio) -> Child {
    let mut prlimit = Command::new("prlimit");
    prlimit
        .arg(format!("--nofile={open_files}:{open_files}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_wsc-gateway"));
    serve_with(prlimit, args, &[], stderr)
}
