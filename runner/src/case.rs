//! Cases: `cases/CASE.yaml`, loaded and validated, and turned into the plan
//! the guest runs.
//!
//! ```yaml
//! description: what the case shows
//! kernels: [stock-7.3]          # the variants it runs on (recipes in kernels/)
//! timeout: 60                   # seconds, the whole boot (default: the steps' + 30)
//! memory_mb: 1024               # guest memory (default 1024)
//! cpus: 2                       # guest CPUs (default 2)
//! cmdline: ""                   # extra kernel parameters (plain words: letters, digits, `_-.,:=/+@%`)
//! expect_crash: false           # true, or the kernels on which the case expects a crash:
//!                               # expect_crash: [nodirectmap-rfc]
//! keep_dmesg: ["kvm_amd: .*"]   # regexes: matching kernel log lines go in the outcome
//! silence: 30                   # no output this long: hung, NMI for backtraces (default: longest step + 10; 0: off)
//! batch: true                   # may share a boot with other cases (default); false: a fresh kernel
//! steps:
//!   - name: discover
//!     probe: caps               # one of gmem_protocol::PROBES
//!     args: {}                  # the probe's arguments (gmem_protocol::args, checked here)
//!     timeout: 20               # seconds (default 20)
//!     cpu: 0                    # pin the probe to this CPU (optional)
//! ```

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::kernel::Flavor;
use crate::yaml::{check_text, load_yaml};
use gmem_protocol::args::{self, ProbeArgs};
use gmem_protocol::{CasePlan, PlanStep, PROBES};

/// Boot and power-off, on top of the steps' own timeouts, when a case does
/// not set its `timeout`.
const BOOT_ALLOWANCE_S: u64 = 30;

/// The longest a case, a step or a silence may last: an hour. Every
/// duration is checked against it before it is turned into milliseconds.
pub const MAX_SECONDS: u64 = 3600;

/// A case's name is a file name, a directory name, part of a snapshot's
/// file name and of a printed command: short, and never an option.
pub const MAX_NAME: usize = 64;

/// `keep_dmesg`: how many patterns, how long each, and how large one may
/// compile (the regex crate's limits, in bytes).
pub const MAX_KEEP_DMESG: usize = 32;
pub const MAX_PATTERN: usize = 512;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A guest may be silent this much longer than its longest step before it
/// is taken for hung, when a case does not set its `silence`.
const SILENCE_MARGIN_S: u64 = 10;
fn default_memory() -> u32 {
    1024
}
fn default_cpus() -> u32 {
    2
}
fn default_step_timeout() -> u64 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    description: String,
    kernels: Vec<String>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default = "default_memory")]
    memory_mb: u32,
    #[serde(default = "default_cpus")]
    cpus: u32,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    expect_crash: Option<serde_yaml::Value>,
    #[serde(default)]
    keep_dmesg: Vec<String>,
    #[serde(default)]
    silence: Option<u64>,
    #[serde(default = "default_batch")]
    batch: bool,
    steps: Vec<StepFile>,
}

fn default_batch() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: String,
    probe: String,
    #[serde(default)]
    args: serde_json::Value,
    #[serde(default = "default_step_timeout")]
    timeout: u64,
    #[serde(default)]
    cpu: Option<u32>,
}

/// A validated case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file's stem (`gmem_create`).
    pub name: String,
    pub file: PathBuf,
    pub description: String,
    pub kernels: Vec<String>,
    pub timeout_s: u64,
    pub memory_mb: u32,
    pub cpus: u32,
    pub cmdline: String,
    /// The kernels on which the case expects the kernel to crash (or hang).
    pub expect_crash_on: Vec<String>,
    pub keep_dmesg: Vec<Regex>,
    /// No output for this long means a hung guest (0: never).
    pub silence_s: u64,
    /// May share a boot with other cases (batch mode); `batch: false` in
    /// the file for a case that needs a fresh kernel.
    pub batch: bool,
    pub plan: CasePlan,
}

impl Case {
    /// Whether the case expects a crash on `kernel`.
    pub fn expects_crash(&self, kernel: &str) -> bool {
        self.expect_crash_on.iter().any(|k| k == kernel)
    }

    /// The case on `flavor`'s kernels: its kernels (and those it expects a
    /// crash on) by their flavored names, and every deadline (the boot's,
    /// each step's, a kselftest's own, the silence that means a hang)
    /// `flavor.deadline_factor()` times as long, up to the bounds a case
    /// file has.
    pub fn flavored(&self, flavor: Flavor) -> Case {
        let f = flavor.deadline_factor();
        let names = |ks: &[String]| ks.iter().map(|k| flavor.kernel_name(k)).collect();
        let mut c = self.clone();
        c.kernels = names(&self.kernels);
        c.expect_crash_on = names(&self.expect_crash_on);
        c.timeout_s = self.timeout_s * f;
        c.silence_s = self.silence_s * f;
        for s in &mut c.plan.steps {
            s.timeout_ms *= f;
            // The probe checks its own bound again in the guest.
            if let Ok(ProbeArgs::Kselftest(k)) = args::parse(&s.probe, &s.args) {
                if let Some(a) = s.args.as_object_mut() {
                    let bound = MAX_SECONDS.min(s.timeout_ms / 1000 - 1);
                    a.insert("timeout_s".into(), (k.timeout_s * f).min(bound).into());
                }
            }
        }
        c
    }

    /// Loads and validates `file` against the kernels there are (their
    /// names, or with their tags: [`KnownKernels`]).
    pub fn load(file: &Path, known: impl Into<KnownKernels>) -> Result<Case> {
        let known: KnownKernels = known.into();
        let raw: CaseFile = load_yaml(file, "case")?;
        let f = file.display();
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{f}: not a valid file name"))?
            .to_string();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("{f}: the case name `{name}` (the file name) may only hold letters, digits, `_` and `-`");
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            bail!("{f}: the case name `{name}` (the file name) must start with a letter or a digit (it is a command's argument)");
        }
        if name.len() > MAX_NAME {
            bail!(
                "{f}: the case name (the file name) is {} characters; expected at most {MAX_NAME}",
                name.len()
            );
        }
        if raw.kernels.is_empty() {
            bail!(
                "{f}: field `kernels`: expected at least one kernel ({})",
                known.describe()
            );
        }
        // Names, patterns and tags, each to the recipes it stands for.
        let mut kernels: Vec<String> = Vec::new();
        for (i, k) in raw.kernels.iter().enumerate() {
            if raw.kernels[..i].contains(k) {
                bail!("{f}: field `kernels`: `{k}` is listed twice; expected each kernel once");
            }
            let these = known.expand(k);
            if these.is_empty() {
                bail!(
                    "{f}: field `kernels`: no kernel recipe, pattern or tag `{k}` matches ({})",
                    known.describe()
                );
            }
            for t in these {
                if !kernels.contains(&t) {
                    kernels.push(t);
                }
            }
        }
        if let Some(t) = raw.timeout {
            if t == 0 || t > MAX_SECONDS {
                bail!("{f}: field `timeout`: expected 1 to {MAX_SECONDS} seconds, got {t}");
            }
        }
        if !(128..=16384).contains(&raw.memory_mb) {
            bail!(
                "{f}: field `memory_mb`: expected 128 to 16384, got {}",
                raw.memory_mb
            );
        }
        if !(1..=8).contains(&raw.cpus) {
            bail!("{f}: field `cpus`: expected 1 to 8, got {}", raw.cpus);
        }
        check_text(file, "description", &raw.description)?;
        check_cmdline(&raw.cmdline).map_err(|e| anyhow::anyhow!("{f}: field `cmdline`: {e}"))?;
        let expect_crash_on = match &raw.expect_crash {
            None | Some(serde_yaml::Value::Bool(false)) => vec![],
            Some(serde_yaml::Value::Bool(true)) => kernels.clone(),
            Some(serde_yaml::Value::Sequence(seq)) => {
                let mut on: Vec<String> = Vec::new();
                for v in seq {
                    let these: Vec<String> = v
                        .as_str()
                        .map(|k| known.expand(k))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|k| kernels.contains(k))
                        .collect();
                    if these.is_empty() {
                        bail!(
                            "{f}: field `expect_crash`: `{}` is not one of the case's kernels ({})",
                            serde_yaml::to_string(v).unwrap_or_default().trim(),
                            kernels.join(", ")
                        );
                    }
                    on.extend(
                        these
                            .into_iter()
                            .filter(|k| !on.contains(k))
                            .collect::<Vec<_>>(),
                    );
                }
                on
            }
            Some(_) => bail!(
                "{f}: field `expect_crash`: expected true, false or a list of the case's kernels"
            ),
        };
        if raw.keep_dmesg.len() > MAX_KEEP_DMESG {
            bail!(
                "{f}: field `keep_dmesg`: {} patterns; expected at most {MAX_KEEP_DMESG}",
                raw.keep_dmesg.len()
            );
        }
        let keep_dmesg = raw
            .keep_dmesg
            .iter()
            .enumerate()
            .map(|(i, re)| {
                let at = format!("{f}: field `keep_dmesg[{i}]`");
                if re.len() > MAX_PATTERN {
                    bail!("{at}: {} bytes; expected a pattern of at most {MAX_PATTERN}", re.len());
                }
                // A pattern that compiles to megabytes is refused, not built.
                regex::RegexBuilder::new(re)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| anyhow::anyhow!("{at}: not a valid regex (or too large: at most {REGEX_SIZE_LIMIT} bytes compiled): {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        if raw.steps.is_empty() {
            bail!("{f}: field `steps`: expected at least one step");
        }
        let mut steps = Vec::new();
        let mut total = 0;
        for (i, s) in raw.steps.iter().enumerate() {
            let at = |field: &str| format!("{f}: field `steps[{i}].{field}`");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!(
                    "{}: expected letters, digits, `_` or `-`, got `{}`",
                    at("name"),
                    s.name
                );
            }
            if raw.steps[..i].iter().any(|o| o.name == s.name) {
                bail!(
                    "{}: `{}` is used by an earlier step; step names must be unique",
                    at("name"),
                    s.name
                );
            }
            if !PROBES.contains(&s.probe.as_str()) {
                bail!(
                    "{}: no probe `{}` (known probes: {})",
                    at("probe"),
                    s.probe,
                    PROBES.join(", ")
                );
            }
            // The probe's arguments, against the schema the probe parses
            // them with: refused here, not in a booted guest.
            let parsed = args::parse(&s.probe, &s.args).map_err(|e| {
                let field = if e.field.is_empty() {
                    "args".to_string()
                } else {
                    format!("args.{}", e.field)
                };
                anyhow::anyhow!("{}: {}", at(&field), e.expected)
            })?;
            if s.timeout == 0 || s.timeout > MAX_SECONDS {
                bail!(
                    "{}: expected 1 to {MAX_SECONDS} seconds, got {}",
                    at("timeout"),
                    s.timeout
                );
            }
            // A hung test is then reported by the probe, not only killed.
            if let ProbeArgs::Kselftest(k) = &parsed {
                if k.timeout_s >= s.timeout {
                    bail!(
                        "{}: {} s must end before the step's `timeout` ({} s)",
                        at("args.timeout_s"),
                        k.timeout_s,
                        s.timeout
                    );
                }
            }
            if let Some(cpu) = s.cpu {
                if cpu >= raw.cpus {
                    bail!(
                        "{}: CPU {cpu} does not exist in a guest with {} CPUs",
                        at("cpu"),
                        raw.cpus
                    );
                }
            }
            total += s.timeout;
            if total > MAX_SECONDS {
                bail!(
                    "{}: the steps' timeouts add up to {total} s by this step; expected at most {MAX_SECONDS} s in all",
                    at("timeout")
                );
            }
            steps.push(PlanStep {
                name: s.name.clone(),
                probe: s.probe.clone(),
                args: if s.args.is_null() {
                    serde_json::json!({})
                } else {
                    s.args.clone()
                },
                timeout_ms: s.timeout * 1000,
                cpu: s.cpu,
            });
        }
        let timeout_s = raw.timeout.unwrap_or(total + BOOT_ALLOWANCE_S);
        // A step is silent at most until init kills it at its timeout.
        let longest = raw.steps.iter().map(|s| s.timeout).max().unwrap_or(0);
        let silence_s = raw.silence.unwrap_or(longest + SILENCE_MARGIN_S);
        if raw
            .silence
            .is_some_and(|s| (s != 0 && s < 2) || s > MAX_SECONDS)
        {
            bail!("{f}: field `silence`: expected 0 (off) or 2 to {MAX_SECONDS} seconds");
        }
        if total >= timeout_s {
            bail!(
                "{f}: field `timeout`: {timeout_s} s leaves no time to boot: the steps' timeouts add up to {total} s"
            );
        }
        Ok(Case {
            plan: CasePlan {
                case: name.clone(),
                steps,
            },
            name,
            file: file.to_path_buf(),
            description: raw.description,
            kernels,
            timeout_s,
            memory_mb: raw.memory_mb,
            cpus: raw.cpus,
            cmdline: raw.cmdline,
            expect_crash_on,
            keep_dmesg,
            silence_s,
            batch: raw.batch,
        })
    }
}

/// The kernels a case may name in `kernels:` and `expect_crash:`: each
/// recipe's name, a pattern with `*` over the names (`nodirectmap-*`), or
/// one of the recipes' `tags` (`nodirectmap`): a new variant with a tag
/// joins every case that names the tag, with no case file edited.
#[derive(Debug, Clone, Default)]
pub struct KnownKernels {
    /// Each recipe's name and tags.
    kernels: Vec<(String, Vec<String>)>,
}

impl KnownKernels {
    pub fn new(kernels: Vec<(String, Vec<String>)>) -> KnownKernels {
        KnownKernels { kernels }
    }

    /// The recipes an entry stands for, in the recipes' order.
    pub fn expand(&self, entry: &str) -> Vec<String> {
        self.kernels
            .iter()
            .filter(|(name, tags)| {
                name == entry || tags.iter().any(|t| t == entry) || glob_matches(entry, name)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The names and tags there are, for an error message.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.kernels.iter().map(|(n, _)| n.as_str()).collect();
        let mut tags: Vec<&str> = self
            .kernels
            .iter()
            .flat_map(|(_, t)| t.iter().map(String::as_str))
            .collect();
        tags.sort();
        tags.dedup();
        if tags.is_empty() {
            format!("known: {}", names.join(", "))
        } else {
            format!("known: {}; tags: {}", names.join(", "), tags.join(", "))
        }
    }
}

impl From<&[String]> for KnownKernels {
    fn from(names: &[String]) -> KnownKernels {
        KnownKernels::new(names.iter().map(|n| (n.clone(), vec![])).collect())
    }
}

impl From<&Vec<String>> for KnownKernels {
    fn from(names: &Vec<String>) -> KnownKernels {
        names.as_slice().into()
    }
}

impl<const N: usize> From<&[String; N]> for KnownKernels {
    fn from(names: &[String; N]) -> KnownKernels {
        names.as_slice().into()
    }
}

/// `*` matches any run of characters; a pattern without one matches
/// nothing here (a plain name is compared as a name).
fn glob_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first)
        || !name[first.len()..].ends_with(last)
        || name.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    true
}

/// The longest extra kernel command line a case may ask for.
const MAX_CMDLINE_BYTES: usize = 1024;

/// A case's extra kernel command line is plain `word` or `key=value` words.
/// It reaches QEMU's `-append` directly in the hermetic backend, but vng
/// passes it on through a shell: a quote, `$`, `;` or a backtick there would
/// be the host's shell's to interpret. Kernel parameters never need them.
pub fn check_cmdline(cmdline: &str) -> Result<()> {
    if cmdline.len() > MAX_CMDLINE_BYTES {
        bail!(
            "{} bytes; expected at most {MAX_CMDLINE_BYTES}",
            cmdline.len()
        );
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:=/+@%".contains(c);
    for word in cmdline.split([' ', '\t']) {
        if let Some(c) = word.chars().find(|c| !plain(*c)) {
            bail!(
                "`{}` holds {}; expected kernel parameters: words of letters, digits and `_-.,:=/+@%`, separated by spaces",
                word.escape_debug(),
                match c {
                    '\n' => "a newline".to_string(),
                    '`' => "a backtick".to_string(),
                    c if c.is_control() => format!("the control character U+{:04X}", c as u32),
                    c => format!("`{c}`"),
                }
            );
        }
    }
    Ok(())
}

impl Case {
    /// The upstream selftests the case's `kselftest` steps run.
    pub fn kselftests(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .plan
            .steps
            .iter()
            .filter(|s| s.probe == "kselftest")
            .filter_map(|s| s.args.get("test")?.as_str().map(String::from))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Loads every case in `cases_dir` (sorted by name). Stops at the first
/// invalid file: a suite with a broken case is not run half.
pub fn load_all(cases_dir: &Path, known: impl Into<KnownKernels>) -> Result<Vec<Case>> {
    let known: KnownKernels = known.into();
    crate::yaml::check_inside_suite(cases_dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir)
        .with_context(|| format!("cannot read {}", cases_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files.iter().map(|f| Case::load(f, known.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels() -> Vec<String> {
        vec!["stock-7.3".to_string()]
    }

    fn load(text: &str) -> Result<Case> {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("my_case.yaml");
        std::fs::write(&f, text).unwrap();
        Case::load(&f, &kernels())
    }

    fn err(text: &str) -> String {
        format!("{:#}", load(text).unwrap_err())
    }

    const GOOD: &str =
        "description: d\nkernels: [stock-7.3]\nsteps:\n  - name: a\n    probe: caps\n";

    /// A case names kernels by name, by a pattern over names, or by a tag
    /// of their recipes; each stands for every recipe it matches.
    #[test]
    fn kernels_by_name_pattern_or_tag() {
        let known = KnownKernels::new(vec![
            ("stock-7.3".into(), vec!["stock".into()]),
            ("ndm-v1".into(), vec!["ndm".into()]),
            ("ndm-v2".into(), vec!["ndm".into()]),
        ]);
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.yaml");
        let load = |kernels: &str, crash: &str| {
            std::fs::write(&f, format!("description: d\nkernels: {kernels}\nexpect_crash: {crash}\nsteps:\n  - {{name: a, probe: caps}}\n")).unwrap();
            Case::load(&f, known.clone())
        };
        let c = load("[stock, ndm]", "[ndm-v1]").unwrap();
        assert_eq!(c.kernels, ["stock-7.3", "ndm-v1", "ndm-v2"]);
        assert_eq!(c.expect_crash_on, ["ndm-v1"]);
        let c = load("[ndm-*]", "[ndm]").unwrap();
        assert_eq!(c.kernels, ["ndm-v1", "ndm-v2"]);
        assert_eq!(c.expect_crash_on, ["ndm-v1", "ndm-v2"]);
        let e = format!("{:#}", load("[stok]", "false").unwrap_err());
        assert!(
            e.contains("no kernel recipe, pattern or tag `stok`") && e.contains("tags: ndm, stock"),
            "{e}"
        );
        assert!(
            glob_matches("a*c*e", "abcde")
                && !glob_matches("a*c", "abcd")
                && !glob_matches("x", "x")
        );
    }

    /// On a flavor, a case runs on the flavored kernels, expects its crashes
    /// there, and has every deadline scaled, a kselftest's own included.
    #[test]
    fn a_flavored_case_names_flavored_kernels_and_waits_longer() {
        let c = load("description: d\nkernels: [stock-7.3]\nexpect_crash: true\nsilence: 30\nsteps:\n  - {name: a, probe: caps}\n  - {name: b, probe: kselftest, args: {test: x86/foo_test, timeout_s: 50}, timeout: 60}\n  - {name: c, probe: kselftest, args: {test: x86/foo_test}, timeout: 90}\n").unwrap();
        let n = c.flavored(Flavor::Normal);
        assert_eq!(
            (n.kernels.clone(), n.timeout_s),
            (c.kernels.clone(), c.timeout_s)
        );
        let d = c.flavored(Flavor::Debug);
        let f = Flavor::Debug.deadline_factor();
        assert!(f > 1);
        assert_eq!(d.kernels, ["stock-7.3+debug"]);
        assert!(d.expects_crash("stock-7.3+debug") && !d.expects_crash("stock-7.3"));
        assert_eq!(d.timeout_s, c.timeout_s * f);
        assert_eq!(d.silence_s, 30 * f);
        assert_eq!(d.plan.steps[0].timeout_ms, 20_000 * f);
        assert_eq!(d.plan.steps[1].timeout_ms, 60_000 * f);
        assert_eq!(d.plan.steps[1].args["timeout_s"], serde_json::json!(50 * f));
        // The default of 60 s, scaled too, and still inside its step.
        assert_eq!(d.plan.steps[2].args["timeout_s"], serde_json::json!(60 * f));
        for s in &d.plan.steps[1..] {
            let ProbeArgs::Kselftest(k) = args::parse(&s.probe, &s.args).unwrap() else {
                panic!("not a kselftest")
            };
            assert!(k.timeout_s * 1000 < s.timeout_ms, "{s:?}");
        }
    }

    #[test]
    fn a_good_case_becomes_a_plan() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.name, "my_case");
        assert_eq!(c.plan.steps.len(), 1);
        assert_eq!(c.plan.steps[0].timeout_ms, 20_000);
        assert_eq!(c.plan.steps[0].args, serde_json::json!({}));
        assert_eq!(c.timeout_s, 20 + BOOT_ALLOWANCE_S);
    }

    #[test]
    fn unknown_field_names_file_field_and_expected() {
        let e = err("description: d\nkernels: [stock-7.3]\ntimout: 3\nsteps: []\n");
        assert!(e.contains("my_case.yaml"), "{e}");
        assert!(e.contains("unknown field `timout`"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("description: d\nkernels: stock-7.3\nsteps: []\n");
        assert!(
            e.contains("kernels") && e.contains("expected a sequence"),
            "{e}"
        );
        let e = err("description: d\nkernels: [stock-7.3]\ntimeout: soon\nsteps: []\n");
        assert!(e.contains("timeout") && e.contains("expected u64"), "{e}");
    }

    #[test]
    fn missing_probe_is_named_with_known_ones() {
        let e = err("description: d\nkernels: [stock-7.3]\nsteps:\n  - name: a\n    probe: nope\n");
        assert!(
            e.contains("steps[0].probe`") && e.contains("no probe `nope`") && e.contains("caps"),
            "{e}"
        );
    }

    #[test]
    fn missing_kernel_is_named() {
        let e = err("description: d\nkernels: [nope-1.0]\nsteps:\n  - name: a\n    probe: caps\n");
        assert!(
            e.contains("field `kernels`") && e.contains("nope-1.0") && e.contains("stock-7.3"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let e = err("kernels: [stock-7.3]\nsteps:\n  - name: a\n    probe: caps\n");
        assert!(e.contains("missing field `description`"), "{e}");
    }

    #[test]
    fn duplicate_step_names_and_bad_cpu_are_refused() {
        let e = err("description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: caps}\n  - {name: a, probe: caps}\n");
        assert!(e.contains("steps[1].name`") && e.contains("unique"), "{e}");
        let e = err("description: d\nkernels: [stock-7.3]\ncpus: 1\nsteps:\n  - {name: a, probe: caps, cpu: 1}\n");
        assert!(e.contains("steps[0].cpu`"), "{e}");
    }

    #[test]
    fn step_timeouts_must_fit_the_case_timeout() {
        let e = err("description: d\nkernels: [stock-7.3]\ntimeout: 30\nsteps:\n  - {name: a, probe: caps, timeout: 30}\n");
        assert!(
            e.contains("field `timeout`") && e.contains("add up to 30"),
            "{e}"
        );
    }

    #[test]
    fn bad_regex_is_named() {
        let e = err("description: d\nkernels: [stock-7.3]\nkeep_dmesg: ['(']\nsteps:\n  - {name: a, probe: caps}\n");
        assert!(e.contains("keep_dmesg[0]"), "{e}");
    }

    #[test]
    fn expect_crash_is_a_bool_or_kernels() {
        let c = load("description: d\nkernels: [stock-7.3]\nexpect_crash: true\nsteps:\n  - {name: a, probe: caps}\n").unwrap();
        assert!(c.expects_crash("stock-7.3"));
        let c = load("description: d\nkernels: [stock-7.3]\nexpect_crash: [stock-7.3]\nsteps:\n  - {name: a, probe: caps}\n").unwrap();
        assert!(c.expects_crash("stock-7.3"));
        let c = load(GOOD).unwrap();
        assert!(!c.expects_crash("stock-7.3"));
        let e = err("description: d\nkernels: [stock-7.3]\nexpect_crash: [other]\nsteps:\n  - {name: a, probe: caps}\n");
        assert!(
            e.contains("field `expect_crash`")
                && e.contains("`other` is not one of the case's kernels"),
            "{e}"
        );
        let e = err("description: d\nkernels: [stock-7.3]\nexpect_crash: maybe\nsteps:\n  - {name: a, probe: caps}\n");
        assert!(e.contains("expected true, false or a list"), "{e}");
    }

    #[test]
    fn kselftest_steps_name_a_test_and_end_before_the_step() {
        let c = load("description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: kselftest, args: {test: x86/foo_test, timeout_s: 50}, timeout: 60}\n  - {name: b, probe: caps}\n").unwrap();
        assert_eq!(c.kselftests(), vec!["x86/foo_test"]);
        let e = err("description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: kselftest, args: {test: ../x}, timeout: 90}\n");
        assert!(
            e.contains("field `steps[0].args.test`: `../x` is not a KVM selftest name"),
            "{e}"
        );
        let e = err("description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: kselftest, args: {test: t}}\n");
        assert!(
            e.contains(
                "field `steps[0].args.timeout_s`: 60 s must end before the step's `timeout` (20 s)"
            ),
            "{e}"
        );
        let e = err("description: d\nkernels: [stock-7.3]\nsteps:\n  - {name: a, probe: kselftest, args: {}}\n");
        assert!(e.contains("field `steps[0].args.test`: missing"), "{e}");
    }

    /// Every step of the suite's own cases passes the probe schema, and
    /// reaches the plan exactly as the case file wrote it (the guest gets
    /// the JSON the case gave, not a re-serialized parse).
    #[test]
    fn the_suites_cases_pass_the_probe_schema_unchanged() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let known = crate::kernel::recipe::known(&root.join("kernels")).unwrap();
        let cases = load_all(&root.join("cases"), known).unwrap();
        let mut steps = 0;
        for c in &cases {
            let text = std::fs::read_to_string(&c.file).unwrap();
            let raw: serde_json::Value = serde_yaml::from_str(&text).unwrap();
            for (i, step) in c.plan.steps.iter().enumerate() {
                args::validate(&step.probe, &step.args)
                    .unwrap_or_else(|e| panic!("{} steps[{i}]: {e}", c.name));
                let written = &raw["steps"][i]["args"];
                let want = if written.is_null() {
                    serde_json::json!({})
                } else {
                    written.clone()
                };
                assert_eq!(step.args, want, "{} steps[{i}]", c.name);
                steps += 1;
            }
        }
        assert!(
            cases.len() >= 20 && steps >= 30,
            "{} cases, {steps} steps",
            cases.len()
        );
    }

    #[test]
    fn huge_file_is_refused() {
        let big = format!("description: \"{}\"\n", "x".repeat(300 * 1024));
        let e = err(&big);
        assert!(e.contains("expected at most"), "{e}");
    }
}
