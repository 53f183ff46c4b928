//! Staying on one CPU, and making that CPU switch to another process.
//!
//! Both serve TLB observations. The kernel's direct-map accesses load the
//! TLB of the CPU that makes them, and a `noflush` direct-map change leaves
//! that entry behind; a probe that wants to see (or rule out) such a stale
//! entry must make its accesses on that same CPU, and then needs a way to
//! get the TLB flushed for certain.
//!
//! [`switch_to_another_process`] does that under QEMU TCG: switching to a
//! process with another `mm` writes CR3, and TCG's software TLB
//! (`cpu_x86_update_cr3()` -> `tlb_flush()`) drops every entry on any CR3
//! write, global ones included. Real hardware keeps global entries (the
//! kernel's direct map is mapped global when PTI is off) across a CR3 write,
//! so there the switch guarantees nothing for kernel addresses.

use std::io;

/// The CPU the caller runs on now.
pub fn current() -> io::Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cpu as usize)
}

/// Pins the calling thread (and the children it forks later) to the CPU it
/// runs on now, and returns that CPU. If the case pinned the step already
/// (`cpu:` in the case), this changes nothing.
pub fn pin_here() -> io::Result<usize> {
    let cpu = current()?;
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays in bounds
    // (checked above); sched_setaffinity reads a live set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // The affinity change moves us at once if we were elsewhere; we were not.
    Ok(cpu)
}

/// The calling thread pinned to its CPU until this is dropped, when its
/// CPU affinity is what it was ([`pin_here`] for a while, for one thread of
/// several).
pub struct Pinned(libc::cpu_set_t);

impl Pinned {
    pub fn here() -> io::Result<Pinned> {
        // SAFETY: a zeroed cpu_set_t is a valid set for the kernel to fill.
        let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `old` is a live, writable cpu_set_t of the size given.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) }
            < 0
        {
            return Err(io::Error::last_os_error());
        }
        pin_here()?;
        Ok(Pinned(old))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: the set read in `here`, passed by reference.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// Forks a child that inherits this thread's CPU affinity and exits at once,
/// and waits for it: with the caller pinned to one CPU ([`pin_here`]) the
/// child runs on that CPU while the caller sleeps in waitpid, so the CPU
/// switches to the child's address space and back (two CR3 writes).
pub fn switch_to_another_process() -> io::Result<()> {
    // SAFETY: the child only calls the async-signal-safe _exit, so a
    // multi-threaded caller (stress's threads) may fork here too.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: _exit ends the child without running the parent's
        // destructors or flushing its buffers twice.
        unsafe { libc::_exit(0) };
    }
    wait_child(pid).map(drop)
}

/// Waits for the child `pid` to end, retrying EINTR, and gives its wait
/// status (decode it with `libc::WIFEXITED` and friends).
pub fn wait_child(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a live int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_to_the_current_cpu_and_switches() {
        // In a forked test process, so the pin does not leak into other
        // tests running on this thread pool.
        // SAFETY: the child only makes syscalls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = pin_here().is_ok_and(|cpu| current().ok() == Some(cpu))
                && switch_to_another_process().is_ok();
            // SAFETY: ends the forked test child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
