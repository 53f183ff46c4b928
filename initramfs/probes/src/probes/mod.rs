//! The probes, one module each. Each takes its own argument struct (parsed
//! with `deny_unknown_fields`, so a typo in a case is an error naming the
//! field) and returns its own observation struct.

pub mod caps;
pub mod create;
pub mod direct_map;
pub mod fallocate;
pub mod meminfo;
pub mod mmap_rw;
pub mod selftest;
pub mod vcpu_run;

use serde::Serialize;

use crate::kvm::Kvm;
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
