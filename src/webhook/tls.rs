//! The webhook's TLS: a certificate resolver that re-reads the key pair when the files change,
//! checked at most once a second on handshakes. Kubernetes updates a mounted Secret by swapping
//! a symlink, so the check compares the files' contents' fingerprint (size, modification time
//! of the resolved target), not inotify events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

fn file_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Loads a PEM certificate chain and private key.
pub fn load_key_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(cert, "no certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_err(key, format!("not a PEM private key: {e}")))?;
    let signing =
        any_supported_type(&key_der).map_err(|e| file_err(key, format!("unsupported key: {e}")))?;
    let pair = CertifiedKey::new(certs, signing);
    // A certificate and key from different pairs would fail every handshake.
    pair.keys_match()
        .map_err(|e| file_err(key, format!("does not match the certificate: {e}")))?;
    Ok(pair)
}

/// A file's size and modification time, to notice a rewrite.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(p: &Path) -> Stamp {
    // metadata follows symlinks: a swapped Secret volume shows a new target.
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

/// Serves the current key pair, reloading it when the files change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .finish()
    }
}

impl ReloadingCert {
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let k = load_key_pair(cert, key)?;
        Ok(ReloadingCert {
            cert: cert.into(),
            key: key.into(),
            state: Mutex::new(Loaded {
                key: Arc::new(k),
                stamps: (stamp(cert), stamp(key)),
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().expect("lock");
        if st.checked.elapsed().as_millis() >= 1000 {
            st.checked = Instant::now();
            let stamps = (stamp(&self.cert), stamp(&self.key));
            if stamps != st.stamps {
                match load_key_pair(&self.cert, &self.key) {
                    Ok(k) => {
                        tracing::info!(cert = %self.cert.display(), "reloaded the webhook certificate");
                        st.key = Arc::new(k);
                        st.stamps = stamps;
                    }
                    // Mid-rotation (one file written, not the other): keep serving the old pair.
                    Err(e) => {
                        tracing::warn!(error = %e, "keeping the previous webhook certificate")
                    }
                }
            }
        }
        st.key.clone()
    }

    pub fn server_config(self: Arc<Self>) -> rustls::ServerConfig {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions are supported")
        .with_no_client_auth()
        .with_cert_resolver(self);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
