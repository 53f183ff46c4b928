//! What the runs of a suite need built, once: the kernels, the initramfs
//! base with the guest binaries, the KVM selftests per kernel, and how the
//! CPU is virtualized. Built by `suite::prepare`.

use anyhow::{Context, Result};

use crate::accel::Accel;
use crate::case::Case;
use crate::kernel::BuiltKernel;
use crate::pack;

/// What the runs need, built.
pub struct Prepared {
    pub kernels: Vec<BuiltKernel>,
    /// The guest binaries: packed into the hermetic initramfs, run from the
    /// host's filesystem under vng.
    pub bins: pack::GuestBinaries,
    pub base_image: Vec<u8>,
    pub accel: Accel,
    /// Per kernel (by name), the initramfs member with its KVM selftests,
    /// for the kernels that some selected case runs them on.
    pub kselftests: Vec<(String, Vec<u8>)>,
}

impl Prepared {
    /// The extra initramfs members `case` needs on `kernel`.
    pub(crate) fn members_for(&self, case: &Case, kernel: &str) -> Result<Vec<&[u8]>> {
        if case.kselftests().is_empty() {
            return Ok(vec![]);
        }
        let member = self
            .kselftests
            .iter()
            .find(|(k, _)| k == kernel)
            .map(|(_, m)| m.as_slice())
            .with_context(|| {
                format!(
                    "case {} runs KVM selftests ({}) but none were built for kernel {kernel}",
                    case.name,
                    case.kselftests().join(", ")
                )
            })?;
        Ok(vec![member])
    }
}
