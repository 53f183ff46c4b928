//! Kernel recipes: `kernels/VARIANT.yaml`, one file per kernel variant.
//!
//! ```yaml
//! description: Debian's linux-source-7.3, unpatched
//! source:
//!   debian: linux-source-7.3        # a Debian source package, fetched by setup
//!   # version: 7.3.4-1~bpo13+1      # optional: pin the exact package version
//! # source:
//! #   tree: ~/src/linux             # or: your own kernel checkout (built with O=, never written to)
//! # source: {git: ~/src/linux, rev: kvm/next}   # or: a revision of a git tree (archived
//! #                                 # into the cache; the tree is not touched), patches on top
//! patches: [patches/x/0001-foo.patch]   # relative to kernels/, applied in order (patch -p1)
//! series: patches/v12.mbox              # and/or a series as mailed: an mbox, a maildir or a
//!                                       # folder of .eml/.patch files, applied after `patches`
//! fragments: [fragments/base.config]    # merged onto allnoconfig, in order
//! tags: [nodirectmap]                   # roles cases may name instead of the variant
//! debug_info: false                     # CONFIG_DEBUG_INFO for decoding traces (slower builds)
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::flavor::Flavor;
use crate::yaml::{check_text, load_yaml};

/// Where a kernel's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A Debian kernel source package (`linux-source-X.Y`).
    Debian {
        package: String,
        version: Option<String>,
    },
    /// The user's own kernel tree.
    Tree { tree: String },
    /// A revision of a kernel git repository (`repo` made absolute at load;
    /// `rev` checked to name a commit there).
    Git { repo: String, rev: String },
}

impl<'de> Deserialize<'de> for SourceSpecHelper {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            debian: Option<String>,
            version: Option<String>,
            tree: Option<String>,
            git: Option<String>,
            rev: Option<String>,
        }
        let raw = Raw::deserialize(d)?;
        match (raw.git, raw.rev) {
            (Some(repo), Some(rev))
                if raw.debian.is_none() && raw.tree.is_none() && raw.version.is_none() =>
            {
                return Ok(SourceSpecHelper(SourceSpec::Git { repo, rev }));
            }
            (Some(_), None) => {
                return Err(serde::de::Error::custom(
                    "`git` needs `rev`: the revision to build (a commit, branch or tag)",
                ))
            }
            (None, Some(_)) => {
                return Err(serde::de::Error::custom(
                    "`rev` applies to a `git` source only",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(serde::de::Error::custom(
                    "expected one of `debian`, `tree` or `git` with `rev`, not several",
                ))
            }
            (None, None) => {}
        }
        match (raw.debian, raw.tree, raw.version) {
            (Some(package), None, version) => {
                Ok(SourceSpecHelper(SourceSpec::Debian { package, version }))
            }
            (None, Some(tree), None) => Ok(SourceSpecHelper(SourceSpec::Tree { tree })),
            (None, Some(_), Some(_)) => Err(serde::de::Error::custom(
                "`version` applies to a `debian` source only, not to a `tree`",
            )),
            (Some(_), Some(_), _) => Err(serde::de::Error::custom(
                "expected one of `debian` (a source package) or `tree` (a path), not both",
            )),
            (None, None, _) => Err(serde::de::Error::custom(
                "expected `debian: linux-source-X.Y`, `tree: /path/to/linux` or `git: /path/to/repo` with `rev: REV`",
            )),
        }
    }
}

/// serde glue: `source:` is a map with either `debian` (+`version`) or `tree`.
struct SourceSpecHelper(SourceSpec);

/// A validated kernel recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The kernel's name: the variant's, or `VARIANT+FLAVOR` for a flavor of
    /// it ([`Flavor::kernel_name`]); its cache entry, build directory, logs.
    pub name: String,
    /// The variant's name: the file's stem (`stock-7.3`).
    pub variant: String,
    /// How the variant is built and booted ([`Flavor::apply`]).
    pub flavor: Flavor,
    pub file: PathBuf,
    pub description: String,
    pub source: SourceSpec,
    /// Absolute paths of the patches, in order.
    pub patches: Vec<PathBuf>,
    /// Absolute paths of the config fragments, in order.
    pub fragments: Vec<PathBuf>,
    pub debug_info: bool,
    /// Roles a case's `kernels:` may name to mean this variant (and every
    /// other with the tag).
    pub tags: Vec<String>,
}

impl Recipe {
    /// The pristine tree this recipe's patches go onto: a Debian package's
    /// source or a git revision's, fetched or archived into the cache as
    /// needed; None for a tree of the user's own (built in place).
    pub fn pristine(
        &self,
        paths: &crate::paths::Paths,
    ) -> Result<Option<crate::setup::SourceTree>> {
        Ok(match &self.source {
            SourceSpec::Debian { package, version } => {
                Some(crate::setup::source(paths, package, version.as_deref())?)
            }
            SourceSpec::Git { repo, rev } => {
                Some(crate::setup::git_source(paths, Path::new(repo), rev)?)
            }
            SourceSpec::Tree { .. } => None,
        })
    }

    /// Loads and validates `kernels_dir/NAME.yaml`.
    pub fn load_named(kernels_dir: &Path, name: &str) -> Result<Recipe> {
        let file = kernels_dir.join(format!("{name}.yaml"));
        if !file.exists() {
            let known = list(kernels_dir).unwrap_or_default();
            bail!(
                "no kernel recipe {} (known kernels: {})",
                file.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            );
        }
        Recipe::load(&file)
    }

    /// Loads and validates one recipe file.
    pub fn load(file: &Path) -> Result<Recipe> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            description: String,
            source: serde_yaml::Value,
            #[serde(default)]
            patches: Vec<String>,
            #[serde(default)]
            series: Option<String>,
            fragments: Vec<String>,
            #[serde(default)]
            debug_info: bool,
            #[serde(default)]
            tags: Vec<String>,
        }
        let shape: Shape = load_yaml(file, "kernel recipe")?;
        if !shape.source.is_mapping() {
            bail!(
                "{}: field `source`: expected a map, `debian: linux-source-X.Y` (optionally with `version:`) or `tree: /path/to/linux`, got {}",
                file.display(),
                match &shape.source {
                    serde_yaml::Value::String(s) => format!("the string `{}`", s.escape_debug()),
                    serde_yaml::Value::Sequence(_) => "a list".into(),
                    serde_yaml::Value::Null => "nothing".into(),
                    _ => "a scalar".into(),
                }
            );
        }
        let mut source = serde_yaml::from_value::<SourceSpecHelper>(shape.source)
            .map_err(|e| anyhow::anyhow!("{}: field `source`: {e}", file.display()))?
            .0;
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: not a valid file name", file.display()))?
            .to_string();
        // The name goes into directory names, cache keys and reports.
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            bail!(
                "{}: the kernel name `{name}` (the file name) may only hold letters, digits, `_`, `-` and `.`, and not start with `.`",
                file.display()
            );
        }
        check_text(file, "description", &shape.description)?;
        for (i, t) in shape.tags.iter().enumerate() {
            let plain = !t.is_empty()
                && t.len() <= 32
                && t.starts_with(|c: char| c.is_ascii_lowercase())
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
            if !plain || shape.tags[..i].contains(t) || *t == name {
                bail!(
                    "{}: field `tags[{i}]`: `{}`: expected a word of at most 32 lower-case letters, digits, `_` and `-`, starting with a letter, once, and not the variant's own name",
                    file.display(),
                    t.escape_debug()
                );
            }
        }
        let dir = file.parent().unwrap_or(Path::new("."));
        let resolve = |field: &str, rel: &str| -> Result<PathBuf> {
            let p = Path::new(rel);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                bail!(
                    "{}: field `{field}`: `{rel}` must be a path inside kernels/ (relative, no `..`)",
                    file.display()
                );
            }
            let abs = dir.join(p);
            if abs.exists() && !abs.is_file() {
                bail!(
                    "{}: field `{field}`: `{rel}` is not a regular file; expected a {}",
                    file.display(),
                    if field == "patches" {
                        "patch"
                    } else {
                        "config fragment"
                    }
                );
            }
            if !abs.is_file() {
                bail!(
                    "{}: field `{field}`: file `{rel}` does not exist in {}",
                    file.display(),
                    dir.display()
                );
            }
            // A symlink inside kernels/ must not lead out of it either.
            let (real, real_dir) = (abs.canonicalize()?, dir.canonicalize()?);
            if !real.starts_with(&real_dir) {
                bail!(
                    "{}: field `{field}`: `{rel}` leads to {}, outside kernels/; expected a file inside kernels/",
                    file.display(),
                    real.display()
                );
            }
            Ok(abs)
        };
        let mut patches = shape
            .patches
            .iter()
            .map(|p| resolve("patches", p))
            .collect::<Result<Vec<_>>>()?;
        for (rel, abs) in shape.patches.iter().zip(&patches) {
            let text = std::fs::read(abs)?;
            let has_diff = String::from_utf8_lossy(&text)
                .lines()
                .any(|l| l.starts_with("+++ ") || l.starts_with("diff --git "));
            if !has_diff {
                bail!(
                    "{}: field `patches`: `{rel}` {}; expected a patch (a diff, as `git format-patch` writes)",
                    file.display(),
                    if text.iter().all(u8::is_ascii_whitespace) { "is empty" } else { "holds no diff" }
                );
            }
        }
        if let Some(rel) = &shape.series {
            patches.extend(series_patches(file, dir, rel)?);
        }
        if shape.fragments.is_empty() {
            bail!(
                "{}: field `fragments`: expected at least one config fragment",
                file.display()
            );
        }
        let fragments = shape
            .fragments
            .iter()
            .map(|p| resolve("fragments", p))
            .collect::<Result<Vec<_>>>()?;
        for (rel, abs) in shape.fragments.iter().zip(&fragments) {
            let text = std::fs::read_to_string(abs).map_err(|e| {
                anyhow::anyhow!(
                    "{}: field `fragments`: cannot read `{rel}` as text: {e}",
                    file.display()
                )
            })?;
            check_fragment(&text).map_err(|(line, e)| {
                anyhow::anyhow!(
                    "{}: field `fragments`: `{rel}` line {line}: {e}",
                    file.display()
                )
            })?;
        }
        if let SourceSpec::Debian {
            version: Some(v), ..
        } = &source
        {
            check_debian_version(v)
                .map_err(|e| anyhow::anyhow!("{}: field `source.version`: {e}", file.display()))?;
        }
        match &mut source {
            // The name reaches apt-get and file names: X.Y digits only.
            SourceSpec::Debian { package, .. }
                if !package.strip_prefix("linux-source-").is_some_and(|v| {
                    !v.is_empty()
                        && v.split('.')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                }) =>
            {
                bail!(
                    "{}: field `source.debian`: expected a kernel source package named linux-source-X.Y, got `{package}`",
                    file.display()
                )
            }
            SourceSpec::Tree { tree } => {
                if !patches.is_empty() {
                    bail!(
                        "{}: field `patches`: patches apply to a `debian` source only; commit them in your tree instead",
                        file.display()
                    );
                }
                // A relative path is relative to the recipe, not to
                // wherever the runner was started.
                let t = file
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(expand_home(tree));
                if !t.join("Makefile").is_file() || !t.join("Kconfig").is_file() {
                    bail!(
                        "{}: field `source.tree`: `{tree}` is not a kernel source tree (no Makefile and Kconfig there)",
                        file.display()
                    );
                }
                // A kernel's top Makefile starts by saying which kernel it is.
                let makefile = std::fs::read_to_string(t.join("Makefile")).unwrap_or_default();
                if !makefile.lines().any(|l| l.starts_with("VERSION =")) {
                    bail!(
                        "{}: field `source.tree`: `{tree}` is not a kernel source tree (its Makefile has no `VERSION =` line)",
                        file.display()
                    );
                }
                *tree = t.to_string_lossy().into_owned();
            }
            SourceSpec::Git { repo, rev } => {
                let f = file.display();
                let plain = |t: &str| {
                    !t.is_empty()
                        && t.len() <= 200
                        && !t.starts_with('-')
                        && t.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-./~^@{}".contains(c))
                };
                if !plain(rev) {
                    bail!("{f}: field `source.rev`: `{}`: expected a git revision (a commit, branch or tag; letters, digits and `_-./~^@{{}}`)", rev.escape_debug());
                }
                let r = dir.join(expand_home(repo));
                let git = |args: &[&str]| {
                    std::process::Command::new("git")
                        .arg("-C")
                        .arg(&r)
                        .args(args)
                        .output()
                        .map(|o| o.status.success())
                        .unwrap_or(false)
                };
                // The repository itself (or a bare one), not any directory
                // that happens to sit in some checkout.
                let toplevel = std::process::Command::new("git")
                    .arg("-C")
                    .arg(&r)
                    .args(["rev-parse", "--show-toplevel"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
                let is_top = toplevel.is_some_and(|t| r.canonicalize().is_ok_and(|c| c == t));
                let bare = || {
                    std::process::Command::new("git")
                        .arg("-C")
                        .arg(&r)
                        .args(["rev-parse", "--is-bare-repository"])
                        .output()
                        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"))
                };
                if !is_top && !bare() {
                    bail!("{f}: field `source.git`: `{repo}` is not a git repository (the top of one, or a bare one)");
                }
                if !git(&[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{rev}^{{commit}}"),
                ]) {
                    bail!(
                        "{f}: field `source.rev`: `{rev}` is not a commit of {}",
                        r.display()
                    );
                }
                *repo = r.to_string_lossy().into_owned();
            }
            _ => {}
        }
        Ok(Recipe {
            variant: name.clone(),
            flavor: Flavor::Normal,
            name,
            file: file.to_path_buf(),
            description: shape.description,
            source,
            patches,
            fragments,
            debug_info: shape.debug_info,
            tags: shape.tags,
        })
    }
}

/// A recipe's `series:` (an mbox, a maildir or a folder of mails inside
/// `kernels/`), decoded and ordered, as patch files the build applies after
/// the recipe's `patches`: written once per content into the cache
/// (`series/HASH/`), so the build and its cache key see plain patch files.
fn series_patches(file: &Path, dir: &Path, rel: &str) -> Result<Vec<PathBuf>> {
    let f = file.display();
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        bail!("{f}: field `series`: `{rel}` must be a path inside kernels/ (relative, no `..`)");
    }
    let at = dir.join(p);
    let (real, real_dir) = (
        at.canonicalize()
            .map_err(|e| anyhow::anyhow!("{f}: field `series`: `{rel}`: {e}"))?,
        dir.canonicalize()?,
    );
    if !real.starts_with(&real_dir) {
        bail!("{f}: field `series`: `{rel}` leads out of kernels/");
    }
    let series =
        super::series::load(&at).map_err(|e| anyhow::anyhow!("{f}: field `series`: {e:#}"))?;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in &series.patches {
        h.update(p.as_mail(series.patches.len()));
        h.update([0]);
    }
    let hash: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = crate::paths::cache_dir()?.join("series").join(hash);
    if out.join(".complete").is_file() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "patch"))
            .collect();
        files.sort();
        return Ok(files);
    }
    let tmp = out.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let files = super::series::write_patches(&series, &tmp)?;
    std::fs::write(tmp.join(".complete"), series.identity())?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("cannot move {} into place", tmp.display()))?;
    Ok(files
        .iter()
        .map(|p| out.join(p.file_name().unwrap_or_default()))
        .collect())
}

/// The longest Debian version a recipe may pin.
const MAX_VERSION: usize = 64;

/// A Debian version as dpkg reads one (`[epoch:]upstream[-revision]`): it
/// reaches apt-get and a directory name, so nothing else gets through.
pub fn check_debian_version(v: &str) -> std::result::Result<(), String> {
    if v.is_empty() || v.len() > MAX_VERSION {
        return Err(format!(
            "{} characters; expected a Debian version of 1 to {MAX_VERSION}",
            v.len()
        ));
    }
    let (epoch, rest) = v.split_once(':').unwrap_or(("", v));
    let ok = epoch.bytes().all(|b| b.is_ascii_digit())
        && rest.starts_with(|c: char| c.is_ascii_digit())
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c))
        && !rest.contains("..");
    if !ok {
        return Err(format!(
            "`{}`: expected a Debian version such as `7.3.4-1~bpo13+1` (a digit first, then letters, digits and `.+~-`)",
            v.escape_debug()
        ));
    }
    Ok(())
}

/// A config fragment is `CONFIG_X=value` and `# CONFIG_X is not set` lines,
/// comments and blank lines; anything else would be dropped by
/// merge_config.sh without a word. The line number and what is wrong.
pub fn check_fragment(text: &str) -> std::result::Result<(), (usize, String)> {
    let symbol = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        let bad = |why: &str| Err((i + 1, format!("`{}`: {why}", l.escape_debug())));
        if l.is_empty() {
            continue;
        }
        if let Some(c) = l.strip_prefix('#') {
            // Any other comment may well start with a symbol's name.
            if let Some(sym) = c
                .trim()
                .strip_prefix("CONFIG_")
                .and_then(|r| r.strip_suffix(" is not set"))
            {
                if !symbol(sym) {
                    return bad(
                        "expected `# CONFIG_NAME is not set` with NAME in capitals, digits and `_`",
                    );
                }
            }
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            return bad(
                "expected `CONFIG_NAME=value`, `# CONFIG_NAME is not set` or a `#` comment",
            );
        };
        if !k.strip_prefix("CONFIG_").is_some_and(symbol) {
            return bad("expected `CONFIG_NAME=value` with NAME in capitals, digits and `_`");
        }
        let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
        let number = v
            .strip_prefix('-')
            .unwrap_or(v)
            .bytes()
            .all(|b| b.is_ascii_digit())
            && !v.trim_start_matches('-').is_empty();
        let hex = v
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !(quoted || number || hex || matches!(v, "y" | "m" | "n")) {
            return bad(
                "expected a value: y, m, n, a number, 0x and a hex number, or a \"quoted string\"",
            );
        }
    }
    Ok(())
}

/// `~/x` to `$HOME/x`.
pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// The names of the recipes in `kernels_dir`, sorted.
/// Writes `kernels_dir/NAME.yaml`, a new variant: `like`'s source,
/// fragments and debug info, `series` (an mbox, a maildir or a folder of
/// mails, copied into `kernels/patches/NAME/`) as its patches, and `tags`
/// (by default `like`'s), so that it joins every case that names them.
/// The written recipe is loaded back: what it says is what builds.
pub fn new_variant(
    kernels_dir: &Path,
    name: &str,
    series: &Path,
    like: &str,
    tags: Option<Vec<String>>,
) -> Result<Recipe> {
    let file = kernels_dir.join(format!("{name}.yaml"));
    if file.exists() {
        bail!("{} exists already: choose another name", file.display());
    }
    let base = Recipe::load_named(kernels_dir, like)?;
    let s = super::series::load(series)?;
    // The series goes inside kernels/, where recipes may read.
    let rel_dir = Path::new("patches").join(name);
    let dir = kernels_dir.join(&rel_dir);
    if dir.exists() {
        bail!("{} exists already: choose another name", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    let written = super::series::write_patches(&s, &dir)?;
    let rel = |p: &Path| -> Result<String> {
        Ok(p.strip_prefix(kernels_dir)
            .with_context(|| format!("{} is outside {}", p.display(), kernels_dir.display()))?
            .to_string_lossy()
            .into_owned())
    };
    let source = match &base.source {
        SourceSpec::Debian {
            package,
            version: Some(v),
        } => format!("{{debian: {package}, version: '{v}'}}"),
        SourceSpec::Debian { package, .. } => format!("{{debian: {package}}}"),
        SourceSpec::Tree { tree } => format!("{{tree: '{tree}'}}"),
        SourceSpec::Git { repo, rev } => format!("{{git: '{repo}', rev: '{rev}'}}"),
    };
    let fragments = base
        .fragments
        .iter()
        .map(|f| rel(f))
        .collect::<Result<Vec<_>>>()?;
    let tags = tags.unwrap_or_else(|| base.tags.clone());
    let text = format!(
        "description: >\n  {} ({}), from {}, built like {like}.\nsource: {source}\nseries: {}\nfragments: [{}]\ndebug_info: {}\ntags: [{}]\n",
        s.cover.as_deref().unwrap_or(name).replace(['\n', '\r'], " "),
        s.identity(),
        series.file_name().unwrap_or_default().to_string_lossy(),
        rel_dir.display(),
        fragments.join(", "),
        base.debug_info,
        tags.join(", ")
    );
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    match Recipe::load(&file) {
        Ok(r) if r.patches.len() == written.len() => Ok(r),
        Ok(r) => bail!(
            "{}: reads {} patches back, {} were written",
            file.display(),
            r.patches.len(),
            written.len()
        ),
        Err(e) => {
            // Nothing half-made is left behind.
            let _ = std::fs::remove_file(&file);
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// What cases may name: every recipe in `kernels_dir` with its tags.
pub fn known(kernels_dir: &Path) -> Result<crate::case::KnownKernels> {
    Ok(crate::case::KnownKernels::new(
        list(kernels_dir)?
            .into_iter()
            .map(|n| Ok((n.clone(), Recipe::load_named(kernels_dir, &n)?.tags)))
            .collect::<Result<_>>()?,
    ))
}

pub fn list(kernels_dir: &Path) -> Result<Vec<String>> {
    crate::yaml::check_inside_suite(kernels_dir)?;
    let mut names: Vec<String> = std::fs::read_dir(kernels_dir)
        .with_context(|| format!("cannot read {}", kernels_dir.display()))?
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "yaml").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err_of(text: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "fragments/base.config", "CONFIG_64BIT=y\n");
        let f = write(d.path(), "k.yaml", text);
        format!("{:#}", Recipe::load(&f).unwrap_err())
    }

    #[test]
    fn a_relative_tree_is_relative_to_the_recipe() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "linux/Makefile", "# SPDX\nVERSION = 7\n");
        write(d.path(), "linux/Kconfig", "");
        write(
            d.path(),
            "kernels/fragments/base.config",
            "CONFIG_64BIT=y\n",
        );
        let f = write(
            d.path(),
            "kernels/mine.yaml",
            "description: x\nsource: {tree: ../linux}\nfragments: [fragments/base.config]\n",
        );
        let SourceSpec::Tree { tree } = Recipe::load(&f).unwrap().source else {
            panic!("not a tree")
        };
        let tree = Path::new(&tree);
        assert!(tree.starts_with(d.path()), "{tree:?}");
        assert!(tree.join("Makefile").is_file(), "{tree:?}");
    }

    /// `series:` takes a series as mailed; its patches come after
    /// `patches`, decoded, as files the build applies.
    #[test]
    fn a_series_as_mailed_becomes_patch_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "fragments/base.config", "CONFIG_64BIT=y\n");
        write(
            d.path(),
            "p/0001-a.patch",
            "Subject: [PATCH] a\n\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
        );
        write(
            d.path(),
            "v2.mbox",
            "From x Mon Sep 17 00:00:00 2001\nSubject: [PATCH v2 2/2] second\nContent-Transfer-Encoding: quoted-printable\n\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-c\n+d=3D1\n\nFrom x Mon Sep 17 00:00:00 2001\nSubject: [PATCH v2 1/2] first\n\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-b\n+c\n",
        );
        let f = write(
            d.path(),
            "mine.yaml",
            "description: x\nsource: {debian: linux-source-7.3}\npatches: [p/0001-a.patch]\nseries: v2.mbox\nfragments: [fragments/base.config]\n",
        );
        let r = Recipe::load(&f).unwrap();
        assert_eq!(r.patches.len(), 3);
        assert!(r.patches[0].ends_with("p/0001-a.patch"));
        let second = std::fs::read_to_string(&r.patches[2]).unwrap();
        assert!(
            second.contains("Subject: [PATCH 2/2] second") && second.contains("+d=1"),
            "{second}"
        );
        let e = format!("{:#}", Recipe::load(&write(
            d.path(),
            "bad.yaml",
            "description: x\nsource: {debian: linux-source-7.3}\nseries: ../v2.mbox\nfragments: [fragments/base.config]\n",
        )).unwrap_err());
        assert!(
            e.contains("field `series`") && e.contains("inside kernels/"),
            "{e}"
        );
    }

    /// `source: {git, rev}`: a commit of a repository, checked at load,
    /// archived into the cache on use; the repository is left as it was.
    #[test]
    fn a_git_revision_is_a_source() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("linux");
        write(d.path(), "linux/Makefile", "VERSION = 7\n");
        write(d.path(), "linux/Kconfig", "");
        let git = |args: &[&str]| {
            let o = std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "v7"]);
        git(&["tag", "v7"]);
        write(
            d.path(),
            "kernels/fragments/base.config",
            "CONFIG_64BIT=y\n",
        );
        let recipe = |rev: &str, at: &str| {
            let f = write(
                d.path(),
                "kernels/g.yaml",
                &format!("description: x\nsource: {{git: {at}, rev: '{rev}'}}\nfragments: [fragments/base.config]\n"),
            );
            Recipe::load(&f)
        };
        let r = recipe("v7", "../linux").unwrap();
        let SourceSpec::Git { repo: at, .. } = &r.source else {
            panic!()
        };
        assert!(Path::new(at).is_absolute());
        let e = format!("{:#}", recipe("v8", "../linux").unwrap_err());
        assert!(
            e.contains("field `source.rev`: `v8` is not a commit of"),
            "{e}"
        );
        let e = format!("{:#}", recipe("v7", "../nowhere").unwrap_err());
        assert!(
            e.contains("field `source.git`") && e.contains("is not a git repository"),
            "{e}"
        );
        let e = format!("{:#}", recipe("v7; rm -rf /", "../linux").unwrap_err());
        assert!(e.contains("expected a git revision"), "{e}");
        // Archived once into the cache, the repository untouched.
        let paths = crate::paths::Paths {
            root: d.path().into(),
            cache: d.path().join("cache"),
            out: d.path().join("out"),
            suite: d.path().into(),
        };
        let t = r.pristine(&paths).unwrap().unwrap();
        assert_eq!(t.package, "git linux");
        assert_eq!(
            std::fs::read_to_string(t.path.join("Makefile")).unwrap(),
            "VERSION = 7\n"
        );
        assert_eq!(r.pristine(&paths).unwrap().unwrap().path, t.path);
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["status", "--porcelain"])
            .output()
            .unwrap();
        assert!(status.stdout.is_empty(), "the repository was changed");
        // A series' base-commit moves the base there when the repository
        // has it, and not otherwise.
        let head = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        let sha = String::from_utf8_lossy(&head.stdout).trim().to_string();
        let at = crate::kernel::series::at_base_commit(&r, Some(&sha));
        assert!(matches!(&at.source, SourceSpec::Git { rev, .. } if *rev == sha));
        let not = crate::kernel::series::at_base_commit(&r, Some("0123456789abcdef0123"));
        assert!(matches!(&not.source, SourceSpec::Git { rev, .. } if rev == "v7"));
    }

    #[test]
    fn a_good_recipe_loads() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "fragments/base.config", "CONFIG_64BIT=y\n");
        let f = write(
            d.path(),
            "stock.yaml",
            "description: x\nsource:\n  debian: linux-source-7.3\nfragments: [fragments/base.config]\n",
        );
        let r = Recipe::load(&f).unwrap();
        assert_eq!(r.name, "stock");
        assert_eq!(
            r.source,
            SourceSpec::Debian {
                package: "linux-source-7.3".into(),
                version: None
            }
        );
        assert_eq!(r.fragments, vec![d.path().join("fragments/base.config")]);
    }

    #[test]
    fn unknown_field_is_named_with_the_file() {
        let e = err_of("description: x\nsource: {debian: linux-source-7.3}\nfragments: [fragments/base.config]\npatchs: []\n");
        assert!(e.contains("k.yaml"), "{e}");
        assert!(e.contains("unknown field `patchs`"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
    }

    #[test]
    fn missing_fragment_file_is_named() {
        let e = err_of("description: x\nsource: {debian: linux-source-7.3}\nfragments: [fragments/nope.config]\n");
        assert!(
            e.contains("field `fragments`") && e.contains("fragments/nope.config"),
            "{e}"
        );
    }

    #[test]
    fn path_escaping_kernels_dir_is_refused() {
        let e = err_of(
            "description: x\nsource: {debian: linux-source-7.3}\nfragments: [../etc/passwd]\n",
        );
        assert!(e.contains("must be a path inside kernels/"), "{e}");
    }

    #[test]
    fn source_needs_one_of_debian_or_tree() {
        let e = err_of("description: x\nsource: {}\nfragments: [fragments/base.config]\n");
        assert!(
            e.contains("field `source`") && e.contains("expected `debian"),
            "{e}"
        );
        let e = err_of("description: x\nsource: {debian: linux-source-7.3, tree: /x}\nfragments: [fragments/base.config]\n");
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn tree_must_be_a_kernel_tree() {
        let e = err_of(
            "description: x\nsource: {tree: /nonexistent}\nfragments: [fragments/base.config]\n",
        );
        assert!(
            e.contains("field `source.tree`") && e.contains("not a kernel source tree"),
            "{e}"
        );
    }

    #[test]
    fn fragment_lines_are_checked() {
        let ok =
            "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"a b\"\nCONFIG_D=0x10\n";
        assert_eq!(check_fragment(ok), Ok(()));
        for (text, line, want) in [
            (
                "CONFIG_A=y\nKVM=y\n",
                2,
                "expected `CONFIG_NAME=value` with NAME",
            ),
            (
                "CONFIG_A=y\nCONFIG_KVM\n",
                2,
                "expected `CONFIG_NAME=value`, `# CONFIG_NAME",
            ),
            ("CONFIG_kvm=y\n", 1, "NAME in capitals"),
            ("CONFIG_A=\n", 1, "expected a value"),
            ("CONFIG_A=y n\n", 1, "expected a value"),
            ("# CONFIG_a b is not set\n", 1, "is not set` with NAME"),
        ] {
            let (l, e) = check_fragment(text).unwrap_err();
            assert_eq!(l, line, "{text:?}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn wrong_type_is_reported_with_expectation() {
        let e = err_of("description: x\nsource: {debian: linux-source-7.3}\nfragments: fragments/base.config\n");
        assert!(
            e.contains("fragments") && e.contains("expected a sequence"),
            "{e}"
        );
    }
}
