//! The snapshot: everything known about one workload identity and one queue, as plain data.
//! It is a documented, versioned file format (`apiVersion: sqsaccess.io/v1alpha1`,
//! `kind: AccessSnapshot`), written by hand or dumped by the operator for a bug report. Policy
//! documents may be objects or strings exactly as AWS returns them (URL-encoded from IAM, JSON
//! text inside SQS attributes).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::access::AccessMode;
use super::spec::BindingSpec;
use crate::policy::Policy;

pub const API_VERSION: &str = "sqsaccess.io/v1alpha1";
pub const KIND: &str = "AccessSnapshot";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    pub api_version: String,
    pub kind: String,
    /// When the evidence was read (RFC 3339); it becomes `aws:CurrentTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<String>,
    /// The binding diagnosed. A snapshot has a binding or a `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingEvidence>,
    /// Instead of a binding: one principal's call (what `explain` evaluates), for any IAM
    /// principal, not only a Kubernetes workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestEvidence>,
    /// `None`: the service account was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountEvidence>,
    #[serde(default)]
    pub cluster: ClusterEvidence,
    /// The EKS Pod Identity associations of the cluster for the binding's service account;
    /// `None`: not read (then whether one exists is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity_associations: Option<Vec<PodIdentityAssociationEvidence>>,
    /// The role the service account's credentials name: the `eks.amazonaws.com/role-arn`
    /// annotation's (IRSA) or the Pod Identity association's `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleEvidence>,
    /// The IAM user a request's principal is (or, for a federated user, the user that called
    /// `sts:GetFederationToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserEvidence>,
    /// The Pod Identity association's `targetRoleArn`: EKS assumes `role` first, then this
    /// role with it, and the workload acts as this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role: Option<RoleEvidence>,
    /// The IAM OIDC providers registered in the role's account; `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_providers: Option<Vec<OidcProviderEvidence>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<KmsKeyEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkEvidence>,
    /// The pods that run as the binding's service account; `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<PodEvidence>>,
    /// Extra request context keys known for this workload (e.g. `aws:SourceIp`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_context: BTreeMap<String, StringOrList>,
    /// What could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_errors: Vec<EvidenceError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindingEvidence {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub spec: BindingSpec,
}

/// One principal's call to SQS, instead of a binding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestEvidence {
    /// The caller as AWS names it: an IAM user or role ARN, a role session
    /// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`), a federated user
    /// (`arn:aws:sts::ACCOUNT:federated-user/NAME`), or a service principal (`sns.amazonaws.com`).
    pub principal: String,
    /// The queue: an ARN or a URL.
    pub queue: String,
    /// Access modes, as in a binding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessMode>,
    /// SQS actions (API names such as `SendMessageBatch` are read as the action they need).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The interface VPC endpoint the call went through, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_endpoint_id: Option<String>,
    /// The session policy of a role session or federated user, when known (passed to
    /// `sts:AssumeRole` or `sts:GetFederationToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<Document>,
}

/// An IAM user, as `iam:GetUser` and the user and group policy reads return it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserEvidence {
    pub arn: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub found: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline_policies: Vec<NamedDocument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policies: Vec<NamedDocument>,
    /// The user's groups, with their policies (a user's permissions include its groups').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<NamedDocument>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// An IAM group of a user, with its policies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupEvidence {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline_policies: Vec<NamedDocument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policies: Vec<NamedDocument>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountEvidence {
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub found: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterEvidence {
    /// The cluster's OIDC issuer URL, e.g. `https://oidc.eks.us-east-1.amazonaws.com/id/ABC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer: Option<String>,
    /// The EKS cluster's name (Pod Identity's `eks-cluster-name` session tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `arn:aws:eks:REGION:ACCOUNT:cluster/NAME` (`eks-cluster-arn`, `aws:SourceArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The cluster's account (`aws:SourceAccount`); taken from `arn` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The cluster's region; taken from `arn` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl ClusterEvidence {
    /// The cluster ARN: given, or built from name, region and account when all are known.
    pub fn cluster_arn(&self) -> Option<String> {
        if let Some(a) = &self.arn {
            return Some(a.clone());
        }
        let (name, region, account) = (
            self.name.as_ref()?,
            self.region.as_ref()?,
            self.account.as_ref()?,
        );
        let partition = crate::ids::Region::parse(region).ok()?.partition();
        Some(format!(
            "arn:{partition}:eks:{region}:{account}:cluster/{name}"
        ))
    }

    fn arn_part(&self, i: usize) -> Option<String> {
        let arn = self.arn.as_ref()?;
        arn.split(':')
            .nth(i)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    }

    pub fn cluster_account(&self) -> Option<String> {
        self.account.clone().or_else(|| self.arn_part(4))
    }

    pub fn cluster_region(&self) -> Option<String> {
        self.region.clone().or_else(|| self.arn_part(3))
    }

    pub fn cluster_name(&self) -> Option<String> {
        self.name.clone().or_else(|| {
            self.arn_part(5)
                .and_then(|r| r.strip_prefix("cluster/").map(str::to_string))
        })
    }
}

/// An EKS Pod Identity association, as `eks:DescribePodIdentityAssociation` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentityAssociationEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_arn: Option<String>,
    pub namespace: String,
    pub service_account: String,
    /// The role EKS assumes (with `sts:AssumeRole` and `sts:TagSession`, as
    /// `pods.eks.amazonaws.com`).
    pub role_arn: String,
    /// A role that `role_arn` then assumes for the workload (role chaining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    /// What EKS passes as `sts:ExternalId` when it assumes the target role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// No `eks-cluster-arn`, `kubernetes-namespace`, ... session tags.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_session_tags: bool,
    /// The association's session policy: it intersects with the role's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Document>,
    /// When the association last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleEvidence {
    pub arn: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<Document>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline_policies: Vec<NamedDocument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policies: Vec<NamedDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<NamedDocument>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub document: Document,
}

impl NamedDocument {
    /// The name users know the policy by.
    pub fn display_name(&self, fallback: &str) -> String {
        self.name
            .clone()
            .or_else(|| self.arn.clone())
            .unwrap_or_else(|| fallback.to_string())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProviderEvidence {
    /// `oidc.eks.us-east-1.amazonaws.com/id/ABC`, with or without `https://`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub found: bool,
    /// The queue's access policy; `None` when the queue has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Document>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_master_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs_managed_sse_enabled: Option<bool>,
    /// `None`: tags not read (then `aws:ResourceTag/*` is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyManager {
    Aws,
    Customer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KmsKeyEvidence {
    pub arn: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub found: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default = "customer")]
    pub key_manager: KeyManager,
    /// `Enabled`, `Disabled`, `PendingDeletion`, ...
    #[serde(default = "enabled")]
    pub key_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Document>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantEvidence>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub grantee_principal: String,
    pub operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
}

/// The organization, keyed by member account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Accounts whose organization policies are known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, OrgAccountEvidence>,
    /// Accounts known not to be members of this organization: for them `aws:PrincipalOrgID`
    /// and `aws:ResourceOrgID` are absent (not unknown), and this organization's SCPs and RCPs
    /// do not apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside_accounts: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgAccountEvidence {
    /// The account's organization path, `o-abc/r-ab12/ou-ab12-11111111/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SCPs attached on the path, root first; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scps: Option<Vec<OrgLevelEvidence>>,
    /// RCPs attached on the path, root first; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcps: Option<Vec<OrgLevelEvidence>>,
    /// The organization's management account is not governed by SCPs or RCPs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub management_account: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgLevelEvidence {
    pub target: String,
    #[serde(default)]
    pub policies: Vec<NamedDocument>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkPath {
    /// Through an interface VPC endpoint for SQS.
    VpcEndpoint,
    /// Through a NAT gateway or the internet, to the public endpoint.
    Internet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkEvidence {
    pub path: NetworkPath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_endpoint_id: Option<String>,
    /// `false`: `ec2:DescribeVpcEndpoints` answered that the endpoint does not exist.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub found: bool,
    /// The endpoint's service, e.g. `com.amazonaws.us-east-1.sqs`; `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The endpoint's state (`available`, `pending`, `rejected`, ...); `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// `None`: the endpoint's policy was not read. An endpoint created without a policy has
    /// the default full-access policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_endpoint_policy: Option<Document>,
    /// The public source address when going through NAT, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

/// A pod of the binding's service account, reduced to what decides its AWS credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodEvidence {
    pub name: String,
    /// `metadata.creationTimestamp` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// What re-creates the pod (a ReplicaSet is named by its Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PodOwner>,
    /// `status.phase`; `Succeeded` and `Failed` pods do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Being deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// `spec.securityContext.fsGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    /// `spec.securityContext.runAsUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// Projected service account token volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_volumes: Vec<TokenVolumeEvidence>,
    #[serde(default)]
    pub containers: Vec<ContainerEvidence>,
    /// Where it runs, when that is somewhere EKS Pod Identity is not available: `fargate`
    /// (`spec.schedulerName: fargate-scheduler`, or a `fargate-` node) or `windows`
    /// (`spec.os.name`, or the `kubernetes.io/os` node selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodOwner {
    pub kind: String,
    pub name: String,
}

/// A projected `serviceAccountToken` volume source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenVolumeEvidence {
    /// The volume's name (`aws-iam-token` when the EKS webhook injected it).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerEvidence {
    pub name: String,
    /// An init container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The AWS credential variables it sets (`AWS_ROLE_ARN`, `AWS_ACCESS_KEY_ID`, ...); a
    /// value from a Secret or ConfigMap reads `valueFrom:secretKeyRef:NAME/KEY`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets and ConfigMaps whose every key becomes a variable (`envFrom`): they may hold
    /// credentials the operator cannot see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<String>,
    /// Mounts of token volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountEvidence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountEvidence {
    pub volume: String,
    pub path: String,
}

/// Evidence that could not be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceError {
    /// What: `role`, `rolePolicies`, `oidcProviders`, `queue`, `kmsKey`, `serviceAccount`, ...
    pub item: String,
    pub kind: EvidenceErrorKind,
    pub message: String,
    /// The permission the reader lacked, for `Unreadable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvidenceErrorKind {
    /// The reader was denied (its own permissions).
    Unreadable,
    /// Throttling, timeouts, 5xx, no connection.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// A policy document: kept as JSON (for dumps) and parsed (for evaluation; shared, so that
/// evaluating it again does not copy it).
#[derive(Debug, Clone)]
pub struct Document {
    pub json: serde_json::Value,
    pub policy: Arc<Policy>,
}

impl Document {
    pub fn parse_str(text: &str) -> Result<Document, String> {
        let policy = Policy::from_aws_str(text).map_err(|e| e.to_string())?;
        let decoded = crate::policy::document::decode_for_display(text);
        let json = serde_json::from_str(&decoded).unwrap_or(serde_json::Value::String(decoded));
        Ok(Document {
            json,
            policy: Arc::new(policy),
        })
    }
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(_) => v.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "a policy document must be an object or a string holding one",
                ));
            }
        };
        Document::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn customer() -> KeyManager {
    KeyManager::Customer
}
fn enabled() -> String {
    "Enabled".into()
}

/// A snapshot file that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for SnapshotError {}

impl Snapshot {
    /// A binding's snapshot before anything was read from AWS: the binding, its service
    /// account and the cluster's issuer, as the operator knows them.
    pub fn unread(
        namespace: String,
        name: Option<String>,
        spec: crate::diagnosis::spec::BindingSpec,
        service_account: Option<ServiceAccountEvidence>,
        oidc_issuer: Option<String>,
    ) -> Snapshot {
        Snapshot {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            captured_at: Some(
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            binding: Some(BindingEvidence {
                namespace,
                name,
                spec,
            }),
            request: None,
            user: None,
            service_account,
            cluster: ClusterEvidence {
                oidc_issuer,
                ..Default::default()
            },
            pod_identity_associations: None,
            role: None,
            target_role: None,
            oidc_providers: None,
            queue: None,
            kms_key: None,
            organization: None,
            network: None,
            pods: None,
            request_context: Default::default(),
            evidence_errors: vec![],
        }
    }

    /// Reads a snapshot from YAML (or JSON, which is YAML too): a binding's, or one request's.
    pub fn from_yaml_str(text: &str) -> Result<Snapshot, SnapshotError> {
        let snap = Snapshot::evidence_from_yaml_str(text)?;
        match (&snap.binding, &snap.request) {
            (None, None) => Err(SnapshotError {
                path: "binding".into(),
                message: "missing: a snapshot describes a binding (binding:) or one principal's call (request:)".into(),
            }),
            (Some(_), Some(_)) => Err(SnapshotError {
                path: "request".into(),
                message: "a snapshot describes a binding or one principal's call, not both: remove binding: or request:".into(),
            }),
            _ => Ok(snap),
        }
    }

    /// Reads a snapshot that may hold evidence only, with neither a binding nor a request
    /// (`explain` takes the request from an error text).
    pub fn evidence_from_yaml_str(text: &str) -> Result<Snapshot, SnapshotError> {
        let snap: Snapshot = crate::yaml::from_str(text).map_err(|e| SnapshotError {
            path: e.path,
            message: e.message,
        })?;
        if snap.api_version != API_VERSION {
            return Err(SnapshotError {
                path: "apiVersion".into(),
                message: format!("must be \"{API_VERSION}\", got \"{}\"", snap.api_version),
            });
        }
        if snap.kind != KIND {
            return Err(SnapshotError {
                path: "kind".into(),
                message: format!("must be \"{KIND}\", got \"{}\"", snap.kind),
            });
        }
        Ok(snap)
    }

    /// The binding's namespace (empty for a request).
    pub fn namespace(&self) -> &str {
        self.binding.as_ref().map_or("", |b| b.namespace.as_str())
    }

    pub fn to_yaml(&self) -> String {
        crate::yaml::to_string(self).unwrap_or_default()
    }
}
