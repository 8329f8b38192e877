//! What every evaluation shares: the workload's identity policies, boundary and organization
//! policies, and the request context AWS builds for a call by the workload's role session.

use super::check::{Diag, Who};
use super::pod_identity::SessionTags;
use super::snapshot::{
    NamedDocument, NetworkPath, OrgAccountEvidence, OrgLevelEvidence, RoleEvidence, Snapshot,
    StringOrList,
};
use crate::ids::{AccountId, Region, RoleArn};
use crate::policy::{Context, NamedPolicy, OrgLevel, PolicySet};

impl Diag {
    /// Identity policies, boundary and SCPs of the workload's role, and its session policy.
    pub(super) fn identity_set(&mut self, who: &Who, principal_acct: &AccountId) -> PolicySet {
        let mut set = self.role_set(who.snap, who.role, principal_acct);
        set.session_policy = who.session_policy.clone();
        set
    }

    /// Identity policies, boundary and SCPs of a role.
    pub(super) fn role_set(
        &mut self,
        snap: &Snapshot,
        role: &RoleEvidence,
        principal_acct: &AccountId,
    ) -> PolicySet {
        let mut set = PolicySet::default();
        for (i, p) in role.inline_policies.iter().enumerate() {
            set.identity
                .push(named(p, &format!("inline policy {i}"), "inline"));
        }
        for (i, p) in role.managed_policies.iter().enumerate() {
            set.identity
                .push(named(p, &format!("managed policy {i}"), "managed"));
        }
        if let Some(b) = &role.permissions_boundary {
            set.permission_boundary = Some(named(b, "permissions boundary", "boundary"));
        }
        if let Some(levels) = self.scps_for(snap, principal_acct) {
            set.scps = levels;
        }
        set
    }

    pub(super) fn org_account<'s>(
        &mut self,
        snap: &'s Snapshot,
        acct: &AccountId,
        what: &str,
        kind: &str,
    ) -> Option<&'s OrgAccountEvidence> {
        let note = match &snap.organization {
            None => "the organization is not known (add it to the configuration): SCPs and RCPs not evaluated".to_string(),
            Some(org) => match org.accounts.get(acct.as_str()) {
                Some(a) => return Some(a),
                None => format!(
                    "account {acct} is not in the snapshot's organization: {kind}s of {what} not evaluated"
                ),
            },
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
        None
    }

    pub(super) fn scps_for(&mut self, snap: &Snapshot, acct: &AccountId) -> Option<Vec<OrgLevel>> {
        let a = self.org_account(snap, acct, &format!("account {acct}"), "SCP")?;
        if a.management_account {
            return None;
        }
        match &a.scps {
            Some(levels) => Some(org_levels(levels)),
            None => {
                let n = format!("the SCPs of account {acct} are not known: not evaluated");
                if !self.notes.contains(&n) {
                    self.notes.push(n);
                }
                None
            }
        }
    }

    pub(super) fn rcps_for(
        &mut self,
        snap: &Snapshot,
        acct: &AccountId,
        what: &str,
    ) -> Option<Vec<OrgLevel>> {
        let a = self.org_account(snap, acct, what, "RCP")?;
        if a.management_account {
            return None;
        }
        match &a.rcps {
            Some(levels) => Some(org_levels(levels)),
            None => {
                let n = format!("the RCPs of {what} ({acct}) are not known: not evaluated");
                if !self.notes.contains(&n) {
                    self.notes.push(n);
                }
                None
            }
        }
    }

    /// The request context AWS builds for a call by the workload's role session.
    pub(super) fn principal_context(
        &self,
        who: &Who,
        region: &Region,
        via_service: bool,
        vpce: Option<&str>,
    ) -> Context {
        let snap = who.snap;
        let queue_acct = who.spec.queue.arn.account();
        let mut c = Context::new();
        session_keys(&mut c, snap, &who.role_arn, who.role, &who.session_tags);
        c.insert("aws:SecureTransport", "true")
            .insert("aws:RequestedRegion", region.to_string())
            .insert(
                "aws:ViaAWSService",
                if via_service { "true" } else { "false" },
            )
            .insert("aws:ResourceAccount", queue_acct.to_string());
        if let Some(p) = &who.provider_arn {
            c.insert("aws:FederatedProvider", p.clone());
        }
        resource_org_keys(&mut c, snap, queue_acct);
        match snap.queue.as_ref().and_then(|q| q.tags.as_ref()) {
            Some(tags) if !via_service => {
                for (k, v) in tags {
                    c.insert(&format!("aws:ResourceTag/{k}"), v.clone());
                }
            }
            _ => {
                c.mark_unknown_prefix("aws:ResourceTag/");
            }
        }
        time_keys(&mut c, snap);
        // The network path. SQS calling KMS for the caller (a forward access session) keeps
        // the caller's source IP but carries no VPC endpoint keys.
        match (vpce, &snap.network) {
            (Some(id), _) => {
                if !via_service {
                    c.insert("aws:SourceVpce", id.to_string());
                    match snap.network.as_ref().and_then(|n| n.vpc_id.clone()) {
                        Some(v) => c.insert("aws:SourceVpc", v),
                        None => c.mark_unknown("aws:SourceVpc"),
                    };
                    c.mark_unknown("aws:VpcSourceIp");
                }
                // Through an endpoint aws:SourceIp is absent.
            }
            (None, Some(n)) if n.path == NetworkPath::Internet => {
                match &n.source_ip {
                    Some(ip) => c.insert("aws:SourceIp", ip.clone()),
                    None => c.mark_unknown("aws:SourceIp"),
                };
            }
            _ => {
                c.mark_unknown("aws:SourceIp");
                if !via_service {
                    c.mark_unknown("aws:SourceVpce")
                        .mark_unknown("aws:SourceVpc")
                        .mark_unknown("aws:VpcSourceIp");
                }
            }
        }
        for (k, v) in &snap.request_context {
            let lc = k.to_ascii_lowercase();
            if via_service
                && matches!(
                    lc.as_str(),
                    "aws:sourcevpce" | "aws:sourcevpc" | "aws:vpcsourceip"
                )
            {
                continue;
            }
            match v {
                StringOrList::One(s) => c.insert(k, s.clone()),
                StringOrList::Many(l) => c.insert_many(k, l.clone()),
            };
        }
        c
    }
}

pub(super) fn named(p: &NamedDocument, fallback: &str, kind: &str) -> NamedPolicy {
    NamedPolicy {
        name: p.display_name(fallback),
        kind: Some(kind.to_string()),
        policy: p.document.policy.clone(),
    }
}

pub(super) fn org_levels(levels: &[OrgLevelEvidence]) -> Vec<OrgLevel> {
    levels
        .iter()
        .map(|l| OrgLevel {
            target: l.target.clone(),
            policies: l
                .policies
                .iter()
                .enumerate()
                .map(|(i, p)| named(p, &format!("policy {i}"), "organization"))
                .collect(),
        })
        .collect()
}

pub(super) fn epoch_seconds(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp())
}

/// The organization id and path of an account, when the snapshot knows its organization.
fn org_of(snap: &Snapshot, a: &AccountId) -> Option<(Option<String>, Option<String>)> {
    snap.organization.as_ref().and_then(|o| {
        o.accounts
            .get(a.as_str())
            .map(|acc| (o.id.clone(), acc.path.clone()))
    })
}

/// The keys that describe a role session as the caller: its role, account, tags (the role's,
/// then the session's, which win) and organization.
pub(super) fn session_keys(
    c: &mut Context,
    snap: &Snapshot,
    role_arn: &RoleArn,
    role: &RoleEvidence,
    session_tags: &SessionTags,
) {
    let acct = role_arn.account();
    c.insert("aws:PrincipalArn", role_arn.to_string())
        .insert("aws:PrincipalAccount", acct.to_string())
        .insert("aws:PrincipalType", "AssumedRole")
        .insert("aws:PrincipalIsAWSService", "false")
        .mark_unknown("aws:userid")
        .mark_unknown("aws:TokenIssueTime")
        .mark_unknown("aws:SourceIdentity");
    for (k, v) in &role.tags {
        c.insert(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    for (k, v) in &session_tags.known {
        c.insert(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    for k in &session_tags.unknown {
        c.mark_unknown(&format!("aws:PrincipalTag/{k}"));
    }
    match org_of(snap, acct) {
        Some((id, path)) => {
            match id {
                Some(id) => c.insert("aws:PrincipalOrgID", id),
                None => c.mark_unknown("aws:PrincipalOrgID"),
            };
            match path {
                Some(p) => c.insert_many("aws:PrincipalOrgPaths", vec![p]),
                None => c.mark_unknown("aws:PrincipalOrgPaths"),
            };
        }
        None => {
            c.mark_unknown("aws:PrincipalOrgID")
                .mark_unknown("aws:PrincipalOrgPaths");
        }
    }
}

/// `aws:ResourceOrgID` and `aws:ResourceOrgPaths` of the resource's account.
pub(super) fn resource_org_keys(c: &mut Context, snap: &Snapshot, acct: &AccountId) {
    match org_of(snap, acct) {
        Some((Some(id), path)) => {
            c.insert("aws:ResourceOrgID", id);
            match path {
                Some(p) => c.insert_many("aws:ResourceOrgPaths", vec![p]),
                None => c.mark_unknown("aws:ResourceOrgPaths"),
            };
        }
        _ => {
            c.mark_unknown("aws:ResourceOrgID")
                .mark_unknown("aws:ResourceOrgPaths");
        }
    }
}

/// `aws:CurrentTime` and `aws:EpochTime`: the snapshot's capture time, else unknown.
pub(super) fn time_keys(c: &mut Context, snap: &Snapshot) {
    match snap.captured_at.as_deref().and_then(epoch_seconds) {
        Some(secs) => {
            c.insert(
                "aws:CurrentTime",
                snap.captured_at.clone().unwrap_or_default(),
            )
            .insert("aws:EpochTime", secs.to_string());
        }
        None => {
            c.mark_unknown("aws:CurrentTime")
                .mark_unknown("aws:EpochTime");
        }
    }
}
