//! Driving the stages for a set of (case, kernel) pairs: build the kernels the
//! cases need, pack, boot, report, normalize, compare; then the summary table
//! and the JUnit report.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::boot::{self, Accel, Backend, BootEnd, VmConfig};
use crate::case::{self, Case};
use crate::kernel::{self, BuiltKernel, Recipe};
use crate::outcome::{self, End, Outcome};
use crate::pack;
use crate::paths::Paths;
use crate::report::{self, Crash};
use crate::snapshot::{self, SnapshotStatus};

/// Everything loaded and validated before anything runs.
#[derive(Debug, Clone)]
pub struct Suite {
    pub paths: Paths,
    pub cases: Vec<Case>,
    pub recipes: Vec<Recipe>,
    /// The upstream KVM selftests that any case runs, from every case file
    /// (not only the selected ones), so that a subset reuses the same build.
    pub kselftests: Vec<String>,
}

impl Suite {
    /// Loads every recipe and case; `case_filter`/`kernel_filter` (names)
    /// narrow the pairs to run. Unknown names are errors.
    pub fn load(paths: Paths, case_filter: &[String], kernel_filter: &[String]) -> Result<Suite> {
        let names = kernel::recipe::list(&paths.kernels())?;
        let mut recipes = Vec::new();
        for n in &names {
            recipes.push(Recipe::load_named(&paths.kernels(), n)?);
        }
        let mut cases = case::load_all(&paths.cases(), &names)?;
        let mut kselftests: Vec<String> = cases.iter().flat_map(|c| c.kselftests()).collect();
        kselftests.sort();
        kselftests.dedup();
        for c in case_filter {
            if !cases.iter().any(|x| &x.name == c) {
                anyhow::bail!(
                    "no case `{c}` in {} (cases: {})",
                    paths.cases().display(),
                    cases
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        for k in kernel_filter {
            if !names.contains(k) {
                anyhow::bail!(
                    "no kernel `{k}` in {} (kernels: {})",
                    paths.kernels().display(),
                    names.join(", ")
                );
            }
        }
        if !case_filter.is_empty() {
            cases.retain(|c| case_filter.contains(&c.name));
        }
        if !kernel_filter.is_empty() {
            for c in &mut cases {
                c.kernels.retain(|k| kernel_filter.contains(k));
            }
        }
        // Only the kernels some selected case needs.
        recipes.retain(|r| cases.iter().any(|c| c.kernels.contains(&r.name)));
        Ok(Suite {
            paths,
            cases,
            recipes,
            kselftests,
        })
    }

    /// One case on one kernel, whether or not the case lists that kernel: a
    /// developer runs any case on the kernel they are working on. Without a
    /// snapshot for the pair, the verdict is "new".
    pub fn load_one(paths: Paths, case: &str, kernel: &str) -> Result<Suite> {
        let names = kernel::recipe::list(&paths.kernels())?;
        if !names.iter().any(|n| n == kernel) {
            anyhow::bail!(
                "no kernel `{kernel}` in {} (kernels: {})",
                paths.kernels().display(),
                names.join(", ")
            );
        }
        let mut suite = Suite::load(paths, &[case.to_string()], &[])?;
        suite.cases[0].kernels = vec![kernel.to_string()];
        suite.recipes = vec![Recipe::load_named(&suite.paths.kernels(), kernel)?];
        Ok(suite)
    }

    /// The same suite narrowed to one kernel (for preparing only what one
    /// pair needs).
    pub fn only_kernel(&self, kernel: &str) -> Suite {
        let mut cases = self.cases.clone();
        for c in &mut cases {
            c.kernels.retain(|k| k == kernel);
        }
        cases.retain(|c| !c.kernels.is_empty());
        Suite {
            paths: self.paths.clone(),
            cases,
            recipes: self
                .recipes
                .iter()
                .filter(|r| r.name == kernel)
                .cloned()
                .collect(),
            kselftests: self.kselftests.clone(),
        }
    }

    /// The (case, kernel) pairs, in case order.
    pub fn pairs(&self) -> Vec<(&Case, &str)> {
        self.cases
            .iter()
            .flat_map(|c| c.kernels.iter().map(move |k| (c, k.as_str())))
            .collect()
    }
}

/// How one (case, kernel) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The outcome matches its snapshot and crashed only where expected.
    Pass,
    /// There is no snapshot yet (written as `.snap.new` for review).
    New,
    /// The outcome differs from the snapshot.
    Mismatch,
    /// The kernel crashed (or hung) where the case did not expect it, or did
    /// not where it did.
    Crash,
    /// The framework could not run the case (QEMU failed, init never came up).
    Error,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::New => "NEW",
            Verdict::Mismatch => "FAIL (snapshot)",
            Verdict::Crash => "FAIL (crash)",
            Verdict::Error => "ERROR",
        }
    }
}

/// The result of one (case, kernel).
#[derive(Debug, Clone)]
pub struct CaseRun {
    pub case: String,
    pub kernel: String,
    pub verdict: Verdict,
    /// Why it is not a pass, in one line.
    pub reason: Option<String>,
    pub outcome: Option<Outcome>,
    pub crashes: Vec<Crash>,
    /// The crashes for people: each report as printed, its frames decoded
    /// (also in the log directory as crash-report.txt).
    pub crash_report: Option<String>,
    pub snapshot: Option<SnapshotStatus>,
    /// Snapshot to outcome, when they differ.
    pub snapshot_diff: Option<String>,
    pub log_dir: PathBuf,
    pub elapsed: Duration,
    /// Boot to power-off (or kill).
    pub boot_time: Option<Duration>,
    pub backend: BackendKind,
    /// For an `Error`: which infrastructure fault it was, when known.
    pub fault: Option<crate::fault::Kind>,
    /// Whether the case had the boot to itself.
    pub boot: BootMode,
}

/// How a case was booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMode {
    /// A boot of its own.
    Alone,
    /// In one boot with other cases of the same kernel; its console section
    /// and records were cut from the batch's (logs in `dir`).
    Batched { cases: usize, dir: PathBuf },
    /// Run alone again after its batch went wrong (why, in a few words); its
    /// own boot gives the verdict.
    Rerun { why: String },
}

impl CaseRun {
    pub fn console_log(&self) -> PathBuf {
        self.log_dir.join("console.log")
    }
    /// What a person needs when the pair did not pass: the reason, the
    /// decoded crash report, the snapshot diff, the log and the command that
    /// reruns it. Used by `cargo xtask test` and by the test harness.
    pub fn failure_report(&self) -> String {
        let mut m = format!(
            "{}: {}\n",
            self.verdict.label(),
            self.reason.as_deref().unwrap_or("")
        );
        if let Some(report) = &self.crash_report {
            m += report;
        }
        if let Some(diff) = &self.snapshot_diff {
            m += "snapshot diff (- snapshot, + this run):\n";
            m += diff;
        }
        m += &format!(
            "console log: {}\nreproduce:   {}\n",
            self.console_log().display(),
            self.reproduce()
        );
        m
    }

    /// The one command that reruns this pair.
    pub fn reproduce(&self) -> String {
        let backend = match self.backend {
            BackendKind::Hermetic => "",
            BackendKind::Vng => " --backend vng",
        };
        format!(
            "cargo xtask run {} --kernel {}{backend}",
            self.case, self.kernel
        )
    }
}

/// Each crash as the console printed it, then its frames decoded to source
/// lines (when the kernel has debug info).
pub fn crash_report(kernel: &BuiltKernel, crashes: &[Crash]) -> Option<String> {
    if crashes.is_empty() {
        return None;
    }
    let mut s = String::new();
    for c in crashes {
        s += &format!("{:?}: {}\n", c.kind, c.title);
        for l in &c.lines {
            s += &format!("  | {l}\n");
        }
        match crate::decode::decode(kernel, &c.lines) {
            Ok(d) if !d.is_empty() => {
                s += "  decoded:\n";
                for l in d {
                    s += &format!("    {l}\n");
                }
            }
            Ok(_) => {}
            Err(e) => s += &format!("  not decoded: {e:#}\n"),
        }
        s += "\n";
    }
    Some(s)
}

/// Where a pair's logs go: `logs/KERNEL/CASE`, or `logs/vng/KERNEL/CASE`
/// for a run through virtme-ng (both backends' logs are kept side by side).
pub fn log_dir(paths: &Paths, case: &str, kernel: &str, backend: BackendKind) -> PathBuf {
    match backend {
        BackendKind::Hermetic => paths.logs().join(kernel).join(case),
        BackendKind::Vng => paths.logs().join("vng").join(kernel).join(case),
    }
}

/// Builds what the runs need: the kernels (or finds them cached) and the
/// initramfs base.
pub struct Prepared {
    pub kernels: Vec<BuiltKernel>,
    /// The guest binaries: packed into the hermetic initramfs, run from the
    /// host's filesystem under vng.
    pub bins: pack::GuestBinaries,
    pub base_image: Vec<u8>,
    pub accel: Accel,
    /// Per kernel (by name), the initramfs member with its KVM selftests,
    /// for the kernels that some selected case runs them on.
    pub kselftests: Vec<(String, Vec<u8>)>,
}

impl Prepared {
    /// The extra initramfs members `case` needs on `kernel`.
    fn members_for(&self, case: &Case, kernel: &str) -> Result<Vec<&[u8]>> {
        if case.kselftests().is_empty() {
            return Ok(vec![]);
        }
        let member = self
            .kselftests
            .iter()
            .find(|(k, _)| k == kernel)
            .map(|(_, m)| m.as_slice())
            .with_context(|| {
                format!(
                    "case {} runs KVM selftests ({}) but none were built for kernel {kernel}",
                    case.name,
                    case.kselftests().join(", ")
                )
            })?;
        Ok(vec![member])
    }
}

pub fn prepare(suite: &Suite) -> Result<Prepared> {
    let mut kernels = Vec::new();
    let mut kselftests = Vec::new();
    for r in &suite.recipes {
        kernels.push(kernel::build(&suite.paths, r)?);
        // The selftests come from the same tree as the kernel, built only
        // for the kernels a selected case runs them on.
        if suite
            .cases
            .iter()
            .any(|c| c.kernels.contains(&r.name) && !c.kselftests().is_empty())
        {
            let built = kernel::selftests::build(&suite.paths, r, &suite.kselftests)?;
            kselftests.push((r.name.clone(), pack::kselftests_member_cached(&built)?));
        }
    }
    let bins = pack::build_guest_binaries(&suite.paths)?;
    let base_image = pack::base_image(&bins)?;
    let (accel, why) = Accel::detect();
    eprintln!(
        "vm: using {} ({why})",
        match accel {
            Accel::Kvm => "KVM acceleration",
            Accel::Tcg => "TCG (software emulation, -cpu max: nested SVM for the guest)",
        }
    );
    Ok(Prepared {
        kernels,
        bins,
        base_image,
        accel,
        kselftests,
    })
}

/// vng's own boot (its init, udev, overlays) takes about 20 s here before
/// our init starts, against about one for the hermetic boot: on top of the
/// case's timeout.
pub const VNG_BOOT_ALLOWANCE: Duration = Duration::from_secs(60);

/// What boots the guest of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// QEMU with our initramfs (the default, and what snapshots are made with).
    #[default]
    Hermetic,
    /// virtme-ng on the host's root filesystem: the same plan, the same
    /// result port; a non-crashing case gives the same outcome.
    Vng,
}

impl std::str::FromStr for BackendKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hermetic" => Ok(BackendKind::Hermetic),
            "vng" => Ok(BackendKind::Vng),
            _ => anyhow::bail!("unknown backend `{s}`: expected `hermetic` or `vng`"),
        }
    }
}

/// How a person wants one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// What boots the guest.
    pub backend: BackendKind,
    /// Print the console live.
    pub stream: bool,
    /// After the steps, a shell on the user's terminal (no deadline).
    pub shell: bool,
    /// QEMU's gdb stub on this port, the CPU held until gdb continues it
    /// (no deadline).
    pub gdb: Option<u16>,
    /// Do not compare with (or write) a snapshot: the caller judges the
    /// outcome itself (bisect).
    pub no_snapshot: bool,
}

/// The gdb command line that attaches to a run started with `gdb: Some(port)`.
pub fn gdb_command(kernel: &BuiltKernel, port: u16) -> String {
    format!(
        "gdb {} -ex 'target remote 127.0.0.1:{port}'   # then: continue",
        kernel.vmlinux.display()
    )
}

/// Runs one case on one built kernel, start to verdict.
pub async fn run_pair(
    paths: &Paths,
    case: &Case,
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> Result<CaseRun> {
    let started = Instant::now();
    let dir = log_dir(paths, &case.name, &kernel.name, opts.backend);
    fresh_log_dir(&dir)?;
    if opts.backend == BackendKind::Vng && (opts.shell || opts.gdb.is_some()) {
        anyhow::bail!("--shell and --gdb are for the hermetic backend; for a shell through vng use `cargo xtask shell --kernel {}`", kernel.name);
    }
    let mut plan = gmem_protocol::Plan::single(case.plan.clone());
    plan.shell = opts.shell;
    let machine = Machine::of(&[case]);
    let (mut cfg, _sock_dir) = launch(&dir, &plan, &[case], &machine, kernel, prepared, opts)?;
    if opts.shell || opts.gdb.is_some() {
        // A person is at the controls: no deadline, no hang detection.
        cfg.deadline = Duration::from_secs(7 * 24 * 3600);
        cfg.silence = None;
        cfg.interactive = opts.shell.then(|| dir.join("console.log"));
        cfg.gdb = opts.gdb;
    }
    if let Some(port) = opts.gdb {
        eprintln!(
            "gdb: the guest waits for a debugger; attach with:\n    {}",
            gdb_command(kernel, port)
        );
        if !crate::decode::has_debug_info(kernel) {
            eprintln!(
                "gdb: {} has symbols but no debug info (no source lines); set `debug_info: true` in kernels/{}.yaml",
                kernel.vmlinux.display(),
                kernel.name
            );
        }
    }
    write_command_line(&dir, &cfg, opts.backend)?;
    let prefix = format!("[{}@{}] ", case.name, kernel.name);
    let boot_res = boot::boot(&cfg, |line| {
        if opts.stream {
            eprintln!("{prefix}{line}");
        }
    })
    .await
    .with_context(|| format!("case {} on kernel {}: boot failed", case.name, kernel.name))?;
    let mut run = conclude(paths, case, kernel, &dir, &boot_res, opts)?;
    run.elapsed = started.elapsed();
    Ok(run)
}

/// The machine a boot gets: what its cases ask for (the cases of a batch
/// all ask for the same memory, CPUs and command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    pub memory_mb: u32,
    pub cpus: u32,
    pub cmdline: String,
    /// The whole boot's deadline: each case's own (it includes a boot's
    /// allowance, so a batch's is generous; every step has its own in the
    /// guest).
    pub deadline: Duration,
    /// The longest silence any case allows; `None` if one turns it off.
    pub silence: Option<Duration>,
}

impl Machine {
    pub fn of(cases: &[&Case]) -> Machine {
        let first = cases[0];
        Machine {
            memory_mb: first.memory_mb,
            cpus: first.cpus,
            cmdline: first.cmdline.clone(),
            deadline: Duration::from_secs(cases.iter().map(|c| c.timeout_s).sum()),
            silence: cases
                .iter()
                .map(|c| (c.silence_s > 0).then(|| Duration::from_secs(c.silence_s)))
                .try_fold(Duration::ZERO, |m, s| s.map(|s| m.max(s))),
        }
    }

    /// The same VM: memory, CPUs and command line (deadlines may differ).
    pub fn same_shape(&self, other: &Machine) -> bool {
        self.memory_mb == other.memory_mb
            && self.cpus == other.cpus
            && self.cmdline == other.cmdline
    }
}

/// The VM that runs `plan` (the steps of `cases`), with its logs in `dir`:
/// the initramfs packed there (hermetic) or the plan written there for vng.
/// The returned directory holds QEMU's sockets; keep it until the boot ends.
pub(crate) fn launch(
    dir: &Path,
    plan: &gmem_protocol::Plan,
    cases: &[&Case],
    machine: &Machine,
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> Result<(VmConfig, tempfile::TempDir)> {
    let initramfs = dir.join("initramfs.cpio.gz");
    let backend = match opts.backend {
        BackendKind::Hermetic => {
            let mut extra: Vec<&[u8]> = Vec::new();
            for c in cases {
                for m in prepared.members_for(c, &kernel.name)? {
                    if !extra.contains(&m) {
                        extra.push(m);
                    }
                }
            }
            let image = pack::image_with(&prepared.base_image, &extra, plan)?;
            std::fs::write(&initramfs, image)?;
            Backend::Hermetic
        }
        BackendKind::Vng => {
            if let Some(c) = cases.iter().find(|c| !c.kselftests().is_empty()) {
                anyhow::bail!(
                    "case {} runs KVM selftests, which are packed into the hermetic initramfs only: run it without --backend vng",
                    c.name
                );
            }
            // The guest sees the host's files: init reads the plan where we
            // write it and runs the gmem-probe beside it.
            let plan_file = dir.join("plan.json");
            std::fs::write(&plan_file, serde_json::to_vec_pretty(plan)?)?;
            let vng = crate::vng::check()
                .with_context(|| format!("case {} on kernel {}", cases[0].name, kernel.name))?;
            Backend::Vng {
                bin: vng.bin,
                exec: format!(
                    "{} {}",
                    boot::quote(&prepared.bins.init.to_string_lossy()),
                    boot::quote(&plan_file.to_string_lossy())
                ),
            }
        }
    };
    // A socket path must be short (108 bytes): keep it in a private temp dir.
    let sock_dir = tempfile::Builder::new().prefix("gmemtest-").tempdir()?;
    let cfg = VmConfig {
        backend,
        kernel: kernel.bzimage.clone(),
        initramfs,
        memory_mb: machine.memory_mb,
        cpus: machine.cpus,
        extra_cmdline: machine.cmdline.clone(),
        accel: prepared.accel,
        deadline: machine.deadline
            + match opts.backend {
                BackendKind::Hermetic => Duration::ZERO,
                BackendKind::Vng => VNG_BOOT_ALLOWANCE,
            },
        result_socket: sock_dir.path().join("results.sock"),
        monitor_socket: sock_dir.path().join("monitor.sock"),
        silence: machine.silence,
        interactive: None,
        gdb: None,
    };
    Ok((cfg, sock_dir))
}

/// Keeps the exact command that started the VM beside its logs.
pub(crate) fn write_command_line(dir: &Path, cfg: &VmConfig, backend: BackendKind) -> Result<()> {
    let (program, args) = boot::launch_command(cfg);
    let file = match backend {
        BackendKind::Hermetic => "qemu.cmdline",
        BackendKind::Vng => "vng.cmdline",
    };
    std::fs::write(dir.join(file), boot::command_line(&program, &args) + "\n")?;
    Ok(())
}

/// A pair's log directory, emptied of an earlier run's files (a stale
/// crash report must not sit beside a clean run).
pub(crate) fn fresh_log_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// From what a boot gave `case` to its verdict: the console and records
/// kept in `dir`, the crashes found and decoded, the outcome normalized and
/// compared with the snapshot.
pub(crate) fn conclude(
    paths: &Paths,
    case: &Case,
    kernel: &BuiltKernel,
    dir: &Path,
    boot_res: &boot::BootResult,
    opts: RunOptions,
) -> Result<CaseRun> {
    std::fs::write(dir.join("console.log"), &boot_res.console)?;
    let results: String = boot_res
        .records
        .iter()
        .map(|r| r.to_line() + "\n")
        .collect();
    std::fs::write(dir.join("results.jsonl"), results)?;
    if !boot_res.qemu_stderr.trim().is_empty() {
        std::fs::write(dir.join("qemu.stderr"), &boot_res.qemu_stderr)?;
    }
    let crashes = report::find_crashes(&boot_res.console);
    let crash_report = crash_report(kernel, &crashes);
    if let Some(text) = &crash_report {
        std::fs::write(dir.join("crash-report.txt"), text)?;
    }
    let outcome = outcome::build(case, &kernel.name, boot_res, &crashes);
    std::fs::write(dir.join("outcome.yaml"), serde_yaml::to_string(&outcome)?)?;

    // A boot whose init never reported ran nothing to compare: a fault,
    // not an outcome (see `judge`).
    let init_ran = boot_res
        .records
        .iter()
        .any(|r| matches!(r, gmem_protocol::Record::Hello { .. }));
    let snap = (!opts.no_snapshot && init_ran)
        .then(|| snapshot::compare(&paths.snapshots(), &outcome, &case.description));
    let snapshot_diff = (snap == Some(SnapshotStatus::Differs))
        .then(|| snapshot::diff(&paths.snapshots(), &outcome))
        .flatten();
    let (verdict, reason, fault) = judge(case, &outcome, boot_res, &crashes, snap);
    Ok(CaseRun {
        case: case.name.clone(),
        kernel: kernel.name.clone(),
        verdict,
        reason,
        outcome: Some(outcome),
        crashes,
        crash_report,
        snapshot: snap,
        snapshot_diff,
        log_dir: dir.to_path_buf(),
        elapsed: boot_res.elapsed,
        boot_time: Some(boot_res.elapsed),
        backend: opts.backend,
        fault,
        boot: BootMode::Alone,
    })
}

/// The verdict: a boot whose init never reported is an infrastructure
/// fault (the case did not run, whatever the console shows); then crash
/// expectations (an unexpected crash is the news, whatever the snapshot
/// says); then the snapshot.
fn judge(
    case: &Case,
    o: &Outcome,
    boot_res: &boot::BootResult,
    crashes: &[Crash],
    snap: Option<SnapshotStatus>,
) -> (Verdict, Option<String>, Option<crate::fault::Kind>) {
    let hello = boot_res
        .records
        .iter()
        .any(|r| matches!(r, gmem_protocol::Record::Hello { .. }));
    if !hello {
        let ended = match &boot_res.end {
            BootEnd::TimedOut { after } => format!("killed at the deadline after {after:.0?}"),
            BootEnd::Exited { code: Some(c) } => format!("QEMU exited with code {c}"),
            BootEnd::Exited { code: None } => "QEMU was killed by a signal".into(),
            BootEnd::Hung { silent_for } => format!("silent for {silent_for:.0?}"),
        };
        let f = crate::fault::no_init_fault(
            &boot_res.console,
            &ended,
            crashes.first().map(|c| c.title.as_str()),
        );
        return (Verdict::Error, Some(f.to_string()), Some(f.kind()));
    }
    let (v, why) = judge_ran(case, o, snap);
    (v, why, None)
}

/// The verdict of a case whose init ran.
fn judge_ran(case: &Case, o: &Outcome, snap: Option<SnapshotStatus>) -> (Verdict, Option<String>) {
    let crashed =
        !o.crashes.is_empty() || matches!(o.end, End::KernelPanic | End::TimedOut | End::Hang);
    let expected = case.expects_crash(&o.kernel);
    if crashed && !expected {
        let what = o
            .crashes
            .first()
            .map(|c| c.title.clone())
            .unwrap_or_else(|| format!("{:?}", o.end).to_lowercase());
        return (Verdict::Crash, Some(format!("unexpected: {what}")));
    }
    if !crashed && expected {
        return (
            Verdict::Crash,
            Some("the case expects a crash; the kernel did not crash".into()),
        );
    }
    match snap {
        None | Some(SnapshotStatus::Matches | SnapshotStatus::Written) => (Verdict::Pass, None),
        Some(SnapshotStatus::New) => (
            Verdict::New,
            Some("no snapshot yet: review the .snap.new, then `cargo xtask bless`".into()),
        ),
        Some(SnapshotStatus::Differs) => (
            Verdict::Mismatch,
            Some("the outcome differs from the snapshot".into()),
        ),
    }
}

/// An `Error` run for a pair that could not even be run.
pub fn errored(
    paths: &Paths,
    case: &str,
    kernel: &str,
    backend: BackendKind,
    err: &anyhow::Error,
) -> CaseRun {
    CaseRun {
        case: case.into(),
        kernel: kernel.into(),
        verdict: Verdict::Error,
        reason: Some(format!("{err:#}")),
        outcome: None,
        crashes: vec![],
        crash_report: None,
        snapshot: None,
        snapshot_diff: None,
        log_dir: log_dir(paths, case, kernel, backend),
        elapsed: Duration::ZERO,
        boot_time: None,
        backend,
        fault: crate::fault::kind_of(err),
        boot: BootMode::Alone,
    }
}

/// The summary table: one row per case, one column per kernel.
pub fn summary_table(runs: &[CaseRun]) -> String {
    let mut kernels: Vec<&str> = Vec::new();
    let mut cases: Vec<&str> = Vec::new();
    for r in runs {
        if !kernels.contains(&r.kernel.as_str()) {
            kernels.push(&r.kernel);
        }
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
    }
    let cw = cases.iter().map(|c| c.len()).max().unwrap_or(4).max(4);
    let kw: Vec<usize> = kernels.iter().map(|k| k.len().max(15)).collect();
    let mut s = format!("{:<cw$}", "case");
    for (k, w) in kernels.iter().zip(&kw) {
        s += &format!("  {k:<w$}");
    }
    s += "\n";
    s += &"-".repeat(cw + kw.iter().map(|w| w + 2).sum::<usize>());
    s += "\n";
    for c in &cases {
        s += &format!("{c:<cw$}");
        for (k, w) in kernels.iter().zip(&kw) {
            let cell = runs
                .iter()
                .find(|r| r.case == *c && r.kernel == *k)
                .map(|r| match r.boot_time {
                    Some(t) if r.verdict == Verdict::Pass => {
                        format!("pass {:.1}s", t.as_secs_f64())
                    }
                    _ => r.verdict.label().to_string(),
                })
                .unwrap_or_else(|| "-".into());
            s += &format!("  {cell:<w$}");
        }
        s += "\n";
    }
    let count = |v: Verdict| runs.iter().filter(|r| r.verdict == v).count();
    s += &format!(
        "\n{} passed, {} failed ({} snapshot, {} crash, {} new, {} error)\n",
        count(Verdict::Pass),
        runs.len() - count(Verdict::Pass),
        count(Verdict::Mismatch),
        count(Verdict::Crash),
        count(Verdict::New),
        count(Verdict::Error),
    );
    s
}

/// A JUnit XML report: one test suite per kernel, one test case per case.
pub fn junit_xml(runs: &[CaseRun]) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("gmemtest");
    let mut kernels: Vec<&str> = runs.iter().map(|r| r.kernel.as_str()).collect();
    kernels.dedup();
    kernels.sort();
    kernels.dedup();
    for k in kernels {
        let mut suite = TestSuite::new(k);
        for r in runs.iter().filter(|r| r.kernel == k) {
            let status = match r.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Error => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s
                }
                _ => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s.set_description(format!(
                        "console log: {}\nreproduce: {}",
                        r.console_log().display(),
                        r.reproduce()
                    ));
                    s
                }
            };
            let mut tc = TestCase::new(format!("{}@{}", r.case, r.kernel), status);
            tc.set_classname(format!("gmemtest.{k}"));
            tc.set_time(r.elapsed);
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}
