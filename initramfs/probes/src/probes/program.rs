//! Runs programs of guest_memfd operations (`gmem_protocol::args::Op`) for
//! `stress` and `replay`, against a model of the direct map: the oracle.
//!
//! **The oracle.** A page of a NO_DIRECT_MAP guest_memfd that the user
//! mapping has faulted in must be out of the direct map; a page of any other
//! guest_memfd must be in it. /dev/mem reads the direct map with a no-fault
//! copy, so each check is a read at the page's PFN (/proc/self/pagemap):
//!
//! - right after every read or write fault of a NO_DIRECT_MAP page: readable
//!   is `ndm_readable_after_fault` (the zap left a TLB entry, or did not
//!   happen);
//! - at every `check` operation and at the end, after a context switch
//!   flushed this CPU's TLB, over every mapped page: a NO_DIRECT_MAP page
//!   readable is `ndm_readable_after_flush`, any other page unreadable is
//!   `page_missing_from_direct_map`.
//!
//! A page punched (or its file recreated) between the PFN lookup and the
//! read may have been freed and taken by anyone: each check reads the PFN
//! again and the slot's punch generation, and counts only when neither
//! changed. A page freed while still out of the direct map is left to the
//! kernel to find: `pressure` and `fork` have it touch free memory, and the
//! console shows the oops.
//!
//! **Crashes.** The operations run in a worker process; the probe waits for
//! it. Each operation is logged, before it starts and when it ends, in
//! memory shared with the probe, so that when the worker dies in an oops or
//! hangs (an oops with a lock held), the probe still reports which
//! operations ran, in which order, and which never finished. The probe
//! watches the kernel's taint flags: the moment an oops, a WARN or a
//! sanitizer's report taints the kernel, it stops the worker rather than
//! wait for its deadline.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use gmem_protocol::args::{GmemFlag, GupPath, Op, OpKind, Pages, FILES};
use serde::Serialize;

use super::pages::{PageRead, PhysMem};
use super::{create_vm, pattern_page, PAGE};
use crate::flags::{gmem_mask, VmType, MEMORY_ATTRIBUTE_PRIVATE};
use crate::kvm::{sys, GuestMemfd, Vcpu, VcpuExit, Vm};
use crate::mapping::{pipe, Mapping};
use crate::{cpu, errno, Context, Failure, Result};

/// What the oracle saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A NO_DIRECT_MAP page read through the direct map right after its fault.
    NdmReadableAfterFault,
    /// A NO_DIRECT_MAP page read through the direct map after a TLB flush.
    NdmReadableAfterFlush,
    /// A page of a guest_memfd without NO_DIRECT_MAP is not in the direct map.
    PageMissingFromDirectMap,
}

impl ViolationKind {
    const ALL: [ViolationKind; 3] = [
        ViolationKind::NdmReadableAfterFault,
        ViolationKind::NdmReadableAfterFlush,
        ViolationKind::PageMissingFromDirectMap,
    ];
}

/// One violation: its kind, and the operation that saw it (as logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub op: String,
    /// The operation's place in the run's log (0-based, the order started).
    pub at: usize,
}

/// A mapping of a slot's file, and what the oracle needs of it.
struct Mapped {
    map: Mapping,
    pages: usize,
    no_direct_map: bool,
}

/// One file slot (`fN`): its fd and its mapping, each possibly gone, and
/// its memslot once a vCPU or an attribute change needed it.
#[derive(Default)]
struct Slot {
    gmem: Option<GuestMemfd>,
    pages: usize,
    no_direct_map: bool,
    mapped: Option<Mapped>,
    /// The memslot's userspace memory (the file's own mapping, or
    /// anonymous memory for a file without MMAP); Some while bound.
    memslot: Option<Mapping>,
}

/// The guest-physical address of slot `file`'s first page: each file has a
/// memslot of its own, far apart, above the code's.
fn file_gpa(file: usize) -> u64 {
    ((file as u64) + 1) << 28
}

/// Real-mode code at CODE_GPA, data segment limit 4 GiB ("unreal" mode,
/// set through KVM_SET_SREGS): `mov eax, [ebx]; inc eax; mov [ebx], eax;
/// out 0x10, al; hlt`. The page's address comes in EBX.
const VCPU_CODE: &[u8] = &[
    0x66, 0x67, 0x8b, 0x03, // mov eax, [ebx]
    0x66, 0x40, // inc eax
    0x66, 0x67, 0x89, 0x03, // mov [ebx], eax
    0xe6, 0x10, // out 0x10, al
    0xf4, // hlt
];
const CODE_GPA: u64 = 0x1000;
const CODE_SLOT_SIZE: usize = 0x10000;
const VCPU_PORT: u16 = 0x10;

/// The world's vCPU, its code in a memslot of anonymous memory at 0.
struct Cpu {
    vcpu: Vcpu,
    /// Kept mapped as long as the VM (the code's memslot).
    _code: Mapping,
}

/// Result codes of the shared log: an operation's outcome in a word.
const RESULTS: [&str; 20] = [
    "ok",
    "no file",
    "no mapping",
    "out of range",
    "data",
    "zero",
    "mismatch",
    "short",
    "child failed",
    "no vcpu",
    "exit HLT",
    "exit MMIO",
    "exit SHUTDOWN",
    "exit FAIL_ENTRY",
    "exit INTERNAL_ERROR",
    "exit MEMORY_FAULT",
    "exit IO",
    "exit other",
    "no memslot",
    "unused",
];

fn code(result: &str) -> i64 {
    RESULTS.iter().position(|r| *r == result).unwrap_or(0) as i64
}

fn errno_code(e: &io::Error) -> i64 {
    -(e.raw_os_error().unwrap_or(libc::EIO) as i64)
}

fn result_name(code: i64) -> String {
    if code < 0 {
        errno::name((-code) as i32)
    } else {
        RESULTS.get(code as usize).unwrap_or(&"?").to_string()
    }
}

/// Records the worker writes into memory shared with the probe.
const MAX_RECORDS: usize = 1 << 18;
const MAX_VIOLATIONS: usize = 64;

#[repr(C)]
struct Shared {
    /// Operations started: the next record's index.
    started: AtomicU64,
    violations: AtomicU64,
    /// The worker got to its end and wrote everything.
    finished: AtomicU32,
    /// Microseconds from the start to the end of the latest operation.
    last_end_us: AtomicU64,
    /// `(thread << 32) | index + 1` of each started operation (0: not yet).
    op: [AtomicU64; MAX_RECORDS],
    /// Its result code + 1 << 40 once it ended (0: still running).
    result: [AtomicU64; MAX_RECORDS],
    /// `(kind << 32) | record` of each violation.
    violation: [AtomicU64; MAX_VIOLATIONS],
}

const DONE: u64 = 1 << 40;

/// The world the operations act on: a VM to create guest_memfds on, the
/// slots, and the direct map's observers.
struct World<'s> {
    /// The vCPU (None: the VM refused one; `vcpu` then says so).
    cpu: Option<Mutex<Cpu>>,
    vm: Vm,
    slots: Vec<RwLock<Slot>>,
    /// Bumped before and after every punch and every recreation of a slot.
    generation: Vec<AtomicU64>,
    phys: PhysMem,
    shared: &'s Shared,
    /// Serializes `check` and `fork`, which read every slot.
    whole: Mutex<()>,
}

impl<'s> World<'s> {
    fn new(shared: &'s Shared) -> Result<World<'s>> {
        let vm = create_vm(VmType::Default)?;
        let cpu = make_cpu(&vm).ok().map(Mutex::new);
        Ok(World {
            cpu,
            vm,
            slots: (0..FILES).map(|_| RwLock::default()).collect(),
            generation: (0..FILES).map(|_| AtomicU64::new(0)).collect(),
            phys: PhysMem::open()?,
            shared,
            whole: Mutex::new(()),
        })
    }

    fn violation(&self, kind: ViolationKind, record: usize) {
        let n = self.shared.violations.fetch_add(1, Ordering::SeqCst) as usize;
        if n < MAX_VIOLATIONS {
            let k = ViolationKind::ALL
                .iter()
                .position(|x| *x == kind)
                .unwrap_or(0);
            self.shared.violation[n].store(((k as u64) << 32) | record as u64, Ordering::SeqCst);
        }
    }

    /// Runs one operation (record `record` of the log): its result code.
    fn run(&self, op: &OpKind, record: usize) -> i64 {
        match self.try_run(op, record) {
            Ok(r) => code(r),
            Err(e) => errno_code(&e),
        }
    }

    fn write_slot(&self, file: usize) -> std::sync::RwLockWriteGuard<'_, Slot> {
        self.slots[file].write().unwrap_or_else(|e| e.into_inner())
    }

    fn read_slot(&self, file: usize) -> std::sync::RwLockReadGuard<'_, Slot> {
        self.slots[file].read().unwrap_or_else(|e| e.into_inner())
    }

    fn try_run(&self, op: &OpKind, record: usize) -> io::Result<&'static str> {
        match *op {
            OpKind::Create {
                file,
                pages,
                ref flags,
            } => {
                let mut slot = self.write_slot(file);
                self.generation[file].fetch_add(1, Ordering::SeqCst);
                self.unbind(file, &mut slot);
                *slot = Slot::default();
                let gmem = self
                    .vm
                    .create_guest_memfd((pages * PAGE) as u64, gmem_mask(flags))?;
                *slot = Slot {
                    gmem: Some(gmem),
                    pages,
                    no_direct_map: flags.contains(&GmemFlag::NO_DIRECT_MAP),
                    mapped: None,
                    memslot: None,
                };
                self.generation[file].fetch_add(1, Ordering::SeqCst);
                Ok("ok")
            }
            OpKind::Close { file } => {
                let mut slot = self.write_slot(file);
                Ok(match slot.gmem.take() {
                    Some(_) => "ok",
                    None => "no file",
                })
            }
            OpKind::Mmap { file } => {
                let mut slot = self.write_slot(file);
                let Some(gmem) = &slot.gmem else {
                    return Ok("no file");
                };
                let map = gmem.map(slot.pages * PAGE, libc::MAP_SHARED)?;
                slot.mapped = Some(Mapped {
                    map,
                    pages: slot.pages,
                    no_direct_map: slot.no_direct_map,
                });
                Ok("ok")
            }
            OpKind::Munmap { file } => {
                let mut slot = self.write_slot(file);
                Ok(match slot.mapped.take() {
                    Some(_) => "ok",
                    None => "no mapping",
                })
            }
            OpKind::Alloc { file, pages } | OpKind::Punch { file, pages } => {
                let slot = self.read_slot(file);
                let Some(gmem) = &slot.gmem else {
                    return Ok("no file");
                };
                let Pages { start, count } = pages;
                let (offset, len) = ((start * PAGE) as u64, (count * PAGE) as u64);
                if let OpKind::Punch { .. } = op {
                    self.generation[file].fetch_add(1, Ordering::SeqCst);
                    let r = gmem.punch_hole(offset, len);
                    self.generation[file].fetch_add(1, Ordering::SeqCst);
                    r?;
                } else {
                    gmem.fallocate(libc::FALLOC_FL_KEEP_SIZE, offset, len)?;
                }
                Ok("ok")
            }
            OpKind::Read { file, page } | OpKind::Write { file, page } => {
                let slot = self.read_slot(file);
                let Some(m) = &slot.mapped else {
                    return Ok("no mapping");
                };
                if page >= m.pages {
                    return Ok("out of range");
                }
                // The fault and the check on one CPU: the fault loads this
                // CPU's TLB with the page's direct-map entry (the page is
                // cleared through it), so a removal that flushes nothing
                // leaves it here, where the check reads.
                let _pinned = cpu::Pinned::here()?;
                let result = if let OpKind::Write { .. } = op {
                    m.map.copy_in(page * PAGE, &pattern_page(page))?;
                    "ok"
                } else {
                    content(&m.map.copy_out(page * PAGE, PAGE)?, page)
                };
                if m.no_direct_map && self.readable(file, m, page) {
                    self.violation(ViolationKind::NdmReadableAfterFault, record);
                }
                Ok(result)
            }
            OpKind::Gup { file, page, path } => {
                let slot = self.read_slot(file);
                let Some(m) = &slot.mapped else {
                    return Ok("no mapping");
                };
                if page >= m.pages {
                    return Ok("out of range");
                }
                let addr = m.map.addr() as usize + page * PAGE;
                Ok(content(&gup_read(path, addr)?, page))
            }
            OpKind::Hwpoison { file, page } => {
                let slot = self.read_slot(file);
                let Some(m) = &slot.mapped else {
                    return Ok("no mapping");
                };
                if page >= m.pages {
                    return Ok("out of range");
                }
                // SAFETY: one page inside our mapping; the kernel poisons
                // the page behind it, no Rust reference points there.
                let r = unsafe {
                    libc::madvise(
                        m.map.as_ptr().add(page * PAGE).cast(),
                        PAGE,
                        libc::MADV_HWPOISON,
                    )
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok("ok")
            }
            OpKind::Vcpu { file, page } => {
                let mut slot = self.write_slot(file);
                if slot.gmem.is_none() && slot.memslot.is_none() {
                    return Ok("no file");
                }
                if page >= slot.pages {
                    return Ok("out of range");
                }
                self.bind(file, &mut slot)?;
                let Some(cpu) = &self.cpu else {
                    return Ok("no vcpu");
                };
                let _pinned = cpu::Pinned::here()?;
                let mut cpu = cpu.lock().unwrap_or_else(|e| e.into_inner());
                let result = run_vcpu(&mut cpu.vcpu, file_gpa(file) + (page * PAGE) as u64)?;
                if slot.no_direct_map {
                    if let Some(m) = &slot.mapped {
                        if self.readable(file, m, page) {
                            self.violation(ViolationKind::NdmReadableAfterFault, record);
                        }
                    }
                }
                Ok(result)
            }
            OpKind::Private { file, pages } | OpKind::Shared { file, pages } => {
                let mut slot = self.write_slot(file);
                if slot.gmem.is_none() && slot.memslot.is_none() {
                    return Ok("no file");
                }
                self.bind(file, &mut slot)?;
                let attrs = match op {
                    OpKind::Private { .. } => MEMORY_ATTRIBUTE_PRIVATE,
                    _ => 0,
                };
                self.vm.set_memory_attributes(
                    file_gpa(file) + (pages.start * PAGE) as u64,
                    (pages.count * PAGE) as u64,
                    attrs,
                )?;
                Ok("ok")
            }
            OpKind::Check => {
                self.check(record)?;
                Ok("ok")
            }
            OpKind::Fork => self.fork(),
            OpKind::Pressure { mib } => {
                let len = mib << 20;
                let map = Mapping::anonymous(len)?;
                for off in (0..len).step_by(PAGE) {
                    // SAFETY: inside our own anonymous mapping.
                    unsafe { map.as_ptr().add(off).write_volatile(1) };
                }
                Ok("ok")
            }
            OpKind::Compact => {
                std::fs::write("/proc/sys/vm/compact_memory", b"1")?;
                Ok("ok")
            }
        }
    }

    /// Binds slot `file`'s guest_memfd to a memslot of its own at
    /// [`file_gpa`], once: its userspace memory is the file's own mapping
    /// when it has MMAP, else anonymous memory.
    fn bind(&self, file: usize, slot: &mut Slot) -> io::Result<()> {
        if slot.memslot.is_some() {
            return Ok(());
        }
        let Some(gmem) = &slot.gmem else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        let len = slot.pages * PAGE;
        let memory = gmem
            .map(len, libc::MAP_SHARED)
            .or_else(|_| Mapping::anonymous(len))?;
        let region = sys::kvm_userspace_memory_region2 {
            slot: file as u32 + 1,
            flags: sys::KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: file_gpa(file),
            memory_size: len as u64,
            userspace_addr: memory.addr(),
            guest_memfd_offset: 0,
            guest_memfd: gmem.raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `memory` is ours, kept in the slot until `unbind` deletes
        // the memslot, and touched only through uaccess copies.
        unsafe { self.vm.set_user_memory_region2(&region) }?;
        slot.memslot = Some(memory);
        Ok(())
    }

    /// Deletes slot `file`'s memslot, if bound, before its memory goes.
    fn unbind(&self, file: usize, slot: &mut Slot) {
        if slot.memslot.is_none() {
            return;
        }
        let region = sys::kvm_userspace_memory_region2 {
            slot: file as u32 + 1,
            flags: sys::KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: file_gpa(file),
            memory_size: 0,
            ..Default::default()
        };
        // SAFETY: a size of 0 deletes the memslot; nothing is mapped.
        if unsafe { self.vm.set_user_memory_region2(&region) }.is_ok() {
            slot.memslot = None;
        } else {
            // KVM still uses the memory: keep it mapped for the VM's life.
            std::mem::forget(slot.memslot.take());
        }
    }

    /// Page `page` of slot `file`'s mapping read at its PFN through the
    /// direct map; None when it is not mapped, or when its PFN or its
    /// file's punch generation changed around the read (the page may have
    /// been freed and taken by anyone).
    fn direct_map_read(&self, file: usize, m: &Mapped, page: usize) -> Option<PageRead> {
        let before = self.generation[file].load(Ordering::SeqCst);
        let pfn = self.phys.pfn(&m.map, page).ok()??;
        let read = self.phys.read_pattern(pfn, page);
        let same = matches!(self.phys.pfn(&m.map, page), Ok(Some(p)) if p == pfn)
            && self.generation[file].load(Ordering::SeqCst) == before;
        same.then_some(read)
    }

    /// Whether the page reads through the direct map at all.
    fn readable(&self, file: usize, m: &Mapped, page: usize) -> bool {
        self.direct_map_read(file, m, page)
            .is_some_and(|r| !matches!(r, PageRead::Errno(_)))
    }

    /// Whether the page is missing from the direct map (EFAULT there).
    fn missing(&self, file: usize, m: &Mapped, page: usize) -> bool {
        self.direct_map_read(file, m, page)
            .is_some_and(|r| r.is_absent())
    }

    /// The oracle over every mapped page, after this CPU's TLB is flushed.
    fn check(&self, record: usize) -> io::Result<()> {
        let _whole = self.whole.lock().unwrap_or_else(|e| e.into_inner());
        // The flush and the reads on one CPU: a thread that moved to another
        // CPU would read through that CPU's TLB, which nothing flushed.
        let _pinned = cpu::Pinned::here()?;
        cpu::switch_to_another_process()?;
        for file in 0..FILES {
            let slot = self.read_slot(file);
            let Some(m) = &slot.mapped else { continue };
            for page in 0..m.pages {
                if m.no_direct_map {
                    if self.readable(file, m, page) {
                        self.violation(ViolationKind::NdmReadableAfterFlush, record);
                    }
                } else if self.missing(file, m, page) {
                    self.violation(ViolationKind::PageMissingFromDirectMap, record);
                }
            }
        }
        Ok(())
    }

    /// fork; the child reads every mapped page (the pages are shared) and
    /// exits, tearing its copy of the mappings down.
    fn fork(&self) -> io::Result<&'static str> {
        let _whole = self.whole.lock().unwrap_or_else(|e| e.into_inner());
        let slots: Vec<_> = (0..FILES).map(|f| self.read_slot(f)).collect();
        let ranges: Vec<(usize, usize)> = slots
            .iter()
            .filter_map(|s| s.mapped.as_ref())
            .map(|m| (m.map.addr() as usize, m.pages * PAGE))
            .collect();
        // SAFETY: the child only reads through a pipe and _exits; it takes
        // no lock another thread may have held at the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            for (addr, len) in ranges {
                for off in (0..len).step_by(PAGE) {
                    let _ = copy_out_at(addr + off, PAGE);
                }
            }
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let status = cpu::wait_child(pid)?;
        Ok(
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                "ok"
            } else {
                "child failed"
            },
        )
    }
}

/// The world's vCPU: real mode, its code in anonymous memory at 0, the data
/// segment's limit 4 GiB so that EBX reaches every file's memslot.
fn make_cpu(vm: &Vm) -> io::Result<Cpu> {
    vm.set_tss_addr(0xfffb_d000)?;
    let code = Mapping::anonymous(CODE_SLOT_SIZE)?;
    code.copy_in(CODE_GPA as usize, VCPU_CODE)?;
    let region = sys::kvm_userspace_memory_region2 {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: CODE_SLOT_SIZE as u64,
        userspace_addr: code.addr(),
        ..Default::default()
    };
    // SAFETY: `code` lives in the Cpu as long as the VM's vCPU; written
    // only through uaccess copies.
    unsafe { vm.set_user_memory_region2(&region) }?;
    let vcpu = vm.create_vcpu(0)?;
    Ok(Cpu { vcpu, _code: code })
}

/// Runs the vCPU's code on the page at `gpa`: "ok" when it got to its OUT,
/// else the exit it took instead.
fn run_vcpu(vcpu: &mut Vcpu, gpa: u64) -> io::Result<&'static str> {
    let mut sregs = vcpu.get_sregs()?;
    for seg in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.ss] {
        seg.base = 0;
        seg.selector = 0;
    }
    sregs.ds.limit = 0xffff_ffff;
    sregs.ds.g = 1;
    vcpu.set_sregs(&sregs)?;
    let mut regs = vcpu.get_regs()?;
    regs.rip = CODE_GPA;
    regs.rflags = 0x2;
    regs.rbx = gpa;
    vcpu.set_regs(&regs)?;
    for _ in 0..4 {
        match vcpu.run()? {
            VcpuExit::Io {
                out: true, port, ..
            } if port == VCPU_PORT => return Ok("ok"),
            VcpuExit::Io { .. } => return Ok("exit IO"),
            VcpuExit::Hlt => return Ok("exit HLT"),
            VcpuExit::Mmio { .. } => return Ok("exit MMIO"),
            VcpuExit::Shutdown => return Ok("exit SHUTDOWN"),
            VcpuExit::FailEntry { .. } => return Ok("exit FAIL_ENTRY"),
            VcpuExit::InternalError { .. } => return Ok("exit INTERNAL_ERROR"),
            VcpuExit::MemoryFault { .. } => return Ok("exit MEMORY_FAULT"),
            _ => {}
        }
    }
    Ok("exit other")
}

/// What a read of page `page` gave: its pattern, zeroes, or other bytes.
fn content(bytes: &[u8], page: usize) -> &'static str {
    if bytes.len() < PAGE {
        "short"
    } else if bytes == pattern_page(page).as_slice() {
        "data"
    } else if bytes.iter().all(|b| *b == 0) {
        "zero"
    } else {
        "mismatch"
    }
}

/// Copies `len` bytes at `addr` of our own memory through a pipe (a refused
/// fault is EFAULT, not a signal), as [`Mapping::copy_out`] does.
fn copy_out_at(addr: usize, len: usize) -> io::Result<Vec<u8>> {
    let (rd, wr) = pipe(0)?;
    // SAFETY: the kernel reads our memory with a fault-handling copy.
    let n = unsafe { libc::write(wr.as_raw_fd(), addr as *const libc::c_void, len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; n as usize];
    // SAFETY: `buf` has room for `n` bytes.
    let r = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// One page at `addr` of our own memory, read through a GUP path.
fn gup_read(path: GupPath, addr: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; PAGE];
    match path {
        GupPath::ProcSelfMem => {
            let mem = File::open("/proc/self/mem")?;
            let n = mem.read_at(&mut buf, addr as u64)?;
            buf.truncate(n);
        }
        GupPath::ProcessVmReadv => {
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: PAGE,
            };
            let remote = libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: PAGE,
            };
            // SAFETY: `local` covers `buf`; `remote` is read by the kernel.
            let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(r as usize);
        }
        GupPath::Vmsplice => {
            let (rd, wr) = pipe(libc::O_NONBLOCK)?;
            let iov = libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: PAGE,
            };
            // SAFETY: the kernel pins the page the iovec covers.
            let r = unsafe { libc::vmsplice(wr.as_raw_fd(), &iov, 1, 0) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `buf` has room for PAGE bytes.
            let n = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), PAGE) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
        }
    }
    Ok(buf)
}

/// Where each thread's operations come from.
pub trait Source: Sync {
    /// Operation `index` of thread `thread`, or None past its end.
    fn op(&self, thread: usize, index: usize) -> Option<OpKind>;
    fn threads(&self) -> usize;
}

/// Each thread's operations, in order: what `stress` draws from its seed
/// and what `replay` is given.
pub struct PerThread(pub Vec<Vec<OpKind>>);

impl Source for PerThread {
    fn op(&self, thread: usize, index: usize) -> Option<OpKind> {
        self.0.get(thread)?.get(index).cloned()
    }
    fn threads(&self) -> usize {
        self.0.len()
    }
}

/// How a run ended, as the probe saw its worker.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEnd {
    /// Every thread got to its end.
    Completed,
    /// The worker died (an oops kills the task that took it).
    Died,
    /// The worker did not end by its deadline and was killed.
    Stuck,
    /// The kernel tainted itself while the worker ran (an oops, a WARN, a
    /// bad page, a sanitizer's report): the worker was killed then, rather
    /// than waited for behind a lock the oops left held.
    Tainted,
}

/// What a run did: the log the probe reads back from shared memory.
#[derive(Debug, Clone)]
pub struct RunLog {
    pub end: WorkerEnd,
    /// `(thread, index, result)` in the order started; result None: never ended.
    pub records: Vec<(usize, usize, Option<String>)>,
    pub violations: Vec<(ViolationKind, usize)>,
    /// From the start to the end of the last operation that ended.
    pub busy: Duration,
}

/// Runs `source`'s threads in a worker process for at most `budget` (each
/// thread stops at the end of its operations or of the budget), and reads
/// back what happened, whatever became of the worker.
pub fn run(source: &dyn Source, budget: Duration) -> Result<RunLog> {
    let shared_len = std::mem::size_of::<Shared>().next_multiple_of(PAGE);
    let mem = Mapping::map(
        None,
        shared_len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
    )
    .context(|| "mapping the shared log".into())?;
    // SAFETY: zeroed shared memory is a valid `Shared` (atomics of 0), and
    // it lives (mapped) as long as `mem`, which outlives every use below.
    let shared: &Shared = unsafe { &*(mem.as_ptr() as *const Shared) };
    let taint_before = tainted();
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: the child runs the worker and _exits; the probe is one thread.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::Work(format!(
            "fork: {}",
            errno::of(&io::Error::last_os_error())
        )));
    }
    if pid == 0 {
        let code = match worker(source, budget, shared) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("gmem-probe worker: {e:?}");
                1
            }
        };
        // SAFETY: ends the worker without the probe's destructors.
        unsafe { libc::_exit(code) };
    }
    let end = wait_worker(pid, budget + Duration::from_secs(10), shared, taint_before);
    let busy = Duration::from_micros(shared.last_end_us.load(Ordering::SeqCst));
    let n = (shared.started.load(Ordering::SeqCst) as usize).min(MAX_RECORDS);
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let op = shared.op[i].load(Ordering::SeqCst);
        if op == 0 {
            continue;
        }
        let (thread, index) = ((op >> 32) as usize, (op & 0xffff_ffff) as usize - 1);
        let r = shared.result[i].load(Ordering::SeqCst);
        let result = (r & DONE != 0).then(|| result_name((r & (DONE - 1)) as i64 - (1 << 20)));
        records.push((thread, index, result));
    }
    let v = (shared.violations.load(Ordering::SeqCst) as usize).min(MAX_VIOLATIONS);
    let violations = (0..v)
        .map(|i| {
            let x = shared.violation[i].load(Ordering::SeqCst);
            (
                ViolationKind::ALL[(x >> 32) as usize % ViolationKind::ALL.len()],
                (x & 0xffff_ffff) as usize,
            )
        })
        .collect();
    Ok(RunLog {
        end,
        records,
        violations,
        busy,
    })
}

/// The kernel's taint flags (/proc/sys/kernel/tainted), if readable.
fn tainted() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/tainted")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits for the worker up to `deadline`, or until the kernel taints
/// itself, then kills it; a worker stuck in the kernel (an oops with a lock
/// held) may not die: it is left.
fn wait_worker(
    pid: libc::pid_t,
    deadline: Duration,
    shared: &Shared,
    taint_before: Option<u64>,
) -> WorkerEnd {
    let start = Instant::now();
    let mut status = 0;
    let mut end = WorkerEnd::Stuck;
    loop {
        // SAFETY: polls our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            let clean = libc::WIFEXITED(status)
                && libc::WEXITSTATUS(status) == 0
                && shared.finished.load(Ordering::SeqCst) == 1;
            return if clean {
                WorkerEnd::Completed
            } else {
                WorkerEnd::Died
            };
        }
        if r < 0 || start.elapsed() > deadline {
            break;
        }
        if taint_before.is_some() && tainted() != taint_before {
            // Let the report reach the console and the other threads run
            // into whatever the oops left behind, then stop.
            std::thread::sleep(Duration::from_millis(200));
            end = WorkerEnd::Tainted;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kills our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for _ in 0..300 {
        // SAFETY: polls our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    end
}

/// The worker: the world, its threads, the oracle at the end.
fn worker(source: &dyn Source, budget: Duration, shared: &Shared) -> Result<()> {
    let world = World::new(shared)?;
    let start = Instant::now();
    let log = |thread: usize, index: usize| {
        let i = shared.started.fetch_add(1, Ordering::SeqCst) as usize;
        if i < MAX_RECORDS {
            shared.op[i].store(
                ((thread as u64) << 32) | (index as u64 + 1),
                Ordering::SeqCst,
            );
        }
        i
    };
    let end = |i: usize, code: i64| {
        if i < MAX_RECORDS {
            shared.result[i].store(DONE | (code + (1 << 20)) as u64, Ordering::SeqCst);
        }
        shared
            .last_end_us
            .fetch_max(start.elapsed().as_micros() as u64, Ordering::SeqCst);
    };
    std::thread::scope(|s| {
        for t in 0..source.threads() {
            let world = &world;
            s.spawn(move || {
                let mut index = 0;
                while start.elapsed() < budget {
                    let Some(op) = source.op(t, index) else { break };
                    let i = log(t, index);
                    end(i, world.run(&op, i));
                    index += 1;
                }
            });
        }
    });
    // The sweep at the end, as an operation of its own (thread 0 goes on).
    let i = shared.started.load(Ordering::SeqCst) as usize;
    let _ = world.check(i);
    drop(world);
    shared.finished.store(1, Ordering::SeqCst);
    Ok(())
}

/// What `stress` and `replay` observe of a run.
#[derive(Debug, Default, Serialize)]
pub struct Observation {
    /// "completed", "died", "stuck" (killed at its deadline) or "tainted"
    /// (killed when the kernel tainted itself: an oops, a WARN, a report).
    pub worker: String,
    /// Operations started.
    pub ops: usize,
    /// Each operation's outcome, counted by verb: `write: {ok: 12, EFAULT: 1}`.
    pub results: BTreeMap<String, BTreeMap<String, usize>>,
    /// What the oracle saw, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// Operations that started and never ended (the worker died or hung in them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfinished: Vec<String>,
}

impl Observation {
    /// The observation of `log`, each record's operation from `source`.
    pub fn of(log: &RunLog, source: &dyn Source) -> (Observation, Vec<String>) {
        let mut obs = Observation {
            worker: match log.end {
                WorkerEnd::Completed => "completed",
                WorkerEnd::Died => "died",
                WorkerEnd::Stuck => "stuck",
                WorkerEnd::Tainted => "tainted",
            }
            .into(),
            ops: log.records.len(),
            ..Default::default()
        };
        let mut lines = Vec::with_capacity(log.records.len());
        for (thread, index, result) in &log.records {
            let Some(kind) = source.op(*thread, *index) else {
                continue;
            };
            let op = Op {
                thread: *thread,
                kind,
            };
            match result {
                Some(r) => {
                    *obs.results
                        .entry(op.kind.verb().into())
                        .or_default()
                        .entry(r.clone())
                        .or_default() += 1;
                }
                None => obs.unfinished.push(op.to_string()),
            }
            lines.push(op.to_string());
        }
        for (kind, record) in &log.violations {
            let op = log
                .records
                .get(*record)
                .and_then(|(t, i, _)| source.op(*t, *i).map(|kind| Op { thread: *t, kind }))
                .map_or("the final check".to_string(), |op| op.to_string());
            obs.violations.push(Violation {
                kind: *kind,
                op,
                at: *record,
            });
        }
        (obs, lines)
    }

    /// Whether the run found something: a violation, or a worker that did
    /// not come back.
    pub fn found(&self) -> bool {
        !self.violations.is_empty() || self.worker != "completed"
    }
}

/// The `violations` and `unfinished` a run found, as the probe prints them
/// on its stderr (the console): a human reading the log sees the finding
/// beside the kernel's messages.
pub fn tell(probe: &str, obs: &Observation) {
    for v in &obs.violations {
        eprintln!("gmem-probe {probe}: violation {:?} at `{}`", v.kind, v.op);
    }
    for u in &obs.unfinished {
        eprintln!("gmem-probe {probe}: never finished `{u}`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_round_trip() {
        for r in RESULTS {
            assert_eq!(result_name(code(r)), r);
        }
        let e = io::Error::from_raw_os_error(libc::EFAULT);
        assert_eq!(result_name(errno_code(&e)), "EFAULT");
    }

    /// The log reads back in the order started, with the operations'
    /// outcomes counted, the violation at its operation and the operation
    /// that never ended named.
    #[test]
    fn a_log_reads_back_as_an_observation() {
        let src = PerThread(vec![
            vec![
                OpKind::Create {
                    file: 0,
                    pages: 2,
                    flags: vec![GmemFlag::MMAP],
                },
                OpKind::Mmap { file: 0 },
            ],
            vec![OpKind::Write { file: 0, page: 1 }],
        ]);
        let log = RunLog {
            end: WorkerEnd::Stuck,
            records: vec![
                (0, 0, Some("ok".into())),
                (1, 0, Some("EFAULT".into())),
                (0, 1, None),
            ],
            violations: vec![(ViolationKind::NdmReadableAfterFault, 1)],
            busy: Duration::from_millis(5),
        };
        let (obs, lines) = Observation::of(&log, &src);
        assert_eq!(
            lines,
            [
                "t0 create f0 pages=2 flags=MMAP",
                "t1 write f0 p1",
                "t0 mmap f0"
            ]
        );
        assert_eq!(obs.worker, "stuck");
        assert_eq!(obs.ops, 3);
        assert_eq!(obs.results["write"]["EFAULT"], 1);
        assert_eq!(obs.unfinished, ["t0 mmap f0"]);
        assert_eq!(
            obs.violations,
            [Violation {
                kind: ViolationKind::NdmReadableAfterFault,
                op: "t1 write f0 p1".into(),
                at: 1
            }]
        );
        assert!(obs.found());
    }
}
