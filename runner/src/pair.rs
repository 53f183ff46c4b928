//! One (case, kernel) from start to verdict, stage by stage: check the
//! options, plan the guest's steps, pack (or write the plan for vng) and
//! configure the VM, boot it, keep its logs, find and decode the crashes,
//! normalize the outcome, compare it with the snapshot, judge.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::boot::{self, Backend, BootResult, VmConfig};
use crate::case::Case;
use crate::kernel::{BuiltKernel, Flavor};
use crate::options::{fresh_log_dir, log_dir, BackendKind, RunOptions, VNG_BOOT_ALLOWANCE};
use crate::outcome::{self, Outcome};
use crate::pack;
use crate::paths::Paths;
use crate::prepared::Prepared;
use crate::report::{self, Crash};
use crate::snapshot::{self, SnapshotStatus};
use crate::verdict::{self, BootMode, CaseRun};

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
    check_options(kernel, opts)?;
    let mut plan = gmem_protocol::Plan::single(case.plan.clone());
    plan.shell = opts.shell;
    let machine = Machine::of(&[case]);
    let mut mode = BootMode::Alone;
    if opts.restores() {
        match run_restored(&dir, &plan, case, &machine, kernel, prepared, opts).await {
            Ok((boot_res, mode)) => {
                let mut run = conclude(paths, case, kernel, &dir, &boot_res, opts)?;
                run.boot = mode;
                run.elapsed = started.elapsed();
                return Ok(run);
            }
            Err(why) => {
                eprintln!(
                    "      [{}@{}] booting instead of restoring: {why}",
                    case.name, kernel.name
                );
                fresh_log_dir(&dir)?;
                mode = BootMode::Booted { why };
            }
        }
    }
    let (mut cfg, _sock_dir) = launch(&dir, &plan, &[case], &machine, kernel, prepared, opts)?;
    if opts.shell || opts.gdb.is_some() {
        hand_over(&mut cfg, &dir, kernel, opts);
    }
    write_command_line(&dir, &cfg, opts.backend)?;
    let boot_res = boot_streamed(&cfg, case, kernel, opts)
        .await
        .with_context(|| format!("case {} on kernel {}: boot failed", case.name, kernel.name))?;
    let mut run = conclude(paths, case, kernel, &dir, &boot_res, opts)?;
    run.boot = mode;
    run.elapsed = started.elapsed();
    Ok(run)
}

/// Runs `plan` from the saved VM of the case's machine (saved first when
/// there is none). `Err` says why it could not, before the case ran: the
/// caller boots instead. A machine whose save failed is not tried again in
/// this process (a kernel that does not boot would pay each time).
async fn run_restored(
    dir: &Path,
    plan: &gmem_protocol::Plan,
    case: &Case,
    machine: &Machine,
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> std::result::Result<(BootResult, BootMode), String> {
    static FAILED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let (cfg, image, _sock_dir) = saved_vm_config(dir, case, machine, kernel, prepared, opts)
        .map_err(|e| format!("{e:#}"))?;
    let key = crate::saved_vm::key(&cfg, &image);
    let failed_before = FAILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| why.clone());
    if let Some(why) = failed_before {
        return Err(format!("saving its VM failed earlier in this run: {why}"));
    }
    let found = crate::saved_vm::find(&key).map_err(|e| format!("{e:#}"))?;
    let saved = match found {
        Some(v) => v,
        None => match crate::saved_vm::begin(&key, &image).await {
            Ok(crate::saved_vm::Begun::Found(v)) => v,
            Ok(crate::saved_vm::Begun::Saving(saving)) => {
                eprintln!(
                    "      saving a VM of {} on the way (booted once; the next cases start from it)",
                    label(kernel, machine)
                );
                return boot_and_save(dir, plan, case, kernel, opts, &cfg, saving)
                    .await
                    .inspect_err(|why| {
                        FAILED
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((key, why.clone()));
                    });
            }
            Err(e) => return Err(format!("{e:#}")),
        },
    };
    let cfg = saved.restore_config(&cfg, plan);
    let keep = || -> Result<()> {
        write_command_line(dir, &cfg, BackendKind::Hermetic)?;
        std::fs::write(dir.join("plan.json"), serde_json::to_vec_pretty(plan)?)?;
        std::fs::write(
            dir.join("restored.txt"),
            format!(
                "This case started from the saved VM {} (the kernel booted once, saved where init waits for its plan); its console.log begins with that boot's console.\nTo boot instead: add --boot.\n",
                saved.dir.display()
            ),
        )?;
        Ok(())
    };
    keep().map_err(|e| format!("{e:#}"))?;
    match boot_streamed(&cfg, case, kernel, opts).await {
        Ok(res) => Ok((res, BootMode::Restored)),
        Err(e) if is_restore_failure(&e) => {
            crate::saved_vm::discard(&saved);
            Err(format!("{e:#}"))
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The first run of a machine with no saved VM: booted, saved where init
/// waits for its plan (published for the next cases at once), then handed
/// the plan. `Err` says why it could not run (the caller boots instead).
async fn boot_and_save(
    dir: &Path,
    plan: &gmem_protocol::Plan,
    case: &Case,
    kernel: &BuiltKernel,
    opts: RunOptions,
    cfg: &VmConfig,
    saving: crate::saved_vm::Saving,
) -> std::result::Result<(BootResult, BootMode), String> {
    let cfg_saving = saving.config(cfg, plan);
    write_command_line(dir, &cfg_saving, BackendKind::Hermetic).map_err(|e| format!("{e:#}"))?;
    let _ = std::fs::write(
        dir.join("plan.json"),
        serde_json::to_vec_pretty(plan).unwrap_or_default(),
    );
    let prefix = format!("[{}@{}] ", case.name, kernel.name);
    let mut saving = Some(saving);
    let mut published = None;
    let res = boot::boot_saving(
        &cfg_saving,
        |line| {
            if opts.stream {
                eprintln!("{prefix}{line}");
            }
        },
        |saved| {
            if let Some(s) = saving.take() {
                published = Some(s.publish(cfg, &saved).map_err(|e| format!("{e:#}")));
            }
        },
    )
    .await
    .map_err(|e| format!("{e:#}"))?;
    match published {
        Some(Ok(v)) => {
            let _ = std::fs::write(
                dir.join("restored.txt"),
                format!(
                    "This case booted its kernel, which was saved where init waits for its plan (the saved VM {}), then ran; the next cases start from that state.\n",
                    v.dir.display()
                ),
            );
            Ok((res, BootMode::Saved))
        }
        // The case ran all the same (a boot of its own); the note says why
        // no VM was kept.
        Some(Err(why)) => Ok((
            res,
            BootMode::Booted {
                why: format!("the saved VM could not be kept: {why}"),
            },
        )),
        None => Ok((
            res,
            BootMode::Booted {
                why: "init did not wait for its plan cleanly, so no VM was saved".into(),
            },
        )),
    }
}

/// The VM `case` starts from on `kernel` (its logs in `dir`), on
/// `machine` (the case's), and the initramfs it is saved with.
fn saved_vm_config<'p>(
    dir: &Path,
    case: &Case,
    machine: &Machine,
    kernel: &BuiltKernel,
    prepared: &'p Prepared,
    opts: RunOptions,
) -> Result<(VmConfig, crate::saved_vm::Image<'p>, tempfile::TempDir)> {
    let (cfg, sock_dir) = machine_config(dir, Backend::Hermetic, machine, kernel, prepared, opts)?;
    let image = prepared.saved_vm_image(case, &kernel.name)?;
    Ok((cfg, image, sock_dir))
}

/// How a saved VM is named in progress lines.
fn label(kernel: &BuiltKernel, machine: &Machine) -> String {
    format!(
        "{} ({} MB, {} CPUs{})",
        kernel.name,
        machine.memory_mb,
        machine.cpus,
        if machine.cmdline.trim().is_empty() {
            String::new()
        } else {
            format!(", {}", machine.cmdline.trim())
        }
    )
}

/// The saved VMs `cases` start from on `kernel`, each once: found in the
/// cache or saved now (`fresh`: dropped first and saved again, as `cargo
/// xtask bench` measures a cold cache).
pub async fn saved_vms_for(
    paths: &Paths,
    cases: &[&Case],
    kernel: &BuiltKernel,
    prepared: &Prepared,
    fresh: bool,
) -> Result<Vec<crate::saved_vm::SavedVm>> {
    let dir = paths.out.join("saved-vms");
    std::fs::create_dir_all(&dir)?;
    let mut keys = Vec::new();
    let mut out = Vec::new();
    for c in cases {
        let machine = Machine::of(&[c]);
        let (cfg, image, _sock) =
            saved_vm_config(&dir, c, &machine, kernel, prepared, RunOptions::default())?;
        let key = crate::saved_vm::key(&cfg, &image);
        if keys.contains(&key) {
            continue;
        }
        if fresh {
            crate::saved_vm::discard_key(&key)?;
        }
        keys.push(key);
        out.push(crate::saved_vm::obtain(&cfg, &image, &label(kernel, &machine)).await?);
    }
    Ok(out)
}

/// Whether `e` is a saved VM that would not load (which is then dropped).
fn is_restore_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::fault::Fault>(),
            Some(crate::fault::Fault::RestoreFailed { .. })
        )
    })
}

/// What only the hermetic backend offers.
fn check_options(kernel: &BuiltKernel, opts: RunOptions) -> Result<()> {
    if opts.backend == BackendKind::Vng && (opts.shell || opts.gdb.is_some()) {
        anyhow::bail!("--shell and --gdb are for the hermetic backend; for a shell through vng use `cargo xtask shell --kernel {}`", kernel.name);
    }
    Ok(())
}

/// A person is at the controls (a shell, gdb): no deadline, no hang
/// detection; gdb's command line printed for them.
fn hand_over(cfg: &mut VmConfig, dir: &Path, kernel: &BuiltKernel, opts: RunOptions) {
    cfg.deadline = Duration::from_secs(7 * 24 * 3600);
    cfg.silence = None;
    cfg.interactive = opts.shell.then(|| dir.join("console.log"));
    cfg.gdb = opts.gdb;
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
}

/// The gdb command line that attaches to a run started with `gdb: Some(port)`.
pub fn gdb_command(kernel: &BuiltKernel, port: u16) -> String {
    format!(
        "gdb {} -ex 'target remote 127.0.0.1:{port}'   # then: continue",
        kernel.vmlinux.display()
    )
}

/// Boots `cfg`, its console streamed live when asked.
async fn boot_streamed(
    cfg: &VmConfig,
    case: &Case,
    kernel: &BuiltKernel,
    opts: RunOptions,
) -> Result<BootResult> {
    let prefix = format!("[{}@{}] ", case.name, kernel.name);
    boot::boot(cfg, |line| {
        if opts.stream {
            eprintln!("{prefix}{line}");
        }
    })
    .await
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
    let backend = match opts.backend {
        BackendKind::Hermetic => {
            pack_initramfs(
                &dir.join("initramfs.cpio.gz"),
                plan,
                cases,
                kernel,
                prepared,
            )?;
            Backend::Hermetic
        }
        BackendKind::Vng => vng_backend(dir, plan, cases, kernel, prepared)?,
    };
    machine_config(dir, backend, machine, kernel, prepared, opts)
}

/// The VM of `machine` on `kernel`, started by `backend`, its initramfs in
/// `dir`. The returned directory holds QEMU's sockets.
fn machine_config(
    dir: &Path,
    backend: Backend,
    machine: &Machine,
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> Result<(VmConfig, tempfile::TempDir)> {
    // A socket path must be short (108 bytes): keep it in a private temp dir.
    let sock_dir = tempfile::Builder::new().prefix("gmemtest-").tempdir()?;
    let cfg = VmConfig {
        backend,
        kernel: kernel.bzimage.clone(),
        initramfs: dir.join("initramfs.cpio.gz"),
        memory_mb: machine.memory_mb,
        cpus: machine.cpus,
        // The flavor's checkers first: a case's own parameters come after
        // them and win where they say otherwise.
        extra_cmdline: kernel.flavor.cmdline_with(&machine.cmdline),
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
        restore: None,
        save: None,
    };
    Ok((cfg, sock_dir))
}

/// The hermetic initramfs: the prepared base, the members the cases need
/// on this kernel (each once), the plan.
fn pack_initramfs(
    to: &Path,
    plan: &gmem_protocol::Plan,
    cases: &[&Case],
    kernel: &BuiltKernel,
    prepared: &Prepared,
) -> Result<()> {
    let mut extra: Vec<&[u8]> = Vec::new();
    for c in cases {
        for m in prepared.members_for(c, &kernel.name)? {
            if !extra.contains(&m) {
                extra.push(m);
            }
        }
    }
    let image = pack::image_with(&prepared.base_image, &extra, plan)?;
    std::fs::write(to, image).with_context(|| format!("cannot write {}", to.display()))
}

/// vng's guest sees the host's files: init reads the plan where it is
/// written and runs the gmem-probe beside it.
fn vng_backend(
    dir: &Path,
    plan: &gmem_protocol::Plan,
    cases: &[&Case],
    kernel: &BuiltKernel,
    prepared: &Prepared,
) -> Result<Backend> {
    if let Some(c) = cases.iter().find(|c| !c.kselftests().is_empty()) {
        anyhow::bail!(
            "case {} runs KVM selftests, which are packed into the hermetic initramfs only: run it without --backend vng",
            c.name
        );
    }
    let plan_file = dir.join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec_pretty(plan)?)?;
    let vng = crate::vng::check()
        .with_context(|| format!("case {} on kernel {}", cases[0].name, kernel.name))?;
    Ok(Backend::Vng {
        bin: vng.bin,
        exec: format!(
            "{} {}",
            crate::cmdline::quote(&prepared.bins.init.to_string_lossy()),
            crate::cmdline::quote(&plan_file.to_string_lossy())
        ),
    })
}

/// Keeps the exact command that started the VM beside its logs.
pub(crate) fn write_command_line(dir: &Path, cfg: &VmConfig, backend: BackendKind) -> Result<()> {
    let (program, args) = boot::launch_command(cfg);
    let file = match backend {
        BackendKind::Hermetic => "qemu.cmdline",
        BackendKind::Vng => "vng.cmdline",
    };
    std::fs::write(
        dir.join(file),
        crate::cmdline::command_line(&program, &args) + "\n",
    )?;
    Ok(())
}

/// What a boot printed and sent, kept in `dir`.
pub(crate) fn keep_boot_logs(dir: &Path, boot_res: &BootResult) -> Result<()> {
    let write = |name: &str, data: &str| {
        std::fs::write(dir.join(name), data)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))
    };
    write("console.log", &boot_res.console)?;
    let results: String = boot_res
        .records
        .iter()
        .map(|r| r.to_line() + "\n")
        .collect();
    write("results.jsonl", &results)?;
    if !boot_res.qemu_stderr.trim().is_empty() {
        write("qemu.stderr", &boot_res.qemu_stderr)?;
    }
    Ok(())
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

/// From what a boot gave `case` to its verdict: the console and records
/// kept in `dir`, the crashes found and decoded, the outcome normalized and
/// compared with the snapshot, judged.
pub(crate) fn conclude(
    paths: &Paths,
    case: &Case,
    kernel: &BuiltKernel,
    dir: &Path,
    boot_res: &BootResult,
    opts: RunOptions,
) -> Result<CaseRun> {
    keep_boot_logs(dir, boot_res)?;
    let crashes = report::find_crashes(&boot_res.console);
    let crash_report = crash_report(kernel, &crashes);
    if let Some(text) = &crash_report {
        std::fs::write(dir.join("crash-report.txt"), text)?;
    }
    // The variant, not the flavor: a flavor's outcome is compared with the
    // variant's snapshot.
    let outcome = outcome::build(case, &kernel.variant, boot_res, &crashes);
    std::fs::write(dir.join("outcome.yaml"), serde_yaml::to_string(&outcome)?)?;
    let compare = |o: &Outcome| {
        if opts.no_snapshot {
            return None;
        }
        if kernel.flavor != Flavor::Normal {
            return Some(snapshot::compare_read_only(&paths.snapshots(), o));
        }
        // A failure becomes the reference only when asked for by name.
        let holds_failure = o.failure(case.expects_crash(&kernel.name)).is_some();
        if snapshot::blessing()
            && holds_failure
            && !opts.accept_failures
            && !snapshot::is_stored(&paths.snapshots(), o)
        {
            return Some(SnapshotStatus::Refused);
        }
        Some(snapshot::compare(&paths.snapshots(), o, &case.description))
    };
    let judged = verdict::judge(case, &kernel.name, &outcome, boot_res, &crashes, compare);
    let snapshot_diff = (judged.snapshot == Some(SnapshotStatus::Differs))
        .then(|| snapshot::diff(&paths.snapshots(), &outcome))
        .flatten();
    Ok(CaseRun {
        case: case.name.clone(),
        kernel: kernel.name.clone(),
        verdict: judged.verdict,
        reason: judged.reason,
        outcome: Some(outcome),
        crashes,
        crash_report,
        snapshot: judged.snapshot,
        snapshot_diff,
        log_dir: dir.to_path_buf(),
        elapsed: boot_res.elapsed,
        boot_time: Some(boot_res.elapsed),
        backend: opts.backend,
        fault: judged.fault,
        boot: BootMode::Alone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::BootEnd;
    use crate::verdict::Verdict;
    use gmem_protocol::{Record, StepExit};

    /// A boot whose one step `s` observed `seen`.
    fn boot(seen: u64) -> BootResult {
        BootResult {
            console: "[    0.1] Linux version 7.3\n".into(),
            records: vec![
                Record::Hello {
                    protocol: gmem_protocol::PROTOCOL_VERSION,
                    kernel_release: "7.3".into(),
                    cpus: 2,
                },
                Record::StepEnd {
                    step: "s".into(),
                    exit: StepExit::Exited { code: 0 },
                    observation: Some(serde_json::json!({ "seen": seen })),
                    bad_output: None,
                    duration_ms: 1,
                },
                Record::Done,
            ],
            record_times: vec![Duration::ZERO; 3],
            bad_lines: vec![],
            bad_line_positions: vec![],
            runner_notes: vec![],
            end: BootEnd::Exited { code: Some(0) },
            elapsed: Duration::from_secs(1),
            qemu_stderr: String::new(),
        }
    }

    /// The debug flavor's outcome names the variant and is compared with
    /// the variant's snapshot, which it never writes (nor a `.snap.new`):
    /// a difference is a finding of the flavor, said so.
    #[test]
    fn a_flavor_shares_the_variants_snapshot_and_never_writes_it() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("cases")).unwrap();
        std::fs::create_dir_all(root.join("snapshots")).unwrap();
        std::fs::write(
            root.join("cases/c.yaml"),
            "description: d\nkernels: [v]\nsteps:\n  - name: s\n    probe: selftest\n",
        )
        .unwrap();
        let case = Case::load(&root.join("cases/c.yaml"), &["v".to_string()])
            .unwrap()
            .flavored(Flavor::Debug);
        let paths = Paths {
            root: root.into(),
            cache: root.join("cache"),
            out: root.join("out"),
            suite: root.into(),
        };
        let kernel = BuiltKernel {
            name: "v+debug".into(),
            variant: "v".into(),
            flavor: Flavor::Debug,
            source: String::new(),
            key: String::new(),
            bzimage: root.join("bzImage"),
            vmlinux: root.join("vmlinux"),
            system_map: root.join("System.map"),
            config: root.join("config"),
            build_log: root.join("build.log"),
            built_in: None,
        };
        let dir = root.join("log");
        std::fs::create_dir_all(&dir).unwrap();
        let listing = || {
            let mut l: Vec<String> = std::fs::read_dir(root.join("snapshots"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            l.sort();
            l
        };
        let judge = |seen| {
            conclude(
                &paths,
                &case,
                &kernel,
                &dir,
                &boot(seen),
                RunOptions::default(),
            )
            .unwrap()
        };

        // No snapshot of the variant: new, and nothing written.
        let run = judge(1);
        assert_eq!(run.kernel, "v+debug");
        assert_eq!(run.outcome.as_ref().unwrap().kernel, "v");
        assert_eq!(run.verdict, Verdict::New);
        assert!(
            run.reason
                .as_deref()
                .unwrap()
                .contains("no snapshot of v yet"),
            "{:?}",
            run.reason
        );
        assert!(listing().is_empty(), "{:?}", listing());

        // The variant's snapshot, as insta writes it (a header, the outcome).
        let body = serde_yaml::to_string(run.outcome.as_ref().unwrap()).unwrap();
        let snap = format!("---\nsource: gmemtest\ndescription: d\n---\n{body}");
        std::fs::write(root.join("snapshots/c@v.snap"), &snap).unwrap();
        assert_eq!(judge(1).verdict, Verdict::Pass);

        // Another outcome: a finding of the flavor, the snapshot unchanged.
        let run = judge(2);
        assert_eq!(run.verdict, Verdict::Mismatch);
        let why = run.reason.as_deref().unwrap();
        assert!(
            why.contains("differs on the debug flavor from v's snapshot"),
            "{why}"
        );
        assert!(
            run.snapshot_diff
                .as_deref()
                .unwrap()
                .contains("+    seen: 2"),
            "{:?}",
            run.snapshot_diff
        );
        assert_eq!(listing(), ["c@v.snap"]);
        assert_eq!(
            std::fs::read_to_string(root.join("snapshots/c@v.snap")).unwrap(),
            snap
        );
    }
}
