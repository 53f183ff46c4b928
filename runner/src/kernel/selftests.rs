//! The upstream KVM selftests (`tools/testing/selftests/kvm`), built from
//! the same source tree as the kernel under test, statically linked (the
//! guest has no libc), to run in the guest as a peer suite.
//!
//! A Debian-source variant's selftests are built from its patched tree
//! (`build/VARIANT/src`) into a content-addressed cache entry
//! (`kselftests/VARIANT-KEY`, keyed by the tree key, the compiler, the builder
//! version and the list of tests): a cache hit runs no make. The uapi headers
//! come from `make headers` with `O=` and the objects from the
//! selftests' `OUTPUT=`, both in a work directory of ours, so the tree is
//! never written to. A user's own tree is built the same way into a
//! persistent directory beside its kernel objects, and make's dependency
//! tracking makes a rebuild incremental.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::build::{
    compiler_version, ensure_tree, file_sums, hex, publish, tee_lines, tree_id, tree_key,
    variant_lock, verify_entry, COMPLETE,
};
use super::recipe::{expand_home, Recipe, SourceSpec};
use crate::paths::Paths;

/// Bump when the way selftests are built changes (invalidates the cache).
const BUILDER_VERSION: &str = "gmemtest-kselftests-1";
/// Where the KVM selftests live in a kernel tree.
pub const KVM_SELFTESTS: &str = "tools/testing/selftests/kvm";

/// The selftests of one kernel variant, ready to pack.
#[derive(Debug, Clone)]
pub struct BuiltSelftests {
    /// The kernel variant they were built for.
    pub kernel: String,
    /// The content hash (empty for a user's tree).
    pub key: String,
    /// `bin_dir/TEST` is the binary of TEST (`x86/foo_test` keeps its directory).
    pub bin_dir: PathBuf,
    pub tests: Vec<String>,
    pub build_log: PathBuf,
    /// How long make ran, if it ran in this process.
    pub built_in: Option<Duration>,
}

impl BuiltSelftests {
    pub fn binary(&self, test: &str) -> PathBuf {
        self.bin_dir.join(test)
    }
}

/// A test is named as Makefile.kvm names it: `guest_memfd_test`,
/// `x86/private_mem_conversions_test`. Anything else could leave the output
/// directory or not be a target.
/// The check is the probe schema's, which the case was loaded with.
pub fn check_test_name(name: &str) -> Result<()> {
    gmem_protocol::args::check_kselftest_name(name).map_err(anyhow::Error::msg)
}

/// The x86 KVM selftests a kernel tree's Makefile.kvm builds (its
/// `TEST_GEN_PROGS_COMMON` and `TEST_GEN_PROGS_x86` lists), or None when the
/// tree has no such Makefile.
pub fn tests_in_tree(src: &Path) -> Option<std::collections::BTreeSet<String>> {
    let text = std::fs::read_to_string(src.join(KVM_SELFTESTS).join("Makefile.kvm")).ok()?;
    let mut tests = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some((var, value)) = line.split_once('=') else {
            continue;
        };
        let var = var.trim_end_matches(['+', ':', ' ']);
        if matches!(var, "TEST_GEN_PROGS_COMMON" | "TEST_GEN_PROGS_x86") {
            tests.extend(
                value
                    .split_whitespace()
                    .filter(|w| !w.starts_with('$') && *w != "\\")
                    .map(String::from),
            );
        }
    }
    Some(tests)
}

/// The cache key of a variant's selftests.
pub fn cache_key(tree_key: &str, compiler: &str, tests: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(BUILDER_VERSION);
    h.update(format!("{tree_key}\0{compiler}\0"));
    for t in tests {
        h.update(format!("{t}\0"));
    }
    hex(&h.finalize())
}

/// Make's own environment, which a make above us (or cargo under make) would
/// otherwise pass down and change the build with.
fn clean_make_env(cmd: &mut Command) {
    for v in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
        "O",
        "OUTPUT",
    ] {
        cmd.env_remove(v);
    }
}

/// `make headers` of the tree at `src` with `O=obj`: the uapi headers as
/// headers_install makes them, in `obj/usr/include` (headers_install only
/// copies them on, with rsync, which a machine may not have). `O=` keeps the
/// tree clean.
pub fn headers_command(src: &Path, obj: &Path, jobs: usize) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(src)
        .arg(format!("O={}", obj.display()))
        .arg(format!("-j{jobs}"))
        .arg("headers");
    clean_make_env(&mut cmd);
    crate::children::own_group(&mut cmd);
    cmd
}

/// `make` of the named KVM selftests from the tree at `src`: objects and
/// binaries in `output`, the uapi headers from `headers` (an installed
/// `include` directory), linked statically (`EXTRA_CFLAGS` reaches the link
/// line of Makefile.kvm). Each test is its own target, `OUTPUT/TEST`.
/// `TMPOUT` moves the compiler probes' (`try-run`) temporary directory,
/// which is relative to the current directory otherwise: in the tree.
pub fn selftests_command(
    src: &Path,
    output: &Path,
    headers: &Path,
    tmpout: &Path,
    tests: &[String],
    jobs: usize,
) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(src.join(KVM_SELFTESTS))
        .arg(format!("-j{jobs}"))
        .arg(format!("OUTPUT={}", output.display()))
        .arg(format!("TMPOUT={}", tmpout.display()))
        .arg(format!("KHDR_INCLUDES=-isystem {}", headers.display()))
        .arg("EXTRA_CFLAGS=-static");
    for t in tests {
        cmd.arg(format!("{}/{t}", output.display()));
    }
    clean_make_env(&mut cmd);
    crate::children::own_group(&mut cmd);
    cmd
}

/// Whether an ELF executable is statically linked: it has no `PT_INTERP`
/// program header (no dynamic loader). `None` if it is not a 64-bit
/// little-endian ELF file.
pub fn is_static_elf(data: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    // Offsets come from the file: a damaged header must not overflow.
    let bytes = |o: usize, n: usize| data.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes(o, 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes(o, 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes(o, 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        if u32_at(phoff.checked_add(i * phentsize)?)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// Builds `tests` for `recipe`'s kernel (or finds them in the cache).
/// Progress goes to stderr.
pub fn build(paths: &Paths, recipe: &Recipe, tests: &[String]) -> Result<BuiltSelftests> {
    let mut tests = tests.to_vec();
    tests.sort();
    tests.dedup();
    for t in &tests {
        check_test_name(t)?;
    }
    match &recipe.source {
        SourceSpec::Debian { .. } | SourceSpec::Git { .. } => build_pristine(paths, recipe, &tests),
        SourceSpec::Tree { tree } => build_tree(paths, recipe, &expand_home(tree), &tests),
    }
    .with_context(|| {
        format!(
            "kernel {}: building the KVM selftests ({}) failed",
            recipe.name,
            tests.join(", ")
        )
    })
}

/// Where the built selftests are cached.
pub fn cache_dir(paths: &Paths) -> PathBuf {
    paths.cache.join("kselftests")
}

fn build_pristine(paths: &Paths, recipe: &Recipe, tests: &[String]) -> Result<BuiltSelftests> {
    let src = recipe
        .pristine(paths)?
        .context("no pristine tree for this source")?;
    let tree_key = tree_key(&src, recipe)?;
    let compiler = compiler_version()?;
    let key = cache_key(&tree_key, &compiler, tests);
    let entry = cache_dir(paths).join(format!("{}-{}", recipe.name, &key[..16]));
    let built = |took| BuiltSelftests {
        kernel: recipe.name.clone(),
        key: key.clone(),
        bin_dir: entry.join("bin"),
        tests: tests.to_vec(),
        build_log: entry.join("build.log"),
        built_in: took,
    };
    let sound = || entry.join(COMPLETE).exists() && verify_entry(&entry).is_ok();
    if sound() {
        eprintln!(
            "kselftests {}: cached ({}, key {})",
            recipe.name,
            tests.join(" "),
            &key[..16]
        );
        return Ok(built(None));
    }
    // The variant's tree is shared with its kernel build: hold its lock.
    let _lock = variant_lock(paths, recipe)?;
    if sound() {
        return Ok(built(None));
    }
    if entry.join(COMPLETE).exists() {
        if let Err(damage) = verify_entry(&entry) {
            eprintln!(
                "kselftests {}: the cache entry {} is damaged ({damage}); rebuilding it",
                recipe.name,
                entry.display()
            );
        }
        std::fs::remove_dir_all(&entry)
            .with_context(|| format!("cannot remove {}", entry.display()))?;
    }
    let desc = format!("{} {}", src.package, src.version);
    let src_dir = ensure_tree(paths, recipe, &src, &tree_key, &desc)?;
    std::fs::create_dir_all(cache_dir(paths))?;
    // Objects and headers in a work directory that goes away; the binaries
    // are copied into a temporary entry, then renamed into place.
    let work = tempfile::Builder::new()
        .prefix(&format!(".work-{}-", recipe.name))
        .tempdir_in(cache_dir(paths))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-", recipe.name))
        .tempdir_in(cache_dir(paths))?;
    let log_path = tmp.path().join("build.log");
    let took = {
        let _one_make = super::build::machine_make_lock(paths)?;
        make_all(&recipe.name, &src_dir, work.path(), tests, &log_path)?
    };
    for t in tests {
        let to = tmp.path().join("bin").join(t);
        std::fs::create_dir_all(to.parent().expect("has a parent"))?;
        std::fs::copy(work.path().join("out").join(t), &to)
            .with_context(|| format!("cannot copy {t} from {}", work.path().display()))?;
    }
    let bins: Vec<String> = tests.iter().map(|t| format!("bin/{t}")).collect();
    let bins: Vec<&str> = bins.iter().map(String::as_str).collect();
    let meta = serde_json::json!({
        "variant": recipe.name, "source": desc, "tree_key": tree_key, "key": key,
        "compiler": compiler, "tests": tests, "build_seconds": took.as_secs_f64(),
        "files": file_sums(tmp.path(), &bins)?,
    });
    publish(tmp, &entry, &meta)?;
    eprintln!("kselftests {}: built in {:.0?}", recipe.name, took);
    Ok(built(Some(took)))
}

fn build_tree(
    paths: &Paths,
    recipe: &Recipe,
    tree: &Path,
    tests: &[String],
) -> Result<BuiltSelftests> {
    let tree = tree
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", tree.display()))?;
    let work = paths.build_dirs().join(format!(
        "tree-{}-{}-kselftests",
        recipe.name,
        tree_id(&tree)
    ));
    std::fs::create_dir_all(&work)?;
    let _lock = crate::paths::lock(&work.join(".lock"))?;
    let log_path = work.join("build.log");
    let took = {
        let _one_make = super::build::machine_make_lock(paths)?;
        make_all(&recipe.name, &tree, &work, tests, &log_path)?
    };
    eprintln!("kselftests {}: make done in {:.0?}", recipe.name, took);
    Ok(BuiltSelftests {
        kernel: recipe.name.clone(),
        key: String::new(),
        bin_dir: work.join("out"),
        tests: tests.to_vec(),
        build_log: log_path,
        built_in: Some(took),
    })
}

/// Headers, then the selftests, in `work` (`hdr-obj`, `try`, `out`); both
/// makes' output in `log_path`. Checks every binary is there and static.
fn make_all(
    kernel: &str,
    src: &Path,
    work: &Path,
    tests: &[String],
    log_path: &Path,
) -> Result<Duration> {
    // Two jobs at most: the machine is small and a kernel build may be running.
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(2);
    let started = Instant::now();
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let hdr_obj = work.join("hdr-obj");
    let out = work.join("out");
    std::fs::create_dir_all(&out)?;
    eprintln!(
        "kselftests {kernel}: make headers (log {})",
        log_path.display()
    );
    run_logged(
        kernel,
        headers_command(src, &hdr_obj, jobs),
        "make headers",
        &mut log,
        log_path,
    )?;
    eprintln!(
        "kselftests {kernel}: make -j{jobs} {} (static, from {})",
        tests.join(" "),
        src.display()
    );
    run_logged(
        kernel,
        selftests_command(
            src,
            &out,
            &hdr_obj.join("usr/include"),
            &work.join("try"),
            tests,
            jobs,
        ),
        "make (KVM selftests)",
        &mut log,
        log_path,
    )?;
    for t in tests {
        let bin = out.join(t);
        let data = std::fs::read(&bin).with_context(|| {
            format!(
                "make succeeded but {} is missing (log {})",
                bin.display(),
                log_path.display()
            )
        })?;
        match is_static_elf(&data) {
            Some(true) => {}
            Some(false) => bail!(
                "{t} is dynamically linked (it has an ELF interpreter): EXTRA_CFLAGS=-static did not reach its link line (log {})",
                log_path.display()
            ),
            None => bail!("{} is not an x86-64 ELF executable", bin.display()),
        }
    }
    Ok(started.elapsed())
}

/// Runs `cmd`, its stdout and stderr into `log`, a progress line on stderr
/// every 10 s; on failure the error holds the command and its last lines.
fn run_logged(
    kernel: &str,
    mut cmd: Command,
    what: &str,
    log: &mut std::fs::File,
    log_path: &Path,
) -> Result<()> {
    let line = format!("{cmd:?}");
    writeln!(log, "$ {line}")?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}: {line}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = tee_lines(stderr, log.try_clone()?, 30);
    let started = Instant::now();
    let mut last = Instant::now();
    let mut out_tail = Vec::new();
    for l in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(|l| l.ok())
    {
        let _ = writeln!(log, "{l}");
        if last.elapsed() > Duration::from_secs(10) {
            last = Instant::now();
            eprintln!(
                "kselftests {kernel}: {:>4}s, now {}",
                started.elapsed().as_secs(),
                l.trim()
            );
        }
        out_tail.push(l);
        if out_tail.len() > 10 {
            out_tail.remove(0);
        }
    }
    let status = child.wait()?;
    let err_tail = err_thread.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "{what} failed ({status}): {line}\nfull log {}; last lines:\n{}\n{}",
            log_path.display(),
            out_tail.join("\n"),
            err_tail.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn selftests_are_made_out_of_tree_statically_one_target_each() {
        let cmd = selftests_command(
            Path::new("/c/build/v/src"),
            Path::new("/c/ks/w/out"),
            Path::new("/c/ks/w/usr/include"),
            Path::new("/c/ks/w/try"),
            &[
                "guest_memfd_test".into(),
                "x86/private_mem_conversions_test".into(),
            ],
            2,
        );
        assert_eq!(
            cmd.get_current_dir(),
            Some(Path::new("/c/build/v/src/tools/testing/selftests/kvm"))
        );
        assert_eq!(
            args(&cmd),
            [
                "-j2",
                "OUTPUT=/c/ks/w/out",
                "TMPOUT=/c/ks/w/try",
                "KHDR_INCLUDES=-isystem /c/ks/w/usr/include",
                "EXTRA_CFLAGS=-static",
                "/c/ks/w/out/guest_memfd_test",
                "/c/ks/w/out/x86/private_mem_conversions_test",
            ]
        );
        // A make above us must not pass its flags (or its O=) down.
        assert!(cmd.get_envs().any(|(k, v)| k == "MAKEFLAGS" && v.is_none()));
    }

    #[test]
    fn headers_are_installed_with_an_object_dir_of_ours() {
        let cmd = headers_command(Path::new("/t/linux"), Path::new("/c/w/hdr-obj"), 1);
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/t/linux")));
        assert_eq!(args(&cmd), ["O=/c/w/hdr-obj", "-j1", "headers"]);
    }

    #[test]
    fn test_names_are_makefile_targets() {
        check_test_name("guest_memfd_test").unwrap();
        check_test_name("x86/private_mem_conversions_test").unwrap();
        for bad in ["", "../x", "a/b/c", "x86/", "/abs", "a b", "x86/../y"] {
            assert!(check_test_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_key_changes_with_tree_compiler_and_tests() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let k = cache_key("tree1", "gcc 12", &t(&["a", "b"]));
        assert_eq!(k, cache_key("tree1", "gcc 12", &t(&["a", "b"])));
        assert_ne!(k, cache_key("tree2", "gcc 12", &t(&["a", "b"])));
        assert_ne!(k, cache_key("tree1", "gcc 13", &t(&["a", "b"])));
        assert_ne!(k, cache_key("tree1", "gcc 12", &t(&["a"])));
        assert_ne!(k, cache_key("tree1", "gcc 12", &t(&["ab"])));
    }

    /// A minimal ELF64 header with `phnum` program headers of the given types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 * types.len()];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            d[64 + i * 56..68 + i * 56].copy_from_slice(&t.to_le_bytes());
        }
        d
    }

    #[test]
    fn static_elf_has_no_interpreter() {
        assert_eq!(is_static_elf(&elf(&[6, 1, 1])), Some(true));
        assert_eq!(is_static_elf(&elf(&[6, 3, 1])), Some(false));
        assert_eq!(is_static_elf(b"#!/bin/sh\n"), None);
        // A program header table at the end of the address space.
        let mut bad = elf(&[6, 1, 1]);
        bad[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(is_static_elf(&bad), None);
        // This test binary is linked the host's way (dynamically), the
        // guest binaries are not: a real check of the reader.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(is_static_elf(&me), Some(false));
    }
}
