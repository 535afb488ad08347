//! `cargo xtask audit`: cargo-deny's license and duplicate checks.

use std::process::ExitCode;

use crate::ci::{Step, run};
use crate::has_cargo_subcommand;

/// `cargo deny check` with the policy in `deny.toml`.
pub(crate) fn audit(args: &[String]) -> ExitCode {
    let advisories = match args {
        [] => false,
        [a] if a == "--advisories" => true,
        _ => {
            eprintln!("usage: cargo xtask audit [--advisories]");
            return ExitCode::from(2);
        }
    };
    if !has_cargo_subcommand("deny") {
        eprintln!(
            "xtask audit: cargo-deny is not installed; run `cargo install cargo-deny --locked`"
        );
        return ExitCode::from(1);
    }
    if !advisories {
        println!(
            "xtask audit: advisories not checked (they need the RustSec database over the \
             network); run `cargo xtask audit --advisories` where it can be fetched"
        );
    }
    let step = Step {
        name: "audit",
        args: if advisories {
            &["deny", "check", "licenses", "bans", "advisories"]
        } else {
            &["deny", "check", "licenses", "bans"]
        },
        env: Vec::new(),
    };
    match run(&step) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}
