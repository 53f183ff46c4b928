//! A patch series as people send it: mails (see [`super::mail`]) ordered
//! by their `[PATCH vN k/n]` numbering, the cover letter and the replies
//! left out, each patch's author and subject kept; and how each patch
//! applies to a tree ([`check`]): clean, with offsets, with fuzz, or not at
//! all (the rejected hunks and the file's current text where they should
//! go), every patch tried on the tree as it stands after the ones before it
//! that applied.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::mail::{read_mails, Mail};

/// What a subject's `[...]` prefix says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// `vN`; a series without one is version 1.
    pub version: u32,
    /// `k/n`; a lone `[PATCH]` is 1/1.
    pub number: u32,
    pub total: u32,
    /// `RFC` was among the tags.
    pub rfc: bool,
    /// The subject after the prefix.
    pub title: String,
}

/// Reads `[PATCH v12 03/16] title`, `[RFC PATCH 1/2]`, `[PATCH net-next v3
/// 0/5]`, `[PATCH]`: None for a reply (`Re:`), or a subject without a PATCH
/// tag.
pub fn parse_subject(subject: &str) -> Option<Tag> {
    let s = subject.trim();
    let lower = s.to_ascii_lowercase();
    if ["re:", "aw:", "fwd:", "fw:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return None;
    }
    let open = s.find('[')?;
    if !s[..open].trim().is_empty() {
        return None;
    }
    let close = open + s[open..].find(']')?;
    let tags = &s[open + 1..close];
    let words: Vec<&str> = tags.split_whitespace().collect();
    if !words.iter().any(|w| w.eq_ignore_ascii_case("patch")) {
        return None;
    }
    let mut tag = Tag {
        version: 1,
        number: 1,
        total: 1,
        rfc: words.iter().any(|w| w.eq_ignore_ascii_case("rfc")),
        title: s[close + 1..].trim().to_string(),
    };
    for w in words {
        if let Some(v) = w.strip_prefix(['v', 'V']).and_then(|v| v.parse().ok()) {
            tag.version = v;
        } else if let Some((k, n)) = w.split_once('/') {
            if let (Ok(k), Ok(n)) = (k.parse(), n.parse()) {
                tag.number = k;
                tag.total = n;
            }
        }
    }
    Some(tag)
}

/// One patch of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub number: u32,
    pub title: String,
    pub author: String,
    /// The mail's body: commit message, `---`, the diff.
    pub text: String,
    pub message_id: Option<String>,
}

impl Patch {
    /// `NNNN-title-as-words.patch`, as `git format-patch` names them.
    pub fn file_name(&self) -> String {
        let mut slug: String = self
            .title
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        while slug.contains("--") {
            slug = slug.replace("--", "-");
        }
        let slug: String = slug.trim_matches('-').chars().take(52).collect();
        format!("{:04}-{}.patch", self.number, slug.trim_end_matches('-'))
    }

    /// The patch as a mail, patch `number` of `total`: what `patch -p1`,
    /// `git am` and [`load`] all take (as an mbox, with its `From ` line).
    pub fn as_mail(&self, total: usize) -> String {
        format!(
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: {}\nSubject: [PATCH {}/{total}] {}\n\n{}",
            self.author, self.number, self.title, self.text
        )
    }
}

/// A series read from mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub version: u32,
    pub rfc: bool,
    /// How many patches the numbering announces.
    pub total: u32,
    /// The cover letter's subject, if there was one.
    pub cover: Option<String>,
    /// `base-commit: SHA` from the cover letter or a patch.
    pub base_commit: Option<String>,
    pub patches: Vec<Patch>,
    /// What was left out, one line each (replies, other versions, mails
    /// that are not patches).
    pub left_out: Vec<String>,
}

impl Series {
    /// `v12, 16 patches` (and `RFC`).
    pub fn identity(&self) -> String {
        format!(
            "{}v{}, {} patch{}",
            if self.rfc { "RFC " } else { "" },
            self.version,
            self.patches.len(),
            if self.patches.len() == 1 { "" } else { "es" }
        )
    }
}

/// Reads the series at `path` (an mbox, a maildir, a folder of mails or of
/// `git format-patch` files). Where several versions are there, the newest
/// is taken and the others are listed as left out.
pub fn load(path: &Path) -> Result<Series> {
    let mails = read_mails(path)?;
    assemble(mails).with_context(|| format!("the series in {}", path.display()))
}

/// Orders `mails` into a series.
pub fn assemble(mails: Vec<Mail>) -> Result<Series> {
    let mut left_out = Vec::new();
    let mut tagged: Vec<(Tag, Mail)> = Vec::new();
    for m in mails {
        match parse_subject(m.subject()) {
            Some(t) => tagged.push((t, m)),
            None => left_out.push(format!("{}: not a patch: {:?}", m.origin, m.subject())),
        }
    }
    let Some(version) = tagged.iter().map(|(t, _)| t.version).max() else {
        bail!("no mail with a [PATCH] subject in it");
    };
    let mut cover = None;
    let mut base_commit = None;
    let mut by_number: BTreeMap<u32, Patch> = BTreeMap::new();
    let mut total = 0;
    let mut rfc = false;
    for (t, m) in tagged {
        if t.version != version {
            left_out.push(format!(
                "{}: an older version (v{}): {}",
                m.origin,
                t.version,
                m.subject()
            ));
            continue;
        }
        if base_commit.is_none() {
            base_commit = m
                .body
                .lines()
                .find_map(|l| l.strip_prefix("base-commit:"))
                .map(|s| s.trim().to_string());
        }
        if t.number == 0 || !m.has_diff() {
            if t.number == 0 {
                cover = Some(t.title.clone());
            } else {
                left_out.push(format!("{}: no diff in it: {}", m.origin, m.subject()));
            }
            continue;
        }
        total = total.max(t.total);
        rfc |= t.rfc;
        if by_number.contains_key(&t.number) {
            bail!(
                "two mails are patch {}/{} of v{version} ({}); keep one",
                t.number,
                t.total,
                m.origin
            );
        }
        by_number.insert(
            t.number,
            Patch {
                number: t.number,
                title: t.title,
                author: m.header("From").unwrap_or("").to_string(),
                text: m.body.clone(),
                message_id: m
                    .header("Message-Id")
                    .map(|s| s.trim_matches(['<', '>']).to_string()),
            },
        );
    }
    if by_number.is_empty() {
        bail!("v{version} has no patch with a diff (only a cover letter?)");
    }
    let missing: Vec<String> = (1..=total)
        .filter(|k| !by_number.contains_key(k))
        .map(|k| format!("{k}/{total}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "v{version} announces {total} patches but {} missing: {}",
            if missing.len() == 1 {
                "this one is"
            } else {
                "these are"
            },
            missing.join(", ")
        );
    }
    Ok(Series {
        version,
        rfc,
        total,
        cover,
        base_commit,
        patches: by_number.into_values().collect(),
        left_out,
    })
}

/// How one patch went onto the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Clean,
    /// Every hunk applied, some at other lines or with fuzz.
    Shifted {
        hunks: Vec<Shift>,
    },
    /// Some hunks did not apply: the patch was left out of the tree.
    Failed {
        rejects: Vec<Reject>,
    },
}

/// A hunk that applied elsewhere than it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub file: String,
    pub hunk: u32,
    /// Lines away from where the hunk said (signed).
    pub offset: i64,
    /// Context lines ignored to make it apply.
    pub fuzz: u32,
}

/// A hunk that did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub file: String,
    pub hunk: u32,
    /// Where it was meant to go (the hunk's old start line).
    pub line: Option<u64>,
    /// The hunk itself.
    pub text: String,
    /// The file's text around `line`, as it stands (empty: no such file).
    pub current: String,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub number: u32,
    pub title: String,
    pub applied: Applied,
}

/// Tries every patch of `patches` in turn on `base` (never written to):
/// only the files the patches touch are copied, into a scratch tree that
/// holds the series as applied so far. A patch that does not apply whole
/// is left out, and the next ones are tried on the tree without it.
pub fn check(base: &Path, patches: &[Patch]) -> Result<Vec<Row>> {
    let scratch = tempfile::Builder::new()
        .prefix("gmemtest-series-")
        .tempdir()
        .context("cannot make a scratch tree")?;
    let tree = scratch.path().join("tree");
    let mut rows = Vec::new();
    for p in patches {
        for f in super::build::files_of_patch(&p.text) {
            let (from, to) = (base.join(&f), tree.join(&f));
            if from.is_file() && !to.exists() {
                std::fs::create_dir_all(to.parent().unwrap_or(&tree))?;
                std::fs::copy(&from, &to)
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        std::fs::create_dir_all(&tree)?;
        let file = scratch.path().join(p.file_name());
        std::fs::write(&file, &p.text)?;
        rows.push(Row {
            number: p.number,
            title: p.title.clone(),
            applied: try_patch(&tree, &file, &p.text)?,
        });
    }
    Ok(rows)
}

/// Applies one patch file in `tree` if all of it applies (a dry run first),
/// and says how.
fn try_patch(tree: &Path, file: &Path, text: &str) -> Result<Applied> {
    let run = |dry: bool| -> Result<(bool, String)> {
        super::build::run_patch(tree, file, dry)
            .context("cannot run patch (install the `patch` package)")
    };
    let (ok, said) = run(true)?;
    let report = read_patch_output(&said);
    if !ok {
        let rejects = report
            .failed
            .iter()
            .map(|(f, hunk)| reject(tree, text, f, *hunk))
            .collect::<Vec<_>>();
        if rejects.is_empty() {
            bail!(
                "patch failed on {} and named no hunk:\n{said}",
                file.display()
            );
        }
        return Ok(Applied::Failed { rejects });
    }
    let (ok, said) = run(false)?;
    if !ok {
        bail!("patch applied in a dry run but not for real:\n{said}");
    }
    Ok(if report.shifted.is_empty() {
        Applied::Clean
    } else {
        Applied::Shifted {
            hunks: report.shifted,
        }
    })
}

/// What GNU patch said about each file's hunks.
#[derive(Debug, Default, PartialEq, Eq)]
struct PatchReport {
    shifted: Vec<Shift>,
    failed: Vec<(String, u32)>,
}

/// Reads `checking file F` / `patching file F`, then `Hunk #N succeeded at L
/// (offset K lines)`, `... with fuzz F`, `Hunk #N FAILED at L.`
fn read_patch_output(said: &str) -> PatchReport {
    let mut r = PatchReport::default();
    let mut file = String::new();
    for l in said.lines() {
        if let Some(f) = l
            .strip_prefix("checking file ")
            .or_else(|| l.strip_prefix("patching file "))
        {
            file = f.trim().trim_matches(['\'', '`']).to_string();
            continue;
        }
        let Some(rest) = l.strip_prefix("Hunk #") else {
            continue;
        };
        let Some((n, rest)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(hunk) = n.parse::<u32>() else { continue };
        if rest.starts_with("FAILED") {
            r.failed.push((file.clone(), hunk));
        } else if rest.starts_with("succeeded") {
            let offset = rest
                .split_once("(offset ")
                .and_then(|(_, o)| o.split_whitespace().next())
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let fuzz = rest
                .split_once("with fuzz ")
                .and_then(|(_, f)| f.trim_end_matches(['.', ')']).split_whitespace().next())
                .and_then(|f| f.trim_end_matches(['.', ')']).parse().ok())
                .unwrap_or(0);
            if offset != 0 || fuzz != 0 {
                r.shifted.push(Shift {
                    file: file.clone(),
                    hunk,
                    offset,
                    fuzz,
                });
            }
        }
    }
    r
}

/// How many lines of the current file a reject shows on each side.
const AROUND: u64 = 6;

/// Hunk `hunk` (1-based) of `file` in the patch text, and the file's
/// current lines around where it was meant to go.
fn reject(tree: &Path, text: &str, file: &str, hunk: u32) -> Reject {
    let hunks = hunks_of(text, file);
    let (line, body) = hunks
        .get(hunk.saturating_sub(1) as usize)
        .cloned()
        .unwrap_or((None, String::new()));
    let current = match (std::fs::read_to_string(tree.join(file)), line) {
        (Ok(t), Some(at)) => t
            .lines()
            .enumerate()
            .skip(at.saturating_sub(AROUND + 1) as usize)
            .take((2 * AROUND + 1) as usize)
            .map(|(i, l)| format!("{:>6} {l}\n", i + 1))
            .collect(),
        _ => String::new(),
    };
    Reject {
        file: file.to_string(),
        hunk,
        line,
        text: body,
        current,
    }
}

/// The hunks of `file` in a patch: each one's old start line and its text.
fn hunks_of(text: &str, file: &str) -> Vec<(Option<u64>, String)> {
    let mut hunks: Vec<(Option<u64>, String)> = Vec::new();
    let mut in_file = false;
    for l in text.lines() {
        if l.starts_with("diff --git ") || l.starts_with("--- ") {
            in_file = false;
        }
        if let Some(f) = l.strip_prefix("+++ b/") {
            in_file = f.split('\t').next().unwrap_or(f).trim() == file;
            continue;
        }
        if !in_file {
            continue;
        }
        if let Some(h) = l.strip_prefix("@@ -") {
            let start = h.split([',', ' ']).next().and_then(|n| n.parse().ok());
            hunks.push((start, format!("{l}\n")));
        } else if let Some((_, body)) = hunks.last_mut() {
            if l.starts_with([' ', '+', '-', '\\']) || l.is_empty() {
                body.push_str(l);
                body.push('\n');
            }
        }
    }
    hunks
}

/// The table, for people: one line per patch, then each rejected hunk with
/// the file's current text where it should go.
pub fn table(series_name: &str, base: &str, rows: &[Row]) -> String {
    let mut s = format!("{series_name} onto {base}\n\n");
    let width = rows
        .iter()
        .map(|r| r.title.len())
        .max()
        .unwrap_or(0)
        .min(60);
    let total = rows.len();
    for r in rows {
        let title: String = r.title.chars().take(60).collect();
        let how = match &r.applied {
            Applied::Clean => "applies clean".to_string(),
            Applied::Shifted { hunks } => {
                let fuzz = hunks.iter().any(|h| h.fuzz > 0);
                let list: Vec<String> = hunks
                    .iter()
                    .map(|h| {
                        let mut w = format!("{} #{}", h.file, h.hunk);
                        if h.offset != 0 {
                            w += &format!(" {:+} lines", h.offset);
                        }
                        if h.fuzz > 0 {
                            w += &format!(" fuzz {}", h.fuzz);
                        }
                        w
                    })
                    .collect();
                format!(
                    "applies with {} ({})",
                    if fuzz { "fuzz" } else { "offsets" },
                    list.join(", ")
                )
            }
            Applied::Failed { rejects } => format!(
                "FAILS: {} hunk{} rejected ({})",
                rejects.len(),
                if rejects.len() == 1 { "" } else { "s" },
                rejects
                    .iter()
                    .map(|r| format!("{} #{}", r.file, r.hunk))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        s += &format!("{:>3}/{total:<3} {title:<width$}  {how}\n", r.number);
    }
    for r in rows {
        if let Applied::Failed { rejects } = &r.applied {
            for j in rejects {
                s += &format!(
                    "\n--- {}/{total} {}: {} hunk #{}{} does not apply:\n{}",
                    r.number,
                    r.title,
                    j.file,
                    j.hunk,
                    j.line
                        .map(|l| format!(" (meant for line {l})"))
                        .unwrap_or_default(),
                    j.text
                );
                if j.current.is_empty() {
                    s += &format!(
                        "    ({} has no such lines: the file is missing or shorter)\n",
                        j.file
                    );
                } else {
                    s += &format!("    {} as it stands there now:\n{}", j.file, j.current);
                }
            }
        }
    }
    let failed = rows
        .iter()
        .filter(|r| matches!(r.applied, Applied::Failed { .. }))
        .count();
    let shifted = rows
        .iter()
        .filter(|r| matches!(r.applied, Applied::Shifted { .. }))
        .count();
    s += &format!(
        "\n{} clean, {shifted} with offsets or fuzz, {failed} failing\n",
        total - failed - shifted
    );
    s
}

/// Writes `series` as `git format-patch`-style files into `dir` (created),
/// and returns their paths in order.
pub fn write_patches(series: &Series, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    series
        .patches
        .iter()
        .map(|p| {
            let f = dir.join(p.file_name());
            std::fs::write(&f, p.as_mail(series.patches.len()))
                .with_context(|| format!("cannot write {}", f.display()))?;
            Ok(f)
        })
        .collect()
}

/// A recipe's own patch files as patches (a `git format-patch` file is a
/// mail; a bare diff is a patch titled by its file name).
pub fn recipe_patches(recipe: &super::Recipe) -> Result<Vec<Patch>> {
    recipe
        .patches
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mails = read_mails(f)?;
            let m = mails
                .into_iter()
                .next()
                .with_context(|| format!("{}: empty", f.display()))?;
            let title = parse_subject(m.subject())
                .map(|t| t.title)
                .unwrap_or_else(|| {
                    f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                });
            Ok(Patch {
                number: i as u32 + 1,
                title,
                author: m.header("From").unwrap_or("").to_string(),
                text: m.body,
                message_id: None,
            })
        })
        .collect()
}

/// The pristine tree a recipe builds from, and its name for people.
pub fn base_of(paths: &crate::paths::Paths, recipe: &super::Recipe) -> Result<(PathBuf, String)> {
    Ok(match recipe.pristine(paths)? {
        Some(t) => {
            let name = format!("{} {} ({})", t.package, t.version, recipe.name);
            (t.path, name)
        }
        // A tree of the user's own: Recipe::load made it absolute.
        None => match &recipe.source {
            super::recipe::SourceSpec::Tree { tree } => {
                (PathBuf::from(tree), format!("{tree} ({})", recipe.name))
            }
            _ => unreachable!("every other source has a pristine tree"),
        },
    })
}

/// How a series goes onto one base: the table's rows, and the base's name.
pub struct BaseCheck {
    pub base: String,
    pub rows: Vec<Row>,
}

impl BaseCheck {
    pub fn failing(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.applied, Applied::Failed { .. }))
            .count()
    }
}

/// A recipe's own patches, then `patches` numbered after them: what goes
/// onto the recipe's base.
fn onto(recipe: &super::Recipe, patches: &[Patch]) -> Result<Vec<Patch>> {
    let mut all = recipe_patches(recipe)?;
    let own = all.len() as u32;
    all.extend(patches.iter().cloned().map(|mut p| {
        p.number += own;
        p
    }));
    Ok(all)
}

/// `recipe` at the series' `base-commit:` when it is a git source and that
/// commit is in its repository: a series is checked on what it was written
/// against, where that is at hand.
pub fn at_base_commit(recipe: &super::Recipe, base_commit: Option<&str>) -> super::Recipe {
    let mut r = recipe.clone();
    if let (super::recipe::SourceSpec::Git { repo, rev }, Some(sha)) = (&mut r.source, base_commit)
    {
        let known = sha.len() >= 7
            && sha.bytes().all(|b| b.is_ascii_hexdigit())
            && Command::new("git")
                .arg("-C")
                .arg(&*repo)
                .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
                .status()
                .is_ok_and(|s| s.success());
        if known {
            *rev = sha.to_string();
        }
    }
    r
}

/// Checks `patches` onto each recipe's base in turn (the recipe's own
/// patches first, then `patches`); a git base at the series' base-commit
/// when its repository has it.
pub fn check_onto(
    paths: &crate::paths::Paths,
    bases: &[super::Recipe],
    patches: &[Patch],
    base_commit: Option<&str>,
) -> Result<Vec<BaseCheck>> {
    bases
        .iter()
        .map(|r| {
            let r = &at_base_commit(r, base_commit);
            let (tree, base) = base_of(paths, r)?;
            Ok(BaseCheck {
                base,
                rows: check(&tree, &onto(r, patches)?)?,
            })
        })
        .collect()
}

/// [`port`] of `patches` onto `recipe`'s base (its own patches first) into
/// the new directory `to`.
pub fn port_onto(
    paths: &crate::paths::Paths,
    recipe: &super::Recipe,
    patches: &[Patch],
    to: &Path,
) -> Result<Port> {
    let (tree, base) = base_of(paths, recipe)?;
    port(&tree, &base, &onto(recipe, patches)?, to)
}

/// Several bases side by side: one line per patch, one column per base.
pub fn matrix(checks: &[BaseCheck]) -> String {
    let Some(first) = checks.first() else {
        return String::new();
    };
    let mut s = String::from("patch");
    for (i, _) in checks.iter().enumerate() {
        s += &format!("  base {}", i + 1);
    }
    s.push('\n');
    for (i, r) in first.rows.iter().enumerate() {
        s += &format!("{:>5}", r.number);
        for c in checks {
            let word = match c.rows.get(i).map(|r| &r.applied) {
                Some(Applied::Clean) => "clean",
                Some(Applied::Shifted { hunks }) if hunks.iter().any(|h| h.fuzz > 0) => "fuzz",
                Some(Applied::Shifted { .. }) => "offset",
                Some(Applied::Failed { .. }) => "FAILS",
                None => "-",
            };
            s += &format!("  {word:<6}");
        }
        s += &format!("  {}\n", r.title.chars().take(60).collect::<String>());
    }
    for (i, c) in checks.iter().enumerate() {
        s += &format!("base {}: {}\n", i + 1, c.base);
    }
    s
}

/// The tag on a port's first commit: the base, before any patch.
pub const PORT_BASE_TAG: &str = "gmemtest-base";

/// What `port` did.
#[derive(Debug)]
pub struct Port {
    pub dir: PathBuf,
    /// The patches committed, in order.
    pub applied: Vec<u32>,
    /// The patch that did not apply whole (its number and mail file):
    /// applied as far as it goes, its rejected hunks in `.rej` files beside
    /// their files, uncommitted.
    pub stopped_at: Option<(u32, PathBuf, Vec<PathBuf>)>,
    /// Where the patches after it wait, as mail files for `git am`.
    pub pending: Vec<PathBuf>,
}

/// Makes `dir` a git tree of `base` (a full copy, committed as it is, its
/// `.gitignore` notwithstanding, tagged [`PORT_BASE_TAG`]) with `patches`
/// committed on top, each with its author and subject (`git am`). The first
/// patch that does not apply is applied as far as it goes, with its rejects
/// in `.rej` files, and the port stops there for the user to resolve.
pub fn port(base: &Path, base_name: &str, patches: &[Patch], dir: &Path) -> Result<Port> {
    if dir.exists() {
        bail!(
            "{} exists; give a new directory (a port never writes over one)",
            dir.display()
        );
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    run(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(base)
            .arg(dir),
        "copying the base tree",
    )?;
    let git = |args: &[&str]| -> Result<String> {
        run(
            Command::new("git")
                .current_dir(dir)
                .args([
                    "-c",
                    "user.name=gmemtest",
                    "-c",
                    "user.email=gmemtest@localhost",
                ])
                .args([
                    "-c",
                    "commit.gpgsign=false",
                    "-c",
                    "core.hooksPath=/dev/null",
                ])
                .args(args),
            &format!("git {}", args.join(" ")),
        )
    };
    git(&["init", "-q"])?;
    // Debian's unpacked source ignores everything (`/*`): add by force.
    git(&["add", "-f", "-A"])?;
    git(&["commit", "-q", "-m", &format!("base: {base_name}")])?;
    git(&["tag", PORT_BASE_TAG])?;
    let mails = dir.join(".git").join("gmemtest-series");
    std::fs::create_dir_all(&mails)?;
    let mut result = Port {
        dir: dir.to_path_buf(),
        applied: Vec::new(),
        stopped_at: None,
        pending: Vec::new(),
    };
    for (i, p) in patches.iter().enumerate() {
        let file = mails.join(p.file_name());
        std::fs::write(&file, p.as_mail(patches.len()))?;
        if git(&["am", "-q", "--keep-cr", &file.to_string_lossy()]).is_ok() {
            result.applied.push(p.number);
            continue;
        }
        git(&["am", "--abort"])?;
        // As far as it goes, the rest in .rej files for the user.
        let _ = Command::new("patch")
            .args([
                "-p1",
                "--forward",
                "--batch",
                "--no-backup-if-mismatch",
                "-i",
            ])
            .arg(&file)
            .current_dir(dir)
            .output();
        result.stopped_at = Some((p.number, file.clone(), rejects_of(dir, &p.text)));
        for q in &patches[i + 1..] {
            let f = mails.join(q.file_name());
            std::fs::write(&f, q.as_mail(patches.len()))?;
            result.pending.push(f);
        }
        break;
    }
    Ok(result)
}

/// The `.rej` files `patch` left beside the files `text` touches.
fn rejects_of(dir: &Path, text: &str) -> Vec<PathBuf> {
    super::build::files_of_patch(text)
        .into_iter()
        .map(|f| dir.join(format!("{f}.rej")))
        .filter(|r| r.is_file())
        .collect()
}

/// Turns a port back into a series: the commits since [`PORT_BASE_TAG`] as
/// `git format-patch` files in `to` (created; it must not hold patches
/// already), in order.
pub fn export(port: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    if to.is_dir()
        && std::fs::read_dir(to)?
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "patch"))
    {
        bail!(
            "{} already holds .patch files; export into an empty directory",
            to.display()
        );
    }
    std::fs::create_dir_all(to)?;
    let to_abs = to.canonicalize()?;
    let out = run(
        Command::new("git")
            .current_dir(port)
            .args(["format-patch", "--no-signature", "--zero-commit", "-o"])
            .arg(&to_abs)
            .arg(format!("{PORT_BASE_TAG}..HEAD")),
        "git format-patch",
    )?;
    let files: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    if files.is_empty() {
        bail!(
            "{}: no commit after {PORT_BASE_TAG}: nothing to export",
            port.display()
        );
    }
    Ok(files)
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::mail::parse_message;

    #[test]
    fn subjects_as_lists_write_them() {
        let t = parse_subject("[PATCH v12 03/16] KVM: guest_memfd: add flag").unwrap();
        assert_eq!((t.version, t.number, t.total, t.rfc), (12, 3, 16, false));
        assert_eq!(t.title, "KVM: guest_memfd: add flag");
        let t = parse_subject("[RFC PATCH 0/2] cover").unwrap();
        assert_eq!((t.version, t.number, t.total, t.rfc), (1, 0, 2, true));
        let t = parse_subject("[PATCH net-next v3 2/5] x").unwrap();
        assert_eq!((t.version, t.number, t.total), (3, 2, 5));
        assert_eq!(parse_subject("[PATCH] one").unwrap().total, 1);
        assert_eq!(parse_subject("Re: [PATCH v2 1/3] x"), None);
        assert_eq!(parse_subject("[GIT PULL] kvm"), None);
        assert_eq!(parse_subject("hello"), None);
    }

    fn mail(subject: &str, body: &str) -> Mail {
        parse_message(
            format!("From: A <a@x>\nSubject: {subject}\n\n{body}").as_bytes(),
            subject,
        )
    }

    const DIFF: &str = "msg\n---\ndiff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n";

    #[test]
    fn a_series_is_ordered_and_its_cover_and_replies_left_out() {
        let s = assemble(vec![
            mail("[PATCH v2 2/2] second", DIFF),
            mail("Re: [PATCH v2 1/2] first", "looks good"),
            mail("[PATCH v2 0/2] cover", "base-commit: abc123\n"),
            mail("[PATCH v2 1/2] first", DIFF),
            mail("[PATCH 1/2] first, v1", DIFF),
        ])
        .unwrap();
        assert_eq!(s.version, 2);
        assert_eq!(s.cover.as_deref(), Some("cover"));
        assert_eq!(s.base_commit.as_deref(), Some("abc123"));
        let titles: Vec<&str> = s.patches.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["first", "second"]);
        assert_eq!(s.left_out.len(), 2, "{:?}", s.left_out);
        assert_eq!(s.patches[0].author, "A <a@x>");
        assert_eq!(s.identity(), "v2, 2 patches");
    }

    #[test]
    fn a_missing_patch_is_named() {
        let e = assemble(vec![
            mail("[PATCH 1/3] a", DIFF),
            mail("[PATCH 3/3] c", DIFF),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("announces 3 patches") && e.contains("2/3"),
            "{e}"
        );
    }

    #[test]
    fn patch_output_is_read_hunk_by_hunk() {
        let said = "checking file mm/gup.c\nHunk #1 succeeded at 120 (offset 5 lines).\nHunk #2 succeeded at 300 with fuzz 2 (offset -3 lines).\nHunk #3 FAILED at 400.\n1 out of 3 hunks FAILED\nchecking file virt/kvm/guest_memfd.c\n";
        let r = read_patch_output(said);
        assert_eq!(r.failed, [("mm/gup.c".to_string(), 3)]);
        assert_eq!(
            r.shifted,
            [
                Shift {
                    file: "mm/gup.c".into(),
                    hunk: 1,
                    offset: 5,
                    fuzz: 0
                },
                Shift {
                    file: "mm/gup.c".into(),
                    hunk: 2,
                    offset: -3,
                    fuzz: 2
                }
            ]
        );
    }

    /// A base tree, and a series: one clean patch, one shifted by offset,
    /// one that cannot apply, and one after it that still does.
    #[test]
    fn every_patch_is_checked_on_the_tree_as_it_stands() {
        let base = tempfile::tempdir().unwrap();
        let lines: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        std::fs::write(base.path().join("a.c"), &lines).unwrap();
        std::fs::write(base.path().join("b.c"), "one\ntwo\nthree\n").unwrap();
        let patch = |n, title: &str, text: &str| Patch {
            number: n,
            title: title.into(),
            author: "A".into(),
            text: text.into(),
            message_id: None,
        };
        let p1 = patch(
            1,
            "insert at the top",
            "--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,4 @@\n+new 0\n line 1\n line 2\n line 3\n",
        );
        // Written against the file without p1: lands one line further.
        let p2 = patch(
            2,
            "change line 20",
            "--- a/a.c\n+++ b/a.c\n@@ -19,3 +19,3 @@\n line 19\n-line 20\n+line twenty\n line 21\n",
        );
        let p3 = patch(
            3,
            "change a line that is not there",
            "--- a/b.c\n+++ b/b.c\n@@ -2,3 +2,3 @@\n two\n-four\n+FOUR\n five\n",
        );
        let p4 = patch(
            4,
            "change b.c",
            "--- a/b.c\n+++ b/b.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n",
        );
        let rows = check(base.path(), &[p1, p2, p3, p4]).unwrap();
        assert_eq!(rows[0].applied, Applied::Clean);
        assert!(
            matches!(&rows[1].applied, Applied::Shifted { hunks } if hunks[0].offset == 1),
            "{:?}",
            rows[1].applied
        );
        let Applied::Failed { rejects } = &rows[2].applied else {
            panic!("{:?}", rows[2].applied)
        };
        assert_eq!(
            (rejects[0].file.as_str(), rejects[0].hunk, rejects[0].line),
            ("b.c", 1, Some(2))
        );
        assert!(rejects[0].text.contains("-four"));
        assert!(
            rejects[0].current.contains("     2 two"),
            "{}",
            rejects[0].current
        );
        assert_eq!(
            rows[3].applied,
            Applied::Clean,
            "tried on the tree without patch 3"
        );
        // The base is never written to.
        assert_eq!(
            std::fs::read_to_string(base.path().join("b.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
        let t = table("test v1", "base", &rows);
        assert!(
            t.lines().any(|l| l.trim_start().starts_with("1/4")
                && l.contains("insert at the top")
                && l.ends_with("applies clean")),
            "{t}"
        );
        assert!(t.contains("FAILS: 1 hunk rejected (b.c #1)"), "{t}");
        assert!(
            t.contains("2 clean, 1 with offsets or fuzz, 1 failing"),
            "{t}"
        );
    }

    /// A port is a git tree of the base (ignored files and all) with one
    /// commit per patch that applies; it stops at one that does not, with
    /// its rejects beside their files; export gives the commits back.
    #[test]
    fn a_series_ported_onto_a_base_and_exported_back() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join(".gitignore"), "/*\n").unwrap();
        std::fs::write(base.path().join("a.c"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(base.path().join("b.c"), "x\ny\nz\n").unwrap();
        let patch = |n, title: &str, text: &str| Patch {
            number: n,
            title: title.into(),
            author: "Ada <ada@example.invalid>".into(),
            text: format!("Why it matters.\n---\n{text}"),
            message_id: None,
        };
        let good = patch(1, "a: two is TWO", "diff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n");
        let bad = patch(
            2,
            "b: y is Y",
            "diff --git a/b.c b/b.c\n--- a/b.c\n+++ b/b.c\n@@ -1,3 +1,3 @@\n x\n-yy\n+Y\n z\n",
        );
        let later = patch(
            3,
            "a: one is ONE",
            "diff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1,2 +1,2 @@\n-one\n+ONE\n TWO\n",
        );
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("port");
        let p = port(base.path(), "a base", &[good, bad, later], &dir).unwrap();
        assert_eq!(p.applied, [1]);
        let (at, mail, rejects) = p.stopped_at.clone().unwrap();
        assert_eq!(at, 2);
        assert!(std::fs::read_to_string(mail)
            .unwrap()
            .contains("Subject: [PATCH 2/3] b: y is Y"));
        assert_eq!(rejects, [dir.join("b.c.rej")]);
        assert_eq!(p.pending.len(), 1);
        let git = |args: &[&str]| {
            let o = Command::new("git")
                .current_dir(&dir)
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        assert_eq!(
            git(&["log", "--format=%an|%s"]),
            "Ada|a: two is TWO\ngmemtest|base: a base\n"
        );
        // Every base file is in the base commit, .gitignore notwithstanding.
        assert_eq!(
            git(&["ls-tree", "--name-only", PORT_BASE_TAG]),
            ".gitignore\na.c\nb.c\n"
        );
        let out = work.path().join("series");
        let exported = export(&dir, &out).unwrap();
        assert_eq!(exported.len(), 1);
        let s = load(&out).unwrap();
        assert_eq!(s.patches[0].title, "a: two is TWO");
        assert_eq!(s.patches[0].author, "Ada <ada@example.invalid>");
        assert!(
            port(base.path(), "again", &[], &dir).is_err(),
            "never over an existing tree"
        );
    }
}
