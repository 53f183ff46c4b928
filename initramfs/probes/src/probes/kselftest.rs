//! `kselftest`: runs one upstream KVM selftest packed with the kernel under
//! test (`KSELFTEST_DIR/TEST`), with a deadline of its own (shorter than the
//! step's, so a hung test is still reported here rather than only killed by
//! init), and observes how it ended and what it reported: the exit's
//! meaning (pass, skip, fail, signal, timeout), its TAP results and totals,
//! and a failed assertion (file:line, expression, errno name, message). Its
//! whole output goes to stderr (the console) for people; the observation
//! holds only the parsed, normalized facts.
//!
//! Args: `{"test": "guest_memfd_test", "args": [], "timeout_s": 120}`.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Probe;
use crate::ksft::{self, Parsed};
use crate::{Failure, Result};
use gmem_protocol::KSELFTEST_DIR;

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::KselftestArgs as Args;

#[derive(Debug, Serialize)]
pub struct Observation {
    pub test: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `pass` (exit 0), `skip` (exit 4, KSFT_SKIP), `fail` (any other exit;
    /// 254 is a failed TEST_ASSERT), `signal`, `timeout`.
    pub result: &'static str,
    /// `exited N`, `killed by SIGX`, `killed after N s`.
    pub exit: String,
    #[serde(flatten)]
    pub parsed: Parsed,
}

/// Output kept per stream: far more than any KVM selftest prints.
const OUTPUT_LIMIT: usize = 4 << 20;

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        // `test` is a plain selftest name, never a path out of
        // KSELFTEST_DIR: the schema checked it when it parsed the arguments.
        let bin = Path::new(KSELFTEST_DIR).join(&self.test);
        if !bin.is_file() {
            return Err(Failure::Work(format!(
                "{} is not in the initramfs (the runner packs the tests its cases name)",
                bin.display()
            )));
        }
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .args(&self.args)
            .current_dir("/tmp")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a deadline kills what it forked too.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::Work(format!("cannot run {}: {e}", bin.display())))?;
        let pid = child.id() as i32;
        let readers = [
            read_all(child.stdout.take().expect("piped")),
            read_all(child.stderr.take().expect("piped")),
        ];
        let deadline = started + Duration::from_secs(self.timeout_s);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    // Where it is stuck, for the console log, before it goes.
                    for l in where_stuck(pid) {
                        eprintln!("[{} stuck] {l}", self.test);
                    }
                    // SAFETY: kill(2) on the process group we created.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(Failure::Work(format!("waiting for {}: {e}", self.test))),
            }
        };
        // Whatever it forked and left behind goes too (and closes the pipes).
        // SAFETY: as above; ESRCH when the group is already empty.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
        let (stdout, stderr) = (
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        );
        echo(&self.test, &stdout, &stderr);
        let (result, exit) = match status {
            None => ("timeout", format!("killed after {} s", self.timeout_s)),
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => (ksft::meaning(code), format!("exited {code}")),
                (None, Some(sig)) => ("signal", format!("killed by {}", signal_name(sig))),
                _ => ("fail", format!("{s}")),
            },
        };
        Ok(Observation {
            test: self.test,
            args: self.args,
            result,
            exit,
            parsed: ksft::parse(&stdout, &stderr),
        })
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_LIMIT.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        out
    })
}

/// Each thread of process `pid`: its name, state, the kernel function it
/// sleeps in (wchan) and the system call it is in (number and first
/// arguments, from /proc's `syscall`), so that a hung test says whether it
/// spins in user space, sleeps, or loops in an ioctl.
pub fn where_stuck(pid: i32) -> Vec<String> {
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("({e})"))
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![format!("pid {pid}: no /proc/{pid}/task")];
    };
    let mut tids: Vec<String> = tasks
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect();
    tids.sort_by_key(|t| t.parse::<u64>().unwrap_or(0));
    tids.iter()
        .map(|tid| {
            let dir = std::path::PathBuf::from(format!("/proc/{pid}/task/{tid}"));
            let stat = read(dir.join("stat"));
            // `pid (comm) S ...`: the state follows the last ')'.
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            let syscall: Vec<String> = read(dir.join("syscall"))
                .split_whitespace()
                .take(3)
                .map(String::from)
                .collect();
            format!(
                "thread {tid} {}: state {state}, wchan {}, syscall {}",
                read(dir.join("comm")),
                read(dir.join("wchan")),
                syscall.join(" ")
            )
        })
        .collect()
}

/// The test's own output, on the console for a person reading the log.
fn echo(test: &str, stdout: &str, stderr: &str) {
    let mut e = std::io::stderr().lock();
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        for l in text.lines() {
            let _ = writeln!(e, "[{test} {name}] {l}");
        }
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGTRAP => "SIGTRAP".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_process_says_where_it_sleeps() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let lines = where_stuck(child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert!(l.contains(" sleep: state S, wchan "), "{l}");
        // clock_nanosleep (230) or nanosleep (35), on x86-64.
        assert!(
            l.contains("syscall 230 ") || l.contains("syscall 35 "),
            "{l}"
        );
        assert!(where_stuck(i32::MAX)[0].contains("no /proc"));
    }
}
