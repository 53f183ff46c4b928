//! The golden corpus of `report`: `tests/data/console/NAME.log` is a raw
//! console log, `NAME.expected.yaml` the crashes `report::find_crashes` must
//! find in it (kind, title, trace), in order. Every log needs its expected
//! file and every expected file its log.
//!
//! To write the expected files from what the code finds now (for a new log,
//! or after a deliberate change), run with `REPORT_CORPUS_BLESS=1` and review
//! the diff as you would review code.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use runner::report::{find_crashes, CrashKind};
use serde::{Deserialize, Serialize};

/// What a corpus file says about one crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    kind: CrashKind,
    title: String,
    /// The function the title names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    culprit: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trace: Vec<String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/console")
}

/// The corpus's files, relative to `dir`, sorted: its own and those of its
/// subdirectories (`lkdtm/`: the real logs LKDTM made), whose README.md
/// files say where the logs come from.
fn corpus_files(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().expect("file type").is_dir() {
            for n in corpus_files(&e.path()) {
                names.push(format!("{name}/{n}"));
            }
        } else if name != "README.md" {
            names.push(name);
        }
    }
    names.sort();
    names
}

fn to_yaml(crashes: &[Expected]) -> String {
    serde_yaml::to_string(crashes).expect("serializable")
}

/// A line diff of two small texts (longest common subsequence).
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

#[test]
fn report_corpus() {
    let dir = corpus_dir();
    let bless = std::env::var_os("REPORT_CORPUS_BLESS").is_some_and(|v| v != "0");
    let names = corpus_files(&dir);

    let mut failures = Vec::new();
    let mut checked = 0;
    for name in &names {
        if let Some(stem) = name.strip_suffix(".expected.yaml") {
            if !names.contains(&format!("{stem}.log")) {
                failures.push(format!("{name}: no {stem}.log next to it"));
            }
            continue;
        }
        let Some(stem) = name.strip_suffix(".log") else {
            failures.push(format!("{name}: not a .log or .expected.yaml file"));
            continue;
        };
        checked += 1;
        let log = fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual: Vec<Expected> = find_crashes(&log)
            .into_iter()
            .map(|c| Expected {
                kind: c.kind,
                title: c.title,
                culprit: c.culprit,
                trace: c.trace,
            })
            .collect();
        let expected_path = dir.join(format!("{stem}.expected.yaml"));
        if bless {
            fs::write(&expected_path, to_yaml(&actual))
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            continue;
        }
        let text = match fs::read_to_string(&expected_path) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!(
                    "{name}: cannot read {stem}.expected.yaml ({e}); what was found:\n{}",
                    to_yaml(&actual)
                ));
                continue;
            }
        };
        let expected: Vec<Expected> = match serde_yaml::from_str(&text) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{stem}.expected.yaml: {e}"));
                continue;
            }
        };
        if expected != actual {
            failures.push(format!(
                "{name}: crashes differ from {stem}.expected.yaml (- expected, + found):\n{}",
                diff(&to_yaml(&expected), &to_yaml(&actual))
            ));
        }
    }
    assert!(checked > 0, "no .log files in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus files failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn diff_marks_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n- b\n+ x\n  c\n");
}

/// What every report found in the corpus must satisfy, whatever its kind.
#[test]
fn corpus_reports_are_well_formed() {
    let dir = corpus_dir();
    let run_specific =
        regex::Regex::new(r"\b[0-9a-f]{16}\b|\b0x[0-9a-f]{5,}\b|^\[\s*\d+\.\d+\]|\+0x").unwrap();
    for name in corpus_files(&dir) {
        let path = dir.join(&name);
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let log = fs::read_to_string(&path).expect("log");
        let console: Vec<&str> = log.lines().collect();
        for c in find_crashes(&log) {
            assert!(!c.lines.is_empty(), "{name}: {c:?}");
            // The kernel's part of the line: another writer's output may
            // stand before it on the same console line.
            assert!(
                console[c.line_no].ends_with(&c.lines[0]),
                "{name}: line_no points at the first line: {:?} is not the end of {:?}",
                c.lines[0],
                console[c.line_no]
            );
            assert!(
                c.trace.len() <= runner::report::MAX_TRACE,
                "{name}: {:?}",
                c.trace
            );
            for f in &c.trace {
                assert!(
                    !f.is_empty() && !f.contains(['+', '.', ' ', '?', '[']),
                    "{name}: frame {f:?}"
                );
            }
            assert_eq!(
                runner::normalize::normalize_line(&c.title),
                c.title,
                "{name}: the title is normalized"
            );
            // A title names its culprit, or says why it has none.
            match &c.culprit {
                Some(f) => assert!(c.title.ends_with(&format!(" in {f}")), "{name}: {c:?}"),
                None => assert!(
                    !c.title.ends_with(" in") && !c.title.ends_with(" at"),
                    "{name}: {}",
                    c.title
                ),
            }
            assert_eq!(
                c.kind == CrashKind::Corrupted,
                c.title.ends_with("(corrupted)"),
                "{name}: {}",
                c.title
            );
            for l in runner::normalize::normalize_lines(c.lines.iter().map(String::as_str)) {
                assert!(
                    !run_specific.is_match(&l),
                    "{name}: normalized line keeps a run-specific value: {l:?}"
                );
            }
        }
    }
}
