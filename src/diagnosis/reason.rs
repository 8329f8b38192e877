//! The diagnosis vocabulary: reason codes (a stable API, documented in the README, never
//! renamed), layers, findings with their fixes, and the verdict.

use serde::Serialize;

use crate::policy::{Residual, StatementRef};

/// Why access works or does not. Serialized as the variant name (`IdentityPolicyDoesNotAllow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ReasonCode {
    Allowed,
    // The binding itself.
    InvalidSpec,
    // Kubernetes and the IRSA identity.
    ServiceAccountNotFound,
    ServiceAccountHasNoRole,
    InvalidRoleArn,
    RoleNotFound,
    OidcIssuerUnknown,
    OidcProviderNotRegistered,
    OidcProviderAudienceMismatch,
    TrustPolicyDoesNotAllowServiceAccount,
    TrustPolicyAudienceMismatch,
    ExplicitDenyInTrustPolicy,
    // EKS Pod Identity.
    PodIdentityAssociationsUnknown,
    PodIdentityTrustPolicyDoesNotAllow,
    PodIdentityTargetRoleNotAssumable,
    PodIdentitySessionPolicyDoesNotAllow,
    ExplicitDenyInSessionPolicy,
    // SQS authorization.
    QueueNotFound,
    IdentityPolicyDoesNotAllow,
    ExplicitDenyInIdentityPolicy,
    PermissionsBoundaryDoesNotAllow,
    ExplicitDenyInPermissionsBoundary,
    ScpDoesNotAllow,
    ExplicitDenyInScp,
    RcpDoesNotAllow,
    ExplicitDenyInRcp,
    QueuePolicyDoesNotAllowCrossAccount,
    ExplicitDenyInQueuePolicy,
    VpcEndpointPolicyDoesNotAllow,
    ExplicitDenyInVpcEndpointPolicy,
    ActionNotAllowedCrossAccount,
    ListQueuesNeedsWildcardResource,
    // SSE-KMS.
    KmsKeyNotFound,
    KmsKeyDisabled,
    KmsKeyPendingDeletion,
    KmsKeyPolicyDoesNotAllow,
    ExplicitDenyInKmsKeyPolicy,
    KmsAwsManagedKeyCrossAccount,
    // Not decidable.
    DependsOnRequestContext,
    EvidenceUnreadable,
    AwsUnavailable,
}

impl ReasonCode {
    /// What a finding with this code does to the verdict.
    pub fn outcome(self) -> Outcome {
        use ReasonCode::*;
        match self {
            Allowed => Outcome::Allowed,
            DependsOnRequestContext
            | EvidenceUnreadable
            | AwsUnavailable
            | OidcIssuerUnknown
            | PodIdentityAssociationsUnknown => Outcome::Indeterminate,
            _ => Outcome::Denied,
        }
    }

    pub fn as_str(self) -> String {
        format!("{self:?}")
    }
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Outcome {
    Allowed,
    Indeterminate,
    Denied,
}

/// Where a finding sits on the path from pod to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DiagLayer {
    Spec,
    ServiceAccount,
    PodIdentity,
    OidcProvider,
    TrustPolicy,
    IdentityPolicy,
    PermissionsBoundary,
    SessionPolicy,
    Scp,
    Rcp,
    QueuePolicy,
    VpcEndpointPolicy,
    KmsKey,
    KmsKeyPolicy,
    Evidence,
}

impl DiagLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            DiagLayer::Spec => "spec",
            DiagLayer::ServiceAccount => "serviceAccount",
            DiagLayer::PodIdentity => "podIdentity",
            DiagLayer::SessionPolicy => "sessionPolicy",
            DiagLayer::OidcProvider => "oidcProvider",
            DiagLayer::TrustPolicy => "trustPolicy",
            DiagLayer::IdentityPolicy => "identityPolicy",
            DiagLayer::PermissionsBoundary => "permissionsBoundary",
            DiagLayer::Scp => "scp",
            DiagLayer::Rcp => "rcp",
            DiagLayer::QueuePolicy => "queuePolicy",
            DiagLayer::VpcEndpointPolicy => "vpcEndpointPolicy",
            DiagLayer::KmsKey => "kmsKey",
            DiagLayer::KmsKeyPolicy => "kmsKeyPolicy",
            DiagLayer::Evidence => "evidence",
        }
    }
}

/// Where a fix goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FixTarget {
    /// An identity-based policy of the role (inline policy, or a managed policy attached to it).
    RolePolicy {
        role: String,
    },
    TrustPolicy {
        role: String,
    },
    PermissionsBoundary {
        policy: String,
    },
    QueuePolicy {
        queue: String,
    },
    KeyPolicy {
        key: String,
    },
    Scp {
        target: String,
    },
    Rcp {
        target: String,
    },
    VpcEndpointPolicy {
        endpoint: String,
    },
    ServiceAccount {
        namespace: String,
        name: String,
    },
    OidcProvider {
        account: String,
        issuer: String,
    },
    /// An EKS Pod Identity association (its role, target role or session policy).
    PodIdentityAssociation {
        cluster: String,
        namespace: String,
        #[serde(rename = "serviceAccount")]
        service_account: String,
    },
    Queue {
        queue: String,
    },
    KmsKey {
        key: String,
    },
    Binding,
}

impl FixTarget {
    /// "the trust policy of role arn:..." — for messages.
    pub fn describe(&self) -> String {
        match self {
            FixTarget::RolePolicy { role } => format!("an identity policy of role {role}"),
            FixTarget::TrustPolicy { role } => format!("the trust policy of role {role}"),
            FixTarget::PermissionsBoundary { policy } => {
                format!("the permissions boundary policy {policy}")
            }
            FixTarget::QueuePolicy { queue } => format!("the access policy of queue {queue}"),
            FixTarget::KeyPolicy { key } => format!("the key policy of KMS key {key}"),
            FixTarget::Scp { target } => {
                format!("the service control policies attached to {target}")
            }
            FixTarget::Rcp { target } => {
                format!("the resource control policies attached to {target}")
            }
            FixTarget::VpcEndpointPolicy { endpoint } => {
                format!("the policy of VPC endpoint {endpoint}")
            }
            FixTarget::ServiceAccount { namespace, name } => {
                format!("service account {namespace}/{name}")
            }
            FixTarget::OidcProvider { account, issuer } => {
                format!("the IAM OIDC providers of account {account} (issuer {issuer})")
            }
            FixTarget::PodIdentityAssociation {
                cluster,
                namespace,
                service_account,
            } => format!(
                "the EKS Pod Identity association of {namespace}/{service_account} in cluster {cluster}"
            ),
            FixTarget::Queue { queue } => format!("queue {queue}"),
            FixTarget::KmsKey { key } => format!("KMS key {key}"),
            FixTarget::Binding => "the SqsAccessBinding".into(),
        }
    }
}

/// A change that fixes a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fix {
    pub target: FixTarget,
    /// What to do, in words.
    pub instruction: String,
    /// The minimal statement to add, when the fix is a policy statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<serde_json::Value>,
}

/// One thing the diagnosis found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub code: ReasonCode,
    pub layer: DiagLayer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub message: String,
    /// The statement that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<StatementRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Residual>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

impl Finding {
    pub fn new(code: ReasonCode, layer: DiagLayer, message: impl Into<String>) -> Self {
        Finding {
            code,
            layer,
            action: None,
            message: message.into(),
            statement: None,
            depends_on: Vec::new(),
            fix: None,
        }
    }
    pub fn action(mut self, a: impl Into<String>) -> Self {
        self.action = Some(a.into());
        self
    }
    pub fn statement(mut self, s: Option<StatementRef>) -> Self {
        self.statement = s;
        self
    }
    pub fn fix(mut self, f: Fix) -> Self {
        self.fix = Some(f);
        self
    }
}
