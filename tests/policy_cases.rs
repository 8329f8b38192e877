//! Runs every case in `tests/policy_cases/*.json` through the same path as `evaluate`, and
//! reports each mismatch with the case's name and the AWS rule it checks.

mod support;

use std::fs;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use sqs_access_operator::policy::input::{EvaluationInput, PolicyCache};
use sqs_access_operator::policy::{Decision, authorize};
use support::fingerprint;

#[derive(Deserialize)]
struct Case {
    name: String,
    rule: String,
    input: Value,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expect {
    decision: String,
    #[serde(default)]
    layer: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    error_contains: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

fn check(case: &Case) -> Result<(), String> {
    let line = serde_json::to_string(&case.input).map_err(|e| e.to_string())?;
    let parsed = EvaluationInput::from_json(&line).and_then(|i| i.into_parts());
    let (req, set) = match parsed {
        Err(e) => {
            if case.expect.decision != "error" {
                return Err(format!("input rejected: {e}"));
            }
            if let Some(want) = &case.expect.error_contains
                && !e.to_string().to_lowercase().contains(&want.to_lowercase())
            {
                return Err(format!("error `{e}` does not mention `{want}`"));
            }
            return Ok(());
        }
        Ok(p) => p,
    };
    if case.expect.decision == "error" {
        return Err("input was accepted, expected an error".into());
    }
    let resp = authorize(&req, &set);
    let got = match resp.decision {
        Decision::Allow => "Allow",
        Decision::ExplicitDeny => "ExplicitDeny",
        Decision::ImplicitDeny => "ImplicitDeny",
        Decision::Indeterminate => "Indeterminate",
    };
    let detail = || serde_json::to_string(&resp).unwrap_or_default();
    if got != case.expect.decision {
        return Err(format!(
            "decision {got}, expected {}: {}",
            case.expect.decision,
            detail()
        ));
    }
    if let Some(layer) = &case.expect.layer {
        let layers: Vec<&str> = match resp.decision {
            Decision::ImplicitDeny => resp.missing.iter().map(|g| g.layer.as_str()).collect(),
            _ => resp.statements.iter().map(|s| s.layer.as_str()).collect(),
        };
        if !layers.contains(&layer.as_str()) {
            return Err(format!("layer {layer} not among {layers:?}: {}", detail()));
        }
    }
    if let Some(sid) = &case.expect.sid
        && !resp
            .statements
            .iter()
            .any(|s| s.sid.as_deref() == Some(sid))
    {
        return Err(format!(
            "no deciding statement with Sid {sid}: {}",
            detail()
        ));
    }
    if let Some(code) = &case.expect.note
        && !resp.notes.iter().any(|n| n.code() == code)
    {
        return Err(format!("no note {code}: {}", detail()));
    }
    Ok(())
}

#[test]
fn policy_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_cases");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("tests/policy_cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let cases: Vec<Case> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not a list of cases: {e}", f.display()));
        for case in cases {
            total += 1;
            assert!(
                names.insert(case.name.clone()),
                "duplicate case name {}",
                case.name
            );
            if let Err(msg) = check(&case) {
                failures.push(format!(
                    "{} [{}]\n    rule: {}\n    {msg}",
                    case.name,
                    f.file_name().unwrap().to_string_lossy(),
                    case.rule
                ));
            }
        }
    }
    eprintln!("{total} policy cases from {} files", files.len());
    assert!(total > 0, "no policy cases found");
    assert!(
        failures.is_empty(),
        "{} of {total} policy cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The compile cache of `evaluate` changes nothing: every case, seen first, then again (its
/// documents are kept), then a third time (they come from the cache), parses to the same
/// request, policies, response and error as the uncached parse.
#[test]
fn cached_parse_is_the_uncached_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_cases");
    let mut lines = Vec::new();
    for e in fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let cases: Vec<Case> =
                serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            lines.extend(cases.iter().map(|c| (c.name.clone(), c.input.to_string())));
        }
    }
    let mut cache = PolicyCache::new();
    for round in ["first sight", "second sight (kept)", "cached"] {
        for (name, line) in &lines {
            let want = fingerprint(&EvaluationInput::from_json(line).and_then(|i| i.into_parts()));
            let got = fingerprint(&EvaluationInput::parts_from_json(line, &mut cache));
            assert_eq!(got, want, "{name} ({round} cache)");
        }
    }
    assert!(!cache.is_empty());
}
