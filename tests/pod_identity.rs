//! EKS Pod Identity end to end: every failure example gets its reason and a fix that, applied,
//! turns the binding Allowed (offline); and the live reader against the AWS emulator (IAM, SQS)
//! with EKS on a loopback server in EKS's wire format (associations, pagination, not found,
//! the reader's own AccessDenied, coalescing).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use sqs_access_operator::aws::{AwsSource, SnapshotInput, SnapshotSource};
use sqs_access_operator::config::Config;
use sqs_access_operator::diagnosis::check::Mechanism;
use sqs_access_operator::diagnosis::snapshot::ServiceAccountEvidence;
use sqs_access_operator::diagnosis::{
    AccessMode, BindingSpec, FixTarget, Outcome, ReasonCode, Snapshot, Verdict, diagnose,
    diagnose_with,
};
use sqs_access_operator::metrics::Metrics;
use support::eks::{Association, EksServer};
use support::{moto_url, unique};

fn example(name: &str) -> Snapshot {
    let path = format!(
        "{}/examples/snapshots/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    Snapshot::from_yaml_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn doc_statements(doc: &mut Value) -> &mut Vec<Value> {
    if doc["Statement"].is_object() {
        doc["Statement"] = json!([doc["Statement"].take()]);
    }
    doc["Statement"].as_array_mut().unwrap()
}

/// Applies a verdict's fixes to a snapshot, the way a user would follow them: statements are
/// added to the policy the fix names.
fn apply_fixes(snap: &Snapshot, v: &Verdict) -> Snapshot {
    let mut s = serde_json::to_value(snap).unwrap();
    for fix in &v.fixes {
        let st = fix.statement.clone().expect("a fix with a statement");
        match &fix.target {
            FixTarget::TrustPolicy { role } => {
                let slot = if s["role"]["arn"] == json!(role) {
                    "role"
                } else {
                    "targetRole"
                };
                doc_statements(&mut s[slot]["trustPolicy"]).push(st);
            }
            FixTarget::RolePolicy { role } => {
                let slot = if s["role"]["arn"] == json!(role) {
                    "role"
                } else {
                    "targetRole"
                };
                let list = s[slot]
                    .as_object_mut()
                    .unwrap()
                    .entry("inlinePolicies")
                    .or_insert(json!([]));
                list.as_array_mut().unwrap().push(json!({
                    "name": "fix",
                    "document": {"Version": "2012-10-17", "Statement": [st]}
                }));
            }
            FixTarget::PodIdentityAssociation { .. } => {
                let a = &mut s["podIdentityAssociations"][0];
                let mut policy: Value = match &a["policy"] {
                    Value::String(t) => serde_json::from_str(t).unwrap(),
                    other => other.clone(),
                };
                doc_statements(&mut policy).push(st);
                a["policy"] = policy;
            }
            other => panic!("no way to apply a fix to {other:?} here"),
        }
    }
    serde_json::from_value(s).unwrap()
}

#[test]
fn every_pod_identity_failure_is_fixed_by_its_own_fix() {
    for (name, code) in [
        (
            "pod-identity-trust-missing-tagsession",
            ReasonCode::PodIdentityTrustPolicyDoesNotAllow,
        ),
        (
            "pod-identity-namespace-tag-mismatch",
            ReasonCode::PodIdentityTrustPolicyDoesNotAllow,
        ),
        (
            "pod-identity-target-role-untrusted",
            ReasonCode::PodIdentityTargetRoleNotAssumable,
        ),
        (
            "pod-identity-session-policy-blocks",
            ReasonCode::PodIdentitySessionPolicyDoesNotAllow,
        ),
        (
            "pod-identity-session-tags-disabled",
            ReasonCode::IdentityPolicyDoesNotAllow,
        ),
    ] {
        let snap = example(name);
        let v = diagnose(&snap);
        assert_eq!(v.verdict, Outcome::Denied, "{name}");
        assert_eq!(v.reasons[0].code, code, "{name}: {:?}", v.reasons);
        assert!(!v.fixes.is_empty(), "{name}: no fix");
        let fixed = diagnose(&apply_fixes(&snap, &v));
        assert_eq!(
            fixed.verdict,
            Outcome::Allowed,
            "{name}: after the fixes {:?}",
            fixed.reasons
        );
    }
}

#[test]
fn pod_identity_wins_over_irsa_and_says_so() {
    let v = diagnose(&example("pod-identity-and-irsa"));
    assert_eq!(v.verdict, Outcome::Allowed);
    let role = v.role.as_ref().unwrap();
    assert_eq!(role.mechanism, Mechanism::PodIdentity);
    assert_eq!(role.source, "podIdentityAssociation");
    assert_eq!(role.association_id.as_deref(), Some("a-0orders0producer1"));
    assert_eq!(
        role.ignored_irsa_role.as_deref(),
        Some("arn:aws:iam::111111111111:role/orders-producer-irsa-old")
    );
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("Pod Identity is the one in effect"))
    );
    // The IRSA trust is not what is checked: no sts:AssumeRoleWithWebIdentity.
    assert!(
        v.checks
            .iter()
            .all(|c| c.action != "sts:AssumeRoleWithWebIdentity")
    );
}

#[test]
fn without_associations_read_an_unannotated_account_is_undecided_and_with_them_denied() {
    let v = diagnose(&example("pod-identity-associations-unknown"));
    assert_eq!(v.verdict, Outcome::Indeterminate);
    assert_eq!(
        v.reasons[0].code,
        ReasonCode::PodIdentityAssociationsUnknown
    );
    let v = diagnose(&example("service-account-has-no-role"));
    assert_eq!(v.reasons[0].code, ReasonCode::ServiceAccountHasNoRole);
    let fix = &v.fixes[0].instruction;
    assert!(
        fix.contains("create-pod-identity-association") && fix.contains("kubectl annotate"),
        "{fix}"
    );
}

#[test]
fn session_tags_decide_abac_and_pod_specific_tags_stay_undecided() {
    // The healthy example's identity policy names the queue by the namespace tag.
    let mut s = serde_json::to_value(example("pod-identity-healthy")).unwrap();
    s["podIdentityAssociations"][0]["namespace"] = json!("payments");
    s["binding"]["namespace"] = json!("payments");
    let v = diagnose(&serde_json::from_value(s).unwrap());
    // The trust admits orders/producer only; payments is refused, naming the tag.
    assert_eq!(v.verdict, Outcome::Denied);
    assert!(
        v.reasons[0].message.contains("kubernetes-namespace")
            && v.reasons[0].message.contains("\"payments\""),
        "{}",
        v.reasons[0].message
    );

    // A condition on the pod's name cannot be decided at binding time.
    let mut s = serde_json::to_value(example("pod-identity-healthy")).unwrap();
    s["role"]["inlinePolicies"][0]["document"]["Statement"][0]["Condition"] =
        json!({"StringLike": {"aws:PrincipalTag/kubernetes-pod-name": "producer-*"}});
    let v = diagnose(&serde_json::from_value(s).unwrap());
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:?}", v.reasons);
    assert_eq!(v.reasons[0].code, ReasonCode::DependsOnRequestContext);
    assert!(v.reasons[0].message.contains("kubernetes-pod-name"));
}

#[test]
fn an_irsa_session_has_no_pod_identity_tags_and_the_message_says_so() {
    let mut s = serde_json::to_value(example("identity-policy-missing")).unwrap();
    s["role"]["inlinePolicies"] = json!([{"name": "abac", "document": {"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/kubernetes-namespace": "orders"}}}]}}]);
    let v = diagnose(&serde_json::from_value(s).unwrap());
    assert_eq!(v.reasons[0].code, ReasonCode::IdentityPolicyDoesNotAllow);
    assert!(
        v.reasons[0].message.contains("an IRSA session has none"),
        "{}",
        v.reasons[0].message
    );
}

// ---- live: the emulator for IAM and SQS, the loopback server for EKS ----

const HOME: &str = "123456789012";
const CLUSTER: &str = "prod";

fn pi_trust(namespace: &str, tag_session: bool) -> String {
    let mut actions = vec!["sts:AssumeRole"];
    if tag_session {
        actions.push("sts:TagSession");
    }
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": actions,
        "Condition": {"StringEquals": {
            "aws:SourceAccount": HOME,
            "aws:RequestTag/kubernetes-namespace": namespace}}}]})
    .to_string()
}

fn input(
    namespace: &str,
    sa: &str,
    queue: &str,
    annotations: BTreeMap<String, String>,
) -> SnapshotInput {
    SnapshotInput {
        namespace: namespace.into(),
        binding_name: Some("b".into()),
        spec: BindingSpec {
            service_account_name: sa.into(),
            queue: queue.into(),
            access: vec![AccessMode::Send],
            actions: vec![],
            vpc_endpoint_id: None,
        },
        service_account: Some(ServiceAccountEvidence {
            found: true,
            annotations,
        }),
        oidc_issuer: None,
        cluster_name: None,
        pods: None,
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.aws.max_attempts = 1;
    c.aws.call_timeout = Duration::from_secs(5);
    c.cluster.name = Some(CLUSTER.into());
    c.cluster.region = Some("us-east-1".into());
    c
}

struct World {
    eks: EksServer,
    iam: aws_sdk_iam::Client,
    sqs: aws_sdk_sqs::Client,
    src: AwsSource,
}

async fn world(moto: &str) -> World {
    let eks = EksServer::start().await;
    eks.add_cluster(
        CLUSTER,
        HOME,
        "us-east-1",
        "https://oidc.eks.us-east-1.amazonaws.com/id/PI",
    );
    let sdk = support::eks::sdk_config(moto, &eks.url).await;
    World {
        iam: aws_sdk_iam::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        src: AwsSource::from_sdk_config(sdk, config(), Metrics::default()),
        eks,
    }
}

/// A role trusted by Pod Identity for `namespace` that may send to every queue, and a queue.
async fn seed(w: &World, namespace: &str, tag_session: bool) -> (String, String) {
    let name = unique("pi-role");
    let role = w
        .iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(pi_trust(namespace, tag_session))
        .send()
        .await
        .unwrap();
    w.iam
        .put_role_policy()
        .role_name(&name)
        .policy_name("send")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "sqs:SendMessage", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let q = unique("pi-queue");
    w.sqs.create_queue().queue_name(&q).send().await.unwrap();
    (
        role.role().unwrap().arn().to_string(),
        format!("arn:aws:sqs:us-east-1:{HOME}:{q}"),
    )
}

async fn verdict(src: &AwsSource, i: &SnapshotInput) -> Verdict {
    diagnose_with(&src.snapshot(i).await, &src.spec_options())
}

#[tokio::test]
async fn live_a_working_pod_identity_binding_is_allowed_and_a_fix_loop_turns_it_allowed() {
    let Some(moto) = moto_url() else { return };
    let w = world(&moto).await;
    let ns = unique("ns").to_ascii_lowercase();
    let (role, queue) = seed(&w, &ns, false).await;
    // Pagination: the first page is empty and carries a nextToken.
    w.eks.state.empty_first_page.store(true, Ordering::Relaxed);
    w.eks
        .put_association(CLUSTER, Association::new("a-1", &ns, "producer", &role));

    // Session tags are on, and the trust lacks sts:TagSession: denied, with the fix.
    let i = input(&ns, "producer", &queue, BTreeMap::new());
    let v = verdict(&w.src, &i).await;
    assert_eq!(v.verdict, Outcome::Denied, "{:?}", v.reasons);
    assert_eq!(
        v.reasons[0].code,
        ReasonCode::PodIdentityTrustPolicyDoesNotAllow
    );
    assert!(v.reasons[0].message.contains("sts:TagSession"));
    let r = v.role.as_ref().unwrap();
    assert_eq!(
        (r.source.as_str(), r.association_id.as_deref()),
        ("podIdentityAssociation", Some("a-1"))
    );
    assert_eq!(
        w.eks.calls("ListPodIdentityAssociations"),
        2,
        "both pages read"
    );

    // Apply the fix the way a user would: add the statement to the role's trust policy.
    let name = role.rsplit('/').next().unwrap();
    let mut trust: Value = serde_json::from_str(&pi_trust(&ns, false)).unwrap();
    trust["Statement"]
        .as_array_mut()
        .unwrap()
        .push(v.fixes[0].statement.clone().unwrap());
    w.iam
        .update_assume_role_policy()
        .role_name(name)
        .policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    w.src.invalidate_all();
    let v = verdict(&w.src, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:?}", v.reasons);

    // The association is for this service account only: another one in the namespace, with no
    // IRSA annotation, has no role.
    let other = input(&ns, "consumer", &queue, BTreeMap::new());
    let v = verdict(&w.src, &other).await;
    assert_eq!(v.reasons[0].code, ReasonCode::ServiceAccountHasNoRole);
}

#[tokio::test]
async fn live_pod_identity_beats_the_irsa_annotation_and_reads_are_shared() {
    let Some(moto) = moto_url() else { return };
    let w = world(&moto).await;
    let ns = unique("ns").to_ascii_lowercase();
    let (role, queue) = seed(&w, &ns, true).await;
    w.eks
        .put_association(CLUSTER, Association::new("a-2", &ns, "producer", &role));
    let mut ann = BTreeMap::new();
    ann.insert(
        "eks.amazonaws.com/role-arn".to_string(),
        format!("arn:aws:iam::{HOME}:role/does-not-exist"),
    );
    let i = input(&ns, "producer", &queue, ann);
    // Many bindings at once: one list, one describe.
    let all = futures::future::join_all((0..50).map(|_| verdict(&w.src, &i))).await;
    for v in &all {
        assert_eq!(v.verdict, Outcome::Allowed, "{:?}", v.reasons);
        assert!(v.warnings.iter().any(|x| x.contains("does-not-exist")));
    }
    assert_eq!(w.eks.calls("ListPodIdentityAssociations"), 1);
    assert_eq!(w.eks.calls("DescribePodIdentityAssociation"), 1);

    // The association goes away: the IRSA annotation is what remains (its role does not exist).
    w.eks.delete_association(CLUSTER, "a-2");
    w.src.invalidate_all();
    let v = verdict(&w.src, &i).await;
    assert_eq!(v.role.as_ref().unwrap().mechanism, Mechanism::Irsa);
    assert!(
        v.reasons.iter().any(|r| r.code == ReasonCode::RoleNotFound),
        "{:?}",
        v.reasons
    );
}

#[tokio::test]
async fn live_eks_trouble_is_undecided_never_denied() {
    let Some(moto) = moto_url() else { return };
    // The reader may not list associations.
    let w = world(&moto).await;
    let ns = unique("ns").to_ascii_lowercase();
    let (_, queue) = seed(&w, &ns, true).await;
    w.eks.fail_with(403, "AccessDeniedException");
    let v = verdict(&w.src, &input(&ns, "producer", &queue, BTreeMap::new())).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:?}", v.reasons);
    assert_eq!(v.reasons[0].code, ReasonCode::EvidenceUnreadable);
    assert!(
        v.reasons[0]
            .message
            .contains("eks:ListPodIdentityAssociations")
    );

    // The configured cluster does not exist.
    let w = world(&moto).await;
    let mut cfg = config();
    cfg.cluster.name = Some("no-such-cluster".into());
    let sdk = support::eks::sdk_config(&moto, &w.eks.url).await;
    let src = AwsSource::from_sdk_config(sdk, cfg, Metrics::default());
    let v = verdict(&src, &input(&ns, "producer", &queue, BTreeMap::new())).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:?}", v.reasons);
    assert!(v.reasons[0].message.contains("no-such-cluster"));
}
