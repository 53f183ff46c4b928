//! Bad input, tried: every file of `tests/data/bad_input/` is a malformed
//! case or kernel recipe, and says in its `# error:` lines what the one
//! error it gives must contain (besides the file's path). Recipes marked
//! `# stage: tree` load, and are refused against a kernel tree (the stand-in
//! `bad_input/tree`) before anything is built: a patch that does not apply,
//! a fragment symbol the kernel does not have. What cannot live in git (a
//! FIFO, a huge file, invalid UTF-8, a symlink out of the suite) is made here.

use runner::case::{self, Case};
use runner::kernel::build::{apply_patches, check_fragment_symbols};
use runner::kernel::Recipe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad_input")
}

fn kernels() -> Vec<String> {
    vec!["stock-7.3".to_string()]
}

/// The `# error:` lines of a corpus file, and whether it is `# stage: tree`.
fn expectations(file: &Path) -> (Vec<String>, bool) {
    let text = std::fs::read_to_string(file).unwrap();
    let want: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# error: "))
        .map(String::from)
        .collect();
    (want, text.lines().any(|l| l == "# stage: tree"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// One clear error: it starts with the file, and holds what is expected.
/// What is wrong with it, if anything.
fn check_error(file: &Path, err: &anyhow::Error, want: &[String]) -> Option<String> {
    let msg = format!("{err:#}");
    // To read them all: GMEMTEST_SHOW_ERRORS=1 cargo test --test bad_input -- --nocapture
    if std::env::var_os("GMEMTEST_SHOW_ERRORS").is_some() {
        eprintln!("{msg}\n");
    }
    let mut wrong = Vec::new();
    if !msg.starts_with(&file.display().to_string()) {
        wrong.push("does not start with the file".to_string());
    }
    for w in want.iter().filter(|w| !msg.contains(w.as_str())) {
        wrong.push(format!("lacks `{w}`"));
    }
    (!wrong.is_empty())
        .then(|| format!("{}: the error {}:\n{msg}", file.display(), wrong.join(", ")))
}

/// Every problem at once: a change to a message shows all it breaks.
fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn every_malformed_case_gives_one_clear_error() {
    let files = yaml_files(&corpus().join("cases"));
    assert!(files.len() >= 89, "{} case files", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let (want, _) = expectations(f);
        assert!(!want.is_empty(), "{}: no `# error:` line", f.display());
        problems.extend(match Case::load(f, &kernels()) {
            Ok(_) => Some(format!("{}: loaded, expected an error", f.display())),
            Err(e) => check_error(f, &e, &want),
        });
    }
    assert_none(problems);
    eprintln!("{} malformed case files, each refused", files.len());
}

/// A copy of the stand-in kernel tree, to patch.
fn fake_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(corpus().join("tree/."))
        .arg(d.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    d
}

/// What the recipe checks do before a build: patches onto the tree, then
/// the fragments' symbols against its Kconfig files.
fn check_against_tree(recipe: &Recipe, tree: &Path) -> anyhow::Result<()> {
    apply_patches(tree, recipe, "the fake tree")?;
    check_fragment_symbols(recipe, tree)
}

#[test]
fn every_malformed_recipe_gives_one_clear_error() {
    let files = yaml_files(&corpus().join("kernels"));
    let (mut at_load, mut at_tree) = (0, 0);
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("good.yaml")) {
        let (want, tree_stage) = expectations(f);
        assert!(!want.is_empty(), "{}: no `# error:` line", f.display());
        let loaded = Recipe::load(f);
        if !tree_stage {
            problems.extend(match loaded {
                Ok(_) => Some(format!("{}: loaded, expected an error", f.display())),
                Err(e) => check_error(f, &e, &want),
            });
            at_load += 1;
            continue;
        }
        let recipe = loaded.unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
        let tree = fake_tree();
        let before = std::fs::read_to_string(tree.path().join("mm/gup.c")).unwrap();
        problems.extend(match check_against_tree(&recipe, tree.path()) {
            Ok(()) => Some(format!(
                "{}: passed the tree checks, expected an error",
                f.display()
            )),
            Err(e) => check_error(f, &e, &want),
        });
        // A patch that does not apply leaves nothing of itself: no hunk,
        // no .rej or .orig file.
        let after = std::fs::read_to_string(tree.path().join("mm/gup.c")).unwrap();
        let applied_first = recipe
            .patches
            .first()
            .is_some_and(|p| p.ends_with("0001-gup-return-one.patch"));
        assert_eq!(
            after,
            if applied_first {
                before.replace("return 0", "return 1")
            } else {
                before
            },
            "{}",
            f.display()
        );
        let leftovers: Vec<_> = std::fs::read_dir(tree.path().join("mm"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "gup.c")
            .collect();
        assert!(leftovers.is_empty(), "{}: {leftovers:?}", f.display());
        at_tree += 1;
    }
    assert_none(problems);
    assert!(at_load >= 36 && at_tree >= 2, "{at_load} + {at_tree}");
    eprintln!("{at_load} malformed recipes refused on loading, {at_tree} against the tree");
}

/// The control: a recipe whose patch and fragments fit the tree passes every
/// check, so the checks above fail for the reasons they name.
#[test]
fn a_good_recipe_passes_the_same_checks() {
    let recipe = Recipe::load(&corpus().join("kernels/good.yaml")).unwrap();
    let tree = fake_tree();
    check_against_tree(&recipe, tree.path()).unwrap();
    let gup = std::fs::read_to_string(tree.path().join("mm/gup.c")).unwrap();
    assert!(gup.contains("return 1;"), "{gup}");
}

/// A suite directory (`cases/`, `kernels/`) for generated files.
fn suite() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("cases")).unwrap();
    std::fs::create_dir_all(d.path().join("kernels/fragments")).unwrap();
    std::fs::write(
        d.path().join("kernels/fragments/base.config"),
        "CONFIG_KVM=y\n",
    )
    .unwrap();
    d
}

/// Loads in a thread of its own: a loader that opened a FIFO would block
/// forever, and the test must fail, not hang.
fn load_within<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the loader hung (opened a FIFO?)")
}

fn case_error(file: &Path) -> String {
    let f = file.to_path_buf();
    match load_within(move || Case::load(&f, &kernels())) {
        Ok(_) => panic!("{}: loaded, expected an error", file.display()),
        Err(e) => format!("{e:#}"),
    }
}

const GOOD_CASE: &str =
    "description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: caps}\n";

#[test]
fn files_that_are_not_case_files_are_refused_without_hanging() {
    let s = suite();
    let cases = s.path().join("cases");
    let mut tried = 0;
    let mut expect = |name: &str, want: &[&str]| {
        let f = cases.join(name);
        let e = case_error(&f);
        assert!(e.starts_with(&f.display().to_string()), "{e}");
        for w in want {
            assert!(e.contains(w), "{name}: lacks `{w}`:\n{e}");
        }
        tried += 1;
    };

    let huge = format!("{GOOD_CASE}# {}\n", "x".repeat(300 * 1024));
    std::fs::write(cases.join("huge.yaml"), huge).unwrap();
    expect(
        "huge.yaml",
        &["bytes; expected at most 262144 bytes for a case"],
    );

    let fifo = cases.join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    expect("fifo.yaml", &["not a regular file; expected a case"]);

    std::fs::create_dir(cases.join("dir.yaml")).unwrap();
    expect("dir.yaml", &["not a regular file"]);

    let mut bytes = GOOD_CASE.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(cases.join("latin1.yaml"), bytes).unwrap();
    expect(
        "latin1.yaml",
        &["line 5: not UTF-8 text", "expected a case in UTF-8"],
    );

    let mut bytes = GOOD_CASE.as_bytes().to_vec();
    bytes.extend_from_slice(b"# a\0b\n");
    std::fs::write(cases.join("nul.yaml"), bytes).unwrap();
    expect(
        "nul.yaml",
        &["line 5: holds a NUL byte", "expected a case in plain text"],
    );

    std::os::unix::fs::symlink("/etc/passwd", cases.join("passwd.yaml")).unwrap();
    expect(
        "passwd.yaml",
        &["a symlink to /etc/passwd, outside the suite"],
    );

    std::os::unix::fs::symlink("nowhere.yaml", cases.join("dangling.yaml")).unwrap();
    expect("dangling.yaml", &["a symlink to nothing"]);

    // Whatever case::load_all meets in cases/ is refused the same way.
    let e = format!("{:#}", case::load_all(&cases, &kernels()).unwrap_err());
    assert!(e.contains("cases/dangling.yaml"), "{e}");

    // A symlink within the suite is fine.
    std::fs::write(s.path().join("shared.yaml"), GOOD_CASE).unwrap();
    std::os::unix::fs::symlink("../shared.yaml", cases.join("linked.yaml")).unwrap();
    Case::load(&cases.join("linked.yaml"), &kernels()).unwrap();
    eprintln!("{tried} generated bad case files refused");

    // A cases/ directory that is a symlink out of the suite.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("x.yaml"), GOOD_CASE).unwrap();
    let s2 = suite();
    let c2 = s2.path().join("cases");
    std::fs::remove_dir_all(&c2).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &c2).unwrap();
    let e = format!("{:#}", case::load_all(&c2, &kernels()).unwrap_err());
    assert!(
        e.contains("outside the suite") && e.contains("expected a directory of the suite"),
        "{e}"
    );
}

#[test]
fn files_that_are_not_recipe_files_are_refused_without_hanging() {
    let s = suite();
    let k = s.path().join("kernels");
    let recipe = |name: &str, fragments: &str| {
        let f = k.join(name);
        std::fs::write(
            &f,
            format!(
                "description: d\nsource: {{debian: linux-source-7.3}}\nfragments: [{fragments}]\n"
            ),
        )
        .unwrap();
        match load_within(move || Recipe::load(&f)) {
            Ok(_) => panic!("{name}: loaded, expected an error"),
            Err(e) => format!("{e:#}"),
        }
    };

    let fifo = k.join("fragments/fifo.config");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = recipe("fifo.yaml", "fragments/fifo.config");
    assert!(
        e.contains("field `fragments`")
            && e.contains("`fragments/fifo.config` is not a regular file"),
        "{e}"
    );

    std::os::unix::fs::symlink("/etc/passwd", k.join("fragments/passwd.config")).unwrap();
    let e = recipe("passwd.yaml", "fragments/passwd.config");
    assert!(
        e.contains("field `fragments`") && e.contains("leads to /etc/passwd, outside kernels/"),
        "{e}"
    );

    let f = k.join("huge.yaml");
    std::fs::write(&f, format!("description: \"{}\"\n", "x".repeat(300 * 1024))).unwrap();
    let e = format!("{:#}", Recipe::load(&f).unwrap_err());
    assert!(
        e.contains("expected at most 262144 bytes for a kernel recipe"),
        "{e}"
    );

    let e = format!("{:#}", Recipe::load_named(&k, "nope").unwrap_err());
    assert!(
        e.contains("no kernel recipe") && e.contains("nope.yaml") && e.contains("known kernels"),
        "{e}"
    );
}

/// The real suite is none of the above: every case and recipe loads.
#[test]
fn the_real_suite_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let names = runner::kernel::recipe::list(&root.join("kernels")).unwrap();
    for n in &names {
        Recipe::load_named(&root.join("kernels"), n).unwrap();
    }
    let known = runner::kernel::recipe::known(&root.join("kernels")).unwrap();
    let cases = case::load_all(&root.join("cases"), known).unwrap();
    assert!(cases.len() >= 10);
}

/// A `kselftest` step naming a test its kernel's tree does not build is
/// refused when the suite loads, with the case file and the step's field
/// named, before any make (the tree is here once setup has fetched it).
#[test]
fn a_kselftest_the_tree_does_not_build_is_refused_at_load() {
    let mut paths = runner::paths::Paths::of_this_checkout().unwrap();
    runner::setup::source(&paths, "linux-source-7.3", None).expect("the kernel source");
    let s = suite();
    std::fs::create_dir_all(s.path().join("snapshots")).unwrap();
    std::fs::write(
        s.path().join("cases/selftest.yaml"),
        "description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: caps}\n  - {name: b, probe: kselftest, args: {test: guest_memfd_tests}, timeout: 100}\n",
    )
    .unwrap();
    paths.suite = s.path().to_path_buf();
    let e = format!(
        "{:#}",
        runner::suite::Suite::load(paths.clone(), &[], &[]).unwrap_err()
    );
    assert!(
        e.contains(
            "cases/selftest.yaml: field `steps[1].args.test`: no KVM selftest `guest_memfd_tests`"
        ) && e.contains("Makefile.kvm (kernel stock-7.3); near it: guest_memfd_test"),
        "{e}"
    );
    // The real name loads.
    std::fs::write(
        s.path().join("cases/selftest.yaml"),
        "description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: b, probe: kselftest, args: {test: guest_memfd_test}, timeout: 100}\n",
    )
    .unwrap();
    runner::suite::Suite::load(paths, &[], &[]).unwrap();
}
