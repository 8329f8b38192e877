//! A real Kubernetes API server for tests, the envtest way: etcd and kube-apiserver from
//! `TEST_ASSET_KUBE_APISERVER` / `TEST_ASSET_ETCD` / `TEST_ASSET_KUBECTL` (or
//! `KUBEBUILDER_ASSETS`) on free loopback ports, with an admin token. One server is shared per
//! test binary ([`ApiServer::shared`]); tests that run a controller (which watches every
//! namespace) or restart the server start their own ([`ApiServer::start`]).
//!
//! Teardown holds even when no destructor runs (a panic in a test, the shared server in a
//! static, a killed test process): every child is forked by one thread that lives as long as
//! the process, with `PR_SET_PDEATHSIG`, so the kernel kills it when the test process ends; a
//! detached watchdog removes the working folder then.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, PostParams};

/// Set (CI sets it to 1) to fail, instead of skip, when the binaries are missing.
pub const REQUIRE: &str = "SQS_ACCESS_REQUIRE_ENVTEST";

const HOW: &str = "to run them, set TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD and \
    TEST_ASSET_KUBECTL, or KUBEBUILDER_ASSETS to a folder holding all three (here: \
    eval \"$(../shared/envtest/install)\"; elsewhere: \
    export KUBEBUILDER_ASSETS=\"$(setup-envtest use -p path)\")";

/// The envtest binaries.
#[derive(Clone, Debug)]
pub struct Assets {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
}

impl Assets {
    fn from_env() -> Result<Assets, String> {
        let folder = std::env::var_os("KUBEBUILDER_ASSETS")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let find = |var: &str, name: &str| -> Result<PathBuf, String> {
            let path = match std::env::var_os(var).filter(|v| !v.is_empty()) {
                Some(p) => PathBuf::from(p),
                None => folder
                    .as_ref()
                    .map(|d| d.join(name))
                    .ok_or_else(|| format!("{var} is not set"))?,
            };
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} (for {var}) does not exist", path.display()))
            }
        };
        Ok(Assets {
            kube_apiserver: find("TEST_ASSET_KUBE_APISERVER", "kube-apiserver")?,
            etcd: find("TEST_ASSET_ETCD", "etcd")?,
            kubectl: find("TEST_ASSET_KUBECTL", "kubectl")?,
        })
    }
}

fn required() -> bool {
    std::env::var(REQUIRE).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The binaries, or `None` after one line saying how to enable these tests. With
/// `SQS_ACCESS_REQUIRE_ENVTEST=1` (CI) their absence fails the test instead.
pub fn assets() -> Option<Assets> {
    match Assets::from_env() {
        Ok(a) => Some(a),
        Err(why) => {
            assert!(
                !required(),
                "{REQUIRE} is set but there is no Kubernetes API server to test against: {why}; {HOW}"
            );
            eprintln!("skipped: no Kubernetes API server ({why}); {HOW}");
            None
        }
    }
}

/// A tool the tests need besides the envtest binaries (helm): `None` after one line saying
/// how to get it, or a failure under `SQS_ACCESS_REQUIRE_ENVTEST`.
pub fn tool(name: &str, candidates: &[PathBuf], how: &str) -> Option<PathBuf> {
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Some(p.clone());
    }
    assert!(!required(), "{REQUIRE} is set but {name} is missing: {how}");
    eprintln!("skipped: {name} is missing: {how}");
    None
}

// ---------------------------------------------------------------------------------------------
// Processes that die with the test process
// ---------------------------------------------------------------------------------------------

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts `cmd` so that it is killed when the test process ends, however it ends. The kernel
/// sends `PR_SET_PDEATHSIG` when the *thread* that forked the child ends, so every child is
/// forked by one thread that lives as long as the process (test threads come and go).
pub fn spawn(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The test process ended before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("envtest-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the envtest spawner thread");
        tx
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .expect("the spawner thread lives as long as the process");
    answer
        .recv()
        .expect("the spawner thread lives as long as the process")
}

/// This process's working folder, removed by a detached watchdog once the process is gone.
pub fn workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("sqs-access-envtest-{pid}"));
        std::fs::create_dir_all(&dir).expect("cannot create the envtest working folder");
        let mut watchdog = Command::new("sh");
        watchdog
            .args([
                "-c",
                r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -rf "$2""#,
                "envtest-cleanup",
                &pid.to_string(),
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own session: a Ctrl-C of the tests does not stop the cleanup.
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                watchdog.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
        }
        // Not through `spawn`: it must outlive this process.
        let _ = watchdog.spawn();
        dir
    })
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn stop(child: &mut Child, grace: Duration) {
    #[cfg(unix)]
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// The API server
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Write an audit log (metadata of every request, with the response code) to read with
    /// [`ApiServer::audit`].
    pub audit: bool,
}

/// One etcd and one kube-apiserver, and an admin identity (a static token in
/// `system:masters`). Dropping it stops both and removes their data.
pub struct ApiServer {
    pub assets: Assets,
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    admin_token: String,
    apiserver_args: Vec<String>,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
}

impl ApiServer {
    /// The API server shared by the tests of this binary (started on first use, stopped when
    /// the process ends), or `None` when the tests are skipped.
    pub fn shared() -> Option<&'static ApiServer> {
        static SHARED: OnceLock<Option<ApiServer>> = OnceLock::new();
        SHARED
            .get_or_init(|| ApiServer::start(Options::default()))
            .as_ref()
    }

    /// A private API server, or `None` when the tests are skipped. Panics, with the
    /// processes' logs, when one cannot be started.
    pub fn start(opts: Options) -> Option<ApiServer> {
        let assets = assets()?;
        let mut last = String::new();
        // A port taken between choosing and binding it: try again with others.
        for _ in 0..3 {
            match ApiServer::try_start(&assets, opts) {
                Ok(s) => return Some(s),
                Err(e) => last = e,
            }
        }
        panic!("cannot start a Kubernetes API server: {last}");
    }

    fn try_start(assets: &Assets, opts: Options) -> Result<ApiServer, String> {
        let dir = workdir().join(super::unique("apiserver"));
        std::fs::create_dir_all(dir.join("certs")).map_err(|e| e.to_string())?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        let (sa_key, sa_pub) = service_account_keys();
        let sa_key = write("sa.key", sa_key)?;
        let sa_pub = write("sa.pub", sa_pub)?;
        let admin_token = super::unique("admin");
        let tokens = write(
            "tokens.csv",
            &format!("{admin_token},admin,admin,system:masters\n"),
        )?;
        let (etcd_port, peer_port, port) = {
            // Held together so that the three differ.
            let l: Vec<TcpListener> = (0..3)
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
                .collect();
            let p = |i: usize| l[i].local_addr().expect("bound").port();
            (p(0), p(1), p(2))
        };
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let path = |p: &Path| p.display().to_string();
        let mut args = vec![
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path(&dir.join("certs"))),
            format!("--etcd-servers={etcd_url}"),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--endpoint-reconciler-type=none".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", path(&sa_pub)),
            format!("--service-account-signing-key-file={}", path(&sa_key)),
            format!("--token-auth-file={}", path(&tokens)),
        ];
        if opts.audit {
            let policy = write(
                "audit-policy.yaml",
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )?;
            args.push(format!("--audit-policy-file={}", path(&policy)));
            args.push(format!("--audit-log-path={}", path(&dir.join("audit.log"))));
        }
        let mut etcd = Command::new(&assets.etcd);
        etcd.arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "etcd.log")?)
            .stderr(log_file(&dir, "etcd.log")?);
        let etcd = spawn(etcd).map_err(|e| format!("{}: {e}", assets.etcd.display()))?;

        let server = ApiServer {
            assets: assets.clone(),
            url: format!("https://127.0.0.1:{port}"),
            port,
            kubeconfig: dir.join("kubeconfig"),
            admin_token,
            apiserver_args: args,
            etcd: Mutex::new(Some(etcd)),
            apiserver: Mutex::new(None),
            dir,
        };
        server.write_kubeconfig(&server.kubeconfig, &server.admin_token, None);
        server.spawn_apiserver()?;
        // On failure it is dropped: both processes stop, the folder goes.
        server.wait_ready(Duration::from_secs(60)).map(|()| server)
    }

    fn spawn_apiserver(&self) -> Result<(), String> {
        let mut cmd = Command::new(&self.assets.kube_apiserver);
        cmd.args(&self.apiserver_args)
            .stdin(Stdio::null())
            .stdout(log_file(&self.dir, "kube-apiserver.log")?)
            .stderr(log_file(&self.dir, "kube-apiserver.log")?);
        let child =
            spawn(cmd).map_err(|e| format!("{}: {e}", self.assets.kube_apiserver.display()))?;
        *self.apiserver.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// Waits for `GET /readyz` to answer 200, or for a process to exit.
    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let ca = self.dir.join("certs/apiserver.crt");
        loop {
            for (name, child, log) in [
                ("etcd", &self.etcd, "etcd.log"),
                ("kube-apiserver", &self.apiserver, "kube-apiserver.log"),
            ] {
                let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(status) = c.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(format!(
                        "{name} exited ({status}); the end of its log:\n{}",
                        tail(&self.dir.join(log), 30)
                    ));
                }
            }
            if ca.is_file() && readyz(self.port, &ca).is_ok_and(|code| code == 200) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "not ready after {timeout:?}; the end of kube-apiserver's log:\n{}",
                    tail(&self.dir.join("kube-apiserver.log"), 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops kube-apiserver (SIGTERM, as a rolling upgrade would; SIGKILL after 3 s, since it
    /// would otherwise keep serving open watches for half a minute), keeps it down for
    /// `downtime`, and starts it again on the same port and etcd data.
    pub async fn restart(&self, downtime: Duration) {
        let child = self
            .apiserver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
            tokio::task::spawn_blocking(move || stop(&mut child, Duration::from_secs(3)))
                .await
                .expect("stopping kube-apiserver");
        }
        tokio::time::sleep(downtime).await;
        self.spawn_apiserver().expect("restarting kube-apiserver");
        let started = Instant::now();
        let ca = self.dir.join("certs/apiserver.crt");
        loop {
            let port = self.port;
            let ca = ca.clone();
            let ok = tokio::task::spawn_blocking(move || readyz(port, &ca))
                .await
                .is_ok_and(|r| r.is_ok_and(|code| code == 200));
            if ok {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "kube-apiserver not ready again after a restart; the end of its log:\n{}",
                tail(&self.dir.join("kube-apiserver.log"), 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a kubeconfig for this server with a bearer token (and a default namespace).
    pub fn write_kubeconfig(&self, path: &Path, token: &str, namespace: Option<&str>) {
        let ns = namespace
            .map(|n| format!(", namespace: {n}"))
            .unwrap_or_default();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context: {{cluster: envtest, user: user{ns}}}\ncurrent-context: envtest\n",
            url = self.url,
            ca = self.dir.join("certs/apiserver.crt").display(),
        );
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// A client with the admin identity.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// A client with the admin identity that records every request but GETs ("PATCH /path"),
    /// to count writes.
    pub async fn recording_client(&self) -> (Client, Arc<Mutex<Vec<String>>>) {
        let config = config_from(&self.kubeconfig).await;
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let layer =
            tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
                if req.method() != http::Method::GET {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                        "{} {}",
                        req.method(),
                        req.uri().path()
                    ));
                }
                req
            });
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("a client for the envtest API server")
            .with_layer(&layer)
            .build();
        (client, log)
    }

    /// A fresh namespace (the server has no controller-manager: deleted ones never go away,
    /// so every test takes its own).
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = super::unique(prefix);
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client().await);
        let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a namespace");
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        name
    }

    /// Runs kubectl as admin (off the async runtime, so an in-process webhook the API server
    /// calls meanwhile keeps being served).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_with(&self.kubeconfig, args, stdin).await
    }

    /// Runs kubectl with a given kubeconfig.
    pub async fn kubectl_with(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new(&self.assets.kubectl);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = stdin.map(str::to_string);
        let what = format!("kubectl {}", args.join(" "));
        tokio::task::spawn_blocking(move || {
            let mut child = spawn(cmd)?;
            if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
                pipe.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await
        .expect("kubectl task")
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Runs kubectl as admin and returns its standard output; panics with its error output when
    /// it fails.
    pub async fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin).await;
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the CRD from `crds/` (idempotent) and waits until it is served.
    pub async fn install_crd(&self) {
        let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/sqsaccessbinding.yaml");
        self.kubectl_ok(
            &["apply", "--server-side", "--force-conflicts", "-f", crd],
            None,
        )
        .await;
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/sqsaccessbindings.sqsaccess.io",
            ],
            None,
        )
        .await;
    }

    /// A ServiceAccount's token from the TokenRequest API (`kubectl create token`): exactly
    /// what a pod running as that account gets.
    pub async fn token(&self, namespace: &str, service_account: &str) -> String {
        self.kubectl_ok(
            &[
                "-n",
                namespace,
                "create",
                "token",
                service_account,
                "--duration=1h",
            ],
            None,
        )
        .await
        .trim()
        .to_string()
    }

    /// The audit log's events (with [`Options::audit`]).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for child in [&self.apiserver, &self.etcd] {
            if let Some(mut c) = child.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(|e| format!("{name}: {e}"))
}

/// The service-account token signing key pair (RSA, PEM), made once per process.
fn service_account_keys() -> (&'static str, &'static str) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    let (k, p) = KEYS.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("cannot generate an RSA key");
        (key.serialize_pem(), key.public_key_pem())
    });
    (k, p)
}

/// `GET /readyz` over TLS, trusting the server's own CA; the HTTP status code.
fn readyz(port: u16, ca: &Path) -> Result<u16, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).map_err(|e| e.to_string())?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "not an HTTP response".into())
}

async fn config_from(kubeconfig: &Path) -> kube::Config {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()))
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Client {
    Client::try_from(config_from(kubeconfig).await).expect("a client for the envtest API server")
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        // A check that hangs (a request nobody answers) fails the wait too.
        let left = timeout.saturating_sub(started.elapsed()) + Duration::from_millis(100);
        if let Ok(Some(v)) = tokio::time::timeout(left, check()).await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A webhook serving certificate for `127.0.0.1`, signed by a CA made for it.
pub struct ServingCert {
    /// The CA, PEM: the webhook configuration's `caBundle`.
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `tls.crt` and `tls.key` into `dir` (created).
pub fn serving_certificate(dir: &Path) -> ServingCert {
    std::fs::create_dir_all(dir).expect("a folder for the certificate");
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "envtest webhook CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().expect("a key"))
        .expect("a CA certificate");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("certificate parameters")
        .signed_by(&key, &*ca)
        .expect("a serving certificate");
    let out = ServingCert {
        ca_pem: ca.pem(),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&out.cert, cert.pem()).expect("tls.crt");
    std::fs::write(&out.key, key.serialize_pem()).expect("tls.key");
    out
}

/// A ValidatingWebhookConfiguration for SqsAccessBindings, as the chart's `webhook.url` mode
/// renders it, calling `url` and limited to one namespace.
pub fn webhook_configuration(name: &str, url: &str, ca_pem: &str, namespace: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks:
- name: validate.sqsaccess.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig: {{url: "{url}", caBundle: "{ca}"}}
  rules:
  - {{apiGroups: [sqsaccess.io], apiVersions: ["*"], resources: [sqsaccessbindings], operations: [CREATE, UPDATE], scope: Namespaced}}
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: "{namespace}"}}}}
"#
    )
}
