//! The guardrails offline: what the snapshot's organization and network sections make of a
//! verdict. An account known to be outside the organization decides a perimeter on
//! aws:PrincipalOrgID; the management account is not governed and a note says so; an endpoint
//! that is missing, not for SQS or not available is named; layers that were not read say what
//! would turn them on.

use serde_json::{Value, json};
use sqs_access_operator::diagnosis::{Outcome, ReasonCode, Snapshot, Verdict, diagnose};

fn example(name: &str) -> Value {
    let path = format!(
        "{}/examples/snapshots/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::to_value(Snapshot::from_yaml_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        .unwrap()
}

fn verdict(v: Value) -> Verdict {
    diagnose(&serde_json::from_value::<Snapshot>(v).unwrap())
}

fn codes(v: &Verdict) -> Vec<ReasonCode> {
    v.reasons.iter().map(|r| r.code).collect()
}

#[test]
fn an_account_known_outside_decides_the_perimeter_and_an_unknown_one_does_not() {
    let s = example("rcp-denies-outside-account");
    let v = verdict(s.clone());
    assert_eq!(codes(&v), [ReasonCode::ExplicitDenyInRcp]);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("444444444444") && n.contains("not a member")),
        "{:?}",
        v.notes
    );

    // Not known to be outside: aws:PrincipalOrgID is unknown, so the perimeter cannot decide.
    let mut unknown = s.clone();
    unknown["organization"]
        .as_object_mut()
        .unwrap()
        .remove("outsideAccounts");
    let v = verdict(unknown);
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    assert!(codes(&v).contains(&ReasonCode::DependsOnRequestContext));

    // A member of the organization passes it.
    let mut member = s;
    member["organization"]["outsideAccounts"] = json!([]);
    member["organization"]["accounts"]["444444444444"] =
        json!({"path": "o-exampleorgid/r-ab12/", "scps": [], "rcps": []});
    let v = verdict(member);
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
}

#[test]
fn the_management_account_is_not_governed_and_the_note_says_so() {
    let mut s = example("scp-blocks");
    let v = verdict(s.clone());
    assert_eq!(v.verdict, Outcome::Denied);
    let acct = s["role"]["arn"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(4)
        .unwrap()
        .to_string();
    s["organization"]["accounts"][&acct]["managementAccount"] = json!(true);
    let v = verdict(s);
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
    assert!(
        v.notes.iter().any(|n| n.contains(&acct)
            && n.contains("management account")
            && n.contains("never apply")),
        "{:?}",
        v.notes
    );
}

#[test]
fn unread_organization_notes_say_what_would_turn_them_on() {
    let mut s = example("scp-blocks");
    s.as_object_mut().unwrap().remove("organization");
    let v = verdict(s.clone());
    assert_eq!(v.verdict, Outcome::Allowed);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("organization.readerRoleArn")
                && n.contains("organizations:DescribePolicy")),
        "{:?}",
        v.notes
    );
    // A read that failed is a reason, and the note points at it instead.
    s["evidenceErrors"] = json!([{"item": "organization", "kind": "Unreadable",
        "message": "User is not authorized", "permission": "organizations:DescribeOrganization"}]);
    let v = verdict(s);
    assert_eq!(codes(&v), [ReasonCode::EvidenceUnreadable]);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("could not be read") && !n.contains("readerRoleArn")),
        "{:?}",
        v.notes
    );
}

#[test]
fn an_endpoint_missing_for_another_service_or_not_available_is_named() {
    let s = example("vpc-endpoint-policy-does-not-allow");
    let mut missing = s.clone();
    missing["network"]["found"] = json!(false);
    let v = verdict(missing);
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointNotFound]);
    assert!(v.reasons[0].fix.is_some());

    let mut other_region = s.clone();
    other_region["network"]["serviceName"] = json!("com.amazonaws.us-west-2.sqs");
    let v = verdict(other_region);
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointNotForSqs]);
    assert!(v.reasons[0].message.contains("us-west-2"));

    let mut pending = s.clone();
    pending["network"]["serviceName"] = json!("com.amazonaws.us-east-1.sqs");
    pending["network"]["state"] = json!("pendingAcceptance");
    let v = verdict(pending);
    let c = codes(&v);
    assert!(c.contains(&ReasonCode::VpcEndpointNotAvailable), "{c:?}");
    // Its policy is still evaluated.
    assert!(
        c.contains(&ReasonCode::VpcEndpointPolicyDoesNotAllow),
        "{c:?}"
    );

    let mut fips = s;
    fips["network"]["serviceName"] = json!("com.amazonaws.us-east-1.sqs-fips");
    fips["network"]["state"] = json!("available");
    let v = verdict(fips);
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointPolicyDoesNotAllow]);
}

#[test]
fn the_new_snapshot_fields_survive_a_round_trip() {
    let mut s = example("rcp-denies-outside-account");
    s["network"] = json!({"path": "VpcEndpoint", "vpcEndpointId": "vpce-0abc1234def567890",
        "found": false, "serviceName": "com.amazonaws.us-east-1.sqs", "state": "deleted"});
    let snap: Snapshot = serde_json::from_value(s).unwrap();
    let again = Snapshot::from_yaml_str(&snap.to_yaml()).unwrap();
    let n = again.network.unwrap();
    assert!(!n.found);
    assert_eq!(n.state.as_deref(), Some("deleted"));
    assert_eq!(
        again.organization.unwrap().outside_accounts,
        ["444444444444"]
    );
    // Unknown fields are still refused, naming the field.
    let e = Snapshot::from_yaml_str(
        "apiVersion: sqsaccess.io/v1alpha1\nkind: AccessSnapshot\nbinding: {namespace: a, spec: {serviceAccountName: s, queue: 'arn:aws:sqs:us-east-1:111111111111:q', access: [Send]}}\norganization: {outsideAcounts: []}\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("outsideAcounts"), "{e}");
}
