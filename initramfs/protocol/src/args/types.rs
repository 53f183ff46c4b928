//! The names cases use in probe arguments: guest_memfd flags, VM types,
//! and each probe's own choices. The probe binary turns them into the bits
//! and calls KVM takes, and back into names in its observations.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{show, ArgError, ArgValue};

/// `GUEST_MEMFD_FLAG_*` (include/uapi/linux/kvm.h), and bit 2, the
/// out-of-tree direct-map removal flag (see DESIGN.md).
pub const GMEM_FLAG_NAMES: [(&str, u32); 3] =
    [("MMAP", 0), ("INIT_SHARED", 1), ("NO_DIRECT_MAP", 2)];

/// One guest_memfd flag as a case names it: `"MMAP"`, `"INIT_SHARED"`,
/// `"NO_DIRECT_MAP"` or `"bit N"` (any bit, to try unknown ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GmemFlag(pub u32);

impl GmemFlag {
    pub const MMAP: GmemFlag = GmemFlag(0);
    pub const INIT_SHARED: GmemFlag = GmemFlag(1);
    pub const NO_DIRECT_MAP: GmemFlag = GmemFlag(2);

    pub fn mask(self) -> u64 {
        1 << self.0
    }
}

/// The flags most probes default to: a guest_memfd its owner can mmap and
/// use as shared memory.
pub fn mappable() -> Vec<GmemFlag> {
    vec![GmemFlag::MMAP, GmemFlag::INIT_SHARED]
}

/// The flags of the probes about direct-map removal: a mappable guest_memfd
/// whose pages leave the direct map.
pub fn mappable_no_direct_map() -> Vec<GmemFlag> {
    vec![
        GmemFlag::MMAP,
        GmemFlag::INIT_SHARED,
        GmemFlag::NO_DIRECT_MAP,
    ]
}

const GMEM_FLAG_EXPECTED: &str = "MMAP, INIT_SHARED, NO_DIRECT_MAP or \"bit N\" with N < 64";

impl TryFrom<String> for GmemFlag {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some((_, bit)) = GMEM_FLAG_NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(GmemFlag(*bit));
        }
        parse_bit(&s).map(GmemFlag).ok_or_else(|| {
            format!("unknown guest_memfd flag {s:?} (expected {GMEM_FLAG_EXPECTED})")
        })
    }
}

impl From<GmemFlag> for String {
    fn from(f: GmemFlag) -> String {
        match GMEM_FLAG_NAMES.iter().find(|(_, b)| *b == f.0) {
            Some((name, _)) => name.to_string(),
            None => format!("bit {}", f.0),
        }
    }
}

fn parse_bit(s: &str) -> Option<u32> {
    let n: u32 = s.strip_prefix("bit ")?.trim().parse().ok()?;
    (n < 64).then_some(n)
}

impl ArgValue for GmemFlag {
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
        v.as_str()
            .and_then(|s| GmemFlag::try_from(s.to_string()).ok())
            .ok_or_else(|| {
                ArgError::new(
                    at,
                    format!(
                        "expected a guest_memfd flag: {GMEM_FLAG_EXPECTED}; got {}",
                        show(v)
                    ),
                )
            })
    }
    fn type_name() -> String {
        "guest_memfd flag: `MMAP`, `INIT_SHARED`, `NO_DIRECT_MAP` or `bit N`".into()
    }
}

args_enum! {
    /// What a probe does with flags the kernel does not advertise in
    /// `KVM_CAP_GUEST_MEMFD_FLAGS`: `keep` them (KVM_CREATE_GUEST_MEMFD then
    /// says EINVAL, an observation of its own) or `drop` them, so that one case
    /// runs on kernels with and without a flag and shows, on those without it,
    /// what a guest_memfd without the flag does.
    #[derive(Default)]
    pub enum IfUnsupported {
        #[default]
        Keep = "keep",
        Drop = "drop",
    }
}

args_enum! {
    /// The VM type a probe creates its VM with (`KVM_X86_*_VM`,
    /// arch/x86/include/uapi/asm/kvm.h).
    #[derive(Default)]
    pub enum VmType {
        #[default]
        Default = "default",
        SwProtected = "sw_protected",
        Sev = "sev",
        SevEs = "sev_es",
        Snp = "snp",
        Tdx = "tdx",
    }
}

impl VmType {
    /// The `KVM_CREATE_VM` argument.
    pub fn raw(self) -> u64 {
        match self {
            VmType::Default => 0,
            VmType::SwProtected => 1,
            VmType::Sev => 2,
            VmType::SevEs => 3,
            VmType::Snp => 4,
            VmType::Tdx => 5,
        }
    }
}

args_enum! {
    /// How `direct_map` releases its guest_memfd.
    #[derive(Default)]
    pub enum Release {
        /// munmap, close the guest_memfd and the VM.
        #[default]
        Close = "close",
        /// fallocate(PUNCH_HOLE) over the whole file, then close.
        PunchHole = "punch_hole",
    }
}

args_enum! {
    /// A way the kernel reads user memory with GUP (`gup_read`).
    pub enum GupPath {
        ProcSelfMem = "proc_self_mem",
        ProcessVmReadv = "process_vm_readv",
        Vmsplice = "vmsplice",
    }
}

args_enum! {
    /// One operation of `fallocate`.
    pub enum FallocateOpKind {
        /// fallocate(KEEP_SIZE).
        Allocate = "allocate",
        /// fallocate(PUNCH_HOLE | KEEP_SIZE).
        PunchHole = "punch_hole",
        /// fallocate with mode 0 (may grow the file).
        AllocateMode0 = "allocate_mode0",
        /// Write the pattern through the mapping.
        Write = "write",
    }
}

args_enum! {
    /// What the vCPU of `vcpu_run` runs.
    #[derive(Default)]
    pub enum Program {
        /// Load the data word, add, store, OUT it, HLT.
        #[default]
        AddOutHlt = "add_out_hlt",
        /// Loop forever: KVM_RUN only ends at `timeout_ms` ("timeout").
        Spin = "spin",
    }
}

args_enum! {
    /// Which guest pages `vcpu_run` makes private before the run.
    #[derive(Default)]
    pub enum Private {
        #[default]
        None = "none",
        Data = "data",
        All = "all",
    }
}

args_enum! {
    /// A signal the `selftest` probe raises on itself.
    pub enum Signal {
        Segv = "SIGSEGV",
        Bus = "SIGBUS",
        Abrt = "SIGABRT",
        Kill = "SIGKILL",
    }
}

args_enum! {
    /// One of KVM's own ways into guest memory, for `kvm_access`.
    pub enum KvmPath {
        /// MSR_KVM_SYSTEM_TIME_NEW: the pvclock, written through a gfn_to_pfn cache.
        Pvclock = "pvclock",
        /// MSR_KVM_STEAL_TIME: steal time, written through a gfn_to_hva cache.
        StealTime = "steal_time",
        /// MSR_KVM_PV_EOI_EN, then an MSI: the PV EOI pending bit.
        PvEoi = "pv_eoi",
        /// MSR_KVM_ASYNC_PF_INT and _EN: the async page-fault area.
        AsyncPf = "async_pf",
        /// MMIO executed from the page: KVM fetches the instruction to emulate it.
        MmioDecode = "mmio_decode",
        /// `rep outsb` from the page.
        StringOut = "string_out",
        /// `rep insb` into the page.
        StringIn = "string_in",
        /// KVM_PRE_FAULT_MEMORY over the page, then a read.
        PreFault = "pre_fault",
        /// The page private, shared, private again (a software-protected VM).
        PrivateShared = "private_shared",
        /// KVM_MEM_LOG_DIRTY_PAGES, a write, KVM_GET_DIRTY_LOG.
        DirtyLog = "dirty_log",
        /// VMSAVE with the VMCB on the page (kvm_vcpu_map).
        NestedVmsave = "nested_vmsave",
        /// VMRUN with the VMCB on the page (kvm_vcpu_map).
        NestedVmrun = "nested_vmrun",
        /// madvise(MADV_HWPOISON) on the page, then a read.
        Hwpoison = "hwpoison",
    }
}

args_enum! {
    /// What backs the memory of `kvm_access`'s L2 VM.
    #[derive(PartialOrd, Ord)]
    pub enum Backing {
        /// Anonymous memory, a plain memslot.
        Anonymous = "anonymous",
        /// A guest_memfd (MMAP | INIT_SHARED).
        GuestMemfd = "guest_memfd",
        /// A NO_DIRECT_MAP guest_memfd (MMAP | INIT_SHARED | NO_DIRECT_MAP).
        NoDirectMap = "no_direct_map",
    }
}

/// Every backing, in the order `kvm_access` tries them by default: the
/// NO_DIRECT_MAP one, which may crash a kernel, last.
pub fn all_backings() -> Vec<Backing> {
    Backing::ALL.to_vec()
}

args_enum! {
    /// How `direct_map` reports the DirectMap4k/2M/1G changes.
    #[derive(Default)]
    pub enum DirectMapUnits {
        /// `grew`, `unchanged`, `shrank`: what holds wherever the pages land.
        #[default]
        Sign = "sign",
        /// `+2048 kB`: the exact change, for looking at one kernel by hand.
        /// Not for snapshots: even one page on a fresh kernel may land in a
        /// 2 MB region the boot has split already (0 kB) or not (+2048 kB).
        Kb = "kb",
    }
}
