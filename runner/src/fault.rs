//! Infrastructure faults: the ways a run can fail that say nothing about the
//! kernel's guest_memfd behaviour, each told apart so that a person (and
//! xtask's exit code) knows at once which kind it was. A fault is never
//! turned into a test verdict: a kernel that never reached init did not run
//! the case, whatever its console shows.

use std::path::{Path, PathBuf};

/// What went wrong underneath a case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The QEMU binary is not there.
    #[error("QEMU is missing: cannot run {program} ({error}); run `cargo xtask setup`")]
    QemuMissing { program: String, error: String },
    /// QEMU started but exited before the guest printed anything.
    #[error("QEMU failed to start: {program} exited with {code} before the guest printed anything; it said:\n{stderr}")]
    QemuFailed {
        program: String,
        code: String,
        stderr: String,
    },
    /// A saved VM could not be loaded (or handed its plan). The runner
    /// drops it and boots instead; this is the error only when that is
    /// not possible.
    #[error("cannot restore the saved VM {state}: {error}{}", said(.stderr))]
    RestoreFailed {
        state: String,
        error: String,
        stderr: String,
    },
    /// The kernel started but never ran init (a panic in start-up, no root,
    /// no init binary).
    #[error("the kernel did not reach init: {why}")]
    KernelNoInit { why: String },
    /// init ran, but no record ever came on the result port.
    #[error(
        "the result port was silent: init started but sent nothing on the result port (ttyS1){why}"
    )]
    ResultPortSilent { why: String },
    /// A write failed for lack of space.
    #[error("the disk is full: {what}{}", free_note(.path))]
    DiskFull { what: String, path: Option<PathBuf> },
}

fn said(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; QEMU said:\n{stderr}")
    }
}

fn free_note(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => match free_bytes(p) {
            Some(b) => format!(
                " ({} MB free on the filesystem of {})",
                b >> 20,
                p.display()
            ),
            None => format!(" ({})", p.display()),
        },
        None => String::new(),
    }
}

/// Bytes free for an unprivileged user on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass for a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The kind of a fault, for exit codes and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    QemuMissing,
    QemuFailed,
    KernelNoInit,
    ResultPortSilent,
    DiskFull,
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::QemuMissing { .. } => Kind::QemuMissing,
            Fault::QemuFailed { .. } | Fault::RestoreFailed { .. } => Kind::QemuFailed,
            Fault::KernelNoInit { .. } => Kind::KernelNoInit,
            Fault::ResultPortSilent { .. } => Kind::ResultPortSilent,
            Fault::DiskFull { .. } => Kind::DiskFull,
        }
    }
}

/// The fault under an error, if it is one: a [`Fault`] anywhere in its
/// chain, or an I/O error (or a tool's message) saying the disk is full.
pub fn kind_of(err: &anyhow::Error) -> Option<Kind> {
    // anyhow finds a Fault given as context at any depth, too.
    if let Some(f) = err.downcast_ref::<Fault>() {
        return Some(f.kind());
    }
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Fault>() {
            return Some(f.kind());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::ENOSPC) || io.raw_os_error() == Some(libc::EDQUOT) {
                return Some(Kind::DiskFull);
            }
        }
    }
    says_disk_full(&format!("{err:#}")).then_some(Kind::DiskFull)
}

/// Whether a tool's output says it ran out of space (make, cc, ld, cp, tar;
/// Kbuild's fixdep says only that its output was cut short).
pub fn says_disk_full(text: &str) -> bool {
    text.contains("No space left on device")
        || text.contains("Disk quota exceeded")
        || text.contains("fixdep: not all data was written to the output")
}

/// Whether our init ran: it said something on the console (every line of
/// it starts with `gmemtest: `; the kernel's `Run /init as init process` is
/// printed before each attempt, failed ones too). The runner's own lines
/// (`runner_notes`, by line number: its note of a silent guest) have the
/// prefix too and do not count.
pub fn init_started(console: &str, runner_notes: &[usize]) -> bool {
    console.lines().enumerate().any(|(i, l)| {
        let (_, l) = crate::normalize::split_timestamp(l);
        l.starts_with("gmemtest: ") && !runner_notes.contains(&i)
    })
}

/// Why a boot whose init never reported did not: the kernel stopped before
/// init (its last words), or init ran and the result port stayed silent.
pub fn no_init_fault(
    console: &str,
    runner_notes: &[usize],
    ended: &str,
    first_crash: Option<&str>,
) -> Fault {
    if console.trim().is_empty() {
        return Fault::KernelNoInit {
            why: format!("the console is empty; {ended}"),
        };
    }
    if init_started(console, runner_notes) {
        // What init said about its port, if it could say anything.
        let said = console
            .lines()
            .find(|l| l.contains("result port"))
            .map(|l| format!("; the console says: {}", l.trim()))
            .unwrap_or_default();
        return Fault::ResultPortSilent {
            why: format!("{said}; {ended}"),
        };
    }
    let last = match first_crash {
        Some(title) => title.to_string(),
        None => console
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string(),
    };
    Fault::KernelNoInit {
        why: format!("{ended}; the kernel's last words: {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_in_the_chain_is_found() {
        let e = anyhow::Error::new(Fault::QemuMissing {
            program: "q".into(),
            error: "not found".into(),
        })
        .context("case c on kernel k: boot failed");
        assert_eq!(kind_of(&e), Some(Kind::QemuMissing));
        // A fault given as context over another error, then more context.
        let inner = anyhow::anyhow!("make bzImage failed: error 2")
            .context(Fault::DiskFull {
                what: "building kernel k".into(),
                path: None,
            })
            .context("kernel k: build failed");
        assert_eq!(kind_of(&inner), Some(Kind::DiskFull));
        let text = format!("{e:#}");
        assert!(text.contains("QEMU is missing: cannot run q"), "{text}");
    }

    #[test]
    fn enospc_is_a_full_disk_whoever_said_it() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = anyhow::Error::new(io).context("cannot copy bzImage");
        assert_eq!(kind_of(&e), Some(Kind::DiskFull));
        let e = anyhow::anyhow!("make failed:\nfs/x.o: No space left on device");
        assert_eq!(kind_of(&e), Some(Kind::DiskFull));
        assert_eq!(kind_of(&anyhow::anyhow!("make failed: error 2")), None);
    }

    #[test]
    fn a_kernel_that_stops_before_init_is_told_from_a_silent_port() {
        let panic = "[    0.5] Kernel panic - not syncing: No working init found.\n";
        match no_init_fault(
            panic,
            &[],
            "QEMU exited",
            Some("Kernel panic - not syncing: No working init found."),
        ) {
            Fault::KernelNoInit { why } => assert!(why.contains("No working init found"), "{why}"),
            f => panic!("{f:?}"),
        }
        let ran = "[    0.6] Run /init as init process\ngmemtest: cannot open the result port /dev/ttyS1: ENXIO; records go to the console\n";
        match no_init_fault(ran, &[], "QEMU exited", None) {
            Fault::ResultPortSilent { why } => {
                assert!(why.contains("cannot open the result port"), "{why}")
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            no_init_fault("", &[], "killed at the deadline", None),
            Fault::KernelNoInit { .. }
        ));
        // The kernel tries /sbin/init and the rest before giving up: a
        // `Run ... as init process` line is no sign of our init.
        // The runner's own note (line 2) is no sign of init either, nor
        // its trouble sending the NMI (line 3); the same words from the
        // guest would be.
        let tried = "[    1.49] Run /sbin/init as init process\n[    1.49] Kernel panic - not syncing: No working init found.\ngmemtest: no output for 5s: sending an NMI for backtraces\ngmemtest: cannot connect to QEMU's monitor\n";
        assert!(matches!(
            no_init_fault(tried, &[2, 3], "QEMU exited", None),
            Fault::KernelNoInit { .. }
        ));
        assert!(matches!(
            no_init_fault(tried, &[2], "QEMU exited", None),
            Fault::ResultPortSilent { .. }
        ));
    }
}
