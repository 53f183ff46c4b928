//! `cargo xtask bench` works end to end (the figures themselves are for
//! people: nothing here asserts a time). One short part, one run.

use std::process::Command;

#[test]
fn bench_writes_its_table_plot_and_samples() {
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gmemtest/tests/bench");
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GMEMTEST_OUT", &out)
        .args(["bench", "--only", "boot", "--runs", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let md = std::fs::read_to_string(out.join("bench/bench.md")).unwrap();
    assert!(
        md.contains("| start-to-result, one case (hermetic, restored) |")
            && md.contains("| boot-to-result, one case (hermetic, booted) |"),
        "{md}"
    );
    assert!(stdout.contains(&md.lines().nth(4).unwrap_or_default().to_string()));
    assert!(
        md.contains("| 1 | ≤ 0.5 s |"),
        "one run, held to its target:\n{md}"
    );
    assert!(
        !md.contains("Not clean"),
        "the case passed while it was timed:\n{md}"
    );
    let svg = std::fs::read_to_string(out.join("bench/bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("start-to-result"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench/bench.json")).unwrap())
            .unwrap();
    let samples = &json["figures"][0]["samples"];
    assert_eq!(samples.as_array().map(|a| a.len()), Some(1), "{json}");
    assert!(samples[0].as_f64().unwrap() > 0.1, "{json}");
}
