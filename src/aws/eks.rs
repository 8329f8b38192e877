//! EKS reads: the cluster the operator runs in, and its Pod Identity associations for a
//! service account.

use futures::future::join_all;

use super::SnapshotInput;
use super::error::FetchError;
use super::source::{Inner, Svc, fetched, parse_doc};
use crate::diagnosis::snapshot::{ClusterEvidence, PodIdentityAssociationEvidence};
use crate::ids::Region;

impl Inner {
    /// The cluster whose Pod Identity associations count: its name (the input's, else the
    /// configuration's), region, account and ARN.
    pub(super) async fn cluster(&self, input: &SnapshotInput) -> ClusterEvidence {
        let cfg = &self.cfg.cluster;
        let name = input.cluster_name.clone().or_else(|| cfg.name.clone());
        // The configured ARN describes the configured cluster only.
        let arn = cfg
            .arn
            .clone()
            .filter(|_| input.cluster_name.is_none() || input.cluster_name == cfg.name);
        let mut c = ClusterEvidence {
            oidc_issuer: input.oidc_issuer.clone(),
            name,
            arn,
            account: None,
            region: None,
        };
        if c.name.is_none() {
            return c;
        }
        c.region = Some(
            c.cluster_region()
                .or_else(|| cfg.region.clone())
                .unwrap_or_else(|| self.home_region.to_string()),
        );
        if c.cluster_account().is_none() {
            // The operator runs in the cluster's account.
            c.account = self.home_account().await.map(|a| a.to_string());
        }
        c
    }

    pub(super) async fn associations(
        &self,
        cluster: &str,
        region: &Region,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<Vec<PodIdentityAssociationEvidence>>, FetchError> {
        let key = (
            cluster.to_string(),
            region.to_string(),
            namespace.to_string(),
            service_account.to_string(),
        );
        self.cached(
            &self.associations,
            "podIdentityAssociations",
            key,
            || async {
                fetched(
                    self.fetch_associations(cluster, region, namespace, service_account)
                        .await,
                )
            },
        )
        .await
    }

    pub(super) async fn fetch_associations(
        &self,
        cluster: &str,
        region: &Region,
        namespace: &str,
        service_account: &str,
    ) -> Result<Vec<PodIdentityAssociationEvidence>, FetchError> {
        let c = self.clients_as(None, region).await;
        let summaries = self
            .call(
                Svc::Eks,
                "ListPodIdentityAssociations",
                "eks:ListPodIdentityAssociations",
                c.eks
                    .list_pod_identity_associations()
                    .cluster_name(cluster)
                    .namespace(namespace)
                    .service_account(service_account)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?;
        let c = &c;
        let described = join_all(
            summaries
                .iter()
                .filter(|a| {
                    a.namespace() == Some(namespace) && a.service_account() == Some(service_account)
                })
                .filter_map(|a| a.association_id())
                .map(|id| async move {
                    self.call(
                        Svc::Eks,
                        "DescribePodIdentityAssociation",
                        "eks:DescribePodIdentityAssociation",
                        c.eks
                            .describe_pod_identity_association()
                            .cluster_name(cluster)
                            .association_id(id)
                            .send(),
                    )
                    .await
                }),
        )
        .await;
        let mut out = Vec::new();
        for d in described {
            let a = match d {
                Ok(o) => match o.association {
                    Some(a) => a,
                    None => continue,
                },
                // Deleted between the list and the describe.
                Err(FetchError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let Some(role_arn) = a.role_arn() else {
                continue;
            };
            out.push(PodIdentityAssociationEvidence {
                association_id: a.association_id().map(str::to_string),
                association_arn: a.association_arn().map(str::to_string),
                namespace: a.namespace().unwrap_or(namespace).to_string(),
                service_account: a.service_account().unwrap_or(service_account).to_string(),
                role_arn: role_arn.to_string(),
                target_role_arn: a.target_role_arn().map(str::to_string),
                external_id: a.external_id().map(str::to_string),
                disable_session_tags: a.disable_session_tags().unwrap_or(false),
                policy: a
                    .policy()
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| parse_doc(p, "the association's session policy"))
                    .transpose()?,
                modified_at: a
                    .modified_at()
                    .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            });
        }
        Ok(out)
    }
}
