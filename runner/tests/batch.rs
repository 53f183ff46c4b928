//! Batch mode gives what one boot per case gives.
//!
//! (The whole suite in shared boots, every pair judged from its section
//! with no rerun and matching the snapshots that the `cases` harness checks
//! boot by boot, is `xtask/tests/repeat.rs`: twice, through the command.)
//!
//! A batch in which a case crashes the kernel (the RFC's GUP oops): the
//!    case before it keeps its batched verdict, the crashing case runs again
//!    alone, the cases after it run in a fresh shared boot, and every outcome
//!    equals the one from a boot of its own.

use std::sync::Mutex;

use runner::batch::{self, Unit};
use runner::paths::Paths;
use runner::suite::{self, BootMode, CaseRun, RerunReason, RunOptions, Suite, Verdict};

fn prepared(suite: &Suite) -> suite::Prepared {
    runner::setup::host().expect("setup");
    suite::prepare(suite).expect("prepare")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// This checkout, with logs of its own (the `cases` harness may run beside
/// it under cargo-nextest, in the same log directories otherwise).
fn paths() -> Paths {
    let mut p = Paths::of_this_checkout().unwrap();
    p.out = p.out.join("tests").join("batch");
    p
}

/// Shared boots are what cases get when they boot (`--boot`), not when
/// they start from saved VMs.
fn booting() -> RunOptions {
    RunOptions {
        boot: true,
        ..Default::default()
    }
}

/// The tests share log directories (and two sets of VMs would slow each
/// other): one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_crash_in_a_batch_reruns_the_case_alone_and_the_rest_in_a_fresh_boot() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let names = [
        "gmem_caps",
        "nodirectmap_gup",
        "gmem_create",
        "gmem_fallocate",
    ]
    .map(String::from);
    let kernel = "nodirectmap-rfc";
    let suite = Suite::load(paths(), &names, &[kernel.to_string()]).unwrap();
    let prepared = prepared(&suite);
    // In the plan's order; nodirectmap_gup expects its oops on the RFC, so
    // the scheduler would never batch it: this unit forces it in.
    let cases: Vec<_> = names
        .iter()
        .map(|n| suite.cases.iter().find(|c| &c.name == n).unwrap())
        .collect();
    let unit = Unit {
        kernel,
        cases: cases.clone(),
    };
    let built = prepared.kernels.iter().find(|k| k.name == kernel).unwrap();
    let order = Mutex::new(Vec::new());
    let note = |r: &CaseRun| order.lock().unwrap().push(r.case.clone());
    let rt = rt();
    let batched = rt.block_on(batch::run_unit(
        &suite.paths,
        &unit,
        built,
        &prepared,
        booting(),
        &note,
    ));
    let by = |n: &str| batched.iter().find(|r| r.case == n).unwrap();

    assert!(
        matches!(by("gmem_caps").boot, BootMode::Batched { cases: 4, .. }),
        "the case before the crash keeps its section: {:?}",
        by("gmem_caps").boot
    );
    match &by("nodirectmap_gup").boot {
        BootMode::Rerun {
            why: RerunReason::CrashedInBatch { title },
        } => assert!(
            title.contains("unable to handle kernel paging request"),
            "{title}"
        ),
        other => panic!("the crashing case runs again alone, not {other:?}"),
    }
    for n in ["gmem_create", "gmem_fallocate"] {
        assert!(
            matches!(by(n).boot, BootMode::Batched { cases: 2, .. }),
            "{n} runs again in a fresh shared boot: {:?}",
            by(n).boot
        );
    }
    assert_eq!(
        *order.lock().unwrap(),
        [
            "gmem_caps",
            "nodirectmap_gup",
            "gmem_create",
            "gmem_fallocate"
        ]
    );
    let batch_console = std::fs::read_to_string(
        batch::batch_dir(&suite.paths, kernel, "gmem_caps", Default::default()).join("console.log"),
    )
    .unwrap();
    assert!(
        batch_console.contains("BUG: unable to handle page fault"),
        "the first boot saw the oops"
    );

    // The same four, each in a boot of its own: the same outcomes.
    for c in &cases {
        let alone = rt
            .block_on(runner::pair::run_pair(
                &suite.paths,
                c,
                built,
                &prepared,
                booting(),
            ))
            .unwrap();
        let b = by(&c.name);
        assert_eq!(
            b.outcome, alone.outcome,
            "{}: batched and alone differ",
            c.name
        );
        assert_eq!(b.verdict, Verdict::Pass, "{}", b.failure_report());
        assert_eq!(alone.verdict, Verdict::Pass, "{}", alone.failure_report());
    }
}
