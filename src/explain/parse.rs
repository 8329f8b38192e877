//! Reading AWS's access-denied texts: the forms SQS, KMS and STS answer with, as the SDKs wrap
//! them (AWS CLI and Python, Go v1 and v2, Java v1 and v2, JavaScript v2 and v3, .NET), into the
//! principal, action, resource, API operation and AWS's own claim about the deciding layer.
//! Pure and total: any text gives a result or a [`ParseError`], never a panic. A URL in the text
//! is only read, never requested.

use serde::Serialize;

use crate::diagnosis::SqsAction;

/// What an error text says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParsedError {
    pub kind: ErrorKind,
    /// The service whose API was called (SQS for `SendMessage`, even when KMS refused).
    pub service: Option<Service>,
    /// The error code as AWS gave it (`AccessDenied`, `KMS.AccessDeniedException`, ...).
    pub code: Option<String>,
    /// The API operation (`SendMessage`), when the SDK names it.
    pub operation: Option<String>,
    /// The caller as AWS names it (`arn:aws:sts::111111111111:assumed-role/orders/i-0abc`).
    pub principal: Option<String>,
    /// The action AWS refused, canonical (`sqs:sendmessage` → `sqs:SendMessage`); from the
    /// operation when the text names none (the legacy SQS form).
    pub action: Option<String>,
    /// The resource AWS names (queue or key ARN, role ARN).
    pub resource: Option<String>,
    /// The URL in the legacy SQS text (`Access to the resource URL is denied.`): information
    /// only, never requested.
    pub endpoint: Option<String>,
    /// AWS's claim about the layer that denied.
    pub claim: Option<Claim>,
    /// STS: the OIDC issuer of "No OpenIDConnect provider found in your account for ...".
    pub oidc_issuer: Option<String>,
    pub status: Option<u16>,
    pub request_id: Option<String>,
    /// AWS's own message, without the SDK's wrapping.
    pub message: String,
}

/// Which form the text has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorKind {
    /// IAM's form: `User: P is not authorized to perform: A on resource: R [because no ... |
    /// with an explicit deny ...]`.
    NotAuthorized,
    /// SQS's legacy form, which names nothing: `Access to the resource URL is denied.`
    SqsAccessDenied,
    /// KMS `Decrypt`: "The ciphertext refers to a customer master key that does not exist, does
    /// not exist in this region, or you are not allowed to access."
    KmsCiphertextInaccessible,
    /// SQS could not use the queue's key: `KmsDisabled`, `KmsInvalidState`, `KmsNotFound`, ...
    KmsKeyUnusable,
    /// `QueueDoesNotExist` / `AWS.SimpleQueueService.NonExistentQueue`: a missing queue, or one
    /// the caller may not see.
    QueueDoesNotExist,
    /// STS: "Not authorized to perform sts:AssumeRoleWithWebIdentity".
    WebIdentityNotAuthorized,
    /// STS: "No OpenIDConnect provider found in your account for ISSUER".
    OidcProviderNotFound,
    /// STS: "Incorrect token audience".
    IncorrectTokenAudience,
    /// STS: "Request ARN is invalid".
    InvalidRoleArn,
    /// An access-denied code with a message of no known form.
    AccessDenied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Sqs,
    Kms,
    Sts,
}

/// AWS's claim about why: the policy type it names, and whether the deny was explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// `None`: "with an explicit deny" without a policy type.
    pub layer: Option<ClaimedLayer>,
    pub explicit: bool,
    /// The policy's ARN, when AWS gives it (`... in a service control policy: arn:...`).
    pub policy_arn: Option<String>,
    /// "... transitively through a service control policy".
    pub through: Option<ClaimedLayer>,
}

/// The policy types AWS names in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClaimedLayer {
    IdentityPolicy,
    ResourcePolicy,
    PermissionsBoundary,
    SessionPolicy,
    ServiceControlPolicy,
    ResourceControlPolicy,
    VpcEndpointPolicy,
}

impl ClaimedLayer {
    /// As AWS words it.
    pub fn aws_phrase(self) -> &'static str {
        match self {
            ClaimedLayer::IdentityPolicy => "identity-based policy",
            ClaimedLayer::ResourcePolicy => "resource-based policy",
            ClaimedLayer::PermissionsBoundary => "permissions boundary",
            ClaimedLayer::SessionPolicy => "session policy",
            ClaimedLayer::ServiceControlPolicy => "service control policy",
            ClaimedLayer::ResourceControlPolicy => "resource control policy",
            ClaimedLayer::VpcEndpointPolicy => "VPC endpoint policy",
        }
    }
}

/// Phrases AWS uses for each policy type, lower-case, longest first where one contains another.
const LAYER_PHRASES: &[(&str, ClaimedLayer)] = &[
    ("identity-based policies", ClaimedLayer::IdentityPolicy),
    ("identity-based policy", ClaimedLayer::IdentityPolicy),
    ("resource-based policies", ClaimedLayer::ResourcePolicy),
    ("resource-based policy", ClaimedLayer::ResourcePolicy),
    ("permissions boundary", ClaimedLayer::PermissionsBoundary),
    ("permission boundary", ClaimedLayer::PermissionsBoundary),
    ("session policy", ClaimedLayer::SessionPolicy),
    ("service control policy", ClaimedLayer::ServiceControlPolicy),
    (
        "resource control policy",
        ClaimedLayer::ResourceControlPolicy,
    ),
    ("vpc endpoint policy", ClaimedLayer::VpcEndpointPolicy),
];

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the error text is empty")]
    Empty,
    #[error(
        "not an AWS access error this tool knows: expected one of \"User: ... is not authorized to perform: ...\", \"Access to the resource ... is denied.\", a KMS or STS access error, QueueDoesNotExist, or an SDK's wrapping of them (AccessDenied, KMS.AccessDeniedException, ...); got \"{0}\""
    )]
    NotRecognized(String),
}

/// Texts longer than this are read up to it (a stack trace holds the message near its top).
const MAX_LEN: usize = 256 * 1024;

/// Error codes worth finding anywhere in a text, longest first where one contains another.
const KNOWN_CODES: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "KMS.AccessDeniedException",
    "KMS.KMSInvalidStateException",
    "KMS.DisabledException",
    "KMS.NotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "KmsAccessDenied",
    "KmsDisabled",
    "KmsInvalidState",
    "KmsInvalidKeyUsage",
    "KmsNotFound",
    "KmsOptInRequired",
    "QueueDoesNotExist",
    "NonExistentQueue",
    "InvalidIdentityToken",
    "ValidationError",
];

const KMS_ACTIONS: &[&str] = &[
    "CreateGrant",
    "Decrypt",
    "DescribeKey",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "GetKeyPolicy",
    "ListGrants",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "VerifyMac",
];

const STS_ACTIONS: &[&str] = &[
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "DecodeAuthorizationMessage",
    "GetCallerIdentity",
    "GetFederationToken",
    "GetSessionToken",
    "SetSourceIdentity",
    "TagSession",
];

/// SQS API operations, batch names included (JavaScript v3 names `SendMessageCommand`).
const SQS_OPERATIONS: &[&str] = &[
    "AddPermission",
    "CancelMessageMoveTask",
    "ChangeMessageVisibilityBatch",
    "ChangeMessageVisibility",
    "CreateQueue",
    "DeleteMessageBatch",
    "DeleteMessage",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "ListMessageMoveTasks",
    "ListQueueTags",
    "ListQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "RemovePermission",
    "SendMessageBatch",
    "SendMessage",
    "SetQueueAttributes",
    "StartMessageMoveTask",
    "TagQueue",
    "UntagQueue",
];

/// Reads an error text.
pub fn parse(text: &str) -> Result<ParsedError, ParseError> {
    let norm = normalize(text);
    if norm.is_empty() {
        return Err(ParseError::Empty);
    }
    let lc = norm.to_ascii_lowercase();
    let mut p = ParsedError {
        kind: ErrorKind::AccessDenied,
        service: None,
        code: None,
        operation: None,
        principal: None,
        action: None,
        resource: None,
        endpoint: None,
        claim: None,
        oidc_issuer: None,
        status: None,
        request_id: None,
        message: String::new(),
    };
    let core_start = wrapper(&norm, &lc, &mut p);
    if !core(&norm, &lc, &mut p) {
        let shown: String = norm.chars().take(160).collect();
        return Err(ParseError::NotRecognized(shown));
    }
    if p.message.is_empty() {
        p.message = core_message(&norm, &lc, core_start);
    }
    finish(&mut p);
    Ok(p)
}

/// Literal escapes from JSON logs become what they stand for; whitespace runs become one space.
fn normalize(text: &str) -> String {
    let mut cut = text.len().min(MAX_LEN);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let t = text[..cut]
        .replace("\\r", " ")
        .replace("\\n", " ")
        .replace("\\t", " ")
        .replace("\\\"", "\"");
    let mut out = String::with_capacity(t.len());
    let mut space = false;
    for c in t.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// The text after `needle` (found case-insensitively in `lc`, the lower-cased `s`).
fn after<'a>(s: &'a str, lc: &str, needle: &str) -> Option<(usize, &'a str)> {
    let i = lc.find(needle)? + needle.len();
    s.get(i..).map(|rest| (i, rest))
}

/// The word at the start of `s`: up to whitespace, without surrounding quotes and trailing
/// sentence punctuation.
fn token(s: &str) -> &str {
    let s = s.trim_start_matches(['"', '\'', '`', '(', '[', '<']);
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    s[..end].trim_end_matches(['.', ',', ';', ':', '"', '\'', '`', ')', ']', '>', '}'])
}

/// Text up to the first of `stops` (or the end).
fn until<'a>(s: &'a str, stops: &[char]) -> &'a str {
    let end = s.find(stops).unwrap_or(s.len());
    &s[..end]
}

fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.'
}

/// Where `word` occurs in `s` as a whole code (not inside a longer name).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s.get(from..).and_then(|t| t.find(word)) {
        let at = from + i;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        if !before.is_some_and(is_code_char) && !after.is_some_and(is_code_char) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The SDK's wrapping: error code, operation, service, HTTP status, request id. Returns where
/// AWS's own message starts, when the wrapping says.
fn wrapper(s: &str, lc: &str, p: &mut ParsedError) -> Option<usize> {
    let mut core_start = None;
    // AWS CLI and Python: "An error occurred (CODE) when calling the OP operation[ (reached max
    // retries: N)]: MESSAGE".
    if let Some((i, rest)) = after(s, lc, "an error occurred (") {
        let code = until(rest, &[')']);
        if !code.is_empty() && !code.contains(' ') {
            p.code = Some(code.to_string());
        }
        let tail_lc = &lc[i..];
        if let Some((j, op_rest)) = after(&s[i..], tail_lc, " when calling the ") {
            let op = token(op_rest);
            if !op.is_empty() {
                p.operation = Some(op.to_string());
            }
            if let Some(k) = op_rest.find(": ") {
                core_start = Some(i + j + k + 2);
            }
        }
    }
    // Go v2: "operation error SQS: SendMessage, https response error StatusCode: 403,
    // RequestID: ID, api error CODE: MESSAGE".
    if let Some((i, rest)) = after(s, lc, "operation error ") {
        let svc = until(rest, &[':']);
        p.service = p.service.or(service_named(svc));
        if let Some(op_rest) = rest.get(svc.len()..).and_then(|r| r.strip_prefix(": ")) {
            let op = until(op_rest, &[',', ' ']);
            if !op.is_empty() && p.operation.is_none() {
                p.operation = Some(op.to_string());
            }
        }
        if let Some((j, api)) = after(&s[i..], &lc[i..], "api error ") {
            let code = until(api, &[':', ' ']);
            if !code.is_empty() {
                p.code = Some(code.to_string());
                core_start = Some(i + j + code.len() + 1);
            }
        }
    }
    // Java v1: "(Service: AmazonSQS; Status Code: 403; Error Code: AccessDenied; Request ID: ID)";
    // Java v2: "(Service: Sqs, Status Code: 403, Request ID: ID)".
    if let Some((_, rest)) = after(s, lc, "(service: ") {
        p.service = p.service.or(service_named(until(rest, &[';', ',', ')'])));
    }
    if p.code.is_none()
        && let Some((_, rest)) = after(s, lc, "error code: ")
    {
        let code = until(rest, &[';', ',', ')', ' ']);
        if !code.is_empty() {
            p.code = Some(code.to_string());
        }
    }
    // JavaScript: `code: 'AccessDenied'`, `name: 'AccessDenied'`, `"Code":"AccessDenied"`;
    // Rust: `code: Some("AccessDenied")`.
    if p.code.is_none() {
        for key in [
            "code: '",
            "code: \"",
            "\"code\":\"",
            "\"code\": \"",
            "code: some(\"",
            "name: '",
            "\"name\":\"",
        ] {
            if let Some((_, rest)) = after(s, lc, key) {
                let code = until(rest, &['\'', '"']);
                if KNOWN_CODES.iter().any(|k| k.eq_ignore_ascii_case(code)) {
                    p.code = Some(code.to_string());
                    break;
                }
            }
        }
    }
    // Exception classes: software.amazon.awssdk.services.sqs.model.QueueDoesNotExistException,
    // com.amazonaws.services.kms..., Amazon.SQS.AmazonSQSException, Amazon.SecurityToken...
    for (needle, svc) in [
        (".services.sqs.", Service::Sqs),
        ("amazon.sqs.", Service::Sqs),
        ("amazonsqsexception", Service::Sqs),
        (".services.kms.", Service::Kms),
        ("amazon.keymanagementservice", Service::Kms),
        (".services.sts.", Service::Sts),
        (".services.securitytoken.", Service::Sts),
        ("amazon.securitytoken", Service::Sts),
    ] {
        if p.service.is_none() && lc.contains(needle) {
            p.service = Some(svc);
        }
    }
    if p.code.is_none() {
        for (class, code) in [
            ("queuedoesnotexistexception", "QueueDoesNotExist"),
            ("invalididentitytokenexception", "InvalidIdentityToken"),
            ("kmsaccessdeniedexception", "KmsAccessDenied"),
        ] {
            if lc.contains(class) {
                p.code = Some(code.to_string());
            }
        }
    }
    // Any known code standing alone ("AccessDenied: Access to the resource ...", Go v1).
    if p.code.is_none() {
        p.code = KNOWN_CODES
            .iter()
            .filter_map(|c| find_word(s, c).map(|i| (i, *c)))
            .min_by_key(|(i, _)| *i)
            .map(|(_, c)| c.to_string());
    }
    // Status and request id, in each SDK's spelling.
    for key in ["httpstatuscode: ", "statuscode: ", "status code: "] {
        if p.status.is_none()
            && let Some((_, rest)) = after(s, lc, key)
        {
            let digits = until(rest.trim_start_matches(['"', '\'']), &[',', ';', ')', ' ']);
            p.status = digits.trim_matches(['"', '\'']).parse().ok();
        }
    }
    for key in ["requestid: ", "request id: ", "\"requestid\":"] {
        if p.request_id.is_none()
            && let Some((_, rest)) = after(s, lc, key)
        {
            let id = until(
                rest.trim_start_matches([' ', '"', '\'']),
                &[',', ';', ')', ' ', '\'', '"'],
            );
            if !id.is_empty() {
                p.request_id = Some(id.to_string());
            }
        }
    }
    // JavaScript v3 names the command.
    if p.operation.is_none() {
        p.operation = SQS_OPERATIONS
            .iter()
            .filter_map(|op| {
                // `SendMessageCommand`, also inside `de_SendMessageCommandError`.
                let cmd = format!("{}command", op.to_ascii_lowercase());
                lc.match_indices(&cmd)
                    .find(|(i, _)| !lc[..*i].ends_with(|c: char| c.is_ascii_alphanumeric()))
                    .map(|(i, _)| (i, *op))
            })
            .min_by_key(|(i, _)| *i)
            .map(|(_, op)| op.to_string());
        if p.operation.is_some() {
            p.service = p.service.or(Some(Service::Sqs));
        }
    }
    core_start
}

fn service_named(name: &str) -> Option<Service> {
    match name.trim().to_ascii_lowercase().as_str() {
        "sqs" | "amazonsqs" | "amazon sqs" => Some(Service::Sqs),
        "kms" | "awskms" => Some(Service::Kms),
        "sts" | "awssecuritytokenservice" => Some(Service::Sts),
        _ => None,
    }
}

/// AWS's message itself. Returns false when the text holds no form this module knows.
fn core(s: &str, lc: &str, p: &mut ParsedError) -> bool {
    // IAM's form, the most informative, first.
    if let Some(at) = lc.find("is not authorized to perform: ") {
        p.kind = ErrorKind::NotAuthorized;
        let before = &lc[..at];
        let start = before.rfind("user: ").map(|u| u + "user: ".len());
        if let Some(u) = start {
            let who = s[u..at].trim();
            if !who.is_empty() && !who.contains(' ') {
                p.principal = Some(who.trim_matches(['"', '\'']).to_string());
            }
        }
        let rest = &s[at + "is not authorized to perform: ".len()..];
        let action = token(rest);
        if !action.is_empty() {
            p.action = Some(action.to_string());
        }
        let rest = &rest[rest.find(action).map_or(0, |i| i + action.len())..];
        let rest_lc = rest.to_ascii_lowercase();
        let rest = if let Some((_, r)) = after(rest, &rest_lc, " on resource: ") {
            let res = token(r);
            if !res.is_empty() {
                p.resource = Some(res.to_string());
            }
            &r[r.find(res).map_or(0, |i| i + res.len())..]
        } else {
            rest
        };
        p.claim = claim(rest);
        let from = start.map_or(at, |u| u - "user: ".len());
        p.message = sentence(&s[from..]);
        return true;
    }
    if let Some((i, rest)) = after(s, lc, "not authorized to perform sts:") {
        let name = token(rest);
        p.action = Some(format!("sts:{name}"));
        p.kind = if name.eq_ignore_ascii_case("AssumeRoleWithWebIdentity") {
            ErrorKind::WebIdentityNotAuthorized
        } else {
            ErrorKind::NotAuthorized
        };
        p.message = sentence(&s[i - "not authorized to perform sts:".len()..]);
        return true;
    }
    if let Some((i, rest)) = after(
        s,
        lc,
        "no openidconnect provider found in your account for ",
    ) {
        p.kind = ErrorKind::OidcProviderNotFound;
        let issuer = token(rest);
        if !issuer.is_empty() {
            p.oidc_issuer = Some(issuer.to_string());
        }
        p.action = Some("sts:AssumeRoleWithWebIdentity".into());
        p.message =
            sentence(&s[i - "no openidconnect provider found in your account for ".len()..]);
        return true;
    }
    if let Some(i) = lc.find("incorrect token audience") {
        p.kind = ErrorKind::IncorrectTokenAudience;
        p.action = Some("sts:AssumeRoleWithWebIdentity".into());
        p.message = sentence(&s[i..]);
        return true;
    }
    if let Some(i) = lc.find("request arn is invalid") {
        p.kind = ErrorKind::InvalidRoleArn;
        p.action = Some("sts:AssumeRoleWithWebIdentity".into());
        p.message = sentence(&s[i..]);
        return true;
    }
    if let Some(i) = lc.find("ciphertext refers to a") {
        p.kind = ErrorKind::KmsCiphertextInaccessible;
        p.action = Some("kms:Decrypt".into());
        // "The ciphertext ...": the article is ASCII, so the cut is on a character boundary.
        let from = if lc[..i].ends_with("the ") { i - 4 } else { i };
        p.message = sentence(&s[from..]);
        return true;
    }
    if let Some((i, rest)) = after(s, lc, "access to the resource ") {
        let rest_lc = rest.to_ascii_lowercase();
        if let Some(end) = rest_lc.find("is denied") {
            p.kind = ErrorKind::SqsAccessDenied;
            let url = rest[..end].trim();
            if !url.is_empty() && !url.contains(' ') {
                p.endpoint = Some(url.to_string());
            }
            p.message = sentence(&s[i - "access to the resource ".len()..]);
            return true;
        }
    }
    if lc.contains("access to the resource is denied") {
        p.kind = ErrorKind::SqsAccessDenied;
        return true;
    }
    let code = p.code.clone().unwrap_or_default();
    let code_is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(&code));
    if code_is(&[
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "NonExistentQueue",
    ]) || lc.contains("the specified queue does not exist")
    {
        p.kind = ErrorKind::QueueDoesNotExist;
        if let Some(i) = lc.find("the specified queue does not exist") {
            p.message = sentence(&s[i..]);
        }
        return true;
    }
    if code_is(&[
        "KmsDisabled",
        "KmsInvalidState",
        "KmsNotFound",
        "KmsInvalidKeyUsage",
        "KmsOptInRequired",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
    ]) {
        p.kind = ErrorKind::KmsKeyUnusable;
        if let Some(i) = lc.find("arn:") {
            let arn = token(&s[i..]);
            if arn.to_ascii_lowercase().contains(":kms:") {
                p.resource = Some(arn.to_string());
            }
        }
        return true;
    }
    if code_is(&[
        "AccessDenied",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "KmsAccessDenied",
    ]) {
        p.kind = ErrorKind::AccessDenied;
        return true;
    }
    false
}

/// AWS's claim, from what follows the resource: "with an explicit deny in a X[: ARN]",
/// "because no X allows the A action", "... transitively through a Y".
fn claim(rest: &str) -> Option<Claim> {
    let lc = rest.to_ascii_lowercase();
    let layer_at = |from: usize| -> Option<(ClaimedLayer, usize)> {
        let t = lc.get(from..)?.trim_start();
        let skipped = lc.len() - from - t.len();
        let t2 = t
            .strip_prefix("an ")
            .or_else(|| t.strip_prefix("a "))
            .unwrap_or(t);
        let art = t.len() - t2.len();
        LAYER_PHRASES
            .iter()
            .find(|(ph, _)| t2.starts_with(ph))
            .map(|(ph, l)| (*l, from + skipped + art + ph.len()))
    };
    let through = lc
        .find("transitively through ")
        .and_then(|i| layer_at(i + "transitively through ".len()))
        .map(|(l, _)| l);
    if let Some(i) = lc.find("with an explicit deny") {
        let mut c = Claim {
            layer: None,
            explicit: true,
            policy_arn: None,
            through,
        };
        let j = i + "with an explicit deny".len();
        let t = lc.get(j..).unwrap_or_default();
        if let Some(k) = t.find(|ch: char| !ch.is_whitespace())
            && t[k..].starts_with("in ")
            && let Some((l, end)) = layer_at(j + k + 3)
        {
            c.layer = Some(l);
            let tail = rest.get(end..).unwrap_or_default();
            if let Some(a) = tail.trim_start().strip_prefix(':') {
                let arn = token(a.trim_start());
                if arn.starts_with("arn:") {
                    c.policy_arn = Some(arn.to_string());
                }
            }
        }
        return Some(c);
    }
    if let Some(i) = lc.find("because no ") {
        let (l, _) = layer_at(i + "because no ".len())?;
        return Some(Claim {
            layer: Some(l),
            explicit: false,
            policy_arn: None,
            through,
        });
    }
    None
}

/// A message up to the SDK's trailer (Java's "(Service: ...", Go's "status code: ...").
fn sentence(s: &str) -> String {
    let lc = s.to_ascii_lowercase();
    let mut end = s.len();
    for stop in [
        " (service: ",
        " status code: ",
        " ---> ",
        " at software.amazon",
        " at com.amazonaws",
        "\" }",
        "', ",
    ] {
        if let Some(i) = lc.find(stop) {
            end = end.min(i);
        }
    }
    s[..end]
        .trim()
        .trim_end_matches(['\'', '"', ','])
        .to_string()
}

fn core_message(s: &str, lc: &str, core_start: Option<usize>) -> String {
    match core_start.and_then(|i| s.get(i..)) {
        Some(t) => sentence(t.trim_start()),
        None => {
            let _ = lc;
            sentence(s)
        }
    }
}

/// Canonical action names, the service from what the text says, and the action from the
/// operation when the text names none.
fn finish(p: &mut ParsedError) {
    if let Some(a) = &p.action {
        p.action = Some(canonical_action(a));
    }
    let code_lc = p.code.as_deref().unwrap_or_default().to_ascii_lowercase();
    let op_service = p.operation.as_deref().and_then(|op| {
        SQS_OPERATIONS
            .iter()
            .any(|o| o.eq_ignore_ascii_case(op))
            .then_some(Service::Sqs)
            .or_else(|| {
                STS_ACTIONS
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(op))
                    .then_some(Service::Sts)
            })
            .or_else(|| {
                KMS_ACTIONS
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(op))
                    .then_some(Service::Kms)
            })
    });
    let kind_service = match p.kind {
        ErrorKind::SqsAccessDenied | ErrorKind::QueueDoesNotExist | ErrorKind::KmsKeyUnusable => {
            Some(Service::Sqs)
        }
        ErrorKind::KmsCiphertextInaccessible => Some(Service::Kms),
        ErrorKind::WebIdentityNotAuthorized
        | ErrorKind::OidcProviderNotFound
        | ErrorKind::IncorrectTokenAudience
        | ErrorKind::InvalidRoleArn => Some(Service::Sts),
        ErrorKind::NotAuthorized | ErrorKind::AccessDenied => None,
    };
    let action_service = p
        .action
        .as_deref()
        .and_then(|a| a.split_once(':'))
        .and_then(|(svc, _)| service_named(svc));
    let code_service = if code_lc.starts_with("kms") {
        Some(Service::Kms)
    } else {
        None
    };
    p.service = op_service
        .or(p.service)
        .or(kind_service)
        .or(action_service)
        .or(code_service);
    // The legacy form names no action: SQS refused the operation's own action.
    if p.action.is_none()
        && let Some(op) = &p.operation
        && let Some(a) = SqsAction::for_operation(op)
        && p.service != Some(Service::Kms)
        && !code_lc.starts_with("kms")
    {
        p.action = Some(a.as_str().to_string());
    }
}

/// `sqs:sendmessage` → `sqs:SendMessage`; KMS and STS actions likewise; others as written.
pub fn canonical_action(a: &str) -> String {
    let a = a.trim();
    let Some((svc, name)) = a.split_once(':') else {
        return a.to_string();
    };
    let find = |list: &[&str]| {
        list.iter()
            .find(|x| x.eq_ignore_ascii_case(name))
            .map(|x| x.to_string())
    };
    match svc.to_ascii_lowercase().as_str() {
        "sqs" => SQS_OPERATIONS
            .iter()
            .find(|x| x.eq_ignore_ascii_case(name))
            .map(|x| format!("sqs:{x}"))
            .unwrap_or_else(|| a.to_string()),
        "kms" => find(KMS_ACTIONS).map_or_else(|| a.to_string(), |n| format!("kms:{n}")),
        "sts" => find(STS_ACTIONS).map_or_else(|| a.to_string(), |n| format!("sts:{n}")),
        _ => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_messages() {
        let p = parse("An error occurred (AccessDenied) when calling the SendMessage operation: Access to the resource is denied.").unwrap();
        assert_eq!(p.kind, ErrorKind::SqsAccessDenied);
        assert_eq!(p.operation.as_deref(), Some("SendMessage"));
        assert_eq!(p.action.as_deref(), Some("sqs:SendMessage"));
        assert_eq!(p.service, Some(Service::Sqs));
        assert_eq!(p.claim, None);
        assert_eq!(p.message, "Access to the resource is denied.");

        let p = parse("An error occurred (KMS.AccessDeniedException) when calling the SendMessage operation: User: arn:aws:iam::xxxxx:user/xxxx is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:xxxx:key/xxxx with an explicit deny.").unwrap();
        assert_eq!(p.kind, ErrorKind::NotAuthorized);
        assert_eq!(p.principal.as_deref(), Some("arn:aws:iam::xxxxx:user/xxxx"));
        assert_eq!(p.action.as_deref(), Some("kms:GenerateDataKey"));
        assert_eq!(
            p.resource.as_deref(),
            Some("arn:aws:kms:us-east-1:xxxx:key/xxxx")
        );
        assert_eq!(p.service, Some(Service::Sqs));
        let c = p.claim.unwrap();
        assert!(c.explicit);
        assert_eq!(c.layer, None);
    }

    #[test]
    fn claims_with_policy_arns_and_transitive_layers() {
        let c = claim(" with an explicit deny in a service control policy: arn:aws:organizations::111111111111:policy/o-abc/service_control_policy/p-123.").unwrap();
        assert_eq!(c.layer, Some(ClaimedLayer::ServiceControlPolicy));
        assert_eq!(
            c.policy_arn.as_deref(),
            Some("arn:aws:organizations::111111111111:policy/o-abc/service_control_policy/p-123")
        );
        let c = claim(" with an explicit deny in a VPC endpoint policy transitively through a service control policy").unwrap();
        assert_eq!(c.layer, Some(ClaimedLayer::VpcEndpointPolicy));
        assert_eq!(c.through, Some(ClaimedLayer::ServiceControlPolicy));
        assert_eq!(claim(" because no cheese allows it"), None);
    }

    #[test]
    fn nothing_known_is_an_error_naming_the_text() {
        let e = parse("connection reset by peer").unwrap_err();
        assert!(e.to_string().contains("connection reset by peer"), "{e}");
        assert_eq!(parse(" \n\t ").unwrap_err(), ParseError::Empty);
    }
}
