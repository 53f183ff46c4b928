//! Least privilege: once setup has run (packages installed, the kernel
//! built), the runner runs a case as a user with no privilege at all.
//!
//! Run as root (as on the machines here, where cargo itself lives in /root
//! and another user cannot run it), the test prepares what setup and the
//! kernel build leave behind (the stock kernel from the cache, the guest
//! binaries), copies them, the parts of the checkout a run reads (cases/,
//! kernels/, snapshots/) and this test binary into a directory owned by
//! `nobody` (the checkout itself may be where nobody cannot look, a fresh
//! clone under a 0700 temporary directory say), and re-runs itself as
//! `nobody`: uid and gid 65534, no supplementary groups, no
//! capabilities, `no_new_privs` (so not even a setuid helper such as sudo
//! could give any back). That child loads the case from the checkout, packs
//! the initramfs, boots QEMU with its sockets in its own directory, writes
//! the logs and compares the outcome with the snapshot: the runner's own
//! `run_pair`, from case file to verdict. Run as another user, the test does
//! the same as that user, in-process.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use runner::boot::Accel;
use runner::kernel::BuiltKernel;
use runner::pack::GuestBinaries;
use runner::paths::Paths;
use runner::suite::{self, Prepared, Suite, Verdict};

/// Set in the child: the prepared directory it runs in.
const CHILD_ENV: &str = "GMEMTEST_UNPRIVILEGED_DIR";
/// `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65534;
const CASE: &str = "guest_isolation";
const KERNEL: &str = "stock-7.3";
/// This test's name, for the child's libtest filter.
const TEST_NAME: &str = "a_case_runs_to_its_verdict_without_privilege";

#[test]
fn a_case_runs_to_its_verdict_without_privilege() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return run_case_here(Path::new(&dir));
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path());
    eprintln!("prepared in {:.1?}", started.elapsed());
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        run_case_here(dir.path());
    } else {
        give_to_nobody(dir.path());
        run_child_as_nobody(dir.path());
    }
    eprintln!("done in {:.1?}", started.elapsed());
}

/// What setup and the kernel build leave, put where the user running the
/// case can read it: the kernel (built now, or a cache hit) and the guest
/// binaries (built by cargo, which only its owner can run here).
fn prepare(dir: &Path) {
    let paths = Paths::of_this_checkout().expect("checkout");
    runner::setup::host().expect("setup");
    let recipe =
        runner::kernel::Recipe::load_named(&paths.kernels(), KERNEL).expect("kernel recipe");
    let kernel = runner::kernel::build(&paths, &recipe).expect("kernel build");
    let bins = runner::pack::build_guest_binaries(&paths).expect("guest binaries");
    for (from, to) in [
        (&kernel.bzimage, "bzImage"),
        (&kernel.system_map, "System.map"),
        (&kernel.config, "config"),
        (&bins.init, "init"),
        (&bins.probe, "gmem-probe"),
    ] {
        std::fs::copy(from, dir.join(to))
            .unwrap_or_else(|e| panic!("copying {} into {}: {e}", from.display(), dir.display()));
    }
    // The kernel's identity, so the child's logs say which it booted.
    std::fs::write(
        dir.join("kernel.txt"),
        format!("{}\n{}\n", kernel.source, kernel.key),
    )
    .expect("kernel.txt");
    for sub in ["tmp", "home", "out", "checkout/runner"] {
        std::fs::create_dir_all(dir.join(sub)).expect("subdirectory");
    }
    for sub in ["cases", "kernels", "snapshots"] {
        copy_tree(&paths.root.join(sub), &dir.join("checkout").join(sub));
    }
    let exe = std::env::current_exe().expect("current exe");
    std::fs::copy(&exe, dir.join("test-bin")).expect("copying this test binary");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.expect("dir entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

/// Hands the prepared directory to `nobody` (this is root's last act).
fn give_to_nobody(dir: &Path) {
    fn walk(p: &Path) {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path());
            }
        }
    }
    walk(dir);
}

/// This test binary again, as `nobody`, with a clean environment: no
/// PATH into /root, HOME and TMPDIR in the prepared directory (QEMU's
/// sockets go there), INSTA_UPDATE=no (the checkout is not nobody's to
/// write, and a mismatch must fail, not be written).
fn run_child_as_nobody(dir: &Path) {
    let exe = dir.join("test-bin");
    let root = dir.join("checkout");
    let mut cmd = Command::new(&exe);
    cmd.args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env(CHILD_ENV, dir)
        .env("HOME", dir.join("home"))
        .env("TMPDIR", dir.join("tmp"))
        .env("GMEMTEST_CACHE", dir.join("home/cache"))
        .env("GMEMTEST_OUT", dir.join("out"))
        .env("CARGO_MANIFEST_DIR", root.join("runner"))
        .env("INSTA_UPDATE", "no")
        .env("INSTA_WORKSPACE_ROOT", &root)
        .current_dir(dir);
    if let Some(a) = std::env::var_os("GMEMTEST_ACCEL") {
        cmd.env("GMEMTEST_ACCEL", a);
    }
    // SAFETY: only async-signal-safe system calls between fork and exec.
    // The order matters: groups and gid while still root, then the uid,
    // which drops every capability; no_new_privs last.
    unsafe {
        cmd.pre_exec(|| {
            let ok = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            ok(libc::setgroups(0, std::ptr::null()))?;
            ok(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
            ok(libc::setresuid(NOBODY, NOBODY, NOBODY))?;
            ok(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        });
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} as nobody: {e}", exe.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- the run as nobody ---\n{text}--- end of the run as nobody ---");
    assert!(
        out.status.success(),
        "the run as nobody failed ({}); is {} readable and executable by uid {NOBODY}?",
        out.status,
        exe.display()
    );
    // The child must really have run the case, not an empty filter.
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
    // What it wrote is nobody's: it ran as nobody.
    let log = dir.join(format!("out/logs/{KERNEL}/{CASE}/outcome.yaml"));
    let meta = std::fs::metadata(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert_eq!(
        (meta.uid(), meta.gid()),
        (NOBODY, NOBODY),
        "{}",
        log.display()
    );
}

/// The lines of /proc/self/status that say what privilege this process has.
fn privilege() -> (u32, String, String, String) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
    };
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    (
        euid,
        field("CapEff:"),
        field("CapPrm:"),
        field("NoNewPrivs:"),
    )
}

/// The case, from its file to its verdict, as this (unprivileged) user:
/// the runner's `run_pair` on what `prepare` left in `dir`.
fn run_case_here(dir: &Path) {
    let (euid, cap_eff, cap_prm, no_new_privs) = privilege();
    assert_ne!(euid, 0, "running the case as root proves nothing");
    assert_eq!(cap_eff, "0000000000000000", "effective capabilities");
    assert_eq!(cap_prm, "0000000000000000", "permitted capabilities");
    if std::env::var_os(CHILD_ENV).is_some() {
        assert_eq!(no_new_privs, "1", "the child runs with no_new_privs");
    }
    let mut paths = Paths::of_this_checkout().expect("checkout");
    paths.out = dir.join("out");
    paths.cache = dir.join("home/cache");
    let suite = Suite::load_one(paths, CASE, KERNEL).expect("case and recipe");
    let case = &suite.cases[0];
    let id = std::fs::read_to_string(dir.join("kernel.txt")).expect("kernel.txt");
    let mut lines = id.lines();
    let kernel = BuiltKernel {
        name: KERNEL.into(),
        variant: KERNEL.into(),
        flavor: Default::default(),
        source: lines.next().unwrap_or_default().into(),
        key: lines.next().unwrap_or_default().into(),
        bzimage: dir.join("bzImage"),
        // Only a crash report decodes frames with vmlinux; none is
        // expected, and it is large: not copied.
        vmlinux: dir.join("vmlinux"),
        system_map: dir.join("System.map"),
        config: dir.join("config"),
        build_log: dir.join("build.log"),
        built_in: None,
    };
    let bins = GuestBinaries {
        init: dir.join("init"),
        probe: dir.join("gmem-probe"),
    };
    let prepared = Prepared {
        kernels: vec![kernel.clone()],
        base_image: runner::pack::base_image(&bins).expect("packing the initramfs base"),
        bins,
        accel: Accel::detect().0,
        kselftests: vec![],
        image_digests: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let run = rt
        .block_on(suite::run_pair(
            &suite.paths,
            case,
            &kernel,
            &prepared,
            Default::default(),
        ))
        .expect("the case ran");
    eprintln!(
        "{CASE} on {KERNEL} as uid {euid}: {} in {:.1?}",
        run.verdict.label(),
        started.elapsed()
    );
    assert_eq!(run.verdict, Verdict::Pass, "{}", run.failure_report());
    // The snapshot says it, but say it here too: the guest ran the probe
    // and found no way out.
    let outcome = run.outcome.as_ref().expect("an outcome");
    let step = &outcome.steps[0];
    assert_eq!(
        (step.probe.as_str(), step.result.as_str()),
        ("isolation", "exited 0")
    );
    let obs = step.observation.as_ref().expect("an observation");
    assert_eq!(obs["net_interfaces"], serde_json::json!(["lo"]), "{obs:#}");
    assert_eq!(obs["host_file_mounts"], serde_json::json!([]), "{obs:#}");
    for a in obs["reach_out"].as_array().expect("reach_out") {
        let r = a["result"].as_str().unwrap_or_default();
        assert!(
            r.starts_with("socket:") || (r.starts_with("connect:") && r != "connect: EINPROGRESS"),
            "a way out: {a}"
        );
    }
    assert!(run.log_dir.join("console.log").is_file());
}
