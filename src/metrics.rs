//! Prometheus metrics, one registry for the process. No object names as labels: only bounded
//! sets (service, operation, outcome, condition).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: &'static str,
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub condition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub aws_calls: Family<CallLabels, Counter>,
    pub cache: Family<CacheLabels, Counter>,
    pub bindings: Family<ConditionLabels, Gauge>,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub admissions: Family<ResultLabels, Counter>,
    pub admission_duration: Histogram,
    /// Change events from the events queue, by result (matched, ignored, unparseable).
    pub events: Family<ResultLabels, Counter>,
    /// From a change's `detail.eventTime` to the re-check of a binding it touched.
    pub event_delay: Histogram,
    /// Seconds since the least recently checked binding was checked.
    pub oldest_check: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        Metrics {
            aws_calls: Family::default(),
            cache: Family::default(),
            bindings: Family::default(),
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(buckets),
            admissions: Family::default(),
            admission_duration: Histogram::new(buckets),
            events: Family::default(),
            event_delay: Histogram::new([
                0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
            oldest_check: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sqs_access_aws_calls",
            "AWS API calls by service, operation and outcome",
            self.aws_calls.clone(),
        );
        r.register(
            "sqs_access_cache_lookups",
            "Evidence cache lookups by kind and result (hit, miss)",
            self.cache.clone(),
        );
        r.register(
            "sqs_access_bindings",
            "SqsAccessBindings by condition (Ready, Denied, Indeterminate)",
            self.bindings.clone(),
        );
        r.register(
            "sqs_access_reconciles",
            "Reconciles by result (ok, error)",
            self.reconciles.clone(),
        );
        r.register(
            "sqs_access_reconcile_duration_seconds",
            "Reconcile duration",
            self.reconcile_duration.clone(),
        );
        r.register(
            "sqs_access_admissions",
            "Admission reviews by result (allowed, denied, warned, invalid)",
            self.admissions.clone(),
        );
        r.register(
            "sqs_access_admission_duration_seconds",
            "Admission review duration",
            self.admission_duration.clone(),
        );
        r.register(
            "sqs_access_events",
            "Change events received from the events queue, by result (matched: touched a cached document or a binding; ignored: nothing the operator reads; unparseable: deleted without effect)",
            self.events.clone(),
        );
        r.register(
            "sqs_access_oldest_check_age_seconds",
            "Seconds since the least recently checked binding was checked against AWS (freshness; status.lastChecked is refreshed only every hour or 20 re-checks)",
            self.oldest_check.clone(),
        );
        r.register(
            "sqs_access_event_delay_seconds",
            "From a change event's eventTime in CloudTrail to the re-check of a binding it touched",
            self.event_delay.clone(),
        );
    }

    pub fn call(&self, service: &'static str, operation: &'static str, outcome: &'static str) {
        self.aws_calls
            .get_or_create(&CallLabels {
                service,
                operation,
                outcome,
            })
            .inc();
    }

    /// Total AWS calls so far (all labels), for tests and benchmarks.
    pub fn total_calls(&self) -> u64 {
        let mut total = 0;
        for (service, op) in OPERATIONS {
            for outcome in ["ok", "not_found", "denied", "unavailable"] {
                total += self
                    .aws_calls
                    .get_or_create(&CallLabels {
                        service,
                        operation: op,
                        outcome,
                    })
                    .get();
            }
        }
        total
    }

    pub fn cache_count(&self, kind: &'static str, result: &'static str) -> u64 {
        self.cache
            .get_or_create(&CacheLabels { kind, result })
            .get()
    }
}

/// The IAM action that authorizes an API operation (batch operations authorize as their single
/// action; no `sqs:DeleteMessageBatch` action exists).
pub fn permission(service: &str, operation: &str) -> String {
    let op = match (service, operation) {
        ("sqs", "DeleteMessageBatch") => "DeleteMessage",
        (_, op) => op,
    };
    format!("{service}:{op}")
}

/// Every operation the AWS layer calls, by service (the metric's label values; the operator's
/// IAM policy grants exactly these, which a test checks).
pub const OPERATIONS: &[(&str, &str)] = &[
    ("iam", "GetRole"),
    ("iam", "ListRolePolicies"),
    ("iam", "GetRolePolicy"),
    ("iam", "ListAttachedRolePolicies"),
    ("iam", "GetPolicy"),
    ("iam", "GetPolicyVersion"),
    ("iam", "ListOpenIDConnectProviders"),
    ("iam", "GetOpenIDConnectProvider"),
    ("iam", "GetUser"),
    ("iam", "ListUserPolicies"),
    ("iam", "GetUserPolicy"),
    ("iam", "ListAttachedUserPolicies"),
    ("iam", "ListGroupsForUser"),
    ("iam", "ListGroupPolicies"),
    ("iam", "GetGroupPolicy"),
    ("iam", "ListAttachedGroupPolicies"),
    ("sqs", "GetQueueUrl"),
    ("sqs", "GetQueueAttributes"),
    ("sqs", "ListQueueTags"),
    ("kms", "DescribeKey"),
    ("kms", "GetKeyPolicy"),
    ("kms", "ListGrants"),
    ("eks", "ListPodIdentityAssociations"),
    ("eks", "DescribePodIdentityAssociation"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessageBatch"),
    ("eks", "DescribeCluster"),
    ("ec2", "DescribeVpcEndpoints"),
    // Called as the organization reader role (config/iam-policy-org-reader.json).
    ("organizations", "DescribeOrganization"),
    ("organizations", "ListParents"),
    ("organizations", "ListPoliciesForTarget"),
    ("organizations", "DescribePolicy"),
    ("sts", "AssumeRole"),
    ("sts", "GetCallerIdentity"),
];
