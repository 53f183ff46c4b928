//! Loading the project's YAML files (cases, kernel recipes) with errors that
//! name the file, the field and what was expected.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::Path;

/// Case and recipe files are small; anything larger is a mistake.
pub const MAX_YAML_BYTES: u64 = 256 * 1024;

/// Reads and deserializes `file`, one of the files of a suite
/// (`ROOT/cases/x.yaml`, `ROOT/kernels/x.yaml`). serde_yaml's messages
/// already say the field and what was expected ("unknown field `x`, expected
/// one of ...", "invalid type: string, expected a sequence") and where (line,
/// column); the file is added in front. `what` names the kind of file
/// ("case", "kernel recipe") for the messages that come before any field.
pub fn load_yaml<T: DeserializeOwned>(file: &Path, what: &str) -> Result<T> {
    let text = read_suite_file(file, what)?;
    let f = file.display();
    if text.trim().is_empty() {
        bail!("{f}: the file is empty; expected a {what}: a map of fields");
    }
    // YAML directives (`%YAML 1.2`, `%TAG`) say nothing a case or recipe
    // needs, and a wrong one gives serde_yaml's words without a line.
    if let Some((i, l)) = text.lines().enumerate().find(|(_, l)| l.starts_with('%')) {
        bail!(
            "{f}: line {}: `{}` is a YAML directive; expected a {what} without directives (remove the line)",
            i + 1,
            l.trim().escape_debug()
        );
    }
    // Checked on the generic value first: serde's own words for a list or a
    // scalar at the top ("expected struct CaseFile") mean nothing to a user.
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| syntax_error(file, &text, e))?;
    if value.is_null() {
        bail!("{f}: the file is empty (nothing but comments); expected a {what}: a map of fields");
    }
    if !value.is_mapping() {
        bail!(
            "{f}: expected a {what}: a map of fields at the top, got {}",
            kind_of(&value)
        );
    }
    serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{f}: {e}"))
}

/// serde_yaml's syntax error, with the file in front; a tab where YAML
/// wanted indentation is named, since the message alone does not say it.
fn syntax_error(file: &Path, text: &str, e: serde_yaml::Error) -> anyhow::Error {
    let tab = e.location().is_some_and(|at| {
        text.lines()
            .nth(at.line().saturating_sub(1))
            .is_some_and(|l| l.chars().nth(at.column().saturating_sub(1)) == Some('\t'))
    });
    let hint = if tab {
        " (a tab: YAML indents with spaces)"
    } else if e.to_string().contains("repetition limit exceeded") {
        " (its anchors and aliases expand to too much)"
    } else {
        ""
    };
    anyhow::anyhow!("{}: {e}{hint}", file.display())
}

fn kind_of(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// The text of `file`, which must be a regular file of at most
/// `MAX_YAML_BYTES` of UTF-8 inside the suite (a symlink may point elsewhere
/// in the suite, not out of it: a case file is not a way to make the runner
/// read the host's files). A FIFO or a device is refused before it is
/// opened, since opening one can block forever.
fn read_suite_file(file: &Path, what: &str) -> Result<String> {
    let f = file.display();
    let link =
        std::fs::symlink_metadata(file).with_context(|| format!("cannot read {what} {f}"))?;
    if link.file_type().is_symlink() {
        let root = file
            .parent()
            .and_then(Path::parent)
            .map(|r| r.canonicalize())
            .transpose()
            .with_context(|| format!("cannot resolve the suite of {f}"))?;
        let target = file
            .canonicalize()
            .with_context(|| format!("{f}: a symlink to nothing"))?;
        if root.is_some_and(|r| !target.starts_with(&r)) {
            bail!(
                "{f}: a symlink to {}, outside the suite; expected a file of the suite",
                target.display()
            );
        }
    }
    let meta = std::fs::metadata(file).with_context(|| format!("cannot read {what} {f}"))?;
    if !meta.is_file() {
        bail!("{f}: not a regular file; expected a {what} (a YAML file)");
    }
    if meta.len() > MAX_YAML_BYTES {
        bail!(
            "{f}: {} bytes; expected at most {MAX_YAML_BYTES} bytes for a {what}",
            meta.len()
        );
    }
    // The size again while reading: the file may grow in between.
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|h| h.take(MAX_YAML_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {what} {f}"))?;
    if bytes.len() as u64 > MAX_YAML_BYTES {
        bail!("{f}: expected at most {MAX_YAML_BYTES} bytes for a {what}");
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
        anyhow::anyhow!("{f}: line {line}: not UTF-8 text (byte {at}); expected a {what} in UTF-8")
    })?;
    if let Some(at) = text.find('\0') {
        let line = text[..at].matches('\n').count() + 1;
        bail!("{f}: line {line}: holds a NUL byte; expected a {what} in plain text");
    }
    // Editors on some systems start a UTF-8 file with a byte-order mark:
    // it is not part of the YAML (serde_yaml would take the file for two
    // documents).
    Ok(text
        .strip_prefix('\u{feff}')
        .map(String::from)
        .unwrap_or(text))
}

/// A suite's directory of files (`cases/`, `kernels/`) is inside the suite:
/// a symlink that leads out of it would make the runner read files that are
/// not the suite's (each file's own symlink is checked the same way).
pub fn check_inside_suite(dir: &Path) -> Result<()> {
    let d = dir.display();
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot read {d}"))?;
    let suite = dir
        .parent()
        .unwrap_or(Path::new("."))
        .canonicalize()
        .with_context(|| format!("cannot resolve the suite of {d}"))?;
    if !real.starts_with(&suite) {
        bail!(
            "{d}: leads to {}, outside the suite {}; expected a directory of the suite",
            real.display(),
            suite.display()
        );
    }
    Ok(())
}

/// A field of free text (a description) holds no control characters other
/// than newlines and tabs: they end up on the user's terminal and in
/// reports, where an escape sequence would rewrite what the user sees.
pub fn check_text(file: &Path, field: &str, text: &str) -> Result<()> {
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        bail!(
            "{}: field `{field}`: holds the control character U+{:04X}; expected plain text",
            file.display(),
            c as u32
        );
    }
    Ok(())
}
