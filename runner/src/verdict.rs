//! How one (case, kernel) went: its verdict, why, and how it was booted
//! (alone, in a shared boot, or again alone after its shared boot went
//! wrong, for a reason that is a type, not a sentence).

use std::path::PathBuf;
use std::time::Duration;

use crate::boot::{BootEnd, BootResult};
use crate::case::Case;
use crate::fault;
use crate::kernel::Flavor;
use crate::options::{log_dir, BackendKind};
use crate::outcome::{End, Outcome};
use crate::paths::Paths;
use crate::report::Crash;
use crate::snapshot::SnapshotStatus;

/// How one (case, kernel) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The outcome matches its snapshot and crashed only where expected.
    Pass,
    /// There is no snapshot yet (written as `.snap.new` for review).
    New,
    /// The outcome differs from the snapshot.
    Mismatch,
    /// The kernel crashed (or hung) where the case did not expect it, or did
    /// not where it did.
    Crash,
    /// The framework could not run the case (QEMU failed, init never came up).
    Error,
    /// The runner was interrupted (Ctrl-C, SIGTERM) before the pair
    /// finished: nothing was compared with its snapshot, nothing blessed.
    Interrupted,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::New => "NEW",
            Verdict::Mismatch => "FAIL (snapshot)",
            Verdict::Crash => "FAIL (crash)",
            Verdict::Error => "ERROR",
            Verdict::Interrupted => "interrupted",
        }
    }
}

/// The result of one (case, kernel).
#[derive(Debug, Clone)]
pub struct CaseRun {
    pub case: String,
    pub kernel: String,
    pub verdict: Verdict,
    /// Why it is not a pass, in one line.
    pub reason: Option<String>,
    pub outcome: Option<Outcome>,
    pub crashes: Vec<Crash>,
    /// The crashes for people: each report as printed, its frames decoded
    /// (also in the log directory as crash-report.txt).
    pub crash_report: Option<String>,
    pub snapshot: Option<SnapshotStatus>,
    /// Snapshot to outcome, when they differ.
    pub snapshot_diff: Option<String>,
    pub log_dir: PathBuf,
    pub elapsed: Duration,
    /// Boot to power-off (or kill).
    pub boot_time: Option<Duration>,
    pub backend: BackendKind,
    /// For an `Error`: which infrastructure fault it was, when known.
    pub fault: Option<fault::Kind>,
    /// Whether the case had the boot to itself.
    pub boot: BootMode,
}

#[cfg(test)]
impl CaseRun {
    /// A run of `case` on kernel `k` with this verdict and nothing else: the
    /// start of the runs unit tests make.
    pub(crate) fn for_test(case: &str, verdict: Verdict) -> CaseRun {
        CaseRun {
            case: case.into(),
            kernel: "k".into(),
            verdict,
            reason: None,
            outcome: None,
            crashes: vec![],
            crash_report: None,
            snapshot: None,
            snapshot_diff: None,
            log_dir: "/l".into(),
            elapsed: Duration::ZERO,
            boot_time: None,
            backend: BackendKind::Hermetic,
            fault: None,
            boot: BootMode::Alone,
        }
    }
}

/// How a case was booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMode {
    /// A boot of its own.
    Alone,
    /// Started from the saved VM of its machine: a kernel that booted once
    /// and was saved before any case ran.
    Restored,
    /// The first run of its machine: booted, saved where init waits for
    /// its plan (the next cases start from that state), then run.
    Saved,
    /// A boot of its own, because it could not start from a saved VM (why).
    Booted { why: String },
    /// In one boot with other cases of the same kernel; its console section
    /// and records were cut from the batch's (logs in `dir`).
    Batched { cases: usize, dir: PathBuf },
    /// Run alone again after its batch went wrong; its own boot gives the
    /// verdict.
    Rerun { why: RerunReason },
}

/// Why a case of a shared boot ran again in a boot of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerunReason {
    /// The shared boot could not even start.
    BatchCouldNotRun { error: String },
    /// The shared boot's kernel stopped before the case began.
    KernelStoppedEarlier,
    /// The case began but did not finish in the shared boot.
    DidNotFinish { end: BootEnd },
    /// The kernel crashed in the case's section of the shared boot.
    CrashedInBatch { title: String },
    /// The case finished in the shared boot but did not pass there (what it
    /// did there is kept in `logs`).
    DidNotPass {
        verdict: Verdict,
        reason: Option<String>,
        logs: PathBuf,
    },
}

impl RerunReason {
    /// Whether the case ran in the shared boot, after its earlier cases: if
    /// it then passes alone, one of them changed its outcome.
    pub fn ran_in_batch(&self) -> bool {
        !matches!(
            self,
            RerunReason::BatchCouldNotRun { .. } | RerunReason::KernelStoppedEarlier
        )
    }
}

impl std::fmt::Display for RerunReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RerunReason::BatchCouldNotRun { error } => {
                write!(f, "its batch could not run: {error}")
            }
            RerunReason::KernelStoppedEarlier => {
                write!(f, "the batch's kernel stopped before it began")
            }
            RerunReason::DidNotFinish { end } => {
                write!(f, "it did not finish in its batch ({})", describe_end(end))
            }
            RerunReason::CrashedInBatch { title } => {
                write!(f, "the kernel crashed in its batch: {title}")
            }
            RerunReason::DidNotPass {
                verdict,
                reason,
                logs,
            } => {
                write!(
                    f,
                    "{} when it shared a boot (logs {})",
                    verdict.label(),
                    logs.display()
                )?;
                match reason {
                    Some(r) => write!(f, ": {r}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// How a VM ended, in a few words.
pub fn describe_end(end: &BootEnd) -> String {
    match end {
        BootEnd::Exited { code } => format!("the VM stopped, exit {code:?}"),
        BootEnd::TimedOut { after } => format!("the VM was killed at its deadline, {after:.0?}"),
        BootEnd::Hung { silent_for } => format!("the VM was silent for {silent_for:.0?}"),
        BootEnd::Interrupted => "the runner was interrupted".into(),
    }
}

impl CaseRun {
    pub fn console_log(&self) -> PathBuf {
        self.log_dir.join("console.log")
    }

    /// A case that ran again alone after its shared boot went wrong and
    /// passes alone although it ran in that boot: an earlier case of the
    /// boot changed its outcome.
    pub fn changed_by_an_earlier_case(&self) -> bool {
        matches!(&self.boot, BootMode::Rerun { why } if why.ran_in_batch())
            && self.verdict == Verdict::Pass
    }

    /// What a person needs when the pair did not pass: the reason, the
    /// decoded crash report, the snapshot diff, the log and the command that
    /// reruns it. Used by `cargo xtask test` and by the test harness.
    pub fn failure_report(&self) -> String {
        let mut m = format!(
            "{}: {}\n",
            self.verdict.label(),
            self.reason.as_deref().unwrap_or("")
        );
        if let Some(report) = &self.crash_report {
            m += report;
        }
        if let Some(diff) = &self.snapshot_diff {
            m += "snapshot diff (- snapshot, + this run):\n";
            m += diff;
        }
        m += &format!(
            "console log: {}\nreproduce:   {}\n",
            self.console_log().display(),
            self.reproduce()
        );
        m
    }

    /// The one command that reruns this pair.
    pub fn reproduce(&self) -> String {
        let backend = match self.backend {
            BackendKind::Hermetic => "",
            BackendKind::Vng => " --backend vng",
        };
        let (variant, flavor) = Flavor::of_kernel(&self.kernel);
        let flavor = match flavor {
            Flavor::Normal => String::new(),
            f => format!(" --flavor {f}"),
        };
        format!(
            "cargo xtask run {} --kernel {variant}{flavor}{backend}",
            self.case
        )
    }
}

/// A verdict and what led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judged {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub fault: Option<fault::Kind>,
    /// The snapshot comparison, for a run that got that far.
    pub snapshot: Option<SnapshotStatus>,
}

/// Why an interrupted pair has no verdict of its own.
const INTERRUPTED: &str =
    "the runner was interrupted before the case finished: not compared with its snapshot";

/// The verdict of what a boot gave `case`, in this order: a boot the
/// runner's own interruption stopped is `Interrupted` (the guest was cut
/// off by us, so its outcome is neither compared nor blessed); a boot whose
/// init never reported is an infrastructure fault (the case did not run,
/// whatever the console shows); then the snapshot is compared (`compare`,
/// which may write it), and crash expectations come first (an unexpected
/// crash is the news, whatever the snapshot says), then the snapshot.
/// `kernel` is the kernel's name (`VARIANT` or `VARIANT+FLAVOR`): what the
/// case's crash expectations and the reasons name.
pub(crate) fn judge(
    case: &Case,
    kernel: &str,
    o: &Outcome,
    boot_res: &BootResult,
    crashes: &[Crash],
    compare: impl FnOnce(&Outcome) -> Option<SnapshotStatus>,
) -> Judged {
    if boot_res.end == BootEnd::Interrupted {
        return Judged {
            verdict: Verdict::Interrupted,
            reason: Some(INTERRUPTED.into()),
            fault: None,
            snapshot: None,
        };
    }
    let hello = boot_res
        .records
        .iter()
        .any(|r| matches!(r, gmem_protocol::Record::Hello { .. }));
    if !hello {
        let ended = match &boot_res.end {
            BootEnd::TimedOut { after } => format!("killed at the deadline after {after:.0?}"),
            BootEnd::Exited { code: Some(c) } => format!("QEMU exited with code {c}"),
            BootEnd::Exited { code: None } => "QEMU was killed by a signal".into(),
            BootEnd::Hung { silent_for } => format!("silent for {silent_for:.0?}"),
            BootEnd::Interrupted => unreachable!("judged above"),
        };
        let f = fault::no_init_fault(
            &boot_res.console,
            &boot_res.runner_notes,
            &ended,
            crashes.first().map(|c| c.title.as_str()),
        );
        return Judged {
            verdict: Verdict::Error,
            reason: Some(f.to_string()),
            fault: Some(f.kind()),
            snapshot: None,
        };
    }
    let snapshot = compare(o);
    let (verdict, reason) = judge_ran(case, kernel, o, snapshot);
    Judged {
        verdict,
        reason,
        fault: None,
        snapshot,
    }
}

/// The verdict of a case whose init ran. On a flavor, the reason says so:
/// what differs there from the variant's snapshot is a finding of the
/// flavor's checkers.
fn judge_ran(
    case: &Case,
    kernel: &str,
    o: &Outcome,
    snap: Option<SnapshotStatus>,
) -> (Verdict, Option<String>) {
    let crashed =
        !o.crashes.is_empty() || matches!(o.end, End::KernelPanic | End::TimedOut | End::Hang);
    let expected = case.expects_crash(kernel);
    let (variant, flavor) = Flavor::of_kernel(kernel);
    let on = match flavor {
        Flavor::Normal => String::new(),
        f => format!(" on the {f} flavor"),
    };
    if crashed && !expected {
        let what = o
            .crashes
            .first()
            .map(|c| c.title.clone())
            .unwrap_or_else(|| format!("{:?}", o.end).to_lowercase());
        return (Verdict::Crash, Some(format!("unexpected{on}: {what}")));
    }
    if !crashed && expected {
        return (
            Verdict::Crash,
            Some(format!(
                "the case expects a crash; the kernel did not crash{on}"
            )),
        );
    }
    if flavor != Flavor::Normal {
        match snap {
            Some(SnapshotStatus::Differs) => return (
                Verdict::Mismatch,
                Some(format!("the outcome differs{on} from {variant}'s snapshot: a finding of the flavor's checkers, or of its slowness (read the console)")),
            ),
            Some(SnapshotStatus::New) => return (
                Verdict::New,
                Some(format!("no snapshot of {variant} yet: a flavor's outcome is compared with the variant's, made on the normal kernel (`cargo xtask bless -c {} -k {variant}`)", case.name)),
            ),
            _ => {}
        }
    }
    match snap {
        None | Some(SnapshotStatus::Matches | SnapshotStatus::Written) => (Verdict::Pass, None),
        Some(SnapshotStatus::New) => (
            Verdict::New,
            Some(match o.failure(expected) {
                Some(f) => format!("no snapshot yet, and the outcome holds a failure ({f}): review the .snap.new; `cargo xtask bless --accept-failures` records it"),
                None => "no snapshot yet: review the .snap.new, then `cargo xtask bless`".into(),
            }),
        ),
        Some(SnapshotStatus::Refused) => (
            Verdict::New,
            Some(format!(
                "not blessed: the outcome holds a failure ({}); `cargo xtask bless --accept-failures` records it",
                o.failure(expected).unwrap_or_default()
            )),
        ),
        Some(SnapshotStatus::Differs) => (
            Verdict::Mismatch,
            Some("the outcome differs from the snapshot".into()),
        ),
    }
}

/// A run with no boot behind it: for a pair that could not even be run
/// (`Error`), or that the runner's interruption stopped first.
fn unrun(
    paths: &Paths,
    case: &str,
    kernel: &str,
    backend: BackendKind,
    verdict: Verdict,
    reason: String,
    fault: Option<fault::Kind>,
) -> CaseRun {
    CaseRun {
        case: case.into(),
        kernel: kernel.into(),
        verdict,
        reason: Some(reason),
        outcome: None,
        crashes: vec![],
        crash_report: None,
        snapshot: None,
        snapshot_diff: None,
        log_dir: log_dir(paths, case, kernel, backend),
        elapsed: Duration::ZERO,
        boot_time: None,
        backend,
        fault,
        boot: BootMode::Alone,
    }
}

/// An `Error` run for a pair that could not even be run; `Interrupted`
/// when the runner was interrupted (then the error is the interruption's
/// doing: its children were killed under it).
pub fn errored(
    paths: &Paths,
    case: &str,
    kernel: &str,
    backend: BackendKind,
    err: &anyhow::Error,
) -> CaseRun {
    if crate::interrupt::raised() {
        return interrupted(paths, case, kernel, backend);
    }
    let reason = format!("{err:#}");
    let kind = fault::kind_of(err);
    unrun(paths, case, kernel, backend, Verdict::Error, reason, kind)
}

/// An `Interrupted` run for a pair the runner's interruption stopped
/// before it booted.
pub fn interrupted(paths: &Paths, case: &str, kernel: &str, backend: BackendKind) -> CaseRun {
    let reason = INTERRUPTED.to_string();
    unrun(
        paths,
        case,
        kernel,
        backend,
        Verdict::Interrupted,
        reason,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmem_protocol::Record;

    fn case() -> (tempfile::TempDir, Case) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "description: d\nkernels: [k]\nsteps:\n  - name: s\n    probe: selftest\n",
        )
        .unwrap();
        let case = Case::load(&file, &["k".to_string()]).unwrap();
        (dir, case)
    }

    /// A boot that was in its one step when it ended.
    fn boot_in_step(end: BootEnd) -> BootResult {
        BootResult {
            console: "[    0.1] Linux version 7.3\ngmemtest: step s ...\n".into(),
            records: vec![
                Record::Hello {
                    protocol: gmem_protocol::PROTOCOL_VERSION,
                    kernel_release: "7.3".into(),
                    cpus: 2,
                },
                Record::StepStart {
                    step: "s".into(),
                    probe: "selftest".into(),
                },
            ],
            record_times: vec![Duration::ZERO, Duration::ZERO],
            bad_lines: vec![],
            bad_line_positions: vec![],
            runner_notes: vec![],
            end,
            elapsed: Duration::from_secs(1),
            qemu_stderr: String::new(),
        }
    }

    #[test]
    fn an_interrupted_run_is_interrupted_and_never_reaches_its_snapshot() {
        let (_dir, case) = case();
        let boot = boot_in_step(BootEnd::Interrupted);
        let o = crate::outcome::build(&case, "k", &boot, &[]);
        assert_eq!(o.steps[0].result, "interrupted");
        assert_eq!(o.end, End::Interrupted);
        let j = judge(&case, "k", &o, &boot, &[], |_| {
            panic!("an interrupted run was compared with its snapshot")
        });
        assert_eq!(j.verdict, Verdict::Interrupted);
        assert_eq!(j.snapshot, None);
        assert!(j.reason.unwrap().contains("not compared"));
        assert_eq!(j.fault, None);
    }

    #[test]
    fn a_step_the_guest_cut_short_is_still_compared() {
        // The same step result, but the VM stopped by itself: an outcome
        // like any other (a hang's snapshot holds `result: interrupted`).
        let (_dir, case) = case();
        let boot = boot_in_step(BootEnd::Exited { code: Some(0) });
        let o = crate::outcome::build(&case, "k", &boot, &[]);
        assert_eq!(o.steps[0].result, "interrupted");
        let mut compared = false;
        let j = judge(&case, "k", &o, &boot, &[], |_| {
            compared = true;
            Some(SnapshotStatus::Differs)
        });
        assert!(compared);
        assert_eq!(j.verdict, Verdict::Mismatch);
    }

    #[test]
    fn rerun_reasons_read_as_before() {
        let r = RerunReason::DidNotFinish {
            end: BootEnd::Hung {
                silent_for: Duration::from_secs(5),
            },
        };
        assert_eq!(
            r.to_string(),
            "it did not finish in its batch (the VM was silent for 5s)"
        );
        assert!(r.ran_in_batch());
        let r = RerunReason::DidNotPass {
            verdict: Verdict::Mismatch,
            reason: Some("the outcome differs from the snapshot".into()),
            logs: "/l/c.in-batch".into(),
        };
        assert_eq!(
            r.to_string(),
            "FAIL (snapshot) when it shared a boot (logs /l/c.in-batch): the outcome differs from the snapshot"
        );
        assert!(!RerunReason::KernelStoppedEarlier.ran_in_batch());
    }
}
