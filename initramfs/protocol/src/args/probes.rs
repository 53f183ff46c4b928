//! Every probe, with its arguments: the one list the host validates cases
//! against, the probe binary dispatches on, and the README's reference is
//! generated from. What each probe does with its arguments is documented
//! with the probe (`initramfs/probes/src/probes/*.rs`).

use serde_json::{Map, Value};

use super::{
    all_backings, mappable, mappable_no_direct_map, ArgError, ArgValue, Backing, Bound,
    DirectMapUnits, FallocateOpKind, FieldDoc, GmemFlag, GupPath, IfUnsupported, KvmPath, Op,
    Private, Program, Release, Signal, VmType, MAX_FILE_PAGES, MAX_THREADS,
};

/// The most pages a probe's guest_memfd may have: 64 MiB, well inside the
/// smallest guest (128 MiB).
pub const MAX_PAGES: i128 = 16384;
/// The most bytes of a guest_memfd a case may ask for by size: 64 MiB.
pub const MAX_GMEM_BYTES: i128 = 64 << 20;
/// `create` only creates and closes: a size far past memory costs nothing
/// and is itself worth trying (1 TiB).
pub const MAX_CREATE_BYTES: i128 = 1 << 40;
/// Flags in one list: one per bit.
pub const MAX_FLAGS: usize = 64;
/// Pages per 2 MiB window of the address space (one page table each):
/// `fault_inject`'s `pages` is a whole number of them.
pub const FAULT_INJECT_WINDOW: usize = 512;
/// The longest a step may last (the case's timeout is at most this).
pub const MAX_SECONDS: i128 = 3600;

const FLAGS: Bound = Bound::items(0, MAX_FLAGS);
const PAGES: Bound = Bound::range(1, MAX_PAGES);

args_struct! {
    /// `caps`.
    pub struct CapsArgs {
        /// The type of the VM the per-VM answers come from.
        vm_type: VmType = VmType::Default, Bound::NONE;
    }
}

args_struct! {
    /// One KVM_CREATE_GUEST_MEMFD of `create`.
    pub struct CreateAttempt {
        /// The guest_memfd's size in bytes (any: an invalid one is an observation).
        size: u64, Bound::range(0, MAX_CREATE_BYTES);
        /// Its flags.
        flags: Vec<GmemFlag> = Vec::new(), FLAGS;
    }
}

args_struct! {
    /// `create`.
    pub struct CreateArgs {
        /// The type of the VM the guest_memfds are created on.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The attempts, in order; each fd is closed at once.
        attempts: Vec<CreateAttempt>, Bound::items(1, 64);
    }
}

args_struct! {
    /// One operation of `fallocate`.
    pub struct FallocateOp {
        /// What to do.
        op: FallocateOpKind, Bound::NONE;
        /// Where, in bytes.
        offset: u64, Bound::range(0, 2 * MAX_GMEM_BYTES);
        /// How many bytes.
        len: u64, Bound::range(0, 2 * MAX_GMEM_BYTES);
    }
}

args_struct! {
    /// `fallocate`.
    pub struct FallocateArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's size in bytes.
        size: u64, Bound::range(0, MAX_GMEM_BYTES);
        /// Its flags.
        flags: Vec<GmemFlag> = Vec::new(), FLAGS;
        /// The operations, in order, each followed by what the file holds.
        ops: Vec<FallocateOp>, Bound::items(1, 64);
    }
}

args_struct! {
    /// `mmap_rw`.
    pub struct MmapRwArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's flags.
        flags: Vec<GmemFlag> = mappable(), FLAGS;
        /// `drop`: leave out the flags the kernel does not advertise.
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// The guest_memfd's size in pages.
        pages: usize = 4, PAGES;
    }
}

args_struct! {
    /// `vcpu_run`.
    pub struct VcpuRunArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's flags.
        flags: Vec<GmemFlag> = mappable(), FLAGS;
        /// `drop`: leave out the flags the VM does not advertise.
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// Which pages are made private (KVM_SET_MEMORY_ATTRIBUTES) before the run: the data page, or the whole slot.
        private: Private = Private::None, Bound::NONE;
        /// KVM_PRE_FAULT_MEMORY over the whole slot before running.
        pre_fault: bool = false, Bound::NONE;
        /// What the vCPU runs.
        program: Program = Program::AddOutHlt, Bound::NONE;
        /// How long KVM_RUN may take before it is interrupted (SIGALRM), in milliseconds.
        timeout_ms: u64 = 5000, Bound::range(1, 60_000);
    }
}

args_struct! {
    /// `kvm_access`.
    pub struct KvmAccessArgs {
        /// The way into guest memory to try.
        path: KvmPath, Bound::NONE;
        /// The backings to try it on, in this order, each in a child process of its own.
        backings: Vec<Backing> = all_backings(), Bound::items(1, 3).distinct();
        /// `drop`: leave out NO_DIRECT_MAP where the kernel does not advertise it (the cell says so).
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// How long one backing may take before its child is killed, in milliseconds.
        timeout_ms: u64 = 5000, Bound::range(100, 60_000);
    }
}

args_struct! {
    /// `direct_map`.
    pub struct DirectMapArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's flags.
        flags: Vec<GmemFlag> = mappable(), FLAGS;
        /// `drop`: leave out the flags the kernel does not advertise.
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// The guest_memfd's size in pages.
        pages: usize = 1, PAGES;
        /// How the memory is released before its old pages are read again.
        release: Release = Release::Close, Bound::NONE;
        /// Report the DirectMap4k/2M/1G changes (only where they are
        /// certain: the first zap of a boot).
        direct_map_deltas: bool = true, Bound::NONE;
        /// The changes as signs (what holds wherever the pages land), or in kB.
        direct_map_units: DirectMapUnits = DirectMapUnits::Sign, Bound::NONE;
    }
}

args_struct! {
    /// `gup_read`.
    pub struct GupReadArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's flags.
        flags: Vec<GmemFlag> = mappable_no_direct_map(), FLAGS;
        /// `drop`: leave out the flags the kernel does not advertise.
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// The GUP paths to read through, in this order (one that may oops last).
        paths: Vec<GupPath>, Bound::items(1, 3).distinct();
        /// The guest_memfd's size in pages.
        pages: usize = 1, PAGES;
    }
}

args_struct! {
    /// `stale_tlb`.
    pub struct StaleTlbArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's flags.
        flags: Vec<GmemFlag> = mappable_no_direct_map(), FLAGS;
        /// `drop`: leave out the flags the kernel does not advertise.
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// The guest_memfd's size in pages.
        pages: usize = 32, PAGES;
    }
}

args_struct! {
    /// `sweep`.
    pub struct SweepArgs {
        /// How much of MemAvailable to allocate as anonymous memory, in
        /// percent (more risks the OOM killer).
        share_percent: u8 = 80, Bound::range(0, 95);
        /// The size of the tmpfs file written and read back, in MiB.
        tmpfs_mib: usize = 8, Bound::range(1, 1024);
    }
}

args_struct! {
    /// `fault_inject`.
    pub struct FaultInjectArgs {
        /// The type of the VM.
        vm_type: VmType = VmType::Default, Bound::NONE;
        /// The guest_memfd's flags.
        flags: Vec<GmemFlag> = mappable_no_direct_map(), FLAGS;
        /// `drop`: leave out the flags the kernel does not advertise.
        if_unsupported: IfUnsupported = IfUnsupported::Keep, Bound::NONE;
        /// The candidate pages for the fault phases (whole 2 MiB windows).
        pages: usize = 4 * FAULT_INJECT_WINDOW,
            Bound::range(FAULT_INJECT_WINDOW as i128, MAX_PAGES / 2).multiple_of(FAULT_INJECT_WINDOW as i128);
        /// The pages of the restore phase's guest_memfd (half punched, half closed).
        restore_pages: usize = 4, Bound::range(2, 4096);
        /// fail_page_alloc/verbose: 2 logs each injected failure's stack trace
        /// (needed for `failed_in_set_direct_map`, omitted below 2), 1 a line,
        /// 0 nothing.
        verbose: u32 = 2, Bound::range(0, 2);
    }
}

args_struct! {
    /// `meminfo`.
    pub struct MeminfoArgs {}
}

args_struct! {
    /// `selftest`: misbehaves on purpose, to test the framework.
    pub struct SelftestArgs {
        /// Sleep this long first, in milliseconds.
        sleep_ms: u64 = 0, Bound::range(0, MAX_SECONDS * 1000);
        /// Print this verbatim instead of an observation.
        print: Option<String> = None, Bound::bytes(64 << 10);
        /// Then raise this signal.
        raise: Option<Signal> = None, Bound::NONE;
        /// Then exit with this code.
        exit_code: Option<i32> = None, Bound::range(0, 255);
        /// Add a random number to the observation (differs from boot to boot).
        random: bool = false, Bound::NONE;
    }
}

/// The longest KVM selftest name (`x86/private_mem_conversions_test` is 32).
pub const MAX_KSELFTEST_NAME: usize = 128;

/// Whether `name` names a KVM selftest the way Makefile.kvm does: `test` or
/// `arch/test`, plain words, never a path out of the selftests' directory.
pub fn check_kselftest_name(name: &str) -> Result<(), String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let parts: Vec<&str> = name.split('/').collect();
    if name.len() > MAX_KSELFTEST_NAME || parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
        return Err(format!("`{}` is not a KVM selftest name (expected e.g. `guest_memfd_test` or `x86/private_mem_conversions_test`)", name.escape_debug()));
    }
    Ok(())
}

fn kselftest_name(v: &Value) -> Result<(), String> {
    v.as_str().map_or(Ok(()), check_kselftest_name)
}

/// A NUL cannot be in an argument of a program.
fn no_nul(v: &Value) -> Result<(), String> {
    let strings = v.as_array().into_iter().flatten().filter_map(Value::as_str);
    match strings.enumerate().find(|(_, s)| s.contains('\0')) {
        Some((i, _)) => Err(format!(
            "item {i} holds a NUL byte; a program's arguments cannot"
        )),
        None => Ok(()),
    }
}

args_struct! {
    /// `kselftest`.
    pub struct KselftestArgs {
        /// The test, as Makefile.kvm names it: `guest_memfd_test`, `x86/foo_test`.
        test: String, Bound::bytes(MAX_KSELFTEST_NAME).custom(kselftest_name, "a KVM selftest name");
        /// Its command-line arguments.
        args: Vec<String> = Vec::new(), Bound::items(0, 32).each_bytes(256).custom(no_nul, "no NUL");
        /// The test is killed (its whole process group) after this long, in
        /// seconds; it must end before the step's `timeout`.
        timeout_s: u64 = 60, Bound::range(1, MAX_SECONDS);
    }
}

args_struct! {
    /// `isolation`.
    pub struct IsolationArgs {}
}

args_struct! {
    /// `stress`.
    pub struct StressArgs {
        /// The seed every thread's operations are drawn from.
        seed: u64, Bound::range(0, u64::MAX as i128);
        /// Threads, each with its own stream of operations.
        threads: usize = 2, Bound::range(1, MAX_THREADS as i128);
        /// How long the threads run, in seconds (they stop earlier at `max_ops`).
        seconds: u64 = 10, Bound::range(1, 600);
        /// Operations per thread at most.
        max_ops: usize = 5000, Bound::range(1, 100_000);
        /// Pages of a guest_memfd at most.
        pages: usize = 16, Bound::range(1, MAX_FILE_PAGES as i128);
        /// MADV_HWPOISON among the operations (poisoned pages are lost for the boot).
        hwpoison: bool = false, Bound::NONE;
    }
}

args_struct! {
    /// `replay`.
    pub struct ReplayArgs {
        /// The operations, in the order a stress run started them.
        ops: Vec<Op>, Bound::items(1, 20_000);
        /// `true`: each thread (`tN`) runs its own operations concurrently, as in the
        /// stress run; `false`: all of them in order on one thread.
        threads: bool = false, Bound::NONE;
        /// How long the operations may take, in seconds.
        seconds: u64 = 30, Bound::range(1, 600);
    }
}

/// The longest LKDTM crash type name (the longest in 7.3,
/// `REFCOUNT_ADD_NOT_ZERO_SATURATED`, is 31).
pub const MAX_LKDTM_NAME: usize = 64;

/// Whether `name` can be an LKDTM crash type: capitals, digits and `_`, as
/// the kernel's `CRASHTYPE()` names are; never a path or a word with spaces.
/// Whether this kernel has it is the probe's to find (its list is in
/// /sys/kernel/debug/provoke-crash/DIRECT).
pub fn check_lkdtm_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LKDTM_NAME
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an LKDTM crash type (expected a name of capitals, digits and `_` such as `BUG` or `SLAB_FREE_DOUBLE`)",
            name.escape_debug()
        ))
    }
}

fn lkdtm_name(v: &Value) -> Result<(), String> {
    v.as_str().map_or(Ok(()), check_lkdtm_name)
}

args_struct! {
    /// `lkdtm`.
    pub struct LkdtmArgs {
        /// The LKDTM crash type a child process writes to
        /// /sys/kernel/debug/provoke-crash/DIRECT (the kernel lists the ones it
        /// has there: read the file).
        crash: String, Bound::bytes(MAX_LKDTM_NAME).custom(lkdtm_name, "an LKDTM crash type");
        /// How long the child may take, in seconds: then it is reported as
        /// still running (a lockup or a hung task keeps it in the kernel).
        wait_s: u64 = 30, Bound::range(1, 600);
    }
}

/// One probe: its name, what it observes, and its arguments' reference.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub fields: fn() -> Vec<FieldDoc>,
}

macro_rules! probes {
    ($( $probe:ident => $variant:ident($args:ident): $summary:literal; )*) => {
        /// One probe's parsed arguments.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum ProbeArgs {
            $( $variant($args), )*
        }

        /// The probes the probe binary knows, by name.
        pub const PROBES: &[&str] = &[$(stringify!($probe)),*];

        /// Every probe, in the order of [`PROBES`].
        pub const PROBE_INFO: &[ProbeInfo] = &[$(
            ProbeInfo {
                name: stringify!($probe),
                summary: $summary,
                fields: $args::reference,
            },
        )*];

        /// Parses and checks `probe`'s arguments (null: none given).
        pub fn parse(probe: &str, args: &Value) -> Result<ProbeArgs, ArgError> {
            let none = Value::Object(Map::new());
            let args = if args.is_null() { &none } else { args };
            $(
                if probe == stringify!($probe) {
                    return <$args as ArgValue>::from_arg(args, "").map(ProbeArgs::$variant);
                }
            )*
            Err(ArgError::new(
                "",
                format!("no probe `{probe}` (known probes: {})", PROBES.join(", ")),
            ))
        }

        impl ProbeArgs {
            /// The arguments as JSON, every default filled in.
            pub fn to_json(&self) -> Value {
                match self {
                    $( ProbeArgs::$variant(a) => serde_json::to_value(a).expect("arguments serialize"), )*
                }
            }

            /// The probe these arguments are for.
            pub fn probe(&self) -> &'static str {
                match self {
                    $( ProbeArgs::$variant(_) => stringify!($probe), )*
                }
            }
        }
    };
}

probes! {
    caps => Caps(CapsArgs):
        "KVM API version and guest_memfd-related capabilities, system-wide and per VM";
    create => Create(CreateArgs):
        "KVM_CREATE_GUEST_MEMFD with each (size, flags) attempt: ok or errno";
    fallocate => Fallocate(FallocateArgs):
        "fallocate operations on a guest_memfd, and the pages it holds after each";
    mmap_rw => MmapRw(MmapRwArgs):
        "mmap a guest_memfd, write a pattern, read it back through two mappings";
    vcpu_run => VcpuRun(VcpuRunArgs):
        "run a tiny real-mode guest from guest_memfd memory: exits, I/O value, memory value";
    kvm_access => KvmAccess(KvmAccessArgs):
        "one of KVM's own ways into guest memory (pvclock, emulation, nested, ...) on three backings";
    direct_map => DirectMap(DirectMapArgs):
        "guest_memfd pages in the kernel direct map (/dev/mem at their PFN), DirectMap deltas";
    gup_read => GupRead(GupReadArgs):
        "read mmapped guest_memfd pages through GUP paths (/proc/self/mem, process_vm_readv, vmsplice)";
    stale_tlb => StaleTlb(StaleTlbArgs):
        "pages readable through /dev/mem right after their direct-map removal, and after a TLB flush";
    sweep => Sweep(SweepArgs):
        "make the kernel write most free memory through the direct map (anonymous memory, tmpfs)";
    fault_inject => FaultInject(FaultInjectArgs):
        "failed page allocations (fail_page_alloc) in the direct-map removal and restore";
    meminfo => Meminfo(MeminfoArgs):
        "which DirectMap lines /proc/meminfo has";
    selftest => Selftest(SelftestArgs):
        "misbehave on purpose (sleep, bad stdout, signal, exit code) to test the framework";
    kselftest => Kselftest(KselftestArgs):
        "run an upstream KVM selftest packed with the kernel: exit meaning, TAP results, assertion";
    isolation => Isolation(IsolationArgs):
        "what of the host the guest reaches: network interfaces, sockets out, mounts, block, PCI and virtio devices";
    stress => Stress(StressArgs):
        "seeded concurrent operations on guest_memfds, checked against a model of the direct map; exit 3 on a violation";
    replay => Replay(ReplayArgs):
        "run a list of stress operations (a minimized finding), with the same direct-map oracle; exit 3 on a violation";
    lkdtm => Lkdtm(LkdtmArgs):
        "provoke a kernel crash of a chosen kind (LKDTM) from a child process: how the child ended";
}

/// Checks `probe`'s arguments, as the probe will parse them.
pub fn validate(probe: &str, args: &Value) -> Result<(), ArgError> {
    parse(probe, args).map(drop)
}
