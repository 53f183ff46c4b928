//! `bless` does not make a failure the reference unless asked by name: a
//! case whose step exits 3 is refused (exit 1, verdict NEW, the failure
//! named, no snapshot written), and recorded with `--accept-failures`; then
//! `compare` between the two kernels flags the failure on both sides.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(suite: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_SUITE", suite)
        .env("GMEMTEST_OUT", out)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_failure_is_blessed_only_when_accepted_and_compare_flags_it() {
    let d = tempfile::tempdir().unwrap();
    let (suite, out) = (d.path().join("suite"), d.path().join("out"));
    std::fs::create_dir_all(suite.join("cases")).unwrap();
    std::fs::create_dir_all(suite.join("snapshots")).unwrap();
    std::fs::write(
        suite.join("cases/fails.yaml"),
        "description: a step that fails\nkernels: [stock-7.3, nodirectmap-reviewed]\nsteps:\n  - {name: bad, probe: selftest, args: {exit_code: 3}}\n",
    )
    .unwrap();
    let snap = suite.join("snapshots/fails@stock-7.3.snap");

    let o = xtask(&suite, &out, &["bless", "-c", "fails", "-k", "stock-7.3"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("not blessed: the outcome holds a failure (step bad: exited 3)")
            && t.contains("--accept-failures"),
        "{t}"
    );
    assert!(!snap.exists(), "nothing written");

    let o = xtask(&suite, &out, &["bless", "-c", "fails", "--accept-failures"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(snap.exists());

    // Blessing what is already the reference needs no flag.
    let o = xtask(&suite, &out, &["bless", "-c", "fails", "-k", "stock-7.3"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = xtask(
        &suite,
        &out,
        &["compare", "stock-7.3", "nodirectmap-reviewed"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("A holds a failure: step bad: exited 3; B holds a failure: step bad: exited 3"),
        "{t}"
    );
}

/// A flavor's outcomes are compared with the variant's snapshots and never
/// become them: `bless --flavor debug` is refused before anything is built
/// or booted (exit 4), the variant's snapshot untouched, no `.snap.new`.
#[test]
fn blessing_a_flavor_is_refused_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (suite, out) = (d.path().join("suite"), d.path().join("out"));
    std::fs::create_dir_all(suite.join("cases")).unwrap();
    std::fs::create_dir_all(suite.join("snapshots")).unwrap();
    std::fs::write(
        suite.join("cases/c.yaml"),
        "description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: caps}\n",
    )
    .unwrap();
    let snap = suite.join("snapshots/c@stock-7.3.snap");
    std::fs::write(&snap, "---\nsource: x\n---\ncase: c\n").unwrap();
    let t = std::time::Instant::now();
    let o = xtask(
        &suite,
        &out,
        &["bless", "-c", "c", "-k", "stock-7.3", "--flavor", "debug"],
    );
    let said = text(&o);
    assert_eq!(o.status.code(), Some(4), "{said}");
    assert!(
        said.contains("bless writes snapshots from normal kernels only: stock-7.3+debug is the debug flavor of stock-7.3")
            && said.contains("bless without --flavor"),
        "{said}"
    );
    assert!(
        !said.contains("kernel stock-7.3+debug:"),
        "nothing built: {said}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(60));
    let left: Vec<_> = std::fs::read_dir(suite.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["c@stock-7.3.snap"]);
    assert_eq!(
        std::fs::read_to_string(&snap).unwrap(),
        "---\nsource: x\n---\ncase: c\n"
    );
}
