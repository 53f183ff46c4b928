//! Normalizes kernel log lines for snapshots: removes what differs between
//! two runs of the same behaviour (timestamps, addresses, PFNs, PIDs, CPU
//! numbers, symbol offsets, build numbers) and keeps the rest verbatim.
//!
//! The rules are a short list of named regex replacements ([`RULES`]), applied
//! in order to every line; [`NOISE`] names the lines that carry nothing but
//! such values (register dumps and the like), which [`normalize_lines`] drops.
//! Placeholders are plain words: `ADDR`, `PFN`, `PID`, `CPU`, `NUM`, `BUILD`,
//! `FLAGS`.

use std::sync::LazyLock;

use regex::Regex;

/// One named rewrite: every match of `pattern` is replaced by `replacement`
/// (regex replacement syntax: `$1`, `${name}`).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub pattern: &'static str,
    pub replacement: &'static str,
}

/// The printk prefix: `[   12.345678] `, also with a caller id
/// (`[   12.345678][    T1] `, CONFIG_PRINTK_CALLER) and a log level
/// (`<4>[   12.345678] `, a console read from /dev/kmsg). Removed.
pub const TIMESTAMP: Rule = Rule {
    name: "timestamp",
    pattern: r"^(?:<\d>)?\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])? ?",
    replacement: "",
};

/// The boot banner: who built the kernel, with which compiler, build number
/// and date. `Linux version 7.3.0 (root@host) (gcc ...) #1 SMP ... 2026` ->
/// `Linux version 7.3.0 BUILD`.
pub const LINUX_BANNER: Rule = Rule {
    name: "linux_banner",
    pattern: r"^(Linux version \S+) .*$",
    replacement: "$1 BUILD",
};

/// A `git describe` suffix in a kernel release (CONFIG_LOCALVERSION_AUTO):
/// `7.3.0-rc4-00012-gabcdef123456` -> `7.3.0-rc4-gCOMMIT`; `-dirty` goes too.
pub const RELEASE_COMMIT: Rule = Rule {
    name: "release_commit",
    pattern: r"-\d+-g[0-9a-f]{7,40}(?:-dirty)?\b",
    replacement: "-gCOMMIT",
};

/// The build number of the running kernel, as `dump_stack` and the hung-task
/// report print it after the release: `7.3.0 #1 PREEMPT(none)` ->
/// `7.3.0 #BUILD PREEMPT(none)`. An oops counter (`[#1]`) is kept.
pub const BUILD_NUMBER: Rule = Rule {
    name: "build_number",
    pattern: r"\b(\d+\.\d+\S*) #\d+\b",
    replacement: "$1 #BUILD",
};

/// Taint flags (`Tainted: G      D W`, or the verbose `Tainted: [D]=DIE,
/// [W]=WARN`) -> `Tainted: FLAGS`. `Not tainted` is kept.
pub const TAINTED: Rule = Rule {
    name: "tainted",
    pattern: r"Tainted: (?:\[[A-Z]\]=[A-Z_]+(?:, )?)+|Tainted: [A-Z ]*[A-Z]",
    replacement: "Tainted: FLAGS",
};

/// Compiler-made symbol suffixes, which change with the compiler and the code
/// around the function: `mem_rw.isra.0+0x6a/0x90` -> `mem_rw+0x6a/0x90`
/// (`.isra.N`, `.constprop.N`, `.part.N`, `.cold`, `.llvm.N`, ...).
pub const SYMBOL_SUFFIX: Rule = Rule {
    name: "symbol_suffix",
    pattern: r"\b([A-Za-z_][\w$]*)(?:\.[\w.]+)(\+0x[0-9a-f]+)",
    replacement: "$1$2",
};

/// Offsets into a symbol: `__access_remote_vm+0x1a2/0x3c0` ->
/// `__access_remote_vm` (also `func+0x1a` without the size).
pub const SYMBOL_OFFSET: Rule = Rule {
    name: "symbol_offset",
    pattern: r"\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?",
    replacement: "",
};

/// PIDs after a keyword: `PID: 57`, `pid:57`, `pid 57`, `tgid:57`,
/// `ppid:1`, `Pid: 57` -> `PID: PID`, `pid:PID`, ...
pub const PID: Rule = Rule {
    name: "pid",
    pattern: r"\b(PID|Pid|pid|tgid|ppid)(: ?|=| +)\d+\b",
    replacement: "${1}${2}PID",
};

/// PIDs after a command name: `task probe:57`, `task probe/57`,
/// `[probe:57]` (soft lockup), `CPU#0: probe/57` (WARNING) ->
/// `task probe:PID`, ...
pub const COMM_PID: Rule = Rule {
    name: "comm_pid",
    pattern: r"(\btask |\[|CPU#\w+: )(\S+)([:/])\d+\b",
    replacement: "${1}${2}${3}PID",
};

/// PIDs alone after `task`: `Freed by task 57:` (KASAN) -> `Freed by task PID:`.
pub const TASK_PID: Rule = Rule {
    name: "task_pid",
    pattern: r"\btask (\d+)\b",
    replacement: "task PID",
};

/// CPU numbers: `CPU: 1`, `CPU#0`, `on CPU 3`, `on cpu 0`, `cpu=1`, `CPU1:` ->
/// `CPU: CPU`, `CPU#CPU`, `on CPU CPU`, ...
pub const CPU: Rule = Rule {
    name: "cpu",
    pattern: r"\b(CPU|cpu)(: ?|#| |=)?\d+\b",
    replacement: "${1}${2}CPU",
};

/// Page frame numbers: `pfn:0x12345`, `pfn=12345`, `pfn 12345` -> `pfn:PFN`,
/// `pfn=PFN`, `pfn PFN`.
pub const PFN: Rule = Rule {
    name: "pfn",
    pattern: r"\bpfn([:= ]\s*)(?:0x)?[0-9a-f]+\b",
    replacement: "pfn${1}PFN",
};

/// Page-table entries in a page-fault oops: `PGD 2a01067 P4D 2a02067 PUD
/// 2a03067 PMD 2a04067 PTE 0` -> `PGD ADDR P4D ADDR ... PTE 0` (a zero
/// entry, "not present", is kept).
pub const PAGE_TABLE_ENTRY: Rule = Rule {
    name: "page_table_entry",
    pattern: r"\b(PGD|P4D|PUD|PMD|PTE) 0*[1-9a-f][0-9a-f]*\b",
    replacement: "$1 ADDR",
};

/// Zero written as a long hex number (a NULL pointer, an empty register, the
/// oops end marker's `0000000000000000`) is not an address that moves between
/// runs: it is shortened to `0` (`0x0`) so that [`HEX`] keeps it.
pub const ZERO: Rule = Rule {
    name: "zero",
    pattern: r"\b(0x)?0{5,}\b",
    replacement: "${1}0",
};

/// Addresses and other long hex numbers: `0x` and 5 or more hex digits, or
/// a 16-digit hex word (`ff11000012345000`, `ffffffff81000000`, a 64-bit
/// register value). Generic on purpose: the direct map starts at
/// `ff11000000000000` with 5-level paging, `ffff888000000000` without.
/// Short values (`error_code(0x0000)`, `0x0`) are kept: they are behaviour.
pub const HEX: Rule = Rule {
    name: "hex",
    pattern: r"\b0x[0-9a-fA-F]{5,}\b|\b[0-9a-f]{16}\b",
    replacement: "ADDR",
};

/// When something happened, in seconds since boot (KASAN's and KFENCE's
/// allocation and free records): `at 4.312345s`, `(0.228767s ago)` ->
/// `at TIME`, `(TIME ago)`.
pub const EVENT_TIME: Rule = Rule {
    name: "event_time",
    pattern: r"\b\d+\.\d{6}s\b",
    replacement: "TIME",
};

/// How long a soft lockup has lasted, which depends on the watchdog's timing:
/// `stuck for 23s!` -> `stuck for NUMs!`.
pub const LOCKUP_DURATION: Rule = Rule {
    name: "lockup_duration",
    pattern: r"stuck for \d+s!",
    replacement: "stuck for NUMs!",
};

/// Runs of blanks (column padding that moves with the width of a number) ->
/// one space. Trailing blanks are trimmed afterwards.
pub const BLANKS: Rule = Rule {
    name: "blanks",
    pattern: r"[ \t]+",
    replacement: " ",
};

/// The rules, in the order they are applied.
pub const RULES: &[Rule] = &[
    TIMESTAMP,
    LINUX_BANNER,
    RELEASE_COMMIT,
    BUILD_NUMBER,
    TAINTED,
    SYMBOL_SUFFIX,
    SYMBOL_OFFSET,
    PID,
    COMM_PID,
    TASK_PID,
    CPU,
    PFN,
    PAGE_TABLE_ENTRY,
    ZERO,
    HEX,
    EVENT_TIME,
    LOCKUP_DURATION,
    BLANKS,
];

/// A kind of line that [`normalize_lines`] drops: nothing in it survives
/// normalization but the label.
#[derive(Debug, Clone, Copy)]
pub struct Noise {
    pub name: &'static str,
    /// Matched against the line without its timestamp.
    pub pattern: &'static str,
}

/// The lines dropped by [`normalize_lines`], matched after the timestamp.
pub const NOISE: &[Noise] = &[
    // General-purpose and control registers, flags, segment registers and the
    // opcode bytes around the faulting instruction. `RIP:` is kept: its
    // symbol is what the report is about.
    Noise {
        name: "register_dump",
        pattern: r"^\s*(?:RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R0?8|R0?9|R1[0-5]|FS|GS|CS|DS|ES|CR[0-4]|DR[0-7]|PKRU|EFLAGS|ORIG_RAX|Code)\s*:",
    },
    // The machine (QEMU's model and firmware version).
    Noise {
        name: "hardware_name",
        pattern: r"^\s*Hardware name:",
    },
    // Lockdep's IRQ-state event counters and the addresses they were taken at.
    Noise {
        name: "irq_events",
        pattern: r"^\s*(?:irq event stamp:|hardirqs last +(?:en|dis)abled at|softirqs last +(?:en|dis)abled at)",
    },
    // Empty lines.
    Noise {
        name: "blank",
        pattern: r"^\s*$",
    },
];

struct Compiled<T> {
    what: T,
    re: Regex,
}

static COMPILED_RULES: LazyLock<Vec<Compiled<Rule>>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|r| Compiled {
            what: *r,
            re: Regex::new(r.pattern).unwrap_or_else(|e| panic!("rule {}: {e}", r.name)),
        })
        .collect()
});

static COMPILED_NOISE: LazyLock<Vec<Compiled<Noise>>> = LazyLock::new(|| {
    NOISE
        .iter()
        .map(|n| Compiled {
            what: *n,
            re: Regex::new(n.pattern).unwrap_or_else(|e| panic!("noise {}: {e}", n.name)),
        })
        .collect()
});

static TIMESTAMP_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(TIMESTAMP.pattern).unwrap());

/// Splits a console line into its printk timestamp prefix (if any) and the
/// message: `("[   1.234567] ", "Linux version ...")`.
pub fn split_timestamp(line: &str) -> (Option<&str>, &str) {
    match TIMESTAMP_RE.find(line) {
        Some(m) => (Some(m.as_str()), &line[m.end()..]),
        None => (None, line),
    }
}

/// True when the line (with or without its timestamp) is one that
/// [`normalize_lines`] drops: a register dump, `Code:`, `Hardware name:`,
/// lockdep's IRQ event counters, or a blank line.
pub fn is_noise(line: &str) -> bool {
    let (_, msg) = split_timestamp(line.trim_end_matches('\r'));
    COMPILED_NOISE.iter().any(|n| n.re.is_match(msg))
}

/// True when the line (with or without its timestamp) is part of a register
/// dump (`RAX: ...`, `CR2: ...`, `Code: ...`; not `RIP:`).
pub fn is_register_dump(line: &str) -> bool {
    noise_kind(line) == Some("register_dump")
}

/// The name of the [`NOISE`] entry a line matches (for tests and debugging).
pub fn noise_kind(line: &str) -> Option<&'static str> {
    let (_, msg) = split_timestamp(line.trim_end_matches('\r'));
    COMPILED_NOISE
        .iter()
        .find(|n| n.re.is_match(msg))
        .map(|n| n.what.name)
}

/// Removes what differs between runs of the same behaviour: timestamps
/// `[  1.234567]`, hex addresses and long hex numbers (`0x...`,
/// `ff11...`, 16-hex-digit words), PFNs, PIDs (`PID: 123`, `pid:123`,
/// `[comm:123]`), CPU numbers (`CPU: 1`, `on CPU 3`, `CPU#0`), `+0x1a/0x30`
/// offsets and compiler suffixes of symbols, `Tainted:` flags, and the build
/// number and banner of the kernel release. See [`RULES`].
pub fn normalize_line(line: &str) -> String {
    let mut s = line.trim_end_matches(['\r', '\n']).to_string();
    for rule in COMPILED_RULES.iter() {
        if let std::borrow::Cow::Owned(o) = rule.re.replace_all(&s, rule.what.replacement) {
            s = o;
        }
    }
    s.trim_end().to_string()
}

/// Normalizes a list of lines, dropping lines that are pure noise (register
/// dumps, `Code:`, `Hardware name:`, lockdep IRQ event counters, blank
/// lines). See [`NOISE`].
pub fn normalize_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| !is_noise(l))
        .map(normalize_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies one rule alone.
    fn apply(rule: Rule, line: &str) -> String {
        Regex::new(rule.pattern)
            .unwrap()
            .replace_all(line, rule.replacement)
            .into_owned()
    }

    #[test]
    fn rule_names_are_unique() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
    }

    #[test]
    fn timestamp() {
        assert_eq!(
            apply(TIMESTAMP, "[   12.345678] Oops: Oops: 0000 [#1] SMP"),
            "Oops: Oops: 0000 [#1] SMP"
        );
        assert_eq!(
            apply(
                TIMESTAMP,
                "[    1.000000][    T1] Run /init as init process"
            ),
            "Run /init as init process"
        );
        assert_eq!(apply(TIMESTAMP, "[ 1234.567890]"), "");
        assert_eq!(
            apply(TIMESTAMP, "gmemtest: [1.5] not a timestamp"),
            "gmemtest: [1.5] not a timestamp"
        );
    }

    #[test]
    fn linux_banner() {
        assert_eq!(
            apply(
                LINUX_BANNER,
                "Linux version 7.3.0-gmem (root@build) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #3 SMP PREEMPT_DYNAMIC Tue Nov 25 13:00:00 UTC 2026"
            ),
            "Linux version 7.3.0-gmem BUILD"
        );
    }

    #[test]
    fn release_commit() {
        assert_eq!(
            apply(
                RELEASE_COMMIT,
                "Not tainted 7.3.0-rc4-00012-gabcdef123456-dirty #1"
            ),
            "Not tainted 7.3.0-rc4-gCOMMIT #1"
        );
        assert_eq!(
            apply(RELEASE_COMMIT, "BIOS 1.16.2-debian-1.16.2-1"),
            "BIOS 1.16.2-debian-1.16.2-1"
        );
    }

    #[test]
    fn build_number() {
        assert_eq!(
            apply(
                BUILD_NUMBER,
                "CPU: 0 UID: 0 PID: 57 Comm: probe Not tainted 7.3.0 #12 PREEMPT(none)"
            ),
            "CPU: 0 UID: 0 PID: 57 Comm: probe Not tainted 7.3.0 #BUILD PREEMPT(none)"
        );
        assert_eq!(
            apply(BUILD_NUMBER, "Oops: Oops: 0000 [#1] SMP"),
            "Oops: Oops: 0000 [#1] SMP"
        );
        assert_eq!(
            apply(
                BUILD_NUMBER,
                "      Not tainted 6.12.48+deb13-amd64 #1 Debian 6.12.48-1"
            ),
            "      Not tainted 6.12.48+deb13-amd64 #BUILD Debian 6.12.48-1"
        );
        assert_eq!(
            apply(BUILD_NUMBER, ".... node  #0, CPUs:      #1"),
            ".... node  #0, CPUs:      #1"
        );
    }

    #[test]
    fn tainted() {
        assert_eq!(
            apply(TAINTED, "Comm: probe Tainted: G      D W          7.3.0 #1"),
            "Comm: probe Tainted: FLAGS          7.3.0 #1"
        );
        assert_eq!(
            apply(TAINTED, "Tainted: [D]=DIE, [W]=WARN"),
            "Tainted: FLAGS"
        );
        assert_eq!(
            apply(TAINTED, "Comm: probe Not tainted 7.3.0 #1"),
            "Comm: probe Not tainted 7.3.0 #1"
        );
    }

    #[test]
    fn symbol_suffix() {
        assert_eq!(
            apply(SYMBOL_SUFFIX, " mem_rw.isra.0+0x6a/0x90"),
            " mem_rw+0x6a/0x90"
        );
        assert_eq!(
            apply(SYMBOL_SUFFIX, " foo.constprop.0.cold+0x5/0x10"),
            " foo+0x5/0x10"
        );
        assert_eq!(
            apply(SYMBOL_SUFFIX, "kernel BUG at virt/kvm/guest_memfd.c:123!"),
            "kernel BUG at virt/kvm/guest_memfd.c:123!"
        );
    }

    #[test]
    fn symbol_offset() {
        assert_eq!(
            apply(SYMBOL_OFFSET, "RIP: 0010:__access_remote_vm+0x1a2/0x3c0"),
            "RIP: 0010:__access_remote_vm"
        );
        assert_eq!(
            apply(SYMBOL_OFFSET, " kvm_gmem_release+0x5e/0x90 [kvm]"),
            " kvm_gmem_release [kvm]"
        );
    }

    #[test]
    fn pid() {
        assert_eq!(
            apply(PID, "CPU: 0 UID: 0 PID: 57 Comm: probe"),
            "CPU: 0 UID: 0 PID: PID Comm: probe"
        );
        assert_eq!(
            apply(
                PID,
                "task:probe state:D stack:0 pid:57    tgid:57    ppid:1      task_flags:0x400100"
            ),
            "task:probe state:D stack:0 pid:PID    tgid:PID    ppid:PID      task_flags:0x400100"
        );
        assert_eq!(apply(PID, "killed pid 123"), "killed pid PID");
    }

    #[test]
    fn comm_pid() {
        assert_eq!(
            apply(
                COMM_PID,
                "INFO: task probe:57 blocked for more than 122 seconds."
            ),
            "INFO: task probe:PID blocked for more than 122 seconds."
        );
        assert_eq!(
            apply(
                COMM_PID,
                "BUG: soft lockup - CPU#1 stuck for 26s! [kworker/1:2:31]"
            ),
            "BUG: soft lockup - CPU#1 stuck for 26s! [kworker/1:2:PID]"
        );
        assert_eq!(
            apply(
                COMM_PID,
                "Read of size 8 at addr ff11000004f2a008 by task gmem-probe/57"
            ),
            "Read of size 8 at addr ff11000004f2a008 by task gmem-probe/PID"
        );
        assert_eq!(
            apply(COMM_PID, "WARNING: virt/kvm/guest_memfd.c:412 at kvm_gmem_free_folio+0x5e/0x80, CPU#0: probe/57"),
            "WARNING: virt/kvm/guest_memfd.c:412 at kvm_gmem_free_folio+0x5e/0x80, CPU#0: probe/PID"
        );
    }

    #[test]
    fn task_pid() {
        assert_eq!(
            apply(TASK_PID, "Freed by task 57 on cpu 1 at 12.3s:"),
            "Freed by task PID on cpu 1 at 12.3s:"
        );
    }

    #[test]
    fn cpu() {
        assert_eq!(
            apply(CPU, "CPU: 1 UID: 0 PID: 57"),
            "CPU: CPU UID: 0 PID: 57"
        );
        assert_eq!(
            apply(CPU, "BUG: soft lockup - CPU#0 stuck for 26s!"),
            "BUG: soft lockup - CPU#CPU stuck for 26s!"
        );
        assert_eq!(
            apply(
                CPU,
                "segfault at 0 ip 0 sp 0 error 4 likely on CPU 3 (core 3, socket 0)"
            ),
            "segfault at 0 ip 0 sp 0 error 4 likely on CPU CPU (core 3, socket 0)"
        );
        assert_eq!(
            apply(CPU, "rcu: INFO: rcu_preempt self-detected stall on CPU"),
            "rcu: INFO: rcu_preempt self-detected stall on CPU"
        );
        assert_eq!(
            apply(CPU, "(t=21002 jiffies g=1113 q=217 ncpus=2)"),
            "(t=21002 jiffies g=1113 q=217 ncpus=2)"
        );
    }

    #[test]
    fn pfn() {
        assert_eq!(
            apply(
                PFN,
                "page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0x12345"
            ),
            "page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:PFN"
        );
        assert_eq!(
            apply(PFN, "BUG: Bad page state in process probe  pfn:12345"),
            "BUG: Bad page state in process probe  pfn:PFN"
        );
        assert_eq!(
            apply(PFN, "failed to restore the direct map of pfn 0x12345 (-12)"),
            "failed to restore the direct map of pfn PFN (-12)"
        );
    }

    #[test]
    fn page_table_entry() {
        assert_eq!(
            apply(
                PAGE_TABLE_ENTRY,
                "PGD 2a01067 P4D 2a02067 PUD 2a03067 PMD 2a04067 PTE 0"
            ),
            "PGD ADDR P4D ADDR PUD ADDR PMD ADDR PTE 0"
        );
    }

    #[test]
    fn hex() {
        assert_eq!(
            apply(
                HEX,
                "BUG: unable to handle page fault for address: ff11000012345000"
            ),
            "BUG: unable to handle page fault for address: ADDR"
        );
        assert_eq!(
            apply(HEX, "general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP"),
            "general protection fault, probably for non-canonical address ADDR: 0000 [#1] SMP"
        );
        assert_eq!(
            apply(HEX, "#PF: error_code(0x0000) - not-present page"),
            "#PF: error_code(0x0000) - not-present page"
        );
        assert_eq!(
            apply(HEX, "traps: PANIC: double fault, error_code: 0x0"),
            "traps: PANIC: double fault, error_code: 0x0"
        );
        assert_eq!(
            apply(HEX, "Kernel Offset: 0x2a000000 from 0xffffffff81000000"),
            "Kernel Offset: ADDR from ADDR"
        );
        assert_eq!(
            apply(HEX, "Oops: Oops: 0000 [#1] SMP"),
            "Oops: Oops: 0000 [#1] SMP"
        );
    }

    #[test]
    fn zero() {
        assert_eq!(
            apply(ZERO, "---[ end trace 0000000000000000 ]---"),
            "---[ end trace 0 ]---"
        );
        assert_eq!(
            apply(ZERO, "mapping:0000000000000000 index:0x0"),
            "mapping:0 index:0x0"
        );
        assert_eq!(
            apply(ZERO, "Kernel Offset: 0x0000000000 from"),
            "Kernel Offset: 0x0 from"
        );
        assert_eq!(
            apply(ZERO, "#PF: error_code(0x0000) - not-present page"),
            "#PF: error_code(0x0000) - not-present page"
        );
        assert_eq!(
            apply(ZERO, "R09: 0000000000000001"),
            "R09: 0000000000000001"
        );
    }

    #[test]
    fn event_time() {
        assert_eq!(
            apply(EVENT_TIME, "Allocated by task 59 on cpu 1 at 4.312345s:"),
            "Allocated by task 59 on cpu 1 at TIME:"
        );
        assert_eq!(
            apply(
                EVENT_TIME,
                "freed by task 71 on cpu 1 at 6.329001s (0.001000s ago):"
            ),
            "freed by task 71 on cpu 1 at TIME (TIME ago):"
        );
    }

    #[test]
    fn lockup_duration() {
        assert_eq!(
            apply(
                LOCKUP_DURATION,
                "BUG: soft lockup - CPU#0 stuck for 23s! [probe:57]"
            ),
            "BUG: soft lockup - CPU#0 stuck for NUMs! [probe:57]"
        );
    }

    #[test]
    fn blanks() {
        assert_eq!(
            apply(BLANKS, "task:probe           state:D\tstack:0"),
            "task:probe state:D stack:0"
        );
    }

    #[test]
    fn whole_lines() {
        let cases = [
            ("[   12.345678] BUG: unable to handle page fault for address: ff11000012345000", "BUG: unable to handle page fault for address: ADDR"),
            ("[   12.346360] CPU: 1 UID: 0 PID: 57 Comm: gmem-probe Tainted: G        W          7.3.0 #1 PREEMPT(none) ", "CPU: CPU UID: 0 PID: PID Comm: gmem-probe Tainted: FLAGS 7.3.0 #BUILD PREEMPT(none)"),
            ("[   12.346600] RIP: 0010:__access_remote_vm+0x1a2/0x3c0", "RIP: 0010:__access_remote_vm"),
            ("[   12.348900]  mem_rw.isra.0+0x106/0x200", " mem_rw"),
            ("[   12.348900]  kvm_gmem_free_folio+0x3c/0x60 [kvm]", " kvm_gmem_free_folio [kvm]"),
            ("[   52.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [gmem-probe:61]", "watchdog: BUG: soft lockup - CPU#CPU stuck for NUMs! [gmem-probe:PID]"),
            ("[  245.100000] task:gmem-probe      state:D stack:0     pid:61    tgid:61    ppid:1      task_flags:0x400100 flags:0x00004002", "task:gmem-probe state:D stack:0 pid:PID tgid:PID ppid:PID task_flags:ADDR flags:ADDR"),
            ("WARNING: CPU: 0 PID: 1 at mm/foo.c:12 func+0x1/0x2", "WARNING: CPU: CPU PID: PID at mm/foo.c:12 func"),
            ("gmemtest: step direct_map started\r", "gmemtest: step direct_map started"),
        ];
        for (before, after) in cases {
            assert_eq!(normalize_line(before), after, "{before:?}");
        }
    }

    #[test]
    fn noise() {
        let noisy = [
            ("[   12.346710] Code: 48 89 df e8 <8b> 03 48 83 c4 08 5b 5d c3", "register_dump"),
            ("RSP: 0018:ffa0000000237d58 EFLAGS: 00010246", "register_dump"),
            ("RAX: 0000000000000000 RBX: ff11000012345000 RCX: 0000000000001000", "register_dump"),
            ("R10: 0000000000000000 R11: 0000000000000000 R12: ff110000023a4000", "register_dump"),
            ("FS:  00000000004d4380(0000) GS:ff110002a8e00000(0000) knlGS:0000000000000000", "register_dump"),
            ("CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033", "register_dump"),
            ("CR2: ff11000012345000 CR3: 0000000002b26000 CR4: 0000000000770ef0", "register_dump"),
            ("CR2: ff11000012345000", "register_dump"),
            ("PKRU: 55555554", "register_dump"),
            ("[    0.000000] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014", "hardware_name"),
            ("irq event stamp: 1234", "irq_events"),
            ("hardirqs last  enabled at (1233): [<ffffffff81a2b3c4>] _raw_spin_unlock_irq+0x1f/0x40", "irq_events"),
            ("[   12.000000] ", "blank"),
        ];
        for (line, kind) in noisy {
            assert_eq!(noise_kind(line), Some(kind), "{line:?}");
        }
        for kept in [
            "RIP: 0010:__access_remote_vm+0x1a2/0x3c0",
            "Call Trace:",
            " </TASK>",
            "#PF: supervisor read access in kernel mode",
            "Modules linked in:",
        ] {
            assert_eq!(noise_kind(kept), None, "{kept:?}");
        }
    }

    #[test]
    fn lines() {
        let log = "[   12.346600] RIP: 0010:__access_remote_vm+0x1a2/0x3c0\n\
                   [   12.346710] Code: 48 89 df e8\n\
                   [   12.346820] RSP: 0018:ffa0000000237d58 EFLAGS: 00010246\n\
                   [   12.347920] Call Trace:\n\
                   [   12.348030]  <TASK>\n\
                   [   12.348900]  mem_rw.isra.0+0x106/0x200\n\
                   [   12.350330]  </TASK>";
        assert_eq!(
            normalize_lines(log.lines()),
            vec![
                "RIP: 0010:__access_remote_vm",
                "Call Trace:",
                " <TASK>",
                " mem_rw",
                " </TASK>"
            ]
        );
    }

    #[test]
    fn split() {
        assert_eq!(
            split_timestamp("[    1.234567] Linux version 7.3.0"),
            (Some("[    1.234567] "), "Linux version 7.3.0")
        );
        assert_eq!(
            split_timestamp("Linux version 7.3.0"),
            (None, "Linux version 7.3.0")
        );
    }
}
