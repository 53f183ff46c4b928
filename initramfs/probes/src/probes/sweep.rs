//! `sweep`: make the kernel touch most free memory through its direct map.
//!
//! A page freed while still removed from the direct map goes back to the
//! page allocator as a trap: the next kernel user that touches it through
//! the direct map takes a kernel page fault ("BUG: unable to handle page
//! fault"). Run after the steps that free guest_memfd pages, this probe
//! hands most free pages out to the kernel again and has it write them:
//!
//! - anonymous memory, `share_percent` (default 80) of MemAvailable, mapped
//!   in chunks with MAP_POPULATE: the kernel allocates and zeroes every page
//!   through the direct map (`clear_user_highpage()`, `clear_huge_page()`
//!   for THPs);
//! - a file of `tmpfs_mib` MiB (default 8) in /tmp, written with write(2)
//!   and read back with read(2): the kernel copies into and out of its page
//!   cache pages through the direct map.
//!
//! Then everything is freed. A trapped page oopses the kernel: the console
//! shows it, the probe dies. Observed: the share asked for (never sizes,
//! which depend on the machine), each part's outcome ("ok", "mismatch" or
//! an errno), and `swept`: both parts went through.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};

use serde::Serialize;

use super::{pattern, Probe, PAGE};
use crate::errno;
use crate::mapping::Mapping;
use crate::meminfo;
use crate::{Context, Failure, Result};

const MIB: usize = 1 << 20;
/// Anonymous memory is mapped in chunks of this size (the last is smaller).
const CHUNK: usize = 64 * MIB;

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::SweepArgs as Args;

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    /// Both parts went through.
    pub swept: bool,
    pub share_of_available: String,
    /// Mapping the anonymous chunks: "ok" or the mmap errno.
    pub anonymous: String,
    /// The tmpfs file: "ok", "mismatch" (read back differently) or an errno.
    pub tmpfs_file: String,
}

/// The chunk sizes that make up `total` bytes, rounded up to whole pages.
fn chunks(total: usize) -> Vec<usize> {
    let total = total.div_ceil(PAGE) * PAGE;
    let mut left = total;
    let mut out = Vec::new();
    while left > 0 {
        let n = left.min(CHUNK);
        out.push(n);
        left -= n;
    }
    out
}

/// `share` percent of `available_kb` kB, in bytes.
fn share_bytes(available_kb: u64, share: u8) -> usize {
    (available_kb as u128 * 1024 * share as u128 / 100) as usize
}

/// Maps and populates anonymous memory, `total` bytes in chunks, and frees
/// it all at the end.
fn sweep_anonymous(total: usize) -> std::io::Result<()> {
    let mut held = Vec::new();
    for len in chunks(total) {
        held.push(Mapping::map(
            None,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
        )?);
    }
    drop(held);
    Ok(())
}

/// Writes `mib` MiB of pattern into a new file in /tmp, reads it back and
/// removes it: "ok", "mismatch" or an error.
fn sweep_tmpfs(mib: usize) -> std::io::Result<&'static str> {
    let path = format!("/tmp/gmem-sweep-{}", std::process::id());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let result = (|| {
        let block = pattern(MIB / PAGE);
        for _ in 0..mib {
            file.write_all(&block)?;
        }
        file.rewind()?;
        let mut back = vec![0u8; MIB];
        let mut same = true;
        for _ in 0..mib {
            file.read_exact(&mut back)?;
            same &= back == block;
        }
        Ok(if same { "ok" } else { "mismatch" })
    })();
    let _ = std::fs::remove_file(&path);
    result
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let text =
            std::fs::read_to_string("/proc/meminfo").context(|| "reading /proc/meminfo".into())?;
        let available = *meminfo::parse(&text)
            .get("MemAvailable")
            .ok_or_else(|| Failure::Work("no MemAvailable in /proc/meminfo".into()))?;

        let anonymous =
            errno::outcome(&sweep_anonymous(share_bytes(available, self.share_percent)));
        let tmpfs_file = match sweep_tmpfs(self.tmpfs_mib) {
            Ok(s) => s.to_string(),
            Err(e) => errno::of(&e),
        };
        Ok(Observation {
            swept: anonymous == "ok" && tmpfs_file == "ok",
            share_of_available: format!("{}%", self.share_percent),
            anonymous,
            tmpfs_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_total_in_whole_pages() {
        assert_eq!(chunks(0), Vec::<usize>::new());
        assert_eq!(chunks(1), [PAGE]);
        assert_eq!(chunks(CHUNK + 1), [CHUNK, PAGE]);
        assert_eq!(chunks(2 * CHUNK), [CHUNK, CHUNK]);
    }

    #[test]
    fn share_of_available() {
        assert_eq!(share_bytes(1000, 80), 800 * 1024);
        assert_eq!(share_bytes(0, 80), 0);
    }

    #[test]
    fn observation_says_no_sizes() {
        let obs = Observation {
            swept: true,
            share_of_available: "80%".into(),
            anonymous: "ok".into(),
            tmpfs_file: "ok".into(),
        };
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"swept":true,"share_of_available":"80%","anonymous":"ok","tmpfs_file":"ok"}"#
        );
    }

    #[test]
    fn sweeps_a_little_on_the_host() {
        assert!(sweep_anonymous(3 * PAGE).is_ok());
    }
}
