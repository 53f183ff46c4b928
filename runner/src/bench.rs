//! `cargo xtask bench`: the figures users feel, as medians over several
//! runs, measured side by side in one run where two things are compared
//! (alternating, so that the machine's noise falls on both).
//!
//! - `cargo xtask run gmem_caps --kernel stock-7.3` as a whole process:
//!   restored, booted (`--boot`), every check again, and through vng,
//!   alternating;
//! - start-to-result: one case (`gmem_caps` on stock-7.3) from the start of
//!   its run to its verdict, restored and booted, alternating;
//! - edit-to-result: `touch virt/kvm/guest_memfd.c` in the stock variant's
//!   tree, make there (incremental, ccache), and run one guest_memfd case
//!   (`gmem_create`) on the result;
//! - saving the suite's VMs per kernel on a cold cache; the whole suite
//!   warm (kernels and VMs cached): restored, and in shared boots
//!   (`--boot`), alternating;
//! - the same case through virtme-ng and through the hermetic backend,
//!   alternating, as a ratio.
//!
//! The report is a Markdown table and an SVG plot (`target/gmemtest/bench/`),
//! with the raw samples in JSON.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::kernel::{self, Recipe};
use crate::paths::Paths;
use crate::session::{Schedule, Session};
use crate::suite::{self, BackendKind, CaseRun, RunOptions, Suite, Verdict};

/// Which figures to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `cargo xtask run` as a whole process: what the user waits for.
    Run,
    Boot,
    Edit,
    Suite,
    Vng,
}

impl std::str::FromStr for Part {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Part> {
        Ok(match s {
            "run" => Part::Run,
            "boot" => Part::Boot,
            "edit" => Part::Edit,
            "suite" => Part::Suite,
            "vng" => Part::Vng,
            _ => anyhow::bail!("unknown bench part `{s}`: expected run, boot, edit, suite or vng"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub parts: Vec<Part>,
    /// Runs of the short figures (boot, edit, vng).
    pub runs: usize,
    /// Runs of each whole-suite figure.
    pub suite_runs: usize,
    /// VMs at once for the suite figures.
    pub jobs: usize,
}

/// What a figure is held to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Seconds, at most.
    AtMost(f64),
    /// A ratio, at least.
    AtLeast(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
        }
    }
    fn describe(self, unit: &str) -> String {
        match self {
            Target::AtMost(t) => format!("≤ {t}{unit}"),
            Target::AtLeast(t) => format!("≥ {t}{unit}"),
        }
    }
}

/// One measured figure: its samples (seconds, or a ratio).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub key: String,
    pub label: String,
    /// "s", or "x" for a ratio.
    pub unit: String,
    pub samples: Vec<f64>,
    pub target: Option<Target>,
    /// How it was measured, in a few words.
    pub how: String,
}

impl Figure {
    fn time(key: &str, label: &str, how: &str, target: Option<f64>) -> Figure {
        Figure {
            key: key.into(),
            label: label.into(),
            unit: "s".into(),
            samples: vec![],
            target: target.map(Target::AtMost),
            how: how.into(),
        }
    }
    /// `over / under`, run by run (they alternated, so each pair saw the
    /// same machine).
    fn ratio(
        key: &str,
        label: &str,
        over: &Figure,
        under: &Figure,
        at_least: Option<f64>,
    ) -> Figure {
        Figure {
            key: key.into(),
            label: label.into(),
            unit: "x".into(),
            samples: over
                .samples
                .iter()
                .zip(&under.samples)
                .map(|(o, u)| o / u)
                .collect(),
            target: at_least.map(Target::AtLeast),
            how: "per alternating pair of runs".into(),
        }
    }

    pub fn median(&self) -> Option<f64> {
        median(&self.samples)
    }
    pub fn met(&self) -> Option<bool> {
        Some(self.target?.met(self.median()?))
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub figures: Vec<Figure>,
    /// Anything that makes a figure less than clean (a failed verdict).
    pub notes: Vec<String>,
    pub machine: String,
}

/// The case of the short figures.
const BOOT_CASE: &str = "gmem_caps";
/// The guest_memfd case run after an edit of guest_memfd.c.
const EDIT_CASE: &str = "gmem_create";
/// The kernel of the short figures.
const KERNEL: &str = "stock-7.3";
/// The file edited.
const EDITED: &str = "virt/kvm/guest_memfd.c";

/// Runs the benchmark. `say` shows progress.
pub async fn run(paths: &Paths, opts: &Options, say: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    let mut paths = paths.clone();
    // Its own logs: a bench does not overwrite the last test run's.
    paths.out = paths.out.join("bench");
    let mut report = Report {
        figures: vec![],
        notes: vec![],
        machine: machine(),
    };
    let suite = Suite::load(paths.clone(), &[], &[])?;
    let prepared = std::sync::Arc::new(suite::prepare(&suite)?);
    let one = |name: &str| {
        suite
            .cases
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("the bench needs the case {name}"))
    };
    let stock = prepared
        .kernels
        .iter()
        .find(|k| k.name == KERNEL)
        .with_context(|| format!("the bench needs the kernel {KERNEL}"))?;
    let mut check = |run: &CaseRun, what: &str| {
        if run.verdict != Verdict::Pass {
            report.notes.push(format!(
                "{what}: {} on {} was {} ({})",
                run.case,
                run.kernel,
                run.verdict.label(),
                run.reason.as_deref().unwrap_or("")
            ));
        }
    };

    let want = |p: Part| opts.parts.contains(&p);
    let mut figures = Vec::new();
    let mut run_notes = Vec::new();
    if want(Part::Run) {
        figures.extend(whole_process(&paths, opts.runs, say, &mut run_notes)?);
    }
    if want(Part::Boot) || want(Part::Vng) {
        let case = one(BOOT_CASE)?;
        let mut hermetic = Figure::time(
            "boot_to_result",
            "start-to-result, one case (hermetic, restored)",
            "gmem_caps on stock-7.3: the saved VM found, QEMU restoring it, verdict",
            Some(0.5),
        );
        let mut booted = Figure::time(
            "boot_to_result_booted",
            "boot-to-result, one case (hermetic, booted)",
            "the same case, initramfs packed and the kernel booted, alternating",
            None,
        );
        let mut vng = Figure::time(
            "boot_to_result_vng",
            "boot-to-result, one case (vng)",
            "the same case through virtme-ng, alternating with the hermetic run",
            None,
        );
        if want(Part::Vng) {
            crate::setup::vng()?;
        }
        // Not timed: the saved VM made, should this kernel have none yet.
        crate::pair::saved_vms_for(&paths, &[case], stock, &prepared, false).await?;
        for i in 0..opts.runs {
            say(&format!("start-to-result {}/{}", i + 1, opts.runs));
            let r = crate::pair::run_pair(&paths, case, stock, &prepared, RunOptions::default())
                .await?;
            check(&r, "start-to-result");
            hermetic.samples.push(r.elapsed.as_secs_f64());
            let opts = RunOptions {
                boot: true,
                ..Default::default()
            };
            let r = crate::pair::run_pair(&paths, case, stock, &prepared, opts).await?;
            check(&r, "boot-to-result");
            booted.samples.push(r.elapsed.as_secs_f64());
            if want(Part::Vng) {
                let opts = RunOptions {
                    backend: BackendKind::Vng,
                    ..Default::default()
                };
                let r = crate::pair::run_pair(&paths, case, stock, &prepared, opts).await?;
                check(&r, "vng");
                vng.samples.push(r.elapsed.as_secs_f64());
            }
        }
        if want(Part::Vng) {
            let ratio = Figure::ratio(
                "vng_over_hermetic",
                "vng / hermetic, same case",
                &vng,
                &hermetic,
                Some(5.0),
            );
            figures.extend([hermetic, booted, vng, ratio]);
        } else {
            figures.extend([hermetic, booted]);
        }
    }
    if want(Part::Edit) {
        let case = one(EDIT_CASE)?;
        let recipe = Recipe::load_named(&paths.kernels(), KERNEL)?;
        let mut total = Figure::time(
            "edit_to_result",
            "edit-to-result (touch guest_memfd.c, make, one case)",
            "stock-7.3's tree: touch, incremental make with ccache, gmem_create",
            Some(20.0),
        );
        let mut make = Figure::time("edit_make", "  of which make", "", None);
        let mut case_run = Figure::time("edit_run", "  of which the case", "", None);
        // Brings the tree's objects up to date first (not timed): the
        // tree's first make after its cache entry was published may do more
        // than an edit needs.
        say("edit-to-result: bringing stock-7.3's tree up to date");
        let (_, src) = kernel::build::make_in_tree(&paths, &recipe)?;
        for i in 0..opts.runs {
            say(&format!("edit-to-result {}/{}", i + 1, opts.runs));
            touch(&src.join(EDITED))?;
            let started = Instant::now();
            let (built, _) = kernel::build::make_in_tree(&paths, &recipe)?;
            let made = started.elapsed();
            let r = crate::pair::run_pair(&paths, case, &built, &prepared, RunOptions::default())
                .await?;
            let all = started.elapsed();
            check(&r, "edit-to-result");
            total.samples.push(all.as_secs_f64());
            make.samples.push(made.as_secs_f64());
            case_run.samples.push((all - made).as_secs_f64());
        }
        figures.extend([total, make, case_run]);
    }
    if want(Part::Suite) {
        let pairs = suite.pairs();
        let mut saving = Figure::time(
            "save_vms_cold",
            "saving the suite's VMs, per kernel, cold",
            "each kernel's saved VMs dropped, then booted and saved again (one per machine the suite asks for)",
            Some(10.0),
        );
        for k in &prepared.kernels {
            say(&format!("saving the VMs of {} (cold)", k.name));
            let cases: Vec<&crate::case::Case> = pairs
                .iter()
                .filter(|(_, kn)| *kn == k.name)
                .map(|(c, _)| *c)
                .collect();
            let started = Instant::now();
            crate::pair::saved_vms_for(&paths, &cases, k, &prepared, true).await?;
            saving.samples.push(started.elapsed().as_secs_f64());
        }
        let mut restored = Figure::time(
            "suite_warm",
            &format!("whole suite warm, restored (-j {})", opts.jobs),
            &format!(
                "{} pairs, three kernels, kernels and VMs cached",
                pairs.len()
            ),
            Some(45.0),
        );
        let mut batched = Figure::time(
            "suite_warm_shared_boots",
            &format!("whole suite warm, shared boots (--boot, -j {})", opts.jobs),
            "alternating with the restored run",
            None,
        );
        for i in 0..opts.suite_runs {
            for (boot, fig) in [(false, &mut restored), (true, &mut batched)] {
                say(&format!(
                    "whole suite {} {}/{}",
                    if boot { "in shared boots" } else { "restored" },
                    i + 1,
                    opts.suite_runs
                ));
                let schedule = Schedule {
                    batch: true,
                    jobs: Some(opts.jobs),
                    ..Schedule::default()
                };
                let run_opts = RunOptions {
                    boot,
                    ..Default::default()
                };
                let session = Session::new(suite.clone(), run_opts, schedule);
                let done = session.with_prepared(prepared.clone()).run(&|_| {}).await?;
                fig.samples.push(done.elapsed.as_secs_f64());
                for r in done.runs() {
                    check(r, "suite");
                }
            }
        }
        let ratio = Figure::ratio(
            "restore_speedup",
            "shared boots / restored, whole suite",
            &batched,
            &restored,
            None,
        );
        figures.extend([saving, restored, batched, ratio]);
    }
    report.figures = figures;
    report.notes.extend(run_notes);
    Ok(report)
}

/// `cargo xtask run gmem_caps --kernel stock-7.3`, a whole process each,
/// three ways alternating: warm (nothing around the boot), the same with
/// every fact established again (`GMEMTEST_NO_MEMO=1`: cargo for the guest
/// binaries, gcc, dpkg-query, the cache entry hashed), and through vng.
fn whole_process(
    paths: &Paths,
    runs: usize,
    say: &(dyn Fn(&str) + Sync),
    notes: &mut Vec<String>,
) -> Result<Vec<Figure>> {
    crate::setup::vng()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut warm = Figure::time(
        "run_whole_warm",
        "`cargo xtask run`, one case, whole process (hermetic, restored)",
        "gmem_caps on stock-7.3: cargo, xtask, checks, a saved VM restored, verdict",
        Some(0.6),
    );
    let mut booted = Figure::time(
        "run_whole_booted",
        "  the same, booted (--boot)",
        "the kernel booted for the case",
        None,
    );
    let mut cold = Figure::time(
        "run_whole_no_memo",
        "  the same restored, every check done again",
        "GMEMTEST_NO_MEMO=1: cargo build of the guest binaries, gcc, dpkg-query, the cache entries hashed",
        None,
    );
    let mut vng = Figure::time(
        "run_whole_vng",
        "  the same through vng",
        "--backend vng",
        None,
    );
    let one = |extra: &[&str], no_memo: bool| -> Result<f64> {
        let started = Instant::now();
        let out = std::process::Command::new(&cargo)
            .current_dir(&paths.root)
            .args(["xtask", "run", BOOT_CASE, "--kernel", KERNEL])
            .args(extra)
            .env("GMEMTEST_NO_MEMO", if no_memo { "1" } else { "0" })
            .env("GMEMTEST_OUT", &paths.out)
            .output()
            .context("cannot run cargo xtask run")?;
        let took = started.elapsed().as_secs_f64();
        if !out.status.success() {
            anyhow::bail!(
                "cargo xtask run {BOOT_CASE} {} failed ({}): {}",
                extra.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    };
    // A first run of each, not timed: whatever changed since is done once
    // (the VM saved, the guest binaries built).
    one(&[], false)?;
    one(&["--boot"], false)?;
    one(&["--backend", "vng"], false)?;
    for i in 0..runs {
        say(&format!("whole process {}/{runs}", i + 1));
        warm.samples.push(one(&[], false)?);
        booted.samples.push(one(&["--boot"], false)?);
        cold.samples.push(one(&[], true)?);
        vng.samples.push(one(&["--backend", "vng"], false)?);
    }
    let ratio = Figure::ratio(
        "run_whole_vng_over_warm",
        "  vng / hermetic restored, whole process",
        &vng,
        &warm,
        Some(8.0),
    );
    let restoring = Figure::ratio(
        "run_whole_booted_over_warm",
        "  booted / restored, whole process",
        &booted,
        &warm,
        None,
    );
    let saved = Figure::ratio(
        "run_whole_no_memo_over_warm",
        "  every check again / warm",
        &cold,
        &warm,
        None,
    );
    if warm.median().is_some_and(|m| m > 0.6) {
        notes.push(
            "whole process above 0.6 s: see the README (\"Speed\") for where the time goes".into(),
        );
    }
    Ok(vec![warm, booted, cold, vng, ratio, restoring, saved])
}

/// Sets a file's modification time to now, as `touch` does (its content is
/// unchanged). A file hard-linked with the pristine source gets its own copy
/// first, so that only this tree sees the change.
fn touch(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.nlink() > 1 {
        let data = std::fs::read(path)?;
        let tmp = path.with_extension("c.gmemtest-tmp");
        std::fs::write(&tmp, data)?;
        std::fs::set_permissions(&tmp, meta.permissions())?;
        std::fs::rename(&tmp, path)?;
    }
    let f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.set_modified(std::time::SystemTime::now())
        .with_context(|| format!("cannot touch {}", path.display()))?;
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let (accel, _) = crate::accel::Accel::detect();
    format!("{cpus} CPUs ({model}), {accel:?}")
}

fn fmt(v: f64, unit: &str) -> String {
    if unit == "x" {
        format!("{v:.1}x")
    } else if v < 10.0 {
        format!("{v:.2} s")
    } else {
        format!("{v:.1} s")
    }
}

/// The line before the README's generated table of figures.
pub const README_START: &str =
    "<!-- generated from xtask/bench.json by `cargo xtask bench --readme`: do not edit -->";
/// The line after it.
pub const README_END: &str = "<!-- end of the generated table -->";

/// The measurements the README shows, kept in the repository.
pub fn readme_figures(paths: &Paths) -> PathBuf {
    paths.root.join("xtask").join("bench.json")
}

/// `readme` with the text between [`README_START`] and [`README_END`]
/// replaced by `report`'s table.
pub fn readme_with(readme: &str, report: &Report) -> Result<String> {
    let start = readme
        .find(README_START)
        .context("the README has no generated bench table (its start line is missing)")?
        + README_START.len();
    let end = readme[start..]
        .find(README_END)
        .context("the README's generated bench table has no end line")?
        + start;
    Ok(format!(
        "{}\n{}{}",
        &readme[..start],
        report.markdown(),
        &readme[end..]
    ))
}

impl Report {
    /// Reads a `bench.json` that [`Report::write`] wrote.
    pub fn read(path: &Path) -> Result<Report> {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a bench report", path.display()))
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!("Machine: {}\n\n", self.machine);
        s += "| figure | median | min | max | runs | target | met |\n";
        s += "|---|---:|---:|---:|---:|---|---|\n";
        for f in &self.figures {
            let (Some(med), Some(min), Some(max)) = (
                f.median(),
                f.samples.iter().copied().reduce(f64::min),
                f.samples.iter().copied().reduce(f64::max),
            ) else {
                continue;
            };
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                f.label,
                fmt(med, &f.unit),
                fmt(min, &f.unit),
                fmt(max, &f.unit),
                f.samples.len(),
                f.target
                    .map(|t| t.describe(if f.unit == "x" { "x" } else { " s" }))
                    .unwrap_or_default(),
                match f.met() {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            );
        }
        if !self.notes.is_empty() {
            s += "\nNot clean:\n";
            for n in &self.notes {
                s += &format!("- {n}\n");
            }
        }
        s
    }

    /// A horizontal bar chart of the time figures (median bars, min-max
    /// whiskers, on a log scale so that 2 s and 100 s both read), the ratios
    /// written beside.
    pub fn svg(&self) -> String {
        let times: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.unit == "s" && !f.samples.is_empty())
            .collect();
        let ratios: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.unit == "x" && !f.samples.is_empty())
            .collect();
        // Room for the longest label (about 6.8 px a character at 12 px).
        let longest = times
            .iter()
            .map(|f| f.label.chars().count())
            .max()
            .unwrap_or(10);
        let (left, width, row) = (20.0 + 6.8 * longest as f64, 420.0, 26.0);
        let top = 40.0;
        let height = top + row * times.len() as f64 + 40.0 + 20.0 * ratios.len() as f64 + 10.0;
        let (lo, hi) = (0.1f64, 1000.0f64);
        let x = |v: f64| {
            left + width * (v.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10())
        };
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">gmemtest bench: medians (bars), min-max (lines), seconds, log scale</text>
"#,
            w = left + width + 80.0
        );
        for g in [0.1, 1.0, 10.0, 100.0, 1000.0] {
            let gx = x(g);
            s += &format!(
                r##"<line x1="{gx:.1}" y1="{y1}" x2="{gx:.1}" y2="{y2}" stroke="#ddd"/><text x="{gx:.1}" y="{ty}" text-anchor="middle" fill="#666">{g}</text>
"##,
                y1 = top - 5.0,
                y2 = top + row * times.len() as f64,
                ty = top + row * times.len() as f64 + 14.0
            );
        }
        for (i, f) in times.iter().enumerate() {
            let y = top + row * i as f64;
            let med = f.median().unwrap_or(0.0);
            let min = f.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = f.samples.iter().copied().fold(0.0, f64::max);
            let colour = match f.met() {
                Some(false) => "#d9534f",
                Some(true) => "#5cb85c",
                None => "#5b8bd9",
            };
            s += &format!(
                r##"<text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>
<rect x="{left}" y="{by:.1}" width="{bw:.1}" height="16" fill="{colour}"/>
<line x1="{x1:.1}" y1="{my:.1}" x2="{x2:.1}" y2="{my:.1}" stroke="black"/>
<text x="{vx:.1}" y="{ty:.1}">{value}</text>
"##,
                tx = left - 8.0,
                ty = y + 13.0,
                label = escape(&f.label),
                by = y + 1.0,
                bw = (x(med) - left).max(1.0),
                x1 = x(min),
                x2 = x(max),
                my = y + 9.0,
                vx = match f.target {
                    Some(Target::AtMost(t)) => x(max).max(x(t)),
                    _ => x(max),
                } + 6.0,
                value = fmt(med, "s"),
            );
            if let Some(Target::AtMost(t)) = f.target {
                let tx = x(t);
                s += &format!(
                    r##"<line x1="{tx:.1}" y1="{y0:.1}" x2="{tx:.1}" y2="{y1:.1}" stroke="black" stroke-dasharray="3,2"/>
"##,
                    y0 = y - 1.0,
                    y1 = y + 19.0
                );
            }
        }
        let mut y = top + row * times.len() as f64 + 40.0;
        for f in ratios {
            s += &format!(
                r#"<text x="10" y="{y:.1}">{}: {} (median){}</text>
"#,
                escape(&f.label),
                fmt(f.median().unwrap_or(0.0), "x"),
                f.target
                    .map(|t| format!(", target {}", escape(&t.describe("x"))))
                    .unwrap_or_default()
            );
            y += 20.0;
        }
        s += "</svg>\n";
        s
    }

    /// Writes `bench.md`, `bench.svg` and `bench.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let files = [
            (dir.join("bench.md"), self.markdown()),
            (dir.join("bench.svg"), self.svg()),
            (dir.join("bench.json"), serde_json::to_string_pretty(self)?),
        ];
        for (p, text) in &files {
            crate::paths::write_atomic(p, text.as_bytes())?;
        }
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(key: &str, unit: &str, samples: &[f64], target: Option<Target>) -> Figure {
        Figure {
            key: key.into(),
            label: format!("label <{key}>"),
            unit: unit.into(),
            samples: samples.to_vec(),
            target,
            how: String::new(),
        }
    }

    /// The README's figures are exactly what `xtask/bench.json` holds
    /// (`UPDATE_README=1` writes them).
    #[test]
    fn the_readme_table_is_generated_from_bench_json() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme_path = root.join("README.md");
        let readme = std::fs::read_to_string(&readme_path).unwrap();
        let report = Report::read(&root.join("xtask/bench.json")).unwrap();
        let want = readme_with(&readme, &report).unwrap();
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&readme_path, &want).unwrap();
            return;
        }
        assert!(
            readme == want,
            "the README's bench table differs from xtask/bench.json: run `UPDATE_README=1 cargo test -p gmem-runner --lib bench`"
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn the_table_says_whether_targets_are_met() {
        let r = Report {
            figures: vec![
                fig("a", "s", &[1.5, 1.9, 2.5], Some(Target::AtMost(2.0))),
                fig("b", "s", &[25.0, 21.0, 30.0], Some(Target::AtMost(20.0))),
                fig("r", "x", &[4.0, 6.0, 5.5], Some(Target::AtLeast(5.0))),
                fig("empty", "s", &[], None),
            ],
            notes: vec!["suite: x on k was FAIL".into()],
            machine: "2 CPUs".into(),
        };
        let md = r.markdown();
        assert!(
            md.contains("| label <a> | 1.90 s | 1.50 s | 2.50 s | 3 | ≤ 2 s | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| label <b> | 25.0 s | 21.0 s | 30.0 s | 3 | ≤ 20 s | **no** |"),
            "{md}"
        );
        assert!(
            md.contains("| label <r> | 5.5x | 4.0x | 6.0x | 3 | ≥ 5x | yes |"),
            "{md}"
        );
        assert!(
            !md.contains("label <empty>"),
            "a figure with no samples is left out"
        );
        assert!(md.contains("- suite: x on k was FAIL"));
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("label &lt;a&gt;"), "labels are escaped");
        assert_eq!(
            svg.matches("<rect x=").count(),
            2,
            "one bar per time figure"
        );
        assert!(svg.contains("label &lt;r&gt;: 5.5x (median), target ≥ 5x"));
    }
}
