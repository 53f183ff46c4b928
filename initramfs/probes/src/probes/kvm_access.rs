//! `kvm_access`: one of KVM's own ways into guest memory, tried on a page
//! backed three ways.
//!
//! Each backing runs in a child process of its own, in order: anonymous
//! memory, a guest_memfd (MMAP | INIT_SHARED) and a NO_DIRECT_MAP
//! guest_memfd. The child builds an L2 VM whose 64 KiB of memory (code,
//! tables, stack and the page under test at 0x4000) come from that backing,
//! runs a short 32-bit program that makes KVM touch the page under test in
//! the way the path names, and checks what KVM wrote or read. A child killed
//! by the kernel (an oops kills the task that oopsed) or hung is recorded as
//! such, and the next backing still runs; the crash itself is in the console.
//!
//! The paths, and the kernel code each one reaches (x86, 7.3):
//! - `pvclock`: WRMSR MSR_KVM_SYSTEM_TIME_NEW -> `kvm_write_system_time` ->
//!   `kvm_gpc_activate`; the next entry's `kvm_guest_time_update` writes the
//!   pvclock through the gfn_to_pfn cache's kernel mapping (`gpc_map`:
//!   `kmap` of the pinned page, i.e. the direct map).
//! - `steal_time`: WRMSR MSR_KVM_STEAL_TIME -> `record_steal_time` through a
//!   gfn_to_hva cache (uaccess on the memslot's user mapping).
//! - `pv_eoi`: WRMSR MSR_KVM_PV_EOI_EN (an in-kernel LAPIC), then an MSI from
//!   the host: injecting it, KVM sets the pending bit through a gfn_to_hva
//!   cache (`pv_eoi_set_pending`, uaccess); the handler reads it back.
//! - `async_pf`: WRMSR MSR_KVM_ASYNC_PF_INT and _EN: `kvm_gfn_to_hva_cache_init`;
//!   KVM writes there only when it delivers a page-ready event (not made here).
//! - `mmio_decode`: an MMIO store and load executed from the page under
//!   test; KVM fetches the instruction from guest memory to emulate it
//!   (`kvm_fetch_guest_virt` -> `kvm_vcpu_read_guest_page`, uaccess).
//! - `string_out`, `string_in`: `rep outsb` from / `rep insb` into the page
//!   (the emulator's `kvm_read_guest_virt` / `kvm_write_guest_virt`).
//! - `pre_fault`: KVM_PRE_FAULT_MEMORY over the page, then an L2 read.
//! - `private_shared`: on a software-protected VM, the page made private,
//!   shared, then private again (KVM_SET_MEMORY_ATTRIBUTES), an L2 read and
//!   write after each.
//! - `dirty_log`: the memslot with KVM_MEM_LOG_DIRTY_PAGES, an L2 write, and
//!   KVM_GET_DIRTY_LOG.
//! - `nested_vmsave`, `nested_vmrun`: L2 enables SVM and runs VMSAVE / VMRUN
//!   with its VMCB on the page: `kvm_vcpu_map` (GUP of the user mapping,
//!   then `kmap`: the direct map) in `vmload_vmsave_interception` and
//!   `nested_svm_copy_vmcb12_to_cache`.
//! - `hwpoison`: madvise(MADV_HWPOISON) on the page through the host's
//!   mapping (`memory_failure`; for a guest_memfd `kvm_gmem_error_folio`),
//!   then an L2 read of it, then everything closed.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_create_guest_memfd, kvm_enable_cap, kvm_memory_attributes, kvm_msi, kvm_segment,
    kvm_userspace_memory_region2, KVM_CAP_SPLIT_IRQCHIP, KVM_MAX_CPUID_ENTRIES,
    KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

use super::{Probe, PAGE};
use crate::flags::{
    gmem_mask, mappable, mappable_no_direct_map, split_supported, GmemFlag, IfUnsupported,
    MEMORY_ATTRIBUTE_PRIVATE,
};
use crate::kvm::io_err;
use crate::l2code::{self, Code, EXCEPTION_PORT, REPORT_PORT};
use crate::mapping::Mapping;
use crate::{errno, Failure, Result};

const SLOT_PAGES: usize = 16;
const SLOT_SIZE: usize = SLOT_PAGES * PAGE;
const GDT_GPA: u32 = 0x0;
const IDT_GPA: u32 = 0x100;
const STUBS_GPA: u32 = 0x400;
const CODE_GPA: u32 = 0x1000;
const STACK_TOP: u32 = 0x3000;
/// The page under test.
const TARGET: u32 = 0x4000;
/// The host save area VMRUN wants set (MSR_VM_HSAVE_PA).
const HSAVE_GPA: u32 = 0x5000;
/// A page directory mapping the first 4 MiB 1:1 with one large page: KVM
/// takes SVM instructions only from a guest with paging on
/// (`nested_svm_check_permissions`).
const PAGE_DIR_GPA: u32 = 0x6000;
/// No memslot there: every access is MMIO.
const MMIO_GPA: u32 = 0x10_0000;
/// Ports of the string I/O paths.
const STRING_OUT_PORT: u16 = 0x512;
const STRING_IN_PORT: u16 = 0x513;
const STRING_LEN: u32 = 64;
/// Where every program says it is done. Not HLT: with an in-kernel LAPIC
/// (pv_eoi, async_pf) KVM handles HLT itself and KVM_RUN would not return.
const DONE_PORT: u16 = 0x51f;
/// Where the pv_eoi program says it is ready for its interrupt.
const READY_PORT: u16 = 0x514;
/// The interrupt the host sends (KVM_SIGNAL_MSI) and its handler.
const IRQ_VECTOR: u32 = 0x30;
const IRQ_HANDLER_GPA: u32 = CODE_GPA + 0x800;
/// The local APIC's spurious-vector register: bit 8 enables the APIC.
const APIC_SVR: u32 = 0xfee0_00f0;
/// The local APIC's end-of-interrupt register.
const APIC_EOI: u32 = 0xfee0_00b0;
/// Interrupts the pv_eoi path sends at most, waiting for one whose handler
/// sees the pending bit.
const PV_EOI_TRIES: usize = 5;
/// What the page under test holds before the run, where a path does not
/// need it zeroed.
const FILL: u8 = 0xa5;
const MMIO_STORE: u32 = 0x5a5a_1234;
const MMIO_LOAD: u32 = 0xc0ff_ee11;
const L2_STORE: u32 = 0x7777_7777;
const MAX_EXITS: usize = 64;

const MSR_EFER: u32 = 0xc000_0080;
const EFER_SVME: u32 = 1 << 12;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
const MSR_KVM_ASYNC_PF_EN: u32 = 0x4b56_4d02;
const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
const MSR_KVM_ASYNC_PF_INT: u32 = 0x4b56_4d06;
const KVM_MSR_ENABLED: u64 = 1;
const KVM_ASYNC_PF_DELIVERY_AS_INT: u64 = 1 << 3;
/// The VMCB's control.exit_code, and save.fs.selector.
const VMCB_EXIT_CODE: u32 = 0x70;
const VMCB_FS_SELECTOR: u32 = 0x440;
/// VMRUN's exit code for an invalid VMCB.
const SVM_EXIT_ERR: u32 = 0xffff_ffff;
/// CPUID 0x8000_0001 ECX: SVM.
const CPUID_SVM: u32 = 1 << 2;

pub use gmem_protocol::args::KvmAccessArgs as Args;
use gmem_protocol::args::{Backing, KvmPath as Path};

/// One cell of the matrix: what KVM did on this path with this backing.
/// (Deserialized too: the child sends it to the parent as JSON.)
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Cell {
    /// `works`, `fails: ...` (the errno, exit or exception that stopped
    /// it), `killed by SIGx` or `hung`.
    pub result: String,
    /// What was checked, when it worked or was wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Flags left out as unsupported (`if_unsupported: drop`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_flags: Vec<GmemFlag>,
    /// The L2 VM's exits in order (fixed addresses only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Observation {
    pub path: Path,
    /// One cell per backing (they run in the order asked).
    pub cells: BTreeMap<Backing, Cell>,
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let mut cells = BTreeMap::new();
        for b in &self.backings {
            let cell = in_child(Duration::from_millis(self.timeout_ms), || {
                cell(self.path, *b, self.if_unsupported)
            })?;
            cells.insert(*b, cell);
        }
        Ok(Observation {
            path: self.path,
            cells,
        })
    }
}

/// Runs `work` in a forked child and returns the cell it sends back, or
/// one that says how the child ended (killed, hung) when it sent none.
fn in_child(deadline: Duration, work: impl FnOnce() -> Cell) -> Result<Cell> {
    let (rx, tx) = crate::mapping::pipe(libc::O_CLOEXEC)
        .map_err(|e| Failure::Work(format!("pipe: {}", errno::of(&e))))?;
    // SAFETY: the probe is single-threaded here; the child only runs `work`
    // (plain syscalls and allocation) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::Work(format!(
            "fork: {}",
            errno::of(&io::Error::last_os_error())
        )));
    }
    if pid == 0 {
        drop(rx);
        let cell = work();
        let text = serde_json::to_vec(&cell).unwrap_or_default();
        let mut f = std::fs::File::from(tx);
        let _ = std::io::Write::write_all(&mut f, &text);
        drop(f);
        // SAFETY: _exit ends the child without running the parent's atexit
        // handlers or flushing its buffers twice.
        unsafe { libc::_exit(0) };
    }
    drop(tx);
    let started = Instant::now();
    let mut status = 0;
    let ended = loop {
        // SAFETY: waits for our own child, non-blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break true;
        }
        if started.elapsed() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(500));
            // A child stuck in the kernel may not die: do not wait for it.
            // SAFETY: as above.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            break r == pid && !libc::WIFSIGNALED(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(rx), &mut text);
    if let Ok(cell) = serde_json::from_slice::<Cell>(&text) {
        return Ok(cell);
    }
    let result = if !ended {
        "hung".to_string()
    } else if libc::WIFSIGNALED(status) {
        format!("killed by {}", signal_name(libc::WTERMSIG(status)))
    } else {
        format!(
            "child exited {} without a result",
            libc::WEXITSTATUS(status)
        )
    };
    Ok(Cell {
        result,
        ..Default::default()
    })
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGILL => "SIGILL".into(),
        n => format!("signal {n}"),
    }
}

/// A step that stopped the cell: `fails: WHAT ERRNO`.
fn failed(what: &str, e: &io::Error) -> Cell {
    Cell {
        result: format!("fails: {what} {}", errno::of(e)),
        ..Default::default()
    }
}

/// The L2 VM of one cell, its memory and what backs it.
struct Guest {
    vm: VmFd,
    vcpu: VcpuFd,
    /// The memory the slot's userspace address points at (the guest_memfd's
    /// own mapping, or anonymous memory).
    memory: Mapping,
    _gmem: Option<OwnedFd>,
    dropped: Vec<GmemFlag>,
}

/// The guest_memfd flags a backing asks for on `path`.
fn gmem_flags(path: Path, backing: Backing) -> Option<Vec<GmemFlag>> {
    let ndm = backing == Backing::NoDirectMap;
    match (backing, path) {
        (Backing::Anonymous, _) => None,
        // Private memory is the guest_memfd's, shared memory anonymous: the
        // guest_memfd is not mapped.
        (_, Path::PrivateShared) => Some(if ndm {
            vec![GmemFlag::NO_DIRECT_MAP]
        } else {
            vec![]
        }),
        _ => Some(if ndm {
            mappable_no_direct_map()
        } else {
            mappable()
        }),
    }
}

/// Builds the VM, its memory (loaded with tables and `program`) and vCPU.
fn build(
    path: Path,
    backing: Backing,
    if_unsupported: IfUnsupported,
    program: &Code,
) -> std::result::Result<Guest, Cell> {
    let kvm = Kvm::new().map_err(|e| failed("open /dev/kvm", &io_err(e)))?;
    let vm_type = if path == Path::PrivateShared { 1 } else { 0 };
    let vm = kvm
        .create_vm_with_type(vm_type)
        .map_err(|e| failed("KVM_CREATE_VM", &io_err(e)))?;
    if matches!(path, Path::PvEoi | Path::AsyncPf) {
        // An in-kernel LAPIC without the in-kernel I/O APIC (our kernels
        // have CONFIG_KVM_IOAPIC off, so KVM_CREATE_IRQCHIP is ENOTTY).
        let cap = kvm_enable_cap {
            cap: KVM_CAP_SPLIT_IRQCHIP,
            args: [24, 0, 0, 0],
            ..Default::default()
        };
        vm.enable_cap(&cap)
            .map_err(|e| failed("KVM_ENABLE_CAP(SPLIT_IRQCHIP)", &io_err(e)))?;
    }
    vm.set_tss_address(0xfffb_d000)
        .map_err(|e| failed("KVM_SET_TSS_ADDR", &io_err(e)))?;

    let mut dropped = Vec::new();
    let mut gmem = None;
    let mut mapped_gmem = false;
    if let Some(want) = gmem_flags(path, backing) {
        let used = match if_unsupported {
            IfUnsupported::Keep => want,
            IfUnsupported::Drop => {
                let supported =
                    vm.check_extension_raw(crate::kvm::sys::KVM_CAP_GUEST_MEMFD_FLAGS.into());
                let (used, d) = split_supported(&want, supported.max(0) as u64);
                dropped = d;
                used
            }
        };
        mapped_gmem = used.contains(&GmemFlag::MMAP);
        let fd = vm
            .create_guest_memfd(kvm_create_guest_memfd {
                size: SLOT_SIZE as u64,
                flags: gmem_mask(&used),
                ..Default::default()
            })
            .map_err(|e| failed("KVM_CREATE_GUEST_MEMFD", &io_err(e)))?;
        // SAFETY: a new fd from KVM that nothing else owns.
        gmem = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let memory = match &gmem {
        Some(fd) if mapped_gmem => Mapping::map(
            Some(fd.as_raw_fd()),
            SLOT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| failed("mmap of the guest_memfd", &e))?,
        _ => Mapping::anonymous(SLOT_SIZE).map_err(|e| failed("anonymous mmap", &e))?,
    };
    load_tables(&memory, program).map_err(|e| failed("loading the program", &e))?;

    let mut flags = 0;
    if gmem.is_some() {
        flags |= KVM_MEM_GUEST_MEMFD;
    }
    if path == Path::DirtyLog {
        flags |= KVM_MEM_LOG_DIRTY_PAGES;
    }
    let region = kvm_userspace_memory_region2 {
        slot: 0,
        flags,
        guest_phys_addr: 0,
        memory_size: SLOT_SIZE as u64,
        userspace_addr: memory.addr(),
        guest_memfd_offset: 0,
        guest_memfd: gmem.as_ref().map(|f| f.as_raw_fd() as u32).unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: `memory` is this cell's own mapping of exactly SLOT_SIZE bytes,
    // touched only through uaccess copies, and it outlives the VM (the child
    // exits with both).
    unsafe { vm.set_user_memory_region2(region) }
        .map_err(|e| failed("KVM_SET_USER_MEMORY_REGION2", &io_err(e)))?;

    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| failed("KVM_CREATE_VCPU", &io_err(e)))?;
    if matches!(path, Path::NestedVmsave | Path::NestedVmrun) {
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| failed("KVM_GET_SUPPORTED_CPUID", &io_err(e)))?;
        let svm = cpuid
            .as_slice()
            .iter()
            .any(|e| e.function == 0x8000_0001 && e.ecx & CPUID_SVM != 0);
        if !svm {
            return Err(Cell {
                result: "fails: nested SVM unavailable (KVM_GET_SUPPORTED_CPUID has no SVM: kvm_amd nested=0?)".into(),
                ..Default::default()
            });
        }
        // Keep what KVM offers; the L2 then may set EFER.SVME.
        for e in cpuid.as_mut_slice() {
            if e.function == 0x8000_0001 {
                e.ecx |= CPUID_SVM;
            }
        }
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| failed("KVM_SET_CPUID2", &io_err(e)))?;
    }
    protected_mode(&vcpu, needs_paging(path)).map_err(|e| failed("setting up the vCPU", &e))?;
    Ok(Guest {
        vm,
        vcpu,
        memory,
        _gmem: gmem,
        dropped,
    })
}

/// GDT, IDT, exception stubs and the program, into the slot's memory; the
/// page under test filled with [`FILL`].
fn load_tables(memory: &Mapping, program: &Code) -> io::Result<()> {
    let (idt, stubs) = l2code::idt_and_stubs(STUBS_GPA);
    memory.copy_in(GDT_GPA as usize, &l2code::gdt())?;
    memory.copy_in(IDT_GPA as usize, &idt)?;
    memory.copy_in(STUBS_GPA as usize, &stubs)?;
    memory.copy_in(CODE_GPA as usize, &program.bytes)?;
    memory.copy_in(IRQ_HANDLER_GPA as usize, &irq_handler().bytes)?;
    memory.copy_in(
        (IDT_GPA + IRQ_VECTOR * 8) as usize,
        &l2code::gate(IRQ_HANDLER_GPA),
    )?;
    // Present, writable, 4 MiB page at 0.
    memory.copy_in(PAGE_DIR_GPA as usize, &0x83u32.to_le_bytes())?;
    memory.copy_in(TARGET as usize, &[FILL; PAGE])
}

fn needs_paging(path: Path) -> bool {
    matches!(path, Path::NestedVmsave | Path::NestedVmrun)
}

/// Flat 32-bit protected mode at CODE_GPA; with `paging`, the first 4 MiB
/// mapped 1:1 (PAGE_DIR_GPA), so addresses stay guest-physical.
fn protected_mode(vcpu: &VcpuFd, paging: bool) -> io::Result<()> {
    let mut s = vcpu.get_sregs().map_err(io_err)?;
    let seg = |selector: u16, type_: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.cs = seg(l2code::CODE_SELECTOR, 0xb);
    for d in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        *d = seg(l2code::DATA_SELECTOR, 0x3);
    }
    s.gdt.base = GDT_GPA.into();
    s.gdt.limit = 3 * 8 - 1;
    s.idt.base = IDT_GPA.into();
    s.idt.limit = ((IRQ_VECTOR + 1) * 8 - 1) as u16;
    s.cr0 = 0x11; // PE | ET
    s.cr4 = 0;
    s.efer = 0;
    if paging {
        s.cr3 = PAGE_DIR_GPA.into();
        s.cr4 = 1 << 4; // PSE: 4 MiB pages
        s.cr0 |= 1 << 31; // PG
    }
    vcpu.set_sregs(&s).map_err(io_err)?;
    let mut r = vcpu.get_regs().map_err(io_err)?;
    r.rip = CODE_GPA.into();
    r.rsp = STACK_TOP.into();
    r.rflags = 0x2;
    vcpu.set_regs(&r).map_err(io_err)
}

/// The L2 program of each path. Every program ends with an OUT to
/// DONE_PORT; values it reports go out on REPORT_PORT.
fn program(path: Path) -> Code {
    let mut c = Code::new();
    match path {
        Path::Pvclock => {
            c.wrmsr(MSR_KVM_SYSTEM_TIME_NEW, u64::from(TARGET) | KVM_MSR_ENABLED)
                .report_dword(TARGET);
        }
        Path::StealTime => {
            c.wrmsr(MSR_KVM_STEAL_TIME, u64::from(TARGET) | KVM_MSR_ENABLED)
                .report_dword(TARGET + 8);
        }
        Path::PvEoi => {
            // PV EOI on, the APIC enabled, interrupts on; then wait in HLT
            // for the host's MSI, whose handler reports the page. The pages
            // the delivery and the handler touch (tables, stack, the page)
            // are touched first: a nested page fault during delivery is a
            // VM exit, and every exit takes the pending bit back.
            c.load_eax(IDT_GPA)
                .load_eax(TARGET)
                .store_eax(STACK_TOP - 16)
                .wrmsr(MSR_KVM_PV_EOI_EN, u64::from(TARGET) | KVM_MSR_ENABLED)
                .mov_imm(l2code::Reg::Eax, 0x1ff)
                .store_eax(APIC_SVR)
                .sti()
                .mov_imm(l2code::Reg::Eax, 0)
                .out_eax(READY_PORT)
                .hlt_loop();
            return c;
        }
        Path::AsyncPf => {
            c.wrmsr(MSR_KVM_ASYNC_PF_INT, 0x40)
                .wrmsr(
                    MSR_KVM_ASYNC_PF_EN,
                    u64::from(TARGET) | KVM_MSR_ENABLED | KVM_ASYNC_PF_DELIVERY_AS_INT,
                )
                .report_dword(TARGET + 4);
        }
        Path::MmioDecode => {
            // The emulated instructions run from the page under test.
            c.jmp_abs(TARGET);
        }
        Path::StringOut => {
            c.rep_outsb(TARGET, STRING_LEN, STRING_OUT_PORT);
        }
        Path::StringIn => {
            c.rep_insb(TARGET, STRING_LEN, STRING_IN_PORT)
                .report_dword(TARGET);
        }
        Path::PreFault | Path::PrivateShared => {
            c.report_dword(TARGET)
                .mov_imm(l2code::Reg::Eax, L2_STORE)
                .store_eax(TARGET);
        }
        Path::DirtyLog => {
            c.mov_imm(l2code::Reg::Eax, L2_STORE).store_eax(TARGET);
        }
        Path::Hwpoison => {
            c.report_dword(TARGET);
        }
        Path::NestedVmsave | Path::NestedVmrun => {
            c.set_msr_bits(MSR_EFER, EFER_SVME)
                .wrmsr(MSR_VM_HSAVE_PA, HSAVE_GPA.into())
                .load_fs(l2code::DATA_SELECTOR);
            if path == Path::NestedVmsave {
                c.vmsave(TARGET).load_eax_word(TARGET + VMCB_FS_SELECTOR);
            } else {
                c.vmrun(TARGET).load_eax(TARGET + VMCB_EXIT_CODE);
            }
            c.report_eax();
        }
    }
    c.mov_imm(l2code::Reg::Eax, 0).out_eax(DONE_PORT).hlt();
    c
}

/// The pv_eoi path's interrupt handler: reports the PV EOI word KVM set
/// when it injected the interrupt, ends the interrupt at the APIC, and asks
/// for another (it never returns: each interrupt nests on the stack, a few
/// words each). Any VM exit between the injection and the read takes the
/// bit back (`apic_sync_pv_eoi_from_guest`), so the host tries a few times.
fn irq_handler() -> Code {
    let mut c = Code::new();
    c.report_dword(TARGET)
        .mov_imm(l2code::Reg::Eax, 0)
        .store_eax(APIC_EOI)
        .sti()
        .out_eax(READY_PORT)
        .hlt_loop();
    c
}

/// The code the MMIO path places on the page under test.
fn mmio_code() -> Code {
    let mut c = Code::new();
    c.mov_imm(l2code::Reg::Eax, MMIO_STORE)
        .store_eax(MMIO_GPA)
        .load_eax(MMIO_GPA + 4)
        .report_eax()
        .mov_imm(l2code::Reg::Eax, 0)
        .out_eax(DONE_PORT)
        .hlt();
    c
}

/// What one run of the vCPU showed.
#[derive(Debug, Default)]
struct Run {
    exits: Vec<String>,
    reported: Vec<u32>,
    exception: Option<u32>,
    string_out: Vec<u8>,
    mmio_store: Option<u32>,
    /// Why the run ended other than at HLT.
    stopped: Option<String>,
}

/// The bytes the string-in path feeds the guest.
fn string_in_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(7) ^ 0x3c
}

/// Runs the vCPU to HLT (or an exit the paths do not expect), answering
/// MMIO loads and string input.
fn run(vcpu: &mut VcpuFd, vm: &VmFd, timeout: Duration) -> Run {
    let mut r = Run::default();
    let started = Instant::now();
    let mut fed = 0usize;
    for _ in 0..MAX_EXITS {
        if started.elapsed() > timeout {
            r.stopped = Some("timeout".into());
            break;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                let v = data
                    .iter()
                    .rev()
                    .fold(0u32, |v, b| (v << 8) | u32::from(*b));
                match port {
                    REPORT_PORT => {
                        r.reported.push(v);
                        r.exits.push("IO out report".into());
                    }
                    EXCEPTION_PORT => {
                        r.exception = Some(v);
                        r.exits
                            .push(format!("exception {}", l2code::vector_name(v)));
                        break;
                    }
                    DONE_PORT => {
                        r.exits.push("done".into());
                        break;
                    }
                    READY_PORT => {
                        // The L2 waits with interrupts on: send it one,
                        // unless its handler saw the bit (or tries ran out).
                        let seen = r.reported.last().is_some_and(|v| v & 1 == 1);
                        if seen || r.reported.len() >= PV_EOI_TRIES {
                            r.exits.push("done".into());
                            break;
                        }
                        let msi = kvm_msi {
                            address_lo: 0xfee0_0000,
                            data: IRQ_VECTOR,
                            ..Default::default()
                        };
                        let sent = vm.signal_msi(msi).map(|_| ()).map_err(io_err);
                        r.exits
                            .push(format!("ready, KVM_SIGNAL_MSI {}", errno::outcome(&sent)));
                    }
                    STRING_OUT_PORT => {
                        r.string_out.extend_from_slice(data);
                        r.exits.push(format!("IO out string x{}", data.len()));
                    }
                    p => r.exits.push(format!("IO out port={p:#x}")),
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                if port == STRING_IN_PORT {
                    for b in data.iter_mut() {
                        *b = string_in_byte(fed);
                        fed += 1;
                    }
                    r.exits.push(format!("IO in string x{}", data.len()));
                } else {
                    r.exits.push(format!("IO in port={port:#x}"));
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let v = data
                    .iter()
                    .rev()
                    .fold(0u32, |v, b| (v << 8) | u32::from(*b));
                r.mmio_store = Some(v);
                r.exits
                    .push(format!("MMIO write gpa={addr:#x} len={}", data.len()));
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                let bytes = MMIO_LOAD.to_le_bytes();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = bytes.get(i).copied().unwrap_or(0);
                }
                r.exits
                    .push(format!("MMIO read gpa={addr:#x} len={}", data.len()));
            }
            Ok(VcpuExit::Hlt) => {
                // Programs end at DONE_PORT; a HLT exit is unexpected.
                r.exits.push("HLT".into());
                r.stopped = Some("HLT before done".into());
                break;
            }
            Ok(VcpuExit::MemoryFault { flags, gpa, size }) => {
                let kind = if flags & crate::kvm::sys::KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    "private"
                } else {
                    "shared"
                };
                let text = format!("MEMORY_FAULT gpa={gpa:#x} size={size:#x} {kind}");
                r.exits.push(text.clone());
                r.stopped = Some(text);
                break;
            }
            Ok(other) => {
                let text = other_exit(&other);
                r.exits.push(text.clone());
                r.stopped = Some(text);
                break;
            }
            Err(e) => {
                let text = format!("KVM_RUN {}", errno::of(&io_err(e)));
                r.exits.push(text.clone());
                r.stopped = Some(text);
                break;
            }
        }
    }
    if r.stopped.as_deref() == Some(INTERNAL_ERROR) {
        // SAFETY: the exit reason says the internal union member is set.
        let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let text = format!(
            "{INTERNAL_ERROR} {}",
            match sub {
                1 => "EMULATION".to_string(),
                2 => "SIMUL_EX".into(),
                3 => "DELIVERY_EV".into(),
                4 => "UNEXPECTED_EXIT_REASON".into(),
                n => format!("suberror={n}"),
            }
        );
        r.exits.pop();
        r.exits.push(text.clone());
        r.stopped = Some(text);
    }
    r
}

const INTERNAL_ERROR: &str = "INTERNAL_ERROR";

/// An exit no path expects, by name (the internal error's suberror is
/// added once the exit's borrow of the vCPU has ended).
fn other_exit(exit: &VcpuExit) -> String {
    match exit {
        VcpuExit::InternalError => INTERNAL_ERROR.into(),
        VcpuExit::Shutdown => "SHUTDOWN".into(),
        VcpuExit::FailEntry(reason, _) => format!("FAIL_ENTRY {reason:#x}"),
        VcpuExit::SystemEvent(kind, _) => format!("SYSTEM_EVENT type={kind}"),
        VcpuExit::Unsupported(n) => format!("exit {n}"),
        other => format!("{other:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or("?")
            .to_string(),
    }
}

/// How a run that did not get where the path needed ended: `fails: ...`.
fn stopped(r: &Run) -> Option<String> {
    if let Some(v) = r.exception {
        return Some(format!("fails: exception {} in L2", l2code::vector_name(v)));
    }
    r.stopped.as_ref().map(|s| format!("fails: {s}"))
}

/// Reads the page under test through the host's mapping.
fn target(g: &Guest, offset: u32, len: usize) -> io::Result<Vec<u8>> {
    g.memory.copy_out((TARGET + offset) as usize, len)
}

fn dword(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Classifies a value the L2 read from the page under test.
fn value_name(v: u32) -> String {
    match v {
        0 => "zero".into(),
        v if v == u32::from_le_bytes([FILL; 4]) => "initial".into(),
        L2_STORE => "written".into(),
        _ => "other".into(),
    }
}

/// One cell: build, run, check.
fn cell(path: Path, backing: Backing, if_unsupported: IfUnsupported) -> Cell {
    let prog = program(path);
    let mut g = match build(path, backing, if_unsupported, &prog) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let dropped = std::mem::take(&mut g.dropped);
    let mut c = match check(path, &mut g) {
        Ok(c) => c,
        Err(e) => failed("reading the page", &e),
    };
    c.dropped_flags = dropped;
    c
}

const RUN_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the L2 program and judges it: a run that stopped short (an
/// exception, an exit no path expects) is that failure; otherwise `judge`
/// gives the result and what it checked.
fn judged(
    g: &mut Guest,
    judge: impl FnOnce(&Guest, &Run) -> io::Result<(String, Option<String>)>,
) -> io::Result<Cell> {
    let r = run(&mut g.vcpu, &g.vm, RUN_TIMEOUT);
    let (result, detail) = match stopped(&r) {
        Some(s) => (s, None),
        None => judge(g, &r)?,
    };
    Ok(Cell {
        result,
        detail,
        dropped_flags: vec![],
        exits: r.exits,
    })
}

/// "works" with what was checked, or "fails: WHY".
fn verdict(ok: bool, checked: String, why: &str) -> (String, Option<String>) {
    if ok {
        ("works".into(), Some(checked))
    } else {
        (format!("fails: {why}"), Some(checked))
    }
}

fn check(path: Path, g: &mut Guest) -> io::Result<Cell> {
    let mut c = match path {
        Path::Pvclock => check_pvclock(g),
        Path::StealTime => check_steal_time(g),
        Path::PvEoi => check_pv_eoi(g),
        Path::AsyncPf => check_async_pf(g),
        Path::MmioDecode => check_mmio_decode(g),
        Path::StringOut => check_string_out(g),
        Path::StringIn => check_string_in(g),
        Path::PreFault => check_pre_fault(g),
        Path::PrivateShared => check_private_shared(g),
        Path::DirtyLog => check_dirty_log(g),
        Path::NestedVmsave | Path::NestedVmrun => check_nested(path, g),
        Path::Hwpoison => check_hwpoison(g),
    }?;
    c.exits.truncate(16);
    Ok(c)
}

fn parity(v: u32) -> &'static str {
    match v {
        0 => "0",
        v if v.is_multiple_of(2) => "even",
        _ => "odd",
    }
}

fn check_pvclock(g: &mut Guest) -> io::Result<Cell> {
    g.memory.copy_in(TARGET as usize, &[0; PAGE])?;
    judged(g, |g, _| {
        // pvclock_vcpu_time_info: version @0, tsc_to_system_mul @24.
        let page = target(g, 0, 32)?;
        let (version, mul) = (dword(&page[0..]), dword(&page[24..]));
        Ok(verdict(
            version != 0 && version.is_multiple_of(2) && mul != 0,
            format!(
                "pvclock version {}, tsc_to_system_mul {}",
                parity(version),
                if mul != 0 { "set" } else { "0" }
            ),
            "not written",
        ))
    })
}

fn check_steal_time(g: &mut Guest) -> io::Result<Cell> {
    g.memory.copy_in(TARGET as usize, &[0; PAGE])?;
    judged(g, |g, _| {
        // kvm_steal_time: version @8, bumped twice per update.
        let version = dword(&target(g, 8, 4)?);
        Ok(verdict(
            version != 0 && version.is_multiple_of(2),
            format!("steal time version {}", parity(version)),
            "not written",
        ))
    })
}

fn check_async_pf(g: &mut Guest) -> io::Result<Cell> {
    g.memory.copy_in(TARGET as usize, &[0; PAGE])?;
    judged(g, |g, _| {
        let untouched = target(g, 0, 64)?.iter().all(|b| *b == 0);
        Ok((
            "works".into(),
            Some(format!(
                "MSR accepted; the page is {} (KVM writes there only when it delivers a page-ready event)",
                if untouched { "untouched" } else { "written" }
            )),
        ))
    })
}

fn check_pv_eoi(g: &mut Guest) -> io::Result<Cell> {
    g.memory.copy_in(TARGET as usize, &[0; PAGE])?;
    let mut c = judged(g, |_, r| {
        Ok(match r.reported.last() {
            Some(v) if v & 1 == 1 => (
                "works".into(),
                Some("KVM set the PV EOI pending bit when it injected the interrupt".into()),
            ),
            Some(_) => (
                format!("fails: the PV EOI bit was not set in {PV_EOI_TRIES} interrupts"),
                None,
            ),
            None => ("fails: the interrupt never came".into(), None),
        })
    })?;
    // How many interrupts it took depends on exits the host causes: the
    // cell keeps only the verdict.
    c.exits.clear();
    Ok(c)
}

fn check_mmio_decode(g: &mut Guest) -> io::Result<Cell> {
    g.memory.copy_in(TARGET as usize, &mmio_code().bytes)?;
    judged(g, |_, r| {
        let store = r.mmio_store == Some(MMIO_STORE);
        let load = r.reported.first() == Some(&MMIO_LOAD);
        let word = |ok| if ok { "decoded" } else { "wrong" };
        Ok(verdict(
            store && load,
            format!("store {}, load {}", word(store), word(load)),
            "wrong values",
        ))
    })
}

fn check_string_out(g: &mut Guest) -> io::Result<Cell> {
    let want: Vec<u8> = (0..STRING_LEN as usize).map(|i| (i as u8) ^ 0x69).collect();
    g.memory.copy_in(TARGET as usize, &want)?;
    judged(g, |_, r| {
        let same = r
            .string_out
            .iter()
            .zip(&want)
            .filter(|(a, b)| a == b)
            .count();
        Ok(verdict(
            r.string_out == want,
            format!("{same} of {} bytes out as the page holds them", want.len()),
            "wrong bytes",
        ))
    })
}

fn check_string_in(g: &mut Guest) -> io::Result<Cell> {
    judged(g, |g, r| {
        let got = target(g, 0, STRING_LEN as usize)?;
        let want: Vec<u8> = (0..STRING_LEN as usize).map(string_in_byte).collect();
        let l2 = r.reported.first() == Some(&dword(&want));
        Ok(verdict(
            got == want && l2,
            format!(
                "host mapping {}, L2 read {}",
                if got == want {
                    "holds the input"
                } else {
                    "does not hold the input"
                },
                if l2 { "the input" } else { "something else" }
            ),
            "wrong bytes",
        ))
    })
}

fn check_pre_fault(g: &mut Guest) -> io::Result<Cell> {
    let pre = pre_fault(&g.vcpu, TARGET.into(), PAGE as u64);
    judged(g, |_, r| {
        let read = r.reported.first().map(|v| value_name(*v));
        Ok(verdict(
            pre == "ok" && read.as_deref() == Some("initial"),
            format!(
                "KVM_PRE_FAULT_MEMORY {pre}, L2 read {}",
                read.as_deref().unwrap_or("nothing")
            ),
            "pre-fault or read",
        ))
    })
}

fn check_private_shared(g: &mut Guest) -> io::Result<Cell> {
    let mut rounds = Vec::new();
    let mut exits = Vec::new();
    for private in [true, false, true] {
        let which = if private { "private" } else { "shared" };
        let attr = kvm_memory_attributes {
            address: TARGET.into(),
            size: PAGE as u64,
            attributes: if private { MEMORY_ATTRIBUTE_PRIVATE } else { 0 },
            flags: 0,
        };
        if let Err(e) = g.vm.set_memory_attributes(attr) {
            let e = errno::of(&io_err(e));
            rounds.push(format!("{which}: KVM_SET_MEMORY_ATTRIBUTES {e}"));
            break;
        }
        // Each round runs the program from its start.
        protected_mode(&g.vcpu, false)?;
        let r = run(&mut g.vcpu, &g.vm, RUN_TIMEOUT);
        exits.extend(r.exits.iter().cloned());
        rounds.push(match stopped(&r) {
            Some(s) => format!("{which}: {}", s.trim_start_matches("fails: ")),
            None => format!(
                "{which}: read {}",
                r.reported
                    .first()
                    .map(|v| value_name(*v))
                    .unwrap_or_else(|| "nothing".into())
            ),
        });
    }
    let text = rounds.join(", ");
    // Private reads come from the guest_memfd (zero, then what the L2
    // wrote there), shared ones from the userspace memory.
    let works = text == "private: read zero, shared: read initial, private: read written";
    Ok(Cell {
        result: if works {
            "works".into()
        } else {
            format!("fails: {text}")
        },
        detail: works.then_some(text),
        dropped_flags: vec![],
        exits,
    })
}

fn check_dirty_log(g: &mut Guest) -> io::Result<Cell> {
    judged(g, |g, _| {
        Ok(match g.vm.get_dirty_log(0, SLOT_SIZE) {
            Ok(bits) => {
                let page = TARGET as usize / PAGE;
                let dirty = bits.first().is_some_and(|w| w & (1 << page) != 0);
                verdict(
                    dirty,
                    format!(
                        "page under test {}",
                        if dirty { "dirty" } else { "not dirty" }
                    ),
                    "not marked dirty",
                )
            }
            Err(e) => (
                format!("fails: KVM_GET_DIRTY_LOG {}", errno::of(&io_err(e))),
                None,
            ),
        })
    })
}

fn check_nested(path: Path, g: &mut Guest) -> io::Result<Cell> {
    let (want, what) = if path == Path::NestedVmsave {
        (
            u32::from(l2code::DATA_SELECTOR),
            "VMSAVE stored fs.selector",
        )
    } else {
        (
            SVM_EXIT_ERR,
            "VMRUN of an invalid VMCB wrote exit_code VMEXIT_INVALID",
        )
    };
    judged(g, |_, r| {
        Ok(match r.reported.first() {
            Some(v) if *v == want => ("works".into(), Some(what.into())),
            Some(0) => (
                "fails: the VMCB was not written (instruction skipped?)".into(),
                None,
            ),
            Some(_) => ("fails: the VMCB holds something else".into(), None),
            None => ("fails: no report".into(), None),
        })
    })
}

fn check_hwpoison(g: &mut Guest) -> io::Result<Cell> {
    let poison = hwpoison(&g.memory, TARGET as usize);
    let mut c = judged(g, |_, r| {
        let read = r.reported.first().map(|v| value_name(*v));
        Ok(match read {
            Some(v) if poison != "ok" => (format!("fails: not poisoned, L2 read {v}"), None),
            Some(v) => (format!("L2 read {v} from a poisoned page"), None),
            None => ("fails: no report".into(), None),
        })
    })?;
    c.detail = Some(format!("madvise(MADV_HWPOISON) {poison}"));
    Ok(c)
}

/// madvise(MADV_HWPOISON) on one page of `memory` (a soft memory error,
/// as the kernel handles a real one): "ok" or the errno.
fn hwpoison(memory: &Mapping, offset: usize) -> String {
    // SAFETY: the range is one page inside our own mapping; poisoning it
    // unmaps the page (a later access is a SIGBUS, which the parent sees).
    let r = unsafe {
        libc::madvise(
            memory.as_ptr().add(offset).cast(),
            PAGE,
            libc::MADV_HWPOISON,
        )
    };
    if r == 0 {
        "ok".into()
    } else {
        errno::of(&io::Error::last_os_error())
    }
}

/// KVM_PRE_FAULT_MEMORY (not in kvm-ioctls): "ok", "partial" or the errno.
fn pre_fault(vcpu: &VcpuFd, gpa: u64, size: u64) -> String {
    match crate::kvm::pre_fault_memory(vcpu.as_raw_fd(), gpa, size) {
        Ok(0) => "ok".into(),
        Ok(_) => "partial".into(),
        Err(e) => errno::of(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_fit_their_page_and_end_done() {
        for p in [
            Path::Pvclock,
            Path::StealTime,
            Path::PvEoi,
            Path::AsyncPf,
            Path::MmioDecode,
            Path::StringOut,
            Path::StringIn,
            Path::PreFault,
            Path::PrivateShared,
            Path::DirtyLog,
            Path::NestedVmsave,
            Path::NestedVmrun,
            Path::Hwpoison,
        ] {
            let c = program(p);
            assert!(c.bytes.len() < 0x800, "{p:?} runs into the IRQ handler");
            // mov eax, 0; mov dx, DONE_PORT; out dx, eax; hlt (pv_eoi ends
            // in its handler).
            let done = [0x66, 0xba, 0x1f, 0x05, 0xef, 0xf4];
            if p != Path::PvEoi {
                assert_eq!(c.bytes[c.bytes.len() - 6..], done, "{p:?}");
            }
        }
        assert_eq!(mmio_code().bytes.last(), Some(&0xf4));
    }

    #[test]
    fn values_are_named() {
        assert_eq!(value_name(0), "zero");
        assert_eq!(value_name(0xa5a5_a5a5), "initial");
        assert_eq!(value_name(L2_STORE), "written");
        assert_eq!(value_name(3), "other");
    }

    #[test]
    fn gmem_flags_per_backing() {
        assert_eq!(gmem_flags(Path::Pvclock, Backing::Anonymous), None);
        assert_eq!(
            gmem_flags(Path::Pvclock, Backing::NoDirectMap),
            Some(vec![
                GmemFlag::MMAP,
                GmemFlag::INIT_SHARED,
                GmemFlag::NO_DIRECT_MAP
            ])
        );
        assert_eq!(
            gmem_flags(Path::PrivateShared, Backing::GuestMemfd),
            Some(vec![])
        );
    }
}
