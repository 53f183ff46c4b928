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
}

/// The snapshot file of a (case, kernel).
pub fn snapshot_file(dir: &Path, case: &str, kernel: &str) -> PathBuf {
    dir.join(format!("{}.snap", snapshot_name(case, kernel)))
}

pub fn snapshot_name(case: &str, kernel: &str) -> String {
    format!("{case}@{kernel}")
}

/// Whether insta will write snapshots in this process (blessing).
fn blessing() -> bool {
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
