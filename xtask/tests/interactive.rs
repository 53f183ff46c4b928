//! `cargo xtask run --shell` and `--gdb`, driven as a person would: the
//! shell through the terminal (here a pipe), the gdb stub with gdb itself.
//! Uses the stock kernel (built or cached like the case suite does).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    // Logs of its own: the `cases` harness may run beside it (cargo-nextest).
    c.env(
        "GMEMTEST_OUT",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/gmemtest/tests/interactive"),
    );
    c
}

#[test]
fn shell_runs_commands_in_the_guest_and_exit_powers_off() {
    let mut child = xtask()
        .args(["run", "gmem_caps", "--kernel", "stock-7.3", "--shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xtask");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // The console is this pipe: wait for init to say the shell is coming,
    // then type. (Earlier, while the kernel boots, nothing has the serial
    // port open and what is typed is lost.)
    let (shell_tx, shell_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("dropping to a shell") {
                let _ = shell_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let mut typed = false;
    for _ in 0..1200 {
        std::thread::sleep(Duration::from_millis(100));
        if !typed && shell_rx.try_recv().is_ok() {
            // The guest's tty buffers it until the shell reads.
            let _ = stdin.write_all(b"echo in-guest-$((6*7)); gmem-probe meminfo '{}'\nexit\n");
            typed = true;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    assert!(
        out.contains("in-guest-42"),
        "the shell did not run the command:\n{out}"
    );
    assert!(
        out.contains("\"direct_map_4k\":true"),
        "the probe is not on the PATH:\n{out}"
    );
    assert!(
        out.contains("done, rebooting"),
        "exit did not power off:\n{out}"
    );
    assert!(status.success(), "{status:?}\n{out}");
}

#[test]
fn gdb_attaches_to_the_stub_and_the_run_completes() {
    let port = "47391";
    let mut child = xtask()
        .args(["run", "gmem_caps", "--kernel", "stock-7.3", "--gdb", port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xtask");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // The printed command names vmlinux: use it as a person would.
    let mut gdb_line = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(cmd) = line.trim().strip_prefix("gdb ") {
            gdb_line = Some(cmd.to_string());
            break;
        }
        line.clear();
    }
    let gdb_line = gdb_line.expect("xtask printed no gdb command");
    let vmlinux = gdb_line.split_whitespace().next().unwrap().to_string();
    assert!(std::path::Path::new(&vmlinux).is_file(), "{vmlinux}");
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let gdb = Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            "-ex",
            &format!("target remote 127.0.0.1:{port}"),
        ])
        // Stop in the kernel by symbol (vmlinux's symbols), then let it run.
        .args([
            "-ex",
            "hbreak start_kernel",
            "-ex",
            "continue",
            "-ex",
            "info symbol $pc",
        ])
        .args(["-ex", "delete", "-ex", "continue"])
        .arg(&vmlinux)
        .output()
        .expect("gdb");
    let gdb_out =
        String::from_utf8_lossy(&gdb.stdout).to_string() + &String::from_utf8_lossy(&gdb.stderr);
    let status = child.wait().unwrap();
    let rest = rest.join().unwrap();
    assert!(
        gdb_out.contains("start_kernel in section .init.text"),
        "gdb did not stop in start_kernel:\n{gdb_out}"
    );
    assert!(
        gdb_out.contains("exited normally"),
        "the guest did not run to its end under gdb:\n{gdb_out}"
    );
    assert!(
        status.success(),
        "the run did not complete after gdb continued: {status:?}\n{rest}\n{gdb_out}"
    );
}

/// `cargo xtask shell --exec`: the command runs as root in the built kernel
/// on the host's files, with the probes on the PATH and /dev/kvm usable,
/// and its exit status is the shell's.
#[test]
fn shell_exec_runs_a_probe_through_vng_and_returns_its_status() {
    let out = xtask()
        .args([
            "shell",
            "--kernel",
            "stock-7.3",
            "--exec",
            "uname -r; id -u; test -c /dev/kvm && echo kvm-ok; gmem-probe caps '{}'; exit 7",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("xtask");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    let mut lines = stdout.lines();
    let release = lines.next().unwrap_or_default();
    assert!(
        release.starts_with("7.3"),
        "not the built kernel: {release}\n{stderr}"
    );
    // A different kernel from the host's, so this really ran in the guest.
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(release, host.trim());
    assert_eq!(lines.next(), Some("0"), "not root in the guest:\n{stdout}");
    assert!(
        stdout.contains("kvm-ok"),
        "no /dev/kvm in the guest:\n{stdout}"
    );
    assert!(
        stdout.contains("\"guest_memfd\":true"),
        "the probe did not run (PATH?):\n{stdout}\n{stderr}"
    );
}
