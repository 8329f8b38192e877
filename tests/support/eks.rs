//! A loopback server for the parts of the EKS API the operator reads, which the AWS emulator
//! lacks: `ListPodIdentityAssociations`, `DescribePodIdentityAssociation` and
//! `DescribeCluster`, answered in EKS's REST-JSON wire format as documented in the EKS API
//! reference (routes, JSON field names, epoch-second timestamps, pagination with `nextToken`,
//! errors as an `x-amzn-errortype` header and a `{"message"}` body with their HTTP status).
//! The SDK reaches it the way a user points one service elsewhere: the per-service endpoint
//! (`AWS_ENDPOINT_URL_EKS`, or the same key through the SDK's service configuration).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// One association as `DescribePodIdentityAssociation` returns it.
#[derive(Debug, Clone)]
pub struct Association {
    pub id: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub external_id: Option<String>,
    pub disable_session_tags: bool,
    pub policy: Option<String>,
}

impl Association {
    pub fn new(id: &str, namespace: &str, service_account: &str, role_arn: &str) -> Self {
        Association {
            id: id.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
            role_arn: role_arn.into(),
            target_role_arn: None,
            external_id: None,
            disable_session_tags: false,
            policy: None,
        }
    }
}

#[derive(Default)]
struct Cluster {
    account: String,
    region: String,
    issuer: String,
    associations: Vec<Association>,
}

#[derive(Default)]
pub struct EksState {
    clusters: Mutex<HashMap<String, Cluster>>,
    /// Requests per operation name.
    calls: Mutex<HashMap<&'static str, usize>>,
    /// Answer every request with this error (status, error type) instead.
    fail_with: Mutex<Option<(u16, &'static str)>>,
    /// Page size of ListPodIdentityAssociations (EKS's default is 100); with `empty_first_page`
    /// the first page is empty but carries a nextToken, as AWS may answer.
    pub page_size: AtomicUsize,
    pub empty_first_page: std::sync::atomic::AtomicBool,
}

/// The running server.
#[derive(Clone)]
pub struct EksServer {
    pub url: String,
    pub state: Arc<EksState>,
}

impl EksServer {
    pub async fn start() -> EksServer {
        let state = Arc::new(EksState::default());
        state.page_size.store(100, Ordering::Relaxed);
        let app = Router::new()
            .route("/clusters/{name}", get(describe_cluster))
            .route(
                "/clusters/{name}/pod-identity-associations",
                get(list_associations),
            )
            .route(
                "/clusters/{name}/pod-identity-associations/{id}",
                get(describe_association),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EksServer { url, state }
    }

    pub fn add_cluster(&self, name: &str, account: &str, region: &str, issuer: &str) {
        self.state.clusters.lock().unwrap().insert(
            name.into(),
            Cluster {
                account: account.into(),
                region: region.into(),
                issuer: issuer.into(),
                associations: vec![],
            },
        );
    }

    /// Adds or replaces (by id) an association.
    pub fn put_association(&self, cluster: &str, a: Association) {
        let mut clusters = self.state.clusters.lock().unwrap();
        let c = clusters.get_mut(cluster).expect("add the cluster first");
        c.associations.retain(|x| x.id != a.id);
        c.associations.push(a);
    }

    pub fn delete_association(&self, cluster: &str, id: &str) {
        let mut clusters = self.state.clusters.lock().unwrap();
        if let Some(c) = clusters.get_mut(cluster) {
            c.associations.retain(|x| x.id != id);
        }
    }

    pub fn calls(&self, op: &str) -> usize {
        *self.state.calls.lock().unwrap().get(op).unwrap_or(&0)
    }

    pub fn fail_with(&self, status: u16, error_type: &'static str) {
        *self.state.fail_with.lock().unwrap() = Some((status, error_type));
    }
}

fn count(st: &EksState, op: &'static str) {
    *st.calls.lock().unwrap().entry(op).or_insert(0) += 1;
}

/// An error the way EKS sends it.
fn error(status: u16, error_type: &str, message: &str) -> Response {
    let mut h = HeaderMap::new();
    h.insert("x-amzn-errortype", error_type.parse().unwrap());
    h.insert("content-type", "application/json".parse().unwrap());
    (
        StatusCode::from_u16(status).unwrap(),
        h,
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn injected(st: &EksState) -> Option<Response> {
    let f = *st.fail_with.lock().unwrap();
    f.map(|(status, t)| {
        error(
            status,
            t,
            "User: arn:aws:sts::123456789012:assumed-role/sqs-access-operator/x is not authorized to perform: eks:ListPodIdentityAssociations",
        )
    })
}

fn cluster_arn(c: &Cluster, name: &str) -> String {
    format!("arn:aws:eks:{}:{}:cluster/{name}", c.region, c.account)
}

fn association_json(c: &Cluster, cluster: &str, a: &Association) -> Value {
    let mut v = json!({
        "clusterName": cluster,
        "namespace": a.namespace,
        "serviceAccount": a.service_account,
        "roleArn": a.role_arn,
        "associationArn": format!("arn:aws:eks:{}:{}:podidentityassociation/{cluster}/{}", c.region, c.account, a.id),
        "associationId": a.id,
        "tags": {},
        "createdAt": 1.7636e9,
        "modifiedAt": 1.7637e9,
        "disableSessionTags": a.disable_session_tags,
    });
    if let Some(t) = &a.target_role_arn {
        v["targetRoleArn"] = json!(t);
        v["externalId"] = json!(a.external_id.clone().unwrap_or_else(|| format!(
            "{}/{}/{cluster}/{}/{}",
            c.region, c.account, a.namespace, a.service_account
        )));
    }
    if let Some(p) = &a.policy {
        v["policy"] = json!(p);
    }
    v
}

async fn describe_cluster(State(st): State<Arc<EksState>>, Path(name): Path<String>) -> Response {
    count(&st, "DescribeCluster");
    if let Some(e) = injected(&st) {
        return e;
    }
    let clusters = st.clusters.lock().unwrap();
    let Some(c) = clusters.get(&name) else {
        return error(
            404,
            "ResourceNotFoundException",
            &format!("No cluster found for name: {name}."),
        );
    };
    ok(json!({ "cluster": {
        "name": name,
        "arn": cluster_arn(c, &name),
        "createdAt": 1.7e9,
        "version": "1.33",
        "status": "ACTIVE",
        "identity": { "oidc": { "issuer": c.issuer } },
    }}))
}

async fn list_associations(
    State(st): State<Arc<EksState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    count(&st, "ListPodIdentityAssociations");
    if let Some(e) = injected(&st) {
        return e;
    }
    let clusters = st.clusters.lock().unwrap();
    let Some(c) = clusters.get(&name) else {
        return error(
            404,
            "ResourceNotFoundException",
            &format!("No cluster found for name: {name}."),
        );
    };
    let matching: Vec<&Association> = c
        .associations
        .iter()
        .filter(|a| q.get("namespace").is_none_or(|n| *n == a.namespace))
        .filter(|a| {
            q.get("serviceAccount")
                .is_none_or(|s| *s == a.service_account)
        })
        .collect();
    let size = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(st.page_size.load(Ordering::Relaxed))
        .max(1);
    let start: usize = match q.get("nextToken") {
        None => 0,
        Some(t) => match t.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => {
                return error(
                    400,
                    "InvalidParameterException",
                    "The nextToken is invalid.",
                );
            }
        },
    };
    if start == 0 && !q.contains_key("nextToken") && st.empty_first_page.load(Ordering::Relaxed) {
        return ok(json!({ "associations": [], "nextToken": "page-0" }));
    }
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(size)
        .map(|a| {
            json!({
                "clusterName": name,
                "namespace": a.namespace,
                "serviceAccount": a.service_account,
                "associationArn": format!("arn:aws:eks:{}:{}:podidentityassociation/{name}/{}", c.region, c.account, a.id),
                "associationId": a.id,
                "ownerArn": null,
            })
        })
        .collect();
    let mut body = json!({ "associations": page });
    if start + size < matching.len() {
        body["nextToken"] = json!(format!("page-{}", start + size));
    }
    ok(body)
}

async fn describe_association(
    State(st): State<Arc<EksState>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    count(&st, "DescribePodIdentityAssociation");
    if let Some(e) = injected(&st) {
        return e;
    }
    let clusters = st.clusters.lock().unwrap();
    let Some(c) = clusters.get(&name) else {
        return error(
            404,
            "ResourceNotFoundException",
            &format!("No cluster found for name: {name}."),
        );
    };
    match c.associations.iter().find(|a| a.id == id) {
        Some(a) => ok(json!({ "association": association_json(c, &name, a) })),
        None => error(
            404,
            "ResourceNotFoundException",
            &format!("No Pod Identity Association found for id: {id}."),
        ),
    }
}

/// The SDK's service configuration with the per-service endpoints a user would set in the
/// environment: `AWS_ENDPOINT_URL` for every service, `AWS_ENDPOINT_URL_EKS` for EKS.
#[derive(Debug)]
pub struct Endpoints {
    pub all: String,
    pub eks: String,
}

impl aws_types::service_config::LoadServiceConfig for Endpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        Some(if key.service_id().eq_ignore_ascii_case("eks") {
            self.eks.clone()
        } else {
            self.all.clone()
        })
    }
}

/// An SDK configuration for the emulator (`moto`) with EKS on `eks`, both as per-service
/// endpoints from the environment would give them.
pub async fn sdk_config(moto: &str, eks: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
        .to_builder()
        .service_config(Endpoints {
            all: moto.into(),
            eks: eks.into(),
        })
        .build()
}
