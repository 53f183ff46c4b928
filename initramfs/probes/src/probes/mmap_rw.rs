//! `mmap_rw`: a guest_memfd as plain shared memory for its owner.
//!
//! Creates a guest_memfd of `pages` pages (flags, default MMAP|INIT_SHARED),
//! tries MAP_PRIVATE (guest_memfd only allows MAP_SHARED: EINVAL) and
//! MAP_SHARED (ENODEV without the MMAP flag), writes a per-page pattern
//! through the shared mapping, reads it back through that mapping and through
//! a second MAP_SHARED mapping of the same fd, and counts mismatching pages.
//! It also tries pread(2) on the fd (guest_memfd has no read op). Last, it
//! punches a hole over the first page and reads it again through the
//! mapping: the truncation zaps the user mapping and the next fault
//! allocates a new, zeroed page.
//!
//! Every access goes through the kernel's uaccess ([`crate::mapping`]): a
//! fault the guest_memfd refuses (private memory, without INIT_SHARED) is
//! reported as EFAULT instead of killing the probe with SIGBUS.

use serde::{Deserialize, Serialize};

use super::{open_kvm, pattern_page, Probe, PAGE};
use crate::errno;
use crate::flags::{gmem_mask, GmemFlag, VmType};
use crate::{Context, Result};

fn default_pages() -> usize {
    4
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default)]
    pub vm_type: VmType,
    #[serde(default = "crate::flags::mappable")]
    pub flags: Vec<GmemFlag>,
    #[serde(default = "default_pages")]
    pub pages: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    pub flags: Vec<GmemFlag>,
    pub pages: usize,
    /// "ok" or the KVM_CREATE_GUEST_MEMFD errno.
    pub create: String,
    /// pread(2) of the fd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap_private: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap_shared: Option<String>,
    /// Pages whose pattern write went through, and the first errno otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_written: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_error: Option<String>,
    /// Pages that read back differently through the writing mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatches: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_mmap: Option<String>,
    /// Pages that read back differently through a second mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_mismatches: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
    /// fallocate(PUNCH_HOLE) over page 0, then what page 0 reads as:
    /// "zero", "old_pattern", "other" or an errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub punch_first_page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_page_after_punch: Option<String>,
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let kvm = open_kvm()?;
        let vm = kvm
            .create_vm(self.vm_type.raw())
            .context(|| format!("KVM_CREATE_VM({:?})", self.vm_type))?;
        let mask = gmem_mask(&self.flags);
        let len = self.pages * PAGE;
        let mut obs = Observation {
            flags: self.flags.clone(),
            pages: self.pages,
            ..Default::default()
        };
        let gmem = match vm.create_guest_memfd(len as u64, mask) {
            Ok(g) => g,
            Err(e) => {
                obs.create = errno::of(&e);
                return Ok(obs);
            }
        };
        obs.create = "ok".into();

        let mut buf = [0u8; 16];
        // SAFETY: `buf` is a live 16-byte buffer.
        let r = unsafe { libc::pread(gmem.raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        obs.pread = Some(if r < 0 {
            errno::of(&std::io::Error::last_os_error())
        } else {
            "ok".into()
        });

        obs.mmap_private = Some(errno::outcome(&gmem.map(len, libc::MAP_PRIVATE)));
        let map = match gmem.map(len, libc::MAP_SHARED) {
            Ok(m) => m,
            Err(e) => {
                obs.mmap_shared = Some(errno::of(&e));
                return Ok(obs);
            }
        };
        obs.mmap_shared = Some("ok".into());

        let mut written = 0;
        for page in 0..self.pages {
            if let Err(e) = map.copy_in(page * PAGE, &pattern_page(page)) {
                obs.write_error = Some(errno::of(&e));
                break;
            }
            written += 1;
        }
        obs.pages_written = Some(written);
        if written == 0 {
            return Ok(obs);
        }

        let count_mismatches = |m: &crate::mapping::Mapping| -> std::io::Result<usize> {
            let mut bad = 0;
            for page in 0..written {
                if m.copy_out(page * PAGE, PAGE)? != pattern_page(page) {
                    bad += 1;
                }
            }
            Ok(bad)
        };
        match count_mismatches(&map) {
            Ok(n) => obs.mismatches = Some(n),
            Err(e) => {
                obs.read_error = Some(errno::of(&e));
                return Ok(obs);
            }
        }
        match gmem.map(len, libc::MAP_SHARED) {
            Ok(second) => {
                obs.second_mmap = Some("ok".into());
                match count_mismatches(&second) {
                    Ok(n) => obs.second_mismatches = Some(n),
                    Err(e) => obs.read_error = Some(errno::of(&e)),
                }
            }
            Err(e) => obs.second_mmap = Some(errno::of(&e)),
        }

        let punch = gmem.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            PAGE as u64,
        );
        obs.punch_first_page = Some(errno::outcome(&punch));
        obs.first_page_after_punch = Some(match map.copy_out(0, PAGE) {
            Ok(bytes) if bytes.iter().all(|b| *b == 0) => "zero".into(),
            Ok(bytes) if bytes == pattern_page(0) => "old_pattern".into(),
            Ok(_) => "other".into(),
            Err(e) => errno::of(&e),
        });
        Ok(obs)
    }
}
