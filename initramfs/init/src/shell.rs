//! `cargo xtask run --shell`: after the steps, an interactive shell on the
//! serial console, with the probe binary on the PATH. The VM powers off when
//! the shell exits.

use std::ffi::CString;

use gmem_protocol::{PROBE_BIN, SHELL_BIN};

use crate::report::console;

/// Runs the shell to its end. Never fails the plan: a missing shell is said
/// on the console and the guest goes on to power off.
pub fn run() {
    if !std::path::Path::new(SHELL_BIN).exists() {
        console(&format!("no shell in this initramfs ({SHELL_BIN})"));
        return;
    }
    console("dropping to a shell; `exit` powers the VM off");
    let probe_dir = std::path::Path::new(PROBE_BIN)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // SAFETY: fork in a single-threaded PID 1; the child only calls
    // async-signal-safe functions (setsid, open, ioctl, dup2, execve) before
    // exec, with arguments prepared before the fork.
    let tty = CString::new("/dev/ttyS0").expect("no NUL");
    let sh = CString::new(SHELL_BIN).expect("no NUL");
    let argv_strs = [
        "sh".to_string(),
        "-c".to_string(),
        format!("{SHELL_BIN} --install -s /bin; exec /bin/sh -i"),
    ];
    let argv_c: Vec<CString> = argv_strs
        .iter()
        .map(|a| CString::new(a.as_str()).expect("no NUL"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env_c: Vec<CString> = [
        format!("PATH=/bin:{probe_dir}"),
        "HOME=/".to_string(),
        "TERM=vt100".to_string(),
        "PS1=gmemtest# ".to_string(),
    ]
    .iter()
    .map(|e| CString::new(e.as_str()).expect("no NUL"))
    .collect();
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: see above.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child; all pointers were built before the fork.
        unsafe {
            libc::setsid();
            let fd = libc::open(tty.as_ptr(), libc::O_RDWR);
            if fd >= 0 {
                libc::ioctl(fd, libc::TIOCSCTTY, 0);
                libc::dup2(fd, 0);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
            }
            libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        console(&format!(
            "cannot start the shell: {}",
            std::io::Error::last_os_error()
        ));
        return;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}
