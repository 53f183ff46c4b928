//! Saved VMs: each machine (kernel, initramfs, memory, CPUs, command line,
//! QEMU) is booted once to the point where init waits for its plan, and
//! saved; every case then starts from that state instead of booting. A
//! restore costs a tenth of a second where a boot under TCG costs one or
//! more (ten with the debug flavor), and every case still runs on a kernel
//! nothing else has run on.
//!
//! Why a restored kernel is as fresh as a booted one: the state is taken
//! when init has mounted its filesystems and opened the result port, before
//! it has read a plan, so no probe has run, no guest_memfd exists and no
//! page of the direct map has been split or unmapped by a case. The kernel's
//! boot-time work (its own splits of the direct map, the DirectMap counters)
//! is in the state exactly as a boot leaves it, and its console is replayed
//! in front of the restored run's. What a restore would share across runs,
//! the random generator's state, init reseeds from fresh bytes the runner
//! sends with the plan ([`gmem_protocol::Handoff`]).
//!
//! An entry lives in `CACHE/vms/KEY/`: QEMU's migration stream (`state`),
//! the initramfs it was booted with, the boot's console, and `meta.json`
//! with the size and SHA-256 of each (checked like a kernel's, hashed again
//! only when a file's identity changed). The key hashes everything QEMU is
//! given: its arguments (socket paths aside), the initramfs's bytes and the
//! identity of every file it reads (kernel, firmware, QEMU itself), so a
//! rebuilt kernel, a changed probe or another QEMU makes a new entry.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boot::{self, Restore, SaveOnTheWay, SavedBoot, VmConfig};

/// Bumped when what an entry holds, or how it is made, changes.
const FORMAT: &str = "gmemtest saved VM 1";

/// The files of an entry, all checked on use.
const FILES: [&str; 3] = ["state", "initramfs.cpio.gz", "console.log"];

/// How many entries the cache keeps (the most recently used): each is a
/// few tens of MB (the guest's pages that are not zero).
const KEEP: usize = 16;

/// How long the boot to init's wait may take before it is taken for hung
/// (a debug kernel boots in about ten seconds here).
pub const BOOT_DEADLINE: Duration = Duration::from_secs(240);

/// A saved VM, ready to be restored.
#[derive(Debug, Clone)]
pub struct SavedVm {
    /// Its cache entry.
    pub dir: PathBuf,
    pub key: String,
    /// The console of its boot, up to the save.
    pub console: String,
}

impl SavedVm {
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio.gz")
    }

    /// `cfg`, made to start from this saved VM and hand init `plan`.
    pub fn restore_config(&self, cfg: &VmConfig, plan: &gmem_protocol::Plan) -> VmConfig {
        let mut c = cfg.clone();
        c.initramfs = self.initramfs();
        c.save = None;
        c.restore = Some(Restore {
            state: self.state(),
            console: self.console.clone(),
            handoff: handoff_line(plan),
        });
        c
    }
}

/// Random bytes from the host's generator (getrandom blocks only until the
/// host's pool is ready, long before a test runs).
fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n > 0 {
            done += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// The initramfs a saved VM boots with (no plan, so init waits for one):
/// its gzip members in order, and the SHA-256 of their concatenation.
pub struct Image<'a> {
    pub parts: Vec<&'a [u8]>,
    pub digest: [u8; 32],
}

impl<'a> Image<'a> {
    pub fn of(parts: Vec<&'a [u8]>) -> Image<'a> {
        let mut h = Sha256::new();
        for p in &parts {
            h.update(p);
        }
        Image {
            parts,
            digest: h.finalize().into(),
        }
    }
}

/// The key of the VM `cfg` boots with `image`: what QEMU is given and the
/// identity of each file it reads.
pub fn key(cfg: &VmConfig, image: &Image) -> String {
    let mut base = cfg.clone();
    base.restore = None;
    base.save = None;
    base.interactive = None;
    base.gdb = None;
    base.result_socket = "RESULTS".into();
    base.monitor_socket = "MONITOR".into();
    base.initramfs = "INITRAMFS".into();
    let (program, args) = boot::launch_command(&base);
    let program = crate::memo::which(&program.to_string_lossy()).unwrap_or(program);
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update(serde_json::to_vec(&args).expect("strings serialize"));
    h.update(image.digest);
    for f in [program, cfg.kernel.clone(), PathBuf::from(boot::QBOOT)] {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update(serde_json::to_vec(&crate::memo::identity(&f)).expect("identity serializes"));
    }
    crate::kernel::build::hex(&h.finalize())[..20].to_string()
}

/// Where the entries live.
fn vms_dir() -> Result<PathBuf> {
    Ok(crate::paths::cache_dir()?.join("vms"))
}

/// The checked entry of `key`, if the cache has one.
pub fn find(key: &str) -> Result<Option<SavedVm>> {
    Ok(usable(&vms_dir()?.join(key), key))
}

/// What [`begin`] found.
pub enum Begun {
    /// The entry is there (another runner saved it meanwhile).
    Found(SavedVm),
    /// This runner saves it: boot with [`Saving::config`], then
    /// [`Saving::publish`]. Others wait until it is published or dropped.
    Saving(Saving),
}

/// An entry being made: its lock held, its files in a directory of its own.
pub struct Saving {
    key: String,
    dir: PathBuf,
    tmp: tempfile::TempDir,
    /// Held until published or dropped.
    _lock: crate::paths::FileLock,
}

/// Takes the lock of `key` (waiting for a runner that holds it) and gets
/// ready to save it, unless it was saved meanwhile.
pub async fn begin(key: &str, image: &Image<'_>) -> Result<Begun> {
    let vms = vms_dir()?;
    std::fs::create_dir_all(&vms).with_context(|| format!("cannot create {}", vms.display()))?;
    let lock_path = vms.join(format!("{key}.lock"));
    let lock = tokio::task::spawn_blocking(move || crate::paths::lock(&lock_path))
        .await
        .context("waiting for the saved VM's lock")??;
    let dir = vms.join(key);
    if let Some(v) = usable(&dir, key) {
        return Ok(Begun::Found(v));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".saving-")
        .tempdir_in(&vms)
        .with_context(|| format!("cannot create a directory in {}", vms.display()))?;
    let file = tmp.path().join("initramfs.cpio.gz");
    std::fs::write(&file, image.parts.concat())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(Begun::Saving(Saving {
        key: key.to_string(),
        dir,
        tmp,
        _lock: lock,
    }))
}

impl Saving {
    /// `cfg`, booting the entry's initramfs and saved where init waits,
    /// then handed `plan`.
    pub fn config(&self, cfg: &VmConfig, plan: &gmem_protocol::Plan) -> VmConfig {
        let mut c = cfg.clone();
        c.restore = None;
        c.initramfs = self.tmp.path().join("initramfs.cpio.gz");
        c.save = Some(SaveOnTheWay {
            state: self.tmp.path().join("state"),
            handoff: handoff_line(plan),
        });
        c
    }

    /// Makes the saved state the cache entry (the run that saved it may
    /// still be going: QEMU has read the initramfs and written the state),
    /// and lets the runners waiting for it go on.
    pub fn publish(self, cfg: &VmConfig, saved: &SavedBoot) -> Result<SavedVm> {
        std::fs::write(self.tmp.path().join("console.log"), &saved.console)?;
        let meta = serde_json::json!({
            "format": FORMAT,
            "kernel": cfg.kernel,
            "memory_mb": cfg.memory_mb,
            "cpus": cfg.cpus,
            "cmdline": boot::kernel_cmdline(&cfg.extra_cmdline),
            "boot_ms": saved.boot.as_millis() as u64,
            "save_ms": saved.save.as_millis() as u64,
            "files": crate::kernel::build::file_sums(self.tmp.path(), &FILES)?,
        });
        crate::kernel::build::publish(self.tmp, &self.dir, &meta)?;
        if let Ok(vms) = vms_dir() {
            prune(&vms, KEEP);
        }
        usable(&self.dir, &self.key).with_context(|| {
            format!(
                "the saved VM {} fails its check right after it was made",
                self.dir.display()
            )
        })
    }
}

/// The line that hands init `plan`, with fresh entropy.
fn handoff_line(plan: &gmem_protocol::Plan) -> String {
    let mut entropy = [0u8; 32];
    fill_random(&mut entropy);
    gmem_protocol::Handoff {
        plan: plan.clone(),
        entropy: crate::kernel::build::hex(&entropy),
    }
    .to_line()
}

/// The saved VM for `cfg` with `image`: from the cache when a checked
/// entry is there, or booted and saved now with a plan of no case (one
/// runner at a time per key; another waits and takes its entry). `label`
/// says whose it is in the progress line.
pub async fn obtain(cfg: &VmConfig, image: &Image<'_>, label: &str) -> Result<SavedVm> {
    let key = key(cfg, image);
    if let Some(v) = find(&key)? {
        return Ok(v);
    }
    let saving = match begin(&key, image).await? {
        Begun::Found(v) => return Ok(v),
        Begun::Saving(s) => s,
    };
    eprintln!("      saving a VM of {label} (booted once; every case starts from it)");
    let sock_dir = tempfile::Builder::new().prefix("gmemtest-").tempdir()?;
    let mut c = saving.config(cfg, &gmem_protocol::Plan::batch(vec![]));
    c.interactive = None;
    c.gdb = None;
    c.silence = None;
    c.deadline = BOOT_DEADLINE;
    c.result_socket = sock_dir.path().join("results.sock");
    c.monitor_socket = sock_dir.path().join("monitor.sock");
    let mut saved = None;
    let res = boot::boot_saving(&c, |_| {}, |s| saved = Some(s))
        .await
        .with_context(|| format!("saving a VM of {label}"))?;
    let Some(saved) = saved else {
        let tail: Vec<&str> = res.console.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!(
            "saving a VM of {label}: init never asked for its plan ({:?}); the console ended with:\n{}",
            res.end,
            tail.join("\n")
        );
    };
    saving.publish(cfg, &saved)
}

/// The entry in `dir`, if it is complete and its files are as recorded;
/// a damaged one is removed. Marks it used.
fn usable(dir: &Path, key: &str) -> Option<SavedVm> {
    if !dir.join(crate::kernel::build::COMPLETE).exists() {
        return None;
    }
    if let Err(why) = crate::kernel::build::verify_entry(dir) {
        eprintln!(
            "      the saved VM {} is damaged ({why}); saving it again",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(dir);
        return None;
    }
    let console = std::fs::read_to_string(dir.join("console.log")).ok()?;
    // The mark of use that pruning goes by (not a file `verify_entry` checks).
    let _ = std::fs::write(dir.join("used"), "");
    Some(SavedVm {
        dir: dir.to_path_buf(),
        key: key.to_string(),
        console,
    })
}

/// Removes all but the `keep` most recently used entries (and what a
/// saving runner that died left behind, once it is an hour old).
fn prune(vms: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(vms) else {
        return;
    };
    let used = |d: &Path| {
        std::fs::metadata(d.join("used"))
            .or_else(|_| std::fs::metadata(d))
            .and_then(|m| m.modified())
            .ok()
    };
    let mut entries = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !p.is_dir() {
            continue;
        }
        if name.starts_with(".saving-") {
            let old = used(&p)
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a > Duration::from_secs(3600));
            if old {
                let _ = std::fs::remove_dir_all(&p);
            }
            continue;
        }
        entries.push((used(&p), p));
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, p) in entries.into_iter().skip(keep) {
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(p.with_extension("lock"));
    }
}

/// Drops the entry of `v` (it failed to restore): the next run saves it
/// again.
pub fn discard(v: &SavedVm) {
    let _ = std::fs::remove_dir_all(&v.dir);
}

/// Drops the entry of `key`, if there is one.
pub fn discard_key(key: &str) -> Result<()> {
    let dir = vms_dir()?.join(key);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        boot::example_config()
    }

    fn image(bytes: &[u8]) -> Image<'_> {
        Image::of(vec![bytes])
    }

    /// Everything that shapes the guest changes the key; where the
    /// sockets and the per-run initramfs are, and the deadlines, do not.
    #[test]
    fn the_key_follows_the_machine_not_the_run() {
        let k = key(&cfg(), &image(b"image"));
        let mut c = cfg();
        c.result_socket = "/tmp/b/r.sock".into();
        c.monitor_socket = "/tmp/b/m.sock".into();
        c.initramfs = "/elsewhere.cpio.gz".into();
        c.deadline = Duration::from_secs(99);
        c.silence = Some(Duration::from_secs(5));
        assert_eq!(key(&c, &image(b"image")), k);
        assert_ne!(key(&cfg(), &image(b"other image")), k);
        let changes: [fn(&mut VmConfig); 5] = [
            |c| c.memory_mb = 2048,
            |c| c.cpus = 1,
            |c| c.extra_cmdline = "oops=panic".into(),
            |c| c.kernel = "/other/bzImage".into(),
            |c| c.accel = crate::accel::Accel::Kvm,
        ];
        for change in changes {
            let mut c = cfg();
            change(&mut c);
            assert_ne!(key(&c, &image(b"image")), k, "{c:?}");
        }
    }

    /// A kernel rebuilt in place (same path, new file) is another machine.
    #[test]
    fn a_rebuilt_kernel_changes_the_key() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("bzImage");
        std::fs::write(&k, "one").unwrap();
        let mut c = cfg();
        c.kernel = k.clone();
        let first = key(&c, &image(b"image"));
        std::fs::remove_file(&k).unwrap();
        std::fs::write(&k, "two!").unwrap();
        assert_ne!(key(&c, &image(b"image")), first);
    }

    #[test]
    fn pruning_keeps_the_most_recently_used() {
        let d = tempfile::tempdir().unwrap();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            let e = d.path().join(n);
            std::fs::create_dir(&e).unwrap();
            let f = std::fs::File::create(e.join("used")).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
            f.set_modified(t).unwrap();
        }
        prune(d.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["b", "c"]);
    }

    /// The plan goes in the handoff, with fresh entropy each time, and the
    /// restored VM uses the entry's own initramfs.
    #[test]
    fn each_restore_hands_over_the_plan_with_fresh_entropy() {
        let v = SavedVm {
            dir: "/c/vms/k".into(),
            key: "k".into(),
            console: "boot\n".into(),
        };
        let plan = gmem_protocol::Plan::single(gmem_protocol::CasePlan {
            case: "c".into(),
            steps: vec![],
        });
        let a = v.restore_config(&cfg(), &plan);
        let b = v.restore_config(&cfg(), &plan);
        assert_eq!(a.initramfs, PathBuf::from("/c/vms/k/initramfs.cpio.gz"));
        let (ra, rb) = (a.restore.unwrap(), b.restore.unwrap());
        let ha: gmem_protocol::Handoff = serde_json::from_str(ra.handoff.trim_end()).unwrap();
        let hb: gmem_protocol::Handoff = serde_json::from_str(rb.handoff.trim_end()).unwrap();
        assert_eq!(ha.plan, plan);
        assert_eq!(ha.entropy_bytes().unwrap().len(), 32);
        assert_ne!(ha.entropy, hb.entropy);
        assert_eq!(ra.state, PathBuf::from("/c/vms/k/state"));
        assert_eq!(ra.console, "boot\n");
        let args = boot::qemu_args(&VmConfig {
            restore: Some(ra),
            ..cfg()
        });
        assert!(
            args.windows(2)
                .any(|w| w[0] == "-incoming" && w[1] == "exec:cat /c/vms/k/state"),
            "{args:?}"
        );
    }
}
