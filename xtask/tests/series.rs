//! `cargo xtask series check` on series as people send them: an mbox made
//! the way a list archive serves one (quoted-printable bodies, a cover
//! letter with base-commit, a reply and an older version in the thread),
//! made here from our own reviewed series; and a series that conflicts with
//! its base (the RFC's patch onto the reviewed variant, which already
//! changes the same code).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs xtask with `args` and returns its stdout, which must come with the
/// exit code `code` (stdout and stderr are shown when it does not).
fn xtask_out(args: &[&str], code: i32) -> String {
    let o = xtask(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(code),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

/// Quoted-printable as mailers write it: `=` and bytes outside printable
/// ASCII as `=XX`, trailing blanks encoded, lines soft-broken under 76.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split('\n') {
        let mut cur = String::new();
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let enc = if b == b'=' || !(32..127).contains(&b) || (last && b == b' ') {
                format!("={b:02X}")
            } else {
                (b as char).to_string()
            };
            if cur.len() + enc.len() > 75 {
                out.push_str(&cur);
                out.push_str("=\n");
                cur.clear();
            }
            cur.push_str(&enc);
        }
        out.push_str(&cur);
        out.push('\n');
    }
    out.pop();
    out
}

/// The subject line and body of a `git format-patch` file.
fn subject_and_body(patch: &Path) -> (String, String) {
    let text = std::fs::read_to_string(patch).unwrap();
    let (head, body) = text.split_once("\n\n").unwrap();
    let subject = head
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap();
    // format-patch's own `[PATCH k/n]`: the mbox gets a v3 tag instead.
    let subject = match subject.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map(|(_, t)| t).unwrap_or(subject),
        None => subject,
    }
    .to_string();
    (subject, body.to_string())
}

fn message(from_line: &str, headers: &str, body: &str) -> String {
    format!("From {from_line} Mon Sep 17 00:00:00 2001\n{headers}\n\n{body}\n")
}

/// Our reviewed series as a v3 thread in one mbox, bodies quoted-printable.
fn reviewed_as_mbox(dir: &Path) -> (PathBuf, Vec<String>) {
    let mut patches: Vec<PathBuf> =
        std::fs::read_dir(root().join("kernels/patches/nodirectmap-reviewed"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    patches.sort();
    let n = patches.len();
    let mut mbox = message(
        "cover",
        &format!("From: Dev <dev@example.invalid>\nSubject: [PATCH v3 0/{n}] guest_memfd: direct map removal"),
        "The series.\n\nbase-commit: 0123456789abcdef0123456789abcdef01234567\n",
    );
    // An older version of the first patch, and a reply: both left out.
    let (s1, b1) = subject_and_body(&patches[0]);
    mbox += &message(
        "old",
        &format!("From: Dev <dev@example.invalid>\nSubject: [PATCH v2 1/{n}] {s1}"),
        &b1,
    );
    mbox += &message(
        "reply",
        &format!("From: Reviewer <r@example.invalid>\nSubject: Re: [PATCH v3 1/{n}] {s1}"),
        "> From the patch\nLooks fine.\n",
    );
    let mut bodies = Vec::new();
    // In reverse, as an archive may well order them.
    for (k, p) in patches.iter().enumerate().rev() {
        let (subject, body) = subject_and_body(p);
        bodies.push(body.clone());
        mbox += &message(
            "patch",
            &format!(
                "From: Dev <dev@example.invalid>\nSubject: [PATCH v3 {}/{n}] {subject}\nContent-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable",
                k + 1
            ),
            &quoted_printable(&body),
        );
    }
    bodies.reverse();
    let file = dir.join("series.mbox");
    std::fs::write(&file, mbox).unwrap();
    (file, bodies)
}

#[test]
fn an_archived_mbox_is_decoded_and_checked_patch_by_patch() {
    let d = tempfile::tempdir().unwrap();
    let (mbox, bodies) = reviewed_as_mbox(d.path());
    // Decoded back to exactly what was sent.
    let s = runner::kernel::series::load(&mbox).unwrap();
    assert_eq!(s.version, 3);
    assert_eq!(
        s.base_commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(s.patches.len(), bodies.len());
    for (p, b) in s.patches.iter().zip(&bodies) {
        assert_eq!(&p.text, b, "patch {} decoded differently", p.number);
        assert_eq!(p.author, "Dev <dev@example.invalid>");
    }
    assert_eq!(s.left_out.len(), 2, "{:?}", s.left_out);

    let args = [
        "series",
        "check",
        "--series",
        mbox.to_str().unwrap(),
        "--onto",
        "stock-7.3",
    ];
    let out = xtask_out(&args, 0);
    // What was left out is said on stderr.
    let o = xtask(&args);
    assert!(
        out.contains("v3, 2 patches, base-commit 0123456789ab"),
        "{out}"
    );
    assert!(out.contains("1/2   mm: gup: refuse mappings"), "{out}");
    assert!(
        out.contains("2 clean, 0 with offsets or fuzz, 0 failing"),
        "{out}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("an older version (v2)") && err.contains("not a patch"),
        "{err}"
    );
}

#[test]
fn a_conflicting_series_shows_each_rejected_hunk_where_it_should_go() {
    let d = tempfile::tempdir().unwrap();
    // The RFC's patch, as a folder of one format-patch file, onto the
    // reviewed variant (whose own two patches go first) and onto stock.
    let rfc = root().join("kernels/patches/nodirectmap-rfc");
    let series = d.path().join("rfc");
    std::fs::create_dir(&series).unwrap();
    for e in std::fs::read_dir(&rfc).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, series.join(p.file_name().unwrap())).unwrap();
    }
    let out = xtask_out(
        &[
            "series",
            "check",
            "--series",
            series.to_str().unwrap(),
            "--onto",
            "nodirectmap-reviewed",
            "--onto",
            "stock-7.3",
        ],
        1,
    );
    // Onto reviewed: its own two patches apply, the RFC's does not.
    assert!(out.contains("3/3 ") && out.contains("FAILS: "), "{out}");
    assert!(out.contains("virt/kvm/guest_memfd.c"), "{out}");
    assert!(out.contains("as it stands there now:"), "{out}");
    // Onto stock it applies: the matrix says so, base by base.
    assert!(
        out.contains("1 clean, 0 with offsets or fuzz, 0 failing"),
        "{out}"
    );
    assert!(
        out.contains("base 1: linux-source-7.3") && out.contains("(nodirectmap-reviewed)"),
        "{out}"
    );
}

/// Whether the case file's own `kernels` list names `tag`.
fn names_tag(case: &std::path::Path, tag: &str) -> bool {
    let text = std::fs::read_to_string(case).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    v["kernels"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|k| k.as_str() == Some(tag))
}

/// A new variant joins the suite in one command: `variant new` writes its
/// recipe (the series copied in, built like another variant, its tags), and
/// every case that names one of the tags runs on it; no case file changes.
#[test]
fn a_new_variant_joins_every_case_of_its_kind_in_one_command() {
    let d = tempfile::tempdir().unwrap();
    let (mbox, bodies) = reviewed_as_mbox(d.path());
    // A copy of the checkout's kernels/ and cases/: the test writes a recipe.
    let root = d.path().join("checkout");
    std::fs::create_dir_all(&root).unwrap();
    for dir in ["kernels", "cases"] {
        let copied = Command::new("cp")
            .arg("-a")
            .arg(self::root().join(dir))
            .arg(root.join(dir))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    let cases_before: Vec<(PathBuf, String)> = std::fs::read_dir(root.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let r = runner::kernel::recipe::new_variant(
        &root.join("kernels"),
        "reviewed-v3",
        &mbox,
        "nodirectmap-reviewed",
        None,
    )
    .unwrap();
    assert_eq!(r.patches.len(), bodies.len());
    assert_eq!(r.tags, ["nodirectmap"]);
    let mut paths = runner::paths::Paths::of_this_checkout().unwrap();
    paths.root = root.clone();
    paths.suite = root.clone();
    let suite = runner::suite::Suite::load(paths, &[], &[]).unwrap();
    let on_it: Vec<&str> = suite
        .cases
        .iter()
        .filter(|c| c.kernels.iter().any(|k| k == "reviewed-v3"))
        .map(|c| c.name.as_str())
        .collect();
    // The cases that name the tag (not those pinned to concrete kernels,
    // like a fuzzer's finding that fails on one sibling of the tag).
    let by_tag: Vec<&str> = suite
        .cases
        .iter()
        .filter(|c| names_tag(&c.file, "nodirectmap"))
        .map(|c| c.name.as_str())
        .collect();
    assert!(by_tag.len() >= 20, "{by_tag:?}");
    assert_eq!(on_it, by_tag);
    assert!(on_it.contains(&"kvm_access_matrix"), "{on_it:?}");
    for (p, text) in cases_before {
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            text,
            "{} changed",
            p.display()
        );
    }
    // The same name again is refused, nothing overwritten.
    let e = runner::kernel::recipe::new_variant(
        &root.join("kernels"),
        "reviewed-v3",
        &mbox,
        "stock-7.3",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("exists already"), "{e}");
}

/// `series walk` names the patch after which each case's outcome changed:
/// the RFC's one patch turns nodirectmap_flag's EINVAL into a guest_memfd
/// and adds the flag to what gmem_caps reads
/// (the base is the stock kernel, the last step the variant: both are
/// built already under their own names, so nothing is rebuilt).
#[test]
fn a_walk_names_the_patch_that_changed_each_case() {
    let out = xtask_out(
        &[
            "series",
            "walk",
            "nodirectmap-rfc",
            "-c",
            "nodirectmap_flag",
            "-c",
            "gmem_caps",
        ],
        0,
    );
    assert!(
        out.contains("series walk of nodirectmap-rfc: the base and 1 patch"),
        "{out}"
    );
    let line = |case: &str| {
        out.lines()
            .find(|l| l.starts_with(case))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        line("nodirectmap_flag").contains("1/1 KVM: guest_memfd: add option to remove"),
        "{out}"
    );
    assert!(
        line("gmem_caps").contains("1/1") || line("gmem_caps").contains("the same"),
        "{out}"
    );
    assert!(
        out.contains("=== nodirectmap_flag changed by patch 1/1"),
        "{out}"
    );
    assert!(
        out.contains("reproduce: cargo xtask series walk nodirectmap-rfc -c nodirectmap_flag"),
        "{out}"
    );
}
