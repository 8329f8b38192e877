//! The error-text table: every form AWS and the SDKs use for access errors
//! (`tests/error_texts/*.json`, each case with its source), read into the parsed fields; and
//! arbitrary text never makes the parser panic.

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use sqs_access_operator::explain::parse;

/// Fields compared strictly: absent from `expect` means the parser must give null.
const STRICT: &[&str] = &[
    "kind",
    "service",
    "code",
    "operation",
    "principal",
    "action",
    "resource",
    "endpoint",
    "claim",
    "oidcIssuer",
];

fn tables() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/error_texts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, v)
        })
        .collect()
}

#[test]
fn every_form_in_the_table_is_read() {
    let mut failures = Vec::new();
    let mut rows = 0;
    for (file, table) in tables() {
        for case in table["cases"].as_array().unwrap() {
            rows += 1;
            let name = format!("{file}: {}", case["name"].as_str().unwrap());
            let source = case["source"].as_str().unwrap_or_default();
            assert!(source.len() > 5, "{name}: every case names its source");
            let text = case["text"].as_str().unwrap();
            let expect = &case["expect"];
            let got = parse(text);
            if expect["error"] == Value::Bool(true) {
                match got {
                    Ok(p) => failures.push(format!("{name}: expected an error, got {p:?}")),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
                continue;
            }
            let got = match got {
                Ok(p) => serde_json::to_value(&p).unwrap(),
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            };
            for field in STRICT {
                let want = expect.get(*field).cloned().unwrap_or(Value::Null);
                if got[*field] != want {
                    failures.push(format!(
                        "{name}: {field}: got {}, expected {want}",
                        got[*field]
                    ));
                }
            }
            for (k, want) in expect.as_object().unwrap() {
                if !STRICT.contains(&k.as_str()) && &got[k] != want {
                    failures.push(format!("{name}: {k}: got {}, expected {want}", got[k]));
                }
            }
        }
    }
    assert!(rows >= 50, "only {rows} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pieces of real texts, to build inputs that come close to every branch of the parser.
const PIECES: &[&str] = &[
    "An error occurred (",
    ") when calling the ",
    " operation: ",
    "User: ",
    " is not authorized to perform: ",
    " on resource: ",
    " because no ",
    " with an explicit deny",
    " in a ",
    "identity-based policy",
    "service control policy",
    " transitively through ",
    ": arn:",
    "Access to the resource ",
    " is denied.",
    "operation error SQS: ",
    ", api error ",
    "StatusCode: ",
    "RequestID: ",
    "(Service: ",
    "Error Code: ",
    "code: '",
    "code: Some(\"",
    "No OpenIDConnect provider found in your account for ",
    "Not authorized to perform sts:",
    "The ciphertext refers to a",
    "KMS.AccessDeniedException",
    "QueueDoesNotExist",
    "KmsDisabled",
    "arn:aws:sqs:us-east-1:111111111111:q",
    "sqs:sendmessage",
    "\\n",
    "\\\"",
    "é",
    "日本",
    "\u{0}",
    " ",
    "'",
    "\"",
    ":",
    ".",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any text: a result or an error, never a panic.
    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse(&s);
    }

    /// Texts assembled from the pieces of real messages, with arbitrary text between them.
    #[test]
    fn assembled_text_never_panics(
        parts in proptest::collection::vec((proptest::sample::select(PIECES), "[a-zA-Z0-9:/. é]{0,6}"), 0..14)
    ) {
        let s: String = parts.iter().map(|(p, x)| format!("{p}{x}")).collect();
        if let Ok(p) = parse(&s) {
            // What is read comes from the text (as logs escape it, and with spaces collapsed).
            let plain = s
                .replace("\\r", " ")
                .replace("\\n", " ")
                .replace("\\t", " ")
                .replace("\\\"", "\"")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            for v in [&p.principal, &p.resource, &p.endpoint].into_iter().flatten() {
                prop_assert!(plain.contains(v.as_str()), "{v:?} not in {plain:?}");
            }
        }
    }
}
