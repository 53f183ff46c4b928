use super::*;
use serde_json::json;

/// The least a case can write for each probe: its required arguments.
fn minimal(probe: &str) -> Value {
    match probe {
        "create" => json!({"attempts": [{"size": 4096}]}),
        "fallocate" => json!({"size": 4096, "ops": [{"op": "allocate", "offset": 0, "len": 4096}]}),
        "gup_read" => json!({"paths": ["vmsplice"]}),
        "kselftest" => json!({"test": "guest_memfd_test"}),
        "kvm_access" => json!({"path": "pvclock"}),
        "stress" => json!({"seed": 1}),
        "replay" => json!({"ops": ["check"]}),
        "lkdtm" => json!({"crash": "BUG"}),
        _ => json!({}),
    }
}

fn err(probe: &str, args: Value) -> ArgError {
    parse(probe, &args).expect_err("expected an error")
}

/// Each probe's defaults, filled in and written out, read back the same;
/// and what the reference says the default is, is what parsing gives.
#[test]
fn every_probes_defaults_round_trip() {
    for p in PROBE_INFO {
        let parsed = parse(p.name, &minimal(p.name))
            .unwrap_or_else(|e| panic!("{}: its minimal arguments: {e}", p.name));
        assert_eq!(parsed.probe(), p.name);
        let full = parsed.to_json();
        assert_eq!(parse(p.name, &full).unwrap(), parsed, "{}", p.name);
        for f in (p.fields)().iter().filter(|f| !f.name.contains('[')) {
            match &f.default {
                Some(d) => assert_eq!(*d, show_default(&full[&f.name]), "{}.{}", p.name, f.name),
                None => assert!(
                    minimal(p.name).get(&f.name).is_some(),
                    "{}.{} is required",
                    p.name,
                    f.name
                ),
            }
        }
    }
}

#[test]
fn no_arguments_is_an_empty_map() {
    assert_eq!(
        parse("caps", &Value::Null).unwrap(),
        ProbeArgs::Caps(CapsArgs {
            vm_type: VmType::Default
        })
    );
    assert_eq!(
        parse("sweep", &json!({})).unwrap(),
        ProbeArgs::Sweep(SweepArgs {
            share_percent: 80,
            tmpfs_mib: 8
        })
    );
}

#[test]
fn every_number_is_bounded_and_every_field_documented() {
    for p in PROBE_INFO {
        assert!(!p.summary.is_empty(), "{}", p.name);
        for f in (p.fields)() {
            assert!(!f.doc.is_empty(), "{}.{}: no doc", p.name, f.name);
            assert!(
                !f.number || f.bounded,
                "{}.{}: a number without a range",
                p.name,
                f.name
            );
            assert!(
                !f.type_name.starts_with("list") || f.bound.contains("items"),
                "{}.{}: a list without a length bound",
                p.name,
                f.name
            );
        }
    }
}

#[test]
fn the_probe_list_is_the_schema() {
    assert_eq!(PROBES.len(), PROBE_INFO.len());
    for (name, info) in PROBES.iter().zip(PROBE_INFO) {
        assert_eq!(*name, info.name);
    }
    let e = err("nope", json!({}));
    assert!(
        e.expected.contains("no probe `nope`") && e.expected.contains("caps, create"),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_named_with_the_expected_ones() {
    let e = err("direct_map", json!({"page": 4}));
    assert_eq!(e.field, "page");
    assert!(
        e.expected
            .contains("unknown argument; expected one of `vm_type`, `flags`"),
        "{e}"
    );
    let e = err("create", json!({"attempts": [{"size": 1, "flag": []}]}));
    assert_eq!(e.field, "attempts[0].flag");
    let e = err("meminfo", json!({"x": 1}));
    assert_eq!(
        e.to_string(),
        "field `x`: unknown argument; this probe takes no arguments"
    );
}

#[test]
fn wrong_values_name_their_path_and_expectation() {
    let e = err("gup_read", json!({"paths": ["bogus_path"]}));
    assert_eq!(e.field, "paths[0]");
    assert_eq!(
        e.expected,
        "expected one of `proc_self_mem`, `process_vm_readv`, `vmsplice`, got `bogus_path`"
    );
    let e = err("gup_read", json!({"paths": ["vmsplice", "vmsplice"]}));
    assert_eq!(e.field, "paths[1]");
    assert!(e.expected.contains("already item 0"), "{e}");
    let e = err("gup_read", json!({"paths": []}));
    assert_eq!(e.to_string(), "field `paths`: expected 1 to 3 items, got 0");
    let e = err("gup_read", json!({}));
    assert_eq!(
        e.to_string(),
        "field `paths`: missing; this argument is required"
    );
    let attempts: Vec<Value> = (0..3).map(|i| json!({"size": 4096 * i})).collect();
    let mut bad = attempts.clone();
    bad[2] = json!({"size": u64::MAX});
    let e = err("create", json!({ "attempts": bad }));
    assert_eq!(
        e.to_string(),
        format!(
            "field `attempts[2].size`: expected an integer from 0 to 1099511627776, got {}",
            u64::MAX
        )
    );
    let e = err("direct_map", json!({"pages": -1}));
    assert_eq!(
        e.to_string(),
        "field `pages`: expected an integer from 1 to 16384, got -1"
    );
    let e = err("direct_map", json!({"pages": 1e17}));
    assert!(
        e.expected.contains("expected an integer from 1 to 16384"),
        "{e}"
    );
    let e = err("direct_map", json!({"pages": "4"}));
    assert!(
        e.expected.contains("expected an integer") && e.expected.contains("`4`"),
        "{e}"
    );
    let e = err("direct_map", json!({"flags": ["mmap"]}));
    assert_eq!(e.field, "flags[0]");
    assert!(e.expected.contains("expected a guest_memfd flag"), "{e}");
    let e = err("fault_inject", json!({"pages": 1000}));
    assert_eq!(
        e.to_string(),
        "field `pages`: expected a multiple of 512, got 1000"
    );
    let e = err("selftest", json!({"raise": "SIGFOO"}));
    assert!(e.expected.contains("`SIGSEGV`"), "{e}");
    let e = err("sweep", json!({"share_percent": 96}));
    assert_eq!(
        e.to_string(),
        "field `share_percent`: expected an integer from 0 to 95, got 96"
    );
    let e = err(
        "fallocate",
        json!({"size": 1, "ops": [{"op": "allocate", "offset": 0}]}),
    );
    assert_eq!(
        e.to_string(),
        "field `ops[0].len`: missing; this argument is required"
    );
    let e = err("caps", json!([1]));
    assert!(
        e.expected
            .starts_with("expected a map of arguments (`vm_type`)"),
        "{e}"
    );
}

#[test]
fn kselftest_names_and_arguments_are_checked() {
    for bad in ["../x", "a/b/c", "", "x y", "./t"] {
        let e = err("kselftest", json!({ "test": bad }));
        assert_eq!(e.field, "test");
        assert!(e.expected.contains("not a KVM selftest name"), "{e}");
    }
    let e = err("kselftest", json!({"test": "t", "args": ["a\0b"]}));
    assert!(e.expected.contains("NUL"), "{e}");
    let many: Vec<String> = (0..33).map(|i| i.to_string()).collect();
    let e = err("kselftest", json!({"test": "t", "args": many}));
    assert_eq!(
        e.to_string(),
        "field `args`: expected 0 to 32 items, got 33"
    );
    let e = err("kselftest", json!({"test": "t", "args": ["x".repeat(300)]}));
    assert_eq!(
        e.to_string(),
        "field `args[0]`: expected at most 256 bytes, got 300"
    );
    let e = err("kselftest", json!({"test": "t", "timeout_s": 0}));
    assert_eq!(e.field, "timeout_s");
    assert!(check_kselftest_name("x86/private_mem_conversions_test").is_ok());
}

#[test]
fn the_reference_lists_every_probe_and_argument() {
    let md = reference_markdown();
    for p in PROBE_INFO {
        assert!(md.contains(&format!("#### `{}`", p.name)), "{}", p.name);
        for f in (p.fields)() {
            assert!(
                md.contains(&format!("| `{}` |", f.name)),
                "{}.{}",
                p.name,
                f.name
            );
        }
    }
    assert!(
        md.contains("| `attempts[].size` | integer | required | 0 to 1099511627776 |"),
        "{md}"
    );
    assert!(md.contains("| `flags` | list of guest_memfd flag"), "{md}");
}

const BEGIN: &str = "<!-- probe-reference: generated by gmem_protocol::args::reference_markdown(); UPDATE_README=1 cargo test -p gmem-protocol rewrites it -->\n";
const END: &str = "<!-- probe-reference end -->\n";

/// The README's probe reference is the schema's: `UPDATE_README=1 cargo
/// test -p gmem-protocol readme` rewrites it.
#[test]
fn readme_probe_reference_is_the_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("the README has the probe reference's begin marker")
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .expect("the README has the probe reference's end marker")
        + start;
    let want = reference_markdown();
    if readme[start..end] == want {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's probe reference differs from the schema; run `UPDATE_README=1 cargo test -p gmem-protocol readme`, or paste between the markers:\n{want}"
    );
}

#[test]
fn lkdtm_crash_types_are_bounded_identifiers() {
    for ok in [
        "BUG",
        "SLAB_FREE_DOUBLE",
        "REFCOUNT_ADD_NOT_ZERO_SATURATED",
        "X86_1",
    ] {
        check_lkdtm_name(ok).unwrap();
    }
    for bad in [
        "",
        "bug",
        "_BUG",
        "1BUG",
        "BUG WARNING",
        "BUG\n",
        "../DIRECT",
        "BUG-2",
    ] {
        assert!(check_lkdtm_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_lkdtm_name(&"A".repeat(MAX_LKDTM_NAME)).is_ok());
    assert!(check_lkdtm_name(&"A".repeat(MAX_LKDTM_NAME + 1)).is_err());
    let e = err("lkdtm", json!({"crash": "bug"})).to_string();
    assert!(e.contains("not an LKDTM crash type"), "{e}");
}
