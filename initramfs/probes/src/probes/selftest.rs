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

use serde::{Deserialize, Serialize};

use super::Probe;
use crate::{Failure, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub print: Option<String>,
    #[serde(default)]
    pub raise: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub random: bool,
}

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

fn signal(name: &str) -> Option<i32> {
    Some(match name {
        "SIGSEGV" => libc::SIGSEGV,
        "SIGBUS" => libc::SIGBUS,
        "SIGABRT" => libc::SIGABRT,
        "SIGKILL" => libc::SIGKILL,
        _ => return None,
    })
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let sig = match &self.raise {
            Some(name) => Some(signal(name).ok_or_else(|| {
                Failure::Usage(format!("probe selftest: field `raise`: unknown signal {name:?} (SIGSEGV, SIGBUS, SIGABRT or SIGKILL)"))
            })?),
            None => None,
        };
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
