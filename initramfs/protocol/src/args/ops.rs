//! The operations of `stress` and `replay`: one small language, written by
//! the host (a minimized program in a case file) and by the guest (the log
//! of a stress run), parsed by both. One operation per string, e.g.
//!
//! ```text
//! t1 create f0 pages=4 flags=MMAP|INIT_SHARED|NO_DIRECT_MAP
//! t1 mmap f0
//! t1 write f0 p2
//! t0 gup f0 p2 proc_self_mem
//! ```
//!
//! A stress run draws its operations from a seed ([`ThreadOps`]): each
//! thread's sequence is a function of the seed and the thread alone, never
//! of what earlier operations did (an operation on a file that is not there
//! is an observation, `no file`), so the host can regenerate any prefix of a
//! run from its seed and the count the guest reports.

use std::fmt;

use serde_json::Value;

use super::{show, ArgError, ArgValue, GmemFlag, GupPath};

/// Threads of a stress run (and thread numbers of a replay).
pub const MAX_THREADS: usize = 8;
/// guest_memfds a program juggles at once (file slots `f0`..).
pub const FILES: usize = 4;
/// Pages of one of them.
pub const MAX_FILE_PAGES: usize = 64;
/// Memory pressure of one `pressure` operation, in MiB.
pub const MAX_PRESSURE_MIB: usize = 64;
/// The longest operation string.
pub const MAX_OP_BYTES: usize = 128;

/// A page range of a file: `pS` or `pS+N` (N pages from S).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    pub start: usize,
    pub count: usize,
}

/// What one operation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// KVM_CREATE_GUEST_MEMFD into slot `file` (closing what was there),
    /// with any flags, the unsupported ones included.
    Create {
        file: usize,
        pages: usize,
        flags: Vec<GmemFlag>,
    },
    /// Close the slot's fd (its mapping, if any, stays).
    Close { file: usize },
    /// mmap the whole file, MAP_SHARED (replacing the slot's mapping).
    Mmap { file: usize },
    /// munmap the slot's mapping.
    Munmap { file: usize },
    /// fallocate(KEEP_SIZE) of the pages.
    Alloc { file: usize, pages: Pages },
    /// fallocate(PUNCH_HOLE|KEEP_SIZE) of the pages.
    Punch { file: usize, pages: Pages },
    /// Read the page through the mapping (a read fault).
    Read { file: usize, page: usize },
    /// Write the page's pattern through the mapping (a write fault).
    Write { file: usize, page: usize },
    /// Read the page through a GUP path.
    Gup {
        file: usize,
        page: usize,
        path: GupPath,
    },
    /// MADV_HWPOISON of the page (only where the run allows it).
    Hwpoison { file: usize, page: usize },
    /// A vCPU of the world's VM reads the page (bound in a memslot of its
    /// own), adds one, writes it back.
    Vcpu { file: usize, page: usize },
    /// KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) over the pages' guest addresses.
    Private { file: usize, pages: Pages },
    /// KVM_SET_MEMORY_ATTRIBUTES(0): the pages shared again.
    Shared { file: usize, pages: Pages },
    /// The oracle over every mapped page, after a TLB flush.
    Check,
    /// fork; the child reads every mapped page and exits.
    Fork,
    /// Allocate, touch and free this much anonymous memory.
    Pressure { mib: usize },
    /// /proc/sys/vm/compact_memory: migrate what can move.
    Compact,
}

/// One operation of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub thread: usize,
    pub kind: OpKind,
}

impl OpKind {
    /// The verb, as the language writes it.
    pub fn verb(&self) -> &'static str {
        match self {
            OpKind::Create { .. } => "create",
            OpKind::Close { .. } => "close",
            OpKind::Mmap { .. } => "mmap",
            OpKind::Munmap { .. } => "munmap",
            OpKind::Alloc { .. } => "alloc",
            OpKind::Punch { .. } => "punch",
            OpKind::Read { .. } => "read",
            OpKind::Write { .. } => "write",
            OpKind::Gup { .. } => "gup",
            OpKind::Hwpoison { .. } => "hwpoison",
            OpKind::Vcpu { .. } => "vcpu",
            OpKind::Private { .. } => "private",
            OpKind::Shared { .. } => "shared",
            OpKind::Check => "check",
            OpKind::Fork => "fork",
            OpKind::Pressure { .. } => "pressure",
            OpKind::Compact => "compact",
        }
    }

    /// The file slot it works on, if any.
    pub fn file(&self) -> Option<usize> {
        match *self {
            OpKind::Create { file, .. }
            | OpKind::Close { file }
            | OpKind::Mmap { file }
            | OpKind::Munmap { file }
            | OpKind::Alloc { file, .. }
            | OpKind::Punch { file, .. }
            | OpKind::Read { file, .. }
            | OpKind::Write { file, .. }
            | OpKind::Gup { file, .. }
            | OpKind::Hwpoison { file, .. }
            | OpKind::Vcpu { file, .. }
            | OpKind::Private { file, .. }
            | OpKind::Shared { file, .. } => Some(file),
            OpKind::Check | OpKind::Fork | OpKind::Pressure { .. } | OpKind::Compact => None,
        }
    }
}

const VERBS: &str = "create, close, mmap, munmap, alloc, punch, read, write, gup, hwpoison, vcpu, private, shared, check, fork, pressure, compact";

impl fmt::Display for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(f, "p{}", self.start)
        } else {
            write!(f, "p{}+{}", self.start, self.count)
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.verb();
        match self {
            OpKind::Create { file, pages, flags } => {
                write!(f, "{v} f{file} pages={pages}")?;
                if !flags.is_empty() {
                    let names: Vec<String> = flags
                        .iter()
                        .map(|fl| String::from(*fl).replace("bit ", "bit"))
                        .collect();
                    write!(f, " flags={}", names.join("|"))?;
                }
                Ok(())
            }
            OpKind::Close { file } | OpKind::Mmap { file } | OpKind::Munmap { file } => {
                write!(f, "{v} f{file}")
            }
            OpKind::Alloc { file, pages }
            | OpKind::Punch { file, pages }
            | OpKind::Private { file, pages }
            | OpKind::Shared { file, pages } => write!(f, "{v} f{file} {pages}"),
            OpKind::Read { file, page }
            | OpKind::Write { file, page }
            | OpKind::Hwpoison { file, page }
            | OpKind::Vcpu { file, page } => write!(f, "{v} f{file} p{page}"),
            OpKind::Gup { file, page, path } => write!(f, "{v} f{file} p{page} {}", path.name()),
            OpKind::Pressure { mib } => write!(f, "{v} {mib}"),
            OpKind::Check | OpKind::Fork | OpKind::Compact => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{} {}", self.thread, self.kind)
    }
}

/// A number after `prefix` (`f2`, `p10`), within `0..=max`.
fn numbered(word: &str, prefix: &str, what: &str, max: usize) -> Result<usize, String> {
    word.strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && n.len() <= 6)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("expected {what} `{prefix}0` to `{prefix}{max}`, got `{word}`"))
}

fn file_of(word: Option<&str>) -> Result<usize, String> {
    numbered(word.unwrap_or(""), "f", "a file slot", FILES - 1)
}

fn page_of(word: Option<&str>) -> Result<usize, String> {
    numbered(word.unwrap_or(""), "p", "a page", MAX_FILE_PAGES - 1)
}

fn pages_of(word: Option<&str>) -> Result<Pages, String> {
    let word = word.unwrap_or("");
    let (start, count) = match word.split_once('+') {
        Some((s, n)) => (s, Some(n)),
        None => (word, None),
    };
    let start = page_of(Some(start))?;
    let count = match count {
        None => 1,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_FILE_PAGES).contains(n))
            .ok_or_else(|| {
                format!("expected a page count from 1 to {MAX_FILE_PAGES} after `+`, got `{n}`")
            })?,
    };
    Ok(Pages { start, count })
}

fn flag_of(name: &str) -> Result<GmemFlag, String> {
    let spelled = match name.strip_prefix("bit") {
        Some(n) if n.chars().all(|c| c.is_ascii_digit()) => format!("bit {n}"),
        _ => name.to_string(),
    };
    GmemFlag::try_from(spelled).map_err(|_| {
        format!("expected a flag MMAP, INIT_SHARED, NO_DIRECT_MAP or bitN (N < 64), got `{name}`")
    })
}

impl std::str::FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Op, String> {
        if s.len() > MAX_OP_BYTES {
            return Err(format!(
                "expected an operation of at most {MAX_OP_BYTES} bytes, got {}",
                s.len()
            ));
        }
        let mut words = s.split_whitespace().peekable();
        let mut thread = 0;
        if let Some(w) = words.peek() {
            if w.starts_with('t') && w.len() > 1 && w[1..].chars().all(|c| c.is_ascii_digit()) {
                thread = numbered(w, "t", "a thread", MAX_THREADS - 1)?;
                words.next();
            }
        }
        let verb = words
            .next()
            .ok_or_else(|| format!("expected an operation ({VERBS}), got nothing"))?;
        let kind = match verb {
            "create" => {
                let file = file_of(words.next())?;
                let mut pages = None;
                let mut flags = Vec::new();
                for w in words.by_ref() {
                    if let Some(n) = w.strip_prefix("pages=") {
                        pages = Some(
                            n.parse::<usize>()
                                .ok()
                                .filter(|n| (1..=MAX_FILE_PAGES).contains(n))
                                .ok_or_else(|| {
                                    format!("expected pages=1 to pages={MAX_FILE_PAGES}, got `{w}`")
                                })?,
                        );
                    } else if let Some(list) = w.strip_prefix("flags=") {
                        flags = list.split('|').map(flag_of).collect::<Result<_, _>>()?;
                    } else {
                        return Err(format!(
                            "expected pages=N or flags=A|B after create, got `{w}`"
                        ));
                    }
                }
                let pages = pages.ok_or("expected pages=N in create")?;
                OpKind::Create { file, pages, flags }
            }
            "close" => OpKind::Close {
                file: file_of(words.next())?,
            },
            "mmap" => OpKind::Mmap {
                file: file_of(words.next())?,
            },
            "munmap" => OpKind::Munmap {
                file: file_of(words.next())?,
            },
            "alloc" | "punch" | "private" | "shared" => {
                let file = file_of(words.next())?;
                let pages = pages_of(words.next())?;
                match verb {
                    "alloc" => OpKind::Alloc { file, pages },
                    "punch" => OpKind::Punch { file, pages },
                    "private" => OpKind::Private { file, pages },
                    _ => OpKind::Shared { file, pages },
                }
            }
            "read" | "write" | "hwpoison" | "vcpu" => {
                let file = file_of(words.next())?;
                let page = page_of(words.next())?;
                match verb {
                    "read" => OpKind::Read { file, page },
                    "write" => OpKind::Write { file, page },
                    "vcpu" => OpKind::Vcpu { file, page },
                    _ => OpKind::Hwpoison { file, page },
                }
            }
            "gup" => {
                let file = file_of(words.next())?;
                let page = page_of(words.next())?;
                let name = words.next().unwrap_or("");
                let path = GupPath::ALL
                    .iter()
                    .copied()
                    .find(|p| p.name() == name)
                    .ok_or_else(|| {
                        format!("expected a GUP path (proc_self_mem, process_vm_readv, vmsplice), got `{name}`")
                    })?;
                OpKind::Gup { file, page, path }
            }
            "pressure" => {
                let n = words.next().unwrap_or("");
                let mib = n
                    .parse::<usize>()
                    .ok()
                    .filter(|m| (1..=MAX_PRESSURE_MIB).contains(m))
                    .ok_or_else(|| {
                        format!("expected pressure 1 to {MAX_PRESSURE_MIB} (MiB), got `{n}`")
                    })?;
                OpKind::Pressure { mib }
            }
            "check" => OpKind::Check,
            "fork" => OpKind::Fork,
            "compact" => OpKind::Compact,
            other => return Err(format!("expected an operation ({VERBS}), got `{other}`")),
        };
        if let Some(extra) = words.next() {
            return Err(format!("unexpected `{extra}` after `{}`", kind));
        }
        Ok(Op { thread, kind })
    }
}

impl serde::Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl ArgValue for Op {
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
        let s = v.as_str().ok_or_else(|| {
            ArgError::new(at, format!("expected an operation string, got {}", show(v)))
        })?;
        s.parse().map_err(|e: String| ArgError::new(at, e))
    }
    fn type_name() -> String {
        "operation: `[tN] VERB ...` (see \"Stress and fuzz\")".into()
    }
}

/// A seeded generator (SplitMix64): small, fast, and the same on host and
/// guest, so a seed names a program.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What a seeded program may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenOptions {
    /// Pages of a file at most (files are 1 to this many pages).
    pub pages: usize,
    /// MADV_HWPOISON among the operations.
    pub hwpoison: bool,
}

/// The operations of one thread of a seeded run, in order, without end:
/// a function of (seed, thread, options) alone.
#[derive(Debug, Clone)]
pub struct ThreadOps {
    rng: Rng,
    thread: usize,
    opts: GenOptions,
}

impl ThreadOps {
    pub fn new(seed: u64, thread: usize, opts: GenOptions) -> ThreadOps {
        // A stream per thread: the seed mixed with the thread's number.
        let mut mix = Rng::new(seed ^ (thread as u64 + 1).wrapping_mul(0xd6e8_feb8_6659_fd93));
        ThreadOps {
            rng: Rng::new(mix.next_u64()),
            thread,
            opts,
        }
    }

    fn flags(&mut self) -> Vec<GmemFlag> {
        let r = &mut self.rng;
        let mut flags = Vec::new();
        if r.chance(90) {
            flags.push(GmemFlag::MMAP);
        }
        if r.chance(85) {
            flags.push(GmemFlag::INIT_SHARED);
        }
        if r.chance(75) {
            flags.push(GmemFlag::NO_DIRECT_MAP);
        }
        // Now and then a flag no kernel knows: its refusal is an observation.
        if r.chance(4) {
            flags.push(GmemFlag(3 + r.below(61) as u32));
        }
        flags
    }

    fn pages(&mut self) -> Pages {
        let max = self.opts.pages;
        let start = self.rng.below(max);
        let count = if self.rng.chance(60) {
            1
        } else {
            1 + self.rng.below(max - start)
        };
        Pages { start, count }
    }
}

impl Iterator for ThreadOps {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let max = self.opts.pages.clamp(1, MAX_FILE_PAGES);
        self.opts.pages = max;
        let file = self.rng.below(FILES);
        let page = self.rng.below(max);
        // Weights: faults and GUP most, the life cycle often, the rest now
        // and then.
        let table: &[(usize, u8)] = &[
            (8, 0),  // create
            (3, 1),  // close
            (8, 2),  // mmap
            (3, 3),  // munmap
            (5, 4),  // alloc
            (7, 5),  // punch
            (10, 6), // read
            (16, 7), // write
            (12, 8), // gup
            (3, 9),  // check
            (1, 10), // fork
            (1, 11), // pressure
            (1, 12), // compact
            (if self.opts.hwpoison { 1 } else { 0 }, 13),
            (6, 14), // vcpu
            (2, 15), // private
            (2, 16), // shared
        ];
        let total: usize = table.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.below(total);
        let mut which = 0;
        for (w, k) in table {
            if pick < *w {
                which = *k;
                break;
            }
            pick -= w;
        }
        let kind = match which {
            0 => {
                let pages = [1, 2, 4, 8, 16, 32, 64]
                    .into_iter()
                    .filter(|p| *p <= max)
                    .collect::<Vec<_>>();
                let pages = if self.rng.chance(70) {
                    max
                } else {
                    pages[self.rng.below(pages.len())]
                };
                OpKind::Create {
                    file,
                    pages,
                    flags: self.flags(),
                }
            }
            1 => OpKind::Close { file },
            2 => OpKind::Mmap { file },
            3 => OpKind::Munmap { file },
            4 => OpKind::Alloc {
                file,
                pages: self.pages(),
            },
            5 => OpKind::Punch {
                file,
                pages: self.pages(),
            },
            6 => OpKind::Read { file, page },
            7 => OpKind::Write { file, page },
            8 => OpKind::Gup {
                file,
                page,
                path: GupPath::ALL[self.rng.below(GupPath::ALL.len())],
            },
            9 => OpKind::Check,
            10 => OpKind::Fork,
            11 => OpKind::Pressure {
                mib: 1 + self.rng.below(16),
            },
            12 => OpKind::Compact,
            13 => OpKind::Hwpoison { file, page },
            14 => OpKind::Vcpu { file, page },
            15 => OpKind::Private {
                file,
                pages: self.pages(),
            },
            _ => OpKind::Shared {
                file,
                pages: self.pages(),
            },
        };
        Some(Op {
            thread: self.thread,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_op_reads_back_as_itself() {
        let opts = GenOptions {
            pages: 16,
            hwpoison: true,
        };
        for t in 0..MAX_THREADS {
            for op in ThreadOps::new(42, t, opts).take(2000) {
                let text = op.to_string();
                assert_eq!(text.parse::<Op>(), Ok(op.clone()), "{text}");
                assert!(text.len() <= MAX_OP_BYTES);
            }
        }
    }

    #[test]
    fn a_seed_names_a_program() {
        let opts = GenOptions {
            pages: 8,
            hwpoison: false,
        };
        let a: Vec<Op> = ThreadOps::new(7, 1, opts).take(500).collect();
        assert_eq!(a, ThreadOps::new(7, 1, opts).take(500).collect::<Vec<_>>());
        assert_ne!(a, ThreadOps::new(8, 1, opts).take(500).collect::<Vec<_>>());
        assert_ne!(a, ThreadOps::new(7, 2, opts).take(500).collect::<Vec<_>>());
        assert!(a.iter().all(|op| op.thread == 1));
        assert!(!a
            .iter()
            .any(|op| matches!(op.kind, OpKind::Hwpoison { .. })));
        // Every verb but hwpoison is drawn.
        for verb in VERBS.split(", ").filter(|v| *v != "hwpoison") {
            assert!(a.iter().any(|op| op.kind.verb() == verb), "{verb}");
        }
    }

    #[test]
    fn parses_the_language() {
        let op: Op = "t3 create f1 pages=4 flags=MMAP|NO_DIRECT_MAP|bit9"
            .parse()
            .unwrap();
        assert_eq!(op.thread, 3);
        assert_eq!(
            op.kind,
            OpKind::Create {
                file: 1,
                pages: 4,
                flags: vec![GmemFlag::MMAP, GmemFlag::NO_DIRECT_MAP, GmemFlag(9)]
            }
        );
        assert_eq!(
            op.to_string(),
            "t3 create f1 pages=4 flags=MMAP|NO_DIRECT_MAP|bit9"
        );
        let op: Op = "punch f0 p3+5".parse().unwrap();
        assert_eq!(op.to_string(), "t0 punch f0 p3+5");
        assert_eq!("check".parse::<Op>().unwrap().kind, OpKind::Check);
    }

    #[test]
    fn refuses_what_is_not_an_operation() {
        for (text, says) in [
            ("", "got nothing"),
            ("t9 check", "a thread `t0` to `t7`"),
            ("explode f0", "got `explode`"),
            ("write f4 p0", "a file slot `f0` to `f3`"),
            ("write f0 p64", "a page `p0` to `p63`"),
            ("write f0", "a page"),
            ("punch f0 p1+0", "page count from 1"),
            ("create f0", "pages=N"),
            ("create f0 pages=65", "pages=1 to pages=64"),
            ("create f0 pages=1 flags=SECRET", "got `SECRET`"),
            ("create f0 pages=1 flags=bit64", "got `bit64`"),
            ("gup f0 p0 o_direct", "a GUP path"),
            ("pressure 0", "pressure 1 to 64"),
            ("check now", "unexpected `now`"),
            ("write f0 p99999999999999999999", "a page"),
        ] {
            let e = text.parse::<Op>().unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let long = format!("check{}", " ".repeat(200));
        assert!(long
            .parse::<Op>()
            .unwrap_err()
            .contains("at most 128 bytes"));
    }
}
