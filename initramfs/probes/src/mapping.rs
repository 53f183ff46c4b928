//! An owned mmap, and ways to touch it that cannot kill the probe.
//!
//! A guest_memfd mapping can refuse a fault (SIGBUS for private memory, for
//! instance). Touching it directly would turn an observation into a dead
//! probe, so the `copy_*` methods move the bytes through a pipe instead: the
//! kernel's uaccess then takes the fault, and a refused fault comes back as
//! EFAULT. The user page tables are used either way, as a direct access would.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A region from mmap, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a Mapping owns its range; it hands out only a raw pointer, and
// its own copies go through the kernel (a pipe), which is safe from any
// thread. The stress probe's threads share mappings this way.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// mmap(NULL, len, prot, flags, fd or -1, 0).
    pub fn map(fd: Option<RawFd>, len: usize, prot: i32, flags: i32) -> io::Result<Mapping> {
        // SAFETY: a NULL hint lets the kernel choose a fresh range, so no
        // existing memory is replaced.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.unwrap_or(-1), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Like [`Mapping::map`] (offset 0), at an address that is a multiple of
    /// `align` (a power of two): a range of the address space is reserved,
    /// the mapping placed in it with MAP_FIXED and the rest given back.
    /// With `align` = 2 MiB, the pages of each 2 MiB window share one page
    /// table, so faulting one of them creates it for all.
    pub fn map_aligned(
        fd: Option<RawFd>,
        len: usize,
        align: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<Mapping> {
        assert!(align.is_power_of_two());
        let reserve = Mapping::map(
            None,
            len + align,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        )?;
        let start = (reserve.addr() as usize).next_multiple_of(align);
        // SAFETY: [start, start + len) lies inside the reservation, which
        // this function owns, so MAP_FIXED replaces nothing else.
        let ptr = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                prot,
                flags | libc::MAP_FIXED,
                fd.unwrap_or(-1),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let (base, total) = (reserve.addr() as usize, reserve.len());
        std::mem::forget(reserve);
        // SAFETY: the head and tail of the reservation are ours and unused;
        // the new mapping stays.
        unsafe {
            if start > base {
                libc::munmap(base as *mut libc::c_void, start - base);
            }
            let end = start + len;
            if base + total > end {
                libc::munmap(end as *mut libc::c_void, base + total - end);
            }
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Anonymous read-write memory.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        Mapping::map(
            None,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        )
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn check(&self, offset: usize, len: usize) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(io::Error::other(format!(
                "range {offset:#x}+{len:#x} outside a mapping of {:#x} bytes",
                self.len
            ))),
        }
    }

    /// Writes `bytes` at `offset` through the kernel's uaccess; a fault the
    /// mapping refuses gives EFAULT rather than a signal.
    pub fn copy_in(&self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        self.check(offset, bytes.len())?;
        let (rd, wr) = pipe(0)?;
        for (i, chunk) in bytes.chunks(4096).enumerate() {
            write_all(wr.as_raw_fd(), chunk.as_ptr(), chunk.len())?;
            // SAFETY: the destination lies inside this mapping (checked
            // above); the kernel writes it with a fault-handling copy.
            let dst = unsafe { self.ptr.add(offset + i * 4096) };
            read_exact(rd.as_raw_fd(), dst, chunk.len())?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` through the kernel's uaccess; a fault
    /// the mapping refuses gives EFAULT rather than a signal.
    pub fn copy_out(&self, offset: usize, len: usize) -> io::Result<Vec<u8>> {
        self.check(offset, len)?;
        let (rd, wr) = pipe(0)?;
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(4096);
            // SAFETY: the source lies inside this mapping (checked above);
            // the kernel reads it with a fault-handling copy.
            let src = unsafe { self.ptr.add(offset + done) };
            write_all(wr.as_raw_fd(), src, n)?;
            // SAFETY: `out[done..done + n]` is in bounds.
            read_exact(rd.as_raw_fd(), unsafe { out.as_mut_ptr().add(done) }, n)?;
            done += n;
        }
        Ok(out)
    }

    /// How many of the mapping's pages are resident in the page cache
    /// (mincore): for a file mapping this counts the file's allocated pages
    /// whether or not this mapping has faulted them in.
    pub fn resident_pages(&self) -> io::Result<usize> {
        let page = crate::pagemap::page_size();
        let mut vec = vec![0u8; self.len.div_ceil(page)];
        // SAFETY: `vec` has one byte per page of the range, as mincore needs.
        if unsafe { libc::mincore(self.ptr.cast(), self.len, vec.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(vec.iter().filter(|b| **b & 1 != 0).count())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, unmapped only here.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A new pipe, read end first, created with O_CLOEXEC and `flags` (e.g.
/// O_NONBLOCK): the uaccess copies here move bytes through one, and so do
/// the probes that have the kernel copy into or out of their mappings.
pub fn pipe(flags: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes `len` bytes at `ptr` to `fd`.
fn write_all(fd: RawFd, ptr: *const u8, len: usize) -> io::Result<()> {
    // A write that takes nothing could read nothing of the range.
    let stalled = || io::Error::from_raw_os_error(libc::EFAULT);
    transfer_all(len, stalled, |done, left| {
        // SAFETY: `done < len`, so the pointer stays within the range; the
        // kernel reads `left` bytes there with a fault-handling copy, so an
        // unmapped or refused page gives EFAULT, not a signal.
        unsafe { libc::write(fd, ptr.add(done).cast(), left) }
    })
}

/// Fills `len` bytes at `ptr` from `fd`.
fn read_exact(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<()> {
    let stalled = || io::Error::from(io::ErrorKind::UnexpectedEof);
    transfer_all(len, stalled, |done, left| {
        // SAFETY: `done < len`, so the pointer stays within the range; the
        // kernel writes at most `left` bytes there with a fault-handling
        // copy; the caller made sure the range is ours.
        unsafe { libc::read(fd, ptr.add(done).cast(), left) }
    })
}

/// The loop that read(2) and write(2) both need, written once: calls
/// `call(done, left)` (one syscall over the `left` bytes from offset `done`)
/// until all `len` bytes have moved, retrying EINTR. A call that moves
/// nothing gives `stalled()` rather than looping forever.
fn transfer_all(
    len: usize,
    stalled: impl Fn() -> io::Error,
    mut call: impl FnMut(usize, usize) -> isize,
) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let n = call(done, len - done);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(stalled());
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_through_a_pipe() {
        let m = Mapping::anonymous(3 * 4096).unwrap();
        let bytes: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        m.copy_in(100, &bytes).unwrap();
        assert_eq!(m.copy_out(100, 5000).unwrap(), bytes);
        assert!(m.copy_in(3 * 4096 - 1, &[1, 2]).is_err());
    }

    #[test]
    fn aligned_mapping_is_aligned_and_usable() {
        let align = 2 << 20;
        let m = Mapping::map_aligned(
            None,
            3 * 4096,
            align,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        )
        .unwrap();
        assert_eq!(m.addr() as usize % align, 0);
        m.copy_in(0, &[7; 3 * 4096]).unwrap();
        assert_eq!(m.copy_out(4096, 2).unwrap(), [7, 7]);
    }

    #[test]
    fn refused_access_is_efault_not_a_signal() {
        let m = Mapping::map(
            None,
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        )
        .unwrap();
        let err = m.copy_out(0, 16).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
        let err = m.copy_in(0, &[1]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
    }
}
