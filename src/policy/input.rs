//! The engine's JSON interface: one request with the policies that take part, as the
//! `evaluate` command reads it (one per line). Policies may be named objects
//! (`{"name", "type", "document"}`), bare documents, or strings as AWS returns them.

use std::collections::BTreeMap;

use serde::{Deserialize, de};

use super::authorizer::{NamedPolicy, OrgLevel, PolicySet};
use super::context::{Context, Request};
use super::document::{OneOrMany, Policy, RawPolicy, RawStatement, Scalar};

/// One line of `evaluate` input.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationInput {
    pub request: RequestInput,
    #[serde(default)]
    pub policies: PoliciesInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInput {
    pub principal: String,
    /// Defaults to the account in the principal's ARN; `null` for service principals.
    #[serde(default)]
    pub principal_account: Option<String>,
    pub action: String,
    pub resource: String,
    #[serde(default)]
    pub resource_account: Option<String>,
    #[serde(default)]
    pub(crate) context: BTreeMap<String, OneOrMany<Scalar>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoliciesInput {
    #[serde(default)]
    pub identity: Vec<PolicyInput>,
    #[serde(default, alias = "resourcePolicy")]
    pub resource: Option<PolicyInput>,
    #[serde(default, alias = "permissionsBoundary", alias = "boundary")]
    pub permission_boundary: Option<PolicyInput>,
    #[serde(default)]
    pub session_policy: Option<PolicyInput>,
    #[serde(default)]
    pub scps: Vec<OrgLevelInput>,
    #[serde(default)]
    pub rcps: Vec<OrgLevelInput>,
    #[serde(default, alias = "vpcEndpointPolicy")]
    pub vpc_endpoint: Option<PolicyInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgLevelInput {
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub policies: Vec<PolicyInput>,
}

/// A policy, named (`{"name": ..., "type": ..., "document": ...}`), as a bare document, or as a
/// string holding the document.
pub struct PolicyInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub policy: Policy,
}

impl<'de> Deserialize<'de> for PolicyInput {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // One struct covers both object forms; which fields are present tells them apart.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Either {
            #[serde(default, alias = "policyName", alias = "Name")]
            name: Option<String>,
            #[serde(default, rename = "type")]
            kind: Option<String>,
            #[serde(default, alias = "arn")]
            #[allow(dead_code)]
            id: Option<String>,
            #[serde(default, alias = "policyDocument", alias = "Document")]
            document: Option<Policy>,
            #[serde(rename = "Version", default)]
            version: Option<String>,
            #[serde(rename = "Id", default)]
            doc_id: Option<String>,
            #[serde(rename = "Statement", default)]
            statement: Option<OneOrMany<RawStatement>>,
        }
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = PolicyInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a policy: {\"name\", \"document\"}, a policy document, or a string holding one")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PolicyInput, E> {
                Ok(PolicyInput {
                    name: None,
                    kind: None,
                    policy: Policy::from_aws_str(v).map_err(E::custom)?,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<PolicyInput, A::Error> {
                let e = Either::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let policy = match (e.document, e.statement) {
                    (Some(doc), None) => doc,
                    (None, Some(statement)) => Policy::compile(RawPolicy {
                        version: e.version,
                        id: e.doc_id,
                        statement,
                    })
                    .map_err(de::Error::custom)?,
                    (Some(_), Some(_)) => {
                        return Err(de::Error::custom(
                            "give either \"document\" or the document's own \"Statement\", not both",
                        ));
                    }
                    (None, None) => {
                        return Err(de::Error::custom(
                            "missing \"document\" (or a bare policy document with \"Statement\")",
                        ));
                    }
                };
                Ok(PolicyInput {
                    name: e.name,
                    kind: e.kind,
                    policy,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A line of input that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InputError {
    pub path: String,
    pub message: String,
}

impl EvaluationInput {
    /// Parses one line of JSON, with errors naming the field (`policies.identity[0].document:
    /// Statement[1].Effect: ...`).
    pub fn from_json(line: &str) -> Result<Self, InputError> {
        // Tracking the path costs time on every line; only a failed line needs it, so that one
        // is parsed again.
        if let Ok(input) = serde_json::from_str(line) {
            return Ok(input);
        }
        let mut de = serde_json::Deserializer::from_str(line);
        let input: EvaluationInput = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            InputError {
                path: if path == "." { "input".into() } else { path },
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| InputError {
            path: "input".into(),
            message: format!("trailing characters after the JSON object: {e}"),
        })?;
        Ok(input)
    }

    /// Builds the engine's request and policy set.
    pub fn into_parts(self) -> Result<(Request, PolicySet), InputError> {
        let r = self.request;
        let field = |path: &str, message: String| InputError {
            path: path.into(),
            message,
        };
        for (path, acct) in [
            ("request.principalAccount", &r.principal_account),
            ("request.resourceAccount", &r.resource_account),
        ] {
            if let Some(a) = acct
                && !(a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(field(
                    path,
                    format!("\"{a}\" is not a 12-digit AWS account id"),
                ));
            }
        }
        if r.principal.trim().is_empty() {
            return Err(field("request.principal", "must not be empty".into()));
        }
        if r.action.trim().is_empty() || (!r.action.contains(':')) {
            return Err(field(
                "request.action",
                format!(
                    "\"{}\" is not an action such as \"sqs:SendMessage\"",
                    r.action
                ),
            ));
        }
        if r.resource.trim().is_empty() {
            return Err(field("request.resource", "must not be empty".into()));
        }
        let mut context = Context::new();
        for (k, v) in r.context {
            match v {
                OneOrMany::One(s) => context.insert(&k, s.0),
                OneOrMany::Many(list) => {
                    context.insert_many(&k, list.into_iter().map(|s| s.0).collect())
                }
            };
        }
        let mut req = Request::new(&r.principal, &r.action, &r.resource, context);
        if r.principal_account.is_some() {
            req = req.with_principal_account(r.principal_account);
        }
        if r.resource_account.is_some() {
            req = req.with_resource_account(r.resource_account);
        }
        let p = self.policies;
        let named = |i: PolicyInput, default: String| NamedPolicy {
            name: i.name.unwrap_or(default),
            kind: i.kind,
            policy: i.policy,
        };
        let levels = |list: Vec<OrgLevelInput>, kind: &str| -> Vec<OrgLevel> {
            list.into_iter()
                .enumerate()
                .map(|(i, l)| OrgLevel {
                    target: l.target.unwrap_or_else(|| format!("{kind}-level-{i}")),
                    policies: l
                        .policies
                        .into_iter()
                        .enumerate()
                        .map(|(j, p)| named(p, format!("{kind}-{i}-{j}")))
                        .collect(),
                })
                .collect()
        };
        let set = PolicySet {
            identity: p
                .identity
                .into_iter()
                .enumerate()
                .map(|(i, x)| named(x, format!("identity-policy-{i}")))
                .collect(),
            resource: p
                .resource
                .map(|x| named(x, "resource-policy".into()))
                .into_iter()
                .collect(),
            permission_boundary: p
                .permission_boundary
                .map(|x| named(x, "permissions-boundary".into())),
            session_policy: p.session_policy.map(|x| named(x, "session-policy".into())),
            scps: levels(p.scps, "scp"),
            rcps: levels(p.rcps, "rcp"),
            vpc_endpoint: p
                .vpc_endpoint
                .map(|x| named(x, "vpc-endpoint-policy".into())),
        };
        Ok((req, set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_path() {
        let line = r#"{"request":{"principal":"arn:aws:sts::111111111111:assumed-role/r/s","action":"sqs:SendMessage","resource":"arn:aws:sqs:us-east-1:111111111111:q"},
            "policies":{"identity":[{"name":"a","document":{"Statement":[{"Effect":"Permit","Action":"sqs:*","Resource":"*"}]}}]}}"#;
        let e = EvaluationInput::from_json(line).err().unwrap();
        assert!(e.path.starts_with("policies.identity[0]"), "{e}");
        assert!(e.message.contains("Statement[0].Effect"), "{e}");

        let line = r#"{"request":{"principal":"x","action":"sqs:SendMessage"}}"#;
        let e = EvaluationInput::from_json(line).err().unwrap();
        assert!(e.to_string().contains("resource"), "{e}");

        let line = r#"{"request":{"principal":"x","action":"sqs:SendMessage","resource":"r","principalAccount":"12"}}"#;
        let e = EvaluationInput::from_json(line)
            .unwrap()
            .into_parts()
            .err()
            .unwrap();
        assert_eq!(e.path, "request.principalAccount");
    }

    #[test]
    fn bare_documents_and_strings_are_policies() {
        let line = r#"{"request":{"principal":"arn:aws:sts::111111111111:assumed-role/r/s","action":"sqs:SendMessage","resource":"arn:aws:sqs:us-east-1:111111111111:q"},
            "policies":{"identity":[{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sqs:*","Resource":"*"}},
                                    "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"sqs:*\",\"Resource\":\"*\"}}"]}}"#;
        let (_, set) = EvaluationInput::from_json(line)
            .unwrap()
            .into_parts()
            .unwrap();
        assert_eq!(set.identity.len(), 2);
        assert_eq!(set.identity[1].name, "identity-policy-1");
    }
}
