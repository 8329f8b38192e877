//! The IRSA credential step: the IAM OIDC provider for the cluster's issuer, and the role's
//! trust policy evaluated for `sts:AssumeRoleWithWebIdentity` with the token's `sub` and `aud`
//! claims. A failure is pinned down to the provider, the action, the audience or the subject.

use serde_json::json;

use super::check::{Diag, Who};
use super::findings::{
    allowed_values, deny_fix, depends_finding, describe_statement, join_quoted, statement_of,
};
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use crate::policy::{
    Context, Decision, Effect, Layer, NamedPolicy, Note, PolicySet, Request, authorize,
};

impl Diag {
    pub(super) fn check_trust(&mut self, who: &Who, issuer: Option<&str>, audience: &str) {
        let snap = who.snap;
        let role_arn = &who.role_arn;
        let ns = snap.binding.namespace.as_str();
        let sa = who.spec.service_account.as_str();
        let Some(issuer) = issuer else {
            self.push(Finding::new(
                ReasonCode::OidcIssuerUnknown,
                DiagLayer::TrustPolicy,
                "the cluster's OIDC issuer is not known, so the trust policy cannot be checked (configure --oidc-issuer)",
            ));
            return;
        };
        let provider_arn = who.provider_arn.clone().unwrap_or_default();
        let subject = format!("system:serviceaccount:{ns}:{sa}");
        match &snap.oidc_providers {
            None => self.notes.push(format!(
                "the IAM OIDC providers of account {} were not read: provider registration not checked",
                role_arn.account()
            )),
            Some(list) => match list.iter().find(|p| normalize_issuer(&p.url) == issuer) {
                None => self.push(
                    Finding::new(
                        ReasonCode::OidcProviderNotRegistered,
                        DiagLayer::OidcProvider,
                        format!(
                            "no IAM OIDC provider for https://{issuer} is registered in account {} (STS: \"No OpenIDConnect provider found in your account\")",
                            role_arn.account()
                        ),
                    )
                    .fix(Fix {
                        target: FixTarget::OidcProvider {
                            account: role_arn.account().to_string(),
                            issuer: format!("https://{issuer}"),
                        },
                        instruction: format!(
                            "aws iam create-open-id-connect-provider --url https://{issuer} --client-id-list {audience} (or eksctl utils associate-iam-oidc-provider --approve) in account {}",
                            role_arn.account()
                        ),
                        statement: None,
                    }),
                ),
                Some(p) if !p.client_ids.iter().any(|c| c == audience) => self.push(
                    Finding::new(
                        ReasonCode::OidcProviderAudienceMismatch,
                        DiagLayer::OidcProvider,
                        format!(
                            "the OIDC provider for https://{issuer} does not list the token audience \"{audience}\" among its client IDs {:?} (STS: \"Incorrect token audience\")",
                            p.client_ids
                        ),
                    )
                    .fix(Fix {
                        target: FixTarget::OidcProvider {
                            account: role_arn.account().to_string(),
                            issuer: format!("https://{issuer}"),
                        },
                        instruction: format!(
                            "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {provider_arn} --client-id {audience}"
                        ),
                        statement: None,
                    }),
                ),
                Some(_) => {}
            },
        }
        let Some(trust) = &who.role.trust_policy else {
            self.notes.push(format!(
                "the trust policy of {role_arn} was not read: trust not checked"
            ));
            return;
        };
        let sub_key = format!("{issuer}:sub");
        let aud_key = format!("{issuer}:aud");
        let build = |unknown: Option<&str>| {
            let mut ctx = Context::new();
            ctx.insert(&sub_key, subject.clone())
                .insert(&aud_key, audience.to_string())
                .mark_unknown("aws:SourceIp")
                .mark_unknown("sts:RoleSessionName");
            if let Some(k) = unknown {
                ctx.mark_unknown(k);
            }
            Request::new(
                &provider_arn,
                "sts:AssumeRoleWithWebIdentity",
                role_arn.as_str(),
                ctx,
            )
        };
        let mut set = PolicySet {
            resource: vec![NamedPolicy::new("trust policy", trust.policy.clone())],
            ..Default::default()
        };
        let role_acct = role_arn.account().clone();
        if let Some(levels) = self.rcps_for(snap, &role_acct, "the role's account (STS)") {
            set.rcps = levels;
        }
        let req = build(None);
        let resp = authorize(&req, &set);
        self.record("trust", &req, &resp);
        let trust_target = FixTarget::TrustPolicy {
            role: role_arn.to_string(),
        };
        let trust_stmt = json!({
            "Effect": "Allow",
            "Principal": { "Federated": provider_arn },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": { "StringEquals": { sub_key.clone(): subject, aud_key.clone(): audience } }
        });
        let trust_fix = |instruction: String| Fix {
            target: trust_target.clone(),
            instruction,
            statement: Some(trust_stmt.clone()),
        };
        match resp.decision {
            Decision::Allow => {
                let unscoped = resp.statements.iter().any(|s| {
                    s.layer == Layer::Resource
                        && statement_of(&set, s).is_some_and(|st| {
                            !st.conditions
                                .iter()
                                .any(|c| c.key.eq_ignore_ascii_case(&sub_key))
                        })
                });
                if unscoped {
                    self.warnings.push(format!(
                        "the trust policy of {role_arn} has no {sub_key} condition: every service account in the cluster can assume this role"
                    ));
                }
            }
            Decision::ExplicitDeny => {
                for s in &resp.statements {
                    let (code, layer) = if s.layer == Layer::Rcp {
                        (ReasonCode::ExplicitDenyInRcp, DiagLayer::Rcp)
                    } else {
                        (
                            ReasonCode::ExplicitDenyInTrustPolicy,
                            DiagLayer::TrustPolicy,
                        )
                    };
                    self.push(
                        Finding::new(
                            code,
                            layer,
                            format!(
                                "sts:AssumeRoleWithWebIdentity for {subject} is denied with an explicit deny in {}",
                                describe_statement(&set, s)
                            ),
                        )
                        .action("sts:AssumeRoleWithWebIdentity")
                        .statement(Some(s.clone()))
                        .fix(deny_fix(&set, s, "sts:AssumeRoleWithWebIdentity", trust_target.clone())),
                    );
                }
            }
            Decision::ImplicitDeny => {
                let stmts = &trust.policy.statements;
                let for_provider: Vec<_> = stmts
                    .iter()
                    .filter(|s| {
                        s.effect == Effect::Allow
                            && s.principal
                                .as_ref()
                                .is_some_and(|p| !p.negated && p.federated.contains(&provider_arn))
                    })
                    .collect();
                let wrong_action = !for_provider.is_empty()
                    && for_provider
                        .iter()
                        .all(|s| !s.action.matches("sts:assumerolewithwebidentity"));
                let aud_resp = authorize(&build(Some(&aud_key)), &set);
                let sub_resp = authorize(&build(Some(&sub_key)), &set);
                let other_account = resp.notes.iter().find_map(|n| match n {
                    Note::OidcProviderInOtherAccount {
                        provider,
                        provider_account,
                        role_account,
                        ..
                    } => Some((provider, provider_account, role_account)),
                    _ => None,
                });
                let (code, msg) = if let Some((provider, provider_account, role_account)) =
                    other_account
                    && for_provider.is_empty()
                {
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} trusts {provider}, an OIDC provider in account {provider_account}, but the role is in account {role_account}: STS looks the provider up in the role's own account, so that statement never applies; register the cluster's issuer as an OIDC provider in account {role_account} and trust {provider_arn} (STS: \"Not authorized to perform sts:AssumeRoleWithWebIdentity\")"
                        ),
                    )
                } else if for_provider.is_empty() {
                    let others: Vec<&String> = stmts
                        .iter()
                        .filter_map(|s| s.principal.as_ref())
                        .flat_map(|p| p.federated.iter())
                        .collect();
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} has no statement for this cluster's OIDC provider {provider_arn}{} (STS: \"Not authorized to perform sts:AssumeRoleWithWebIdentity\")",
                            if others.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "; it trusts {}",
                                    join_quoted(others.iter().map(|s| s.as_str()))
                                )
                            }
                        ),
                    )
                } else if wrong_action {
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} trusts {provider_arn} but only for {}; IRSA calls sts:AssumeRoleWithWebIdentity",
                            join_quoted(
                                for_provider.iter().flat_map(|s| s
                                    .action
                                    .raw
                                    .iter()
                                    .map(|a| a.as_str()))
                            )
                        ),
                    )
                } else if aud_resp.decision != Decision::ImplicitDeny
                    && sub_resp.decision == Decision::ImplicitDeny
                {
                    (
                        ReasonCode::TrustPolicyAudienceMismatch,
                        format!(
                            "the trust policy of {role_arn} requires a different {aud_key} than the token's audience \"{audience}\"{}",
                            allowed_values(&for_provider, &aud_key)
                        ),
                    )
                } else {
                    let hint = if for_provider.iter().any(|s| {
                        s.conditions.iter().any(|c| {
                            c.key.eq_ignore_ascii_case(&sub_key)
                                && c.operator.starts_with("StringEquals")
                                && c.raw_values().any(|v| v.contains(['*', '?']))
                        })
                    }) {
                        "; a wildcard in a StringEquals condition is literal: use StringLike"
                    } else {
                        ""
                    };
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} does not allow {sub_key} = \"{subject}\"{}{hint} (STS: \"Not authorized to perform sts:AssumeRoleWithWebIdentity\")",
                            allowed_values(&for_provider, &sub_key)
                        ),
                    )
                };
                self.push(
                    Finding::new(code, DiagLayer::TrustPolicy, msg)
                        .action("sts:AssumeRoleWithWebIdentity")
                        .fix(trust_fix(format!(
                            "add this statement to {} (or add the subject to the existing statement's condition)",
                            trust_target.describe()
                        ))),
                );
            }
            Decision::Indeterminate => self.push(depends_finding(
                &resp,
                "sts:AssumeRoleWithWebIdentity",
                DiagLayer::TrustPolicy,
            )),
        }
    }
}

/// `https://oidc.eks.us-east-1.amazonaws.com/id/ABC/` → `oidc.eks.us-east-1.amazonaws.com/id/ABC`
/// (the form IAM uses in provider ARNs and condition keys).
pub fn normalize_issuer(url: &str) -> String {
    let u = url.trim();
    let u = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .unwrap_or(u);
    let u = u.trim_end_matches('/');
    match u.split_once('/') {
        Some((host, path)) => format!("{}/{}", host.to_ascii_lowercase(), path),
        None => u.to_ascii_lowercase(),
    }
}
