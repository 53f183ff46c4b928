//! A test session, start to end: which pairs run and how (plan), the rounds
//! (run), and what they add up to (report): the runs of every round, the
//! flakes, the boots, the JUnit report and one overall result, from which
//! the command line chooses its exit code. `cargo xtask test`, `run` and
//! `bless`, the `cases` harness and the bench all run their pairs through
//! it; they only print.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::batch::{self, Unit};
use crate::case::Case;
use crate::fault;
use crate::flakes::{self, Flake};
use crate::kernel::Flavor;
use crate::options::{BackendKind, RunOptions};
use crate::prepared::Prepared;
use crate::suite::{self, Suite};
use crate::verdict::{self, BootMode, CaseRun, Verdict};

/// How a session schedules its pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Cases that expect no crash share a boot per kernel.
    pub batch: bool,
    /// VMs at once (`None`: by the host's CPUs and memory).
    pub jobs: Option<usize>,
    /// Rounds: every pair this many times, outcomes compared.
    pub repeat: u32,
    /// Leave out the pairs that expect a crash.
    pub skip_crashing: bool,
}

impl Default for Schedule {
    /// `cargo xtask test`'s: shared boots, as many at once as the host
    /// holds, one round, every pair.
    fn default() -> Schedule {
        Schedule {
            batch: true,
            jobs: None,
            repeat: 1,
            skip_crashing: false,
        }
    }
}

impl Schedule {
    /// One pair after another, each in a boot of its own.
    pub fn alone() -> Schedule {
        Schedule {
            batch: false,
            jobs: Some(1),
            repeat: 1,
            skip_crashing: false,
        }
    }
}

/// What the session tells its caller as it goes (the caller prints it).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// What will run, once the kernels are ready.
    Planned(&'a Plan),
    /// A round begins (only said when there are several), its logs there.
    Round {
        round: usize,
        rounds: usize,
        logs: &'a Path,
    },
    /// A pair has its verdict: the `n`th of the round's `total`.
    Verdict {
        n: usize,
        total: usize,
        run: &'a CaseRun,
    },
}

/// The shape of a session: its pairs, boots and rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub pairs: usize,
    pub boots: usize,
    /// Boots shared by several cases.
    pub shared: usize,
    /// Cases start from saved VMs (a boot is then a restore).
    pub restored: bool,
    /// VMs at once.
    pub jobs: usize,
    pub rounds: usize,
}

/// How a whole session went, from which the exit code is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    /// Every pair passed (the same way in every round).
    Pass,
    /// The runner was interrupted: what ran was not compared.
    Interrupted,
    /// A pair could not run: the framework's fault (its kind when known).
    Fault(Option<fault::Kind>),
    /// A pair's outcome differed between rounds.
    Flaky,
    /// A kernel crashed (or hung) where not expected, or did not where it was.
    Crash,
    /// An outcome differs from its snapshot, or has none yet.
    Snapshot,
}

/// What a session gave.
#[derive(Debug, Clone)]
pub struct Report {
    pub plan: Plan,
    /// Every round's runs, in the suite's order.
    pub rounds: Vec<Vec<CaseRun>>,
    pub flakes: Vec<Flake>,
    /// VMs booted: a boot per unit and round, plus the reruns alone.
    pub boots: usize,
    /// From the first boot to the last verdict (the builds before not counted).
    pub elapsed: Duration,
    /// Where the JUnit report was written.
    pub junit: Option<PathBuf>,
    /// Where the logs are (`round-N/logs` under it with several rounds).
    pub out: PathBuf,
}

impl Report {
    /// Every run of every round.
    pub fn runs(&self) -> impl Iterator<Item = &CaseRun> {
        self.rounds.iter().flatten()
    }

    /// The reruns alone after a shared boot went wrong.
    pub fn reruns(&self) -> impl Iterator<Item = (&CaseRun, &verdict::RerunReason)> {
        self.runs().filter_map(|r| match &r.boot {
            BootMode::Rerun { why } => Some((r, why)),
            _ => None,
        })
    }

    /// The summary table of the first round.
    pub fn summary_table(&self) -> String {
        suite::summary_table(self.rounds.first().map_or(&[][..], |r| r))
    }

    /// The session's result, the worst first: an interruption, a fault, a
    /// flake, a crash, a snapshot.
    pub fn result(&self) -> Overall {
        let has = |v: Verdict| self.runs().any(|r| r.verdict == v);
        if has(Verdict::Interrupted) {
            Overall::Interrupted
        } else if let Some(e) = self.runs().find(|r| r.verdict == Verdict::Error) {
            Overall::Fault(e.fault)
        } else if !self.flakes.is_empty() {
            Overall::Flaky
        } else if has(Verdict::Crash) {
            Overall::Crash
        } else if has(Verdict::Mismatch) || has(Verdict::New) {
            Overall::Snapshot
        } else {
            Overall::Pass
        }
    }
}

/// One session: a suite, how each run goes, how the pairs are scheduled.
pub struct Session {
    suite: Suite,
    opts: RunOptions,
    schedule: Schedule,
    junit: Option<PathBuf>,
    prepared: Option<Arc<Prepared>>,
    /// Per kernel, prepared by the first pair that needs it (`run_alone`).
    per_kernel: Mutex<HashMap<String, Arc<PreparedOnce>>>,
}

/// One kernel's preparation, done once; its error kept as text for every
/// pair that needed it.
type PreparedOnce = OnceLock<Result<Arc<Prepared>, String>>;

impl Session {
    pub fn new(suite: Suite, opts: RunOptions, schedule: Schedule) -> Session {
        Session {
            suite,
            opts,
            schedule,
            junit: None,
            prepared: None,
            per_kernel: Mutex::new(HashMap::new()),
        }
    }

    /// Writes the JUnit report of every run there.
    pub fn junit_to(mut self, path: PathBuf) -> Session {
        self.junit = Some(path);
        self
    }

    /// Runs on what is already built (the bench, several sessions).
    pub fn with_prepared(mut self, prepared: Arc<Prepared>) -> Session {
        self.prepared = Some(prepared);
        self
    }

    pub fn suite(&self) -> &Suite {
        &self.suite
    }

    /// The pairs this session runs, in the suite's order.
    pub fn pairs(&self) -> Vec<(&Case, &str)> {
        let skip = self.schedule.skip_crashing;
        self.suite
            .pairs()
            .into_iter()
            .filter(|(c, k)| !(skip && c.expects_crash(k)))
            .collect()
    }

    /// The host set up and every kernel the pairs need built, once. The
    /// builds block: on a thread of their own, so that an interruption is
    /// seen at once (and kills them).
    pub async fn prepare(&mut self) -> Result<Arc<Prepared>> {
        if let Some(p) = &self.prepared {
            return Ok(p.clone());
        }
        // Setup is cheap when everything is there, and installs what is missing.
        crate::setup::host()?;
        if self.opts.backend == BackendKind::Vng {
            crate::setup::vng()?;
        }
        let suite = self.suite.clone();
        let prepared = tokio::task::spawn_blocking(move || suite::prepare(&suite))
            .await
            .context("the kernel builds' thread failed")??;
        let prepared = Arc::new(prepared);
        self.prepared = Some(prepared.clone());
        Ok(prepared)
    }

    /// Plans, prepares and runs every round; `on` hears of each step.
    pub async fn run(&mut self, on: &(dyn Fn(Event) + Sync)) -> Result<Report> {
        if self.pairs().is_empty() {
            anyhow::bail!("nothing to run: no case runs on the selected kernels");
        }
        refuse_blessing_a_flavor(&self.suite)?;
        let prepared = self.prepare().await?;
        let pairs = self.pairs();
        // A restored case costs less than a boot shared with others and
        // needs no rerun: cases share boots only when they boot.
        let mut units = batch::units(&pairs, self.schedule.batch && !self.opts.restores());
        // Longest first (by the last runs' times): a long pair started last
        // would run alone at the end while the other VM slots sit idle.
        let took = durations::load();
        units.sort_by(|a, b| durations::of(&took, b).total_cmp(&durations::of(&took, a)));
        let cases: Vec<_> = pairs.iter().map(|(c, _)| *c).collect();
        let plan = Plan {
            pairs: pairs.len(),
            boots: units.len(),
            shared: units.iter().filter(|u| u.cases.len() > 1).count(),
            restored: self.opts.restores(),
            jobs: self
                .schedule
                .jobs
                .unwrap_or_else(|| batch::default_jobs(&cases))
                .clamp(1, units.len()),
            rounds: self.schedule.repeat.max(1) as usize,
        };
        on(Event::Planned(&plan));
        let started = Instant::now();
        let mut rounds = Vec::new();
        for round in 1..=plan.rounds {
            if crate::interrupt::raised() {
                break;
            }
            let runs = self
                .round(round, &plan, &pairs, &units, &prepared, on)
                .await?;
            rounds.push(runs);
        }
        let elapsed = started.elapsed();
        durations::store(rounds.iter().flatten());
        let reruns = rounds
            .iter()
            .flatten()
            .filter(|r| matches!(r.boot, BootMode::Rerun { .. }))
            .count();
        let boots = rounds.len() * units.len() + reruns;
        self.report(plan, rounds, boots, elapsed)
    }

    /// One round: every unit, `plan.jobs` at a time, the runs in the
    /// suite's order whatever order they finished in. Each round keeps its
    /// own logs, so the runs of a flake can be read side by side.
    async fn round(
        &self,
        round: usize,
        plan: &Plan,
        pairs: &[(&Case, &str)],
        units: &[Unit<'_>],
        prepared: &Prepared,
        on: &(dyn Fn(Event) + Sync),
    ) -> Result<Vec<CaseRun>> {
        let mut paths = self.suite.paths.clone();
        if plan.rounds > 1 {
            paths.out = self.suite.paths.out.join(format!("round-{round}"));
            on(Event::Round {
                round,
                rounds: plan.rounds,
                logs: &paths.logs(),
            });
        }
        let finished = std::sync::atomic::AtomicUsize::new(0);
        let done = |run: &CaseRun| {
            let n = finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            on(Event::Verdict {
                n,
                total: plan.pairs,
                run,
            });
        };
        let mut runs =
            batch::run_units(&paths, units, prepared, self.opts, plan.jobs, &done).await?;
        let order = |r: &CaseRun| {
            pairs
                .iter()
                .position(|(c, k)| c.name == r.case && *k == r.kernel)
                .unwrap_or(usize::MAX)
        };
        runs.sort_by_key(order);
        Ok(runs)
    }

    /// The report of `rounds`: flakes found, the JUnit report written.
    pub fn report(
        &self,
        plan: Plan,
        rounds: Vec<Vec<CaseRun>>,
        boots: usize,
        elapsed: Duration,
    ) -> Result<Report> {
        let runs: Vec<CaseRun> = rounds.iter().flatten().cloned().collect();
        if let Some(path) = &self.junit {
            crate::paths::write_atomic(path, suite::junit_xml(&runs)?.as_bytes())?;
        }
        Ok(Report {
            plan,
            flakes: flakes::find(&rounds),
            rounds,
            boots,
            elapsed,
            junit: self.junit.clone(),
            out: self.suite.paths.out.clone(),
        })
    }

    /// One pair in a boot of its own, preparing only its kernel (once per
    /// kernel, by whichever pair asks first; on the calling thread): for a
    /// harness that runs each pair as a test of its own.
    pub async fn run_alone(&self, case: &str, kernel: &str) -> CaseRun {
        let backend = self.opts.backend;
        let paths = &self.suite.paths;
        let prepared = match self.prepared_for(kernel) {
            Ok(p) => p,
            Err(e) => {
                let e = anyhow::anyhow!("preparing kernel {kernel} failed: {e}");
                return verdict::errored(paths, case, kernel, backend, &e);
            }
        };
        let Some(c) = self.suite.cases.iter().find(|c| c.name == case) else {
            let e = anyhow::anyhow!("no case {case} in the session");
            return verdict::errored(paths, case, kernel, backend, &e);
        };
        let Some(k) = prepared.kernels.iter().find(|k| k.name == kernel) else {
            let e = anyhow::anyhow!("kernel {kernel} was not built");
            return verdict::errored(paths, case, kernel, backend, &e);
        };
        crate::pair::run_pair(paths, c, k, &prepared, self.opts)
            .await
            .unwrap_or_else(|e| verdict::errored(paths, case, kernel, backend, &e))
    }

    fn prepared_for(&self, kernel: &str) -> Result<Arc<Prepared>, String> {
        if let Some(p) = &self.prepared {
            return Ok(p.clone());
        }
        let cell = self
            .per_kernel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kernel.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| {
            crate::setup::host()
                .and_then(|_| suite::prepare(&self.suite.only_kernel(kernel)))
                .map(Arc::new)
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
    }
}

/// A flavor's outcomes are compared with the variant's snapshots (made on
/// the normal kernel) and never become them: blessing a flavor is refused
/// before anything is built. (Its comparisons write nothing anyway:
/// [`crate::snapshot::compare_read_only`].)
/// How long each pair took when it last ran (`CACHE/durations.json`, by
/// `CASE@KERNEL`), to start the longest first. Best effort: without it the
/// suite's order is kept.
mod durations {
    use crate::batch::Unit;
    use crate::verdict::{CaseRun, Verdict};
    use std::collections::BTreeMap;

    type Took = BTreeMap<String, f64>;

    fn file() -> Option<std::path::PathBuf> {
        crate::paths::cache_dir()
            .ok()
            .map(|c| c.join("durations.json"))
    }

    pub fn load() -> Took {
        file()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// A unit's expected time: its cases' last times (a second for one
    /// never seen).
    pub fn of(took: &Took, unit: &Unit) -> f64 {
        unit.cases
            .iter()
            .map(|c| {
                took.get(&format!("{}@{}", c.name, unit.kernel))
                    .copied()
                    .unwrap_or(1.0)
            })
            .sum()
    }

    /// Keeps the times of the runs that ran to a verdict.
    pub fn store<'a>(runs: impl Iterator<Item = &'a CaseRun>) {
        let Some(f) = file() else { return };
        let mut took = load();
        for r in runs.filter(|r| !matches!(r.verdict, Verdict::Interrupted | Verdict::Error)) {
            took.insert(format!("{}@{}", r.case, r.kernel), r.elapsed.as_secs_f64());
        }
        if let Ok(b) = serde_json::to_vec_pretty(&took) {
            let _ = crate::paths::write_atomic(&f, &b);
        }
    }
}

fn refuse_blessing_a_flavor(suite: &Suite) -> Result<()> {
    if !crate::snapshot::blessing() {
        return Ok(());
    }
    if let Some(r) = suite.recipes.iter().find(|r| r.flavor != Flavor::Normal) {
        anyhow::bail!(
            "bless writes snapshots from normal kernels only: {} is the {} flavor of {}, whose outcomes are compared with {}'s snapshots, never recorded (where they differ, that is a finding of its checkers); bless without --flavor",
            r.name,
            r.flavor,
            r.variant,
            r.variant
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{End, Outcome};

    fn run(case: &str, verdict: Verdict) -> CaseRun {
        CaseRun {
            outcome: Some(Outcome {
                case: case.into(),
                kernel: "k".into(),
                end: End::Completed,
                steps: vec![],
                crashes: vec![],
                dmesg: vec![],
                guest_errors: vec![],
            }),
            ..CaseRun::for_test(case, verdict)
        }
    }

    fn report(rounds: Vec<Vec<CaseRun>>) -> Report {
        Report {
            plan: Plan {
                pairs: rounds[0].len(),
                boots: 1,
                shared: 0,
                restored: false,
                jobs: 1,
                rounds: rounds.len(),
            },
            flakes: flakes::find(&rounds),
            rounds,
            boots: 1,
            elapsed: Duration::ZERO,
            junit: None,
            out: "/o".into(),
        }
    }

    #[test]
    fn the_worst_verdict_decides_the_result() {
        let r = |vs: &[Verdict]| {
            report(vec![vs
                .iter()
                .enumerate()
                .map(|(i, v)| run(&format!("c{i}"), *v))
                .collect()])
            .result()
        };
        assert_eq!(r(&[Verdict::Pass, Verdict::Pass]), Overall::Pass);
        assert_eq!(r(&[Verdict::Pass, Verdict::New]), Overall::Snapshot);
        assert_eq!(r(&[Verdict::Mismatch, Verdict::Crash]), Overall::Crash);
        assert_eq!(r(&[Verdict::Crash, Verdict::Error]), Overall::Fault(None));
        assert_eq!(
            r(&[Verdict::Error, Verdict::Interrupted]),
            Overall::Interrupted
        );
    }

    #[test]
    fn an_outcome_that_differs_between_rounds_is_flaky() {
        let mut other = run("c", Verdict::Pass);
        other.outcome.as_mut().unwrap().end = End::StoppedEarly;
        let rep = report(vec![vec![run("c", Verdict::Pass)], vec![other]]);
        assert_eq!(rep.flakes.len(), 1);
        assert_eq!(rep.result(), Overall::Flaky);
    }

    #[test]
    fn reruns_carry_their_reason_and_the_earlier_case_note_is_a_match() {
        use crate::verdict::RerunReason;
        let mut crashed = run("a", Verdict::Pass);
        crashed.boot = BootMode::Rerun {
            why: RerunReason::CrashedInBatch {
                title: "BUG: x".into(),
            },
        };
        let mut never_ran = run("b", Verdict::Pass);
        never_ran.boot = BootMode::Rerun {
            why: RerunReason::BatchCouldNotRun {
                error: "no QEMU".into(),
            },
        };
        let mut stopped = run("c", Verdict::Pass);
        stopped.boot = BootMode::Rerun {
            why: RerunReason::KernelStoppedEarlier,
        };
        let rep = report(vec![vec![
            crashed,
            never_ran,
            stopped,
            run("d", Verdict::Pass),
        ]]);
        let reruns: Vec<_> = rep.reruns().collect();
        assert_eq!(reruns.len(), 3);
        let changed: Vec<_> = rep
            .runs()
            .filter(|r| r.changed_by_an_earlier_case())
            .map(|r| r.case.as_str())
            .collect();
        assert_eq!(changed, ["a"]);
        assert_eq!(reruns[1].1.to_string(), "its batch could not run: no QEMU");
    }
}
