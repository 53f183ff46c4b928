//! Batch mode: the cases of one kernel that do not expect a crash share one
//! boot, and many boots run side by side.
//!
//! A batch boots once with a plan of several cases. init writes a marker for
//! each case into the kernel log before its steps (so the marker is ordered
//! with the kernel's messages) and sends CaseStart/CaseEnd records around
//! them. [`split`] cuts the console at the markers and the records at the
//! case records: each case gets the boot's prelude (the kernel's start-up,
//! which a boot of its own would show too) plus its own section, and is
//! judged from that exactly as if it had booted alone.
//!
//! When a case of a batch does not end cleanly (a crash in its section, or
//! the VM dies or hangs during it), the runner runs that case again alone
//! (its own boot gives the verdict) and the cases after it in a fresh batch:
//! they would otherwise run on a kernel that has already oopsed. A batched
//! case that does not pass is also run again alone, and its own boot gives
//! the verdict; if it passes there, the note says that an earlier case of the
//! batch changed its outcome. So verdicts and snapshots are those of one boot
//! per case (`runner/tests/batch.rs` checks this).

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::boot::{self, BootEnd, BootResult};
use crate::case::Case;
use crate::kernel::BuiltKernel;
use crate::options::{fresh_log_dir, log_dir, BackendKind, RunOptions};
use crate::pair::{self, Machine};
use crate::paths::Paths;
use crate::prepared::Prepared;
use crate::report;
use crate::verdict::{self, BootMode, CaseRun, RerunReason, Verdict};
use gmem_protocol::{case_of_marker, Plan, Record};

/// Cases that run in one boot (one case: a boot of its own).
#[derive(Debug, Clone)]
pub struct Unit<'a> {
    pub kernel: &'a str,
    pub cases: Vec<&'a Case>,
}

/// Whether `case` may share a boot on `kernel`: it does not expect a crash
/// there, and its file does not ask for a fresh kernel (`batch: false`).
pub fn batchable(case: &Case, kernel: &str) -> bool {
    case.batch && !case.expects_crash(kernel)
}

/// The boots for `pairs` (in their order). With `batch`, the batchable
/// cases of each kernel that want the same machine (memory, CPUs, command
/// line) share one boot; every other pair boots alone.
pub fn units<'a>(pairs: &[(&'a Case, &'a str)], batch: bool) -> Vec<Unit<'a>> {
    let mut units: Vec<Unit<'a>> = Vec::new();
    for &(case, kernel) in pairs {
        if batch && batchable(case, kernel) {
            let joins = units.iter_mut().find(|u| {
                u.kernel == kernel
                    && batchable(u.cases[0], kernel)
                    && Machine::of(&[u.cases[0]]).same_shape(&Machine::of(&[case]))
            });
            if let Some(u) = joins {
                u.cases.push(case);
                continue;
            }
        }
        units.push(Unit {
            kernel,
            cases: vec![case],
        });
    }
    units
}

/// One case's part of a batch boot.
#[derive(Debug, Clone)]
pub struct Section {
    /// What the case would have got from a boot of its own: the prelude and
    /// its own console lines and records.
    pub boot: BootResult,
    /// The first console line of the case's own (after the prelude).
    pub own_from: usize,
    /// init sent the case's CaseEnd: every step ran and reported.
    pub complete: bool,
}

/// Cuts a batch boot into one [`Section`] per case of `cases` (the plan's
/// order). `None` for a case that never started (no CaseStart record).
pub fn split(batch: &BootResult, cases: &[&str]) -> Vec<Option<Section>> {
    let lines: Vec<&str> = batch.console.lines().collect();
    let mut markers: Vec<(usize, &str)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(c) = case_of_marker(l) {
            if cases.contains(&c) && !markers.iter().any(|(_, m)| *m == c) {
                markers.push((i, c));
            }
        }
    }
    let prelude_end = markers.first().map(|(i, _)| *i).unwrap_or(lines.len());
    let prelude = &lines[..prelude_end];

    let case_start = |name: &str| {
        batch
            .records
            .iter()
            .position(|r| matches!(r, Record::CaseStart { case } if case == name))
    };
    let first_start = cases
        .iter()
        .filter_map(|c| case_start(c))
        .min()
        .unwrap_or(batch.records.len());
    // Records before any case (Hello, init's own errors) belong to every case.
    let common = 0..first_start;

    cases
        .iter()
        .map(|&name| {
            let start = case_start(name)?;
            let next_start = batch.records[start + 1..]
                .iter()
                .position(|r| matches!(r, Record::CaseStart { .. }))
                .map(|p| start + 1 + p)
                .unwrap_or(batch.records.len());
            // Only before the next case starts: init runs cases one after
            // another, so a stream that says otherwise is garbled, and no
            // case's section may hold another case's records.
            let end = batch.records[start..next_start]
                .iter()
                .position(|r| matches!(r, Record::CaseEnd { case } if case == name))
                .map(|p| start + p);
            let own = start..end.map(|e| e + 1).unwrap_or(next_start);
            let mut records: Vec<Record> = batch.records[common.clone()].to_vec();
            records.extend_from_slice(&batch.records[own.clone()]);
            let mut record_times: Vec<Duration> = batch.record_times[common.clone()].to_vec();
            record_times.extend_from_slice(&batch.record_times[own.clone()]);
            if let Some(e) = end {
                // A boot of its own would end here.
                records.push(Record::Done);
                record_times.push(batch.record_times[e]);
            }
            let (mut bad_lines, mut bad_line_positions) = (Vec::new(), Vec::new());
            for (l, &p) in batch.bad_lines.iter().zip(&batch.bad_line_positions) {
                if p <= common.end || (p > own.start && p <= own.end) {
                    bad_lines.push(l.clone());
                    bad_line_positions.push(p);
                }
            }
            // The console: the prelude, then from the case's marker to the
            // next case's (the last case's runs to the end of the boot).
            let mut console: Vec<&str> = prelude.to_vec();
            let own_from = console.len();
            // The runner's own lines, where they fall in this console.
            let mut runner_notes: Vec<usize> = batch
                .runner_notes
                .iter()
                .copied()
                .filter(|&n| n < prelude_end)
                .collect();
            if let Some(at) = markers.iter().position(|(_, m)| *m == name) {
                let to = markers.get(at + 1).map(|(i, _)| *i).unwrap_or(lines.len());
                let own = markers[at].0..to;
                console.extend_from_slice(&lines[own.clone()]);
                runner_notes.extend(
                    batch
                        .runner_notes
                        .iter()
                        .filter(|n| own.contains(n))
                        .map(|n| own_from + n - own.start),
                );
            }
            let mut console = console.join("\n");
            console.push('\n');
            let began = batch.record_times[start];
            let complete = end.is_some();
            Some(Section {
                boot: BootResult {
                    console,
                    records,
                    record_times,
                    bad_lines,
                    bad_line_positions,
                    runner_notes,
                    end: if complete {
                        BootEnd::Exited { code: Some(0) }
                    } else {
                        batch.end.clone()
                    },
                    elapsed: end
                        .map(|e| batch.record_times[e].saturating_sub(began))
                        .unwrap_or(batch.elapsed.saturating_sub(began)),
                    qemu_stderr: batch.qemu_stderr.clone(),
                },
                own_from,
                complete,
            })
        })
        .collect()
}

/// Where a batch's own logs go: beside its cases', named by its first case.
pub fn batch_dir(paths: &Paths, kernel: &str, first_case: &str, backend: BackendKind) -> PathBuf {
    log_dir(paths, &format!("batch@{first_case}"), kernel, backend)
}

/// What one batch boot gave.
struct BatchBoot<'a> {
    /// The cases judged from their sections.
    judged: Vec<CaseRun>,
    /// The case whose section went wrong, and why: it runs again alone.
    broken: Option<(&'a Case, RerunReason)>,
    /// The cases after it: they run again in a fresh batch.
    rest: Vec<&'a Case>,
}

/// Boots `cases` (two or more) together and judges each from its section.
async fn run_batch<'a>(
    paths: &Paths,
    cases: &[&'a Case],
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> Result<BatchBoot<'a>> {
    let dir = batch_dir(paths, &kernel.name, &cases[0].name, opts.backend);
    let res = boot_batch(&dir, cases, kernel, prepared, opts).await?;
    let mode = BootMode::Batched {
        cases: cases.len(),
        dir: dir.clone(),
    };
    if !res
        .records
        .iter()
        .any(|r| matches!(r, Record::Hello { .. }))
    {
        // init never came up: each case alone would see this same boot, so
        // each is judged from all of it (no boot per case to learn that the
        // kernel does not boot).
        let mut judged = Vec::new();
        for c in cases {
            let mut run = conclude_in_batch(paths, c, kernel, &res, opts)?;
            run.boot = mode.clone();
            judged.push(run);
        }
        return Ok(BatchBoot {
            judged,
            broken: None,
            rest: vec![],
        });
    }
    judge_sections(paths, cases, kernel, &res, &mode, opts)
}

/// Packs and boots one shared boot, its logs in `dir`; the console shows
/// which case the boot is at (or all of it, streamed).
async fn boot_batch(
    dir: &Path,
    cases: &[&Case],
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> Result<BootResult> {
    fresh_log_dir(dir)?;
    let plan = Plan::batch(cases.iter().map(|c| c.plan.clone()).collect());
    let machine = Machine::of(cases);
    let (cfg, _sock_dir) = pair::launch(dir, &plan, cases, &machine, kernel, prepared, opts)?;
    pair::write_command_line(dir, &cfg, opts.backend)?;
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    std::fs::write(dir.join("cases.txt"), names.join("\n") + "\n")?;
    let prefix = format!("[batch@{}] ", kernel.name);
    let res = boot::boot(&cfg, |line| {
        if opts.stream {
            eprintln!("{prefix}{line}");
        } else if let Some(c) = case_of_marker(line) {
            let at = names.iter().position(|n| *n == c).unwrap_or(0) + 1;
            eprintln!(
                "      [{}: {at}/{} in one boot] {c} ...",
                kernel.name,
                names.len()
            );
        }
    })
    .await
    .with_context(|| {
        format!(
            "batch of {} cases on kernel {} ({}): boot failed",
            cases.len(),
            kernel.name,
            names.join(", ")
        )
    })?;
    pair::keep_boot_logs(dir, &res)?;
    Ok(res)
}

/// Judges each case of a shared boot whose init came up from its section,
/// up to the first that went wrong (that one runs again alone, the rest in
/// a fresh shared boot). Were the runner interrupted, the cases it cut off
/// are interrupted, not rerun.
fn judge_sections<'a>(
    paths: &Paths,
    cases: &[&'a Case],
    kernel: &BuiltKernel,
    res: &BootResult,
    mode: &BootMode,
    opts: RunOptions,
) -> Result<BatchBoot<'a>> {
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    let dir = match mode {
        BootMode::Batched { dir, .. } => dir.clone(),
        _ => unreachable!("a shared boot's mode"),
    };
    let mut judged = Vec::new();
    for (i, (case, section)) in cases.iter().zip(split(res, &names)).enumerate() {
        let why = match &section {
            None => Some(RerunReason::KernelStoppedEarlier),
            Some(s) if !s.complete => Some(RerunReason::DidNotFinish {
                end: res.end.clone(),
            }),
            Some(s) => report::find_crashes(&s.boot.console)
                .iter()
                .find(|c| c.line_no >= s.own_from)
                .map(|c| RerunReason::CrashedInBatch {
                    title: c.title.clone(),
                }),
        };
        if why.is_some() && res.end == BootEnd::Interrupted {
            for c in &cases[i..] {
                judged.push(verdict::interrupted(
                    paths,
                    &c.name,
                    &kernel.name,
                    opts.backend,
                ));
            }
            break;
        }
        if let Some(why) = why {
            return Ok(BatchBoot {
                judged,
                broken: Some((case, why)),
                rest: cases[i + 1..].to_vec(),
            });
        }
        let section = section.expect("complete");
        let mut run = conclude_in_batch(paths, case, kernel, &section.boot, opts)?;
        let others = cases.len() - 1;
        std::fs::write(
            run.log_dir.join("batch.txt"),
            format!(
                "This case booted together with {others} other{}; its console.log is the boot's prelude and its own section.\nThe whole boot's logs: {}\nIts cases, in order:\n{}\n",
                if others == 1 { "" } else { "s" },
                dir.display(),
                names.join("\n")
            ),
        )?;
        run.boot = mode.clone();
        judged.push(run);
    }
    Ok(BatchBoot {
        judged,
        broken: None,
        rest: vec![],
    })
}

/// Where the logs of a batched case that is run again alone are kept.
fn in_batch_dir(log_dir: &std::path::Path) -> PathBuf {
    let mut name = log_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".in-batch");
    log_dir.with_file_name(name)
}

fn conclude_in_batch(
    paths: &Paths,
    case: &Case,
    kernel: &BuiltKernel,
    res: &BootResult,
    opts: RunOptions,
) -> Result<CaseRun> {
    let dir = log_dir(paths, &case.name, &kernel.name, opts.backend);
    fresh_log_dir(&dir)?;
    let _ = std::fs::remove_dir_all(in_batch_dir(&dir));
    pair::conclude(paths, case, kernel, &dir, res, opts)
}

/// Runs one unit to the verdicts of all its cases (reruns included); each
/// verdict is passed to `done` as soon as it is known. Once the runner is
/// interrupted, nothing more boots: the cases left are interrupted.
pub async fn run_unit(
    paths: &Paths,
    unit: &Unit<'_>,
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
    done: &(dyn Fn(&CaseRun) + Sync),
) -> Vec<CaseRun> {
    let mut out = Vec::new();
    let mut finish = |run: CaseRun| {
        done(&run);
        out.push(run);
    };
    // Cases to boot, with the reason when one is a rerun alone.
    let mut queue: VecDeque<(Vec<&Case>, Option<RerunReason>)> = VecDeque::new();
    queue.push_back((unit.cases.clone(), None));
    while let Some((cases, rerun)) = queue.pop_front() {
        if crate::interrupt::raised() {
            for c in cases {
                finish(verdict::interrupted(
                    paths,
                    &c.name,
                    &kernel.name,
                    opts.backend,
                ));
            }
            continue;
        }
        if cases.len() == 1 {
            let mut run = run_alone(paths, cases[0], kernel, prepared, opts).await;
            if let Some(why) = rerun {
                run.boot = BootMode::Rerun { why };
            }
            finish(run);
            continue;
        }
        match run_batch(paths, &cases, kernel, prepared, opts).await {
            Ok(b) => {
                for run in b.judged {
                    if matches!(run.verdict, Verdict::Pass | Verdict::Interrupted) {
                        finish(run);
                        continue;
                    }
                    // Its own boot gives the verdict; what it did in the
                    // batch is kept beside.
                    let case = cases.iter().find(|c| c.name == run.case).expect("case");
                    let kept = in_batch_dir(&run.log_dir);
                    let _ = std::fs::rename(&run.log_dir, &kept);
                    let why = RerunReason::DidNotPass {
                        verdict: run.verdict,
                        reason: run.reason,
                        logs: kept,
                    };
                    queue.push_front((vec![*case], Some(why)));
                }
                if let Some((case, why)) = b.broken {
                    if !b.rest.is_empty() {
                        queue.push_back((b.rest, None));
                    }
                    queue.push_front((vec![case], Some(why)));
                }
            }
            Err(e) => {
                // The batch could not even start: each case alone says why.
                let why = RerunReason::BatchCouldNotRun {
                    error: format!("{e:#}"),
                };
                for c in cases {
                    queue.push_back((vec![c], Some(why.clone())));
                }
            }
        }
    }
    out
}

/// One case in a boot of its own; its failure to run is its verdict.
async fn run_alone(
    paths: &Paths,
    case: &Case,
    kernel: &BuiltKernel,
    prepared: &Prepared,
    opts: RunOptions,
) -> CaseRun {
    let started = Instant::now();
    let mut run = pair::run_pair(paths, case, kernel, prepared, opts)
        .await
        .unwrap_or_else(|e| verdict::errored(paths, &case.name, &kernel.name, opts.backend, &e));
    run.elapsed = started.elapsed();
    run
}

/// How many VMs at once, by default: one per host CPU (the guests' vCPUs
/// are host threads under TCG, mostly idle or one busy at a time in these
/// cases), and no more than the memory holds.
pub fn default_jobs(cases: &[&Case]) -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    cpus.min(jobs_by_memory(cases))
}

/// How many of the largest guests fit in the memory available now, with
/// QEMU's own overhead.
pub fn jobs_by_memory(cases: &[&Case]) -> usize {
    let need_mb = cases
        .iter()
        .map(|c| c.memory_mb as u64)
        .max()
        .unwrap_or(1024)
        + 256;
    let avail_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    ((avail_kb / 1024 / need_mb) as usize).max(1)
}

/// Runs `units` at most `jobs` at a time; the verdicts in no set order.
pub async fn run_units(
    paths: &Paths,
    units: &[Unit<'_>],
    prepared: &Prepared,
    opts: RunOptions,
    jobs: usize,
    done: &(dyn Fn(&CaseRun) + Sync),
) -> Result<Vec<CaseRun>> {
    use futures_util::stream::{self, StreamExt};
    let mut work = Vec::new();
    for u in units {
        let kernel = prepared
            .kernels
            .iter()
            .find(|k| k.name == u.kernel)
            .ok_or_else(|| anyhow::anyhow!("kernel {} was not built", u.kernel))?;
        work.push((u, kernel));
    }
    // The futures made up front (not by a closure of the stream), so the
    // whole run is Send for any lifetime: xtask runs it as a task.
    let futures: Vec<_> = work
        .into_iter()
        .map(|(u, k)| run_unit(paths, u, k, prepared, opts, done))
        .collect();
    let runs: Vec<Vec<CaseRun>> = stream::iter(futures)
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    Ok(runs.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmem_protocol::{case_marker, StepExit};

    fn hello() -> Record {
        Record::Hello {
            protocol: gmem_protocol::PROTOCOL_VERSION,
            kernel_release: "7.3.4".into(),
            cpus: 2,
        }
    }

    fn step_end(step: &str) -> Record {
        Record::StepEnd {
            step: step.into(),
            exit: StepExit::Exited { code: 0 },
            observation: Some(serde_json::json!({"ok": true})),
            bad_output: None,
            duration_ms: 1,
        }
    }

    fn batch_of(console: &str, records: Vec<Record>, end: BootEnd) -> BootResult {
        let n = records.len();
        BootResult {
            console: console.into(),
            records,
            record_times: (0..n)
                .map(|i| Duration::from_millis(100 * i as u64))
                .collect(),
            bad_lines: vec![],
            bad_line_positions: vec![],
            runner_notes: vec![],
            end,
            elapsed: Duration::from_secs(5),
            qemu_stderr: String::new(),
        }
    }

    #[test]
    fn each_case_gets_the_prelude_and_its_own_section() {
        let console = format!(
            "[    0.1] Linux version 7.3.4\n[    0.5] kvm_amd: Nested Virtualization enabled\n[    0.9] {}\ngmemtest: step s ...\n[    1.0] {}\ngmemtest: step t ...\n[    1.1] reboot: Restarting system\n",
            case_marker("a"),
            case_marker("b")
        );
        let records = vec![
            hello(),
            Record::CaseStart { case: "a".into() },
            Record::StepStart {
                step: "s".into(),
                probe: "caps".into(),
            },
            step_end("s"),
            Record::CaseEnd { case: "a".into() },
            Record::CaseStart { case: "b".into() },
            Record::StepStart {
                step: "t".into(),
                probe: "caps".into(),
            },
            step_end("t"),
            Record::CaseEnd { case: "b".into() },
            Record::Done,
        ];
        let b = batch_of(&console, records, BootEnd::Exited { code: Some(0) });
        let s = split(&b, &["a", "b"]);
        let a = s[0].as_ref().unwrap();
        assert!(a.complete);
        assert_eq!(a.own_from, 2);
        assert_eq!(
            a.boot.console.lines().collect::<Vec<_>>(),
            [
                "[    0.1] Linux version 7.3.4",
                "[    0.5] kvm_amd: Nested Virtualization enabled",
                "[    0.9] gmemtest: begin case a",
                "gmemtest: step s ...",
            ]
        );
        assert!(matches!(a.boot.records[0], Record::Hello { .. }));
        assert!(matches!(a.boot.records.last(), Some(Record::Done)));
        assert!(!a
            .boot
            .records
            .iter()
            .any(|r| matches!(r, Record::StepStart { step, .. } if step == "t")));
        // From a's CaseStart (100 ms) to its CaseEnd (400 ms).
        assert_eq!(a.boot.elapsed, Duration::from_millis(300));
        let bb = s[1].as_ref().unwrap();
        assert!(
            bb.boot.console.contains("reboot: Restarting system"),
            "the last case runs to the end"
        );
        assert!(!bb.boot.console.contains("step s"));
        assert_eq!(bb.boot.records.len(), 1 + 4 + 1);
    }

    /// init runs cases one after another; a stream that interleaves them
    /// is garbled, and no case's section may take another case's records.
    #[test]
    fn a_case_end_after_another_case_began_does_not_complete_it() {
        let records = vec![
            Record::CaseStart { case: "b".into() },
            Record::CaseStart { case: "a".into() },
            Record::CaseEnd { case: "b".into() },
        ];
        let b = batch_of("", records, BootEnd::Exited { code: Some(0) });
        let s = split(&b, &["a", "b"]);
        let bb = s[1].as_ref().unwrap();
        assert!(!bb.complete);
        assert_eq!(bb.boot.records, [Record::CaseStart { case: "b".into() }]);
    }

    #[test]
    fn a_case_the_vm_died_in_is_incomplete_and_later_ones_never_began() {
        let console = format!(
            "[    0.1] Linux\n[    0.9] {}\n[    1.0] BUG: unable to handle page fault\n[    1.1] Kernel panic - not syncing: Fatal exception\n",
            case_marker("a")
        );
        let records = vec![
            hello(),
            Record::CaseStart { case: "a".into() },
            Record::StepStart {
                step: "s".into(),
                probe: "gup_read".into(),
            },
        ];
        let b = batch_of(&console, records, BootEnd::Exited { code: Some(0) });
        let s = split(&b, &["a", "b"]);
        let a = s[0].as_ref().unwrap();
        assert!(!a.complete);
        assert_eq!(a.boot.end, BootEnd::Exited { code: Some(0) });
        assert!(a.boot.console.contains("Kernel panic"));
        assert!(!a.boot.records.iter().any(|r| matches!(r, Record::Done)));
        assert!(s[1].is_none());
    }

    /// The runner's own lines (its NMI note) are known by place in each
    /// section's console, as in the whole boot's.
    #[test]
    fn the_runners_notes_keep_their_place_in_a_section() {
        let console = format!(
            "[ 0.1] Linux\n[ 0.9] {}\n[ 1.0] {}\ngmemtest: step t ...\n{} 5s: sending an NMI for backtraces\n[ 9.0] NMI backtrace\n",
            case_marker("a"),
            case_marker("b"),
            crate::nmi::NMI_NOTE
        );
        let records = vec![
            hello(),
            Record::CaseStart { case: "a".into() },
            Record::CaseEnd { case: "a".into() },
            Record::CaseStart { case: "b".into() },
        ];
        let mut b = batch_of(
            &console,
            records,
            BootEnd::Hung {
                silent_for: Duration::from_secs(5),
            },
        );
        b.runner_notes = vec![4];
        let s = split(&b, &["a", "b"]);
        assert!(s[0].as_ref().unwrap().boot.runner_notes.is_empty());
        let bb = &s[1].as_ref().unwrap().boot;
        assert_eq!(bb.runner_notes, [3]);
        let line = bb.console.lines().nth(3).unwrap();
        assert!(line.starts_with(crate::nmi::NMI_NOTE), "{line}");
    }

    #[test]
    fn bad_result_lines_go_with_their_case() {
        let console = format!("[ 0.9] {}\n[ 1.0] {}\n", case_marker("a"), case_marker("b"));
        let records = vec![
            hello(),
            Record::CaseStart { case: "a".into() },
            Record::CaseEnd { case: "a".into() },
            Record::CaseStart { case: "b".into() },
            Record::CaseEnd { case: "b".into() },
        ];
        let mut b = batch_of(&console, records, BootEnd::Exited { code: Some(0) });
        // One line after a's CaseStart (two records before it), one after b's.
        b.bad_lines = vec!["garbage in a".into(), "garbage in b".into()];
        b.bad_line_positions = vec![2, 4];
        let s = split(&b, &["a", "b"]);
        assert_eq!(s[0].as_ref().unwrap().boot.bad_lines, ["garbage in a"]);
        assert_eq!(s[1].as_ref().unwrap().boot.bad_lines, ["garbage in b"]);
    }
}
