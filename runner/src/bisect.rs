//! Bisecting a kernel regression with a case as the oracle.
//!
//! `git bisect run` is driven in a separate worktree of the user's tree (their
//! working tree and HEAD are never touched). Each step builds the worktree's
//! HEAD with a recipe's fragments (object directory `out/` inside the
//! worktree, so Kbuild uses a relative srctree and ccache hits across steps
//! and across the project's other builds), runs the case, and says good (0),
//! bad (1) or skip (125: the kernel did not build or did not boot). The
//! worktree and the bisect state go away at the end, on error and on Ctrl-C.

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::case::Case;
use crate::kernel::{BuiltKernel, Recipe};
use crate::outcome::{End, Outcome};
use crate::paths::Paths;
use crate::suite::{self, RunOptions};

/// What makes a revision good.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The outcome equals the one at the good revision.
    SameAsGood,
    /// The guest completes the plan and the kernel does not crash.
    NoCrash,
    /// Bad when a crash title matches this regex.
    CrashTitle(String),
    /// The outcome equals `snapshots/CASE@KERNEL.snap`.
    Snapshot(String),
}

impl std::str::FromStr for Expect {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Expect> {
        Ok(match s.split_once(':') {
            None if s == "same-as-good" => Expect::SameAsGood,
            None if s == "no-crash" => Expect::NoCrash,
            Some(("crash", re)) => {
                Regex::new(re).with_context(|| format!("--expect crash:{re}: not a valid regex"))?;
                Expect::CrashTitle(re.to_string())
            }
            Some(("snapshot", k)) if !k.is_empty() => Expect::Snapshot(k.to_string()),
            _ => bail!(
                "--expect `{s}`: expected same-as-good, no-crash, crash:REGEX (bad when a crash title matches) or snapshot:KERNEL"
            ),
        })
    }
}

/// Everything a step needs, written once by the driver for the steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub tree: PathBuf,
    pub worktree: PathBuf,
    pub good: String,
    pub bad: String,
    pub case: String,
    /// The recipe whose fragments configure every step.
    pub recipe: String,
    pub expect: Expect,
}

/// One step's verdict, as `git bisect run` wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Good,
    Bad,
    Skip,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Good => 0,
            Verdict::Bad => 1,
            Verdict::Skip => 125,
        }
    }
}

/// One step, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub rev: String,
    pub subject: String,
    pub verdict: Verdict,
    /// "built in 12 s", "build failed", "boot failed".
    pub build: String,
    /// What the case saw, in one line.
    pub outcome: String,
}

/// The end of a bisection.
#[derive(Debug, Clone)]
pub struct Report {
    pub first_bad: Option<(String, String)>,
    /// What `git bisect run` said when it could not name one commit.
    pub git_said: String,
    pub steps: Vec<Step>,
    pub elapsed: Duration,
    pub log: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git -C {} {} failed: {}{}",
            dir.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The state directory of one bisection: spec.json, steps.jsonl, the
/// reference outcome, bisect.log.
pub fn state_dir(paths: &Paths) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    paths
        .out
        .join("bisect")
        .join(format!("{stamp}-{}", std::process::id()))
}

/// The worktree and bisect state, removed when dropped (success, error,
/// interruption), leaving the user's tree as it was.
pub struct Session {
    pub spec: Spec,
    pub dir: PathBuf,
    /// The process group of `git bisect run`, killed on drop.
    pub pgid: Option<i32>,
}

impl Session {
    /// Checks the tree and the revisions and makes the worktree at `good`.
    pub fn start(paths: &Paths, spec_in: Spec, dir: PathBuf) -> Result<Session> {
        let tree = &spec_in.tree;
        git(tree, &["rev-parse", "--git-dir"])
            .with_context(|| format!("{} is not a git tree", tree.display()))?;
        // Revisions are resolved in the user's tree (its HEAD, its branches),
        // once: in the worktree they would mean something else.
        let resolve = |what: &str, rev: &str| {
            git(
                tree,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{rev}^{{commit}}"),
                ],
            )
            .with_context(|| format!("{what} {rev}: no such commit in {}", tree.display()))
        };
        let good = resolve("--good", &spec_in.good)?;
        let bad = resolve("--bad", &spec_in.bad)?;
        if good == bad {
            bail!("--good and --bad are the same commit ({good})");
        }
        std::fs::create_dir_all(&dir)?;
        let mut spec = spec_in;
        spec.good = good;
        spec.bad = bad;
        spec.worktree = paths
            .build_dirs()
            .join(format!("bisect-{}", std::process::id()))
            .join("src");
        if spec.worktree.exists() {
            std::fs::remove_dir_all(&spec.worktree)?;
        }
        // What an earlier bisect's exit cut off in its cleanup.
        if let Ok(rd) = std::fs::read_dir(paths.build_dirs()) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(".trash-bisect-")
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        std::fs::create_dir_all(spec.worktree.parent().expect("has a parent"))?;
        eprintln!(
            "bisect: worktree {} at {}",
            spec.worktree.display(),
            spec.good
        );
        let wt = spec.worktree.display().to_string();
        git(
            &spec.tree,
            &["worktree", "add", "--detach", &wt, &spec.good],
        )?;
        std::fs::write(dir.join("spec.json"), serde_json::to_vec_pretty(&spec)?)?;
        Ok(Session {
            spec,
            dir,
            pgid: None,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(pg) = self.pgid {
            // SAFETY: kill(2) on a process group we created.
            unsafe { libc::kill(-pg, libc::SIGKILL) };
        }
        // The user's tree first, and fast: the worktree's directory is
        // moved aside (one rename), then git forgets the worktree (its
        // bisect refs and state are the worktree's own) without deleting a
        // kernel tree file by file, which on a busy machine outlasted the
        // few seconds an interrupted runner has before it exits. The files
        // go last; what an exit cuts off is swept by the next bisect.
        let Some(parent) = self.spec.worktree.parent() else {
            return;
        };
        let trash = parent.with_file_name(format!(
            ".trash-{}",
            parent
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("bisect")
        ));
        let moved = std::fs::rename(parent, &trash).is_ok();
        if !moved {
            let wt = self.spec.worktree.display().to_string();
            let _ = git(&self.spec.tree, &["worktree", "remove", "--force", &wt]);
        }
        let _ = git(&self.spec.tree, &["worktree", "prune"]);
        let _ = std::fs::remove_dir_all(if moved { &trash } else { parent });
    }
}

/// Builds the worktree's HEAD with the recipe's fragments. The build log goes
/// into the bisection's state directory, which outlives the worktree.
fn build_head(paths: &Paths, spec: &Spec, rev: &str, state: &Path) -> Result<BuiltKernel> {
    let mut recipe = Recipe::load_named(&paths.kernels(), &spec.recipe)?;
    recipe.name = format!("bisect@{rev}");
    let obj = spec.worktree.join("out");
    let log = state.join(format!("build-{rev}.log"));
    crate::kernel::build::configure_and_make(
        paths,
        &recipe,
        &spec.worktree,
        Path::new("out"),
        &obj,
        &log,
    )?;
    Ok(BuiltKernel {
        name: format!("bisect-{rev}"),
        variant: format!("bisect-{rev}"),
        flavor: Default::default(),
        source: format!("{} at {rev}", spec.tree.display()),
        key: String::new(),
        bzimage: obj.join("arch/x86/boot/bzImage"),
        vmlinux: obj.join("vmlinux"),
        system_map: obj.join("System.map"),
        config: obj.join(".config"),
        build_log: log,
        built_in: None,
    })
}

fn summary(o: &Outcome) -> String {
    match (o.end, o.crashes.first()) {
        (_, Some(c)) => c.title.clone(),
        (End::Completed, None) => "completed, no crash".into(),
        (end, None) => format!("{end:?}").to_lowercase(),
    }
}

/// Judges an outcome.
pub fn judge(
    paths: &Paths,
    spec: &Spec,
    outcome: &Outcome,
    reference: Option<&Outcome>,
) -> Result<Verdict> {
    let same = |a: &Outcome, b: &Outcome| {
        let mut a = a.clone();
        a.kernel = b.kernel.clone();
        &a == b
    };
    Ok(match &spec.expect {
        // The run at the good revision comes first and is the reference.
        Expect::SameAsGood => match reference {
            None => Verdict::Good,
            Some(r) if same(outcome, r) => Verdict::Good,
            Some(_) => Verdict::Bad,
        },
        Expect::NoCrash => {
            if outcome.crashes.is_empty() && outcome.end == End::Completed {
                Verdict::Good
            } else {
                Verdict::Bad
            }
        }
        Expect::CrashTitle(re) => {
            let re = Regex::new(re)?;
            if outcome.crashes.iter().any(|c| re.is_match(&c.title)) {
                Verdict::Bad
            } else {
                Verdict::Good
            }
        }
        Expect::Snapshot(kernel) => {
            let file = crate::snapshot::snapshot_file(&paths.snapshots(), &spec.case, kernel);
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body = text.splitn(3, "---\n").nth(2).unwrap_or(&text);
            let want: serde_yaml::Value = serde_yaml::from_str(body)?;
            let mut o = outcome.clone();
            o.kernel = kernel.clone();
            if serde_yaml::to_value(&o)? == want {
                Verdict::Good
            } else {
                Verdict::Bad
            }
        }
    })
}

/// One step: build HEAD of the worktree, run the case, judge. Errors of the
/// framework itself (not of the kernel) are errors, which abort the bisection.
pub async fn step(
    paths: &Paths,
    spec: &Spec,
    state: &Path,
) -> Result<(Verdict, Step, Option<Outcome>)> {
    let rev = git(&spec.worktree, &["rev-parse", "--short=12", "HEAD"])?;
    let subject = git(&spec.worktree, &["log", "-1", "--format=%s", "HEAD"])?;
    let started = Instant::now();
    let mut step = Step {
        rev: rev.clone(),
        subject,
        verdict: Verdict::Skip,
        build: String::new(),
        outcome: String::new(),
    };
    // On a blocking thread: the runtime stays free to see an interruption
    // (which then drops this step and its session) while make runs.
    let build = {
        let (paths, spec, rev) = (paths.clone(), spec.clone(), rev.clone());
        let state = state.to_path_buf();
        tokio::task::spawn_blocking(move || build_head(&paths, &spec, &rev, &state))
    };
    let kernel = match build.await.context("the build thread panicked")? {
        Ok(k) => k,
        Err(e) => {
            eprintln!("bisect: {rev} does not build: {e:#}");
            step.build = "build failed".into();
            step.outcome = format!("{e:#}")
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            return Ok((Verdict::Skip, step, None));
        }
    };
    step.build = format!("built in {:.0?}", started.elapsed());
    let mut case = Case::load(
        &paths.cases().join(format!("{}.yaml", spec.case)),
        crate::kernel::recipe::known(&paths.kernels())?,
    )?;
    case.kernels = vec![kernel.name.clone()];
    let bins = crate::pack::build_guest_binaries(paths)?;
    let prepared = suite::Prepared {
        kernels: vec![kernel.clone()],
        base_image: crate::pack::base_image(&bins)?,
        bins,
        accel: crate::accel::Accel::detect().0,
        // Not built here: a case that runs KVM selftests fails with a
        // message saying so (bisecting with them is not supported yet).
        kselftests: Vec::new(),
        image_digests: Default::default(),
    };
    let opts = RunOptions {
        no_snapshot: true,
        ..Default::default()
    };
    let run = crate::pair::run_pair(paths, &case, &kernel, &prepared, opts).await;
    let outcome = match run {
        Ok(r) if r.outcome.as_ref().is_some_and(|o| o.end != End::NoInit) => {
            r.outcome.expect("checked")
        }
        Ok(r) => {
            step.outcome = format!("boot failed: {}", r.reason.unwrap_or_default());
            return Ok((Verdict::Skip, step, None));
        }
        Err(e) => {
            step.outcome = format!("boot failed: {e:#}");
            return Ok((Verdict::Skip, step, None));
        }
    };
    let reference: Option<Outcome> = std::fs::read_to_string(state.join("reference.yaml"))
        .ok()
        .and_then(|t| serde_yaml::from_str(&t).ok());
    let verdict = judge(paths, spec, &outcome, reference.as_ref())?;
    step.verdict = verdict;
    step.outcome = summary(&outcome);
    Ok((verdict, step, Some(outcome)))
}

/// Appends a step to the state directory's log.
pub fn record_step(state: &Path, s: &Step) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("steps.jsonl"))?;
    writeln!(f, "{}", serde_json::to_string(s)?)?;
    Ok(())
}

pub fn read_steps(state: &Path) -> Vec<Step> {
    std::fs::read_to_string(state.join("steps.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The whole bisection. `step_command` is the program (and leading
/// arguments) `git bisect run` calls for each step; it gets `--state DIR`.
pub async fn run(paths: &Paths, spec: Spec, step_command: &[String]) -> Result<Report> {
    let started = Instant::now();
    let dir = state_dir(paths);
    let mut session = Session::start(paths, spec, dir.clone())?;
    let spec = session.spec.clone();

    // The good revision must be good by the oracle; its outcome is the
    // reference for same-as-good.
    eprintln!("bisect: checking the good revision {}", spec.good);
    let (verdict, good_step, outcome) = step(paths, &spec, &dir).await?;
    record_step(&dir, &good_step)?;
    match (verdict, outcome) {
        (Verdict::Skip, _) => bail!(
            "the good revision {} does not build or boot: {}",
            spec.good,
            good_step.outcome
        ),
        (Verdict::Bad, _) => bail!(
            "the good revision {} is bad by the oracle ({:?}): {}",
            spec.good,
            spec.expect,
            good_step.outcome
        ),
        (Verdict::Good, Some(o)) => {
            std::fs::write(dir.join("reference.yaml"), serde_yaml::to_string(&o)?)?
        }
        (Verdict::Good, None) => {}
    }

    git(&spec.worktree, &["bisect", "start", &spec.bad, &spec.good])?;
    // `git -C WT bisect run STEP... --state DIR`, in its own process group
    // so that an interruption takes the step (and its QEMU) down too.
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(&spec.worktree)
        .arg("-C")
        .arg(&spec.worktree)
        .args(["bisect", "run"])
        .args(step_command)
        .arg("--state")
        .arg(&dir)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let child = cmd.spawn().context("cannot run git bisect run")?;
    session.pgid = child.id().map(|p| p as i32);
    let out = child.wait_with_output().await?;
    session.pgid = None;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let log = dir.join("bisect.log");
    std::fs::write(
        &log,
        git(&spec.worktree, &["bisect", "log"]).unwrap_or_default() + "\n",
    )?;
    std::fs::write(dir.join("git-bisect-run.out"), &said)?;
    let first_bad = said
        .lines()
        .find_map(|l| l.strip_suffix(" is the first bad commit"))
        .map(|sha| {
            let subject =
                git(&spec.worktree, &["log", "-1", "--format=%s", sha]).unwrap_or_default();
            (sha.to_string(), subject)
        });
    if first_bad.is_none() && !out.status.success() {
        bail!("git bisect run failed ({}):\n{}", out.status, said.trim());
    }
    Ok(Report {
        first_bad,
        git_said: said,
        steps: read_steps(&dir),
        elapsed: started.elapsed(),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_with_clear_errors() {
        assert_eq!(
            "same-as-good".parse::<Expect>().unwrap(),
            Expect::SameAsGood
        );
        assert_eq!("no-crash".parse::<Expect>().unwrap(), Expect::NoCrash);
        assert_eq!(
            "crash:unable to handle page fault"
                .parse::<Expect>()
                .unwrap(),
            Expect::CrashTitle("unable to handle page fault".into())
        );
        assert_eq!(
            "snapshot:stock-7.3".parse::<Expect>().unwrap(),
            Expect::Snapshot("stock-7.3".into())
        );
        let e = format!("{:#}", "maybe".parse::<Expect>().unwrap_err());
        assert!(e.contains("expected same-as-good, no-crash"), "{e}");
        let e = format!("{:#}", "crash:(".parse::<Expect>().unwrap_err());
        assert!(e.contains("not a valid regex"), "{e}");
    }

    #[test]
    fn verdicts_map_to_git_bisect_run_codes() {
        assert_eq!(Verdict::Good.exit_code(), 0);
        assert_eq!(Verdict::Bad.exit_code(), 1);
        assert_eq!(Verdict::Skip.exit_code(), 125);
    }
}
