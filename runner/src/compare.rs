//! Comparing outcomes across kernels and commits: `cargo xtask compare A B`,
//! where each side is a kernel variant (`nodirectmap-reviewed`), optionally
//! as it was at a commit (`nodirectmap-reviewed@HEAD~3`), and its outcomes
//! are its reviewed snapshots (or, with `--runs`, its last run's outcomes in
//! the logs). Case by case: the same, different (with a diff of the
//! normalized outcomes, the kernel's name left out), or on one side only;
//! and each outcome that holds a failure (a step that did not end well, a
//! failed selftest, a crash the case does not expect) is flagged.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::outcome::Outcome;
use crate::paths::Paths;

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub kernel: String,
    /// A git revision of the suite, for outcomes as they were then.
    pub rev: Option<String>,
}

impl std::str::FromStr for Side {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Side> {
        let (kernel, rev) = match s.split_once('@') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let plain = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.~^/+".contains(c))
                && !t.starts_with('-')
        };
        if !plain(kernel) || rev.is_some_and(|r| !plain(r)) {
            bail!("`{s}`: expected KERNEL or KERNEL@REVISION (letters, digits, `_-.~^/+`)");
        }
        Ok(Side {
            kernel: kernel.into(),
            rev: rev.map(String::from),
        })
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rev {
            Some(r) => write!(f, "{}@{r}", self.kernel),
            None => write!(f, "{}", self.kernel),
        }
    }
}

/// Where a side's outcomes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The reviewed snapshots (at the side's revision, if it has one).
    Snapshots,
    /// The outcomes the last run left in the logs (no revision).
    Runs,
}

/// What one case shows on the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Same,
    /// A unified diff from A's outcome to B's.
    Differs(String),
    OnlyA,
    OnlyB,
}

#[derive(Debug, Clone)]
pub struct CaseComparison {
    pub case: String,
    pub change: Change,
    /// The failure each side's outcome holds, if any.
    pub failure_a: Option<String>,
    pub failure_b: Option<String>,
    /// Each side's crashes: title, then the first frames of its trace.
    pub crashes_a: Vec<String>,
    pub crashes_b: Vec<String>,
}

/// A crash of an outcome in one line: its title and where it happened.
fn crash_lines(o: Option<&Outcome>) -> Vec<String> {
    o.map(|o| {
        o.crashes
            .iter()
            .map(|c| {
                let frames: Vec<&str> = c.trace.iter().take(4).map(String::as_str).collect();
                if frames.is_empty() {
                    c.title.clone()
                } else {
                    format!("{} (at {})", c.title, frames.join(" < "))
                }
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The outcomes of `side`, by case.
pub fn outcomes(paths: &Paths, side: &Side, source: Source) -> Result<BTreeMap<String, Outcome>> {
    let suffix = format!("@{}", side.kernel);
    let mut texts: Vec<(String, String)> = Vec::new();
    match (source, &side.rev) {
        (Source::Runs, Some(_)) => bail!("{side}: the last run's outcomes have no revision"),
        (Source::Runs, None) => {
            let dir = paths.logs().join(&side.kernel);
            for e in std::fs::read_dir(&dir)
                .with_context(|| format!("no run of {} in {}", side.kernel, dir.display()))?
            {
                let d = e?.path();
                let f = d.join("outcome.yaml");
                if let (Some(case), Ok(t)) = (d.file_name(), std::fs::read_to_string(&f)) {
                    texts.push((case.to_string_lossy().into_owned(), t));
                }
            }
        }
        (Source::Snapshots, None) => {
            let dir = paths.snapshots();
            for e in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let p = e?.path();
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if let Some(case) = name
                    .strip_suffix(".snap")
                    .and_then(|n| n.strip_suffix(&suffix))
                {
                    texts.push((case.to_string(), std::fs::read_to_string(&p)?));
                }
            }
        }
        (Source::Snapshots, Some(rev)) => {
            let rel = paths
                .snapshots()
                .strip_prefix(&paths.root)
                .map(|p| p.to_path_buf())
                .unwrap_or_else(|_| "snapshots".into());
            let names = git(
                paths,
                &[
                    "ls-tree",
                    "--name-only",
                    &format!("{rev}:{}", rel.display()),
                ],
            )?;
            for name in names.lines() {
                if let Some(case) = name
                    .strip_suffix(".snap")
                    .and_then(|n| n.strip_suffix(&suffix))
                {
                    let text = git(paths, &["show", &format!("{rev}:{}/{name}", rel.display())])?;
                    texts.push((case.to_string(), text));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (case, text) in texts {
        // An insta file: `---`, metadata, `---`, then the outcome.
        let body = if text.starts_with("---") {
            text.splitn(3, "---\n").nth(2).unwrap_or(&text)
        } else {
            &text
        };
        let o: Outcome = serde_yaml::from_str(body)
            .with_context(|| format!("{side}: the outcome of {case} does not read"))?;
        out.insert(case, o);
    }
    if out.is_empty() {
        bail!(
            "{side}: no outcomes ({})",
            match source {
                Source::Snapshots => "no snapshots of that kernel",
                Source::Runs => "no run of that kernel in the logs",
            }
        );
    }
    Ok(out)
}

fn git(paths: &Paths, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(&paths.suite)
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An outcome as YAML without its kernel's name: what is compared.
pub(crate) fn comparable(o: &Outcome) -> String {
    serde_yaml::to_string(o)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("kernel: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Compares two sides case by case. `expects_crash(case, kernel)` says
/// where a crash is expected (from the case files), for the failures.
pub fn compare(
    a: &BTreeMap<String, Outcome>,
    b: &BTreeMap<String, Outcome>,
    (ka, kb): (&str, &str),
    expects_crash: impl Fn(&str, &str) -> bool,
) -> Vec<CaseComparison> {
    let cases: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    cases
        .into_iter()
        .map(|case| {
            let (oa, ob) = (a.get(case), b.get(case));
            let change = match (oa, ob) {
                (Some(x), Some(y)) => {
                    let (tx, ty) = (comparable(x), comparable(y));
                    if tx == ty {
                        Change::Same
                    } else {
                        Change::Differs(
                            similar::TextDiff::from_lines(&tx, &ty)
                                .unified_diff()
                                .context_radius(2)
                                .header(ka, kb)
                                .to_string(),
                        )
                    }
                }
                (Some(_), None) => Change::OnlyA,
                _ => Change::OnlyB,
            };
            CaseComparison {
                case: case.clone(),
                change,
                failure_a: oa.and_then(|o| o.failure(expects_crash(case, ka))),
                failure_b: ob.and_then(|o| o.failure(expects_crash(case, kb))),
                crashes_a: crash_lines(oa),
                crashes_b: crash_lines(ob),
            }
        })
        .collect()
}

/// Compares two sides of this checkout's suite, with the crash expectations
/// of its case files.
pub fn sides(paths: &Paths, a: &Side, b: &Side, source: Source) -> Result<Vec<CaseComparison>> {
    let (oa, ob) = (outcomes(paths, a, source)?, outcomes(paths, b, source)?);
    let suite = crate::suite::Suite::load(paths.clone(), &[], &[])?;
    let expects = |case: &str, kernel: &str| {
        suite
            .cases
            .iter()
            .any(|c| c.name == case && c.expects_crash(kernel))
    };
    Ok(compare(&oa, &ob, (&a.kernel, &b.kernel), expects))
}

/// The comparison for people (and for a reply to the series): a table, then
/// each difference, then the failures.
pub fn text(a: &Side, b: &Side, rows: &[CaseComparison]) -> String {
    let mut s = format!("outcomes of {a} (A) against {b} (B)\n\n");
    let width = rows.iter().map(|r| r.case.len()).max().unwrap_or(4).max(4);
    for r in rows {
        let what = match &r.change {
            Change::Same => "same",
            Change::Differs(_) => "DIFFERS",
            Change::OnlyA => "only in A",
            Change::OnlyB => "only in B",
        };
        let mut flags = Vec::new();
        if let Some(f) = &r.failure_a {
            flags.push(format!("A holds a failure: {f}"));
        }
        if let Some(f) = &r.failure_b {
            flags.push(format!("B holds a failure: {f}"));
        }
        s += &format!("{:<width$}  {what:<9}  {}\n", r.case, flags.join("; "));
    }
    for r in rows {
        if let Change::Differs(d) = &r.change {
            s += &format!("\n=== {}\n{d}", r.case);
            for (side, crashes) in [(a, &r.crashes_a), (b, &r.crashes_b)] {
                for c in crashes {
                    s += &format!("crash on {side}: {c}\n");
                }
            }
            for side in [a, b].into_iter().filter(|s| s.rev.is_none()) {
                s += &format!(
                    "reproduce on {side}: cargo xtask run {} --kernel {}\n",
                    r.case, side.kernel
                );
            }
        }
    }
    let count = |f: fn(&Change) -> bool| rows.iter().filter(|r| f(&r.change)).count();
    s += &format!(
        "\n{} same, {} differ, {} only in A, {} only in B; {} failure{} in B\n",
        count(|c| *c == Change::Same),
        count(|c| matches!(c, Change::Differs(_))),
        count(|c| *c == Change::OnlyA),
        count(|c| *c == Change::OnlyB),
        rows.iter().filter(|r| r.failure_b.is_some()).count(),
        if rows.iter().filter(|r| r.failure_b.is_some()).count() == 1 {
            ""
        } else {
            "s"
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(kernel: &str, result: &str) -> Outcome {
        Outcome::one_step(kernel, "kselftest", result)
    }

    #[test]
    fn sides_are_kernels_at_revisions() {
        let s: Side = "nodirectmap-reviewed@HEAD~3".parse().unwrap();
        assert_eq!(s.kernel, "nodirectmap-reviewed");
        assert_eq!(s.rev.as_deref(), Some("HEAD~3"));
        assert!("a;b".parse::<Side>().is_err());
        assert!("-x".parse::<Side>().is_err());
        assert!("k@$(id)".parse::<Side>().is_err());
    }

    #[test]
    fn the_kernel_name_is_not_a_difference_and_failures_are_flagged() {
        let a = BTreeMap::from([("c".to_string(), outcome("ka", "exited 0"))]);
        let mut b = BTreeMap::from([("c".to_string(), outcome("kb", "exited 0"))]);
        let rows = compare(&a, &b, ("ka", "kb"), |_, _| false);
        assert_eq!(rows[0].change, Change::Same);
        b.insert("c".into(), outcome("kb", "fail"));
        b.insert("d".into(), outcome("kb", "exited 0"));
        let rows = compare(&a, &b, ("ka", "kb"), |_, _| false);
        assert!(
            matches!(&rows[0].change, Change::Differs(d) if d.contains("+  result: fail")),
            "{:?}",
            rows[0].change
        );
        assert_eq!(rows[0].failure_b.as_deref(), Some("step s: fail"));
        assert_eq!(rows[1].change, Change::OnlyB);
        let t = text(&"ka".parse().unwrap(), &"kb".parse().unwrap(), &rows);
        assert!(
            t.contains("DIFFERS    B holds a failure: step s: fail"),
            "{t}"
        );
        assert!(
            t.contains("0 same, 1 differ, 0 only in A, 1 only in B; 1 failure in B"),
            "{t}"
        );
    }
}
