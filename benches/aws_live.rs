//! Calls and wall time to diagnose 1,000 bindings over 20 roles, 20 queues and 5 KMS keys
//! against the AWS emulator, cold and warm cache. Needs the emulator:
//!   scripts/with-moto.sh cargo bench --bench aws_live

use std::collections::BTreeMap;
use std::time::Instant;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use serde_json::json;
use sqs_access_operator::aws::{AwsSource, SnapshotInput, SnapshotSource};
use sqs_access_operator::config::Config;
use sqs_access_operator::diagnosis::snapshot::ServiceAccountEvidence;
use sqs_access_operator::diagnosis::{AccessMode, BindingSpec, diagnose_with};
use sqs_access_operator::metrics::Metrics;

const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/BENCHCLUSTER";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("SQS_ACCESS_TEST_MOTO_URL") else {
        println!("aws_live: skipped (run through scripts/with-moto.sh)");
        return;
    };
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .load()
        .await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let kms = aws_sdk_kms::Client::new(&conf);
    let tag = std::process::id();
    let _ = iam
        .create_open_id_connect_provider()
        .url(format!("https://{ISSUER}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        let k = kms
            .create_key()
            .policy(json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}).to_string())
            .send()
            .await
            .unwrap();
        keys.push(k.key_metadata().unwrap().arn().unwrap().to_string());
    }
    let mut queues = Vec::new();
    for q in 0..20 {
        let name = format!("bench-{tag}-{q}");
        sqs.create_queue()
            .queue_name(&name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId,
                &keys[q % 5],
            )
            .send()
            .await
            .unwrap();
        queues.push(format!("arn:aws:sqs:us-east-1:123456789012:{name}"));
    }
    let mut roles = Vec::new();
    for r in 0..20 {
        let name = format!("bench-{tag}-{r}");
        let trust = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow",
            "Principal":{"Federated":format!("arn:aws:iam::123456789012:oidc-provider/{ISSUER}")},
            "Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{"StringEquals":{format!("{ISSUER}:sub"):"system:serviceaccount:bench:app"}}}]});
        let role = iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap();
        iam.put_role_policy()
            .role_name(&name)
            .policy_name("queues")
            .policy_document(json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:*","kms:Decrypt","kms:GenerateDataKey"],"Resource":"*"}]}).to_string())
            .send()
            .await
            .unwrap();
        roles.push(role.role().unwrap().arn().to_string());
    }
    let inputs: Vec<SnapshotInput> = (0..1000)
        .map(|n| {
            let mut annotations = BTreeMap::new();
            annotations.insert(
                "eks.amazonaws.com/role-arn".to_string(),
                roles[n % 20].clone(),
            );
            SnapshotInput {
                namespace: "bench".into(),
                binding_name: Some(format!("b{n}")),
                spec: BindingSpec {
                    service_account_name: "app".into(),
                    queue: queues[(n / 20) % 20].clone(),
                    access: vec![AccessMode::Send, AccessMode::Receive],
                    actions: vec![],
                    vpc_endpoint_id: None,
                },
                service_account: Some(ServiceAccountEvidence {
                    found: true,
                    annotations,
                }),
                oidc_issuer: Some(format!("https://{ISSUER}")),
                cluster_name: None,
                pods: None,
            }
        })
        .collect();
    let mut cfg = Config::default();
    cfg.aws.max_attempts = 1;
    let metrics = Metrics::default();
    let src = AwsSource::from_sdk_config(conf, cfg, metrics.clone());
    for round in ["cold", "warm"] {
        let before = metrics.total_calls();
        let t = Instant::now();
        let verdicts = futures::future::join_all(inputs.iter().map(|i| async {
            let s = src.snapshot(i).await;
            diagnose_with(&s, &src.spec_options())
        }))
        .await;
        let elapsed = t.elapsed();
        let allowed = verdicts
            .iter()
            .filter(|v| v.verdict == sqs_access_operator::diagnosis::Outcome::Allowed)
            .count();
        println!(
            "aws_live {round}: 1000 bindings (20 roles, 20 queues, 5 keys): {} AWS calls, {:.1} ms wall, {allowed} allowed",
            metrics.total_calls() - before,
            elapsed.as_secs_f64() * 1000.0
        );
    }
}
