//! `serve --auth dev` (the default, which trusts any `user_id`) serves
//! loopback addresses only: on any other address it refuses to start
//! unless `--insecure-dev` is given, and then warns. A weak `--api-key`
//! refuses to start too.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

mod support;
use support::spawn_serve;

/// Runs `wsc-gateway serve ARGS`; its first stdout line (if any) and, if
/// it exited on its own within 10 s, its status and stderr.
async fn serve(args: &[&str]) -> (Option<String>, Option<(i32, String)>) {
    let mut child = spawn_serve(args, &[], Stdio::piped());
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .ok()
        .and_then(|l| l.ok().flatten());
    if first.is_some() {
        let _ = child.kill().await;
        let mut err = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut err)).await;
        return (first, Some((-1, err)));
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err).await;
    (None, status.map(|s| (s.code().unwrap_or(-1), err)))
}

#[tokio::test]
async fn dev_auth_on_a_non_loopback_address_needs_insecure_dev() {
    let (line, exit) = serve(&["--bind", "0.0.0.0:0"]).await;
    assert_eq!(line, None, "it must not start");
    let (code, err) = exit.expect("it exits");
    assert_ne!(code, 0);
    assert!(err.contains("--insecure-dev"), "{err}");

    let (line, exit) = serve(&["--bind", "0.0.0.0:0", "--insecure-dev"]).await;
    assert!(
        line.as_deref()
            .is_some_and(|l| l.starts_with("listening on http://0.0.0.0:")),
        "{line:?}"
    );
    let (_, err) = exit.unwrap();
    assert!(
        err.contains("anyone who reaches it can claim any user id"),
        "{err}"
    );

    // Loopback needs nothing; nor does jwt anywhere.
    let (line, _) = serve(&["--bind", "127.0.0.1:0"]).await;
    assert!(line.is_some_and(|l| l.starts_with("listening on http://127.0.0.1:")));
    let secret = "0123456789abcdef0123456789abcdef";
    let (line, _) = serve(&[
        "--bind",
        "0.0.0.0:0",
        "--auth",
        "jwt",
        "--jwt-secret",
        secret,
    ])
    .await;
    assert!(line.is_some());
}

/// An empty or short `--api-key` (or `WSC_API_KEY=`) refuses to start: it
/// must never open the publish API to requests without a key.
#[tokio::test]
async fn an_empty_or_short_api_key_refuses_to_start() {
    for key in ["", "short"] {
        let (line, exit) = serve(&["--bind", "127.0.0.1:0", "--api-key", key]).await;
        assert_eq!(line, None, "{key:?}: it must not start");
        let (code, err) = exit.expect("it exits");
        assert_ne!(code, 0);
        assert!(
            err.contains("--api-key") && err.contains("at least 32"),
            "{err}"
        );
    }
    let (line, _) = serve(&["--bind", "127.0.0.1:0", "--api-key", &"k".repeat(32)]).await;
    assert!(line.is_some_and(|l| l.starts_with("listening on http://127.0.0.1:")));
}
