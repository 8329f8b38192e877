//! The committed CRD under `crds/` is what the code generates (regenerate with
//! `cargo run -- crd > crds/sqsaccessbinding.yaml`), and bindings round-trip through it.

use sqs_access_operator::crd::{SqsAccessBinding, crd_yaml};

#[test]
fn committed_crd_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/sqsaccessbinding.yaml"
    ))
    .unwrap();
    assert!(
        committed == crd_yaml(),
        "crds/sqsaccessbinding.yaml is stale: run `cargo run -- crd > crds/sqsaccessbinding.yaml`"
    );
}

#[test]
fn a_binding_as_users_write_it_parses() {
    let b: SqsAccessBinding = sqs_access_operator::yaml::from_str(
        r#"
apiVersion: sqsaccess.io/v1alpha1
kind: SqsAccessBinding
metadata: {name: producer-orders, namespace: orders}
spec:
  serviceAccountName: producer
  queue: https://sqs.us-east-1.amazonaws.com/222222222222/orders
  access: [Send, Receive]
  actions: [sqs:GetQueueUrl]
"#,
    )
    .unwrap();
    assert_eq!(b.spec.binding.service_account_name, "producer");
    assert_eq!(b.spec.binding.access.len(), 2);
    let back = serde_json::to_value(&b).unwrap();
    assert_eq!(
        back["spec"]["queue"],
        "https://sqs.us-east-1.amazonaws.com/222222222222/orders"
    );
    assert!(back["spec"].get("binding").is_none(), "the spec is flat");
}

#[test]
fn the_sample_bindings_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let b: SqsAccessBinding = sqs_access_operator::yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        b.spec
            .binding
            .validate(&Default::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        n += 1;
    }
    assert!(n >= 3);
}
