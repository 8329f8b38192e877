//! The credential step, first half: which role the pods of a service account get, and how.
//! EKS has two mechanisms: IRSA (the `eks.amazonaws.com/role-arn` annotation, a projected
//! token, `sts:AssumeRoleWithWebIdentity`) and Pod Identity (an association in the EKS API;
//! EKS assumes the role for the pod, optionally chaining to a target role). When both are set,
//! Pod Identity wins, as in the EKS pod identity webhook ("container credentials take
//! precedence"). The AWS reader and the diagnosis resolve with the same function.

use std::collections::BTreeMap;

use serde::Serialize;

use super::check::{Diag, ResolvedRole};
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use super::snapshot::{PodIdentityAssociationEvidence, RoleEvidence, Snapshot};
use crate::ids::RoleArn;

/// The IRSA annotations (amazon-eks-pod-identity-webhook).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
pub const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// The service principal EKS Pod Identity assumes roles as.
pub const POD_IDENTITY_PRINCIPAL: &str = "pods.eks.amazonaws.com";

/// How a pod gets its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mechanism {
    #[serde(rename = "IRSA")]
    Irsa,
    PodIdentity,
}

/// Where a service account's role comes from.
#[derive(Debug, Clone, Copy)]
pub enum RoleSource<'a> {
    /// The `eks.amazonaws.com/role-arn` annotation.
    Irsa { role_arn: &'a str },
    /// A Pod Identity association; `ignored_annotation` is an IRSA role that it overrides.
    PodIdentity {
        association: &'a PodIdentityAssociationEvidence,
        ignored_annotation: Option<&'a str>,
    },
    /// Neither. `associations_known`: whether the associations were read (so Pod Identity
    /// is ruled out), or could exist unseen.
    Nothing { associations_known: bool },
}

/// Resolves the role of `namespace/service_account` from its annotations and the cluster's
/// Pod Identity associations (`None`: not read).
pub fn role_source<'a>(
    namespace: &str,
    service_account: &str,
    annotations: &'a BTreeMap<String, String>,
    associations: Option<&'a [PodIdentityAssociationEvidence]>,
) -> RoleSource<'a> {
    let annotation = annotations
        .get(ROLE_ARN_ANNOTATION)
        .map(String::as_str)
        .filter(|a| !a.trim().is_empty());
    let association = associations.and_then(|list| {
        list.iter()
            .find(|a| a.namespace == namespace && a.service_account == service_account)
    });
    match (association, annotation) {
        (Some(association), ignored_annotation) => RoleSource::PodIdentity {
            association,
            ignored_annotation,
        },
        (None, Some(role_arn)) => RoleSource::Irsa { role_arn },
        (None, None) => RoleSource::Nothing {
            associations_known: associations.is_some(),
        },
    }
}

/// The roles a pod of the service account goes through, resolved and read.
pub(super) struct Credentials<'a> {
    pub(super) mechanism: Mechanism,
    /// The role the credentials name (annotation or association `roleArn`).
    pub(super) first_arn: RoleArn,
    pub(super) first: &'a RoleEvidence,
    /// With a Pod Identity target role: that role, which the workload acts as.
    pub(super) target: Option<(RoleArn, &'a RoleEvidence)>,
    pub(super) association: Option<&'a PodIdentityAssociationEvidence>,
    /// IRSA: the token audience.
    pub(super) audience: String,
}

impl Credentials<'_> {
    /// The role the SQS and KMS calls are made as.
    pub(super) fn acting(&self) -> (&RoleArn, &RoleEvidence) {
        match &self.target {
            Some((arn, role)) => (arn, role),
            None => (&self.first_arn, self.first),
        }
    }
}

impl Diag {
    /// Finds the role of the binding's service account, reports why there is none, and checks
    /// that the snapshot holds the roles. `None` when nothing further can be checked.
    pub(super) fn resolve_credentials<'a>(
        &mut self,
        snap: &'a Snapshot,
        sa_name: &str,
    ) -> Option<Credentials<'a>> {
        let ns = snap.binding.namespace.as_str();
        let has_error = |item: &str| snap.evidence_errors.iter().any(|e| e.item == item);
        let Some(sa) = &snap.service_account else {
            if !has_error("serviceAccount") {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("service account {ns}/{sa_name} was not read"),
                ));
            }
            return None;
        };
        let sa_target = FixTarget::ServiceAccount {
            namespace: ns.to_string(),
            name: sa_name.to_string(),
        };
        if !sa.found {
            self.push(
                Finding::new(
                    ReasonCode::ServiceAccountNotFound,
                    DiagLayer::ServiceAccount,
                    format!("service account {ns}/{sa_name} does not exist"),
                )
                .fix(Fix {
                    target: sa_target,
                    instruction: format!(
                        "create service account {sa_name} in namespace {ns}, and give it a role: the annotation {ROLE_ARN_ANNOTATION}: <role ARN> (IRSA) or an EKS Pod Identity association"
                    ),
                    statement: None,
                }),
            );
            return None;
        }
        let cluster = snap
            .cluster
            .cluster_name()
            .unwrap_or_else(|| "<cluster>".into());
        let source = role_source(
            ns,
            sa_name,
            &sa.annotations,
            snap.pod_identity_associations.as_deref(),
        );
        let (mechanism, raw_role, association) = match source {
            RoleSource::Nothing { associations_known } => {
                if associations_known {
                    self.push(
                        Finding::new(
                            ReasonCode::ServiceAccountHasNoRole,
                            DiagLayer::ServiceAccount,
                            format!(
                                "service account {ns}/{sa_name} has no {ROLE_ARN_ANNOTATION} annotation (IRSA) and no EKS Pod Identity association in cluster {cluster}, so its pods get no role of their own (the SDK falls back to the node's role)"
                            ),
                        )
                        .fix(Fix {
                            target: sa_target,
                            instruction: format!(
                                "give it a role, either way: aws eks create-pod-identity-association --cluster-name {cluster} --namespace {ns} --service-account {sa_name} --role-arn <role ARN> (Pod Identity), or kubectl annotate serviceaccount -n {ns} {sa_name} {ROLE_ARN_ANNOTATION}=<role ARN> (IRSA); then restart the pods"
                            ),
                            statement: None,
                        }),
                    );
                } else if !has_error("podIdentityAssociations") {
                    self.push(Finding::new(
                        ReasonCode::PodIdentityAssociationsUnknown,
                        DiagLayer::PodIdentity,
                        format!(
                            "service account {ns}/{sa_name} has no {ROLE_ARN_ANNOTATION} annotation, and the cluster's EKS Pod Identity associations were not read, so whether it gets a role through Pod Identity is unknown (configure cluster.name, or pass --cluster-name)"
                        ),
                    ));
                }
                return None;
            }
            RoleSource::Irsa { role_arn } => {
                if snap.pod_identity_associations.is_none() && !has_error("podIdentityAssociations")
                {
                    self.notes.push(format!(
                        "the cluster's EKS Pod Identity associations were not read: an association for {ns}/{sa_name} would take precedence over its {ROLE_ARN_ANNOTATION} annotation"
                    ));
                }
                (Mechanism::Irsa, role_arn, None)
            }
            RoleSource::PodIdentity {
                association,
                ignored_annotation,
            } => {
                if let Some(irsa) = ignored_annotation {
                    self.warnings.push(format!(
                        "service account {ns}/{sa_name} has both an EKS Pod Identity association ({}) and the IRSA annotation {ROLE_ARN_ANNOTATION}={irsa}: Pod Identity is the one in effect, so pods act as {} (the IRSA role is not used; remove the annotation to avoid confusion)",
                        association.association_id.as_deref().unwrap_or("no id"),
                        association.target_role_arn.as_deref().unwrap_or(&association.role_arn)
                    ));
                }
                (
                    Mechanism::PodIdentity,
                    association.role_arn.as_str(),
                    Some(association),
                )
            }
        };
        let where_from = match association {
            Some(a) => format!(
                "the EKS Pod Identity association {} of {ns}/{sa_name}",
                a.association_id.as_deref().unwrap_or("")
            ),
            None => format!("the {ROLE_ARN_ANNOTATION} annotation of {ns}/{sa_name}"),
        };
        let parse = |d: &mut Diag, raw: &str, what: &str| match RoleArn::parse(raw) {
            Ok(r) => Some(r),
            Err(e) => {
                let (layer, target) = match association {
                    Some(_) => (
                        DiagLayer::PodIdentity,
                        FixTarget::PodIdentityAssociation {
                            cluster: cluster.clone(),
                            namespace: ns.to_string(),
                            service_account: sa_name.to_string(),
                        },
                    ),
                    None => (
                        DiagLayer::ServiceAccount,
                        FixTarget::ServiceAccount {
                            namespace: ns.to_string(),
                            name: sa_name.to_string(),
                        },
                    ),
                };
                d.push(
                    Finding::new(
                        ReasonCode::InvalidRoleArn,
                        layer,
                        format!(
                            "the {what} of {where_from} is invalid: {e}; STS answers \"Request ARN is invalid\""
                        ),
                    )
                    .fix(Fix {
                        target,
                        instruction: format!(
                            "set the {what} to a role ARN such as arn:aws:iam::123456789012:role/NAME"
                        ),
                        statement: None,
                    }),
                );
                None
            }
        };
        let what = if association.is_some() {
            "roleArn"
        } else {
            "role ARN"
        };
        let first_arn = parse(self, raw_role, what)?;
        let target_arn = match association.and_then(|a| a.target_role_arn.as_deref()) {
            Some(t) => Some(parse(self, t, "targetRoleArn")?),
            None => None,
        };
        let audience = sa
            .annotations
            .get(AUDIENCE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
        let mut chain = Vec::new();
        if let Some(t) = &target_arn {
            chain = vec![first_arn.to_string(), t.to_string()];
        }
        self.role = Some(ResolvedRole {
            arn: target_arn.as_ref().unwrap_or(&first_arn).to_string(),
            source: match mechanism {
                Mechanism::Irsa => "serviceAccountAnnotation".into(),
                Mechanism::PodIdentity => "podIdentityAssociation".into(),
            },
            mechanism,
            audience: (mechanism == Mechanism::Irsa).then(|| audience.clone()),
            association_id: association.and_then(|a| a.association_id.clone()),
            chain,
            ignored_irsa_role: match source {
                RoleSource::PodIdentity {
                    ignored_annotation, ..
                } => ignored_annotation.map(str::to_string),
                _ => None,
            },
        });

        // A missing role is fixed where the credentials name it.
        let role_fix_target = match association {
            Some(_) => FixTarget::PodIdentityAssociation {
                cluster: cluster.clone(),
                namespace: ns.to_string(),
                service_account: sa_name.to_string(),
            },
            None => FixTarget::ServiceAccount {
                namespace: ns.to_string(),
                name: sa_name.to_string(),
            },
        };
        let first = self.role_evidence(
            snap.role.as_ref(),
            &first_arn,
            "role",
            &where_from,
            role_fix_target.clone(),
            has_error("role"),
        )?;
        let target = match &target_arn {
            Some(t) => {
                let r = self.role_evidence(
                    snap.target_role.as_ref(),
                    t,
                    "targetRole",
                    &format!("the targetRoleArn of {where_from}"),
                    role_fix_target,
                    has_error("targetRole"),
                )?;
                Some((t.clone(), r))
            }
            None => None,
        };
        Some(Credentials {
            mechanism,
            first_arn,
            first,
            target,
            association,
            audience,
        })
    }

    /// The snapshot's evidence for a role the credentials name: read, and existing.
    fn role_evidence<'a>(
        &mut self,
        role: Option<&'a RoleEvidence>,
        arn: &RoleArn,
        item: &str,
        named_by: &str,
        fix_target: FixTarget,
        errored: bool,
    ) -> Option<&'a RoleEvidence> {
        let Some(role) = role else {
            if !errored {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("role {arn} was not read"),
                ));
            }
            return None;
        };
        if !role.found {
            self.push(
                Finding::new(
                    ReasonCode::RoleNotFound,
                    DiagLayer::TrustPolicy,
                    format!(
                        "role {arn} named by {named_by} does not exist (STS reports this as a generic AccessDenied)"
                    ),
                )
                .fix(Fix {
                    target: fix_target,
                    instruction: format!(
                        "create role {} in account {}, or point {named_by} at an existing role",
                        arn.name(),
                        arn.account()
                    ),
                    statement: None,
                }),
            );
            return None;
        }
        if role.arn != arn.as_str() {
            self.warnings.push(format!(
                "the snapshot's {item} {} differs from {arn} named by {named_by}; evaluating the snapshot's documents",
                role.arn
            ));
        }
        Some(role)
    }
}
