//! The end-to-end suite as tests: one test per (case, kernel), named
//! `CASE@KERNEL`, each in a boot of its own (the reference that batch mode
//! is checked against). The first test of a kernel to run builds what it
//! needs (setup, that kernel, the initramfs); listing builds nothing. Under
//! cargo-nextest every test is a process of its own, so each prepares only
//! its own kernel (a cache hit), and `--partition count:K/N` shards them.

use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use runner::paths::Paths;
use runner::suite::{self, CaseRun, Prepared, Suite, Verdict};

fn main() {
    let mut args = Arguments::from_args();
    // As many VMs at once as `cargo xtask test` runs by default (one per
    // CPU, as memory allows); `--test-threads` overrides.
    let suite = match Paths::of_this_checkout().and_then(|p| Suite::load(p, &[], &[])) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: cannot load the suite: {e:#}");
            std::process::exit(101);
        }
    };
    // Per kernel, prepared by the first of its tests to run.
    let prepared: Arc<HashMap<String, OnceLock<Result<Prepared, String>>>> = Arc::new(
        suite
            .recipes
            .iter()
            .map(|r| (r.name.clone(), OnceLock::new()))
            .collect(),
    );
    let runs: Arc<Mutex<Vec<CaseRun>>> = Arc::new(Mutex::new(Vec::new()));
    let cases: Vec<_> = suite.cases.iter().collect();
    args.test_threads
        .get_or_insert(runner::batch::default_jobs(&cases));
    let mut trials = Vec::new();
    for (case, kernel) in suite.pairs() {
        let (suite, prepared, runs) = (suite.clone(), prepared.clone(), runs.clone());
        let (case_name, kernel_name) = (case.name.clone(), kernel.to_string());
        trials.push(Trial::test(
            format!("{case_name}@{kernel_name}"),
            move || {
                let prepared = prepared[&kernel_name]
                    .get_or_init(|| {
                        runner::setup::host()
                            .and_then(|_| suite::prepare(&suite.only_kernel(&kernel_name)))
                            .map_err(|e| format!("{e:#}"))
                    })
                    .as_ref()
                    .map_err(|e| Failed::from(format!("preparing the suite failed: {e}")))?;
                let case = suite
                    .cases
                    .iter()
                    .find(|c| c.name == case_name)
                    .expect("case");
                let kernel = prepared
                    .kernels
                    .iter()
                    .find(|k| k.name == kernel_name)
                    .expect("kernel");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let run = rt
                    .block_on(suite::run_pair(
                        &suite.paths,
                        case,
                        kernel,
                        prepared,
                        Default::default(),
                    ))
                    .unwrap_or_else(|e| {
                        suite::errored(
                            &suite.paths,
                            &case_name,
                            &kernel_name,
                            Default::default(),
                            &e,
                        )
                    });
                let verdict = run.verdict;
                let msg = run.failure_report();
                runs.lock().unwrap().push(run);
                match verdict {
                    Verdict::Pass => Ok(()),
                    _ => Err(msg.into()),
                }
            },
        ));
    }
    let listing = args.list;
    let conclusion = libtest_mimic::run(&args, trials);
    if !listing {
        let runs = runs.lock().unwrap();
        if !runs.is_empty() {
            eprintln!("\n{}", suite::summary_table(&runs));
            if let Ok(xml) = suite::junit_xml(&runs) {
                let path = suite.paths.out.join("junit-cases.xml");
                if runner::paths::write_atomic(&path, xml.as_bytes()).is_ok() {
                    eprintln!("JUnit report: {}", path.display());
                }
            }
        }
    }
    conclusion.exit();
}
