//! The network step: the interface VPC endpoint the workload reaches SQS through
//! (`spec.vpcEndpointId`). It must exist, serve SQS in the queue's region and be available;
//! its policy then takes part in every SQS evaluation.

use super::check::{Diag, Who};
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use crate::policy::NamedPolicy;

impl Diag {
    /// The endpoint's policy for the SQS evaluations, after checking the endpoint itself;
    /// `None` when there is no endpoint, it was not read, or it cannot carry the calls.
    pub(super) fn vpc_endpoint_policy(&mut self, who: &Who) -> Option<NamedPolicy> {
        let id = who.vpce.as_deref()?;
        let Some(n) = who
            .snap
            .network
            .as_ref()
            .filter(|n| n.vpc_endpoint_id.as_deref() == Some(id))
        else {
            self.notes.push(format!(
                "VPC endpoint {id} was not read: endpoint policy not evaluated"
            ));
            return None;
        };
        let region = who.spec.queue.arn.region();
        let fix = |instruction: String| Fix {
            target: FixTarget::Binding,
            instruction,
            statement: None,
        };
        if !n.found {
            self.push(
                Finding::new(
                    ReasonCode::VpcEndpointNotFound,
                    DiagLayer::VpcEndpoint,
                    format!(
                        "VPC endpoint {id} does not exist in the workload's account and region (ec2:DescribeVpcEndpoints): the workload cannot reach SQS through it"
                    ),
                )
                .fix(fix(format!(
                    "correct spec.vpcEndpointId to the SQS interface endpoint of the workload's VPC (service com.amazonaws.{region}.sqs), or remove it if the workload reaches SQS another way"
                ))),
            );
            return None;
        }
        if let Some(service) = &n.service_name
            && !serves_sqs(service, region.as_str())
        {
            self.push(
                Finding::new(
                    ReasonCode::VpcEndpointNotForSqs,
                    DiagLayer::VpcEndpoint,
                    format!(
                        "VPC endpoint {id} is an endpoint for {service}, not for SQS in the queue's region (com.amazonaws.{region}.sqs): the workload's calls to the queue do not go through it"
                    ),
                )
                .fix(fix(format!(
                    "set spec.vpcEndpointId to the workload VPC's endpoint for com.amazonaws.{region}.sqs (create one if there is none), or remove it if the workload reaches SQS another way"
                ))),
            );
            return None;
        }
        if let Some(state) = &n.state
            && !state.eq_ignore_ascii_case("available")
        {
            self.push(
                Finding::new(
                    ReasonCode::VpcEndpointNotAvailable,
                    DiagLayer::VpcEndpoint,
                    format!(
                        "VPC endpoint {id} is {state}, not available: requests through it fail until it is"
                    ),
                )
                .fix(fix(format!(
                    "wait for VPC endpoint {id} to become available, accept it if it is pendingAcceptance, or set spec.vpcEndpointId to an available SQS endpoint"
                ))),
            );
        }
        match &n.vpc_endpoint_policy {
            Some(p) => Some(NamedPolicy::new(
                format!("policy of VPC endpoint {id}"),
                p.policy.clone(),
            )),
            None => {
                self.notes.push(format!(
                    "the policy of VPC endpoint {id} was not read: endpoint policy not evaluated"
                ));
                None
            }
        }
    }
}

/// Whether an endpoint service name is SQS's in `region` (standard or FIPS; `cn.` prefixed in
/// the China regions).
fn serves_sqs(service: &str, region: &str) -> bool {
    let s = service.trim().to_ascii_lowercase();
    let s = s.strip_prefix("cn.").unwrap_or(&s);
    s == format!("com.amazonaws.{region}.sqs") || s == format!("com.amazonaws.{region}.sqs-fips")
}

#[cfg(test)]
mod tests {
    use super::serves_sqs;

    #[test]
    fn sqs_service_names() {
        assert!(serves_sqs("com.amazonaws.us-east-1.sqs", "us-east-1"));
        assert!(serves_sqs("com.amazonaws.us-east-1.sqs-fips", "us-east-1"));
        assert!(serves_sqs("cn.com.amazonaws.cn-north-1.sqs", "cn-north-1"));
        assert!(!serves_sqs("com.amazonaws.us-west-2.sqs", "us-east-1"));
        assert!(!serves_sqs("com.amazonaws.us-east-1.s3", "us-east-1"));
        assert!(!serves_sqs("com.amazonaws.us-east-1.sqsx", "us-east-1"));
    }
}
