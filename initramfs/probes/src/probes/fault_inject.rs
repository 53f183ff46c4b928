//! `fault_inject`: what a failed direct-map removal does, and whether the
//! restore can fail, with the kernel's page allocation fault injection
//! (CONFIG_FAIL_PAGE_ALLOC, debugfs `fail_page_alloc/`) limited to this
//! probe's own allocations (`task-filter` and /proc/self/make-it-fail).
//!
//! Removing a page from the direct map (`set_direct_map_invalid_noflush()`)
//! must split the 2M or 1G direct-map page around it the first time a page
//! of that region is removed, and the split allocates a page table
//! (`split_large_page()` -> `pte_alloc_one_kernel()` in
//! arch/x86/mm/pat/set_memory.c). Putting the page back needs no allocation,
//! as the region is split already: the RFC's `BUG_ON()` on a failed restore
//! should be unreachable on x86. This probe checks both.
//!
//! Setup: a guest_memfd of `pages` pages (flags, default
//! MMAP|INIT_SHARED|NO_DIRECT_MAP; `if_unsupported: "drop"` leaves out those
//! the kernel does not advertise), all allocated with fallocate(KEEP_SIZE)
//! (so a fault finds its folio and allocates none), mmapped at a 2 MiB
//! aligned address, and the first page of each 2 MiB window faulted in, so
//! that every page table a later fault needs exists. Injection then fails
//! page allocations of order >= 0, waiting ones included, highmem ones
//! (user pages) excluded, and only while the probe arms it.
//!
//! - `uaccess_fault`: for each other page in turn, arm one failure and fault
//!   the page in by read(2) from a pipe into it (a kernel uaccess), until a
//!   fault consumes the failure: that page is the first removed from an
//!   unsplit region (earlier ones lay in split regions and were removed
//!   without allocating). Observed: `injected` (some fault consumed it; if
//!   not, nothing else is reported), `failed_in_set_direct_map` (the
//!   failure's stack trace in the kernel log, `verbose: 2`, runs through
//!   `set_direct_map_*()`: the split's page table), `result` of the read (the fault gives
//!   VM_FAULT_OOM, which a uaccess turns into EFAULT), `direct_map_4k`
//!   (the sign of the DirectMap4k change across it: "unchanged" when the
//!   split failed), `retry` (the same read without injection), and
//!   `direct_map_after` ("present" or "EFAULT": /dev/mem at the page's PFN
//!   after the retry and a TLB flush). The RFC marks the folio up to date
//!   before it removes it, and removes only folios that were not: the
//!   retry maps the page and leaves it in the direct map for good
//!   ("present"); a series that removes on every fault until the folio is
//!   marked removed gives "EFAULT".
//! - `user_fault`: the same with a plain store from user mode, in a child
//!   process (pinned to the same CPU, arming itself): a user-mode fault that
//!   gives VM_FAULT_OOM is retried ("Huh VM_FAULT_OOM leaked out to the #PF
//!   handler. Retrying PF" in the log), and the retry succeeds as only one
//!   failure was armed. `result` is how the child ended ("exited 0",
//!   "SIGBUS", ...); `direct_map_4k` here spans the retry too ("grew" where
//!   the retry removes the page, splitting the region the failure left
//!   whole; "unchanged" where it does not); no `retry` field.
//! - `restore`: a second guest_memfd of `restore_pages` pages, faulted in
//!   (removed) without injection; then with every page allocation of the
//!   probe failing (`times` 1000), punch a hole over the first half, and
//!   close the rest (munmap, close: the last fput runs before the syscall
//!   returns, still armed). Observed: `before` (/dev/mem at their PFNs:
//!   counts), each step's result, and `after` (/dev/mem after both). A BUG()
//!   in the restore would kill the probe: the console shows it. How many
//!   allocations the injection failed in each step goes to the console
//!   only: it counts incidental allocations too (a new slab page when the
//!   inode's mapping is torn down, say), which depend on what the kernel
//!   did before, so it differs from run to run even on stock, where nothing
//!   is restored (seen: 0, and 1 with other VMs running beside).
//!
//! `fail_page_alloc` is "ok", or the errno of setting injection up
//! ("ENOENT": the kernel has no CONFIG_FAIL_PAGE_ALLOC), and then nothing
//! else is observed. The knobs are set back to the kernel's defaults at the
//! end.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use serde::Serialize;

use super::pages::{write_pattern_page, PhysMem};
use super::{
    create_mapped_gmem, create_mapped_gmem_with, create_vm, pattern, pattern_page, read_direct_map,
    Counts, GmemMapped, Probe, PAGE,
};
use crate::errno;
use crate::kvm::GuestMemfd;
use crate::mapping::{pipe, Mapping};
use crate::meminfo::delta;
use crate::{cpu, Context, Failure, Result};

const FAIL_DIR: &str = "/sys/kernel/debug/fail_page_alloc";
/// Pages per 2 MiB window of the address space: one page table each.
const WINDOW: usize = gmem_protocol::args::FAULT_INJECT_WINDOW;
/// Failures armed for the restore steps: more than they could allocate.
const MANY: i64 = 1000;

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::FaultInjectArgs as Args;

/// One fault phase.
#[derive(Debug, Default, Serialize)]
pub struct FaultPhase {
    pub injected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_in_set_direct_map: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_map_4k: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_map_after: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Restore {
    #[serde(flatten)]
    pub mapped: GmemMapped,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// /dev/mem at the pages' PFNs: how many read ("present") and how many
    /// gave each errno.
    #[serde(skip_serializing_if = "Counts::is_empty")]
    pub before: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub punch_hole: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close: Option<String>,
    #[serde(skip_serializing_if = "Counts::is_empty")]
    pub after: Counts,
}

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    pub fail_page_alloc: String,
    /// The guest_memfd and its 2 MiB aligned mapping; absent when injection
    /// could not be set up.
    #[serde(flatten)]
    pub mapped: Option<GmemMapped>,
    /// fallocate(KEEP_SIZE) of every page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocate: Option<String>,
    /// Faulting in the first page of each 2 MiB window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefault: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uaccess_fault: Option<FaultPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_fault: Option<FaultPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
}

/// The fail_page_alloc knobs, set back to the kernel's defaults on drop
/// (FAULT_ATTR_INITIALIZER and mm/fail_page_alloc.c).
struct FailPageAlloc;

impl FailPageAlloc {
    fn set(knob: &str, value: &str) -> io::Result<()> {
        std::fs::write(format!("{FAIL_DIR}/{knob}"), value)
    }

    /// Fails the next `times` page allocations of tasks with make-it-fail
    /// set (none yet: `times` starts at 0).
    fn setup(verbose: u32) -> io::Result<FailPageAlloc> {
        std::fs::metadata(FAIL_DIR)?;
        let knobs = FailPageAlloc;
        for (knob, value) in [
            ("times", "0".to_string()),
            ("task-filter", "Y".into()),
            ("probability", "100".into()),
            ("interval", "1".into()),
            ("space", "0".into()),
            ("min-order", "0".into()),
            ("ignore-gfp-wait", "N".into()),
            ("ignore-gfp-highmem", "Y".into()),
            ("verbose", verbose.to_string()),
        ] {
            FailPageAlloc::set(knob, &value)?;
        }
        Ok(knobs)
    }

    fn set_times(&self, n: i64) -> Result<()> {
        FailPageAlloc::set("times", &n.to_string())
            .context(|| "setting fail_page_alloc/times".into())
    }

    /// How many armed failures are left.
    fn times(&self) -> Result<i64> {
        let text = std::fs::read_to_string(format!("{FAIL_DIR}/times"))
            .context(|| "reading fail_page_alloc/times".into())?;
        text.trim()
            .parse()
            .map_err(|_| Failure::Work(format!("fail_page_alloc/times: {text:?}")))
    }
}

impl Drop for FailPageAlloc {
    fn drop(&mut self) {
        for (knob, value) in [
            ("probability", "0"),
            ("times", "1"),
            ("task-filter", "N"),
            ("min-order", "1"),
            ("ignore-gfp-wait", "Y"),
            ("ignore-gfp-highmem", "Y"),
            ("verbose", "2"),
        ] {
            let _ = FailPageAlloc::set(knob, value);
        }
    }
}

/// This task's /proc/self/make-it-fail, opened once so that arming and
/// disarming allocate nothing.
struct MakeItFail(File);

impl MakeItFail {
    fn open() -> Result<MakeItFail> {
        OpenOptions::new()
            .write(true)
            .open("/proc/self/make-it-fail")
            .map(MakeItFail)
            .context(|| "opening /proc/self/make-it-fail".into())
    }

    fn set(&self, on: bool) -> Result<()> {
        self.0
            .write_at(if on { b"1" } else { b"0" }, 0)
            .map(drop)
            .context(|| "writing /proc/self/make-it-fail".into())
    }
}

impl Drop for MakeItFail {
    fn drop(&mut self) {
        let _ = self.0.write_at(b"0", 0);
    }
}

/// The kernel log from now on (/dev/kmsg, non-blocking).
struct Kmsg(File);

impl Kmsg {
    fn open() -> Result<Kmsg> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map(Kmsg)
            .context(|| "opening /dev/kmsg".into())
    }

    /// Skips what is logged so far.
    fn skip(&self) -> Result<()> {
        // SAFETY: lseek on our own fd.
        if unsafe { libc::lseek(self.0.as_raw_fd(), 0, libc::SEEK_END) } < 0 {
            return Err(io::Error::last_os_error()).context(|| "seeking /dev/kmsg".into());
        }
        Ok(())
    }

    /// The messages logged since the last call (or [`Kmsg::skip`]).
    fn new_messages(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.push(message(&String::from_utf8_lossy(&buf[..n])).to_string()),
                // EPIPE: records were overwritten; the next read goes on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

/// The text of a /dev/kmsg record ("6,123,456,-;text\n").
fn message(record: &str) -> &str {
    let text = record.split_once(';').map_or(record, |(_, t)| t);
    text.lines().next().unwrap_or("")
}

/// Was an injected failure's allocation made under a direct-map change?
/// Its stack trace (logged after "FAULT_INJECTION: forcing a failure") has
/// a reliable frame `set_direct_map_*` (`split_large_page()` and
/// `pte_alloc_one_kernel()` are inlined into `__change_page_attr_set_clr()`,
/// whose only allocation is that page table).
fn failed_in_set_direct_map(messages: &[String]) -> bool {
    let start = messages
        .iter()
        .position(|m| m.starts_with("FAULT_INJECTION: forcing a failure"));
    start.is_some_and(|i| {
        messages[i..]
            .iter()
            .any(|m| m.trim_start().starts_with("set_direct_map_"))
    })
}

/// How a child ended.
fn wait_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        match sig {
            libc::SIGBUS => "SIGBUS".into(),
            libc::SIGSEGV => "SIGSEGV".into(),
            libc::SIGKILL => "SIGKILL".into(),
            libc::SIGABRT => "SIGABRT".into(),
            n => format!("signal {n}"),
        }
    } else {
        format!("status {status:#x}")
    }
}

fn direct_map_4k() -> Result<Option<u64>> {
    Ok(read_direct_map()?.k4)
}

/// mmap(MAP_SHARED) of `len` bytes of `gmem` at a 2 MiB aligned address, so
/// that the pages of each [`WINDOW`] share one page table: faulting in the
/// first page of a window creates the table the others need.
fn map_windows(gmem: &GuestMemfd, len: usize) -> io::Result<Mapping> {
    Mapping::map_aligned(
        Some(gmem.raw_fd()),
        len,
        WINDOW * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
    )
}

/// What the probe works with during the fault phases.
struct Bench<'a> {
    fail: &'a FailPageAlloc,
    arm: &'a MakeItFail,
    kmsg: Kmsg,
    verbose: u32,
    phys: PhysMem,
    map: Mapping,
}

impl Bench<'_> {
    /// Whether the failure's logged trace runs through `set_direct_map_*`;
    /// `None` when traces are not logged (verbose < 2).
    fn traced_in_set_direct_map(&mut self) -> Option<bool> {
        let messages = self.kmsg.new_messages();
        (self.verbose >= 2).then(|| failed_in_set_direct_map(&messages))
    }

    fn page_ptr(&self, page: usize) -> *mut u8 {
        // SAFETY (for callers): page < pages, so inside the mapping.
        unsafe { self.map.as_ptr().add(page * PAGE) }
    }

    /// /dev/mem at the PFN behind `page` (mapped by now): "present" or the
    /// errno.
    fn devmem_state(&self, page: usize) -> Result<String> {
        Ok(match self.phys.pfn(&self.map, page)? {
            Some(pfn) => self.phys.presence(pfn),
            None => "no_pfn".into(),
        })
    }

    /// Arms one failure, has `fault` fault a page in (it gives the phase's
    /// `result`), and tells whether the failure was consumed: `None` when no
    /// allocation was failed (the page was removed without one, or nothing
    /// is removed), else the phase as observed across the fault.
    fn inject_one(
        &mut self,
        fault: impl FnOnce(&Self) -> Result<String>,
    ) -> Result<Option<FaultPhase>> {
        self.fail.set_times(1)?;
        let before = direct_map_4k()?;
        self.kmsg.skip()?;
        let result = fault(self)?;
        if self.fail.times()? != 0 {
            return Ok(None);
        }
        Ok(Some(FaultPhase {
            injected: true,
            failed_in_set_direct_map: self.traced_in_set_direct_map(),
            result: Some(result),
            direct_map_4k: delta(before, direct_map_4k()?),
            ..Default::default()
        }))
    }

    /// Faults `page` in by read(2) from a pipe with one failure armed.
    /// `None` when no allocation was failed.
    fn try_uaccess(&mut self, page: usize) -> Result<Option<FaultPhase>> {
        let (rd, wr) = pipe(0).context(|| "pipe2".into())?;
        let data = pattern_page(page);
        // SAFETY: `data` is PAGE live bytes.
        if unsafe { libc::write(wr.as_raw_fd(), data.as_ptr().cast(), PAGE) } != PAGE as isize {
            return Err(io::Error::last_os_error()).context(|| "filling a pipe".into());
        }
        self.inject_one(|bench| {
            bench.arm.set(true)?;
            // SAFETY: the destination is one page inside our mapping, written
            // by the kernel with a fault-handling copy.
            let r = unsafe { libc::read(rd.as_raw_fd(), bench.page_ptr(page).cast(), PAGE) };
            let result = if r < 0 {
                errno::of(&io::Error::last_os_error())
            } else if r as usize == PAGE {
                "ok".into()
            } else {
                "partial".into()
            };
            bench.arm.set(false)?;
            Ok(result)
        })
    }

    /// Faults `page` in with a store from user mode, in a child that arms
    /// one failure for itself. `None` when no allocation was failed.
    fn try_user_store(&mut self, page: usize) -> Result<Option<FaultPhase>> {
        let neighbour = self.page_ptr(page - page % WINDOW);
        let target = self.page_ptr(page);
        let path = CString::new("/proc/self/make-it-fail").expect("no NUL");
        self.inject_one(|_| {
            // SAFETY: single-threaded; the child only makes syscalls,
            // volatile accesses inside our mapping, and _exits.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(io::Error::last_os_error()).context(|| "fork".into());
            }
            if pid == 0 {
                // SAFETY: the child's own make-it-fail (its /proc/self); both
                // pages lie in the shared mapping it inherited; the
                // neighbour, already faulted in by the parent, builds the
                // child's page tables (fork copies none for a shared file
                // mapping) before the failure is armed.
                unsafe {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    std::ptr::read_volatile(neighbour);
                    libc::write(fd, b"1".as_ptr().cast(), 1);
                    std::ptr::write_volatile(target, 0x5a);
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::_exit(0);
                }
            }
            let status = cpu::wait_child(pid).context(|| "waitpid".into())?;
            Ok(wait_status(status))
        })
    }
}

/// Tries `try_page` on the pages `candidates` yields, in turn, until one
/// consumes the armed failure: that page and its phase, or `None` when none
/// did. Takes only the candidates it tries, so the next phase goes on with
/// the pages after it.
fn first_injected(
    candidates: &mut impl Iterator<Item = usize>,
    mut try_page: impl FnMut(usize) -> Result<Option<FaultPhase>>,
) -> Result<Option<(usize, FaultPhase)>> {
    for page in candidates {
        if let Some(phase) = try_page(page)? {
            return Ok(Some((page, phase)));
        }
    }
    Ok(None)
}

/// The restore phase, on a guest_memfd of its own.
fn restore_phase(
    vm: &crate::kvm::Vm,
    args: &Args,
    fail: &FailPageAlloc,
    arm: &MakeItFail,
    phys: &PhysMem,
) -> Result<Restore> {
    let n = args.restore_pages;
    let (mapped, gmem_map) = create_mapped_gmem(vm, &args.flags, args.if_unsupported, n)?;
    let mut obs = Restore {
        mapped,
        ..Default::default()
    };
    let Some((gmem, map)) = gmem_map else {
        return Ok(obs);
    };
    if errno::record(&mut obs.write, map.copy_in(0, &pattern(n))).is_none() {
        return Ok(obs);
    }
    let mut pfns = Vec::new();
    for page in 0..n {
        pfns.push(
            phys.pfn(&map, page)?
                .ok_or_else(|| Failure::Work(format!("no PFN for page {page}")))?,
        );
    }
    let read_all = || -> Result<Counts> {
        cpu::switch_to_another_process().context(|| "forcing a context switch".into())?;
        Ok(phys.presence_counts(pfns.iter().copied()))
    };
    obs.before = read_all()?;

    let punched = (n / 2 * PAGE) as u64;
    fail.set_times(MANY)?;
    arm.set(true)?;
    let punch = gmem.punch_hole(0, punched);
    arm.set(false)?;
    obs.punch_hole = Some(errno::outcome(&punch));
    eprintln!(
        "fault_inject: restore: {} allocations failed during the punch hole",
        MANY - fail.times()?
    );

    fail.set_times(MANY)?;
    arm.set(true)?;
    drop(map);
    drop(gmem);
    arm.set(false)?;
    obs.close = Some("ok".into());
    eprintln!(
        "fault_inject: restore: {} allocations failed during munmap and close",
        MANY - fail.times()?
    );
    fail.set_times(0)?;
    obs.after = read_all()?;
    Ok(obs)
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        // `pages` is a whole number of windows: the schema's bound.
        let mut obs = Observation::default();
        let fail = match FailPageAlloc::setup(self.verbose) {
            Ok(f) => f,
            Err(e) => {
                obs.fail_page_alloc = errno::of(&e);
                return Ok(obs);
            }
        };
        obs.fail_page_alloc = "ok".into();
        let arm = MakeItFail::open()?;
        let phys = PhysMem::open()?;
        let kmsg = Kmsg::open()?;
        cpu::pin_here().context(|| "pinning to the current CPU".into())?;

        let vm = create_vm(self.vm_type)?;
        let (mapped, gmem_map) = create_mapped_gmem_with(
            &vm,
            &self.flags,
            self.if_unsupported,
            self.pages,
            map_windows,
        )?;
        obs.mapped = Some(mapped);
        let Some((gmem, map)) = gmem_map else {
            return Ok(obs);
        };
        let allocate = gmem.fallocate(libc::FALLOC_FL_KEEP_SIZE, 0, (self.pages * PAGE) as u64);
        if errno::record(&mut obs.allocate, allocate).is_none() {
            return Ok(obs);
        }
        let prefault = (0..self.pages)
            .step_by(WINDOW)
            .try_for_each(|page| write_pattern_page(&map, page));
        if errno::record(&mut obs.prefault, prefault).is_none() {
            return Ok(obs);
        }

        let mut bench = Bench {
            fail: &fail,
            arm: &arm,
            kmsg,
            verbose: self.verbose,
            phys,
            map,
        };
        let mut candidates = (0..self.pages).filter(|p| !p.is_multiple_of(WINDOW));
        let mut uaccess = first_injected(&mut candidates, |page| bench.try_uaccess(page))?;
        let mut user = first_injected(&mut candidates, |page| bench.try_user_store(page))?;
        fail.set_times(0)?;
        if let Some((page, phase)) = &mut uaccess {
            let retry = write_pattern_page(&bench.map, *page);
            phase.retry = Some(errno::outcome(&retry));
        }
        if let Some((page, _)) = &user {
            // Maps the page in the probe too, for its PFN.
            bench
                .map
                .copy_out(page * PAGE, 1)
                .context(|| "reading the user-faulted page".into())?;
        }
        cpu::switch_to_another_process().context(|| "forcing a context switch".into())?;
        for (page, phase) in uaccess.iter_mut().chain(user.iter_mut()) {
            phase.direct_map_after = Some(bench.devmem_state(*page)?);
        }
        // A phase where no fault consumed the failure reads `injected: false`.
        obs.uaccess_fault = Some(uaccess.map(|(_, phase)| phase).unwrap_or_default());
        obs.user_fault = Some(user.map(|(_, phase)| phase).unwrap_or_default());

        let Bench { phys, map, .. } = bench;
        drop(map);
        drop(gmem);
        obs.restore = Some(restore_phase(&vm, &self, &fail, &arm, &phys)?);
        drop(vm);
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the RFC port logged it (7.3, x86-64, verbose 2).
    #[test]
    fn finds_set_direct_map_in_the_failure_trace() {
        let log: Vec<String> = [
            "FAULT_INJECTION: forcing a failure.",
            "name fail_page_alloc, interval 1, probability 100, space 0, times 1",
            "CPU: 1 UID: 0 PID: 36 Comm: gmem-probe Not tainted 7.3.4 #2 PREEMPTLAZY  ",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x4f/0x60",
            " should_fail_ex+0x17b/0x190",
            " __alloc_frozen_pages_noprof+0xcc/0x240",
            " alloc_pages_node_noprof+0x37/0x70",
            " __change_page_attr_set_clr+0x1b3/0x10b0",
            " ? __filemap_get_folio_mpol+0x26/0x4a0",
            " set_direct_map_invalid_noflush+0x5b/0x60",
            " kvm_gmem_fault_user_mapping+0x11a/0x180",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(failed_in_set_direct_map(&log));
        assert!(!failed_in_set_direct_map(&log[..11]));
        // A trace without the injection line is someone else's.
        assert!(!failed_in_set_direct_map(&log[2..]));
    }

    #[test]
    fn kmsg_records_lose_their_prefix() {
        assert_eq!(
            message("4,1234,5678901,-;FAULT_INJECTION: forcing a failure.\n"),
            "FAULT_INJECTION: forcing a failure."
        );
        assert_eq!(
            message("4,1235,5678902,c; split_large_page+0x33/0x2e0\n SUBSYSTEM=x\n"),
            " split_large_page+0x33/0x2e0"
        );
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(wait_status(0), "exited 0");
        assert_eq!(wait_status(3 << 8), "exited 3");
        assert_eq!(wait_status(libc::SIGBUS), "SIGBUS");
    }

    #[test]
    fn setup_failure_is_the_whole_observation() {
        let obs = Observation {
            fail_page_alloc: "ENOENT".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&obs).unwrap(),
            r#"{"fail_page_alloc":"ENOENT"}"#
        );
    }

    #[test]
    fn rejects_pages_that_are_not_whole_windows() {
        // The schema refuses them before the probe runs.
        for bad in [r#"{"pages": 100}"#, r#"{"pages": 1000}"#] {
            assert!(serde_json::from_str::<Args>(bad).is_err(), "{bad}");
        }
        let args: Args = serde_json::from_str(r#"{"pages": 1024}"#).unwrap();
        assert_eq!(args.pages, 2 * WINDOW);
    }
}
