//! Raw KVM ioctls, written against the 7.3 uAPI (include/uapi/linux/kvm.h,
//! arch/x86/include/uapi/asm/kvm.h), in the style of rust-vmm kvm-ioctls: one
//! safe type per kind of fd ([`Kvm`], [`Vm`], [`Vcpu`], [`GuestMemfd`]), the
//! ioctl numbers and structs in one place ([`sys`]), every `unsafe` block with
//! its reason. Only what the probes use is here.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::mapping::Mapping;

/// ioctl numbers and uAPI structs, laid out exactly as the C headers.
#[allow(non_camel_case_types)]
pub mod sys {
    use std::mem::size_of;

    const KVMIO: u64 = 0xAE;
    // include/uapi/asm-generic/ioctl.h
    const IOC_NONE: u64 = 0;
    const IOC_WRITE: u64 = 1;
    const IOC_READ: u64 = 2;

    const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
        (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
    }
    const fn io(nr: u64) -> u64 {
        ioc(IOC_NONE, nr, 0)
    }
    const fn iow<T>(nr: u64) -> u64 {
        ioc(IOC_WRITE, nr, size_of::<T>())
    }
    const fn ior<T>(nr: u64) -> u64 {
        ioc(IOC_READ, nr, size_of::<T>())
    }
    const fn iowr<T>(nr: u64) -> u64 {
        ioc(IOC_READ | IOC_WRITE, nr, size_of::<T>())
    }

    // /dev/kvm
    pub const KVM_GET_API_VERSION: u64 = io(0x00);
    pub const KVM_CREATE_VM: u64 = io(0x01);
    pub const KVM_CHECK_EXTENSION: u64 = io(0x03);
    pub const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
    // VM fd
    pub const KVM_CREATE_VCPU: u64 = io(0x41);
    pub const KVM_SET_TSS_ADDR: u64 = io(0x47);
    pub const KVM_SET_USER_MEMORY_REGION2: u64 = iow::<kvm_userspace_memory_region2>(0x49);
    pub const KVM_SET_MEMORY_ATTRIBUTES: u64 = iow::<kvm_memory_attributes>(0xd2);
    pub const KVM_CREATE_GUEST_MEMFD: u64 = iowr::<kvm_create_guest_memfd>(0xd4);
    // vCPU fd
    pub const KVM_RUN: u64 = io(0x80);
    pub const KVM_GET_REGS: u64 = ior::<kvm_regs>(0x81);
    pub const KVM_SET_REGS: u64 = iow::<kvm_regs>(0x82);
    pub const KVM_GET_SREGS: u64 = ior::<kvm_sregs>(0x83);
    pub const KVM_SET_SREGS: u64 = iow::<kvm_sregs>(0x84);
    pub const KVM_PRE_FAULT_MEMORY: u64 = iowr::<kvm_pre_fault_memory>(0xd5);

    // Capabilities.
    pub const KVM_CAP_USER_MEMORY2: u32 = 231;
    pub const KVM_CAP_MEMORY_ATTRIBUTES: u32 = 233;
    pub const KVM_CAP_GUEST_MEMFD: u32 = 234;
    pub const KVM_CAP_VM_TYPES: u32 = 235;
    pub const KVM_CAP_PRE_FAULT_MEMORY: u32 = 236;
    pub const KVM_CAP_GUEST_MEMFD_FLAGS: u32 = 244;

    pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;

    // Exit reasons.
    pub const KVM_EXIT_UNKNOWN: u32 = 0;
    pub const KVM_EXIT_EXCEPTION: u32 = 1;
    pub const KVM_EXIT_IO: u32 = 2;
    pub const KVM_EXIT_HYPERCALL: u32 = 3;
    pub const KVM_EXIT_DEBUG: u32 = 4;
    pub const KVM_EXIT_HLT: u32 = 5;
    pub const KVM_EXIT_MMIO: u32 = 6;
    pub const KVM_EXIT_IRQ_WINDOW_OPEN: u32 = 7;
    pub const KVM_EXIT_SHUTDOWN: u32 = 8;
    pub const KVM_EXIT_FAIL_ENTRY: u32 = 9;
    pub const KVM_EXIT_INTR: u32 = 10;
    pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
    pub const KVM_EXIT_SYSTEM_EVENT: u32 = 24;
    pub const KVM_EXIT_X86_RDMSR: u32 = 29;
    pub const KVM_EXIT_X86_WRMSR: u32 = 30;
    pub const KVM_EXIT_MEMORY_FAULT: u32 = 39;

    pub const KVM_EXIT_IO_OUT: u8 = 1;
    pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_userspace_memory_region2 {
        pub slot: u32,
        pub flags: u32,
        pub guest_phys_addr: u64,
        pub memory_size: u64,
        pub userspace_addr: u64,
        pub guest_memfd_offset: u64,
        pub guest_memfd: u32,
        pub pad1: u32,
        pub pad2: [u64; 14],
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_create_guest_memfd {
        pub size: u64,
        pub flags: u64,
        pub reserved: [u64; 6],
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_memory_attributes {
        pub address: u64,
        pub size: u64,
        pub attributes: u64,
        pub flags: u64,
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_pre_fault_memory {
        pub gpa: u64,
        pub size: u64,
        pub flags: u64,
        pub padding: [u64; 5],
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_regs {
        pub rax: u64,
        pub rbx: u64,
        pub rcx: u64,
        pub rdx: u64,
        pub rsi: u64,
        pub rdi: u64,
        pub rsp: u64,
        pub rbp: u64,
        pub r8: u64,
        pub r9: u64,
        pub r10: u64,
        pub r11: u64,
        pub r12: u64,
        pub r13: u64,
        pub r14: u64,
        pub r15: u64,
        pub rip: u64,
        pub rflags: u64,
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_segment {
        pub base: u64,
        pub limit: u32,
        pub selector: u16,
        pub type_: u8,
        pub present: u8,
        pub dpl: u8,
        pub db: u8,
        pub s: u8,
        pub l: u8,
        pub g: u8,
        pub avl: u8,
        pub unusable: u8,
        pub padding: u8,
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_dtable {
        pub base: u64,
        pub limit: u16,
        pub padding: [u16; 3],
    }

    /// KVM_NR_INTERRUPTS is 256.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct kvm_sregs {
        pub cs: kvm_segment,
        pub ds: kvm_segment,
        pub es: kvm_segment,
        pub fs: kvm_segment,
        pub gs: kvm_segment,
        pub ss: kvm_segment,
        pub tr: kvm_segment,
        pub ldt: kvm_segment,
        pub gdt: kvm_dtable,
        pub idt: kvm_dtable,
        pub cr0: u64,
        pub cr2: u64,
        pub cr3: u64,
        pub cr4: u64,
        pub cr8: u64,
        pub efer: u64,
        pub apic_base: u64,
        pub interrupt_bitmap: [u64; 4],
    }

    /// The head of `struct kvm_run` (the mmap of a vCPU fd); the exit union
    /// starts at offset 0x20.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run {
        pub request_interrupt_window: u8,
        pub immediate_exit: u8,
        pub padding1: [u8; 6],
        pub exit_reason: u32,
        pub ready_for_interrupt_injection: u8,
        pub if_flag: u8,
        pub flags: u16,
        pub cr8: u64,
        pub apic_base: u64,
        pub exit: kvm_run_exit,
    }

    /// The parts of the `kvm_run` exit union the probes decode.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub union kvm_run_exit {
        pub hw: kvm_run_hw,
        pub fail_entry: kvm_run_fail_entry,
        pub io: kvm_run_io,
        pub mmio: kvm_run_mmio,
        pub internal: kvm_run_internal,
        pub system_event: kvm_run_system_event,
        pub memory_fault: kvm_run_memory_fault,
        pub padding: [u8; 256],
    }

    impl std::fmt::Debug for kvm_run_exit {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("kvm_run_exit { .. }")
        }
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_hw {
        pub hardware_exit_reason: u64,
    }
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_fail_entry {
        pub hardware_entry_failure_reason: u64,
        pub cpu: u32,
    }
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_io {
        pub direction: u8,
        pub size: u8,
        pub port: u16,
        pub count: u32,
        pub data_offset: u64,
    }
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_mmio {
        pub phys_addr: u64,
        pub data: [u8; 8],
        pub len: u32,
        pub is_write: u8,
    }
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_internal {
        pub suberror: u32,
        pub ndata: u32,
        pub data: [u64; 16],
    }
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_system_event {
        pub type_: u32,
        pub ndata: u32,
    }
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct kvm_run_memory_fault {
        pub flags: u64,
        pub gpa: u64,
        pub size: u64,
    }
}

/// The ioctl call itself: returns the non-negative result or the errno.
///
/// # Safety
/// `arg` must be what `request` expects on `fd`: an integer, or a pointer to a
/// live object of the request's struct type (read and/or written by the
/// kernel as the request's direction says).
unsafe fn ioctl(fd: RawFd, request: u64, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the caller guarantees `arg` matches `request`.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An ioctl whose argument is a plain integer (no memory is passed).
fn ioctl_val(fd: RawFd, request: u64, arg: u64) -> io::Result<libc::c_int> {
    // SAFETY: only called with requests that take an integer argument
    // (`_IO` numbers); the kernel does not dereference it.
    unsafe { ioctl(fd, request, arg as libc::c_ulong) }
}

/// An ioctl whose argument is a pointer to `T`, read and/or written.
fn ioctl_ref<T>(fd: RawFd, request: u64, arg: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: only called with requests whose encoded size is
    // size_of::<T>() (see `sys`); `arg` is a live, exclusive `T` for the call.
    unsafe { ioctl(fd, request, arg as *mut T as libc::c_ulong) }
}

/// Wraps a new fd returned by an ioctl.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `/dev/kvm`.
pub struct Kvm {
    fd: OwnedFd,
}

impl Kvm {
    pub fn open() -> io::Result<Kvm> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/kvm")?;
        Ok(Kvm { fd: file.into() })
    }

    pub fn api_version(&self) -> io::Result<i32> {
        ioctl_val(self.fd.as_raw_fd(), sys::KVM_GET_API_VERSION, 0)
    }

    /// KVM_CHECK_EXTENSION on the system fd (the answer for any VM).
    pub fn check_extension(&self, cap: u32) -> io::Result<i32> {
        ioctl_val(self.fd.as_raw_fd(), sys::KVM_CHECK_EXTENSION, cap.into())
    }

    pub fn vcpu_mmap_size(&self) -> io::Result<usize> {
        ioctl_val(self.fd.as_raw_fd(), sys::KVM_GET_VCPU_MMAP_SIZE, 0).map(|n| n as usize)
    }

    pub fn create_vm(&self, vm_type: u64) -> io::Result<Vm> {
        let run_size = self.vcpu_mmap_size()?;
        let fd = ioctl_val(self.fd.as_raw_fd(), sys::KVM_CREATE_VM, vm_type)?;
        Ok(Vm {
            fd: owned(fd),
            run_size,
        })
    }
}

/// A VM fd.
pub struct Vm {
    fd: OwnedFd,
    run_size: usize,
}

impl Vm {
    /// KVM_CHECK_EXTENSION on this VM (per-VM answers, e.g.
    /// KVM_CAP_GUEST_MEMFD_FLAGS depends on the VM type).
    pub fn check_extension(&self, cap: u32) -> io::Result<i32> {
        ioctl_val(self.fd.as_raw_fd(), sys::KVM_CHECK_EXTENSION, cap.into())
    }

    pub fn create_guest_memfd(&self, size: u64, flags: u64) -> io::Result<GuestMemfd> {
        let mut args = sys::kvm_create_guest_memfd {
            size,
            flags,
            ..Default::default()
        };
        let fd = ioctl_ref(self.fd.as_raw_fd(), sys::KVM_CREATE_GUEST_MEMFD, &mut args)?;
        Ok(GuestMemfd { fd: owned(fd) })
    }

    pub fn set_tss_addr(&self, addr: u64) -> io::Result<()> {
        ioctl_val(self.fd.as_raw_fd(), sys::KVM_SET_TSS_ADDR, addr).map(drop)
    }

    /// KVM_SET_USER_MEMORY_REGION2.
    ///
    /// # Safety
    /// While the slot exists, the guest (and KVM) read and write the memory at
    /// `region.userspace_addr .. + memory_size` behind the compiler's back: it
    /// must be a mapping this process owns, that outlives the slot, and that
    /// no Rust reference points into.
    pub unsafe fn set_user_memory_region2(
        &self,
        region: &sys::kvm_userspace_memory_region2,
    ) -> io::Result<()> {
        let mut region = *region;
        ioctl_ref(
            self.fd.as_raw_fd(),
            sys::KVM_SET_USER_MEMORY_REGION2,
            &mut region,
        )
        .map(drop)
    }

    pub fn set_memory_attributes(
        &self,
        address: u64,
        size: u64,
        attributes: u64,
    ) -> io::Result<()> {
        let mut args = sys::kvm_memory_attributes {
            address,
            size,
            attributes,
            flags: 0,
        };
        ioctl_ref(
            self.fd.as_raw_fd(),
            sys::KVM_SET_MEMORY_ATTRIBUTES,
            &mut args,
        )
        .map(drop)
    }

    pub fn create_vcpu(&self, id: u64) -> io::Result<Vcpu> {
        let fd = owned(ioctl_val(self.fd.as_raw_fd(), sys::KVM_CREATE_VCPU, id)?);
        if self.run_size < std::mem::size_of::<sys::kvm_run>() {
            return Err(io::Error::other(format!(
                "vcpu mmap size {} too small",
                self.run_size
            )));
        }
        let run = Mapping::map(
            Some(fd.as_raw_fd()),
            self.run_size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )?;
        Ok(Vcpu { fd, run })
    }
}

/// How a KVM_RUN ended, decoded from `struct kvm_run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuExit {
    Io {
        out: bool,
        size: u8,
        port: u16,
        count: u32,
        data: Vec<u8>,
    },
    Hlt,
    Mmio {
        phys_addr: u64,
        len: u32,
        is_write: bool,
    },
    Shutdown,
    FailEntry {
        hardware_reason: u64,
    },
    InternalError {
        suberror: u32,
    },
    MemoryFault {
        flags: u64,
        gpa: u64,
        size: u64,
    },
    SystemEvent {
        kind: u32,
    },
    Other(u32),
}

impl VcpuExit {
    /// The exit's short name, as observations print it ("IO", "HLT", ...).
    pub fn name(&self) -> String {
        match self {
            VcpuExit::Io { .. } => "IO".into(),
            VcpuExit::Hlt => "HLT".into(),
            VcpuExit::Mmio { .. } => "MMIO".into(),
            VcpuExit::Shutdown => "SHUTDOWN".into(),
            VcpuExit::FailEntry { .. } => "FAIL_ENTRY".into(),
            VcpuExit::InternalError { .. } => "INTERNAL_ERROR".into(),
            VcpuExit::MemoryFault { .. } => "MEMORY_FAULT".into(),
            VcpuExit::SystemEvent { .. } => "SYSTEM_EVENT".into(),
            VcpuExit::Other(reason) => exit_reason_name(*reason),
        }
    }
}

/// The name of a KVM_EXIT_* value.
pub fn exit_reason_name(reason: u32) -> String {
    use sys::*;
    let name = match reason {
        KVM_EXIT_UNKNOWN => "UNKNOWN",
        KVM_EXIT_EXCEPTION => "EXCEPTION",
        KVM_EXIT_IO => "IO",
        KVM_EXIT_HYPERCALL => "HYPERCALL",
        KVM_EXIT_DEBUG => "DEBUG",
        KVM_EXIT_HLT => "HLT",
        KVM_EXIT_MMIO => "MMIO",
        KVM_EXIT_IRQ_WINDOW_OPEN => "IRQ_WINDOW_OPEN",
        KVM_EXIT_SHUTDOWN => "SHUTDOWN",
        KVM_EXIT_FAIL_ENTRY => "FAIL_ENTRY",
        KVM_EXIT_INTR => "INTR",
        KVM_EXIT_INTERNAL_ERROR => "INTERNAL_ERROR",
        KVM_EXIT_SYSTEM_EVENT => "SYSTEM_EVENT",
        KVM_EXIT_X86_RDMSR => "X86_RDMSR",
        KVM_EXIT_X86_WRMSR => "X86_WRMSR",
        KVM_EXIT_MEMORY_FAULT => "MEMORY_FAULT",
        _ => return format!("exit {reason}"),
    };
    name.to_string()
}

/// A vCPU fd and its `kvm_run` page.
pub struct Vcpu {
    run: Mapping,
    fd: OwnedFd,
}

impl Vcpu {
    pub fn get_regs(&self) -> io::Result<sys::kvm_regs> {
        let mut regs = sys::kvm_regs::default();
        ioctl_ref(self.fd.as_raw_fd(), sys::KVM_GET_REGS, &mut regs)?;
        Ok(regs)
    }

    pub fn set_regs(&self, regs: &sys::kvm_regs) -> io::Result<()> {
        let mut regs = *regs;
        ioctl_ref(self.fd.as_raw_fd(), sys::KVM_SET_REGS, &mut regs).map(drop)
    }

    pub fn get_sregs(&self) -> io::Result<sys::kvm_sregs> {
        let mut sregs = sys::kvm_sregs::default();
        ioctl_ref(self.fd.as_raw_fd(), sys::KVM_GET_SREGS, &mut sregs)?;
        Ok(sregs)
    }

    pub fn set_sregs(&self, sregs: &sys::kvm_sregs) -> io::Result<()> {
        let mut sregs = *sregs;
        ioctl_ref(self.fd.as_raw_fd(), sys::KVM_SET_SREGS, &mut sregs).map(drop)
    }

    /// KVM_PRE_FAULT_MEMORY: returns how many bytes are left unfaulted.
    pub fn pre_fault_memory(&self, gpa: u64, size: u64) -> io::Result<u64> {
        let mut args = sys::kvm_pre_fault_memory {
            gpa,
            size,
            ..Default::default()
        };
        ioctl_ref(self.fd.as_raw_fd(), sys::KVM_PRE_FAULT_MEMORY, &mut args)?;
        Ok(args.size)
    }

    /// KVM_RUN until the next exit to userspace.
    pub fn run(&mut self) -> io::Result<VcpuExit> {
        ioctl_val(self.fd.as_raw_fd(), sys::KVM_RUN, 0)?;
        let base = self.run.as_ptr();
        // SAFETY: the mapping is at least size_of::<kvm_run>() bytes (checked
        // in create_vcpu), page aligned, and KVM_RUN has returned, so the
        // kernel is not writing it now.
        let run: sys::kvm_run = unsafe { std::ptr::read_volatile(base as *const sys::kvm_run) };
        // SAFETY (for each union read below): the variant read is the one
        // KVM fills for `exit_reason`; every field is plain integer data.
        Ok(match run.exit_reason {
            sys::KVM_EXIT_IO => {
                let io = unsafe { run.exit.io };
                let len = io.size as usize * io.count as usize;
                let start = io.data_offset as usize;
                if start
                    .checked_add(len)
                    .is_none_or(|end| end > self.run.len())
                {
                    return Err(io::Error::other(
                        "KVM_EXIT_IO data outside the kvm_run mapping",
                    ));
                }
                let mut data = vec![0u8; len];
                // SAFETY: start..start+len lies within the mapping (checked
                // above) and `data` has room for len bytes.
                unsafe { std::ptr::copy_nonoverlapping(base.add(start), data.as_mut_ptr(), len) };
                VcpuExit::Io {
                    out: io.direction == sys::KVM_EXIT_IO_OUT,
                    size: io.size,
                    port: io.port,
                    count: io.count,
                    data,
                }
            }
            sys::KVM_EXIT_HLT => VcpuExit::Hlt,
            sys::KVM_EXIT_MMIO => {
                let mmio = unsafe { run.exit.mmio };
                VcpuExit::Mmio {
                    phys_addr: mmio.phys_addr,
                    len: mmio.len,
                    is_write: mmio.is_write != 0,
                }
            }
            sys::KVM_EXIT_SHUTDOWN => VcpuExit::Shutdown,
            sys::KVM_EXIT_FAIL_ENTRY => VcpuExit::FailEntry {
                hardware_reason: unsafe { run.exit.fail_entry }.hardware_entry_failure_reason,
            },
            sys::KVM_EXIT_INTERNAL_ERROR => VcpuExit::InternalError {
                suberror: unsafe { run.exit.internal }.suberror,
            },
            sys::KVM_EXIT_MEMORY_FAULT => {
                let mf = unsafe { run.exit.memory_fault };
                VcpuExit::MemoryFault {
                    flags: mf.flags,
                    gpa: mf.gpa,
                    size: mf.size,
                }
            }
            sys::KVM_EXIT_SYSTEM_EVENT => VcpuExit::SystemEvent {
                kind: unsafe { run.exit.system_event }.type_,
            },
            other => VcpuExit::Other(other),
        })
    }
}

/// A guest_memfd.
pub struct GuestMemfd {
    fd: OwnedFd,
}

impl GuestMemfd {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn fallocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate takes only integers.
        let r = unsafe { libc::fallocate(self.raw_fd(), mode, offset as i64, len as i64) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// fallocate(PUNCH_HOLE | KEEP_SIZE) over `len` bytes at `offset`: frees
    /// the pages there (zapping their user mappings) and keeps the size.
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    pub fn stat(&self) -> io::Result<libc::stat> {
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a live, writable `struct stat`.
        if unsafe { libc::fstat(self.raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }

    /// mmap of `len` bytes at offset 0 with the given MAP_* flags.
    pub fn map(&self, len: usize, flags: i32) -> io::Result<Mapping> {
        Mapping::map(
            Some(self.raw_fd()),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::sys::*;
    use std::mem::{offset_of, size_of};

    /// Numbers printed by a C program built against the 7.3 uAPI headers.
    #[test]
    fn ioctl_numbers_match_the_7_3_headers() {
        assert_eq!(KVM_GET_API_VERSION, 0xae00);
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_CHECK_EXTENSION, 0xae03);
        assert_eq!(KVM_GET_VCPU_MMAP_SIZE, 0xae04);
        assert_eq!(KVM_CREATE_VCPU, 0xae41);
        assert_eq!(KVM_SET_TSS_ADDR, 0xae47);
        assert_eq!(KVM_SET_USER_MEMORY_REGION2, 0x40a0ae49);
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090ae81);
        assert_eq!(KVM_SET_REGS, 0x4090ae82);
        assert_eq!(KVM_GET_SREGS, 0x8138ae83);
        assert_eq!(KVM_SET_SREGS, 0x4138ae84);
        assert_eq!(KVM_SET_MEMORY_ATTRIBUTES, 0x4020aed2);
        assert_eq!(KVM_CREATE_GUEST_MEMFD, 0xc040aed4);
        assert_eq!(KVM_PRE_FAULT_MEMORY, 0xc040aed5);
    }

    #[test]
    fn struct_layouts_match_the_7_3_headers() {
        assert_eq!(size_of::<kvm_userspace_memory_region2>(), 0xa0);
        assert_eq!(offset_of!(kvm_userspace_memory_region2, guest_memfd), 0x28);
        assert_eq!(size_of::<kvm_regs>(), 0x90);
        assert_eq!(size_of::<kvm_segment>(), 0x18);
        assert_eq!(size_of::<kvm_dtable>(), 0x10);
        assert_eq!(size_of::<kvm_sregs>(), 0x138);
        assert_eq!(offset_of!(kvm_sregs, cr0), 0xe0);
        assert_eq!(offset_of!(kvm_sregs, efer), 0x108);
        assert_eq!(size_of::<kvm_create_guest_memfd>(), 0x40);
        assert_eq!(size_of::<kvm_memory_attributes>(), 0x20);
        assert_eq!(size_of::<kvm_pre_fault_memory>(), 0x40);
        assert_eq!(offset_of!(kvm_run, exit_reason), 0x8);
        assert_eq!(offset_of!(kvm_run, exit), 0x20);
        assert_eq!(offset_of!(kvm_run_io, port), 0x2);
        assert_eq!(offset_of!(kvm_run_io, data_offset), 0x8);
        assert_eq!(offset_of!(kvm_run_memory_fault, gpa), 0x8);
    }

    #[test]
    fn exit_names() {
        assert_eq!(super::exit_reason_name(KVM_EXIT_HLT), "HLT");
        assert_eq!(super::exit_reason_name(99), "exit 99");
    }
}
