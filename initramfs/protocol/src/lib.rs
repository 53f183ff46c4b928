//! The guest/host protocol of gmemtest, defined once for both sides.
//!
//! The host writes a [`Plan`] into the initramfs at [`PLAN_PATH`], or hands
//! it over on the result port: when the initramfs holds no plan, init sends
//! [`Record::AwaitingPlan`] and reads one line, a [`Handoff`] (the runner
//! saves a VM at that point once, and restores it for every case). The
//! guest's PID 1 (`initramfs/init`) runs the plan's cases in order (one, or a
//! batch of several sharing the boot); for each case it runs each
//! [`PlanStep`] by executing the probe binary with the step's arguments, and
//! reports every event as one [`Record`] per line of JSON on the result port
//! ([`RESULT_PORT`], the second serial port). The kernel's own log stays on
//! the first serial port.
//!
//! Each case begins with a line [`case_marker`] written to the kernel's log
//! (`/dev/kmsg`), so that it is ordered with the kernel's own messages: the
//! host cuts the console at these lines to give each case of a batch its own
//! section, exactly as it would have seen it booted alone.
//!
//! Under virtme-ng (the `vng` backend) init is not PID 1: vng's init runs
//! it as a command, `init PLAN_FILE`, on the host's root filesystem; the
//! probe binary is the `gmem-probe` beside it, and the result port is the
//! same second serial port.
//!
//! A probe is `PROBE_BIN <probe-name> <args-json>`; it prints exactly one JSON
//! object (its observation) on stdout and exits 0 when the observation was
//! made, whatever the observation says. A non-zero exit means the probe itself
//! could not do its work (its stderr, on the console, says why).

use serde::{Deserialize, Serialize};

pub mod args;

/// Bumped on any incompatible change to the types below.
pub const PROTOCOL_VERSION: u32 = 2;

/// Where the plan is found inside the initramfs.
pub const PLAN_PATH: &str = "/gmemtest/plan.json";

/// The probe binary inside the initramfs.
pub const PROBE_BIN: &str = "/gmemtest/bin/gmem-probe";

/// The probes `PROBE_BIN` knows, by name: the list of [`args`], where each
/// probe's arguments are defined.
pub use args::PROBES;

/// Where the upstream KVM selftests of the kernel under test are packed
/// (`KSELFTEST_DIR/guest_memfd_test`, `KSELFTEST_DIR/x86/...`), for the
/// `kselftest` probe.
pub const KSELFTEST_DIR: &str = "/gmemtest/kselftests";

/// The shell `cargo xtask run --shell` packs (busybox, statically linked).
pub const SHELL_BIN: &str = "/bin/busybox";

/// On every gmemtest guest's kernel command line. init refuses to run a
/// plan on a kernel booted without it: a plan (some crash the kernel) never
/// runs on the host by mistake.
pub const GUEST_MARKER: &str = "gmemtest.guest=1";

/// The serial device that carries [`Record`]s from guest to host.
pub const RESULT_PORT: &str = "/dev/ttyS1";

/// What the guest runs, in order: one case, or a batch of cases sharing
/// one boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub protocol: u32,
    pub cases: Vec<CasePlan>,
    /// After the cases, a shell on the console until it exits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shell: bool,
}

impl Plan {
    /// The plan of one case alone.
    pub fn single(case: CasePlan) -> Plan {
        Plan::batch(vec![case])
    }

    /// The plan of several cases, run in this order in one boot.
    pub fn batch(cases: Vec<CasePlan>) -> Plan {
        Plan {
            protocol: PROTOCOL_VERSION,
            cases,
            shell: false,
        }
    }
}

/// The host's one message to the guest: a line of JSON on the result port,
/// sent after [`Record::AwaitingPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    pub plan: Plan,
    /// Fresh random bytes (hex) for this run, which init adds to the
    /// kernel's entropy pool and reseeds its generator from: every VM
    /// restored from one saved state would otherwise draw the same
    /// "random" numbers (slab freelists, KFENCE sampling, ASLR of the
    /// probes).
    pub entropy: String,
}

impl Handoff {
    /// The line that carries it (no newline inside; the newline ends it).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a Handoff always serializes") + "\n"
    }

    /// The bytes of [`Handoff::entropy`]; `None` unless it is even-length hex.
    pub fn entropy_bytes(&self) -> Option<Vec<u8>> {
        let s = self.entropy.as_bytes();
        if !s.len().is_multiple_of(2) {
            return None;
        }
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect()
    }
}

/// The longest [`Handoff`] line init reads: a plan is a few KB, a fuzzer's
/// replay a few hundred KB.
pub const HANDOFF_MAX_BYTES: usize = 16 << 20;

/// One case's steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePlan {
    /// The case's name (in the records and the console markers).
    pub case: String,
    pub steps: Vec<PlanStep>,
}

/// The kernel-log line (without its timestamp) that begins `case`'s section
/// of the console. Written through `/dev/kmsg`, it is ordered with the
/// kernel's messages, which a write to the console is not.
pub fn case_marker(case: &str) -> String {
    format!("{CASE_MARKER_PREFIX}{case}")
}

/// What every [`case_marker`] line starts with.
pub const CASE_MARKER_PREFIX: &str = "gmemtest: begin case ";

/// The case whose section `console_line` begins, if it is a marker: the
/// marker after the kernel's timestamp, or (when a program's output was
/// still in the UART's queue) after other text and then the timestamp.
pub fn case_of_marker(console_line: &str) -> Option<&str> {
    let text = if console_line.starts_with(CASE_MARKER_PREFIX) {
        console_line
    } else {
        let at = console_line.find(&format!("] {CASE_MARKER_PREFIX}"))?;
        &console_line[at + 2..]
    };
    let name = text.trim_end().strip_prefix(CASE_MARKER_PREFIX)?;
    (!name.is_empty() && !name.contains(char::is_whitespace)).then_some(name)
}

/// One step: one run of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    pub name: String,
    pub probe: String,
    /// The probe's arguments, passed to it as one JSON argument.
    #[serde(default)]
    pub args: serde_json::Value,
    /// The step is killed (SIGKILL) after this long.
    pub timeout_ms: u64,
    /// Pin the probe to this CPU (sched_setaffinity) before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
}

/// How a step's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepExit {
    /// The process exited with this code.
    Exited { code: i32 },
    /// The process was killed by a signal (its name, e.g. "SIGSEGV").
    Signaled { signal: String },
    /// The step passed its deadline and init killed it.
    TimedOut,
    /// The probe could not be started at all.
    SpawnFailed { error: String },
}

/// One event in the guest, as one JSON line on the result port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// init is up and has read the plan (once per boot).
    Hello {
        protocol: u32,
        /// `uname -r` of the guest kernel.
        kernel_release: String,
        cpus: u32,
    },
    /// A case's steps begin (after its marker is in the kernel log).
    CaseStart {
        case: String,
    },
    StepStart {
        step: String,
        probe: String,
    },
    StepEnd {
        step: String,
        exit: StepExit,
        /// The probe's observation (its stdout as JSON), if it printed one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observation: Option<serde_json::Value>,
        /// What the probe printed on stdout when that was not one JSON object.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bad_output: Option<String>,
        duration_ms: u64,
    },
    /// The initramfs holds no plan: init is up, has opened the result port
    /// and waits there for a [`Handoff`] (once per boot, before `Hello`).
    AwaitingPlan,
    /// init itself hit a problem (mount failed, plan unreadable, ...).
    InitError {
        message: String,
    },
    /// Every step of the case has run, and what they printed on the console
    /// has left it.
    CaseEnd {
        case: String,
    },
    /// Every case has run; the guest powers off next.
    Done,
}

impl Record {
    /// One line of the result stream (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a Record always serializes")
    }

    /// Parses one line of the result stream.
    pub fn from_line(line: &str) -> Result<Record, serde_json::Error> {
        serde_json::from_str(line.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_a_line() {
        let r = Record::StepEnd {
            step: "create".into(),
            exit: StepExit::Exited { code: 0 },
            observation: Some(serde_json::json!({"errno": "EINVAL"})),
            bad_output: None,
            duration_ms: 12,
        };
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"record":"step_end","step":"create","exit":{"status":"exited","code":0},"observation":{"errno":"EINVAL"},"duration_ms":12}"#
        );
        assert_eq!(Record::from_line(&line).unwrap(), r);
    }

    #[test]
    fn handoff_is_one_line_and_its_entropy_is_hex() {
        let h = Handoff {
            plan: Plan::single(CasePlan {
                case: "c".into(),
                steps: vec![PlanStep {
                    name: "s".into(),
                    probe: "p".into(),
                    args: serde_json::json!({"text": "a\nb"}),
                    timeout_ms: 1,
                    cpu: None,
                }],
            }),
            entropy: "00ff10".into(),
        };
        let line = h.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let back: Handoff = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, h);
        assert_eq!(h.entropy_bytes(), Some(vec![0, 255, 16]));
        for bad in ["0", "zz", "0g"] {
            let h = Handoff {
                entropy: bad.into(),
                ..h.clone()
            };
            assert_eq!(h.entropy_bytes(), None, "{bad}");
        }
        assert_eq!(
            Record::from_line(r#"{"record":"awaiting_plan"}"#).unwrap(),
            Record::AwaitingPlan
        );
    }

    #[test]
    fn plan_rejects_unknown_fields() {
        let plan: Plan =
            serde_json::from_str(r#"{"protocol":2,"cases":[{"case":"c","steps":[]}]}"#).unwrap();
        assert!(!plan.shell, "no shell unless asked");
        assert_eq!(plan.cases[0].case, "c");
        let err =
            serde_json::from_str::<Plan>(r#"{"protocol":2,"cases":[],"extra":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        // A version-1 plan (one case, no `cases`) is refused by name.
        let err =
            serde_json::from_str::<Plan>(r#"{"protocol":1,"case":"c","steps":[]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `case`"), "{err}");
    }

    #[test]
    fn markers_are_found_with_or_without_a_timestamp() {
        let m = case_marker("gmem_caps");
        assert_eq!(case_of_marker(&m), Some("gmem_caps"));
        assert_eq!(
            case_of_marker(&format!("[    1.234567] {m}")),
            Some("gmem_caps")
        );
        assert_eq!(
            case_of_marker(&format!("[    1.2] {m}\r")),
            Some("gmem_caps")
        );
        assert_eq!(case_of_marker("gmemtest: step x exited 0"), None);
        assert_eq!(case_of_marker("[    1.2] gmemtest: begin case "), None);
        assert_eq!(case_of_marker("foo gmemtest: begin case x"), None);
        assert_eq!(
            case_of_marker("step y ...[    2.5] gmemtest: begin case x"),
            Some("x")
        );
    }
}
