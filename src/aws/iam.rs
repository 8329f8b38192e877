//! IAM reads: roles (trust policy, inline and attached policies, boundary, tags), managed
//! policies (shared between roles), and the account's OIDC providers.

use futures::future::join_all;

use super::error::FetchError;
use super::source::{Inner, ProviderDetail, ProviderList, Svc, fetched, parse_doc};
use crate::diagnosis::check::normalize_issuer;
use crate::diagnosis::snapshot::{Document, NamedDocument, OidcProviderEvidence, RoleEvidence};
use crate::ids::{AccountId, RoleArn};

impl Inner {
    pub(super) async fn role(&self, role: &RoleArn) -> Result<Option<RoleEvidence>, FetchError> {
        self.cached(&self.roles, "role", role.clone(), || async {
            fetched(self.fetch_role(role).await)
        })
        .await
    }

    pub(super) async fn fetch_role(&self, role: &RoleArn) -> Result<RoleEvidence, FetchError> {
        let c = self.clients(role.account(), &self.home_region).await;
        let name = role.name();
        let out = self
            .call(
                Svc::Iam,
                "GetRole",
                "iam:GetRole",
                c.iam.get_role().role_name(name).send(),
            )
            .await?;
        let r = out.role().ok_or_else(|| FetchError::Unavailable {
            message: "GetRole answered without a role".into(),
        })?;
        let trust_policy = r
            .assume_role_policy_document()
            .map(|d| parse_doc(d, "the trust policy"))
            .transpose()?;
        let tags = r
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        let boundary_arn = r
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string);

        let names: Vec<String> = self
            .call(
                Svc::Iam,
                "ListRolePolicies",
                "iam:ListRolePolicies",
                c.iam
                    .list_role_policies()
                    .role_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let c = &c;
        let inline = join_all(names.iter().map(|p| async move {
            let out = self
                .call(
                    Svc::Iam,
                    "GetRolePolicy",
                    "iam:GetRolePolicy",
                    c.iam
                        .get_role_policy()
                        .role_name(name)
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
                "ListAttachedRolePolicies",
                "iam:ListAttachedRolePolicies",
                c.iam
                    .list_attached_role_policies()
                    .role_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let managed = join_all(attached.iter().map(|a| async move {
            let arn = a.policy_arn().unwrap_or_default().to_string();
            let doc = self.managed_policy(role.account(), &arn).await?;
            Ok::<_, FetchError>(NamedDocument {
                name: a.policy_name().map(str::to_string),
                arn: Some(arn),
                document: doc,
            })
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

        let permissions_boundary = match boundary_arn {
            Some(arn) => Some(NamedDocument {
                name: arn.rsplit('/').next().map(str::to_string),
                document: self.managed_policy(role.account(), &arn).await?,
                arn: Some(arn),
            }),
            None => None,
        };
        Ok(RoleEvidence {
            arn: role.to_string(),
            found: true,
            trust_policy,
            inline_policies: inline,
            managed_policies: managed,
            permissions_boundary,
            tags,
        })
    }

    /// A managed policy's default version, shared between the roles that attach it.
    pub(super) async fn managed_policy(
        &self,
        account: &AccountId,
        arn: &str,
    ) -> Result<Document, FetchError> {
        let got = self
            .cached(
                &self.policies,
                "policy",
                (account.clone(), arn.to_string()),
                || async { fetched(self.fetch_managed_policy(account, arn).await) },
            )
            .await?;
        got.ok_or_else(|| FetchError::Unavailable {
            message: format!("policy {arn} is attached but was not found"),
        })
    }

    pub(super) async fn fetch_managed_policy(
        &self,
        account: &AccountId,
        arn: &str,
    ) -> Result<Document, FetchError> {
        let c = self.clients(account, &self.home_region).await;
        let p = self
            .call(
                Svc::Iam,
                "GetPolicy",
                "iam:GetPolicy",
                c.iam.get_policy().policy_arn(arn).send(),
            )
            .await?;
        let version = p
            .policy()
            .and_then(|p| p.default_version_id())
            .ok_or_else(|| FetchError::Unavailable {
                message: format!("GetPolicy for {arn} named no default version"),
            })?
            .to_string();
        let v = self
            .call(
                Svc::Iam,
                "GetPolicyVersion",
                "iam:GetPolicyVersion",
                c.iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(&version)
                    .send(),
            )
            .await?;
        let doc = v
            .policy_version()
            .and_then(|v| v.document())
            .ok_or_else(|| FetchError::Unavailable {
                message: format!("GetPolicyVersion for {arn} returned no document"),
            })?;
        parse_doc(doc, &format!("policy {arn}"))
    }

    pub(super) async fn providers(
        &self,
        account: &AccountId,
        issuer: &str,
    ) -> Result<Vec<OidcProviderEvidence>, FetchError> {
        let list = self
            .cached(
                &self.providers,
                "oidcProviders",
                account.clone(),
                || async {
                    let c = self.clients(account, &self.home_region).await;
                    fetched(
                        self.call(
                            Svc::Iam,
                            "ListOpenIDConnectProviders",
                            "iam:ListOpenIDConnectProviders",
                            c.iam.list_open_id_connect_providers().send(),
                        )
                        .await
                        .map(|o| ProviderList {
                            arns: o
                                .open_id_connect_provider_list()
                                .iter()
                                .filter_map(|p| p.arn().map(str::to_string))
                                .collect(),
                        }),
                    )
                },
            )
            .await?;
        let list = list.unwrap_or(ProviderList { arns: vec![] });
        let mut out = Vec::new();
        for arn in &list.arns {
            let url = arn
                .split_once(":oidc-provider/")
                .map(|(_, u)| u.to_string())
                .unwrap_or_default();
            if normalize_issuer(&url) != issuer {
                out.push(OidcProviderEvidence {
                    url,
                    client_ids: vec![],
                    arn: Some(arn.clone()),
                });
                continue;
            }
            // Only the provider for this cluster's issuer needs its details.
            let detail = self
                .cached(
                    &self.provider_details,
                    "oidcProvider",
                    arn.clone(),
                    || async {
                        let c = self.clients(account, &self.home_region).await;
                        fetched(
                            self.call(
                                Svc::Iam,
                                "GetOpenIDConnectProvider",
                                "iam:GetOpenIDConnectProvider",
                                c.iam
                                    .get_open_id_connect_provider()
                                    .open_id_connect_provider_arn(arn)
                                    .send(),
                            )
                            .await
                            .map(|o| ProviderDetail {
                                url: o.url().unwrap_or(&url).to_string(),
                                client_ids: o.client_id_list().to_vec(),
                            }),
                        )
                    },
                )
                .await?;
            if let Some(d) = detail {
                out.push(OidcProviderEvidence {
                    url: d.url,
                    client_ids: d.client_ids,
                    arn: Some(arn.clone()),
                });
            }
        }
        Ok(out)
    }
}
