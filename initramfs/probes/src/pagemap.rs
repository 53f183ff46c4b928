//! `/proc/self/pagemap`: one 64-bit entry per virtual page, giving the
//! physical frame behind a mapped page (the PFN is only filled in for a
//! process with CAP_SYS_ADMIN; the guest runs as root). See
//! Documentation/admin-guide/mm/pagemap.rst.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const PFN_MASK: u64 = (1 << 55) - 1;
const EXCLUSIVE: u64 = 1 << 56;
const FILE_OR_SHARED_ANON: u64 = 1 << 61;
const SWAPPED: u64 = 1 << 62;
const PRESENT: u64 = 1 << 63;

/// One decoded pagemap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub present: bool,
    pub swapped: bool,
    /// The page is file-backed or shared anonymous memory.
    pub file_or_shared: bool,
    pub exclusive: bool,
    /// The frame number; `None` when not present or hidden (zero without
    /// CAP_SYS_ADMIN).
    pub pfn: Option<u64>,
}

impl Entry {
    pub fn decode(raw: u64) -> Entry {
        let present = raw & PRESENT != 0;
        let pfn = raw & PFN_MASK;
        Entry {
            present,
            swapped: raw & SWAPPED != 0,
            file_or_shared: raw & FILE_OR_SHARED_ANON != 0,
            exclusive: raw & EXCLUSIVE != 0,
            pfn: (present && pfn != 0).then_some(pfn),
        }
    }
}

/// An open `/proc/self/pagemap`.
pub struct Pagemap(File);

impl Pagemap {
    pub fn open() -> io::Result<Pagemap> {
        File::open("/proc/self/pagemap").map(Pagemap)
    }

    /// The entry of the page holding virtual address `addr`.
    pub fn entry(&self, addr: usize) -> io::Result<Entry> {
        let page = page_size();
        let mut buf = [0u8; 8];
        self.0.read_exact_at(&mut buf, (addr / page) as u64 * 8)?;
        Ok(Entry::decode(u64::from_ne_bytes(buf)))
    }
}

/// The base page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_present_file_page() {
        let e = Entry::decode(PRESENT | FILE_OR_SHARED_ANON | 0x12345);
        assert!(e.present && e.file_or_shared && !e.swapped && !e.exclusive);
        assert_eq!(e.pfn, Some(0x12345));
    }

    #[test]
    fn not_present_has_no_pfn() {
        assert_eq!(Entry::decode(0).pfn, None);
        assert!(!Entry::decode(0).present);
        // A swap entry's low bits are not a PFN.
        let swapped = Entry::decode(SWAPPED | 0x42);
        assert!(swapped.swapped && swapped.pfn.is_none());
    }

    #[test]
    fn hidden_pfn_reads_as_none() {
        // Without CAP_SYS_ADMIN the kernel zeroes the PFN field.
        let e = Entry::decode(PRESENT | EXCLUSIVE);
        assert!(e.present && e.exclusive);
        assert_eq!(e.pfn, None);
    }

    #[test]
    fn pfn_field_is_55_bits() {
        let e = Entry::decode(PRESENT | (1 << 55) | PFN_MASK);
        assert_eq!(e.pfn, Some(PFN_MASK));
    }
}
