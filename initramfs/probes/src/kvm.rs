//! KVM for the probes: rust-vmm's kvm-ioctls (one safe type per kind of fd,
//! the field's choice) behind the small API the probes use ([`Kvm`],
//! [`Vm`], [`Vcpu`], [`GuestMemfd`]), and, in [`sys`], the few numbers and
//! ioctls it lacks for the 7.3 uAPI: KVM_CAP_GUEST_MEMFD_FLAGS and
//! KVM_PRE_FAULT_MEMORY. The `kvm_access` probe drives kvm-ioctls' own
//! types for what only it needs (CPUID, MSIs, dirty logs, the `kvm_run`
//! exit data). Every `unsafe` block says why it holds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use kvm_ioctls::{VcpuExit as RawExit, VcpuFd, VmFd};

use crate::mapping::Mapping;

/// What kvm-bindings has, by the names the probes use, and what it lacks.
#[allow(non_camel_case_types)]
pub mod sys {
    pub use kvm_bindings::{
        kvm_create_guest_memfd, kvm_memory_attributes, kvm_pre_fault_memory, kvm_regs, kvm_sregs,
        kvm_userspace_memory_region2, KVM_CAP_GUEST_MEMFD, KVM_CAP_MEMORY_ATTRIBUTES,
        KVM_CAP_PRE_FAULT_MEMORY, KVM_CAP_USER_MEMORY2, KVM_CAP_VM_TYPES, KVM_MEM_GUEST_MEMFD,
    };

    /// Not in kvm-bindings 0.14 (7.3's include/uapi/linux/kvm.h).
    pub const KVM_CAP_GUEST_MEMFD_FLAGS: u32 = 244;
    pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = kvm_bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE as u64;

    const KVMIO: u64 = 0xAE;
    const IOC_READ_WRITE: u64 = 3;
    /// `_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)`: not in kvm-ioctls.
    pub const KVM_PRE_FAULT_MEMORY: u64 = (IOC_READ_WRITE << 30)
        | ((std::mem::size_of::<kvm_pre_fault_memory>() as u64) << 16)
        | (KVMIO << 8)
        | 0xd5;
}

/// kvm-ioctls' error as the `io::Error` the probes record errnos from.
pub fn io_err(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

/// KVM_PRE_FAULT_MEMORY on a vCPU fd: how many bytes are left unfaulted.
pub fn pre_fault_memory(vcpu: RawFd, gpa: u64, size: u64) -> io::Result<u64> {
    let mut args = sys::kvm_pre_fault_memory {
        gpa,
        size,
        ..Default::default()
    };
    // SAFETY: the request's encoded size is that of `kvm_pre_fault_memory`,
    // and `args` is a live, exclusive one for the call.
    let r = unsafe {
        libc::ioctl(
            vcpu,
            sys::KVM_PRE_FAULT_MEMORY as libc::c_ulong,
            &mut args as *mut sys::kvm_pre_fault_memory,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(args.size)
}

/// `/dev/kvm`.
pub struct Kvm(kvm_ioctls::Kvm);

impl Kvm {
    pub fn open() -> io::Result<Kvm> {
        kvm_ioctls::Kvm::new().map(Kvm).map_err(io_err)
    }

    pub fn api_version(&self) -> io::Result<i32> {
        Ok(self.0.get_api_version())
    }

    /// KVM_CHECK_EXTENSION on the system fd (the answer for any VM).
    pub fn check_extension(&self, cap: u32) -> io::Result<i32> {
        check(self.0.check_extension_raw(cap.into()))
    }

    pub fn create_vm(&self, vm_type: u64) -> io::Result<Vm> {
        self.0.create_vm_with_type(vm_type).map(Vm).map_err(io_err)
    }
}

/// An ioctl's raw answer: an error is -1 with errno set.
fn check(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A VM fd.
pub struct Vm(VmFd);

impl Vm {
    /// KVM_CHECK_EXTENSION on this VM (per-VM answers, e.g.
    /// KVM_CAP_GUEST_MEMFD_FLAGS depends on the VM type).
    pub fn check_extension(&self, cap: u32) -> io::Result<i32> {
        check(self.0.check_extension_raw(cap.into()))
    }

    pub fn create_guest_memfd(&self, size: u64, flags: u64) -> io::Result<GuestMemfd> {
        let fd = self
            .0
            .create_guest_memfd(sys::kvm_create_guest_memfd {
                size,
                flags,
                ..Default::default()
            })
            .map_err(io_err)?;
        // SAFETY: a new descriptor from KVM that nothing else owns.
        Ok(GuestMemfd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn set_tss_addr(&self, addr: u64) -> io::Result<()> {
        self.0.set_tss_address(addr as usize).map_err(io_err)
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
        // SAFETY: the caller's promise above.
        unsafe { self.0.set_user_memory_region2(*region) }.map_err(io_err)
    }

    pub fn set_memory_attributes(
        &self,
        address: u64,
        size: u64,
        attributes: u64,
    ) -> io::Result<()> {
        self.0
            .set_memory_attributes(sys::kvm_memory_attributes {
                address,
                size,
                attributes,
                flags: 0,
            })
            .map_err(io_err)
    }

    pub fn create_vcpu(&self, id: u64) -> io::Result<Vcpu> {
        self.0.create_vcpu(id).map(Vcpu).map_err(io_err)
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
    use kvm_bindings::*;
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
pub struct Vcpu(VcpuFd);

impl Vcpu {
    pub fn get_regs(&self) -> io::Result<sys::kvm_regs> {
        self.0.get_regs().map_err(io_err)
    }

    pub fn set_regs(&self, regs: &sys::kvm_regs) -> io::Result<()> {
        self.0.set_regs(regs).map_err(io_err)
    }

    pub fn get_sregs(&self) -> io::Result<sys::kvm_sregs> {
        self.0.get_sregs().map_err(io_err)
    }

    pub fn set_sregs(&self, sregs: &sys::kvm_sregs) -> io::Result<()> {
        self.0.set_sregs(sregs).map_err(io_err)
    }

    /// KVM_PRE_FAULT_MEMORY: returns how many bytes are left unfaulted.
    pub fn pre_fault_memory(&self, gpa: u64, size: u64) -> io::Result<u64> {
        pre_fault_memory(self.0.as_raw_fd(), gpa, size)
    }

    /// KVM_RUN until the next exit to userspace, decoded. What kvm-ioctls'
    /// exit leaves out (an I/O exit's size and count, an internal error's
    /// suberror, an unknown exit's number) is read from `kvm_run` once its
    /// borrow has ended.
    pub fn run(&mut self) -> io::Result<VcpuExit> {
        let exit = match self.0.run().map_err(io_err)? {
            RawExit::IoOut(port, data) => VcpuExit::Io {
                out: true,
                size: 0,
                port,
                count: 0,
                data: data.to_vec(),
            },
            RawExit::IoIn(port, data) => VcpuExit::Io {
                out: false,
                size: 0,
                port,
                count: 0,
                data: data.to_vec(),
            },
            RawExit::Hlt => VcpuExit::Hlt,
            RawExit::MmioRead(addr, data) => VcpuExit::Mmio {
                phys_addr: addr,
                len: data.len() as u32,
                is_write: false,
            },
            RawExit::MmioWrite(addr, data) => VcpuExit::Mmio {
                phys_addr: addr,
                len: data.len() as u32,
                is_write: true,
            },
            RawExit::Shutdown => VcpuExit::Shutdown,
            RawExit::FailEntry(hardware_reason, _) => VcpuExit::FailEntry { hardware_reason },
            RawExit::InternalError => VcpuExit::InternalError { suberror: 0 },
            RawExit::MemoryFault { flags, gpa, size } => VcpuExit::MemoryFault { flags, gpa, size },
            RawExit::SystemEvent(kind, _) => VcpuExit::SystemEvent { kind },
            _ => VcpuExit::Other(0),
        };
        let run = self.0.get_kvm_run();
        let reason = run.exit_reason;
        Ok(match exit {
            VcpuExit::Io {
                out, port, data, ..
            } => {
                // SAFETY: an I/O exit: the `io` member of the union is set.
                let io = unsafe { run.__bindgen_anon_1.io };
                VcpuExit::Io {
                    out,
                    size: io.size,
                    port,
                    count: io.count,
                    data,
                }
            }
            VcpuExit::InternalError { .. } => VcpuExit::InternalError {
                // SAFETY: an internal-error exit: the `internal` member is set.
                suberror: unsafe { run.__bindgen_anon_1.internal.suberror },
            },
            VcpuExit::Other(_) => VcpuExit::Other(reason),
            other => other,
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

    /// The numbers kvm-bindings lacks, against the 7.3 headers (a C program
    /// built against them printed these).
    #[test]
    fn what_kvm_bindings_lacks_matches_the_7_3_headers() {
        assert_eq!(KVM_PRE_FAULT_MEMORY, 0xc040aed5);
        assert_eq!(std::mem::size_of::<kvm_pre_fault_memory>(), 0x40);
        assert_eq!(KVM_CAP_GUEST_MEMFD_FLAGS, 244);
        assert_eq!(KVM_MEMORY_EXIT_FLAG_PRIVATE, 1 << 3);
    }

    #[test]
    fn exit_names() {
        assert_eq!(super::exit_reason_name(kvm_bindings::KVM_EXIT_HLT), "HLT");
        assert_eq!(super::exit_reason_name(99), "exit 99");
    }
}
