//! Wildcard patterns and policy-variable templates: the two ways a policy string can match more
//! than itself. Matching is iterative (no recursion, no exponential backtracking), so a hostile
//! pattern costs at most O(pattern × input).

use std::borrow::Cow;

use super::context::{Context, Lookup};

/// One element of a compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Byte(u8),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters, including none.
    Many,
}

/// A compiled `*`/`?` pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Glob {
    toks: Vec<Tok>,
    /// True when the pattern has no wildcard at all (then matching is a plain comparison).
    literal: bool,
}

impl Glob {
    /// Compiles `text` where `*` and `?` are wildcards.
    pub fn new(text: &str) -> Self {
        Glob::from_bytes(text.bytes())
    }

    /// The pattern of `bytes` (`*` and `?` wildcards), in one pass.
    fn from_bytes(bytes: impl ExactSizeIterator<Item = u8>) -> Self {
        let toks: Vec<Tok> = bytes
            .map(|b| match b {
                b'*' => Tok::Many,
                b'?' => Tok::One,
                b => Tok::Byte(b),
            })
            .collect();
        let literal = toks.iter().all(|t| matches!(t, Tok::Byte(_)));
        Glob { toks, literal }
    }

    /// [`Glob::new`] of the ASCII lower-case form of `text`.
    pub fn new_ascii_lowercase(text: &str) -> Self {
        Glob::from_bytes(text.bytes().map(|b| b.to_ascii_lowercase()))
    }

    fn push_wild(&mut self, text: &str) {
        self.toks.extend(text.bytes().map(|b| match b {
            b'*' => Tok::Many,
            b'?' => Tok::One,
            b => Tok::Byte(b),
        }));
    }

    fn push_literal(&mut self, text: &str) {
        self.toks.extend(text.bytes().map(Tok::Byte));
    }

    /// True when the pattern is exactly `*`.
    pub fn is_any(&self) -> bool {
        self.toks.len() == 1 && self.toks[0] == Tok::Many
    }

    pub fn matches(&self, s: &str) -> bool {
        glob_match(&self.toks, s.as_bytes(), false)
    }

    /// ASCII case-insensitive match; the pattern must already be lower-case.
    pub fn matches_ignore_ascii_case(&self, s: &str) -> bool {
        glob_match(&self.toks, s.as_bytes(), true)
    }

    pub(crate) fn toks(&self) -> &[Tok] {
        &self.toks
    }
}

fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xff => 4,
        _ => 1,
    }
}

/// Classic two-pointer wildcard match with a single backtrack point: linear space, and time at
/// most proportional to pattern length times input length.
pub(crate) fn glob_match(p: &[Tok], s: &[u8], ignore_case: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                Tok::Many => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                Tok::One => {
                    si += utf8_len(s[si]);
                    pi += 1;
                    continue;
                }
                Tok::Byte(b) => {
                    let c = if ignore_case {
                        s[si].to_ascii_lowercase()
                    } else {
                        s[si]
                    };
                    if b == c {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                let next = ss + utf8_len(s[ss]);
                star = Some((sp, next));
                pi = sp + 1;
                si = next;
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == Tok::Many {
        pi += 1;
    }
    pi == p.len() && si <= s.len()
}

/// A piece of a policy string that may hold `${...}` policy variables.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Text as written; `*` and `?` in it are wildcards when the template is used as a pattern.
    Text(String),
    /// `${*}`, `${?}`, `${$}`: always the literal character.
    Escaped(char),
    /// `${key}` or `${key, 'default'}`, key lower-cased.
    Var {
        key: String,
        default: Option<String>,
    },
}

/// A policy string with policy variables resolved against the request context at evaluation
/// time. Strings without variables are compiled once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: String,
    form: Form,
}

/// How a [`Template`] is held: the common case (no variables, no escapes) keeps only the raw
/// text and its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// No variables and no escapes: the literal form is the raw text.
    Plain(Glob),
    /// No variables, but escapes (`${*}`): the literal form differs from the raw text.
    Fixed { literal: String, glob: Glob },
    /// Resolved at evaluation time.
    Vars(Vec<Seg>),
}

/// What resolving a template produced.
pub enum Resolved<T> {
    Value(T),
    /// A variable's key is absent and has no default: the value matches nothing.
    Unresolvable,
    /// A variable's key is marked unknown (partial evaluation).
    Unknown(String),
}

impl Template {
    /// Parses `raw`. When `variables` is false (policy version 2008-10-17 or none), `${...}` is
    /// literal text, as AWS treats it.
    pub fn new(raw: &str, variables: bool) -> Self {
        Template::from_string(raw.to_string(), variables)
    }

    /// [`Template::new`], keeping `raw` as the template's text.
    pub fn from_string(raw: String, variables: bool) -> Self {
        let form = if !variables || !raw.contains("${") {
            Form::Plain(Glob::new(&raw))
        } else {
            let segs = parse_segments(&raw);
            if segs.iter().any(|s| matches!(s, Seg::Var { .. })) {
                Form::Vars(segs)
            } else if segs.iter().any(|s| matches!(s, Seg::Escaped(_))) {
                let none = &mut |_: &str, _: Option<&str>| Resolved::Unresolvable;
                Form::Fixed {
                    literal: build_literal(&segs, raw.len(), none).unwrap_or_default(),
                    glob: build_glob(&segs, raw.len(), none).unwrap_or_default(),
                }
            } else {
                // Only text (a `${...}` that is no variable stays as written): the raw text.
                Form::Plain(Glob::new(&raw))
            }
        };
        Template { raw, form }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn has_variables(&self) -> bool {
        matches!(self.form, Form::Vars(_))
    }

    /// The names of the context keys this template refers to.
    pub fn variable_keys(&self) -> impl Iterator<Item = &str> {
        let segs: &[Seg] = match &self.form {
            Form::Vars(segs) => segs,
            _ => &[],
        };
        segs.iter().filter_map(|s| match s {
            Seg::Var { key, .. } => Some(key.as_str()),
            _ => None,
        })
    }

    /// The template as a literal string (wildcard characters are plain characters).
    pub fn literal<'a>(&'a self, ctx: &Context) -> Resolved<Cow<'a, str>> {
        let segs = match &self.form {
            Form::Plain(_) => return Resolved::Value(Cow::Borrowed(&self.raw)),
            Form::Fixed { literal, .. } => return Resolved::Value(Cow::Borrowed(literal)),
            Form::Vars(segs) => segs,
        };
        let mut unknown = None;
        let r = build_literal(segs, self.raw.len(), &mut |k, d| {
            resolve_var(ctx, k, d, &mut unknown)
        });
        match (r, unknown) {
            (_, Some(k)) => Resolved::Unknown(k),
            (Some(s), None) => Resolved::Value(Cow::Owned(s)),
            (None, None) => Resolved::Unresolvable,
        }
    }

    /// The template as a wildcard pattern (`*`/`?` from the text are wildcards, substituted
    /// values and escapes are literal).
    pub fn glob<'a>(&'a self, ctx: &Context) -> Resolved<Cow<'a, Glob>> {
        let segs = match &self.form {
            Form::Plain(glob) | Form::Fixed { glob, .. } => {
                return Resolved::Value(Cow::Borrowed(glob));
            }
            Form::Vars(segs) => segs,
        };
        let mut unknown = None;
        let r = build_glob(segs, self.raw.len(), &mut |k, d| {
            resolve_var(ctx, k, d, &mut unknown)
        });
        match (r, unknown) {
            (_, Some(k)) => Resolved::Unknown(k),
            (Some(g), None) => Resolved::Value(Cow::Owned(g)),
            (None, None) => Resolved::Unresolvable,
        }
    }
}

fn build_literal(
    segs: &[Seg],
    capacity: usize,
    var: &mut dyn FnMut(&str, Option<&str>) -> Resolved<String>,
) -> Option<String> {
    let mut out = String::with_capacity(capacity);
    for s in segs {
        match s {
            Seg::Text(t) => out.push_str(t),
            Seg::Escaped(c) => out.push(*c),
            Seg::Var { key, default } => match var(key, default.as_deref()) {
                Resolved::Value(v) => out.push_str(&v),
                _ => return None,
            },
        }
    }
    Some(out)
}

fn build_glob(
    segs: &[Seg],
    capacity: usize,
    var: &mut dyn FnMut(&str, Option<&str>) -> Resolved<String>,
) -> Option<Glob> {
    let mut g = Glob {
        toks: Vec::with_capacity(capacity),
        literal: false,
    };
    for s in segs {
        match s {
            Seg::Text(t) => g.push_wild(t),
            Seg::Escaped(c) => g.push_literal(c.encode_utf8(&mut [0; 4])),
            Seg::Var { key, default } => match var(key, default.as_deref()) {
                Resolved::Value(v) => g.push_literal(&v),
                _ => return None,
            },
        }
    }
    g.literal = !g.toks.iter().any(|t| !matches!(t, Tok::Byte(_)));
    Some(g)
}

fn resolve_var(
    ctx: &Context,
    key: &str,
    default: Option<&str>,
    unknown: &mut Option<String>,
) -> Resolved<String> {
    match ctx.lookup(key) {
        Lookup::Values(v) if v.len() == 1 => Resolved::Value(v[0].clone()),
        // A multi-valued key cannot stand in a variable; AWS then treats it as absent.
        Lookup::Values(_) | Lookup::Absent => match default {
            Some(d) => Resolved::Value(d.to_string()),
            None => Resolved::Unresolvable,
        },
        Lookup::Unknown => {
            *unknown = Some(key.to_string());
            Resolved::Unknown(key.to_string())
        }
    }
}

fn parse_segments(raw: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut text = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = after[..end].trim();
        let seg = match inner {
            "*" => Some(Seg::Escaped('*')),
            "?" => Some(Seg::Escaped('?')),
            "$" => Some(Seg::Escaped('$')),
            _ => parse_var(inner),
        };
        match seg {
            Some(seg) => {
                text.push_str(&rest[..start]);
                if !text.is_empty() {
                    segs.push(Seg::Text(std::mem::take(&mut text)));
                }
                segs.push(seg);
            }
            // Not a variable: keep the characters as written.
            None => text.push_str(&rest[..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        segs.push(Seg::Text(text));
    }
    segs
}

fn parse_var(inner: &str) -> Option<Seg> {
    let (key, default) = match inner.split_once(',') {
        Some((k, d)) => {
            let d = d.trim();
            let d = d.strip_prefix('\'')?.strip_suffix('\'')?;
            (k.trim(), Some(d.to_string()))
        }
        None => (inner, None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some(Seg::Var {
        key: key.to_ascii_lowercase(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*c", "ac", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("?", "é", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).matches(s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn glob_case_insensitive_needs_lowercase_pattern() {
        assert!(Glob::new("sqs:send*").matches_ignore_ascii_case("SQS:SendMessage"));
        assert!(!Glob::new("sqs:send*").matches("SQS:SendMessage"));
    }

    #[test]
    fn glob_worst_case_is_not_exponential() {
        let p = "*a".repeat(200) + "b";
        let s = "a".repeat(5000);
        assert!(!Glob::new(&p).matches(&s));
    }

    #[test]
    fn template_segments() {
        let t = Template::new("arn:aws:s3:::b/${aws:username}/${*}", true);
        assert!(t.has_variables());
        assert_eq!(t.variable_keys().collect::<Vec<_>>(), vec!["aws:username"]);
        let t = Template::new("${aws:username}", false);
        assert!(!t.has_variables());
        let t = Template::new("x${unclosed", true);
        assert!(!t.has_variables());
        let t = Template::new("${aws:PrincipalTag/team, 'none'}", true);
        assert!(
            matches!(&t.form, Form::Vars(segs) if matches!(&segs[0], Seg::Var { key, default: Some(d) } if key == "aws:principaltag/team" && d == "none"))
        );
    }
}
