//! Setup is one serialized step that nothing races: two `cargo xtask`
//! processes that both need virtme-ng start from a machine where setup
//! still has work to do, and both pass.
//!
//! The state is made for real, not pretended: in a mount namespace of its
//! own, `/usr`, `/etc`, `/var` and Python's prefix are overlays (the host is
//! never touched), and in them udev is removed with dpkg and virtme-ng with
//! pip. Then process A starts `xtask shell --exec` (which needs the host
//! packages, then vng, then boots the kernel through vng); as soon as A holds
//! the setup lock, process B starts the same. A installs udev with apt and
//! virtme-ng with pip; B waits for the lock, finds both there, installs
//! nothing, and boots. Before the fix, B's vng check ran while A's apt was
//! still installing udev and failed with "virtme-ng needs udev".

use std::path::PathBuf;
use std::process::Command;

/// Runs inside the namespace: `$1` scratch dir, `$2` xtask, then the
/// directories to overlay.
const SCRIPT: &str = r#"
set -u
T=$1; XTASK=$2; shift 2
for d in "$@"; do
  mkdir -p "$T/up$d" "$T/work$d"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/up$d,workdir=$T/work$d" "$d" \
    || { echo "OVERLAY_FAILED $d"; exit 90; }
done
dpkg --remove --force-depends udev >"$T/remove.log" 2>&1
python3 -m pip uninstall -y -q virtme-ng >>"$T/remove.log" 2>&1
if dpkg-query -W -f='${db:Status-Abbrev}' udev 2>/dev/null | grep -q '^ii'; then
  echo "STATE udev is still installed"; exit 91
fi
if vng --version >/dev/null 2>&1; then echo "STATE vng still runs"; exit 91; fi
echo "STATE no udev, no virtme-ng"
run() {
  GMEMTEST_OUT="$T/out-$1" "$XTASK" shell --kernel stock-7.3 \
    --exec "echo guest-$1-\$((6*7))" >"$T/$1.log" 2>&1
}
run a & a=$!
# B starts while A holds the setup lock (A is installing).
held=no
for _ in $(seq 600); do
  if ! flock -n "$GMEMTEST_SETUP_LOCK" true; then held=yes; break; fi
  kill -0 "$a" 2>/dev/null || break
  sleep 0.1
done
echo "LOCK_HELD_BY_A_WHEN_B_STARTED $held"
run b & b=$!
wait "$a"; echo "RC_A $?"
wait "$b"; echo "RC_B $?"
dpkg-query -W -f='AFTER udev ${db:Status-Abbrev}\n' udev
vng --version 2>&1 | sed 's/^/AFTER vng /'
"#;

fn which(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && p.starts_with('/')).then(|| PathBuf::from(p))
}

/// What must be an overlay for the removal and the reinstall to stay in the
/// namespace: the system's directories, Python's prefix (pip's packages and
/// scripts) and the directories python3 and vng are found in (pyenv's shims).
fn overlay_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr", "/etc", "/var"].iter().map(PathBuf::from).collect();
    let prefix = Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .expect("python3");
    dirs.push(PathBuf::from(
        String::from_utf8_lossy(&prefix.stdout).trim(),
    ));
    for bin in ["python3", "vng"] {
        if let Some(p) = which(bin) {
            let p = p.canonicalize().unwrap_or(p);
            dirs.push(p.parent().unwrap().to_path_buf());
        }
    }
    dirs.sort();
    // A directory inside one already overlaid is covered by it.
    let mut kept: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if d.is_dir() && !kept.iter().any(|k| d.starts_with(k)) {
            kept.push(d);
        }
    }
    kept
}

/// Root, `unshare` and overlayfs: what making the state needs. CI has them
/// (it runs as root); elsewhere the test says why it did not run.
fn can_make_the_state() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: cannot mount overlays".into());
    }
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Err("`unshare -m` does not work here".into());
    }
    Ok(())
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn two_processes_that_need_vng_set_up_once_and_both_pass() {
    if let Err(why) = can_make_the_state() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let t = tempfile::Builder::new()
        .prefix("gmemtest-setup-race-")
        .tempdir_in("/tmp")
        .unwrap();
    let lock = t.path().join("setup.lock");
    let host_udev = udev_status();
    let out = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "bash",
            "-c",
            SCRIPT,
            "race",
        ])
        .arg(t.path())
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(overlay_dirs())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // The race's own lock: the host's runs never wait on this test.
        .env("GMEMTEST_SETUP_LOCK", &lock)
        .env("INSTA_UPDATE", "no")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let log = |n: &str| std::fs::read_to_string(t.path().join(n)).unwrap_or_default();
    let (a, b) = (log("a.log"), log("b.log"));
    let all = format!(
        "namespace said:\n{said}{}\n--- remove.log\n{}\n--- A\n{a}\n--- B\n{b}",
        String::from_utf8_lossy(&out.stderr),
        log("remove.log")
    );
    // With --nocapture: the whole story.
    eprintln!("{all}");
    assert!(
        said.contains("STATE no udev, no virtme-ng"),
        "the state was not made:\n{all}"
    );
    assert!(
        said.contains("LOCK_HELD_BY_A_WHEN_B_STARTED yes"),
        "B must start while A sets up:\n{all}"
    );
    assert!(
        said.contains("RC_A 0") && said.contains("RC_B 0"),
        "both must pass:\n{all}"
    );
    // Each ran its command in the guest (the shell computed 42).
    assert!(a.contains("guest-a-42"), "A's guest:\n{all}");
    assert!(b.contains("guest-b-42"), "B's guest:\n{all}");
    // One of them did the work, once; the other waited for it.
    let both = format!("{a}{b}");
    assert_eq!(
        count(&both, "setup: installing udev"),
        1,
        "udev installed once:\n{all}"
    );
    assert_eq!(
        count(&both, "setup: installing virtme-ng"),
        1,
        "virtme-ng installed once:\n{all}"
    );
    assert!(
        a.contains("setup: installing udev") && b.contains("waiting for another gmemtest run"),
        "A installs, B waits:\n{all}"
    );
    assert!(said.contains("AFTER udev ii"), "udev is installed:\n{all}");
    assert!(
        said.contains("AFTER vng virtme-ng"),
        "vng runs afterwards:\n{all}"
    );
    // Nothing of it reached the host.
    assert_eq!(udev_status(), host_udev, "the host's udev is untouched");
}

/// dpkg's word on udev on the host (`ii` when installed).
fn udev_status() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", "udev"])
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
