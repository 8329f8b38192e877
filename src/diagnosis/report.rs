//! The text report for a terminal: the verdict first, then each check, then the reasons and
//! the fixes.

use std::fmt::Write as _;

use super::check::Verdict;
use super::credentials::{DEFAULT_AUDIENCE, Mechanism};
use crate::policy::Decision;

pub fn render_text(v: &Verdict, subject: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Verdict: {:?}  ({subject})", v.verdict);
    if let Some(r) = &v.role {
        let how = match r.mechanism {
            Mechanism::Irsa => format!(
                "IRSA: from the service account annotation; token audience {}",
                r.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE)
            ),
            Mechanism::PodIdentity => format!(
                "EKS Pod Identity: from association {}",
                r.association_id.as_deref().unwrap_or("(no id)")
            ),
        };
        let _ = writeln!(out, "Role:    {} ({how})", r.arn);
        if !r.chain.is_empty() {
            let _ = writeln!(out, "Chain:   {}", r.chain.join(" -> "));
        }
        if let Some(i) = &r.ignored_irsa_role {
            let _ = writeln!(
                out,
                "Ignored: {i} (IRSA annotation; Pod Identity takes precedence)"
            );
        }
    }
    if let Some(q) = &v.queue {
        let enc = match &q.kms_key {
            Some(k) if q.encryption == "SSE-KMS" => format!("{} with {k}", q.encryption),
            _ => q.encryption.clone(),
        };
        let _ = writeln!(out, "Queue:   {} (encryption: {enc})", q.arn);
    }
    if !v.checks.is_empty() {
        let _ = writeln!(out, "\nChecks:");
        for c in &v.checks {
            let mark = match c.decision {
                Decision::Allow => "ok  ",
                Decision::ExplicitDeny | Decision::ImplicitDeny => "FAIL",
                Decision::Indeterminate => "??  ",
            };
            let layers: Vec<String> = c
                .layers
                .iter()
                .map(|l| match &l.target {
                    Some(t) => format!("{}[{t}]={}", l.layer.as_str(), l.result),
                    None => format!("{}={}", l.layer.as_str(), l.result),
                })
                .collect();
            let _ = writeln!(
                out,
                "  {mark} {:<5} {:<34} {:?}  {}",
                c.step,
                c.action,
                c.decision,
                layers.join(" ")
            );
        }
    }
    let _ = writeln!(out, "\nReasons:");
    for (i, f) in v.reasons.iter().enumerate() {
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
    if !v.fixes.is_empty() {
        let _ = writeln!(out, "\nFixes:");
        for (i, fx) in v.fixes.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, fx.instruction);
            if let Some(st) = &fx.statement {
                let pretty = serde_json::to_string_pretty(st).unwrap_or_default();
                for line in pretty.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
    }
    if !v.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &v.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    if let Some(w) = &v.workload {
        let _ = writeln!(
            out,
            "\nWorkload: {} {:?}  (pods: {} running, {} current, {} stale, {} not injected, {} overridden)",
            w.status(),
            w.reason,
            w.pods.total,
            w.pods.current,
            w.pods.stale,
            w.pods.not_injected,
            w.pods.overridden
        );
        for p in &w.problems {
            let _ = writeln!(
                out,
                "  - {:?}: {} pod(s), e.g. {}",
                p.code,
                p.count,
                p.pods.join(", ")
            );
            let _ = writeln!(out, "    {}", p.message);
            let _ = writeln!(out, "    Fix: {}", p.fix);
        }
    }
    if !v.notes.is_empty() {
        let _ = writeln!(out, "\nNot evaluated:");
        for n in &v.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}
