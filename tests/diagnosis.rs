//! Diagnosis behaviours beyond the example snapshots: undecidable evidence never becomes
//! Denied, mistakes name their field, fixes merge per policy.

use serde_json::Value;
use sqs_access_operator::diagnosis::{Outcome, ReasonCode, Snapshot, diagnose};
use sqs_access_operator::yaml;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/examples/snapshots/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn snap(v: &Value) -> Snapshot {
    Snapshot::from_yaml_str(&yaml::to_string(v).unwrap()).unwrap()
}

fn codes(s: &Snapshot) -> (Outcome, Vec<ReasonCode>) {
    let v = diagnose(s);
    (v.verdict, v.reasons.iter().map(|r| r.code).collect())
}

#[test]
fn unreadable_evidence_is_indeterminate_never_denied() {
    let mut v = load("healthy");
    v["kmsKey"] = Value::Null;
    v["evidenceErrors"] = yaml::from_str(
        "[{item: kmsKey, kind: Unreadable, message: 'AccessDeniedException', permission: 'kms:DescribeKey'}]",
    )
    .unwrap();
    let s = snap(&v);
    let verdict = diagnose(&s);
    assert_eq!(verdict.verdict, Outcome::Indeterminate);
    assert_eq!(verdict.reasons[0].code, ReasonCode::EvidenceUnreadable);
    assert!(verdict.reasons[0].message.contains("kms:DescribeKey"));

    let mut v = load("healthy");
    v["role"] = Value::Null;
    v["evidenceErrors"] =
        yaml::from_str("[{item: role, kind: Unavailable, message: 'Throttling'}]").unwrap();
    assert_eq!(
        codes(&snap(&v)),
        (Outcome::Indeterminate, vec![ReasonCode::AwsUnavailable])
    );
}

#[test]
fn a_denied_layer_outranks_an_undecided_one() {
    // Network unknown (undecided queue policy) and no identity policy for a second action.
    let mut v = load("source-vpce-condition");
    v["binding"]["spec"]["access"] = yaml::from_str("[Send, Receive]").unwrap();
    let (outcome, codes) = codes(&snap(&v));
    assert_eq!(outcome, Outcome::Denied);
    assert_eq!(codes[0], ReasonCode::IdentityPolicyDoesNotAllow);
    assert!(codes.contains(&ReasonCode::DependsOnRequestContext));
}

#[test]
fn internet_path_decides_a_source_vpce_condition() {
    let mut v = load("source-vpce-condition");
    v["network"] = yaml::from_str("{path: Internet}").unwrap();
    assert_eq!(
        codes(&snap(&v)),
        (Outcome::Denied, vec![ReasonCode::ExplicitDenyInQueuePolicy])
    );
    let mut v = load("source-vpce-condition");
    v["binding"]["spec"]["vpcEndpointId"] = "vpce-0abc1234def567890".into();
    v["network"] = yaml::from_str(
        "{path: VpcEndpoint, vpcEndpointId: vpce-0abc1234def567890, vpcEndpointPolicy: {Statement: [{Effect: Allow, Principal: '*', Action: '*', Resource: '*'}]}}",
    )
    .unwrap();
    assert_eq!(
        codes(&snap(&v)),
        (Outcome::Allowed, vec![ReasonCode::Allowed])
    );
}

#[test]
fn fixes_merge_into_one_statement_per_policy() {
    let mut v = load("identity-policy-missing");
    v["binding"]["spec"]["access"] = yaml::from_str("[Send, Receive]").unwrap();
    let verdict = diagnose(&snap(&v));
    assert_eq!(verdict.reasons.len(), 4);
    assert_eq!(verdict.fixes.len(), 1, "{:#?}", verdict.fixes);
    let st = verdict.fixes[0].statement.as_ref().unwrap();
    assert_eq!(st["Action"].as_array().unwrap().len(), 4);
    assert_eq!(st["Resource"], "arn:aws:sqs:us-east-1:111111111111:orders");
}

#[test]
fn kms_with_root_delegation_needs_the_identity_policy() {
    let mut v = load("kms-key-disabled");
    v["kmsKey"]["keyState"] = "Enabled".into();
    let verdict = diagnose(&snap(&v));
    assert_eq!(verdict.verdict, Outcome::Denied);
    let kms: Vec<_> = verdict
        .reasons
        .iter()
        .filter(|r| r.code == ReasonCode::IdentityPolicyDoesNotAllow)
        .map(|r| r.action.clone().unwrap())
        .collect();
    assert_eq!(kms, ["kms:GenerateDataKey", "kms:Decrypt"]);
    let fix = verdict
        .fixes
        .iter()
        .find(|f| {
            f.statement
                .as_ref()
                .is_some_and(|s| s["Condition"].is_object())
        })
        .unwrap();
    assert_eq!(
        fix.statement.as_ref().unwrap()["Condition"]["StringEquals"]["kms:ViaService"],
        "sqs.us-east-1.amazonaws.com"
    );
}

#[test]
fn a_binding_cannot_use_another_namespaces_account() {
    let mut v = load("healthy");
    v["binding"]["spec"]["serviceAccountName"] = "payments/producer".into();
    let verdict = diagnose(&snap(&v));
    assert_eq!(verdict.verdict, Outcome::Denied);
    assert_eq!(verdict.reasons[0].code, ReasonCode::InvalidSpec);
    assert!(
        verdict.reasons[0]
            .message
            .starts_with("spec.serviceAccountName")
    );
}

#[test]
fn snapshot_mistakes_name_the_field() {
    let mut v = load("healthy");
    v["role"]["inlinePolicies"][0]["document"] =
        yaml::from_str("{Statement: [{Effect: Permit, Action: 'sqs:*', Resource: '*'}]}").unwrap();
    let e = Snapshot::from_yaml_str(&yaml::to_string(&v).unwrap()).unwrap_err();
    assert!(e.path.starts_with("role.inlinePolicies[0].document"), "{e}");
    assert!(e.to_string().contains("Statement[0].Effect"), "{e}");

    let mut v = load("healthy");
    v["binding"]["spec"]["access"] = yaml::from_str("[Publish]").unwrap();
    let e = Snapshot::from_yaml_str(&yaml::to_string(&v).unwrap()).unwrap_err();
    assert!(e.path.starts_with("binding.spec.access"), "{e}");

    let e = Snapshot::from_yaml_str("apiVersion: v9\nkind: AccessSnapshot\nbinding: {namespace: a, spec: {serviceAccountName: a, queue: q}}").unwrap_err();
    assert_eq!(e.path, "apiVersion");
    assert!(Snapshot::from_yaml_str(": not yaml [").is_err());
}

#[test]
fn a_missing_service_account_or_queue_is_denied_with_its_code() {
    let mut v = load("healthy");
    v["serviceAccount"]["found"] = false.into();
    assert_eq!(codes(&snap(&v)).1, vec![ReasonCode::ServiceAccountNotFound]);
    let mut v = load("healthy");
    v["queue"]["found"] = false.into();
    assert_eq!(codes(&snap(&v)).1, vec![ReasonCode::QueueNotFound]);
    let mut v = load("healthy");
    v["role"]["found"] = false.into();
    assert_eq!(codes(&snap(&v)).1, vec![ReasonCode::RoleNotFound]);
    let mut v = load("healthy");
    v["kmsKey"]["found"] = false.into();
    assert_eq!(codes(&snap(&v)).1, vec![ReasonCode::KmsKeyNotFound]);
    let mut v = load("healthy");
    v["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] =
        "arn:aws:iam::111:role/x".into();
    assert_eq!(codes(&snap(&v)).1, vec![ReasonCode::InvalidRoleArn]);
}

#[test]
fn unknown_issuer_is_indeterminate_and_explicit_trust_deny_is_named() {
    let mut v = load("identity-policy-missing");
    v["role"]["inlinePolicies"] = load("healthy")["role"]["inlinePolicies"].clone();
    v["role"]["inlinePolicies"][0]["document"]["Statement"][0]["Resource"] = "*".into();
    v["cluster"]["oidcIssuer"] = Value::Null;
    assert_eq!(
        codes(&snap(&v)),
        (Outcome::Indeterminate, vec![ReasonCode::OidcIssuerUnknown])
    );
}

#[test]
fn the_kms_hop_carries_the_source_ip_but_no_endpoint_keys() {
    // A key policy that denies calls not made through the endpoint also denies SQS's calls on
    // the caller's behalf, whatever the caller's own request context says.
    let mut v = load("healthy");
    v["requestContext"] = yaml::from_str("{aws:SourceVpce: vpce-0abc1234def567890}").unwrap();
    v["kmsKey"]["policy"]["Statement"]
        .as_array_mut()
        .unwrap()
        .push(yaml::from_str("{Sid: OnlyThroughVpce, Effect: Deny, Principal: '*', Action: 'kms:*', Resource: '*', Condition: {StringNotEquals: {aws:SourceVpce: vpce-0abc1234def567890}}}").unwrap());
    let verdict = diagnose(&snap(&v));
    assert_eq!(verdict.verdict, Outcome::Denied);
    assert!(
        verdict
            .reasons
            .iter()
            .all(|r| r.code == ReasonCode::ExplicitDenyInKmsKeyPolicy),
        "{:?}",
        verdict.reasons
    );

    // The caller's IP is preserved on that hop, so an IP guard in the identity policy holds.
    let mut v = load("healthy");
    v["binding"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("vpcEndpointId");
    v["network"] = yaml::from_str("{path: Internet, sourceIp: 203.0.113.10}").unwrap();
    v["role"]["inlinePolicies"][0]["document"]["Statement"]
        .as_array_mut()
        .unwrap()
        .push(yaml::from_str("{Sid: OfficeOnly, Effect: Deny, Action: '*', Resource: '*', Condition: {NotIpAddress: {aws:SourceIp: 203.0.113.0/24}}}").unwrap());
    let verdict = diagnose(&snap(&v));
    assert!(
        !verdict
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::ExplicitDenyInIdentityPolicy),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn list_queues_is_judged_in_the_roles_own_account() {
    let mut v = load("cross-account-queue-policy-missing");
    v["binding"]["spec"]["access"] = Value::Array(vec![]);
    v["binding"]["spec"]["actions"] = yaml::from_str("[sqs:ListQueues]").unwrap();
    v["role"]["inlinePolicies"] = yaml::from_str(
        "[{name: list, document: {Version: '2012-10-17', Statement: [{Effect: Allow, Action: 'sqs:ListQueues', Resource: '*'}]}}]",
    )
    .unwrap();
    assert_eq!(
        codes(&snap(&v)),
        (Outcome::Allowed, vec![ReasonCode::Allowed])
    );
}

#[test]
fn an_unread_customer_key_policy_is_undecided_not_denied() {
    let mut v = load("healthy");
    v["kmsKey"].as_object_mut().unwrap().remove("policy");
    let (outcome, codes) = codes(&snap(&v));
    assert_eq!(outcome, Outcome::Indeterminate);
    assert_eq!(codes, vec![ReasonCode::EvidenceUnreadable]);
}

#[test]
fn fixes_for_one_policy_never_share_a_sid() {
    let mut v = load("identity-policy-missing");
    v["binding"]["spec"]["actions"] = yaml::from_str("[sqs:ListQueues]").unwrap();
    let verdict = diagnose(&snap(&v));
    let sids: Vec<&str> = verdict
        .fixes
        .iter()
        .filter_map(|f| f.statement.as_ref()?.get("Sid")?.as_str())
        .collect();
    let mut unique = sids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(sids.len(), unique.len(), "{sids:?}");
    assert!(sids.len() >= 2);
}

#[test]
fn an_irsa_trust_naming_another_accounts_provider_says_why_it_never_applies() {
    let mut v = load("trust-policy-wrong-service-account");
    let issuer = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let st = &mut v["role"]["trustPolicy"]["Statement"][0];
    st["Principal"]["Federated"] =
        Value::String(format!("arn:aws:iam::999999999999:oidc-provider/{issuer}"));
    st["Condition"]["StringEquals"][format!("{issuer}:sub")] =
        Value::String("system:serviceaccount:orders:producer".into());
    let verdict = diagnose(&snap(&v));
    assert_eq!(verdict.verdict, Outcome::Denied);
    let r = &verdict.reasons[0];
    assert_eq!(r.code, ReasonCode::TrustPolicyDoesNotAllowServiceAccount);
    assert!(
        r.message.contains("account 999999999999") && r.message.contains("account 111111111111"),
        "{}",
        r.message
    );
}
