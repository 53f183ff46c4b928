//! `vcpu_run`: a real guest runs from guest_memfd memory.
//!
//! Creates a VM (vm_type) and a guest_memfd (flags, default
//! MMAP|INIT_SHARED; `if_unsupported: "drop"` leaves out those the VM does
//! not advertise, listed in `dropped_flags`) of 4 pages bound at guest physical 0 with
//! KVM_SET_USER_MEMORY_REGION2 (KVM_MEM_GUEST_MEMFD, offset 0). The memslot's
//! userspace memory is the guest_memfd's own mapping when it has the MMAP
//! flag (the memslot is then "guest_memfd only"), otherwise anonymous memory
//! (shared pages come from there, private ones from the guest_memfd).
//! Real-mode code at 0x1000 loads the 32-bit value at 0x2000, adds
//! 0x01020304, stores it back, writes it to port 0x510 (OUT) and halts.
//!
//! `private` sets KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) (needs a VM type with
//! private memory, e.g. sw_protected) on the data page (`"data"`) or on the
//! whole slot (`"all"`, so the code itself comes from private memory, which
//! userspace could not fill). Private pages come from the guest_memfd and
//! start zeroed, so the guest then outputs 0 + 0x01020304 while the shared
//! view keeps the initial value.
//!
//! `program: "spin"` runs `jmp $` instead, to see a vCPU that never exits
//! (KVM_RUN is interrupted at `timeout_ms`: the last exit reads "timeout").
//!
//! Observed: each setup step's outcome, the exits in order (up to 8, with
//! KVM_RUN bounded by `timeout_ms`), whether the OUT had the right port, what
//! value it carried and what the data reads as through the userspace memory
//! afterwards, each against what the layout predicts.

use serde::Serialize;

use super::{open_kvm, usable_flags, Probe, PAGE};
use crate::errno;
use crate::flags::{gmem_mask, GmemFlag, VmType, MEMORY_ATTRIBUTE_PRIVATE};
use crate::kvm::{sys, Vcpu, VcpuExit};
use crate::mapping::Mapping;
use crate::{Context, Result};

const SLOT_PAGES: usize = 4;
const SLOT_SIZE: usize = SLOT_PAGES * PAGE;
const CODE_GPA: u64 = 0x1000;
const DATA_GPA: u64 = 0x2000;
const PORT: u16 = 0x510;
const INITIAL: u32 = 0x1111_1111;
const ADDEND: u32 = 0x0102_0304;
const MAX_EXITS: usize = 8;

/// 16-bit real-mode code, loaded at CODE_GPA with CS = 0.
const ADD_OUT_HLT: &[u8] = &[
    0x66, 0xa1, 0x00, 0x20, // mov eax, [0x2000]
    0x66, 0x05, 0x04, 0x03, 0x02, 0x01, // add eax, 0x01020304
    0x66, 0xa3, 0x00, 0x20, // mov [0x2000], eax
    0xba, 0x10, 0x05, // mov dx, 0x510
    0x66, 0xef, // out dx, eax
    0xf4, // hlt
];

/// `jmp $`: never exits on its own.
const SPIN: &[u8] = &[0xeb, 0xfe];

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::VcpuRunArgs as Args;
use gmem_protocol::args::{Private, Program};

/// Each setup step: "ok" or its errno; absent when not reached or not asked.
#[derive(Debug, Default, Serialize)]
pub struct Setup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_vm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_guest_memfd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap: Option<String>,
    /// Writing code and data into the userspace memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_memory_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_memory_attributes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_vcpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_fault: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Observation {
    pub vm_type: VmType,
    pub flags: Vec<GmemFlag>,
    /// Flags left out as unsupported (`if_unsupported: drop`); absent when
    /// none were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_flags: Vec<GmemFlag>,
    pub private: Private,
    #[serde(skip_serializing_if = "is_default_program")]
    pub program: Program,
    /// Where the memslot's userspace memory comes from:
    /// "guest_memfd_mmap" or "anonymous".
    pub userspace_memory: String,
    pub setup: Setup,
    /// The exits in order ("IO out port=0x510 size=4 value=0x12131415",
    /// "HLT", "MEMORY_FAULT gpa=0x2000 size=0x1000 private", ...), ending
    /// with "timeout" if KVM_RUN had to be interrupted or "KVM_RUN <errno>".
    pub exits: Vec<String>,
    /// RIP after the last exit (the layout is fixed, so this is stable:
    /// 0x1014 after the HLT of add_out_hlt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rip_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_port_ok: Option<bool>,
    /// What the OUT carried: "initial+addend", "zero+addend" or "other".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_value_ok: Option<bool>,
    /// The data word through the userspace memory after the run: "initial",
    /// "initial+addend", "other" or an errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_value_ok: Option<bool>,
}

/// Where the memslot's userspace memory comes from with these flags.
fn userspace_memory(flags: &[GmemFlag]) -> &'static str {
    if flags.contains(&GmemFlag::MMAP) {
        "guest_memfd_mmap"
    } else {
        "anonymous"
    }
}

fn is_default_program(p: &Program) -> bool {
    *p == Program::AddOutHlt
}

fn classify_io(v: u32) -> &'static str {
    match v {
        v if v == INITIAL.wrapping_add(ADDEND) => "initial+addend",
        ADDEND => "zero+addend",
        _ => "other",
    }
}

fn classify_memory(v: u32) -> &'static str {
    match v {
        INITIAL => "initial",
        v if v == INITIAL.wrapping_add(ADDEND) => "initial+addend",
        _ => "other",
    }
}

fn exit_text(exit: &VcpuExit) -> String {
    match exit {
        VcpuExit::Io {
            out,
            size,
            port,
            count,
            data,
        } => {
            let value = data.iter().rev().fold(0u64, |v, b| (v << 8) | *b as u64);
            format!(
                "IO {} port={port:#x} size={size}{} value={value:#x}",
                if *out { "out" } else { "in" },
                if *count != 1 {
                    format!(" count={count}")
                } else {
                    String::new()
                },
            )
        }
        VcpuExit::Mmio {
            phys_addr,
            len,
            is_write,
        } => {
            format!(
                "MMIO {} gpa={phys_addr:#x} len={len}",
                if *is_write { "write" } else { "read" }
            )
        }
        VcpuExit::MemoryFault { flags, gpa, size } => format!(
            "MEMORY_FAULT gpa={gpa:#x} size={size:#x}{}",
            if flags & sys::KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                " private"
            } else {
                " shared"
            }
        ),
        VcpuExit::InternalError { suberror } => {
            format!("INTERNAL_ERROR {}", internal_error_name(*suberror))
        }
        VcpuExit::SystemEvent { kind } => format!("SYSTEM_EVENT type={kind}"),
        other => other.name(),
    }
}

/// KVM_INTERNAL_ERROR_* suberrors.
fn internal_error_name(suberror: u32) -> String {
    match suberror {
        1 => "EMULATION".into(),
        2 => "SIMUL_EX".into(),
        3 => "DELIVERY_EV".into(),
        4 => "UNEXPECTED_EXIT_REASON".into(),
        n => format!("suberror={n}"),
    }
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Arms a one-shot SIGALRM that interrupts a blocking KVM_RUN (EINTR): the
/// handler is installed without SA_RESTART.
fn arm_alarm(ms: u64) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler is an async-signal-safe
    // no-op; setitimer takes a live itimerval.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tv = |ms: u64| libc::timeval {
            tv_sec: (ms / 1000) as _,
            tv_usec: ((ms % 1000) * 1000) as _,
        };
        let it = libc::itimerval {
            it_interval: tv(0),
            it_value: tv(ms.max(1)),
        };
        if libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn disarm_alarm() {
    // SAFETY: a zeroed itimerval disarms the timer.
    unsafe {
        let it: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
}

/// Real mode at CODE_GPA: every segment based at 0.
fn set_real_mode(vcpu: &Vcpu) -> Result<()> {
    let mut sregs = vcpu.get_sregs().context(|| "KVM_GET_SREGS".into())?;
    for seg in [
        &mut sregs.cs,
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.ss,
        &mut sregs.fs,
        &mut sregs.gs,
    ] {
        seg.base = 0;
        seg.selector = 0;
    }
    vcpu.set_sregs(&sregs).context(|| "KVM_SET_SREGS".into())?;
    let mut regs = vcpu.get_regs().context(|| "KVM_GET_REGS".into())?;
    regs.rip = CODE_GPA;
    regs.rflags = 0x2;
    regs.rax = 0;
    regs.rdx = 0;
    vcpu.set_regs(&regs).context(|| "KVM_SET_REGS".into())
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let mut obs = Observation {
            vm_type: self.vm_type,
            flags: self.flags.clone(),
            private: self.private,
            program: self.program,
            userspace_memory: userspace_memory(&self.flags).into(),
            ..Default::default()
        };

        let kvm = open_kvm()?;
        let vm = kvm.create_vm(self.vm_type.raw());
        let Some(vm) = errno::record(&mut obs.setup.create_vm, vm) else {
            return Ok(obs);
        };
        let (flags, dropped) = usable_flags(&vm, &self.flags, self.if_unsupported)?;
        obs.dropped_flags = dropped;
        obs.userspace_memory = userspace_memory(&flags).into();
        let mask = gmem_mask(&flags);
        let gmem_mapped = mask & GmemFlag::MMAP.mask() != 0;
        let s = &mut obs.setup;
        // Needed by VMX without unrestricted guest; harmless elsewhere.
        vm.set_tss_addr(0xfffb_d000)
            .context(|| "KVM_SET_TSS_ADDR".into())?;

        let gmem = vm.create_guest_memfd(SLOT_SIZE as u64, mask);
        let Some(gmem) = errno::record(&mut s.create_guest_memfd, gmem) else {
            return Ok(obs);
        };

        let memory = if gmem_mapped {
            gmem.map(SLOT_SIZE, libc::MAP_SHARED)
        } else {
            // Anonymous memory is not what the probe observes: without it
            // the probe fails (exit 1) rather than records an errno.
            Ok(Mapping::anonymous(SLOT_SIZE).context(|| "anonymous mmap".into())?)
        };
        let Some(memory) = errno::record(&mut s.mmap, memory) else {
            return Ok(obs);
        };

        let load = memory
            .copy_in(
                CODE_GPA as usize,
                match self.program {
                    Program::AddOutHlt => ADD_OUT_HLT,
                    Program::Spin => SPIN,
                },
            )
            .and_then(|_| memory.copy_in(DATA_GPA as usize, &INITIAL.to_le_bytes()));
        if errno::record(&mut s.load, load).is_none() {
            return Ok(obs);
        }

        let region = sys::kvm_userspace_memory_region2 {
            slot: 0,
            flags: sys::KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: 0,
            memory_size: SLOT_SIZE as u64,
            userspace_addr: memory.addr(),
            guest_memfd_offset: 0,
            guest_memfd: gmem.raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `memory` is this probe's own mapping of exactly SLOT_SIZE
        // bytes, touched only through uaccess copies (never through Rust
        // references), and unmapped only after the vCPU and the VM are gone
        // (the explicit drops at the end; on the early returns no vCPU ran).
        let r = unsafe { vm.set_user_memory_region2(&region) };
        if errno::record(&mut s.set_memory_region, r).is_none() {
            return Ok(obs);
        }

        let private_range = match self.private {
            Private::None => None,
            Private::Data => Some((DATA_GPA, PAGE as u64)),
            Private::All => Some((0, SLOT_SIZE as u64)),
        };
        if let Some((gpa, size)) = private_range {
            let r = vm.set_memory_attributes(gpa, size, MEMORY_ATTRIBUTE_PRIVATE);
            if errno::record(&mut s.set_memory_attributes, r).is_none() {
                return Ok(obs);
            }
        }

        let Some(mut vcpu) = errno::record(&mut s.create_vcpu, vm.create_vcpu(0)) else {
            return Ok(obs);
        };
        set_real_mode(&vcpu)?;

        if self.pre_fault {
            let r = vcpu.pre_fault_memory(0, SLOT_SIZE as u64);
            s.pre_fault = Some(match r {
                Ok(0) => "ok".into(),
                Ok(_) => "partial".into(),
                Err(e) => errno::of(&e),
            });
        }

        arm_alarm(self.timeout_ms).context(|| "arming the KVM_RUN timeout".into())?;
        let mut out_value = None;
        for _ in 0..MAX_EXITS {
            match vcpu.run() {
                Ok(exit) => {
                    obs.exits.push(exit_text(&exit));
                    match exit {
                        VcpuExit::Io {
                            out: true,
                            port,
                            data,
                            ..
                        } => {
                            obs.io_port_ok = Some(port == PORT);
                            if data.len() == 4 {
                                out_value =
                                    Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
                            }
                        }
                        VcpuExit::Io { .. } => {}
                        _ => break,
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    obs.exits.push("timeout".into());
                    break;
                }
                Err(e) => {
                    obs.exits.push(format!("KVM_RUN {}", errno::of(&e)));
                    break;
                }
            }
        }
        disarm_alarm();
        if let Ok(regs) = vcpu.get_regs() {
            obs.rip_after = Some(format!("{:#x}", regs.rip));
        }

        let data_private = self.private != Private::None;
        if let Some(v) = out_value {
            obs.io_value = Some(classify_io(v).into());
            let expected = if data_private {
                ADDEND
            } else {
                INITIAL.wrapping_add(ADDEND)
            };
            obs.io_value_ok = Some(v == expected);
        }
        let ran = obs.exits.first().is_some_and(|e| e.starts_with("IO"));
        match memory.copy_out(DATA_GPA as usize, 4) {
            Ok(b) => {
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                obs.memory_value = Some(classify_memory(v).into());
                // Private data leaves the shared view alone; otherwise the
                // guest's store shows through the userspace memory.
                let expected = if data_private || !ran {
                    INITIAL
                } else {
                    INITIAL.wrapping_add(ADDEND)
                };
                obs.memory_value_ok = Some(v == expected);
            }
            Err(e) => obs.memory_value = Some(errno::of(&e)),
        }
        drop(vcpu);
        drop(vm);
        drop(memory);
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_values() {
        assert_eq!(classify_io(0x1213_1415), "initial+addend");
        assert_eq!(classify_io(0x0102_0304), "zero+addend");
        assert_eq!(classify_memory(0x1111_1111), "initial");
        assert_eq!(classify_memory(7), "other");
    }

    #[test]
    fn exit_texts_are_stable() {
        let io = VcpuExit::Io {
            out: true,
            size: 4,
            port: 0x510,
            count: 1,
            data: vec![0x15, 0x14, 0x13, 0x12],
        };
        assert_eq!(exit_text(&io), "IO out port=0x510 size=4 value=0x12131415");
        let mf = VcpuExit::MemoryFault {
            flags: sys::KVM_MEMORY_EXIT_FLAG_PRIVATE,
            gpa: 0x2000,
            size: 0x1000,
        };
        assert_eq!(
            exit_text(&mf),
            "MEMORY_FAULT gpa=0x2000 size=0x1000 private"
        );
        assert_eq!(exit_text(&VcpuExit::Hlt), "HLT");
        assert_eq!(
            exit_text(&VcpuExit::InternalError { suberror: 1 }),
            "INTERNAL_ERROR EMULATION"
        );
    }
}
