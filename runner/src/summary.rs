//! What a session's runs add up to: the summary table and the JUnit report.

use anyhow::Result;

use crate::kernel::Flavor;
use crate::verdict::{CaseRun, Verdict};

/// The summary table: one row per case, one column per kernel.
pub fn summary_table(runs: &[CaseRun]) -> String {
    let mut kernels: Vec<&str> = Vec::new();
    let mut cases: Vec<&str> = Vec::new();
    for r in runs {
        if !kernels.contains(&r.kernel.as_str()) {
            kernels.push(&r.kernel);
        }
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
    }
    let cw = cases.iter().map(|c| c.len()).max().unwrap_or(4).max(4);
    let kw: Vec<usize> = kernels.iter().map(|k| k.len().max(15)).collect();
    let mut s = format!("{:<cw$}", "case");
    for (k, w) in kernels.iter().zip(&kw) {
        s += &format!("  {k:<w$}");
    }
    s += "\n";
    s += &"-".repeat(cw + kw.iter().map(|w| w + 2).sum::<usize>());
    s += "\n";
    for c in &cases {
        s += &format!("{c:<cw$}");
        for (k, w) in kernels.iter().zip(&kw) {
            let cell = runs
                .iter()
                .find(|r| r.case == *c && r.kernel == *k)
                .map(|r| match r.boot_time {
                    Some(t) if r.verdict == Verdict::Pass => {
                        format!("pass {:.1}s", t.as_secs_f64())
                    }
                    _ => r.verdict.label().to_string(),
                })
                .unwrap_or_else(|| "-".into());
            s += &format!("  {cell:<w$}");
        }
        s += "\n";
    }
    let count = |v: Verdict| runs.iter().filter(|r| r.verdict == v).count();
    let interrupted = count(Verdict::Interrupted);
    s += &format!(
        "\n{} passed, {} failed ({} snapshot, {} crash, {} new, {} error)\n",
        count(Verdict::Pass),
        runs.len() - count(Verdict::Pass) - interrupted,
        count(Verdict::Mismatch),
        count(Verdict::Crash),
        count(Verdict::New),
        count(Verdict::Error),
    );
    // Neither passed nor failed: the runner stopped them.
    if interrupted > 0 {
        s += &format!(
            "{interrupted} interrupted (the runner was stopped: not compared with snapshots)\n"
        );
    }
    s += &flavor_findings(runs);
    s
}

/// The pairs on a flavored kernel that differ from the variant's snapshot
/// or crash where the normal kernel does not: what the flavor's checkers
/// found (each to be read in its console), said apart from the rest.
fn flavor_findings(runs: &[CaseRun]) -> String {
    let mut s = String::new();
    for f in Flavor::ALL.into_iter().filter(|f| *f != Flavor::Normal) {
        let differ: Vec<String> = runs
            .iter()
            .filter(|r| {
                Flavor::of_kernel(&r.kernel).1 == f
                    && matches!(r.verdict, Verdict::Mismatch | Verdict::Crash)
            })
            .map(|r| format!("{} on {}", r.case, r.kernel))
            .collect();
        if !differ.is_empty() {
            s += &format!(
                "{} on the {f} flavor (compared with the normal kernels' snapshots: findings of its checkers, each to read in its console): {}\n",
                if differ.len() == 1 { "1 pair differs".to_string() } else { format!("{} pairs differ", differ.len()) },
                differ.join(", ")
            );
        }
    }
    s
}

/// A JUnit XML report: one test suite per kernel, one test case per case.
pub fn junit_xml(runs: &[CaseRun]) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("gmemtest");
    let mut kernels: Vec<&str> = runs.iter().map(|r| r.kernel.as_str()).collect();
    kernels.dedup();
    kernels.sort();
    kernels.dedup();
    for k in kernels {
        let mut suite = TestSuite::new(k);
        for r in runs.iter().filter(|r| r.kernel == k) {
            let status = match r.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Error => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s
                }
                // Stopped by the runner: not run to a verdict.
                Verdict::Interrupted => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s
                }
                _ => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s.set_description(format!(
                        "console log: {}\nreproduce: {}",
                        r.console_log().display(),
                        r.reproduce()
                    ));
                    s
                }
            };
            let mut tc = TestCase::new(format!("{}@{}", r.case, r.kernel), status);
            tc.set_classname(format!("gmemtest.{k}"));
            tc.set_time(r.elapsed);
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(case: &str, verdict: Verdict) -> CaseRun {
        CaseRun {
            reason: (verdict != Verdict::Pass).then(|| "why".into()),
            ..CaseRun::for_test(case, verdict)
        }
    }

    #[test]
    fn an_interrupted_pair_has_its_own_count_and_junit_status() {
        let runs = [
            run("a", Verdict::Pass),
            run("b", Verdict::Interrupted),
            run("c", Verdict::Mismatch),
        ];
        let t = summary_table(&runs);
        assert!(
            t.contains("1 passed, 1 failed (1 snapshot, 0 crash, 0 new, 0 error)\n"),
            "{t}"
        );
        assert!(t.contains("\n1 interrupted (the runner was stopped"), "{t}");
        let row = t.lines().find(|l| l.starts_with("b ")).unwrap();
        assert!(
            row.contains("interrupted") && !row.contains("FAIL"),
            "{row}"
        );
        let xml = junit_xml(&runs).unwrap();
        let b = xml.split("name=\"b@k\"").nth(1).unwrap();
        assert!(
            b.split("</testcase>").next().unwrap().contains("<skipped"),
            "{xml}"
        );
        // Without an interruption, no such line.
        assert!(!summary_table(&runs[..1]).contains("interrupted"));
    }

    #[test]
    fn pairs_that_differ_on_a_flavor_are_said_apart() {
        let on = |case: &str, kernel: &str, v: Verdict| CaseRun {
            kernel: kernel.into(),
            ..run(case, v)
        };
        let runs = [
            on("a", "stock-7.3", Verdict::Mismatch),
            on("a", "stock-7.3+debug", Verdict::Mismatch),
            on("b", "stock-7.3+debug", Verdict::Crash),
            on("c", "stock-7.3+debug", Verdict::Pass),
        ];
        let t = summary_table(&runs);
        assert!(
            t.contains(
                "2 pairs differ on the debug flavor (compared with the normal kernels' snapshots"
            ),
            "{t}"
        );
        assert!(
            t.trim_end()
                .ends_with(": a on stock-7.3+debug, b on stock-7.3+debug"),
            "{t}"
        );
        // The normal kernel's difference is an ordinary failure.
        assert!(!summary_table(&runs[..1]).contains("flavor"));
        // Its reproduce command asks for the flavor.
        assert_eq!(
            runs[1].reproduce(),
            "cargo xtask run a --kernel stock-7.3 --flavor debug"
        );
        assert_eq!(runs[0].reproduce(), "cargo xtask run a --kernel stock-7.3");
    }
}
