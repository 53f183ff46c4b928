//! `cargo xtask shell`: a built kernel booted through virtme-ng on the
//! host's root filesystem, as root, with the probe binaries on the PATH and
//! nested KVM (TCG `-cpu max` emulates SVM) so /dev/kvm works in the guest.
//! Interactive, or one command whose exit status is returned.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use crate::accel::Accel;
use crate::boot;
use crate::cmdline::quote;
use crate::kernel::BuiltKernel;
use crate::pack::GuestBinaries;
use crate::paths::Paths;
use crate::vng::{Vng, VngInfo};

/// What the guest should look like.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// Run this command and power off; `None`: an interactive shell.
    pub exec: Option<String>,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Extra kernel command line.
    pub append: String,
}

/// The directory put first on the guest's PATH: the probe binary and
/// nothing else of the guest build.
pub fn probe_dir(paths: &Paths, bins: &GuestBinaries) -> Result<PathBuf> {
    let dir = paths.out.join("shell").join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dest = dir.join("gmem-probe");
    // A copy rather than a link: the guest build may be rebuilt under us.
    let tmp = dir.join(".gmem-probe.new");
    std::fs::copy(&bins.probe, &tmp)
        .with_context(|| format!("cannot copy {}", bins.probe.display()))?;
    std::fs::rename(&tmp, &dest)?;
    Ok(dir)
}

/// The wrapper the interactive shell runs: the user's environment, the
/// probes first on the PATH, then an interactive shell.
fn shell_wrapper(paths: &Paths, bin_dir: &Path) -> Result<PathBuf> {
    let path = paths.out.join("shell").join("gmemtest-shell");
    let text = format!(
        "#!/bin/sh\n# Written by `cargo xtask shell`: the guest's login shell.\n\
         export PATH={}:\"$PATH\"\n\
         echo 'gmemtest: probes on the PATH (gmem-probe PROBE ARGS-JSON); `exit` powers off'\n\
         if command -v bash >/dev/null; then exec bash \"$@\"; fi\nexec sh \"$@\"\n",
        quote(&bin_dir.to_string_lossy())
    );
    crate::paths::write_atomic(&path, text.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The vng invocation of a shell on `kernel`.
pub fn vng_for(
    paths: &Paths,
    kernel: &BuiltKernel,
    bins: &GuestBinaries,
    accel: Accel,
    opts: &ShellOptions,
) -> Result<Vng> {
    let bin_dir = probe_dir(paths, bins)?;
    let mut v = Vng {
        kernel: kernel.bzimage.clone(),
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
        append: vec![boot::guest_cmdline(&opts.append)],
        accel: Some(accel),
        user: Some("root".into()),
        ..Default::default()
    };
    match &opts.exec {
        Some(cmd) => {
            v.exec = Some(format!(
                "export PATH={}:\"$PATH\"; {cmd}",
                quote(&bin_dir.to_string_lossy())
            ))
        }
        None => v.shell = Some(shell_wrapper(paths, &bin_dir)?),
    }
    Ok(v)
}

/// Runs the shell on this terminal to its end; returns vng's exit status
/// (with `exec`, the command's).
pub async fn run(vng: &VngInfo, v: &Vng) -> Result<i32> {
    v.check_plain()?;
    let mut cmd = tokio::process::Command::from(v.command(&vng.bin));
    cmd.kill_on_drop(true);
    // A command's output is passed on through pipes: QEMU opens vng's
    // /proc/self/fd/1 and 2 anew, which truncates them when they are files.
    let piped = v.exec.is_some();
    if piped {
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    // SAFETY: prctl is async-signal-safe: vng dies with the runner.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", v.shell_line(&vng.bin)))?;
    let copies = match (child.stdout.take(), child.stderr.take()) {
        (Some(mut out), Some(mut err)) => Some(tokio::spawn(async move {
            let (mut o, mut e) = (tokio::io::stdout(), tokio::io::stderr());
            let _ = tokio::join!(
                tokio::io::copy(&mut out, &mut o),
                tokio::io::copy(&mut err, &mut e)
            );
        })),
        _ => None,
    };
    let status = child.wait().await?;
    if let Some(c) = copies {
        let _ = c.await;
    }
    Ok(status.code().unwrap_or(128 + 9))
}
