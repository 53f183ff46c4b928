//! `mmap_rw`: a guest_memfd as plain shared memory for its owner.
//!
//! Creates a guest_memfd of `pages` pages (flags, default MMAP|INIT_SHARED;
//! `if_unsupported: "drop"` leaves out those the kernel does not advertise),
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

use serde::Serialize;

use super::pages::{read_pattern_page, write_pattern_page, PageRead};
use super::{create_gmem, create_vm, pattern_page, GmemCreate, Probe, PAGE};
use crate::errno;
use crate::mapping::Mapping;
use crate::Result;

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::MmapRwArgs as Args;

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    #[serde(flatten)]
    pub gmem: GmemCreate,
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
        let vm = create_vm(self.vm_type)?;
        let len = self.pages * PAGE;
        let (created, gmem) = create_gmem(&vm, &self.flags, self.if_unsupported, self.pages)?;
        let mut obs = Observation {
            gmem: created,
            ..Default::default()
        };
        let Some(gmem) = gmem else {
            return Ok(obs);
        };

        let mut buf = [0u8; 16];
        // SAFETY: `buf` is a live 16-byte buffer.
        let r = unsafe { libc::pread(gmem.raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        obs.pread = Some(if r < 0 {
            errno::of(&std::io::Error::last_os_error())
        } else {
            "ok".into()
        });

        obs.mmap_private = Some(errno::outcome(&gmem.map(len, libc::MAP_PRIVATE)));
        let Some(map) = errno::record(&mut obs.mmap_shared, gmem.map(len, libc::MAP_SHARED)) else {
            return Ok(obs);
        };

        let mut written = 0;
        for page in 0..self.pages {
            if let Err(e) = write_pattern_page(&map, page) {
                obs.write_error = Some(errno::of(&e));
                break;
            }
            written += 1;
        }
        obs.pages_written = Some(written);
        if written == 0 {
            return Ok(obs);
        }

        // The pages that read back as something else, or the first read's
        // errno.
        let count_mismatches = |m: &Mapping| -> std::result::Result<usize, String> {
            let mut bad = 0;
            for page in 0..written {
                match read_pattern_page(m, page) {
                    PageRead::Data => {}
                    PageRead::Mismatch => bad += 1,
                    PageRead::Errno(e) => return Err(e),
                }
            }
            Ok(bad)
        };
        match count_mismatches(&map) {
            Ok(n) => obs.mismatches = Some(n),
            Err(e) => {
                obs.read_error = Some(e);
                return Ok(obs);
            }
        }
        match gmem.map(len, libc::MAP_SHARED) {
            Ok(second) => {
                obs.second_mmap = Some("ok".into());
                match count_mismatches(&second) {
                    Ok(n) => obs.second_mismatches = Some(n),
                    Err(e) => obs.read_error = Some(e),
                }
            }
            Err(e) => obs.second_mmap = Some(errno::of(&e)),
        }

        let punch = gmem.punch_hole(0, PAGE as u64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::GmemFlag;

    /// Observations are compared as JSON: the fields keep their order, and
    /// the steps not reached stay out.
    #[test]
    fn observation_fields_keep_their_order() {
        let obs = Observation {
            gmem: GmemCreate {
                flags: vec![GmemFlag::MMAP],
                dropped_flags: vec![],
                pages: 2,
                create: "ok".into(),
            },
            pread: Some("ESPIPE".into()),
            mmap_private: Some("EINVAL".into()),
            mmap_shared: Some("ENODEV".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"flags":["MMAP"],"pages":2,"create":"ok","pread":"ESPIPE","mmap_private":"EINVAL","mmap_shared":"ENODEV"}"#
        );
    }
}
