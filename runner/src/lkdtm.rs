//! `cargo xtask corpus lkdtm`: real crash reports of our own kernels, for
//! the crash classifier's corpus. For each LKDTM crash type chosen here a
//! fresh guest of the debug flavor (where LKDTM and the checkers are built
//! in) runs one generated case, one `lkdtm` step, through the fuzzer's
//! runner (the suite's normal machinery: [`crate::fuzz::Runner`]); the
//! guest's console log is kept as `runner/tests/data/console/lkdtm/TYPE.log`,
//! cut [`AFTER_REPORT`] lines after LKDTM announced the crash (a detector
//! that repeats its report would otherwise fill megabytes), and the
//! directory's README.md says how the logs were made and, per type, what
//! happened.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::kernel::{Flavor, Recipe};
use crate::paths::{write_atomic, Paths};
use crate::verdict::CaseRun;

/// What a crash type does to the guest, as far as the case needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Reports at once (an oops, a panic, a warning, a checker's report).
    Report,
    /// Keeps a CPU or a task in the kernel until a detector reports it
    /// (soft or hard lockup, hung task): booted with short thresholds.
    Hang,
}

/// The crash types the corpus provokes, with their shape, in the order of
/// LKDTM's own files (bugs.c, fortify.c, heap.c, perms.c, refcount.c,
/// usercopy.c).
pub const TYPES: &[(&str, Shape)] = &[
    ("PANIC", Shape::Report),
    ("PANIC_STOP_IRQOFF", Shape::Report),
    ("PANIC_IN_HARDIRQ", Shape::Report),
    ("BUG", Shape::Report),
    ("BUG_IN_HARDIRQ", Shape::Report),
    ("WARNING", Shape::Report),
    ("WARNING_MESSAGE", Shape::Report),
    ("EXCEPTION", Shape::Report),
    ("EXHAUST_STACK", Shape::Report),
    ("CORRUPT_STACK", Shape::Report),
    ("CORRUPT_STACK_STRONG", Shape::Report),
    ("REPORT_STACK", Shape::Report),
    ("REPORT_STACK_CANARY", Shape::Report),
    ("SOFTLOCKUP", Shape::Hang),
    ("HARDLOCKUP", Shape::Hang),
    ("SMP_CALL_LOCKUP", Shape::Hang),
    ("SPINLOCKUP", Shape::Hang),
    ("HUNG_TASK", Shape::Hang),
    ("OVERFLOW_SIGNED", Shape::Report),
    ("OVERFLOW_UNSIGNED", Shape::Report),
    ("ARRAY_BOUNDS", Shape::Report),
    ("FAM_BOUNDS", Shape::Report),
    ("PTR_BOUNDS", Shape::Report),
    ("CORRUPT_LIST_ADD", Shape::Report),
    ("CORRUPT_LIST_DEL", Shape::Report),
    ("STACK_GUARD_PAGE_LEADING", Shape::Report),
    ("STACK_GUARD_PAGE_TRAILING", Shape::Report),
    ("UNSET_SMEP", Shape::Report),
    ("DOUBLE_FAULT", Shape::Report),
    ("FORTIFY_STR_MEMBER", Shape::Report),
    ("FORTIFY_MEM_OBJECT", Shape::Report),
    ("FORTIFY_MEM_MEMBER", Shape::Report),
    ("FORTIFY_STRSCPY", Shape::Report),
    ("SLAB_LINEAR_OVERFLOW", Shape::Report),
    ("VMALLOC_LINEAR_OVERFLOW", Shape::Report),
    ("WRITE_AFTER_FREE", Shape::Report),
    ("READ_AFTER_FREE", Shape::Report),
    ("KFENCE_READ_AFTER_FREE", Shape::Report),
    ("WRITE_BUDDY_AFTER_FREE", Shape::Report),
    ("READ_BUDDY_AFTER_FREE", Shape::Report),
    ("SLAB_FREE_DOUBLE", Shape::Report),
    ("SLAB_FREE_CROSS", Shape::Report),
    ("SLAB_FREE_PAGE", Shape::Report),
    ("WRITE_RO", Shape::Report),
    ("WRITE_RO_AFTER_INIT", Shape::Report),
    ("WRITE_KERN", Shape::Report),
    ("EXEC_DATA", Shape::Report),
    ("EXEC_STACK", Shape::Report),
    ("EXEC_KMALLOC", Shape::Report),
    ("EXEC_VMALLOC", Shape::Report),
    ("EXEC_RODATA", Shape::Report),
    ("EXEC_USERSPACE", Shape::Report),
    ("EXEC_NULL", Shape::Report),
    ("ACCESS_USERSPACE", Shape::Report),
    ("ACCESS_NULL", Shape::Report),
    ("REFCOUNT_INC_OVERFLOW", Shape::Report),
    ("REFCOUNT_ADD_OVERFLOW", Shape::Report),
    ("REFCOUNT_INC_NOT_ZERO_OVERFLOW", Shape::Report),
    ("REFCOUNT_DEC_ZERO", Shape::Report),
    ("REFCOUNT_DEC_NEGATIVE", Shape::Report),
    ("REFCOUNT_SUB_AND_TEST_NEGATIVE", Shape::Report),
    ("REFCOUNT_INC_ZERO", Shape::Report),
    ("REFCOUNT_ADD_SATURATED", Shape::Report),
    ("USERCOPY_SLAB_SIZE_TO", Shape::Report),
    ("USERCOPY_SLAB_SIZE_FROM", Shape::Report),
    ("USERCOPY_SLAB_WHITELIST_TO", Shape::Report),
    ("USERCOPY_STACK_FRAME_TO", Shape::Report),
    ("USERCOPY_STACK_FRAME_FROM", Shape::Report),
    ("USERCOPY_STACK_BEYOND", Shape::Report),
    ("USERCOPY_VMALLOC", Shape::Report),
    ("USERCOPY_FOLIO", Shape::Report),
    ("USERCOPY_KERNEL", Shape::Report),
];

/// LKDTM's crash types the corpus leaves out, and why.
pub const SKIPPED: &[(&str, &str)] = &[
    (
        "LOOP",
        "spins preemptibly: nothing reports it, the guest only goes silent",
    ),
    (
        "UNALIGNED_LOAD_STORE_WRITE",
        "x86 does unaligned accesses: nothing happens",
    ),
    ("CORRUPT_PAC", "arm64 pointer authentication"),
    ("EFI_RUNTIME_CRASH", "the guest boots without EFI (qboot)"),
    (
        "CFI_FORWARD_PROTO",
        "kCFI needs clang; the kernels are built with gcc",
    ),
    ("CFI_BACKWARD", "shadow call stacks: arm64 and clang"),
    (
        "SLAB_INIT_ON_ALLOC",
        "only says whether init_on_alloc zeroed a reused object",
    ),
    (
        "BUDDY_INIT_ON_ALLOC",
        "only says whether init_on_alloc zeroed a reused page",
    ),
    ("KSTACK_ERASE", "CONFIG_KSTACK_ERASE (a GCC plugin) is not built"),
    ("WRITE_OPD", "function descriptors: powerpc64 and ia64"),
    ("PPC_SLB_MULTIHIT", "powerpc"),
    ("PPC_RADIX_TLBIEL", "powerpc"),
    ("ATOMIC_TIMING", "a timing loop, no report"),
    ("REFCOUNT_TIMING", "a timing loop, no report"),
    (
        "REFCOUNT_* (the other 12)",
        "the same four reports (saturated, addition on 0, decrement hit 0, underflow) as the ones kept",
    ),
    (
        "USERCOPY_SLAB_WHITELIST_FROM",
        "the same report as USERCOPY_SLAB_WHITELIST_TO, the other direction",
    ),
];

/// Lines of the console kept after LKDTM announced the crash.
pub const AFTER_REPORT: usize = 400;

/// The line LKDTM prints before it provokes a crash written to DIRECT.
pub const MARKER: &str = "lkdtm: Performing direct entry ";

/// Kernel parameters of a [`Shape::Hang`] case, after the debug flavor's
/// own long thresholds (`crate::kernel::Flavor::boot_params`), which they
/// override: a soft lockup is reported after 10 s, a hard lockup after 6 to
/// 12 s (the buddy detector's check every 1.2 * watchdog_thresh), a hung
/// task after 10 to 20 s. Only these cases have them: the lockups they
/// provoke are real ones.
pub const HANG_CMDLINE: &str = "watchdog_thresh=5 sysctl.kernel.hung_task_timeout_secs=10";

/// How long the probe waits for its child, in seconds (real time: the
/// flavor's deadline factor does not touch a probe's own argument).
fn wait_s(shape: Shape) -> u64 {
    match shape {
        Shape::Report => 30,
        Shape::Hang => 45,
    }
}

/// The case's name for `crash`.
pub fn case_name(crash: &str) -> String {
    format!("lkdtm_{}", crash.to_ascii_lowercase())
}

/// The case that provokes `crash` on `variant`: one `lkdtm` step in a boot
/// of its own. Its timeouts are in the case's (normal-flavor) seconds: the
/// debug flavor multiplies them by its deadline factor (4), so the step's
/// deadline is past the probe's own wait.
pub fn case_yaml(variant: &str, crash: &str, shape: Shape) -> String {
    let (step_timeout, case_timeout, cmdline) = match shape {
        Shape::Report => (15, 45, ""),
        Shape::Hang => (20, 35, HANG_CMDLINE),
    };
    let mut s = format!(
        "description: LKDTM crash type {crash}, for the crash-report corpus (cargo xtask corpus lkdtm)\n\
         kernels: [{variant}]\n\
         batch: false\n\
         expect_crash: true\n\
         timeout: {case_timeout}\n"
    );
    if !cmdline.is_empty() {
        s += &format!("cmdline: \"{cmdline}\"\n");
    }
    s += &format!(
        "steps:\n  - name: provoke\n    probe: lkdtm\n    args: {{crash: {crash}, wait_s: {}}}\n    timeout: {step_timeout}\n",
        wait_s(shape)
    );
    s
}

/// The console log as kept: whole up to LKDTM's announcement of the crash,
/// then at most `after` lines (a detector may repeat its report every few
/// seconds until the deadline). A log without the announcement is kept
/// whole. Ends with a newline when anything was cut.
pub fn cut_log(console: &str, after: usize) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let Some(at) = lines.iter().position(|l| l.contains(MARKER)) else {
        return console.to_string();
    };
    let end = at + 1 + after;
    if end >= lines.len() {
        return console.to_string();
    }
    let mut s = lines[..end].join("\n");
    s.push('\n');
    s
}

/// The console's first line that starts a report of some checker, after
/// LKDTM's announcement: for the hand-over table (the classifier proper
/// is `crate::report`'s).
pub fn headline(console: &str) -> Option<String> {
    const STARTS: &[&str] = &[
        "Kernel panic - not syncing",
        "BUG:",
        "Oops:",
        "WARNING:",
        "UBSAN:",
        "kernel BUG at",
        "general protection fault",
        "watchdog:",
        "INFO: task",
        "list_add corruption",
        "list_del corruption",
        "refcount_t:",
        "usercopy:",
        "detected buffer overflow",
        "stack guard page was hit",
        "traps: PANIC: double fault",
        "PANIC: double fault",
        "unchecked MSR access",
        "CR4 bits went missing",
        "kernel tried to execute NX-protected page",
        "Bad pagetable",
        "Unable to handle kernel",
        "NMI backtrace",
        "rcu: INFO:",
    ];
    let lines: Vec<&str> = console.lines().collect();
    let from = lines.iter().position(|l| l.contains(MARKER))? + 1;
    lines[from..].iter().find_map(|l| {
        let text = strip_timestamp(l);
        let text = text.trim_start();
        STARTS
            .iter()
            .any(|s| text.starts_with(s))
            .then(|| text.to_string())
    })
}

/// A console line without its `[   12.345678] ` timestamp.
fn strip_timestamp(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('[') {
        if let Some((_, rest)) = t.split_once("] ") {
            return rest;
        }
    }
    line
}

/// What happened, in one word, from the console and the probe's
/// observation of its child (`None`: no observation came back).
pub fn happened(console: &str, child: Option<&str>) -> &'static str {
    let after_marker = console
        .lines()
        .skip_while(|l| !l.contains(MARKER))
        .collect::<Vec<_>>();
    if after_marker.is_empty() {
        return "not run";
    }
    if after_marker
        .iter()
        .any(|l| l.contains("Kernel panic - not syncing"))
    {
        return "panic";
    }
    match child {
        Some(c) if c.starts_with("running") => "hang",
        Some(c) if c.starts_with("killed") => "oops",
        Some(c) if c == "returned" || c.starts_with("write failed") => {
            if headline(console).is_some() {
                "warning"
            } else {
                "nothing"
            }
        }
        Some(_) => "other",
        None => "no result",
    }
}

/// One type's run, as the hand-over table says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeResult {
    pub crash: String,
    /// oops, panic, warning, hang, nothing, not run, no result.
    pub happened: String,
    /// How the probe's child ended (`killed by SIGSEGV`, `running after 45 s`, ...).
    pub child: String,
    /// The first report line after the crash was provoked.
    pub headline: Option<String>,
    pub log: PathBuf,
    pub log_bytes: usize,
    pub elapsed: Duration,
}

impl TypeResult {
    /// The table row of the hand-over README.
    pub fn row(&self) -> String {
        format!(
            "| `{}` | {} | {} | {} |",
            self.crash,
            self.happened,
            self.child,
            self.headline
                .as_deref()
                .map(|h| format!("`{}`", h.replace('`', "'").replace('|', "/")))
                .unwrap_or_else(|| "-".into())
        )
    }
}

/// `readme`'s table rows with `rows` put in (a type's new row replaces its
/// old one), in the order of [`TYPES`] (other types last, by name).
pub fn merge_rows(readme: &str, rows: &[(String, String)]) -> Vec<String> {
    let mut all: Vec<(String, String)> = readme
        .lines()
        .filter_map(|l| {
            let name = l.strip_prefix("| `")?.split('`').next()?;
            Some((name.to_string(), l.to_string()))
        })
        .filter(|(n, _)| !rows.iter().any(|(m, _)| m == n))
        .collect();
    all.extend(rows.iter().cloned());
    let rank = |n: &str| {
        TYPES
            .iter()
            .position(|(t, _)| *t == n)
            .unwrap_or(usize::MAX)
    };
    all.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
    all.dedup_by(|a, b| a.0 == b.0);
    all.into_iter().map(|(_, r)| r).collect()
}

/// The hand-over README: how the logs were made, then one row per type.
pub fn readme(kernel: &str, source: &str, key: &str, rows: &[String]) -> String {
    let mut s = String::new();
    s += "# LKDTM console logs\n\n";
    s += "Real console logs of our own debug kernel, each with one crash provoked by\n";
    s += "LKDTM (`CONFIG_LKDTM`, `/sys/kernel/debug/provoke-crash/DIRECT`), for the\n";
    s += "crash classifier's corpus. Made with:\n\n";
    s += "```sh\ncargo xtask corpus lkdtm --kernel stock-7.3 --jobs 2\n```\n\n";
    s += &format!(
        "Kernel `{kernel}`: {source}, cache key `{key}`, configured by the variant's\n\
         fragments and `kernels/fragments/debug.config` (the debug flavor: KASAN,\n\
         KFENCE, lockdep, DEBUG_VM, DEBUG_PAGEALLOC, list and SLUB debugging,\n\
         lockup and hung-task detectors, FORTIFY_SOURCE, stack protector,\n\
         VMAP_STACK, UBSAN bounds, hardened usercopy), booted under QEMU TCG\n\
         (`-cpu max`, 2 vCPUs, 1 GiB) with the flavor's parameters\n\
         (`runner/src/kernel/flavor.rs`); the lockup and hung-task types add\n\
         `{HANG_CMDLINE}`.\n\n"
    );
    s += "Each boot runs one case of one `lkdtm` step (`runner/src/lkdtm.rs`): a\n";
    s += "child process writes the type to DIRECT; the probe reports how the child\n";
    s += "ended. Each log is the whole console up to LKDTM's `Performing direct\n";
    s +=
        &format!("entry` line, then at most {AFTER_REPORT} lines. No `.expected.yaml` here: the\n");
    s += "expected titles are written by a person reading each log.\n\n";
    s += "What happened: `oops` (the child was killed), `panic` (the kernel\n";
    s += "panicked), `warning` (the write returned after a report: the kernel\n";
    s += "carried on, as after a WARNING, a KASAN or UBSAN report), `hang` (the\n";
    s += "child was still in the kernel at the probe's deadline), `no result`\n";
    s += "(the probe never reported: the guest was stuck and killed at the case's\n";
    s += "deadline), `nothing` (the write returned and no report followed; LKDTM's\n";
    s += "own `FAIL`/`XFAIL` line in the log says why). The report is the first\n";
    s += "line after the announcement that starts a report; `child` is how the\n";
    s += "probe's child ended.\n\n";
    s += "| type | happened | child | report |\n|---|---|---|---|\n";
    for r in rows {
        s += r;
        s.push('\n');
    }
    s += "\nLeft out:\n\n";
    for (t, why) in SKIPPED {
        s += &format!("- `{t}`: {why}\n");
    }
    s
}

/// How the corpus is made.
#[derive(Debug, Clone)]
pub struct CorpusOptions {
    /// The variant (a recipe's name); its debug flavor is booted.
    pub kernel: String,
    pub flavor: Flavor,
    /// Only these types (default: every one of [`TYPES`]).
    pub only: Vec<String>,
    /// VMs at once.
    pub jobs: usize,
    /// Where the logs and README.md go.
    pub out: PathBuf,
}

impl CorpusOptions {
    pub fn new(paths: &Paths) -> CorpusOptions {
        CorpusOptions {
            kernel: "stock-7.3".into(),
            flavor: Flavor::Debug,
            only: vec![],
            jobs: 2,
            out: paths.root.join("runner/tests/data/console/lkdtm"),
        }
    }
}

/// The types `only` selects, with their shapes: all of [`TYPES`] when it
/// is empty. A name outside [`TYPES`] is run as a [`Shape::Report`] if it
/// looks like one (the guest refuses one its kernel does not have).
pub fn select(only: &[String]) -> Result<Vec<(String, Shape)>> {
    if only.is_empty() {
        return Ok(TYPES.iter().map(|(t, s)| (t.to_string(), *s)).collect());
    }
    only.iter()
        .map(|t| {
            gmem_protocol::args::check_lkdtm_name(t).map_err(|e| anyhow::anyhow!("--only: {e}"))?;
            let shape = TYPES
                .iter()
                .find(|(n, _)| n == t)
                .map_or(Shape::Report, |(_, s)| *s);
            Ok((t.clone(), shape))
        })
        .collect()
}

/// The child's ending from a run's observation.
fn child_of(run: &CaseRun) -> Option<String> {
    let step = run.outcome.as_ref()?.steps.first()?;
    let obs = step.observation.as_ref()?;
    let child = obs.get("child")?.as_str()?.to_string();
    Some(match obs.get("stuck").and_then(|s| s.as_str()) {
        Some(stuck) => format!("{child} ({stuck})"),
        None => child,
    })
}

/// Runs every selected type in a fresh guest and writes its log; the
/// README's rows of the types run are replaced. `say` hears of each type
/// as it ends.
pub async fn corpus(
    paths: &Paths,
    o: &CorpusOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<Vec<TypeResult>> {
    let types = select(&o.only)?;
    let recipe = Recipe::load_named(&paths.kernels(), &o.kernel)?;
    let recipe = o.flavor.apply(&recipe)?;
    let kernel = recipe.name.clone();
    let mut runner = crate::fuzz::Runner {
        paths: paths.clone(),
        recipe,
        variant: o.kernel.clone(),
        flavor: o.flavor,
        prepared: None,
        work: paths.out.join("lkdtm").join(&kernel),
        jobs: o.jobs.max(1),
        replays: 0,
    };
    let cases: Vec<(String, String)> = types
        .iter()
        .map(|(t, s)| (case_name(t), case_yaml(&o.kernel, t, *s)))
        .collect();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let total = cases.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    say(format!(
        "{total} crash types on {kernel}, {} at a time",
        o.jobs.max(1)
    ));
    let out = &o.out;
    let write = |run: &CaseRun| -> Result<TypeResult> {
        let crash = types
            .iter()
            .find(|(t, _)| case_name(t) == run.case)
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| run.case.clone());
        let console_file = run.log_dir.join("console.log");
        let raw = std::fs::read(&console_file)
            .with_context(|| format!("reading {}", console_file.display()))?;
        let console = String::from_utf8_lossy(&raw);
        let kept = cut_log(&console, AFTER_REPORT);
        let log = out.join(format!("{crash}.log"));
        write_atomic(&log, kept.as_bytes())?;
        let child = child_of(run);
        Ok(TypeResult {
            happened: happened(&console, child.as_deref()).to_string(),
            child: child.unwrap_or_else(|| "no observation".into()),
            headline: headline(&console),
            crash,
            log,
            log_bytes: kept.len(),
            elapsed: run.elapsed,
        })
    };
    let on = |run: &CaseRun| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        match write(run) {
            Ok(r) => say(format!(
                "[{n}/{total}] {}: {} ({}), {} bytes kept, {:.0?}",
                r.crash,
                r.happened,
                r.headline.as_deref().unwrap_or(&r.child),
                r.log_bytes,
                r.elapsed
            )),
            Err(e) => say(format!("[{n}/{total}] {}: no log: {e:#}", run.case)),
        }
    };
    let runs = runner.run_with(&cases, &on).await?;
    let mut results = Vec::new();
    for run in &runs {
        results.push(write(run)?);
    }
    let built = runner
        .prepared
        .as_ref()
        .and_then(|p| p.kernels.iter().find(|k| k.name == kernel).cloned())
        .context("the kernel was not prepared")?;
    let readme_file = out.join("README.md");
    let old = std::fs::read_to_string(&readme_file).unwrap_or_default();
    let rows: Vec<(String, String)> = results.iter().map(|r| (r.crash.clone(), r.row())).collect();
    let text = readme(&kernel, &built.source, &built.key, &merge_rows(&old, &rows));
    write_atomic(&readme_file, text.as_bytes())?;
    say(format!(
        "{total} types in {:.0?}; logs and README.md in {}",
        started.elapsed(),
        out.display()
    ));
    Ok(results)
}

/// The results as a table, for the terminal.
pub fn text(results: &[TypeResult]) -> String {
    let mut s = String::new();
    for r in results {
        s += &format!(
            "{:<32} {:<9} {}\n",
            r.crash,
            r.happened,
            r.headline.as_deref().unwrap_or(&r.child)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Case;

    #[test]
    fn every_type_is_a_name_the_probe_takes_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (t, _) in TYPES {
            gmem_protocol::args::check_lkdtm_name(t).unwrap();
            assert!(seen.insert(*t), "{t} twice");
        }
        assert!(TYPES.len() >= 30);
        for (t, _) in SKIPPED {
            assert!(!seen.contains(t), "{t} both run and skipped");
        }
    }

    #[test]
    fn generated_cases_load_and_hangs_get_short_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        for (t, shape) in [("BUG", Shape::Report), ("HUNG_TASK", Shape::Hang)] {
            let file = dir.path().join(format!("{}.yaml", case_name(t)));
            std::fs::write(&file, case_yaml("stock-7.3", t, shape)).unwrap();
            let case = Case::load(&file, &["stock-7.3".to_string()]).unwrap();
            assert_eq!(case.name, case_name(t));
            assert_eq!(case.plan.steps.len(), 1);
            let step = &case.plan.steps[0];
            assert_eq!(step.probe, "lkdtm");
            assert_eq!(step.args["crash"], t);
            // On the debug flavor the step's deadline is past the probe's wait.
            let d = case.flavored(Flavor::Debug);
            let wait = step.args["wait_s"].as_u64().unwrap();
            assert!(d.plan.steps[0].timeout_ms / 1000 > wait + 10);
            assert!(d.timeout_s > wait + 60);
            assert_eq!(
                case.cmdline.contains("watchdog_thresh=5"),
                shape == Shape::Hang
            );
        }
    }

    #[test]
    fn the_log_is_cut_after_the_announcement() {
        let mut console =
            String::from("boot 1\nboot 2\n[    9.1] lkdtm: Performing direct entry SOFTLOCKUP\n");
        for i in 0..1000 {
            console += &format!("[   {i}.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!\n");
        }
        let kept = cut_log(&console, 400);
        assert_eq!(kept.lines().count(), 3 + 400);
        assert!(kept.starts_with("boot 1\nboot 2\n"));
        assert!(kept.ends_with("[   399.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!\n"));
        // Short enough, or never announced: whole.
        assert_eq!(cut_log(&console, 5000), console);
        assert_eq!(cut_log("boot\npanic\n", 1), "boot\npanic\n");
    }

    #[test]
    fn the_headline_is_the_first_report_after_the_announcement() {
        let console = "[1.0] WARNING: at boot, not ours\n\
                       [2.0] lkdtm: Performing direct entry WRITE_AFTER_FREE\n\
                       [2.1] lkdtm: Allocated memory ...\n\
                       [2.2] ==================================================================\n\
                       [2.3] BUG: KASAN: slab-use-after-free in lkdtm_WRITE_AFTER_FREE+0x1/0x2\n";
        assert_eq!(
            headline(console).as_deref(),
            Some("BUG: KASAN: slab-use-after-free in lkdtm_WRITE_AFTER_FREE+0x1/0x2")
        );
        assert_eq!(headline("[1.0] BUG: before\n"), None);
        assert_eq!(happened(console, Some("killed by SIGSEGV")), "oops");
        assert_eq!(happened(console, Some("returned")), "warning");
        assert_eq!(happened("boot\n", None), "not run");
        let panic = format!("{console}[3.0] Kernel panic - not syncing: Fatal exception\n");
        assert_eq!(happened(&panic, None), "panic");
        let quiet = "[2.0] lkdtm: Performing direct entry OVERFLOW_SIGNED\n[2.1] lkdtm: XFAIL\n";
        assert_eq!(happened(quiet, Some("returned")), "nothing");
        assert_eq!(
            happened(quiet, Some("running after 45 s (state D)")),
            "hang"
        );
    }

    #[test]
    fn rows_merge_in_the_order_of_the_types() {
        let old = readme(
            "k",
            "s",
            "key",
            &[
                "| `BUG` | oops | old |".into(),
                "| `PANIC` | panic | x |".into(),
            ],
        );
        let rows = merge_rows(
            &old,
            &[
                ("BUG".into(), "| `BUG` | oops | new |".into()),
                ("ZZZ".into(), "| `ZZZ` | nothing | - |".into()),
                ("EXCEPTION".into(), "| `EXCEPTION` | oops | - |".into()),
            ],
        );
        assert_eq!(
            rows,
            [
                "| `PANIC` | panic | x |",
                "| `BUG` | oops | new |",
                "| `EXCEPTION` | oops | - |",
                "| `ZZZ` | nothing | - |"
            ]
        );
        assert!(select(&["bug".into()]).is_err());
        assert_eq!(select(&["HUNG_TASK".into()]).unwrap()[0].1, Shape::Hang);
        assert_eq!(select(&[]).unwrap().len(), TYPES.len());
    }
}
