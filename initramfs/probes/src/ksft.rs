//! What an upstream kselftest printed, parsed into stable facts: its TAP
//! results (`ok N desc`, `not ok N desc`, `# SKIP`, the plan `1..N`,
//! `# Totals:`), why it skipped, and the KVM selftests' assertion failure
//! (`==== Test Assertion Failure ====`, from lib/assert.c), normalized so
//! that nothing that differs between two runs of the same behaviour (pid,
//! tid, errno numbers, addresses) remains. Pure functions, tested with real
//! output.

use std::collections::BTreeMap;

use serde::Serialize;

/// The exit code of a kselftest that skipped (KSFT_SKIP).
pub const KSFT_SKIP: i32 = 4;

/// One TAP result line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TapResult {
    pub number: u32,
    pub ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `SKIP`, `XFAIL`, `XPASS`, `TODO` or `error` (and its reason, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
}

/// A failed TEST_ASSERT, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assertion {
    /// `file.c:LINE`.
    pub location: String,
    /// The asserted expression, as the source has it.
    pub expression: String,
    /// errno when the assertion failed, by name (`EINVAL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// The assertion's message (several lines for a guest assertion).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Everything parsed from one run's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// The TAP plan (`1..N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<u32>,
    /// Why the whole test skipped (`1..0 # SKIP ...`, `..., skipping test`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<TapResult>,
    /// `# Totals: pass:N fail:N ...`, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<BTreeMap<String, u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<Assertion>,
    /// Lines where the test says it skipped a part of itself
    /// (`Skipping tests for ...`): a partial skip, normalized.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_parts: Vec<String>,
}

/// What the exit status means for a kselftest (a failed TEST_ASSERT of the
/// KVM selftests exits 254, lib/assert.c).
pub fn meaning(code: i32) -> &'static str {
    match code {
        0 => "pass",
        KSFT_SKIP => "skip",
        _ => "fail",
    }
}

/// Parses one run's stdout and stderr (the TAP lines go to stdout, the
/// assertion to stderr; both are searched for both).
pub fn parse(stdout: &str, stderr: &str) -> Parsed {
    let mut p = Parsed::default();
    for text in [stdout, stderr] {
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(r) = tap_result(line) {
                p.results.push(r);
            } else if let Some((n, skip)) = tap_plan(line) {
                p.plan = Some(n);
                if skip.is_some() {
                    p.skip_reason = skip;
                }
            } else if let Some(t) = totals(line) {
                p.totals = Some(t);
            } else if let Some(reason) = line.strip_suffix(", skipping test") {
                // print_skip() in the KVM selftests' lib/test_util.c.
                p.skip_reason
                    .get_or_insert_with(|| normalize(reason.trim()));
            } else if is_partial_skip(line) {
                p.skipped_parts.push(normalize(line.trim()));
            }
        }
        if p.assertion.is_none() {
            p.assertion = assertion(text);
        }
    }
    p
}

/// `ok 3 desc`, `not ok 4 desc`, `ok 5 # SKIP desc` (kselftest.h), and
/// `ok 6 desc # SKIP reason` (TAP, kselftest_harness.h).
pub fn tap_result(line: &str) -> Option<TapResult> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
        (false, r)
    } else {
        (true, line.strip_prefix("ok ")?)
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number = rest[..digits].parse().ok()?;
    let rest = rest[digits..].trim();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (description, directive) = if let Some(d) = rest.strip_prefix('#') {
        // kselftest.h: the directive first, then the description.
        let d = d.trim();
        let (kw, desc) = d.split_once(' ').unwrap_or((d, ""));
        (desc.trim().to_string(), Some(kw.to_string()))
    } else if let Some((desc, d)) = rest.split_once(" # ") {
        (desc.trim().to_string(), Some(d.trim().to_string()))
    } else {
        (rest.to_string(), None)
    };
    Some(TapResult {
        number,
        ok,
        description: normalize(&description),
        directive: directive.map(|d| normalize(&d)),
    })
}

/// `1..N`, and `1..0 # SKIP reason` (the whole test skipped).
pub fn tap_plan(line: &str) -> Option<(u32, Option<String>)> {
    let rest = line.strip_prefix("1..")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let n = rest[..digits].parse().ok()?;
    let tail = rest[digits..].trim();
    if tail.is_empty() {
        return Some((n, None));
    }
    let skip = tail.strip_prefix("# SKIP")?.trim();
    let skip = skip.strip_prefix("- ").unwrap_or(skip);
    Some((n, Some(normalize(skip))))
}

/// `# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0`.
pub fn totals(line: &str) -> Option<BTreeMap<String, u32>> {
    let rest = line.strip_prefix("# Totals:")?;
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn is_partial_skip(line: &str) -> bool {
    let l = line.trim_start();
    // KVM selftests say `Skipping tests for ...` / `skipping ...` via
    // pr_info; TAP lines and the skip of the whole test are handled above.
    (l.starts_with("Skipping ") || l.starts_with("skipping ") || l.starts_with("# SKIP"))
        && !l.starts_with("1..")
}

const ASSERT_BANNER: &str = "==== Test Assertion Failure ====";

/// The first `==== Test Assertion Failure ====` block of `text`:
///
/// ```text
///   guest_memfd_test.c:295: !ret
///   pid=123 tid=123 errno=22 - Invalid argument
///      1 0x0000000000402d3f: test_fallocate at guest_memfd_test.c:295   (stack, when addr2line runs)
///   fallocate beginning at total_size should fail
/// ```
pub fn assertion(text: &str) -> Option<Assertion> {
    let mut lines = text.lines().skip_while(|l| l.trim() != ASSERT_BANNER);
    lines.next()?;
    let head = lines.next()?.trim();
    // `file:line: expression` (the file has no ':' of its own).
    let (file, rest) = head.split_once(':')?;
    let (line_no, expression) = rest.split_once(": ").unwrap_or((rest, ""));
    let line_no: u32 = line_no.trim().parse().ok()?;
    let mut errno = None;
    let mut message = Vec::new();
    for l in lines {
        let t = l.trim();
        if errno.is_none() && t.starts_with("pid=") {
            errno = Some(errno_of(t));
            continue;
        }
        if t.is_empty() && !message.is_empty() {
            break;
        }
        if t.is_empty() || is_stack_line(l) {
            continue;
        }
        // What follows the message is the next TAP line or another banner.
        if t == ASSERT_BANNER || tap_result(t).is_some() || tap_plan(t).is_some() {
            break;
        }
        message.push(normalize(t));
    }
    Some(Assertion {
        location: format!("{}:{line_no}", file.trim()),
        expression: normalize(expression.trim()),
        errno: errno.flatten(),
        message: message.join("\n"),
    })
}

/// The errno of `pid=1 tid=1 errno=22 - Invalid argument`, by name.
fn errno_of(line: &str) -> Option<String> {
    let n = line.split_once("errno=")?.1;
    let digits = n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len());
    let n: i32 = n[..digits].parse().ok()?;
    Some(if n == 0 {
        "0".to_string()
    } else {
        crate::errno::name(n)
    })
}

/// A line of test_dump_stack(): `addr2line ... | cat -n`, so a number and
/// a tab; or its `(stack trace empty)`.
fn is_stack_line(l: &str) -> bool {
    let t = l.trim_start();
    if t == "(stack trace empty)" {
        return true;
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    digits > 0 && t[digits..].starts_with('\t')
}

/// Removes what differs between runs: `pid=N`/`tid=N`, and addresses (hex
/// numbers of 10 digits or more; short values such as flags stay); errno
/// numbers become names (`errno: 38` -> `errno: ENOSYS`).
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && b[i] == b'0' && b.get(i + 1).is_some_and(|c| *c == b'x' || *c == b'X') {
            let hex_len = b[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if hex_len >= 10 {
                out.push_str("ADDR");
                i += 2 + hex_len;
                continue;
            }
        }
        // `errno: 38` / `errno=38` in a message: the name, not the number.
        if word_start {
            if let Some(key) = ["errno: ", "errno="]
                .into_iter()
                .find(|k| s[i..].starts_with(k))
            {
                let n = b[i + key.len()..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if let Ok(num) = s[i + key.len()..i + key.len() + n].parse::<i32>() {
                    out.push_str(key);
                    out.push_str(&crate::errno::name(num));
                    i += key.len() + n;
                    continue;
                }
            }
        }
        if word_start {
            let mut replaced = false;
            for key in ["pid=", "tid="] {
                if s[i..].starts_with(key) {
                    let n = b[i + 4..].iter().take_while(|c| c.is_ascii_digit()).count();
                    if n > 0 {
                        out.push_str(key);
                        out.push_str(if key == "pid=" { "PID" } else { "TID" });
                        i += 4 + n;
                        replaced = true;
                        break;
                    }
                }
            }
            if replaced {
                continue;
            }
        }
        let ch = s[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_lines_of_kselftest_and_the_harness() {
        assert_eq!(
            tap_result("ok 1 guest_memfd: flags"),
            Some(TapResult {
                number: 1,
                ok: true,
                description: "guest_memfd: flags".into(),
                directive: None
            })
        );
        assert_eq!(
            tap_result("not ok 12 - mmap"),
            Some(TapResult {
                number: 12,
                ok: false,
                description: "mmap".into(),
                directive: None
            })
        );
        assert_eq!(
            tap_result("ok 3 # SKIP no NUMA"),
            Some(TapResult {
                number: 3,
                ok: true,
                description: "no NUMA".into(),
                directive: Some("SKIP".into())
            })
        );
        assert_eq!(
            tap_result("not ok 4 # error oops"),
            Some(TapResult {
                number: 4,
                ok: false,
                description: "oops".into(),
                directive: Some("error".into())
            })
        );
        assert_eq!(
            tap_result("ok 5 global.test_x # SKIP needs root"),
            Some(TapResult {
                number: 5,
                ok: true,
                description: "global.test_x".into(),
                directive: Some("SKIP needs root".into())
            })
        );
        assert_eq!(tap_result("okay"), None);
        assert_eq!(tap_result("ok x"), None);
    }

    #[test]
    fn plans_and_totals() {
        assert_eq!(tap_plan("1..7"), Some((7, None)));
        assert_eq!(
            tap_plan("1..0 # SKIP - Requirement not met: kvm_has_cap(KVM_CAP_GUEST_MEMFD)"),
            Some((
                0,
                Some("Requirement not met: kvm_has_cap(KVM_CAP_GUEST_MEMFD)".into())
            ))
        );
        assert_eq!(tap_plan("1..2 trailing"), None);
        let t = totals("# Totals: pass:3 fail:1 xfail:0 xpass:0 skip:2 error:0").unwrap();
        assert_eq!(t["pass"], 3);
        assert_eq!(t["fail"], 1);
        assert_eq!(t["skip"], 2);
        assert_eq!(t.len(), 6);
        assert_eq!(totals("# Totals: pass:x"), None);
    }

    #[test]
    fn normalize_drops_ids_and_addresses_keeps_small_values() {
        assert_eq!(
            normalize("pid=1234 tid=1235 at 0x7f12345678ab flags 0x7 gpa 0x100000"),
            "pid=PID tid=TID at ADDR flags 0x7 gpa 0x100000"
        );
        assert_eq!(normalize("mypid=3"), "mypid=3");
        assert_eq!(
            normalize("madvise failed, rc: -1 errno: 38 (Function not implemented)"),
            "madvise failed, rc: -1 errno: ENOSYS (Function not implemented)"
        );
    }

    #[test]
    fn exit_meanings() {
        assert_eq!(meaning(0), "pass");
        assert_eq!(meaning(4), "skip");
        assert_eq!(meaning(254), "fail");
        assert_eq!(meaning(1), "fail");
    }

    /// guest_memfd_test on stock-7.3 (madvise is ENOSYS without
    /// CONFIG_ADVISE_SYSCALLS), as the guest printed it.
    #[test]
    fn real_guest_memfd_test_without_madvise() {
        let p = parse(
            include_str!("../testdata/guest_memfd_test.madvise_enosys.stdout"),
            include_str!("../testdata/guest_memfd_test.madvise_enosys.stderr"),
        );
        assert_eq!(
            p.assertion,
            Some(Assertion {
                location: "include/kvm_syscalls.h:97".into(),
                expression: "!r".into(),
                errno: Some("ENOSYS".into()),
                message: "madvise failed, rc: -1 errno: ENOSYS (Function not implemented)".into(),
            })
        );
        assert_eq!(p.plan, None);
        assert!(p.results.is_empty() && p.skipped_parts.is_empty());
    }

    #[test]
    fn an_assertion_with_a_stack_and_a_message() {
        let err = "Random seed: 0x6b8b4567\n\n==== Test Assertion Failure ====\n  guest_memfd_test.c:295: ret\n  pid=87 tid=87 errno=22 - Invalid argument\n     1\t0x0000000000402d3f: test_fallocate at guest_memfd_test.c:295\n     2\t0x00000000004030a1: main at guest_memfd_test.c:500\n  fallocate beginning at total_size should fail\n";
        assert_eq!(
            assertion(err),
            Some(Assertion {
                location: "guest_memfd_test.c:295".into(),
                expression: "ret".into(),
                errno: Some("EINVAL".into()),
                message: "fallocate beginning at total_size should fail".into(),
            })
        );
        assert_eq!(assertion("no banner here\n"), None);
    }
}
