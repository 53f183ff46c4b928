//! Where things live: the repository (cases, kernels, snapshots), the user's
//! cache (kernel sources, builds, ccache) and the target directory (logs,
//! initramfs images, reports).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The layout of one gmemtest checkout and the cache it uses.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The repository root (holds `cases/`, `kernels/`, `snapshots/`).
    pub root: PathBuf,
    /// `$XDG_CACHE_HOME/gmemtest` (or `~/.cache/gmemtest`, or `$GMEMTEST_CACHE`).
    pub cache: PathBuf,
    /// `target/gmemtest` under the repository: logs, images, reports.
    pub out: PathBuf,
    /// Where `cases/` and `snapshots/` are: the repository, or the directory
    /// `GMEMTEST_SUITE` names (a suite of one's own against these kernels).
    pub suite: PathBuf,
}

impl Paths {
    /// Finds the repository from `start` upwards (the directory holding
    /// `cases/` and `kernels/`) and the user's cache directory.
    pub fn discover(start: &Path) -> Result<Paths> {
        let mut dir = start
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", start.display()))?;
        loop {
            if dir.join("cases").is_dir() && dir.join("kernels").is_dir() {
                break;
            }
            if !dir.pop() {
                bail!(
                    "no gmemtest checkout (a directory with cases/ and kernels/) at or above {}",
                    start.display()
                );
            }
        }
        // `GMEMTEST_OUT` moves the logs and reports (tests that run side by
        // side keep theirs apart with it).
        let out = match std::env::var_os("GMEMTEST_OUT").filter(|o| !o.is_empty()) {
            Some(o) => PathBuf::from(o),
            None => dir.join("target").join("gmemtest"),
        };
        let suite = match std::env::var_os("GMEMTEST_SUITE").filter(|o| !o.is_empty()) {
            Some(s) => {
                let s = PathBuf::from(s);
                if !s.join("cases").is_dir() {
                    bail!(
                        "GMEMTEST_SUITE={}: expected a directory holding cases/ (and snapshots/)",
                        s.display()
                    );
                }
                s
            }
            None => dir.clone(),
        };
        Ok(Paths {
            out,
            cache: cache_dir()?,
            root: dir,
            suite,
        })
    }

    /// The checkout this crate was built from: where cargo (or
    /// cargo-nextest, which remaps it for an archive run on another machine)
    /// says the package is at run time, else where it was compiled.
    pub fn of_this_checkout() -> Result<Paths> {
        let at_run_time = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir());
        match at_run_time {
            Some(d) => Paths::discover(&d),
            None => Paths::discover(Path::new(env!("CARGO_MANIFEST_DIR"))),
        }
    }

    pub fn cases(&self) -> PathBuf {
        self.suite.join("cases")
    }
    pub fn kernels(&self) -> PathBuf {
        self.root.join("kernels")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.suite.join("snapshots")
    }
    /// Unpacked kernel source trees, one per package version.
    pub fn sources(&self) -> PathBuf {
        self.cache.join("sources")
    }
    /// Finished kernel builds, one directory per content hash.
    pub fn kernel_cache(&self) -> PathBuf {
        self.cache.join("kernels")
    }
    /// Persistent `O=` build directories, one per variant, for incremental builds.
    pub fn build_dirs(&self) -> PathBuf {
        self.cache.join("build")
    }
    pub fn ccache(&self) -> PathBuf {
        self.cache.join("ccache")
    }
    /// Console logs and result streams of each run.
    pub fn logs(&self) -> PathBuf {
        self.out.join("logs")
    }
}

/// The user's cache directory for gmemtest, following the XDG base directory
/// rules; `GMEMTEST_CACHE` overrides it.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("GMEMTEST_CACHE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p).join("gmemtest"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("gmemtest"))
}

/// Writes `contents` to `path` atomically (a temporary file renamed over it),
/// so that a reader never sees a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, contents)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// An exclusive lock on a file, held until the returned value is dropped:
/// two runners sharing a cache build each kernel once, and set up the host once.
pub struct FileLock(#[allow(dead_code)] std::fs::File); // held, not read: the lock lives as long as the file is open

pub fn lock(path: &Path) -> Result<FileLock> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock {}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an fd we own; blocks until the lock is free.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!(
            "waiting for another gmemtest run holding {}",
            path.display()
        );
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("flock");
        }
    }
    Ok(FileLock(f))
}
