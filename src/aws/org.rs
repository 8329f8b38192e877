//! Organizations reads, as the organization reader role (`organization.readerRoleArn`, in the
//! management account or a delegated administrator): the organization's id and management
//! account, each account's path to the root, and the SCPs and RCPs attached at every level.
//! Cached per target and per policy, so a thousand bindings in one account read its chain once
//! per TTL. Accounts given in the configuration win over what is read.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_organizations::types::{ParentType, PolicyType};
use futures::future::join_all;
use moka::future::Cache;
use tokio::sync::{OnceCell, Semaphore};

use super::error::FetchError;
use super::source::{Fetched, Inner, Svc, evidence_error, fetched, parse_doc};
use crate::config::Config;
use crate::diagnosis::snapshot::{
    EvidenceError, EvidenceErrorKind, NamedDocument, OrgAccountEvidence, OrgLevelEvidence,
    OrganizationEvidence,
};
use crate::ids::{AccountId, Region, RoleArn};

/// AWS allows five levels of OUs under the root; anything deeper is a broken answer.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone)]
pub(super) struct OrgInfo {
    id: String,
    management_account: Option<String>,
}

/// One step up from a child: an OU or the root.
#[derive(Debug, Clone)]
pub(super) struct Parent {
    id: String,
    is_root: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Attached {
    id: String,
    name: Option<String>,
    arn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Scp,
    Rcp,
}

impl Kind {
    fn filter(self) -> PolicyType {
        match self {
            Kind::Scp => PolicyType::ServiceControlPolicy,
            Kind::Rcp => PolicyType::ResourceControlPolicy,
        }
    }
}

/// The reader's client and caches.
pub(crate) struct OrgState {
    pub(super) limit: Semaphore,
    reader: Option<RoleArn>,
    client: OnceCell<aws_sdk_organizations::Client>,
    info: Cache<(), Arc<Fetched<OrgInfo>>>,
    parents: Cache<String, Arc<Fetched<Parent>>>,
    attached: Cache<(String, Kind), Arc<Fetched<Vec<Attached>>>>,
    policies: Cache<String, Arc<Fetched<NamedDocument>>>,
}

impl OrgState {
    pub(super) fn new(cfg: &Config, ttl: Duration) -> OrgState {
        OrgState {
            limit: Semaphore::new(cfg.aws.concurrency.organizations.max(1)),
            reader: cfg
                .organization
                .as_ref()
                .and_then(|o| o.reader_role_arn.clone()),
            client: OnceCell::new(),
            info: super::source::cache(1, ttl),
            parents: super::source::cache(10_000, ttl),
            attached: super::source::cache(10_000, ttl),
            policies: super::source::cache(10_000, ttl),
        }
    }

    /// Forgets what is attached to an account and where it sits (a policy attached or
    /// detached there, or the account moved).
    pub(super) fn invalidate_account(&self, account: &str) {
        let a = account.to_string();
        let b = account.to_string();
        if self
            .attached
            .invalidate_entries_if(move |k, _| k.0 == a)
            .is_err()
            || self
                .parents
                .invalidate_entries_if(move |k, _| *k == b)
                .is_err()
        {
            self.invalidate_all();
        }
    }

    pub(super) fn invalidate_all(&self) {
        self.info.invalidate_all();
        self.parents.invalidate_all();
        self.attached.invalidate_all();
        self.policies.invalidate_all();
    }
}

/// Organizations has one endpoint per partition.
fn org_region(home: &Region) -> &'static str {
    match home.partition() {
        "aws-cn" => "cn-northwest-1",
        "aws-us-gov" => "us-gov-west-1",
        _ => "us-east-1",
    }
}

impl Inner {
    /// The organization evidence for `accounts`: `configured` (from the configuration) plus,
    /// with a reader role, what the reader reads for the accounts the configuration does not
    /// give; and what could not be read.
    pub(super) async fn organization(
        &self,
        configured: Option<OrganizationEvidence>,
        accounts: &[AccountId],
    ) -> (Option<OrganizationEvidence>, Vec<EvidenceError>) {
        let Some(reader) = &self.org.reader else {
            return (configured, vec![]);
        };
        let mut wanted: Vec<&AccountId> = Vec::new();
        for a in accounts {
            let given = configured.as_ref().is_some_and(|o| {
                o.accounts.contains_key(a.as_str())
                    || o.outside_accounts.iter().any(|x| x == a.as_str())
            });
            if !given && !wanted.contains(&a) {
                wanted.push(a);
            }
        }
        if wanted.is_empty() && configured.as_ref().is_some_and(|o| o.id.is_some()) {
            return (configured, vec![]);
        }
        let info = match self.org_info().await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return (
                    configured,
                    vec![EvidenceError {
                        item: "organization".into(),
                        kind: EvidenceErrorKind::Unreadable,
                        message: format!(
                            "the organization reader role {reader} is in no organization (AWSOrganizationsNotInUseException): organization.readerRoleArn must name a role in the management account or a delegated administrator"
                        ),
                        permission: None,
                    }],
                );
            }
            Err(e) => return (configured, vec![evidence_error("organization", &e)]),
        };
        let mut org = configured.unwrap_or_default();
        if org.id.is_none() {
            org.id = Some(info.id.clone());
        }
        let mut errors = Vec::new();
        let read = join_all(wanted.iter().map(|a| self.org_account(&info, a))).await;
        for (a, r) in wanted.iter().zip(read) {
            match r {
                Ok(Some(ev)) => {
                    org.accounts.insert(a.to_string(), ev);
                }
                Ok(None) => org.outside_accounts.push(a.to_string()),
                Err(e) => errors.push(evidence_error(&format!("organization ({a})"), &e)),
            }
        }
        (Some(org), errors)
    }

    /// One account: `None` when it is not in the organization.
    async fn org_account(
        &self,
        info: &OrgInfo,
        account: &AccountId,
    ) -> Result<Option<OrgAccountEvidence>, FetchError> {
        // Path: the account's parents up to the root.
        let mut chain = Vec::new();
        let mut child = account.to_string();
        loop {
            let Some(p) = self.org_parent(&child).await? else {
                if chain.is_empty() {
                    return Ok(None);
                }
                return Err(FetchError::Unavailable {
                    message: format!(
                        "organizations:ListParents lost {child} on the way to the root of {}",
                        info.id
                    ),
                });
            };
            let root = p.is_root;
            child = p.id.clone();
            chain.push(p);
            if root {
                break;
            }
            if chain.len() > MAX_DEPTH {
                return Err(FetchError::Unavailable {
                    message: format!(
                        "organizations:ListParents did not reach the root from {account}"
                    ),
                });
            }
        }
        chain.reverse();
        let mut path = format!("{}/", info.id);
        for p in &chain {
            path.push_str(&p.id);
            path.push('/');
        }
        // SCPs and RCPs never apply to the management account.
        if info.management_account.as_deref() == Some(account.as_str()) {
            return Ok(Some(OrgAccountEvidence {
                path: Some(path),
                scps: None,
                rcps: None,
                management_account: true,
            }));
        }
        let mut targets: Vec<String> = chain.into_iter().map(|p| p.id).collect();
        targets.push(account.to_string());
        let (scps, rcps) = tokio::join!(
            self.org_levels(&targets, Kind::Scp),
            self.org_levels(&targets, Kind::Rcp)
        );
        let mut scps = scps?;
        // While SCPs are enabled every root, OU and account keeps at least one attached (AWS
        // refuses to detach the last): a level without any means SCPs are not enabled.
        if scps.iter().any(|l| l.policies.is_empty()) {
            scps.clear();
        }
        Ok(Some(OrgAccountEvidence {
            path: Some(path),
            scps: Some(scps),
            rcps: Some(rcps?),
            management_account: false,
        }))
    }

    async fn org_levels(
        &self,
        targets: &[String],
        kind: Kind,
    ) -> Result<Vec<OrgLevelEvidence>, FetchError> {
        join_all(targets.iter().map(|t| async move {
            let attached = self.org_attached(t, kind).await?.unwrap_or_default();
            let policies = join_all(attached.iter().map(|p| self.org_policy(p)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            Ok(OrgLevelEvidence {
                target: t.clone(),
                policies,
            })
        }))
        .await
        .into_iter()
        .collect()
    }

    async fn org_client(&self) -> &aws_sdk_organizations::Client {
        self.org
            .client
            .get_or_init(|| async {
                let reader = self.org.reader.as_ref().expect("only called with a reader");
                let provider = aws_config::sts::AssumeRoleProvider::builder(reader.as_str())
                    .session_name("sqs-access-operator-org")
                    .configure(&self.base)
                    .build()
                    .await;
                let conf = self
                    .base
                    .to_builder()
                    .region(aws_config::Region::new(org_region(&self.home_region)))
                    .credentials_provider(
                        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                    )
                    .build();
                aws_sdk_organizations::Client::new(&conf)
            })
            .await
    }

    /// The organization's id and management account; `None`: the reader is in none.
    async fn org_info(&self) -> Result<Option<OrgInfo>, FetchError> {
        self.cached(&self.org.info, "organization", (), || async {
            let c = self.org_client().await;
            fetched(
                self.call(
                    Svc::Org,
                    "DescribeOrganization",
                    "organizations:DescribeOrganization",
                    c.describe_organization().send(),
                )
                .await
                .and_then(|o| {
                    let org = o.organization().ok_or_else(|| FetchError::Unavailable {
                        message: "DescribeOrganization answered without an organization".into(),
                    })?;
                    Ok(OrgInfo {
                        id: org
                            .id()
                            .ok_or_else(|| FetchError::Unavailable {
                                message: "DescribeOrganization answered without an id".into(),
                            })?
                            .to_string(),
                        management_account: org.master_account_id().map(str::to_string),
                    })
                }),
            )
        })
        .await
    }

    /// The parent of an account or OU; `None`: not in the organization.
    async fn org_parent(&self, child: &str) -> Result<Option<Parent>, FetchError> {
        self.cached(
            &self.org.parents,
            "orgParent",
            child.to_string(),
            || async {
                let c = self.org_client().await;
                let out = self
                    .call(
                        Svc::Org,
                        "ListParents",
                        "organizations:ListParents",
                        c.list_parents().child_id(child).send(),
                    )
                    .await;
                fetched(out.and_then(|o| {
                    let p = o.parents().first().ok_or(FetchError::NotFound)?;
                    Ok(Parent {
                        id: p
                            .id()
                            .ok_or_else(|| FetchError::Unavailable {
                                message: "ListParents answered without a parent id".into(),
                            })?
                            .to_string(),
                        is_root: p.r#type() == Some(&ParentType::Root),
                    })
                }))
            },
        )
        .await
    }

    /// The policies of one kind attached directly to a root, OU or account.
    async fn org_attached(
        &self,
        target: &str,
        kind: Kind,
    ) -> Result<Option<Vec<Attached>>, FetchError> {
        let key = (target.to_string(), kind);
        self.cached(&self.org.attached, "orgAttachedPolicies", key, || async {
            let c = self.org_client().await;
            fetched(
                self.call(
                    Svc::Org,
                    "ListPoliciesForTarget",
                    "organizations:ListPoliciesForTarget",
                    c.list_policies_for_target()
                        .target_id(target)
                        .filter(kind.filter())
                        .into_paginator()
                        .send()
                        .collect::<Result<Vec<_>, _>>(),
                )
                .await
                .map(|pages| {
                    pages
                        .iter()
                        .flat_map(|page| page.policies())
                        .filter_map(|p| {
                            Some(Attached {
                                id: p.id()?.to_string(),
                                name: p.name().map(str::to_string),
                                arn: p.arn().map(str::to_string),
                            })
                        })
                        .collect()
                }),
            )
        })
        .await
    }

    /// A policy's document, shared between the levels that attach it; `None`: deleted since.
    async fn org_policy(&self, p: &Attached) -> Result<Option<NamedDocument>, FetchError> {
        self.cached(&self.org.policies, "orgPolicy", p.id.clone(), || async {
            let c = self.org_client().await;
            fetched(
                self.call(
                    Svc::Org,
                    "DescribePolicy",
                    "organizations:DescribePolicy",
                    c.describe_policy().policy_id(&p.id).send(),
                )
                .await
                .and_then(|o| {
                    let content = o.policy().and_then(|p| p.content()).ok_or_else(|| {
                        FetchError::Unavailable {
                            message: format!("DescribePolicy {} answered without content", p.id),
                        }
                    })?;
                    let name = p.name.clone().unwrap_or_else(|| p.id.clone());
                    Ok(NamedDocument {
                        name: Some(name.clone()),
                        arn: p.arn.clone(),
                        document: parse_doc(content, &format!("organization policy {name}"))?,
                    })
                }),
            )
        })
        .await
    }
}
