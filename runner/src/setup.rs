//! Setup: the host packages gmemtest needs, virtme-ng, and kernel source
//! trees from Debian packages.
//!
//! Everything that needs the host ready goes through one readiness function,
//! [`ready`], in one of three shapes: [`host`] (the packages), [`vng`] (the
//! packages, then virtme-ng, which needs udev) and [`source`] (the packages,
//! then an unpacked kernel source). Setup is serialized twice: a mutex for
//! the threads of one process (tests of one binary run side by side) and a
//! machine-wide file lock for processes (cargo-nextest runs every test as a
//! process of its own, and two `cargo xtask` may start at once). Whoever
//! gets the lock first does the work; the others wait, then find it done.
//! What is found ready is remembered for the process, so a warm run checks
//! each thing once.
//!
//! Packages are installed with apt when we are root; otherwise the exact
//! command to run is given. Kernel sources are fetched with a *private* apt
//! configuration (its own sources list, lists and cache under our cache
//! directory) that reuses the mirror URI the machine is already configured
//! with, so the system's apt configuration stays untouched and no host name is
//! written anywhere. The unpacked tree is kept, so later runs need no network.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths::Paths;

/// Debian packages the runner needs on the host, and why.
pub const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "boots the kernels under test"),
    ("gcc", "builds the kernels"),
    ("make", "builds the kernels"),
    ("flex", "kernel build dependency"),
    ("bison", "kernel build dependency"),
    ("bc", "kernel build dependency"),
    ("libelf-dev", "kernel build dependency (objtool)"),
    ("libssl-dev", "kernel build dependency"),
    ("ccache", "fast kernel rebuilds"),
    (
        "lz4",
        "compresses the kernel image (CONFIG_KERNEL_LZ4: faster to boot)",
    ),
    (
        "cpio",
        "kernel build (kheaders) and debugging initramfs images",
    ),
    ("xz-utils", "unpacks the kernel source package"),
    ("udev", "needed by virtme-ng"),
    ("busybox-static", "the shell of `cargo xtask run --shell`"),
    ("gdb", "`cargo xtask run --gdb`"),
    (
        "libc6-dev",
        "static libc for the KVM selftests (run in the guest)",
    ),
    (
        "uuid-dev",
        "static libuuid for the KVM selftests (Makefile.kvm links -luuid)",
    ),
];

/// Debian suites searched for a kernel source package, in order of preference.
pub const SOURCE_SUITES: &[&str] = &["trixie-backports", "sid", "forky"];

/// dpkg's database: what `dpkg-query` reads.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The host packages that are not installed. Asked of `dpkg-query` only when
/// dpkg's database changed since the last run asked.
pub fn missing_packages() -> Result<Vec<&'static str>> {
    let memo = crate::paths::cache_dir().map(|c| crate::memo::Memo::in_cache(&c));
    let inputs = [PathBuf::from(DPKG_STATUS)];
    if let Ok(m) = &memo {
        if let Some(missing) = m.get::<Vec<String>>("host-packages", &inputs) {
            return Ok(HOST_PACKAGES
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| missing.iter().any(|m| m == p))
                .collect());
        }
    }
    let before = crate::memo::identities(&inputs);
    let missing = query_missing_packages()?;
    if let Ok(m) = &memo {
        if before[0].1.is_some() {
            m.put_with("host-packages", before, &missing);
        }
    }
    Ok(missing)
}

fn query_missing_packages() -> Result<Vec<&'static str>> {
    let names: Vec<&str> = HOST_PACKAGES.iter().map(|(p, _)| *p).collect();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(&names)
        .output()
        .context("cannot run dpkg-query (is this a Debian machine?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(names
        .into_iter()
        .filter(|name| {
            !text.lines().any(|l| {
                let mut it = l.split_whitespace();
                it.next() == Some(name) && it.next().is_some_and(|s| s.starts_with("ii"))
            })
        })
        .collect())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The lock that serializes setup across processes. Machine-wide, not in
/// the cache: the packages and virtme-ng are the machine's, whichever cache
/// a run uses (tests give themselves caches of their own).
pub fn setup_lock_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GMEMTEST_SETUP_LOCK").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = ["/run/lock", "/var/lock"]
        .iter()
        .map(Path::new)
        .find(|d| d.is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    dir.join("gmemtest-setup.lock")
}

/// Makes one thing ready, once: `found` says whether it already is (and
/// gives it), `make` makes it. Double-checked: a cheap look without any
/// lock, then the process's mutex and the machine's file lock, a second
/// look (another thread or process may have made it meanwhile), and only
/// then the work, under both locks.
pub fn ready<T>(
    what: &str,
    found: impl Fn() -> Option<T>,
    make: impl FnOnce() -> Result<T>,
) -> Result<T> {
    ready_under(&setup_lock_path(), what, found, make)
}

/// [`ready`] with the machine's lock at `lock`.
fn ready_under<T>(
    lock: &Path,
    what: &str,
    found: impl Fn() -> Option<T>,
    make: impl FnOnce() -> Result<T>,
) -> Result<T> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(t) = found() {
        return Ok(t);
    }
    let _threads = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = found() {
        return Ok(t);
    }
    let _processes = crate::paths::lock(lock)
        .with_context(|| format!("setup of {what}: cannot take {}", lock.display()))?;
    if let Some(t) = found() {
        return Ok(t);
    }
    make().with_context(|| format!("setup of {what}"))
}

/// The host packages, installed if missing (as root), or an error with the
/// command to run.
pub fn host() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    let found = || {
        let done = DONE.load(Ordering::SeqCst) || matches!(missing_packages().as_deref(), Ok([]));
        DONE.store(done, Ordering::SeqCst);
        done.then_some(())
    };
    ready("the host packages", found, install_missing_packages)
}

/// virtme-ng, usable: the host packages first (vng needs udev), then
/// virtme-ng from PyPI when it is missing or too old.
pub fn vng() -> Result<crate::vng::VngInfo> {
    host()?;
    ready(
        "virtme-ng",
        || crate::vng::check().ok(),
        || {
            crate::vng::install()?;
            crate::vng::check().context("virtme-ng was installed but is not usable")
        },
    )
}

/// The source tree of `package` (at `version` when given): the cached one if
/// any, otherwise downloaded and unpacked now (the host packages first: the
/// unpacking needs xz-utils).
pub fn source(paths: &Paths, package: &str, version: Option<&str>) -> Result<SourceTree> {
    let cached = || cached_source(paths, package, version);
    if let Some(t) = cached() {
        return Ok(t);
    }
    host()?;
    ready(&format!("the kernel source {package}"), cached, || {
        fetch_source(paths, package, version)
            .with_context(|| format!("cannot obtain the kernel source package {package}"))
    })
}

/// The tree of commit `rev` of the git repository `repo`, archived into
/// the cache (`sources/git/SHA`) once: the repository's own working tree,
/// index and refs are never touched. Its version is the commit's short hash.
pub fn git_source(paths: &Paths, repo: &Path, rev: &str) -> Result<SourceTree> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!("`{rev}` is not a commit of {}", repo.display());
    }
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "git".into());
    let dir = paths.sources().join("git").join(&sha);
    let tree = || {
        dir.join(COMPLETE_MARKER).is_file().then(|| SourceTree {
            package: format!("git {name}"),
            version: sha[..12.min(sha.len())].to_string(),
            path: dir.clone(),
        })
    };
    ready(&format!("{name} at {rev}"), tree, || {
        let parent = dir.parent().context("no parent")?;
        std::fs::create_dir_all(parent)?;
        let tmp = tempfile::Builder::new()
            .prefix(".archive-")
            .tempdir_in(parent)
            .context("cannot make a directory for the archive")?;
        eprintln!(
            "setup: archiving {} at {rev} ({})",
            repo.display(),
            &sha[..12.min(sha.len())]
        );
        // Names reach the script as arguments, never as its text.
        let script = r#"set -o pipefail; git -C "$1" archive --format=tar "$2" | tar -x -C "$3""#;
        run_checked(
            Command::new("bash")
                .args(["-c", script, "archive"])
                .arg(repo)
                .arg(&sha)
                .arg(tmp.path()),
            "git archive",
        )?;
        std::fs::write(tmp.path().join(COMPLETE_MARKER), &sha)?;
        let staged = tmp.keep();
        std::fs::rename(&staged, &dir)
            .with_context(|| format!("cannot move the archive to {}", dir.display()))?;
        tree().context("the archived tree is not complete")
    })
}

/// The source tree of `package` (at `version` when given) if it is cached
/// already; nothing is fetched.
pub fn cached_source(paths: &Paths, package: &str, version: Option<&str>) -> Option<SourceTree> {
    cached_trees(paths, package)
        .ok()?
        .into_iter()
        .find(|t| version.is_none_or(|v| v == t.version))
}

/// Installs the missing host packages (as root), or fails with the command
/// to run. Called under [`ready`]'s locks only.
fn install_missing_packages() -> Result<()> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!(
            "missing host packages: {}\nrun as root:\n    sudo sh -c '{cmd}'\nthen run the command again",
            missing.join(", ")
        );
    }
    eprintln!("setup: installing {}", missing.join(" "));
    // Another apt (not ours: ours are serialized) may hold dpkg's lock for a
    // while; wait for it rather than fail.
    let wait = ["-o", "DPkg::Lock::Timeout=300"];
    run_checked(
        Command::new("apt-get").args(wait).arg("update").arg("-q"),
        "apt-get update",
    )?;
    run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(wait)
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
        "apt-get install",
    )?;
    eprintln!("setup: installed {}", missing.join(" "));
    Ok(())
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A mirror entry from the machine's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub uri: String,
    pub signed_by: Option<String>,
}

/// Reads the Debian archive mirror the machine is configured with: the first
/// `deb` entry (deb822 `.sources` or one-line `.list`) that serves the main
/// archive (not a `-security` suite).
pub fn configured_mirror() -> Result<Mirror> {
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let found = match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_from_deb822(&text),
            Some("list") => mirror_from_one_line(&text),
            _ if f.file_name().is_some_and(|n| n == "sources.list") => mirror_from_one_line(&text),
            _ => None,
        };
        if let Some(m) = found {
            return Ok(m);
        }
    }
    bail!("no Debian archive mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources");
}

/// Debian release names, so that a third-party repository (its own suite
/// names) is never taken for the Debian archive.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "experimental",
];

fn serves_debian_archive(uri: &str, suites: &[&str]) -> bool {
    !suites.is_empty()
        && suites.iter().all(|s| {
            !s.ends_with("-security") && DEBIAN_SUITES.contains(&s.split('-').next().unwrap_or(s))
        })
        && (uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:"))
}

/// Parses deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`, `Signed-By:`).
pub fn mirror_from_deb822(text: &str) -> Option<Mirror> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let types = field("Types").unwrap_or_default();
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        let signed_by = field("Signed-By");
        let suites: Vec<&str> = suites.split_whitespace().collect();
        let uri = uris
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if enabled
            && types.split_whitespace().any(|t| t == "deb")
            && serves_debian_archive(&uri, &suites)
        {
            return Some(Mirror { uri, signed_by });
        }
    }
    None
}

/// Parses one-line entries (`deb [options] URI suite components`).
pub fn mirror_from_one_line(text: &str) -> Option<Mirror> {
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let (o, r) = opts.split_once(']')?;
            signed_by = o
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("signed-by=").map(String::from));
            rest = r.trim();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        if serves_debian_archive(uri, &[suite]) {
            return Some(Mirror {
                uri: uri.to_string(),
                signed_by,
            });
        }
    }
    None
}

/// An unpacked kernel source tree from a Debian package.
#[derive(Debug, Clone)]
pub struct SourceTree {
    pub package: String,
    /// The exact Debian version, e.g. `7.3.4-1~bpo13+1`.
    pub version: String,
    pub path: PathBuf,
}

const COMPLETE_MARKER: &str = ".gmemtest-complete";

/// The cached trees of `package`, newest first (by Debian version order).
fn cached_trees(paths: &Paths, package: &str) -> Result<Vec<SourceTree>> {
    let dir = paths.sources().join(package);
    let mut trees = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(trees);
    };
    for e in rd.flatten() {
        let path = e.path();
        let Some(version) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
            continue;
        };
        if version.starts_with('.') || !path.join(COMPLETE_MARKER).exists() {
            continue;
        }
        trees.push(SourceTree {
            package: package.to_string(),
            version,
            path,
        });
    }
    trees.sort_by(|a, b| compare_debian_versions(&b.version, &a.version));
    Ok(trees)
}

fn compare_debian_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let gt = Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if gt {
        std::cmp::Ordering::Greater
    } else if a == b {
        std::cmp::Ordering::Equal
    } else {
        std::cmp::Ordering::Less
    }
}

/// The private apt configuration: options that point apt at our own sources
/// list, lists and cache.
fn private_apt(paths: &Paths) -> Result<Vec<String>> {
    let mirror = configured_mirror()?;
    let dir = paths.cache.join("apt");
    for sub in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let opts = mirror
        .signed_by
        .as_ref()
        .map(|k| format!("[signed-by={k}] "))
        .unwrap_or_default();
    let list: String = SOURCE_SUITES
        .iter()
        .map(|s| format!("deb {opts}{} {s} main\n", mirror.uri))
        .collect();
    let list_path = dir.join("sources.list");
    crate::paths::write_atomic(&list_path, list.as_bytes())?;
    let mut o = vec![
        format!("Dir::Etc::sourcelist={}", list_path.display()),
        "Dir::Etc::sourceparts=-".into(),
        format!("Dir::State::lists={}", dir.join("lists").display()),
        format!("Dir::Cache={}", dir.join("cache").display()),
        "Acquire::Languages=none".into(),
    ];
    if is_root() {
        // Our cache directory is not readable by the _apt sandbox user.
        o.push("APT::Sandbox::User=root".into());
    }
    Ok(o.into_iter().flat_map(|x| ["-o".to_string(), x]).collect())
}

fn fetch_source(paths: &Paths, package: &str, version: Option<&str>) -> Result<SourceTree> {
    let apt = private_apt(paths)?;
    eprintln!(
        "setup: looking up {package} in {} through the machine's configured mirror",
        SOURCE_SUITES.join(", ")
    );
    run_checked(
        Command::new("apt-get").args(&apt).args(["update", "-q"]),
        "apt-get update (private)",
    )?;
    let policy = run_checked(
        Command::new("apt-cache")
            .args(&apt)
            .args(["policy", package]),
        "apt-cache policy",
    )?;
    let candidate = policy
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_string())
        })
        .filter(|v| v != "(none)");
    let version = match (version, candidate) {
        (Some(v), _) => v.to_string(),
        (None, Some(c)) => c,
        (None, None) => bail!(
            "{package} is in none of the suites {} of the configured mirror",
            SOURCE_SUITES.join(", ")
        ),
    };
    let dl = paths.cache.join("apt").join("download");
    std::fs::create_dir_all(&dl)?;
    eprintln!("setup: downloading {package} {version}");
    run_checked(
        Command::new("apt-get").current_dir(&dl).args(&apt).args([
            "download",
            "-q",
            &format!("{package}={version}"),
        ]),
        "apt-get download",
    )?;
    let deb = std::fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package} .deb in {}",
                dl.display()
            )
        })?;
    let tree = unpack_source_deb(paths, package, &version, &deb)?;
    let _ = std::fs::remove_file(&deb);
    Ok(tree)
}

/// Unpacks the kernel tarball inside a `linux-source-X.Y` package into
/// `sources/PACKAGE/VERSION`, atomically (unpack beside, then rename).
fn unpack_source_deb(
    paths: &Paths,
    package: &str,
    version: &str,
    deb: &Path,
) -> Result<SourceTree> {
    let parent = paths.sources().join(package);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&parent)
        .context("cannot create a temporary directory for unpacking")?;
    let started = std::time::Instant::now();
    eprintln!("setup: unpacking {}", deb.display());
    let series = package.trim_start_matches("linux-source-");
    let tarball = format!("./usr/src/linux-source-{series}.tar.xz");
    // Names reach the script as arguments, never as its text.
    let script =
        r#"set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO "$3" | tar -xJ -C "$2""#;
    run_checked(
        Command::new("bash")
            .args(["-c", script, "unpack"])
            .arg(deb)
            .arg(tmp.path())
            .arg(&tarball),
        "unpacking the kernel source",
    )?;
    let inner = tmp.path().join(format!("linux-source-{series}"));
    if !inner.join("Makefile").exists() {
        bail!("{} holds no linux-source-{series}/Makefile", deb.display());
    }
    std::fs::write(inner.join(COMPLETE_MARKER), version)?;
    let dest = parent.join(version);
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    std::fs::rename(&inner, &dest)
        .with_context(|| format!("cannot move the unpacked tree to {}", dest.display()))?;
    eprintln!(
        "setup: {package} {version} unpacked in {:.0?}",
        started.elapsed()
    );
    Ok(SourceTree {
        package: package.into(),
        version: version.into(),
        path: dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads that all find the thing missing make it once; the others
    /// wait and then find it made. A failure is reported, and the next
    /// caller tries again.
    #[test]
    fn ready_makes_a_thing_once_however_many_ask() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("setup.lock");
        let made = AtomicUsize::new(0);
        let there = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let v = ready_under(
                        &lock,
                        "a thing",
                        || (there.load(Ordering::SeqCst) == 1).then_some(42),
                        || {
                            made.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            there.store(1, Ordering::SeqCst);
                            Ok(42)
                        },
                    )
                    .unwrap();
                    assert_eq!(v, 42);
                });
            }
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        let e = ready_under(&lock, "another", || None::<()>, || bail!("no network")).unwrap_err();
        assert_eq!(format!("{e:#}"), "setup of another: no network");
        assert_eq!(
            ready_under(&lock, "another", || None, || Ok(7)).unwrap(),
            7,
            "a failed setup is tried again"
        );
    }

    #[test]
    fn deb822_picks_the_archive_not_security() {
        let text = "Types: deb\nURIs: file:/srv/mirror/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: file:/srv/mirror/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        let m = mirror_from_deb822(text).unwrap();
        assert_eq!(m.uri, "file:/srv/mirror/debian");
        assert_eq!(
            m.signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
    }

    #[test]
    fn deb822_skips_third_party_and_disabled() {
        let text = "Types: deb\nURIs: file:/srv/vendor/apt\nSuites: nodistro\nSigned-By: /usr/share/keyrings/vendor.gpg\n\nTypes: deb\nEnabled: no\nURIs: file:/srv/mirror/debian\nSuites: bookworm\n";
        assert_eq!(mirror_from_deb822(text), None);
    }

    #[test]
    fn one_line_entries_with_options() {
        let text = "# comment\ndeb file:/srv/mirror/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] file:/srv/mirror/debian bookworm main\n";
        let m = mirror_from_one_line(text).unwrap();
        assert_eq!(m.uri, "file:/srv/mirror/debian");
        assert_eq!(m.signed_by.as_deref(), Some("/k.gpg"));
    }
}
