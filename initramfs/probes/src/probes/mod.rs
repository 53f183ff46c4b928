//! The probes, one module each. Each takes its own argument struct (parsed
//! with `deny_unknown_fields`, so a typo in a case is an error naming the
//! field) and returns its own observation struct.
//!
//! The argument structs repeat the fields they share (`vm_type`, `flags`)
//! instead of flattening a common struct: serde's `flatten` does not go with
//! `deny_unknown_fields`, and the error for a typo would stop listing the
//! expected fields.

pub mod caps;
pub mod create;
pub mod direct_map;
pub mod fallocate;
pub mod fault_inject;
pub mod gup_read;
pub mod meminfo;
pub mod mmap_rw;
pub mod selftest;
pub mod stale_tlb;
pub mod sweep;
pub mod vcpu_run;

use serde::Serialize;

use crate::errno;
use crate::flags::{gmem_mask, split_supported, GmemFlag, IfUnsupported, VmType};
use crate::kvm::{sys, GuestMemfd, Kvm, Vm};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_pages_differ_and_are_not_zero() {
        assert_ne!(pattern_page(0), pattern_page(1));
        assert!(pattern_page(3).iter().any(|b| *b != 0));
    }
}
