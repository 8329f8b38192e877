//! AWS change events end to end on a real API server: the controller follows the events queue
//! (in the AWS emulator), and a policy change reaches the binding's status within seconds while
//! the periodic re-check is an hour away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sqs_access_operator::aws::AwsSource;
use sqs_access_operator::binding::{ApiLookup, ClusterFacts};
use sqs_access_operator::config::Config;
use sqs_access_operator::controller::{self, Context};
use sqs_access_operator::crd::SqsAccessBinding;
use sqs_access_operator::metrics::Metrics;

use crate::controller::ready;
use crate::support::envtest::{ApiServer, Options, eventually};
use crate::support::{moto_url, sdk_config, unique};

const HOME: &str = "123456789012";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/ENVTESTEVENTS";

async fn put_send(iam: &aws_sdk_iam::Client, role: &str, effect: &str) {
    iam.put_role_policy()
        .role_name(role)
        .policy_name("send")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": effect,
                "Action": "sqs:SendMessage", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_reaches_the_status_in_seconds_through_an_event() {
    let Some(moto) = moto_url() else { return };
    let Some(server) = ApiServer::start(Options::default()) else {
        return;
    };
    server.install_crd().await;
    let admin = server.client().await;
    let ns = server.namespace("events").await;

    // AWS: the provider, a role for ns/producer that may send, a queue, the events queue.
    let sdk = sdk_config(&moto).await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let _ = iam
        .create_open_id_connect_provider()
        .url(format!("https://{ISSUER}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await;
    let role = unique("ev-env").to_ascii_lowercase();
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{HOME}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{ISSUER}:sub"): format!("system:serviceaccount:{ns}:producer")}}}]});
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    put_send(&iam, &role, "Allow").await;
    let queue = unique("ev-queue");
    sqs.create_queue().queue_name(&queue).send().await.unwrap();
    let events = unique("sqs-access-events");
    let events_url = sqs
        .create_queue()
        .queue_name(&events)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    // The operator: re-checks once an hour, follows the events queue.
    let mut cfg = Config::default();
    cfg.aws.max_attempts = 2;
    cfg.events.queue_url = Some(format!("arn:aws:sqs:us-east-1:{HOME}:{events}"));
    let src = Arc::new(AwsSource::from_sdk_config(
        sdk.clone(),
        cfg,
        Metrics::default(),
    ));
    let client = server.client().await;
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            ClusterFacts {
                service_accounts: Arc::new(ApiLookup(client.clone())),
                oidc_issuer: Some(format!("https://{ISSUER}")),
            },
            src.clone(),
            src.metrics().clone(),
            Duration::from_secs(3600),
        )
        .without_jitter(),
    );
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(controller::run(
        ctx.clone(),
        async move {
            let _ = stopped.await;
        },
        || {},
    ));
    let q = src.events_queue().await.unwrap().expect("configured");
    let follower = tokio::spawn(controller::events::follow(ctx.clone(), q));

    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "producer",
        "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{HOME}:role/{role}")}}});
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap();
    let api: Api<SqsAccessBinding> = Api::namespaced(admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "sqsaccess.io/v1alpha1",
            "kind": "SqsAccessBinding", "metadata": {"name": "producer"},
            "spec": {"serviceAccountName": "producer",
                "queue": format!("arn:aws:sqs:us-east-1:{HOME}:{queue}"), "access": ["Send"]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), "Ready=True", || async {
        let b = api.get("producer").await.ok()?;
        (ready(&b) == Some("True")).then_some(())
    })
    .await;

    // Someone replaces the policy with a deny; CloudTrail's record of it arrives on the queue.
    put_send(&iam, &role, "Deny").await;
    let mut ev: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/events/iam-PutRolePolicy.json"
        ))
        .unwrap(),
    )
    .unwrap();
    ev["detail"]["requestParameters"]["roleName"] = json!(role);
    ev["detail"]["recipientAccountId"] = json!(HOME);
    ev["detail"]["eventTime"] = json!(chrono::Utc::now().to_rfc3339());
    let started = Instant::now();
    sqs.send_message()
        .queue_url(&events_url)
        .message_body(ev.to_string())
        .send()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "Ready=False after the event",
        || async {
            let b = api.get("producer").await.ok()?;
            (ready(&b) == Some("False")).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    eprintln!("policy change event to status: {took:?} (periodic re-check: 1h)");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let b = api.get("producer").await.unwrap();
    assert_eq!(
        b.status.unwrap().reason.as_deref(),
        Some("ExplicitDenyInIdentityPolicy")
    );
    follower.abort();
}
