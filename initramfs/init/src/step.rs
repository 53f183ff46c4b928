//! Running one plan step: the probe as a child process, pinned to a CPU if
//! asked, its stdout captured (the observation), its stderr on the console,
//! killed at the step's deadline.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::path::Path;

use gmem_protocol::{PlanStep, StepExit};

/// How much of a bad stdout is kept in `bad_output`.
const BAD_OUTPUT_LIMIT: usize = 4096;
/// How much stdout is kept at all (a probe prints one small object).
const STDOUT_LIMIT: usize = 1 << 20;

/// What one step produced.
pub struct StepResult {
    pub exit: StepExit,
    pub observation: Option<serde_json::Value>,
    pub bad_output: Option<String>,
    pub duration_ms: u64,
}

/// Runs `step` with the probe binary `probe` to completion or to its deadline.
pub fn run(step: &PlanStep, probe: &Path) -> StepResult {
    let start = Instant::now();
    let args = if step.args.is_null() {
        "{}".to_string()
    } else {
        step.args.to_string()
    };
    let mut cmd = Command::new(probe);
    cmd.arg(&step.probe)
        .arg(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The probe inherits init's CPU affinity, so pinning it means pinning
    // init for the length of the spawn. (A pre_exec hook would make std fork
    // through an AF_UNIX socketpair, and the guest kernel has no CONFIG_UNIX.)
    let saved = match step.cpu.map(pin_to_cpu).transpose() {
        Ok(saved) => saved,
        Err(e) => {
            return StepResult {
                exit: StepExit::SpawnFailed {
                    error: format!("pinning to cpu {}: {e}", step.cpu.unwrap_or(0)),
                },
                observation: None,
                bad_output: None,
                duration_ms: elapsed_ms(start),
            }
        }
    };
    let spawned = cmd.spawn();
    if let Some(mask) = saved {
        set_affinity(&mask);
    }
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return StepResult {
                exit: StepExit::SpawnFailed {
                    error: format!("{}: {e}", probe.display()),
                },
                observation: None,
                bad_output: None,
                duration_ms: elapsed_ms(start),
            }
        }
    };
    let deadline = start + Duration::from_millis(step.timeout_ms);
    let (status, stdout) = supervise(&mut child, deadline);
    let duration_ms = elapsed_ms(start);
    let exit = match status {
        None => StepExit::TimedOut,
        Some(status) => exit_of(status),
    };
    let (observation, bad_output) = parse_output(&stdout);
    StepResult {
        exit,
        observation,
        bad_output,
        duration_ms,
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Pins the calling thread to `cpu`; returns the mask it had.
fn pin_to_cpu(cpu: u32) -> io::Result<libc::cpu_set_t> {
    if cpu as usize >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays in bounds
    // (checked above); sched_{get,set}affinity read/write a live set.
    unsafe {
        let mut saved: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(saved)
    }
}

fn set_affinity(mask: &libc::cpu_set_t) {
    // SAFETY: sched_setaffinity reads a live cpu_set_t.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), mask) };
}

/// Collects stdout and waits for the child until `deadline`; past it the
/// child is killed (SIGKILL) and the status is `None`.
fn supervise(child: &mut Child, deadline: Instant) -> (Option<ExitStatus>, Vec<u8>) {
    let mut stdout = child.stdout.take();
    let mut out = Vec::new();
    let pidfd = pidfd_open(child.id());
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            if let Some(s) = stdout.as_mut() {
                drain_nonblocking(s, &mut out);
            }
            return (Some(status), out);
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, out);
        }
        // Without a pidfd, wake up often to check on the child.
        let mut wait_ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        if pidfd.is_none() {
            wait_ms = wait_ms.min(10);
        }
        let mut fds = Vec::with_capacity(2);
        if let Some(s) = &stdout {
            fds.push(libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(p) = &pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a live array of fds.len() pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms.max(1)) };
        if n <= 0 {
            continue;
        }
        if let Some(s) = stdout.as_mut() {
            if fds[0].revents != 0 {
                let mut buf = [0u8; 4096];
                match s.read(&mut buf) {
                    Ok(0) => stdout = None,
                    Ok(k) => keep(&mut out, &buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => stdout = None,
                }
            }
        }
    }
}

fn keep(out: &mut Vec<u8>, bytes: &[u8]) {
    let room = STDOUT_LIMIT.saturating_sub(out.len());
    out.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Reads what is left in the pipe without waiting for writers that may
/// still hold it (a grandchild).
fn drain_nonblocking(stdout: &mut std::process::ChildStdout, out: &mut Vec<u8>) {
    let fd = stdout.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on an open fd.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        )
    };
    let mut buf = [0u8; 4096];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => keep(out, &buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn exit_of(status: ExitStatus) -> StepExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => StepExit::Exited { code },
        (None, Some(sig)) => StepExit::Signaled {
            signal: signal_name(sig),
        },
        // Stopped/continued cannot be reported by wait() without WUNTRACED.
        (None, None) => StepExit::Exited { code: -1 },
    }
}

/// The name of a signal number ("SIGSEGV").
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// stdout as an observation: one JSON object, or else the text (truncated)
/// as bad output. Nothing printed is neither.
pub fn parse_output(stdout: &[u8]) -> (Option<serde_json::Value>, Option<String>) {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return (None, None);
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(v) if v.is_object() => (Some(v), None),
        _ => (None, Some(truncate(&text, BAD_OUTPUT_LIMIT))),
    }
}

fn truncate(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A human description of how a step ended, for the console.
pub fn describe(exit: &StepExit) -> String {
    match exit {
        StepExit::Exited { code } => format!("exited {code}"),
        StepExit::Signaled { signal } => format!("killed by {signal}"),
        StepExit::TimedOut => "timed out (killed)".into(),
        StepExit::SpawnFailed { error } => format!("could not start: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_is_an_observation() {
        let (obs, bad) = parse_output(b"{\"a\":1}\n");
        assert_eq!(obs, Some(serde_json::json!({"a": 1})));
        assert_eq!(bad, None);
    }

    #[test]
    fn anything_else_is_bad_output() {
        assert_eq!(parse_output(b"[1]\n").1.as_deref(), Some("[1]\n"));
        assert_eq!(
            parse_output(b"{\"a\":1}\n{\"b\":2}\n").1.as_deref(),
            Some("{\"a\":1}\n{\"b\":2}\n")
        );
        assert_eq!(parse_output(b"oops").1.as_deref(), Some("oops"));
        assert_eq!(parse_output(b"  \n"), (None, None));
    }

    #[test]
    fn bad_output_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(3000); // 6000 bytes
        let (_, bad) = parse_output(long.as_bytes());
        let bad = bad.unwrap();
        assert!(bad.len() <= BAD_OUTPUT_LIMIT && bad.len() >= BAD_OUTPUT_LIMIT - 1);
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(libc::SIGBUS), "SIGBUS");
        assert_eq!(signal_name(64), "signal 64");
    }

    fn step(probe_cmd: &str, timeout_ms: u64) -> PlanStep {
        PlanStep {
            name: "t".into(),
            probe: probe_cmd.into(),
            args: serde_json::Value::Null,
            timeout_ms,
            cpu: None,
        }
    }

    /// `supervise` with a shell standing in for the probe.
    fn sh(script: &str, timeout_ms: u64) -> (Option<ExitStatus>, Vec<u8>) {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        supervise(
            &mut child,
            Instant::now() + Duration::from_millis(timeout_ms),
        )
    }

    #[test]
    fn supervise_collects_output_and_status() {
        let (status, out) = sh("echo '{\"x\":1}'; exit 3", 5000);
        assert_eq!(status.unwrap().code(), Some(3));
        assert_eq!(out, b"{\"x\":1}\n");
        let (status, _) = sh("kill -SEGV $$", 5000);
        assert_eq!(
            exit_of(status.unwrap()),
            StepExit::Signaled {
                signal: "SIGSEGV".into()
            }
        );
    }

    #[test]
    fn supervise_kills_at_the_deadline() {
        let t = Instant::now();
        let (status, out) = sh("echo early; sleep 10", 300);
        assert!(status.is_none());
        assert_eq!(out, b"early\n");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn pinning_returns_the_old_mask() {
        let saved = pin_to_cpu(0).unwrap();
        // SAFETY: sched_getcpu has no preconditions.
        assert_eq!(unsafe { libc::sched_getcpu() }, 0);
        set_affinity(&saved);
        assert!(pin_to_cpu(libc::CPU_SETSIZE as u32).is_err());
    }

    #[test]
    fn missing_probe_binary_is_a_spawn_failure() {
        let r = run(&step("caps", 1000), Path::new("/nonexistent/gmem-probe"));
        assert!(matches!(r.exit, StepExit::SpawnFailed { .. }));
    }
}
