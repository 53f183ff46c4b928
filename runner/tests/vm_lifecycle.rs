//! The VM's life cycle against a real kernel: a guest that hangs is killed at
//! its deadline with its console kept, and no QEMU outlives its run.
//!
//! Builds (or finds cached) the stock kernel, like the case suite does.

use std::time::Duration;

use gmem_protocol::{CasePlan, Plan, PlanStep};
use runner::boot::{self, Accel, Backend, BootEnd, VmConfig};
use runner::paths::Paths;

/// QEMU processes whose command line mentions `needle`.
fn qemu_processes_with(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with(boot::QEMU) && cmd.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn stock_kernel(paths: &Paths) -> runner::kernel::BuiltKernel {
    runner::setup::host().expect("setup");
    let recipe = runner::kernel::Recipe::load_named(&paths.kernels(), "stock-7.3").expect("recipe");
    runner::kernel::build(paths, &recipe).expect("kernel build")
}

fn image(paths: &Paths, dir: &std::path::Path, step: PlanStep) -> std::path::PathBuf {
    let bins = runner::pack::build_guest_binaries(paths).expect("guest binaries");
    let base = runner::pack::base_image(&bins).expect("base image");
    let plan = Plan::single(CasePlan {
        case: "lifecycle".into(),
        steps: vec![step],
    });
    let p = dir.join("initramfs.cpio.gz");
    std::fs::write(&p, runner::pack::image(&base, &plan).unwrap()).unwrap();
    p
}

fn caps_step() -> PlanStep {
    PlanStep {
        name: "caps".into(),
        probe: "caps".into(),
        args: serde_json::json!({}),
        timeout_ms: 10_000,
        cpu: None,
    }
}

/// A VM of the stock kernel running `step`, with QEMU's sockets in `dir`.
fn vm(dir: &std::path::Path, step: PlanStep, cmdline: &str, deadline: Duration) -> VmConfig {
    let paths = Paths::of_this_checkout().unwrap();
    let kernel = stock_kernel(&paths);
    VmConfig {
        backend: Backend::Hermetic,
        kernel: kernel.bzimage.clone(),
        initramfs: image(&paths, dir, step),
        memory_mb: 512,
        cpus: 2,
        extra_cmdline: cmdline.into(),
        accel: Accel::detect().0,
        deadline,
        result_socket: dir.join("r.sock"),
        monitor_socket: dir.join("m.sock"),
        silence: None,
        interactive: None,
        gdb: None,
        restore: None,
        save: None,
    }
}

/// A VM whose guest hangs: no init, and a kernel that waits forever after
/// panicking.
fn hanging_vm(dir: &std::path::Path, deadline: Duration) -> VmConfig {
    vm(dir, caps_step(), "rdinit=/no-such-init panic=0", deadline)
}

/// Boots `cfg` to its end (exit, deadline or hang).
fn boot_to_end(cfg: &VmConfig) -> boot::BootResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(boot::boot(cfg, |_| {})).expect("boot")
}

#[test]
fn hung_guest_is_killed_at_its_deadline_with_its_console_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hanging_vm(dir.path(), Duration::from_secs(15));
    let needle = cfg.result_socket.display().to_string();
    let res = boot_to_end(&cfg);
    assert!(matches!(res.end, BootEnd::TimedOut { .. }), "{:?}", res.end);
    assert!(
        res.elapsed < Duration::from_secs(25),
        "took {:?}",
        res.elapsed
    );
    assert!(
        res.console.contains("Kernel panic - not syncing"),
        "console kept:\n{}",
        res.console
    );
    assert!(res.records.is_empty());
    assert!(
        qemu_processes_with(&needle).is_empty(),
        "a QEMU outlived its run"
    );
}

#[test]
fn dropping_a_running_boot_kills_its_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hanging_vm(dir.path(), Duration::from_secs(120));
    let needle = cfg.result_socket.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // What Ctrl-C does in xtask: the running boot future is dropped.
        let r = tokio::time::timeout(Duration::from_secs(3), boot::boot(&cfg, |_| {})).await;
        assert!(r.is_err(), "the boot should still be running");
    });
    // kill_on_drop sends SIGKILL; give the kernel a moment to reap it.
    for _ in 0..50 {
        if qemu_processes_with(&needle).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "QEMU still running after its boot was dropped: {:?}",
        qemu_processes_with(&needle)
    );
}

#[test]
fn silent_guest_gets_an_nmi_and_leaves_backtraces() {
    let dir = tempfile::tempdir().unwrap();
    // A probe that sleeps far longer than the silence allowed.
    let sleeper = PlanStep {
        name: "sleep".into(),
        probe: "selftest".into(),
        args: serde_json::json!({"sleep_ms": 100_000}),
        timeout_ms: 110_000,
        cpu: None,
    };
    let mut cfg = vm(dir.path(), sleeper, "", Duration::from_secs(120));
    cfg.silence = Some(Duration::from_secs(4));
    let needle = cfg.result_socket.display().to_string();
    let res = boot_to_end(&cfg);
    assert!(matches!(res.end, BootEnd::Hung { .. }), "{:?}", res.end);
    assert!(
        res.elapsed < Duration::from_secs(40),
        "took {:?}",
        res.elapsed
    );
    let c = &res.console;
    assert!(c.contains(boot::NMI_NOTE), "{c}");
    assert!(
        c.contains("NMI: Not continuing"),
        "the kernel did not take the NMI:\n{c}"
    );
    // panic_sys_info=tasks: the sleeping probe is in the task dump.
    assert!(c.contains("gmem-probe"), "no task dump:\n{c}");
    assert!(
        qemu_processes_with(&needle).is_empty(),
        "a QEMU outlived its run"
    );
}

/// A VM restored from a saved one keeps the life cycle of a booted one: a
/// step that never ends is killed at the deadline, the console kept (the
/// saved boot's, then the restored run's), no QEMU left; and a saved state
/// QEMU cannot load is a [`runner::fault::Fault::RestoreFailed`], not an
/// outcome.
#[test]
fn a_restored_guest_that_hangs_is_killed_at_its_deadline_with_both_consoles() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::of_this_checkout().unwrap();
    let bins = runner::pack::build_guest_binaries(&paths).expect("guest binaries");
    let base = runner::pack::base_image(&bins).expect("base image");
    let mut cfg = vm(dir.path(), caps_step(), "", Duration::from_secs(8));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let saved = rt
        .block_on(runner::saved_vm::obtain(
            &cfg,
            &runner::saved_vm::Image::of(vec![&base]),
            "stock-7.3 (lifecycle test)",
        ))
        .expect("a saved VM");
    assert!(saved.console.contains("Linux version"), "{}", saved.console);
    let sleeper = PlanStep {
        name: "sleep".into(),
        probe: "selftest".into(),
        args: serde_json::json!({"sleep_ms": 60_000}),
        timeout_ms: 70_000,
        cpu: None,
    };
    let plan = Plan::single(CasePlan {
        case: "lifecycle".into(),
        steps: vec![sleeper],
    });
    cfg = saved.restore_config(&cfg, &plan);
    let needle = cfg.result_socket.display().to_string();
    let res = boot_to_end(&cfg);
    assert!(matches!(res.end, BootEnd::TimedOut { .. }), "{:?}", res.end);
    assert!(
        res.elapsed < Duration::from_secs(15),
        "took {:?}",
        res.elapsed
    );
    assert!(
        res.console.starts_with(&saved.console),
        "the saved boot's console comes first:\n{}",
        res.console
    );
    assert!(
        res.console.contains("step sleep (probe selftest)"),
        "the restored run's console is kept:\n{}",
        res.console
    );
    assert!(
        res.records
            .iter()
            .any(|r| matches!(r, gmem_protocol::Record::StepStart { step, .. } if step == "sleep")),
        "{:?}",
        res.records
    );
    assert!(
        qemu_processes_with(&needle).is_empty(),
        "a QEMU outlived its run"
    );

    // A damaged state: QEMU refuses it, and the error says so.
    let bad = dir.path().join("bad-state");
    std::fs::write(&bad, b"not a migration stream").unwrap();
    let mut broken = cfg.clone();
    broken.restore.as_mut().unwrap().state = bad;
    let err = rt
        .block_on(boot::boot(&broken, |_| {}))
        .expect_err("a state QEMU cannot load");
    assert!(
        matches!(
            err.downcast_ref::<runner::fault::Fault>(),
            Some(runner::fault::Fault::RestoreFailed { .. })
        ),
        "{err:#}"
    );
    assert!(
        qemu_processes_with(&broken.result_socket.display().to_string()).is_empty(),
        "a QEMU outlived its failed restore"
    );
}
