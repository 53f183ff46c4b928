//! QEMU's human monitor (HMP), on the unix socket every VM of ours listens
//! on: a command, its answer up to the next prompt. QEMU serves one client
//! at a time, so a connection is held only for a short exchange (the NMI
//! for a silent guest connects later on its own).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// What ends each of the monitor's answers.
const PROMPT: &[u8] = b"(qemu) ";

/// One connection to the monitor.
pub struct Monitor {
    stream: UnixStream,
}

impl Monitor {
    /// Connects, waiting up to `patience` for QEMU to listen (it creates
    /// the socket shortly after it starts), and reads the greeting.
    pub async fn connect(socket: &Path, patience: Duration) -> Result<Monitor> {
        let until = tokio::time::Instant::now() + patience;
        let stream = loop {
            match UnixStream::connect(socket).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= until => {
                    return Err(e).with_context(|| {
                        format!("cannot connect to QEMU's monitor {}", socket.display())
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        let mut m = Monitor { stream };
        m.answer().await.context("QEMU's monitor did not greet")?;
        Ok(m)
    }

    /// Runs `command` and returns its answer: the lines QEMU printed, its
    /// echo of the command and the terminal's control sequences left out.
    pub async fn command(&mut self, command: &str) -> Result<String> {
        self.stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .with_context(|| format!("monitor command `{command}`"))?;
        let raw = self
            .answer()
            .await
            .with_context(|| format!("monitor command `{command}`"))?;
        Ok(answer_text(&raw))
    }

    /// The bytes up to and with the next prompt.
    async fn answer(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.ends_with(PROMPT) {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("QEMU closed its monitor");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(buf)
    }
}

/// The text of an answer: the lines after the echoed command (the monitor
/// redraws its input line with escape sequences), the prompt left out.
pub fn answer_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    // The first line is the echo of the command; the last, the prompt.
    if lines.len() > 1 {
        lines.remove(0);
    }
    lines.pop();
    lines.join("\n")
}

/// A VM's run state as `info status` says it (`running`, `paused`,
/// `paused (inmigrate)`, ...).
pub fn status_of(answer: &str) -> Option<&str> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("VM status: "))
}

/// What `info migrate` says of the migration: `completed`, `active`,
/// `failed`, ...
pub fn migration_status_of(answer: &str) -> Option<&str> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("Migration status: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_without_the_echo_and_the_prompt() {
        // As QEMU 7.2 writes it: the echo redrawn with cursor movements.
        let raw = b"i\x1b[K\x1b[Din\x1b[K\x1b[D\x1b[Dinfo status\x1b[K\r\nVM status: paused (inmigrate)\r\n(qemu) ";
        let a = answer_text(raw);
        assert_eq!(a, "VM status: paused (inmigrate)");
        assert_eq!(status_of(&a), Some("paused (inmigrate)"));
        assert_eq!(status_of("nothing"), None);
        let m = "globals:\nstore-global-state: on\nMigration status: completed\ntotal time: 190 ms";
        assert_eq!(migration_status_of(m), Some("completed"));
    }
}
