//! Snapshots for any principal's call (`explain --live`): the caller's IAM documents (an IAM
//! user with its groups, or a role) next to what a binding's snapshot holds about the queue, its
//! key, the organization and the network. User and group reads are cached and coalesced like
//! roles; managed policies share the role reads' cache.

use std::time::Duration;

use futures::future::join_all;
use moka::future::Cache;

use super::SnapshotInput;
use super::error::FetchError;
use super::source::{AwsSource, Fetched, Inner, Svc, evidence_error, fetched, parse_doc};
use crate::diagnosis::snapshot::{
    GroupEvidence, NamedDocument, RequestEvidence, RoleEvidence, Snapshot, UserEvidence,
};
use crate::diagnosis::{BindingSpec, SqsAction};
use crate::ids::{AccountId, RoleArn, UserArn};
use crate::policy::{Principal, PrincipalKind};

/// One principal's call, as `explain` selected it.
#[derive(Debug, Clone)]
pub struct RequestInput {
    /// The caller: an IAM user or role ARN, a role session, or a service principal.
    pub principal: String,
    /// The queue: ARN or URL (its host is never requested).
    pub queue: String,
    /// SQS actions.
    pub actions: Vec<String>,
    pub vpc_endpoint_id: Option<String>,
}

/// The caches of user and group reads.
pub(super) struct PrincipalCaches {
    users: Cache<UserArn, std::sync::Arc<Fetched<UserEvidence>>>,
    groups: Cache<(AccountId, String), std::sync::Arc<Fetched<GroupEvidence>>>,
}

impl PrincipalCaches {
    pub(super) fn new(ttl: Duration) -> Self {
        PrincipalCaches {
            users: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            groups: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub(super) fn invalidate_all(&self) {
        self.users.invalidate_all();
        self.groups.invalidate_all();
    }
}

impl AwsSource {
    /// Reads what one principal's call needs: the queue, its key, the organization and network
    /// (as for a binding), and the caller's IAM documents.
    pub async fn request_snapshot(&self, input: &RequestInput) -> Snapshot {
        self.inner.build_request(input).await
    }
}

/// A placeholder service account: the binding assembly reads the queue, key, organization
/// and network; the request replaces the binding.
const NO_SERVICE_ACCOUNT: &str = "request";

impl Inner {
    async fn build_request(&self, input: &RequestInput) -> Snapshot {
        let principal = Principal::parse(&input.principal);
        // Everything but the caller, exactly as for a binding (no service account: no role).
        let shared = SnapshotInput {
            namespace: String::new(),
            binding_name: None,
            spec: BindingSpec {
                service_account_name: NO_SERVICE_ACCOUNT.into(),
                queue: input.queue.clone(),
                access: vec![],
                actions: input
                    .actions
                    .iter()
                    .map(|a| {
                        SqsAction::for_operation(a)
                            .map(|x| x.as_str().to_string())
                            .unwrap_or_else(|| a.clone())
                    })
                    .collect(),
                vpc_endpoint_id: input.vpc_endpoint_id.clone(),
            },
            service_account: None,
            oidc_issuer: None,
            cluster_name: None,
            pods: None,
        };
        let (mut snap, caller) = tokio::join!(self.build(&shared), self.caller(&principal));
        snap.binding = None;
        snap.service_account = None;
        snap.cluster = Default::default();
        snap.request = Some(RequestEvidence {
            principal: input.principal.clone(),
            queue: input.queue.clone(),
            access: vec![],
            actions: input.actions.clone(),
            vpc_endpoint_id: input.vpc_endpoint_id.clone(),
            session_policy: None,
        });
        match caller {
            Caller::Role(Ok(Some(r))) => snap.role = Some(r),
            Caller::Role(Ok(None)) => {
                snap.role = Some(RoleEvidence {
                    arn: role_arn(&principal)
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    found: false,
                    trust_policy: None,
                    inline_policies: vec![],
                    managed_policies: vec![],
                    permissions_boundary: None,
                    tags: Default::default(),
                })
            }
            Caller::Role(Err(e)) => snap.evidence_errors.push(evidence_error("role", &e)),
            Caller::User(_, Ok(Some(u))) => snap.user = Some(u),
            Caller::User(arn, Ok(None)) => {
                snap.user = Some(UserEvidence {
                    arn: arn.to_string(),
                    found: false,
                    inline_policies: vec![],
                    managed_policies: vec![],
                    groups: vec![],
                    permissions_boundary: None,
                    tags: Default::default(),
                })
            }
            Caller::User(_, Err(e)) => snap.evidence_errors.push(evidence_error("user", &e)),
            Caller::Nothing => {}
        }
        snap
    }

    async fn caller(&self, p: &Principal) -> Caller {
        match &p.kind {
            PrincipalKind::AssumedRole { .. } | PrincipalKind::Role { .. } => match role_arn(p) {
                Some(r) => Caller::Role(self.role(&r).await),
                None => Caller::Nothing,
            },
            PrincipalKind::User => match UserArn::parse(&p.arn) {
                Ok(u) => {
                    let got = self.user(&u).await;
                    Caller::User(u, got)
                }
                Err(_) => Caller::Nothing,
            },
            // A service has no IAM documents; a federated user's IAM user is not named by its
            // ARN; the diagnosis says what it lacks.
            _ => Caller::Nothing,
        }
    }

    pub(super) async fn user(&self, u: &UserArn) -> Result<Option<UserEvidence>, FetchError> {
        self.cached(&self.principals.users, "user", u.clone(), || async {
            fetched(self.fetch_user(u).await)
        })
        .await
    }

    async fn fetch_user(&self, u: &UserArn) -> Result<UserEvidence, FetchError> {
        let c = self.clients(u.account(), &self.home_region).await;
        let name = u.name();
        let out = self
            .call(
                Svc::Iam,
                "GetUser",
                "iam:GetUser",
                c.iam.get_user().user_name(name).send(),
            )
            .await?;
        let user = out.user().ok_or_else(|| FetchError::Unavailable {
            message: "GetUser answered without a user".into(),
        })?;
        let tags = user
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        let boundary_arn = user
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string);
        let c = &c;
        let names: Vec<String> = self
            .call(
                Svc::Iam,
                "ListUserPolicies",
                "iam:ListUserPolicies",
                c.iam
                    .list_user_policies()
                    .user_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let inline = join_all(names.iter().map(|p| async move {
            let out = self
                .call(
                    Svc::Iam,
                    "GetUserPolicy",
                    "iam:GetUserPolicy",
                    c.iam
                        .get_user_policy()
                        .user_name(name)
                        .policy_name(p)
                        .send(),
                )
                .await?;
            Ok::<_, FetchError>(NamedDocument {
                name: Some(p.clone()),
                arn: None,
                document: parse_doc(out.policy_document(), &format!("inline policy {p}"))?,
            })
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let attached = self
            .call(
                Svc::Iam,
                "ListAttachedUserPolicies",
                "iam:ListAttachedUserPolicies",
                c.iam
                    .list_attached_user_policies()
                    .user_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let managed = self
            .attached(
                u.account(),
                attached
                    .iter()
                    .map(|a| (a.policy_name(), a.policy_arn()))
                    .collect(),
            )
            .await?;
        let groups = self
            .call(
                Svc::Iam,
                "ListGroupsForUser",
                "iam:ListGroupsForUser",
                c.iam
                    .list_groups_for_user()
                    .user_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let groups = join_all(groups.iter().map(|g| async move {
            let got = self
                .group(u.account(), g.group_name(), Some(g.arn()))
                .await?;
            got.ok_or_else(|| FetchError::Unavailable {
                message: format!("group {} of user {name} was not found", g.group_name()),
            })
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let permissions_boundary = match boundary_arn {
            Some(arn) => Some(NamedDocument {
                name: arn.rsplit('/').next().map(str::to_string),
                document: self.managed_policy(u.account(), &arn).await?,
                arn: Some(arn),
            }),
            None => None,
        };
        Ok(UserEvidence {
            arn: u.to_string(),
            found: true,
            inline_policies: inline,
            managed_policies: managed,
            groups,
            permissions_boundary,
            tags,
        })
    }

    /// A group's policies, shared between the users in it.
    async fn group(
        &self,
        account: &AccountId,
        name: &str,
        arn: Option<&str>,
    ) -> Result<Option<GroupEvidence>, FetchError> {
        self.cached(
            &self.principals.groups,
            "group",
            (account.clone(), name.to_string()),
            || async { fetched(self.fetch_group(account, name, arn).await) },
        )
        .await
    }

    async fn fetch_group(
        &self,
        account: &AccountId,
        name: &str,
        arn: Option<&str>,
    ) -> Result<GroupEvidence, FetchError> {
        let c = self.clients(account, &self.home_region).await;
        let c = &c;
        let names: Vec<String> = self
            .call(
                Svc::Iam,
                "ListGroupPolicies",
                "iam:ListGroupPolicies",
                c.iam
                    .list_group_policies()
                    .group_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let inline = join_all(names.iter().map(|p| async move {
            let out = self
                .call(
                    Svc::Iam,
                    "GetGroupPolicy",
                    "iam:GetGroupPolicy",
                    c.iam
                        .get_group_policy()
                        .group_name(name)
                        .policy_name(p)
                        .send(),
                )
                .await?;
            Ok::<_, FetchError>(NamedDocument {
                name: Some(p.clone()),
                arn: None,
                document: parse_doc(
                    out.policy_document(),
                    &format!("inline policy {p} of group {name}"),
                )?,
            })
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let attached = self
            .call(
                Svc::Iam,
                "ListAttachedGroupPolicies",
                "iam:ListAttachedGroupPolicies",
                c.iam
                    .list_attached_group_policies()
                    .group_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let managed = self
            .attached(
                account,
                attached
                    .iter()
                    .map(|a| (a.policy_name(), a.policy_arn()))
                    .collect(),
            )
            .await?;
        Ok(GroupEvidence {
            name: name.to_string(),
            arn: arn.map(str::to_string),
            inline_policies: inline,
            managed_policies: managed,
        })
    }

    /// Attached managed policies (name, ARN), read through the shared policy cache.
    async fn attached(
        &self,
        account: &AccountId,
        list: Vec<(Option<&str>, Option<&str>)>,
    ) -> Result<Vec<NamedDocument>, FetchError> {
        join_all(list.into_iter().map(|(name, arn)| async move {
            let arn = arn.unwrap_or_default().to_string();
            let doc = self.managed_policy(account, &arn).await?;
            Ok::<_, FetchError>(NamedDocument {
                name: name.map(str::to_string),
                arn: Some(arn),
                document: doc,
            })
        }))
        .await
        .into_iter()
        .collect()
    }
}

enum Caller {
    Role(Result<Option<RoleEvidence>, FetchError>),
    User(UserArn, Result<Option<UserEvidence>, FetchError>),
    Nothing,
}

/// The role of a role or role-session principal (a session ARN names no path; IAM reads roles
/// by name).
fn role_arn(p: &Principal) -> Option<RoleArn> {
    let (PrincipalKind::AssumedRole { role_name } | PrincipalKind::Role { role_name }) = &p.kind
    else {
        return None;
    };
    let partition = crate::policy::Arn::parse(&p.arn)
        .ok()?
        .partition
        .to_string();
    let account = p.account.as_deref()?;
    RoleArn::parse(&format!("arn:{partition}:iam::{account}:role/{role_name}")).ok()
}
