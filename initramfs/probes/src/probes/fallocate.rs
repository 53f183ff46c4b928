//! `fallocate`: how a guest_memfd answers fallocate, and what it holds after.
//!
//! Creates one guest_memfd (size, flags), then runs each operation in order:
//! `allocate` (FALLOC_FL_KEEP_SIZE), `punch_hole` (PUNCH_HOLE|KEEP_SIZE) and
//! `allocate_mode0` (mode 0, which guest_memfd refuses with EOPNOTSUPP), and
//! `write`, which writes a pattern over the range through a mapping of the
//! file (MMAP flag needed), faulting its pages in.
//! After each, it reports the outcome and the file's size in pages from
//! `st_blocks` (guest_memfd does not account blocks: it stays 0 on 7.3) and,
//! when the guest_memfd can be mmapped (MMAP flag), how many of its pages are
//! in the page cache and up to date (mincore). On 7.3 fallocate allocates
//! folios without marking them up to date (that happens when a page is first
//! faulted in or prepared for the guest), so `allocate` alone leaves
//! `uptodate_pages` unchanged while `write` and `punch_hole` move it.

use serde::Serialize;

use super::{create_vm, pattern_byte, Probe, PAGE};
use crate::errno;
use crate::flags::{gmem_mask, GmemFlag};
use crate::kvm::GuestMemfd;
use crate::mapping::Mapping;
use crate::{Context, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::FallocateArgs as Args;
pub use gmem_protocol::args::{FallocateOp as Op, FallocateOpKind as OpKind};

/// The fallocate(2) mode of `op`.
fn mode(op: OpKind) -> i32 {
    match op {
        OpKind::Allocate => libc::FALLOC_FL_KEEP_SIZE,
        OpKind::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        OpKind::AllocateMode0 => 0,
        OpKind::Write => unreachable!("write is not a fallocate mode"),
    }
}

/// What the file holds at one moment.
#[derive(Debug, Serialize)]
pub struct Held {
    /// st_blocks in pages (st_blocks counts 512-byte units).
    pub blocks_pages: u64,
    /// Pages in the page cache and up to date (mincore), when the
    /// guest_memfd can be mmapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptodate_pages: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub op: Op,
    pub result: String,
    #[serde(flatten)]
    pub after: Held,
}

#[derive(Debug, Serialize)]
pub struct Observation {
    /// "ok" or the KVM_CREATE_GUEST_MEMFD errno.
    pub create: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initially: Option<Held>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<Outcome>,
}

fn held(gmem: &GuestMemfd, view: Option<&Mapping>) -> Result<Held> {
    let st = gmem.stat().context(|| "fstat of the guest_memfd".into())?;
    let uptodate_pages = match view {
        Some(m) => Some(
            m.resident_pages()
                .context(|| "mincore of the guest_memfd mapping".into())?,
        ),
        None => None,
    };
    Ok(Held {
        blocks_pages: st.st_blocks as u64 * 512 / PAGE as u64,
        uptodate_pages,
    })
}

/// Writes the pattern over op's range through the mapping: "ok", an errno,
/// or "no_mapping" without the MMAP flag.
fn write(view: Option<&Mapping>, op: &Op) -> String {
    let Some(map) = view else {
        return "no_mapping".into();
    };
    let (offset, len) = (op.offset as usize, op.len as usize);
    if offset.checked_add(len).is_none_or(|end| end > map.len()) {
        return "out_of_range".into();
    }
    let bytes: Vec<u8> = (offset..offset + len)
        .map(|o| pattern_byte(o / PAGE, o % PAGE))
        .collect();
    errno::outcome(&map.copy_in(offset, &bytes))
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let vm = create_vm(self.vm_type)?;
        let mask = gmem_mask(&self.flags);
        let mut obs = Observation {
            create: String::new(),
            initially: None,
            ops: vec![],
        };
        let Some(gmem) = errno::record(&mut obs.create, vm.create_guest_memfd(self.size, mask))
        else {
            return Ok(obs);
        };
        // mincore on this mapping sees the file's page cache; `write` ops
        // go through it too.
        let view = if mask & GmemFlag::MMAP.mask() != 0 {
            Some(
                gmem.map(self.size as usize, libc::MAP_SHARED)
                    .context(|| "mmap of the guest_memfd".into())?,
            )
        } else {
            None
        };
        obs.initially = Some(held(&gmem, view.as_ref())?);
        for op in self.ops {
            let result = match op.op {
                OpKind::Write => write(view.as_ref(), &op),
                _ => errno::outcome(&gmem.fallocate(mode(op.op), op.offset, op.len)),
            };
            obs.ops.push(Outcome {
                op,
                result,
                after: held(&gmem, view.as_ref())?,
            });
        }
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest_memfd KVM refuses is all the observation holds.
    #[test]
    fn refused_create_is_the_whole_observation() {
        let obs = Observation {
            create: "EINVAL".into(),
            initially: None,
            ops: vec![],
        };
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"create":"EINVAL"}"#
        );
    }
}
