//! Finds kernel crash reports in a console log and classifies them.
//!
//! Detection is a table ([`PATTERNS`]): one row per kind of report, saying
//! which line starts it, how its title is formed, where the function in the
//! title comes from, and what ends it. Titles follow syzkaller's `pkg/report`
//! (`BUG: unable to handle kernel paging request in FUNC`, `kernel BUG in FUNC`,
//! `WARNING in FUNC`, `INFO: task hung in FUNC`, ...), so that the same bug
//! gets the same title on every run and every machine.
//!
//! The console may be timestamped (`[   12.345678] `) or not. In a
//! timestamped console, lines without a timestamp are not the kernel's
//! (our init's and the probes' output on the same serial port) and are
//! skipped; so are lines starting with `gmemtest:` in any console.
//!
//! One report is one crash: the lines a report is made of (`#PF:` lines,
//! `Oops: ...`, `invalid opcode` after `kernel BUG at`) do not start another
//! one; a row's `absorbs` says which. A `Kernel panic - not syncing` is always
//! its own crash, also after an oops (`Fatal exception`), so a test can tell
//! an oops that panicked from one that did not.
//!
//! A report cut off before the function its title names was printed (the
//! console ended: the VM was killed, or the log was truncated) keeps its kind
//! and gets a title ending in `(truncated)`, e.g.
//! `BUG: unable to handle kernel paging request (truncated)`. A report that ended (its
//! end marker, or another report started) without that function is garbled
//! (two CPUs printing at once): its kind is [`CrashKind::Corrupted`] and its
//! title ends in `(corrupted)`. A function is never guessed.

use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};
use serde::{Deserialize, Serialize};

use crate::normalize::{self, normalize_line, split_timestamp, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// `BUG: unable to handle page fault for address`, `BUG: kernel NULL
    /// pointer dereference` (with its `#PF:` lines and `Oops:`).
    PageFault,
    /// Any other `Oops: ...: 0000 [#N]` (divide error, stack segment, ...).
    Oops,
    /// `kernel BUG at FILE:LINE!` and other `BUG: ...` reports (sleeping in
    /// atomic context, bad page state).
    Bug,
    GeneralProtection,
    /// `invalid opcode` not caused by a `BUG()`.
    InvalidOpcode,
    /// `WARNING: ...` (WARN_ON and lockdep warnings).
    Warning,
    /// `Kernel panic - not syncing: ...`
    Panic,
    SoftLockup,
    HardLockup,
    RcuStall,
    HungTask,
    Kasan,
    Ubsan,
    Kfence,
    DoubleFault,
    /// `list_add corruption.`, `list_del corruption.` (list debugging, as a
    /// BUG or a WARNING).
    ListCorruption,
    /// SLUB's own checks: `BUG kmalloc-1k (Not tainted): Object corrupt`,
    /// `Poison overwritten`, red zones, double and invalid frees.
    SlabCorruption,
    /// The stack protector's canary (`stack-protector: Kernel stack is
    /// corrupted in: FUNC`) or the scheduler's stack end check.
    StackCorruption,
    /// A kernel stack overflowed into its guard page (VMAP_STACK).
    StackOverflow,
    /// `refcount_t: saturated; leaking memory.` and its siblings.
    Refcount,
    /// FORTIFY_SOURCE: `strscpy: detected buffer overflow: ...`,
    /// `memcpy: detected field-spanning write ...`.
    Fortify,
    /// A second `Linux version ...` banner: the machine rebooted.
    UnexpectedReboot,
    /// A report that ended before it said where it happened.
    Corrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    pub kind: CrashKind,
    /// Normalized, syzkaller style: "BUG: unable to handle kernel paging request in
    /// __access_remote_vm", "kernel BUG in kvm_gmem_free_folio", "WARNING in
    /// kvm_gmem_...", "Kernel panic: Attempted to kill init!", "BUG: soft
    /// lockup in ...", "INFO: task hung in ...".
    pub title: String,
    /// Call trace frames: function names only (no `+0x` offsets, no
    /// compiler suffixes such as `.isra.0`, no module names, no `?`
    /// unreliable frames), starting below the reporting machinery
    /// (`dump_stack_lvl`, `kasan_report`, `asm_exc_page_fault`, timer
    /// interrupt frames, ...), at most [`MAX_TRACE`].
    pub trace: Vec<String>,
    /// The function the title names (chosen past [`FRAME_SKIP`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit: Option<String>,
    /// The raw report lines from the console (for people; NOT for snapshots).
    pub lines: Vec<String>,
    /// Where the report starts in the console (0-based line number).
    pub line_no: usize,
}

/// At most this many frames are kept in [`Crash::trace`].
pub const MAX_TRACE: usize = 8;

/// A report is cut after this many lines even without its end.
const MAX_REPORT_LINES: usize = 300;

/// Finds the crash reports in a console log, in the order they appear.
pub fn find_crashes(console: &str) -> Vec<Crash> {
    let lines = kernel_lines(console);
    let table = &*TABLE;
    let mut crashes = Vec::new();
    let mut seen = vec![false; PATTERNS.len()];
    let mut prev_end = 0;
    let mut i = 0;
    while i < lines.len() {
        let Some(p) = table.start_of(lines[i].msg) else {
            i += 1;
            continue;
        };
        let first = !seen[p];
        seen[p] = true;
        if first && PATTERNS[p].first_is_normal {
            i += 1;
            continue;
        }
        let (end, how) = table.collect(p, &lines, i);
        let start = table.opener(&lines, i, prev_end);
        crashes.push(table.build(p, &lines[start..end], i - start, how));
        prev_end = end;
        i = end;
    }
    crashes
}

/// True when the kernel panicked (so the guest will not report more).
pub fn panicked(crashes: &[Crash]) -> bool {
    crashes.iter().any(Crash::is_panic)
}

impl Crash {
    /// Whether this report is the kernel's panic (`Kernel panic - not
    /// syncing`), whatever its kind (a stack-protector panic is a
    /// [`CrashKind::StackCorruption`]).
    pub fn is_panic(&self) -> bool {
        self.kind == CrashKind::Panic
            || self.lines.iter().any(|l| {
                split_timestamp(l)
                    .1
                    .starts_with("Kernel panic - not syncing")
            })
    }
}

/// Where the function named in a title comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    /// The title names no function.
    None,
    /// The start line names it, in the regex group `func`; when that is a
    /// function of [`FRAME_SKIP`] (a `memcpy`, a list helper), as [`Func::Rip`].
    Captured,
    /// The function that faulted: the first of the `RIP:` lines and the
    /// call trace, in the order printed, that is not in [`FRAME_SKIP`].
    /// When the RIP has no symbol (a jump to a bad address) and every frame
    /// is unreliable (`?`), the first unreliable frame not in the skip list,
    /// as syzkaller does.
    Rip,
    /// As [`Func::Rip`], but a wait or lock primitive ([`WAITING`]) is named
    /// only when there is nothing else: the code that spun or slept.
    Culprit,
    /// Lockdep's reports: as [`Func::Culprit`], else the first function a
    /// lock was taken `at:` (a report without a trace: `lock held when
    /// returning to user space`), else no function and the title without
    /// one (never `corrupted`: lockdep prints no trace for some reports).
    Lockdep,
}

/// What ends a report (besides the start of another report, the end of the
/// console and [`MAX_REPORT_LINES`]).
#[derive(Debug, Clone, Copy)]
enum End {
    /// The start line is the whole report.
    Line,
    /// A line matching this regex, which is part of the report.
    Marker(&'static str),
    /// The end of its call trace (the first line after it that is not a
    /// frame, a `<TASK>`-style marker or a register dump).
    Trace,
    /// The end of a run of stack dumps (a stall: the stalled CPUs', the
    /// grace-period kthread's, NMI backtraces, ...): the first line that is
    /// neither a trace nor one of the lines such dumps are made of.
    Dumps,
}

/// One row of the table: one kind of report.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    kind: CrashKind,
    /// Matches the line that starts the report (without its timestamp).
    start: &'static str,
    /// The title: `${name}` is a named group of `start` or `detail` (empty if
    /// it did not match), `${func}` the function found as `func` says.
    title: &'static str,
    func: Func,
    /// A line of the report with more for the title (searched from the start).
    detail: Option<&'static str>,
    /// The line after which the call trace starts.
    trace: &'static str,
    end: End,
    /// Starts of these kinds inside the report belong to it.
    absorbs: &'static [CrashKind],
    /// The first match is not a crash (the first boot banner).
    first_is_normal: bool,
}

const CALL_TRACE: &str = r"^\s*Call Trace:";
const END_TRACE: &str = r"^---\[ end trace(?: [0-9a-f]+)? \]---";
const RULER: &str = r"^={20,}\s*$";

const ROW: Pattern = Pattern {
    kind: CrashKind::Corrupted,
    start: "",
    title: "",
    func: Func::None,
    detail: None,
    trace: CALL_TRACE,
    end: End::Marker(END_TRACE),
    absorbs: &[],
    first_is_normal: false,
};

/// The table. Rows are tried in order; the first whose `start` matches wins.
pub const PATTERNS: &[Pattern] = &[
    Pattern {
        kind: CrashKind::PageFault,
        // 4.20 and later; before, `... kernel paging request at ADDR`.
        start: r"^BUG: unable to handle (?:page fault for address:|kernel paging request at )",
        title: "BUG: unable to handle kernel paging request in ${func}",
        func: Func::Rip,
        absorbs: &[CrashKind::Oops],
        ..ROW
    },
    Pattern {
        kind: CrashKind::PageFault,
        start: r"^BUG: (?:kernel NULL pointer dereference, address:|unable to handle kernel NULL pointer dereference at )",
        title: "BUG: unable to handle kernel NULL pointer dereference in ${func}",
        func: Func::Rip,
        absorbs: &[CrashKind::Oops],
        ..ROW
    },
    // VMAP_STACK: `BUG: TASK stack guard page was hit at ADDR (stack is
    // ...)`, then `Oops: stack guard page`; the RIP names the function.
    Pattern {
        kind: CrashKind::StackOverflow,
        start: r"^BUG: (?:[A-Z#]+ )?stack guard page was hit at ",
        title: "BUG: stack guard page was hit in ${func}",
        func: Func::Rip,
        absorbs: &[CrashKind::Oops, CrashKind::DoubleFault],
        ..ROW
    },
    // List debugging: the message first (pr_err before BUG() with
    // BUG_ON_DATA_CORRUPTION, or WARN()'s own text after `cut here`), then
    // the BUG or WARNING that carries the trace. The list helpers are in
    // the skip list: the culprit is their caller.
    Pattern {
        kind: CrashKind::ListCorruption,
        start: r"^(?:list_add|list_del|hlist_add|hlist_del|__list_\w+|list_\w+) corruption[.,]",
        title: "BUG: corrupted list in ${func}",
        func: Func::Rip,
        absorbs: &[
            CrashKind::Bug,
            CrashKind::InvalidOpcode,
            CrashKind::Oops,
            CrashKind::Warning,
        ],
        ..ROW
    },
    // `refcount_t: saturated; leaking memory.` (WARN_ONCE's text, before
    // its WARNING in refcount_warn_saturate).
    Pattern {
        kind: CrashKind::Refcount,
        start: r"^refcount_t: [a-z0-9 ;-]+\.?\s*$",
        title: "WARNING: refcount bug in ${func}",
        func: Func::Rip,
        absorbs: &[CrashKind::Warning],
        ..ROW
    },
    // FORTIFY_SOURCE, 6.x and later (`strscpy: detected buffer overflow: 16
    // byte read of buffer size 15`, a WARNING in __fortify_report, then a
    // BUG in __fortify_panic) and 5.x (`detected buffer overflow in
    // strcpy`, then a BUG); `memcpy: detected field-spanning write`.
    Pattern {
        kind: CrashKind::Fortify,
        start: r"^(?:[a-z_0-9]+: )?detected (?P<what>buffer overflow|field-spanning write)\b",
        title: "BUG: fortify detected ${what} in ${func}",
        func: Func::Rip,
        absorbs: &[
            CrashKind::Bug,
            CrashKind::InvalidOpcode,
            CrashKind::Oops,
            CrashKind::Warning,
        ],
        ..ROW
    },
    // SLUB debugging: `BUG CACHE (Not tainted): WHAT` (no colon after BUG),
    // the object's dump, then the trace of the code that tripped the check.
    // The cache's name is left out of the title: it follows the object's
    // size, which differs between builds.
    Pattern {
        kind: CrashKind::SlabCorruption,
        start: r"^BUG [\w.:-]+ \((?:Not tainted|Tainted: [^)]*)\): (?P<what>[A-Za-z][^.:!]*[A-Za-z])",
        title: "BUG: slab ${what} in ${func}",
        func: Func::Culprit,
        end: End::Trace,
        absorbs: &[CrashKind::Warning],
        ..ROW
    },
    // Spinlock debugging (`BUG: spinlock recursion on CPU#0, sh/1`).
    Pattern {
        kind: CrashKind::Bug,
        start: r"^BUG: (?P<lock>spinlock|rwlock) (?P<what>lockup suspected|recursion|already unlocked|bad magic|wrong owner|wrong CPU|cpu recursion)",
        title: "BUG: ${lock} ${what} in ${func}",
        func: Func::Culprit,
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Kasan,
        start: r"^BUG: KASAN: (?P<type>[a-z-]+) in (?P<func>[A-Za-z_$][\w$.]*)",
        title: "KASAN: ${type} ${access} in ${func}",
        func: Func::Captured,
        detail: Some(r"^(?P<access>Read|Write) of size \d+"),
        end: End::Marker(RULER),
        ..ROW
    },
    Pattern {
        kind: CrashKind::Kfence,
        start: r"^BUG: KFENCE: (?P<what>[a-z -]+?) in (?P<func>[A-Za-z_$][\w$.]*)\+0x",
        title: "KFENCE: ${what} in ${func}",
        func: Func::Captured,
        trace: r"^(?:Out-of-bounds|Use-after-free|Corrupted memory|Invalid) ",
        end: End::Marker(RULER),
        ..ROW
    },
    Pattern {
        kind: CrashKind::SoftLockup,
        start: r"^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!",
        title: "BUG: soft lockup in ${func}",
        func: Func::Culprit,
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Bug,
        start: r"^BUG: sleeping function called from invalid context at ",
        title: "BUG: sleeping function called from invalid context in ${func}",
        func: Func::Culprit,
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Bug,
        start: r"^BUG: scheduling while atomic: ",
        title: "BUG: scheduling while atomic in ${func}",
        func: Func::Culprit,
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Bug,
        start: r"^BUG: Bad page (?P<what>state|map) in process ",
        title: "BUG: Bad page ${what}",
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Bug,
        start: r"^BUG: Bad rss-counter state ",
        title: "BUG: Bad rss-counter state",
        end: End::Line,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Bug,
        start: r"^kernel BUG at \S+",
        title: "kernel BUG in ${func}",
        func: Func::Rip,
        absorbs: &[CrashKind::InvalidOpcode, CrashKind::Oops],
        ..ROW
    },
    Pattern {
        kind: CrashKind::DoubleFault,
        start: r"^(?:traps: )?PANIC: double fault|^Oops: double fault: ",
        title: "PANIC: double fault in ${func}",
        func: Func::Rip,
        absorbs: &[CrashKind::DoubleFault, CrashKind::Oops],
        ..ROW
    },
    Pattern {
        kind: CrashKind::GeneralProtection,
        start: r"^(?:Oops: )?(?:segment-related )?general protection fault\b",
        title: "general protection fault in ${func}",
        func: Func::Rip,
        ..ROW
    },
    Pattern {
        kind: CrashKind::InvalidOpcode,
        start: r"^(?:Oops: )?invalid opcode: [0-9a-f]{4} \[#\d+\]",
        title: "invalid opcode in ${func}",
        func: Func::Rip,
        ..ROW
    },
    // Other die() reasons: divide error, stack segment, bounds, ...
    Pattern {
        kind: CrashKind::Oops,
        start: r"^Oops: (?P<what>[a-z][a-z0-9 -]*): [0-9a-f]{4} \[#\d+\]",
        title: "${what} in ${func}",
        func: Func::Rip,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Oops,
        start: r"^Oops: (?:Oops: )?[0-9a-f]{4} \[#\d+\]",
        title: "Oops in ${func}",
        func: Func::Rip,
        ..ROW
    },
    // 7.x: `WARNING: FILE:LINE at FUNC+0x1/0x2, CPU#0: comm/pid`;
    // 6.x: `WARNING: CPU: 0 PID: 1 at FILE:LINE FUNC+0x1/0x2`.
    Pattern {
        kind: CrashKind::Warning,
        start: r"^WARNING: (?:CPU: \d+ PID: \d+ at (?:\S+ )?|(?:\S+:\d+ )?at )(?P<func>[A-Za-z_$][\w$.]*)\+0x",
        title: "WARNING in ${func}",
        func: Func::Captured,
        ..ROW
    },
    // Lockdep and RCU-lockdep warnings.
    Pattern {
        kind: CrashKind::Warning,
        start: r"^WARNING: (?P<what>possible circular locking dependency detected|possible recursive locking detected|possible irq lock inversion dependency detected|inconsistent lock state|suspicious RCU usage|bad unlock balance detected|held lock freed|lock held when returning to user space)!?",
        title: "WARNING: ${what} in ${func}",
        func: Func::Lockdep,
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::StackCorruption,
        start: r"^Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: (?P<func>[A-Za-z_$][\w$.]*)",
        title: "kernel panic: stack is corrupted in ${func}",
        func: Func::Captured,
        end: End::Marker(r"^---\[ end Kernel panic"),
        ..ROW
    },
    Pattern {
        kind: CrashKind::StackCorruption,
        start: r"^Kernel panic - not syncing: corrupted stack end detected inside scheduler",
        title: "kernel panic: corrupted stack end in ${func}",
        func: Func::Culprit,
        end: End::Marker(r"^---\[ end Kernel panic"),
        ..ROW
    },
    Pattern {
        kind: CrashKind::Panic,
        start: r"^Kernel panic - not syncing: (?P<msg>.*)$",
        title: "Kernel panic: ${msg}",
        end: End::Marker(r"^---\[ end Kernel panic"),
        ..ROW
    },
    Pattern {
        kind: CrashKind::HardLockup,
        start: r"^(?:(?:NMI )?watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+",
        title: "BUG: hard lockup in ${func}",
        func: Func::Culprit,
        // The buddy detector reports from another CPU: the stuck CPU's
        // trace is an NMI backtrace after the detector's own lines.
        end: End::Dumps,
        absorbs: &[CrashKind::HardLockup],
        ..ROW
    },
    Pattern {
        kind: CrashKind::RcuStall,
        start: r"^(?:rcu: )?INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected(?: expedited)? stalls?",
        title: "INFO: rcu detected stall in ${func}",
        func: Func::Culprit,
        end: End::Dumps,
        absorbs: &[CrashKind::RcuStall],
        ..ROW
    },
    Pattern {
        kind: CrashKind::HungTask,
        start: r"^INFO: task \S+:\d+ blocked(?: in I/O wait)? for more than \d+ seconds\.",
        title: "INFO: task hung in ${func}",
        func: Func::Culprit,
        end: End::Trace,
        ..ROW
    },
    Pattern {
        kind: CrashKind::Ubsan,
        // 5.x and later name the check; 4.x says `Undefined behaviour`.
        start: r"^UBSAN: (?P<what>[a-z-]+|Undefined behaviour) in ",
        title: "UBSAN: ${what} in ${func}",
        func: Func::Culprit,
        // 4.x closes its report with a ruler, later kernels with an end trace.
        end: End::Marker(r"^(?:---\[ end trace(?: [0-9a-f]+)? \]---|={20,}\s*$)"),
        ..ROW
    },
    // Any other `BUG: ...`, titled with its first words (which name the
    // check, not the values it printed).
    Pattern {
        kind: CrashKind::Bug,
        start: r"^BUG: (?P<what>[A-Za-z_]+\b(?: [A-Za-z_]+\b)*)",
        title: "BUG: ${what}",
        end: End::Trace,
        absorbs: &[
            CrashKind::Oops,
            CrashKind::InvalidOpcode,
            CrashKind::GeneralProtection,
        ],
        ..ROW
    },
    Pattern {
        kind: CrashKind::UnexpectedReboot,
        start: r"^Linux version \d",
        title: "unexpected kernel reboot",
        end: End::Line,
        first_is_normal: true,
        ..ROW
    },
];

/// Named rewrites of titles, applied in order before [`normalize_line`].
pub const TITLE_RULES: &[Rule] = &[
    // `BUG: some check failed at ffff...` titled by its first words ends in
    // the preposition that introduced the value.
    Rule {
        name: "dangling_preposition",
        pattern: r"(?: (?:at|on|in|for|of|from|to|by|with))+$",
        replacement: "",
    },
    // `Attempted to kill init! exitcode=0x0000000b` -> `Attempted to kill init!`
    Rule {
        name: "panic_exitcode",
        pattern: r" exitcode=0x[0-9a-f]+",
        replacement: "",
    },
];

/// The frames never named as a culprit, by what they are (syzkaller's
/// frame-skip list, for Linux): the code that prints a report, takes an
/// exception or an interrupt, checks (list, refcount, fortify, sanitizers,
/// SLUB), allocates, or runs RCU, stop_machine and kthreads (dispatchers
/// are [`DISPATCH`]). A title names the first frame that is none of these. Each
/// entry matches a whole function name; the reporting machinery's entries
/// (`true`) are also cut from the start of a [`Crash::trace`].
pub const FRAME_SKIP: &[(&str, bool, &str)] = &[
    (
        "reporting",
        true,
        r"dump_stack(?:_lvl)?|__dump_stack|show_stack|show_regs|show_trace_log_lvl|show_stack_regs|sched_show_task|dump_backtrace|show_opcodes|show_iret_regs|__show_regs",
    ),
    (
        "printk",
        true,
        r"printk|_printk|vprintk\w*|__printk\w*|console_\w+|printk_\w+|__warn_printk",
    ),
    (
        "exceptions",
        true,
        r"__die(?:_body|_header)?|die|die_addr|oops_end|page_fault_oops|kernelmode_fixup_or_oops|__bad_area_nosemaphore|bad_area_nosemaphore|__bad_area|bad_area\w*|do_user_addr_fault|do_kern_addr_fault|handle_page_fault|do_error_trap|do_trap|do_int3\w*|math_error|fixup_exception|handle_stack_overflow|exc_\w+|asm_exc_\w+|noist_exc_\w+|spurious_kernel_fault\w*",
    ),
    (
        "warn_bug_panic",
        true,
        r"handle_bug|report_bug(?:_entry)?|__report_bug|__warn|warn_slowpath_\w+|panic|vpanic|nmi_panic|check_panic_on_warn|__stack_chk_fail|check_data_corruption",
    ),
    (
        "list_debug",
        false,
        r"__list_\w+_valid\w*|__list_valid_\w+|list_\w+_valid\w*|__list_add|list_add\w*|__list_del\w*|list_del\w*|__hlist_\w+|hlist_\w+|list_move\w*|list_splice\w*|list_replace\w*",
    ),
    ("refcount", false, r"refcount_\w+|__refcount_\w+|kref_\w+"),
    (
        "fortify_string_copy",
        false,
        r"__fortify_\w+|fortify_\w+|memcpy|memmove|memset|memcmp|memchr|bcmp|__memcpy\w*|__memmove\w*|__memset\w*|memcpy_\w+|memmove_\w+|memset_\w+|strcpy|strncpy|strscpy\w*|sized_strscpy|strlcpy|strcat|strncat|strlcat|strlen|strnlen|strcmp|strncmp|strchr|strrchr|strstr|copy_user_generic|rep_movs_alternative|rep_stos_alternative|_copy_to_user|_copy_from_user|copy_to_user|copy_from_user|raw_copy_\w+|__copy_user\w*|clear_user|__clear_user|usercopy_abort|__check_object_size|check_object_size|__check_heap_object|check_heap_object",
    ),
    (
        "sanitizers",
        true,
        r"print_report|print_address_description|describe_object\w*|check_slab_allocation|check_page_allocation|kasan_\w+|__kasan_\w+|__asan_\w+|__hwasan_\w+|check_region_inline|kfence_\w+|__kfence_\w+|kmsan_\w+|__msan_\w+|ubsan_\w+|__ubsan_handle_\w+|kcsan_\w+|__tsan_\w+",
    ),
    (
        "slub_debug",
        true,
        r"slab_err|object_err|slab_bug|slab_fix|print_trailer|print_tracking|print_section|print_page_info|print_slab_info|check_bytes_and_report|check_bytes\w*|check_object|check_slab|check_valid_pointer|check_pad_bytes|slab_pad_check|on_freelist|free_debug_processing|alloc_debug_processing|cache_from_obj|virt_to_cache|warn_free_bad_obj|free_consistency_checks|alloc_consistency_checks|free_to_partial_list|validate_slab\w*|set_track\w*|init_object",
    ),
    (
        "allocator",
        false,
        r"kmalloc\w*|__kmalloc\w*|kzalloc\w*|kcalloc\w*|krealloc\w*|kvmalloc\w*|__kvmalloc\w*|kvzalloc\w*|kfree\w*|kvfree\w*|free_large_kmalloc|kmem_cache_\w+|__kmem_cache_\w+|slab_alloc\w*|__slab_alloc\w*|___slab_alloc|slab_free\w*|__slab_free|do_slab_free|kmemdup\w*|kstrdup\w*|vmalloc\w*|__vmalloc\w*|vzalloc\w*|vfree\w*|alloc_pages\w*|__alloc_pages\w*|alloc_pages_noprof|__free_pages\w*|free_pages\w*|__free_one_page|free_unref_\w+|__folio_alloc\w*|folio_alloc\w*|__get_free_pages\w*|get_free_pages\w*",
    ),
    (
        "rcu_stop_machine_kthreads",
        false,
        r"rcu_\w+|__rcu_\w+|print_cpu_stall\w*|print_other_cpu_stall|check_cpu_stall|dump_cpu_task|multi_cpu_stop|cpu_stopper_thread|stop_machine\w*|stop_one_cpu\w*|stop_cpus|smpboot_thread_fn|kthread|ret_from_fork\w*|worker_thread|process_one_work|process_scheduled_works",
    ),
    (
        "timers_irqs_nmi",
        true,
        r"rcu_dump_cpu_stacks|print_cpu_stall|print_other_cpu_stall|check_cpu_stall|rcu_pending|rcu_sched_clock_irq|dump_cpu_task|watchdog_\w+|softlockup_fn|__hrtimer_run_queues|hrtimer_\w+|tick_\w+|update_process_times|nmi_cpu_backtrace|nmi_trigger_cpumask_backtrace|arch_trigger_cpumask_backtrace|trigger_\w*backtrace|__sysvec_\w+|sysvec_\w+|asm_sysvec_\w+|irqentry_\w+|irq_exit_rcu|__irq_exit_rcu|handle_softirqs|__do_softirq|nmi_handle|default_do_nmi|end_repeat_nmi|perf_event_nmi_handler|__flush_smp_call_function_queue|generic_smp_call_function_single_interrupt",
    ),
    (
        "sched_checks",
        true,
        r"__might_resched|__might_sleep|___might_sleep|__might_fault|__schedule_bug|schedule_debug",
    ),
    (
        "bad_page",
        true,
        r"bad_page|free_page_is_bad_report|free_page_is_bad|print_bad_pte",
    ),
    (
        "lockdep_lock_debug",
        true,
        r"lockdep_\w+|print_\w+_bug|validate_chain|__lock_acquire|lock_acquire|lock_release|__lock_release|check_prevs?_add|check_prev_add|check_noncircular|check_deadlock|check_irq_usage|check_usage\w*|mark_lock\w*|lock_acquired|lock_contended|spin_bug|spin_dump|rwlock_bug|debug_spin_\w+|debug_write_\w+|debug_read_\w+",
    ),
];

/// Dispatchers: LKDTM's, which calls the crash type it was asked for.
/// Skipped as [`FRAME_SKIP`] is, unless the culprit would otherwise be an
/// [`ENTRY`] frame beyond them.
pub const DISPATCH: &[&str] = &[r"lkdtm_do_action|direct_entry|lkdtm_debugfs_\w+"];

/// The way in from user space: system call entry and the VFS calls a
/// debugfs write goes through.
pub const ENTRY: &[&str] = &[
    r"full_proxy_write|full_proxy_read|vfs_write|vfs_read|ksys_\w+|__x64_sys_\w+|__do_sys_\w+|__se_sys_\w+|x64_sys_call|do_syscall_64|entry_SYSCALL_64\w*",
];

/// Wait and lock primitives: kept in traces, but a stall or a hang is titled
/// with the code that called them.
pub const WAITING: &[&str] = &[
    r"__schedule|schedule\w*|preempt_schedule\w*|io_schedule\w*|_?_cond_resched",
    r"__mutex_lock\w*|mutex_lock\w*|__rt_mutex\w*|rt_mutex\w*|rwsem_down_\w+|down_\w+|down|__down\w*",
    r"_raw_spin_lock\w*|_raw_read_lock\w*|_raw_write_lock\w*|do_raw_spin_lock|\w*queued_\w+_slowpath",
    r"__wait_\w+|wait_\w+|do_wait_\w+|folio_wait\w*|__folio_lock\w*|folio_lock\w*|__lock_page\w*",
    r"percpu_down\w+|__percpu_down\w+|percpu_rwsem_wait|rcuwait_wait_event",
    r"msleep\w*|usleep\w*|schedule_hrtimeout\w*|__flush_work|flush_work|synchronize_\w+",
    r"cpu_relax|native_safe_halt|default_idle\w*",
];

/// Lines that are not the kernel's, in any console.
const FOREIGN_PREFIXES: &[&str] = &["gmemtest:"];

/// A line just before a report that belongs to it (`cut here`, KASAN's ruler).
const OPENER: &str = r"^-+\[ cut here \]-+\s*$|^={20,}\s*$";

/// A frame of a call trace: ` func+0x12/0x34`, ` ? func+0x12/0x34 [mod]`,
/// ` [<ffffffff8100abcd>] func+0x12/0x34` (old kernels).
const FRAME: &str = r"^\s*(?:\[<[0-9a-f]+>\] )?(?P<unreliable>\? )?(?P<func>[A-Za-z_$][\w$.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[[^\]]*\])?\s*$";

/// `<TASK>`, `</IRQ>`, `<NMI>`, `<#DF>`, ...
const STACK_MARKER: &str = r"^\s*</?[A-Z#][A-Z0-9_#]*>\s*$";

/// The lines a run of stack dumps is made of besides traces and registers
/// (an RCU stall's CPU lines, NMI backtraces, task lines, ...).
const DUMP_LINE: &str = r"^(?:rcu: |\s|CPU: |Hardware name: |Sending NMI |NMI backtrace for |task:|Call Trace:|RIP: |Code: |Modules linked in:|irq event stamp:|hardirqs |softirqs |Workqueue: |INFO: NMI handler |Showing |\(detected by |Tainted: |Stack dump |Unable to |Possible timer handling issue|INFO: rcu_\w+ (?:self-)?detected)";

/// The start of another task's or CPU's stack dump.
const OTHER_DUMP: &str =
    r"^(?:task:\S|Sending NMI from |NMI backtrace for cpu|Showing (?:all|busy) )";

/// A kernel `RIP:` line with a symbol (not a user `RIP: 0033:0x4a1b2c`).
/// 4.x and later: `RIP: 0010:func+0x1/0x2`; 3.x: `RIP: 0010:[<ffffffff81234567>]
/// [<ffffffff81234567>] func+0x1/0x2`; 4.x page faults: `IP: func+0x1/0x2`.
const RIP: &str =
    r"^\s*(?:RIP: (?:[0-9a-f]{4}:)?|IP: )(?:\[<[0-9a-f]+>\]\s+)*(?P<func>[A-Za-z_$][\w$.]*)\+0x";

struct CompiledPattern {
    pat: Pattern,
    start: Regex,
    detail: Option<Regex>,
    trace: Regex,
    end: Option<Regex>,
}

struct Table {
    patterns: Vec<CompiledPattern>,
    starts: RegexSet,
    title_rules: Vec<(Regex, &'static str)>,
    skip: Regex,
    /// The entries of [`FRAME_SKIP`] that are reporting machinery.
    machinery: Regex,
    waiting: Regex,
    opener: Regex,
    frame: Regex,
    marker: Regex,
    rip: Regex,
    dump: Regex,
    other_dump: Regex,
    lock_at: Regex,
    fetch_fault: Regex,
    dispatch: Regex,
    entry: Regex,
    number: Regex,
    address: Regex,
    placeholder: Regex,
}

static TABLE: LazyLock<Table> = LazyLock::new(Table::new);

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap_or_else(|e| panic!("bad regex {s:?}: {e}"))
}

fn whole(alternatives: &[&str]) -> Regex {
    re(&format!("^(?:{})$", alternatives.join("|")))
}

/// A console line that is the kernel's.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// 0-based line number in the console.
    no: usize,
    /// The line as printed (without a trailing `\r`).
    raw: &'a str,
    /// The line without its timestamp.
    msg: &'a str,
}

/// A printk timestamp anywhere in a line (six decimals: not some program's
/// own `[1.5]`).
static EMBEDDED_TIMESTAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\s*\d+\.\d{6}\](?:\[\s*[TC]\d+\])? ").unwrap());

fn kernel_lines(console: &str) -> Vec<Line<'_>> {
    let all: Vec<(usize, &str)> = console
        .lines()
        .enumerate()
        .map(|(no, l)| (no, l.trim_end_matches('\r')))
        .collect();
    let timestamped = all.iter().any(|(_, l)| split_timestamp(l).0.is_some());
    let lines: Vec<Line> = all
        .into_iter()
        .filter_map(|(no, raw)| {
            // A user program's output still in the UART's queue when printk
            // writes straight to the port: the kernel's line starts in the
            // middle (`gup_read: trying proc_self_mem[    1.95] BUG: ...`).
            let raw = match EMBEDDED_TIMESTAMP.find(raw) {
                Some(m) if timestamped && m.start() > 0 => &raw[m.start()..],
                _ => raw,
            };
            let (ts, msg) = split_timestamp(raw);
            let foreign = (timestamped && ts.is_none())
                || FOREIGN_PREFIXES.iter().any(|p| msg.starts_with(p));
            (!foreign).then_some(Line { no, raw, msg })
        })
        .collect();
    // A record cut short when another console took over is printed again
    // whole (`** replaying previous printk message **`), with its own
    // timestamp: the cut copy is dropped, so that it does not start a
    // report of its own.
    let mut kept: Vec<Line> = Vec::with_capacity(lines.len());
    for l in lines {
        if let Some(prev) = kept.last() {
            let (pts, pmsg) = split_timestamp(prev.raw);
            let (ts, _) = split_timestamp(l.raw);
            if pts.is_some()
                && pts == ts
                && !pmsg.trim().is_empty()
                && l.msg.len() > pmsg.len()
                && l.msg.starts_with(pmsg)
            {
                kept.pop();
            }
        }
        kept.push(l);
    }
    kept
}

/// How a report's lines were cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// By its own end, another report, or the length limit.
    Ended,
    /// By the end of the console.
    Eof,
}

/// Follows a call trace block line by line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TraceState {
    Before,
    In,
    Done,
}

impl Table {
    fn new() -> Table {
        let patterns: Vec<CompiledPattern> = PATTERNS
            .iter()
            .map(|p| CompiledPattern {
                pat: *p,
                start: re(p.start),
                detail: p.detail.map(re),
                trace: re(p.trace),
                end: match p.end {
                    End::Marker(m) => Some(re(m)),
                    _ => None,
                },
            })
            .collect();
        Table {
            starts: RegexSet::new(PATTERNS.iter().map(|p| p.start)).expect("start patterns"),
            patterns,
            title_rules: TITLE_RULES
                .iter()
                .map(|r| (re(r.pattern), r.replacement))
                .collect(),
            skip: whole(&FRAME_SKIP.iter().map(|(_, _, r)| *r).collect::<Vec<_>>()),
            machinery: whole(
                &FRAME_SKIP
                    .iter()
                    .filter(|(_, m, _)| *m)
                    .map(|(_, _, r)| *r)
                    .collect::<Vec<_>>(),
            ),
            waiting: whole(WAITING),
            opener: re(OPENER),
            frame: re(FRAME),
            marker: re(STACK_MARKER),
            rip: re(RIP),
            dump: re(DUMP_LINE),
            other_dump: re(OTHER_DUMP),
            dispatch: whole(DISPATCH),
            number: re(r"\b\d+\b"),
            address: re(r" ?\b0x[0-9a-f]+\b"),
            entry: whole(ENTRY),
            fetch_fault: re(r"^#PF: \w+ instruction fetch"),
            lock_at: re(r"\}, at: (?P<func>[A-Za-z_$][\w$.]*)\+0x"),
            placeholder: re(r"\$\{(\w+)\}"),
        }
    }

    /// The row whose report this line starts.
    fn start_of(&self, msg: &str) -> Option<usize> {
        self.starts.matches(msg).iter().next()
    }

    /// The end (exclusive) of the report of row `p` that starts at `i`.
    fn collect(&self, p: usize, lines: &[Line], i: usize) -> (usize, Cut) {
        let cp = &self.patterns[p];
        if let End::Line = cp.pat.end {
            return (i + 1, Cut::Ended);
        }
        let mut trace = TraceState::Before;
        let mut dumped = false;
        for (j, line) in lines.iter().enumerate().skip(i + 1) {
            if j - i >= MAX_REPORT_LINES {
                return (j, Cut::Ended);
            }
            if let Some(q) = self.start_of(line.msg) {
                if !cp.pat.absorbs.contains(&PATTERNS[q].kind) {
                    // Its `cut here` belongs to the next report.
                    return (self.opener(lines, j, i + 1), Cut::Ended);
                }
            }
            match cp.pat.end {
                End::Marker(_) if cp.end.as_ref().is_some_and(|e| e.is_match(line.msg)) => {
                    return (j + 1, Cut::Ended)
                }
                End::Trace => {
                    trace = self.trace_step(&cp.trace, trace, line.msg);
                    if trace == TraceState::Done {
                        return (j, Cut::Ended);
                    }
                }
                End::Dumps => {
                    trace = self.trace_step(&cp.trace, trace, line.msg);
                    if trace == TraceState::In {
                        dumped = true;
                    } else if trace == TraceState::Done {
                        trace = TraceState::Before;
                    }
                    let part = trace == TraceState::In
                        || self.dump.is_match(line.msg)
                        || self.frame.is_match(line.msg)
                        || normalize::is_register_dump(line.msg);
                    if dumped && !part {
                        return (j, Cut::Ended);
                    }
                }
                _ => {}
            }
        }
        (lines.len(), Cut::Eof)
    }

    fn trace_step(&self, header: &Regex, state: TraceState, msg: &str) -> TraceState {
        match state {
            TraceState::Before if header.is_match(msg) => TraceState::In,
            TraceState::In
                if self.frame.is_match(msg)
                    || self.marker.is_match(msg)
                    || msg.trim_start().starts_with("RIP: ")
                    || normalize::is_register_dump(msg) =>
            {
                TraceState::In
            }
            TraceState::In => TraceState::Done,
            s => s,
        }
    }

    /// Where the report that starts at `i` really begins: a `cut here` or a
    /// ruler line up to two lines before it (not before `floor`).
    fn opener(&self, lines: &[Line], i: usize, floor: usize) -> usize {
        (i.saturating_sub(2).max(floor)..i)
            .find(|&k| self.opener.is_match(lines[k].msg))
            .unwrap_or(i)
    }

    /// The functions of the report's kernel `RIP:` lines and call trace
    /// frames, in the order printed: of its first call trace, or of all its
    /// traces for a row that ends with [`End::Dumps`].
    fn frames(&self, cp: &CompiledPattern, body: &[Line]) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut state = TraceState::Before;
        let dumps = matches!(cp.pat.end, End::Dumps);
        for line in body.iter().skip(1) {
            // After a panic that follows an oops, the kernel prints no trace
            // of its own: what follows is other tasks' and CPUs' (the tasks
            // dumped at panic, NMI backtraces), different on every run.
            if cp.pat.kind == CrashKind::Panic
                && state == TraceState::Before
                && self.other_dump.is_match(line.msg)
            {
                break;
            }
            state = self.trace_step(&cp.trace, state, line.msg);
            if state == TraceState::Done {
                if !dumps {
                    break;
                }
                state = self.trace_step(&cp.trace, TraceState::Before, line.msg);
            }
            if let Some(c) = self.rip.captures(line.msg) {
                seen.push(Seen {
                    func: base_name(&c["func"]).to_string(),
                    rip: true,
                    reliable: true,
                });
            } else if state == TraceState::In {
                if let Some(c) = self.frame.captures(line.msg) {
                    seen.push(Seen {
                        func: base_name(&c["func"]).to_string(),
                        rip: false,
                        reliable: c.name("unreliable").is_none(),
                    });
                }
            }
        }
        seen
    }

    /// The culprit among `seen`: the first reliable function not in the
    /// skip list (not waiting either, when `waiting` is asked and there is
    /// another), else the first such unreliable frame.
    ///
    /// A dispatcher ([`DISPATCH`]: LKDTM's) is skipped too, unless what
    /// would be named instead lies beyond it on the way out to the system
    /// call ([`ENTRY`]): a crash type tail-called or inlined into its
    /// dispatcher is named after the dispatcher, not after `vfs_write`.
    fn culprit(&self, seen: &[Seen], avoid_waiting: bool) -> Option<String> {
        let pick = |reliable: bool| {
            let useful: Vec<&Seen> = seen
                .iter()
                .filter(|f| f.reliable == reliable && !self.skip.is_match(&f.func))
                .collect();
            let dispatch = useful.iter().position(|f| self.dispatch.is_match(&f.func));
            let chosen = |i: usize| match dispatch {
                Some(d) if d < i && self.entry.is_match(&useful[i].func) => d,
                _ => i,
            };
            let plain = |f: &&Seen| !self.dispatch.is_match(&f.func);
            let busy = useful
                .iter()
                .position(|f| plain(f) && !(avoid_waiting && self.waiting.is_match(&f.func)));
            let any = useful.iter().position(plain);
            busy.or(any)
                .map(chosen)
                .or(dispatch)
                .map(|i| useful[i].func.clone())
        };
        pick(true).or_else(|| pick(false))
    }

    fn build(&self, p: usize, report: &[Line], at: usize, cut: Cut) -> Crash {
        let cp = &self.patterns[p];
        let body = &report[at..];
        let caps = cp
            .start
            .captures(body[0].msg)
            .expect("the start line matches");
        let detail: Option<Captures> = cp
            .detail
            .as_ref()
            .and_then(|d| body.iter().find_map(|l| d.captures(l.msg)));

        let mut seen = self.frames(cp, body);
        // An instruction fetch that faulted (NX, SMEP, a jump into data):
        // the RIP is where the jump landed, not code that ran; the culprit
        // is who jumped.
        if cp.pat.kind == CrashKind::PageFault
            && body.iter().any(|l| self.fetch_fault.is_match(l.msg))
        {
            seen.retain(|f| !f.rip);
        }
        let trace: Vec<String> = seen
            .iter()
            .filter(|f| f.reliable && !f.rip)
            .map(|f| &f.func)
            .skip_while(|f| self.machinery.is_match(f))
            .take(MAX_TRACE)
            .cloned()
            .collect();

        let func: Option<String> = match cp.pat.func {
            Func::None => None,
            Func::Captured => caps
                .name("func")
                .map(|m| base_name(m.as_str()).to_string())
                .filter(|f| !self.skip.is_match(f))
                .or_else(|| self.culprit(&seen, false)),
            Func::Rip => self.culprit(&seen, false),
            Func::Culprit => self.culprit(&seen, true),
            Func::Lockdep => self.culprit(&seen, true).or_else(|| {
                let at: Vec<String> = body
                    .iter()
                    .filter_map(|l| self.lock_at.captures(l.msg))
                    .map(|c| base_name(&c["func"]).to_string())
                    .collect();
                at.iter()
                    .find(|f| !self.skip.is_match(f))
                    .or(at.first())
                    .cloned()
            }),
        };
        let func_optional = cp.pat.func == Func::Lockdep;

        let mut kind = cp.pat.kind;
        let mut title = String::new();
        let mut rest = cp.pat.title;
        while let Some(c) = self.placeholder.captures(rest) {
            let m = c.get(0).unwrap();
            title.push_str(&rest[..m.start()]);
            let name = &c[1];
            let value = if name == "func" {
                func.as_deref()
            } else {
                caps.name(name)
                    .or_else(|| detail.as_ref().and_then(|d| d.name(name)))
                    .map(|m| m.as_str())
                    .or(Some(""))
            };
            // SLUB's messages carry counts (`Slab has 0 allocated objects
            // but 1 are to be freed`): one title whatever the numbers.
            let value = value.map(|v| {
                if cp.pat.kind == CrashKind::SlabCorruption && name != "func" {
                    let v = self.address.replace_all(v, "");
                    self.number.replace_all(v.trim(), "N").into_owned()
                } else {
                    v.to_string()
                }
            });
            match value.as_deref() {
                Some(v) => title.push_str(v),
                None if func_optional => {
                    let prefix = title.trim_end();
                    title = prefix.strip_suffix(" in").unwrap_or(prefix).to_string();
                }
                None => {
                    // The function was never printed: say so, never guess.
                    let prefix = title.trim_end();
                    let prefix = prefix.strip_suffix(" in").unwrap_or(prefix);
                    title = match cut {
                        Cut::Eof => format!("{prefix} (truncated)"),
                        Cut::Ended => {
                            kind = CrashKind::Corrupted;
                            format!("{prefix} (corrupted)")
                        }
                    };
                    rest = "";
                    break;
                }
            }
            rest = &rest[m.end()..];
        }
        title.push_str(rest);
        // An empty placeholder (`KASAN: double-free ${access} in`) leaves
        // two spaces.
        title = title
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        for (re, rep) in &self.title_rules {
            title = re.replace_all(&title, *rep).into_owned();
        }
        // A title is one printable line (a table cell, a snapshot field):
        // line noise on the serial port (a stray CR, an escape) is dropped.
        title.retain(|c| !c.is_control());

        Crash {
            kind,
            title: normalize_line(&title),
            trace,
            culprit: func,
            lines: report.iter().map(|l| l.raw.to_string()).collect(),
            line_no: report[0].no,
        }
    }
}

/// One function of a report: from a `RIP:` line or a trace frame.
#[derive(Debug, Clone)]
struct Seen {
    func: String,
    rip: bool,
    /// Not a `?` frame.
    reliable: bool,
}

/// A function name without the suffixes the compiler adds (`mem_rw.isra.0`
/// -> `mem_rw`, `foo.cold` -> `foo`).
fn base_name(f: &str) -> &str {
    f.split('.').next().unwrap_or(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(console: &str) -> Crash {
        let c = find_crashes(console);
        assert_eq!(c.len(), 1, "{c:#?}");
        c.into_iter().next().unwrap()
    }

    #[test]
    fn line_noise_does_not_reach_the_title() {
        let c =
            one("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\x0e\n");
        assert_eq!(c.title, "Kernel panic: Attempted to kill init!");
    }

    #[test]
    fn table_compiles_and_rows_are_reachable() {
        let t = &*TABLE;
        assert_eq!(t.patterns.len(), PATTERNS.len());
        for cp in &t.patterns {
            assert!(
                cp.pat.title.contains("${func}") == (cp.pat.func != Func::None),
                "{}",
                cp.pat.start
            );
            if cp.pat.func == Func::Captured {
                assert!(
                    cp.start.capture_names().any(|n| n == Some("func")),
                    "{}",
                    cp.pat.start
                );
            }
        }
    }

    #[test]
    fn page_fault_is_one_crash_titled_from_rip() {
        let c = one("BUG: unable to handle page fault for address: ff11000012345000\n\
             #PF: supervisor read access in kernel mode\n\
             #PF: error_code(0x0000) - not-present page\n\
             PGD 2a01067 P4D 2a02067 PUD 2a03067 PMD 2a04067 PTE 0\n\
             Oops: Oops: 0000 [#1] SMP\n\
             RIP: 0010:__access_remote_vm+0x1a2/0x3c0\n\
             Call Trace:\n <TASK>\n ? __die+0x23/0x70\n mem_rw.isra.0+0x106/0x200\n vfs_read+0xa9/0x360\n </TASK>\n\
             ---[ end trace 0000000000000000 ]---\n");
        assert_eq!(c.kind, CrashKind::PageFault);
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel paging request in __access_remote_vm"
        );
        assert_eq!(c.trace, ["mem_rw", "vfs_read"]);
        assert!(c.lines.iter().any(|l| l.starts_with("#PF: error_code")));
    }

    #[test]
    fn truncated_report_keeps_its_kind() {
        let c = one(
            "[ 1.000000] BUG: unable to handle page fault for address: ff11000012345000\n\
                     [ 1.000001] #PF: supervisor read access in kernel mode\n",
        );
        assert_eq!(c.kind, CrashKind::PageFault);
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel paging request (truncated)"
        );
        assert!(c.trace.is_empty());
    }

    #[test]
    fn interrupted_report_is_corrupted() {
        let c = find_crashes(
            "BUG: unable to handle page fault for address: ff11000012345000\n\
             #PF: supervisor read access in kernel mode\n\
             ------------[ cut here ]------------\n\
             WARNING: mm/gup.c:123 at gup_foo+0x1/0x2, CPU#1: probe/58\n\
             ---[ end trace 0000000000000000 ]---\n",
        );
        assert_eq!(c.len(), 2, "{c:#?}");
        assert_eq!(
            (c[0].kind, c[0].title.as_str()),
            (
                CrashKind::Corrupted,
                "BUG: unable to handle kernel paging request (corrupted)"
            )
        );
        assert_eq!(
            (c[1].kind, c[1].title.as_str()),
            (CrashKind::Warning, "WARNING in gup_foo")
        );
        assert_eq!(c[1].line_no, 2, "the cut-here line belongs to the warning");
    }

    #[test]
    fn rip_without_symbol_falls_back_to_the_trace() {
        let c = one(
            "BUG: kernel NULL pointer dereference, address: 0000000000000000\n\
             Oops: Oops: 0010 [#1] SMP\n\
             RIP: 0010:0x0\n\
             Call Trace:\n <TASK>\n kvm_gmem_release+0x2f/0x90\n __fput+0xea/0x2d0\n </TASK>\n\
             ---[ end trace 0000000000000000 ]---\n",
        );
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel NULL pointer dereference in kvm_gmem_release"
        );
    }

    #[test]
    fn foreign_lines_are_skipped() {
        let c = one(
            "[    1.000000] BUG: unable to handle page fault for address: ff11000012345000\n\
                     gmemtest: step 2 of 3\n\
                     [    1.000001] RIP: 0010:__access_remote_vm+0x1a2/0x3c0\n\
                     [    1.000002] Call Trace:\n\
                     [    1.000003]  <TASK>\n\
                     probe: pread started\n\
                     [    1.000004]  mem_rw+0x106/0x200\n\
                     [    1.000005]  </TASK>\n\
                     [    1.000006] ---[ end trace 0000000000000000 ]---\n",
        );
        assert_eq!(c.trace, ["mem_rw"]);
        assert_eq!(c.lines.len(), 7);
        // Untimestamped: only the gmemtest: prefix marks foreign lines.
        assert!(
            find_crashes("gmemtest: BUG: unable to handle page fault for address: 0\n").is_empty()
        );
    }

    #[test]
    fn hung_task_is_titled_with_the_waiter() {
        let c = one("INFO: task gmem-probe:61 blocked for more than 122 seconds.\n\
             \x20     Not tainted 7.3.0 #1\n\
             task:gmem-probe      state:D stack:0     pid:61    tgid:61    ppid:1      task_flags:0x400100 flags:0x00004002\n\
             Call Trace:\n <TASK>\n __schedule+0x3a0/0xb40\n schedule+0x27/0xf0\n\
             \x20rwsem_down_write_slowpath+0x2a0/0x6a0\n down_write+0x5b/0x60\n\
             \x20kvm_gmem_fallocate+0x4e/0x140\n vfs_fallocate+0x14c/0x3c0\n </TASK>\n\
             INFO: task gmem-probe:61 is blocked on an rw-semaphore, but the owner is not found.\n");
        assert_eq!(c.title, "INFO: task hung in kvm_gmem_fallocate");
        assert_eq!(c.trace[0], "__schedule");
        assert_eq!(c.lines.last().unwrap(), " </TASK>");
    }

    #[test]
    fn sleeping_in_atomic() {
        let c = one(
            "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585\n\
             in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 57, name: gmem-probe\n\
             CPU: 0 UID: 0 PID: 57 Comm: gmem-probe Not tainted 7.3.0 #1 PREEMPT(none)\n\
             Call Trace:\n <TASK>\n dump_stack_lvl+0x5d/0x80\n __might_resched+0x151/0x190\n\
             \x20__mutex_lock+0x46/0x8a0\n kvm_gmem_get_folio+0x31/0xa0\n </TASK>\n",
        );
        assert_eq!(c.kind, CrashKind::Bug);
        assert_eq!(
            c.title,
            "BUG: sleeping function called from invalid context in kvm_gmem_get_folio"
        );
        assert_eq!(c.trace, ["__mutex_lock", "kvm_gmem_get_folio"]);
    }

    #[test]
    fn bad_page_state() {
        let c = one("BUG: Bad page state in process gmem-probe  pfn:12345\n\
             page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0x12345\n\
             flags: 0x100000000000000(node=0|zone=1)\n\
             page dumped because: nonzero mapcount\n\
             Modules linked in:\n\
             Call Trace:\n <TASK>\n dump_stack_lvl+0x5d/0x80\n bad_page+0x6a/0x100\n free_unref_folios+0x2c1/0x6a0\n </TASK>\n\
             Disabling lock debugging due to kernel taint\n");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (CrashKind::Bug, "BUG: Bad page state")
        );
        assert_eq!(c.trace, ["free_unref_folios"]);
    }

    #[test]
    fn lockdep_warning() {
        let c = one("======================================================\n\
             WARNING: possible circular locking dependency detected\n\
             7.3.0 #1 Not tainted\n\
             ------------------------------------------------------\n\
             gmem-probe/57 is trying to acquire lock:\n\
             stack backtrace:\n\
             CPU: 0 UID: 0 PID: 57 Comm: gmem-probe Not tainted 7.3.0 #1 PREEMPT(none)\n\
             Call Trace:\n <TASK>\n dump_stack_lvl+0x5d/0x80\n print_circular_bug+0x26a/0x330\n\
             \x20check_noncircular+0x11d/0x140\n kvm_gmem_fallocate+0x4e/0x140\n </TASK>\n");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::Warning,
                "WARNING: possible circular locking dependency detected in kvm_gmem_fallocate"
            )
        );
        assert_eq!(c.line_no, 0);
        assert_eq!(c.trace, ["kvm_gmem_fallocate"]);
    }

    #[test]
    fn panic_titles() {
        for (line, title) in [
            (
                "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
                "Kernel panic: Attempted to kill init!",
            ),
            (
                "Kernel panic - not syncing: Fatal exception in interrupt",
                "Kernel panic: Fatal exception in interrupt",
            ),
            (
                "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
                "Kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)",
            ),
        ] {
            let c = one(line);
            assert_eq!((c.kind, c.title.as_str()), (CrashKind::Panic, title));
            assert!(panicked(&[c]));
        }
        assert!(!panicked(&[]));
    }

    #[test]
    fn first_banner_is_not_a_reboot() {
        assert!(find_crashes(
            "Linux version 7.3.0 (root@h) (gcc 12) #1 SMP\nRun /init as init process\n"
        )
        .is_empty());
        let c = find_crashes(
            "Linux version 7.3.0 #1\nfoo\nLinux version 7.3.0 #1\nLinux version 7.3.0 #1\n",
        );
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(
            |c| c.kind == CrashKind::UnexpectedReboot && c.title == "unexpected kernel reboot"
        ));
        assert_eq!(c[0].line_no, 2);
    }

    #[test]
    fn other_oopses() {
        let c = one("Oops: divide error: 0000 [#1] SMP\nRIP: 0010:kvm_gmem_foo+0x10/0x20\n---[ end trace 0000000000000000 ]---");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (CrashKind::Oops, "divide error in kvm_gmem_foo")
        );
        let c = one("Oops: 0002 [#1] PREEMPT SMP NOPTI\nRIP: 0010:kvm_gmem_foo+0x10/0x20\n---[ end trace 0000000000000000 ]---");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (CrashKind::Oops, "Oops in kvm_gmem_foo")
        );
        let c =
            one("invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:kvm_gmem_foo+0x10/0x20\n");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (CrashKind::InvalidOpcode, "invalid opcode in kvm_gmem_foo")
        );
    }

    #[test]
    fn hard_lockup() {
        let c = one("watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1
             Modules linked in:
             CPU: 1 UID: 0 PID: 66 Comm: gmem-probe Not tainted 7.3.4 #1 PREEMPTLAZY
             RIP: 0010:native_queued_spin_lock_slowpath+0x6e/0x2c0
             Call Trace:
 <NMI>
 ? watchdog_hardlockup_check+0x1ad/0x2b0
 </NMI>
 <TASK>
              _raw_spin_lock_irqsave+0x3c/0x50
 kvm_gmem_invalidate_folio+0x2e/0xa0
 </TASK>
             Kernel panic - not syncing: Hard LOCKUP
");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::HardLockup,
                "BUG: hard lockup in kvm_gmem_invalidate_folio"
            )
        );
        assert_eq!(
            c.trace,
            ["_raw_spin_lock_irqsave", "kvm_gmem_invalidate_folio"]
        );
    }

    #[test]
    fn other_bugs_are_caught_by_their_first_words() {
        let c = one(
            "BUG: using smp_processor_id() in preemptible [00000000] code: gmem-probe/57
             caller is kvm_gmem_get_pfn+0x1c/0x120
             Call Trace:
 <TASK>
 dump_stack_lvl+0x5d/0x80
 check_preemption_disabled+0xd5/0xe0
 </TASK>
",
        );
        assert_eq!(
            (c.kind, c.title.as_str()),
            (CrashKind::Bug, "BUG: using smp_processor_id")
        );
        let c = one("BUG: stack guard page was hit at ffa0000000237ff8 (stack is ffa0000000238000..ffa000000023c000)
             Oops: stack guard page: 0000 [#1] SMP
             RIP: 0010:kvm_gmem_get_folio+0x11/0xa0
             Call Trace:
 <TASK>
 kvm_gmem_fault_user_mapping+0x3d/0x1b0
 </TASK>
");
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::StackOverflow,
                "BUG: stack guard page was hit in kvm_gmem_get_folio"
            )
        );
    }

    #[test]
    fn warning_formats() {
        for line in [
            "WARNING: virt/kvm/guest_memfd.c:412 at kvm_gmem_free_folio+0x5e/0x80 [kvm], CPU#0: gmem-probe/57",
            "WARNING: at kvm_gmem_free_folio.cold+0x5e/0x80, CPU#0: gmem-probe/57",
            "WARNING: CPU: 0 PID: 57 at virt/kvm/guest_memfd.c:412 kvm_gmem_free_folio+0x5e/0x80 [kvm]",
            "WARNING: CPU: 0 PID: 57 at kvm_gmem_free_folio+0x5e/0x80",
        ] {
            assert_eq!(one(line).title, "WARNING in kvm_gmem_free_folio", "{line}");
        }
    }

    #[test]
    fn frames() {
        let t = &*TABLE;
        for (line, func, unreliable) in [
            (" mem_rw.isra.0+0x106/0x200", "mem_rw.isra.0", false),
            (" ? __die+0x23/0x70", "__die", true),
            (
                " kvm_gmem_free_folio+0x3c/0x60 [kvm]",
                "kvm_gmem_free_folio",
                false,
            ),
            (
                " kvm_gmem_free_folio+0x3c/0x60 [kvm 0123456789abcdef0123456789abcdef01234567]",
                "kvm_gmem_free_folio",
                false,
            ),
            (" [<ffffffff8100abcd>] foo+0x1/0x2", "foo", false),
        ] {
            let c = t.frame.captures(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(
                (&c["func"], c.name("unreliable").is_some()),
                (func, unreliable)
            );
        }
        for not in [
            "RIP: 0010:foo+0x1/0x2",
            "Modules linked in: kvm_amd kvm",
            "Call Trace:",
        ] {
            assert!(!t.frame.is_match(not), "{not}");
        }
    }

    /// A report as the console prints it: one line per entry.
    fn log(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn an_oops_with_only_unreliable_frames_names_the_first_that_is_not_machinery() {
        let c = one(&log(&[
            "kernel tried to execute NX-protected page - exploit attempt? (uid: 0)",
            "BUG: unable to handle page fault for address: ffffc90000a3fd10",
            "#PF: supervisor instruction fetch in kernel mode",
            "#PF: error_code(0x0011) - permissions violation",
            "Oops: Oops: 0011 [#1] SMP KASAN NOPTI",
            "RIP: 0010:0xffffc90000a3fd10",
            "Code: Unable to access opcode bytes at 0xffffc90000a3fce6.",
            "Call Trace:",
            " <TASK>",
            " ? __die_body+0x1a/0x60",
            " ? page_fault_oops+0x153/0x480",
            " ? exc_page_fault+0x63/0x130",
            " ? asm_exc_page_fault+0x26/0x30",
            " ? execute_location+0x58/0x80",
            " ? lkdtm_EXEC_STACK+0x2e/0x50",
            " ? lkdtm_do_action+0x16/0x30",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::PageFault,
                "BUG: unable to handle kernel paging request in execute_location"
            )
        );
        assert!(c.trace.is_empty(), "unreliable frames are not a trace");
    }

    #[test]
    fn a_list_corruption_is_titled_after_the_lists_user_as_bug_or_warning() {
        let bug = log(&[
            "list_add corruption. next->prev should be prev (ffff88800a1b2c00), but was ffff88800a1b2d00. (next=ffff88800a1b2e00).",
            "------------[ cut here ]------------",
            "kernel BUG at lib/list_debug.c:32!",
            "Oops: invalid opcode: 0000 [#1] SMP KASAN NOPTI",
            "RIP: 0010:__list_add_valid_or_report+0x9a/0xd0",
            "Call Trace:",
            " <TASK>",
            " ? die+0x36/0x90",
            " ? do_trap+0xdd/0x100",
            " lkdtm_CORRUPT_LIST_ADD+0xb4/0x150",
            " lkdtm_do_action+0x16/0x30",
            " direct_entry+0x10a/0x160",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]);
        let warning = log(&[
            "------------[ cut here ]------------",
            "list_del corruption. prev->next should be ffff88800a1b2c00, but was 0000000000000000. (prev=ffff88800a1b2d00)",
            "WARNING: CPU: 1 PID: 97 at lib/list_debug.c:62 __list_del_entry_valid_or_report+0xd3/0x100",
            "RIP: 0010:__list_del_entry_valid_or_report+0xd3/0x100",
            "Call Trace:",
            " <TASK>",
            " lkdtm_CORRUPT_LIST_DEL+0xa9/0x160",
            " lkdtm_do_action+0x16/0x30",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]);
        for (text, func) in [
            (bug, "lkdtm_CORRUPT_LIST_ADD"),
            (warning, "lkdtm_CORRUPT_LIST_DEL"),
        ] {
            let c = one(&text);
            assert_eq!(c.kind, CrashKind::ListCorruption);
            assert_eq!(c.title, format!("BUG: corrupted list in {func}"));
            assert_eq!(c.trace[0], func);
        }
    }

    #[test]
    fn refcount_fortify_and_stack_reports_have_their_kinds() {
        let refcount = one(&log(&[
            "------------[ cut here ]------------",
            "refcount_t: saturated; leaking memory.",
            "WARNING: CPU: 0 PID: 90 at lib/refcount.c:22 refcount_warn_saturate+0x97/0x150",
            "RIP: 0010:refcount_warn_saturate+0x97/0x150",
            "Call Trace:",
            " <TASK>",
            " lkdtm_REFCOUNT_INC_SATURATED+0x2d/0x50",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]));
        assert_eq!(
            (refcount.kind, refcount.title.as_str()),
            (
                CrashKind::Refcount,
                "WARNING: refcount bug in lkdtm_REFCOUNT_INC_SATURATED"
            )
        );
        let fortify = find_crashes(&log(&[
            "------------[ cut here ]------------",
            "strscpy: detected buffer overflow: 16 byte read of buffer size 15",
            "WARNING: CPU: 0 PID: 90 at lib/string_helpers.c:1035 __fortify_report+0x45/0x60",
            "RIP: 0010:__fortify_report+0x45/0x60",
            "Call Trace:",
            " <TASK>",
            " __fortify_panic+0x9/0x10",
            " lkdtm_FORTIFY_STR_OBJECT+0x13e/0x150",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
            "------------[ cut here ]------------",
            "kernel BUG at lib/string_helpers.c:1043!",
            "Oops: invalid opcode: 0000 [#1] SMP KASAN NOPTI",
            "RIP: 0010:__fortify_panic+0x9/0x10",
            "Call Trace:",
            " <TASK>",
            " lkdtm_FORTIFY_STR_OBJECT+0x13e/0x150",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]));
        let titles: Vec<(CrashKind, &str)> =
            fortify.iter().map(|c| (c.kind, c.title.as_str())).collect();
        assert_eq!(
            titles,
            [
                (
                    CrashKind::Fortify,
                    "BUG: fortify detected buffer overflow in lkdtm_FORTIFY_STR_OBJECT"
                ),
                (CrashKind::Bug, "kernel BUG in lkdtm_FORTIFY_STR_OBJECT"),
            ]
        );
        let canary = one(&log(&[
            "Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: lkdtm_CORRUPT_STACK_STRONG+0x45/0x50",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x5d/0x80",
            " panic+0x118/0x2f0",
            " __stack_chk_fail+0x10/0x10",
            " </TASK>",
            "---[ end Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: lkdtm_CORRUPT_STACK_STRONG+0x45/0x50 ]---",
        ]));
        assert_eq!(
            (canary.kind, canary.title.as_str()),
            (
                CrashKind::StackCorruption,
                "kernel panic: stack is corrupted in lkdtm_CORRUPT_STACK_STRONG"
            )
        );
        assert!(panicked(&[canary]));
        let guard = one(&log(&[
            "BUG: TASK stack guard page was hit at ffffc90000a47ff8 (stack is ffffc90000a48000..ffffc90000a4c000)",
            "Oops: stack guard page: 0000 [#1] SMP KASAN NOPTI",
            "RIP: 0010:__kasan_check_write+0x4/0x10",
            "Call Trace:",
            " <TASK>",
            " recursive_loop+0x5c/0x90",
            " recursive_loop+0x7e/0x90",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]));
        assert_eq!(
            (guard.kind, guard.title.as_str()),
            (
                CrashKind::StackOverflow,
                "BUG: stack guard page was hit in recursive_loop"
            )
        );
    }

    #[test]
    fn slub_debug_reports_are_slab_corruption() {
        let c = find_crashes(&log(&[
            "=============================================================================",
            "BUG kmalloc-1k (Not tainted): Object corrupt",
            "-----------------------------------------------------------------------------",
            "",
            "Allocated in lkdtm_SLAB_LINEAR_OVERFLOW+0x1e/0x70 age=3 cpu=0 pid=91",
            " __kmalloc_cache_noprof+0x1b2/0x3c0",
            " lkdtm_SLAB_LINEAR_OVERFLOW+0x1e/0x70",
            "Slab 0xffffea0000123400 objects=10 used=1 fp=0xffff888004b2c400 flags=0x100000000000240(workingset|head|node=0|zone=1)",
            "Object   ffff888004b2c000: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................",
            "Redzone  ffff888004b2c400: 78 56 34 12 cc cc cc cc                          xV4.....",
            "CPU: 0 UID: 0 PID: 91 Comm: sh Not tainted 7.3.4 #1",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x5d/0x80",
            " check_bytes_and_report+0xd1/0x120",
            " check_object+0x1ad/0x300",
            " free_to_partial_list+0x10c/0x590",
            " kfree+0x289/0x3b0",
            " lkdtm_SLAB_LINEAR_OVERFLOW+0x47/0x70",
            " lkdtm_do_action+0x16/0x30",
            " </TASK>",
            "FIX kmalloc-1k: Restoring Right Redzone 0xffff888004b2c400-0xffff888004b2c407=0xcc",
        ]));
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(
            (c[0].kind, c[0].title.as_str()),
            (
                CrashKind::SlabCorruption,
                "BUG: slab Object corrupt in lkdtm_SLAB_LINEAR_OVERFLOW"
            )
        );
    }

    #[test]
    fn an_rcu_stall_looks_past_the_grace_period_kthreads_dump() {
        let c = one(&log(&[
            "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            "rcu: \t1-...0: (1 GPs behind) idle=5b4c/1/0x4000000000000000 softirq=1127/1128 fqs=0",
            "rcu: \t(detected by 0, t=21002 jiffies, g=1745, q=14 ncpus=2)",
            "rcu: rcu_preempt kthread timer wakeup didn't happen for 21001 jiffies! g1745 f0x0 RCU_GP_WAIT_FQS(5) ->state=0x402",
            "rcu: RCU grace-period kthread stack dump:",
            "task:rcu_preempt     state:I stack:0     pid:16    tgid:16    ppid:2      flags:0x00004000",
            "Call Trace:",
            " <TASK>",
            " __schedule+0x3d5/0xb70",
            " schedule+0x27/0xf0",
            " schedule_timeout+0x8e/0x170",
            " rcu_gp_fqs_loop+0x114/0x580",
            " rcu_gp_kthread+0xd0/0x160",
            " kthread+0xe4/0x110",
            " ret_from_fork+0x31/0x50",
            " </TASK>",
            "Sending NMI from CPU 0 to CPUs 1:",
            "NMI backtrace for cpu 1",
            "CPU: 1 UID: 0 PID: 18 Comm: migration/1 Not tainted 7.3.4 #1",
            "RIP: 0010:multi_cpu_stop+0x97/0x130",
            "Call Trace:",
            " <NMI>",
            " nmi_cpu_backtrace+0x8c/0x100",
            " </NMI>",
            " <TASK>",
            " cpu_stopper_thread+0x92/0x140",
            " smpboot_thread_fn+0xd9/0x1d0",
            " kthread+0xe4/0x110",
            " </TASK>",
            "rcu: INFO: rcu_preempt self-detected stall on CPU",
            "rcu: \t0-....: (20999 ticks this GP) idle=9f2c/1/0x4000000000000000 softirq=2020/2020 fqs=2",
            "CPU: 0 UID: 0 PID: 93 Comm: sh Not tainted 7.3.4 #1",
            "RIP: 0010:lkdtm_SOFTLOCKUP+0x11/0x20",
            "Call Trace:",
            " <IRQ>",
            " rcu_sched_clock_irq+0x4d4/0xbd0",
            " update_process_times+0x76/0xb0",
            " </IRQ>",
            " <TASK>",
            " lkdtm_do_action+0x16/0x30",
            " direct_entry+0x10a/0x160",
            " </TASK>",
            "gmemtest-init: something else",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::RcuStall,
                "INFO: rcu detected stall in lkdtm_SOFTLOCKUP"
            )
        );
    }

    #[test]
    fn kasan_frees_have_no_access_and_a_spinlock_bug_its_caller() {
        let c = one(&log(&[
            "==================================================================",
            "BUG: KASAN: double-free in lkdtm_SLAB_FREE_DOUBLE+0x6d/0x80",
            "Free of addr ffff888004b2c000 by task sh/92",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x5d/0x80",
            " kasan_report_invalid_free+0x9d/0xc0",
            " lkdtm_SLAB_FREE_DOUBLE+0x6d/0x80",
            " </TASK>",
            "==================================================================",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::Kasan,
                "KASAN: double-free in lkdtm_SLAB_FREE_DOUBLE"
            )
        );
        let c = one(&log(&[
            "BUG: spinlock recursion on CPU#0, sh/92",
            " lock: lock_me_up+0x0/0x20, .magic: dead4ead, .owner: sh/92, .owner_cpu: 0",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x5d/0x80",
            " do_raw_spin_lock+0x1f8/0x260",
            " _raw_spin_lock+0x30/0x40",
            " lkdtm_SPINLOCKUP+0x29/0x40",
            " </TASK>",
            "Disabling lock debugging due to kernel taint",
        ]));
        assert_eq!(c.title, "BUG: spinlock recursion in lkdtm_SPINLOCKUP");
    }

    #[test]
    fn a_panic_after_an_oops_has_no_trace_of_other_tasks() {
        let c = one(&log(&[
            "Kernel panic - not syncing: Fatal exception",
            "Sending NMI from CPU 0 to CPUs 1:",
            "NMI backtrace for cpu 1 skipped: idling at default_idle+0x13/0x20",
            "Kernel Offset: disabled",
            "task:init            state:S stack:0     pid:1     tgid:1     ppid:0",
            "Call Trace:",
            " <TASK>",
            " __schedule+0x3ea/0x890",
            " do_sys_poll+0x485/0x590",
            " </TASK>",
            "---[ end Kernel panic - not syncing: Fatal exception ]---",
        ]));
        assert_eq!(c.title, "Kernel panic: Fatal exception");
        assert!(c.trace.is_empty(), "{:?}", c.trace);
    }

    #[test]
    fn a_replayed_printk_record_starts_no_report_of_its_own() {
        let c = find_crashes(&log(&[
            "[   15.953996] list_add corruption. next->prev should be prev (ffffc900002f7c40), but was 00",
            "** replaying previous printk message **",
            "[   15.953996] list_add corruption. next->prev should be prev (ffffc900002f7c40), but was 0000000000000000. (next=ffffc900002f7c60).",
            "[   15.958881] ------------[ cut here ]------------",
            "[   15.958963] kernel BUG at __list_add_valid_or_report+0xd9/0x180 [verbose debug info unavailable]",
            "[   15.959881] Oops: invalid opcode: 0000 [#1] SMP DEBUG_PAGEALLOC KASAN",
            "[   15.960000] RIP: 0010:__list_add_valid_or_report+0xd9/0x180",
            "[   15.960001] Call Trace:",
            "[   15.960002]  lkdtm_CORRUPT_LIST_ADD+0x14c/0x240",
            "[   15.960003] ---[ end trace 0000000000000000 ]---",
        ]));
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].title, "BUG: corrupted list in lkdtm_CORRUPT_LIST_ADD");
        assert_eq!(c[0].line_no, 2);
    }

    #[test]
    fn a_lockdep_report_without_a_trace_names_where_the_lock_was_taken() {
        let c = one(&log(&[
            "================================================",
            "WARNING: lock held when returning to user space!",
            "7.3.4 #3 Not tainted",
            "------------------------------------------------",
            "gmem-probe/45 is leaving the kernel with locks still held!",
            "1 lock held by gmem-probe/45:",
            " #0: ffffffff827a6c98 (lock_me_up){+.+.}-{3:3}, at: lkdtm_SPINLOCKUP+0x2f/0x50",
            "some other line",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str(), c.culprit.as_deref()),
            (
                CrashKind::Warning,
                "WARNING: lock held when returning to user space in lkdtm_SPINLOCKUP",
                Some("lkdtm_SPINLOCKUP")
            )
        );
    }

    #[test]
    fn a_crash_type_inlined_into_its_dispatcher_is_named_after_it() {
        let c = one(&log(&[
            "BUG: KASAN: double-free in kmem_cache_free+0xf2/0x540",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x62/0x90",
            " kasan_report_invalid_free+0xb4/0xd0",
            " check_slab_allocation+0xd7/0x100",
            " kmem_cache_free+0xf2/0x540",
            " lkdtm_do_action+0x2f/0x50",
            " direct_entry+0x117/0x1d0",
            " full_proxy_write+0xf5/0x150",
            " vfs_write+0x1d6/0xc90",
            " </TASK>",
            "==================================================================",
        ]));
        assert_eq!(c.title, "KASAN: double-free in lkdtm_do_action");
        // Not inlined: the crash type itself, before its dispatcher.
        let c = one(&log(&[
            "------------[ cut here ]------------",
            "WARNING: CPU: 0 PID: 44 at mm/slub.c:6391 warn_free_bad_obj+0x90/0xc0",
            "RIP: 0010:warn_free_bad_obj+0x90/0xc0",
            "Call Trace:",
            " <TASK>",
            " kmem_cache_free+0x3a/0x540",
            " lkdtm_SLAB_FREE_CROSS+0x5e/0x80",
            " lkdtm_do_action+0x2f/0x50",
            " full_proxy_write+0xf5/0x150",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
        ]));
        assert_eq!(c.title, "WARNING in lkdtm_SLAB_FREE_CROSS");
    }

    #[test]
    fn slub_titles_do_not_carry_counts() {
        for (msg, what) in [
            (
                "Slab has 0 allocated objects but 1 are to be freed",
                "Slab has N allocated objects but N are to be freed",
            ),
            (
                "Wrong object count. Counter is 1 but counted were 0",
                "Wrong object count",
            ),
            (
                "Invalid object pointer 0xffff888004b2c000",
                "Invalid object pointer",
            ),
            (
                "Padding overwritten. 0xffff888004b2c3c0-0xffff888004b2c3ff @offset=960",
                "Padding overwritten",
            ),
            ("Poison overwritten", "Poison overwritten"),
        ] {
            let c = one(&log(&[
                "=============================================================================",
                &format!("BUG kmalloc-128 (Tainted: G    B             ): {msg}"),
                "-----------------------------------------------------------------------------",
                "Call Trace:",
                " <TASK>",
                " dump_stack_lvl+0x5d/0x80",
                " slab_err+0xb5/0xf0",
                " free_to_partial_list+0x10c/0x590",
                " kfree+0x289/0x3b0",
                " lkdtm_SLAB_FREE_PAGE+0x47/0x70",
                " </TASK>",
                "FIX kmalloc-128: Object at 0xffff888004b2c000 not freed",
            ]));
            assert_eq!(
                (c.kind, c.title.as_str()),
                (
                    CrashKind::SlabCorruption,
                    format!("BUG: slab {what} in lkdtm_SLAB_FREE_PAGE").as_str()
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn older_kernels_report_formats() {
        let c = one(&log(&[
            "BUG: unable to handle kernel paging request at ffff88002bde1e40",
            "IP: __memset+0x24/0x30",
            "PGD ae2c067 PUD ae2d067 PMD 7faa5067 PTE 800000002bde1060",
            "Oops: 0002 [#1] SMP DEBUG_PAGEALLOC KASAN",
            "RIP: 0010:[<ffffffff82d4e304>]  [<ffffffff82d4e304>] __memset+0x24/0x30",
            "Call Trace:",
            " [<ffffffff8150e4a6>] kvm_gmem_get_folio+0x36/0x80",
            " [<ffffffff8150f5c8>] kvm_gmem_fallocate+0x78/0x120",
            "---[ end trace 5e9f31a7c1b0d2e4 ]---",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::PageFault,
                "BUG: unable to handle kernel paging request in kvm_gmem_get_folio"
            )
        );
        let c = one(&log(&[
            "BUG: unable to handle kernel NULL pointer dereference at 0000000000000008",
            "IP: kvm_gmem_release+0x2f/0x90",
            "Oops: 0000 [#1] SMP",
            "Call Trace:",
            " __fput+0xea/0x2d0",
            "---[ end trace 5e9f31a7c1b0d2e4 ]---",
        ]));
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel NULL pointer dereference in kvm_gmem_release"
        );
        let c = one(&log(&[
            "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
            "RIP: 0010:lkdtm_HARDLOCKUP+0x8/0x10",
            "Call Trace:",
            " lkdtm_do_action+0x16/0x30",
            "some other line",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::HardLockup,
                "BUG: hard lockup in lkdtm_HARDLOCKUP"
            )
        );
        let c = one(&log(&[
            "================================================================================",
            "UBSAN: Undefined behaviour in drivers/misc/lkdtm/bugs.c:300:16",
            "index 8 is out of range for type 'char [8]'",
            "Call Trace:",
            " dump_stack+0x5d/0x80",
            " ubsan_epilogue+0x9/0x40",
            " __ubsan_handle_out_of_bounds+0x6d/0x80",
            " lkdtm_ARRAY_BOUNDS+0x9c/0xb0",
            "================================================================================",
        ]));
        assert_eq!(
            (c.kind, c.title.as_str()),
            (
                CrashKind::Ubsan,
                "UBSAN: Undefined behaviour in lkdtm_ARRAY_BOUNDS"
            )
        );
    }
}
