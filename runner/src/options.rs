//! How a person wants a run (the backend, streaming, a shell, gdb) and where
//! each pair's logs go.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::paths::Paths;

/// vng's own boot (its init, udev, overlays) takes about 20 s here before
/// our init starts, against about one for the hermetic boot: on top of the
/// case's timeout.
pub const VNG_BOOT_ALLOWANCE: Duration = Duration::from_secs(60);

/// What boots the guest of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// QEMU with our initramfs (the default, and what snapshots are made with).
    #[default]
    Hermetic,
    /// virtme-ng on the host's root filesystem: the same plan, the same
    /// result port; a non-crashing case gives the same outcome.
    Vng,
}

impl std::str::FromStr for BackendKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hermetic" => Ok(BackendKind::Hermetic),
            "vng" => Ok(BackendKind::Vng),
            _ => anyhow::bail!("unknown backend `{s}`: expected `hermetic` or `vng`"),
        }
    }
}

/// How a person wants one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// What boots the guest.
    pub backend: BackendKind,
    /// Print the console live.
    pub stream: bool,
    /// After the steps, a shell on the user's terminal (no deadline).
    pub shell: bool,
    /// QEMU's gdb stub on this port, the CPU held until gdb continues it
    /// (no deadline).
    pub gdb: Option<u16>,
    /// Do not compare with (or write) a snapshot: the caller judges the
    /// outcome itself (bisect).
    pub no_snapshot: bool,
    /// Boot the kernel for each case instead of restoring a saved VM
    /// ([`crate::saved_vm`]).
    pub boot: bool,
    /// Blessing records an outcome that holds a failure (a step that did not
    /// end well, a failed selftest, an unexpected crash) only with this.
    pub accept_failures: bool,
}

impl RunOptions {
    /// Whether cases start from a saved VM: on the hermetic backend, unless
    /// asked to boot or a person is at the controls (a shell, gdb: they
    /// see the boot).
    pub fn restores(&self) -> bool {
        self.backend == BackendKind::Hermetic && !self.boot && !self.shell && self.gdb.is_none()
    }
}

/// Where a pair's logs go: `logs/KERNEL/CASE`, or `logs/vng/KERNEL/CASE`
/// for a run through virtme-ng (both backends' logs are kept side by side).
pub fn log_dir(paths: &Paths, case: &str, kernel: &str, backend: BackendKind) -> PathBuf {
    match backend {
        BackendKind::Hermetic => paths.logs().join(kernel).join(case),
        BackendKind::Vng => paths.logs().join("vng").join(kernel).join(case),
    }
}

/// A pair's log directory, emptied of an earlier run's files (a stale
/// crash report must not sit beside a clean run).
pub(crate) fn fresh_log_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
