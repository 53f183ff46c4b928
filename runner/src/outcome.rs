//! The normalized outcome of one case on one kernel: what the snapshot holds.
//!
//! Stable across runs and machines: the steps' results and observations (the
//! probes already report no addresses or timings), the crashes found (kind,
//! normalized title, trace function names) and the kernel log lines the case
//! asked to keep, normalized. A change in behaviour changes it; nothing else
//! does.

use serde::{Deserialize, Serialize};

use crate::boot::{BootEnd, BootResult};
use crate::case::Case;
use crate::normalize::normalize_line;
use crate::report::{Crash, CrashKind};
use gmem_protocol::{Record, StepExit};

/// How the guest's run ended, as a person would say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// init ran every step and rebooted the VM.
    Completed,
    /// The kernel panicked.
    KernelPanic,
    /// The VM was killed at the case's deadline.
    TimedOut,
    /// The guest went silent and was sent an NMI for backtraces (kept in the
    /// console log, not in the outcome).
    Hang,
    /// The VM stopped before init finished the plan, without a panic.
    StoppedEarly,
    /// init never reported (no result stream).
    NoInit,
    /// The runner was interrupted (Ctrl-C, SIGTERM) and stopped the VM: an
    /// outcome kept for the log, never compared with a snapshot.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub name: String,
    pub probe: String,
    /// `exited 0`, `killed by SIGSEGV`, `timed out`, `not run`, `interrupted`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashSummary {
    pub kind: CrashKind,
    pub title: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub case: String,
    pub kernel: String,
    pub end: End,
    pub steps: Vec<StepOutcome>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crashes: Vec<CrashSummary>,
    /// Kernel log lines that match the case's `keep_dmesg`, normalized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dmesg: Vec<String>,
    /// Problems init reported, and result-stream lines that were not records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_errors: Vec<String>,
}

fn describe_exit(exit: &StepExit) -> String {
    match exit {
        StepExit::Exited { code } => format!("exited {code}"),
        StepExit::Signaled { signal } => format!("killed by {signal}"),
        StepExit::TimedOut => "timed out".into(),
        StepExit::SpawnFailed { error } => format!("could not start: {error}"),
    }
}

/// Builds the outcome of `case` on `kernel` from what the boot produced and
/// the crashes found in its console.
/// A step that runs a test of its own (an upstream selftest) fails when the
/// test does, whatever the probe's exit: its result is the test's verdict
/// when that is not a pass or a skip (`fail`, `timeout`, `signal`).
fn test_result(probe: &str, observation: Option<&serde_json::Value>) -> Option<String> {
    if probe != "kselftest" {
        return None;
    }
    let verdict = observation?.get("result")?.as_str()?;
    (!matches!(verdict, "pass" | "skip")).then(|| verdict.to_string())
}

impl Outcome {
    /// The failure this outcome holds, in a line, if any: a step that did
    /// not end well (exit other than 0, a failed selftest, a timeout), or a
    /// crash the case does not expect on this kernel. Where a crash is
    /// expected, steps it cut short are not failures.
    pub fn failure(&self, expects_crash: bool) -> Option<String> {
        if !expects_crash {
            if let Some(c) = self.crashes.first() {
                return Some(format!("an unexpected crash: {}", c.title));
            }
        }
        self.steps
            .iter()
            .find(|s| {
                s.result != "exited 0"
                    && !(expects_crash
                        && (s.result.starts_with("killed by")
                            || matches!(s.result.as_str(), "interrupted" | "not run")))
            })
            .map(|s| format!("step {}: {}", s.name, s.result))
    }
}

pub fn build(case: &Case, kernel: &str, boot: &BootResult, crashes: &[Crash]) -> Outcome {
    let mut steps = Vec::new();
    let mut guest_errors = Vec::new();
    let mut started = None;
    let mut hello = false;
    let mut done = false;
    for r in &boot.records {
        match r {
            Record::Hello { .. } => hello = true,
            Record::StepStart { step, .. } => started = Some(step.clone()),
            Record::StepEnd {
                step,
                exit,
                observation,
                bad_output,
                ..
            } => {
                started = None;
                let probe = probe_of(case, step);
                let mut observation = observation.clone();
                if let Some(text) = bad_output {
                    observation = Some(serde_json::json!({ "unparsed_output": text }));
                }
                let result = test_result(&probe, observation.as_ref())
                    .unwrap_or_else(|| describe_exit(exit));
                steps.push(StepOutcome {
                    name: step.clone(),
                    probe,
                    result,
                    observation,
                });
            }
            Record::InitError { message } => guest_errors.push(format!("init: {message}")),
            // One case alone ends with both; a case cut from a batch with
            // its CaseEnd.
            Record::CaseEnd { .. } | Record::Done => done = true,
            Record::CaseStart { .. } | Record::AwaitingPlan => {}
        }
    }
    guest_errors.extend(boot.bad_lines.iter().map(|l| format!("not a record: {l}")));
    // Steps that never reported an end.
    for s in &case.plan.steps {
        if steps.iter().any(|o| o.name == s.name) {
            continue;
        }
        let result = if started.as_deref() == Some(s.name.as_str()) {
            "interrupted"
        } else {
            "not run"
        };
        steps.push(StepOutcome {
            name: s.name.clone(),
            probe: s.probe.clone(),
            result: result.into(),
            observation: None,
        });
    }
    let end = match (&boot.end, done) {
        (BootEnd::Interrupted, _) => End::Interrupted,
        (_, true) => End::Completed,
        (BootEnd::Hung { .. }, _) => End::Hang,
        _ if crate::report::panicked(crashes) => End::KernelPanic,
        (BootEnd::TimedOut { .. }, _) => End::TimedOut,
        _ if !hello => End::NoInit,
        _ => End::StoppedEarly,
    };
    // What the kernel printed after the runner's NMI is the backtraces (and
    // the panic) the runner asked for, not crashes of the case.
    let induced_from = match boot.end {
        BootEnd::Hung { .. } => boot.runner_notes.first().copied().unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    let dmesg = boot
        .console
        .lines()
        .map(normalize_line)
        .filter(|l| case.keep_dmesg.iter().any(|re| re.is_match(l)))
        .collect();
    Outcome {
        case: case.name.clone(),
        kernel: kernel.to_string(),
        end,
        steps,
        crashes: crashes
            .iter()
            .filter(|c| c.line_no < induced_from)
            .map(|c| CrashSummary {
                kind: c.kind,
                title: c.title.clone(),
                trace: c.trace.clone(),
            })
            .collect(),
        dmesg,
        guest_errors,
    }
}

fn probe_of(case: &Case, step: &str) -> String {
    case.plan
        .steps
        .iter()
        .find(|s| s.name == step)
        .map(|s| s.probe.clone())
        .unwrap_or_default()
}

#[cfg(test)]
impl Outcome {
    /// Case `c` on `kernel`, completed, one step `s` of `probe` with this
    /// result: the outcome unit tests start from.
    pub(crate) fn one_step(kernel: &str, probe: &str, result: &str) -> Outcome {
        Outcome {
            case: "c".into(),
            kernel: kernel.into(),
            end: End::Completed,
            steps: vec![StepOutcome {
                name: "s".into(),
                probe: probe.into(),
                result: result.into(),
                observation: None,
            }],
            crashes: vec![],
            dmesg: vec![],
            guest_errors: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, result: &str) -> StepOutcome {
        StepOutcome {
            name: name.into(),
            probe: "p".into(),
            result: result.into(),
            observation: None,
        }
    }

    fn outcome(steps: Vec<StepOutcome>, crash: Option<&str>) -> Outcome {
        Outcome {
            case: "c".into(),
            kernel: "k".into(),
            end: End::Completed,
            steps,
            crashes: crash
                .map(|t| CrashSummary {
                    kind: CrashKind::Oops,
                    title: t.into(),
                    trace: vec![],
                })
                .into_iter()
                .collect(),
            dmesg: vec![],
            guest_errors: vec![],
        }
    }

    #[test]
    fn a_failed_selftest_is_its_steps_result() {
        let fail = serde_json::json!({"result": "fail", "exit": "exited 1"});
        assert_eq!(
            test_result("kselftest", Some(&fail)).as_deref(),
            Some("fail")
        );
        let pass = serde_json::json!({"result": "pass"});
        assert_eq!(test_result("kselftest", Some(&pass)), None);
        assert_eq!(
            test_result("kselftest", Some(&serde_json::json!({"result": "skip"}))),
            None
        );
        assert_eq!(
            test_result("caps", Some(&fail)),
            None,
            "only tests have verdicts"
        );
    }

    #[test]
    fn failures_an_outcome_holds() {
        let ok = outcome(vec![step("a", "exited 0")], None);
        assert_eq!(ok.failure(false), None);
        let bad = outcome(vec![step("a", "exited 0"), step("b", "exited 2")], None);
        assert_eq!(bad.failure(false).as_deref(), Some("step b: exited 2"));
        let crashed = outcome(
            vec![step("a", "killed by SIGKILL"), step("b", "not run")],
            Some("BUG: x"),
        );
        assert_eq!(
            crashed.failure(true),
            None,
            "an expected crash cuts steps short"
        );
        assert_eq!(
            crashed.failure(false).as_deref(),
            Some("an unexpected crash: BUG: x")
        );
        let timed = outcome(vec![step("a", "timed out")], Some("BUG: x"));
        assert_eq!(timed.failure(true).as_deref(), Some("step a: timed out"));
    }
}
