//! Classifying what AWS answers, so raw SDK errors never reach users: not found, the reader's
//! own access denied (naming the permission), or unavailable (throttling, timeouts, 5xx).

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The thing does not exist.
    NotFound,
    /// The operator's own credentials were refused.
    Denied { permission: String, message: String },
    /// Throttled, timed out, 5xx, no connection: try again later.
    Unavailable { message: String },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("not found"),
            FetchError::Denied {
                permission,
                message,
            } => {
                write!(f, "access denied (needs {permission}): {message}")
            }
            FetchError::Unavailable { message } => write!(f, "unavailable: {message}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// The outcome label for metrics.
impl FetchError {
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::NotFound => "not_found",
            FetchError::Denied { .. } => "denied",
            FetchError::Unavailable { .. } => "unavailable",
        }
    }
}

const NOT_FOUND: &[&str] = &[
    "NoSuchEntity",
    "NoSuchEntityException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "NotFoundException",
    "NotFound",
    "ResourceNotFoundException",
    "InvalidVpcEndpointId.NotFound",
    // Organizations: an account or target outside the organization, a deleted policy, or a
    // reader whose account is in no organization (AWS says ChildNotFound, moto AccountNotFound).
    "ChildNotFoundException",
    "AccountNotFoundException",
    "TargetNotFoundException",
    "PolicyNotFoundException",
    "AWSOrganizationsNotInUseException",
];

const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "KMSInternalException",
    "DependencyTimeoutException",
    "ServiceException",
    "Unavailable",
];

/// Classifies an SDK error; `permission` is the IAM action the call needed.
pub fn classify<E: ProvideErrorMetadata + fmt::Debug>(
    err: &SdkError<E, HttpResponse>,
    permission: &str,
) -> FetchError {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or_default();
            let message = e.message().unwrap_or(code).to_string();
            if NOT_FOUND.contains(&code) {
                return FetchError::NotFound;
            }
            if code.contains("AccessDenied")
                || code == "AuthorizationError"
                || code == "UnauthorizedOperation"
                || code == "InvalidClientTokenId"
                || code == "UnrecognizedClientException"
            {
                return FetchError::Denied {
                    permission: permission.to_string(),
                    message,
                };
            }
            if THROTTLED.contains(&code) {
                return FetchError::Unavailable { message };
            }
            // Some emulators and proxies answer without a parseable code: decide by status.
            match status {
                Some(403) | Some(401) => FetchError::Denied {
                    permission: permission.to_string(),
                    message: if message.is_empty() {
                        format!("HTTP {}", status.unwrap_or_default())
                    } else {
                        message
                    },
                },
                Some(404) => FetchError::NotFound,
                _ => FetchError::Unavailable {
                    message: format!(
                        "{} (HTTP {})",
                        if message.is_empty() {
                            "unexpected error"
                        } else {
                            &message
                        },
                        status.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
                    ),
                },
            }
        }
        SdkError::TimeoutError(_) => FetchError::Unavailable {
            message: "the call timed out".into(),
        },
        SdkError::DispatchFailure(d) => d
            .as_connector_error()
            .and_then(|c| assume_role_failure(c))
            .unwrap_or_else(|| {
                let what = if d.is_timeout() {
                    "timed out connecting"
                } else if d.is_io() {
                    "connection failed"
                } else if d.is_user() {
                    "the request could not be sent"
                } else {
                    "no answer"
                };
                let cause = d
                    .as_connector_error()
                    .map(|c| causes(c))
                    .unwrap_or_default();
                FetchError::Unavailable {
                    message: if cause.is_empty() {
                        format!("could not reach AWS ({what})")
                    } else {
                        format!("could not reach AWS ({what}): {cause}")
                    },
                }
            }),
        SdkError::ResponseError(_) => FetchError::Unavailable {
            message: format!(
                "unreadable response (HTTP {})",
                status.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
            ),
        },
        _ => FetchError::Unavailable {
            message: "the request could not be built or sent".into(),
        },
    }
}

/// What an error and its sources say, most specific last ("client error (Connect): tcp
/// connect error: Connection refused (os error 111)"), without the repeats that wrapping
/// errors add, at most 300 characters: readable where the SDK's debug form is not.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    let joined = parts.join(": ");
    if joined.chars().count() > 300 {
        let tail: Vec<char> = joined.chars().rev().take(299).collect();
        format!("…{}", tail.into_iter().rev().collect::<String>())
    } else {
        joined
    }
}

/// A reader role (per account, or the organization's) that could not be assumed surfaces as a
/// dispatch failure whose cause is STS's answer: refused is the operator's own access denied
/// (sts:AssumeRole, or the role's trust policy), not AWS being unavailable.
fn assume_role_failure(d: &(dyn std::error::Error + 'static)) -> Option<FetchError> {
    type AssumeRoleSdkError =
        SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>;
    let mut cur = Some(d);
    while let Some(e) = cur {
        if let Some(se) = e.downcast_ref::<AssumeRoleSdkError>() {
            let err = se.as_service_error()?;
            let code = err.code().unwrap_or_default();
            if code.contains("AccessDenied") || code == "InvalidClientTokenId" {
                return Some(FetchError::Denied {
                    permission: "sts:AssumeRole".into(),
                    message: err.message().unwrap_or(code).to_string(),
                });
            }
            return None;
        }
        cur = e.source();
    }
    None
}
