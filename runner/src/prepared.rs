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
    /// The SHA-256 of each saved VM's initramfs, by the kernel whose
    /// selftests it holds (`None`: the base alone): hashed once, not once
    /// per case. Made empty; filled as cases ask.
    pub image_digests: std::sync::Mutex<Vec<(Option<String>, [u8; 32])>>,
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

    /// The initramfs `case`'s saved VM boots with on `kernel`: the base
    /// and the members the case needs, no plan.
    pub(crate) fn saved_vm_image(
        &self,
        case: &Case,
        kernel: &str,
    ) -> Result<crate::saved_vm::Image<'_>> {
        let members = self.members_for(case, kernel)?;
        let which = (!members.is_empty()).then(|| kernel.to_string());
        let mut parts = vec![self.base_image.as_slice()];
        parts.extend(members);
        let mut known = self.image_digests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, digest)) = known.iter().find(|(w, _)| *w == which) {
            return Ok(crate::saved_vm::Image {
                parts,
                digest: *digest,
            });
        }
        let image = crate::saved_vm::Image::of(parts);
        known.push((which, image.digest));
        Ok(image)
    }
}
