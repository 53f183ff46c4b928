//! A guest that goes silent is taken for hung: the runner notes it in the
//! console and sends an NMI through QEMU's monitor, which the kernel (booted
//! with `unknown_nmi_panic`) answers with every task's and CPU's backtrace
//! and a panic into a reboot. Its own module because the boot sends it and
//! the later stages (the outcome, the fault diagnosis) recognise its note.

use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// The console line the runner adds when it sends the NMI.
pub const NMI_NOTE: &str = "gmemtest: no output for";

/// How long a guest gets, after the NMI, to print its backtraces and reboot.
pub const BACKTRACE_GRACE: Duration = Duration::from_secs(15);

/// The note the runner writes into the console when a guest has been
/// silent for `silent_for`.
pub fn note(silent_for: Duration) -> String {
    format!("{NMI_NOTE} {silent_for:.0?}: sending an NMI for backtraces")
}

/// Asks a silent guest for backtraces: an NMI through QEMU's monitor.
pub async fn send(monitor: &Path) -> Result<()> {
    let mut m = crate::monitor::Monitor::connect(monitor, Duration::from_secs(2)).await?;
    m.command("nmi").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_note_starts_with_the_marker() {
        let n = super::note(std::time::Duration::from_secs(5));
        assert!(n.starts_with(super::NMI_NOTE), "{n}");
        assert!(n.ends_with("5s: sending an NMI for backtraces"), "{n}");
    }
}
