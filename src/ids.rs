//! Identifiers that must not be mixed up: account ids, regions, role, queue and key ARNs, and
//! queue URLs. Parsed once at the edge (user YAML, annotations, AWS answers), then trusted.
//! Parsing a queue URL never trusts its host: only SQS endpoints (or a host the operator is
//! configured with) are accepted, so a signed request can never be aimed at a user's server.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::Arn;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("\"{0}\" is not a 12-digit AWS account id")]
    Account(String),
    #[error("\"{0}\" is not an AWS region (e.g. us-east-1)")]
    Region(String),
    #[error("\"{value}\" is not {expected}: {why}")]
    Arn {
        value: String,
        expected: &'static str,
        why: String,
    },
    #[error("\"{value}\" is not an SQS queue URL: {why}")]
    QueueUrl { value: String, why: String },
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_string()))
        } else {
            Err(IdError::Account(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        AccountId::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AWS region name such as `us-east-1` or `us-gov-west-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && parts[0].len() == 2
            && parts
                .last()
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(Region(s.to_string()))
        } else {
            Err(IdError::Region(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The partition a region belongs to.
    pub fn partition(&self) -> &'static str {
        let r = self.0.as_str();
        if r.starts_with("cn-") {
            "aws-cn"
        } else if r.starts_with("us-gov-") {
            "aws-us-gov"
        } else if r.starts_with("us-isob-") {
            "aws-iso-b"
        } else if r.starts_with("us-iso-") {
            "aws-iso"
        } else if r.starts_with("eu-isoe-") {
            "aws-iso-e"
        } else if r.starts_with("us-isof-") {
            "aws-iso-f"
        } else {
            "aws"
        }
    }
    /// The DNS suffix of service endpoints in the region's partition.
    pub fn dns_suffix(&self) -> &'static str {
        match self.partition() {
            "aws-cn" => "amazonaws.com.cn",
            "aws-iso" => "c2s.ic.gov",
            "aws-iso-b" => "sc2s.sgov.gov",
            "aws-iso-e" => "cloud.adc-e.uk",
            "aws-iso-f" => "csp.hci.ic.gov",
            _ => "amazonaws.com",
        }
    }
}

impl TryFrom<String> for Region {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Region::parse(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn arn_err(value: &str, expected: &'static str, why: impl Into<String>) -> IdError {
    IdError::Arn {
        value: value.to_string(),
        expected,
        why: why.into(),
    }
}

const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
];

/// An IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleArn {
    arn: String,
    partition: String,
    account: AccountId,
    name: String,
}

/// The parts of an IAM ARN of `kind` (`role`, `user`): `arn:PARTITION:iam::ACCOUNT:KIND/PATH/NAME`.
fn iam_arn(
    s: &str,
    kind: &str,
    what: &'static str,
) -> Result<(String, String, AccountId, String), IdError> {
    let arn = Arn::parse(s).map_err(|e| arn_err(s, what, e.to_string()))?;
    if !PARTITIONS.contains(&arn.partition) {
        return Err(arn_err(
            s,
            what,
            format!("unknown partition \"{}\"", arn.partition),
        ));
    }
    if arn.service != "iam" {
        return Err(arn_err(
            s,
            what,
            format!("the service is \"{}\", not \"iam\"", arn.service),
        ));
    }
    if !arn.region.is_empty() {
        return Err(arn_err(
            s,
            what,
            "IAM ARNs have no region (two colons after iam)",
        ));
    }
    let account = AccountId::parse(arn.account).map_err(|e| arn_err(s, what, e.to_string()))?;
    let Some(path_name) = arn.resource.strip_prefix(&format!("{kind}/")) else {
        return Err(arn_err(
            s,
            what,
            format!("the resource must start with \"{kind}/\""),
        ));
    };
    let name = path_name.rsplit('/').next().unwrap_or_default();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !name_ok {
        return Err(arn_err(
            s,
            what,
            format!("the {kind} name must be 1-64 characters of letters, digits and +=,.@_-"),
        ));
    }
    Ok((
        s.to_string(),
        arn.partition.to_string(),
        account,
        name.to_string(),
    ))
}

impl RoleArn {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "an IAM role ARN (arn:aws:iam::123456789012:role/NAME)";
        let (arn, partition, account, name) = iam_arn(s.trim(), "role", WHAT)?;
        Ok(RoleArn {
            arn,
            partition,
            account,
            name,
        })
    }
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn partition(&self) -> &str {
        &self.partition
    }
    /// The ARN of a session of this role, as it appears as a caller.
    pub fn session_arn(&self, session: &str) -> String {
        format!(
            "arn:{}:sts::{}:assumed-role/{}/{}",
            self.partition, self.account, self.name, session
        )
    }
}

impl TryFrom<String> for RoleArn {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        RoleArn::parse(&s)
    }
}

impl From<RoleArn> for String {
    fn from(r: RoleArn) -> String {
        r.arn
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// An IAM user ARN, `arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserArn {
    arn: String,
    partition: String,
    account: AccountId,
    name: String,
}

impl UserArn {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "an IAM user ARN (arn:aws:iam::123456789012:user/NAME)";
        let (arn, partition, account, name) = iam_arn(s.trim(), "user", WHAT)?;
        Ok(UserArn {
            arn,
            partition,
            account,
            name,
        })
    }
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn partition(&self) -> &str {
        &self.partition
    }
}

impl TryFrom<String> for UserArn {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        UserArn::parse(&s)
    }
}

impl From<UserArn> for String {
    fn from(u: UserArn) -> String {
        u.arn
    }
}

impl fmt::Display for UserArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// An SQS queue ARN, `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueArn {
    arn: String,
    region: Region,
    account: AccountId,
    name: String,
}

fn valid_queue_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 80
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl QueueArn {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)";
        let s = s.trim();
        let arn = Arn::parse(s).map_err(|e| arn_err(s, WHAT, e.to_string()))?;
        if !PARTITIONS.contains(&arn.partition) {
            return Err(arn_err(
                s,
                WHAT,
                format!("unknown partition \"{}\"", arn.partition),
            ));
        }
        if arn.service != "sqs" {
            return Err(arn_err(
                s,
                WHAT,
                format!("the service is \"{}\", not \"sqs\"", arn.service),
            ));
        }
        let region = Region::parse(arn.region).map_err(|e| arn_err(s, WHAT, e.to_string()))?;
        if region.partition() != arn.partition {
            return Err(arn_err(
                s,
                WHAT,
                format!("region {} is not in partition {}", region, arn.partition),
            ));
        }
        let account = AccountId::parse(arn.account).map_err(|e| arn_err(s, WHAT, e.to_string()))?;
        if !valid_queue_name(arn.resource) {
            return Err(arn_err(
                s,
                WHAT,
                "the queue name must be 1-80 characters of letters, digits, - and _ (FIFO queues end in .fifo)",
            ));
        }
        Ok(QueueArn {
            arn: s.to_string(),
            region,
            account,
            name: arn.resource.to_string(),
        })
    }

    pub fn new(region: &Region, account: &AccountId, name: &str) -> Result<Self, IdError> {
        QueueArn::parse(&format!(
            "arn:{}:sqs:{}:{}:{}",
            region.partition(),
            region,
            account,
            name
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }
    pub fn region(&self) -> &Region {
        &self.region
    }
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The queue's URL on the regional SQS endpoint.
    pub fn url(&self) -> String {
        format!(
            "https://sqs.{}.{}/{}/{}",
            self.region,
            self.region.dns_suffix(),
            self.account,
            self.name
        )
    }
}

impl TryFrom<String> for QueueArn {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        QueueArn::parse(&s)
    }
}

impl From<QueueArn> for String {
    fn from(q: QueueArn) -> String {
        q.arn
    }
}

impl fmt::Display for QueueArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// A queue as a user names it: an ARN or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub arn: QueueArn,
    /// The URL as given, when the queue was given by URL.
    pub url: Option<String>,
}

impl QueueRef {
    /// Parses an ARN or a URL. A URL's host must be an SQS endpoint (`sqs.REGION.amazonaws.com`,
    /// the legacy `REGION.queue.amazonaws.com` or `queue.amazonaws.com`, FIPS, dual-stack and
    /// VPC endpoint names, other partitions' domains) or one of `extra_hosts` (`host[:port]`,
    /// the endpoint the operator is configured with); `region_hint` resolves hosts that do not
    /// carry a region.
    pub fn parse(
        s: &str,
        extra_hosts: &[String],
        region_hint: Option<&Region>,
    ) -> Result<Self, IdError> {
        let s = s.trim();
        if s.starts_with("arn:") {
            return Ok(QueueRef {
                arn: QueueArn::parse(s)?,
                url: None,
            });
        }
        let bad = |why: &str| IdError::QueueUrl {
            value: s.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("give a queue ARN or an https:// URL such as https://sqs.us-east-1.amazonaws.com/123456789012/orders"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.contains('@') {
            return Err(bad("user information in the URL is not allowed"));
        }
        let host_lc = host.to_ascii_lowercase();
        // Only DNS characters (and a port for configured hosts): anything else could be read
        // differently by another URL parser.
        if host_lc.is_empty()
            || !host_lc.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b':'
            })
        {
            return Err(bad(
                "the host may only contain letters, digits, '.' and '-'",
            ));
        }
        let extra = extra_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host_lc));
        if !extra && scheme != "https" {
            return Err(bad("SQS URLs use https"));
        }
        let region = if extra {
            region_from_sqs_host(&host_lc)
                .or_else(|| region_hint.map(|r| r.as_str().to_string()))
                .ok_or_else(|| bad("cannot tell the region from the host; configure a region"))?
        } else {
            sqs_host_region(&host_lc).ok_or_else(|| {
                bad("the host is not an SQS endpoint (sqs.REGION.amazonaws.com or REGION.queue.amazonaws.com); requests are never sent to other hosts")
            })?
        };
        let region = Region::parse(&region).map_err(|e| bad(&e.to_string()))?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let (Some(account), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("the path must be /ACCOUNT_ID/QUEUE_NAME"));
        };
        let account = AccountId::parse(account).map_err(|e| bad(&e.to_string()))?;
        if !valid_queue_name(name) {
            return Err(bad(
                "the queue name must be 1-80 characters of letters, digits, - and _",
            ));
        }
        Ok(QueueRef {
            arn: QueueArn::new(&region, &account, name)?,
            url: Some(s.to_string()),
        })
    }
}

/// The region of an SQS endpoint host, or `None` when the host is not an SQS endpoint.
fn sqs_host_region(host: &str) -> Option<String> {
    if host.contains(':') {
        return None; // no ports on AWS endpoints
    }
    const SUFFIXES: &[&str] = &[
        ".amazonaws.com",
        ".amazonaws.com.cn",
        ".api.aws",
        ".c2s.ic.gov",
        ".sc2s.sgov.gov",
    ];
    let base = SUFFIXES.iter().find_map(|s| host.strip_suffix(s))?;
    if base == "queue" {
        return Some("us-east-1".into()); // the legacy global endpoint
    }
    let labels: Vec<&str> = base.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs" | "sqs-fips", region] => region,
        [region, "queue"] => region,
        // vpce-0abc-123.sqs.us-east-1.vpce.amazonaws.com
        [endpoint, "sqs", region, "vpce"] if endpoint.starts_with("vpce-") => region,
        _ => return None,
    };
    Region::parse(region).ok().map(|r| r.0)
}

fn region_from_sqs_host(host: &str) -> Option<String> {
    let h = host.split(':').next().unwrap_or(host);
    let labels: Vec<&str> = h.split('.').collect();
    labels
        .windows(2)
        .find(|w| w[0] == "sqs" && Region::parse(w[1]).is_ok())
        .map(|w| w[1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        let r = RoleArn::parse("arn:aws:iam::111111111111:role/team/orders").unwrap();
        assert_eq!(r.name(), "orders");
        assert_eq!(r.account().as_str(), "111111111111");
        assert_eq!(
            r.session_arn("s"),
            "arn:aws:sts::111111111111:assumed-role/orders/s"
        );
        for bad in [
            "arn:aws:iam:us-east-1:111111111111:role/x",
            "arn:aws:iam::111111111111:user/x",
            "arn:aws:iam::11111111111:role/x",
            "arn:aws:iam:::111111111111:role/x",
            "arn:aws:sts::111111111111:role/x",
            "role/x",
            "arn:aws:iam::111111111111:role/",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_arns() {
        let u = UserArn::parse("arn:aws:iam::111111111111:user/ci/deployer").unwrap();
        assert_eq!(u.name(), "deployer");
        assert_eq!(u.account().as_str(), "111111111111");
        for bad in [
            "arn:aws:iam::111111111111:role/x",
            "arn:aws:iam::xxxxx:user/xxxx",
            "arn:aws:iam::111111111111:user/",
        ] {
            assert!(UserArn::parse(bad).is_err(), "{bad}");
        }
        let e = UserArn::parse("arn:aws:iam::111111111111:role/x").unwrap_err();
        assert!(e.to_string().contains("\"user/\""), "{e}");
    }

    #[test]
    fn queue_urls_only_on_sqs_hosts() {
        let q = QueueRef::parse(
            "https://sqs.us-east-1.amazonaws.com/222222222222/orders",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(q.arn.as_str(), "arn:aws:sqs:us-east-1:222222222222:orders");
        let q = QueueRef::parse(
            "https://eu-west-1.queue.amazonaws.com/222222222222/a.fifo",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(q.arn.as_str(), "arn:aws:sqs:eu-west-1:222222222222:a.fifo");
        let q = QueueRef::parse(
            "https://sqs.cn-north-1.amazonaws.com.cn/222222222222/a",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(q.arn.as_str(), "arn:aws-cn:sqs:cn-north-1:222222222222:a");
        let q = QueueRef::parse(
            "https://vpce-0abc-1234.sqs.us-east-1.vpce.amazonaws.com/222222222222/a",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(q.arn.region().as_str(), "us-east-1");
        for bad in [
            "https://evil.example.com/222222222222/orders",
            "https://sqs.us-east-1.amazonaws.com.evil.com/222222222222/orders",
            "http://sqs.us-east-1.amazonaws.com/222222222222/orders",
            "https://sqs.us-east-1.amazonaws.com:8443/222222222222/orders",
            "https://user@sqs.us-east-1.amazonaws.com/222222222222/orders",
            "https://sqs.us-east-1.amazonaws.com/222222222222",
            "https://s3.us-east-1.amazonaws.com/222222222222/orders",
            "https://127.0.0.1/222222222222/orders",
            "https://2130706433#.sqs.us-east-1.vpce.amazonaws.com/222222222222/orders",
            "https://x.sqs.us-east-1.vpce.amazonaws.com/222222222222/orders",
        ] {
            assert!(QueueRef::parse(bad, &[], None).is_err(), "{bad}");
        }
        let extra = vec!["127.0.0.1:5000".to_string()];
        let r = Region::parse("us-east-1").unwrap();
        let q = QueueRef::parse(
            "http://127.0.0.1:5000/222222222222/orders",
            &extra,
            Some(&r),
        )
        .unwrap();
        assert_eq!(q.arn.region().as_str(), "us-east-1");
    }

    #[test]
    fn queue_arns() {
        assert!(QueueArn::parse("arn:aws:sqs:us-east-1:222222222222:orders").is_ok());
        assert!(QueueArn::parse("arn:aws:sqs:cn-north-1:222222222222:orders").is_err());
        assert!(QueueArn::parse("arn:aws:sns:us-east-1:222222222222:orders").is_err());
        assert!(QueueArn::parse("arn:aws:sqs:us-east-1:222222222222:bad/name").is_err());
    }
}
