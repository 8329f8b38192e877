//! `diagnose`: read a snapshot, print the verdict (text or JSON), exit 0 allowed, 2 denied,
//! 3 indeterminate, 1 bad input.

use std::path::Path;
use std::process::ExitCode;

use crate::diagnosis::report::render_text;
use crate::diagnosis::{Snapshot, diagnose};

/// The example diagnosed when no snapshot is given.
pub const EMBEDDED_EXAMPLE_NAME: &str =
    "examples/snapshots/cross-account-queue-policy-missing.yaml";
const EMBEDDED_EXAMPLE: &str =
    include_str!("../../examples/snapshots/cross-account-queue-policy-missing.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn run(snapshot: Option<&Path>, output: Output) -> ExitCode {
    let (name, text) = match snapshot {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => {
                eprintln!("error: {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
        None => {
            eprintln!(
                "(no snapshot given: diagnosing the embedded example {EMBEDDED_EXAMPLE_NAME})"
            );
            (
                EMBEDDED_EXAMPLE_NAME.to_string(),
                EMBEDDED_EXAMPLE.to_string(),
            )
        }
    };
    let snap = match Snapshot::from_yaml_str(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {name}: {e}");
            return ExitCode::from(1);
        }
    };
    let verdict = diagnose(&snap);
    match output {
        Output::Json => match serde_json::to_string_pretty(&verdict) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        Output::Text => {
            let subject = format!(
                "{}/{} -> {}",
                snap.binding.namespace,
                snap.binding.spec.service_account_name,
                snap.binding.spec.queue
            );
            print!("{}", render_text(&verdict, &subject));
        }
    }
    ExitCode::from(verdict.exit_code())
}
