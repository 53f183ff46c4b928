//! Loading the project's YAML files (cases, kernel recipes) with errors that
//! name the file, the field and what was expected.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Case and recipe files are small; anything larger is a mistake.
pub const MAX_YAML_BYTES: u64 = 256 * 1024;

/// Reads and deserializes `file`. serde_yaml's messages already say the field
/// and what was expected ("unknown field `x`, expected one of ...", "invalid
/// type: string, expected a sequence") and where (line, column); the file is
/// added in front.
pub fn load_yaml<T: DeserializeOwned>(file: &Path) -> Result<T> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > MAX_YAML_BYTES {
        bail!(
            "{}: {} bytes; expected at most {MAX_YAML_BYTES} bytes for a case or recipe",
            file.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}
