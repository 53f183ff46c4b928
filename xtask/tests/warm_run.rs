//! Nothing around the boot: a run after a run that changed nothing spawns
//! no cargo (guest binaries), gcc (the compiler's identity in cache keys) or
//! dpkg-query (host packages): what they said last time still holds while
//! the files it came from are unchanged.
//!
//! Each of the three is shadowed on PATH by a wrapper that notes its call in
//! a file and runs the real program, so both runs are real runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn real(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn wrapper(dir: &Path, name: &str, real: &Path, calls: &Path) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn a_warm_run_spawns_no_cargo_gcc_or_dpkg() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = d.path().join("calls");
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| real("cargo"));
    let cargo = wrapper(&bin, "cargo", &cargo, &calls);
    for name in ["gcc", "dpkg-query"] {
        wrapper(&bin, name, &real(name), &calls);
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = || {
        let _ = std::fs::remove_file(&calls);
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", &path)
            .env("CARGO", &cargo)
            .args(["run", "gmem_caps", "--kernel", "stock-7.3"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(&calls).unwrap_or_default()
    };
    // The first run may ask them (the wrappers are new programs to it).
    run();
    let second = run();
    assert_eq!(second, "", "a warm run spawned these");

    // A changed input is seen: a guest source touched means cargo runs
    // again (and decides itself that nothing needs rebuilding).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../initramfs/init/src/main.rs");
    let f = std::fs::File::options().append(true).open(&src).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    let third = run();
    assert!(third.contains("cargo build"), "{third:?}");
    assert!(
        !third.contains("gcc") && !third.contains("dpkg-query"),
        "{third:?}"
    );
}
