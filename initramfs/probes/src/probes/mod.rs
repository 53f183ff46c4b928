//! The probes, one module each. Each takes its own argument struct, defined
//! in the protocol crate (`gmem_protocol::args`: the schema the host checks
//! cases with at load, so a typo or an out-of-range value never reaches a
//! boot) and returns its own observation struct. What several probes do
//! alike lives once: here (the VM, the guest_memfd and its mapping, the
//! pattern) and in [`pages`] (writing, finding and reading back its pages).

pub mod caps;
pub mod create;
pub mod direct_map;
pub mod fallocate;
pub mod fault_inject;
pub mod gup_read;
pub mod isolation;
pub mod kselftest;
pub mod kvm_access;
pub mod lkdtm;
pub mod meminfo;
pub mod mmap_rw;
pub mod pages;
pub mod program;
pub mod replay;
pub mod selftest;
pub mod stale_tlb;
pub mod stress;
pub mod sweep;
pub mod vcpu_run;

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use crate::errno;
use crate::flags::{gmem_mask, split_supported, GmemFlag, IfUnsupported, VmType};
use crate::kvm::{sys, GuestMemfd, Kvm, Vm};
use crate::mapping::Mapping;
use crate::meminfo::DirectMap;
use crate::{Context, Result};

/// A probe: its arguments, run, give its observation.
pub trait Probe {
    type Output: Serialize;
    fn run(self) -> Result<Self::Output>;
}

/// Opens /dev/kvm; without it no KVM probe can work (exit 1).
pub fn open_kvm() -> Result<Kvm> {
    Kvm::open().context(|| "opening /dev/kvm".into())
}

/// Opens /dev/kvm and creates a VM of `vm_type`, for the probes whose
/// subject is the guest_memfd on it: without the VM they observe nothing
/// (exit 1). Only KVM_CREATE_VM needs /dev/kvm, which closes here.
pub fn create_vm(vm_type: VmType) -> Result<Vm> {
    open_kvm()?
        .create_vm(vm_type.raw())
        .context(|| format!("KVM_CREATE_VM({vm_type:?})"))
}

/// The flags to create a guest_memfd with on `vm`, and those dropped: with
/// `if_unsupported: drop`, the flags KVM_CHECK_EXTENSION(
/// KVM_CAP_GUEST_MEMFD_FLAGS) on the VM does not advertise (the answer is
/// per VM) are left out; with `keep`, all of them are used.
pub fn usable_flags(
    vm: &Vm,
    flags: &[GmemFlag],
    if_unsupported: IfUnsupported,
) -> Result<(Vec<GmemFlag>, Vec<GmemFlag>)> {
    match if_unsupported {
        IfUnsupported::Keep => Ok((flags.to_vec(), Vec::new())),
        IfUnsupported::Drop => {
            let supported = vm
                .check_extension(sys::KVM_CAP_GUEST_MEMFD_FLAGS)
                .context(|| "KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS)".into())?;
            Ok(split_supported(flags, supported as u32 as u64))
        }
    }
}

/// How the observation of a guest_memfd of whole pages starts: the flags
/// the case asked for, those dropped as unsupported, the size, and whether
/// KVM created it. Probes flatten it first into their own observation, so
/// these stay its first fields.
#[derive(Debug, Default, Serialize)]
pub struct GmemCreate {
    pub flags: Vec<GmemFlag>,
    /// Flags left out because the kernel does not advertise them
    /// (`if_unsupported: drop`); absent when none were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_flags: Vec<GmemFlag>,
    pub pages: usize,
    /// "ok" or the KVM_CREATE_GUEST_MEMFD errno.
    pub create: String,
}

/// Creates a guest_memfd of `pages` pages with `flags` (less the
/// unsupported ones with `if_unsupported: drop`) on `vm`: the start of the
/// observation, and the fd unless KVM refused it (a refusal is an
/// observation, its errno in `create`, not a failure).
pub fn create_gmem(
    vm: &Vm,
    flags: &[GmemFlag],
    if_unsupported: IfUnsupported,
    pages: usize,
) -> Result<(GmemCreate, Option<GuestMemfd>)> {
    let (used, dropped) = usable_flags(vm, flags, if_unsupported)?;
    let mut create = GmemCreate {
        flags: flags.to_vec(),
        dropped_flags: dropped,
        pages,
        create: String::new(),
    };
    let gmem = errno::record(
        &mut create.create,
        vm.create_guest_memfd((pages * PAGE) as u64, gmem_mask(&used)),
    );
    Ok((create, gmem))
}

/// How the observation of a mapped guest_memfd starts: [`GmemCreate`], then
/// "ok" or the errno of mapping the whole file (absent when KVM refused the
/// guest_memfd). Probes flatten it first into their own observation, as they
/// would [`GmemCreate`], so these stay its first fields.
#[derive(Debug, Default, Serialize)]
pub struct GmemMapped {
    #[serde(flatten)]
    pub gmem: GmemCreate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap: Option<String>,
}

/// Creates a guest_memfd of `pages` pages as [`create_gmem`] does and maps
/// the whole of it read-write with MAP_SHARED, the mapping the probes write
/// their pattern through: the start of the observation, and the fd and its
/// mapping unless KVM refused either (a refusal is an observation, not a
/// failure). They come back as two values so that each probe drops them in
/// the order it chooses.
pub fn create_mapped_gmem(
    vm: &Vm,
    flags: &[GmemFlag],
    if_unsupported: IfUnsupported,
    pages: usize,
) -> Result<(GmemMapped, Option<(GuestMemfd, Mapping)>)> {
    create_mapped_gmem_with(vm, flags, if_unsupported, pages, |gmem, len| {
        gmem.map(len, libc::MAP_SHARED)
    })
}

/// [`create_mapped_gmem`] with a mapping of the probe's own: `map` maps the
/// `len` bytes of the guest_memfd.
pub fn create_mapped_gmem_with(
    vm: &Vm,
    flags: &[GmemFlag],
    if_unsupported: IfUnsupported,
    pages: usize,
    map: impl FnOnce(&GuestMemfd, usize) -> io::Result<Mapping>,
) -> Result<(GmemMapped, Option<(GuestMemfd, Mapping)>)> {
    let (created, gmem) = create_gmem(vm, flags, if_unsupported, pages)?;
    let mut start = GmemMapped {
        gmem: created,
        mmap: None,
    };
    let Some(gmem) = gmem else {
        return Ok((start, None));
    };
    let mapping = errno::record(&mut start.mmap, map(&gmem, pages * PAGE));
    Ok((start, mapping.map(|m| (gmem, m))))
}

/// The DirectMap lines of /proc/meminfo now; without /proc/meminfo the
/// probes that watch them observe nothing (exit 1).
pub fn read_direct_map() -> Result<DirectMap> {
    DirectMap::read().context(|| "reading /proc/meminfo".into())
}

/// How many pages (or reads) ended in each state, by name: the stable form
/// of per-page outcomes, as which page is in which state is not meaningful.
pub type Counts = BTreeMap<String, usize>;

/// Counts one more in `state`.
pub fn count(counts: &mut Counts, state: impl Into<String>) {
    *counts.entry(state.into()).or_default() += 1;
}

/// The page size the probes lay memory out with.
pub const PAGE: usize = 4096;

/// The byte the probes write at `offset` of page `page`: differs from page to
/// page and within a page, and is never all zero over a page.
pub fn pattern_byte(page: usize, offset: usize) -> u8 {
    (page.wrapping_mul(31) ^ offset.wrapping_mul(7) ^ 0x5a) as u8
}

/// One page of the pattern.
pub fn pattern_page(page: usize) -> Vec<u8> {
    (0..PAGE).map(|o| pattern_byte(page, o)).collect()
}

/// The pattern over pages `0..pages`, as one buffer.
pub fn pattern(pages: usize) -> Vec<u8> {
    (0..pages).flat_map(pattern_page).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_pages_differ_and_are_not_zero() {
        assert_ne!(pattern_page(0), pattern_page(1));
        assert!(pattern_page(3).iter().any(|b| *b != 0));
        assert_eq!(pattern(2)[PAGE..], pattern_page(1));
    }

    /// The start of a mapped guest_memfd's observation reads as
    /// [`GmemCreate`] followed by `mmap`, and as [`GmemCreate`] alone when
    /// no mmap was tried.
    #[test]
    fn gmem_mapped_flattens_to_create_then_mmap() {
        let mut start = GmemMapped {
            gmem: GmemCreate {
                flags: vec![GmemFlag::MMAP],
                dropped_flags: vec![],
                pages: 2,
                create: "EINVAL".into(),
            },
            mmap: None,
        };
        assert_eq!(
            serde_json::to_string(&start).unwrap(),
            r#"{"flags":["MMAP"],"pages":2,"create":"EINVAL"}"#
        );
        start.gmem.create = "ok".into();
        start.mmap = Some("ENODEV".into());
        assert_eq!(
            serde_json::to_string(&start).unwrap(),
            r#"{"flags":["MMAP"],"pages":2,"create":"ok","mmap":"ENODEV"}"#
        );
    }
}
