//! `caps`: what this kernel's KVM offers for guest_memfd.
//!
//! KVM_GET_API_VERSION, then KVM_CHECK_EXTENSION for GUEST_MEMFD,
//! GUEST_MEMFD_FLAGS, VM_TYPES, USER_MEMORY2, MEMORY_ATTRIBUTES and
//! PRE_FAULT_MEMORY, both on /dev/kvm and on a VM of the chosen type: some
//! answers are per VM (virt/kvm/kvm_main.c answers GUEST_MEMFD_FLAGS with
//! `kvm_gmem_get_supported_flags(kvm)`, which drops INIT_SHARED for VMs with
//! private memory; MEMORY_ATTRIBUTES is 0 on /dev/kvm and per VM type on a
//! VM). Masks are decoded to names, so the direct-map removal flag shows up
//! as "NO_DIRECT_MAP" in guest_memfd_flags when the kernel carries it.

use serde::Serialize;

use super::{open_kvm, Probe};
use crate::errno;
use crate::flags::{self, VmType};
use crate::kvm::sys;
use crate::{Context, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::CapsArgs as Args;

#[derive(Debug, Serialize)]
pub struct Caps {
    pub guest_memfd: Cap,
    pub guest_memfd_flags: Cap,
    pub vm_types: Cap,
    pub user_memory2: Cap,
    pub memory_attributes: Cap,
    pub pre_fault_memory: Cap,
}

/// One KVM_CHECK_EXTENSION answer: supported or not, a decoded mask, or the
/// errno of the ioctl itself.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Cap {
    Supported(bool),
    Mask(Vec<String>),
    Error { error: String },
}

#[derive(Debug, Serialize)]
pub struct VmCaps {
    pub vm_type: VmType,
    /// "ok" or the KVM_CREATE_VM errno.
    pub create: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caps: Option<Caps>,
}

#[derive(Debug, Serialize)]
pub struct Observation {
    pub api_version: i32,
    pub system: Caps,
    pub vm: VmCaps,
}

/// Queries every capability with `check` (system or VM fd).
fn caps(check: impl Fn(u32) -> std::io::Result<i32>) -> Caps {
    let answer = |cap: u32, decode: Option<fn(u64) -> Vec<String>>| match check(cap) {
        Err(e) => Cap::Error {
            error: errno::of(&e),
        },
        Ok(v) => match decode {
            Some(decode) => Cap::Mask(decode(v as u32 as u64)),
            None => Cap::Supported(v > 0),
        },
    };
    Caps {
        guest_memfd: answer(sys::KVM_CAP_GUEST_MEMFD, None),
        guest_memfd_flags: answer(sys::KVM_CAP_GUEST_MEMFD_FLAGS, Some(flags::gmem_flag_names)),
        vm_types: answer(sys::KVM_CAP_VM_TYPES, Some(flags::vm_type_names)),
        user_memory2: answer(sys::KVM_CAP_USER_MEMORY2, None),
        memory_attributes: answer(
            sys::KVM_CAP_MEMORY_ATTRIBUTES,
            Some(flags::memory_attribute_names),
        ),
        pre_fault_memory: answer(sys::KVM_CAP_PRE_FAULT_MEMORY, None),
    }
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let kvm = open_kvm()?;
        let api_version = kvm.api_version().context(|| "KVM_GET_API_VERSION".into())?;
        let system = caps(|cap| kvm.check_extension(cap));
        let vm = match kvm.create_vm(self.vm_type.raw()) {
            Ok(vm) => VmCaps {
                vm_type: self.vm_type,
                create: "ok".into(),
                caps: Some(caps(|cap| vm.check_extension(cap))),
            },
            Err(e) => VmCaps {
                vm_type: self.vm_type,
                create: errno::of(&e),
                caps: None,
            },
        };
        Ok(Observation {
            api_version,
            system,
            vm,
        })
    }
}
