//! The `SqsAccessBinding` custom resource (group `sqsaccess.io`, version `v1alpha1`): the
//! binding spec from the diagnosis layer, and the status the controller writes.
//! `sqs-access-operator crd` prints the CRD; `crds/` holds the committed copy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnosis::BindingSpec;

/// "Service account X in this namespace needs this access to queue Y": the operator checks,
/// continuously, that the account's IAM role can do it, and says why not and how to fix it.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sqsaccess.io",
    version = "v1alpha1",
    kind = "SqsAccessBinding",
    plural = "sqsaccessbindings",
    shortname = "sqsab",
    category = "sqsaccess",
    namespaced,
    status = "SqsAccessBindingStatus",
    derive = "PartialEq",
    doc = "An SqsAccessBinding says that a service account in this namespace needs access to an SQS queue; the operator checks, continuously, that the account's IAM role can do it, and says why not and how to fix it.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Pods","type":"string","jsonPath":".status.conditions[?(@.type==\"WorkloadCredentials\")].status"}"#,
    printcolumn = r#"{"name":"Queue","type":"string","jsonPath":".spec.queue"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(transform = clean_descriptions)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.access) ? size(self.access) : 0) + (has(self.actions) ? size(self.actions) : 0) > 0",
    "message": "name at least one access mode (Send, Receive, GetAttributes) or action"
}]))]
pub struct SqsAccessBindingSpec {
    #[serde(flatten)]
    pub binding: BindingSpec,
}

/// What the operator found, the last time it checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = clean_descriptions)]
pub struct SqsAccessBindingStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True when every needed action is allowed, False when denied, Unknown when it
    /// cannot be decided. Denied: True with the first blocking reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Allowed, Denied or Indeterminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The first reason code (see the README's table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The IAM role the workload gets, and where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleStatus>,
    /// The queue and its encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// Each action checked: decision, deciding layer, reason and statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionStatus>,
    /// What blocks, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReasonStatus>,
    /// The changes that fix it: where, and the statement to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<FixStatus>,
    /// Layers that were not known and so not evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether the service account's pods really run with the checked role (the
    /// WorkloadCredentials condition's details).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadStatus>,
    /// Things that work but deserve attention (e.g. an IRSA annotation that Pod Identity
    /// overrides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When the binding was last checked against AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<Time>,
    /// In memory only (never sent, never in the schema): the digest of the whole status when
    /// the controller's cache keeps only its summary.
    #[serde(skip)]
    #[schemars(skip)]
    pub digest: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// The role the workload acts as (with a Pod Identity target role, the target).
    pub arn: String,
    /// serviceAccountAnnotation (IRSA) or podIdentityAssociation (EKS Pod Identity).
    pub source: String,
    /// IRSA or PodIdentity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The EKS Pod Identity association the role comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The roles assumed in order, when there is more than one (Pod Identity target role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// An IRSA role annotation that is not used because Pod Identity takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_irsa_role: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    pub arn: String,
    /// None, SSE-SQS or SSE-KMS.
    pub encryption: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    /// trust, sqs or kms.
    pub step: String,
    pub action: String,
    /// Allow, ExplicitDeny, ImplicitDeny or Indeterminate.
    pub decision: String,
    /// The layer that denied or lacked an allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The deciding statement: policy, Sid or index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonStatus {
    pub code: String,
    pub layer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixStatus {
    /// Where the change goes, e.g. "the access policy of queue arn:aws:sqs:...".
    pub target: String,
    pub instruction: String,
    /// The statement to add, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// Turns every description in a schema (and its subschemas) into clean paragraphs: doc
/// comments wrap at 100 columns, and `kubectl explain` would show those breaks mid-sentence.
/// The lines of a paragraph are joined with spaces; blank lines still separate paragraphs.
fn clean_descriptions(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::String(d)) = schema.get_mut("description") {
        *d = paragraphs(d);
    }
    schemars::transform::transform_subschemas(&mut clean_descriptions, schema);
}

/// `text` with each paragraph's lines joined by single spaces, paragraphs separated by one
/// blank line.
fn paragraphs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { " " });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// PodsUseCheckedRole, NoPods, StaticCredentialsOverride, PodsNotInjected, PodsNeedRestart,
    /// TokenAudienceMismatch, TokenNotReadable, RoleUnknown, PodIdentityUnsupportedPlacement,
    /// ProxyInterceptsPodIdentityAgent.
    pub reason: String,
    pub pods: PodCountsStatus,
    /// Each problem with up to five of its pods and what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<WorkloadProblemStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCountsStatus {
    /// Running pods of the service account.
    pub total: u32,
    /// Pods that get the checked role.
    pub current: u32,
    /// Pods with another role or mechanism (started before a change): restart them.
    pub stale: u32,
    /// Pods without credentials from EKS (they use the node's role).
    pub not_injected: u32,
    /// Pods whose containers set static keys.
    pub overridden: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProblemStatus {
    pub code: String,
    pub count: u32,
    pub pods: Vec<String>,
    pub message: String,
    /// What to do, e.g. kubectl rollout restart deployment/producer -n orders.
    pub fix: String,
}

/// The CRD as YAML, as `sqs-access-operator crd` prints it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    crate::yaml::to_string(&SqsAccessBinding::crd()).expect("the CRD serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_join_lines_and_keep_blank_line_breaks() {
        assert_eq!(
            paragraphs(
                "the operator checks,\ncontinuously, that it can.\n\n  Second\nparagraph.\n"
            ),
            "the operator checks, continuously, that it can.\n\nSecond paragraph."
        );
        assert_eq!(paragraphs("one line"), "one line");
    }

    /// Every description in the CRD's schema, from the binding spec, the status and the types
    /// they use, is free of line breaks inside a paragraph.
    #[test]
    fn no_description_breaks_mid_sentence() {
        use kube::CustomResourceExt;
        fn walk(v: &serde_json::Value, path: &str, seen: &mut usize) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        if k == "description"
                            && let Some(d) = v.as_str()
                        {
                            *seen += 1;
                            assert!(!d.replace("\n\n", "").contains('\n'), "{path}: {d:?}");
                        }
                        walk(v, &format!("{path}.{k}"), seen);
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, path, seen)),
                _ => {}
            }
        }
        let crd = serde_json::to_value(SqsAccessBinding::crd()).unwrap();
        let mut seen = 0;
        walk(&crd, "crd", &mut seen);
        assert!(seen > 20, "only {seen} descriptions");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let d = spec["description"].as_str().unwrap();
        assert!(d.contains("the operator checks, continuously,"), "{d}");
    }
}
