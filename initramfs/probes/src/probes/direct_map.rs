//! `direct_map`: are guest_memfd pages in the kernel's direct map?
//!
//! Creates a guest_memfd of `pages` pages (flags, default MMAP|INIT_SHARED;
//! add NO_DIRECT_MAP on a kernel carrying the removal series, with
//! `if_unsupported: "drop"` to run the same case on one without it), mmaps it and
//! faults every page in by writing a per-page pattern. For each page it finds
//! the PFN in /proc/self/pagemap and reads the page through /dev/mem, which
//! copies from the direct map with a no-fault copy: a page missing from the
//! direct map reads as EFAULT instead of oopsing. It also reads the pages
//! back through the user mapping, which must keep working. The DirectMap4k /
//! 2M / 1G lines of /proc/meminfo before and after give the sign of the
//! change (a 2M direct-map page split to remove one 4k page grows DirectMap4k).
//!
//! Then it releases the memory (`release`: "close" drops the mapping and the
//! fd, "punch_hole" punches the whole file first) and reads the old PFNs
//! through /dev/mem again: a page the kernel freed without restoring it to
//! the direct map would read EFAULT there, and be a trap for its next user.
//!
//! Per-page states are reported as counts (`{"present_matching": 4}`), as
//! which page is in which state is not meaningful. Note that with a
//! `noflush` removal, stale TLB entries can leave a removed page readable for
//! a while: such counts can legitimately vary (see DESIGN.md).

use serde::Serialize;

use super::pages::{read_pattern_page, write_pattern_page, PhysMem};
use super::{
    count, create_mapped_gmem, create_vm, read_direct_map, Counts, GmemMapped, Probe, PAGE,
};
use crate::cpu;
use crate::errno;
use crate::meminfo::{delta, delta_kb, DirectMap};
use crate::{Context, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::DirectMapArgs as Args;
use gmem_protocol::args::{DirectMapUnits, Release};

/// The DirectMap changes since the start of the probe, as signs or in kB
/// (`direct_map_units`).
#[derive(Debug, Default, Serialize)]
pub struct Deltas {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_map_4k: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_map_2m: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_map_1g: Option<String>,
}

impl Deltas {
    fn between(before: DirectMap, after: DirectMap, units: DirectMapUnits) -> Deltas {
        let d = |b: Option<u64>, a: Option<u64>| match units {
            DirectMapUnits::Sign => delta(b, a).map(String::from),
            DirectMapUnits::Kb => delta_kb(b, a),
        };
        Deltas {
            direct_map_4k: d(before.k4, after.k4),
            direct_map_2m: d(before.m2, after.m2),
            direct_map_1g: d(before.g1, after.g1),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AfterRelease {
    /// "ok" or the errno of the release itself (punch_hole).
    pub result: String,
    /// The old PFNs through /dev/mem: "present" or an errno.
    pub devmem: Counts,
    #[serde(flatten)]
    pub deltas: Deltas,
}

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    #[serde(flatten)]
    pub mapped: GmemMapped,
    /// Writing the pattern through the user mapping: "ok" or an errno.
    #[serde(skip_serializing_if = "Counts::is_empty")]
    pub write: Counts,
    /// /dev/mem at each page's PFN: "present_matching",
    /// "present_mismatch", "no_pfn" or the pread errno ("EFAULT": not in
    /// the direct map).
    #[serde(skip_serializing_if = "Counts::is_empty")]
    pub devmem: Counts,
    /// Reading back through the user mapping: "matching", "mismatch" or an
    /// errno.
    #[serde(skip_serializing_if = "Counts::is_empty")]
    pub user_mapping: Counts,
    /// DirectMap changes with the pages faulted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faulted: Option<Deltas>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_release: Option<AfterRelease>,
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        // /dev/mem is read after a TLB flush on this same CPU, so that what
        // it sees is the direct map's state, not a stale translation left by
        // a `noflush` zap (that is the stale_tlb probe's subject).
        cpu::pin_here().context(|| "pinning to the current CPU".into())?;
        let phys = PhysMem::open()?;
        let vm = create_vm(self.vm_type)?;

        let before = read_direct_map()?;
        let (mapped, gmem_map) =
            create_mapped_gmem(&vm, &self.flags, self.if_unsupported, self.pages)?;
        let mut obs = Observation {
            mapped,
            ..Default::default()
        };
        let Some((gmem, map)) = gmem_map else {
            return Ok(obs);
        };

        let mut pfns = Vec::new();
        for page in 0..self.pages {
            if let Err(e) = write_pattern_page(&map, page) {
                count(&mut obs.write, errno::of(&e));
                count(&mut obs.devmem, "not_faulted");
                continue;
            }
            count(&mut obs.write, "ok");
            match phys.pfn(&map, page)? {
                Some(pfn) => pfns.push((page, pfn)),
                None => count(&mut obs.devmem, "no_pfn"),
            }
        }
        let after_fault = read_direct_map()?;
        cpu::switch_to_another_process().context(|| "flushing the TLB".into())?;
        for (page, pfn) in &pfns {
            let read = phys.read_pattern(*pfn, *page);
            count(
                &mut obs.devmem,
                read.named("present_matching", "present_mismatch"),
            );
        }
        if self.direct_map_deltas {
            obs.faulted = Some(Deltas::between(before, after_fault, self.direct_map_units));
        }

        for page in 0..self.pages {
            let read = read_pattern_page(&map, page);
            count(&mut obs.user_mapping, read.named("matching", "mismatch"));
        }

        let result = match self.release {
            Release::Close => "ok".to_string(),
            Release::PunchHole => errno::outcome(&gmem.punch_hole(0, (self.pages * PAGE) as u64)),
        };
        drop(map);
        drop(gmem);
        drop(vm);
        cpu::switch_to_another_process().context(|| "flushing the TLB".into())?;
        let after_devmem = phys.presence_counts(pfns.iter().map(|(_, pfn)| *pfn));
        let after = read_direct_map()?;
        obs.release = Some(self.release);
        obs.after_release = Some(AfterRelease {
            result,
            devmem: after_devmem,
            deltas: if self.direct_map_deltas {
                Deltas::between(before, after, self.direct_map_units)
            } else {
                Deltas::default()
            },
        });
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::GmemFlag;
    use crate::probes::GmemCreate;

    /// Observations are compared as JSON: the fields keep their order, and
    /// the steps not reached stay out.
    #[test]
    fn observation_fields_keep_their_order() {
        let mut obs = Observation {
            mapped: GmemMapped {
                gmem: GmemCreate {
                    flags: vec![GmemFlag::MMAP, GmemFlag::INIT_SHARED],
                    dropped_flags: vec![],
                    pages: 1,
                    create: "EINVAL".into(),
                },
                mmap: None,
            },
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"flags":["MMAP","INIT_SHARED"],"pages":1,"create":"EINVAL"}"#
        );
        obs.mapped.gmem.create = "ok".into();
        obs.mapped.mmap = Some("ok".into());
        count(&mut obs.write, "ok");
        obs.faulted = Some(Deltas::default());
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"flags":["MMAP","INIT_SHARED"],"pages":1,"create":"ok","mmap":"ok","write":{"ok":1},"faulted":{}}"#
        );
        obs.mapped.gmem.flags.push(GmemFlag::NO_DIRECT_MAP);
        obs.mapped.gmem.dropped_flags = vec![GmemFlag::NO_DIRECT_MAP];
        assert!(serde_json::to_string(&obs).unwrap().starts_with(
            r#"{"flags":["MMAP","INIT_SHARED","NO_DIRECT_MAP"],"dropped_flags":["NO_DIRECT_MAP"],"pages":1,"#
        ));
    }
}
