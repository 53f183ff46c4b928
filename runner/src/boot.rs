//! Booting a kernel with an initramfs in QEMU, and collecting what comes out:
//! the console (ttyS0, the kernel log) and the result stream (ttyS1, JSON
//! [`Record`]s from the guest's init), read concurrently.
//!
//! The VM ends by itself: init reboots when the plan is done and the kernel
//! reboots on panic (`panic=-1`), and QEMU runs with `-no-reboot`, so either
//! ends QEMU. A deadline kills it otherwise. QEMU never outlives the runner:
//! it is killed when its handle is dropped (error, timeout, Ctrl-C) and, should
//! the runner itself die, by `PR_SET_PDEATHSIG`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use gmem_protocol::Record;

/// How the CPU is virtualized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through the host's /dev/kvm.
    Kvm,
    /// QEMU's software emulation (TCG); with `-cpu max` it emulates AMD SVM,
    /// so the guest still gets a working /dev/kvm.
    Tcg,
}

impl Accel {
    /// KVM only where it really works: /dev/kvm is usable *and* the CPU
    /// advertises svm or vmx (a paravirtual /dev/kvm without them cannot boot
    /// a stock kernel). `GMEMTEST_ACCEL=tcg|kvm` overrides.
    pub fn detect() -> (Accel, String) {
        match std::env::var("GMEMTEST_ACCEL").as_deref() {
            Ok("tcg") => return (Accel::Tcg, "GMEMTEST_ACCEL=tcg".into()),
            Ok("kvm") => return (Accel::Kvm, "GMEMTEST_ACCEL=kvm".into()),
            _ => {}
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "svm" || f == "vmx"));
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        match (kvm, hw) {
            (true, true) => (Accel::Kvm, "/dev/kvm usable and the CPU has svm/vmx".into()),
            (true, false) => (
                Accel::Tcg,
                "/dev/kvm exists but the CPU advertises neither svm nor vmx (paravirtual KVM cannot boot a stock kernel)".into(),
            ),
            (false, _) => (Accel::Tcg, "no usable /dev/kvm".into()),
        }
    }
}

/// Everything one boot needs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Appended to the base command line.
    pub extra_cmdline: String,
    pub accel: Accel,
    /// The whole boot is killed after this long.
    pub deadline: Duration,
    /// The result port's socket (created by us, QEMU connects to it).
    pub result_socket: PathBuf,
    /// QEMU's human monitor (QEMU listens; we connect to ask for backtraces).
    pub monitor_socket: PathBuf,
    /// A guest that prints nothing on either port for this long is taken for
    /// hung: it is sent an NMI for backtraces, then stopped.
    pub silence: Option<Duration>,
    /// `Some(log)`: the console is the user's terminal (QEMU's stdin and
    /// stdout), for `run --shell`; QEMU also writes it to `log`.
    pub interactive: Option<PathBuf>,
    /// Start QEMU's gdb stub on this local port, the CPU stopped until gdb
    /// continues it.
    pub gdb: Option<u16>,
}

/// The console line the runner adds when it sends the NMI.
pub const NMI_NOTE: &str = "gmemtest: no output for";

/// How long a guest gets, after the NMI, to print its backtraces and reboot.
pub const BACKTRACE_GRACE: Duration = Duration::from_secs(15);

/// The kernel command line: console on ttyS0, reboot (so QEMU exits) on panic,
/// our init from the initramfs. An NMI the kernel did not expect (the one the
/// runner sends a silent guest) panics it, printing every task and every CPU's
/// backtrace first.
pub fn kernel_cmdline(extra: &str) -> String {
    let mut c = String::from(
        "console=ttyS0,115200 panic=-1 reboot=t rdinit=/init printk.time=1 \
         unknown_nmi_panic panic_sys_info=tasks,all_bt",
    );
    if !extra.trim().is_empty() {
        c.push(' ');
        c.push_str(extra.trim());
    }
    c
}

/// `-accel` and `-cpu`: the CPU model that gives the guest nested SVM/VMX.
pub fn accel_args(accel: Accel) -> Vec<String> {
    match accel {
        Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
        Accel::Tcg => vec!["-accel".into(), "tcg".into(), "-cpu".into(), "max".into()],
    }
}

/// A bare machine: no default devices, no display, no network, no reboot.
pub fn machine_args(memory_mb: u32, cpus: u32) -> Vec<String> {
    [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        &memory_mb.to_string(),
        "-smp",
        &cpus.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Direct kernel boot with our initramfs.
pub fn kernel_args(kernel: &Path, initramfs: &Path, cmdline: &str) -> Vec<String> {
    vec![
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initramfs.display().to_string(),
        "-append".into(),
        cmdline.to_string(),
    ]
}

/// ttyS0 = QEMU's stdio (the kernel log), ttyS1 = our result socket, and
/// the human monitor on a socket QEMU listens on.
pub fn serial_args(
    result_socket: &Path,
    monitor_socket: &Path,
    console_log: Option<&Path>,
) -> Vec<String> {
    let console = match console_log {
        Some(log) => format!("stdio,id=console,signal=off,logfile={}", log.display()),
        None => "stdio,id=console,signal=off".into(),
    };
    vec![
        "-chardev".into(),
        console,
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        format!("socket,id=results,path={}", result_socket.display()),
        "-serial".into(),
        "chardev:results".into(),
        "-monitor".into(),
        format!("unix:{},server=on,wait=off", monitor_socket.display()),
    ]
}

/// All of QEMU's arguments for `cfg`.
pub fn qemu_args(cfg: &VmConfig) -> Vec<String> {
    let mut a = machine_args(cfg.memory_mb, cfg.cpus);
    a.extend(accel_args(cfg.accel));
    a.extend(kernel_args(
        &cfg.kernel,
        &cfg.initramfs,
        &kernel_cmdline(&cfg.extra_cmdline),
    ));
    a.extend(serial_args(
        &cfg.result_socket,
        &cfg.monitor_socket,
        cfg.interactive.as_deref(),
    ));
    a.extend(gdb_args(cfg.gdb));
    a
}

/// QEMU's gdb stub on a local port, the CPU held at reset until gdb says
/// `continue`.
pub fn gdb_args(port: Option<u16>) -> Vec<String> {
    match port {
        Some(p) => vec!["-gdb".into(), format!("tcp:127.0.0.1:{p}"), "-S".into()],
        None => vec![],
    }
}

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// QEMU exited by itself (guest reboot or power-off).
    Exited { code: Option<i32> },
    /// Killed at the deadline.
    TimedOut { after: Duration },
    /// Silent for this long, so sent an NMI for backtraces; then it ended
    /// (its panic rebooted it) or was killed.
    Hung { silent_for: Duration },
}

/// What came out of one boot.
#[derive(Debug, Clone)]
pub struct BootResult {
    pub console: String,
    pub records: Vec<Record>,
    /// Result-stream lines that were not records (a corrupted stream).
    pub bad_lines: Vec<String>,
    pub end: BootEnd,
    pub elapsed: Duration,
    /// QEMU's own stderr (its errors, not the guest's).
    pub qemu_stderr: String,
}

/// Shell-quoted command line, for logs and reproduce hints.
pub fn shell_line(args: &[String]) -> String {
    std::iter::once(QEMU.to_string())
        .chain(args.iter().map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asks a silent guest for backtraces: an NMI through QEMU's monitor (which
/// the kernel, booted with `unknown_nmi_panic`, answers by printing every
/// task and CPU backtrace and panicking into a reboot).
async fn send_nmi(monitor: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut m = tokio::net::UnixStream::connect(monitor)
        .await
        .with_context(|| format!("cannot connect to QEMU's monitor {}", monitor.display()))?;
    m.write_all(b"nmi\n").await?;
    m.flush().await?;
    // Let QEMU read the command before the connection goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// The next console line, or never when the console is the user's terminal.
async fn read_console_line(
    out: &mut Option<BufReader<tokio::process::ChildStdout>>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    match out {
        Some(o) => o.read_until(b'\n', buf).await,
        None => std::future::pending().await,
    }
}

/// Boots and collects. `on_console` sees each console line as it arrives
/// (to stream it to a person).
pub async fn boot(cfg: &VmConfig, mut on_console: impl FnMut(&str)) -> Result<BootResult> {
    let _ = std::fs::remove_file(&cfg.result_socket);
    let listener = tokio::net::UnixListener::bind(&cfg.result_socket)
        .with_context(|| format!("cannot listen on {}", cfg.result_socket.display()))?;
    let args = qemu_args(cfg);
    let mut cmd = Command::new(QEMU);
    let interactive = cfg.interactive.is_some();
    cmd.args(&args)
        .stdin(if interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(if interactive {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
    // child when this thread's process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {QEMU} (run `cargo xtask setup`)"))?;
    let mut out = child.stdout.take().map(BufReader::new);
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    // The result stream: QEMU connects to us at start-up. Each line goes to
    // the main loop, which also uses it as a sign of life.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let results_task = tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim_matches(|c| c == '\r' || c == '\0' || c == ' ');
            if !line.is_empty() && line_tx.send(line.to_string()).is_err() {
                return;
            }
        }
    });
    let mut records = Vec::new();
    let mut bad_lines = Vec::new();
    let mut take_line = |line: String| match Record::from_line(&line) {
        Ok(r) => records.push(r),
        Err(_) => bad_lines.push(line),
    };

    let mut console = String::new();
    let mut buf = Vec::new();
    let mut deadline = tokio::time::Instant::now() + cfg.deadline;
    let mut last_sign_of_life = tokio::time::Instant::now();
    let mut nmi_sent: Option<Duration> = None;
    let mut results_open = true;
    let end = loop {
        let silence_at = match (cfg.silence, nmi_sent) {
            (Some(s), None) => last_sign_of_life + s,
            _ => deadline + Duration::from_secs(3600),
        };
        buf.clear();
        tokio::select! {
            status = child.wait(), if out.is_none() => {
                // Interactive: the console is the user's; QEMU logged it.
                let status = status?;
                break BootEnd::Exited { code: status.code() };
            }
            n = read_console_line(&mut out, &mut buf) => {
                match n {
                    Ok(0) | Err(_) => {
                        let status = tokio::select! {
                            s = child.wait() => s?,
                            _ = tokio::time::sleep_until(deadline) => {
                                let _ = child.kill().await;
                                break BootEnd::TimedOut { after: started.elapsed() };
                            }
                        };
                        break match nmi_sent {
                            Some(silent_for) => BootEnd::Hung { silent_for },
                            None => BootEnd::Exited { code: status.code() },
                        };
                    }
                    Ok(_) => {
                        last_sign_of_life = tokio::time::Instant::now();
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']);
                        on_console(line);
                        console.push_str(line);
                        console.push('\n');
                    }
                }
            }
            line = line_rx.recv(), if results_open => {
                match line {
                    Some(l) => {
                        last_sign_of_life = tokio::time::Instant::now();
                        take_line(l);
                    }
                    None => results_open = false,
                }
            }
            _ = tokio::time::sleep_until(silence_at) => {
                let silent_for = cfg.silence.unwrap_or_default();
                let note = format!("{NMI_NOTE} {silent_for:.0?}: sending an NMI for backtraces");
                on_console(&note);
                console.push_str(&note);
                console.push('\n');
                if let Err(e) = send_nmi(&cfg.monitor_socket).await {
                    let note = format!("gmemtest: {e:#}");
                    on_console(&note);
                    console.push_str(&note);
                    console.push('\n');
                }
                nmi_sent = Some(silent_for);
                deadline = deadline.min(tokio::time::Instant::now() + BACKTRACE_GRACE);
            }
            _ = tokio::time::sleep_until(deadline) => {
                let _ = child.kill().await;
                // Keep what the console still had buffered.
                if let Some(out) = out.as_mut() {
                    let mut rest = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_millis(200), out.read_to_end(&mut rest)).await;
                    console.push_str(&String::from_utf8_lossy(&rest));
                }
                break match nmi_sent {
                    Some(silent_for) => BootEnd::Hung { silent_for },
                    None => BootEnd::TimedOut { after: started.elapsed() },
                };
            }
        }
    };
    let _ = child.wait().await;
    let qemu_stderr = stderr_task.await.unwrap_or_default();
    // The rest of the result stream, now that QEMU is gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), results_task).await;
    while let Ok(l) = line_rx.try_recv() {
        take_line(l);
    }
    if let Some(log) = &cfg.interactive {
        console = std::fs::read_to_string(log)
            .unwrap_or_default()
            .replace('\r', "");
    }
    let _ = std::fs::remove_file(&cfg.result_socket);
    let _ = std::fs::remove_file(&cfg.monitor_socket);
    if let BootEnd::Exited { code: Some(c) } = end {
        if c != 0 && console.is_empty() {
            bail!("{QEMU} failed to start (exit {c}):\n{}", qemu_stderr.trim());
        }
    }
    Ok(BootResult {
        console,
        records,
        bad_lines,
        end,
        elapsed: started.elapsed(),
        qemu_stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        VmConfig {
            kernel: "/k/bzImage".into(),
            initramfs: "/i/initramfs.cpio.gz".into(),
            memory_mb: 1024,
            cpus: 2,
            extra_cmdline: "foo=1".into(),
            accel: Accel::Tcg,
            deadline: Duration::from_secs(10),
            result_socket: "/tmp/r.sock".into(),
            monitor_socket: "/tmp/m.sock".into(),
            silence: None,
            interactive: None,
            gdb: None,
        }
    }

    #[test]
    fn tcg_uses_cpu_max_for_nested_svm() {
        let a = qemu_args(&cfg());
        let s = a.join(" ");
        assert!(s.contains("-accel tcg -cpu max"), "{s}");
        assert!(s.contains("-no-reboot"), "{s}");
        assert!(s.contains("-m 1024 -smp 2"), "{s}");
        assert!(
            s.contains("-kernel /k/bzImage -initrd /i/initramfs.cpio.gz"),
            "{s}"
        );
    }

    #[test]
    fn gdb_stub_holds_the_cpu_and_interactive_console_is_logged() {
        assert_eq!(
            gdb_args(Some(1234)),
            vec!["-gdb", "tcp:127.0.0.1:1234", "-S"]
        );
        assert!(gdb_args(None).is_empty());
        let a = serial_args(
            Path::new("/r"),
            Path::new("/m"),
            Some(Path::new("/l/console.log")),
        );
        assert_eq!(a[1], "stdio,id=console,signal=off,logfile=/l/console.log");
    }

    #[test]
    fn kvm_uses_host_cpu() {
        assert_eq!(
            accel_args(Accel::Kvm),
            vec!["-accel", "kvm", "-cpu", "host"]
        );
    }

    #[test]
    fn cmdline_panics_into_reboot_and_appends_extra() {
        let c = kernel_cmdline(" foo=1 ");
        assert!(c.contains("console=ttyS0"));
        assert!(c.contains("panic=-1"));
        assert!(c.contains("rdinit=/init"));
        // A silent guest's NMI gives backtraces and a reboot.
        assert!(c.contains("unknown_nmi_panic") && c.contains("panic_sys_info=tasks,all_bt"));
        assert!(c.ends_with(" foo=1"));
    }

    #[test]
    fn two_serial_ports_console_first_and_a_monitor_socket() {
        let a = serial_args(Path::new("/tmp/r.sock"), Path::new("/tmp/m.sock"), None);
        assert_eq!(a[3], "chardev:console");
        assert_eq!(a[7], "chardev:results");
        assert!(a[5].starts_with("socket,id=results,path=/tmp/r.sock"));
        assert_eq!(a[8..], ["-monitor", "unix:/tmp/m.sock,server=on,wait=off"]);
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let s = shell_line(&["-append".into(), "console=ttyS0 panic=-1".into()]);
        assert_eq!(s, "qemu-system-x86_64 -append 'console=ttyS0 panic=-1'");
    }
}
