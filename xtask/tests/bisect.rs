//! `cargo xtask bisect` end to end, on a kernel history made here from the
//! pinned source (no network): the reviewed direct-map series, unrelated
//! commits, a commit that does not build (fixed by the next one), and one
//! that drops the GUP refusal, so `/proc/self/mem` oopses again. The
//! bisection must name the regressing commit, skip the broken one, and leave
//! the tree as it was.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=gmemtest",
            "-c",
            "user.email=gmemtest@localhost",
        ])
        .args(["-c", "core.compression=1", "-c", "core.looseCompression=1"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Rewrites a file of the hard-linked copy without touching the pristine
/// tree it shares inodes with (unlink, then write).
fn rewrite(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

fn commit(tree: &Path, subject: &str) -> String {
    git(tree, &["add", "-A", "-f"]);
    git(tree, &["commit", "-q", "-m", subject]);
    git(tree, &["rev-parse", "HEAD"])
}

/// The history; returns (tree, good, broken, regression).
fn history(root: &Path) -> (PathBuf, String, String, String) {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let paths = runner::paths::Paths::discover(&checkout).unwrap();
    runner::setup::host().unwrap();
    let pristine = runner::setup::source(&paths, "linux-source-7.3", None).unwrap();
    let tree = root.join("linux");
    let ok = Command::new("cp")
        .arg("-al")
        .arg(&pristine.path)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(ok.success());
    git(&tree, &["init", "-q"]);
    commit(&tree, "Linux 7.3 (Debian linux-source-7.3)");
    let series = checkout.join("kernels/patches/nodirectmap-reviewed");
    let mut patches: Vec<PathBuf> = std::fs::read_dir(&series)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    patches.sort();
    for p in &patches {
        git(&tree, &["am", "-q", p.to_str().unwrap()]);
    }
    let good = git(&tree, &["rev-parse", "HEAD"]);
    rewrite(&tree.join("Documentation/virt/kvm/api.rst"), |t| {
        t + "\n.. gmemtest: an unrelated documentation change\n"
    });
    commit(&tree, "Documentation: kvm: an unrelated change");
    rewrite(&tree.join("virt/kvm/kvm_main.c"), |t| {
        t + "\n/* gmemtest: an unrelated change */\n"
    });
    commit(&tree, "KVM: an unrelated comment");
    rewrite(&tree.join("virt/kvm/guest_memfd.c"), |t| {
        t + "\nthis does not compile;\n"
    });
    let broken = commit(&tree, "KVM: guest_memfd: a commit that does not build");
    rewrite(&tree.join("virt/kvm/guest_memfd.c"), |t| {
        t.replace("\nthis does not compile;\n", "")
    });
    commit(&tree, "KVM: guest_memfd: fix the build");
    rewrite(&tree.join("mm/gup.c"), |t| {
        let check = "\tif (vma->vm_file && mapping_no_direct_map(vma->vm_file->f_mapping))\n\t\treturn -EFAULT;\n";
        assert!(
            t.contains(check),
            "the reviewed series' GUP check is not in mm/gup.c"
        );
        t.replacen(check, "", 1)
    });
    let regression = commit(
        &tree,
        "mm: gup: drop the no-direct-map check from check_vma_flags()",
    );
    rewrite(&tree.join("Documentation/virt/kvm/api.rst"), |t| {
        t + "\n.. gmemtest: another unrelated change\n"
    });
    commit(&tree, "Documentation: kvm: another unrelated change");
    (tree, good, broken, regression)
}

#[test]
fn bisect_names_the_regression_and_skips_the_broken_commit() {
    let root = tempfile::Builder::new()
        .prefix("gmemtest-bisect-")
        .tempdir()
        .unwrap();
    let (tree, good, broken, regression) = history(root.path());
    let head_before = git(&tree, &["rev-parse", "HEAD"]);
    let out = bisect_command(&tree, &good).output().expect("xtask bisect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bisect failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "first bad commit: {regression} mm: gup: drop the no-direct-map check"
        )),
        "wrong first bad commit:\n{stdout}\n{stderr}"
    );
    let broken_short = &broken[..12];
    assert!(
        stdout.lines().any(|l| l.starts_with(broken_short)
            && l.contains("skip")
            && l.contains("build failed")),
        "the broken commit was not skipped:\n{stdout}"
    );
    eprintln!("{stdout}");
    assert_tree_as_it_was(&tree, &head_before);

    // Interrupted in the middle (Ctrl-C while a step builds): the same.
    let mut child = bisect_command(&tree, &good)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        // Its own process group, as a terminal's foreground job is.
        .process_group(0)
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0 {
        if line.contains("make -j") {
            break;
        }
        line.clear();
    }
    // Ctrl-C: SIGINT to the whole foreground job. SAFETY: signalling the
    // process group of our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "an interrupted bisect exits 130");
    assert_tree_as_it_was(&tree, &head_before);
}

/// `cargo xtask bisect` from `good` to the tree's HEAD with the GUP case.
fn bisect_command(tree: &Path, good: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args([
        "bisect",
        "--tree",
        tree.to_str().unwrap(),
        "--good",
        good,
        "--bad",
        "HEAD",
    ])
    .args(["--case", "nodirectmap_gup"]);
    c
}

/// Same HEAD, clean, no worktree, no bisect state.
fn assert_tree_as_it_was(tree: &Path, head_before: &str) {
    assert_eq!(git(tree, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(git(tree, &["status", "--porcelain", "--ignored=no"]), "");
    assert_eq!(
        git(tree, &["worktree", "list"]).lines().count(),
        1,
        "a worktree was left behind"
    );
    assert_eq!(
        git(tree, &["for-each-ref", "refs/bisect"]),
        "",
        "bisect refs were left behind"
    );
}
