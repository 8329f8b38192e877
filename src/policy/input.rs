//! The engine's JSON interface: one request with the policies that take part, as the
//! `evaluate` command reads it (one per line). Policies may be named objects
//! (`{"name", "type", "document"}`), bare documents, or strings as AWS returns them.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, de};
use serde_json::value::RawValue;

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
    pub(crate) context: ContextInput,
}

/// `request.context`, read as a map: sorted by key, a later duplicate replacing an earlier one
/// (when inserted in order), without building a tree.
#[derive(Default)]
pub(crate) struct ContextInput(Vec<(String, OneOrMany<Scalar>)>);

impl<'de> Deserialize<'de> for ContextInput {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = ContextInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ContextInput, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                // Stable: equal keys stay in input order.
                entries.sort_by(|a: &(String, _), b| a.0.cmp(&b.0));
                Ok(ContextInput(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// The policies of a line. `P` is how each policy is held: parsed ([`PolicyInput`]) or, for
/// the compile cache, as its raw JSON text (`&RawValue`); one definition keeps both readings
/// of the fields identical.
#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "P: Deserialize<'de>")
)]
pub struct PoliciesInput<P = PolicyInput> {
    #[serde(default)]
    pub identity: Vec<P>,
    #[serde(default, alias = "resourcePolicy")]
    pub resource: Option<P>,
    #[serde(default, alias = "permissionsBoundary", alias = "boundary")]
    pub permission_boundary: Option<P>,
    #[serde(default)]
    pub session_policy: Option<P>,
    #[serde(default)]
    pub scps: Vec<OrgLevelInput<P>>,
    #[serde(default)]
    pub rcps: Vec<OrgLevelInput<P>>,
    #[serde(default, alias = "vpcEndpointPolicy")]
    pub vpc_endpoint: Option<P>,
}

impl<P> Default for PoliciesInput<P> {
    fn default() -> Self {
        PoliciesInput {
            identity: Vec::new(),
            resource: None,
            permission_boundary: None,
            session_policy: None,
            scps: Vec::new(),
            rcps: Vec::new(),
            vpc_endpoint: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "P: Deserialize<'de>"))]
pub struct OrgLevelInput<P = PolicyInput> {
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub policies: Vec<P>,
}

impl<P> PoliciesInput<P> {
    /// Turns every policy into another form, stopping at the first that fails.
    fn try_map<Q, E>(self, mut f: impl FnMut(P) -> Result<Q, E>) -> Result<PoliciesInput<Q>, E> {
        let mut opt = |p: Option<P>| p.map(&mut f).transpose();
        let resource = opt(self.resource)?;
        let permission_boundary = opt(self.permission_boundary)?;
        let session_policy = opt(self.session_policy)?;
        let vpc_endpoint = opt(self.vpc_endpoint)?;
        let identity = self
            .identity
            .into_iter()
            .map(&mut f)
            .collect::<Result<_, _>>()?;
        let mut levels = |list: Vec<OrgLevelInput<P>>| {
            list.into_iter()
                .map(|l| {
                    Ok(OrgLevelInput {
                        target: l.target,
                        policies: l
                            .policies
                            .into_iter()
                            .map(&mut f)
                            .collect::<Result<_, _>>()?,
                    })
                })
                .collect::<Result<Vec<_>, E>>()
        };
        let scps = levels(self.scps)?;
        let rcps = levels(self.rcps)?;
        Ok(PoliciesInput {
            identity,
            resource,
            permission_boundary,
            session_policy,
            scps,
            rcps,
            vpc_endpoint,
        })
    }
}

/// A policy, named (`{"name": ..., "type": ..., "document": ...}`), as a bare document, or as a
/// string holding the document.
#[derive(Clone)]
pub struct PolicyInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub policy: Arc<Policy>,
}

impl<'de> Deserialize<'de> for PolicyInput {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // One struct covers both object forms; which fields are present tells them apart.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Either<'a> {
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
            #[serde(rename = "Statement", default, borrow)]
            statement: Option<OneOrMany<RawStatement<'a>>>,
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
                    policy: Arc::new(Policy::from_aws_str(v).map_err(E::custom)?),
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
                    policy: Arc::new(policy),
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

    /// Parses one line of JSON and builds the engine's request and policy set, like
    /// `from_json(line)?.into_parts()` (same results, same errors), but takes the policies from
    /// `cache` when the same JSON text was compiled before: the line's whole `policies` object
    /// when it came before, else each policy that did.
    pub fn parts_from_json(
        line: &str,
        cache: &mut PolicyCache,
    ) -> Result<(Request, Arc<PolicySet>), InputError> {
        // Mirrors `EvaluationInput`, with the policies left as their raw text.
        #[derive(Deserialize)]
        struct Line<'a> {
            request: RequestInput,
            // `Some` also for `null`, which is not a policies object: that is for the uncached
            // parse to reject.
            #[serde(default, borrow, deserialize_with = "raw_some")]
            policies: Option<&'a RawValue>,
        }
        fn raw_some<'de: 'a, 'a, D: de::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<&'a RawValue>, D::Error> {
            <&RawValue>::deserialize(d).map(Some)
        }
        let fast = serde_json::from_str::<Line>(line).ok().and_then(|l| {
            let set = match l.policies {
                Some(raw) => cache.policy_set(raw.get())?,
                None => cache.empty.clone(),
            };
            Some((l.request, set))
        });
        match fast {
            Some((request, set)) => Ok((build_request(request)?, set)),
            // Something is wrong with the line: the uncached parse names it, as it always did.
            None => {
                let (req, set) = EvaluationInput::from_json(line)?.into_parts()?;
                Ok((req, Arc::new(set)))
            }
        }
    }

    /// Builds the engine's request and policy set.
    pub fn into_parts(self) -> Result<(Request, PolicySet), InputError> {
        build_parts(self.request, self.policies)
    }
}

/// Compiled policies by the exact JSON text they were given as, so that documents that come
/// again (the same account's policies on request after request) are neither parsed nor
/// compiled again: whole `policies` objects of a line, and each policy on its own. Only what
/// compiled is kept: a bad document is parsed again each time, with the error naming where it
/// is.
///
/// Each is kept the second time it is seen (a small table of recent text hashes remembers the
/// first): input where every document is new then costs about what it costs without a cache,
/// instead of filling it with documents that never come again.
///
/// Bounded, for each of the two kinds: two generations of at most
/// [`PolicyCache::GENERATION_ENTRIES`] entries and [`PolicyCache::GENERATION_BYTES`] bytes of
/// text each. When the current one is full it becomes the previous one (dropping the older); a
/// hit in the previous generation moves the entry back to the current one. Texts over
/// [`PolicyCache::MAX_TEXT`] bytes are not kept.
pub struct PolicyCache {
    policies: Generations<PolicyInput>,
    sets: Generations<Arc<PolicySet>>,
    empty: Arc<PolicySet>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyCache {
    pub const GENERATION_ENTRIES: usize = 2048;
    pub const GENERATION_BYTES: usize = 8 << 20;
    pub const MAX_TEXT: usize = 64 << 10;

    pub fn new() -> Self {
        PolicyCache {
            policies: Generations::default(),
            sets: Generations::default(),
            empty: Arc::default(),
        }
    }

    /// Number of policy documents held.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy set that `text` (the JSON of a line's `policies`) builds; `None` when it does
    /// not.
    fn policy_set(&mut self, text: &str) -> Option<Arc<PolicySet>> {
        let policies = &mut self.policies;
        self.sets.get(text, |text| {
            let raw: PoliciesInput<&RawValue> = serde_json::from_str(text).ok()?;
            let parsed = raw
                .try_map(|raw| {
                    policies
                        .get(raw.get(), |text| serde_json::from_str(text).ok())
                        .ok_or(())
                })
                .ok()?;
            Some(Arc::new(build_set(parsed)))
        })
    }
}

/// One kind of cache entry of [`PolicyCache`], by text. Each text is hashed once per lookup,
/// for both generations and the table of texts seen once.
struct Generations<V> {
    current: HashTable<Entry<V>>,
    previous: HashTable<Entry<V>>,
    current_bytes: usize,
    /// Hashes of texts seen once, by their low bits.
    seen: Vec<u64>,
    hasher: foldhash::fast::RandomState,
}

struct Entry<V> {
    hash: u64,
    text: Box<str>,
    value: V,
}

impl<V> Default for Generations<V> {
    fn default() -> Self {
        Generations {
            current: HashTable::new(),
            previous: HashTable::new(),
            current_bytes: 0,
            seen: Vec::new(),
            hasher: Default::default(),
        }
    }
}

impl<V: Clone> Generations<V> {
    /// Slots of the table of texts seen once (a power of two).
    const SEEN: usize = 4096;

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// The value for `text`: kept, or made by `make` (and kept if it is seen again).
    fn get(&mut self, text: &str, make: impl FnOnce(&str) -> Option<V>) -> Option<V> {
        let hash = self.hasher.hash_one(text);
        let is = |e: &Entry<V>| e.hash == hash && *e.text == *text;
        if let Some(e) = self.current.find(hash, is) {
            return Some(e.value.clone());
        }
        let entry = match self.previous.find_entry(hash, is) {
            Ok(hit) => hit.remove().0,
            Err(_) => {
                let value = make(text)?;
                if text.len() > PolicyCache::MAX_TEXT || self.first_sight(hash) {
                    return Some(value);
                }
                Entry {
                    hash,
                    text: Box::from(text),
                    value,
                }
            }
        };
        if self.current.len() >= PolicyCache::GENERATION_ENTRIES
            || self.current_bytes + entry.text.len() > PolicyCache::GENERATION_BYTES
        {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += entry.text.len();
        let value = entry.value.clone();
        self.current.insert_unique(hash, entry, |e| e.hash);
        Some(value)
    }

    /// True the first time a text of this hash is seen (lately), and remembers it.
    fn first_sight(&mut self, hash: u64) -> bool {
        if self.seen.is_empty() {
            self.seen = vec![0; Self::SEEN];
        }
        let slot = &mut self.seen[hash as usize & (Self::SEEN - 1)];
        let first = *slot != hash;
        *slot = hash;
        first
    }
}

/// Builds the engine's request and policy set.
fn build_parts(r: RequestInput, p: PoliciesInput) -> Result<(Request, PolicySet), InputError> {
    let req = build_request(r)?;
    Ok((req, build_set(p)))
}

/// Checks the request and builds it.
fn build_request(r: RequestInput) -> Result<Request, InputError> {
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
    let mut context = Context::with_capacity(r.context.0.len());
    for (k, v) in r.context.0 {
        let values = match v {
            OneOrMany::One(s) => vec![s.0],
            OneOrMany::Many(list) => list.into_iter().map(|s| s.0).collect(),
        };
        context.insert_owned(k, values);
    }
    let mut req = Request::from_owned(&r.principal, r.action, r.resource, context);
    if r.principal_account.is_some() {
        req = req.with_principal_account(r.principal_account);
    }
    if r.resource_account.is_some() {
        req = req.with_resource_account(r.resource_account);
    }
    Ok(req)
}

/// Names the policies (by their place when they have no name) and builds the set.
fn build_set(p: PoliciesInput) -> PolicySet {
    let named = |i: PolicyInput, default: &dyn Fn() -> String| NamedPolicy {
        name: i.name.unwrap_or_else(default),
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
                    .map(|(j, p)| named(p, &|| format!("{kind}-{i}-{j}")))
                    .collect(),
            })
            .collect()
    };
    PolicySet {
        identity: p
            .identity
            .into_iter()
            .enumerate()
            .map(|(i, x)| named(x, &|| format!("identity-policy-{i}")))
            .collect(),
        resource: p
            .resource
            .map(|x| named(x, &|| "resource-policy".into()))
            .into_iter()
            .collect(),
        permission_boundary: p
            .permission_boundary
            .map(|x| named(x, &|| "permissions-boundary".into())),
        session_policy: p
            .session_policy
            .map(|x| named(x, &|| "session-policy".into())),
        scps: levels(p.scps, "scp"),
        rcps: levels(p.rcps, "rcp"),
        vpc_endpoint: p
            .vpc_endpoint
            .map(|x| named(x, &|| "vpc-endpoint-policy".into())),
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

    fn line(policy: &str) -> String {
        format!(
            r#"{{"request":{{"principal":"arn:aws:sts::111111111111:assumed-role/r/s","action":"sqs:SendMessage","resource":"arn:aws:sqs:us-east-1:111111111111:q"}},"policies":{{"identity":[{policy}]}}}}"#
        )
    }

    #[test]
    fn the_cache_shares_compiled_policies_and_keeps_only_good_ones() {
        let good = r#"{"name":"a","document":{"Statement":{"Effect":"Allow","Action":"sqs:*","Resource":"*"}}}"#;
        let mut cache = PolicyCache::new();
        // Kept the second time it is seen, and shared from then on.
        let (_, a) = EvaluationInput::parts_from_json(&line(good), &mut cache).unwrap();
        assert!(cache.is_empty());
        let (_, b) = EvaluationInput::parts_from_json(&line(good), &mut cache).unwrap();
        let (_, c) = EvaluationInput::parts_from_json(&line(good), &mut cache).unwrap();
        assert!(!Arc::ptr_eq(&a.identity[0].policy, &b.identity[0].policy));
        assert!(Arc::ptr_eq(&b.identity[0].policy, &c.identity[0].policy));
        assert_eq!(c.identity[0].name, "a");
        assert_eq!(cache.len(), 1);
        // In another set, the same document is the same policy.
        let other = line(good).replace(
            r#""policies":{"#,
            &format!(r#""policies":{{"resource":{good},"#),
        );
        let (_, d) = EvaluationInput::parts_from_json(&other, &mut cache).unwrap();
        assert!(Arc::ptr_eq(&c.identity[0].policy, &d.identity[0].policy));
        assert!(Arc::ptr_eq(&c.identity[0].policy, &d.resource[0].policy));

        // A bad document is not kept, and its error is the uncached one, path and all.
        let bad =
            line(r#"{"name":"a","document":{"Statement":{"Effect":"Permit","Action":"sqs:*"}}}"#);
        for _ in 0..2 {
            let e = EvaluationInput::parts_from_json(&bad, &mut cache)
                .err()
                .unwrap();
            let want = EvaluationInput::from_json(&bad).err().unwrap();
            assert_eq!(e, want);
            assert!(e.path.starts_with("policies.identity[0]"), "{e}");
        }
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = PolicyCache::new();
        let n = 3 * PolicyCache::GENERATION_ENTRIES;
        for i in 0..n {
            let doc = format!(
                r#"{{"Id":"{i}","Statement":{{"Effect":"Allow","Action":"sqs:*","Resource":"*"}}}}"#
            );
            for _ in 0..2 {
                assert!(EvaluationInput::parts_from_json(&line(&doc), &mut cache).is_ok());
            }
            assert!(cache.len() <= 2 * PolicyCache::GENERATION_ENTRIES);
        }
        assert!(cache.len() > PolicyCache::GENERATION_ENTRIES);

        // Documents too large to keep are compiled every time.
        let mut cache = PolicyCache::new();
        let big = format!(
            r#"{{"Id":"{}","Statement":{{"Effect":"Allow","Action":"sqs:*","Resource":"*"}}}}"#,
            "x".repeat(PolicyCache::MAX_TEXT)
        );
        for _ in 0..2 {
            assert!(EvaluationInput::parts_from_json(&line(&big), &mut cache).is_ok());
        }
        assert!(cache.is_empty());
    }
}
