//! `cargo xtask report`: any console log in, its reports out (text or
//! JSON), exit 0 without a report, 3 with one, 4 for a log or vmlinux that
//! cannot be used; frames decoded with a vmlinux's DWARF.

use std::path::Path;
use std::process::{Command, Output};

fn report(args: &[&str], logs: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("report")
        .args(args)
        .args(logs)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const OOPS: &str = "\
[    2.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008
[    2.000001] #PF: supervisor read access in kernel mode
[    2.000002] Oops: Oops: 0000 [#1] SMP NOPTI
[    2.000003] RIP: 0010:triple+0x8/0x20
[    2.000004] Call Trace:
[    2.000005]  <TASK>
[    2.000006]  main+0x9/0x30
[    2.000007]  </TASK>
[    2.000008] ---[ end trace 0000000000000000 ]---
";

#[test]
fn logs_are_classified_with_exit_codes_and_json() {
    let d = tempfile::tempdir().unwrap();
    let oops = d.path().join("oops.log");
    std::fs::write(&oops, format!("[    0.000000] Linux version 7.3.4\n{OOPS}")).unwrap();
    let clean = d.path().join("clean.log");
    std::fs::write(&clean, "[    0.000000] Linux version 7.3.4\nplain text\n").unwrap();

    let o = report(&[], &[&clean]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no crash report"));

    let o = report(&[], &[&clean, &oops]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        t.contains("BUG: unable to handle kernel NULL pointer dereference in triple"),
        "{t}"
    );
    assert!(
        t.contains("culprit: triple") && t.contains("line:    2"),
        "{t}"
    );

    let o = report(&["--json"], &[&oops]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v[0]["reports"][0];
    assert_eq!(r["kind"], "page_fault");
    assert_eq!(r["culprit"], "triple");
    assert_eq!(r["trace"][0], "main");
    assert_eq!(r["lines"].as_array().unwrap().len(), 9);

    // A log that cannot be read: exit 4, named, and nothing else printed.
    let o = report(&[], &[&oops, &d.path().join("missing.log")]);
    assert_eq!(o.status.code(), Some(4));
    assert!(text(&o).contains("missing.log"), "{}", text(&o));
    assert!(o.stdout.is_empty());
    // Not a vmlinux.
    let o = report(&["--vmlinux", oops.to_str().unwrap()], &[&oops]);
    assert_eq!(o.status.code(), Some(4));
    assert!(text(&o).contains("not an ELF file"), "{}", text(&o));
}

/// A vmlinux stand-in: any ELF with DWARF decodes the same way; this one
/// has `triple` and `main` at known source lines.
#[test]
fn frames_are_decoded_to_source_lines_with_a_vmlinux() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("tiny.c");
    std::fs::write(
        &src,
        "int triple(int x)\n{\n\treturn x * 3;\n}\n\nint main(void)\n{\n\treturn triple(2);\n}\n",
    )
    .unwrap();
    let elf = d.path().join("vmlinux");
    let cc = Command::new("cc")
        .args(["-g", "-O0", "-o"])
        .arg(&elf)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let log = d.path().join("oops.log");
    std::fs::write(&log, OOPS).unwrap();

    let o = report(&["--vmlinux", elf.to_str().unwrap()], &[&log]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("decoded:"), "{t}");
    assert!(t.contains("triple+0x8/0x20:"), "{t}");
    assert!(t.contains("tiny.c:3") || t.contains("tiny.c:1"), "{t}");
    assert!(
        t.contains("main+0x9/0x30:") && t.contains("tiny.c:8"),
        "{t}"
    );

    // Without DWARF the frames are listed, and the report says why.
    let stripped = d.path().join("stripped");
    let st = Command::new("strip")
        .arg("-g")
        .arg("-o")
        .arg(&stripped)
        .arg(&elf)
        .status()
        .unwrap();
    assert!(st.success());
    let o = report(&["--vmlinux", stripped.to_str().unwrap()], &[&log]);
    let t = text(&o);
    assert!(
        t.contains("no DWARF") && t.contains("triple+0x8/0x20"),
        "{t}"
    );
}
