//! `cargo xtask report LOG...`: the crash reports of any console log (a
//! CI's, a bot's, a colleague's), classified as the runner classifies its
//! own boots, and decoded to source lines when a vmlinux with debug info is
//! given.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::decode::{self, DebugInfo};
use crate::report::{self, Crash, CrashKind};

/// A console log larger than this is refused (a log is text; 64 MiB is
/// days of a chatty console).
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// One report found in a log.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub kind: CrashKind,
    pub title: String,
    /// The function the title names, when the report names one.
    pub culprit: Option<String>,
    /// 1-based line of the log where the report starts.
    pub line: usize,
    /// The trace, function names below the reporting machinery.
    pub trace: Vec<String>,
    /// The report's lines as the console printed them.
    pub lines: Vec<String>,
    /// Its frames decoded to source lines (empty without `--vmlinux` or
    /// `--kernel`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decoded: Vec<String>,
}

/// What one log holds.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub file: PathBuf,
    pub reports: Vec<Found>,
}

/// Reads a log as text: invalid UTF-8 (line noise on a serial port) is
/// replaced, not refused.
pub fn read_log(file: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("{}: cannot read", file.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{}: not a regular file (expected a console log)",
            file.display()
        );
    }
    if meta.len() > MAX_LOG_BYTES {
        anyhow::bail!(
            "{}: {} bytes; expected a console log of at most {} MiB",
            file.display(),
            meta.len(),
            MAX_LOG_BYTES >> 20
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn found(c: Crash, debug: Option<&DebugInfo>) -> Result<Found> {
    let decoded = match debug {
        Some(d) => decode::decode_with(d, &c.lines)?,
        None => vec![],
    };
    Ok(Found {
        kind: c.kind,
        title: c.title,
        culprit: c.culprit,
        line: c.line_no + 1,
        trace: c.trace,
        lines: c.lines,
        decoded,
    })
}

/// Classifies every log; every file is read (and refused with its name)
/// before anything is decoded.
pub fn triage(files: &[PathBuf], debug: Option<&DebugInfo>) -> Result<Vec<LogReport>> {
    let texts: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| read_log(f).map(|t| (f.clone(), t)))
        .collect::<Result<_>>()?;
    texts
        .into_iter()
        .map(|(file, text)| {
            let reports = report::find_crashes(&text)
                .into_iter()
                .map(|c| found(c, debug))
                .collect::<Result<_>>()?;
            Ok(LogReport { file, reports })
        })
        .collect()
}

/// For people: per log, each report's kind, title and culprit, its lines
/// and its decoded frames.
pub fn text(logs: &[LogReport]) -> String {
    let mut s = String::new();
    for l in logs {
        match l.reports.len() {
            0 => s += &format!("{}: no crash report\n", l.file.display()),
            n => s += &format!("{}: {}\n", l.file.display(), plural(n, "report")),
        }
        for (i, r) in l.reports.iter().enumerate() {
            s += &format!(
                "\n  [{}] {}\n      kind:    {}\n      culprit: {}\n      line:    {}\n",
                i + 1,
                r.title,
                kind_name(r.kind),
                r.culprit.as_deref().unwrap_or("(none)"),
                r.line
            );
            for line in &r.lines {
                s += &format!("      | {line}\n");
            }
            if !r.decoded.is_empty() {
                s += "      decoded:\n";
                for d in &r.decoded {
                    s += &format!("        {d}\n");
                }
            }
        }
        s += "\n";
    }
    let with = logs.iter().filter(|l| !l.reports.is_empty()).count();
    let reports = logs.iter().map(|l| l.reports.len()).sum();
    s += &format!(
        "{}, {with} with a crash report, {} in all\n",
        plural(logs.len(), "log"),
        plural(reports, "report")
    );
    s
}

/// `1 log`, `2 logs`.
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The kind as the JSON and the corpus files spell it (`page_fault`).
pub fn kind_name(k: CrashKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{k:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_read_classified_and_its_line_numbers_are_the_files() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        std::fs::write(
            &log,
            b"[    0.000000] Linux version 7.3.4\n\
              [    1.000000] ------------[ cut here ]------------\n\
              [    1.000001] WARNING: CPU: 0 PID: 1 at mm/gup.c:12 gup_fast+0x1/0x2\n\
              [    1.000002] ---[ end trace 0000000000000000 ]---\n\xff\xfe\n",
        )
        .unwrap();
        let clean = d.path().join("clean.log");
        std::fs::write(&clean, "[    0.000000] Linux version 7.3.4\n").unwrap();
        let r = triage(&[log.clone(), clean], None).unwrap();
        assert_eq!(r[0].reports.len(), 1);
        let f = &r[0].reports[0];
        assert_eq!(
            (f.kind, f.title.as_str(), f.culprit.as_deref(), f.line),
            (
                CrashKind::Warning,
                "WARNING in gup_fast",
                Some("gup_fast"),
                2
            )
        );
        assert!(r[1].reports.is_empty());
        let t = text(&r);
        assert!(t.contains("kind:    warning"), "{t}");
        assert!(
            t.contains("2 logs, 1 with a crash report, 1 report in all"),
            "{t}"
        );
    }

    #[test]
    fn a_missing_or_special_file_is_refused_with_its_name() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope.log");
        let e = triage(&[missing], None).unwrap_err().to_string();
        assert!(e.contains("nope.log"), "{e}");
        let e = triage(&[d.path().to_path_buf()], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
