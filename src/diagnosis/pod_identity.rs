//! The credential step for EKS Pod Identity. EKS assumes the association's role as the service
//! principal `pods.eks.amazonaws.com`, with `sts:AssumeRole` and `sts:TagSession`, adding session
//! tags (`eks-cluster-arn`, `eks-cluster-name`, `kubernetes-namespace`,
//! `kubernetes-service-account`, `kubernetes-pod-name`, `kubernetes-pod-uid`; none when the
//! association disables them). With a target role, that session then assumes the target (role
//! chaining; the tags are transitive and the association's external ID goes along as
//! `sts:ExternalId`), and the workload acts as the target.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::check::{Diag, Who};
use super::context::{resource_org_keys, session_keys, time_keys};
use super::credentials::{Credentials, POD_IDENTITY_PRINCIPAL};
use super::findings::{allowed_values, camel, deny_fix, depends_finding, describe_statement};
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use super::snapshot::{PodIdentityAssociationEvidence, RoleEvidence, Snapshot};
use crate::ids::RoleArn;
use crate::policy::document::AwsPrincipal;
use crate::policy::{
    Context, Decision, Effect, Layer, NamedPolicy, PolicySet, Request, Response, Statement,
    authorize,
};

/// The session tags EKS Pod Identity adds, in the order the EKS documentation lists them.
pub const SESSION_TAG_KEYS: [&str; 6] = [
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
];

/// The session tags of a workload's role session: those known at binding time, and those that
/// exist but depend on the pod (its name and uid).
#[derive(Debug, Clone, Default)]
pub(super) struct SessionTags {
    pub(super) known: BTreeMap<String, String>,
    pub(super) unknown: Vec<&'static str>,
}

impl SessionTags {
    pub(super) fn enabled(&self) -> bool {
        !self.known.is_empty() || !self.unknown.is_empty()
    }

    /// As request tags (`aws:RequestTag/*`, `aws:TagKeys`) of an `sts:AssumeRole` call.
    fn as_request(&self, c: &mut Context) {
        if !self.enabled() {
            return;
        }
        for (k, v) in &self.known {
            c.insert(&format!("aws:RequestTag/{k}"), v.clone());
        }
        for k in &self.unknown {
            c.mark_unknown(&format!("aws:RequestTag/{k}"));
        }
        let keys: Vec<String> = SESSION_TAG_KEYS.iter().map(|k| k.to_string()).collect();
        c.insert_many("aws:TagKeys", keys.clone())
            .insert_many("sts:TransitiveTagKeys", keys);
    }
}

/// The session tags EKS adds for an association (none when it disables them).
pub(super) fn pod_identity_session_tags(
    snap: &Snapshot,
    a: &PodIdentityAssociationEvidence,
) -> SessionTags {
    let mut t = SessionTags::default();
    if a.disable_session_tags {
        return t;
    }
    match snap.cluster.cluster_arn() {
        Some(arn) => {
            t.known.insert("eks-cluster-arn".into(), arn);
        }
        None => t.unknown.push("eks-cluster-arn"),
    }
    match snap.cluster.cluster_name() {
        Some(name) => {
            t.known.insert("eks-cluster-name".into(), name);
        }
        None => t.unknown.push("eks-cluster-name"),
    }
    t.known
        .insert("kubernetes-namespace".into(), a.namespace.clone());
    t.known.insert(
        "kubernetes-service-account".into(),
        a.service_account.clone(),
    );
    t.unknown.push("kubernetes-pod-name");
    t.unknown.push("kubernetes-pod-uid");
    t
}

/// The external ID EKS passes when it assumes a target role: the association's, else the form
/// the EKS documentation gives (`region/account/cluster/namespace/service-account`).
fn external_id(snap: &Snapshot, a: &PodIdentityAssociationEvidence) -> Option<String> {
    a.external_id.clone().or_else(|| {
        let c = &snap.cluster;
        Some(format!(
            "{}/{}/{}/{}/{}",
            c.cluster_region()?,
            c.cluster_account()?,
            c.cluster_name()?,
            a.namespace,
            a.service_account
        ))
    })
}

/// Whether a statement allows, naming the principal by one of these `Principal.AWS` values or
/// `Principal.Service` values.
fn names_principal(st: &Statement, service: Option<&str>, role: Option<&RoleArn>) -> bool {
    st.effect == Effect::Allow
        && st.principal.as_ref().is_some_and(|p| {
            !p.negated
                && (p.any
                    || service.is_some_and(|s| p.service.iter().any(|x| x.eq_ignore_ascii_case(s)))
                    || role.is_some_and(|r| {
                        p.aws.iter().any(|a| match a {
                            AwsPrincipal::Account(acct) => acct == r.account().as_str(),
                            AwsPrincipal::Role { arn, .. } => arn == r.as_str(),
                            AwsPrincipal::Exact(_) => false,
                        })
                    }))
        })
}

/// The condition keys whose values decide a trust policy for EKS, in the order worth reporting.
fn candidate_keys(tags: &SessionTags) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    if tags.enabled() {
        for k in SESSION_TAG_KEYS {
            keys.push(format!("aws:RequestTag/{k}"));
        }
        keys.push("aws:TagKeys".into());
    }
    for k in [
        "sts:ExternalId",
        "aws:SourceAccount",
        "aws:SourceArn",
        "aws:PrincipalArn",
        "aws:PrincipalAccount",
    ] {
        keys.push(k.into());
    }
    keys
}

/// The keys among `candidates` whose value makes `build` fail: with the key unknown, the
/// request no longer comes out `ImplicitDeny`.
fn failing_keys(
    candidates: &[String],
    set: &PolicySet,
    build: &dyn Fn(Option<&str>) -> Request,
) -> Vec<String> {
    candidates
        .iter()
        .filter(|k| authorize(&build(Some(k)), set).decision != Decision::ImplicitDeny)
        .cloned()
        .collect()
}

/// "requires aws:RequestTag/kubernetes-namespace (it allows "x"), EKS sends "y"" for each key.
fn describe_keys(
    keys: &[String],
    stmts: &[&Statement],
    sent: &Context,
    tags_disabled: bool,
) -> String {
    keys.iter()
        .map(|k| {
            let is_tag = k.to_ascii_lowercase().starts_with("aws:requesttag/")
                || k.eq_ignore_ascii_case("aws:TagKeys");
            let got = match sent.get_one(k) {
                Some(v) => format!("EKS sends \"{v}\""),
                None if is_tag && tags_disabled => {
                    "the association disables session tags, so EKS sends none".into()
                }
                None => "EKS sends no value".into(),
            };
            format!("{k}{} but {got}", allowed_values(stmts, k))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Diag {
    /// EKS assumes the association's role (and the target role, when there is one).
    pub(super) fn check_pod_identity(&mut self, who: &Who, cred: &Credentials) {
        let Some(assoc) = cred.association else {
            return;
        };
        if assoc.policy.is_some() && !assoc.disable_session_tags {
            self.warnings.push(
                "the association has a session policy but keeps session tags: EKS requires disableSessionTags with a session policy".into(),
            );
        }
        if who.snap.cluster.cluster_arn().is_none() {
            self.notes.push(
                "the cluster's ARN is not known (set cluster.name and cluster.region, or the snapshot's cluster.arn): conditions on aws:SourceArn and the eks-cluster-arn tag stay undecided".into(),
            );
        }
        self.check_eks_trust(who, cred, assoc);
        if let Some((target_arn, target)) = &cred.target {
            self.check_target_role(who, cred, assoc, target_arn, target);
        }
    }

    /// The association's role trusts `pods.eks.amazonaws.com` for `sts:AssumeRole` (and
    /// `sts:TagSession` when EKS adds session tags), with the tags and source EKS sends.
    fn check_eks_trust(
        &mut self,
        who: &Who,
        cred: &Credentials,
        assoc: &PodIdentityAssociationEvidence,
    ) {
        let snap = who.snap;
        let role_arn = &cred.first_arn;
        let Some(trust) = &cred.first.trust_policy else {
            self.notes.push(format!(
                "the trust policy of {role_arn} was not read: trust not checked"
            ));
            return;
        };
        let tags = &who.session_tags;
        let mut set = PolicySet {
            resource: vec![NamedPolicy::new("trust policy", trust.policy.clone())],
            ..Default::default()
        };
        if let Some(levels) = self.rcps_for(snap, role_arn.account(), "the role's account (STS)") {
            set.rcps = levels;
        }
        let context = || {
            let mut c = Context::new();
            c.insert("aws:PrincipalServiceName", POD_IDENTITY_PRINCIPAL)
                .insert("aws:PrincipalIsAWSService", "true")
                .insert("aws:SecureTransport", "true")
                .mark_unknown("sts:RoleSessionName");
            match snap.cluster.cluster_account() {
                Some(a) => c.insert("aws:SourceAccount", a),
                None => c.mark_unknown("aws:SourceAccount"),
            };
            match snap.cluster.cluster_arn() {
                Some(a) => c.insert("aws:SourceArn", a),
                None => c.mark_unknown("aws:SourceArn"),
            };
            if let Some(r) = snap.cluster.cluster_region() {
                c.insert("aws:RequestedRegion", r);
            }
            tags.as_request(&mut c);
            c
        };
        let trust_target = FixTarget::TrustPolicy {
            role: role_arn.to_string(),
        };
        let mut actions = vec!["sts:AssumeRole"];
        if tags.enabled() {
            actions.push("sts:TagSession");
        }
        let for_eks: Vec<&Statement> = trust
            .policy
            .statements
            .iter()
            .filter(|s| names_principal(s, Some(POD_IDENTITY_PRINCIPAL), None))
            .collect();
        let mut failures: Vec<(String, Vec<&str>)> = Vec::new();
        for action in actions {
            let build = |unknown: Option<&str>| {
                let mut c = context();
                if let Some(k) = unknown {
                    c.mark_unknown(k);
                }
                Request::new(POD_IDENTITY_PRINCIPAL, action, role_arn.as_str(), c)
            };
            let req = build(None);
            let resp = authorize(&req, &set);
            self.record("trust", &req, &resp);
            match resp.decision {
                Decision::Allow => {}
                Decision::ExplicitDeny => self.explicit_denies(
                    &set,
                    &resp,
                    action,
                    &trust_target,
                    &format!("EKS Pod Identity's {action} on {role_arn}"),
                ),
                Decision::Indeterminate => {
                    self.push(depends_finding(&resp, action, DiagLayer::TrustPolicy))
                }
                Decision::ImplicitDeny => {
                    let action_lc = action.to_ascii_lowercase();
                    let why = if for_eks.is_empty() {
                        let others: Vec<String> = trust
                            .policy
                            .statements
                            .iter()
                            .filter_map(|s| s.principal.as_ref())
                            .flat_map(|p| {
                                p.service.iter().chain(p.federated.iter()).cloned().chain(
                                    p.aws.iter().map(|a| match a {
                                        AwsPrincipal::Account(x)
                                        | AwsPrincipal::Exact(x)
                                        | AwsPrincipal::Role { arn: x, .. } => x.clone(),
                                    }),
                                )
                            })
                            .collect();
                        format!(
                            "the trust policy of {role_arn} does not trust the service principal {POD_IDENTITY_PRINCIPAL}{}, so EKS Pod Identity cannot assume it",
                            if others.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " (it trusts {}{})",
                                    others.join(", "),
                                    if others.iter().any(|o| o.contains(":oidc-provider/")) {
                                        ": an IRSA trust, which Pod Identity does not use"
                                    } else {
                                        ""
                                    }
                                )
                            }
                        )
                    } else if !for_eks.iter().any(|s| s.action.matches(&action_lc)) {
                        format!(
                            "the trust policy of {role_arn} trusts {POD_IDENTITY_PRINCIPAL} but not for {action}{}",
                            if action == "sts:TagSession" {
                                ": EKS Pod Identity tags every session it creates (kubernetes-namespace, ...), so it needs sts:TagSession as well as sts:AssumeRole"
                            } else {
                                ""
                            }
                        )
                    } else {
                        let keys = failing_keys(&candidate_keys(tags), &set, &build);
                        if keys.is_empty() {
                            format!(
                                "no statement of the trust policy of {role_arn} allows {POD_IDENTITY_PRINCIPAL} {action} for {}/{}",
                                assoc.namespace, assoc.service_account
                            )
                        } else {
                            format!(
                                "the trust policy of {role_arn} requires {}",
                                describe_keys(&keys, &for_eks, &req.context, !tags.enabled())
                            )
                        }
                    };
                    // One finding per cause, with every action it blocks in its fix.
                    match failures.iter_mut().find(|(w, _)| *w == why) {
                        Some((_, acts)) => acts.push(action),
                        None => failures.push((why, vec![action])),
                    }
                }
            }
        }
        for (why, acts) in failures {
            self.push(
                Finding::new(
                    ReasonCode::PodIdentityTrustPolicyDoesNotAllow,
                    DiagLayer::TrustPolicy,
                    why,
                )
                .action(acts[0])
                .fix(Fix {
                    target: trust_target.clone(),
                    instruction: format!(
                        "add this statement to {} (or correct the existing one)",
                        trust_target.describe()
                    ),
                    statement: Some(eks_trust_statement(
                        snap,
                        &who.spec.service_account,
                        tags,
                        &acts,
                    )),
                }),
            );
        }
    }

    /// The association's role assumes the target role: its identity policies must allow
    /// `sts:AssumeRole` (and `sts:TagSession`) on the target, the target's trust policy must
    /// allow the role (with the external ID EKS passes).
    fn check_target_role(
        &mut self,
        who: &Who,
        cred: &Credentials,
        assoc: &PodIdentityAssociationEvidence,
        target_arn: &RoleArn,
        target: &RoleEvidence,
    ) {
        let snap = who.snap;
        let source_arn = &cred.first_arn;
        let Some(trust) = &target.trust_policy else {
            self.notes.push(format!(
                "the trust policy of the target role {target_arn} was not read: the role chain is not checked"
            ));
            return;
        };
        let mut set = self.role_set(snap, cred.first, source_arn.account());
        set.resource.push(NamedPolicy::new(
            "trust policy of the target role",
            trust.policy.clone(),
        ));
        if let Some(levels) = self.rcps_for(
            snap,
            target_arn.account(),
            "the target role's account (STS)",
        ) {
            set.rcps = levels;
        }
        let tags = &who.session_tags;
        let ext = external_id(snap, assoc);
        let session = source_arn.session_arn("eks-pod-identity-session");
        let context = || {
            let mut c = Context::new();
            session_keys(&mut c, snap, source_arn, cred.first, tags);
            resource_org_keys(&mut c, snap, target_arn.account());
            time_keys(&mut c, snap);
            c.insert("aws:SecureTransport", "true")
                .insert("aws:ViaAWSService", "false")
                .insert("aws:ResourceAccount", target_arn.account().to_string())
                .mark_unknown("aws:SourceIp")
                .mark_unknown("sts:RoleSessionName");
            for (k, v) in &target.tags {
                c.insert(&format!("aws:ResourceTag/{k}"), v.clone());
            }
            if let Some(r) = snap.cluster.cluster_region() {
                c.insert("aws:RequestedRegion", r);
            }
            match &ext {
                Some(e) => c.insert("sts:ExternalId", e.clone()),
                None => c.mark_unknown("sts:ExternalId"),
            };
            tags.as_request(&mut c);
            c
        };
        let mut actions = vec!["sts:AssumeRole"];
        if tags.enabled() {
            actions.push("sts:TagSession");
        }
        let trust_stmts: Vec<&Statement> = trust
            .policy
            .statements
            .iter()
            .filter(|s| names_principal(s, None, Some(source_arn)))
            .collect();
        let mut said: Vec<String> = Vec::new();
        let chain = format!("EKS Pod Identity's role chain {source_arn} -> {target_arn}");
        for action in &actions {
            let build = |unknown: Option<&str>| {
                let mut c = context();
                if let Some(k) = unknown {
                    c.mark_unknown(k);
                }
                Request::new(&session, action, target_arn.as_str(), c)
            };
            let req = build(None);
            let resp = authorize(&req, &set);
            self.record("chain", &req, &resp);
            match resp.decision {
                Decision::Allow => {}
                Decision::Indeterminate => {
                    self.push(depends_finding(&resp, action, DiagLayer::TrustPolicy))
                }
                Decision::ExplicitDeny => {
                    for s in &resp.statements {
                        let (layer, target) =
                            chain_layer(s.layer, source_arn, target_arn, s.target.clone());
                        self.push(
                            Finding::new(
                                ReasonCode::PodIdentityTargetRoleNotAssumable,
                                layer,
                                format!(
                                    "{chain}: {action} is denied with an explicit deny in {}",
                                    describe_statement(&set, s)
                                ),
                            )
                            .action(*action)
                            .statement(Some(s.clone()))
                            .fix(deny_fix(&set, s, action, target)),
                        );
                    }
                }
                Decision::ImplicitDeny => {
                    for g in &resp.missing {
                        let (layer, fix_target) =
                            chain_layer(g.layer, source_arn, target_arn, g.target.clone());
                        let (why, statement) = match g.layer {
                            Layer::Identity => (
                                format!(
                                    "no identity-based policy of {source_arn} allows {action} on {target_arn}"
                                ),
                                Some(json!({
                                    "Sid": format!("PodIdentityTarget{}", camel(target_arn.name())),
                                    "Effect": "Allow",
                                    "Action": [*action],
                                    "Resource": target_arn.as_str()
                                })),
                            ),
                            Layer::Resource => {
                                let detail = if trust_stmts.is_empty() {
                                    format!("it does not name {source_arn} or its account")
                                } else {
                                    let keys = failing_keys(&candidate_keys(tags), &set, &build);
                                    if keys.is_empty() {
                                        format!("no statement naming {source_arn} allows {action}")
                                    } else {
                                        format!(
                                            "it requires {}",
                                            describe_keys(
                                                &keys,
                                                &trust_stmts,
                                                &req.context,
                                                !tags.enabled()
                                            )
                                        )
                                    }
                                };
                                (
                                    format!(
                                        "the trust policy of the target role {target_arn} does not allow {source_arn} to {action}: {detail}"
                                    ),
                                    Some(target_trust_statement(
                                        source_arn,
                                        action,
                                        ext.as_deref(),
                                    )),
                                )
                            }
                            other => (
                                format!("no {} allows {action} on {target_arn}", other.as_str()),
                                None,
                            ),
                        };
                        let why = format!("{chain}: {why}");
                        if said.contains(&why) {
                            continue;
                        }
                        said.push(why.clone());
                        let instruction = match &statement {
                            Some(_) => format!("add this statement to {}", fix_target.describe()),
                            None => format!(
                                "{} must allow {action} on {target_arn}",
                                fix_target.describe()
                            ),
                        };
                        self.push(
                            Finding::new(ReasonCode::PodIdentityTargetRoleNotAssumable, layer, why)
                                .action(*action)
                                .fix(Fix {
                                    target: fix_target,
                                    instruction,
                                    statement,
                                }),
                        );
                    }
                }
            }
        }
    }

    /// Findings for an explicit deny in a trust policy (or an RCP of the role's account).
    fn explicit_denies(
        &mut self,
        set: &PolicySet,
        resp: &Response,
        action: &str,
        trust_target: &FixTarget,
        what: &str,
    ) {
        for s in &resp.statements {
            let (code, layer, target) = if s.layer == Layer::Rcp {
                (
                    ReasonCode::ExplicitDenyInRcp,
                    DiagLayer::Rcp,
                    FixTarget::Rcp {
                        target: s.target.clone().unwrap_or_default(),
                    },
                )
            } else {
                (
                    ReasonCode::ExplicitDenyInTrustPolicy,
                    DiagLayer::TrustPolicy,
                    trust_target.clone(),
                )
            };
            self.push(
                Finding::new(
                    code,
                    layer,
                    format!(
                        "{what} is denied with an explicit deny in {}",
                        describe_statement(set, s)
                    ),
                )
                .action(action)
                .statement(Some(s.clone()))
                .fix(deny_fix(set, s, action, target)),
            );
        }
    }
}

/// Where a layer of the role chain sits, and where its fix goes.
fn chain_layer(
    layer: Layer,
    source: &RoleArn,
    target: &RoleArn,
    org_target: Option<String>,
) -> (DiagLayer, FixTarget) {
    match layer {
        Layer::Identity | Layer::SessionPolicy => (
            DiagLayer::IdentityPolicy,
            FixTarget::RolePolicy {
                role: source.to_string(),
            },
        ),
        Layer::PermissionBoundary => (
            DiagLayer::PermissionsBoundary,
            FixTarget::PermissionsBoundary {
                policy: format!("of role {source}"),
            },
        ),
        Layer::Scp => (
            DiagLayer::Scp,
            FixTarget::Scp {
                target: org_target.unwrap_or_default(),
            },
        ),
        Layer::Rcp => (
            DiagLayer::Rcp,
            FixTarget::Rcp {
                target: org_target.unwrap_or_default(),
            },
        ),
        Layer::Resource | Layer::VpcEndpoint => (
            DiagLayer::TrustPolicy,
            FixTarget::TrustPolicy {
                role: target.to_string(),
            },
        ),
    }
}

/// The trust statement EKS Pod Identity needs, scoped to what EKS sends for this binding.
fn eks_trust_statement(snap: &Snapshot, sa: &str, tags: &SessionTags, actions: &[&str]) -> Value {
    let mut equals = serde_json::Map::new();
    if let Some(a) = snap.cluster.cluster_account() {
        equals.insert("aws:SourceAccount".into(), json!(a));
    }
    for k in ["kubernetes-namespace", "kubernetes-service-account"] {
        if let Some(v) = tags.known.get(k) {
            equals.insert(format!("aws:RequestTag/{k}"), json!(v));
        }
    }
    let mut cond = serde_json::Map::new();
    if !equals.is_empty() {
        cond.insert("StringEquals".into(), Value::Object(equals));
    }
    if let Some(arn) = snap.cluster.cluster_arn() {
        cond.insert("ArnEquals".into(), json!({ "aws:SourceArn": arn }));
    }
    let mut st = json!({
        // Not the Sid of the EKS documentation: it is often there already, and Sids must be
        // unique within a policy.
        "Sid": format!("PodIdentity{}{}", camel(&snap.binding.namespace), camel(sa)),
        "Effect": "Allow",
        "Principal": { "Service": POD_IDENTITY_PRINCIPAL },
        "Action": actions,
    });
    if !cond.is_empty() {
        st["Condition"] = Value::Object(cond);
    }
    st
}

/// The target role's trust statement for the association's role.
fn target_trust_statement(source: &RoleArn, action: &str, external_id: Option<&str>) -> Value {
    let mut st = json!({
        "Sid": format!("PodIdentityChain{}", camel(source.name())),
        "Effect": "Allow",
        "Principal": { "AWS": source.as_str() },
        "Action": [action],
    });
    // STS authorizes sts:TagSession within the same AssumeRole call: the external ID is in its
    // context too, so one statement serves both actions.
    if let Some(e) = external_id {
        st["Condition"] = json!({ "StringEquals": { "sts:ExternalId": e } });
    }
    st
}
