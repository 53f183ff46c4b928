//! Property tests of everything that reads what a guest wrote: the console
//! parser (`report::find_crashes`), normalization, call-trace frames, the
//! case markers, the batch splitter and the result-stream records.
//!
//! A guest that crashes writes whatever it writes: a log cut in the middle
//! of a line, a user program's output interleaved with the kernel's, bytes
//! that are not UTF-8, CR LF line ends. The inputs here are arbitrary bytes,
//! lines built from the grammar of kernel reports, and the real logs of
//! `tests/data/console` cut anywhere or with junk spliced in. Nothing may
//! panic, and each reader keeps its invariants.
//!
//! proptest keeps the seeds of failing inputs in
//! `console_props.proptest-regressions` beside this file and runs them
//! first from then on. `PROPTEST_CASES=5000` hunts harder.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use gmem_protocol::{case_marker, case_of_marker, Record, StepExit};
use proptest::prelude::*;
use runner::batch;
use runner::boot::{BootEnd, BootResult};
use runner::decode::{frames_of, Frame};
use runner::normalize::{normalize_line, normalize_lines, split_timestamp};
use runner::report::{find_crashes, Crash, MAX_TRACE};

/// The real logs of the report corpus: (file name, text).
static CORPUS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/console");
    // The corpus and its subdirectories (the LKDTM logs).
    let mut dirs = vec![dir.clone()];
    let mut files = Vec::new();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let mut logs: Vec<(String, String)> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
            (name, text)
        })
        .collect();
    logs.sort();
    assert!(logs.len() >= 10, "the report corpus is missing");
    logs
});

/// Every line of every real log: the words of the grammar below.
static CORPUS_LINES: LazyLock<Vec<String>> = LazyLock::new(|| {
    CORPUS
        .iter()
        .flat_map(|(_, t)| t.lines().map(str::to_string))
        .collect()
});

/// The lines that open, carry and close kernel reports.
const REPORT_WORDS: &[&str] = &[
    "BUG: unable to handle page fault for address: ff11000012345000",
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "BUG: KASAN: slab-use-after-free in kvm_gmem_release+0x2f/0x130",
    "BUG: KFENCE: use-after-free read in kvm_gmem_get_pfn+0x6d/0x120",
    "BUG: soft lockup - CPU#0 stuck for 22s! [gmem-probe:70]",
    "INFO: task gmem-probe:67 blocked for more than 122 seconds.",
    "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP",
    "Oops: invalid opcode: 0000 [#1] SMP",
    "Oops: double fault: 0000 [#1] SMP",
    "kernel BUG at virt/kvm/guest_memfd.c:501!",
    "------------[ cut here ]------------",
    "WARNING: CPU: 1 PID: 60 at virt/kvm/guest_memfd.c:300 kvm_gmem_free_folio+0x20/0x40",
    "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
    "Kernel panic - not syncing: Fatal exception",
    "---[ end trace 0000000000000000 ]---",
    "---[ end Kernel panic - not syncing: Fatal exception ]---",
    "==================================================================",
    "Linux version 7.3.4 (root@vm) #1 SMP PREEMPT",
    "RIP: 0010:kvm_gmem_fault_user_mapping+0x5e/0x1b0",
    "RIP: 0010:0x0",
    "Call Trace:",
    " <TASK>",
    " </TASK>",
    " <IRQ>",
    " </IRQ>",
    " ? __die+0x23/0x70",
    " kvm_gmem_release+0x6c/0x130 [kvm]",
    " __access_remote_vm+0x1a2/0x3c0",
    " asm_exc_page_fault+0x26/0x30",
    "RAX: 0000000000000000 RBX: ff11000003a4b000 RCX: 0000000000000000",
    "Code: 48 89 e5 <0f> 0b",
    "CPU: 1 UID: 0 PID: 58 Comm: gmem-probe Not tainted 7.3.4 #1",
    "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)",
    "BUG: TASK stack guard page was hit at ffffc90000a47ff8 (stack is ffffc90000a48000..ffffc90000a4c000)",
    "list_add corruption. next->prev should be prev (ff11000012345000), but was ff11000012346000. (next=ff11000012347000).",
    "list_del corruption, ff11000012345000->next is LIST_POISON1 (dead000000000100)",
    "refcount_t: saturated; leaking memory.",
    "refcount_t: underflow; use-after-free.",
    "strscpy: detected buffer overflow: 16 byte read of buffer size 15",
    "memcpy: detected field-spanning write (size 16) of single field \"&t.a\" at x.c:1 (size 8)",
    "BUG kmalloc-1k (Not tainted): Object corrupt",
    "BUG kmalloc-64 (Tainted: G    B             ): Poison overwritten",
    "Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: lkdtm_CORRUPT_STACK+0x45/0x50",
    "Kernel panic - not syncing: corrupted stack end detected inside scheduler",
    "BUG: spinlock recursion on CPU#0, sh/92",
    "WARNING: possible recursive locking detected",
    "rcu: INFO: rcu_preempt self-detected stall on CPU",
    "task:rcu_preempt     state:I stack:0     pid:16    tgid:16    ppid:2      flags:0x00004000",
    "NMI backtrace for cpu 1",
    " ? lkdtm_EXEC_STACK+0x2e/0x50",
    " __list_add_valid_or_report+0x9a/0xd0",
    " rcu_gp_fqs_loop+0x114/0x580",
    " lkdtm_do_action+0x16/0x30",
    "RIP: 0010:refcount_warn_saturate+0x97/0x150",
    "gmemtest: step proc_mem_read: started",
    "gmemtest: begin case gmem_create",
    "",
];

/// A printk timestamp, or none.
fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0u32..100_000, 0u32..1_000_000).prop_map(|(s, us)| format!("[{s:5}.{us:06}] ")),
    ]
}

/// One console line: a report word or a real line, with or without a
/// timestamp, sometimes with junk before or after (another writer on the
/// same UART), sometimes plain junk.
fn console_line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(REPORT_WORDS).prop_map(str::to_string),
        prop::sample::select(CORPUS_LINES.clone()).prop_map(|l| split_timestamp(&l).1.to_string()),
    ];
    prop_oneof![
        6 => (timestamp(), word.clone()).prop_map(|(t, w)| t + &w),
        1 => (".{0,20}", timestamp(), word.clone()).prop_map(|(j, t, w)| j + &t + &w),
        1 => (timestamp(), word, ".{0,20}").prop_map(|(t, w, j)| t + &w + &j),
        1 => ".{0,80}",
    ]
}

/// A console log of such lines, with LF or CR LF ends.
fn console_log() -> impl Strategy<Value = String> {
    (prop::collection::vec(console_line(), 0..120), any::<bool>()).prop_map(|(lines, crlf)| {
        let end = if crlf { "\r\n" } else { "\n" };
        lines.iter().map(|l| format!("{l}{end}")).collect()
    })
}

/// One of the real logs.
fn real_log() -> impl Strategy<Value = &'static str> {
    prop::sample::select((0..CORPUS.len()).collect::<Vec<_>>()).prop_map(|i| CORPUS[i].1.as_str())
}

/// What every crash list must satisfy, whatever the console.
fn check_crashes(console: &str, crashes: &[Crash]) -> Result<(), TestCaseError> {
    let lines = console.lines().count();
    let mut prev: Option<usize> = None;
    for c in crashes {
        prop_assert!(c.line_no < lines, "line {} of {lines}", c.line_no);
        if let Some(p) = prev {
            prop_assert!(
                c.line_no > p,
                "reports out of order: {p} then {}",
                c.line_no
            );
        }
        prev = Some(c.line_no);
        prop_assert!(!c.title.trim().is_empty(), "empty title: {c:?}");
        prop_assert!(
            !c.title.contains(char::is_control),
            "control characters in the title: {c:?}"
        );
        prop_assert!(c.trace.len() <= MAX_TRACE);
        for f in &c.trace {
            prop_assert!(
                !f.is_empty() && !f.contains("+0x") && !f.contains(char::is_whitespace),
                "frame {f:?} is not a bare function name"
            );
        }
        prop_assert!(!c.lines.is_empty());
        for l in &c.lines {
            prop_assert!(
                console.contains(l.as_str()),
                "report line {l:?} not in the console"
            );
        }
    }
    Ok(())
}

/// Kind, title and trace: what a snapshot keeps of a crash.
fn essence(crashes: &[Crash]) -> Vec<(String, String, Vec<String>)> {
    crashes
        .iter()
        .map(|c| (format!("{:?}", c.kind), c.title.clone(), c.trace.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_break_the_console_parser(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let console = String::from_utf8_lossy(&bytes);
        check_crashes(&console, &find_crashes(&console))?;
        let _ = normalize_lines(console.lines());
    }

    #[test]
    fn logs_made_of_report_lines_keep_the_invariants(console in console_log()) {
        check_crashes(&console, &find_crashes(&console))?;
    }

    /// The serial console ends its lines with CR LF, a saved log with LF.
    #[test]
    fn line_ends_do_not_change_the_crashes(console in console_log()) {
        let lf = console.replace("\r\n", "\n");
        let crlf = lf.replace('\n', "\r\n");
        prop_assert_eq!(essence(&find_crashes(&lf)), essence(&find_crashes(&crlf)));
    }

    /// A guest killed at its deadline leaves a log cut anywhere, even in
    /// the middle of a character's bytes.
    #[test]
    fn a_real_log_cut_at_any_byte_keeps_the_invariants(log in real_log(), at in any::<prop::sample::Index>()) {
        let bytes = &log.as_bytes()[..at.index(log.len() + 1)];
        let console = String::from_utf8_lossy(bytes);
        check_crashes(&console, &find_crashes(&console))?;
    }

    /// Cut after whole lines, the log gives the same reports as the whole
    /// log up to the cut: every report but the last one found in the cut
    /// log (which may itself have been cut) is exactly the whole log's.
    /// The cut comes after the first timestamped line: before it the
    /// parser cannot know the console is timestamped, so lines without a
    /// timestamp are not yet known to be a user program's.
    #[test]
    fn a_real_log_cut_after_a_line_agrees_with_the_whole(log in real_log(), at in any::<prop::sample::Index>()) {
        let lines: Vec<&str> = log.lines().collect();
        let first_ts = lines.iter().position(|l| split_timestamp(l).0.is_some()).unwrap_or(0);
        let cut = first_ts + 1 + at.index(lines.len() - first_ts);
        let prefix: String = lines[..cut].iter().map(|l| format!("{l}\n")).collect();
        let whole = essence(&find_crashes(log));
        let part = essence(&find_crashes(&prefix));
        prop_assert!(part.len() <= whole.len(), "the cut log has more reports: {part:#?}");
        let settled = part.len().saturating_sub(1);
        prop_assert_eq!(&part[..settled], &whole[..settled]);
        if let Some(last) = part.last() {
            // The last one is the same report, perhaps with a shorter trace.
            prop_assert!(
                last.0 == whole[settled].0 || last.0 == "Corrupted",
                "report {settled} is {last:?} cut, {:?} whole", whole[settled]
            );
        }
    }

    /// Junk spliced into a real log (a user program writing to the same
    /// UART, a line of noise): no panic, invariants kept.
    #[test]
    fn junk_spliced_into_a_real_log_keeps_the_invariants(
        log in real_log(),
        splices in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..40)), 1..6),
    ) {
        let mut bytes = log.as_bytes().to_vec();
        for (at, junk) in splices {
            let i = at.index(bytes.len() + 1);
            bytes.splice(i..i, junk);
        }
        let console = String::from_utf8_lossy(&bytes);
        check_crashes(&console, &find_crashes(&console))?;
    }

    /// Two runs of the same behaviour differ in timestamps and addresses;
    /// after normalization their logs are the same.
    #[test]
    fn runs_that_differ_in_timestamps_and_addresses_normalize_alike(
        log in real_log(),
        seed in any::<u64>(),
    ) {
        let other = retime_and_relocate(log, seed);
        prop_assert_eq!(normalize_lines(log.lines()), normalize_lines(other.lines()));
    }

    /// Another boot of the same crash prints other timestamps, addresses,
    /// pids, CPU numbers, durations and sizes: its reports have the same
    /// kinds, titles, culprits and traces.
    #[test]
    fn titles_do_not_change_between_runs(log in real_log(), seed in any::<u64>()) {
        let other = renumber(&retime_and_relocate(log, seed), seed);
        prop_assert_eq!(essence(&find_crashes(log)), essence(&find_crashes(&other)));
        let culprits = |c: Vec<Crash>| c.into_iter().map(|c| c.culprit).collect::<Vec<_>>();
        prop_assert_eq!(culprits(find_crashes(log)), culprits(find_crashes(&other)));
    }

    #[test]
    fn a_normalized_line_has_no_timestamp_and_no_line_end(ts in timestamp(), line in console_line(), end in prop_oneof![Just(""), Just("\n"), Just("\r\n"), Just("  \r\n")]) {
        let line = ts + split_timestamp(&line).1;
        let n = normalize_line(&format!("{line}{end}"));
        prop_assert_eq!(&n, &normalize_line(&line));
        prop_assert!(!n.ends_with(char::is_whitespace), "{n:?}");
        prop_assert!(!n.contains('\n'));
    }

    #[test]
    fn arbitrary_text_never_breaks_normalization(line in ".{0,200}") {
        let n = normalize_line(&line);
        prop_assert!(!n.ends_with(char::is_whitespace), "{n:?}");
    }

    /// A frame printed the kernel's way is read back exactly.
    #[test]
    fn frames_are_read_back_exactly(
        func in "[A-Za-z_][A-Za-z0-9_]{0,30}(\\.(isra|constprop|cold)\\.[0-9])?",
        offset in any::<u32>(),
        size in any::<u32>(),
        ts in timestamp(),
        rip in any::<bool>(),
        module in prop_oneof![Just(""), Just(" [kvm]")],
    ) {
        let at = if rip { "RIP: 0010:" } else { " " };
        let line = format!("{ts}{at}{func}+{offset:#x}/{size:#x}{module}");
        let want = Frame { func: func.clone(), offset: offset.into(), size: size.into() };
        prop_assert_eq!(frames_of(&[line]), vec![want.clone()]);
        // And a frame's text is how the kernel prints it.
        prop_assert_eq!(want.text(), format!("{func}+{offset:#x}/{size:#x}"));
    }

    #[test]
    fn arbitrary_lines_never_break_the_frame_reader(lines in prop::collection::vec(prop_oneof![console_line(), " [a-z_]{1,10}\\+0x[0-9a-f]{0,30}/0x[0-9a-f]{0,30}"], 0..40)) {
        for f in frames_of(&lines) {
            prop_assert!(!f.func.is_empty());
        }
    }

    /// A case's marker is found after a timestamp and after another
    /// writer's text, and nothing else is taken for one.
    #[test]
    fn case_markers_are_found_exactly(
        name in "[A-Za-z0-9_.-]{1,40}",
        ts in timestamp(),
        junk in "[^\\]]{0,30}",
        other in ".{0,80}",
    ) {
        let marker = case_marker(&name);
        let found = |line: String| case_of_marker(&line).map(str::to_string);
        prop_assert_eq!(found(format!("{ts}{marker}")), Some(name.clone()));
        prop_assert_eq!(found(format!("{ts}{marker}\r")), Some(name.clone()));
        if !ts.is_empty() {
            prop_assert_eq!(found(format!("{junk}{ts}{marker}")), Some(name.clone()));
        }
        if !other.contains("gmemtest: begin case ") {
            prop_assert_eq!(case_of_marker(&other), None);
        }
    }

    /// Every record goes through the result port as one line and comes
    /// back the same, whatever its strings hold.
    #[test]
    fn records_survive_the_result_port(r in record()) {
        let line = r.to_line();
        prop_assert!(!line.contains(['\n', '\r']), "{line:?}");
        prop_assert_eq!(Record::from_line(&line).unwrap(), r);
    }

    #[test]
    fn arbitrary_result_lines_never_break_the_record_reader(line in prop_oneof![".{0,200}", "\\{\"record\":\"[a-z_]{0,12}\".{0,60}\\}"]) {
        let _ = Record::from_line(&line);
    }

    /// A batch boot cut into cases, whatever order its records came in and
    /// wherever it stopped: no panic, and each case's section is whole.
    #[test]
    fn any_batch_boot_splits_into_consistent_sections(b in batch_boot()) {
        let (boot, names) = b;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let sections = batch::split(&boot, &names);
        prop_assert_eq!(sections.len(), names.len());
        for (name, s) in names.iter().zip(&sections) {
            let started = boot.records.iter().any(|r| matches!(r, Record::CaseStart { case } if case == name));
            prop_assert_eq!(s.is_some(), started, "case {}", name);
            let Some(s) = s else { continue };
            prop_assert_eq!(s.boot.records.len(), s.boot.record_times.len());
            prop_assert_eq!(s.boot.bad_lines.len(), s.boot.bad_line_positions.len());
            prop_assert!(s.own_from <= s.boot.console.lines().count());
            let starts = s.boot.records.iter().filter(|r| matches!(r, Record::CaseStart { .. })).count();
            prop_assert_eq!(starts, 1, "case {} sees {} case starts", name, starts);
            let other_marker = s.boot.console.lines().filter_map(case_of_marker).find(|m| m != name && names.contains(m));
            prop_assert!(other_marker.is_none(), "case {name} has {other_marker:?}'s console");
        }
    }
}

/// `log` as another run would print it: other timestamps, and every
/// kernel address another one in the same region.
fn retime_and_relocate(log: &str, seed: u64) -> String {
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift: deterministic for a seed, so a failure can be replayed.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ts = regex::Regex::new(r"^\[\s*\d+\.\d+\]").unwrap();
    // Kernel addresses (ff11... direct map, ffa0... stacks, ffff... text);
    // not the zeros and small numbers a register dump or trace id holds.
    let hex = regex::Regex::new(r"\bff[0-9a-f]{14}\b").unwrap();
    let mut times = std::collections::HashMap::new();
    let mut addresses = std::collections::HashMap::new();
    log.lines()
        .map(|l| {
            // One record printed twice (printk replaying a line cut short)
            // keeps its one time.
            let l = ts.replace(l, |c: &regex::Captures| {
                let n = times.len();
                times
                    .entry(c[0].to_string())
                    .or_insert_with(|| format!("[{:5}.{:06}]", n % 1000, next() % 1_000_000))
                    .clone()
            });
            let l = hex.replace_all(&l, |c: &regex::Captures| {
                // Addresses keep their region (the high bits): the low ones
                // move, the same address to the same place.
                let moved = format!("{}{:012x}", &c[0][..4], next() & 0xffff_ffff_ffff);
                addresses.entry(c[0].to_string()).or_insert(moved).clone()
            });
            format!("{l}\n")
        })
        .collect()
}

/// `log` with the numbers a run chooses (pids, CPUs, seconds stuck,
/// sizes, jiffies) changed.
fn renumber(log: &str, seed: u64) -> String {
    let n = regex::Regex::new(
        r"(PID: |pid[=:]|tgid:|ppid:|CPU#|CPU: |cpu |stuck for |more than |size |t=|ticks this GP\) |sh/|sh:|probe/|probe:)(\d{1,5})\b",
    )
    .unwrap();
    let mut k = seed;
    n.replace_all(log, |c: &regex::Captures| {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        format!("{}{}", &c[1], (k >> 33) % 500)
    })
    .into_owned()
}

fn record() -> impl Strategy<Value = Record> {
    let exit = prop_oneof![
        any::<i32>().prop_map(|code| StepExit::Exited { code }),
        ".*".prop_map(|signal| StepExit::Signaled { signal }),
        Just(StepExit::TimedOut),
        ".*".prop_map(|error| StepExit::SpawnFailed { error }),
    ];
    let observation = prop::option::of(
        prop::collection::btree_map(
            ".{0,10}",
            prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                ".*".prop_map(serde_json::Value::from)
            ],
            0..4,
        )
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
    );
    prop_oneof![
        (any::<u32>(), ".*", any::<u32>()).prop_map(|(protocol, kernel_release, cpus)| {
            Record::Hello {
                protocol,
                kernel_release,
                cpus,
            }
        }),
        ".*".prop_map(|case| Record::CaseStart { case }),
        (".*", ".*").prop_map(|(step, probe)| Record::StepStart { step, probe }),
        (
            ".*",
            exit,
            observation,
            prop::option::of(".*"),
            any::<u64>()
        )
            .prop_map(|(step, exit, observation, bad_output, duration_ms)| {
                Record::StepEnd {
                    step,
                    exit,
                    observation,
                    bad_output,
                    duration_ms,
                }
            }),
        ".*".prop_map(|message| Record::InitError { message }),
        ".*".prop_map(|case| Record::CaseEnd { case }),
        Just(Record::Done),
    ]
}

/// A batch boot of one to three cases: their records in any order (a
/// well-behaved guest sends them in plan order, a crashing one stops
/// anywhere), the console with each case's marker at most once, in plan
/// order, anywhere among other lines, and bad lines anywhere.
fn batch_boot() -> impl Strategy<Value = (BootResult, Vec<String>)> {
    const NAMES: &[&str] = &["alpha", "beta", "gamma"];
    (1..=NAMES.len())
        .prop_flat_map(|n| {
            let names = &NAMES[..n];
            let rec = prop_oneof![
                prop::sample::select(names).prop_map(|c| Record::CaseStart { case: c.into() }),
                prop::sample::select(names).prop_map(|c| Record::CaseEnd { case: c.into() }),
                Just(Record::StepStart {
                    step: "s".into(),
                    probe: "create".into()
                }),
                Just(Record::Done),
            ];
            (
                Just(n),
                prop::collection::vec(rec, 0..16),
                prop::collection::vec(console_line(), 0..30),
                prop::collection::vec(prop::option::of(any::<prop::sample::Index>()), n),
                prop::collection::vec((".{0,10}", any::<prop::sample::Index>()), 0..4),
            )
        })
        .prop_map(|(n, records, mut console, markers, bad)| {
            // Markers go in plan order: each one after the one before.
            let mut from = 0;
            for (name, at) in NAMES[..n].iter().zip(markers) {
                if let Some(at) = at {
                    let i = from + at.index(console.len() - from + 1);
                    console.insert(i, format!("[    1.000000] {}", case_marker(name)));
                    from = i + 1;
                }
            }
            let record_times = (0..records.len() as u64)
                .map(|i| Duration::from_millis(i * 10))
                .collect();
            let mut bad: Vec<(String, usize)> = bad
                .into_iter()
                .map(|(l, at)| (l, at.index(records.len() + 1)))
                .collect();
            bad.sort_by_key(|b| b.1);
            let boot = BootResult {
                console: console.iter().map(|l| format!("{l}\n")).collect(),
                elapsed: Duration::from_millis(records.len() as u64 * 10 + 5),
                records,
                record_times,
                bad_lines: bad.iter().map(|b| b.0.clone()).collect(),
                bad_line_positions: bad.iter().map(|b| b.1).collect(),
                runner_notes: vec![],
                end: BootEnd::Exited { code: Some(0) },
                qemu_stderr: String::new(),
            };
            (boot, NAMES[..n].iter().map(|s| s.to_string()).collect())
        })
}
