//! The pattern pages of a mapped guest_memfd, written and read back: through
//! the probe's own mapping, and at their PFN through /dev/mem. Not a probe:
//! what the probes that look at the direct map share, so that they write,
//! find and classify a page the same way.
//!
//! /dev/mem copies from the kernel's direct map with a no-fault copy: a page
//! missing from the direct map reads as EFAULT instead of oopsing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{count, pattern_page, Counts, PAGE};
use crate::errno;
use crate::mapping::Mapping;
use crate::pagemap::Pagemap;
use crate::{Context, Result};

/// What one read of a pattern page gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRead {
    /// The page's pattern.
    Data,
    /// Bytes other than the page's pattern.
    Mismatch,
    /// The read's errno (through /dev/mem, EFAULT: not in the direct map).
    Errno(String),
}

impl PageRead {
    /// Classifies `result`, a read of page `page`, against its pattern.
    pub fn of(result: io::Result<Vec<u8>>, page: usize) -> PageRead {
        match result {
            Ok(bytes) if bytes == pattern_page(page) => PageRead::Data,
            Ok(_) => PageRead::Mismatch,
            Err(e) => PageRead::Errno(errno::of(&e)),
        }
    }

    /// EFAULT: through /dev/mem, the page is not in the direct map.
    pub fn is_absent(&self) -> bool {
        matches!(self, PageRead::Errno(e) if e == "EFAULT")
    }

    /// The outcome as an observation names it: `data` for the pattern,
    /// `mismatch` for other bytes, else the errno ([`PageRead::name`] for
    /// the observations that say "data" and "mismatch").
    pub fn named(&self, data: &str, mismatch: &str) -> String {
        match self {
            PageRead::Data => data.into(),
            PageRead::Mismatch => mismatch.into(),
            PageRead::Errno(e) => e.clone(),
        }
    }

    /// "data", "mismatch" or the errno.
    pub fn name(&self) -> String {
        self.named("data", "mismatch")
    }
}

/// Writes page `page`'s pattern into its place in `map` (the first write
/// faults the page in); a fault the mapping refuses gives EFAULT.
pub fn write_pattern_page(map: &Mapping, page: usize) -> io::Result<()> {
    map.copy_in(page * PAGE, &pattern_page(page))
}

/// Reads page `page` back through `map` and compares it with its pattern.
pub fn read_pattern_page(map: &Mapping, page: usize) -> PageRead {
    PageRead::of(map.copy_out(page * PAGE, PAGE), page)
}

/// Physical memory: /proc/self/pagemap to find the PFN behind a page of a
/// mapping, /dev/mem to read the page there.
pub struct PhysMem {
    devmem: File,
    pagemap: Pagemap,
}

impl PhysMem {
    /// Opens /dev/mem, then /proc/self/pagemap: without them a probe looking
    /// at the direct map observes nothing (exit 1).
    pub fn open() -> Result<PhysMem> {
        let devmem = File::open("/dev/mem").context(|| "opening /dev/mem".into())?;
        let pagemap = Pagemap::open().context(|| "opening /proc/self/pagemap".into())?;
        Ok(PhysMem { devmem, pagemap })
    }

    /// The PFN behind page `page` of `map`: `None` when the page is not
    /// present (or the PFN is hidden).
    pub fn pfn(&self, map: &Mapping, page: usize) -> Result<Option<u64>> {
        let entry = self
            .pagemap
            .entry(map.addr() as usize + page * PAGE)
            .context(|| "reading /proc/self/pagemap".into())?;
        Ok(entry.pfn)
    }

    /// Reads the page at `pfn` through /dev/mem.
    pub fn read(&self, pfn: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; PAGE];
        self.devmem.read_exact_at(&mut buf, pfn * PAGE as u64)?;
        Ok(buf)
    }

    /// Reads the page at `pfn`, which holds page `page` of the pattern, and
    /// compares it with that pattern.
    pub fn read_pattern(&self, pfn: u64, page: usize) -> PageRead {
        PageRead::of(self.read(pfn), page)
    }

    /// Whether the page at `pfn` reads through /dev/mem, whatever it holds
    /// (pages freed or reused hold anything): "present" or the errno.
    pub fn presence(&self, pfn: u64) -> String {
        match self.read(pfn) {
            Ok(_) => "present".into(),
            Err(e) => errno::of(&e),
        }
    }

    /// [`PhysMem::presence`] of each of `pfns`, counted.
    pub fn presence_counts(&self, pfns: impl IntoIterator<Item = u64>) -> Counts {
        let mut counts = Counts::new();
        for pfn in pfns {
            count(&mut counts, self.presence(pfn));
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_reads() {
        assert_eq!(PageRead::of(Ok(pattern_page(3)), 3), PageRead::Data);
        assert_eq!(PageRead::of(Ok(pattern_page(3)), 4), PageRead::Mismatch);
        let efault = io::Error::from_raw_os_error(libc::EFAULT);
        let read = PageRead::of(Err(efault), 0);
        assert!(read.is_absent());
        assert_eq!(read.name(), "EFAULT");
        assert_eq!(
            PageRead::Data.named("present_matching", "present_mismatch"),
            "present_matching"
        );
        assert_eq!(PageRead::Mismatch.name(), "mismatch");
    }

    /// On the host: the pattern goes in and comes back page by page.
    #[test]
    fn pattern_pages_round_trip_through_a_mapping() {
        let map = Mapping::anonymous(2 * PAGE).unwrap();
        write_pattern_page(&map, 1).unwrap();
        assert_eq!(read_pattern_page(&map, 1), PageRead::Data);
        assert_eq!(read_pattern_page(&map, 0), PageRead::Mismatch);
    }
}
