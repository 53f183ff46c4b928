//! What an earlier run established, kept while the files it was read from
//! are unchanged: a warm run spawns no cargo, gcc or dpkg-query and hashes
//! no cache entry when nothing changed since the last run did.
//!
//! A fact is kept with the identity of every file it depends on (size,
//! modification and change times, inode, device: not the contents). A file
//! rewritten in place, replaced, touched or removed changes its identity, so
//! the fact is established again; the change time cannot be set back by a
//! user (`touch -d` sets the modification time only). Facts live in
//! `CACHE/memo/NAME.json`, written atomically; two runs writing the same
//! fact write the same thing, and a lost or damaged file only costs the
//! work it saved.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A file's identity, without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

/// The identity of `p` (following symlinks), or `None` when it is missing.
pub fn identity(p: &Path) -> Option<Identity> {
    let m = std::fs::metadata(p).ok()?;
    Some(Identity {
        size: m.size(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        ino: m.ino(),
        dev: m.dev(),
    })
}

/// The identities of `files`, in order (a missing file is `None`).
pub fn identities(files: &[PathBuf]) -> Vec<(PathBuf, Option<Identity>)> {
    files.iter().map(|f| (f.clone(), identity(f))).collect()
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    inputs: Vec<(PathBuf, Option<Identity>)>,
    value: T,
}

/// Where facts are kept.
#[derive(Debug, Clone)]
pub struct Memo {
    dir: PathBuf,
}

impl Memo {
    pub fn in_cache(cache: &Path) -> Memo {
        Memo {
            dir: cache.join("memo"),
        }
    }

    /// Facts kept in `dir` itself (a cache entry's own `verified.json`,
    /// gone with the entry).
    pub fn at(dir: &Path) -> Memo {
        Memo {
            dir: dir.to_path_buf(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The fact `name`, if it was kept with exactly these files unchanged
    /// (never with `GMEMTEST_NO_MEMO=1`: everything is established again,
    /// as `cargo xtask bench` measures it).
    pub fn get<T: DeserializeOwned>(&self, name: &str, inputs: &[PathBuf]) -> Option<T> {
        if disabled() {
            return None;
        }
        let bytes = std::fs::read(self.file(name)).ok()?;
        let stored: Stored<T> = serde_json::from_slice(&bytes).ok()?;
        (stored.inputs == identities(inputs)).then_some(stored.value)
    }

    /// Keeps the fact `name` with the identities `inputs` have now. Best
    /// effort: a cache that cannot be written costs the next run the work.
    pub fn put<T: Serialize>(&self, name: &str, inputs: &[PathBuf], value: &T) {
        self.put_with(name, identities(inputs), value)
    }

    /// As [`Memo::put`], with identities taken earlier (before the work, so
    /// that a file changed during it invalidates the fact).
    pub fn put_with<T: Serialize>(
        &self,
        name: &str,
        inputs: Vec<(PathBuf, Option<Identity>)>,
        value: &T,
    ) {
        let stored = Stored { inputs, value };
        let Ok(bytes) = serde_json::to_vec(&stored) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(&self.dir) else {
            return;
        };
        use std::io::Write;
        if tmp.write_all(&bytes).is_ok() {
            let _ = tmp.persist(self.file(name));
        }
    }
}

/// Whether facts are ignored (`GMEMTEST_NO_MEMO` set and not `0`).
pub fn disabled() -> bool {
    std::env::var_os("GMEMTEST_NO_MEMO").is_some_and(|v| v != "0")
}

/// The files under `dir` (recursively; `target` directories and hidden
/// entries left out), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The first `name` on PATH that is a file, as `Command::new(name)` finds
/// it, with its symlinks resolved (`gcc` -> `gcc-14`): no process spawned.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .and_then(|p| std::fs::canonicalize(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_holds_while_its_files_are_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let memo = Memo::in_cache(d.path());
        let f = d.path().join("input");
        std::fs::write(&f, "one").unwrap();
        let inputs = vec![f.clone()];
        assert_eq!(memo.get::<String>("fact", &inputs), None);
        memo.put("fact", &inputs, &"established".to_string());
        assert_eq!(
            memo.get::<String>("fact", &inputs).as_deref(),
            Some("established")
        );
        // Rewritten with the same size: its change time moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, "two").unwrap();
        assert_eq!(memo.get::<String>("fact", &inputs), None);
        memo.put("fact", &inputs, &"again".to_string());
        // Removed.
        std::fs::remove_file(&f).unwrap();
        assert_eq!(memo.get::<String>("fact", &inputs), None);
        // Another list of files is another fact.
        assert_eq!(memo.get::<String>("fact", &[]), None);
        // A damaged memo is no fact.
        std::fs::write(memo.file("fact"), "{").unwrap();
        assert_eq!(memo.get::<String>("fact", &inputs), None);
    }

    #[test]
    fn files_under_skips_targets_and_hidden_entries() {
        let d = tempfile::tempdir().unwrap();
        for p in ["a/b.rs", "a/target/x", ".git/y", "c.toml"] {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let names: Vec<String> = files_under(d.path())
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a/b.rs", "c.toml"]);
    }

    #[test]
    fn which_finds_what_a_command_would_run() {
        let sh = which("sh").expect("sh on PATH");
        assert!(sh.is_absolute() && sh.is_file());
        assert_eq!(which("no-such-command-gmemtest"), None);
    }
}
