//! Every example snapshot under `examples/snapshots/` states its expected verdict and reason
//! codes in its header (`# expect-verdict:`, `# expect-reasons:`); this test holds the
//! diagnosis to them, through the same path as `sqs-access-operator diagnose`.

use std::fs;
use std::path::Path;

use sqs_access_operator::diagnosis::{Snapshot, diagnose};

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(&format!("# {key}:"))
                .map(|v| v.trim().to_string())
        })
}

#[test]
fn examples_match_their_expectations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/snapshots");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 12,
        "expected one example per documented situation"
    );
    let mut failures = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let want_verdict = header(&text, "expect-verdict")
            .unwrap_or_else(|| panic!("{name}: no '# expect-verdict:' header"));
        let want_reasons: Vec<String> = header(&text, "expect-reasons")
            .unwrap_or_else(|| panic!("{name}: no '# expect-reasons:' header"))
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let snap = Snapshot::from_yaml_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = diagnose(&snap);
        let got_verdict = format!("{:?}", v.verdict);
        // Snapshots with pods also state the workload condition's reason.
        let want_workload = header(&text, "expect-workload");
        let got_workload = v.workload.as_ref().map(|w| w.reason.as_str());
        if want_workload != got_workload {
            failures.push(format!(
                "{name}: workload {got_workload:?}, expected {want_workload:?}"
            ));
        }
        let mut got: Vec<String> = v.reasons.iter().map(|r| r.code.as_str()).collect();
        got.sort();
        got.dedup();
        let mut want = want_reasons.clone();
        want.sort();
        if got_verdict != want_verdict || got != want {
            failures.push(format!(
                "{name}: got {got_verdict} {got:?}, expected {want_verdict} {want:?}"
            ));
        }
        // Every failing reason carries a fix or names what decided.
        for r in &v.reasons {
            if r.code.outcome() == sqs_access_operator::diagnosis::Outcome::Denied {
                assert!(
                    r.fix.is_some(),
                    "{name}: {:?} has no fix: {}",
                    r.code,
                    r.message
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_embedded_default_is_an_example() {
    let name = sqs_access_operator::cli::diagnose::EMBEDDED_EXAMPLE_NAME;
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(name).exists());
}

/// A snapshot dumped (`diagnose --live --dump-snapshot FILE`) reads back as the same
/// snapshot: the same dump again and the same verdict.
#[test]
fn examples_survive_a_dump_and_reload() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/snapshots");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let name = path.display();
        let snap = Snapshot::from_yaml_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let dump = snap.to_yaml();
        let again =
            Snapshot::from_yaml_str(&dump).unwrap_or_else(|e| panic!("{name}: {e}\n{dump}"));
        assert_eq!(again.to_yaml(), dump, "{name}");
        let (a, b) = (diagnose(&snap), diagnose(&again));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap(),
            "{name}"
        );
        n += 1;
    }
    assert!(n >= 12);
}
