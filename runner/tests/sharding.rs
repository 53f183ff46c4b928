//! The suite shards on cargo-nextest: every (case, kernel) is a test of the
//! `cases` harness, so `--partition count:1/2` and `count:2/2` together run
//! each exactly once, and the `ci` profile writes JUnit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use runner::paths::Paths;
use runner::suite::Suite;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo nextest`, clear of the variables of a nextest run this test may
/// itself be part of.
fn nextest() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.arg("nextest").current_dir(workspace());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NEXTEST") {
            c.env_remove(k);
        }
    }
    c
}

fn run(c: &mut Command) -> String {
    let out = c.output().expect("cannot run cargo nextest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("no such command: `nextest`"),
        "cargo-nextest is not installed: `cargo install cargo-nextest --locked`"
    );
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `cases` tests nextest selects for `partition` (and `filter`).
fn listed(partition: &str) -> BTreeSet<String> {
    let json = run(nextest().args([
        "list",
        "-p",
        "gmem-runner",
        "--test",
        "cases",
        "--partition",
        partition,
        "--message-format",
        "json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("nextest's JSON");
    let cases = &v["rust-suites"]["gmem-runner::cases"]["testcases"];
    cases
        .as_object()
        .expect("the cases binary is listed")
        .iter()
        .filter(|(_, t)| t["filter-match"]["status"] == "matches")
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn two_partitions_list_every_pair_exactly_once() {
    let suite = Suite::load(Paths::of_this_checkout().unwrap(), &[], &[]).unwrap();
    let all: BTreeSet<String> = suite
        .pairs()
        .iter()
        .map(|(c, k)| format!("{}@{k}", c.name))
        .collect();
    let one = listed("count:1/2");
    let two = listed("count:2/2");
    assert!(
        one.is_disjoint(&two),
        "in both: {:?}",
        one.intersection(&two)
    );
    let union: BTreeSet<String> = one.union(&two).cloned().collect();
    assert_eq!(union, all, "the two shards together are the suite");
    for shard in [&one, &two] {
        assert!(
            shard.len() * 3 >= all.len(),
            "a shard has {} of {}",
            shard.len(),
            all.len()
        );
    }
}

/// The testcases of a JUnit report: (name, passed).
fn junit_cases(xml: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for chunk in xml.split("<testcase ").skip(1) {
        let name = chunk
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a testcase name")
            .to_string();
        let body = chunk.split("</testcase>").next().unwrap_or(chunk);
        let end_of_tag = body.find('>').unwrap_or(body.len());
        let self_closing = body[..end_of_tag].ends_with('/');
        let failed = !self_closing && (body.contains("<failure") || body.contains("<error"));
        out.push((name, !failed));
    }
    out
}

#[test]
fn two_shards_run_every_selected_pair_once_and_report_junit() {
    let junit = workspace().join("target/nextest/ci/junit.xml");
    let out = workspace().join("target/gmemtest/tests/sharding");
    let filter = "test(/^gmem_(caps|create)@/)";
    let mut ran: Vec<(String, bool)> = Vec::new();
    for partition in ["count:1/2", "count:2/2"] {
        let _ = std::fs::remove_file(&junit);
        run(nextest()
            .args([
                "run",
                "--profile",
                "ci",
                "-p",
                "gmem-runner",
                "--test",
                "cases",
            ])
            .args(["--partition", partition, "-E", filter])
            .env("GMEMTEST_OUT", &out));
        let xml = std::fs::read_to_string(&junit).expect("the ci profile writes JUnit");
        let cases = junit_cases(&xml);
        assert!(!cases.is_empty(), "{partition} ran nothing:\n{xml}");
        ran.extend(cases);
    }
    let names: Vec<&str> = ran.iter().map(|(n, _)| n.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "a pair ran twice: {names:?}");
    // What the two cases' files say they run on: a new variant joins
    // without this test changing.
    let cases = ["gmem_caps".to_string(), "gmem_create".to_string()];
    let suite = Suite::load(Paths::of_this_checkout().unwrap(), &cases, &[]).unwrap();
    let want: BTreeSet<String> = suite
        .pairs()
        .into_iter()
        .map(|(c, k)| format!("{}@{k}", c.name))
        .collect();
    assert!(want.len() >= 2, "{want:?}");
    assert_eq!(
        unique
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>(),
        want
    );
    assert!(ran.iter().all(|(_, ok)| *ok), "{ran:?}");
}

#[test]
fn junit_testcases_are_read_with_their_result() {
    let xml = r#"<testsuite><testcase name="a@k" classname="x" time="1"/><testcase name="b@k" classname="x"><failure message="m"/></testcase><testcase name="c@k"></testcase></testsuite>"#;
    assert_eq!(
        junit_cases(xml),
        [
            ("a@k".to_string(), true),
            ("b@k".to_string(), false),
            ("c@k".to_string(), true)
        ]
    );
}
