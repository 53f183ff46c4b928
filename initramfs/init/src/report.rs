//! Where init's output goes: [`Record`]s, one JSON line each, on the result
//! port (the second serial port, in raw mode so bytes arrive as written), and
//! short human lines on the console (the kernel log's serial port).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use gmem_protocol::{Record, RESULT_PORT};

pub struct Reporter {
    port: Option<File>,
}

/// A human line on the console: `gmemtest: ...`.
pub fn console(msg: &str) {
    // stderr is /dev/console (the kernel opens it for PID 1; see
    // `ensure_console_fds`). Errors are ignored: there is nowhere else to say.
    let _ = writeln!(io::stderr().lock(), "gmemtest: {msg}");
}

/// A line in the kernel's log (`/dev/kmsg`, info level): unlike a write to
/// the console, it is ordered with the kernel's own messages. Falls back to
/// the console if the log cannot be written.
pub fn kernel_log(msg: &str) {
    let written = OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| k.write_all(format!("<6>{msg}\n").as_bytes()));
    if let Err(e) = written {
        console(&format!("cannot write to /dev/kmsg ({e}): {msg}"));
    }
}

/// Waits until what init and the probes wrote to the console (stderr) has
/// left the UART, so that it is in the console log before what comes next.
pub fn drain_console() {
    // SAFETY: tcdrain on fd 2; on a non-tty it fails with ENOTTY, harmlessly.
    unsafe { libc::tcdrain(2) };
}

/// Makes sure fds 0-2 are the console, which the kernel only sets up when
/// the initramfs has /dev/console; the probes' stderr is inherited from here.
pub fn ensure_console_fds() {
    // SAFETY: F_GETFD on a possibly closed fd only returns EBADF.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    if let Ok(f) = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of a valid fd onto 0..3 only replaces those fds.
            unsafe { libc::dup2(f.as_raw_fd(), fd) };
        }
    }
}

impl Reporter {
    /// A reporter with no result port yet: records go to the console only.
    pub fn new() -> Reporter {
        Reporter { port: None }
    }

    /// Opens the result port and puts it in raw mode.
    pub fn open_port(&mut self) -> io::Result<()> {
        let port = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(RESULT_PORT)?;
        // SAFETY: a zeroed termios is a valid value; tcgetattr fills it from
        // the open tty and tcsetattr reads it back.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(port.as_raw_fd(), &mut t) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(port.as_raw_fd(), libc::TCSANOW, &t) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.port = Some(port);
        Ok(())
    }

    /// Sends one record; without a port (or if writing fails) it goes to the
    /// console instead, so it is at least in the log.
    pub fn send(&mut self, record: &Record) {
        let line = record.to_line() + "\n";
        if let Some(port) = &mut self.port {
            match port.write_all(line.as_bytes()) {
                Ok(()) => return,
                Err(e) => console(&format!("writing to {RESULT_PORT}: {e}")),
            }
        }
        console(&format!("record: {}", line.trim_end()));
    }

    /// Reads one line from the port (without its newline), at most `max`
    /// bytes. The port is raw: bytes arrive as the host wrote them.
    pub fn receive_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let Some(port) = &mut self.port else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no result port",
            ));
        };
        let mut line = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match port.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&buf[..end]);
                return Ok(line);
            }
            line.extend_from_slice(&buf[..n]);
            if line.len() > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("no end of line in {max} bytes"),
                ));
            }
        }
    }

    /// Waits until everything written to the port has left the UART.
    pub fn drain(&mut self) {
        if let Some(port) = &self.port {
            // SAFETY: tcdrain on an open tty fd.
            unsafe { libc::tcdrain(port.as_raw_fd()) };
        }
    }
}
