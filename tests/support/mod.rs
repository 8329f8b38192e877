//! Shared test support: the AWS emulator (moto) started by `scripts/with-moto.sh`, SDK
//! configurations for it, and a tiny HTTP server that answers every request the same way (to
//! inject throttling, access denied and server errors, which the emulator cannot produce).

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The emulator's URL, or `None` (then the test says it is skipped). With
/// `SQS_ACCESS_REQUIRE_MOTO=1` (CI sets it), a missing emulator fails the test instead.
pub fn moto_url() -> Option<String> {
    match std::env::var("SQS_ACCESS_TEST_MOTO_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("SQS_ACCESS_REQUIRE_MOTO").is_err(),
                "SQS_ACCESS_TEST_MOTO_URL is not set: run the tests through scripts/with-moto.sh"
            );
            eprintln!("skipped: no AWS emulator (run through scripts/with-moto.sh)");
            None
        }
    }
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// An SDK configuration acting in another (emulated) account, through sts:AssumeRole.
pub async fn sdk_config_in(endpoint: &str, account: &str) -> SdkConfig {
    let base = sdk_config(endpoint).await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(format!(
        "arn:aws:iam::{account}:role/test-admin"
    ))
    .session_name("tests")
    .configure(&base)
    .build()
    .await;
    base.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An HTTP server on loopback that answers every request with one canned response.
pub struct Stub {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
}

impl Stub {
    pub async fn start(status: u16, content_type: &'static str, body: &'static str) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    // Read the head and the body the client announces, then answer.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Stub { url, requests }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
