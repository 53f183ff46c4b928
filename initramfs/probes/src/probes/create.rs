//! `create`: which (size, flags) pairs KVM_CREATE_GUEST_MEMFD accepts.
//!
//! Each attempt is made on one VM of the chosen type and gives "ok" or the
//! errno name. Upstream 7.3 (`kvm_gmem_create`) refuses flags outside
//! `kvm_gmem_get_supported_flags()` and sizes that are zero, negative or not
//! page aligned, all with EINVAL; a kernel carrying the direct-map removal
//! series also accepts NO_DIRECT_MAP (bit 2).

use serde::Serialize;

use super::{create_vm, Probe};
use crate::errno;
use crate::flags::{gmem_mask, VmType};
use crate::Result;

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::CreateArgs as Args;
pub use gmem_protocol::args::CreateAttempt as Attempt;

#[derive(Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub attempt: Attempt,
    /// "ok" or the errno name.
    pub result: String,
}

#[derive(Debug, Serialize)]
pub struct Observation {
    pub vm_type: VmType,
    pub attempts: Vec<Outcome>,
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let vm = create_vm(self.vm_type)?;
        let attempts = self
            .attempts
            .into_iter()
            .map(|attempt| {
                // The fd, if any, is closed at once: each attempt stands alone.
                let result =
                    errno::outcome(&vm.create_guest_memfd(attempt.size, gmem_mask(&attempt.flags)));
                Outcome { attempt, result }
            })
            .collect();
        Ok(Observation {
            vm_type: self.vm_type,
            attempts,
        })
    }
}
