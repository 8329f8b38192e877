//! The committed configuration files stay true: the example config loads, and the operator's
//! IAM policy and the organization reader's grant exactly the calls the AWS layer makes (no
//! more, no less).

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
    let org = c.organization.as_ref().unwrap();
    assert!(org.reader_role_arn.is_some());
    assert!(org.evidence().is_some());
    assert_eq!(c.vpc_endpoints.len(), 1);
}

/// The actions a policy file allows, with each statement's resources.
fn granted(file: &str) -> (BTreeSet<String>, Vec<(Vec<String>, serde_json::Value)>) {
    let text =
        std::fs::read_to_string(format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut granted = BTreeSet::new();
    let mut statements = Vec::new();
    for st in doc["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        let actions: Vec<String> = match &st["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => {
                a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
            }
            _ => panic!("bad Action"),
        };
        for a in &actions {
            assert!(!a.contains('*'), "{file}: no wildcard actions: {a}");
        }
        granted.extend(actions.iter().cloned());
        statements.push((actions, st["Resource"].clone()));
    }
    // The policy itself is valid for our own engine.
    sqs_access_operator::policy::Policy::from_aws_str(&text).unwrap();
    (granted, statements)
}

#[test]
fn iam_policy_matches_the_calls_made() {
    // The organization reader role lives in the management account (or a delegated
    // administrator): its calls are granted there, by config/iam-policy-org-reader.json.
    let (operator, statements) = granted("iam-policy.json");
    let needed: BTreeSet<String> = OPERATIONS
        .iter()
        // sts:GetCallerIdentity needs no permission.
        .filter(|(_, op)| *op != "GetCallerIdentity")
        .filter(|(svc, _)| *svc != "organizations")
        .map(|(svc, op)| sqs_access_operator::metrics::permission(svc, op))
        .collect();
    assert_eq!(operator, needed);
    // The operator may assume the organization reader role (and nothing wider).
    let assume = statements
        .iter()
        .find(|(a, _)| a.iter().any(|x| x == "sts:AssumeRole"))
        .map(|(_, r)| r.clone())
        .unwrap();
    let resources: Vec<&str> = match &assume {
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().unwrap()).collect(),
        serde_json::Value::String(s) => vec![s.as_str()],
        _ => panic!("bad Resource"),
    };
    assert!(resources.contains(&"arn:aws:iam::*:role/sqs-access-org-reader"));
    assert!(
        resources.iter().all(|r| r.contains(":role/")),
        "{resources:?}"
    );

    let (reader, _) = granted("iam-policy-org-reader.json");
    let needed: BTreeSet<String> = OPERATIONS
        .iter()
        .filter(|(svc, _)| *svc == "organizations")
        .map(|(svc, op)| format!("{svc}:{op}"))
        .collect();
    assert_eq!(reader, needed);
}
