//! The shared kernel cache under concurrent runs and damage.
//!
//! A cache of the test's own, whose `kernels/` starts empty and whose
//! sources, build trees and ccache are the user's (so a build is make with
//! next to nothing to do): two `cargo xtask test` at once build the kernel
//! once and both pass; an entry whose bzImage is then truncated is found
//! damaged and rebuilt, and the run passes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn xtask(cache: &Path, out: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_CACHE", cache)
        .env(
            "GMEMTEST_OUT",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/gmemtest/tests/cache")
                .join(out),
        )
        .env("INSTA_UPDATE", "no")
        .args(["test", "--case", "gmem_caps", "--kernel", "stock-7.3"]);
    c
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("kernels"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("stock-7.3-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_runs_at_once_build_once_and_a_damaged_entry_is_rebuilt() {
    let real = runner::paths::cache_dir().unwrap();
    assert!(
        real.join("build/stock-7.3/src/out").is_dir(),
        "the stock kernel's build tree is missing: build it first (cargo xtask build)"
    );
    let cache = tempfile::tempdir_in(&real).unwrap();
    for d in ["sources", "build", "ccache"] {
        std::os::unix::fs::symlink(real.join(d), cache.path().join(d)).unwrap();
    }

    let a = xtask(cache.path(), "a").spawn_output();
    let b = xtask(cache.path(), "b").spawn_output();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let all = format!("{}\n{}", a.1, b.1);
    assert!(a.0 && b.0, "both runs must pass:\n{all}");
    let built = all.matches("kernel stock-7.3: built in").count();
    let cached = all.matches("kernel stock-7.3: cached").count();
    assert_eq!((built, cached), (1, 1), "built once, found once:\n{all}");
    let e = entries(cache.path());
    assert_eq!(e.len(), 1, "{e:?}");
    // No temporary directory of a build left beside the entry.
    let stray: Vec<_> = std::fs::read_dir(cache.path().join("kernels"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("stock-7.3-") && !n.ends_with(".lock"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // Damage: the image cut short, as a full disk or a crash would leave it.
    let image = e[0].join("bzImage");
    let len = std::fs::metadata(&image).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let c = xtask(cache.path(), "c").output().unwrap();
    let text = String::from_utf8_lossy(&c.stderr).into_owned();
    assert!(c.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "is damaged (bzImage: {} bytes, {len} expected); rebuilding it",
            len / 2
        )),
        "{text}"
    );
    assert!(text.contains("kernel stock-7.3: built in"), "{text}");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), len);
}

trait SpawnOutput {
    /// Runs the command on a thread: (success, stdout and stderr).
    fn spawn_output(self) -> std::thread::JoinHandle<(bool, String)>;
}

impl SpawnOutput for Command {
    fn spawn_output(mut self) -> std::thread::JoinHandle<(bool, String)> {
        std::thread::spawn(move || {
            let o = self.output().unwrap();
            (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        })
    }
}
