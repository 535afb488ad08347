//! The TypeScript client's frame types come from the Rust protocol module:
//! this test writes them (ts-rs declarations of the frames, and the message
//! types as a union of string literals) and fails if the committed
//! `clients/typescript/src/generated.ts` differs. To update it:
//! `WSC_UPDATE_TS=1 cargo test -p wsc-tests --test typescript_types`.

use std::path::PathBuf;

use ts_rs::TS;
use wsc_core::{
    Ack, ConnectionEstablished, ErrorCode, ErrorFrame, HandshakeRefusal, MessageType, StartAgent,
    StopAgent,
};

fn generated() -> String {
    let config = ts_rs::Config::new();
    let mut out = String::from(
        "// Generated from the Rust protocol module (wsc_core) by\n\
         // tests/tests/typescript_types.rs; do not edit. Update with\n\
         // `WSC_UPDATE_TS=1 cargo test -p wsc-tests --test typescript_types`.\n\n",
    );
    let types: Vec<String> = MessageType::ALL
        .iter()
        .map(|t| format!("  | \"{}\"", t.as_str()))
        .collect();
    out.push_str(&format!(
        "/** Every frame `type` of the protocol (legacy names included). */\nexport type MessageType =\n{};\n\n",
        types.join("\n")
    ));
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| format!("  | \"{}\"", c.as_str()))
        .collect();
    out.push_str(&format!(
        "/** The `code` of an `error` frame. */\nexport type ErrorCode =\n{};\n\n",
        codes.join("\n")
    ));
    for decl in [
        ConnectionEstablished::decl(&config),
        ErrorFrame::decl(&config),
        Ack::decl(&config),
        StartAgent::decl(&config),
        StopAgent::decl(&config),
        HandshakeRefusal::decl(&config),
    ] {
        out.push_str("export ");
        out.push_str(&decl);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn the_typescript_frame_types_are_generated_from_the_rust_protocol() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript/src/generated.ts");
    let want = generated();
    if std::env::var("WSC_UPDATE_TS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run `WSC_UPDATE_TS=1 cargo test -p wsc-tests --test typescript_types` and commit it",
        path.display()
    );
}
