//! The authorizer: AWS's policy evaluation logic over every policy type that can take part in a
//! request, returning the decision together with the statements and layers that made it.
//!
//! Order of reasoning, as in AWS's published flow: an applicable explicit `Deny` anywhere wins;
//! then every gate must allow: SCP levels (principal side), RCP levels (resource side, with
//! `RCPFullAWSAccess` implied), the VPC endpoint policy, and the grant itself (identity and/or
//! resource policy, limited by the permissions boundary and the session policy).

use std::sync::Arc;

use serde::Serialize;

use super::arn::{Arn, resource_match};
use super::condition::Residual;
use super::context::{PrincipalKind, Request, ResourceRule};
use super::document::{AwsPrincipal, Effect, Policy, PrincipalSpec, Statement};
use super::pattern::Resolved;
use super::tri::Tri;

/// A policy with the name users know it by. The compiled policy is shared: the same document
/// can take part in many requests (and many sets) without being parsed or copied again.
#[derive(Debug, Clone)]
pub struct NamedPolicy {
    pub name: String,
    /// `inline`, `managed`, ... (free text, for messages).
    pub kind: Option<String>,
    pub policy: Arc<Policy>,
}

impl NamedPolicy {
    /// `policy`: a [`Policy`] or an `Arc<Policy>` already shared.
    pub fn new(name: impl Into<String>, policy: impl Into<Arc<Policy>>) -> Self {
        NamedPolicy {
            name: name.into(),
            kind: None,
            policy: policy.into(),
        }
    }
}

/// The organization policies attached at one level of the organization tree (root, an OU, or
/// the account).
#[derive(Debug, Clone)]
pub struct OrgLevel {
    pub target: String,
    pub policies: Vec<NamedPolicy>,
}

/// Every policy that takes part in one request. Each kind is optional.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Identity-based policies of the principal (inline and managed).
    pub identity: Vec<NamedPolicy>,
    /// The resource-based policies of the target: the queue policy, the KMS key policy (with
    /// the key's grants as further documents) or the role trust policy.
    pub resource: Vec<NamedPolicy>,
    pub permission_boundary: Option<NamedPolicy>,
    pub session_policy: Option<NamedPolicy>,
    /// Service control policies, root first, of the principal's account.
    pub scps: Vec<OrgLevel>,
    /// Resource control policies, root first, of the resource's account.
    pub rcps: Vec<OrgLevel>,
    /// The VPC endpoint policy, when the request goes through an endpoint.
    pub vpc_endpoint: Option<NamedPolicy>,
}

/// The kinds of policy, named as in the `evaluate` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Layer {
    Identity,
    Resource,
    PermissionBoundary,
    SessionPolicy,
    Scp,
    Rcp,
    VpcEndpoint,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Identity => "identity",
            Layer::Resource => "resource",
            Layer::PermissionBoundary => "permissionBoundary",
            Layer::SessionPolicy => "sessionPolicy",
            Layer::Scp => "scp",
            Layer::Rcp => "rcp",
            Layer::VpcEndpoint => "vpcEndpoint",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
    /// Only when the context marks keys unknown: the answer depends on them.
    Indeterminate,
}

/// A statement that took part in the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementRef {
    pub layer: Layer,
    /// The organization target (root, OU or account id) for SCPs and RCPs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub policy: String,
    /// Position in the policy's statement list, 0-based.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: &'static str,
}

/// A layer that lacked an allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    pub layer: Layer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A condition the decision depends on, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub statement: StatementRef,
    pub condition: Residual,
}

/// How one layer (or one organization level) came out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerOutcome {
    pub layer: Layer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `Allow`, `Deny`, `NoAllow` or `Unknown`.
    pub result: &'static str,
}

/// The answer: the decision and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub decision: Decision,
    /// For `ExplicitDeny`, the denying statements; for `Allow`, the allowing statements of
    /// every layer that had to allow.
    pub statements: Vec<StatementRef>,
    /// For `ImplicitDeny`, the layers that lacked an allow (the smallest set whose fix allows).
    pub missing: Vec<Gap>,
    /// For `Indeterminate`, the conditions on unknown keys that decide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    pub layers: Vec<LayerOutcome>,
    /// What the decision alone does not say: why no policy was consulted, or why a request can
    /// never be allowed whatever statement is added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// A note on a decision. Its `code` is an API, like the decision: never renamed casually.
/// On the wire: `{"code": "...", "message": "...", ...the variant's fields in camelCase}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The action needs no permission and cannot be denied (`sts:GetCallerIdentity`): the
    /// decision is `Allow` and no policy was evaluated.
    NoPermissionRequired { action: String },
    /// `sts:AssumeRoleWithWebIdentity` with an IAM OIDC provider in another account than the
    /// role's can never be allowed: STS finds the provider by the token's issuer in the role's
    /// own account. Either the caller is such a provider (the decision is `ImplicitDeny` whatever
    /// the trust policy says), or the trust policy names one for the caller's issuer (that
    /// statement never applies).
    OidcProviderInOtherAccount {
        /// The provider ARN in the other account.
        provider: String,
        provider_account: String,
        /// The role (the request's resource) and its account.
        role: String,
        role_account: String,
        /// The trust policy statement that names `provider`, if one does.
        statement: Option<StatementRef>,
    },
}

impl Note {
    pub fn code(&self) -> &'static str {
        match self {
            Note::NoPermissionRequired { .. } => "NoPermissionRequired",
            Note::OidcProviderInOtherAccount { .. } => "OidcProviderInOtherAccount",
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::NoPermissionRequired { action } => write!(
                f,
                "{action} needs no permission and cannot be denied: no policy was evaluated"
            ),
            Note::OidcProviderInOtherAccount {
                provider,
                provider_account,
                role,
                role_account,
                statement,
            } => {
                match statement {
                    Some(st) => write!(f, "{} trusts {provider}", describe(st))?,
                    None => write!(f, "the caller is {provider}")?,
                }
                write!(
                    f,
                    ", an OIDC provider in account {provider_account}, but the role {role} is in account {role_account}: STS looks the provider up in the role's own account ({role_account}), so this can never be allowed"
                )
            }
        }
    }
}

impl Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("code", self.code())?;
        m.serialize_entry("message", &self.to_string())?;
        match self {
            Note::NoPermissionRequired { action } => m.serialize_entry("action", action)?,
            Note::OidcProviderInOtherAccount {
                provider,
                provider_account,
                role,
                role_account,
                statement,
            } => {
                m.serialize_entry("provider", provider)?;
                m.serialize_entry("providerAccount", provider_account)?;
                m.serialize_entry("role", role)?;
                m.serialize_entry("roleAccount", role_account)?;
                if let Some(st) = statement {
                    m.serialize_entry("statement", st)?;
                }
            }
        }
        m.end()
    }
}

/// `statement 1 ("Sid") of policy "trust policy"`.
fn describe(st: &StatementRef) -> String {
    match &st.sid {
        Some(sid) => format!("statement {} (\"{sid}\") of {:?}", st.index, st.policy),
        None => format!("statement {} of {:?}", st.index, st.policy),
    }
}

/// Actions that need no permission: AWS answers them for any authenticated caller, and no
/// policy can deny them (STS API reference, GetCallerIdentity). Lower-case.
const NO_PERMISSION_ACTIONS: &[&str] = &["sts:getcalleridentity"];

/// How a resource-policy statement's `Principal` matched the caller. The difference matters:
/// naming the account delegates to IAM policies; naming the role (whether the caller is one of
/// its sessions or the role ARN itself) is limited by the boundary and session policy; naming
/// the session, the user (or `*`) grants directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PMatch {
    None,
    Account,
    Role,
    Direct,
}

#[derive(Clone, Copy)]
struct Hit<'a> {
    layer: Layer,
    target: Option<&'a str>,
    policy: &'a NamedPolicy,
    stmt: &'a Statement,
}

impl Hit<'_> {
    fn to_ref(self) -> StatementRef {
        StatementRef {
            layer: self.layer,
            target: self.target.map(str::to_string),
            policy: self.policy.name.clone(),
            index: self.stmt.index,
            sid: self.stmt.sid.clone(),
            effect: match self.stmt.effect {
                Effect::Allow => "Allow",
                Effect::Deny => "Deny",
            },
        }
    }
}

/// What one layer says: does something allow, does something deny, and which statements.
struct LayerEval<'a> {
    layer: Layer,
    target: Option<&'a str>,
    deny: Tri,
    allow: Tri,
    /// Resource policies only: allow split by how the principal matched.
    by_account: Tri,
    by_role: Tri,
    by_direct: Tri,
    allowing: Vec<Hit<'a>>,
    denying: Vec<Hit<'a>>,
    maybe: Vec<Hit<'a>>,
}

impl<'a> LayerEval<'a> {
    fn new(layer: Layer, target: Option<&'a str>) -> Self {
        LayerEval {
            layer,
            target,
            deny: Tri::False,
            allow: Tri::False,
            by_account: Tri::False,
            by_role: Tri::False,
            by_direct: Tri::False,
            allowing: Vec::new(),
            denying: Vec::new(),
            maybe: Vec::new(),
        }
    }

    fn add(&mut self, req: &Request, policy: &'a NamedPolicy, has_boundary: bool) {
        for stmt in &policy.policy.statements {
            // A resource-based policy statement without Principal grants to no one (AWS requires
            // the element there).
            if self.layer == Layer::Resource && stmt.principal.is_none() {
                continue;
            }
            let (applies, how) = statement_applies(stmt, req, has_boundary);
            if applies.is_false() {
                continue;
            }
            let hit = Hit {
                layer: self.layer,
                target: self.target,
                policy,
                stmt,
            };
            if applies == Tri::Unknown {
                self.maybe.push(hit);
            }
            match stmt.effect {
                Effect::Deny => {
                    self.deny = self.deny.or(applies);
                    if applies.is_true() {
                        self.denying.push(hit);
                    }
                }
                Effect::Allow => {
                    self.allow = self.allow.or(applies);
                    match how {
                        PMatch::Account => self.by_account = self.by_account.or(applies),
                        PMatch::Role => self.by_role = self.by_role.or(applies),
                        PMatch::Direct => self.by_direct = self.by_direct.or(applies),
                        PMatch::None => {}
                    }
                    if applies.is_true() {
                        self.allowing.push(hit);
                    }
                }
            }
        }
    }

    fn outcome(&self) -> LayerOutcome {
        let result = match (self.deny, self.allow) {
            (Tri::True, _) => "Deny",
            (Tri::Unknown, _) | (_, Tri::Unknown) => "Unknown",
            (_, Tri::True) => "Allow",
            _ => "NoAllow",
        };
        LayerOutcome {
            layer: self.layer,
            target: self.target.map(str::to_string),
            result,
        }
    }
}

/// One conjunct of a grant path: a layer that must allow.
#[derive(Clone, Copy)]
struct Term {
    layer: Layer,
    value: Tri,
    /// Index into the layer list, to report its statements.
    eval: usize,
}

/// Authorizes `req` against `set`.
pub fn authorize(req: &Request, set: &PolicySet) -> Response {
    if NO_PERMISSION_ACTIONS.contains(&req.action_lc.as_str()) {
        return Response {
            decision: Decision::Allow,
            statements: Vec::new(),
            missing: Vec::new(),
            depends_on: Vec::new(),
            layers: Vec::new(),
            notes: vec![Note::NoPermissionRequired {
                action: req.action.clone(),
            }],
        };
    }
    let principal_is_iam = req.principal.is_iam_identity();
    let has_boundary = set.permission_boundary.is_some();
    let mut evals: Vec<LayerEval> = Vec::with_capacity(8);

    let identity_idx = evals.len();
    let mut identity = LayerEval::new(Layer::Identity, None);
    for p in &set.identity {
        identity.add(req, p, has_boundary);
    }
    evals.push(identity);

    // No resource-based policy exists for an IamOnly request: one given is not evaluated.
    let resource_idx = (!set.resource.is_empty() && req.rule != ResourceRule::IamOnly).then(|| {
        let mut e = LayerEval::new(Layer::Resource, None);
        for p in &set.resource {
            e.add(req, p, has_boundary);
        }
        evals.push(e);
        evals.len() - 1
    });
    let boundary_idx = set.permission_boundary.as_ref().map(|p| {
        let mut e = LayerEval::new(Layer::PermissionBoundary, None);
        e.add(req, p, has_boundary);
        evals.push(e);
        evals.len() - 1
    });
    let session_idx = set.session_policy.as_ref().map(|p| {
        let mut e = LayerEval::new(Layer::SessionPolicy, None);
        e.add(req, p, has_boundary);
        evals.push(e);
        evals.len() - 1
    });
    let vpce_idx = set.vpc_endpoint.as_ref().map(|p| {
        let mut e = LayerEval::new(Layer::VpcEndpoint, None);
        e.add(req, p, has_boundary);
        evals.push(e);
        evals.len() - 1
    });
    // SCPs govern IAM principals of member accounts only.
    let mut scp_idx = Vec::new();
    if principal_is_iam {
        for level in &set.scps {
            let mut e = LayerEval::new(Layer::Scp, Some(&level.target));
            for p in &level.policies {
                e.add(req, p, has_boundary);
            }
            evals.push(e);
            scp_idx.push(evals.len() - 1);
        }
    }
    let mut rcp_idx = Vec::new();
    for level in &set.rcps {
        let mut e = LayerEval::new(Layer::Rcp, Some(&level.target));
        for p in &level.policies {
            e.add(req, p, has_boundary);
        }
        // RCPFullAWSAccess is attached at every level and cannot be detached.
        e.allow = Tri::True;
        evals.push(e);
        rcp_idx.push(evals.len() - 1);
    }

    // 1. Explicit deny anywhere.
    let deny = evals.iter().fold(Tri::False, |acc, e| acc.or(e.deny));

    // 2. Gates every request must pass.
    let mut gates: Vec<Term> = Vec::new();
    for &i in scp_idx.iter().chain(&rcp_idx).chain(vpce_idx.iter()) {
        gates.push(Term {
            layer: evals[i].layer,
            value: evals[i].allow,
            eval: i,
        });
    }

    // 3. The grant: alternative paths, each a conjunction of layers that must allow.
    let term = |layer: Layer, idx: Option<usize>, value: Option<Tri>| -> Option<Term> {
        idx.map(|i| Term {
            layer,
            value: value.unwrap_or(evals[i].allow),
            eval: i,
        })
    };
    let limits: Vec<Term> = [
        term(Layer::PermissionBoundary, boundary_idx, None),
        term(Layer::SessionPolicy, session_idx, None),
    ]
    .into_iter()
    .flatten()
    .collect();
    let res = |sel: fn(&LayerEval) -> Tri| -> Term {
        match resource_idx {
            Some(i) => Term {
                layer: Layer::Resource,
                value: sel(&evals[i]),
                eval: i,
            },
            None => Term {
                layer: Layer::Resource,
                value: Tri::False,
                eval: usize::MAX,
            },
        }
    };
    // The account root user has every permission in its own account without identity
    // policies (SCPs and explicit denies still apply).
    // Account-level actions (IamOnly on `*`, no resource account) act in the caller's own.
    let at_home =
        req.same_account() || (req.rule == ResourceRule::IamOnly && req.resource_account.is_none());
    let root_at_home = req.principal.kind == PrincipalKind::Root && at_home;
    let ident = Term {
        layer: Layer::Identity,
        value: if root_at_home {
            Tri::True
        } else {
            evals[identity_idx].allow
        },
        eval: identity_idx,
    };
    let with_limits = |mut v: Vec<Term>| {
        v.extend(limits.iter().copied());
        v
    };
    let paths: Vec<Vec<Term>> = if !principal_is_iam {
        // Service principals, identity providers, anonymous: only the resource policy can
        // grant, and only by naming them.
        vec![vec![res(|e| e.by_direct)]]
    } else if at_home {
        match req.rule {
            // IAM policies alone decide (KMS actions on the account or on an alias).
            ResourceRule::IamOnly => vec![with_limits(vec![ident])],
            ResourceRule::Standard => vec![
                with_limits(vec![ident]),
                with_limits(vec![res(|e| e.by_role)]),
                vec![res(|e| e.by_direct)],
            ],
            ResourceRule::KeyPolicy | ResourceRule::TrustPolicy => vec![
                with_limits(vec![res(|e| e.by_account), ident]),
                with_limits(vec![res(|e| e.by_role)]),
                vec![res(|e| e.by_direct)],
            ],
        }
    } else {
        // Across accounts both sides must allow: the resource policy (naming the caller or its
        // account) and the caller's own policies. (An IamOnly request has no resource policy:
        // a KMS alias of another account cannot be managed.)
        vec![with_limits(vec![res(|e| e.allow), ident])]
    };
    let path_value = |p: &[Term]| p.iter().fold(Tri::True, |acc, t| acc.and(t.value));
    // A caller that STS can never produce is granted nothing, whatever names it.
    let foreign_caller = foreign_oidc_provider(&req.principal.arn, req).is_some();
    let grant = if foreign_caller {
        Tri::False
    } else {
        paths
            .iter()
            .fold(Tri::False, |acc, p| acc.or(path_value(p)))
    };
    let gates_ok = gates.iter().fold(Tri::True, |acc, t| acc.and(t.value));
    let allowed = deny.negate().and(gates_ok).and(grant);

    let decision = match (deny, allowed) {
        (Tri::True, _) => Decision::ExplicitDeny,
        (_, Tri::True) => Decision::Allow,
        (_, Tri::False) => Decision::ImplicitDeny,
        _ => Decision::Indeterminate,
    };

    let mut statements = Vec::new();
    let mut missing = Vec::new();
    let mut depends_on = Vec::new();
    match decision {
        Decision::ExplicitDeny => {
            for e in &evals {
                statements.extend(e.denying.iter().map(|h| h.to_ref()));
            }
        }
        Decision::Allow => {
            let path = paths
                .iter()
                .find(|p| path_value(p).is_true())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for t in gates.iter().chain(path) {
                if let Some(e) = evals.get(t.eval) {
                    statements.extend(e.allowing.iter().map(|h| h.to_ref()));
                }
            }
        }
        Decision::ImplicitDeny => {
            for t in &gates {
                if t.value.is_false() {
                    missing.push(gap(t, &evals));
                }
            }
            if grant.is_false() {
                let best = paths
                    .iter()
                    .min_by_key(|p| p.iter().filter(|t| t.value.is_false()).count());
                for t in best.into_iter().flatten() {
                    if t.value.is_false() {
                        missing.push(gap(t, &evals));
                    }
                }
            }
        }
        Decision::Indeterminate => {
            for e in &evals {
                for h in &e.maybe {
                    for c in &h.stmt.conditions {
                        if c.eval(&req.context) == Tri::Unknown {
                            depends_on.push(Dependency {
                                statement: h.to_ref(),
                                condition: c.residual(),
                            });
                        }
                    }
                    if let Some(key) = unknown_variable(h.stmt, req) {
                        depends_on.push(Dependency {
                            statement: h.to_ref(),
                            condition: Residual {
                                operator: "PolicyVariable".into(),
                                key,
                                values: Vec::new(),
                            },
                        });
                    }
                }
            }
        }
    }

    let mut layers: Vec<LayerOutcome> = Vec::with_capacity(evals.len());
    for (i, e) in evals.iter().enumerate() {
        if i == identity_idx && set.identity.is_empty() {
            continue;
        }
        layers.push(e.outcome());
    }

    Response {
        decision,
        statements,
        missing,
        depends_on,
        layers,
        notes: if decision == Decision::Allow {
            Vec::new()
        } else {
            oidc_notes(req, set)
        },
    }
}

/// The account of an IAM OIDC provider ARN that is not the account of the request's resource
/// (the role), for `sts:AssumeRoleWithWebIdentity`-style requests. `None` when either account
/// is unknown.
fn foreign_oidc_provider<'a>(arn: &'a str, req: &Request) -> Option<&'a str> {
    if req.rule != ResourceRule::TrustPolicy
        || req.principal.kind != PrincipalKind::IdentityProvider
    {
        return None;
    }
    let (account, _) = oidc_provider(arn)?;
    let role_account = req.resource_account.as_deref()?;
    (account != role_account).then_some(account)
}

/// The account and issuer (`oidc.eks.REGION.amazonaws.com/id/ID`) of an IAM OIDC provider ARN.
fn oidc_provider(arn: &str) -> Option<(&str, &str)> {
    let a = Arn::parse(arn).ok()?;
    let issuer = a.resource.strip_prefix("oidc-provider/")?;
    (a.service == "iam" && !a.account.is_empty()).then_some((a.account, issuer))
}

/// Why an identity-provider request was not allowed, when an OIDC provider in another account
/// than the role's is to blame: the caller itself, and every trust statement that names a
/// provider with the caller's issuer in another account.
fn oidc_notes(req: &Request, set: &PolicySet) -> Vec<Note> {
    let mut notes = Vec::new();
    if req.rule != ResourceRule::TrustPolicy
        || req.principal.kind != PrincipalKind::IdentityProvider
    {
        return notes;
    }
    let Some(role_account) = req.resource_account.as_deref() else {
        return notes;
    };
    let Some((_, issuer)) = oidc_provider(&req.principal.arn) else {
        return notes;
    };
    let note = |provider: &str, account: &str, statement| Note::OidcProviderInOtherAccount {
        provider: provider.to_string(),
        provider_account: account.to_string(),
        role: req.resource.clone(),
        role_account: role_account.to_string(),
        statement,
    };
    for policy in &set.resource {
        for stmt in &policy.policy.statements {
            let Some(spec) = stmt.principal.as_ref().filter(|p| !p.negated) else {
                continue;
            };
            if stmt.effect != Effect::Allow {
                continue;
            }
            for provider in &spec.federated {
                if let Some(account) = foreign_oidc_provider(provider, req)
                    && oidc_provider(provider).is_some_and(|(_, i)| i == issuer)
                {
                    let hit = Hit {
                        layer: Layer::Resource,
                        target: None,
                        policy,
                        stmt,
                    };
                    notes.push(note(provider, account, Some(hit.to_ref())));
                }
            }
        }
    }
    if notes.is_empty()
        && let Some(account) = foreign_oidc_provider(&req.principal.arn, req)
    {
        notes.push(note(&req.principal.arn, account, None));
    }
    notes
}

fn gap(t: &Term, evals: &[LayerEval]) -> Gap {
    Gap {
        layer: t.layer,
        target: evals.get(t.eval).and_then(|e| e.target).map(str::to_string),
    }
}

/// The key of a `Resource` variable that is unknown, if that is what made a statement
/// undecided.
fn unknown_variable(stmt: &Statement, req: &Request) -> Option<String> {
    let spec = stmt.resource.as_ref()?;
    spec.patterns
        .iter()
        .find_map(|t| match t.glob(&req.context) {
            Resolved::Unknown(k) => Some(k),
            _ => None,
        })
}

/// Does the statement apply to the request, and (for statements with a `Principal`) how did the
/// principal match?
fn statement_applies(stmt: &Statement, req: &Request, has_boundary: bool) -> (Tri, PMatch) {
    let how = match &stmt.principal {
        None => PMatch::Direct,
        // IAM: "NotPrincipal with Deny will always deny any IAM principal that has a
        // permissions boundary policy attached, regardless of the values in NotPrincipal."
        Some(spec)
            if spec.negated
                && stmt.effect == Effect::Deny
                && has_boundary
                && req.principal.is_iam_identity() =>
        {
            PMatch::Direct
        }
        Some(spec) => {
            let m = principal_match(spec, stmt.effect, req);
            if m == PMatch::None {
                return (Tri::False, PMatch::None);
            }
            m
        }
    };
    if !stmt.action.matches(&req.action_lc) {
        return (Tri::False, how);
    }
    let mut t = match &stmt.resource {
        None => Tri::True,
        Some(spec) => {
            let mut any = Tri::False;
            let mut unresolved = false;
            for p in &spec.patterns {
                let m = match p.glob(&req.context) {
                    Resolved::Value(g) => Tri::from(resource_match(&g, &req.resource)),
                    Resolved::Unresolvable => {
                        unresolved = true;
                        Tri::False
                    }
                    Resolved::Unknown(_) => Tri::Unknown,
                };
                any = any.or(m);
                if any.is_true() {
                    break;
                }
            }
            if !spec.negated {
                any
            } else if unresolved && !any.is_true() {
                // "If AWS cannot resolve a variable, this might cause the entire statement to
                // be invalid": fail closed, so an Allow does not apply and a Deny does.
                Tri::from(stmt.effect == Effect::Deny)
            } else {
                any.negate()
            }
        }
    };
    for c in &stmt.conditions {
        if t.is_false() {
            break;
        }
        t = t.and(c.eval(&req.context));
    }
    (t, how)
}

/// Matches a `Principal`/`NotPrincipal` element of a statement with `effect` against the
/// caller.
fn principal_match(spec: &PrincipalSpec, effect: Effect, req: &Request) -> PMatch {
    if spec.negated {
        let exempt = match effect {
            // A Deny exempts the caller only when every identity it acts as is listed: for a
            // role session that is the session, the role and the account (IAM's NotPrincipal
            // rule).
            Effect::Deny => not_principal_exempts(spec, req),
            // An Allow applies to everyone except those listed. Naming any identity the caller
            // acts as leaves it out: an Allow must never reach a principal its author excluded.
            Effect::Allow => not_principal_lists(spec, req),
        };
        return if exempt { PMatch::None } else { PMatch::Direct };
    }
    if spec.any {
        return PMatch::Direct;
    }
    let mut best = PMatch::None;
    for m in spec.aws.iter().map(|a| aws_match(a, req)) {
        best = best.max(m);
    }
    let p = &req.principal;
    let exact = |list: &[String]| list.contains(&p.arn);
    match p.kind {
        PrincipalKind::Service if exact(&spec.service) => best = PMatch::Direct,
        // A provider in another account than the role's never matches: STS would look it up
        // in the role's account.
        PrincipalKind::IdentityProvider
            if exact(&spec.federated) && foreign_oidc_provider(&p.arn, req).is_none() =>
        {
            best = PMatch::Direct
        }
        PrincipalKind::Other if exact(&spec.canonical_user) => best = PMatch::Direct,
        _ => {}
    }
    best
}

fn aws_match(a: &AwsPrincipal, req: &Request) -> PMatch {
    let p = &req.principal;
    match a {
        AwsPrincipal::Account(acct) => {
            if p.is_iam_identity() && p.account.as_deref() == Some(acct) {
                PMatch::Account
            } else {
                PMatch::None
            }
        }
        AwsPrincipal::Role { account, name, arn } => match &p.kind {
            PrincipalKind::AssumedRole { role_name } | PrincipalKind::Role { role_name } => {
                // The session ARN drops the role's path; aws:PrincipalArn keeps it.
                let same = match req.context.get_one("aws:principalarn") {
                    Some(pa) if pa.contains(":role/") => pa == arn,
                    _ => role_name == name && p.account.as_deref() == Some(account),
                };
                // Naming the role, for the role's sessions and for the role itself taken as
                // the caller alike, is limited by the boundary and the session policy.
                if same { PMatch::Role } else { PMatch::None }
            }
            _ => PMatch::None,
        },
        AwsPrincipal::Exact(s) => {
            if *s == p.arn {
                PMatch::Direct
            } else {
                PMatch::None
            }
        }
    }
}

/// Does a `NotPrincipal` list the caller under any identity it acts as (its own ARN, for a
/// role session the role, its account, `*`)?
fn not_principal_lists(spec: &PrincipalSpec, req: &Request) -> bool {
    if spec.any || spec.aws.iter().any(|a| aws_match(a, req) != PMatch::None) {
        return true;
    }
    let p = &req.principal;
    let exact = |list: &[String]| list.contains(&p.arn);
    match p.kind {
        PrincipalKind::Service => exact(&spec.service),
        PrincipalKind::IdentityProvider => exact(&spec.federated),
        PrincipalKind::Other => exact(&spec.canonical_user),
        _ => false,
    }
}

fn not_principal_exempts(spec: &PrincipalSpec, req: &Request) -> bool {
    if spec.any {
        return true;
    }
    let p = &req.principal;
    let mut account = false;
    let mut role = false;
    let mut direct = false;
    for a in &spec.aws {
        match aws_match(a, req) {
            PMatch::Account => account = true,
            PMatch::Role => role = true,
            PMatch::Direct => direct = true,
            PMatch::None => {}
        }
    }
    let exact = |list: &[String]| list.contains(&p.arn);
    match p.kind {
        PrincipalKind::AssumedRole { .. } => account && role && direct,
        PrincipalKind::User | PrincipalKind::FederatedUser => account && direct,
        // A role ARN as the caller is taken literally: it is the role, and naming it exempts it.
        PrincipalKind::Role { .. } => role,
        PrincipalKind::Root => account,
        PrincipalKind::Service => exact(&spec.service),
        PrincipalKind::IdentityProvider => exact(&spec.federated),
        PrincipalKind::Other => exact(&spec.canonical_user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Context;

    fn answer(action: &str) -> serde_json::Value {
        let req = Request::new(
            "arn:aws:sts::111111111111:assumed-role/orders/s1",
            action,
            "*",
            Context::new(),
        );
        serde_json::to_value(authorize(&req, &PolicySet::default())).unwrap()
    }

    #[test]
    fn notes_are_written_with_code_and_message_and_only_when_there_are_some() {
        let v = answer("sts:GetCallerIdentity");
        assert_eq!(v["decision"], "Allow");
        assert_eq!(v["notes"][0]["code"], "NoPermissionRequired");
        assert_eq!(v["notes"][0]["action"], "sts:GetCallerIdentity");
        let msg = v["notes"][0]["message"].as_str().unwrap();
        assert!(msg.contains("cannot be denied"), "{msg}");

        let v = answer("sqs:SendMessage");
        assert_eq!(v["decision"], "ImplicitDeny");
        assert!(v.get("notes").is_none(), "{v}");
    }

    #[test]
    fn a_provider_in_another_account_is_named_with_both_accounts() {
        let provider = "arn:aws:iam::222222222222:oidc-provider/oidc.example.com/id/A";
        let req = Request::new(
            provider,
            "sts:AssumeRoleWithWebIdentity",
            "arn:aws:iam::111111111111:role/r",
            Context::new(),
        );
        let trust = Policy::from_aws_str(&format!(
            r#"{{"Statement":{{"Sid":"T","Effect":"Allow","Principal":{{"Federated":"{provider}"}},"Action":"sts:AssumeRoleWithWebIdentity"}}}}"#
        ))
        .unwrap();
        let set = PolicySet {
            resource: vec![NamedPolicy::new("trust policy", trust)],
            ..Default::default()
        };
        let resp = authorize(&req, &set);
        assert_eq!(resp.decision, Decision::ImplicitDeny);
        let [note @ Note::OidcProviderInOtherAccount { statement, .. }] = resp.notes.as_slice()
        else {
            panic!("{:?}", resp.notes)
        };
        assert_eq!(statement.as_ref().and_then(|s| s.sid.as_deref()), Some("T"));
        let msg = note.to_string();
        assert!(
            msg.contains("account 222222222222") && msg.contains("account 111111111111"),
            "{msg}"
        );
    }
}
