//! The committed configuration files stay true: the example config loads, and the operator's
//! IAM policy grants exactly the calls the AWS layer makes (no more, no less).

use std::collections::BTreeSet;

use sqs_access_operator::config::Config;
use sqs_access_operator::metrics::OPERATIONS;

#[test]
fn example_config_loads() {
    let c = Config::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/operator.yaml"),
    )
    .unwrap();
    assert_eq!(c.aws.reader_roles.len(), 1);
    assert!(c.organization.is_some());
    assert_eq!(c.vpc_endpoints.len(), 1);
}

#[test]
fn iam_policy_matches_the_calls_made() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/iam-policy.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut granted = BTreeSet::new();
    for st in doc["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        match &st["Action"] {
            serde_json::Value::String(a) => {
                granted.insert(a.clone());
            }
            serde_json::Value::Array(a) => {
                granted.extend(a.iter().map(|x| x.as_str().unwrap().to_string()))
            }
            _ => panic!("bad Action"),
        }
        let acts = st["Action"].to_string();
        assert!(
            !acts.contains('*'),
            "no wildcard actions in the operator's policy: {acts}"
        );
    }
    let needed: BTreeSet<String> = OPERATIONS
        .iter()
        // sts:GetCallerIdentity needs no permission.
        .filter(|(_, op)| *op != "GetCallerIdentity")
        .map(|(svc, op)| sqs_access_operator::metrics::permission(svc, op))
        .collect();
    assert_eq!(granted, needed);
    // The policy itself is valid for our own engine.
    sqs_access_operator::policy::Policy::from_aws_str(&text).unwrap();
}
