//! `lkdtm`: provokes a kernel crash of a chosen kind with LKDTM (the Linux
//! Kernel Dump Test Module, CONFIG_LKDTM) and observes how the process that
//! asked for it ended. The crash-report corpus is made with it (`cargo
//! xtask corpus lkdtm`): the console log is what matters there, the
//! observation says what the kernel did to the process.
//!
//! debugfs is mounted on /sys/kernel/debug if it is not already. The crash
//! type must be one this kernel lists in
//! /sys/kernel/debug/provoke-crash/DIRECT (reading the file gives the list),
//! else the probe fails (exit 1) naming the ones it has. A forked child
//! writes the type to that file: an oops kills the child, not the probe, so
//! the step still reports. The child is waited for `wait_s` seconds; one
//! still in the kernel then (a lockup, a hung task, a lock an oops left
//! held) is sent SIGKILL and reported as still running, with its state and
//! where it sleeps (also on the console). A panic ends the boot: nothing
//! comes back.
//!
//! Args: `{"crash": "BUG", "wait_s": 30}`.

use std::ffi::CString;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Probe;
use crate::{errno, Failure, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::LkdtmArgs as Args;

const DEBUGFS: &str = "/sys/kernel/debug";
const DIRECT: &str = "/sys/kernel/debug/provoke-crash/DIRECT";

#[derive(Debug, Serialize)]
pub struct Observation {
    pub crash: String,
    /// How the child ended: `returned` (the write returned: the kernel
    /// carried on, e.g. after a WARNING or a check that caught nothing),
    /// `write failed: ERRNO`, `killed by SIGX` (an oops kills it with
    /// SIGSEGV, or SIGKILL), `exited N`, or `running after N s`.
    pub child: String,
    /// For a child still running at the deadline: its state (`R`, `D`,
    /// ...) and the kernel function it sleeps in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck: Option<String>,
    /// Whether SIGKILL ended a child still running (a child spinning or
    /// sleeping uninterruptibly in the kernel does not die).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed: Option<bool>,
}

/// Mounts debugfs on /sys/kernel/debug unless something is mounted there.
fn ensure_debugfs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(DEBUGFS))
    {
        return Ok(());
    }
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("debugfs"), c(DEBUGFS), c("debugfs"));
    // SAFETY: mount(2) with NUL-terminated strings we own and no data.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::Work(format!(
            "mount debugfs on {DEBUGFS}: {} ({e})",
            errno::of(&e)
        )));
    }
    Ok(())
}

/// The crash types LKDTM lists: the lines after `Available crash types:`.
pub fn crash_types(listing: &str) -> Vec<String> {
    listing
        .lines()
        .skip_while(|l| !l.starts_with("Available crash types"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// How a child that ended ended, from its wait status.
fn ended(status: i32) -> String {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => "returned".into(),
            // The child exits with the errno of its open or write.
            code => format!("write failed: {}", errno::name(code)),
        }
    } else if libc::WIFSIGNALED(status) {
        format!("killed by {}", signal_name(libc::WTERMSIG(status)))
    } else {
        format!("wait status {status:#x}")
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGTRAP => "SIGTRAP".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGABRT => "SIGABRT".into(),
        n => format!("signal {n}"),
    }
}

/// Forks a child that writes `crash` to DIRECT and exits: 0 when the write
/// returned all of it, else the errno of its open or write.
fn spawn_writer(crash: &str) -> Result<libc::pid_t> {
    // Everything the child needs, made before the fork: after it, the child
    // calls only async-signal-safe functions.
    let path = CString::new(DIRECT).expect("no NUL");
    let bytes = crash.as_bytes().to_vec();
    // SAFETY: fork(2); the child below only calls open, write and _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::Work(format!("fork: {} ({e})", errno::of(&e))));
    }
    if pid == 0 {
        // SAFETY: open/write on memory made before the fork, then _exit:
        // all async-signal-safe, as a child of a threaded process needs.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                libc::_exit(*libc::__errno_location());
            }
            let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            if n < 0 {
                libc::_exit(*libc::__errno_location());
            }
            libc::_exit(if n as usize == bytes.len() { 0 } else { 255 });
        }
    }
    Ok(pid)
}

/// Waits for `pid` until `deadline`: its wait status, or None if it still runs.
fn wait_until(pid: libc::pid_t, deadline: Instant) -> Result<Option<i32>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, with a status we own.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(Some(status));
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(Failure::Work(format!(
                "waiting for the child: {} ({e})",
                errno::of(&e)
            )));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        ensure_debugfs()?;
        let listing = std::fs::read_to_string(DIRECT).map_err(|e| {
            Failure::Work(format!(
                "reading {DIRECT}: {} ({e}); the kernel has no LKDTM (CONFIG_LKDTM: the debug flavor has it)",
                errno::of(&e)
            ))
        })?;
        let types = crash_types(&listing);
        if !types.contains(&self.crash) {
            return Err(Failure::Work(format!(
                "LKDTM on this kernel has no crash type `{}`; it has: {}",
                self.crash,
                types.join(" ")
            )));
        }
        eprintln!("lkdtm probe: writing {} to {DIRECT}", self.crash);
        let pid = spawn_writer(&self.crash)?;
        let deadline = Instant::now() + Duration::from_secs(self.wait_s);
        if let Some(status) = wait_until(pid, deadline)? {
            return Ok(Observation {
                crash: self.crash,
                child: ended(status),
                stuck: None,
                killed: None,
            });
        }
        // Still in the kernel: where, for the console and the observation.
        let lines = super::kselftest::where_stuck(pid);
        for l in &lines {
            eprintln!("[lkdtm {} stuck] {l}", self.crash);
        }
        let stuck = lines.first().map(|l| {
            // `thread T comm: state S, wchan W, syscall ...`: state and wchan.
            let after = l.split_once(": ").map_or(l.as_str(), |(_, r)| r);
            after.split(", syscall").next().unwrap_or(after).to_string()
        });
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let killed = wait_until(pid, Instant::now() + Duration::from_secs(2))?.is_some();
        Ok(Observation {
            crash: self.crash,
            child: format!("running after {} s", self.wait_s),
            stuck,
            killed: Some(killed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_gives_the_crash_types() {
        let listing = "Available crash types:\nPANIC\nBUG\nWARNING\n\n";
        assert_eq!(crash_types(listing), ["PANIC", "BUG", "WARNING"]);
        assert!(crash_types("").is_empty());
    }

    #[test]
    fn wait_statuses_read_as_endings() {
        assert_eq!(ended(0), "returned");
        assert_eq!(ended(22 << 8), "write failed: EINVAL");
        assert_eq!(ended(libc::SIGSEGV), "killed by SIGSEGV");
        assert_eq!(ended(libc::SIGKILL), "killed by SIGKILL");
    }
}
