//! Bad input through the command people run: a malformed case stops
//! `cargo xtask test` before anything is built or booted, with exit code 4
//! and one error that names the file and the field; a case's command line
//! that would run a host command (vng hands it to a shell) runs nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn suite(case: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("cases")).unwrap();
    std::fs::create_dir_all(d.path().join("snapshots")).unwrap();
    std::fs::write(d.path().join("cases/bad.yaml"), case).unwrap();
    d
}

fn xtask_test(suite: &Path, backend: &str) -> (i32, String, Duration) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_SUITE", suite)
        .env(
            "GMEMTEST_OUT",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gmemtest/tests/bad_input_cli"),
        )
        .args(["test", "--backend", backend])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        t.elapsed(),
    )
}

#[test]
fn a_case_cannot_make_the_host_run_a_command() {
    let marker = std::env::temp_dir().join(format!("gmemtest-pwned-{}", std::process::id()));
    let s = suite(&format!(
        "description: d\nkernels: [stock-7.3]\ncmdline: \"quiet; touch {}\"\nsteps:\n  - {{name: a, probe: caps}}\n",
        marker.display()
    ));
    for backend in ["hermetic", "vng"] {
        let (code, err, took) = xtask_test(s.path(), backend);
        assert_eq!(code, 4, "{backend}: {err}");
        assert!(
            err.contains("cases/bad.yaml: field `cmdline`: `quiet;` holds `;`"),
            "{backend}: {err}"
        );
        assert!(!err.contains("booting"), "{backend}: {err}");
        assert!(
            !marker.exists(),
            "{backend}: the host ran the case's command"
        );
        // Refused on loading: no kernel build, no boot.
        assert!(took < Duration::from_secs(60), "{backend}: {took:?}");
    }
}

#[test]
fn a_malformed_case_stops_the_run_with_its_file_and_field() {
    let s = suite(
        "description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: no_such_probe}\n",
    );
    let (code, err, _) = xtask_test(s.path(), "hermetic");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("cases/bad.yaml: field `steps[0].probe`: no probe `no_such_probe`"),
        "{err}"
    );
}

/// `cargo xtask list | head -3`: the reader goes away; xtask ends quietly
/// (SIGPIPE), never with a panic. The read end is closed before xtask has
/// printed anything, so that its first line meets the closed pipe.
#[test]
fn list_into_a_closed_pipe_ends_without_a_panic() {
    for _ in 0..3 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("list")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGPIPE),
            "{:?}: {err}",
            out.status
        );
    }
}
