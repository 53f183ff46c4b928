//! `stale_tlb`: is a page just removed from the direct map still readable
//! through a stale TLB entry, and no longer after a TLB flush?
//!
//! Creates a guest_memfd of `pages` pages (flags, default
//! MMAP|INIT_SHARED|NO_DIRECT_MAP; `if_unsupported: "drop"` leaves out the
//! flags the kernel does not advertise, listed in `dropped_flags`) and mmaps
//! it, pinned to the CPU it runs on (the case may choose it with `cpu:`).
//! For each page in turn it writes a pattern through the mapping: the fault
//! clears the page through the direct map (which loads this CPU's TLB with
//! the page's direct-map translation) and then removes it from the direct
//! map. At once it finds the page's PFN (/proc/self/pagemap) and reads it
//! through /dev/mem, a no-fault copy through the direct map: the pattern
//! while a translation survives, EFAULT once the page is gone. After all
//! pages, it makes its CPU switch to another process and back
//! ([`crate::cpu::switch_to_another_process`]: under QEMU TCG this flushes
//! the whole software TLB) and reads every page through /dev/mem again.
//!
//! Why booleans, and no "absent right after the zap" at all: a removal with
//! `set_direct_map_invalid_noflush()` flushes nothing itself, but when the
//! page sits in a 2M (or 1G) direct-map page that is not split yet, the
//! split does `flush_tlb_all()` before it clears the 4k PTE
//! (`__split_large_page()` in arch/x86/mm/pat/set_memory.c), so the first
//! page zapped in each large region reads EFAULT; and a stale entry of any
//! other page can be gone by the time of the read for reasons that are not
//! the kernel's (evicted: QEMU's software TLB is direct-mapped and resizes
//! itself; measured on the RFC port, up to 9 of 30 pages that split nothing
//! read EFAULT, 0 in most runs). How many pages read what depends on where
//! the allocator put them, on what earlier steps split and on the TLB, not
//! on the kernel under test; whether some page is readable does not, given
//! enough pages (the default 32: pages share 2M regions). To check the
//! explanation the probe tells the zaps that split a large page
//! (DirectMap4k in /proc/meminfo grew across the fault; read outside the
//! fault-to-read window) from the others. Observed:
//!
//! - `readable_immediately`: some page read its pattern right after its zap
//!   (a stale entry on a `noflush` kernel; false where the removal flushes;
//!   true without the flag, as nothing is removed);
//! - `readable_after_split`: some page read its pattern right after a zap
//!   that split a large page (false: the split flushes);
//! - `readable_after_flush`: pages still readable after the context switch
//!   (0 on every kernel that removes them; all of them without the flag);
//! - `user_mapping_matching`: pages that read back through the mapping;
//! - `other_immediately` / `other_after_flush`: other outcomes seen (a
//!   mismatching read, another errno), omitted when there were none.
//!
//! The per-class counts go to stderr (the console), for a human only.

use std::collections::BTreeSet;

use serde::Serialize;

use super::pages::{read_pattern_page, write_pattern_page, PageRead, PhysMem};
use super::{count, create_mapped_gmem, create_vm, read_direct_map, Counts, GmemMapped, Probe};
use crate::errno;
use crate::{cpu, Context, Failure, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::StaleTlbArgs as Args;

/// One page right after its fault: did the fault split a large direct-map
/// page, and what did /dev/mem read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Immediate {
    pub split: bool,
    pub read: PageRead,
}

/// The outcomes other than the pattern and EFAULT, by name, sorted.
fn others<'a>(reads: impl Iterator<Item = &'a PageRead>) -> Vec<String> {
    reads
        .filter(|r| **r != PageRead::Data && !r.is_absent())
        .map(PageRead::name)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// "3 data, 29 EFAULT": how many reads gave what.
fn tally<'a>(reads: impl Iterator<Item = &'a PageRead>) -> String {
    let mut counts = Counts::new();
    for r in reads {
        count(&mut counts, r.name());
    }
    if counts.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    parts.join(", ")
}

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    #[serde(flatten)]
    pub mapped: GmemMapped,
    /// Writing the pattern through the mapping: "ok" or the first errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readable_immediately: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readable_after_split: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_immediately: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readable_after_flush: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_after_flush: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_mapping_matching: Option<usize>,
}

impl Observation {
    /// Fills the summary fields from each page's reads.
    fn summarize(&mut self, immediately: &[Immediate], after_flush: &[PageRead]) {
        let any = |f: &dyn Fn(&Immediate) -> bool| Some(immediately.iter().any(f));
        self.readable_immediately = any(&|i| i.read == PageRead::Data);
        self.readable_after_split = any(&|i| i.split && i.read == PageRead::Data);
        self.other_immediately = others(immediately.iter().map(|i| &i.read));
        self.readable_after_flush =
            Some(after_flush.iter().filter(|r| **r == PageRead::Data).count());
        self.other_after_flush = others(after_flush.iter());
    }
}

/// The per-class counts, for the console.
fn describe(immediately: &[Immediate], after_flush: &[PageRead]) -> String {
    let class = |split: bool| {
        let reads: Vec<&PageRead> = immediately
            .iter()
            .filter(|i| i.split == split)
            .map(|i| &i.read)
            .collect();
        format!("{} ({})", reads.len(), tally(reads.into_iter()))
    };
    format!(
        "zaps that split a large page: {}; that did not: {}; after the flush: {}",
        class(true),
        class(false),
        tally(after_flush.iter())
    )
}

/// DirectMap4k in kB: grows by 2048 with each 2M direct-map page split.
fn direct_map_4k() -> Result<u64> {
    read_direct_map()?
        .k4
        .ok_or_else(|| Failure::Work("no DirectMap4k in /proc/meminfo".into()))
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let phys = PhysMem::open()?;
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

        let mut pfns = Vec::with_capacity(self.pages);
        let mut immediately = Vec::with_capacity(self.pages);
        let mut k4 = direct_map_4k()?;
        for page in 0..self.pages {
            // The fault: clear through the direct map, then the zap; then,
            // with as little as possible in between, the read.
            if let Err(e) = write_pattern_page(&map, page) {
                obs.write = Some(errno::of(&e));
                return Ok(obs);
            }
            let pfn = phys.pfn(&map, page)?.ok_or_else(|| {
                Failure::Work(format!("no PFN in /proc/self/pagemap for page {page}"))
            })?;
            let read = phys.read_pattern(pfn, page);
            let k4_after = direct_map_4k()?;
            immediately.push(Immediate {
                split: k4_after > k4,
                read,
            });
            k4 = k4_after;
            pfns.push(pfn);
        }
        obs.write = Some("ok".into());

        cpu::switch_to_another_process().context(|| "forcing a context switch".into())?;
        let after_flush: Vec<PageRead> = pfns
            .iter()
            .enumerate()
            .map(|(page, pfn)| phys.read_pattern(*pfn, page))
            .collect();
        // The counts vary from run to run (see above): for the console only.
        eprintln!("stale_tlb: {}", describe(&immediately, &after_flush));
        obs.summarize(&immediately, &after_flush);
        obs.user_mapping_matching = Some(
            (0..self.pages)
                .filter(|page| read_pattern_page(&map, *page) == PageRead::Data)
                .count(),
        );
        drop(map);
        drop(gmem);
        drop(vm);
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::GmemCreate;

    fn efault() -> PageRead {
        PageRead::Errno("EFAULT".into())
    }

    fn split(read: PageRead) -> Immediate {
        Immediate { split: true, read }
    }

    fn no_split(read: PageRead) -> Immediate {
        Immediate { split: false, read }
    }

    /// A noflush kernel: the splitting zap reads EFAULT, the others data.
    #[test]
    fn noflush_pattern() {
        let mut obs = Observation::default();
        let immediately = [
            split(efault()),
            no_split(PageRead::Data),
            no_split(PageRead::Data),
        ];
        obs.summarize(&immediately, &[efault(), efault(), efault()]);
        assert_eq!(obs.readable_immediately, Some(true));
        assert_eq!(obs.readable_after_split, Some(false));
        assert_eq!(obs.readable_after_flush, Some(0));
        assert!(obs.other_immediately.is_empty() && obs.other_after_flush.is_empty());
        assert_eq!(
            describe(&immediately, &[efault(), efault(), efault()]),
            "zaps that split a large page: 1 (1 EFAULT); that did not: 2 (2 data); after the flush: 3 EFAULT"
        );
    }

    /// A flushing kernel: every read is EFAULT, split or not.
    #[test]
    fn flushing_pattern() {
        let mut obs = Observation::default();
        obs.summarize(
            &[split(efault()), no_split(efault())],
            &[efault(), efault()],
        );
        assert_eq!(obs.readable_immediately, Some(false));
        assert_eq!(obs.readable_after_split, Some(false));
    }

    #[test]
    fn other_outcomes_are_listed_once() {
        let mut obs = Observation::default();
        obs.summarize(
            &[
                no_split(PageRead::Mismatch),
                split(PageRead::Errno("EIO".into())),
                no_split(PageRead::Mismatch),
            ],
            &[PageRead::Data, PageRead::Data, efault()],
        );
        assert_eq!(obs.other_immediately, ["EIO", "mismatch"]);
        assert_eq!(obs.readable_after_flush, Some(2));
        assert_eq!(tally([].iter()), "none");
    }

    #[test]
    fn observation_fields_keep_their_order() {
        let mut obs = Observation {
            mapped: GmemMapped {
                gmem: GmemCreate {
                    flags: gmem_protocol::args::mappable_no_direct_map(),
                    dropped_flags: vec![],
                    pages: 2,
                    create: "ok".into(),
                },
                mmap: Some("ok".into()),
            },
            write: Some("ok".into()),
            user_mapping_matching: Some(2),
            ..Default::default()
        };
        obs.summarize(
            &[split(efault()), no_split(PageRead::Data)],
            &[efault(), efault()],
        );
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"flags":["MMAP","INIT_SHARED","NO_DIRECT_MAP"],"pages":2,"create":"ok","mmap":"ok","write":"ok","readable_immediately":true,"readable_after_split":false,"readable_after_flush":0,"user_mapping_matching":2}"#
        );
    }
}
