//! `selftest`: misbehaves on purpose, so the framework's handling of a probe
//! that hangs, dies by a signal, or prints something that is not one JSON
//! object can be tested end to end. Observes nothing about the kernel.
//!
//! In order: sleeps `sleep_ms`, prints `print` verbatim if given (instead of
//! an observation), raises `raise` ("SIGSEGV", "SIGBUS", "SIGABRT",
//! "SIGKILL") if given, exits with `exit_code` if given; otherwise prints
//! `{"selftest": "ok"}`, with `"random": N` (from the kernel's random
//! source) if `random` is set: an outcome that differs from boot to boot,
//! for `--repeat` to catch.

use std::io::Write;

use serde::Serialize;

use super::Probe;
use crate::{Failure, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::SelftestArgs as Args;
use gmem_protocol::args::Signal;

#[derive(Debug, Serialize)]
pub struct Observation {
    pub selftest: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random: Option<u64>,
}

/// 64 bits from the kernel's random source.
fn random_u64() -> Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom fills at most buf.len() bytes of a buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(Failure::Work(format!(
            "getrandom: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(u64::from_le_bytes(buf))
}

fn signal(sig: Signal) -> i32 {
    match sig {
        Signal::Segv => libc::SIGSEGV,
        Signal::Bus => libc::SIGBUS,
        Signal::Abrt => libc::SIGABRT,
        Signal::Kill => libc::SIGKILL,
    }
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let sig = self.raise.map(signal);
        std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
        if let Some(text) = &self.print {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
        if let Some(sig) = sig {
            // SAFETY: resetting a signal to its default action and raising it.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
        if let Some(code) = self.exit_code {
            std::process::exit(code);
        }
        if self.print.is_some() {
            std::process::exit(0);
        }
        Ok(Observation {
            selftest: "ok",
            random: if self.random {
                Some(random_u64()?)
            } else {
                None
            },
        })
    }
}
