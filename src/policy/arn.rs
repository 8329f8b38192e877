//! Amazon Resource Names: parsing, and the segment-wise wildcard match that `Resource` and the
//! `Arn*` condition operators use.

use super::pattern::{Glob, Tok, glob_match};

/// A borrowed view of an ARN's six parts: `arn:partition:service:region:account:resource`.
/// The resource part may itself contain colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

/// Why a string is not an ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error("`{0}` is not an ARN: it must start with `arn:`")]
    NoPrefix(String),
    #[error(
        "`{0}` is not an ARN: it needs six colon-separated parts (arn:partition:service:region:account:resource)"
    )]
    TooFewParts(String),
    #[error("`{0}` is not an ARN: the partition and service must not be empty")]
    EmptyPart(String),
}

impl<'a> Arn<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ArnError> {
        let Some(rest) = s.strip_prefix("arn:") else {
            return Err(ArnError::NoPrefix(s.to_string()));
        };
        let mut it = rest.splitn(5, ':');
        let (Some(partition), Some(service), Some(region), Some(account), Some(resource)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(ArnError::TooFewParts(s.to_string()));
        };
        if partition.is_empty() || service.is_empty() {
            return Err(ArnError::EmptyPart(s.to_string()));
        }
        Ok(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }
}

/// Matches `value` against an ARN pattern the way IAM matches `Resource` and `ArnLike`: each of
/// the six colon-separated parts separately, with `*` and `?` inside a part. A pattern that is
/// not ARN-shaped (`*`, or anything not starting with `arn:`) is a plain wildcard match.
pub fn arn_match(pattern: &Glob, value: &str) -> bool {
    let toks = pattern.toks();
    if pattern.is_any() {
        return true;
    }
    if !starts_with_arn(toks) {
        return pattern.matches(value);
    }
    let (parts, n) = split_toks(toks);
    let pat_parts = &parts[..n];
    let val_parts: Vec<&str> = value.splitn(6, ':').collect();
    if pat_parts.len() == 6 {
        if val_parts.len() != 6 {
            return false;
        }
        pat_parts
            .iter()
            .zip(&val_parts)
            .all(|(p, v)| glob_match(p, v.as_bytes(), false))
    } else {
        // Fewer parts in the pattern (`arn:aws:sqs:*`): the last pattern part covers the rest
        // of the value, colons included.
        let n = pat_parts.len();
        let val_parts: Vec<&str> = value.splitn(n, ':').collect();
        if val_parts.len() != n {
            return false;
        }
        pat_parts
            .iter()
            .zip(&val_parts)
            .all(|(p, v)| glob_match(p, v.as_bytes(), false))
    }
}

/// Matches `value` against a `Resource` element pattern. Like [`arn_match`], except that a `*`
/// that ends a part may run past the colon into the following parts, as IAM documents for the
/// `Resource` element (`arn:aws:sqs:us-east-1:*` matches every queue in the region).
pub fn resource_match(pattern: &Glob, value: &str) -> bool {
    let toks = pattern.toks();
    if pattern.is_any() {
        return true;
    }
    if !starts_with_arn(toks) {
        return pattern.matches(value);
    }
    let (parts, n) = split_toks(toks);
    let pat_parts = &parts[..n];
    // Byte ranges of the value's colon-separated parts (all of them, the resource's included).
    let mut bounds = [(0, 0); ABSORB_BACKTRACK_MAX_PARTS];
    let mut count = 0;
    let mut start = 0;
    for (i, b) in value.bytes().enumerate() {
        if b == b':' {
            if count == ABSORB_BACKTRACK_MAX_PARTS - 1 {
                return absorb_match_nfa(pat_parts, value);
            }
            bounds[count] = (start, i);
            count += 1;
            start = i + 1;
        }
    }
    bounds[count] = (start, value.len());
    absorb_match(pat_parts, 0, value, &bounds[..=count], 0)
}

/// Up to this many colon-separated parts in the value, [`absorb_match`]'s backtracking is
/// cheap; beyond, it grows with the fourth power of their number, so [`absorb_match_nfa`]
/// takes over.
const ABSORB_BACKTRACK_MAX_PARTS: usize = 8;

/// The language of [`absorb_match`], matched by simulating its automaton over the value's
/// characters: O(pattern × value) like [`glob_match`], however many colons the value holds.
/// A part's wildcards may consume a colon only in the last part and in parts that end with
/// `*` (which may span several of the value's parts).
fn absorb_match_nfa(pat: &[&[Tok]], value: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum T {
        Char(char),
        One,
        Many,
    }
    // Runs of literal bytes are whole UTF-8 characters (patterns come from `&str`).
    let parts: Vec<Vec<T>> = pat
        .iter()
        .map(|p| {
            let mut out = Vec::with_capacity(p.len());
            let mut run = Vec::new();
            for t in p.iter().map(Some).chain([None]) {
                if let Some(Tok::Byte(b)) = t {
                    run.push(*b);
                    continue;
                }
                out.extend(String::from_utf8_lossy(&run).chars().map(T::Char));
                run.clear();
                match t {
                    Some(Tok::One) => out.push(T::One),
                    Some(Tok::Many) => out.push(T::Many),
                    _ => {}
                }
            }
            out
        })
        .collect();
    let last = parts.len() - 1;
    let mut offset = Vec::with_capacity(parts.len());
    let mut total = 0;
    for p in &parts {
        offset.push(total);
        total += p.len() + 1;
    }
    // Adds state (part i, token t) and what `*` lets it skip to, once per step.
    let add = |seen: &mut [usize], list: &mut Vec<(usize, usize)>, step, i, mut t| loop {
        let id = offset[i] + t;
        if seen[id] == step {
            return;
        }
        seen[id] = step;
        list.push((i, t));
        if parts[i].get(t) == Some(&T::Many) {
            t += 1;
        } else {
            return;
        }
    };
    let mut seen = vec![usize::MAX; total];
    let (mut cur, mut next) = (Vec::new(), Vec::new());
    add(&mut seen, &mut cur, 0, 0, 0);
    for (step, c) in value.chars().enumerate() {
        next.clear();
        for &(i, t) in &cur {
            let p = &parts[i];
            let Some(&tok) = p.get(t) else {
                if i != last && c == ':' {
                    add(&mut seen, &mut next, step + 1, i + 1, 0);
                }
                continue;
            };
            let wild_ok = c != ':' || i == last || p.last() == Some(&T::Many);
            match tok {
                T::Char(x) if x == c => add(&mut seen, &mut next, step + 1, i, t + 1),
                T::One if wild_ok => add(&mut seen, &mut next, step + 1, i, t + 1),
                T::Many if wild_ok => add(&mut seen, &mut next, step + 1, i, t),
                _ => {}
            }
        }
        std::mem::swap(&mut cur, &mut next);
        if cur.is_empty() {
            return false;
        }
    }
    cur.iter()
        .any(|&(i, t)| i == last && t == parts[last].len())
}

fn absorb_match(
    pat: &[&[Tok]],
    pi: usize,
    value: &str,
    bounds: &[(usize, usize)],
    vi: usize,
) -> bool {
    if vi >= bounds.len() {
        return false;
    }
    let span = |a: usize, b: usize| &value.as_bytes()[bounds[a].0..bounds[b].1];
    if pi == pat.len() - 1 {
        // The last pattern part takes whatever is left, colons included.
        return glob_match(pat[pi], span(vi, bounds.len() - 1), false);
    }
    if glob_match(pat[pi], span(vi, vi), false) && absorb_match(pat, pi + 1, value, bounds, vi + 1)
    {
        return true;
    }
    if pat[pi].last() == Some(&Tok::Many) {
        for j in vi + 1..bounds.len() {
            if glob_match(pat[pi], span(vi, j), false)
                && absorb_match(pat, pi + 1, value, bounds, j + 1)
            {
                return true;
            }
        }
    }
    false
}

fn starts_with_arn(toks: &[Tok]) -> bool {
    toks.len() >= 4
        && toks[..4]
            .iter()
            .zip(b"arn:")
            .all(|(t, b)| *t == Tok::Byte(*b))
}

/// Splits pattern tokens at the first five colons: the parts, and how many there are.
fn split_toks(toks: &[Tok]) -> ([&[Tok]; 6], usize) {
    let mut parts: [&[Tok]; 6] = [&[]; 6];
    let mut n = 0;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if n == 5 {
            break;
        }
        if *t == Tok::Byte(b':') {
            parts[n] = &toks[start..i];
            n += 1;
            start = i + 1;
        }
    }
    parts[n] = &toks[start..];
    (parts, n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_six_parts() {
        let a = Arn::parse("arn:aws:sqs:us-east-1:111111111111:orders").unwrap();
        assert_eq!(a.service, "sqs");
        assert_eq!(a.account, "111111111111");
        assert_eq!(a.resource, "orders");
        let a = Arn::parse("arn:aws:iam::111111111111:role/a:b").unwrap();
        assert_eq!(a.region, "");
        assert_eq!(a.resource, "role/a:b");
        assert!(Arn::parse("sqs.amazonaws.com").is_err());
        assert!(Arn::parse("arn:aws:sqs:us-east-1").is_err());
    }

    #[test]
    fn matches_segment_by_segment() {
        let q = "arn:aws:sqs:us-east-1:111111111111:orders";
        let cases = [
            ("*", true),
            ("arn:aws:sqs:*:111111111111:*", true),
            ("arn:aws:sqs:us-east-1:111111111111:ord*", true),
            ("arn:aws:sqs:us-east-1:111111111111:Orders", false),
            ("arn:aws:sqs:us-east-1:222222222222:orders", false),
            ("arn:aws:sqs:us-east-?:111111111111:orders", true),
            ("arn:aws:sqs:*", true),
            ("arn:aws:*:us-east-1:111111111111:orders", true),
            // A wildcard does not run across a colon into the next part.
            ("arn:aws:sqs:us-east-1*:orders", false),
            ("arn:aws:kms:*:*:*", false),
        ];
        for (p, want) in cases {
            assert_eq!(arn_match(&Glob::new(p), q), want, "{p}");
        }
        // In `Resource`, a `*` ending a part may run across colons.
        assert!(resource_match(
            &Glob::new("arn:aws:sqs:us-east-1*:orders"),
            q
        ));
        assert!(resource_match(&Glob::new("arn:aws:sqs:*:orders"), q));
        assert!(!resource_match(&Glob::new("arn:aws:sqs:*:other"), q));
        assert!(!resource_match(&Glob::new("arn:aws:sqs:us-*-1:orders"), q));
        assert!(resource_match(
            &Glob::new("arn:aws:sqs:us-east-1:111111111111:orders"),
            q
        ));
        assert!(!resource_match(
            &Glob::new("arn:aws:sqs:us-east-1:111111111111:Orders"),
            q
        ));
        assert!(arn_match(
            &Glob::new("arn:aws:iam::*:role/*"),
            "arn:aws:iam::111111111111:role/a/b"
        ));
    }
}
