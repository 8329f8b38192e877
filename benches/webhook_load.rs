//! Load on the real webhook server over loopback TLS, warm cache (the snapshot source answers
//! from memory, as the shared cache does once warm): requests per second, and p50/p99 latency
//! at a fixed 500 requests per second. `cargo bench --bench webhook_load`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use sqs_access_operator::aws::{SnapshotInput, SnapshotSource};
use sqs_access_operator::binding::{ClusterFacts, ServiceAccountLookup};
use sqs_access_operator::config::WebhookConfig;
use sqs_access_operator::diagnosis::SpecOptions;
use sqs_access_operator::diagnosis::snapshot::Snapshot;
use sqs_access_operator::metrics::Metrics;
use sqs_access_operator::webhook::{self, Enforcement, NoOverrides, WebhookState};

struct Warm(Snapshot);

impl SnapshotSource for Warm {
    fn snapshot<'a>(&'a self, input: &'a SnapshotInput) -> BoxFuture<'a, Snapshot> {
        Box::pin(async move {
            let mut s = self.0.clone();
            if let Some(b) = &mut s.binding {
                b.spec = input.spec.clone();
            }
            s.service_account = input.service_account.clone();
            s
        })
    }
    fn spec_options(&self) -> SpecOptions {
        SpecOptions::default()
    }
}

struct Accounts;

impl ServiceAccountLookup for Accounts {
    fn annotations<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        Box::pin(async {
            let mut a = BTreeMap::new();
            a.insert(
                "eks.amazonaws.com/role-arn".into(),
                "arn:aws:iam::111111111111:role/orders-producer".into(),
            );
            Ok(Some(a))
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let snap = Snapshot::from_yaml_str(
        &std::fs::read_to_string(format!("{root}/examples/snapshots/healthy.yaml")).unwrap(),
    )
    .unwrap();
    let body: Bytes = std::fs::read(format!(
        "{root}/tests/fixtures/admission/create-allowed.json"
    ))
    .unwrap()
    .into();

    // Certificate and server, on a runtime of their own.
    let dir = std::env::temp_dir().join(format!("webhook-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    let der = cert.der().to_vec();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = server_rt.block_on(async {
        let state = Arc::new(WebhookState::new(
            ClusterFacts {
                service_accounts: Arc::new(Accounts),
                oidc_issuer: Some(
                    "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
                        .into(),
                ),
            },
            Arc::new(Warm(snap)),
            Enforcement::Enforce,
            Arc::new(NoOverrides),
            WebhookConfig::default(),
            Metrics::default(),
        ));
        let reloading = Arc::new(
            webhook::tls::ReloadingCert::new(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(tx);
        tokio::spawn(webhook::serve_tls(
            listener,
            webhook::router(state),
            reloading,
            rx,
        ));
        addr
    });

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(der)).unwrap();
        let config = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let connect = || {
            let config = config.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .unwrap();
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
                tokio::spawn(conn);
                send
            }
        };
        let request = |body: Bytes| {
            http::Request::post("/validate")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap()
        };
        // Warm up, and check the answer is the real one.
        let mut c = connect().await;
        let r = c.send_request(request(body.clone())).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["response"]["allowed"], true, "{v}");

        // 1. Throughput: 8 keep-alive connections, closed loop, 5 s.
        let conns = 8;
        let until = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let mut s = connect().await;
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let r = s.send_request(request(body.clone())).await.unwrap();
                    r.into_body().collect().await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        println!("webhook_load throughput: {:.0} requests/s over TLS (8 connections, closed loop, 5 s)", total as f64 / 5.0);

        // 2. Latency at a fixed 500 requests/s for 10 s, measured from each request's scheduled
        // start (no coordinated omission), over 16 keep-alive connections.
        let rate = 500u64;
        let secs = 10u64;
        let (tx, rx) = async_channel_like(rate as usize);
        let mut workers = Vec::new();
        for _ in 0..16 {
            let mut s = connect().await;
            let rx = rx.clone();
            let body = body.clone();
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while let Some(scheduled) = rx.recv().await {
                    let r = s.send_request(request(body.clone())).await.unwrap();
                    r.into_body().collect().await.unwrap();
                    lat.push(scheduled.elapsed());
                }
                lat
            }));
        }
        let start = Instant::now();
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        for i in 0..rate * secs {
            let at = start + interval * i as u32;
            tokio::time::sleep_until(at.into()).await;
            tx.send(at).await;
        }
        drop(tx);
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        println!(
            "webhook_load at {rate} requests/s for {secs} s: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            all.len(),
            percentile(&all, 0.50).as_secs_f64() * 1000.0,
            percentile(&all, 0.99).as_secs_f64() * 1000.0,
            all.last().unwrap().as_secs_f64() * 1000.0
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bounded multi-consumer channel from tokio primitives.
fn async_channel_like(cap: usize) -> (Sender, Receiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (Sender(tx), Receiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

struct Sender(tokio::sync::mpsc::Sender<Instant>);

impl Sender {
    async fn send(&self, v: Instant) {
        let _ = self.0.send(v).await;
    }
}

#[derive(Clone)]
struct Receiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Instant>>>);

impl Receiver {
    async fn recv(&self) -> Option<Instant> {
        self.0.lock().await.recv().await
    }
}
