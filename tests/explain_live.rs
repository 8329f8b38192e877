//! `explain --live` against the AWS emulator (moto on loopback, started by
//! `scripts/with-moto.sh`): AWS's SQS troubleshooting messages, and the IAM-style one, for an
//! IAM user (with a group and tags) and for a role session, lead to the layer and
//! the fix; applying the fix makes the same text "allowed in every visible layer"; a claim in a
//! layer the tool cannot see says so; a URL in the text is never requested.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sqs_access_operator::aws::{AwsSource, RequestInput, SnapshotSource};
use sqs_access_operator::config::Config;
use sqs_access_operator::diagnosis::{FixTarget, ReasonCode};
use sqs_access_operator::explain::{self, Agreement, Explanation, Options, parse};
use sqs_access_operator::metrics::Metrics;
use support::{Stub, binary, moto_url, sdk_config, unique};

const HOME: &str = "123456789012";

const KMS_ARTICLE: &str = "An error occurred (KMS.AccessDeniedException) when calling the SendMessage operation: User: arn:aws:iam::xxxxx:user/xxxx is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:xxxx:key/xxxx with an explicit deny.";
const LEGACY_ARTICLE: &str = "An error occurred (AccessDenied) when calling the SendMessage operation: Access to the resource is denied.";

fn test_config() -> Config {
    let mut c = Config::default();
    c.aws.max_attempts = 1;
    c.aws.call_timeout = Duration::from_secs(5);
    c
}

/// What `explain --live` does: read the text, select, fetch, explain.
async fn explain_live(src: &AwsSource, text: &str, opts: &Options) -> Explanation {
    let e = parse(text).unwrap();
    let sel = explain::select(&e, opts, None).unwrap();
    let snap = src
        .request_snapshot(&RequestInput {
            principal: sel.principal.clone().unwrap(),
            queue: sel.queue.clone(),
            actions: vec![sel.action.clone()],
            vpc_endpoint_id: None,
        })
        .await;
    explain::explain(&e, opts, snap, &src.spec_options()).unwrap()
}

fn codes(x: &Explanation) -> Vec<ReasonCode> {
    x.reasons.iter().map(|r| r.code).collect()
}

async fn policy(iam: &aws_sdk_iam::Client, doc: Value) -> String {
    let p = iam
        .create_policy()
        .policy_name(unique("p"))
        .policy_document(doc.to_string())
        .send()
        .await
        .unwrap();
    p.policy().unwrap().arn().unwrap().to_string()
}

/// A customer managed key whose policy lets IAM policies of the account count.
async fn key(kms: &aws_sdk_kms::Client) -> String {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "EnableIamPolicies", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")}, "Action": "kms:*", "Resource": "*"}]});
    kms.create_key()
        .policy(policy.to_string())
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_articles_kms_message_for_an_iam_user() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let (iam, sqs, kms) = (
        aws_sdk_iam::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
        aws_sdk_kms::Client::new(&conf),
    );
    let key = key(&kms).await;
    let qname = unique("uq");
    let qarn = format!("arn:aws:sqs:us-east-1:{HOME}:{qname}");
    sqs.create_queue()
        .queue_name(&qname)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId, &key)
        .send()
        .await
        .unwrap();
    // The user: a group grants SQS (inline) and the key (attached); the user's own inline
    // policy denies data keys; a tag.
    let user = unique("ci");
    let group = unique("deployers");
    let u = iam
        .create_user()
        .user_name(&user)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("ci")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let user_arn = u.user().unwrap().arn().to_string();
    iam.create_group().group_name(&group).send().await.unwrap();
    iam.add_user_to_group()
        .group_name(&group)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    iam.put_group_policy()
        .group_name(&group)
        .policy_name("orders-queue")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "SendOrders", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": &qarn}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let kms_policy = policy(
        &iam,
        json!({"Version": "2012-10-17", "Statement": [{"Sid": "KeyViaSqs", "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": &key}]}),
    )
    .await;
    iam.attach_group_policy()
        .group_name(&group)
        .policy_arn(&kms_policy)
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("no-data-keys")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "DenyDataKeys", "Effect": "Deny", "Action": "kms:GenerateDataKey*", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    // (moto 5.2.5 does not implement PutUserPermissionsBoundary: a user's boundary is
    // covered offline, in tests/explain.rs.)

    let metrics = Metrics::default();
    let src = AwsSource::from_sdk_config(conf, test_config(), metrics.clone());
    // The article's text redacts the user and the key: the options name them.
    let opts = Options {
        principal: Some(user_arn.clone()),
        queue: Some(qarn.clone()),
        ..Default::default()
    };
    let x = explain_live(&src, KMS_ARTICLE, &opts).await;
    let v = x.verdict.as_ref().unwrap();
    let caller = v.caller.as_ref().unwrap();
    assert_eq!(caller.kind, "User");
    assert_eq!(caller.groups, std::slice::from_ref(&group));
    assert_eq!(x.comparison.result, Agreement::NamedNoLayer, "{x:#?}");
    assert_eq!(codes(&x), [ReasonCode::ExplicitDenyInIdentityPolicy]);
    assert_eq!(
        x.fixes[0].target,
        FixTarget::UserPolicy {
            user: user_arn.clone()
        }
    );
    assert!(x.fixes[0].instruction.contains("\"DenyDataKeys\""));
    // Everything else about the user was read: the group's policies allow SQS and Decrypt.
    assert!(
        v.checks
            .iter()
            .any(|c| c.action == "kms:Decrypt" && format!("{:?}", c.decision) == "Allow"),
        "{:#?}",
        v.checks
    );

    // A second look is served from the cache: one GetUser, one group read.
    let before = count(&metrics, "iam", "GetUser");
    let _ = explain_live(&src, KMS_ARTICLE, &opts).await;
    assert_eq!(count(&metrics, "iam", "GetUser"), before);
    assert_eq!(count(&metrics, "iam", "ListGroupPolicies"), 1);

    // The fix: remove the denying statement. Then every visible layer allows, and the answer
    // lists what it could not see instead of pretending.
    iam.delete_user_policy()
        .user_name(&user)
        .policy_name("no-data-keys")
        .send()
        .await
        .unwrap();
    src.invalidate_all();
    let x = explain_live(&src, KMS_ARTICLE, &opts).await;
    assert_eq!(
        x.comparison.result,
        Agreement::AllowedInVisibleLayers,
        "{x:#?}"
    );
    let layers: Vec<&str> = x
        .comparison
        .not_visible
        .iter()
        .map(|n| n.layer.as_str())
        .collect();
    assert!(layers.contains(&"scp") && layers.contains(&"requestContext"));

    // The legacy text names nothing: with the user and the queue's URL given, the missing
    // grant is found (a second queue, without any grant for this user).
    let q2 = unique("uq2");
    let q2url = sqs
        .create_queue()
        .queue_name(&q2)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let x = explain_live(
        &src,
        LEGACY_ARTICLE,
        &Options {
            principal: Some(user_arn.clone()),
            queue: Some(q2url),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(x.comparison.result, Agreement::NamedNoLayer, "{x:#?}");
    assert_eq!(codes(&x), [ReasonCode::IdentityPolicyDoesNotAllow]);
    assert_eq!(
        x.fixes[0].target,
        FixTarget::UserPolicy {
            user: user_arn.clone()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iam_style_message_for_a_role_session() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let (iam, sqs) = (
        aws_sdk_iam::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
    );
    let qname = unique("rq");
    let qarn = format!("arn:aws:sqs:us-east-1:{HOME}:{qname}");
    sqs.create_queue().queue_name(&qname).send().await.unwrap();
    let role = unique("worker");
    iam.create_role()
        .role_name(&role)
        .path("/service/")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    // The session ARN names the role without its path; the session name is the instance id.
    let session = format!("arn:aws:sts::{HOME}:assumed-role/{role}/i-0abc1234def567890");
    let text = format!(
        "operation error SQS: SendMessage, https response error StatusCode: 403, RequestID: 3e4c5d6e-7f80-5912-a3b4-c5d6e7f8091a, api error AccessDenied: User: {session} is not authorized to perform: sqs:sendmessage on resource: {qarn} because no identity-based policy allows the sqs:sendmessage action"
    );
    let src = AwsSource::from_sdk_config(conf, test_config(), Metrics::default());
    let x = explain_live(&src, &text, &Options::default()).await;
    assert_eq!(x.comparison.result, Agreement::Agrees, "{x:#?}");
    assert_eq!(codes(&x), [ReasonCode::IdentityPolicyDoesNotAllow]);
    let v = x.verdict.as_ref().unwrap();
    assert_eq!(v.caller.as_ref().unwrap().principal, session);
    assert_eq!(v.caller.as_ref().unwrap().kind, "AssumedRole");
    let fix = x.fixes[0].statement.clone().unwrap();
    assert_eq!(fix["Resource"], qarn.as_str());

    // A claim in a layer the tool cannot see: the organization is not configured.
    let scp_text = text.replace(
        "because no identity-based policy allows the sqs:sendmessage action",
        "with an explicit deny in a service control policy",
    );
    let x = explain_live(&src, &scp_text, &Options::default()).await;
    assert_eq!(x.comparison.result, Agreement::DifferentLayer);
    assert_eq!(x.comparison.not_visible[0].layer, "scp");

    // Apply the suggested statement to the role; the same texts now: allowed where visible,
    // and the SCP named as where to look.
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("fix")
        .policy_document(json!({"Version": "2012-10-17", "Statement": [fix]}).to_string())
        .send()
        .await
        .unwrap();
    src.invalidate_all();
    let x = explain_live(&src, &text, &Options::default()).await;
    assert_eq!(
        x.comparison.result,
        Agreement::AllowedInVisibleLayers,
        "{x:#?}"
    );
    let x = explain_live(&src, &scp_text, &Options::default()).await;
    assert_eq!(x.comparison.result, Agreement::ClaimNotVisible, "{x:#?}");
    assert!(x.comparison.message.contains("organization"));
}

/// The command itself against the emulator, and a URL in the text never requested: the text
/// names a server on loopback, which must see no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_live_never_requests_the_texts_url() {
    let Some(url) = moto_url() else { return };
    let conf = sdk_config(&url).await;
    let (iam, sqs) = (
        aws_sdk_iam::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
    );
    let qname = unique("cq");
    sqs.create_queue().queue_name(&qname).send().await.unwrap();
    let user = unique("cli");
    let user_arn = iam
        .create_user()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .user()
        .unwrap()
        .arn()
        .to_string();
    let trap = Stub::start(200, "application/xml", "<x/>").await;
    let text = format!(
        "An error occurred (AccessDenied) when calling the SendMessage operation: Access to the resource {}/{HOME}/{qname} is denied.",
        trap.url
    );
    let queue = format!("arn:aws:sqs:us-east-1:{HOME}:{qname}");
    let out = tokio::task::spawn_blocking(move || {
        binary()
            .env("AWS_ENDPOINT_URL", &url)
            .args([
                "explain",
                &text,
                "--live",
                "--principal",
                &user_arn,
                "--queue",
                &queue,
                "--output",
                "json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reasons"][0]["code"], "IdentityPolicyDoesNotAllow");
    assert_eq!(v["fixes"][0]["target"]["kind"], "userPolicy");
    assert_eq!(
        trap.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the text's URL was requested"
    );
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
