//! The two ways to boot a case give the same answer: for cases that do not
//! crash, the normalized outcome through virtme-ng (`--backend vng`, the
//! host's root filesystem, vng's init running ours) equals the hermetic one
//! (our initramfs, init as PID 1), and both match the reviewed snapshot.
//!
//! Builds (or finds cached) the stock kernel and installs virtme-ng if it is
//! missing, like `cargo xtask test --backend vng` does.

use runner::paths::Paths;
use runner::suite::{self, BackendKind, CaseRun, RunOptions, Suite, Verdict};

/// Cases that do not crash, each from another corner: capabilities (and
/// kept dmesg lines), creation errors, and memory with a nested vCPU.
const CASES: &[&str] = &["gmem_caps", "gmem_create", "gmem_fallocate", "gmem_vcpu"];
const KERNEL: &str = "stock-7.3";

fn run(suite: &Suite, prepared: &suite::Prepared, case: &str, backend: BackendKind) -> CaseRun {
    let case = suite.cases.iter().find(|c| c.name == case).expect("case");
    let kernel = &prepared.kernels[0];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = RunOptions {
        backend,
        ..Default::default()
    };
    rt.block_on(suite::run_pair(&suite.paths, case, kernel, prepared, opts))
        .unwrap_or_else(|e| panic!("{} on {KERNEL} through {backend:?}: {e:#}", case.name))
}

#[test]
fn vng_and_hermetic_give_the_same_outcome() {
    runner::setup::vng().expect("virtme-ng");
    let mut paths = Paths::of_this_checkout().unwrap();
    // Logs of its own: the `cases` harness may run beside it (cargo-nextest).
    paths.out = paths.out.join("tests").join("backends");
    let cases: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let suite = Suite::load(paths, &cases, &[KERNEL.to_string()]).expect("suite");
    let prepared = suite::prepare(&suite).expect("prepare");
    let mut times = Vec::new();
    for case in CASES {
        let hermetic = run(&suite, &prepared, case, BackendKind::Hermetic);
        assert_eq!(
            hermetic.verdict,
            Verdict::Pass,
            "{case} (hermetic): {}",
            hermetic.failure_report()
        );
        let vng = run(&suite, &prepared, case, BackendKind::Vng);
        assert_eq!(
            vng.verdict,
            Verdict::Pass,
            "{case} through vng: {}",
            vng.failure_report()
        );
        let (h, v) = (hermetic.outcome.unwrap(), vng.outcome.unwrap());
        assert_eq!(
            serde_yaml::to_string(&h).unwrap(),
            serde_yaml::to_string(&v).unwrap(),
            "{case}: the outcomes differ (hermetic left, vng right)"
        );
        assert!(
            vng.log_dir.ends_with(format!("vng/{KERNEL}/{case}")),
            "{}",
            vng.log_dir.display()
        );
        assert!(vng.log_dir.join("vng.cmdline").is_file());
        times.push((case, hermetic.boot_time.unwrap(), vng.boot_time.unwrap()));
    }
    for (case, h, v) in times {
        eprintln!(
            "{case}: hermetic {:.1}s, vng {:.1}s ({:.1}x)",
            h.as_secs_f64(),
            v.as_secs_f64(),
            v.as_secs_f64() / h.as_secs_f64()
        );
    }
}

#[test]
fn vng_puts_the_result_port_after_its_console() {
    let info = runner::setup::vng().expect("virtme-ng");
    let dir = tempfile::tempdir().unwrap();
    // --dry-run needs no real kernel image, only a file.
    let kernel = dir.path().join("bzImage");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let cfg = runner::boot::VmConfig {
        backend: runner::boot::Backend::Hermetic,
        kernel,
        initramfs: dir.path().join("unused"),
        memory_mb: 768,
        cpus: 2,
        extra_cmdline: "foo=1".into(),
        accel: runner::boot::Accel::Tcg,
        deadline: std::time::Duration::from_secs(10),
        result_socket: dir.path().join("r.sock"),
        monitor_socket: dir.path().join("m.sock"),
        silence: None,
        interactive: None,
        gdb: None,
        restore: None,
        save: None,
    };
    let qemu = runner::boot::vng_of(&cfg, "/bin/true")
        .qemu_command(&info.bin)
        .expect("vng --dry-run");
    let console = qemu.find("-serial chardev:console").expect(&qemu);
    let results = qemu.find("-serial chardev:results").expect(&qemu);
    assert!(console < results, "ttyS1 must be the result port: {qemu}");
    assert!(
        qemu.contains("-m 768M") && qemu.contains("-smp 2"),
        "{qemu}"
    );
    assert!(
        qemu.contains("-cpu max"),
        "nested SVM needs -cpu max: {qemu}"
    );
    assert!(qemu.contains(gmem_protocol::GUEST_MARKER), "{qemu}");
    assert!(qemu.contains("foo=1"), "{qemu}");
}
