//! What changed in AWS, and what each binding depends on. AWS announces every policy change: the
//! management call lands in CloudTrail, and EventBridge can deliver it ("AWS API Call via
//! CloudTrail") to an SQS queue. This module reads such an event and names the documents it
//! makes stale ([`DocRef`]); it also lists the documents a snapshot was built from, so the
//! controller can requeue exactly the bindings a change touches. Pure: no I/O.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::diagnosis::credentials::{RoleSource, role_source};
use crate::diagnosis::snapshot::{RoleEvidence, Snapshot};
use crate::ids::{QueueArn, RoleArn};

/// A document (or group of documents) a verdict depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocRef {
    /// A role: trust policy, inline and attached policies, boundary, tags.
    Role { account: String, name: String },
    /// A managed policy (its default version), wherever it is attached.
    ManagedPolicy { arn: String },
    /// The IAM OIDC providers of an account.
    OidcProviders { account: String },
    /// A queue: attributes (policy, encryption) and tags.
    Queue {
        account: String,
        region: String,
        name: String,
    },
    /// A KMS key (policy, grants, state), by key id.
    Key { key_id: String },
    /// A KMS alias: which key it names.
    KeyAlias {
        account: String,
        region: String,
        alias: String,
    },
    /// The organization policies (SCPs, RCPs) that govern an account.
    Account { account: String },
    /// The whole organization (a change at the root or an OU).
    Organization,
    /// The EKS Pod Identity associations of a service account.
    Associations {
        cluster: String,
        namespace: String,
        service_account: String,
    },
    /// One Pod Identity association, by id (updates and deletes name only the id).
    Association { cluster: String, id: String },
    /// A VPC endpoint's policy.
    VpcEndpoint { id: String },
}

/// One change AWS announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `iam.amazonaws.com`, ...
    pub source: String,
    /// `PutRolePolicy`, ...
    pub name: String,
    /// `detail.eventTime`, as Unix seconds (for the delay metric).
    pub time: Option<f64>,
    /// The documents it makes stale.
    pub stale: Vec<DocRef>,
}

/// Why a message is not a usable event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    #[error("the message is not an EventBridge event (no {0})")]
    NotAnEvent(&'static str),
}

/// Reads one queue message: an EventBridge event (`detail-type` "AWS API Call via CloudTrail"),
/// also when SNS wrapped it. `Ok(None)` for a well-formed event that changes nothing the
/// operator reads (another API call, a failed call, a read-only call).
pub fn parse_message(body: &str) -> Result<Option<Change>, EventError> {
    let mut v: Value =
        serde_json::from_str(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    // SNS → SQS delivery wraps the event in a notification.
    if v.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = v.get("Message").and_then(Value::as_str)
    {
        v = serde_json::from_str(inner).map_err(|e| EventError::NotJson(e.to_string()))?;
    }
    let detail = v.get("detail").ok_or(EventError::NotAnEvent("detail"))?;
    if !detail.is_object() {
        return Err(EventError::NotAnEvent("detail object"));
    }
    let source =
        str_at(detail, "eventSource").ok_or(EventError::NotAnEvent("detail.eventSource"))?;
    let name = str_at(detail, "eventName").ok_or(EventError::NotAnEvent("detail.eventName"))?;
    // A call that failed changed nothing.
    if detail.get("errorCode").is_some_and(|e| !e.is_null()) {
        return Ok(None);
    }
    let account = str_at(detail, "recipientAccountId")
        .or_else(|| str_at(&v, "account"))
        .unwrap_or_default();
    let region = str_at(detail, "awsRegion")
        .or_else(|| str_at(&v, "region"))
        .unwrap_or_default();
    let req = detail.get("requestParameters").unwrap_or(&Value::Null);
    let stale = stale_documents(&source, &name, &account, &region, req, detail);
    if stale.is_empty() {
        return Ok(None);
    }
    let time = str_at(detail, "eventTime")
        .or_else(|| str_at(&v, "time"))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.timestamp_millis() as f64 / 1000.0);
    Ok(Some(Change {
        source,
        name,
        time,
        stale,
    }))
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A request parameter, also inside EC2's `<Operation>Request` wrapper, any key case.
fn param(req: &Value, key: &str) -> Option<String> {
    let obj = req.as_object()?;
    for (k, v) in obj {
        if k.eq_ignore_ascii_case(key)
            && let Some(s) = v.as_str()
        {
            return Some(s.to_string());
        }
    }
    // EC2 records wrap parameters: {"ModifyVpcEndpointRequest": {...}}.
    obj.values()
        .filter(|v| v.is_object())
        .find_map(|inner| param(inner, key))
}

/// `arn:aws:iam::111111111111:role/path/name` → (account, name).
fn role_of_arn(arn: &str) -> Option<(String, String)> {
    let r = RoleArn::parse(arn).ok()?;
    Some((r.account().to_string(), r.name().to_string()))
}

/// Account and queue name from a queue URL's path (`.../ACCOUNT/NAME`). The host is not
/// looked at: nothing is ever sent to it.
fn queue_of_url(url: &str) -> Option<(String, String)> {
    let path = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let name = parts.next()?.to_string();
    let account = parts.next()?.to_string();
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some((account, name))
}

/// A KMS key id from a key id or key ARN (`arn:aws:kms:R:A:key/ID`); aliases give `None`.
fn key_id_of(s: &str) -> Option<String> {
    let id = s.rsplit_once(":key/").map(|(_, id)| id).unwrap_or(s);
    (!id.starts_with("alias/") && !id.contains(':') && !id.is_empty()).then(|| id.to_string())
}

/// How an event names what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// `roleName` in the recipient account.
    Role,
    /// `policyArn`.
    ManagedPolicy,
    /// The account of `openIDConnectProviderArn` (or the recipient).
    OidcProviders,
    /// `queueUrl`.
    QueueByUrl,
    /// `queueName` in the recipient account and region.
    QueueByName,
    /// `keyId` and the record's `resources`.
    Key,
    /// `aliasName` in the recipient account and region.
    KeyAlias,
    /// `targetId` (or `accountId`): one account, else the whole organization.
    OrgTarget,
    /// Anywhere in the organization.
    Organization,
    /// `clusterName`, `namespace`, `serviceAccount`.
    NewAssociation,
    /// `clusterName`, `associationId`.
    AssociationById,
    /// `VpcEndpointId` (one or a list, in EC2's request wrapper).
    VpcEndpoints,
}

/// The API calls that change what the operator reads, by event source. The EventBridge rule in
/// config/events/eventbridge-rule.json matches exactly these (a test keeps them equal).
const WATCHED: &[(&str, &[(&str, Names)])] = &[
    (
        "iam.amazonaws.com",
        &[
            ("PutRolePolicy", Names::Role),
            ("DeleteRolePolicy", Names::Role),
            ("AttachRolePolicy", Names::Role),
            ("DetachRolePolicy", Names::Role),
            ("UpdateAssumeRolePolicy", Names::Role),
            ("PutRolePermissionsBoundary", Names::Role),
            ("DeleteRolePermissionsBoundary", Names::Role),
            ("TagRole", Names::Role),
            ("UntagRole", Names::Role),
            ("CreateRole", Names::Role),
            ("DeleteRole", Names::Role),
            ("CreatePolicyVersion", Names::ManagedPolicy),
            ("SetDefaultPolicyVersion", Names::ManagedPolicy),
            ("DeletePolicy", Names::ManagedPolicy),
            ("CreateOpenIDConnectProvider", Names::OidcProviders),
            ("DeleteOpenIDConnectProvider", Names::OidcProviders),
            ("AddClientIDToOpenIDConnectProvider", Names::OidcProviders),
            (
                "RemoveClientIDFromOpenIDConnectProvider",
                Names::OidcProviders,
            ),
        ],
    ),
    (
        "sqs.amazonaws.com",
        &[
            ("SetQueueAttributes", Names::QueueByUrl),
            ("AddPermission", Names::QueueByUrl),
            ("RemovePermission", Names::QueueByUrl),
            ("TagQueue", Names::QueueByUrl),
            ("UntagQueue", Names::QueueByUrl),
            ("DeleteQueue", Names::QueueByUrl),
            ("CreateQueue", Names::QueueByName),
        ],
    ),
    (
        "kms.amazonaws.com",
        &[
            ("PutKeyPolicy", Names::Key),
            ("CreateGrant", Names::Key),
            ("RevokeGrant", Names::Key),
            ("RetireGrant", Names::Key),
            ("DisableKey", Names::Key),
            ("EnableKey", Names::Key),
            ("ScheduleKeyDeletion", Names::Key),
            ("CancelKeyDeletion", Names::Key),
            ("CreateAlias", Names::KeyAlias),
            ("UpdateAlias", Names::KeyAlias),
            ("DeleteAlias", Names::KeyAlias),
        ],
    ),
    (
        "organizations.amazonaws.com",
        &[
            ("AttachPolicy", Names::OrgTarget),
            ("DetachPolicy", Names::OrgTarget),
            ("MoveAccount", Names::OrgTarget),
            ("UpdatePolicy", Names::Organization),
            ("DeletePolicy", Names::Organization),
            ("EnablePolicyType", Names::Organization),
            ("DisablePolicyType", Names::Organization),
        ],
    ),
    (
        "eks.amazonaws.com",
        &[
            ("CreatePodIdentityAssociation", Names::NewAssociation),
            ("UpdatePodIdentityAssociation", Names::AssociationById),
            ("DeletePodIdentityAssociation", Names::AssociationById),
        ],
    ),
    (
        "ec2.amazonaws.com",
        &[
            ("ModifyVpcEndpoint", Names::VpcEndpoints),
            ("DeleteVpcEndpoints", Names::VpcEndpoints),
        ],
    ),
];

/// The watched calls: (event source, event names).
pub fn watched() -> impl Iterator<Item = (&'static str, Vec<&'static str>)> {
    WATCHED
        .iter()
        .map(|(src, names)| (*src, names.iter().map(|(n, _)| *n).collect()))
}

/// The documents an event makes stale (empty: the event does not matter here).
fn stale_documents(
    source: &str,
    name: &str,
    account: &str,
    region: &str,
    req: &Value,
    detail: &Value,
) -> Vec<DocRef> {
    let Some(how) = WATCHED
        .iter()
        .find(|(s, _)| *s == source)
        .and_then(|(_, names)| names.iter().find(|(n, _)| *n == name))
        .map(|(_, how)| *how)
    else {
        return vec![];
    };
    let acct = || account.to_string();
    let reg = || region.to_string();
    let mut out = Vec::new();
    match how {
        Names::Role => out.extend(param(req, "roleName").map(|name| DocRef::Role {
            account: acct(),
            name,
        })),
        Names::ManagedPolicy => {
            out.extend(param(req, "policyArn").map(|arn| DocRef::ManagedPolicy { arn }))
        }
        Names::OidcProviders => out.push(DocRef::OidcProviders {
            account: param(req, "openIDConnectProviderArn")
                .and_then(|a| a.split(':').nth(4).map(str::to_string))
                .filter(|a| !a.is_empty())
                .unwrap_or_else(acct),
        }),
        Names::QueueByUrl => out.extend(
            param(req, "queueUrl")
                .as_deref()
                .and_then(queue_of_url)
                .map(|(account, name)| DocRef::Queue {
                    account,
                    region: reg(),
                    name,
                }),
        ),
        Names::QueueByName => out.extend(param(req, "queueName").map(|name| DocRef::Queue {
            account: acct(),
            region: reg(),
            name,
        })),
        Names::Key => {
            let mut ids: BTreeSet<String> = BTreeSet::new();
            ids.extend(param(req, "keyId").as_deref().and_then(key_id_of));
            // RetireGrant may name only the grant token; the record's resources name the key.
            for r in detail
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                ids.extend(str_at(r, "ARN").as_deref().and_then(key_id_of));
            }
            out.extend(ids.into_iter().map(|key_id| DocRef::Key { key_id }));
        }
        Names::KeyAlias => out.extend(param(req, "aliasName").map(|alias| DocRef::KeyAlias {
            account: acct(),
            region: reg(),
            alias,
        })),
        Names::OrgTarget => out.push(
            match param(req, "targetId").or_else(|| param(req, "accountId")) {
                Some(t) if t.len() == 12 && t.bytes().all(|b| b.is_ascii_digit()) => {
                    DocRef::Account { account: t }
                }
                _ => DocRef::Organization,
            },
        ),
        Names::Organization => out.push(DocRef::Organization),
        Names::NewAssociation => {
            if let (Some(cluster), Some(namespace), Some(service_account)) = (
                param(req, "clusterName"),
                param(req, "namespace"),
                param(req, "serviceAccount"),
            ) {
                out.push(DocRef::Associations {
                    cluster,
                    namespace,
                    service_account,
                });
            }
        }
        Names::AssociationById => {
            if let (Some(cluster), Some(id)) =
                (param(req, "clusterName"), param(req, "associationId"))
            {
                out.push(DocRef::Association { cluster, id });
            }
        }
        Names::VpcEndpoints => {
            let ids: BTreeSet<String> = vpce_ids(req).into_iter().collect();
            out.extend(ids.into_iter().map(|id| DocRef::VpcEndpoint { id }));
        }
    }
    out
}

/// Endpoint ids anywhere in an EC2 request (lists come as `{"item": [...]}` or plain arrays).
fn vpce_ids(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if s.starts_with("vpce-") => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(vpce_ids).collect(),
        Value::Object(o) => o.values().flat_map(vpce_ids).collect(),
        _ => vec![],
    }
}

/// The documents a snapshot was built from: what a change must touch to matter to its
/// binding. Roles are named even when they were not found (creating them matters).
pub fn dependencies(snap: &Snapshot) -> BTreeSet<DocRef> {
    let mut out = BTreeSet::new();
    let ns = &snap.binding.namespace;
    let sa_name = snap.binding.spec.service_account_name.trim();
    let cluster = snap.cluster.cluster_name();
    if let Some(c) = &cluster {
        out.insert(DocRef::Associations {
            cluster: c.clone(),
            namespace: ns.clone(),
            service_account: sa_name.to_string(),
        });
    }
    let role = |arn: &str, evidence: Option<&RoleEvidence>, out: &mut BTreeSet<DocRef>| {
        if let Some((account, name)) = role_of_arn(arn) {
            out.insert(DocRef::Account {
                account: account.clone(),
            });
            out.insert(DocRef::Role { account, name });
        }
        for p in evidence
            .into_iter()
            .flat_map(|r| r.managed_policies.iter().chain(&r.permissions_boundary))
        {
            if let Some(arn) = &p.arn {
                out.insert(DocRef::ManagedPolicy { arn: arn.clone() });
            }
        }
    };
    if let Some(sa) = snap.service_account.as_ref().filter(|s| s.found) {
        match role_source(
            ns,
            sa_name,
            &sa.annotations,
            snap.pod_identity_associations.as_deref(),
        ) {
            RoleSource::Irsa { role_arn } => {
                role(role_arn, snap.role.as_ref(), &mut out);
                if let Some((account, _)) = role_of_arn(role_arn) {
                    out.insert(DocRef::OidcProviders { account });
                }
            }
            RoleSource::PodIdentity { association, .. } => {
                if let (Some(c), Some(id)) = (&cluster, &association.association_id) {
                    out.insert(DocRef::Association {
                        cluster: c.clone(),
                        id: id.clone(),
                    });
                }
                role(&association.role_arn, snap.role.as_ref(), &mut out);
                if let Some(t) = &association.target_role_arn {
                    role(t, snap.target_role.as_ref(), &mut out);
                }
            }
            RoleSource::Nothing { .. } => {}
        }
    }
    if let Some(id) = &snap.binding.spec.vpc_endpoint_id {
        out.insert(DocRef::VpcEndpoint { id: id.clone() });
    }
    // The queue as read (its ARN), else as the binding names it when that is an ARN.
    let queue = snap
        .queue
        .as_ref()
        .and_then(|q| q.arn.as_deref())
        .or(Some(snap.binding.spec.queue.trim()))
        .and_then(|a| QueueArn::parse(a).ok());
    if let Some(q) = queue {
        out.insert(DocRef::Queue {
            account: q.account().to_string(),
            region: q.region().to_string(),
            name: q.name().to_string(),
        });
        out.insert(DocRef::Account {
            account: q.account().to_string(),
        });
        if let Some(k) = snap
            .queue
            .as_ref()
            .and_then(|q| q.kms_master_key_id.as_deref())
        {
            if let Some(alias) = k.rsplit(':').next().filter(|a| a.starts_with("alias/")) {
                out.insert(DocRef::KeyAlias {
                    account: q.account().to_string(),
                    region: q.region().to_string(),
                    alias: alias.to_string(),
                });
            } else if let Some(id) = key_id_of(k) {
                out.insert(DocRef::Key { key_id: id });
            }
        }
    }
    if let Some(k) = &snap.kms_key {
        if let Some(id) = key_id_of(&k.arn) {
            out.insert(DocRef::Key { key_id: id });
        }
        if let Some(acct) = k.arn.split(':').nth(4).filter(|a| a.len() == 12) {
            out.insert(DocRef::Account {
                account: acct.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, name: &str, req: Value) -> String {
        serde_json::json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
            "account": "111111111111", "time": "2026-11-26T04:00:00Z", "region": "us-east-1",
            "resources": [],
            "detail": {"eventVersion": "1.09", "eventTime": "2026-11-26T04:00:00Z",
                "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
                "requestParameters": req, "responseElements": null,
                "recipientAccountId": "111111111111"}
        })
        .to_string()
    }

    #[test]
    fn events_name_what_they_make_stale() {
        let c = parse_message(&event(
            "iam.amazonaws.com",
            "PutRolePolicy",
            serde_json::json!({"roleName": "orders-producer", "policyName": "p", "policyDocument": "{}"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.stale,
            vec![DocRef::Role {
                account: "111111111111".into(),
                name: "orders-producer".into()
            }]
        );
        assert_eq!(c.time, Some(1_795_665_600.0)); // 2026-11-26T04:00:00Z
        // A read-only or unrelated call changes nothing; a failed call neither.
        assert_eq!(
            parse_message(&event(
                "iam.amazonaws.com",
                "GetRole",
                serde_json::json!({"roleName": "x"})
            ))
            .unwrap(),
            None
        );
        let mut failed: Value = serde_json::from_str(&event(
            "iam.amazonaws.com",
            "PutRolePolicy",
            serde_json::json!({"roleName": "x"}),
        ))
        .unwrap();
        failed["detail"]["errorCode"] = "AccessDenied".into();
        assert_eq!(parse_message(&failed.to_string()).unwrap(), None);
        // EC2 wraps its parameters.
        let c = parse_message(&event(
            "ec2.amazonaws.com",
            "ModifyVpcEndpoint",
            serde_json::json!({"ModifyVpcEndpointRequest": {"VpcEndpointId": "vpce-0abc", "PolicyDocument": "{}"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.stale,
            vec![DocRef::VpcEndpoint {
                id: "vpce-0abc".into()
            }]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for body in [
            "",
            "{",
            "[]",
            "42",
            "{\"detail\": 1}",
            "{\"detail\": {}}",
            "\u{0}",
        ] {
            assert!(parse_message(body).is_err(), "{body:?}");
        }
        // SNS-wrapped, with a broken inner message.
        assert!(parse_message("{\"Type\":\"Notification\",\"Message\":\"nope\"}").is_err());
    }

    #[test]
    fn keys_from_ids_arns_but_not_aliases() {
        assert_eq!(
            key_id_of("1234abcd-12ab-34cd-56ef-1234567890ab").as_deref(),
            Some("1234abcd-12ab-34cd-56ef-1234567890ab")
        );
        assert_eq!(
            key_id_of("arn:aws:kms:us-east-1:111111111111:key/1234abcd").as_deref(),
            Some("1234abcd")
        );
        assert_eq!(key_id_of("alias/orders"), None);
        assert_eq!(
            key_id_of("arn:aws:kms:us-east-1:111111111111:alias/orders"),
            None
        );
        assert_eq!(
            queue_of_url("https://sqs.us-east-1.amazonaws.com/111111111111/orders"),
            Some(("111111111111".into(), "orders".into()))
        );
        assert_eq!(
            queue_of_url("https://sqs.us-east-1.amazonaws.com/orders"),
            None
        );
    }
}
