//! EC2 reads: the interface VPC endpoint a binding names (`spec.vpcEndpointId`): its policy,
//! VPC, service and state. A `vpcEndpoints:` entry in the configuration wins over what is read.

use super::error::FetchError;
use super::source::{Inner, Svc, evidence_error, fetched, full_access, parse_doc};
use crate::diagnosis::snapshot::{
    Document, EvidenceError, EvidenceErrorKind, NetworkEvidence, NetworkPath,
};
use crate::ids::{AccountId, Region};

/// What `ec2:DescribeVpcEndpoints` says about one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct VpcEndpointInfo {
    vpc_id: Option<String>,
    service_name: Option<String>,
    state: Option<String>,
    policy: Document,
}

impl Inner {
    /// The network evidence for endpoint `id`, read in `account` (the workload's; `None`: the
    /// operator's own) and `region`, and what could not be read.
    pub(super) async fn network(
        &self,
        id: &str,
        account: Option<&AccountId>,
        region: &Region,
    ) -> (NetworkEvidence, Option<EvidenceError>) {
        let mut n = NetworkEvidence {
            path: NetworkPath::VpcEndpoint,
            vpc_endpoint_id: Some(id.to_string()),
            found: true,
            service_name: None,
            state: None,
            vpc_id: None,
            vpc_endpoint_policy: None,
            source_ip: None,
        };
        if let Some(e) = self.cfg.vpc_endpoints.get(id) {
            n.vpc_id = e.vpc_id.clone();
            n.vpc_endpoint_policy = Some(e.policy.clone().unwrap_or_else(full_access));
            return (n, None);
        }
        let owner = match account {
            Some(a) => Some(a.clone()),
            None => self.home_account().await,
        };
        let key = (owner.clone(), region.to_string(), id.to_string());
        let got = self
            .cached(&self.endpoints, "vpcEndpoint", key, || async {
                fetched(self.fetch_endpoint(id, owner.as_ref(), region).await)
            })
            .await;
        match got {
            Ok(Some(e)) => {
                n.vpc_id = e.vpc_id;
                n.service_name = e.service_name;
                n.state = e.state;
                n.vpc_endpoint_policy = Some(e.policy);
                (n, None)
            }
            Ok(None) => {
                // DescribeVpcEndpoints only sees the caller's own account: "not found" means
                // something only when the operator reads the workload's account as its owner.
                let as_owner = match &owner {
                    Some(a) => self.reads_as_owner(a).await,
                    None => false,
                };
                if as_owner {
                    n.found = false;
                    (n, None)
                } else {
                    let where_ = owner
                        .as_ref()
                        .map(|a| format!("account {a}"))
                        .unwrap_or_else(|| "the operator's account".into());
                    (
                        n,
                        Some(EvidenceError {
                            item: "vpcEndpoint".into(),
                            kind: EvidenceErrorKind::Unreadable,
                            message: format!(
                                "VPC endpoint {id} is not in the account the operator reads ({where_} in {region} is read with the operator's own credentials): add a reader role for the VPC's account to aws.readerRoles, or the endpoint to vpcEndpoints in the configuration"
                            ),
                            permission: None,
                        }),
                    )
                }
            }
            Err(e) => (n, Some(evidence_error("vpcEndpoint", &e))),
        }
    }

    async fn fetch_endpoint(
        &self,
        id: &str,
        account: Option<&AccountId>,
        region: &Region,
    ) -> Result<VpcEndpointInfo, FetchError> {
        let c = self.clients_as(account, region).await;
        let out = self
            .call(
                Svc::Ec2,
                "DescribeVpcEndpoints",
                "ec2:DescribeVpcEndpoints",
                c.ec2.describe_vpc_endpoints().vpc_endpoint_ids(id).send(),
            )
            .await?;
        let Some(e) = out
            .vpc_endpoints()
            .iter()
            .find(|e| e.vpc_endpoint_id() == Some(id))
        else {
            return Err(FetchError::NotFound);
        };
        // An endpoint without a policy document has the default full-access policy.
        let policy = match e.policy_document().filter(|p| !p.trim().is_empty()) {
            Some(p) => parse_doc(p, &format!("the policy of VPC endpoint {id}"))?,
            None => full_access(),
        };
        Ok(VpcEndpointInfo {
            vpc_id: e.vpc_id().map(str::to_string),
            service_name: e.service_name().map(str::to_string),
            state: e.state().map(|s| s.as_str().to_string()),
            policy,
        })
    }
}
