//! Building a kernel variant: source tree, patches, config (allnoconfig +
//! fragments, every requested symbol verified), `make bzImage` with ccache,
//! and a content-addressed cache of the results.
//!
//! A Debian-source variant is keyed by everything that decides its bytes
//! (package version, patches, fragments, compiler, builder version); a cache
//! hit does not run make at all. A user's own tree is built out of tree
//! (`O=` under our cache) so their tree is never written to, and make's own
//! dependency tracking makes an edit there an incremental rebuild.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::recipe::{expand_home, Recipe, SourceSpec};
use crate::paths::{lock, FileLock, Paths};
use crate::setup;

/// Bump when the way kernels are built changes (invalidates the cache).
const BUILDER_VERSION: &str = "gmemtest-kernel-build-1";

/// What `debug_info: true` adds to a recipe's fragments. Reduced: line
/// tables and functions (all that addr2line and gdb's backtraces need)
/// without variable tracking, which is what makes a full one slow to build.
const DEBUG_INFO_FRAGMENT: &str =
    "CONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT=y\nCONFIG_DEBUG_INFO_REDUCED=y\n";
/// The marker of a finished cache entry ([`publish`] writes it last).
pub(crate) const COMPLETE: &str = "complete";

/// A built kernel, ready to boot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuiltKernel {
    /// The kernel's name: the variant's, or `VARIANT+FLAVOR`.
    pub name: String,
    /// The variant it is a build of: the outcomes of its runs name it, so
    /// every flavor shares the variant's snapshots.
    pub variant: String,
    /// Its flavor: what its boots add to the kernel command line.
    #[serde(default)]
    pub flavor: super::Flavor,
    /// What it was built from, e.g. `linux-source-7.3 7.3.4-1~bpo13+1 + 2 patches`.
    pub source: String,
    /// The content hash (empty for a user's tree, which make tracks itself).
    pub key: String,
    pub bzimage: PathBuf,
    pub vmlinux: PathBuf,
    pub system_map: PathBuf,
    pub config: PathBuf,
    pub build_log: PathBuf,
    /// How long make ran, if it ran in this process.
    #[serde(skip)]
    pub built_in: Option<Duration>,
}

/// The compiler's identity, part of the cache keys (kernels and selftests).
/// `gcc --version` runs only when the gcc on PATH changed since a run last
/// asked it.
pub(crate) fn compiler_version() -> Result<String> {
    let gcc = crate::memo::which("gcc");
    let memo = crate::paths::cache_dir().map(|c| crate::memo::Memo::in_cache(&c));
    if let (Some(g), Ok(m)) = (&gcc, &memo) {
        if let Some(v) = m.get::<String>("gcc-version", std::slice::from_ref(g)) {
            return Ok(v);
        }
    }
    let v = ask_compiler_version()?;
    if let (Some(g), Ok(m)) = (&gcc, &memo) {
        m.put("gcc-version", std::slice::from_ref(g), &v);
    }
    Ok(v)
}

fn ask_compiler_version() -> Result<String> {
    let out = Command::new("gcc")
        .arg("--version")
        .output()
        .context("cannot run gcc --version (run `cargo xtask setup`)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn hash_file(h: &mut Sha256, p: &Path) -> Result<()> {
    let data = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    h.update((data.len() as u64).to_le_bytes());
    h.update(&data);
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds `recipe` (or finds it in the cache). Progress goes to stderr.
pub fn build(paths: &Paths, recipe: &Recipe) -> Result<BuiltKernel> {
    // gcc, make, ccache...: whoever builds makes sure they are there.
    setup::host()?;
    match &recipe.source {
        SourceSpec::Debian { .. } | SourceSpec::Git { .. } => build_pristine(paths, recipe),
        SourceSpec::Tree { tree } => build_tree(paths, recipe, &expand_home(tree)),
    }
    .with_context(|| {
        format!(
            "kernel {}: build failed ({})",
            recipe.name,
            recipe.file.display()
        )
    })
}

/// A Debian package's or a git revision's tree, the recipe's patches on a
/// hard-linked copy of it, built out of tree and cached by content.
fn build_pristine(paths: &Paths, recipe: &Recipe) -> Result<BuiltKernel> {
    let src = recipe
        .pristine(paths)?
        .context("no pristine tree for this source")?;
    let compiler = compiler_version()?;

    // The tree (source + patches) and the whole build have separate keys: a
    // fragment change reuses the patched tree.
    let tree_key = tree_key(&src, recipe)?;
    let mut h = Sha256::new();
    h.update(&tree_key);
    for f in &recipe.fragments {
        hash_file(&mut h, f)?;
    }
    h.update(format!("{compiler}\0debug_info={}\0", recipe.debug_info));
    if recipe.debug_info {
        h.update(DEBUG_INFO_FRAGMENT);
    }
    let key = hex(&h.finalize());
    let desc = format!(
        "{} {}{}",
        src.package,
        src.version,
        match recipe.patches.len() {
            0 => String::new(),
            1 => " + 1 patch".into(),
            n => format!(" + {n} patches"),
        }
    );

    let entry = paths
        .kernel_cache()
        .join(format!("{}-{}", recipe.name, &key[..16]));
    let _lock = variant_lock(paths, recipe)?;
    if entry.join(COMPLETE).exists() {
        match verify_entry(&entry) {
            Ok(()) => {
                eprintln!(
                    "kernel {}: cached ({desc}, key {})",
                    recipe.name,
                    &key[..16]
                );
                return Ok(artifacts_in(&entry, recipe, &desc, &key, None));
            }
            Err(damage) => {
                eprintln!(
                    "kernel {}: the cache entry {} is damaged ({damage}); rebuilding it",
                    recipe.name,
                    entry.display()
                );
                std::fs::remove_dir_all(&entry)
                    .with_context(|| format!("cannot remove {}", entry.display()))?;
            }
        }
    }

    // The same kernel, byte for byte in its inputs, built under another
    // name (a walk's base is the stock kernel, its last step the variant):
    // used as it is.
    if let Some(same) = same_key_elsewhere(paths, &key) {
        eprintln!(
            "kernel {}: the same inputs as {} (key {}): not rebuilt",
            recipe.name,
            same.display(),
            &key[..16]
        );
        return Ok(artifacts_in(&same, recipe, &desc, &key, None));
    }

    // The variant's build directory: a hard-linked copy of the pristine tree
    // with the patches applied, and the object directory as its child (so
    // Kbuild uses a relative srctree and ccache hits across variants).
    let src_dir = ensure_tree(paths, recipe, &src, &tree_key, &desc)?;
    let vdir = paths.build_dirs().join(&recipe.name);
    let obj = src_dir.join("out");
    let log_path = vdir.join("build.log");
    let (took, steps) =
        configure_and_make(paths, recipe, &src_dir, Path::new("out"), &obj, &log_path)?;

    // Publish the artifacts: copy into a temporary directory, then rename.
    std::fs::create_dir_all(paths.kernel_cache())?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-", recipe.name))
        .tempdir_in(paths.kernel_cache())?;
    for (from, to) in [
        ("arch/x86/boot/bzImage", "bzImage"),
        ("vmlinux", "vmlinux"),
        ("System.map", "System.map"),
        (".config", "config"),
    ] {
        std::fs::copy(obj.join(from), tmp.path().join(to))
            .with_context(|| format!("cannot copy {} from {}", from, obj.display()))?;
    }
    std::fs::copy(&log_path, tmp.path().join("build.log"))?;
    let meta = serde_json::json!({
        "variant": recipe.name, "source": desc, "key": key, "compiler": compiler,
        "build_seconds": took.as_secs_f64(), "steps": steps,
        "files": file_sums(tmp.path(), &ARTIFACTS)?,
    });
    publish(tmp, &entry, &meta)?;
    eprintln!("kernel {}: built in {:.0?} ({desc})", recipe.name, took);
    Ok(artifacts_in(&entry, recipe, &desc, &key, Some(took)))
}

/// A complete, intact cache entry of another variant with this key.
fn same_key_elsewhere(paths: &Paths, key: &str) -> Option<PathBuf> {
    let suffix = format!("-{}", &key[..16]);
    std::fs::read_dir(paths.kernel_cache())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix) && !n.starts_with('.'))
                && d.join(COMPLETE).exists()
                && verify_entry(d).is_ok()
        })
}

/// Runs make in a Debian variant's own tree (`build/VARIANT/src`, objects in
/// `src/out`) whatever the cache holds, as a developer's edit-and-build loop
/// in that tree does (`cargo xtask bench` times it after touching a file).
/// The kernel returned is the tree's own build, not a cache entry.
pub fn make_in_tree(paths: &Paths, recipe: &Recipe) -> Result<(BuiltKernel, PathBuf)> {
    let Some(src) = recipe.pristine(paths)? else {
        bail!(
            "kernel {}: a tree of your own is always built in place",
            recipe.name
        );
    };
    let tree_key = tree_key(&src, recipe)?;
    let desc = format!("{} {} (its tree, built in place)", src.package, src.version);
    let _lock = variant_lock(paths, recipe)?;
    let src_dir = ensure_tree(paths, recipe, &src, &tree_key, &desc)?;
    let obj = src_dir.join("out");
    let log_path = paths.build_dirs().join(&recipe.name).join("build.log");
    let (took, _) = configure_and_make(paths, recipe, &src_dir, Path::new("out"), &obj, &log_path)?;
    Ok((in_object_dir(recipe, &obj, desc, log_path, took), src_dir))
}

/// A kernel as make left it in its object directory (not a cache entry).
fn in_object_dir(
    recipe: &Recipe,
    obj: &Path,
    desc: String,
    log_path: PathBuf,
    took: Duration,
) -> BuiltKernel {
    BuiltKernel {
        name: recipe.name.clone(),
        variant: recipe.variant.clone(),
        flavor: recipe.flavor,
        source: desc,
        key: String::new(),
        bzimage: obj.join("arch/x86/boot/bzImage"),
        vmlinux: obj.join("vmlinux"),
        system_map: obj.join("System.map"),
        config: obj.join(".config"),
        build_log: log_path,
        built_in: Some(took),
    }
}

/// The files of a kernel cache entry that are checked on every use.
const ARTIFACTS: [&str; 4] = ["bzImage", "vmlinux", "System.map", "config"];

/// Size and SHA-256 of each of `names` in `dir`, for `meta.json`.
pub(crate) fn file_sums(dir: &Path, names: &[&str]) -> Result<serde_json::Value> {
    let mut files = serde_json::Map::new();
    for n in names {
        let p = dir.join(n);
        let data = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        files.insert(
            n.to_string(),
            serde_json::json!({"size": data.len(), "sha256": hex(&Sha256::digest(&data))}),
        );
    }
    Ok(serde_json::Value::Object(files))
}

/// Checks a finished cache entry against the sizes and hashes its
/// `meta.json` recorded: a file truncated, removed or changed since it was
/// written (a full disk, a crash of the machine, a stray edit) is found
/// before a kernel is booted from it. Returns what is wrong.
pub(crate) fn verify_entry(entry: &Path) -> std::result::Result<(), String> {
    // Hashed in full once; from then on, while no file of the entry changed
    // its identity (size, times, inode), the check is a stat of each. The
    // fact lives in the entry (`verified.json`), gone with it.
    let memo = crate::memo::Memo::at(entry);
    let files = entry_files(entry);
    if let Some(files) = &files {
        if memo.get::<bool>("verified", files) == Some(true) {
            return Ok(());
        }
    }
    let before = files.as_deref().map(crate::memo::identities);
    verify_entry_contents(entry)?;
    if let Some(before) = before {
        memo.put_with("verified", before, &true);
    }
    Ok(())
}

/// The files a cache entry's `meta.json` names, and `meta.json` itself.
fn entry_files(entry: &Path) -> Option<Vec<PathBuf>> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.join("meta.json")).ok()?).ok()?;
    let mut files: Vec<PathBuf> = meta
        .get("files")?
        .as_object()?
        .keys()
        .map(|n| entry.join(n))
        .collect();
    files.push(entry.join("meta.json"));
    Some(files)
}

fn verify_entry_contents(entry: &Path) -> std::result::Result<(), String> {
    let meta: serde_json::Value = std::fs::read(entry.join("meta.json"))
        .map_err(|e| format!("meta.json: {e}"))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("meta.json: {e}")))?;
    let files = meta
        .get("files")
        .and_then(|f| f.as_object())
        .ok_or("meta.json records no file sums")?;
    if files.is_empty() {
        return Err("meta.json records no file sums".into());
    }
    for (name, want) in files {
        let data = std::fs::read(entry.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let size = want.get("size").and_then(|s| s.as_u64());
        if size != Some(data.len() as u64) {
            return Err(format!(
                "{name}: {} bytes, {} expected",
                data.len(),
                size.map_or("?".into(), |s| s.to_string())
            ));
        }
        if want.get("sha256").and_then(|s| s.as_str()) != Some(&hex(&Sha256::digest(&data))) {
            return Err(format!("{name}: its SHA-256 differs from the one recorded"));
        }
    }
    Ok(())
}

/// Makes a filled temporary directory the cache entry `entry`: its
/// `meta.json` and completion marker written, then renamed into place, so a
/// reader never sees half an entry.
pub(crate) fn publish(
    tmp: tempfile::TempDir,
    entry: &Path,
    meta: &serde_json::Value,
) -> Result<()> {
    std::fs::write(
        tmp.path().join("meta.json"),
        serde_json::to_vec_pretty(meta)?,
    )?;
    std::fs::write(tmp.path().join(COMPLETE), "")?;
    if entry.exists() {
        std::fs::remove_dir_all(entry)?;
    }
    std::fs::rename(tmp.keep(), entry)
        .with_context(|| format!("cannot move the build into {}", entry.display()))?;
    Ok(())
}

/// A short name for a user's tree (its path), for directories of ours.
pub(crate) fn tree_id(tree: &Path) -> String {
    let mut h = Sha256::new();
    h.update(tree.as_os_str().as_encoded_bytes());
    hex(&h.finalize())[..12].to_string()
}

/// The key of a Debian variant's source tree: the package version and its
/// patches. The selftests built from the tree are keyed by it too.
pub(crate) fn tree_key(src: &setup::SourceTree, recipe: &Recipe) -> Result<String> {
    let mut tree_h = Sha256::new();
    tree_h.update(BUILDER_VERSION);
    tree_h.update(format!("{}\0{}\0", src.package, src.version));
    for p in &recipe.patches {
        hash_file(&mut tree_h, p)?;
    }
    Ok(hex(&tree_h.finalize()))
}

/// The variant's patched source tree (`build/VARIANT/src`) for `tree_key`,
/// prepared unless it is already there. The caller holds the variant's lock.
pub(crate) fn ensure_tree(
    paths: &Paths,
    recipe: &Recipe,
    src: &setup::SourceTree,
    tree_key: &str,
    desc: &str,
) -> Result<PathBuf> {
    let vdir = paths.build_dirs().join(&recipe.name);
    if std::fs::read_to_string(vdir.join("tree-key"))
        .ok()
        .as_deref()
        != Some(tree_key)
    {
        eprintln!("kernel {}: preparing the source tree ({desc})", recipe.name);
        prepare_tree(&vdir, &src.path, recipe, tree_key, desc)?;
    }
    Ok(vdir.join("src"))
}

/// The lock that serializes work on one variant's build directory.
pub(crate) fn variant_lock(paths: &Paths, recipe: &Recipe) -> Result<FileLock> {
    lock(&paths.kernel_cache().join(format!(".{}.lock", recipe.name)))
}

/// Makes `vdir/src` the pristine tree with `patches` applied: a hard-linked
/// copy (patch replaces the files it changes, so the pristine tree is never
/// written). The object directory `src/out` of the previous tree is kept, so
/// a changed series rebuilds incrementally; every file that the old or the
/// new series touches gets a fresh copy, so make sees it as changed (a file
/// going back to pristine would otherwise keep its old, older-than-object
/// mtime).
fn prepare_tree(
    vdir: &Path,
    pristine: &Path,
    recipe: &Recipe,
    tree_key: &str,
    desc: &str,
) -> Result<()> {
    let src_dir = vdir.join("src");
    let kept_out = vdir.join("out.kept");
    let old_files: Vec<String> = std::fs::read_to_string(vdir.join("patched-files"))
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default();
    // Objects built from another pristine tree (another package version)
    // cannot be reused: its files' mtimes say nothing about ours.
    let same_base = std::fs::read_to_string(vdir.join("pristine"))
        .ok()
        .as_deref()
        == Some(&*pristine.to_string_lossy());
    let _ = std::fs::remove_file(vdir.join("tree-key"));
    let _ = std::fs::remove_dir_all(&kept_out);
    if src_dir.join("out").is_dir() && same_base {
        std::fs::rename(src_dir.join("out"), &kept_out)?;
    }
    if src_dir.exists() {
        std::fs::remove_dir_all(&src_dir)
            .with_context(|| format!("cannot remove {}", src_dir.display()))?;
    }
    std::fs::create_dir_all(vdir)?;
    run(
        Command::new("cp").arg("-al").arg(pristine).arg(&src_dir),
        "cp -al (source tree)",
    )?;
    // How each patch goes on, before any of it does: offsets and fuzz are
    // said (a patch that applies with fuzz may not build, or may build into
    // something else), and a failing patch's table comes with its error.
    if !recipe.patches.is_empty() {
        let patches = super::series::recipe_patches(recipe)?;
        let rows = super::series::check(pristine, &patches)?;
        if rows
            .iter()
            .any(|r| r.applied != super::series::Applied::Clean)
        {
            eprint!(
                "kernel {}: its patches do not all apply clean:\n{}",
                recipe.name,
                super::series::table(&format!("kernel {}", recipe.name), desc, &rows)
            );
        }
    }
    let mut new_files = apply_patches(&src_dir, recipe, desc)?;
    if kept_out.is_dir() {
        std::fs::rename(&kept_out, src_dir.join("out"))?;
        for f in old_files.iter().filter(|f| !new_files.contains(f)) {
            // Back to pristine: a copy of its own, with a new mtime.
            let path = src_dir.join(f);
            if let Ok(data) = std::fs::read(&path) {
                std::fs::remove_file(&path)?;
                std::fs::write(&path, data)?;
            }
        }
    }
    new_files.sort();
    new_files.dedup();
    std::fs::write(vdir.join("patched-files"), new_files.join("\n"))?;
    std::fs::write(vdir.join("pristine"), pristine.to_string_lossy().as_bytes())?;
    std::fs::write(vdir.join("tree-key"), tree_key)?;
    Ok(())
}

/// Applies the recipe's patches to `tree` (`desc` says what the tree is, for
/// the error), in order; the files they change.
pub fn apply_patches(tree: &Path, recipe: &Recipe, desc: &str) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let total = recipe.patches.len();
    for (i, p) in recipe.patches.iter().enumerate() {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        files.extend(files_of_patch(&text));
        apply_patch(tree, p).map_err(|e| {
            // The source before this patch: the base and the ones before it.
            let base = desc.split(" + ").next().unwrap_or(desc);
            anyhow::anyhow!(
                "{}: field `patches`: patch {} of {total}, {}, does not apply to {base}{} (tried with --dry-run first: nothing of it was applied); `cargo xtask series check --onto {}` shows every patch's state:\n{}",
                recipe.file.display(),
                i + 1,
                p.display(),
                match i {
                    0 => String::new(),
                    1 => " after the 1 patch before it".into(),
                    n => format!(" after the {n} patches before it"),
                },
                recipe.name,
                e.trim_end()
            )
        })?;
    }
    Ok(files)
}
pub fn apply_patch(tree: &Path, patch: &Path) -> std::result::Result<(), String> {
    for dry in [true, false] {
        let (ok, said) =
            run_patch(tree, patch, dry).map_err(|e| format!("cannot run patch: {e}"))?;
        if !ok {
            return Err(said);
        }
    }
    Ok(())
}

/// One `patch -p1` of `patch` in `tree` (a dry run, or for real): whether it
/// applied whole, and what patch said. Never interactive, never a backup
/// or a `.rej` file.
pub(crate) fn run_patch(
    tree: &Path,
    patch: &Path,
    dry_run: bool,
) -> std::io::Result<(bool, String)> {
    let mut cmd = Command::new("patch");
    cmd.args([
        "-p1",
        "--forward",
        "--batch",
        "--no-backup-if-mismatch",
        "-r",
        "-",
    ]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.arg("-i").arg(patch).current_dir(tree).output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Every symbol the Kconfig files of `src` define (`config X`,
/// `menuconfig X`), for checking fragments before configuring: a symbol
/// that does not exist is dropped by merge_config.sh with a warning nobody
/// reads. `src/out` (our object directory) and dot directories are skipped.
pub fn kconfig_symbols(src: &Path) -> Result<std::collections::HashSet<String>> {
    let mut symbols = std::collections::HashSet::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                let ours = dir == src && name == "out";
                if !(name.starts_with('.') || ours) {
                    dirs.push(e.path());
                }
            } else if name.starts_with("Kconfig") {
                let text = std::fs::read(e.path()).unwrap_or_default();
                for line in String::from_utf8_lossy(&text).lines() {
                    let l = line.trim_start();
                    let rest = l
                        .strip_prefix("config")
                        .or_else(|| l.strip_prefix("menuconfig"));
                    if let Some(rest) = rest.filter(|r| r.starts_with([' ', '\t'])) {
                        if let Some(sym) = rest.split_whitespace().next() {
                            symbols.insert(sym.to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(symbols)
}

/// Fails, naming every such line, when a fragment of `recipe` asks for a
/// symbol the kernel tree `src` does not have.
pub fn check_fragment_symbols(recipe: &Recipe, src: &Path) -> Result<()> {
    let unknown = unknown_fragment_symbols(recipe, &kconfig_symbols(src)?)?;
    if !unknown.is_empty() {
        bail!(
            "{}: field `fragments`: {}",
            recipe.file.display(),
            unknown.join("\n  ")
        );
    }
    Ok(())
}

/// The fragment lines of `recipe` that name a symbol `symbols` does not
/// have, each with the closest existing symbol when one is close.
pub fn unknown_fragment_symbols(
    recipe: &Recipe,
    symbols: &std::collections::HashSet<String>,
) -> Result<Vec<String>> {
    let base = recipe.file.parent().unwrap_or(Path::new("."));
    let mut unknown = Vec::new();
    for f in &recipe.fragments {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            let Some(want) = config_requests(line).pop() else {
                continue;
            };
            if symbols.contains(&want.symbol) {
                continue;
            }
            let hint = closest(&want.symbol, symbols)
                .map(|c| format!("; did you mean CONFIG_{c}?"))
                .unwrap_or_default();
            unknown.push(format!(
                "`{}` line {}: CONFIG_{} is not a symbol of this kernel{hint}",
                f.strip_prefix(base).unwrap_or(f).display(),
                i + 1,
                want.symbol
            ));
        }
    }
    Ok(unknown)
}

/// The symbol nearest to `sym` by edit distance, if at most 2 edits away.
fn closest<'a>(sym: &str, symbols: &'a std::collections::HashSet<String>) -> Option<&'a str> {
    let a: Vec<char> = sym.chars().collect();
    let mut best: Option<(usize, &str)> = None;
    for s in symbols {
        if s.len().abs_diff(a.len()) > 2 {
            continue;
        }
        let b: Vec<char> = s.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let here = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(here + 1);
                prev = here;
            }
        }
        let d = row[b.len()];
        if d <= 2 && best.is_none_or(|(bd, bs)| (d, s.as_str()) < (bd, bs)) {
            best = Some((d, s));
        }
    }
    best.map(|(_, s)| s)
}

/// The files a unified diff changes (its `+++ b/...` and `--- a/...` lines).
pub fn files_of_patch(text: &str) -> Vec<String> {
    let mut files: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("+++ b/")
                .or_else(|| l.strip_prefix("--- a/"))
        })
        .map(|f| f.split('\t').next().unwrap_or(f).trim().to_string())
        .collect();
    files.sort();
    files.dedup();
    files
}

fn artifacts_in(
    dir: &Path,
    recipe: &Recipe,
    desc: &str,
    key: &str,
    took: Option<Duration>,
) -> BuiltKernel {
    BuiltKernel {
        name: recipe.name.clone(),
        variant: recipe.variant.clone(),
        flavor: recipe.flavor,
        source: desc.to_string(),
        key: key.to_string(),
        bzimage: dir.join("bzImage"),
        vmlinux: dir.join("vmlinux"),
        system_map: dir.join("System.map"),
        config: dir.join("config"),
        build_log: dir.join("build.log"),
        built_in: took,
    }
}

fn build_tree(paths: &Paths, recipe: &Recipe, tree: &Path) -> Result<BuiltKernel> {
    let tree = tree
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", tree.display()))?;
    let obj = paths
        .build_dirs()
        .join(format!("tree-{}-{}", recipe.name, tree_id(&tree)));
    std::fs::create_dir_all(&obj)?;
    let _lock = lock(&obj.join(".lock"))?;
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty", "--tags"])
        .current_dir(&tree)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let desc = format!(
        "{}{}",
        tree.display(),
        rev.map(|r| format!(" at {r}")).unwrap_or_default()
    );
    let log_path = obj.join("gmemtest-build.log");
    let (took, _) = configure_and_make(paths, recipe, &tree, &obj, &obj, &log_path)?;
    eprintln!("kernel {}: make done in {:.0?} ({desc})", recipe.name, took);
    Ok(in_object_dir(recipe, &obj, desc, log_path, took))
}

/// Merges the fragments onto allnoconfig, verifies the result, runs make.
/// `obj_arg` is what is passed as `O=` (relative to `src`, or absolute);
/// `obj` is the same directory as a path we can open.
pub(crate) fn configure_and_make(
    paths: &Paths,
    recipe: &Recipe,
    src: &Path,
    obj_arg: &Path,
    obj: &Path,
    log_path: &Path,
) -> Result<(Duration, usize)> {
    std::fs::create_dir_all(obj)?;
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    check_fragment_symbols(recipe, src)?;
    let mut fragments = recipe.fragments.clone();
    if recipe.debug_info {
        let dbg = obj.join("gmemtest-debug-info.config");
        std::fs::write(&dbg, DEBUG_INFO_FRAGMENT)?;
        fragments.push(dbg);
    }
    let mut merge = Command::new("scripts/kconfig/merge_config.sh");
    merge
        .arg("-n")
        .arg("-O")
        .arg(obj_arg)
        .args(&fragments)
        .current_dir(src);
    crate::children::own_group(&mut merge);
    let merged = merge
        .output()
        .context("cannot run scripts/kconfig/merge_config.sh")?;
    log.write_all(&merged.stdout)?;
    log.write_all(&merged.stderr)?;
    if !merged.status.success() {
        bail!(
            "merge_config.sh failed ({}), log {}:\n{}",
            merged.status,
            log_path.display(),
            String::from_utf8_lossy(&merged.stderr)
        );
    }
    let config = std::fs::read_to_string(obj.join(".config"))?;
    let mut dropped = Vec::new();
    for f in &fragments {
        let text = std::fs::read_to_string(f)?;
        for want in config_requests(&text) {
            if !config_satisfies(&config, &want) {
                dropped.push(format!("{} (from {})", want.describe(), f.display()));
            }
        }
    }
    if !dropped.is_empty() {
        bail!(
            "the kernel config lost symbols the fragments ask for (a missing dependency, or a symbol this kernel does not have):\n  {}",
            dropped.join("\n  ")
        );
    }
    // make already uses every CPU: two kernel builds at once (two runners,
    // or cargo-nextest's processes each preparing a kernel) only thrash.
    let _one_make = machine_make_lock(paths)?;
    make(paths, recipe, src, obj_arg, log, log_path)
}

/// Held while a kernel (or its selftests) builds: one make at a time per
/// cache, whichever variant.
pub(crate) fn machine_make_lock(paths: &Paths) -> Result<FileLock> {
    lock(&paths.cache.join(".make.lock"))
}

/// One line of a config fragment: `CONFIG_X=v` or `# CONFIG_X is not set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRequest {
    pub symbol: String,
    /// `None` means "not set".
    pub value: Option<String>,
}

impl ConfigRequest {
    fn describe(&self) -> String {
        match &self.value {
            Some(v) => format!("CONFIG_{}={v}", self.symbol),
            None => format!("CONFIG_{} not set", self.symbol),
        }
    }
}

/// The symbols a fragment asks for.
pub fn config_requests(fragment: &str) -> Vec<ConfigRequest> {
    fragment
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("# CONFIG_") {
                let sym = rest.strip_suffix(" is not set")?;
                return Some(ConfigRequest {
                    symbol: sym.to_string(),
                    value: None,
                });
            }
            let (k, v) = l.strip_prefix("CONFIG_")?.split_once('=')?;
            Some(ConfigRequest {
                symbol: k.to_string(),
                value: Some(v.to_string()),
            })
        })
        .collect()
}

/// Whether a final `.config` has what was asked.
pub fn config_satisfies(config: &str, want: &ConfigRequest) -> bool {
    let prefix = format!("CONFIG_{}=", want.symbol);
    let have = config.lines().find_map(|l| l.strip_prefix(&prefix));
    match (&want.value, have) {
        (Some(v), Some(h)) => v == h,
        (Some(v), None) => v == "n",
        (None, h) => h.is_none() || h == Some("n"),
    }
}

fn make(
    paths: &Paths,
    recipe: &Recipe,
    src: &Path,
    obj_arg: &Path,
    log: std::fs::File,
    log_path: &Path,
) -> Result<(Duration, usize)> {
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let ccache = which("ccache");
    let mut cmd = Command::new("make");
    cmd.current_dir(src)
        .arg(format!("O={}", obj_arg.display()))
        .arg(format!("-j{jobs}"))
        // Reproducible builds: the same inputs give the same bytes.
        .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01")
        .env("KBUILD_BUILD_USER", "gmemtest")
        .env("KBUILD_BUILD_HOST", "gmemtest")
        .env("CCACHE_DIR", paths.ccache())
        .env("CCACHE_BASEDIR", paths.build_dirs())
        .env("CCACHE_NOHASHDIR", "1")
        .env("CCACHE_MAXSIZE", "8G")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if ccache {
        cmd.arg("CC=ccache gcc");
    }
    cmd.arg("bzImage");
    crate::children::own_group(&mut cmd);
    let started = Instant::now();
    eprintln!(
        "kernel {}: make -j{jobs} bzImage{} (log {})",
        recipe.name,
        if ccache { " with ccache" } else { "" },
        log_path.display(),
    );
    let mut child = cmd.spawn().context("cannot run make")?;
    let stderr = child.stderr.take().expect("piped");
    // stderr: warnings and errors, kept in the log as they come.
    let err_thread = tee_lines(stderr, log.try_clone()?, 40);
    let mut log = log;
    let mut compiled = 0usize;
    let expected = previous_full_build_steps(paths);
    let mut last_report = Instant::now();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(|l| l.ok())
    {
        let _ = writeln!(log, "{line}");
        let t = line.trim_start();
        if t.starts_with("CC ")
            || t.starts_with("AS ")
            || t.starts_with("LD ")
            || t.starts_with("AR ")
        {
            compiled += 1;
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                let of = match expected {
                    Some(n) if n >= compiled => format!("/~{n} ({}%)", compiled * 100 / n.max(1)),
                    _ => String::new(),
                };
                eprintln!(
                    "kernel {}: {:>4}s, {compiled}{of} steps, now {}",
                    recipe.name,
                    started.elapsed().as_secs(),
                    t.split_whitespace().last().unwrap_or_default()
                );
            }
        }
    }
    let status = child.wait()?;
    let tail = err_thread.join().unwrap_or_default();
    if !status.success() {
        let tail = tail.join("\n");
        let e = anyhow::anyhow!(
            "make bzImage failed ({status}); full log {}; last lines of stderr:\n{tail}",
            log_path.display(),
        );
        // A nearly full filesystem under the objects is the cause whatever
        // make said (it deletes what it was writing when it fails).
        let obj = src.join(obj_arg);
        let low = crate::fault::free_bytes(&obj).is_some_and(|b| b < 64 << 20);
        if crate::fault::says_disk_full(&tail) || low {
            return Err(e.context(crate::fault::Fault::DiskFull {
                what: format!("building kernel {} in {}", recipe.name, obj.display()),
                path: low.then_some(obj),
            }));
        }
        return Err(e);
    }
    Ok((started.elapsed(), compiled))
}

/// Copies `from`'s lines into `log` as they come, on a thread of its own;
/// the thread's result is the last `keep` lines (for an error message).
pub(crate) fn tee_lines(
    from: impl std::io::Read + Send + 'static,
    mut log: std::fs::File,
    keep: usize,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        for line in BufReader::new(from).lines().map_while(|l| l.ok()) {
            let _ = writeln!(log, "{line}");
            tail.push_back(line);
            if tail.len() > keep {
                tail.pop_front();
            }
        }
        tail.into()
    })
}

/// How many steps a full build took last time (from any cached build's
/// meta.json), to show progress as a share. Incremental builds finish early.
fn previous_full_build_steps(paths: &Paths) -> Option<usize> {
    std::fs::read_dir(paths.kernel_cache())
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|m| m.get("steps")?.as_u64())
        .max()
        .map(|n| n as usize)
}

pub(crate) fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    crate::children::own_group(cmd);
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_cache_entry_is_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("bzImage"), b"kernel image").unwrap();
        std::fs::write(d.path().join("config"), b"CONFIG_X=y\n").unwrap();
        let meta =
            serde_json::json!({"files": file_sums(d.path(), &["bzImage", "config"]).unwrap()});
        std::fs::write(d.path().join("meta.json"), meta.to_string()).unwrap();
        assert_eq!(verify_entry(d.path()), Ok(()));
        // Same size, one byte changed.
        std::fs::write(d.path().join("config"), b"CONFIG_X=n\n").unwrap();
        let e = verify_entry(d.path()).unwrap_err();
        assert!(e.contains("config: its SHA-256 differs"), "{e}");
        std::fs::write(d.path().join("config"), b"CONFIG_X=y\n").unwrap();
        // Truncated.
        std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
        let e = verify_entry(d.path()).unwrap_err();
        assert!(e.contains("bzImage: 6 bytes, 12 expected"), "{e}");
        // Gone.
        std::fs::remove_file(d.path().join("bzImage")).unwrap();
        assert!(verify_entry(d.path()).unwrap_err().starts_with("bzImage: "));
        // An entry that recorded no sums (an older builder) is not trusted.
        std::fs::write(d.path().join("meta.json"), "{}").unwrap();
        assert!(verify_entry(d.path()).unwrap_err().contains("no file sums"));
    }

    #[test]
    fn files_of_a_patch() {
        let p = "From x\n---\n a | 1\n\ndiff --git a/mm/gup.c b/mm/gup.c\n--- a/mm/gup.c\n+++ b/mm/gup.c\n@@ -1 +1 @@\n--- a/x\n+++ b/new.c\t2024\n";
        assert_eq!(files_of_patch(p), vec!["mm/gup.c", "new.c", "x"]);
    }

    #[test]
    fn fragment_requests_are_parsed() {
        let r = config_requests(
            "# a comment\nCONFIG_64BIT=y\n# CONFIG_STRICT_DEVMEM is not set\nCONFIG_NR_CPUS=4\n\n",
        );
        assert_eq!(
            r,
            vec![
                ConfigRequest {
                    symbol: "64BIT".into(),
                    value: Some("y".into())
                },
                ConfigRequest {
                    symbol: "STRICT_DEVMEM".into(),
                    value: None
                },
                ConfigRequest {
                    symbol: "NR_CPUS".into(),
                    value: Some("4".into())
                },
            ]
        );
    }

    #[test]
    fn dropped_symbols_are_detected() {
        let config = "CONFIG_64BIT=y\n# CONFIG_STRICT_DEVMEM is not set\nCONFIG_NR_CPUS=8\n";
        let reqs = config_requests(
            "CONFIG_64BIT=y\nCONFIG_KVM=y\n# CONFIG_STRICT_DEVMEM is not set\nCONFIG_NR_CPUS=4\n",
        );
        let failed: Vec<String> = reqs
            .iter()
            .filter(|r| !config_satisfies(config, r))
            .map(|r| r.describe())
            .collect();
        assert_eq!(failed, vec!["CONFIG_KVM=y", "CONFIG_NR_CPUS=4"]);
        assert!(!config_satisfies(
            "CONFIG_STRICT_DEVMEM=y\n",
            &ConfigRequest {
                symbol: "STRICT_DEVMEM".into(),
                value: None
            }
        ));
    }
}
