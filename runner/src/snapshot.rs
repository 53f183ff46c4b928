//! Comparing an outcome with its insta snapshot, `snapshots/CASE@KERNEL.snap`.
//!
//! insta decides what to write from `INSTA_UPDATE`: by default a changed or
//! new snapshot is written beside the old one as `.snap.new` (for `cargo insta
//! review` or `cargo xtask bless`), and nothing is written where `CI` is set.
//! `cargo xtask bless` sets `INSTA_UPDATE=always`.

use std::path::{Path, PathBuf};

use crate::outcome::Outcome;

/// What the comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// The outcome equals the snapshot.
    Matches,
    /// The outcome differs from the snapshot.
    Differs,
    /// There was no snapshot yet.
    New,
    /// The snapshot was (re)written (blessing).
    Written,
    /// Blessing would have written an outcome that holds a failure, and
    /// was not asked to (`--accept-failures`): nothing was written.
    Refused,
}

/// The snapshot file of a (case, kernel).
pub fn snapshot_file(dir: &Path, case: &str, kernel: &str) -> PathBuf {
    dir.join(format!("{}.snap", snapshot_name(case, kernel)))
}

pub fn snapshot_name(case: &str, kernel: &str) -> String {
    format!("{case}@{kernel}")
}

/// A unified diff from the stored snapshot to `outcome` (the snapshot's
/// header left out), for the failure report; None when there is no snapshot.
pub fn diff(dir: &Path, outcome: &Outcome) -> Option<String> {
    let stored =
        std::fs::read_to_string(snapshot_file(dir, &outcome.case, &outcome.kernel)).ok()?;
    // insta's file: `---`, metadata, `---`, then the YAML body.
    let body = stored.splitn(3, "---\n").nth(2).unwrap_or(&stored);
    // Both sides through one serializer, so that only content differs.
    let was = serde_yaml::to_string(&serde_yaml::from_str::<serde_yaml::Value>(body).ok()?).ok()?;
    let now = serde_yaml::to_string(outcome).ok()?;
    let d = similar::TextDiff::from_lines(was.as_str(), now.as_str());
    Some(
        d.unified_diff()
            .context_radius(3)
            .header("snapshot", "outcome")
            .to_string(),
    )
}

/// Whether the stored snapshot of `outcome` is what it says already.
pub fn is_stored(dir: &Path, outcome: &Outcome) -> bool {
    diff(dir, outcome).is_some_and(|d| !d.lines().any(|l| l.starts_with("@@")))
}

/// Compares `outcome` with its stored snapshot and writes nothing, neither
/// the snapshot nor a `.snap.new`: for a flavor's outcomes, which are
/// compared with the variant's snapshot but never become it (whatever
/// `INSTA_UPDATE` says, and nothing `cargo insta review` could accept).
pub fn compare_read_only(dir: &Path, outcome: &Outcome) -> SnapshotStatus {
    if !snapshot_file(dir, &outcome.case, &outcome.kernel).exists() {
        SnapshotStatus::New
    } else if is_stored(dir, outcome) {
        SnapshotStatus::Matches
    } else {
        SnapshotStatus::Differs
    }
}

/// Whether insta will write snapshots in this process (blessing).
pub fn blessing() -> bool {
    matches!(
        std::env::var("INSTA_UPDATE").as_deref(),
        Ok("always") | Ok("1")
    )
}

/// Compares `outcome` with its snapshot in `dir`. insta prints the diff of a
/// mismatch to stderr itself.
pub fn compare(dir: &Path, outcome: &Outcome, description: &str) -> SnapshotStatus {
    let name = snapshot_name(&outcome.case, &outcome.kernel);
    let file = snapshot_file(dir, &outcome.case, &outcome.kernel);
    let existed = file.exists();
    let before = std::fs::read_to_string(&file).ok();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(description);
    settings.set_input_file(&file);
    // insta reports a mismatch by printing its diff and then panicking; the
    // panic is how we learn of it, not news for the user, so the default hook
    // (message and backtrace) is silenced while it runs. Hooks are global:
    // comparisons are serialized.
    static QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_yaml_snapshot!(name.as_str(), outcome));
    }));
    std::panic::set_hook(hook);
    if blessing() {
        // An accepted outcome leaves no pending review behind.
        let _ = std::fs::remove_file(file.with_extension("snap.new"));
    }
    match (result.is_ok(), existed) {
        (true, _) if blessing() && std::fs::read_to_string(&file).ok() != before => {
            SnapshotStatus::Written
        }
        (true, true) => SnapshotStatus::Matches,
        (true, false) => SnapshotStatus::Written,
        (false, false) => SnapshotStatus::New,
        (false, true) => SnapshotStatus::Differs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: &str) -> Outcome {
        Outcome::one_step("k", "create", result)
    }

    #[test]
    fn diff_shows_only_what_changed_whatever_the_yaml_layout() {
        let dir = tempfile::tempdir().unwrap();
        // insta's layout: a header, then the body with its own indentation.
        let stored = "---\nsource: x\n---\ncase: c\nkernel: k\nend: completed\nsteps:\n  - name: s\n    probe: create\n    result: exited 0\n";
        std::fs::write(snapshot_file(dir.path(), "c", "k"), stored).unwrap();
        let d = diff(dir.path(), &outcome("exited 0")).unwrap();
        assert!(
            !d.lines()
                .any(|l| l.starts_with('+') && !l.starts_with("+++")),
            "{d}"
        );
        let d = diff(dir.path(), &outcome("killed by SIGKILL")).unwrap();
        assert!(d.contains("-  result: exited 0"), "{d}");
        assert!(d.contains("+  result: killed by SIGKILL"), "{d}");
        assert_eq!(
            d.lines()
                .filter(|l| l.starts_with('-') && !l.starts_with("---"))
                .count(),
            1,
            "{d}"
        );
    }
}
