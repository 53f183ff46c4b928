//! `cargo xtask series walk VARIANT`: the variant's base and every prefix of
//! its patches, each built (with ccache, so a step costs what its patch
//! touches) and run through the variant's cases; then, case by case, the
//! first patch after which the outcome changed, and how. A prefix that does
//! not build is shown as such and its cases skipped, as `git bisect` skips.

use anyhow::Result;
use std::time::{Duration, Instant};

use crate::case::Case;
use crate::kernel::Recipe;
use crate::options::RunOptions;
use crate::session::{Schedule, Session};
use crate::suite::Suite;

/// One prefix: the base and the first `k` patches.
#[derive(Debug, Clone)]
pub struct Step {
    pub k: usize,
    /// The patch added at this step (none for the base).
    pub title: String,
    /// The prefix's kernel name (`VARIANT~k`): its logs and cache entry.
    pub kernel: String,
    /// How long it took to build, or why it did not build.
    pub build: std::result::Result<Duration, String>,
    /// The patch file's SHA-256, short (none for the base): which exact
    /// patch this was.
    pub hash: Option<String>,
    /// What the kernel was built from (`linux-source-7.3 7.3.4-1 + 2 patches`).
    pub source: Option<String>,
}

/// What one case did along the walk.
#[derive(Debug, Clone)]
pub struct CaseWalk {
    pub case: String,
    /// Each step's outcome as compared (None: not built, or not run).
    pub outcomes: Vec<Option<String>>,
    /// Each step at which the outcome differs from the step before it that
    /// has one, with the diff and the decoded crash report of that step.
    pub changes: Vec<(usize, String, Option<String>)>,
}

#[derive(Debug)]
pub struct Walk {
    pub variant: String,
    pub steps: Vec<Step>,
    pub cases: Vec<CaseWalk>,
}

/// The prefixes of `recipe`: itself with its first `k` patches, for every
/// `k` from 0 (the base) to all of them.
pub fn prefixes(recipe: &Recipe) -> Vec<Recipe> {
    (0..=recipe.patches.len())
        .map(|k| Recipe {
            name: format!("{}~{k}", recipe.name),
            // A prefix is a kernel of its own, not the variant's.
            variant: format!("{}~{k}", recipe.name),
            patches: recipe.patches[..k].to_vec(),
            ..recipe.clone()
        })
        .collect()
}

/// Walks `variant` over the cases of `suite` that run on it (all of them,
/// or those `suite` was loaded with). `say` is told of each step.
pub async fn walk(suite: &Suite, variant: &str, say: &(dyn Fn(String) + Sync)) -> Result<Walk> {
    let recipe = suite
        .recipes
        .iter()
        .find(|r| r.name == variant)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no kernel `{variant}` among the suite's"))?;
    let titles = crate::kernel::series::recipe_patches(&recipe)?;
    let cases: Vec<Case> = suite
        .cases
        .iter()
        .filter(|c| c.kernels.iter().any(|k| k == variant))
        .cloned()
        .collect();
    if cases.is_empty() {
        anyhow::bail!("no case runs on `{variant}`");
    }
    let mut steps = Vec::new();
    let mut built = Vec::new();
    for (k, p) in prefixes(&recipe).into_iter().enumerate() {
        let title = if k == 0 {
            "the base".to_string()
        } else {
            titles[k - 1].title.clone()
        };
        say(format!(
            "step {k}/{}: building {} ({title})",
            recipe.patches.len(),
            p.name
        ));
        let started = Instant::now();
        let paths = suite.paths.clone();
        let r = p.clone();
        let res = tokio::task::spawn_blocking(move || crate::kernel::build(&paths, &r)).await?;
        let (build, source) = match res {
            Ok(b) => {
                built.push(p.clone());
                (Ok(started.elapsed()), Some(b.source))
            }
            Err(e) => (
                Err(format!("{e:#}").lines().next().unwrap_or("").to_string()),
                None,
            ),
        };
        let hash = (k > 0)
            .then(|| std::fs::read(&recipe.patches[k - 1]).ok())
            .flatten()
            .map(|b| {
                use sha2::Digest;
                sha2::Sha256::digest(b)
                    .iter()
                    .take(6)
                    .map(|x| format!("{x:02x}"))
                    .collect()
            });
        steps.push(Step {
            k,
            title,
            kernel: p.name.clone(),
            build,
            hash,
            source,
        });
    }
    // Every case on every prefix that built, each in a boot of its own; the
    // outcomes are compared with one another, not with snapshots.
    let names: Vec<String> = built.iter().map(|r| r.name.clone()).collect();
    let walk_suite = Suite {
        paths: suite.paths.clone(),
        cases: cases
            .iter()
            .map(|c| Case {
                kernels: names.clone(),
                expect_crash_on: if c.expects_crash(variant) {
                    names.clone()
                } else {
                    vec![]
                },
                ..c.clone()
            })
            .collect(),
        recipes: built,
        kselftests: suite.kselftests.clone(),
    };
    say(format!(
        "running {} case{} on {} built step{}",
        cases.len(),
        if cases.len() == 1 { "" } else { "s" },
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    ));
    let opts = RunOptions {
        no_snapshot: true,
        ..Default::default()
    };
    let schedule = Schedule {
        batch: false,
        jobs: None,
        ..Schedule::alone()
    };
    let report = Session::new(walk_suite, opts, schedule)
        .run(&|_| {})
        .await?;
    let mut out = Vec::new();
    for c in &cases {
        let run_of = |k: usize| {
            report
                .runs()
                .find(|r| r.case == c.name && r.kernel == steps[k].kernel)
        };
        let outcomes: Vec<Option<String>> = (0..steps.len())
            .map(|k| {
                run_of(k)
                    .and_then(|r| r.outcome.as_ref())
                    .map(crate::compare::comparable)
            })
            .collect();
        let mut changes = Vec::new();
        let mut last: Option<&String> = None;
        for (k, o) in outcomes.iter().enumerate() {
            let Some(o) = o else { continue };
            if let Some(prev) = last {
                if prev != o {
                    let d = similar::TextDiff::from_lines(prev.as_str(), o.as_str())
                        .unified_diff()
                        .context_radius(1)
                        .to_string();
                    changes.push((k, d, run_of(k).and_then(|r| r.crash_report.clone())));
                }
            }
            last = Some(o);
        }
        out.push(CaseWalk {
            case: c.name.clone(),
            outcomes,
            changes,
        });
    }
    Ok(Walk {
        variant: variant.to_string(),
        steps,
        cases: out,
    })
}

/// The walk for people, and for a reply to the series: the steps, then
/// per case which patch changed it, then the diffs.
pub fn text(w: &Walk) -> String {
    let n = w.steps.len().saturating_sub(1);
    let mut s = format!(
        "series walk of {}: the base and {n} patch{}\n",
        w.variant,
        if n == 1 { "" } else { "es" }
    );
    for st in w.steps.iter().filter(|st| st.k == 0 || st.k == n) {
        if let Some(src) = &st.source {
            s += &format!("  step {}: {src}\n", st.k);
        }
    }
    s.push('\n');
    for st in &w.steps {
        let how = match &st.build {
            Ok(t) => format!("ready in {:.0}s", t.as_secs_f64()),
            Err(e) => format!("BUILD FAILED: {e}"),
        };
        s += &format!(
            "{:>3}/{n}  {:<60}  {:<12}  {how}\n",
            st.k,
            st.title.chars().take(60).collect::<String>(),
            st.hash.as_deref().unwrap_or("")
        );
    }
    s += "\ncase                                      changed by\n";
    for c in &w.cases {
        let by = if c.changes.is_empty() {
            "- (the same at every step that ran)".to_string()
        } else {
            c.changes
                .iter()
                .map(|(k, _, _)| {
                    format!(
                        "{k}/{n} {}",
                        w.steps[*k].title.chars().take(50).collect::<String>()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        s += &format!("{:<40}  {by}\n", c.case);
    }
    for c in &w.cases {
        for (k, d, crash) in &c.changes {
            s += &format!(
                "\n=== {} changed by patch {k}/{n} ({}):\n{d}",
                c.case, w.steps[*k].title
            );
            if let Some(report) = crash {
                s += &format!("the crash at this step, decoded:\n{report}\n");
            }
            s += &format!(
                "reproduce: cargo xtask series walk {} -c {}\n",
                w.variant, c.case
            );
            if *k == n {
                s += &format!(
                    "           cargo xtask run {} --kernel {}\n",
                    c.case, w.variant
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_go_from_the_base_to_every_patch() {
        let d = tempfile::tempdir().unwrap();
        let r = Recipe {
            name: "v".into(),
            variant: "v".into(),
            flavor: Default::default(),
            file: d.path().join("v.yaml"),
            description: String::new(),
            source: crate::kernel::recipe::SourceSpec::Tree { tree: "/t".into() },
            patches: vec!["a.patch".into(), "b.patch".into()],
            fragments: vec![],
            debug_info: false,
            tags: vec![],
        };
        let p = prefixes(&r);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].name.as_str(), p[0].patches.len()), ("v~0", 0));
        assert_eq!((p[2].name.as_str(), p[2].patches.len()), ("v~2", 2));
    }
}
