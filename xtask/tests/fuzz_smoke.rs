//! `cargo xtask fuzz` end to end, on a fixed seed and one thread (so the
//! program and its order are the seed's alone: nothing depends on luck):
//! on the RFC port the stress run hits the /proc/self/mem oops, the fuzzer
//! minimizes it into a case of a few operations that loads as any case,
//! runs it on the other variants (it passes on the reviewed series), and a
//! second run of the same seed knows the finding and reports nothing new.

use std::path::Path;
use std::process::{Command, Output};

fn fuzz(suite: &Path, out: &Path, found: &Path, corpus: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_SUITE", suite)
        .env("GMEMTEST_OUT", out)
        .args([
            "fuzz",
            "--kernel",
            "nodirectmap-rfc",
            "--seeds",
            "1",
            "--seed",
            SEED,
        ])
        .args([
            "--threads",
            "1",
            "--seconds",
            "3",
            "--pages",
            "4",
            "--jobs",
            "2",
        ])
        .arg("--out")
        .arg(found)
        .arg("--corpus")
        .arg(corpus)
        .output()
        .unwrap()
}

/// A seed whose one-thread program reads a NO_DIRECT_MAP page through
/// /proc/self/mem within its first operations.
const SEED: &str = "3";

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_proc_self_mem_oops_is_found_minimized_and_known_the_second_time() {
    let d = tempfile::tempdir().unwrap();
    let (suite, out, found, corpus) = (
        d.path().join("suite"),
        d.path().join("out"),
        d.path().join("found"),
        d.path().join("corpus"),
    );
    std::fs::create_dir_all(suite.join("cases")).unwrap();

    let o = fuzz(&suite, &out, &found, &corpus);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "new findings exit 3\n{t}");
    let title = "BUG: unable to handle kernel paging request in __access_remote_vm";
    assert!(t.contains(&format!("NEW  {title}")), "{t}");
    let case = found.join("found_unable_to_handle_kernel_paging_request_in_access_remote_vm.yaml");
    let yaml = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}: {t}"));
    // The minimized program: a NO_DIRECT_MAP file, its mapping, the GUP read.
    let ops: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- \"t"))
        .collect();
    assert!((2..=10).contains(&ops.len()), "{yaml}");
    assert!(
        yaml.contains("NO_DIRECT_MAP") && yaml.contains("proc_self_mem"),
        "{yaml}"
    );
    assert!(yaml.contains("#   cargo xtask run found_unable_to_handle_kernel_paging_request_in_access_remote_vm --kernel nodirectmap-rfc"), "{yaml}");
    // Its crash report, in the comments, is the console's.
    assert!(
        yaml.contains("# The crash") && yaml.contains("__access_remote_vm"),
        "{yaml}"
    );
    // It passes where GUP is refused: the reviewed series is its kernel.
    assert!(yaml.contains("kernels: [nodirectmap-reviewed"), "{yaml}");
    assert!(t.contains("passes on: nodirectmap-reviewed"), "{t}");
    // The corpus has it.
    assert!(corpus
        .join(
            "nodirectmap-rfc/found_unable_to_handle_kernel_paging_request_in_access_remote_vm.yaml"
        )
        .exists());

    // The same seed again: the finding is known, nothing new, exit 0.
    let o = fuzz(&suite, &out, &found, &corpus);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("known {title}")) && !t.contains("NEW "),
        "{t}"
    );
}
