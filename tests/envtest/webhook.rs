//! The admission webhook called by a real API server: served in-process over TLS on loopback,
//! registered with a ValidatingWebhookConfiguration (`clientConfig.url` and `caBundle`, as the
//! chart's `webhook.url` mode renders it), and exercised with `kubectl apply`. Service accounts
//! and namespace labels come from the API server, AWS from the example-backed fake source.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use sqs_access_operator::binding::{ApiLookup, ClusterFacts};
use sqs_access_operator::config::WebhookConfig;
use sqs_access_operator::crd::SqsAccessBinding;
use sqs_access_operator::metrics::{Metrics, ResultLabels};
use sqs_access_operator::webhook::{
    self, ENFORCEMENT_LABEL, Enforcement, StoreModes, WebhookState,
};

use crate::controller::{DENIED_QUEUE, HEALTHY_QUEUE, ISSUER, ROLE, service_account};
use crate::support::envtest::{
    ApiServer, eventually, serving_certificate, webhook_configuration, workdir,
};
use crate::support::fakes::{AsOrders, ExampleSource};

/// An in-process webhook registered for one namespace; unregistered and stopped when dropped
/// (the configuration is deleted in the background).
struct Webhook {
    client: Client,
    name: String,
    metrics: Metrics,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Webhook {
    async fn start(server: &ApiServer, ns: &str, mode: Enforcement) -> Webhook {
        let client = server.client().await;
        let cert = serving_certificate(&workdir().join(crate::support::unique("webhook-tls")));
        // Namespace labels from a watch-fed cache, as `run` has them.
        let (store, writer) = reflector::store();
        let namespaces = reflector(
            writer,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                Default::default(),
            ),
        )
        .default_backoff()
        .touched_objects();
        tokio::spawn(futures::StreamExt::for_each(namespaces, |_| async {}));
        store.wait_until_ready().await.unwrap();
        let metrics = Metrics::default();
        let state = Arc::new(WebhookState::new(
            ClusterFacts {
                service_accounts: Arc::new(ApiLookup(client.clone())),
                oidc_issuer: Some(ISSUER.into()),
            },
            Arc::new(AsOrders(ExampleSource)),
            mode,
            Arc::new(StoreModes(store)),
            WebhookConfig::default(),
            metrics.clone(),
        ));
        let tls = webhook::tls::ReloadingCert::new(&cert.cert, &cert.key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/validate", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(webhook::serve_tls(
            listener,
            webhook::router(state),
            Arc::new(tls),
            stopped,
        ));
        let name = crate::support::unique("sqs-access-operator-test");
        let vwc: ValidatingWebhookConfiguration = sqs_access_operator::yaml::from_str(
            &webhook_configuration(&name, &url, &cert.ca_pem, ns),
        )
        .unwrap();
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &vwc)
            .await
            .unwrap();
        let wh = Webhook {
            client,
            name,
            metrics,
            _stop: stop,
        };
        // The API server picks the configuration up a moment later: probe with dry runs.
        let probe: SqsAccessBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "sqsaccess.io/v1alpha1", "kind": "SqsAccessBinding",
            "metadata": {"name": "probe"},
            "spec": {"serviceAccountName": "producer", "queue": HEALTHY_QUEUE, "access": ["Send"]}
        }))
        .unwrap();
        let api: Api<SqsAccessBinding> = Api::namespaced(wh.client.clone(), ns);
        let (api, probe, wh_ref) = (&api, &probe, &wh);
        eventually(
            Duration::from_secs(30),
            "the webhook being called",
            || async move {
                let _ = api
                    .create(
                        &PostParams {
                            dry_run: true,
                            ..Default::default()
                        },
                        probe,
                    )
                    .await;
                (wh_ref.calls() > 0).then_some(())
            },
        )
        .await;
        wh
    }

    /// AdmissionReviews answered.
    fn calls(&self) -> u64 {
        ["allowed", "denied", "warned", "invalid"]
            .into_iter()
            .map(|result| {
                self.metrics
                    .admissions
                    .get_or_create(&ResultLabels { result })
                    .get()
            })
            .sum()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let api = Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
        let name = self.name.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

fn binding_yaml(ns: &str, name: &str, queue: &str) -> String {
    format!(
        "apiVersion: sqsaccess.io/v1alpha1\nkind: SqsAccessBinding\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{serviceAccountName: producer, queue: \"{queue}\", access: [Send]}}\n"
    )
}

/// `kubectl apply` of a binding: whether it succeeded, and its error output (warnings and
/// rejections).
async fn apply(server: &ApiServer, ns: &str, name: &str, queue: &str) -> (bool, String) {
    let out = server
        .kubectl(&["apply", "-f", "-"], Some(&binding_yaml(ns, name, queue)))
        .await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn exists(client: &Client, ns: &str, name: &str) -> bool {
    Api::<SqsAccessBinding>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}

async fn setup(prefix: &str) -> Option<(&'static ApiServer, Client, String)> {
    let server = ApiServer::shared()?;
    server.install_crd().await;
    let client = server.client().await;
    let ns = server.namespace(prefix).await;
    service_account(&client, &ns, "producer", Some(ROLE)).await;
    Some((server, client, ns))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_a_failing_binding_is_rejected_with_its_reason() {
    let Some((server, client, ns)) = setup("wh-enforce").await else {
        return;
    };
    let wh = Webhook::start(server, &ns, Enforcement::Enforce).await;

    let (ok, err) = apply(server, &ns, "denied", DENIED_QUEUE).await;
    assert!(!ok, "a failing binding was admitted: {err}");
    for needle in [
        "admission webhook \"validate.sqsaccess.io\" denied the request",
        &format!("SqsAccessBinding {ns}/denied would not work"),
        "IdentityPolicyDoesNotAllow [identityPolicy] sqs:SendMessage",
        &format!("Fix: add this statement to an identity policy of role {ROLE}"),
    ] {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
    assert!(!exists(&client, &ns, "denied").await);

    // A working one is admitted, without a warning.
    let (ok, err) = apply(server, &ns, "healthy", HEALTHY_QUEUE).await;
    assert!(ok, "{err}");
    assert!(!err.contains("Warning"), "{err}");
    // Changing its spec to a failing one is an UPDATE the webhook rejects too.
    let (ok, err) = apply(server, &ns, "healthy", DENIED_QUEUE).await;
    assert!(!ok && err.contains("IdentityPolicyDoesNotAllow"), "{err}");
    let kept = Api::<SqsAccessBinding>::namespaced(client.clone(), &ns)
        .get("healthy")
        .await
        .unwrap();
    assert_eq!(kept.spec.binding.queue, HEALTHY_QUEUE);
    assert!(wh.calls() >= 4, "{} calls", wh.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_admits_a_failing_binding_with_the_reason_as_a_warning() {
    let Some((server, client, ns)) = setup("wh-warn").await else {
        return;
    };
    let _wh = Webhook::start(server, &ns, Enforcement::Warn).await;
    let (ok, err) = apply(server, &ns, "denied", DENIED_QUEUE).await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "Warning: SqsAccessBinding {ns}/denied would not work: IdentityPolicyDoesNotAllow"
        )),
        "{err}"
    );
    assert!(exists(&client, &ns, "denied").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_label_switches_the_enforcement_mode() {
    let Some((server, client, ns)) = setup("wh-label").await else {
        return;
    };
    // Operator-wide: warn.
    let _wh = Webhook::start(server, &ns, Enforcement::Warn).await;
    let (ok, err) = apply(server, &ns, "first", DENIED_QUEUE).await;
    assert!(ok && err.contains("IdentityPolicyDoesNotAllow"), "{err}");

    let label = |mode: &str| format!("{ENFORCEMENT_LABEL}={mode}");
    server
        .kubectl_ok(
            &["label", "namespace", &ns, &label("enforce"), "--overwrite"],
            None,
        )
        .await;
    // The webhook learns labels through its namespace watch: a moment later, rejected.
    let (server_ref, ns_ref) = (server, ns.as_str());
    let err = eventually(Duration::from_secs(30), "enforce mode", || async move {
        let (ok, err) = apply(server_ref, ns_ref, "second", DENIED_QUEUE).await;
        (!ok).then_some(err)
    })
    .await;
    assert!(
        err.contains("denied the request") && err.contains("IdentityPolicyDoesNotAllow"),
        "{err}"
    );
    assert!(!exists(&client, &ns, "second").await);

    server
        .kubectl_ok(
            &["label", "namespace", &ns, &label("warn"), "--overwrite"],
            None,
        )
        .await;
    let err = eventually(Duration::from_secs(30), "warn mode again", || async move {
        let (ok, err) = apply(server_ref, ns_ref, "second", DENIED_QUEUE).await;
        ok.then_some(err)
    })
    .await;
    assert!(
        err.contains("Warning:") && err.contains("IdentityPolicyDoesNotAllow"),
        "{err}"
    );
    assert!(exists(&client, &ns, "second").await);
}
