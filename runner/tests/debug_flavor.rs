//! The suite on the debug flavor of `nodirectmap-reviewed` (the series
//! people review): KASAN, KFENCE, lockdep, DEBUG_VM, DEBUG_PAGEALLOC, list
//! and SLUB debugging, page owner and poisoning, compared with the normal
//! kernel's snapshots, each case restored from the flavor's saved VMs as
//! `cargo xtask test --flavor debug -k nodirectmap-reviewed` runs it. On a fresh machine the debug kernel is
//! built here, through the normal build path (about 8 minutes cold, see the
//! README's "Debug flavors").
//!
//! No checker may report anything (a report is a crash: KASAN, KFENCE,
//! lockdep, DEBUG_VM, list corruption, ...). The pairs that differ from
//! their snapshot are exactly the ones the flavor itself changes, each read
//! in its console and explained below, and they differ only in the
//! observations it changes.

use runner::kernel::Flavor;
use runner::paths::Paths;
use runner::session::{Schedule, Session};
use runner::suite::{RunOptions, Suite, Verdict};

const VARIANT: &str = "nodirectmap-reviewed";

/// The cases whose outcome DEBUG_PAGEALLOC changes, not the series: it maps
/// the whole direct map with 4 KB pages (no 2 MB or 1 GB page, so
/// DirectMap1G is not reported, and no split ever grows DirectMap4k or
/// needs a page-table page, which is where `fault_inject` makes
/// set_direct_map_*() fail), and it unmaps every freed page (so a page read
/// through /dev/mem after its guest_memfd is released gives EFAULT unless
/// something has taken it again).
const FLAVOR_CHANGES: [&str; 4] = [
    "gmem_direct_map",
    "nodirectmap_bug_on",
    "nodirectmap_sweep",
    "nodirectmap_zap",
];

/// The observation fields those changes touch (nothing else may differ):
/// the DirectMap counters, /dev/mem's reading of each page, and the fault
/// injection that no longer fires.
const CHANGED_FIELDS: [&str; 10] = [
    "direct_map_1g",
    "direct_map_2m",
    "direct_map_4k",
    "present",
    "EFAULT",
    "injected",
    "failed_in_set_direct_map",
    "direct_map_after",
    "result",
    "retry",
];

#[test]
fn the_reviewed_series_under_the_kernels_checkers() {
    let mut paths = Paths::of_this_checkout().unwrap();
    paths.out = paths.out.join("tests").join("debug_flavor");
    let suite = Suite::load(paths, &[], &[VARIANT.to_string()])
        .and_then(|s| s.flavored(Flavor::Debug))
        .expect("the suite on the debug flavor");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut session = Session::new(suite, RunOptions::default(), Schedule::default());
    let report = rt.block_on(session.run(&|_| {})).expect("the session");
    eprintln!("{}", report.summary_table());

    // The checkers were really there.
    let first = report.runs().next().expect("a run");
    let console = std::fs::read_to_string(first.console_log()).unwrap();
    for on in [
        "KernelAddressSanitizer initialized (generic)",
        "kfence: initialized",
        "Lock dependency validator",
    ] {
        assert!(
            console.contains(on),
            "{on:?} not in {}",
            first.console_log().display()
        );
    }
    let cmdline = console
        .lines()
        .find(|l| l.contains("Kernel command line:"))
        .expect("the command line in the console");
    for p in Flavor::Debug.boot_params() {
        assert!(cmdline.split(' ').any(|w| w == *p), "{p} not in {cmdline}");
    }

    let mut wrong = String::new();
    for r in report.runs() {
        assert_eq!(r.kernel, format!("{VARIANT}+debug"));
        assert_eq!(r.outcome.as_ref().map(|o| o.kernel.as_str()), Some(VARIANT));
        let expected_change = FLAVOR_CHANGES.contains(&r.case.as_str());
        let ok = match r.verdict {
            Verdict::Pass => true,
            Verdict::Mismatch if expected_change => {
                let diff = r.snapshot_diff.as_deref().unwrap_or("");
                let odd: Vec<&str> = diff
                    .lines()
                    .filter(|l| {
                        (l.starts_with('+') || l.starts_with('-'))
                            && !l.starts_with("+++")
                            && !l.starts_with("---")
                    })
                    .filter(|l| {
                        // Inside a step's observation (deeper than the
                        // step's own fields), and one of the fields above.
                        let line = &l[1..];
                        let indent = line.len() - line.trim_start().len();
                        let key = line.trim_start().split(':').next().unwrap_or("");
                        indent < 4 || !CHANGED_FIELDS.contains(&key)
                    })
                    .collect();
                if !odd.is_empty() {
                    wrong += &format!(
                        "\n=== {} differs beyond what the flavor changes: {odd:?}\n",
                        r.case
                    );
                }
                odd.is_empty()
            }
            _ => false,
        };
        if !ok {
            wrong += &format!("\n=== {} on {}\n{}", r.case, r.kernel, r.failure_report());
        }
    }
    assert!(wrong.is_empty(), "{wrong}");
}
