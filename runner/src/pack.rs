//! Packing the initramfs: the guest's init and probe binaries (built once,
//! statically linked) plus one case's plan, as gzip-compressed newc cpio.
//!
//! The image is two concatenated gzip members, which the kernel unpacks in
//! order: the base (init, probes, device nodes; built once per run) and a
//! small one holding the plan, so packing a case costs almost nothing.

use anyhow::{bail, Context, Result};
use flate2::{write::GzEncoder, Compression};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel::selftests::BuiltSelftests;
use crate::paths::Paths;
use gmem_protocol::{Plan, KSELFTEST_DIR, PLAN_PATH, PROBE_BIN, SHELL_BIN};

/// The guest binaries, statically linked for the guest.
#[derive(Debug, Clone)]
pub struct GuestBinaries {
    pub init: PathBuf,
    pub probe: PathBuf,
}

/// Builds `init` and `gmem-probe` with `+crt-static` (in their own target
/// directory, so the host build's flags do not thrash theirs), once per
/// process and checkout: the test harness prepares each kernel apart.
pub fn build_guest_binaries(paths: &Paths) -> Result<GuestBinaries> {
    static BUILT: std::sync::Mutex<Vec<(PathBuf, GuestBinaries)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, b)) = built.iter().find(|(root, _)| *root == paths.root) {
        return Ok(b.clone());
    }
    let b = guest_binaries_unless_fresh(paths)?;
    built.push((paths.root.clone(), b.clone()));
    Ok(b)
}

/// The guest binaries as the last build left them when none of their
/// inputs (the initramfs crates, the workspace's manifest and lock file,
/// cargo itself) and neither output changed since: no cargo is spawned.
/// Otherwise cargo builds them (it knows best what changed).
fn guest_binaries_unless_fresh(paths: &Paths) -> Result<GuestBinaries> {
    let mut inputs = crate::memo::files_under(&paths.root.join("initramfs"));
    for f in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        inputs.push(paths.root.join(f));
    }
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| crate::memo::which("cargo"));
    inputs.extend(cargo);
    let bin = paths
        .root
        .join("target/guest/x86_64-unknown-linux-gnu/release");
    let outputs = [bin.join("init"), bin.join("gmem-probe")];
    let mut all = inputs.clone();
    all.extend(outputs.iter().cloned());
    let memo = crate::paths::cache_dir().map(|c| crate::memo::Memo::in_cache(&c));
    let root_hash = sha2::Sha256::digest(paths.root.as_os_str().as_encoded_bytes());
    let name = format!(
        "guest-binaries-{}",
        crate::kernel::build::hex(&root_hash[..8])
    );
    if let Ok(m) = &memo {
        if m.get::<bool>(&name, &all) == Some(true) {
            return Ok(GuestBinaries {
                init: outputs[0].clone(),
                probe: outputs[1].clone(),
            });
        }
    }
    let before = crate::memo::identities(&inputs);
    let b = cargo_build_guest_binaries(paths)?;
    if let Ok(m) = &memo {
        // A source edited while cargo ran is not taken as built.
        if crate::memo::identities(&inputs) == before {
            let mut ids = before;
            ids.extend(crate::memo::identities(&outputs));
            m.put_with(&name, ids, &true);
        }
    }
    Ok(b)
}

fn cargo_build_guest_binaries(paths: &Paths) -> Result<GuestBinaries> {
    let target_dir = paths.root.join("target").join("guest");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("initramfs: building the guest binaries (init, gmem-probe)");
    let out = Command::new(cargo)
        .current_dir(&paths.root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "gmem-init",
            "-p",
            "gmem-probes",
            "--target",
            triple,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .context("cannot run cargo to build the guest binaries")?;
    if !out.status.success() {
        bail!(
            "building the guest binaries failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = target_dir.join(triple).join("release");
    let b = GuestBinaries {
        init: bin.join("init"),
        probe: bin.join("gmem-probe"),
    };
    for p in [&b.init, &b.probe] {
        if !p.is_file() {
            bail!("cargo build succeeded but {} is missing", p.display());
        }
    }
    Ok(b)
}

/// A file-system entry of a newc archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    CharDev {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

/// Writes a newc ("070701") cpio archive, trailer included.
pub fn write_newc(entries: &[Entry], out: &mut impl Write) -> std::io::Result<()> {
    fn pad(out: &mut impl Write, len: usize) -> std::io::Result<()> {
        out.write_all(&[0u8; 3][..(4 - len % 4) % 4])
    }
    fn header(
        out: &mut impl Write,
        ino: u32,
        mode: u32,
        size: usize,
        rdev: (u32, u32),
        name: &str,
    ) -> std::io::Result<()> {
        let namesize = name.len() + 1;
        write!(
            out,
            "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
            0, 0, 1, 0, 0, 0, rdev.0, rdev.1, 0
        )?;
        out.write_all(name.as_bytes())?;
        out.write_all(&[0])?;
        pad(out, 110 + namesize)
    }
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir { path, mode } => header(out, ino, 0o040000 | mode, 0, (0, 0), path)?,
            Entry::File { path, mode, data } => {
                header(out, ino, 0o100000 | mode, data.len(), (0, 0), path)?;
                out.write_all(data)?;
                pad(out, data.len())?;
            }
            Entry::CharDev {
                path,
                mode,
                major,
                minor,
            } => header(out, ino, 0o020000 | mode, 0, (*major, *minor), path)?,
        }
    }
    header(out, 0, 0, 0, (0, 0), "TRAILER!!!")
}

fn gzip(entries: &[Entry], level: u32) -> Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(level));
    write_newc(entries, &mut gz)?;
    Ok(gz.finish()?)
}

/// The part of every image that does not depend on the case.
pub fn base_image(bins: &GuestBinaries) -> Result<Vec<u8>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let probe_path = PROBE_BIN.trim_start_matches('/');
    let mut entries = vec![];
    for d in ["dev", "proc", "sys", "tmp", "gmemtest", "gmemtest/bin"] {
        entries.push(Entry::Dir {
            path: d.into(),
            mode: 0o755,
        });
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    entries.push(Entry::CharDev {
        path: "dev/console".into(),
        mode: 0o600,
        major: 5,
        minor: 1,
    });
    entries.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: read(&bins.init)?,
    });
    entries.push(Entry::File {
        path: probe_path.into(),
        mode: 0o755,
        data: read(&bins.probe)?,
    });
    gzip(&entries, 1)
}

/// The member that carries one kernel's upstream KVM selftests, under
/// [`KSELFTEST_DIR`] (`x86/foo_test` keeps its directory). Built once per
/// kernel and added only to the images of cases that run them.
pub fn kselftests_member(built: &BuiltSelftests) -> Result<Vec<u8>> {
    let root = KSELFTEST_DIR.trim_start_matches('/');
    let mut entries = vec![Entry::Dir {
        path: root.into(),
        mode: 0o755,
    }];
    let mut dirs = vec![];
    for t in &built.tests {
        if let Some((dir, _)) = t.rsplit_once('/') {
            if !dirs.contains(&dir) {
                dirs.push(dir);
                entries.push(Entry::Dir {
                    path: format!("{root}/{dir}"),
                    mode: 0o755,
                });
            }
        }
        let bin = built.binary(t);
        entries.push(Entry::File {
            path: format!("{root}/{t}"),
            mode: 0o755,
            data: std::fs::read(&bin).with_context(|| {
                format!(
                    "kernel {}: cannot read the selftest {}",
                    built.kernel,
                    bin.display()
                )
            })?,
        });
    }
    gzip(&entries, 1)
}

/// [`kselftests_member`], kept beside the binaries (`initramfs-member.cpio.gz`
/// in their cache entry) and made again only when a binary is newer: packing
/// several MB of static binaries costs about a second, on every run.
pub fn kselftests_member_cached(built: &BuiltSelftests) -> Result<Vec<u8>> {
    let Some(entry) = built.bin_dir.parent() else {
        return kselftests_member(built);
    };
    let cached = entry.join("initramfs-member.cpio.gz");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = mtime(&cached).is_some_and(|m| {
        built
            .tests
            .iter()
            .all(|t| mtime(&built.binary(t)).is_some_and(|b| b <= m))
    });
    if fresh {
        if let Ok(data) = std::fs::read(&cached) {
            return Ok(data);
        }
    }
    let data = kselftests_member(built)?;
    // A cache that cannot be written is only slower.
    let _ = crate::paths::write_atomic(&cached, &data);
    Ok(data)
}

/// The image for one plan: the base followed by a member holding the plan
/// (and, for a plan that ends in a shell, the shell).
pub fn image(base: &[u8], plan: &Plan) -> Result<Vec<u8>> {
    image_with(base, &[], plan)
}

/// [`image`] with more members (already gzipped) between the base and the
/// plan, e.g. a kernel's selftests.
pub fn image_with(base: &[u8], extra: &[&[u8]], plan: &Plan) -> Result<Vec<u8>> {
    let plan_json = serde_json::to_vec_pretty(plan)?;
    let mut entries = vec![Entry::File {
        path: PLAN_PATH.trim_start_matches('/').into(),
        mode: 0o644,
        data: plan_json,
    }];
    if plan.shell {
        let data = std::fs::read(HOST_SHELL).with_context(|| {
            format!("cannot read {HOST_SHELL} for --shell (run `cargo xtask setup`)")
        })?;
        let path = SHELL_BIN.trim_start_matches('/');
        let dir = Path::new(path)
            .parent()
            .and_then(|d| d.to_str())
            .unwrap_or("bin");
        entries.push(Entry::Dir {
            path: dir.into(),
            mode: 0o755,
        });
        entries.push(Entry::File {
            path: path.into(),
            mode: 0o755,
            data,
        });
    }
    let tail = gzip(&entries, 6)?;
    let extra_len: usize = extra.iter().map(|m| m.len()).sum();
    let mut img = Vec::with_capacity(base.len() + extra_len + tail.len());
    img.extend_from_slice(base);
    for m in extra {
        img.extend_from_slice(m);
    }
    img.extend_from_slice(&tail);
    Ok(img)
}

/// The statically linked busybox of the host's busybox-static package,
/// packed for `--shell`.
pub const HOST_SHELL: &str = "/bin/busybox";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// name, mode, data, (rdev major, minor)
    type Member = (String, u32, Vec<u8>, (u32, u32));

    /// A minimal newc reader, to check the writer's layout.
    fn read_newc(mut data: &[u8]) -> Vec<Member> {
        let mut out = vec![];
        loop {
            assert!(data.len() >= 110, "truncated header");
            let h = std::str::from_utf8(&data[..110]).unwrap();
            assert_eq!(&h[..6], "070701");
            let field = |i: usize| u32::from_str_radix(&h[6 + i * 8..14 + i * 8], 16).unwrap();
            let (mode, size, rmaj, rmin, namesize) = (
                field(1),
                field(6) as usize,
                field(9),
                field(10),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&data[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(data[110 + namesize - 1], 0, "name not NUL-terminated");
            let hdr_end = (110 + namesize + 3) & !3;
            let body = data[hdr_end..hdr_end + size].to_vec();
            data = &data[(hdr_end + size + 3) & !3..];
            if name == "TRAILER!!!" {
                assert!(data.is_empty());
                return out;
            }
            out.push((name, mode, body, (rmaj, rmin)));
        }
    }

    #[test]
    fn newc_layout_is_aligned_and_complete() {
        let entries = vec![
            Entry::Dir {
                path: "dev".into(),
                mode: 0o755,
            },
            Entry::CharDev {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "init".into(),
                mode: 0o755,
                data: b"abcde".to_vec(),
            },
            Entry::File {
                path: "x/yz".into(),
                mode: 0o644,
                data: vec![],
            },
        ];
        let mut buf = vec![];
        write_newc(&entries, &mut buf).unwrap();
        assert_eq!(buf.len() % 4, 0);
        let got = read_newc(&buf);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, "dev");
        assert_eq!(got[0].1, 0o040755);
        assert_eq!(got[1].1, 0o020600);
        assert_eq!(got[1].3, (5, 1));
        assert_eq!(got[2], ("init".into(), 0o100755, b"abcde".to_vec(), (0, 0)));
        assert_eq!(got[3].2, Vec::<u8>::new());
    }

    #[test]
    fn kselftests_member_keeps_test_directories() {
        let d = tempfile::tempdir().unwrap();
        for (t, data) in [("a_test", "A"), ("x86/b_test", "B")] {
            let p = d.path().join(t);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let built = BuiltSelftests {
            kernel: "k".into(),
            key: String::new(),
            bin_dir: d.path().into(),
            tests: vec!["a_test".into(), "x86/b_test".into()],
            build_log: d.path().join("log"),
            built_in: None,
        };
        let gz = kselftests_member(&built).unwrap();
        let plan = Plan::single(gmem_protocol::CasePlan {
            case: "c".into(),
            steps: vec![],
        });
        let base = gzip(&[], 1).unwrap();
        let img = image_with(&base, &[&gz], &plan).unwrap();
        assert_eq!(&img[base.len()..base.len() + gz.len()], &gz[..]);
        let mut cpio = vec![];
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio)
            .unwrap();
        let got: Vec<(String, u32)> = read_newc(&cpio)
            .into_iter()
            .map(|(n, m, _, _)| (n, m))
            .collect();
        assert_eq!(
            got,
            [
                ("gmemtest/kselftests".to_string(), 0o040755),
                ("gmemtest/kselftests/a_test".to_string(), 0o100755),
                ("gmemtest/kselftests/x86".to_string(), 0o040755),
                ("gmemtest/kselftests/x86/b_test".to_string(), 0o100755),
            ]
        );
    }

    #[test]
    fn image_is_base_then_plan_member() {
        let base = gzip(
            &[Entry::File {
                path: "init".into(),
                mode: 0o755,
                data: b"x".to_vec(),
            }],
            1,
        )
        .unwrap();
        let plan = Plan::single(gmem_protocol::CasePlan {
            case: "c".into(),
            steps: vec![],
        });
        let img = image(&base, &plan).unwrap();
        assert!(img.starts_with(&base));
        let mut tail = vec![];
        flate2::read::GzDecoder::new(&img[base.len()..])
            .read_to_end(&mut tail)
            .unwrap();
        let got = read_newc(&tail);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "gmemtest/plan.json");
        let back: Plan = serde_json::from_slice(&got[0].2).unwrap();
        assert_eq!(back, plan);
    }
}
