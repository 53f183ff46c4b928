//! The runner's own interruption (Ctrl-C, SIGTERM) as the engine sees it.
//! Whoever catches the signal raises it *before* stopping the children, so
//! that a boot which then ends is known to have been stopped by the runner,
//! not by its kernel: its pair is judged `interrupted` (never compared with
//! a snapshot, never blessed), and a session starts nothing more.

use std::sync::atomic::{AtomicBool, Ordering};

static RAISED: AtomicBool = AtomicBool::new(false);

/// Marks this process as interrupted (for good: it is about to exit).
pub fn raise() {
    RAISED.store(true, Ordering::SeqCst);
}

/// Whether the runner has been interrupted.
pub fn raised() -> bool {
    RAISED.load(Ordering::SeqCst)
}
