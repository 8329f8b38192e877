//! The text report of `explain`: what AWS said, what was evaluated, the answer, the fix, what
//! was not visible; then the full diagnosis.

use std::fmt::Write as _;

use super::Explanation;
use super::parse::ParsedError;
use crate::diagnosis::report::render_text;

fn said(e: &ParsedError) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &e.code {
        parts.push(format!("code {c}"));
    }
    if let Some(o) = &e.operation {
        parts.push(format!("operation {o}"));
    }
    if let Some(s) = e.service {
        parts.push(format!("service {}", format!("{s:?}").to_ascii_lowercase()));
    }
    if let Some(p) = &e.principal {
        parts.push(format!("principal {p}"));
    }
    if let Some(a) = &e.action {
        parts.push(format!("action {a}"));
    }
    if let Some(r) = &e.resource {
        parts.push(format!("resource {r}"));
    }
    if let Some(u) = &e.endpoint {
        parts.push(format!("endpoint {u}"));
    }
    if let Some(i) = &e.oidc_issuer {
        parts.push(format!("issuer {i}"));
    }
    parts.join(", ")
}

/// What the text says: AWS's message, the fields read, AWS's claim.
pub fn render_error(e: &ParsedError) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "AWS said:  {}", e.message);
    let _ = writeln!(out, "           ({:?}: {})", e.kind, said(e));
    let claim = match &e.claim {
        Some(c) => match c.layer {
            Some(l) => format!(
                "{} in {} {}{}{}",
                if c.explicit {
                    "an explicit deny"
                } else {
                    "no allow"
                },
                if l == super::ClaimedLayer::IdentityPolicy {
                    "an"
                } else {
                    "a"
                },
                l.aws_phrase(),
                c.policy_arn
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default(),
                c.through
                    .map(|t| format!(", transitively through a {}", t.aws_phrase()))
                    .unwrap_or_default()
            ),
            None if c.explicit => "an explicit deny, in no named policy type".into(),
            None => "no named policy type".into(),
        },
        None => "no layer named".into(),
    };
    let _ = writeln!(out, "AWS claims: {claim}");
    out
}

pub fn render(x: &Explanation, subject: &str) -> String {
    let mut out = render_error(&x.error);
    if let Some(s) = &x.evaluated {
        let who = s.principal.as_deref().unwrap_or("the binding's role");
        let refused = if s.focus != s.action {
            format!(" (refused: {})", s.focus)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Evaluated: {who} calling {} on {}{refused}",
            s.action, s.queue
        );
        let _ = writeln!(out, "           ({})", s.origins.join("; "));
    }
    let _ = writeln!(out, "\nAnswer: {:?}", x.comparison.result);
    let _ = writeln!(out, "  {}", x.comparison.message);
    if !x.reasons.is_empty() {
        let _ = writeln!(out, "\nReasons:");
        for (i, f) in x.reasons.iter().enumerate() {
            let action = f
                .action
                .as_deref()
                .map(|a| format!(" {a}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}. {:?} [{}]{action}",
                i + 1,
                f.code,
                f.layer.as_str()
            );
            let _ = writeln!(out, "     {}", f.message);
        }
    }
    if !x.fixes.is_empty() {
        let _ = writeln!(out, "\nFix:");
        for (i, fx) in x.fixes.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, fx.instruction);
            if let Some(st) = &fx.statement {
                let pretty = serde_json::to_string_pretty(st).unwrap_or_default();
                for line in pretty.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
    }
    if !x.comparison.not_visible.is_empty() {
        let _ = writeln!(out, "\nNot visible to this tool:");
        for n in &x.comparison.not_visible {
            let _ = writeln!(out, "  - [{}] {}", n.layer, n.message);
        }
    }
    if !x.comparison.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &x.comparison.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    if let Some(v) = &x.verdict {
        let _ = writeln!(out, "\nThe caller's access, layer by layer:");
        for line in render_text(v, subject).lines() {
            if line.is_empty() {
                let _ = writeln!(out);
            } else {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}
