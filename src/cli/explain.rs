//! `explain "ERROR TEXT" [SNAPSHOT] [--live]`: read an access-denied text, evaluate the call it
//! names (options fill in what the text lacks), and check AWS's claim against the diagnosis.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::diagnose::{Output, subject};
use crate::aws::{AwsSource, RequestInput, SnapshotSource};
use crate::config::Config;
use crate::diagnosis::snapshot::StringOrList;
use crate::diagnosis::{Snapshot, SpecOptions};
use crate::explain::{self, Options, SelectError, report};
use crate::metrics::Metrics;

#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The error text as the SDK, CLI or log printed it; "-" reads it from standard input.
    #[arg(value_name = "ERROR_TEXT")]
    pub error: String,
    /// A snapshot with the evidence (YAML or JSON): a binding's, a request's, or evidence only.
    pub snapshot: Option<PathBuf>,
    /// Read the evidence from AWS (default credential chain, AWS_REGION, AWS_ENDPOINT_URL).
    #[arg(long, conflicts_with = "snapshot")]
    pub live: bool,
    /// The caller, when the text names none (the legacy SQS text) or a redacted one: an IAM
    /// user or role ARN, a role session (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION), a
    /// service principal.
    #[arg(long, value_name = "ARN")]
    pub principal: Option<String>,
    /// The queue (ARN or URL), when the text names none (KMS and legacy SQS texts).
    #[arg(long, value_name = "ARN|URL")]
    pub queue: Option<String>,
    /// The SQS action or API operation the caller made (SendMessage), when the text names none.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// The interface VPC endpoint the call went through.
    #[arg(long, value_name = "VPCE_ID")]
    pub vpc_endpoint_id: Option<String>,
    /// A request context key the call had, e.g. aws:SourceArn=arn:aws:sns:... (repeatable).
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Operator configuration (reader roles, organization and endpoint policies).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the fetched snapshot to this file (YAML).
    #[arg(long, value_name = "FILE", requires = "live")]
    pub dump_snapshot: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn run(a: &ExplainArgs) -> ExitCode {
    match explain_cmd(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn explain_cmd(a: &ExplainArgs) -> Result<ExitCode, String> {
    let text = if a.error == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("standard input: {e}"))?;
        s
    } else {
        a.error.clone()
    };
    let parsed = explain::parse(&text).map_err(|e| format!("ERROR_TEXT: {e}"))?;
    let opts = Options {
        principal: a.principal.clone(),
        queue: a.queue.clone(),
        action: a.action.clone(),
        vpc_endpoint_id: a.vpc_endpoint_id.clone(),
    };
    let context = parse_context(&a.context)?;
    let (snap, spec_opts) = if a.live {
        if explain::is_credential_step(&parsed) {
            // STS refused before SQS: there is no call to read evidence for.
            let x = explain::compare::credential_step(&parsed, None);
            print_explanation(&x, "", a.output)?;
            return Ok(ExitCode::from(x.exit_code()));
        }
        let sel = explain::select(&parsed, &opts, None).map_err(select_error)?;
        fetch(a, &sel)?
    } else if let Some(p) = &a.snapshot {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let snap =
            Snapshot::evidence_from_yaml_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        (snap, SpecOptions::default())
    } else {
        // The text alone: what it says, and what evaluating it needs.
        return text_only(&parsed, &opts, a.output);
    };
    let mut snap = snap;
    for (k, v) in context {
        snap.request_context.insert(k, StringOrList::One(v));
    }
    let x = explain::explain(&parsed, &opts, snap.clone(), &spec_opts).map_err(select_error)?;
    let prepared = match &x.evaluated {
        Some(sel) => explain::prepare(snap, sel, &opts),
        None => snap,
    };
    print_explanation(&x, &subject(&prepared), a.output)?;
    Ok(ExitCode::from(x.exit_code()))
}

fn select_error(e: SelectError) -> String {
    e.to_string()
}

fn parse_context(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for i in items {
        let Some((k, v)) = i.split_once('=') else {
            return Err(format!(
                "--context {i}: expected KEY=VALUE, e.g. aws:SourceArn=arn:aws:sns:us-east-1:111111111111:orders"
            ));
        };
        if k.trim().is_empty() {
            return Err(format!("--context {i}: the key is empty"));
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn print_explanation(
    x: &explain::Explanation,
    subject: &str,
    output: Output,
) -> Result<(), String> {
    match output {
        Output::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(x).map_err(|e| e.to_string())?
            );
        }
        Output::Text => print!("{}", report::render(x, subject)),
    }
    Ok(())
}

/// Without evidence: the reading of the text, and what `--live` or a snapshot would need.
fn text_only(
    parsed: &explain::ParsedError,
    opts: &Options,
    output: Output,
) -> Result<ExitCode, String> {
    let needs = if explain::is_credential_step(parsed) {
        None
    } else {
        match explain::select(parsed, opts, None) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    };
    match output {
        Output::Json => {
            let v = serde_json::json!({ "error": parsed, "needs": needs });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
        }
        Output::Text => {
            if explain::is_credential_step(parsed) {
                let x = explain::compare::credential_step(parsed, None);
                print!("{}", report::render(&x, ""));
            } else {
                print!("{}", report::render_error(parsed));
                println!(
                    "\nTo find the layer and the fix, add --live (reads AWS) or a snapshot{}",
                    match &needs {
                        Some(n) => format!("; {n}"),
                        None => ".".into(),
                    }
                );
            }
        }
    }
    Ok(ExitCode::from(3))
}

/// Reads the evidence for the selection from AWS.
fn fetch(a: &ExplainArgs, sel: &explain::Selection) -> Result<(Snapshot, SpecOptions), String> {
    let cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let input = RequestInput {
        principal: sel.principal.clone().unwrap_or_default(),
        queue: sel.queue.clone(),
        actions: vec![sel.action.clone()],
        vpc_endpoint_id: a.vpc_endpoint_id.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let (snap, opts) = rt.block_on(async {
        let source = AwsSource::from_env(cfg, Metrics::default()).await;
        let opts = source.spec_options();
        (source.request_snapshot(&input).await, opts)
    });
    if let Some(p) = &a.dump_snapshot {
        std::fs::write(p, snap.to_yaml())
            .map_err(|e| format!("--dump-snapshot {}: {e}", p.display()))?;
    }
    Ok((snap, opts))
}
