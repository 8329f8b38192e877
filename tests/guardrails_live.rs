//! The guardrails the operator reads itself, against the AWS emulator on loopback: the
//! organization's SCPs and RCPs (Organizations), the VPC endpoint (EC2) and the cluster (EKS,
//! on the loopback EKS server). Each failure is named, its proposed fix applied in the emulator
//! turns the binding Allowed, reads are shared between bindings, and the reader's own trouble
//! is undecided, never Denied (canned answers in each service's wire format, which the
//! emulator cannot produce).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_organizations::types::{OrganizationFeatureSet, PolicyType};
use serde_json::{Value, json};
use sqs_access_operator::aws::{AwsSource, SnapshotInput, SnapshotSource};
use sqs_access_operator::config::{Config, OrganizationConfig};
use sqs_access_operator::diagnosis::{
    AccessMode, FixTarget, Outcome, ReasonCode, Snapshot, Verdict, diagnose_with,
};
use sqs_access_operator::ids::{AccountId, RoleArn};
use sqs_access_operator::metrics::{CallLabels, Metrics};
use support::eks::EksServer;
use support::{Stub, moto_url, sdk_config, sdk_config_in, unique};

const HOME: &str = "123456789012";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/GUARDRAILS";

/// An account id no other test in this run uses.
fn fresh_account() -> String {
    static N: AtomicUsize = AtomicUsize::new(1);
    format!(
        "7{:05}{:06}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn reader(account: &str) -> RoleArn {
    RoleArn::parse(&format!("arn:aws:iam::{account}:role/sqs-access-reader")).unwrap()
}

/// The source's configuration: reader roles for `accounts`, and the organization reader role
/// in `management` when given.
fn config(accounts: &[&str], management: Option<&str>) -> Config {
    let mut c = Config::default();
    c.aws.max_attempts = 1;
    // Generous: the emulator is slow when other tests load it; no test here waits for a timeout.
    c.aws.call_timeout = Duration::from_secs(20);
    for a in accounts {
        c.aws
            .reader_roles
            .insert(AccountId::parse(a).unwrap(), reader(a));
    }
    if let Some(m) = management {
        c.organization = Some(OrganizationConfig {
            reader_role_arn: Some(
                RoleArn::parse(&format!("arn:aws:iam::{m}:role/sqs-access-org-reader")).unwrap(),
            ),
            ..Default::default()
        });
    }
    c
}

fn input(role_arn: &str, queue: &str, vpce: Option<&str>) -> SnapshotInput {
    let mut i = support::irsa_input(role_arn, queue, vec![AccessMode::Send], ISSUER);
    i.spec.vpc_endpoint_id = vpce.map(str::to_string);
    i
}

async fn check(src: &AwsSource, i: &SnapshotInput) -> (Snapshot, Verdict) {
    let snap = src.snapshot(i).await;
    let v = diagnose_with(&snap, &src.spec_options());
    (snap, v)
}

fn codes(v: &Verdict) -> Vec<ReasonCode> {
    v.reasons.iter().map(|r| r.code).collect()
}

/// A workload in `account`: the cluster's OIDC provider, an IRSA role that may send to its
/// queue, and the queue (with `queue_policy`, when given).
struct Workload {
    role: String,
    queue_arn: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

async fn workload(url: &str, role_account: &str, queue_account: &str) -> Workload {
    let rc = sdk_config_in(url, role_account).await;
    let iam = aws_sdk_iam::Client::new(&rc);
    // Registering twice fails; either way the provider exists afterwards.
    let _ = iam
        .create_open_id_connect_provider()
        .url(format!("https://{ISSUER}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await;
    let qname = unique("gq");
    let queue_arn = format!("arn:aws:sqs:us-east-1:{queue_account}:{qname}");
    let name = unique("gr");
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{role_account}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{ISSUER}:sub"): "system:serviceaccount:orders:producer",
            format!("{ISSUER}:aud"): "sts.amazonaws.com"}}}]});
    let role = iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_string();
    iam.put_role_policy()
        .role_name(&name)
        .policy_name("send")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "sqs:SendMessage", "Resource": queue_arn}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk_config_in(url, queue_account).await);
    let queue_url = sqs
        .create_queue()
        .queue_name(&qname)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    Workload {
        role,
        queue_arn,
        queue_url,
        sqs,
    }
}

/// An organization with its own management account and one member account.
struct Org {
    management: String,
    id: String,
    root: String,
    member: String,
    api: aws_sdk_organizations::Client,
}

async fn organization(url: &str) -> Org {
    let management = fresh_account();
    let api = aws_sdk_organizations::Client::new(&sdk_config_in(url, &management).await);
    let o = api
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let id = o.organization().unwrap().id().unwrap().to_string();
    let root = api.list_roots().send().await.unwrap().roots()[0]
        .id()
        .unwrap()
        .to_string();
    for t in [
        PolicyType::ServiceControlPolicy,
        PolicyType::ResourceControlPolicy,
    ] {
        // The emulator may enable them already; either way they are enabled afterwards.
        let _ = api
            .enable_policy_type()
            .root_id(&root)
            .policy_type(t)
            .send()
            .await;
    }
    let member = api
        .create_account()
        .account_name(unique("member"))
        .email("member@example.com")
        .send()
        .await
        .unwrap()
        .create_account_status()
        .unwrap()
        .account_id()
        .unwrap()
        .to_string();
    Org {
        management,
        id,
        root,
        member,
        api,
    }
}

impl Org {
    async fn policy(&self, kind: PolicyType, content: &Value) -> String {
        self.api
            .create_policy()
            .name(unique("p"))
            .description("test")
            .r#type(kind)
            .content(content.to_string())
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap()
            .policy_summary()
            .unwrap()
            .id()
            .unwrap()
            .to_string()
    }

    async fn attach(&self, policy: &str, target: &str) {
        self.api
            .attach_policy()
            .policy_id(policy)
            .target_id(target)
            .send()
            .await
            .unwrap();
    }

    async fn update(&self, policy: &str, content: &Value) {
        self.api
            .update_policy()
            .policy_id(policy)
            .content(content.to_string())
            .send()
            .await
            .unwrap();
    }

    /// Moves the member into a new OU whose only SCP is `allow_list` (FullAWSAccess detached,
    /// as an allow-list strategy does); returns the OU's id.
    async fn allow_list_ou(&self, allow_list: &str) -> String {
        let ou = self
            .api
            .create_organizational_unit()
            .parent_id(&self.root)
            .name(unique("ou"))
            .send()
            .await
            .unwrap()
            .organizational_unit()
            .unwrap()
            .id()
            .unwrap()
            .to_string();
        self.api
            .move_account()
            .account_id(&self.member)
            .source_parent_id(&self.root)
            .destination_parent_id(&ou)
            .send()
            .await
            .unwrap();
        self.attach(allow_list, &ou).await;
        self.api
            .detach_policy()
            .policy_id("p-FullAWSAccess")
            .target_id(&ou)
            .send()
            .await
            .unwrap();
        ou
    }
}

/// An SCP allow-list that lets the workload use KMS and STS, but not SQS.
fn allow_list() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Sid": "AllowListed", "Effect": "Allow",
        "Action": ["kms:*", "sts:*", "iam:*"], "Resource": "*"}]})
}

/// The data-perimeter RCP: nobody outside the organization uses its queues.
fn perimeter(org: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Sid": "EnforceOrgIdentities",
        "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*",
        "Condition": {
            "StringNotEqualsIfExists": {"aws:PrincipalOrgID": org},
            "BoolIfExists": {"aws:PrincipalIsAWSService": "false"}}}]})
}

fn count(m: &Metrics, service: &'static str, operation: &'static str) -> u64 {
    m.aws_calls
        .get_or_create(&CallLabels {
            service,
            operation,
            outcome: "ok",
        })
        .get()
}

const ORG_OPERATIONS: [&str; 4] = [
    "DescribeOrganization",
    "ListParents",
    "ListPoliciesForTarget",
    "DescribePolicy",
];

fn org_counts(m: &Metrics) -> [u64; 4] {
    ORG_OPERATIONS.map(|op| count(m, "organizations", op))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ou_allow_list_without_sqs_is_scp_does_not_allow_and_its_fix_allows() {
    let Some(url) = moto_url() else { return };
    let org = organization(&url).await;
    let scp = org
        .policy(PolicyType::ServiceControlPolicy, &allow_list())
        .await;
    let ou = org.allow_list_ou(&scp).await;
    let w = workload(&url, &org.member, &org.member).await;
    let i = input(&w.role, &w.queue_arn, None);

    // Without a reader the SCPs are not evaluated, and the note says what would turn them on.
    let blind = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[&org.member], None),
        Metrics::default(),
    );
    let (_, v) = check(&blind, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("organization.readerRoleArn")
                && n.contains("organizations:ListPoliciesForTarget")),
        "{:?}",
        v.notes
    );

    let src = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[&org.member], Some(&org.management)),
        Metrics::default(),
    );
    let (snap, v) = check(&src, &i).await;
    assert!(
        snap.evidence_errors.is_empty(),
        "{:?}",
        snap.evidence_errors
    );
    let o = snap.organization.as_ref().unwrap();
    assert_eq!(o.id.as_deref(), Some(org.id.as_str()));
    let acct = &o.accounts[&org.member];
    assert_eq!(
        acct.path.as_deref(),
        Some(format!("{}/{}/{ou}/", org.id, org.root).as_str())
    );
    let levels: Vec<&str> = acct
        .scps
        .as_ref()
        .unwrap()
        .iter()
        .map(|l| l.target.as_str())
        .collect();
    assert_eq!(
        levels,
        [org.root.as_str(), ou.as_str(), org.member.as_str()]
    );
    assert_eq!(v.verdict, Outcome::Denied, "{:#?}", v.reasons);
    assert_eq!(codes(&v), [ReasonCode::ScpDoesNotAllow]);

    // The fix: the statement, added to an SCP attached where the diagnosis says.
    let fix = &v.fixes[0];
    assert_eq!(fix.target, FixTarget::Scp { target: ou.clone() });
    let mut content = allow_list();
    content["Statement"]
        .as_array_mut()
        .unwrap()
        .push(fix.statement.clone().unwrap());
    org.update(&scp, &content).await;
    src.invalidate_all();
    let (_, v) = check(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rcp_perimeter_denies_a_role_outside_the_organization_and_narrowing_it_allows() {
    let Some(url) = moto_url() else { return };
    let org = organization(&url).await;
    let rcp_doc = perimeter(&org.id);
    let rcp = org
        .policy(PolicyType::ResourceControlPolicy, &rcp_doc)
        .await;
    org.attach(&rcp, &org.root).await;
    // The role is in an account outside the organization; the queue, in the member, grants it.
    let outside = fresh_account();
    let w = workload(&url, &outside, &org.member).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Partner",
        "Effect": "Allow", "Principal": {"AWS": w.role}, "Action": "sqs:SendMessage",
        "Resource": w.queue_arn}]});
    w.sqs
        .set_queue_attributes()
        .queue_url(&w.queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await
        .unwrap();
    let src = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[&org.member, &outside], Some(&org.management)),
        Metrics::default(),
    );
    let i = input(&w.role, &w.queue_arn, None);
    let (snap, v) = check(&src, &i).await;
    let o = snap.organization.as_ref().unwrap();
    assert_eq!(o.outside_accounts, std::slice::from_ref(&outside));
    assert!(o.accounts.contains_key(&org.member));
    // Known to be outside: aws:PrincipalOrgID is absent, so the perimeter decides.
    assert_eq!(v.verdict, Outcome::Denied, "{:#?}", v.reasons);
    assert_eq!(codes(&v), [ReasonCode::ExplicitDenyInRcp]);
    assert!(
        v.reasons[0].message.contains("EnforceOrgIdentities"),
        "{}",
        v.reasons[0].message
    );
    let fix = &v.fixes[0];
    assert_eq!(
        fix.target,
        FixTarget::Rcp {
            target: org.root.clone()
        }
    );
    assert!(fix.instruction.contains("narrow it"), "{}", fix.instruction);

    // Narrowed as data perimeters do for a trusted partner: its account is exempt.
    let mut narrowed = rcp_doc.clone();
    narrowed["Statement"][0]["Condition"]["StringNotEqualsIfExists"]["aws:PrincipalAccount"] =
        json!([outside]);
    org.update(&rcp, &narrowed).await;
    src.invalidate_all();
    let (_, v) = check(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_account_is_not_governed_and_the_note_says_so() {
    let Some(url) = moto_url() else { return };
    let org = organization(&url).await;
    // An SCP at the root that would deny every member the queue.
    let deny = org
        .policy(
            PolicyType::ServiceControlPolicy,
            &json!({"Version": "2012-10-17", "Statement": [{"Sid": "NoSqs", "Effect": "Deny",
                "Action": "sqs:*", "Resource": "*"}]}),
        )
        .await;
    org.attach(&deny, &org.root).await;
    let w = workload(&url, &org.management, &org.management).await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[&org.management], Some(&org.management)),
        Metrics::default(),
    );
    let (snap, v) = check(&src, &input(&w.role, &w.queue_arn, None)).await;
    let acct = &snap.organization.as_ref().unwrap().accounts[&org.management];
    assert!(acct.management_account);
    assert!(acct.scps.is_none() && acct.rcps.is_none());
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
    assert!(
        v.notes.iter().any(|n| n.contains("management account")
            && n.contains(&org.management)
            && n.contains("never apply")),
        "{:?}",
        v.notes
    );
    assert!(
        v.checks
            .iter()
            .flat_map(|c| &c.layers)
            .all(|l| l.layer != sqs_access_operator::policy::Layer::Scp)
    );

    // A member under the same root is denied by it.
    let m = workload(&url, &org.member, &org.member).await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[&org.member], Some(&org.management)),
        Metrics::default(),
    );
    let (_, v) = check(&src, &input(&m.role, &m.queue_arn, None)).await;
    assert_eq!(codes(&v), [ReasonCode::ExplicitDenyInScp]);
}

async fn vpc(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.20.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    (vpc, subnet)
}

async fn endpoint(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    subnet: &str,
    service: &str,
    policy: Option<&Value>,
) -> String {
    let mut req = ec2
        .create_vpc_endpoint()
        .vpc_id(vpc)
        .service_name(service)
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .subnet_ids(subnet);
    if let Some(p) = policy {
        req = req.policy_document(p.to_string());
    }
    req.send()
        .await
        .unwrap()
        .vpc_endpoint()
        .unwrap()
        .vpc_endpoint_id()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vpc_endpoint_is_read_checked_and_its_policy_fix_allows() {
    let Some(url) = moto_url() else { return };
    let account = fresh_account();
    let w = workload(&url, &account, &account).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config_in(&url, &account).await);
    let (vpc_id, subnet) = vpc(&ec2).await;
    // The endpoint's policy names another role.
    let other = format!("arn:aws:iam::{account}:role/someone-else");
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "OnlyOther",
        "Effect": "Allow", "Principal": {"AWS": other}, "Action": "sqs:*", "Resource": "*"}]});
    let vpce = endpoint(
        &ec2,
        &vpc_id,
        &subnet,
        "com.amazonaws.us-east-1.sqs",
        Some(&policy),
    )
    .await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[&account], None),
        Metrics::default(),
    );
    let i = input(&w.role, &w.queue_arn, Some(&vpce));
    let (snap, v) = check(&src, &i).await;
    let n = snap.network.as_ref().unwrap();
    assert_eq!(n.vpc_id.as_deref(), Some(vpc_id.as_str()));
    assert_eq!(
        n.service_name.as_deref(),
        Some("com.amazonaws.us-east-1.sqs")
    );
    assert_eq!(n.state.as_deref(), Some("available"));
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointPolicyDoesNotAllow]);
    let fix = &v.fixes[0];
    assert_eq!(
        fix.target,
        FixTarget::VpcEndpointPolicy {
            endpoint: vpce.clone()
        }
    );
    let mut fixed = policy.clone();
    fixed["Statement"]
        .as_array_mut()
        .unwrap()
        .push(fix.statement.clone().unwrap());
    ec2.modify_vpc_endpoint()
        .vpc_endpoint_id(&vpce)
        .policy_document(fixed.to_string())
        .send()
        .await
        .unwrap();
    src.invalidate_all();
    let (_, v) = check(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);

    // An endpoint for another service, one that does not exist, one deleted.
    let s3 = endpoint(&ec2, &vpc_id, &subnet, "com.amazonaws.us-east-1.s3", None).await;
    let (_, v) = check(&src, &input(&w.role, &w.queue_arn, Some(&s3))).await;
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointNotForSqs]);
    assert!(v.reasons[0].message.contains("com.amazonaws.us-east-1.s3"));
    let (_, v) = check(
        &src,
        &input(&w.role, &w.queue_arn, Some("vpce-0123456789abcdef0")),
    )
    .await;
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointNotFound]);
    let gone = endpoint(&ec2, &vpc_id, &subnet, "com.amazonaws.us-east-1.sqs", None).await;
    ec2.delete_vpc_endpoints()
        .vpc_endpoint_ids(&gone)
        .send()
        .await
        .unwrap();
    let (_, v) = check(&src, &input(&w.role, &w.queue_arn, Some(&gone))).await;
    assert_eq!(codes(&v), [ReasonCode::VpcEndpointNotAvailable]);

    // Without a reader in the workload's account, "not found" in the operator's own account
    // proves nothing.
    let src = AwsSource::from_sdk_config(
        sdk_config(&url).await,
        config(&[], None),
        Metrics::default(),
    );
    let snap = src.snapshot(&i).await;
    assert!(
        snap.evidence_errors.iter().any(|e| e.item == "vpcEndpoint"),
        "{:?}",
        snap.evidence_errors
    );
    assert!(snap.network.as_ref().unwrap().found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bindings_in_one_account_read_its_scp_chain_once_per_ttl() {
    let Some(url) = moto_url() else { return };
    let org = organization(&url).await;
    let mut allow = allow_list();
    allow["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
        .push(json!("sqs:*"));
    let scp = org.policy(PolicyType::ServiceControlPolicy, &allow).await;
    org.allow_list_ou(&scp).await;
    let mut workloads = Vec::new();
    for _ in 0..10 {
        workloads.push(workload(&url, &org.member, &org.member).await);
    }
    // Every workload reaches SQS through one endpoint (default full-access policy).
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config_in(&url, &org.member).await);
    let (vpc_id, subnet) = vpc(&ec2).await;
    let vpce = endpoint(&ec2, &vpc_id, &subnet, "com.amazonaws.us-east-1.sqs", None).await;
    let inputs: Vec<SnapshotInput> = (0..1000)
        .map(|n| {
            // Each role may send to its own queue.
            let w = &workloads[n % 10];
            let mut i = input(&w.role, &w.queue_arn, Some(&vpce));
            i.binding_name = Some(format!("b{n}"));
            i
        })
        .collect();
    let ttl = Duration::from_secs(12);
    let mut cfg = config(&[&org.member], Some(&org.management));
    cfg.aws.cache_ttl = ttl;
    let metrics = Metrics::default();
    let src = AwsSource::from_sdk_config(sdk_config(&url).await, cfg, metrics.clone());
    let round = || async {
        let before = metrics.total_calls();
        let start = Instant::now();
        let verdicts = futures::future::join_all(inputs.iter().map(|i| async {
            let s = src.snapshot(i).await;
            diagnose_with(&s, &src.spec_options())
        }))
        .await;
        let allowed = verdicts
            .iter()
            .filter(|v| v.verdict == Outcome::Allowed)
            .count();
        (metrics.total_calls() - before, start.elapsed(), allowed)
    };

    let started = Instant::now();
    let (cold, took, allowed) = round().await;
    assert_eq!(allowed, 1000);
    // The account sits under an OU under the root: two ListParents, three levels of SCPs and
    // RCPs, and three distinct policies (FullAWSAccess, the allow-list, RCPFullAWSAccess).
    let expected = [1, 2, 6, 3];
    assert_eq!(org_counts(&metrics), expected);
    assert_eq!(count(&metrics, "ec2", "DescribeVpcEndpoints"), 1);
    let (warm, warm_took, _) = round().await;
    assert!(started.elapsed() < ttl, "the rounds outlasted the TTL");
    assert_eq!(warm, 0, "a warm cache makes no calls");
    assert_eq!(org_counts(&metrics), expected);
    let mut report = String::new();
    for (svc, op) in sqs_access_operator::metrics::OPERATIONS {
        let n = count(&metrics, svc, op);
        if n > 0 {
            report.push_str(&format!(" {svc}:{op}={n}"));
        }
    }
    println!(
        "1000 bindings (10 roles, 10 queues, one VPC endpoint, one member account under an OU): cold {cold} AWS calls in {:.0} ms ({report} ), warm {warm} calls in {:.0} ms",
        took.as_secs_f64() * 1000.0,
        warm_took.as_secs_f64() * 1000.0
    );

    // Once the TTL has passed, the chain is read again, once.
    tokio::time::sleep(ttl.saturating_sub(started.elapsed()) + Duration::from_millis(500)).await;
    round().await;
    assert_eq!(org_counts(&metrics), expected.map(|n| n * 2));
    assert_eq!(count(&metrics, "ec2", "DescribeVpcEndpoints"), 2);
}

/// The SDK's per-service endpoints, as `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` in
/// the environment give them: one service on `url`, every other on the emulator.
#[derive(Debug)]
struct OneServiceElsewhere {
    all: String,
    service: &'static str,
    url: String,
}

impl aws_types::service_config::LoadServiceConfig for OneServiceElsewhere {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        Some(if key.service_id().eq_ignore_ascii_case(self.service) {
            self.url.clone()
        } else {
            self.all.clone()
        })
    }
}

async fn sdk_with(moto: &str, service: &'static str, url: &str) -> aws_config::SdkConfig {
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    base.to_builder()
        .service_config(OneServiceElsewhere {
            all: moto.into(),
            service,
            url: url.into(),
        })
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readers_own_trouble_is_undecided_never_denied() {
    let Some(url) = moto_url() else { return };
    let w = workload(&url, HOME, HOME).await;
    let i = input(&w.role, &w.queue_arn, None);
    let json = "application/x-amz-json-1.1";
    for (stub, code, permission) in [
        (
            Stub::start(
                400,
                json,
                r#"{"__type":"AccessDeniedException","Message":"You don't have permissions to access this resource."}"#,
            )
            .await,
            ReasonCode::EvidenceUnreadable,
            "organizations:DescribeOrganization",
        ),
        (
            Stub::start(
                400,
                json,
                r#"{"__type":"TooManyRequestsException","Message":"AWS Organizations can't complete your request because another request is already in progress."}"#,
            )
            .await,
            ReasonCode::AwsUnavailable,
            "",
        ),
        (
            Stub::start(500, json, r#"{"__type":"ServiceException","Message":"internal"}"#)
                .await,
            ReasonCode::AwsUnavailable,
            "",
        ),
    ] {
        let src = AwsSource::from_sdk_config(
            sdk_with(&url, "Organizations", &stub.url).await,
            config(&[], Some("999999999999")),
            Metrics::default(),
        );
        let (_, v) = check(&src, &i).await;
        assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
        assert_eq!(codes(&v), [code]);
        assert!(
            v.reasons[0].message.contains(permission),
            "{}",
            v.reasons[0].message
        );
        assert!(stub.requests.load(Ordering::SeqCst) > 0);
    }

    // EC2 answers the operator's denial as UnauthorizedOperation.
    let denied = Stub::start(
        403,
        "text/xml",
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>1</RequestID></Response>"#,
    )
    .await;
    let src = AwsSource::from_sdk_config(
        sdk_with(&url, "EC2", &denied.url).await,
        config(&[], None),
        Metrics::default(),
    );
    let (_, v) = check(
        &src,
        &input(&w.role, &w.queue_arn, Some("vpce-0abc1234def567890")),
    )
    .await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    assert_eq!(codes(&v), [ReasonCode::EvidenceUnreadable]);
    assert!(
        v.reasons[0].message.contains("ec2:DescribeVpcEndpoints"),
        "{}",
        v.reasons[0].message
    );

    // STS refuses the organization reader role (the operator may not assume it, or the role
    // does not trust it): the operator's own access denied, naming sts:AssumeRole.
    let refused = Stub::start(
        403,
        "text/xml",
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/sqs-access-operator/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::999999999999:role/sqs-access-org-reader</Message></Error><RequestId>1</RequestId></ErrorResponse>"#,
    )
    .await;
    let src = AwsSource::from_sdk_config(
        sdk_with(&url, "STS", &refused.url).await,
        config(&[], Some("999999999999")),
        Metrics::default(),
    );
    let (_, v) = check(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    assert_eq!(codes(&v), [ReasonCode::EvidenceUnreadable]);
    let m = &v.reasons[0].message;
    assert!(
        m.contains("organization")
            && m.contains("it lacks sts:AssumeRole")
            && m.contains("sqs-access-org-reader"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_read_with_describe_cluster() {
    let Some(url) = moto_url() else { return };
    let account = fresh_account();
    let w = workload(&url, &account, &account).await;
    let eks = EksServer::start().await;
    eks.add_cluster(
        "guardrails",
        account.as_str(),
        "us-east-1",
        &format!("https://{ISSUER}"),
    );
    let mut cfg = config(&[&account], None);
    cfg.cluster.name = Some("guardrails".into());
    let src = AwsSource::from_sdk_config(
        support::eks::sdk_config(&url, &eks.url).await,
        cfg.clone(),
        Metrics::default(),
    );
    // No issuer given: DescribeCluster's is used, and the trust policy is checked with it.
    let mut i = input(&w.role, &w.queue_arn, None);
    i.oidc_issuer = None;
    let (snap, v) = check(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
    assert_eq!(
        snap.cluster.oidc_issuer.as_deref(),
        Some(format!("https://{ISSUER}").as_str())
    );
    assert_eq!(
        snap.cluster.arn.as_deref(),
        Some(format!("arn:aws:eks:us-east-1:{account}:cluster/guardrails").as_str())
    );
    assert_eq!(snap.cluster.cluster_account(), Some(account.clone()));
    assert!(
        v.checks
            .iter()
            .any(|c| c.action == "sts:AssumeRoleWithWebIdentity")
    );
    for _ in 0..5 {
        check(&src, &i).await;
    }
    assert_eq!(
        src.cluster_issuer().await.unwrap().as_deref(),
        Some(format!("https://{ISSUER}").as_str())
    );
    assert_eq!(eks.calls("DescribeCluster"), 1, "cached");

    // Refused: an IRSA binding without an issuer is undecided, naming the permission.
    eks.fail_with(403, "AccessDeniedException");
    let src = AwsSource::from_sdk_config(
        support::eks::sdk_config(&url, &eks.url).await,
        cfg,
        Metrics::default(),
    );
    let (_, v) = check(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    assert!(
        v.reasons
            .iter()
            .any(|r| r.code == ReasonCode::EvidenceUnreadable
                && r.message.contains("eks:DescribeCluster")),
        "{:#?}",
        v.reasons
    );
    assert!(src.cluster_issuer().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_live_reads_and_dumps_the_guardrails() {
    let Some(url) = moto_url() else { return };
    let org = organization(&url).await;
    let scp = org
        .policy(PolicyType::ServiceControlPolicy, &allow_list())
        .await;
    org.allow_list_ou(&scp).await;
    let w = workload(&url, &org.member, &org.member).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config_in(&url, &org.member).await);
    let (vpc_id, subnet) = vpc(&ec2).await;
    let vpce = endpoint(
        &ec2,
        &vpc_id,
        &subnet,
        "com.amazonaws.us-east-1.sqs",
        Some(
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{}:role/other", org.member)},
            "Action": "sqs:*", "Resource": "*"}]}),
        ),
    )
    .await;
    let dir = std::env::temp_dir().join(unique("guardrails"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("operator.yaml");
    std::fs::write(
        &cfg,
        format!(
            "aws:\n  maxAttempts: 1\n  readerRoles:\n    \"{m}\": arn:aws:iam::{m}:role/sqs-access-reader\n",
            m = org.member
        ),
    )
    .unwrap();
    let dump = dir.join("snapshot.yaml");
    let out = support::binary()
        .env("AWS_ENDPOINT_URL", &url)
        .args([
            "diagnose",
            "--live",
            "--output",
            "json",
            "--role-arn",
            &w.role,
        ])
        .args(["--queue", &w.queue_arn, "--vpc-endpoint-id", &vpce])
        .args(["--oidc-issuer", &format!("https://{ISSUER}")])
        .args(["--namespace", "orders", "--service-account", "producer"])
        .arg("--org-reader-role-arn")
        .arg(format!(
            "arn:aws:iam::{}:role/sqs-access-org-reader",
            org.management
        ))
        .arg("--config")
        .arg(&cfg)
        .arg("--dump-snapshot")
        .arg(&dump)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(got.contains(&"ScpDoesNotAllow"), "{got:?}");
    assert!(got.contains(&"VpcEndpointPolicyDoesNotAllow"), "{got:?}");
    // The dump carries the guardrails, and diagnosing it offline gives the same verdict.
    let text = std::fs::read_to_string(&dump).unwrap();
    let snap = Snapshot::from_yaml_str(&text).unwrap();
    let o = snap.organization.as_ref().unwrap();
    assert_eq!(o.id.as_deref(), Some(org.id.as_str()));
    assert!(o.accounts[&org.member].scps.is_some());
    let n = snap.network.as_ref().unwrap();
    assert_eq!(
        n.service_name.as_deref(),
        Some("com.amazonaws.us-east-1.sqs")
    );
    assert!(n.vpc_endpoint_policy.is_some());
    let offline = support::binary()
        .args(["diagnose", "--output", "json"])
        .arg(&dump)
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(2));
    let again: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(again["reasons"], v["reasons"]);
    let _ = std::fs::remove_dir_all(&dir);
}
