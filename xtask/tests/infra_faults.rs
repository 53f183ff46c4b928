//! Infrastructure faults, end to end through `cargo xtask`: each gives its
//! own clear error and exit code, promptly, and never a test verdict.
//!
//! | fault | how it is made | code |
//! |---|---|---|
//! | QEMU missing | `GMEMTEST_QEMU` names a file that does not exist | 7 |
//! | QEMU fails to start | `GMEMTEST_QEMU` is a script that complains and exits 1 | 8 |
//! | the kernel does not reach init | the case boots with `rdinit=/no-such-init` | 9 |
//! | the result port is silent | the case boots with `8250.nr_uarts=1`: no ttyS1 | 10 |
//! | the disk fills while building | make writes into a 64 KB tmpfs (a mount namespace of its own) | 6 |

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn out_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/gmemtest/tests/faults")
        .join(name)
}

fn xtask(name: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_OUT", out_dir(name))
        .env("INSTA_UPDATE", "no");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A suite of one case on stock-7.3 booted with `cmdline`.
fn suite_with_cmdline(cmdline: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("cases")).unwrap();
    std::fs::create_dir_all(d.path().join("snapshots")).unwrap();
    std::fs::write(
        d.path().join("cases/boots.yaml"),
        format!("description: a boot that goes wrong\nkernels: [stock-7.3]\ncmdline: \"{cmdline}\"\nsteps:\n  - name: ok\n    probe: selftest\n"),
    )
    .unwrap();
    d
}

fn run_case(name: &str, suite: &Path) -> (Output, Duration) {
    let t = Instant::now();
    let o = xtask(name)
        .env("GMEMTEST_SUITE", suite)
        .args(["test", "--case", "boots"])
        .output()
        .unwrap();
    (o, t.elapsed())
}

#[test]
fn missing_qemu() {
    let o = xtask("no-qemu")
        .env("GMEMTEST_QEMU", "/nonexistent/qemu-system-x86_64")
        .args(["test", "--case", "gmem_caps", "--kernel", "stock-7.3"])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(7), "{t}");
    assert!(
        t.contains("QEMU is missing: cannot run /nonexistent/qemu-system-x86_64"),
        "{t}"
    );
    assert!(
        t.contains("0 passed, 1 failed (0 snapshot, 0 crash, 0 new, 1 error)"),
        "{t}"
    );
}

#[test]
fn qemu_that_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("qemu-system-x86_64");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: No such file or directory' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = xtask("qemu-fails")
        .env("GMEMTEST_QEMU", &fake)
        .args(["test", "--case", "gmem_caps", "--kernel", "stock-7.3"])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(8), "{t}");
    assert!(t.contains("QEMU failed to start"), "{t}");
    assert!(t.contains("exit code 1"), "{t}");
    assert!(t.contains("Could not access KVM kernel module"), "{t}");
}

#[test]
fn kernel_that_does_not_reach_init() {
    let suite = suite_with_cmdline("rdinit=/no-such-init");
    let (o, took) = run_case("no-init", suite.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(9), "{t}");
    assert!(t.contains("the kernel did not reach init"), "{t}");
    assert!(t.contains("No working init found"), "{t}");
    // Not judged as the case's crash or snapshot.
    assert!(t.contains("0 crash, 0 new, 1 error"), "{t}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn silent_result_port() {
    let suite = suite_with_cmdline("8250.nr_uarts=1");
    let (o, took) = run_case("silent-port", suite.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(10), "{t}");
    assert!(
        t.contains("the result port was silent: init started"),
        "{t}"
    );
    assert!(t.contains("cannot open the result port"), "{t}");
    assert!(t.contains("0 crash, 0 new, 1 error"), "{t}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// The stock kernel's build, in a cache of the test's own whose `kernels/`
/// is empty (so make runs) and whose sources, build trees and ccache are
/// the user's (so make has next to nothing to do), with the directory make
/// writes bzImage into replaced, in a mount namespace of its own, by a
/// 64 KB tmpfs. Nobody else sees that mount.
#[test]
fn disk_full_while_building() {
    let real = runner::paths::cache_dir().unwrap();
    let boot_dir = real.join("build/stock-7.3/src/out/arch/x86/boot");
    assert!(
        boot_dir.is_dir(),
        "{} is missing: the stock kernel is built by the earlier tests (cargo xtask build)",
        boot_dir.display()
    );
    let cache = tempfile::tempdir_in(&real).unwrap();
    for d in ["sources", "build", "ccache"] {
        std::os::unix::fs::symlink(real.join(d), cache.path().join(d)).unwrap();
    }
    let root = unsafe { libc::geteuid() } == 0;
    let o = Command::new("unshare")
        .args(if root { vec!["-m"] } else { vec!["-r", "-m"] })
        .args(["--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=64k gmemtest-full "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(&boot_dir)
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "--kernel", "stock-7.3"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_CACHE", cache.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(6), "{t}");
    assert!(
        t.contains("the disk is full: building kernel stock-7.3"),
        "{t}"
    );
    // What make said, kept in the error.
    assert!(
        t.contains("No space left on device") || t.contains("fixdep: not all data was written"),
        "{t}"
    );
    // Nothing half-written was published.
    let entries: Vec<_> = std::fs::read_dir(cache.path().join("kernels"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        entries.iter().all(|e| e.to_string_lossy().starts_with('.')),
        "a cache entry appeared: {entries:?}"
    );
    // The user's own build directory was never touched.
    assert!(boot_dir.join("bzImage").is_file());
}
