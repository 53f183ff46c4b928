//! A case started from a saved VM gives what a case given a boot of its own
//! gives: every pair of the suite (every kernel; the direct-map counters,
//! the first split of the direct map, the expected oopses, panics and the
//! hang included) runs both ways, and the normalized outcomes are equal.
//!
//! Why they can be: the VM is saved when init waits for its plan, before
//! anything of a case has run (see `runner/src/saved_vm.rs`). What they
//! must not share, the random generator's state, is covered by
//! `xtask/tests/repeat.rs`: a case printing a random number differs
//! between restores of one saved VM.

use runner::paths::Paths;
use runner::session::{Schedule, Session};
use runner::suite::{BootMode, CaseRun, RunOptions, Suite};

fn run(out: &str, opts: RunOptions) -> Vec<CaseRun> {
    let mut paths = Paths::of_this_checkout().unwrap();
    paths.out = paths.out.join("tests").join(out);
    let suite = Suite::load(paths, &[], &[]).expect("the suite");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The one serialized setup, as a session does before it prepares: on a
    // fresh machine this test may be the first to need QEMU and sources.
    runner::setup::host().expect("setup");
    let prepared = std::sync::Arc::new(runner::suite::prepare(&suite).expect("prepare"));
    if !opts.boot {
        // Every machine saved first: each case below is then restored (a
        // machine's first run would otherwise boot, save on the way and go on).
        for k in &prepared.kernels {
            let pairs = suite.pairs();
            let cases: Vec<_> = pairs
                .iter()
                .filter(|(_, kn)| *kn == k.name)
                .map(|(c, _)| *c)
                .collect();
            rt.block_on(runner::pair::saved_vms_for(
                &suite.paths,
                &cases,
                k,
                &prepared,
                false,
            ))
            .expect("the saved VMs");
        }
    }
    let schedule = Schedule {
        batch: false,
        jobs: None,
        ..Schedule::alone()
    };
    let mut session = Session::new(suite, opts, schedule).with_prepared(prepared);
    let report = rt.block_on(session.run(&|_| {})).expect("the session");
    eprintln!("{out}:\n{}", report.summary_table());
    report.runs().cloned().collect()
}

#[test]
fn every_case_restored_gives_the_outcome_of_its_own_boot() {
    let booted = run(
        "restore-booted",
        RunOptions {
            boot: true,
            ..Default::default()
        },
    );
    let restored = run("restore-restored", RunOptions::default());
    assert_eq!(booted.len(), restored.len());
    assert!(booted.len() >= 50, "{} pairs", booted.len());

    let mut wrong = String::new();
    for b in &booted {
        let r = restored
            .iter()
            .find(|r| r.case == b.case && r.kernel == b.kernel)
            .unwrap_or_else(|| panic!("{}@{} was not restored", b.case, b.kernel));
        let pair = format!("{}@{}", b.case, b.kernel);
        if b.boot != BootMode::Alone {
            wrong += &format!("\n{pair}: booted as {:?}", b.boot);
        }
        if r.boot != BootMode::Restored {
            wrong += &format!("\n{pair}: not restored: {:?}", r.boot);
        }
        let (Some(bo), Some(ro)) = (&b.outcome, &r.outcome) else {
            wrong += &format!("\n{pair}: no outcome ({:?}, {:?})", b.reason, r.reason);
            continue;
        };
        if bo != ro {
            let yaml = |o| serde_yaml::to_string(o).unwrap();
            let diff = similar::TextDiff::from_lines(&yaml(bo), &yaml(ro))
                .unified_diff()
                .header("booted", "restored")
                .to_string();
            wrong += &format!("\n{pair}: the outcomes differ:\n{diff}");
        }
        if b.verdict != r.verdict {
            wrong += &format!("\n{pair}: {:?} booted, {:?} restored", b.verdict, r.verdict);
        }
        // The restored console holds the boot's, then the case's.
        let console = std::fs::read_to_string(r.console_log()).unwrap();
        let linux = console.find("Linux version");
        let marker = console.find(&gmem_protocol::case_marker(&r.case));
        if !matches!((linux, marker), (Some(l), Some(m)) if l < m) {
            wrong += &format!(
                "\n{pair}: the restored console lacks the boot or the case marker ({})",
                r.console_log().display()
            );
        }
    }
    assert!(wrong.is_empty(), "restored and booted differ:{wrong}");
}
