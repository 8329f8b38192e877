//! The `Condition` element: operators, set qualifiers, `IfExists`, and their evaluation against
//! the request context, with AWS's rules for keys the request does not carry.

use std::net::IpAddr;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;

use super::arn::arn_match;
use super::context::{Context, Lookup};
use super::pattern::{Resolved, Template};
use super::tri::Tri;

/// The operator family, without qualifier and suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        use Op::*;
        Some(match name {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "BinaryEquals" => BinaryEquals,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            "ArnEquals" => ArnEquals,
            "ArnLike" => ArnLike,
            "ArnNotEquals" => ArnNotEquals,
            "ArnNotLike" => ArnNotLike,
            "Null" => Null,
            _ => return None,
        })
    }

    /// Negated operators match when no policy value matches, and when the key is absent.
    pub fn is_negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
                | ArnNotEquals
                | ArnNotLike
        )
    }

    /// Policy variables are substituted only in string and ARN operators.
    fn takes_variables(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringEquals
                | StringNotEquals
                | StringEqualsIgnoreCase
                | StringNotEqualsIgnoreCase
                | StringLike
                | StringNotLike
                | ArnEquals
                | ArnLike
                | ArnNotEquals
                | ArnNotLike
        )
    }
}

/// `ForAllValues:` / `ForAnyValue:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    None,
    ForAllValues,
    ForAnyValue,
}

/// A policy value, prepared for its operator.
#[derive(Debug, Clone)]
enum Value {
    /// String and ARN operators (may hold policy variables).
    Text(Template),
    Number(f64),
    Date(i64),
    Bool(bool),
    Binary(Vec<u8>),
    Net(IpNet),
}

/// One `operator: { key: values }` entry.
#[derive(Debug, Clone)]
pub struct Clause {
    /// The operator as written (`ForAnyValue:StringLikeIfExists`), for messages.
    pub operator: String,
    pub op: Op,
    pub qualifier: Qualifier,
    pub if_exists: bool,
    /// The key as written.
    pub key: String,
    key_lc: String,
    /// The values as written, for operators whose values are not text (those of text
    /// operators are their templates' text).
    raw_other: Vec<String>,
    values: Vec<Value>,
}

/// A condition whose truth we could not decide, because a key it reads is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Residual {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

impl std::fmt::Display for Residual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vals = if self.values.len() == 1 {
            format!("\"{}\"", self.values[0])
        } else {
            format!(
                "[{}]",
                self.values
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        write!(f, "{} {} {}", self.key, self.operator, vals)
    }
}

impl Clause {
    /// Builds a clause. `Err` carries a message naming the problem; the caller adds the path.
    pub fn new(
        operator: &str,
        key: &str,
        raw_values: Vec<String>,
        variables: bool,
    ) -> Result<Clause, String> {
        let (qualifier, rest) = if let Some(r) = operator.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, r)
        } else if let Some(r) = operator.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, r)
        } else {
            (Qualifier::None, operator)
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let op = Op::from_name(base).ok_or_else(|| {
            format!(
                "unknown condition operator `{operator}` (expected e.g. StringEquals, StringLike, ArnLike, IpAddress, Bool, NumericLessThan, DateGreaterThan, Null, with optional ForAllValues:/ForAnyValue: prefix and IfExists suffix)"
            )
        })?;
        if op == Op::Null && (if_exists || qualifier != Qualifier::None) {
            return Err(format!(
                "`{operator}` is not valid: Null takes neither IfExists nor ForAllValues:/ForAnyValue:"
            ));
        }
        if key.is_empty() {
            return Err("condition key must not be empty".into());
        }
        if raw_values.is_empty() {
            return Err(format!("condition key `{key}` has no values"));
        }
        let text = matches!(
            op,
            Op::StringEquals
                | Op::StringNotEquals
                | Op::StringEqualsIgnoreCase
                | Op::StringNotEqualsIgnoreCase
                | Op::StringLike
                | Op::StringNotLike
                | Op::ArnEquals
                | Op::ArnLike
                | Op::ArnNotEquals
                | Op::ArnNotLike
        );
        let (values, raw_other) = if text {
            let variables = variables && op.takes_variables();
            let values = raw_values
                .into_iter()
                .map(|v| Value::Text(Template::from_string(v, variables)))
                .collect();
            (values, Vec::new())
        } else {
            let values = raw_values
                .iter()
                .map(|v| prepare(op, v, false))
                .collect::<Result<Vec<_>, _>>()?;
            (values, raw_values)
        };
        Ok(Clause {
            operator: operator.to_string(),
            op,
            qualifier,
            if_exists,
            key: key.to_string(),
            key_lc: key.to_ascii_lowercase(),
            raw_other,
            values,
        })
    }

    /// The values as written.
    pub fn raw_values(&self) -> impl Iterator<Item = &str> {
        self.raw_other
            .iter()
            .map(String::as_str)
            .chain(self.values.iter().filter_map(|v| match v {
                Value::Text(t) => Some(t.raw()),
                _ => None,
            }))
    }

    pub fn residual(&self) -> Residual {
        Residual {
            operator: self.operator.clone(),
            key: self.key.clone(),
            values: self.raw_values().map(str::to_string).collect(),
        }
    }

    /// Evaluates the clause. `Unknown` when a key it reads is marked unknown in the context.
    pub fn eval(&self, ctx: &Context) -> Tri {
        let found = match ctx.lookup(&self.key_lc) {
            Lookup::Unknown => return Tri::Unknown,
            Lookup::Absent => None,
            Lookup::Values(v) => Some(v),
        };
        if self.op == Op::Null {
            let present = found.is_some();
            // `true` means "the key is absent"; several values are OR-ed.
            return Tri::from(self.values.iter().any(|v| match v {
                Value::Bool(b) => *b != present,
                _ => false,
            }));
        }
        let Some(found) = found else {
            if self.if_exists {
                return Tri::True;
            }
            return Tri::from(match self.qualifier {
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                Qualifier::None => self.op.is_negated(),
            });
        };
        let negated = self.op.is_negated();
        let mut unknown = false;
        // For each request value: does any policy value match it (positive sense)?
        let mut any_match = |rv: &str| -> bool {
            self.values
                .iter()
                .any(|pv| match self.matches(pv, rv, ctx) {
                    Tri::True => true,
                    Tri::False => false,
                    Tri::Unknown => {
                        unknown = true;
                        false
                    }
                })
        };
        let result = match (self.qualifier, negated) {
            (Qualifier::None, false) | (Qualifier::ForAnyValue, false) => {
                found.iter().any(|v| any_match(v))
            }
            (Qualifier::None, true) | (Qualifier::ForAllValues, true) => {
                found.iter().all(|v| !any_match(v))
            }
            (Qualifier::ForAllValues, false) => found.iter().all(|v| any_match(v)),
            (Qualifier::ForAnyValue, true) => found.iter().any(|v| !any_match(v)),
        };
        if unknown {
            Tri::Unknown
        } else {
            Tri::from(result)
        }
    }

    /// Does policy value `pv` match request value `rv` in the operator's positive sense
    /// (`StringNotEquals` compares like `StringEquals`; the caller negates)?
    fn matches(&self, pv: &Value, rv: &str, ctx: &Context) -> Tri {
        use Op::*;
        match (self.op, pv) {
            (StringEquals | StringNotEquals, Value::Text(t)) => match t.literal(ctx) {
                Resolved::Value(s) => Tri::from(*s == *rv),
                Resolved::Unresolvable => Tri::False,
                Resolved::Unknown(_) => Tri::Unknown,
            },
            (StringEqualsIgnoreCase | StringNotEqualsIgnoreCase, Value::Text(t)) => {
                match t.literal(ctx) {
                    Resolved::Value(s) => Tri::from(
                        s.eq_ignore_ascii_case(rv) || s.to_lowercase() == rv.to_lowercase(),
                    ),
                    Resolved::Unresolvable => Tri::False,
                    Resolved::Unknown(_) => Tri::Unknown,
                }
            }
            (StringLike | StringNotLike, Value::Text(t)) => match t.glob(ctx) {
                Resolved::Value(g) => Tri::from(g.matches(rv)),
                Resolved::Unresolvable => Tri::False,
                Resolved::Unknown(_) => Tri::Unknown,
            },
            (ArnEquals | ArnLike | ArnNotEquals | ArnNotLike, Value::Text(t)) => {
                match t.glob(ctx) {
                    Resolved::Value(g) => Tri::from(rv.starts_with("arn:") && arn_match(&g, rv)),
                    Resolved::Unresolvable => Tri::False,
                    Resolved::Unknown(_) => Tri::Unknown,
                }
            }
            (
                NumericEquals
                | NumericNotEquals
                | NumericLessThan
                | NumericLessThanEquals
                | NumericGreaterThan
                | NumericGreaterThanEquals,
                Value::Number(p),
            ) => {
                let Some(r) = parse_number(rv) else {
                    return Tri::False;
                };
                Tri::from(match self.op {
                    NumericEquals | NumericNotEquals => r == *p,
                    NumericLessThan => r < *p,
                    NumericLessThanEquals => r <= *p,
                    NumericGreaterThan => r > *p,
                    _ => r >= *p,
                })
            }
            (
                DateEquals
                | DateNotEquals
                | DateLessThan
                | DateLessThanEquals
                | DateGreaterThan
                | DateGreaterThanEquals,
                Value::Date(p),
            ) => {
                let Some(r) = parse_date(rv) else {
                    return Tri::False;
                };
                Tri::from(match self.op {
                    DateEquals | DateNotEquals => r == *p,
                    DateLessThan => r < *p,
                    DateLessThanEquals => r <= *p,
                    DateGreaterThan => r > *p,
                    _ => r >= *p,
                })
            }
            (Bool, Value::Bool(p)) => Tri::from(parse_bool(rv) == Some(*p)),
            (BinaryEquals, Value::Binary(p)) => Tri::from(
                base64::engine::general_purpose::STANDARD
                    .decode(rv.trim())
                    .is_ok_and(|r| r == *p),
            ),
            (IpAddress | NotIpAddress, Value::Net(net)) => {
                Tri::from(parse_ip(rv).is_some_and(|ip| net.contains(&ip)))
            }
            _ => Tri::False,
        }
    }
}

fn prepare(op: Op, raw: &str, variables: bool) -> Result<Value, String> {
    use Op::*;
    Ok(match op {
        StringEquals | StringNotEquals | StringEqualsIgnoreCase | StringNotEqualsIgnoreCase
        | StringLike | StringNotLike | ArnEquals | ArnLike | ArnNotEquals | ArnNotLike => {
            Value::Text(Template::new(raw, variables))
        }
        NumericEquals | NumericNotEquals | NumericLessThan | NumericLessThanEquals
        | NumericGreaterThan | NumericGreaterThanEquals => Value::Number(
            parse_number(raw).ok_or_else(|| format!("`{raw}` is not a number"))?,
        ),
        DateEquals | DateNotEquals | DateLessThan | DateLessThanEquals | DateGreaterThan
        | DateGreaterThanEquals => Value::Date(parse_date(raw).ok_or_else(|| {
            format!("`{raw}` is not a date (use ISO 8601 such as 2026-01-31T00:00:00Z, or epoch seconds)")
        })?),
        Bool | Null => Value::Bool(
            parse_bool(raw).ok_or_else(|| format!("`{raw}` is not a boolean (true or false)"))?,
        ),
        BinaryEquals => Value::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .map_err(|_| format!("`{raw}` is not base64"))?,
        ),
        IpAddress | NotIpAddress => Value::Net(parse_net(raw).ok_or_else(|| {
            format!("`{raw}` is not an IP address or CIDR block (e.g. 203.0.113.0/24, 2001:db8::/32)")
        })?),
    })
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("nan") || s.to_ascii_lowercase().contains("inf") {
        return None;
    }
    s.parse::<f64>().ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Dates as AWS accepts them: ISO 8601 (with or without time, offset or fraction) or epoch
/// seconds. Compared as milliseconds since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(|v| v.checked_mul(1000));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(d) = DateTime::parse_from_str(s, fmt) {
            return Some(d.with_timezone(&Utc).timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    None
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(op: &str, key: &str, vals: &[&str]) -> Clause {
        Clause::new(op, key, vals.iter().map(|s| s.to_string()).collect(), true).unwrap()
    }

    #[test]
    fn absent_keys_follow_aws_rules() {
        let ctx = Context::new();
        assert_eq!(
            clause("StringEquals", "aws:x", &["a"]).eval(&ctx),
            Tri::False
        );
        assert_eq!(
            clause("StringNotEquals", "aws:x", &["a"]).eval(&ctx),
            Tri::True
        );
        assert_eq!(
            clause("StringEqualsIfExists", "aws:x", &["a"]).eval(&ctx),
            Tri::True
        );
        assert_eq!(
            clause("ForAllValues:StringEquals", "aws:x", &["a"]).eval(&ctx),
            Tri::True
        );
        assert_eq!(
            clause("ForAnyValue:StringEquals", "aws:x", &["a"]).eval(&ctx),
            Tri::False
        );
        assert_eq!(clause("Null", "aws:x", &["true"]).eval(&ctx), Tri::True);
        assert_eq!(clause("Null", "aws:x", &["false"]).eval(&ctx), Tri::False);
    }

    #[test]
    fn unknown_keys_give_unknown() {
        let mut ctx = Context::new();
        ctx.mark_unknown("aws:SourceVpce");
        assert_eq!(
            clause("StringEquals", "aws:SourceVpce", &["vpce-1"]).eval(&ctx),
            Tri::Unknown
        );
    }

    #[test]
    fn operators_compare() {
        let mut ctx = Context::new();
        ctx.insert("n", "5")
            .insert("d", "2026-01-01T00:00:00Z")
            .insert("ip", "10.1.2.3")
            .insert("b", "true")
            .insert("a", "arn:aws:iam::111111111111:role/x");
        assert_eq!(clause("NumericLessThan", "n", &["6"]).eval(&ctx), Tri::True);
        assert_eq!(
            clause("NumericGreaterThan", "n", &["6"]).eval(&ctx),
            Tri::False
        );
        assert_eq!(
            clause("DateGreaterThan", "d", &["2025-12-31"]).eval(&ctx),
            Tri::True
        );
        assert_eq!(
            clause("DateLessThan", "d", &["1767225600"]).eval(&ctx),
            Tri::False
        );
        assert_eq!(
            clause("IpAddress", "ip", &["10.0.0.0/8"]).eval(&ctx),
            Tri::True
        );
        assert_eq!(
            clause("NotIpAddress", "ip", &["10.0.0.0/8"]).eval(&ctx),
            Tri::False
        );
        assert_eq!(clause("Bool", "b", &["true"]).eval(&ctx), Tri::True);
        assert_eq!(
            clause("ArnLike", "a", &["arn:aws:iam::*:role/*"]).eval(&ctx),
            Tri::True
        );
    }

    #[test]
    fn bad_values_are_rejected_with_the_value() {
        let e = Clause::new("NumericLessThan", "k", vec!["abc".into()], true).unwrap_err();
        assert!(e.contains("abc"), "{e}");
        let e = Clause::new("StringEqualz", "k", vec!["a".into()], true).unwrap_err();
        assert!(e.contains("StringEqualz"), "{e}");
        assert!(Clause::new("ForAllValues:Null", "k", vec!["true".into()], true).is_err());
    }
}
