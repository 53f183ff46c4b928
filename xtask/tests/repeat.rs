//! Determinism, end to end: `cargo xtask test --repeat N`.
//!
//! 1. Every pair that expects no crash, twice, in shared boots (`--boot`):
//!    the same outcome both times, each matching its snapshot, no case run
//!    again alone (a shared boot that needed a rerun would hide an
//!    interaction between cases).
//! 2. A case made to differ between runs (the `selftest` probe's `random`)
//!    is reported as a flake naming the field and each run's value, with
//!    its own exit code. Its runs are restored from one saved VM: they
//!    differ only because init reseeds the kernel's random generator with
//!    the bytes handed over with each plan.

use std::path::Path;
use std::process::Command;

fn xtask(out: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "GMEMTEST_OUT",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/gmemtest/tests")
                .join(out),
        )
        .env("INSTA_UPDATE", "no");
    c
}

#[test]
fn the_suite_without_crashes_gives_the_same_outcomes_twice() {
    let run = xtask("repeat")
        .args(["test", "--boot", "--repeat", "2", "--skip-crashing"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("no flakes: every pair gave the same outcome in all 2 rounds"),
        "{stdout}"
    );
    assert!(!stdout.contains("run again alone"), "a rerun:\n{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains(" x 2 rounds in "))
        .unwrap_or_else(|| panic!("no rounds line:\n{stdout}"));
    let pairs: usize = line.split(' ').next().unwrap().parse().unwrap();
    assert!(pairs >= 40, "{line}");
    assert!(
        stdout.contains(&format!("round 2: {pairs} of {pairs} passed")),
        "{stdout}"
    );
}

#[test]
fn an_outcome_that_changes_between_boots_is_a_flake() {
    let suite = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(suite.path().join("cases")).unwrap();
    std::fs::create_dir_all(suite.path().join("snapshots")).unwrap();
    std::fs::write(
        suite.path().join("cases/coin.yaml"),
        "description: differs from boot to boot\nkernels: [stock-7.3]\nsteps:\n  - name: toss\n    probe: selftest\n    args: {random: true}\n",
    )
    .unwrap();
    std::fs::write(
        suite.path().join("cases/steady.yaml"),
        "description: the same every boot\nkernels: [stock-7.3]\nsteps:\n  - name: ok\n    probe: selftest\n",
    )
    .unwrap();
    let run = xtask("flake")
        .env("GMEMTEST_SUITE", suite.path())
        .args(["test", "--repeat", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(stderr.contains("restored from saved ones"), "{stderr}");
    assert!(stdout.contains("1 flake (the outcome differed"), "{stdout}");
    let report = stdout.split("1 flake (").nth(1).unwrap();
    assert!(
        report.contains("coin on stock-7.3:\n    steps[0].observation.random:\n        run 1: "),
        "{report}"
    );
    assert!(report.contains("        run 3: "), "{report}");
    assert!(!report.contains("steady"), "{report}");
}
