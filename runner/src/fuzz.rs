//! `cargo xtask fuzz`: seeded stress runs in fresh VMs, their findings
//! grouped, and each new one minimized into a case.
//!
//! A run is one boot of the kernel with one `stress` step (a seed, its
//! threads). Its findings are named by their [`Signature`]: the normalized
//! title of the crash the console shows, or the kind of direct-map
//! violation the probe's oracle saw, or a worker that never came back. A
//! signature already in the corpus (the cache, per kernel) is counted and
//! not reported again.
//!
//! A new finding is minimized as syzkaller minimizes a crash: the stress
//! run's log (every operation in the order started) is cut after the
//! operation that failed; replayed on one thread first (the deterministic
//! replay), else on the run's threads; narrowed to the operations on the
//! failing file since its last creation; then delta debugging (ddmin over
//! the operations, each candidate replayed in a fresh VM, `jobs` at once)
//! keeps only what still reproduces the same signature; a threaded finding
//! is then tried on fewer threads. The result is a case,
//! `cases/found_SLUG.yaml`, whose `replay` step runs the minimized program,
//! with the crash report in its comments.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmem_protocol::args::{Op, OpKind, MAX_FILE_PAGES, MAX_THREADS};
use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::kernel::{Flavor, Recipe};
use crate::paths::{write_atomic, Paths};
use crate::prepared::Prepared;
use crate::session::{Schedule, Session};
use crate::suite::{RunOptions, Suite};
use crate::verdict::CaseRun;

/// What a finding is, for grouping: two runs with the same signature found
/// the same thing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// The console's crash, by its normalized title.
    Crash(String),
    /// The oracle's violation, by kind (`ndm_readable_after_fault`, ...).
    Violation(String),
    /// The stress worker did not come back and the console shows no crash:
    /// the verb of the operation it hung in.
    Stuck(String),
}

impl Signature {
    /// As a person reads it.
    pub fn title(&self) -> String {
        match self {
            Signature::Crash(t) => t.clone(),
            Signature::Violation(k) => format!("direct map: {}", k.replace('_', " ")),
            Signature::Stuck(v) => format!("stress worker stuck in {v}"),
        }
    }

    /// The name of its case file, `found_SLUG`: the title's words,
    /// lowercase, at most 64 characters in all.
    pub fn case_name(&self) -> String {
        let mut slug = String::new();
        for c in self.title().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('_') && !slug.is_empty() {
                slug.push('_');
            }
        }
        let mut slug = slug.trim_end_matches('_').to_string();
        // Too long for a case name: the function a title ends with says the
        // most, so words go from the front of what precedes it.
        let room = crate::case::MAX_NAME - "found_".len();
        if slug.len() > room {
            if let Some(at) = slug.rfind("_in_") {
                let (what, func) = slug.split_at(at);
                let mut what = what;
                while what.len() + func.len() > room {
                    match what.split_once('_') {
                        Some((_, rest)) => what = rest,
                        None => {
                            what = "";
                            break;
                        }
                    }
                }
                slug = format!("{what}{func}").trim_start_matches('_').to_string();
            }
        }
        let mut name = format!("found_{slug}");
        name.truncate(crate::case::MAX_NAME);
        name.trim_end_matches('_').to_string()
    }
}

/// What a `stress` or `replay` step observed, as far as the fuzzer reads it.
#[derive(Debug, Clone, Default, Deserialize)]
struct Observed {
    #[serde(default)]
    worker: String,
    #[serde(default)]
    ops: usize,
    #[serde(default)]
    ops_per_second: u64,
    #[serde(default)]
    violations: Vec<ObservedViolation>,
    #[serde(default)]
    unfinished: Vec<String>,
    #[serde(default)]
    log: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ObservedViolation {
    kind: String,
    at: usize,
}

fn observed(run: &CaseRun) -> Observed {
    run.outcome
        .as_ref()
        .and_then(|o| o.steps.first())
        .and_then(|s| s.observation.clone())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// The signatures a run found, the crash first.
fn signatures(run: &CaseRun) -> Vec<Signature> {
    let mut out = Vec::new();
    if let Some(c) = run.outcome.as_ref().and_then(|o| o.crashes.first()) {
        out.push(Signature::Crash(c.title.clone()));
    }
    let obs = observed(run);
    for v in &obs.violations {
        let s = Signature::Violation(v.kind.clone());
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        let step = run.outcome.as_ref().and_then(|o| o.steps.first());
        let stuck = matches!(obs.worker.as_str(), "stuck" | "died" | "tainted")
            || step.is_some_and(|s| !matches!(s.result.as_str(), "exited 0" | "exited 3"));
        if stuck {
            let verb = obs
                .unfinished
                .first()
                .and_then(|u| u.parse::<Op>().ok())
                .map_or("an unknown operation".into(), |op| {
                    op.kind.verb().to_string()
                });
            out.push(Signature::Stuck(verb));
        }
    }
    out
}

/// Whether the run's first crash came before its case began (its marker
/// in the kernel log): a crash of the boot, not of the program.
fn crashed_before_case(run: &CaseRun) -> bool {
    let Some(crash) = run.crashes.first() else {
        return false;
    };
    let Ok(console) = std::fs::read_to_string(run.log_dir.join("console.log")) else {
        return false;
    };
    let marker = gmem_protocol::case_marker(&run.case);
    console
        .lines()
        .position(|l| l.contains(&marker))
        .is_none_or(|begin| crash.line_no < begin)
}

/// How the fuzzer runs.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// The variant (a recipe's name).
    pub kernel: String,
    pub flavor: Flavor,
    /// Stop starting runs after this long.
    pub time: Duration,
    /// Stop after this many seeds (a fixed smoke run), whatever the time.
    pub seeds: Option<u64>,
    pub first_seed: u64,
    /// VMs at once.
    pub jobs: usize,
    /// Threads per stress run.
    pub threads: usize,
    /// Seconds per stress run.
    pub seconds: u64,
    pub max_ops: usize,
    pub pages: usize,
    /// Minimize new findings into cases.
    pub minimize: bool,
    /// Where found cases are written (the suite's `cases/`).
    pub cases_dir: PathBuf,
    /// The corpus of findings already reported.
    pub corpus_dir: PathBuf,
}

impl FuzzOptions {
    pub fn new(paths: &Paths, kernel: &str) -> FuzzOptions {
        FuzzOptions {
            kernel: kernel.to_string(),
            flavor: Flavor::Normal,
            time: Duration::from_secs(600),
            seeds: None,
            first_seed: 1,
            jobs: 2,
            threads: 2,
            seconds: 10,
            max_ops: 5000,
            pages: 16,
            minimize: true,
            cases_dir: paths.cases(),
            corpus_dir: paths.cache.join("fuzz"),
        }
    }
}

/// One finding of this session.
#[derive(Debug, Clone)]
pub struct Finding {
    pub signature: Signature,
    pub seed: u64,
    /// Operations the stress run had started when it failed.
    pub ops: usize,
    /// The console log and decoded crash of the run that found it.
    pub console: PathBuf,
    pub crash_report: Option<String>,
    /// The minimized program, when minimized.
    pub minimized: Option<Minimized>,
    /// The case written.
    pub case_file: Option<PathBuf>,
    /// The kernels (normal flavor) the minimized case passed on.
    pub passes_on: Vec<String>,
    /// The crash came before the program ran (in the boot): nothing of the
    /// program to minimize.
    pub during_boot: bool,
}

/// A minimized program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minimized {
    pub ops: Vec<Op>,
    /// Replayed with the run's threads (else on one thread).
    pub threaded: bool,
    /// Replays it took.
    pub replays: usize,
    /// From how many operations.
    pub from: usize,
    /// Whether it reproduced at all (else `ops` is the run's cut log).
    pub reproduced: bool,
}

/// What a fuzzing session did.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub kernel: String,
    pub runs: u64,
    pub ops: u64,
    /// Operations per second of each run (all its threads), in one VM.
    pub rates: Vec<u64>,
    pub new: Vec<Finding>,
    /// Signatures found again, with how many runs found each.
    pub known: BTreeMap<Signature, u64>,
    pub elapsed: Duration,
}

impl FuzzReport {
    pub fn median_rate(&self) -> u64 {
        let mut r = self.rates.clone();
        r.sort_unstable();
        r.get(r.len() / 2).copied().unwrap_or(0)
    }
}

/// The runs: cases written from text, run on the kernel in fresh VMs
/// (also the LKDTM corpus's, `crate::lkdtm`).
pub(crate) struct Runner {
    pub(crate) paths: Paths,
    pub(crate) recipe: Recipe,
    pub(crate) variant: String,
    pub(crate) flavor: Flavor,
    pub(crate) prepared: Option<Arc<Prepared>>,
    /// Where the cases' files are written.
    pub(crate) work: PathBuf,
    pub(crate) jobs: usize,
    pub(crate) replays: usize,
}

impl Runner {
    /// Runs each `(name, yaml)` case, `jobs` VMs at once; the runs in order.
    async fn run(&mut self, cases: &[(String, String)]) -> Result<Vec<CaseRun>> {
        self.run_with(cases, &|_| {}).await
    }

    /// [`Runner::run`], telling `on` of each run as it ends.
    pub(crate) async fn run_with(
        &mut self,
        cases: &[(String, String)],
        on: &(dyn Fn(&CaseRun) + Sync),
    ) -> Result<Vec<CaseRun>> {
        std::fs::create_dir_all(&self.work)?;
        let mut loaded = Vec::new();
        for (name, yaml) in cases {
            let file = self.work.join(format!("{name}.yaml"));
            std::fs::write(&file, yaml).with_context(|| format!("writing {}", file.display()))?;
            let case = Case::load(&file, std::slice::from_ref(&self.variant))?;
            loaded.push(case.flavored(self.flavor));
        }
        let suite = Suite {
            paths: self.paths.clone(),
            cases: loaded,
            recipes: vec![self.recipe.clone()],
            kselftests: vec![],
        };
        let opts = RunOptions {
            no_snapshot: true,
            ..Default::default()
        };
        let schedule = Schedule {
            batch: false,
            jobs: Some(self.jobs.min(cases.len()).max(1)),
            ..Schedule::alone()
        };
        let mut session = Session::new(suite, opts, schedule);
        if let Some(p) = &self.prepared {
            session = session.with_prepared(p.clone());
        } else {
            self.prepared = Some(session.prepare().await?);
        }
        let report = session
            .run(&|e| {
                if let crate::session::Event::Verdict { run, .. } = e {
                    on(run)
                }
            })
            .await?;
        if crate::interrupt::raised() {
            anyhow::bail!("interrupted");
        }
        let mut runs = Vec::new();
        for (name, _) in cases {
            let run = report
                .runs()
                .find(|r| &r.case == name)
                .cloned()
                .with_context(|| format!("no run of {name}"))?;
            runs.push(run);
        }
        Ok(runs)
    }

    /// Replays each program; whether each reproduced `sig`.
    async fn replay(&mut self, sig: &Signature, programs: &[(Vec<Op>, bool)]) -> Result<Vec<bool>> {
        let cases: Vec<(String, String)> = programs
            .iter()
            .map(|(ops, threaded)| {
                self.replays += 1;
                // The process in the name: two fuzzers on one kernel keep apart.
                let name = format!("fuzz_replay_{}_{}", std::process::id(), self.replays);
                let yaml = replay_case(&self.variant, ops, *threaded, None);
                (name, yaml)
            })
            .collect();
        let runs = self.run(&cases).await?;
        let got = runs.iter().map(|r| signatures(r).contains(sig)).collect();
        // A replay's logs (2 MB of initramfs each) are not kept: thousands
        // of them would fill the disk. The finding's own run is.
        for r in &runs {
            let _ = std::fs::remove_dir_all(&r.log_dir);
        }
        Ok(got)
    }

    /// Whether one program reproduces `sig`, trying `tries` times.
    async fn reproduces(
        &mut self,
        sig: &Signature,
        ops: &[Op],
        threaded: bool,
        tries: usize,
    ) -> Result<bool> {
        let programs = vec![(ops.to_vec(), threaded); tries];
        Ok(self.replay(sig, &programs).await?.into_iter().any(|x| x))
    }
}

/// The text of a stress case: one seed.
fn stress_case(variant: &str, seed: u64, o: &FuzzOptions) -> String {
    format!(
        "description: fuzz, seed {seed}\nkernels: [{variant}]\nbatch: false\nsteps:\n  - name: stress\n    probe: stress\n    args: {{seed: {seed}, threads: {}, seconds: {}, max_ops: {}, pages: {}}}\n    timeout: {}\n",
        o.threads,
        o.seconds,
        o.max_ops,
        o.pages,
        o.seconds + 40
    )
}

/// The text of a replay case, `header` (comment lines) first.
fn replay_case(kernels: &str, ops: &[Op], threaded: bool, header: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(h) = header {
        s += h;
    }
    s += &format!(
        "description: {}\nkernels: [{kernels}]\nbatch: false\nsteps:\n  - name: replay\n    probe: replay\n    args:\n      threads: {threaded}\n      seconds: 30\n      ops:\n",
        yaml_string(&format!("replay of {} operations", ops.len()))
    );
    for op in ops {
        s += &format!("        - {}\n", yaml_string(&op.to_string()));
    }
    s += "    timeout: 60\n";
    s
}

fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The run's log cut after the operation that failed with `sig` (the
/// whole log when that operation is not known), and the places of the
/// operations that may have failed in it: the one the oracle caught, or
/// every one that never finished (an oops kills one thread; the others are
/// stopped wherever they were).
fn cut(obs: &Observed, sig: &Signature) -> (Vec<Op>, Vec<usize>) {
    let log: Vec<Op> = obs.log.iter().filter_map(|l| l.parse().ok()).collect();
    let failing: Vec<usize> = match sig {
        Signature::Violation(kind) => obs
            .violations
            .iter()
            .find(|v| &v.kind == kind)
            .map(|v| v.at)
            .into_iter()
            .collect(),
        // An unfinished operation is its thread's last: the last time the
        // log shows it.
        Signature::Crash(_) | Signature::Stuck(_) => obs
            .unfinished
            .iter()
            .filter_map(|u| obs.log.iter().rposition(|l| l == u))
            .collect(),
    };
    match failing.iter().max() {
        Some(&end) if end < log.len() => (log[..=end].to_vec(), failing),
        _ => {
            let all = log.len().checked_sub(1).into_iter().collect();
            (log, all)
        }
    }
}

/// The operations on the failing operations' files since each file's last
/// `create` before them, and the failing operations themselves: the slice
/// that usually holds the cause.
fn slice(ops: &[Op], failing: &[usize]) -> Vec<Op> {
    let Some(&last) = failing.iter().max() else {
        return ops.to_vec();
    };
    let files: Vec<usize> = failing
        .iter()
        .filter_map(|&i| ops.get(i).and_then(|o| o.kind.file()))
        .collect();
    let since: Vec<(usize, usize)> = files
        .iter()
        .map(|&f| {
            let from = ops[..=last.min(ops.len() - 1)]
                .iter()
                .rposition(|o| o.kind.file() == Some(f) && matches!(o.kind, OpKind::Create { .. }))
                .unwrap_or(0);
            (f, from)
        })
        .collect();
    ops.iter()
        .enumerate()
        .filter(|(i, o)| {
            failing.contains(i)
                || since
                    .iter()
                    .any(|(f, from)| o.kind.file() == Some(*f) && i >= from)
        })
        .map(|(_, o)| o.clone())
        .collect()
}

/// What ddmin asks: which of these candidates still fail.
trait Tester {
    fn test(
        &mut self,
        candidates: Vec<Vec<Op>>,
    ) -> impl std::future::Future<Output = Result<Vec<bool>>>;
}

/// Replays in fresh VMs: a candidate fails when any of `tries` replays
/// reproduces the signature.
struct Replayer<'a> {
    runner: &'a mut Runner,
    sig: &'a Signature,
    threaded: bool,
    tries: usize,
}

impl Tester for Replayer<'_> {
    async fn test(&mut self, candidates: Vec<Vec<Op>>) -> Result<Vec<bool>> {
        let programs: Vec<(Vec<Op>, bool)> = candidates
            .into_iter()
            .flat_map(|c| std::iter::repeat_n((c, self.threaded), self.tries))
            .collect();
        let got = self.runner.replay(self.sig, &programs).await?;
        Ok(got
            .chunks(self.tries)
            .map(|c| c.iter().any(|x| *x))
            .collect())
    }
}

/// Delta debugging (Zeller's ddmin, complements first): the smallest
/// sub-list of `ops` that still fails, testing up to `parallel` candidates
/// at once. Once the parts are single operations, one pass from the end
/// removes each operation that is not needed (ddmin would start over
/// after every removal there: quadratic in replays).
async fn ddmin(
    mut ops: Vec<Op>,
    parallel: usize,
    tester: &mut impl Tester,
    on_reduce: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Op>> {
    let parallel = parallel.max(1);
    let mut n = 2usize;
    while ops.len() >= 2 && ops.len().div_ceil(n) > 1 {
        let chunk = ops.len().div_ceil(n);
        let parts: Vec<(usize, usize)> = (0..ops.len())
            .step_by(chunk)
            .map(|s| (s, (s + chunk).min(ops.len())))
            .collect();
        // Every complement (without part i); when n is 2 these are the parts.
        let candidates: Vec<Vec<Op>> = parts
            .iter()
            .map(|(s, e)| {
                ops.iter()
                    .enumerate()
                    .filter(|(i, _)| i < s || i >= e)
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .collect();
        let mut reduced = None;
        for group in candidates.chunks(parallel) {
            let ok = tester.test(group.to_vec()).await?;
            if let Some(i) = ok.iter().position(|x| *x) {
                reduced = Some(group[i].clone());
                break;
            }
        }
        match reduced {
            Some(smaller) => {
                ops = smaller;
                n = (n - 1).max(2);
                on_reduce(ops.len());
            }
            None => n = (n * 2).min(ops.len()),
        }
    }
    // Single operations, from the last to the first, `parallel` at a time:
    // the first of a group (the latest operation) that can go, goes.
    let mut i = ops.len();
    while i > 0 && ops.len() >= 2 {
        let tried: Vec<usize> = (i.saturating_sub(parallel)..i).rev().collect();
        let candidates: Vec<Vec<Op>> = tried
            .iter()
            .map(|&j| {
                let mut c = ops.clone();
                c.remove(j);
                c
            })
            .collect();
        let ok = tester.test(candidates).await?;
        match ok.iter().position(|x| *x) {
            Some(k) => {
                ops.remove(tried[k]);
                on_reduce(ops.len());
                i = tried[k];
            }
            None => i = i.saturating_sub(parallel),
        }
    }
    Ok(ops)
}

/// Minimizes the failing run's program for `sig`.
async fn minimize(
    runner: &mut Runner,
    sig: &Signature,
    obs: &Observed,
    threads: usize,
    say: &(dyn Fn(String) + Sync),
) -> Result<Minimized> {
    let start = runner.replays;
    let (full, failing) = cut(obs, sig);
    let from = full.len();
    // Deterministic replay on one thread first, then the run's threads.
    let mut threaded = false;
    if !runner.reproduces(sig, &full, false, 1).await? {
        threaded = true;
        if threads < 2 || !runner.reproduces(sig, &full, true, 2).await? {
            return Ok(Minimized {
                ops: full,
                threaded: threads > 1,
                replays: runner.replays - start,
                from,
                reproduced: false,
            });
        }
    }
    let tries = if threaded { 2 } else { 1 };
    let mut ops = full;
    let sliced = slice(&ops, &failing);
    if sliced.len() < ops.len() {
        if runner.reproduces(sig, &sliced, threaded, tries).await? {
            say(format!(
                "  the failing file's {} operations reproduce it",
                sliced.len()
            ));
            ops = sliced;
        } else {
            say(format!(
                "  the failing file's {} operations alone do not reproduce it",
                sliced.len()
            ));
        }
    }
    let jobs = runner.jobs;
    let mut tester = Replayer {
        runner: &mut *runner,
        sig,
        threaded,
        tries,
    };
    let ops = ddmin(ops, jobs, &mut tester, &|n| {
        say(format!("  ddmin: {n} operations still fail"))
    })
    .await?;
    // A finding that reproduces only most of the time leaves operations
    // ddmin could not remove by chance: each one left is tried once more,
    // three replays each, and goes if any of them still fails.
    let mut ops = ops;
    let mut polish = Replayer {
        runner: &mut *runner,
        sig,
        threaded,
        tries: 3,
    };
    let mut i = ops.len();
    while i > 0 && ops.len() >= 2 {
        i -= 1;
        let mut without = ops.clone();
        without.remove(i);
        if polish.test(vec![without.clone()]).await?[0] {
            ops = without;
            say(format!("  polish: {} operations still fail", ops.len()));
        }
    }
    // The fewest threads that still fail: thread numbers folded onto fewer.
    if threaded {
        let used = ops.iter().map(|o| o.thread).max().unwrap_or(0) + 1;
        for k in 1..used {
            let folded: Vec<Op> = ops
                .iter()
                .map(|o| Op {
                    thread: o.thread % k,
                    kind: o.kind.clone(),
                })
                .collect();
            if runner.reproduces(sig, &folded, k > 1, 2).await? {
                threaded = k > 1;
                ops = folded;
                break;
            }
        }
    }
    if !threaded {
        // One thread runs them all: say so.
        for op in &mut ops {
            op.thread = 0;
        }
    }
    Ok(Minimized {
        ops,
        threaded,
        replays: runner.replays - start,
        from,
        reproduced: true,
    })
}

/// The corpus entry of a signature on a kernel: its file.
fn corpus_file(o: &FuzzOptions, kernel: &str, sig: &Signature) -> PathBuf {
    o.corpus_dir
        .join(kernel)
        .join(format!("{}.yaml", sig.case_name()))
}

#[derive(Debug, Serialize, Deserialize)]
struct CorpusEntry {
    signature: Signature,
    seed: u64,
    found: String,
    #[serde(default)]
    minimized: Vec<String>,
    #[serde(default)]
    case: Option<String>,
}

/// Fuzzes `o.kernel` until the time (or the seeds) run out; `say` hears
/// of each run and finding.
pub async fn fuzz(
    paths: &Paths,
    o: &FuzzOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<FuzzReport> {
    // Every variant: the fuzzed one, and the others a minimized case is
    // tried on.
    let recipes = crate::kernel::recipe::list(&paths.kernels())?
        .iter()
        .map(|n| Recipe::load_named(&paths.kernels(), n))
        .collect::<Result<Vec<_>>>()?;
    let recipe = recipes
        .iter()
        .find(|r| r.name == o.kernel)
        .cloned()
        .with_context(|| {
            format!(
                "no kernel `{}` in {} (kernels: {})",
                o.kernel,
                paths.kernels().display(),
                recipes
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let recipe = o.flavor.apply(&recipe)?;
    let kernel = recipe.name.clone();
    if !(1..=MAX_THREADS).contains(&o.threads) || !(1..=MAX_FILE_PAGES).contains(&o.pages) {
        anyhow::bail!("threads must be 1 to {MAX_THREADS} and pages 1 to {MAX_FILE_PAGES}");
    }
    let mut runner = Runner {
        paths: paths.clone(),
        recipe,
        variant: o.kernel.clone(),
        flavor: o.flavor,
        prepared: None,
        work: paths.out.join("fuzz").join(&kernel),
        jobs: o.jobs.max(1),
        replays: 0,
    };
    let started = Instant::now();
    let mut report = FuzzReport {
        kernel: kernel.clone(),
        ..Default::default()
    };
    let mut seed = o.first_seed;
    loop {
        let left = o.seeds.map(|n| o.first_seed + n - seed);
        if left == Some(0) || (o.seeds.is_none() && started.elapsed() >= o.time) {
            break;
        }
        let batch = (o.jobs.max(1) as u64).min(left.unwrap_or(u64::MAX));
        let seeds: Vec<u64> = (seed..seed + batch).collect();
        seed += batch;
        let cases: Vec<(String, String)> = seeds
            .iter()
            .map(|s| (format!("fuzz_seed_{s}"), stress_case(&o.kernel, *s, o)))
            .collect();
        let runs = runner.run(&cases).await?;
        for (s, run) in seeds.iter().zip(&runs) {
            report.runs += 1;
            let obs = observed(run);
            report.ops += obs.ops as u64;
            if obs.ops_per_second > 0 {
                report.rates.push(obs.ops_per_second);
            }
            let sigs = signatures(run);
            let known_only = sigs.iter().all(|sig| {
                report.new.iter().any(|f| &f.signature == sig)
                    || corpus_file(o, &kernel, sig).exists()
            });
            if known_only {
                // Only a new finding's run keeps its logs (2 MB each).
                let _ = std::fs::remove_dir_all(&run.log_dir);
            }
            if sigs.is_empty() {
                say(format!(
                    "seed {s}: {} operations ({} a second), nothing found",
                    obs.ops, obs.ops_per_second
                ));
                continue;
            }
            for sig in sigs {
                let entry = corpus_file(o, &kernel, &sig);
                let again = report.new.iter().any(|f| f.signature == sig);
                if again || entry.exists() {
                    *report.known.entry(sig.clone()).or_default() += 1;
                    say(format!("seed {s}: {} (known)", sig.title()));
                    continue;
                }
                say(format!(
                    "seed {s}: NEW {} after {} operations",
                    sig.title(),
                    obs.ops
                ));
                let mut finding = Finding {
                    signature: sig.clone(),
                    seed: *s,
                    ops: obs.ops,
                    console: run.log_dir.join("console.log"),
                    crash_report: match sig {
                        Signature::Crash(_) => run.crash_report.clone(),
                        _ => None,
                    },
                    minimized: None,
                    case_file: None,
                    passes_on: vec![],
                    during_boot: matches!(sig, Signature::Crash(_)) && crashed_before_case(run),
                };
                if finding.during_boot {
                    say(
                        "  it came during the boot, before the program ran: nothing to minimize"
                            .into(),
                    );
                } else if o.minimize && obs.log.is_empty() {
                    // The probe never reported (the kernel died with it).
                    say("  the run reported no log of its operations: nothing to minimize".into());
                } else if o.minimize {
                    say(format!(
                        "  minimizing {} operations ...",
                        cut(&obs, &sig).0.len()
                    ));
                    let m = minimize(&mut runner, &sig, &obs, o.threads, say).await?;
                    say(format!(
                        "  {} to {} operations ({}, {} replays)",
                        if m.reproduced {
                            "minimized"
                        } else {
                            "did NOT reproduce in replay; kept"
                        },
                        m.ops.len(),
                        if m.threaded { "threads" } else { "one thread" },
                        m.replays
                    ));
                    if m.reproduced {
                        finding.passes_on = passes_elsewhere(paths, &recipes, o, &m).await?;
                        let known: Vec<String> = recipes.iter().map(|r| r.name.clone()).collect();
                        let file = write_case(o, &kernel, &finding, &m, &known)?;
                        say(format!("  case: {}", file.display()));
                        finding.case_file = Some(file);
                    }
                    finding.minimized = Some(m);
                }
                let entry_text = serde_yaml::to_string(&CorpusEntry {
                    signature: sig.clone(),
                    seed: *s,
                    found: kernel.clone(),
                    minimized: finding
                        .minimized
                        .as_ref()
                        .map(|m| m.ops.iter().map(Op::to_string).collect())
                        .unwrap_or_default(),
                    case: finding.case_file.as_ref().map(|p| p.display().to_string()),
                })?;
                write_atomic(&entry, entry_text.as_bytes())?;
                report.new.push(finding);
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The variants (normal flavor) on which the minimized program neither
/// crashes nor violates anything: where the case passes.
async fn passes_elsewhere(
    paths: &Paths,
    recipes: &[Recipe],
    o: &FuzzOptions,
    m: &Minimized,
) -> Result<Vec<String>> {
    let mut passes = Vec::new();
    for r in recipes {
        if r.name == o.kernel && o.flavor == Flavor::Normal {
            continue;
        }
        let mut runner = Runner {
            paths: paths.clone(),
            recipe: r.clone(),
            variant: r.name.clone(),
            flavor: Flavor::Normal,
            prepared: None,
            work: paths.out.join("fuzz").join(&r.name),
            jobs: 1,
            replays: 0,
        };
        let name = format!("fuzz_elsewhere_{}", std::process::id());
        let yaml = replay_case(&r.name, &m.ops, m.threaded, None);
        let run = runner.run(&[(name, yaml)]).await?;
        let clean = signatures(&run[0]).is_empty()
            && run[0]
                .outcome
                .as_ref()
                .is_some_and(|out| out.failure(false).is_none());
        if clean {
            passes.push(r.name.clone());
        }
    }
    Ok(passes)
}

/// Writes `cases/found_SLUG.yaml`: the minimized program as a replay step,
/// with where it came from and the crash report in comments.
fn write_case(
    o: &FuzzOptions,
    kernel: &str,
    f: &Finding,
    m: &Minimized,
    known: &[String],
) -> Result<PathBuf> {
    let name = f.signature.case_name();
    let run = match o.flavor {
        Flavor::Normal => format!("cargo xtask run {name} --kernel {}", o.kernel),
        fl => format!("cargo xtask run {name} --kernel {} --flavor {fl}", o.kernel),
    };
    let mut h = String::new();
    h += &format!(
        "# Found by `cargo xtask fuzz --kernel {}{}` (seed {}, {} threads):\n",
        o.kernel,
        if o.flavor == Flavor::Normal {
            String::new()
        } else {
            format!(" --flavor {}", o.flavor)
        },
        f.seed,
        o.threads
    );
    h += &format!("#   {}\n", f.signature.title());
    h += &format!(
        "# minimized from {} operations to {} ({} replays, {}).\n",
        m.from,
        m.ops.len(),
        m.replays,
        if m.threaded {
            "on its threads"
        } else {
            "on one thread"
        }
    );
    h += &format!("# It fails on {kernel}:\n#   {run}\n");
    if f.passes_on.is_empty() {
        h += "# It passed on no other kernel when the fuzzer tried.\n";
    } else {
        h += &format!(
            "# It passed on {} (its `kernels`).\n",
            f.passes_on.join(", ")
        );
    }
    if let Some(r) = &f.crash_report {
        h += "#\n# The crash, as the run that found it showed it:\n";
        // The report without its register and code dumps.
        let dump = regex::Regex::new(
            r"\]\s+(Code|RSP|RAX|RDX|RBP|R08|R10|R13|FS|CS|CR2|PGD|Hardware name):",
        )
        .expect("a valid regex");
        for l in r.lines().filter(|l| !dump.is_match(l)).take(60) {
            h += &format!("#   {}\n", l.trim_end());
        }
    }
    let kernels = if f.passes_on.is_empty() {
        o.kernel.clone()
    } else {
        f.passes_on.join(", ")
    };
    let mut text = replay_case(&kernels, &m.ops, m.threaded, Some(&h));
    text = text.replacen(
        &format!(
            "description: {}",
            yaml_string(&format!("replay of {} operations", m.ops.len()))
        ),
        &format!(
            "description: {}",
            yaml_string(&format!(
                "found by the fuzzer on {kernel}: {}; fails where the bug is",
                f.signature.title()
            ))
        ),
        1,
    );
    let file = o.cases_dir.join(format!("{name}.yaml"));
    write_atomic(&file, text.as_bytes())?;
    // It must load as any case does.
    Case::load(&file, known).with_context(|| format!("the case written, {}", file.display()))?;
    Ok(file)
}

/// The session's summary, for people.
pub fn text(r: &FuzzReport) -> String {
    let mut s = format!(
        "\nfuzz {}: {} runs, {} operations in {:.0} s; {} operations a second per VM (median)\n",
        r.kernel,
        r.runs,
        r.ops,
        r.elapsed.as_secs_f64(),
        r.median_rate()
    );
    if r.new.is_empty() && r.known.is_empty() {
        s += "nothing found\n";
    }
    for f in &r.new {
        s += &format!(
            "\nNEW  {}\n     seed {}, after {} operations\n",
            f.signature.title(),
            f.seed,
            f.ops
        );
        if f.during_boot {
            s += "     during the boot, before the program ran (not minimized)\n";
        }
        match &f.minimized {
            Some(m) if m.reproduced => {
                s += &format!(
                    "     minimized to {} operations ({}) in {} replays\n",
                    m.ops.len(),
                    if m.threaded { "threads" } else { "one thread" },
                    m.replays
                )
            }
            Some(m) => s += &format!("     did not reproduce in {} replays\n", m.replays),
            None => {}
        }
        if let Some(c) = &f.case_file {
            let name = c
                .file_stem()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let (variant, flavor) = crate::kernel::Flavor::of_kernel(&r.kernel);
            let fl = if flavor == Flavor::Normal {
                String::new()
            } else {
                format!(" --flavor {flavor}")
            };
            s += &format!(
                "     case: {}\n     reproduce: cargo xtask run {name} --kernel {variant}{fl}\n",
                c.display()
            );
            if !f.passes_on.is_empty() {
                s += &format!("     passes on: {}\n", f.passes_on.join(", "));
            }
        }
        s += &format!("     console: {}\n", f.console.display());
    }
    for (sig, n) in &r.known {
        s += &format!(
            "known {} ({} run{})\n",
            sig.title(),
            n,
            if *n == 1 { "" } else { "s" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(text: &[&str]) -> Vec<Op> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn case_names_are_slugs_of_titles() {
        let s = Signature::Crash(
            "BUG: unable to handle kernel paging request in __access_remote_vm".into(),
        );
        assert_eq!(
            s.case_name(),
            "found_unable_to_handle_kernel_paging_request_in_access_remote_vm"
        );
        let s = Signature::Crash("WARNING in kvm_gmem_free_folio".into());
        assert_eq!(s.case_name(), "found_warning_in_kvm_gmem_free_folio");
        let long = Signature::Crash(format!("BUG: a check in {}", "f".repeat(80)));
        assert_eq!(long.case_name().len(), crate::case::MAX_NAME);
        assert!(s.case_name().len() <= crate::case::MAX_NAME);
        let v = Signature::Violation("ndm_readable_after_fault".into());
        assert_eq!(v.case_name(), "found_direct_map_ndm_readable_after_fault");
    }

    #[test]
    fn the_slice_starts_at_the_files_last_creation() {
        let all = ops(&[
            "t0 create f1 pages=4 flags=MMAP",
            "t1 create f0 pages=4 flags=MMAP|INIT_SHARED",
            "t0 create f1 pages=4 flags=MMAP|INIT_SHARED|NO_DIRECT_MAP",
            "t1 write f0 p1",
            "t0 mmap f1",
            "t1 check",
            "t0 write f1 p2",
            "t1 gup f1 p2 proc_self_mem",
        ]);
        assert_eq!(
            slice(&all, &[7]),
            ops(&[
                "t0 create f1 pages=4 flags=MMAP|INIT_SHARED|NO_DIRECT_MAP",
                "t0 mmap f1",
                "t0 write f1 p2",
                "t1 gup f1 p2 proc_self_mem",
            ])
        );
    }

    /// Two threads stopped at once: the slice keeps both failing files'
    /// operations since their creation.
    #[test]
    fn the_slice_follows_every_unfinished_operation() {
        let all = ops(&[
            "t0 create f0 pages=4",
            "t1 create f2 pages=4",
            "t0 write f1 p0",
            "t0 mmap f0",
            "t1 mmap f2",
            "t0 gup f0 p1 proc_self_mem",
            "t1 write f2 p3",
        ]);
        assert_eq!(
            slice(&all, &[5, 6]),
            ops(&[
                "t0 create f0 pages=4",
                "t1 create f2 pages=4",
                "t0 mmap f0",
                "t1 mmap f2",
                "t0 gup f0 p1 proc_self_mem",
                "t1 write f2 p3",
            ])
        );
    }

    #[test]
    fn ddmin_finds_the_operations_that_matter() {
        let all = ops(&[
            "create f0 pages=4",
            "check",
            "mmap f0",
            "fork",
            "compact",
            "write f0 p1",
            "read f0 p2",
            "check",
            "gup f0 p1 vmsplice",
            "punch f0 p0",
        ]);
        let needed = ops(&["create f0 pages=4", "mmap f0", "gup f0 p1 vmsplice"]);
        struct Needs(Vec<Op>, usize);
        impl Tester for Needs {
            async fn test(&mut self, cands: Vec<Vec<Op>>) -> Result<Vec<bool>> {
                self.1 += cands.len();
                Ok(cands
                    .iter()
                    .map(|c| self.0.iter().all(|n| c.contains(n)))
                    .collect())
            }
        }
        let mut t = Needs(needed.clone(), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(ddmin(all, 2, &mut t, &|_| {})).unwrap();
        assert_eq!(got, needed);
        assert!(t.1 < 40, "{} tests", t.1);
    }

    #[test]
    fn the_cut_ends_at_the_failing_operation() {
        let obs = Observed {
            log: vec![
                "t0 create f0 pages=1".into(),
                "t0 mmap f0".into(),
                "t1 check".into(),
                "t0 write f0 p0".into(),
                "t1 fork".into(),
            ],
            violations: vec![ObservedViolation {
                kind: "ndm_readable_after_fault".into(),
                at: 3,
            }],
            unfinished: vec!["t0 mmap f0".into()],
            ..Default::default()
        };
        let (ops, failing) = cut(
            &obs,
            &Signature::Violation("ndm_readable_after_fault".into()),
        );
        assert_eq!((ops.len(), failing), (4, vec![3]));
        let (ops, failing) = cut(&obs, &Signature::Crash("x".into()));
        assert_eq!((ops.len(), failing), (2, vec![1]));
    }

    #[test]
    fn replay_cases_load() {
        let dir = tempfile::tempdir().unwrap();
        let text = replay_case(
            "stock-7.3",
            &ops(&["create f0 pages=4 flags=MMAP|bit9", "t1 check"]),
            true,
            Some("# hello\n"),
        );
        let file = dir.path().join("found_x.yaml");
        std::fs::write(&file, &text).unwrap();
        let case = Case::load(&file, &["stock-7.3".to_string()]).unwrap();
        assert_eq!(case.plan.steps[0].probe, "replay");
        let text = stress_case(
            "stock-7.3",
            5,
            &FuzzOptions::new(&Paths::of_this_checkout().unwrap(), "stock-7.3"),
        );
        std::fs::write(&file, &text).unwrap();
        Case::load(&file, &["stock-7.3".to_string()]).unwrap();
    }
}
