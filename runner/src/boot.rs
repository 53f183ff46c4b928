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
}

/// The kernel command line: console on ttyS0, reboot (so QEMU exits) on panic,
/// our init from the initramfs.
pub fn kernel_cmdline(extra: &str) -> String {
    let mut c = String::from("console=ttyS0,115200 earlyprintk=serial,ttyS0 panic=-1 reboot=t rdinit=/init printk.time=1 nokaslr");
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

/// ttyS0 = QEMU's stdout (the kernel log), ttyS1 = our result socket.
pub fn serial_args(result_socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        "stdio,id=console,signal=off".into(),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        format!("socket,id=results,path={}", result_socket.display()),
        "-serial".into(),
        "chardev:results".into(),
        "-monitor".into(),
        "none".into(),
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
    a.extend(serial_args(&cfg.result_socket));
    a
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

/// Boots and collects. `on_console` sees each console line as it arrives
/// (to stream it to a person).
pub async fn boot(cfg: &VmConfig, mut on_console: impl FnMut(&str)) -> Result<BootResult> {
    let _ = std::fs::remove_file(&cfg.result_socket);
    let listener = tokio::net::UnixListener::bind(&cfg.result_socket)
        .with_context(|| format!("cannot listen on {}", cfg.result_socket.display()))?;
    let args = qemu_args(cfg);
    let mut cmd = Command::new(QEMU);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
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
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    // The result stream: QEMU connects to us at start-up.
    let results_task = tokio::spawn(async move {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let Ok((stream, _)) = listener.accept().await else {
            return (records, bad);
        };
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim_matches(|c| c == '\r' || c == '\0' || c == ' ');
            if line.is_empty() {
                continue;
            }
            match Record::from_line(line) {
                Ok(r) => records.push(r),
                Err(_) => bad.push(line.to_string()),
            }
        }
        (records, bad)
    });

    let mut console = String::new();
    let mut lines = BufReader::new(stdout);
    let mut buf = Vec::new();
    let deadline = tokio::time::sleep(cfg.deadline);
    tokio::pin!(deadline);
    let end = loop {
        buf.clear();
        tokio::select! {
            n = lines.read_until(b'\n', &mut buf) => {
                match n {
                    Ok(0) | Err(_) => {
                        let status = tokio::select! {
                            s = child.wait() => s?,
                            _ = &mut deadline => {
                                let _ = child.kill().await;
                                break BootEnd::TimedOut { after: started.elapsed() };
                            }
                        };
                        break BootEnd::Exited { code: status.code() };
                    }
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']);
                        on_console(line);
                        console.push_str(line);
                        console.push('\n');
                    }
                }
            }
            _ = &mut deadline => {
                let _ = child.kill().await;
                // Keep what the console still had buffered.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_millis(200), lines.read_to_end(&mut rest)).await;
                console.push_str(&String::from_utf8_lossy(&rest));
                break BootEnd::TimedOut { after: started.elapsed() };
            }
        }
    };
    let _ = child.wait().await;
    let qemu_stderr = stderr_task.await.unwrap_or_default();
    let (records, bad_lines) =
        match tokio::time::timeout(Duration::from_secs(2), results_task).await {
            Ok(Ok(r)) => r,
            _ => (Vec::new(), Vec::new()),
        };
    let _ = std::fs::remove_file(&cfg.result_socket);
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
        assert!(c.ends_with(" foo=1"));
    }

    #[test]
    fn two_serial_ports_console_first() {
        let a = serial_args(Path::new("/tmp/r.sock"));
        let serials: Vec<&String> = a
            .iter()
            .skip_while(|x| *x != "-serial")
            .step_by(1)
            .collect();
        assert_eq!(a[3], "chardev:console");
        assert_eq!(a[7], "chardev:results");
        assert!(a[5].starts_with("socket,id=results,path=/tmp/r.sock"));
        assert!(!serials.is_empty());
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let s = shell_line(&["-append".into(), "console=ttyS0 panic=-1".into()]);
        assert_eq!(s, "qemu-system-x86_64 -append 'console=ttyS0 panic=-1'");
    }
}
