//! The policy grammar as AWS accepts it, parsed into a form that evaluates fast. Parsing happens
//! once, at the edge; after that a `Policy` is trusted. Errors name the element that is wrong,
//! e.g. `Statement[1].Effect: must be "Allow" or "Deny", got "Permit"`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::arn::Arn;
use super::condition::Clause;
use super::pattern::{Glob, Template};

/// An invalid policy document: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct PolicyError {
    /// The element, e.g. `Statement[1].Condition.StringEquals`.
    pub path: String,
    pub message: String,
}

impl PolicyError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A parsed policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `2012-10-17` enables policy variables; `2008-10-17` or none treats `${...}` literally.
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
pub struct Statement {
    /// Position in the policy's `Statement` list (0-based).
    pub index: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Option<PrincipalSpec>,
    pub action: ActionSpec,
    /// `None` when the statement has neither `Resource` nor `NotResource` (trust policies).
    pub resource: Option<ResourceSpec>,
    pub conditions: Vec<Clause>,
}

/// `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, Default)]
pub struct PrincipalSpec {
    pub negated: bool,
    /// `"*"` or `{"AWS": "*"}`.
    pub any: bool,
    pub aws: Vec<AwsPrincipal>,
    pub service: Vec<String>,
    pub federated: Vec<String>,
    pub canonical_user: Vec<String>,
}

/// One value of `Principal.AWS`, classified once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsPrincipal {
    /// An account id or `arn:aws:iam::ACCT:root`: delegates to the account's IAM policies.
    Account(String),
    /// A role ARN: matches the role's sessions.
    Role {
        account: String,
        name: String,
        arn: String,
    },
    /// Any other ARN (user, assumed-role session, federated user) or id: exact match only.
    /// Partial wildcards are not supported in `Principal`, so they land here and never match.
    Exact(String),
}

/// `Action` or `NotAction`.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    pub negated: bool,
    pub raw: Vec<String>,
    patterns: Vec<Glob>,
}

impl ActionSpec {
    /// `action` must be lower-case.
    pub fn matches(&self, action_lc: &str) -> bool {
        let hit = self
            .patterns
            .iter()
            .any(|p| p.is_any() || p.matches(action_lc));
        hit != self.negated
    }
}

/// `Resource` or `NotResource`.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub negated: bool,
    pub(crate) patterns: Vec<Template>,
}

impl ResourceSpec {
    /// The resources as written.
    pub fn raw(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(Template::raw)
    }
}

impl Policy {
    /// Parses a policy as AWS hands it over: JSON text, URL-encoded JSON (IAM's `GetRole`,
    /// `GetRolePolicy`), or JSON whose value is itself a JSON string (SQS's `Policy` attribute
    /// read back through some tools).
    pub fn from_aws_str(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse_text(text, true)
    }

    /// `unwrap_string`: whether a JSON string holding the document is still accepted. One level
    /// only, also when URL-encoding and JSON strings alternate (unbounded, that recursed until
    /// the stack overflowed).
    fn parse_text(text: &str, unwrap_string: bool) -> Result<Policy, PolicyError> {
        let decoded = decode_policy_text(text)?;
        if decoded.starts_with('"') {
            if !unwrap_string {
                return Err(PolicyError::new(
                    "",
                    "the policy is a JSON string nested too deep",
                ));
            }
            // A JSON string holding the document (one level only).
            let inner: String = serde_json::from_str(&decoded)
                .map_err(|e| PolicyError::new("", format!("not a valid JSON string: {e}")))?;
            return Policy::parse_text(&inner, false);
        }
        // Only a failed document needs the path tracked: parse it again for the message.
        if let Ok(raw) = serde_json::from_str::<RawPolicy>(&decoded) {
            return Policy::compile(raw);
        }
        let mut de = serde_json::Deserializer::from_str(&decoded);
        let raw: RawPolicy = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            PolicyError::new(path, e.inner().to_string())
        })?;
        de.end().map_err(|e| {
            PolicyError::new("", format!("trailing characters after the policy: {e}"))
        })?;
        Policy::compile(raw)
    }

    /// True when policy variables are substituted (version `2012-10-17`).
    pub fn variables_enabled(&self) -> bool {
        self.version.as_deref() == Some("2012-10-17")
    }

    pub(crate) fn compile(raw: RawPolicy<'_>) -> Result<Policy, PolicyError> {
        let version = raw.version;
        if let Some(v) = &version
            && v != "2012-10-17"
            && v != "2008-10-17"
        {
            return Err(PolicyError::new(
                "Version",
                format!("must be \"2012-10-17\" or \"2008-10-17\", got \"{v}\""),
            ));
        }
        let variables = version.as_deref() == Some("2012-10-17");
        let (list, single) = match raw.statement {
            OneOrMany::One(s) => (vec![s], true),
            OneOrMany::Many(v) => (v, false),
        };
        let statements = list
            .into_iter()
            .enumerate()
            .map(|(i, s)| compile_statement(i, s, variables, &StmtPath { index: i, single }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            version,
            id: raw.id,
            statements,
        })
    }
}

/// The JSON text of a policy as AWS returned it (URL-decoded when it was encoded), for showing
/// and storing; the input unchanged when it cannot be decoded.
pub fn decode_for_display(text: &str) -> String {
    decode_policy_text(text).unwrap_or_else(|_| text.to_string())
}

/// Turns what AWS returns into JSON text: IAM URL-encodes its documents; everything else is
/// plain JSON.
fn decode_policy_text(text: &str) -> Result<String, PolicyError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(PolicyError::new("", "the policy document is empty"));
    }
    if t.starts_with('{') || t.starts_with('"') {
        return Ok(t.to_string());
    }
    if t.starts_with("%7B") || t.starts_with("%7b") || t.contains('%') {
        return percent_encoding::percent_decode_str(t)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| PolicyError::new("", "the URL-encoded policy is not valid UTF-8"));
    }
    Err(PolicyError::new(
        "",
        "the policy document is not JSON (it should start with `{`)",
    ))
}

/// A statement's place in the document (`Statement` or `Statement[1]`), written out only when
/// an error names it.
struct StmtPath {
    index: usize,
    single: bool,
}

impl fmt::Display for StmtPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.single {
            f.write_str("Statement")
        } else {
            write!(f, "Statement[{}]", self.index)
        }
    }
}

/// An element of a statement (`Statement[1].Action`).
struct Sub<'a>(&'a StmtPath, &'static str);

impl fmt::Display for Sub<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

fn compile_statement(
    index: usize,
    raw: RawStatement<'_>,
    variables: bool,
    path: &StmtPath,
) -> Result<Statement, PolicyError> {
    let effect = match raw.effect.as_deref() {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => {
            return Err(PolicyError::new(
                format!("{path}.Effect"),
                format!("must be \"Allow\" or \"Deny\", got \"{other}\""),
            ));
        }
        None => {
            return Err(PolicyError::new(
                format!("{path}.Effect"),
                "is missing (every statement needs \"Effect\": \"Allow\" or \"Deny\")",
            ));
        }
    };
    let action = match (raw.action, raw.not_action) {
        (Some(a), None) => action_spec(a.into_strings(), false, &Sub(path, "Action"))?,
        (None, Some(a)) => action_spec(a.into_strings(), true, &Sub(path, "NotAction"))?,
        (Some(_), Some(_)) => {
            return Err(PolicyError::new(
                path.to_string(),
                "has both Action and NotAction; a statement takes exactly one",
            ));
        }
        (None, None) => {
            return Err(PolicyError::new(
                path.to_string(),
                "has neither Action nor NotAction; a statement needs one",
            ));
        }
    };
    let resource = match (raw.resource, raw.not_resource) {
        (Some(r), None) => Some(resource_spec(
            r.into_strings(),
            false,
            variables,
            &Sub(path, "Resource"),
        )?),
        (None, Some(r)) => Some(resource_spec(
            r.into_strings(),
            true,
            variables,
            &Sub(path, "NotResource"),
        )?),
        (Some(_), Some(_)) => {
            return Err(PolicyError::new(
                path.to_string(),
                "has both Resource and NotResource; a statement takes at most one",
            ));
        }
        (None, None) => None,
    };
    let principal = match (raw.principal, raw.not_principal) {
        (Some(p), None) => Some(principal_spec(p, false, &Sub(path, "Principal"))?),
        (None, Some(p)) => Some(principal_spec(p, true, &Sub(path, "NotPrincipal"))?),
        (Some(_), Some(_)) => {
            return Err(PolicyError::new(
                path.to_string(),
                "has both Principal and NotPrincipal; a statement takes at most one",
            ));
        }
        (None, None) => None,
    };
    let mut conditions = Vec::new();
    for (op, keys) in raw.condition.map(|c| c.0).unwrap_or_default() {
        if keys.0.is_empty() {
            return Err(PolicyError::new(
                format!("{path}.Condition.{op}"),
                "has no condition keys",
            ));
        }
        for (key, values) in keys.0 {
            let clause = Clause::new(&op, &key, values.into_strings(), variables)
                .map_err(|m| PolicyError::new(format!("{path}.Condition.{op}.{key}"), m))?;
            conditions.push(clause);
        }
    }
    Ok(Statement {
        index,
        sid: raw.sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

fn action_spec(
    raw: Vec<String>,
    negated: bool,
    path: &dyn fmt::Display,
) -> Result<ActionSpec, PolicyError> {
    if raw.is_empty() {
        return Err(PolicyError::new(
            path.to_string(),
            "must not be an empty list",
        ));
    }
    for a in &raw {
        if a != "*" && !a.contains(':') {
            return Err(PolicyError::new(
                path.to_string(),
                format!(
                    "\"{a}\" is not an action: it must look like \"service:Action\" (e.g. \"sqs:SendMessage\") or be \"*\""
                ),
            ));
        }
    }
    let patterns = raw.iter().map(|a| Glob::new_ascii_lowercase(a)).collect();
    Ok(ActionSpec {
        negated,
        raw,
        patterns,
    })
}

fn resource_spec(
    raw: Vec<String>,
    negated: bool,
    variables: bool,
    path: &dyn fmt::Display,
) -> Result<ResourceSpec, PolicyError> {
    if raw.is_empty() {
        return Err(PolicyError::new(
            path.to_string(),
            "must not be an empty list",
        ));
    }
    let patterns = raw
        .into_iter()
        .map(|r| Template::from_string(r, variables))
        .collect();
    Ok(ResourceSpec { negated, patterns })
}

fn principal_spec(
    raw: RawPrincipal<'_>,
    negated: bool,
    path: &dyn fmt::Display,
) -> Result<PrincipalSpec, PolicyError> {
    let mut spec = PrincipalSpec {
        negated,
        ..Default::default()
    };
    match raw {
        RawPrincipal::Star => spec.any = true,
        RawPrincipal::Map(entries) => {
            if entries.is_empty() {
                return Err(PolicyError::new(
                    path.to_string(),
                    "must not be an empty object",
                ));
            }
            for (kind, values) in entries {
                let values = values.into_strings();
                match &*kind {
                    "AWS" => {
                        for v in values {
                            if v == "*" {
                                spec.any = true;
                            } else {
                                spec.aws.push(classify_aws_principal(&v));
                            }
                        }
                    }
                    "Service" => spec.service.extend(values),
                    "Federated" => spec.federated.extend(values),
                    "CanonicalUser" => spec.canonical_user.extend(values),
                    other => {
                        return Err(PolicyError::new(
                            path.to_string(),
                            format!(
                                "unknown principal type \"{other}\" (expected AWS, Service, Federated or CanonicalUser)"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(spec)
}

fn classify_aws_principal(v: &str) -> AwsPrincipal {
    let v = v.trim();
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        return AwsPrincipal::Account(v.to_string());
    }
    if let Ok(arn) = Arn::parse(v)
        && arn.service == "iam"
        && !v.contains(['*', '?'])
    {
        if arn.resource == "root" {
            return AwsPrincipal::Account(arn.account.to_string());
        }
        if let Some(rest) = arn.resource.strip_prefix("role/") {
            let name = rest.rsplit('/').next().unwrap_or(rest).to_string();
            return AwsPrincipal::Role {
                account: arn.account.to_string(),
                name,
                arn: v.to_string(),
            };
        }
    }
    AwsPrincipal::Exact(v.to_string())
}

// ---- serde: the raw shapes, with AWS's "a string or a list" quirks ----

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawPolicyOrString::deserialize(d)? {
            RawPolicyOrString::Policy(p) => Ok(p),
            RawPolicyOrString::Text(t) => Policy::from_aws_str(&t).map_err(de::Error::custom),
        }
    }
}

/// A policy given as an object, or as a string holding the (possibly URL-encoded) JSON.
enum RawPolicyOrString {
    Policy(Policy),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPolicyOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPolicyOrString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a policy document (an object with \"Statement\", or a string holding one)",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawPolicyOrString::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = RawPolicy::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Policy::compile(raw)
                    .map(RawPolicyOrString::Policy)
                    .map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy<'a> {
    #[serde(rename = "Version")]
    pub(crate) version: Option<String>,
    #[serde(rename = "Id")]
    pub(crate) id: Option<String>,
    #[serde(rename = "Statement")]
    #[serde(borrow)]
    pub(crate) statement: OneOrMany<RawStatement<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatement<'a> {
    #[serde(rename = "Sid")]
    sid: Option<String>,
    #[serde(rename = "Effect", borrow)]
    effect: Option<Cow<'a, str>>,
    #[serde(rename = "Principal", borrow)]
    principal: Option<RawPrincipal<'a>>,
    #[serde(rename = "NotPrincipal", borrow)]
    not_principal: Option<RawPrincipal<'a>>,
    #[serde(rename = "Action")]
    action: Option<OneOrMany<Scalar>>,
    #[serde(rename = "NotAction")]
    not_action: Option<OneOrMany<Scalar>>,
    #[serde(rename = "Resource")]
    resource: Option<OneOrMany<Scalar>>,
    #[serde(rename = "NotResource")]
    not_resource: Option<OneOrMany<Scalar>>,
    #[serde(rename = "Condition", borrow)]
    condition: Option<Pairs<'a, Pairs<'a, OneOrMany<Scalar>>>>,
}

/// A single value or a list of them, as AWS allows almost everywhere.
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

impl OneOrMany<Scalar> {
    pub(crate) fn into_strings(self) -> Vec<String> {
        self.into_vec().into_iter().map(|s| s.0).collect()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(OneOrMany::Many(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                T::deserialize(de::value::BoolDeserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(de::value::F64Deserializer::new(v)).map(OneOrMany::One)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A string, number or boolean, kept as its text (`"Bool": {"aws:SecureTransport": false}`).
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (or a number or boolean)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, borrowed from the input when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object read as ordered pairs (keeps statement order stable in messages).
struct Pairs<'a, V>(Vec<(Cow<'a, str>, V)>);

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Pairs<'a, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<'a, V>(std::marker::PhantomData<(V, Key<'a>)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for Vis<'a, V> {
            type Value = Pairs<'a, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<Key<'a>, V>()? {
                    v.push((k.0, val));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

enum RawPrincipal<'a> {
    Star,
    Map(Vec<(Cow<'a, str>, OneOrMany<Scalar>)>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawPrincipal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<Key<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawPrincipal<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"*\" or an object with AWS, Service, Federated or CanonicalUser")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPrincipal<'a>, E> {
                if v == "*" {
                    Ok(RawPrincipal::Star)
                } else {
                    Err(E::custom(format!(
                        "\"{v}\" is not a principal: use \"*\" or an object such as {{\"AWS\": \"{v}\"}}"
                    )))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPrincipal<'a>, A::Error> {
                let pairs = Pairs::<OneOrMany<Scalar>>::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawPrincipal::Map(pairs.0))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Policy, PolicyError> {
        Policy::from_aws_str(s)
    }

    #[test]
    fn statement_as_object_or_list_and_values_as_string_or_list() {
        let p = parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sqs:SendMessage","Resource":["*"]}}"#).unwrap();
        assert_eq!(p.statements.len(), 1);
        assert!(p.statements[0].action.matches("sqs:sendmessage"));
    }

    #[test]
    fn url_encoded_and_string_wrapped_documents() {
        let json = r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"sqs:*","Resource":"*"}]}"#;
        let enc: String =
            percent_encoding::utf8_percent_encode(json, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        assert_eq!(parse(&enc).unwrap().statements[0].sid.as_deref(), Some("A"));
        let wrapped = serde_json::to_string(json).unwrap();
        assert_eq!(
            parse(&wrapped).unwrap().statements[0].sid.as_deref(),
            Some("A")
        );
    }

    #[test]
    fn errors_name_the_element() {
        let e = parse(r#"{"Statement":[{"Effect":"Allow","Action":"a:b"},{"Effect":"Permit","Action":"a:b"}]}"#).unwrap_err();
        assert_eq!(e.path, "Statement[1].Effect");
        let e = parse(r#"{"Statement":[{"Effect":"Allow","Action":"a:b","NotAction":"a:c"}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("both Action and NotAction"), "{e}");
        let e = parse(r#"{"Statement":[{"Effect":"Allow"}]}"#).unwrap_err();
        assert!(
            e.to_string().contains("neither Action nor NotAction"),
            "{e}"
        );
        let e = parse(r#"{"Version":"2012-10-17"}"#).unwrap_err();
        assert!(e.to_string().contains("Statement"), "{e}");
        let e =
            parse(r#"{"Statement":[{"Effect":"Allow","Action":"a:b","Principal":{"Bogus":"x"}}]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("Bogus"), "{e}");
        let e = parse(r#"{"Statement":[{"Effect":"Allow","Action":"a:b","Condition":{"StringEquals":{"k":{"x":1}}}}]}"#).unwrap_err();
        assert!(e.to_string().contains("Condition"), "{e}");
        let e = parse(r#"{"Statement":[{"Effect":"Allow","Action":"a:b","Resurce":"*"}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("Resurce"), "{e}");
    }

    #[test]
    fn principals_are_classified() {
        assert_eq!(
            classify_aws_principal("111111111111"),
            AwsPrincipal::Account("111111111111".into())
        );
        assert_eq!(
            classify_aws_principal("arn:aws:iam::111111111111:root"),
            AwsPrincipal::Account("111111111111".into())
        );
        assert!(
            matches!(classify_aws_principal("arn:aws:iam::111111111111:role/a/b"), AwsPrincipal::Role { name, .. } if name == "b")
        );
        assert!(matches!(
            classify_aws_principal("arn:aws:iam::111111111111:role/ord*"),
            AwsPrincipal::Exact(_)
        ));
    }
}
