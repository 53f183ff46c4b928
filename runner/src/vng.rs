//! virtme-ng, driven through its command line (`std::process`).
//!
//! [`Vng`] is a typed view of the `vng` options gmemtest uses: the kernel to
//! run, one command to execute or an interactive shell, memory, CPUs, extra
//! kernel arguments, read-only and read-write directories, `--disable-kvm`
//! where KVM acceleration does not work, extra QEMU options, and
//! `--dry-run` to see the QEMU command vng would start. [`check`] finds the
//! `vng` binary, checks its version and that udev (without which vng exits
//! 255 and prints nothing) is installed; [`crate::setup::vng`] installs
//! virtme-ng from PyPI when it is not.
//!
//! The guest sees the host's root filesystem read-only (9p), with tmpfs
//! overlays on /etc, /usr, /var, /tmp, ... so it can write without touching
//! the host, and runs as the user we ask for.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::accel::Accel;

/// The virtme-ng release setup installs, the one gmemtest is tested with.
pub const PINNED_VERSION: &str = "1.42";

/// The oldest vng whose command line is the one built here.
pub const MIN_VERSION: (u32, u32) = (1, 42);

/// Where the kernel finds vng's 9p root (its mount tag).
pub const ROOT_ARG: &str = "root=/dev/root";

/// One `vng --run` invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vng {
    /// The kernel image (bzImage) to boot.
    pub kernel: PathBuf,
    /// Run this shell command in the guest and power off when it ends (vng's
    /// exit status is the command's); `None` gives an interactive shell.
    pub exec: Option<String>,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Extra kernel command-line arguments, one `--append` each.
    pub append: Vec<String>,
    /// Host directories the guest may only read (`guest=host`, or the host path).
    pub rodirs: Vec<String>,
    /// Host directories the guest may write (`guest=host`, or the host path).
    pub rwdirs: Vec<String>,
    /// How the guest's CPU runs: with TCG, vng is told `--disable-kvm`.
    pub accel: Option<Accel>,
    /// The guest user (`root` for probes: /dev/kvm, /dev/mem, pagemap).
    pub user: Option<String>,
    /// A program the interactive shell runs instead of the user's shell.
    pub shell: Option<PathBuf>,
    /// The guest's working directory.
    pub cwd: Option<PathBuf>,
    /// The kernel log on the console (vng's stderr when executing a command).
    pub verbose: bool,
    /// Extra QEMU arguments (a result port, a monitor socket).
    pub qemu_opts: Vec<String>,
    /// Print the QEMU command instead of running it.
    pub dry_run: bool,
}

impl Vng {
    /// vng's arguments, in the order vng documents them.
    pub fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut a: Vec<String> = vec!["--run".into(), path(&self.kernel)];
        // The host's root over 9p, mount tag /dev/root, named on the kernel
        // command line: vng relies on a kernel that mounts a nodev root with
        // no `root=`, and 7.x passes it an empty source ("9p: Bad value for
        // 'source'", then no init). 9p always (not virtiofs where virtiofsd
        // happens to exist), so the guest is the same on every host.
        a.push("--force-9p".into());
        a.push(format!("--append={ROOT_ARG}"));
        if self.dry_run {
            a.push("--dry-run".into());
        }
        if self.accel == Some(Accel::Tcg) {
            a.push("--disable-kvm".into());
        }
        if self.verbose {
            a.push("--verbose".into());
        }
        if let Some(u) = &self.user {
            a.push("--user".into());
            a.push(u.clone());
        }
        if let Some(s) = &self.shell {
            a.push("--shell".into());
            a.push(path(s));
        }
        if let Some(d) = &self.cwd {
            a.push("--cwd".into());
            a.push(path(d));
        }
        if self.memory_mb > 0 {
            a.push("--memory".into());
            a.push(format!("{}M", self.memory_mb));
        }
        if self.cpus > 0 {
            a.push("--cpus".into());
            a.push(self.cpus.to_string());
        }
        for d in &self.rodirs {
            a.push(format!("--rodir={d}"));
        }
        for d in &self.rwdirs {
            a.push(format!("--rwdir={d}"));
        }
        for s in &self.append {
            // `=`: an argument that starts with `-` is not taken for an option.
            a.push(format!("--append={s}"));
        }
        if !self.qemu_opts.is_empty() {
            a.push(format!("--qemu-opts={}", self.qemu_opts.join(" ")));
        }
        if let Some(e) = &self.exec {
            a.push("--exec".into());
            a.push(e.clone());
        }
        a
    }

    /// Refuses what vng would hand to a shell unquoted. vng runs virtme-run
    /// as one `sh -c` string: `--qemu-opts` goes in as it is and every
    /// `--append` through `shlex.split`, so a quote, `$`, `;` or backtick in
    /// a socket path (a strange `TMPDIR`) or a kernel parameter would be
    /// the host's shell's to run. Everything we pass is plain words.
    pub fn check_plain(&self) -> Result<()> {
        let plain = |c: char| c.is_ascii_alphanumeric() || " _-.,:=/+@%".contains(c);
        let fields = self
            .append
            .iter()
            .map(|a| ("--append", a.as_str()))
            .chain(self.qemu_opts.iter().map(|o| ("--qemu-opts", o.as_str())));
        for (flag, value) in fields {
            if let Some(c) = value.chars().find(|c| !plain(*c)) {
                bail!(
                    "vng {flag} `{}` holds `{}`: vng passes it through a shell, so only letters, digits, spaces and `_-.,:=/+@%` are allowed (for a socket path: set TMPDIR to a plain path)",
                    value.escape_debug(),
                    c.escape_debug()
                );
            }
        }
        Ok(())
    }

    /// The command, ready to spawn (`check` found `bin`).
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.args(self.args());
        c
    }

    /// A shell-quoted command line, for logs and reproduce hints.
    pub fn shell_line(&self, bin: &Path) -> String {
        crate::cmdline::command_line(bin, &self.args())
    }

    /// The QEMU command line vng would run (`--dry-run`).
    pub fn qemu_command(&self, bin: &Path) -> Result<String> {
        self.check_plain()?;
        let mut dry = self.clone();
        dry.dry_run = true;
        let out = dry
            .command(bin)
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().rev().find(|l| l.contains("qemu-system")) {
            Some(l) if out.status.success() => Ok(l.trim().to_string()),
            _ => bail!(
                "`{}` did not print a QEMU command ({}):\n{}",
                dry.shell_line(bin),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}

/// A `vng` that is there and usable.
#[derive(Debug, Clone)]
pub struct VngInfo {
    pub bin: PathBuf,
    pub version: (u32, u32),
}

/// Parses `vng --version` output (`virtme-ng 1.42`, maybe with a suffix).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let mut it = word
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Where pip puts scripts for this Python: the `vng` entry point may be there
/// without being on PATH.
fn python_script_dirs() -> Vec<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig,os; print(sysconfig.get_path('scripts')); print(sysconfig.get_path('scripts', os.name + '_user'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(PathBuf::from)
            .collect(),
        _ => vec![],
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Finds `vng` (PATH, then Python's script directories).
pub fn find() -> Option<PathBuf> {
    on_path("vng").or_else(|| {
        python_script_dirs()
            .into_iter()
            .map(|d| d.join("vng"))
            .find(|f| f.is_file())
    })
}

/// vng, its version and udev, or an error that says what to do. A success
/// is remembered for the process: a suite checks once, not once per case.
pub fn check() -> Result<VngInfo> {
    static FOUND: std::sync::OnceLock<VngInfo> = std::sync::OnceLock::new();
    if let Some(info) = FOUND.get() {
        return Ok(info.clone());
    }
    let udev = on_path("udevadm").is_some() || Path::new("/usr/bin/udevadm").exists();
    let info = check_at(find(), udev)?;
    Ok(FOUND.get_or_init(|| info).clone())
}

/// [`check`] for a given `vng` (or none) and whether udev is there.
pub fn check_at(bin: Option<PathBuf>, udev: bool) -> Result<VngInfo> {
    let bin = bin.with_context(|| {
        format!(
            "virtme-ng (`vng`) is not installed: run `cargo xtask setup` (it runs `python3 -m pip install virtme-ng=={PINNED_VERSION}`)"
        )
    })?;
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", bin.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = parse_version(&text).with_context(|| {
        format!(
            "{} --version printed no version: {}",
            bin.display(),
            text.trim()
        )
    })?;
    if version < MIN_VERSION {
        bail!(
            "{} is virtme-ng {}.{}; gmemtest needs {}.{} or newer: run `cargo xtask setup`",
            bin.display(),
            version.0,
            version.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    if !udev {
        bail!("virtme-ng needs udev on the host (without it vng exits 255 and prints nothing): run `cargo xtask setup`");
    }
    Ok(VngInfo { bin, version })
}

/// Installs virtme-ng from PyPI: system-wide as root, for the user
/// otherwise (pip needs no root for that). Only through
/// [`crate::setup::vng`], which serializes it and checks the result.
pub(crate) fn install() -> Result<()> {
    let root = crate::setup::is_root();
    let spec = format!("virtme-ng=={PINNED_VERSION}");
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    if !root {
        args.push("--user");
    }
    args.push(&spec);
    eprintln!("setup: installing {spec} with `python3 {}`", args.join(" "));
    let out = Command::new("python3")
        .args(&args)
        .output()
        .context("cannot run python3 -m pip (install python3-pip)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`python3 {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            err.trim()
        );
    }
    eprintln!("setup: installed {spec}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_run_is_an_exec_with_its_resources() {
        let v = Vng {
            kernel: "/k/bzImage".into(),
            exec: Some("/x/init /l/plan.json".into()),
            memory_mb: 1024,
            cpus: 2,
            append: vec!["panic=-1".into()],
            accel: Some(Accel::Tcg),
            user: Some("root".into()),
            verbose: true,
            qemu_opts: vec!["-serial".into(), "chardev:results".into()],
            ..Default::default()
        };
        assert_eq!(
            v.args(),
            [
                "--run",
                "/k/bzImage",
                "--force-9p",
                "--append=root=/dev/root",
                "--disable-kvm",
                "--verbose",
                "--user",
                "root",
                "--memory",
                "1024M",
                "--cpus",
                "2",
                "--append=panic=-1",
                "--qemu-opts=-serial chardev:results",
                "--exec",
                "/x/init /l/plan.json",
            ]
        );
    }

    #[test]
    fn kvm_is_not_disabled_where_it_works_and_a_shell_has_no_exec() {
        let v = Vng {
            kernel: "/k".into(),
            accel: Some(Accel::Kvm),
            rodirs: vec!["/opt/probes".into()],
            rwdirs: vec!["/out=/tmp/out".into()],
            shell: Some("/s/gmemtest-shell".into()),
            dry_run: true,
            ..Default::default()
        };
        let w = v.args();
        assert!(!w.contains(&"--disable-kvm".to_string()), "{w:?}");
        assert!(!w.contains(&"--exec".to_string()), "{w:?}");
        assert!(w.contains(&"--dry-run".to_string()), "{w:?}");
        assert!(w.contains(&"--rodir=/opt/probes".to_string()), "{w:?}");
        assert!(w.contains(&"--rwdir=/out=/tmp/out".to_string()), "{w:?}");
        assert!(w.contains(&"/s/gmemtest-shell".to_string()), "{w:?}");
    }

    #[test]
    fn versions_are_read_from_what_vng_prints() {
        assert_eq!(parse_version("virtme-ng 1.42\n"), Some((1, 42)));
        assert_eq!(parse_version("vng 1.38+git20250101"), Some((1, 38)));
        assert_eq!(parse_version("virtme-ng 2.0.1"), Some((2, 0)));
        assert_eq!(parse_version("virtme-ng unknown"), None);
        assert!((1, 9) < MIN_VERSION && (1, 42) >= MIN_VERSION && (2, 0) > MIN_VERSION);
    }

    /// A stand-in `vng` that prints `version` for `--version`.
    fn fake_vng(dir: &Path, version: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("vng");
        std::fs::write(&p, format!("#!/bin/sh\necho 'virtme-ng {version}'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn missing_or_old_vng_and_missing_udev_say_what_to_do() {
        let e = format!("{:#}", check_at(None, true).unwrap_err());
        assert!(
            e.contains("not installed") && e.contains("cargo xtask setup"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let old = fake_vng(d.path(), "1.10");
        let e = format!("{:#}", check_at(Some(old), true).unwrap_err());
        assert!(
            e.contains("virtme-ng 1.10") && e.contains("needs 1.42 or newer"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let good = fake_vng(d.path(), "1.42");
        let e = format!("{:#}", check_at(Some(good.clone()), false).unwrap_err());
        assert!(e.contains("needs udev"), "{e}");
        let info = check_at(Some(good), true).unwrap();
        assert_eq!(info.version, (1, 42));
    }

    #[test]
    fn what_vng_hands_a_shell_is_plain() {
        let mut v = Vng {
            kernel: "/k".into(),
            append: vec!["panic=-1 oops=panic".into()],
            qemu_opts: vec!["-chardev".into(), "socket,id=r,path=/tmp/x/r.sock".into()],
            ..Default::default()
        };
        v.check_plain().unwrap();
        for bad in ["x;touch /tmp/pwned", "$(id)", "a`b`", "'", "a\nb"] {
            v.append = vec![bad.into()];
            let e = v.check_plain().unwrap_err().to_string();
            assert!(
                e.contains("--append") && e.contains("through a shell"),
                "{e}"
            );
        }
        v.append.clear();
        v.qemu_opts = vec!["path=/tmp/a b;c".into()];
        let e = v.check_plain().unwrap_err().to_string();
        assert!(e.contains("--qemu-opts") && e.contains("`;`"), "{e}");
    }

    #[test]
    fn shell_line_quotes_arguments() {
        let v = Vng {
            kernel: "/k".into(),
            exec: Some("echo hi".into()),
            ..Default::default()
        };
        assert_eq!(
            v.shell_line(Path::new("/usr/bin/vng")),
            "/usr/bin/vng --run /k --force-9p --append=root=/dev/root --exec 'echo hi'"
        );
    }
}
