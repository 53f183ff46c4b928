//! `gup_read`: reading a guest_memfd's pages through GUP, which accesses
//! them through the kernel's direct map.
//!
//! Creates a guest_memfd of `pages` pages (flags, default
//! MMAP|INIT_SHARED|NO_DIRECT_MAP; `if_unsupported: "drop"` leaves out the
//! flags the kernel does not advertise, listed in `dropped_flags`), mmaps it
//! and writes a per-page pattern through the mapping: the first write faults
//! each page in, and the kernel clears it and (with NO_DIRECT_MAP) removes it
//! from the direct map. It then forces a TLB flush on its CPU
//! ([`crate::cpu::switch_to_another_process`]) so that a stale TLB entry left
//! by a `noflush` removal cannot let a direct-map access through by luck,
//! reads the pages back through the user mapping (`user_mapping`, a control:
//! no GUP, no direct map), and then through each GUP path of `paths`, in the
//! order given:
//!
//! - `proc_self_mem`: pread(/proc/self/mem) at the mapping's address
//!   (`mem_rw()` -> `access_remote_vm()`: GUP, then a plain memcpy from the
//!   direct map; on a kernel that does not refuse GUP there, the read of an
//!   absent page is a kernel page fault, an oops that kills the probe);
//! - `process_vm_readv`: process_vm_readv(2) on our own pid (GUP, then a
//!   copy_to_user from the direct map, whose fault is fixed up: EFAULT);
//! - `vmsplice`: vmsplice(2) each page into a pipe (GUP: the pipe holds the
//!   pages), then read the pipe (a copy from the direct map).
//!
//! O_DIRECT is not a path: these kernels have no block layer, and tmpfs
//! serves O_DIRECT through its page cache, never pinning the user buffer.
//!
//! Each path's outcome is "data" (every byte read back matches), "mismatch",
//! "partial" (fewer bytes than asked) or the errno name; for vmsplice an
//! errno says which call gave it ("vmsplice EFAULT", "read EFAULT"). Put a
//! path that may oops last: the observation is printed only at the end, and
//! a line on stderr before each path ("gup_read: trying proc_self_mem") shows
//! on the console where the probe was when the kernel died.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::{create_mapped_gmem, create_vm, pattern, GmemMapped, Probe, PAGE};
use crate::errno;
use crate::mapping::{pipe, Mapping};
use crate::{cpu, Context, Result};

/// A way the kernel reads user memory with GUP.
pub use gmem_protocol::args::GupPath as Path;
/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::GupReadArgs as Args;

/// Outcomes in the order they were made, serialized as a JSON object.
#[derive(Debug, Default)]
pub struct Ordered(pub Vec<(&'static str, String)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    #[serde(flatten)]
    pub mapped: GmemMapped,
    /// Writing the pattern through the mapping: "ok" or the first errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// Reading it back through the mapping (no GUP): "data", "mismatch" or
    /// an errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_mapping: Option<String>,
    /// Each GUP path, in the order tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Ordered>,
}

/// "data", "mismatch" or "partial" for `got` bytes of `expected`.
fn compare(got: &[u8], expected: &[u8]) -> String {
    if got.len() < expected.len() {
        "partial".into()
    } else if got == expected {
        "data".into()
    } else {
        "mismatch".into()
    }
}

/// The result of a read(2)-like call that returns a count or -1.
fn count(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// pread(/proc/self/mem) at the mapping's address.
fn read_proc_self_mem(map: &Mapping) -> io::Result<Vec<u8>> {
    let mem = File::open("/proc/self/mem")?;
    let mut buf = vec![0u8; map.len()];
    let n = mem.read_at(&mut buf, map.addr())?;
    buf.truncate(n);
    Ok(buf)
}

/// process_vm_readv(2) of the mapping from our own process.
fn read_process_vm_readv(map: &Mapping) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; map.len()];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: map.as_ptr().cast(),
        iov_len: map.len(),
    };
    // SAFETY: `local` covers `buf`, which the kernel writes; `remote` is
    // read by the kernel with GUP, not through our pointers.
    let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    let n = count(r)?;
    buf.truncate(n);
    Ok(buf)
}

/// vmsplice(2) each page of the mapping into a pipe and read it out.
/// Errors say which of the two calls failed.
fn read_vmsplice(map: &Mapping) -> std::result::Result<Vec<u8>, String> {
    let (rd, wr) = pipe(libc::O_NONBLOCK).map_err(|e| format!("pipe {}", errno::of(&e)))?;
    let mut out = Vec::with_capacity(map.len());
    for page in 0..map.len() / PAGE {
        let iov = libc::iovec {
            // SAFETY: page * PAGE < map.len(): inside the mapping.
            iov_base: unsafe { map.as_ptr().add(page * PAGE) }.cast(),
            iov_len: PAGE,
        };
        // SAFETY: the kernel pins the pages the iovec covers, inside our
        // mapping; no Rust reference points there.
        let r = unsafe { libc::vmsplice(wr.as_raw_fd(), &iov, 1, 0) };
        let spliced = count(r).map_err(|e| format!("vmsplice {}", errno::of(&e)))?;
        let mut buf = vec![0u8; spliced];
        // SAFETY: `buf` has room for `spliced` bytes.
        let r = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), spliced) };
        let n = count(r).map_err(|e| format!("read {}", errno::of(&e)))?;
        out.extend_from_slice(&buf[..n]);
        if n < PAGE {
            break;
        }
    }
    Ok(out)
}

fn read_through(path: Path, map: &Mapping, expected: &[u8]) -> String {
    match path {
        Path::ProcSelfMem => match read_proc_self_mem(map) {
            Ok(got) => compare(&got, expected),
            Err(e) => errno::of(&e),
        },
        Path::ProcessVmReadv => match read_process_vm_readv(map) {
            Ok(got) => compare(&got, expected),
            Err(e) => errno::of(&e),
        },
        Path::Vmsplice => match read_vmsplice(map) {
            Ok(got) => compare(&got, expected),
            Err(e) => e,
        },
    }
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        cpu::pin_here().context(|| "pinning to the current CPU".into())?;
        let vm = create_vm(self.vm_type)?;
        let (mapped, gmem_map) =
            create_mapped_gmem(&vm, &self.flags, self.if_unsupported, self.pages)?;
        let mut obs = Observation {
            mapped,
            ..Default::default()
        };
        let Some((gmem, map)) = gmem_map else {
            return Ok(obs);
        };
        let expected = pattern(self.pages);
        if errno::record(&mut obs.write, map.copy_in(0, &expected)).is_none() {
            return Ok(obs);
        }
        cpu::switch_to_another_process().context(|| "forcing a context switch".into())?;
        obs.user_mapping = Some(match map.copy_out(0, map.len()) {
            Ok(got) => compare(&got, &expected),
            Err(e) => errno::of(&e),
        });

        let mut paths = Ordered::default();
        for path in &self.paths {
            eprintln!("gup_read: trying {}", path.name());
            paths
                .0
                .push((path.name(), read_through(*path, &map, &expected)));
        }
        obs.paths = Some(paths);
        drop(map);
        drop(gmem);
        drop(vm);
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{GmemFlag, IfUnsupported};
    use crate::probes::GmemCreate;

    #[test]
    fn compares_data() {
        assert_eq!(compare(&[1, 2], &[1, 2]), "data");
        assert_eq!(compare(&[1, 3], &[1, 2]), "mismatch");
        assert_eq!(compare(&[1], &[1, 2]), "partial");
    }

    #[test]
    fn paths_keep_the_order_tried() {
        let obs = Observation {
            mapped: GmemMapped {
                gmem: GmemCreate {
                    flags: gmem_protocol::args::mappable_no_direct_map(),
                    dropped_flags: vec![GmemFlag::NO_DIRECT_MAP],
                    pages: 1,
                    create: "ok".into(),
                },
                mmap: Some("ok".into()),
            },
            write: Some("ok".into()),
            user_mapping: Some("data".into()),
            paths: Some(Ordered(vec![
                ("vmsplice", "read EFAULT".into()),
                ("proc_self_mem", "data".into()),
            ])),
        };
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"flags":["MMAP","INIT_SHARED","NO_DIRECT_MAP"],"dropped_flags":["NO_DIRECT_MAP"],"pages":1,"create":"ok","mmap":"ok","write":"ok","user_mapping":"data","paths":{"vmsplice":"read EFAULT","proc_self_mem":"data"}}"#
        );
    }

    #[test]
    fn parses_paths_and_rejects_o_direct() {
        let args: Args =
            serde_json::from_str(r#"{"paths":["process_vm_readv","vmsplice","proc_self_mem"]}"#)
                .unwrap();
        assert_eq!(
            args.paths,
            [Path::ProcessVmReadv, Path::Vmsplice, Path::ProcSelfMem]
        );
        assert_eq!(args.flags, gmem_protocol::args::mappable_no_direct_map());
        assert_eq!(args.if_unsupported, IfUnsupported::Keep);
        assert!(serde_json::from_str::<Args>(r#"{"paths":["o_direct"]}"#).is_err());
    }

    /// On the host (no guest_memfd needed): every path reads anonymous
    /// memory back.
    #[test]
    fn paths_read_ordinary_memory() {
        let map = Mapping::anonymous(2 * PAGE).unwrap();
        let expected = pattern(2);
        map.copy_in(0, &expected).unwrap();
        for path in [Path::ProcSelfMem, Path::ProcessVmReadv, Path::Vmsplice] {
            assert_eq!(read_through(path, &map, &expected), "data", "{path:?}");
        }
    }
}
