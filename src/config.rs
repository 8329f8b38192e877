//! The operator's configuration file (`--config FILE`): AWS settings, per-account reader roles,
//! the organization reader role (and organization policies and VPC endpoints given by hand,
//! which override what is read), the recheck interval and the cache TTL. `config/operator.yaml` is the
//! documented example.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::diagnosis::snapshot::{Document, OrgAccountEvidence, OrganizationEvidence};
use crate::ids::{AccountId, RoleArn};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub aws: AwsConfig,
    /// The organization: a role to read it with, and/or its SCPs and RCPs per member account
    /// as in snapshots (these override what is read).
    #[serde(default)]
    pub organization: Option<OrganizationConfig>,
    /// VPC endpoints by id (these override what `ec2:DescribeVpcEndpoints` answers).
    #[serde(default)]
    pub vpc_endpoints: BTreeMap<String, VpcEndpointConfig>,
    /// The cluster's OIDC issuer URL; discovered from the API server when absent.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// The EKS cluster the operator runs in: its Pod Identity associations are read with it.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// How often every binding is re-checked (e.g. `5m`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub recheck_interval: Option<Duration>,
    #[serde(default)]
    pub webhook: WebhookConfig,
    /// The queue AWS's change events arrive on (EventBridge → SQS).
    #[serde(default)]
    pub events: EventsConfig,
}

/// Change events: CloudTrail records of policy changes, delivered by EventBridge to an SQS queue
/// the operator long-polls. See config/events/.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventsConfig {
    /// The queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) or ARN; unset: no events.
    #[serde(default)]
    pub queue_url: Option<String>,
    /// The queue's region when its URL does not say (default: aws.region).
    #[serde(default)]
    pub region: Option<String>,
    /// At most this many messages are read before their changes are applied together (a burst
    /// of changes to one role causes one fetch of it).
    #[serde(default = "thousand")]
    pub max_batch: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue_url: None,
            region: None,
            max_batch: 1000,
        }
    }
}

fn thousand() -> usize {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsConfig {
    /// Region for the home account's clients; `AWS_REGION` otherwise.
    #[serde(default)]
    pub region: Option<String>,
    /// An endpoint for every service (an emulator); `AWS_ENDPOINT_URL` otherwise.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Roles the operator assumes to read documents in other accounts.
    #[serde(default)]
    pub reader_roles: BTreeMap<AccountId, RoleArn>,
    #[serde(default = "d60", deserialize_with = "duration")]
    pub cache_ttl: Duration,
    #[serde(default = "d5", deserialize_with = "duration")]
    pub call_timeout: Duration,
    /// Attempts per call, retries included (throttling and 5xx are retried with backoff).
    #[serde(default = "three")]
    pub max_attempts: u32,
    #[serde(default)]
    pub concurrency: Concurrency,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            endpoint_url: None,
            reader_roles: BTreeMap::new(),
            cache_ttl: d60(),
            call_timeout: d5(),
            max_attempts: 3,
            concurrency: Concurrency::default(),
        }
    }
}

/// The EKS cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name; without it Pod Identity associations are not read.
    #[serde(default)]
    pub name: Option<String>,
    /// The cluster's region (default: `aws.region`, else `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// The cluster's ARN (default: `eks:DescribeCluster`'s, else built from the name, the
    /// region and the operator's own account).
    #[serde(default)]
    pub arn: Option<String>,
}

/// The organization: read from AWS with `reader_role_arn`, and/or given here. Accounts given
/// here win over what is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationConfig {
    /// A role in the management account or a delegated administrator that allows
    /// `organizations:DescribeOrganization`, `ListParents`, `ListPoliciesForTarget` and
    /// `DescribePolicy`; the operator assumes it to read SCPs and RCPs.
    #[serde(default)]
    pub reader_role_arn: Option<RoleArn>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub accounts: BTreeMap<String, OrgAccountEvidence>,
    #[serde(default)]
    pub outside_accounts: Vec<String>,
}

impl OrganizationConfig {
    /// What the configuration itself says, in the snapshot's form; `None` when it only names
    /// a reader.
    pub fn evidence(&self) -> Option<OrganizationEvidence> {
        if self.id.is_none() && self.accounts.is_empty() && self.outside_accounts.is_empty() {
            return None;
        }
        Some(OrganizationEvidence {
            id: self.id.clone(),
            accounts: self.accounts.clone(),
            outside_accounts: self.outside_accounts.clone(),
        })
    }
}

/// Concurrent calls per service.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Concurrency {
    #[serde(default = "four")]
    pub iam: usize,
    #[serde(default = "sixteen")]
    pub sqs: usize,
    #[serde(default = "sixteen")]
    pub kms: usize,
    #[serde(default = "four")]
    pub eks: usize,
    /// Organizations allows few calls a second per account.
    #[serde(default = "two")]
    pub organizations: usize,
    #[serde(default = "four")]
    pub ec2: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            iam: 4,
            sqs: 16,
            kms: 16,
            eks: 4,
            organizations: 2,
            ec2: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpcEndpointConfig {
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// The endpoint's policy; absent means the default full-access policy.
    #[serde(default)]
    pub policy: Option<Document>,
}

/// The webhook's behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// Admit `Indeterminate` verdicts (with a warning). Default true.
    #[serde(default = "yes")]
    pub admit_indeterminate: bool,
    /// Admit bindings whose service account does not exist yet (with a warning). Default true.
    #[serde(default = "yes")]
    pub admit_missing_service_account: bool,
    /// The evaluation deadline, well below the webhook's timeoutSeconds.
    #[serde(default = "d2", deserialize_with = "duration")]
    pub deadline: Duration,
    /// Concurrent evaluations.
    #[serde(default = "sixteen")]
    pub max_concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            admit_indeterminate: true,
            admit_missing_service_account: true,
            deadline: d2(),
            max_concurrency: 16,
        }
    }
}

fn yes() -> bool {
    true
}
fn two() -> usize {
    2
}
fn three() -> u32 {
    3
}
fn four() -> usize {
    4
}
fn sixteen() -> usize {
    16
}
fn d60() -> Duration {
    Duration::from_secs(60)
}
fn d5() -> Duration {
    Duration::from_secs(5)
}
fn d2() -> Duration {
    Duration::from_secs(2)
}

/// Parses `5s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("\"{s}\" is not a duration such as 30s, 5m or 1h ({e})"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl Config {
    /// Reads a config file; errors name the file and the field.
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::from_yaml_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_yaml_str(text: &str) -> Result<Config, String> {
        crate::yaml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = Config::from_yaml_str("{}").unwrap();
        assert_eq!(c.aws.cache_ttl, Duration::from_secs(60));
        let c = Config::from_yaml_str("aws: {cacheTtl: 2m, readerRoles: {'222222222222': 'arn:aws:iam::222222222222:role/reader'}}").unwrap();
        assert_eq!(c.aws.cache_ttl, Duration::from_secs(120));
        assert_eq!(c.aws.reader_roles.len(), 1);
        let e = Config::from_yaml_str("aws: {cacheTtl: soon}").unwrap_err();
        assert!(e.contains("aws.cacheTtl"), "{e}");
        let e = Config::from_yaml_str(
            "aws: {readerRoles: {'2222': 'arn:aws:iam::222222222222:role/reader'}}",
        )
        .unwrap_err();
        assert!(e.contains("aws.readerRoles"), "{e}");
        let e = Config::from_yaml_str("aws: {regoin: us-east-1}").unwrap_err();
        assert!(e.contains("regoin"), "{e}");
    }

    #[test]
    fn organization_reader_and_given_accounts() {
        let c = Config::from_yaml_str(
            "organization: {readerRoleArn: 'arn:aws:iam::999999999999:role/sqs-access-org-reader'}",
        )
        .unwrap();
        let org = c.organization.unwrap();
        assert_eq!(
            org.reader_role_arn.as_ref().unwrap().as_str(),
            "arn:aws:iam::999999999999:role/sqs-access-org-reader"
        );
        assert!(org.evidence().is_none(), "a reader alone gives no evidence");
        let c = Config::from_yaml_str(
            "organization: {id: o-abc, outsideAccounts: ['444444444444'], accounts: {'111111111111': {path: o-abc/r-ab12/}}}",
        )
        .unwrap();
        let ev = c.organization.unwrap().evidence().unwrap();
        assert_eq!(ev.outside_accounts, ["444444444444"]);
        assert_eq!(ev.accounts.len(), 1);
        let e = Config::from_yaml_str("organization: {readerRoleArn: 'arn:aws:iam::9999:user/x'}")
            .unwrap_err();
        assert!(e.contains("organization.readerRoleArn"), "{e}");
        let e = Config::from_yaml_str("organization: {readerRole: x}").unwrap_err();
        assert!(e.contains("readerRole"), "{e}");
        let c = Config::from_yaml_str("aws: {concurrency: {organizations: 1, ec2: 2}}").unwrap();
        assert_eq!(c.aws.concurrency.organizations, 1);
        assert_eq!(c.aws.concurrency.ec2, 2);
    }
}
