//! The validating admission webhook: answers `admission.k8s.io/v1` AdmissionReviews for
//! `SqsAccessBinding` CREATE and UPDATE with the verdict the controller would write, computed by
//! the same function ([`crate::binding::evaluate_binding`]) from the same spec type. A thin
//! adapter: AdmissionReview in, AdmissionResponse out.

pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::sync::Semaphore;

use crate::aws::SnapshotSource;
use crate::binding::{ClusterFacts, evaluate_binding};
use crate::config::WebhookConfig;
use crate::crd::SqsAccessBinding;
use crate::diagnosis::{Outcome, ReasonCode, Verdict};
use crate::metrics::{Metrics, ResultLabels};

/// The namespace label that overrides the operator-wide enforcement mode.
pub const ENFORCEMENT_LABEL: &str = "sqsaccess.io/enforcement";

/// Concurrent webhook connections.
pub const MAX_CONNECTIONS: usize = 1024;

/// The largest AdmissionReview accepted (the API server's own limit for objects is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What to do with a binding that would be denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Enforcement {
    /// Reject it.
    Enforce,
    /// Admit it, with the reason as an AdmissionReview warning.
    Warn,
}

impl Enforcement {
    pub fn parse(s: &str) -> Option<Enforcement> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enforce" => Some(Enforcement::Enforce),
            "warn" => Some(Enforcement::Warn),
            _ => None,
        }
    }
}

/// Reads a namespace's enforcement label.
pub trait NamespaceModes: Send + Sync {
    fn enforcement(&self, namespace: &str) -> Option<Enforcement>;
}

/// No per-namespace overrides.
pub struct NoOverrides;

impl NamespaceModes for NoOverrides {
    fn enforcement(&self, _: &str) -> Option<Enforcement> {
        None
    }
}

/// Per-namespace overrides from a watch-fed cache of namespace metadata.
pub struct StoreModes(
    pub  kube::runtime::reflector::Store<
        kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>,
    >,
);

impl NamespaceModes for StoreModes {
    fn enforcement(&self, namespace: &str) -> Option<Enforcement> {
        let ns = self
            .0
            .get(&kube::runtime::reflector::ObjectRef::new(namespace))?;
        ns.metadata
            .labels
            .as_ref()?
            .get(ENFORCEMENT_LABEL)
            .and_then(|v| Enforcement::parse(v))
    }
}

pub struct WebhookState {
    pub facts: ClusterFacts,
    pub source: Arc<dyn SnapshotSource>,
    pub default_mode: Enforcement,
    pub namespaces: Arc<dyn NamespaceModes>,
    pub cfg: WebhookConfig,
    pub limit: Semaphore,
    pub metrics: Metrics,
}

impl WebhookState {
    pub fn new(
        facts: ClusterFacts,
        source: Arc<dyn SnapshotSource>,
        default_mode: Enforcement,
        namespaces: Arc<dyn NamespaceModes>,
        cfg: WebhookConfig,
        metrics: Metrics,
    ) -> Self {
        WebhookState {
            limit: Semaphore::new(cfg.max_concurrency.max(1)),
            facts,
            source,
            default_mode,
            namespaces,
            cfg,
            metrics,
        }
    }
}

/// The webhook's routes: `POST /validate`.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn validate(
    State(st): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/json") {
        count(&st, "invalid", started);
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type application/json (an admission.k8s.io/v1 AdmissionReview), got \"{ct}\"\n"),
        )
            .into_response();
    }
    // Not something the API server sends: answer 400, so a misconfiguration is loud.
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            count(&st, "invalid", started);
            return (
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}\n"),
            )
                .into_response();
        }
    };
    if review.types.api_version != "admission.k8s.io/v1" {
        count(&st, "invalid", started);
        return (
            StatusCode::BAD_REQUEST,
            format!("unsupported AdmissionReview version \"{}\": this webhook speaks admission.k8s.io/v1\n", review.types.api_version),
        )
            .into_response();
    }
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            count(&st, "invalid", started);
            return (
                StatusCode::BAD_REQUEST,
                "the AdmissionReview has no request\n",
            )
                .into_response();
        }
    };
    let resp = review_request(&st, &req).await;
    let result = match (
        resp.allowed,
        resp.warnings.as_ref().is_some_and(|w| !w.is_empty()),
    ) {
        (false, _) => "denied",
        (true, true) => "warned",
        (true, false) => "allowed",
    };
    count(&st, result, started);
    axum::Json(resp.into_review()).into_response()
}

fn count(st: &WebhookState, result: &'static str, started: Instant) {
    st.metrics
        .admissions
        .get_or_create(&ResultLabels { result })
        .inc();
    st.metrics
        .admission_duration
        .observe(started.elapsed().as_secs_f64());
}

/// Decides one admission request.
pub async fn review_request(
    st: &WebhookState,
    req: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if req.kind.group != "sqsaccess.io" || req.kind.kind != "SqsAccessBinding" {
        // Never block what we do not own, even if the webhook is configured too widely.
        return with_warning(
            resp,
            format!(
                "sqs-access-operator does not validate {}/{}",
                req.kind.group, req.kind.kind
            ),
        );
    }
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return resp;
    }
    let Some(obj) = &req.object else {
        return resp.deny("the request carries no object");
    };
    let mut binding = match parse_binding(obj) {
        Ok(b) => b,
        Err(e) => return deny(resp, format!("invalid SqsAccessBinding: {e}")),
    };
    if binding.metadata.namespace.is_none() {
        binding.metadata.namespace = req.namespace.clone();
    }
    // Label and annotation edits of an existing binding are not re-judged.
    if req.operation == Operation::Update
        && let Some(old) = req.old_object.as_ref().and_then(|o| parse_binding(o).ok())
        && old.spec == binding.spec
    {
        return resp;
    }
    let ns = binding.metadata.namespace.clone().unwrap_or_default();
    let mode = st.namespaces.enforcement(&ns).unwrap_or(st.default_mode);
    let verdict = evaluate_within_deadline(st, &binding).await;
    decide(st, resp, &binding, &verdict, mode)
}

fn parse_binding(obj: &DynamicObject) -> Result<SqsAccessBinding, String> {
    let v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    let whole = serde_path_to_error::deserialize(&v).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    });
    // Only on failure, the spec again on its own: a flattened struct loses the field's path.
    if whole.is_err()
        && let Some(spec) = v.get("spec")
        && let Err(e) = serde_path_to_error::deserialize::<_, crate::diagnosis::BindingSpec>(spec)
    {
        let path = e.path().to_string();
        return Err(format!("spec.{path}: {}", e.into_inner()));
    }
    whole
}

async fn evaluate_within_deadline(st: &WebhookState, b: &SqsAccessBinding) -> Verdict {
    let deadline = st.cfg.deadline;
    let work = async {
        let _permit = st.limit.acquire().await.expect("never closed");
        evaluate_binding(b, &st.facts, st.source.as_ref()).await
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(v) => v,
        Err(_) => Verdict::unfinished(format!(
            "the check did not finish within the webhook's {deadline:?} deadline; the controller will report the result in the status"
        )),
    }
}

/// The short message a user sees in `kubectl apply`: reason code, layer, message, the fix.
pub fn summary(v: &Verdict) -> String {
    let Some(f) = v.first_reason() else {
        return "allowed".into();
    };
    let action = f
        .action
        .as_deref()
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    let mut s = format!("{:?} [{}]{action}: {}", f.code, f.layer.as_str(), f.message);
    if let Some(fix) = v.fixes.first() {
        s.push_str(&format!(". Fix: {}", fix.instruction));
        if let Some(st) = &fix.statement {
            s.push_str(&format!(": {st}"));
        }
    }
    let more = v
        .reasons
        .iter()
        .filter(|r| r.code.outcome() == v.verdict)
        .count();
    if more > 1 {
        s.push_str(&format!(
            " (+{} more; kubectl describe shows all)",
            more - 1
        ));
    }
    s
}

fn decide(
    st: &WebhookState,
    resp: AdmissionResponse,
    b: &SqsAccessBinding,
    v: &Verdict,
    mode: Enforcement,
) -> AdmissionResponse {
    let name = format!(
        "{}/{}",
        b.metadata.namespace.as_deref().unwrap_or_default(),
        b.metadata.name.as_deref().unwrap_or_default()
    );
    match v.verdict {
        // Works, but worth knowing (e.g. an IRSA annotation that Pod Identity overrides).
        Outcome::Allowed => match v.warnings.first() {
            Some(w) => with_warning(resp, format!("SqsAccessBinding {name}: {w}")),
            None => resp,
        },
        Outcome::Denied => {
            let first = v.first_reason().map(|f| f.code);
            let msg = format!("SqsAccessBinding {name} would not work: {}", summary(v));
            // Spec mistakes need no AWS to find: refused in every mode.
            if first == Some(ReasonCode::InvalidSpec) {
                deny(resp, msg)
            } else if first == Some(ReasonCode::ServiceAccountNotFound)
                && st.cfg.admit_missing_service_account
            {
                with_warning(
                    resp,
                    format!("{msg} (admitted: create the service account)"),
                )
            } else if mode == Enforcement::Warn {
                with_warning(resp, msg)
            } else {
                deny(resp, msg)
            }
        }
        Outcome::Indeterminate => {
            let msg = format!(
                "SqsAccessBinding {name} could not be fully checked: {}",
                summary(v)
            );
            if st.cfg.admit_indeterminate {
                with_warning(resp, msg)
            } else {
                deny(resp, msg)
            }
        }
    }
}

fn deny(resp: AdmissionResponse, msg: String) -> AdmissionResponse {
    let mut r = resp.deny(&msg);
    r.result.code = 403;
    r.result.reason = "Forbidden".into();
    r
}

/// The API server may truncate a warning beyond 256 characters: keep the reason code first
/// and point at the status for the rest.
const MAX_WARNING: usize = 256;

fn with_warning(mut resp: AdmissionResponse, msg: String) -> AdmissionResponse {
    let msg = if msg.len() <= MAX_WARNING {
        msg
    } else {
        const MORE: &str = "... (kubectl describe shows the fix)";
        let mut end = MAX_WARNING - MORE.len();
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{MORE}", &msg[..end])
    };
    resp.warnings.get_or_insert_with(Vec::new).push(msg);
    resp
}

/// Serves `app` over TLS on `listener` until `shutdown` turns true. The certificate is
/// resolved per handshake, so a rotated key pair is picked up without a restart.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    cert: Arc<tls::ReloadingCert>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config()));
    // Bounded connections: the API server keeps a few alive; nobody needs thousands.
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("never closed"),
            _ = shutdown.changed() => return,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "webhook connection ended with an error");
            }
        });
    }
}
