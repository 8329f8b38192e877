//! The operator's configuration file (`--config FILE`): AWS settings, per-account reader roles,
//! the organization's policies and VPC endpoint policies (read from here until an Organizations
//! reader exists), the recheck interval and the cache TTL. `config/operator.yaml` is the
//! documented example.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::diagnosis::snapshot::{Document, OrganizationEvidence};
use crate::ids::{AccountId, RoleArn};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub aws: AwsConfig,
    /// The organization's SCPs and RCPs per member account, as in snapshots.
    #[serde(default)]
    pub organization: Option<OrganizationEvidence>,
    /// VPC endpoint policies by endpoint id.
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
    /// The cluster's ARN (default: built from the name, the region and the operator's own
    /// account).
    #[serde(default)]
    pub arn: Option<String>,
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
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            iam: 4,
            sqs: 16,
            kms: 16,
            eks: 4,
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
}
