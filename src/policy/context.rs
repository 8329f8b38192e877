//! The request being authorized: who asks, for what action on which resource, and the request
//! context keys. Built once per request, then read by every policy.

use std::collections::{HashMap, HashSet};

use super::arn::Arn;

/// Condition keys and their values. Keys are case-insensitive (stored lower-case); values are
/// case-sensitive. A key can also be marked *unknown*: present or not, with a value we cannot
/// know, so conditions on it evaluate to "depends" instead of true or false.
#[derive(Debug, Clone, Default)]
pub struct Context {
    values: HashMap<String, Vec<String>, foldhash::fast::RandomState>,
    unknown: HashSet<String, foldhash::fast::RandomState>,
    /// Key prefixes (`aws:resourcetag/`) under which every absent key is unknown.
    unknown_prefixes: Vec<String>,
}

/// What the context says about a key.
pub enum Lookup<'a> {
    Values(&'a [String]),
    Absent,
    Unknown,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty context with room for `n` keys.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Context {
            values: HashMap::with_capacity_and_hasher(n, Default::default()),
            ..Self::default()
        }
    }

    /// Sets a single-valued key.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    /// Sets a multi-valued key.
    pub fn insert_many(&mut self, key: &str, values: Vec<String>) -> &mut Self {
        self.values.insert(key.to_ascii_lowercase(), values);
        self
    }

    /// Sets a key from an owned name (lower-cased in place).
    pub(crate) fn insert_owned(&mut self, mut key: String, values: Vec<String>) -> &mut Self {
        key.make_ascii_lowercase();
        self.values.insert(key, values);
        self
    }

    /// Marks a key as unknown: the evaluation result then depends on it.
    pub fn mark_unknown(&mut self, key: &str) -> &mut Self {
        let k = key.to_ascii_lowercase();
        self.values.remove(&k);
        self.unknown.insert(k);
        self
    }

    /// Marks every key under a prefix (e.g. `aws:ResourceTag/`) as unknown, except keys that
    /// are set explicitly.
    pub fn mark_unknown_prefix(&mut self, prefix: &str) -> &mut Self {
        self.unknown_prefixes.push(prefix.to_ascii_lowercase());
        self
    }

    pub fn remove(&mut self, key: &str) -> &mut Self {
        let k = key.to_ascii_lowercase();
        self.values.remove(&k);
        self.unknown.remove(&k);
        self
    }

    /// Looks a key up; `key` must already be lower-case (policies store keys that way).
    pub fn lookup(&self, key: &str) -> Lookup<'_> {
        match self.values.get(key) {
            // An empty list is the same as an absent key.
            Some(v) if !v.is_empty() => Lookup::Values(v),
            Some(_) => Lookup::Absent,
            None if !self.unknown.is_empty() && self.unknown.contains(key) => Lookup::Unknown,
            None if self
                .unknown_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_str())) =>
            {
                Lookup::Unknown
            }
            None => Lookup::Absent,
        }
    }

    /// The single value of a key, if it has exactly one.
    pub fn get_one(&self, key: &str) -> Option<&str> {
        match self.lookup(&key.to_ascii_lowercase()) {
            Lookup::Values([v]) => Some(v),
            _ => None,
        }
    }

    pub fn has_unknowns(&self) -> bool {
        !self.unknown.is_empty() || !self.unknown_prefixes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// What kind of caller made the request: decides which policy types apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A role session, `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`.
    AssumedRole { role_name: String },
    /// An IAM user, `arn:aws:iam::ACCT:user/PATH/NAME`.
    User,
    /// The account root user.
    Root,
    /// An IAM role ARN used as the caller (rare; sessions are the usual form).
    Role { role_name: String },
    /// An STS federated user, `arn:aws:sts::ACCT:federated-user/NAME`.
    FederatedUser,
    /// An identity provider: an IAM OIDC or SAML provider ARN, or a well-known web identity
    /// provider name, as in `sts:AssumeRoleWithWebIdentity`.
    IdentityProvider,
    /// An AWS service principal such as `sqs.amazonaws.com`.
    Service,
    /// Anything else (anonymous `*`, a canonical user id): only `"*"` can match it.
    Other,
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub arn: String,
    pub account: Option<String>,
    pub kind: PrincipalKind,
}

impl Principal {
    /// Classifies a principal string. `account` overrides the account taken from the ARN.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        let Ok(arn) = Arn::parse(s) else {
            let kind = if s.ends_with(".amazonaws.com") || s.ends_with(".amazonaws.com.cn") {
                PrincipalKind::Service
            } else if s.contains('.') {
                // accounts.google.com, cognito-identity.amazonaws.com, graph.facebook.com ...
                PrincipalKind::IdentityProvider
            } else {
                PrincipalKind::Other
            };
            return Principal {
                arn: s.to_string(),
                account: None,
                kind,
            };
        };
        let account = (!arn.account.is_empty()).then(|| arn.account.to_string());
        let res = arn.resource;
        let kind = match arn.service {
            "sts" => {
                if let Some(rest) = res.strip_prefix("assumed-role/") {
                    let role_name = rest.split('/').next().unwrap_or_default().to_string();
                    PrincipalKind::AssumedRole { role_name }
                } else if res.starts_with("federated-user/") {
                    PrincipalKind::FederatedUser
                } else {
                    PrincipalKind::Other
                }
            }
            "iam" => {
                if res == "root" {
                    PrincipalKind::Root
                } else if res.starts_with("user/") {
                    PrincipalKind::User
                } else if res.starts_with("role/") {
                    let role_name = res.rsplit('/').next().unwrap_or_default().to_string();
                    PrincipalKind::Role { role_name }
                } else if res.starts_with("oidc-provider/") || res.starts_with("saml-provider/") {
                    PrincipalKind::IdentityProvider
                } else {
                    PrincipalKind::Other
                }
            }
            _ => PrincipalKind::Other,
        };
        Principal {
            arn: s.to_string(),
            account,
            kind,
        }
    }

    /// IAM identities are the principals that identity policies, boundaries and SCPs govern.
    pub fn is_iam_identity(&self) -> bool {
        self.account.is_some()
            && matches!(
                self.kind,
                PrincipalKind::AssumedRole { .. }
                    | PrincipalKind::User
                    | PrincipalKind::Root
                    | PrincipalKind::Role { .. }
                    | PrincipalKind::FederatedUser
            )
    }
}

/// How a resource-based policy participates, which depends on the service that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceRule {
    /// Most services (SQS among them): within one account the resource policy or the identity
    /// policies may allow.
    Standard,
    /// KMS key policies: the key policy must allow, directly or by delegating to the account
    /// (`arn:aws:iam::ACCT:root`) so that IAM policies count, even within one account.
    KeyPolicy,
    /// Role trust policies: the trust policy must allow the caller, even within one account.
    TrustPolicy,
    /// KMS actions that are not on a key (alias management on an alias, account-level actions
    /// such as `kms:ListKeys` or `kms:CreateKey`): IAM policies alone decide. No resource-based
    /// policy exists for them, so none is evaluated.
    IamOnly,
}

/// KMS actions on no resource but the account (`"*"` in the Service Authorization Reference),
/// controlled by IAM policies only. Lower-case.
const KMS_ACCOUNT_ACTIONS: &[&str] = &[
    "kms:connectcustomkeystore",
    "kms:createcustomkeystore",
    "kms:createkey",
    "kms:deletecustomkeystore",
    "kms:describecustomkeystores",
    "kms:disconnectcustomkeystore",
    "kms:generaterandom",
    "kms:listaliases",
    "kms:listkeys",
    "kms:listretirablegrants",
    "kms:updatecustomkeystore",
];

/// KMS actions that take an alias as one of their resources (the key is the other, checked
/// against its key policy in a request of its own). Lower-case.
const KMS_ALIAS_ACTIONS: &[&str] = &["kms:createalias", "kms:deletealias", "kms:updatealias"];

impl ResourceRule {
    /// The rule that AWS applies to the resource policy of a request for `action` on
    /// `resource`.
    pub fn for_request(action: &str, resource: &str) -> Self {
        let a = action.to_ascii_lowercase();
        if KMS_ACCOUNT_ACTIONS.contains(&a.as_str())
            || (KMS_ALIAS_ACTIONS.contains(&a.as_str()) && is_kms_alias(resource))
        {
            ResourceRule::IamOnly
        } else if a.starts_with("kms:") {
            ResourceRule::KeyPolicy
        } else if a.starts_with("sts:assumerole")
            || matches!(
                a.as_str(),
                "sts:tagsession" | "sts:setsourceidentity" | "sts:setcontext"
            )
        {
            ResourceRule::TrustPolicy
        } else {
            ResourceRule::Standard
        }
    }

    pub fn requires_resource_policy(self) -> bool {
        matches!(self, ResourceRule::KeyPolicy | ResourceRule::TrustPolicy)
    }
}

/// `arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME`.
fn is_kms_alias(resource: &str) -> bool {
    Arn::parse(resource).is_ok_and(|a| a.service == "kms" && a.resource.starts_with("alias/"))
}

/// One request to authorize.
#[derive(Debug, Clone)]
pub struct Request {
    pub principal: Principal,
    /// The action as given (for messages).
    pub action: String,
    /// The action lower-cased (actions match case-insensitively).
    pub(crate) action_lc: String,
    pub resource: String,
    pub resource_account: Option<String>,
    pub rule: ResourceRule,
    pub context: Context,
}

impl Request {
    /// Builds a request. The accounts default to the ones in the principal and resource ARNs.
    pub fn new(principal: &str, action: &str, resource: &str, context: Context) -> Self {
        Request::from_owned(principal, action.to_string(), resource.to_string(), context)
    }

    /// [`Request::new`], keeping the given action and resource strings.
    pub fn from_owned(principal: &str, action: String, resource: String, context: Context) -> Self {
        let mut principal = Principal::parse(principal);
        let action_lc = action.to_ascii_lowercase();
        // Web identity and SAML callers are identity providers, even when named like a
        // service (`cognito-identity.amazonaws.com`).
        if principal.kind == PrincipalKind::Service
            && matches!(
                action_lc.as_str(),
                "sts:assumerolewithwebidentity" | "sts:assumerolewithsaml"
            )
        {
            principal.kind = PrincipalKind::IdentityProvider;
        }
        let resource_account = Arn::parse(&resource)
            .ok()
            .map(|a| a.account.to_string())
            .filter(|a| !a.is_empty());
        Request {
            principal,
            rule: ResourceRule::for_request(&action, &resource),
            action,
            action_lc,
            resource,
            resource_account,
            context,
        }
    }

    pub fn with_principal_account(mut self, account: Option<String>) -> Self {
        self.principal.account = account;
        self
    }

    pub fn with_resource_account(mut self, account: Option<String>) -> Self {
        self.resource_account = account;
        self
    }

    pub fn with_rule(mut self, rule: ResourceRule) -> Self {
        self.rule = rule;
        self
    }

    /// True when principal and resource are in the same account.
    pub fn same_account(&self) -> bool {
        match (&self.principal.account, &self.resource_account) {
            (Some(p), Some(r)) => p == r,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_kinds() {
        let p = Principal::parse("arn:aws:sts::111111111111:assumed-role/orders/s1");
        assert_eq!(
            p.kind,
            PrincipalKind::AssumedRole {
                role_name: "orders".into()
            }
        );
        assert_eq!(p.account.as_deref(), Some("111111111111"));
        assert!(p.is_iam_identity());
        let p = Principal::parse("sqs.amazonaws.com");
        assert_eq!(p.kind, PrincipalKind::Service);
        assert!(!p.is_iam_identity());
        let p = Principal::parse(
            "arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC",
        );
        assert_eq!(p.kind, PrincipalKind::IdentityProvider);
        assert!(!p.is_iam_identity());
        let p = Principal::parse("arn:aws:iam::111111111111:role/team/orders");
        assert_eq!(
            p.kind,
            PrincipalKind::Role {
                role_name: "orders".into()
            }
        );
    }

    #[test]
    fn rules_by_action_and_resource() {
        let key = "arn:aws:kms:us-east-1:111111111111:key/1234";
        let alias = "arn:aws:kms:us-east-1:111111111111:alias/orders";
        for (action, resource, rule) in [
            ("kms:Decrypt", key, ResourceRule::KeyPolicy),
            ("kms:CreateAlias", key, ResourceRule::KeyPolicy),
            ("kms:CreateAlias", alias, ResourceRule::IamOnly),
            ("KMS:deleteALIAS", alias, ResourceRule::IamOnly),
            ("kms:Decrypt", alias, ResourceRule::KeyPolicy),
            ("kms:ListKeys", "*", ResourceRule::IamOnly),
            ("kms:CreateKey", "*", ResourceRule::IamOnly),
            ("kms:Decrypt", "*", ResourceRule::KeyPolicy),
            (
                "sts:AssumeRoleWithWebIdentity",
                "*",
                ResourceRule::TrustPolicy,
            ),
            ("sqs:SendMessage", "*", ResourceRule::Standard),
        ] {
            assert_eq!(
                ResourceRule::for_request(action, resource),
                rule,
                "{action} on {resource}"
            );
        }
    }

    #[test]
    fn context_keys_are_case_insensitive_and_empty_lists_are_absent() {
        let mut c = Context::new();
        c.insert("aws:SourceVpce", "vpce-1");
        c.insert_many("aws:TagKeys", vec![]);
        assert!(matches!(c.lookup("aws:sourcevpce"), Lookup::Values(_)));
        assert!(matches!(c.lookup("aws:tagkeys"), Lookup::Absent));
        c.mark_unknown("aws:SourceIp");
        assert!(matches!(c.lookup("aws:sourceip"), Lookup::Unknown));
    }
}
