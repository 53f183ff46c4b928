//! No VM left behind: 50 runs of cases with every kind of ending (pass, a
//! probe that fails, an oops, a panic, a guest that hangs until its deadline,
//! a silent guest taken for hung, and the runner itself interrupted with
//! SIGINT and SIGTERM while a guest boots), then no QEMU the runner started
//! is alive and no temporary directory of its is left.
//!
//! The cases are written into a suite of the test's own (`GMEMTEST_SUITE`)
//! against the repository's kernels (stock-7.3 and nodirectmap-rfc, whose
//! GUP read of a page removed from the direct map oopses). Every process
//! the runner starts inherits a marker in its environment, which is how the
//! test finds them in /proc, whoever their parent is by then.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARKER_VAR: &str = "GMEMTEST_TEST_MARKER";

/// Processes whose environment holds `MARKER_VAR=marker`, with their command
/// lines.
fn marked_processes(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARKER_VAR}={marker}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // A zombie has no command line and is gone once reaped.
            if !cmd.is_empty() {
                found.push((pid, cmd));
            }
        }
    }
    found
}

/// Waits a little for the runner's children to be reaped, then asserts none
/// is left and the runner's temporary directory is empty.
fn assert_nothing_left(marker: &str, tmp: &Path, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = marked_processes(marker);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = marked_processes(marker);
    }
    assert!(
        left.is_empty(),
        "{after}: processes started by the runner are still alive: {left:#?}"
    );
    let stray: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        stray.is_empty(),
        "{after}: the runner left temporary files: {stray:?}"
    );
}

const GUP_OOPS_STEP: &str = "  - name: proc_self_mem
    probe: gup_read
    args: {flags: [MMAP, INIT_SHARED, NO_DIRECT_MAP], paths: [proc_self_mem]}
    timeout: 5
";

/// The cases, by the ending each is meant to have: (name prefix, count,
/// YAML, the outcome's `end`).
fn case_kinds() -> Vec<(&'static str, usize, String, &'static str)> {
    vec![
        (
            "pass",
            12,
            "kernels: [stock-7.3]\nsteps:\n  - name: ok\n    probe: selftest\n    timeout: 10\n"
                .into(),
            "completed",
        ),
        (
            "caps",
            6,
            "kernels: [stock-7.3]\nsteps:\n  - name: caps\n    probe: caps\n".into(),
            "completed",
        ),
        (
            "probe_fails",
            4,
            "kernels: [stock-7.3]\nsteps:\n  - name: fails\n    probe: selftest\n    args: {exit_code: 3}\n    timeout: 10\n"
                .into(),
            "completed",
        ),
        (
            "oops",
            6,
            format!("kernels: [nodirectmap-rfc]\nexpect_crash: true\nsteps:\n{GUP_OOPS_STEP}"),
            "completed",
        ),
        (
            "panic",
            6,
            format!(
                "kernels: [nodirectmap-rfc]\nexpect_crash: true\ncmdline: oops=panic\nsteps:\n{GUP_OOPS_STEP}"
            ),
            "kernel_panic",
        ),
        // The kernel panics and stays stopped (`panic=0`: no reboot) and
        // the case's silence detection is off: only the deadline ends it.
        (
            "deadline",
            5,
            format!(
                "kernels: [nodirectmap-rfc]\nexpect_crash: true\ntimeout: 10\nsilence: 0\ncmdline: oops=panic panic=0\nsteps:\n{GUP_OOPS_STEP}"
            ),
            "kernel_panic",
        ),
        (
            "silent",
            5,
            "kernels: [stock-7.3]\nexpect_crash: true\nsilence: 3\nsteps:\n  - name: sleep\n    probe: selftest\n    args: {sleep_ms: 60000}\n    timeout: 70\n"
                .into(),
            "hang",
        ),
    ]
}

fn write_suite(dir: &Path) -> Vec<(String, &'static str)> {
    std::fs::create_dir_all(dir.join("cases")).unwrap();
    std::fs::create_dir_all(dir.join("snapshots")).unwrap();
    let mut cases = Vec::new();
    for (prefix, n, body, end) in case_kinds() {
        for i in 0..n {
            let name = format!("{prefix}_{i:02}");
            std::fs::write(
                dir.join("cases").join(format!("{name}.yaml")),
                format!("description: lifecycle test, {prefix}\n{body}"),
            )
            .unwrap();
            cases.push((name, end));
        }
    }
    cases
}

struct Env {
    suite: tempfile::TempDir,
    out: PathBuf,
    tmp: tempfile::TempDir,
    marker: String,
}

impl Env {
    fn xtask(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("GMEMTEST_SUITE", self.suite.path())
            .env("GMEMTEST_OUT", &self.out)
            .env("TMPDIR", self.tmp.path())
            .env(MARKER_VAR, &self.marker)
            .env("INSTA_UPDATE", "no")
            .args(args);
        c
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the runner did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the runner on one case, waits for its QEMU to be up, interrupts
/// it with `signal` after `delay` (mid-boot), and checks that it says so
/// with exit code 130 and leaves nothing.
fn interrupt_mid_boot(env: &Env, case: &str, signal: i32, delay: Duration) {
    let mut child = env
        .xtask(&["test", "--case", case, "--no-batch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up_by = Instant::now() + Duration::from_secs(120);
    loop {
        if marked_processes(&env.marker)
            .iter()
            .any(|(_, cmd)| cmd.starts_with(runner::boot::QEMU))
        {
            break;
        }
        if let Some(s) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the runner ended ({s}) before its QEMU was seen:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < up_by, "no QEMU started within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(delay);
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        status.code(),
        Some(130),
        "signal {signal}: expected exit code 130:\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_nothing_left(
        &env.marker,
        env.tmp.path(),
        &format!("after signal {signal} to the runner"),
    );
}

#[test]
fn fifty_runs_of_every_ending_leave_no_vm_and_no_temporary_directory() {
    let started = Instant::now();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gmemtest/tests/lifecycle");
    let _ = std::fs::remove_dir_all(&out);
    let env = Env {
        suite: tempfile::tempdir().unwrap(),
        out: out.clone(),
        tmp: tempfile::tempdir().unwrap(),
        marker: format!("{}-{}", std::process::id(), started.elapsed().as_nanos()),
    };
    let cases = write_suite(env.suite.path());
    assert_eq!(cases.len(), 44);

    // 44 cases, a boot each, two at a time.
    let run = env
        .xtask(&["test", "--no-batch", "-j", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // No snapshots in this suite: every pair is NEW (exit 1); an ERROR
    // (exit 4) or an unexpected crash (3) would be a framework fault.
    assert_eq!(
        run.status.code(),
        Some(1),
        "expected only new snapshots:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("0 passed, 44 failed (0 snapshot, 0 crash, 44 new, 0 error)"),
        "{stdout}"
    );
    // Every ending here is a restored VM's (the default), its saving boots
    // included; no case fell back to a boot.
    assert!(
        stderr.contains("44 VMs restored from saved ones"),
        "{stderr}"
    );
    assert!(!stderr.contains("booting instead of restoring"), "{stderr}");
    for (name, end) in &cases {
        let kernel = if ["oops", "panic", "deadline"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            "nodirectmap-rfc"
        } else {
            "stock-7.3"
        };
        let dir = out.join("logs").join(kernel).join(name);
        let outcome = std::fs::read_to_string(dir.join("outcome.yaml"))
            .unwrap_or_else(|e| panic!("{name}: no outcome.yaml: {e}\n{stderr}"));
        assert!(
            outcome.contains(&format!("\nend: {end}\n")),
            "{name}: expected `end: {end}`:\n{outcome}"
        );
        let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
        match name.split('_').next().unwrap() {
            "oops" => assert!(
                outcome.contains("BUG: unable to handle kernel paging request"),
                "{name}: no oops in the outcome:\n{outcome}"
            ),
            "panic" => assert!(
                console.contains("Kernel panic - not syncing: Fatal exception"),
                "{name}: no panic in the console:\n{console}"
            ),
            "deadline" => {
                assert!(
                    console.contains("Kernel panic - not syncing: Fatal exception"),
                    "{name}: the kernel did not stop as meant:\n{console}"
                );
                // Killed at its deadline (10 s), not ended by itself.
                let line = stderr
                    .lines()
                    .find(|l| l.contains(&format!("] {name} on nodirectmap-rfc: NEW")))
                    .unwrap_or_else(|| panic!("no verdict line for {name}:\n{stderr}"));
                let secs: f64 = line
                    .rsplit('(')
                    .next()
                    .and_then(|t| t.split('s').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("no time in {line}"));
                assert!(secs >= 10.0, "{name} ended before its deadline: {line}");
            }
            "silent" => assert!(
                console.contains(runner::boot::NMI_NOTE),
                "{name}: no NMI was sent:\n{console}"
            ),
            "probe" => assert!(outcome.contains("result: exited 3"), "{outcome}"),
            _ => assert!(outcome.contains("result: exited 0"), "{outcome}"),
        }
    }
    assert_nothing_left(&env.marker, env.tmp.path(), "after the 44 cases");

    // Six more, each interrupted while its guest boots: three with SIGINT
    // (Ctrl-C), three with SIGTERM, at different points of the boot.
    for (i, signal) in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGTERM,
    ]
    .into_iter()
    .enumerate()
    {
        // Cases whose boots last seconds, so the signal lands mid-boot.
        let case = if i % 2 == 0 {
            "silent_00"
        } else {
            "deadline_00"
        };
        interrupt_mid_boot(&env, case, signal, Duration::from_millis(150 * i as u64));
    }
    eprintln!(
        "50 runs (44 cases, 6 interrupted) in {:.0?}, nothing left",
        started.elapsed()
    );
}

/// A kernel build interrupted (SIGINT, then SIGTERM in a second run) stops
/// at once, with exit code 130, and leaves no make or compiler behind. The
/// build is the stock kernel's, in a cache of the test's own whose
/// `kernels/` is empty and whose build trees are the user's (make has next
/// to nothing to do, so the signal lands while it walks the tree).
#[test]
fn an_interrupted_kernel_build_leaves_no_make_behind() {
    let real = runner::paths::cache_dir().unwrap();
    assert!(
        real.join("build/stock-7.3/src/out").is_dir(),
        "the stock kernel's build tree is missing: build it first (cargo xtask build)"
    );
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let cache = tempfile::tempdir_in(&real).unwrap();
        for d in ["sources", "build", "ccache"] {
            std::os::unix::fs::symlink(real.join(d), cache.path().join(d)).unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let marker = format!("build-{}-{signal}", std::process::id());
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("GMEMTEST_CACHE", cache.path())
            .env("TMPDIR", tmp.path())
            .env(MARKER_VAR, &marker)
            .args(["build", "--kernel", "stock-7.3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let up_by = Instant::now() + Duration::from_secs(60);
        while !marked_processes(&marker)
            .iter()
            .any(|(_, cmd)| cmd.starts_with("make "))
        {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the build ended before make was seen"
            );
            assert!(Instant::now() < up_by, "no make started within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = Instant::now();
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = wait_with_deadline(&mut child, Duration::from_secs(20));
        let took = sent.elapsed();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(130), "signal {signal}:\n{stderr}");
        assert!(
            took < Duration::from_secs(5),
            "signal {signal}: the runner took {took:?} to stop"
        );
        assert_nothing_left(
            &marker,
            tmp.path(),
            &format!("a build after signal {signal}"),
        );
    }
}

/// Interrupted in the middle of a step, a pair is `interrupted`: not a
/// snapshot failure (its step result reads `interrupted`, which a snapshot
/// never holds for a step that sleeps to its end), not compared, not
/// blessed; and the summary counts it on a line of its own.
#[test]
fn a_pair_interrupted_mid_step_is_interrupted_never_a_snapshot_and_never_blessed() {
    use std::io::BufRead;
    let started = Instant::now();
    let env = Env {
        suite: tempfile::tempdir().unwrap(),
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gmemtest/tests/interrupted"),
        tmp: tempfile::tempdir().unwrap(),
        marker: format!("interrupted-{}", std::process::id()),
    };
    let suite = env.suite.path();
    std::fs::create_dir_all(suite.join("cases")).unwrap();
    std::fs::create_dir_all(suite.join("snapshots")).unwrap();
    std::fs::write(
        suite.join("cases/napper.yaml"),
        "description: sleeps through its one step\nkernels: [stock-7.3]\nsilence: 0\nsteps:\n  - name: nap\n    probe: selftest\n    args: {sleep_ms: 60000}\n    timeout: 70\n",
    )
    .unwrap();
    // A snapshot the interrupted outcome would differ from.
    let snap = suite.join("snapshots/napper@stock-7.3.snap");
    let blessed = "---\nsource: runner/src/snapshot.rs\ndescription: \"sleeps through its one step\\n\"\n---\ncase: napper\nkernel: stock-7.3\nend: completed\nsteps:\n  - name: nap\n    probe: selftest\n    result: exited 0\n";
    std::fs::write(&snap, blessed).unwrap();

    for command in [
        &["run", "napper", "--kernel", "stock-7.3"][..],
        &["bless", "--case", "napper"][..],
    ] {
        let mut child = env
            .xtask(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // stderr, line by line: `run` streams the console, where init
        // says when the step starts; `bless` does not, so its QEMU being
        // up (and a moment for the guest to reach the step) has to do.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l.clone());
                all += &l;
                all.push('\n');
            }
            all
        });
        let up_by = Instant::now() + Duration::from_secs(120);
        let streams = command[0] == "run";
        loop {
            let in_step = rx
                .try_iter()
                .any(|l| l.contains("gmemtest: step nap (probe selftest)"));
            let qemu_up = marked_processes(&env.marker)
                .iter()
                .any(|(_, cmd)| cmd.starts_with(runner::boot::QEMU));
            if in_step || (!streams && qemu_up) {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{command:?}: the runner ended before the step began"
            );
            assert!(Instant::now() < up_by, "{command:?}: no step within 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        if !streams {
            std::thread::sleep(Duration::from_secs(3));
        }
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let status = wait_with_deadline(&mut child, Duration::from_secs(30));
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = reader.join().unwrap();
        let all = format!("{stdout}\n{stderr}");
        assert_eq!(status.code(), Some(130), "{command:?}:\n{all}");
        assert!(
            stderr.contains("[1/1] napper on stock-7.3: interrupted"),
            "{command:?}: no interrupted verdict:\n{all}"
        );
        assert!(
            stdout.contains("1 interrupted (the runner was stopped"),
            "{command:?}: no interrupted count:\n{all}"
        );
        assert!(
            !all.contains("FAIL (snapshot)") && !all.contains("snapshot diff"),
            "{command:?}: compared with its snapshot:\n{all}"
        );
        assert_eq!(
            std::fs::read_to_string(&snap).unwrap(),
            blessed,
            "{command:?}: the snapshot changed"
        );
        assert!(
            !suite.join("snapshots/napper@stock-7.3.snap.new").exists(),
            "{command:?}: a .snap.new was written"
        );
        assert_nothing_left(&env.marker, env.tmp.path(), &format!("{command:?}"));
    }
    eprintln!("interrupted twice in {:.0?}", started.elapsed());
}
