//! The AWS layer through real HTTP: against moto's server on loopback (started by
//! `scripts/with-moto.sh`), and against a canned-answer server for the faults moto cannot
//! produce (throttling, the reader's own AccessDenied, 5xx).

mod support;

use std::time::Duration;

use serde_json::json;
use sqs_access_operator::aws::{AwsSource, SnapshotInput, SnapshotSource};
use sqs_access_operator::config::Config;
use sqs_access_operator::diagnosis::snapshot::KeyManager;
use sqs_access_operator::diagnosis::{AccessMode, Outcome, ReasonCode, Verdict, diagnose_with};
use sqs_access_operator::metrics::Metrics;
use support::{Stub, moto_url, sdk_config, sdk_config_in, unique};

const HOME: &str = "123456789012";
const OTHER: &str = "222222222222";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/MOTOTESTCLUSTER";

fn test_config() -> Config {
    let mut c = Config::default();
    c.aws.max_attempts = 1;
    c.aws.call_timeout = Duration::from_secs(5);
    c
}

fn input(role_arn: &str, queue: &str, access: Vec<AccessMode>) -> SnapshotInput {
    support::irsa_input(role_arn, queue, access, ISSUER)
}

async fn verdict(src: &AwsSource, i: &SnapshotInput) -> Verdict {
    let snap = src.snapshot(i).await;
    diagnose_with(&snap, &src.spec_options())
}

fn codes(v: &Verdict) -> Vec<ReasonCode> {
    v.reasons.iter().map(|r| r.code).collect()
}

fn trust(account: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{ISSUER}:sub"): "system:serviceaccount:orders:producer",
            format!("{ISSUER}:aud"): "sts.amazonaws.com"}}}]})
    .to_string()
}

async fn ensure_provider(iam: &aws_sdk_iam::Client) {
    // Registering twice fails; either way the provider exists afterwards.
    let _ = iam
        .create_open_id_connect_provider()
        .url(format!("https://{ISSUER}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await;
}

/// A role with a trust policy, an inline policy, a managed policy and a boundary.
async fn seed_role(iam: &aws_sdk_iam::Client, account: &str, inline: serde_json::Value) -> String {
    let name = unique("role");
    let r = iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(trust(account))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("orders")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(&name)
        .policy_name("queue-access")
        .policy_document(inline.to_string())
        .send()
        .await
        .unwrap();
    let kms = iam
        .create_policy()
        .policy_name(unique("kms"))
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}}}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let kms_arn = kms.policy().unwrap().arn().unwrap().to_string();
    iam.attach_role_policy()
        .role_name(&name)
        .policy_arn(&kms_arn)
        .send()
        .await
        .unwrap();
    let boundary = iam
        .create_policy()
        .policy_name(unique("boundary"))
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sqs:*", "kms:*"], "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    iam.put_role_permissions_boundary()
        .role_name(&name)
        .permissions_boundary(boundary.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    r.role().unwrap().arn().to_string()
}

fn send_policy(queue_arn: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Sid": "Send", "Effect": "Allow",
        "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
        "Resource": queue_arn}]})
}

async fn seed_key(kms: &aws_sdk_kms::Client, account: &str, role_arn: &str) -> String {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "EnableIamPolicies", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "ProducerViaSqs", "Effect": "Allow", "Principal": {"AWS": role_arn},
         "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*"}]});
    let k = kms
        .create_key()
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    k.key_metadata().unwrap().arn().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_account_snapshot_holds_every_document_and_allows() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let (iam, sqs, kms) = (
        aws_sdk_iam::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
        aws_sdk_kms::Client::new(&conf),
    );
    ensure_provider(&iam).await;
    let qname = unique("q");
    let qarn = format!("arn:aws:sqs:us-east-1:{HOME}:{qname}");
    let role = seed_role(&iam, HOME, send_policy(&qarn)).await;
    let key = seed_key(&kms, HOME, &role).await;
    let alias = format!("alias/{}", unique("k"));
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    sqs.create_queue()
        .queue_name(&qname)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId,
            &alias,
        )
        .tags("team", "orders")
        .send()
        .await
        .unwrap();

    let src = AwsSource::from_sdk_config(conf, test_config(), Metrics::default());
    let i = input(&role, &qarn, vec![AccessMode::Send, AccessMode::Receive]);
    let snap = src.snapshot(&i).await;
    assert!(
        snap.evidence_errors.is_empty(),
        "{:?}",
        snap.evidence_errors
    );
    let r = snap.role.as_ref().unwrap();
    // IAM returns the trust and inline documents URL-encoded; both parsed.
    assert_eq!(r.trust_policy.as_ref().unwrap().policy.statements.len(), 1);
    assert_eq!(r.inline_policies[0].name.as_deref(), Some("queue-access"));
    assert_eq!(r.managed_policies.len(), 1);
    assert!(r.permissions_boundary.is_some());
    assert_eq!(r.tags.get("team").map(String::as_str), Some("orders"));
    let p = snap.oidc_providers.as_ref().unwrap();
    assert!(p.iter().any(|p| p.client_ids == ["sts.amazonaws.com"]));
    let q = snap.queue.as_ref().unwrap();
    assert_eq!(q.kms_master_key_id.as_deref(), Some(alias.as_str()));
    assert_eq!(
        q.tags.as_ref().unwrap().get("team").map(String::as_str),
        Some("orders")
    );
    let k = snap.kms_key.as_ref().unwrap();
    assert_eq!(k.arn, key);
    assert_eq!(k.key_manager, KeyManager::Customer);
    assert_eq!(k.policy.as_ref().unwrap().policy.statements.len(), 2);

    let v = diagnose_with(&snap, &src.spec_options());
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
    assert_eq!(v.checks.iter().filter(|c| c.step == "kms").count(), 2);
    // The snapshot survives a dump and a re-read.
    let again = sqs_access_operator::diagnosis::Snapshot::from_yaml_str(&snap.to_yaml()).unwrap();
    assert_eq!(
        diagnose_with(&again, &src.spec_options()).verdict,
        Outcome::Allowed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_reads_through_the_reader_role_and_needs_the_queue_policy() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let iam = aws_sdk_iam::Client::new(&conf);
    ensure_provider(&iam).await;
    let other = sdk_config_in(&url, OTHER).await;
    let sqs_other = aws_sdk_sqs::Client::new(&other);
    let qname = unique("xq");
    let qarn = format!("arn:aws:sqs:us-east-1:{OTHER}:{qname}");
    let role = seed_role(&iam, HOME, send_policy(&qarn)).await;
    let created = sqs_other
        .create_queue()
        .queue_name(&qname)
        .send()
        .await
        .unwrap();
    let qurl = created.queue_url().unwrap().to_string();

    let mut cfg = test_config();
    cfg.aws.reader_roles.insert(
        OTHER.parse::<String>().unwrap().try_into().unwrap(),
        format!("arn:aws:iam::{OTHER}:role/sqs-access-reader")
            .try_into()
            .unwrap(),
    );
    let src = AwsSource::from_sdk_config(conf, cfg, Metrics::default());
    let i = input(&role, &qarn, vec![AccessMode::Send]);
    let v = verdict(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Denied);
    assert_eq!(codes(&v), [ReasonCode::QueuePolicyDoesNotAllowCrossAccount]);

    // Apply the suggested fix in the queue's account; after the cache is dropped it passes.
    let fix = v.fixes[0].statement.clone().unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [fix]});
    sqs_other
        .set_queue_attributes()
        .queue_url(&qurl)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await
        .unwrap();
    let cached = verdict(&src, &i).await;
    assert_eq!(
        cached.verdict,
        Outcome::Denied,
        "served from the cache until it expires"
    );
    src.invalidate_all();
    let v = verdict(&src, &i).await;
    assert_eq!(v.verdict, Outcome::Allowed, "{:#?}", v.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_role_queue_and_broken_keys_are_named() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let (iam, sqs, kms) = (
        aws_sdk_iam::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
        aws_sdk_kms::Client::new(&conf),
    );
    ensure_provider(&iam).await;
    let src = AwsSource::from_sdk_config(conf, test_config(), Metrics::default());
    let qname = unique("q");
    let qarn = format!("arn:aws:sqs:us-east-1:{HOME}:{qname}");
    sqs.create_queue().queue_name(&qname).send().await.unwrap();

    let ghost = format!("arn:aws:iam::{HOME}:role/{}", unique("ghost"));
    assert_eq!(
        codes(&verdict(&src, &input(&ghost, &qarn, vec![AccessMode::Send])).await),
        [ReasonCode::RoleNotFound]
    );

    let role = seed_role(&iam, HOME, send_policy("*")).await;
    let missing_q = format!("arn:aws:sqs:us-east-1:{HOME}:{}", unique("nope"));
    assert_eq!(
        codes(&verdict(&src, &input(&role, &missing_q, vec![AccessMode::Send])).await),
        [ReasonCode::QueueNotFound]
    );

    // A key pending deletion, then a disabled one.
    for (state, code) in [
        ("pending", ReasonCode::KmsKeyPendingDeletion),
        ("disabled", ReasonCode::KmsKeyDisabled),
    ] {
        let key = seed_key(&kms, HOME, &role).await;
        let qn = unique("kq");
        sqs.create_queue()
            .queue_name(&qn)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId, &key)
            .send()
            .await
            .unwrap();
        // moto 5.2.5 answers 500 to ScheduleKeyDeletion by ARN; the key id works.
        let key_id = key.rsplit('/').next().unwrap();
        if state == "pending" {
            kms.schedule_key_deletion()
                .key_id(key_id)
                .pending_window_in_days(7)
                .send()
                .await
                .unwrap();
        } else {
            kms.disable_key().key_id(key_id).send().await.unwrap();
        }
        let qa = format!("arn:aws:sqs:us-east-1:{HOME}:{qn}");
        let v = verdict(&src, &input(&role, &qa, vec![AccessMode::Send])).await;
        assert_eq!(codes(&v), [code], "{state}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bindings_on_few_roles_and_queues_fetch_each_once() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let (iam, sqs) = (
        aws_sdk_iam::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
    );
    ensure_provider(&iam).await;
    let mut roles = Vec::new();
    let mut queues = Vec::new();
    for _ in 0..4 {
        let qn = unique("cq");
        sqs.create_queue().queue_name(&qn).send().await.unwrap();
        queues.push(format!("arn:aws:sqs:us-east-1:{HOME}:{qn}"));
        roles.push(seed_role(&iam, HOME, send_policy("*")).await);
    }
    let metrics = Metrics::default();
    let src = AwsSource::from_sdk_config(conf, test_config(), metrics.clone());
    let inputs: Vec<SnapshotInput> = (0..200)
        .map(|n| input(&roles[n % 4], &queues[(n / 4) % 4], vec![AccessMode::Send]))
        .collect();
    let snaps = futures::future::join_all(inputs.iter().map(|i| src.snapshot(i))).await;
    assert!(snaps.iter().all(|s| s.evidence_errors.is_empty()));
    let get_role = count(&metrics, "iam", "GetRole");
    let get_attrs = count(&metrics, "sqs", "GetQueueAttributes");
    assert_eq!(get_role, 4, "one GetRole per role, however many bindings");
    assert_eq!(get_attrs, 4, "one GetQueueAttributes per queue");
    let cold = metrics.total_calls();
    futures::future::join_all(inputs.iter().map(|i| src.snapshot(i))).await;
    assert_eq!(metrics.total_calls(), cold, "a warm cache makes no calls");
    assert!(metrics.cache_count("role", "hit") >= 200);
}

fn count(m: &Metrics, service: &'static str, operation: &'static str) -> u64 {
    m.aws_calls
        .get_or_create(&sqs_access_operator::metrics::CallLabels {
            service,
            operation,
            outcome: "ok",
        })
        .get()
}

fn stub_input() -> SnapshotInput {
    input(
        &format!("arn:aws:iam::{HOME}:role/producer"),
        &format!("arn:aws:sqs:us-east-1:{HOME}:orders"),
        vec![AccessMode::Send],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_unavailable_never_denied() {
    // Nothing listens on this port.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut cfg = test_config();
    cfg.aws.call_timeout = Duration::from_secs(2);
    let src = AwsSource::from_sdk_config(sdk_config(&dead).await, cfg, Metrics::default());
    let v = verdict(&src, &stub_input()).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    assert!(
        codes(&v).iter().all(|c| *c == ReasonCode::AwsUnavailable),
        "{:?}",
        codes(&v)
    );
    // What it says is readable: the OS's own words, not the SDK's debug form.
    for r in &v.reasons {
        assert!(
            r.message
                .contains("could not reach AWS (connection failed)")
                && r.message.contains("Connection refused")
                && !r.message.contains("DispatchFailure")
                && !r.message.contains("ConnectorError"),
            "{}",
            r.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_unavailable() {
    let throttled = Stub::start(
        400,
        "text/xml",
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>",
    )
    .await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&throttled.url).await,
        test_config(),
        Metrics::default(),
    );
    let v = verdict(&src, &stub_input()).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    assert!(codes(&v).contains(&ReasonCode::AwsUnavailable));
    assert!(!codes(&v).iter().any(|c| c.outcome() == Outcome::Denied));

    let broken = Stub::start(503, "text/plain", "upstream down").await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&broken.url).await,
        test_config(),
        Metrics::default(),
    );
    let v = verdict(&src, &stub_input()).await;
    assert_eq!(v.verdict, Outcome::Indeterminate);
    assert!(codes(&v).iter().all(|c| *c == ReasonCode::AwsUnavailable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readers_own_access_denied_is_unreadable_and_names_the_permission() {
    // As moto answers denials in its auth mode: XML, even for JSON services.
    let denied = Stub::start(
        403,
        "text/xml",
        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized</Message></Error></ErrorResponse>",
    )
    .await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&denied.url).await,
        test_config(),
        Metrics::default(),
    );
    let v = verdict(&src, &stub_input()).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    let role = v
        .reasons
        .iter()
        .find(|r| r.message.contains("role"))
        .unwrap();
    assert_eq!(role.code, ReasonCode::EvidenceUnreadable);
    assert!(role.message.contains("iam:GetRole"), "{}", role.message);
    let queue = v
        .reasons
        .iter()
        .find(|r| r.message.contains("queue"))
        .unwrap();
    assert!(
        queue.message.contains("sqs:GetQueueUrl"),
        "{}",
        queue.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_queue_url_is_refused_before_any_request() {
    let stub = Stub::start(200, "application/json", "{}").await;
    let src = AwsSource::from_sdk_config(
        sdk_config(&stub.url).await,
        test_config(),
        Metrics::default(),
    );
    let mut i = stub_input();
    for hostile in [
        "https://attacker.example.com/123456789012/orders",
        "https://sqs.us-east-1.amazonaws.com.attacker.example/123456789012/orders",
        "http://169.254.169.254/123456789012/orders",
    ] {
        i.spec.queue = hostile.into();
        let v = verdict(&src, &i).await;
        assert_eq!(codes(&v), [ReasonCode::InvalidSpec], "{hostile}");
        assert!(v.reasons[0].message.starts_with("spec.queue"));
    }
    assert_eq!(stub.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_in_another_account_without_a_reader_is_unreadable_not_missing() {
    // SQS answers QueueDoesNotExist both for a missing queue and for one the caller may not
    // see: without a reader role in the queue's account that must not become QueueNotFound.
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let iam = aws_sdk_iam::Client::new(&conf);
    ensure_provider(&iam).await;
    let role = seed_role(&iam, HOME, send_policy("*")).await;
    let src = AwsSource::from_sdk_config(conf, test_config(), Metrics::default());
    let q = format!("arn:aws:sqs:us-east-1:{OTHER}:{}", unique("elsewhere"));
    let v = verdict(&src, &input(&role, &q, vec![AccessMode::Send])).await;
    assert_eq!(v.verdict, Outcome::Indeterminate, "{:#?}", v.reasons);
    let r = v
        .reasons
        .iter()
        .find(|r| r.code == ReasonCode::EvidenceUnreadable)
        .unwrap();
    assert!(r.message.contains("readerRoles"), "{}", r.message);
}
