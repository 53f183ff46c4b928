//! The end-to-end suite as tests: one test per (case, kernel), named
//! `CASE@KERNEL`, each in a boot of its own (the reference that batch mode
//! is checked against). The first test of a kernel to run builds what it
//! needs (setup, that kernel, the initramfs); listing builds nothing. Under
//! cargo-nextest every test is a process of its own, so each prepares only
//! its own kernel (a cache hit), and `--partition count:K/N` shards them.
//! The pairs run through the same session as `cargo xtask test`; this
//! harness only turns each verdict into a test's result.

use libtest_mimic::{Arguments, Failed, Trial};
use std::sync::{Arc, Mutex};

use runner::paths::Paths;
use runner::session::{Schedule, Session};
use runner::suite::{CaseRun, Suite, Verdict};

fn main() {
    let mut args = Arguments::from_args();
    let suite = match Paths::of_this_checkout().and_then(|p| Suite::load(p, &[], &[])) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot load the suite: {e:#}");
            std::process::exit(101);
        }
    };
    // As many VMs at once as `cargo xtask test` runs by default (one per
    // CPU, as memory allows); `--test-threads` overrides.
    let cases: Vec<_> = suite.cases.iter().collect();
    args.test_threads
        .get_or_insert(runner::batch::default_jobs(&cases));
    let junit = suite.paths.out.join("junit-cases.xml");
    let session = Session::new(suite, Default::default(), Schedule::alone()).junit_to(junit);
    let pairs: Vec<(String, String)> = session
        .pairs()
        .into_iter()
        .map(|(c, k)| (c.name.clone(), k.to_string()))
        .collect();
    let session = Arc::new(session);
    let runs: Arc<Mutex<Vec<CaseRun>>> = Arc::new(Mutex::new(Vec::new()));
    let mut trials = Vec::new();
    for (case, kernel) in pairs {
        let (session, runs) = (session.clone(), runs.clone());
        trials.push(Trial::test(format!("{case}@{kernel}"), move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let run = rt.block_on(session.run_alone(&case, &kernel));
            let verdict = run.verdict;
            let msg = run.failure_report();
            runs.lock().unwrap().push(run);
            match verdict {
                Verdict::Pass => Ok(()),
                _ => Err(Failed::from(msg)),
            }
        }));
    }
    let listing = args.list;
    let conclusion = libtest_mimic::run(&args, trials);
    if !listing {
        let runs = std::mem::take(&mut *runs.lock().unwrap());
        if !runs.is_empty() {
            let n = runs.len();
            let plan = runner::session::Plan {
                pairs: n,
                boots: n,
                shared: 0,
                restored: false,
                jobs: args.test_threads.unwrap_or(1),
                rounds: 1,
            };
            match session.report(plan, vec![runs], n, Default::default()) {
                Ok(report) => {
                    eprintln!("\n{}", report.summary_table());
                    if let Some(path) = &report.junit {
                        eprintln!("JUnit report: {}", path.display());
                    }
                }
                Err(e) => eprintln!("error: the report: {e:#}"),
            }
        }
    }
    conclusion.exit();
}
