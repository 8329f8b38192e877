//! The workload itself: are the pods of the service account really running with the role that
//! was checked? Injection happens only at pod creation, so pods started before the annotation or
//! the Pod Identity association (or before it changed) keep what they had; a container that sets
//! its own `AWS_ACCESS_KEY_ID` or `AWS_ROLE_ARN` wins over what EKS injects (static keys come
//! first in every SDK's chain, then web identity, then container credentials, then the node's
//! instance role). Pure: pod facts in, a second condition out. The policies say whether the
//! role may; this says whether the pods are that role.

use serde::Serialize;

use super::check::{Mechanism, ResolvedRole};
use super::credentials::DEFAULT_AUDIENCE;
use super::snapshot::{ContainerEvidence, PodEvidence, PodIdentityAssociationEvidence};

/// Why the `WorkloadCredentials` condition is what it is. A stable API, like the reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum WorkloadReason {
    /// Every running pod gets the role that was checked.
    PodsUseCheckedRole,
    /// No pod of the service account runs (Unknown).
    NoPods,
    /// The binding's role is not known, so pods cannot be compared with it (Unknown).
    RoleUnknown,
    /// Pods run where EKS Pod Identity is not available (Fargate, Windows nodes): restarting
    /// them cannot help, so this comes before every other problem of a pod.
    PodIdentityUnsupportedPlacement,
    /// A container sets static keys (`AWS_ACCESS_KEY_ID`): they win over IRSA and Pod Identity.
    StaticCredentialsOverride,
    /// A pod got no credentials from EKS (it falls back to the node's role).
    PodsNotInjected,
    /// A pod carries another role or mechanism than the current one (started before a change).
    PodsNeedRestart,
    /// The IRSA token's audience differs from the one the trust was checked for.
    TokenAudienceMismatch,
    /// A non-root container may not be able to read the IRSA token.
    TokenNotReadable,
    /// A container's `HTTP_PROXY` would carry its requests to the Pod Identity agent
    /// (169.254.170.23) to the proxy: `NO_PROXY` does not exempt the agent.
    ProxyInterceptsPodIdentityAgent,
}

impl WorkloadReason {
    pub fn as_str(self) -> String {
        format!("{self:?}")
    }

    /// The condition's status for this reason.
    pub fn status(self) -> &'static str {
        match self {
            WorkloadReason::PodsUseCheckedRole => "True",
            WorkloadReason::NoPods | WorkloadReason::RoleUnknown => "Unknown",
            _ => "False",
        }
    }
}

/// Pods by how their credentials compare with the checked role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCounts {
    pub total: usize,
    pub current: usize,
    pub stale: usize,
    pub not_injected: usize,
    pub overridden: usize,
}

/// One kind of problem, with a few of the pods that have it and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProblem {
    pub code: WorkloadReason,
    /// How many pods have it.
    pub count: usize,
    /// Up to five of them.
    pub pods: Vec<String>,
    pub message: String,
    /// What to do, in plain words (`kubectl rollout restart deployment/producer -n orders`).
    pub fix: String,
}

/// The `WorkloadCredentials` condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadVerdict {
    pub reason: WorkloadReason,
    pub message: String,
    pub pods: PodCounts,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<WorkloadProblem>,
}

impl WorkloadVerdict {
    pub fn status(&self) -> &'static str {
        self.reason.status()
    }
}

const MAX_NAMED: usize = 5;

/// What a container's SDK will use, in the default chain's order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Creds {
    Static,
    WebIdentity { role: String, token_file: String },
    Container,
    Node,
}

fn creds(c: &ContainerEvidence) -> Creds {
    let has = |k: &str| c.env.get(k).is_some_and(|v| !v.is_empty());
    if has("AWS_ACCESS_KEY_ID") {
        Creds::Static
    } else if has("AWS_ROLE_ARN") && has("AWS_WEB_IDENTITY_TOKEN_FILE") {
        Creds::WebIdentity {
            role: c.env["AWS_ROLE_ARN"].clone(),
            token_file: c.env["AWS_WEB_IDENTITY_TOKEN_FILE"].clone(),
        }
    } else if has("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || has("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    {
        Creds::Container
    } else {
        Creds::Node
    }
}

/// `kubectl rollout restart deployment/producer -n orders`, or the pod itself when nothing
/// re-creates it.
fn restart_command(p: &PodEvidence, ns: &str) -> String {
    match &p.owner {
        Some(o)
            if matches!(
                o.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
            ) =>
        {
            format!(
                "kubectl rollout restart {}/{} -n {ns}",
                o.kind.to_ascii_lowercase(),
                o.name
            )
        }
        _ => format!("kubectl delete pod {} -n {ns} (and re-create it)", p.name),
    }
}

/// Compares the pods of the binding's service account with the role it was checked for.
pub fn assess(
    pods: &[PodEvidence],
    namespace: &str,
    role: Option<&ResolvedRole>,
    association: Option<&PodIdentityAssociationEvidence>,
    captured_at: Option<&str>,
) -> WorkloadVerdict {
    let _ = captured_at;
    let running: Vec<&PodEvidence> = pods
        .iter()
        .filter(|p| !matches!(p.phase.as_deref(), Some("Succeeded" | "Failed")))
        .filter(|p| !p.deleting)
        .collect();
    let mut counts = PodCounts {
        total: running.len(),
        ..Default::default()
    };
    if running.is_empty() {
        return WorkloadVerdict {
            reason: WorkloadReason::NoPods,
            message: "no pod of the service account is running yet".into(),
            pods: counts,
            problems: vec![],
        };
    }
    let Some(role) = role else {
        return WorkloadVerdict {
            reason: WorkloadReason::RoleUnknown,
            message:
                "the service account's role is not known, so its pods cannot be compared with it"
                    .into(),
            pods: counts,
            problems: vec![],
        };
    };
    // The role the pods should be using directly: with a Pod Identity target role, EKS hands
    // the pods the target's credentials through the same container endpoint.
    let audience = role.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
    let mut found: Vec<(WorkloadReason, &PodEvidence, String)> = Vec::new();
    for p in &running {
        let mut worst: Option<(WorkloadReason, String)> = None;
        let note =
            |r: WorkloadReason, why: String, worst: &mut Option<(WorkloadReason, String)>| {
                if worst.as_ref().is_none_or(|(w, _)| r < *w) {
                    *worst = Some((r, why));
                }
            };
        let containers: Vec<&ContainerEvidence> = p.containers.iter().filter(|c| !c.init).collect();
        // The EKS webhook injects into every container unless told to skip some
        // (`eks.amazonaws.com/skip-containers`): a container without credentials beside
        // injected ones was skipped on purpose; a pod with none at all was not injected.
        let injected_any = containers.iter().any(|c| creds(c) != Creds::Node);
        if role.mechanism == Mechanism::PodIdentity
            && let Some(place) = &p.placement
        {
            note(
                WorkloadReason::PodIdentityUnsupportedPlacement,
                format!(
                    "pod {} runs on {}, where EKS Pod Identity is not available (no Pod Identity agent): it gets no credentials for {}",
                    p.name,
                    match place.as_str() {
                        "fargate" => "AWS Fargate",
                        "windows" => "a Windows node",
                        other => other,
                    },
                    role.arn
                ),
                &mut worst,
            );
        }
        for c in containers {
            match (creds(c), role.mechanism) {
                (Creds::Node, _) if injected_any => {}
                (Creds::Static, _) => note(
                    WorkloadReason::StaticCredentialsOverride,
                    format!(
                        "container {} sets AWS_ACCESS_KEY_ID{}: static keys win over {} in every SDK, so the pod does not act as {}",
                        c.name,
                        c.env
                            .get("AWS_ACCESS_KEY_ID")
                            .filter(|v| v.starts_with("valueFrom:"))
                            .map(|v| format!(" ({v})"))
                            .unwrap_or_default(),
                        mechanism_name(role.mechanism),
                        role.arn
                    ),
                    &mut worst,
                ),
                (Creds::Node, _) => note(
                    WorkloadReason::PodsNotInjected,
                    format!(
                        "container {} has no {} credentials (no AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE or AWS_CONTAINER_CREDENTIALS_FULL_URI): it was created before the {} existed, or the pod identity webhook missed it, so the SDK falls back to the node's role",
                        c.name,
                        mechanism_name(role.mechanism),
                        match role.mechanism {
                            Mechanism::Irsa => "eks.amazonaws.com/role-arn annotation",
                            Mechanism::PodIdentity => "Pod Identity association",
                        }
                    ),
                    &mut worst,
                ),
                (
                    Creds::WebIdentity {
                        role: r,
                        token_file,
                    },
                    Mechanism::Irsa,
                ) => {
                    if !r.eq(&role.arn) && !role.chain.contains(&r) {
                        note(
                            WorkloadReason::PodsNeedRestart,
                            format!(
                                "container {} runs as {r} (AWS_ROLE_ARN), but the service account now names {}: injection happens at pod creation",
                                c.name, role.arn
                            ),
                            &mut worst,
                        );
                    } else {
                        if let Some(v) = token_volume(p, c, &token_file)
                            && let Some(a) = &v.audience
                            && a != audience
                        {
                            note(
                                WorkloadReason::TokenAudienceMismatch,
                                format!(
                                    "container {}'s token (volume {}) has audience \"{a}\", but the role's trust and OIDC provider were checked for \"{audience}\"",
                                    c.name, v.name
                                ),
                                &mut worst,
                            );
                        }
                        if let Some(why) = unreadable_token(p, c) {
                            note(WorkloadReason::TokenNotReadable, why, &mut worst);
                        }
                    }
                }
                (Creds::WebIdentity { role: r, .. }, Mechanism::PodIdentity) => note(
                    WorkloadReason::PodsNeedRestart,
                    format!(
                        "container {} has IRSA's AWS_ROLE_ARN={r}, which the SDK prefers over Pod Identity's credentials, so it acts as {r}, not {}: the pod was created while the service account used IRSA",
                        c.name, role.arn
                    ),
                    &mut worst,
                ),
                (Creds::Container, Mechanism::Irsa) => note(
                    WorkloadReason::PodsNeedRestart,
                    format!(
                        "container {} gets EKS Pod Identity credentials, but the service account now uses IRSA ({}): the pod was created while a Pod Identity association existed",
                        c.name, role.arn
                    ),
                    &mut worst,
                ),
                (Creds::Container, Mechanism::PodIdentity) => {
                    if let Some(proxy) = proxy_for_agent(c) {
                        note(
                            WorkloadReason::ProxyInterceptsPodIdentityAgent,
                            format!(
                                "container {} sets {proxy} and NO_PROXY does not exempt the Pod Identity agent (169.254.170.23, [fd00:ec2::23]): SDKs that honour the proxy send the credential requests to it and get none",
                                c.name
                            ),
                            &mut worst,
                        );
                    }
                    // The agent caches credentials per association as it was when the pod
                    // started; a pod older than the association's last change keeps the old.
                    if let (Some(created), Some(modified)) = (
                        p.created_at.as_deref().and_then(seconds),
                        association
                            .and_then(|a| a.modified_at.as_deref())
                            .and_then(seconds),
                    ) && created < modified
                    {
                        note(
                            WorkloadReason::PodsNeedRestart,
                            format!(
                                "pod {} started before the Pod Identity association last changed ({}): the agent keeps serving what the association was when the pod started (up to 6 hours, or 59 minutes with a target role)",
                                p.name,
                                association
                                    .and_then(|a| a.modified_at.as_deref())
                                    .unwrap_or_default()
                            ),
                            &mut worst,
                        );
                    }
                }
            }
        }
        match &worst {
            None => counts.current += 1,
            Some((WorkloadReason::StaticCredentialsOverride, _)) => counts.overridden += 1,
            Some((
                WorkloadReason::PodsNotInjected | WorkloadReason::PodIdentityUnsupportedPlacement,
                _,
            )) => counts.not_injected += 1,
            Some((WorkloadReason::PodsNeedRestart, _)) => counts.stale += 1,
            // The role is right; the token is the trouble.
            Some(_) => counts.current += 1,
        }
        if let Some((r, why)) = worst {
            found.push((r, p, why));
        }
    }
    found.sort_by_key(|(r, _, _)| *r);
    let mut problems: Vec<WorkloadProblem> = Vec::new();
    for (r, p, why) in &found {
        // What to change first, if anything; then the restart that makes the pods take it.
        let change = match r {
            WorkloadReason::StaticCredentialsOverride => {
                Some("remove AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the pod template")
            }
            WorkloadReason::TokenAudienceMismatch => Some(
                "make the token audience and the checked one agree (the eks.amazonaws.com/audience annotation, or the trust's aud condition and the OIDC provider's client IDs)",
            ),
            WorkloadReason::PodIdentityUnsupportedPlacement => Some(
                "use IRSA for pods on Fargate or Windows (annotate the service account with eks.amazonaws.com/role-arn and let the role trust the cluster's OIDC provider), or schedule them on Linux EC2 nodes",
            ),
            WorkloadReason::ProxyInterceptsPodIdentityAgent => Some(
                "add 169.254.170.23 and [fd00:ec2::23] to NO_PROXY (and no_proxy) in the pod template",
            ),
            WorkloadReason::TokenNotReadable => Some(
                "set spec.securityContext.fsGroup in the pod template (e.g. 65534) so non-root containers can read the token",
            ),
            _ => None,
        };
        let restart = restart_command(p, namespace);
        let fix = match change {
            Some(c) => format!("{c}, then {restart}"),
            None => restart,
        };
        match problems.iter_mut().find(|x| x.code == *r) {
            Some(x) => {
                x.count += 1;
                if x.pods.len() < MAX_NAMED {
                    x.pods.push(p.name.clone());
                }
                if !x.fix.contains(&fix) {
                    x.fix.push_str("; ");
                    x.fix.push_str(&fix);
                }
            }
            None => problems.push(WorkloadProblem {
                code: *r,
                count: 1,
                pods: vec![p.name.clone()],
                message: why.clone(),
                fix,
            }),
        }
    }
    let (reason, message) = match problems.first() {
        None => (
            WorkloadReason::PodsUseCheckedRole,
            format!(
                "all {} running pods get {} through {}",
                counts.total,
                role.arn,
                mechanism_name(role.mechanism)
            ),
        ),
        Some(p) => (
            p.code,
            format!(
                "{} of {} pods: {} (e.g. {}). Fix: {}",
                p.count,
                counts.total,
                p.message,
                p.pods.join(", "),
                p.fix
            ),
        ),
    };
    WorkloadVerdict {
        reason,
        message,
        pods: counts,
        problems,
    }
}

/// The proxy variable that would carry a container's requests to the Pod Identity agent (an
/// `http://` endpoint), when `NO_PROXY` does not exempt it. Values from Secrets or ConfigMaps
/// are not known, so they are given the benefit of the doubt.
fn proxy_for_agent(c: &ContainerEvidence) -> Option<&'static str> {
    let set = |k: &str| c.env.get(k).filter(|v| !v.trim().is_empty());
    let proxy = ["HTTP_PROXY", "http_proxy"]
        .into_iter()
        .find(|k| set(k).is_some_and(|v| !v.starts_with("valueFrom")))?;
    let exempt = ["NO_PROXY", "no_proxy"]
        .into_iter()
        .filter_map(set)
        .any(|v| {
            v.starts_with("valueFrom")
                || v.split(',').map(str::trim).any(|e| {
                    matches!(
                        e.trim_start_matches('.'),
                        "*" | "169.254.170.23"
                            | "169.254.170.23/32"
                            | "169.254.0.0/16"
                            | "169.254.170.0/24"
                    )
                })
        });
    (!exempt).then_some(proxy)
}

fn mechanism_name(m: Mechanism) -> &'static str {
    match m {
        Mechanism::Irsa => "IRSA",
        Mechanism::PodIdentity => "EKS Pod Identity",
    }
}

fn seconds(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp())
}

/// The projected token volume the container reads its web identity token from.
fn token_volume<'a>(
    p: &'a PodEvidence,
    c: &ContainerEvidence,
    token_file: &str,
) -> Option<&'a super::snapshot::TokenVolumeEvidence> {
    let dir = token_file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mount = c
        .mounts
        .iter()
        .find(|m| m.path.trim_end_matches('/') == dir.trim_end_matches('/'))?;
    p.token_volumes.iter().find(|v| v.name == mount.volume)
}

/// Whether a non-root container may be unable to read the projected token: the kubelet makes
/// the token readable by the pod's `fsGroup`, or by the one user all containers run as; with
/// neither, a non-root user cannot read it.
fn unreadable_token(p: &PodEvidence, c: &ContainerEvidence) -> Option<String> {
    if p.fs_group.is_some() {
        return None;
    }
    let user = |c: &ContainerEvidence| c.run_as_user.or(p.run_as_user);
    let me = user(c)?;
    if me == 0 {
        return None;
    }
    let users: std::collections::BTreeSet<Option<i64>> =
        p.containers.iter().filter(|c| !c.init).map(user).collect();
    (users.len() > 1).then(|| {
        format!(
            "container {} runs as user {me}, the pod has no fsGroup and its containers run as different users, so the kubelet cannot make the IRSA token readable to it (\"open /var/run/secrets/eks.amazonaws.com/serviceaccount/token: permission denied\")",
            c.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(env: &[(&str, &str)]) -> ContainerEvidence {
        ContainerEvidence {
            name: "app".into(),
            init: false,
            run_as_user: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env_from: vec![],
            mounts: vec![],
        }
    }

    #[test]
    fn a_proxy_matters_only_when_no_proxy_does_not_exempt_the_agent() {
        let uri = (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        );
        let proxy = ("HTTP_PROXY", "http://proxy:3128");
        assert_eq!(proxy_for_agent(&container(&[uri])), None);
        assert_eq!(
            proxy_for_agent(&container(&[uri, proxy])),
            Some("HTTP_PROXY")
        );
        assert_eq!(
            proxy_for_agent(&container(&[uri, ("http_proxy", "http://proxy:3128")])),
            Some("http_proxy")
        );
        assert_eq!(
            proxy_for_agent(&container(&[uri, proxy, ("NO_PROXY", ".svc,10.0.0.0/8")])),
            Some("HTTP_PROXY")
        );
        for exempt in [
            "localhost,169.254.170.23,[fd00:ec2::23]",
            " 169.254.0.0/16 ",
            "*",
        ] {
            assert_eq!(
                proxy_for_agent(&container(&[uri, proxy, ("no_proxy", exempt)])),
                None,
                "{exempt}"
            );
        }
        // Values the operator cannot see are not held against the pod.
        assert_eq!(
            proxy_for_agent(&container(&[
                uri,
                ("HTTP_PROXY", "valueFrom:configMapKeyRef:net/proxy")
            ])),
            None
        );
        assert_eq!(
            proxy_for_agent(&container(&[
                uri,
                proxy,
                ("NO_PROXY", "valueFrom:configMapKeyRef:net/no")
            ])),
            None
        );
    }
}
