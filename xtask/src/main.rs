//! gmemtest's command line. Thin: parsing, printing and exit codes; the work
//! is in the `runner` library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

use runner::kernel::Flavor;
use runner::paths::Paths;
use runner::session::{Event, Report, Schedule, Session};
use runner::suite::{BackendKind, BootMode, CaseRun, RunOptions, Suite, Verdict};

/// Exit codes, documented in the README.
mod exit {
    pub const PASS: u8 = 0;
    /// A snapshot differs, or is new.
    pub const SNAPSHOT: u8 = 1;
    /// A kernel crash (or hang) the case did not expect, or none where expected.
    pub const CRASH: u8 = 3;
    /// The framework could not run: setup, build, QEMU, bad input.
    pub const INFRA: u8 = 4;
    /// `--repeat`: a pair's outcome differed between its runs (a flake).
    pub const FLAKY: u8 = 5;
    /// Infrastructure faults, each its own code (runner::fault).
    pub const DISK_FULL: u8 = 6;
    pub const QEMU_MISSING: u8 = 7;
    pub const QEMU_FAILED: u8 = 8;
    pub const KERNEL_NO_INIT: u8 = 9;
    pub const RESULT_PORT_SILENT: u8 = 10;
    /// Interrupted (Ctrl-C / SIGTERM).
    pub const INTERRUPTED: u8 = 130;

    /// The code of a framework failure: its fault's own, or INFRA.
    pub fn of_fault(kind: Option<runner::fault::Kind>) -> u8 {
        use runner::fault::Kind;
        match kind {
            Some(Kind::DiskFull) => DISK_FULL,
            Some(Kind::QemuMissing) => QEMU_MISSING,
            Some(Kind::QemuFailed) => QEMU_FAILED,
            Some(Kind::KernelNoInit) => KERNEL_NO_INIT,
            Some(Kind::ResultPortSilent) => RESULT_PORT_SILENT,
            None => INFRA,
        }
    }

    /// The code of a whole session's result.
    pub fn of_session(result: runner::session::Overall) -> u8 {
        use runner::session::Overall;
        match result {
            Overall::Pass => PASS,
            Overall::Interrupted => INTERRUPTED,
            Overall::Fault(kind) => of_fault(kind),
            Overall::Flaky => FLAKY,
            Overall::Crash => CRASH,
            Overall::Snapshot => SNAPSHOT,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "gmemtest: guest_memfd direct-map tests in QEMU-booted kernels"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum VariantCmd {
    /// Write kernels/NAME.yaml: a variant built like another (its source,
    /// fragments and tags) with a series as mailed as its patches. With the
    /// tags, it joins every case that names them: no case file is edited.
    New {
        name: String,
        /// The series: an mbox, a maildir, or a folder of .eml/.patch files
        /// (copied into kernels/patches/NAME/).
        #[arg(long)]
        series: std::path::PathBuf,
        /// The variant whose source, fragments, debug info and tags it takes.
        #[arg(long, default_value = "stock-7.3")]
        like: String,
        /// Its tags instead of the other variant's (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SeriesCmd {
    /// A table of every patch: applies clean, with offsets or fuzz (which
    /// hunks), or fails (the rejected hunks and the file's text where they
    /// were meant to go); every patch is tried on the tree as it stands after
    /// those before it that applied. Exit 1 when a patch fails.
    Check {
        /// The series: an mbox, a maildir, or a folder of .eml/.patch files.
        #[arg(long)]
        series: Option<std::path::PathBuf>,
        /// The kernel recipes to check onto (their sources, then their own
        /// patches); several give a patch x base table. Without --series,
        /// each recipe's own patches are checked.
        #[arg(long = "onto", default_value = "stock-7.3")]
        onto: Vec<String>,
    },
    /// A git tree of a recipe's base with the series' patches as commits
    /// (the recipe's own patches first); the first that does not apply is
    /// applied as far as it goes, its rejects in .rej files, for you to
    /// resolve with git.
    Port {
        #[arg(long)]
        series: std::path::PathBuf,
        /// The kernel recipe whose base the series goes onto.
        #[arg(long)]
        onto: String,
        /// The new directory for the tree (a full copy of the base).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// The variant's base and every prefix of its patches, built and run
    /// through its cases: case by case, the first patch after which the
    /// outcome changed, and how.
    Walk {
        /// The variant (its `patches:` and `series:`).
        variant: String,
        /// Only these cases (default: every case of the variant).
        #[arg(long = "case", short = 'c')]
        cases: Vec<String>,
        /// Also write the walk as plain text to this file.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// A port's commits back into a series: `git format-patch` files.
    Export {
        /// The port's directory.
        #[arg(long)]
        from: std::path::PathBuf,
        /// A new (or empty) directory for the patches.
        #[arg(long)]
        to: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the host packages (as root; otherwise print the command) and fetch the kernel sources.
    Setup,
    /// Build kernel variants (all by default).
    Build {
        #[arg(long = "kernel", short = 'k')]
        kernels: Vec<String>,
        /// The kernels' flavor: `normal`, or `debug` (KASAN, KFENCE, lockdep,
        /// DEBUG_VM, DEBUG_PAGEALLOC, ...: kernels/fragments/debug.config).
        #[arg(long, default_value = "normal", value_parser = parse_flavor)]
        flavor: Flavor,
    },
    /// Run every case on its kernels, compare snapshots, write a JUnit report.
    Test {
        /// Only these cases.
        #[arg(long = "case", short = 'c')]
        cases: Vec<String>,
        /// Only these kernels.
        #[arg(long = "kernel", short = 'k')]
        kernels: Vec<String>,
        /// Stream every guest console live.
        #[arg(long)]
        stream: bool,
        /// What boots the guests: `hermetic` (QEMU + our initramfs) or `vng` (virtme-ng on the host's root).
        #[arg(long, default_value = "hermetic", value_parser = parse_backend)]
        backend: BackendKind,
        /// With --boot, a boot of its own for every case (by default the
        /// booted cases of a kernel that expect no crash share one boot, with
        /// reruns alone on trouble).
        #[arg(long)]
        no_batch: bool,
        /// Boot the kernel for every case instead of starting each from a
        /// saved VM (the kernel booted once, saved where init waits for its plan).
        #[arg(long)]
        boot: bool,
        /// VMs at once (default: one per host CPU, as memory allows).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Run every pair N times and report any whose normalized outcome
        /// differs between runs (a flake), with the fields that differ.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
        /// Leave out the pairs whose case expects the kernel to crash.
        #[arg(long)]
        skip_crashing: bool,
        /// The kernels' flavor (a flavor's outcomes are compared with
        /// the variant's snapshots): `normal`, or `debug` (KASAN, KFENCE, lockdep,
        /// DEBUG_VM, DEBUG_PAGEALLOC, ...: kernels/fragments/debug.config).
        #[arg(long, default_value = "normal", value_parser = parse_flavor)]
        flavor: Flavor,
    },
    /// Run one case on one kernel with its console streamed live.
    Run {
        case: String,
        #[arg(long = "kernel", short = 'k')]
        kernel: String,
        /// After the steps, a shell in the guest on this terminal (`exit` powers off).
        #[arg(long)]
        shell: bool,
        /// Start QEMU's gdb stub (default port 1234) and wait for gdb; prints the command to attach.
        #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "1234")]
        gdb: Option<u16>,
        /// What boots the guest: `hermetic` or `vng`.
        #[arg(long, default_value = "hermetic", value_parser = parse_backend)]
        backend: BackendKind,
        /// Boot the kernel for every case instead of starting each from a
        /// saved VM (the kernel booted once, saved where init waits for its plan).
        #[arg(long)]
        boot: bool,
        /// The kernels' flavor: `normal`, or `debug` (KASAN, KFENCE, lockdep,
        /// DEBUG_VM, DEBUG_PAGEALLOC, ...: kernels/fragments/debug.config).
        #[arg(long, default_value = "normal", value_parser = parse_flavor)]
        flavor: Flavor,
    },
    /// A shell in a built kernel through virtme-ng: the host's root filesystem
    /// (read-only, with overlays), root, the probes on the PATH, /dev/kvm usable.
    Shell {
        #[arg(long = "kernel", short = 'k')]
        kernel: String,
        /// Run this command instead, and exit with its status.
        #[arg(long)]
        exec: Option<String>,
        /// Guest memory in MB.
        #[arg(long, default_value_t = 1024)]
        memory: u32,
        /// Guest CPUs.
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Extra kernel command line.
        #[arg(long, default_value = "")]
        append: String,
        /// Print the vng and QEMU command lines instead of booting.
        #[arg(long)]
        dry_run: bool,
    },
    /// Classify the crash reports of any console log (a CI's, a bot's, a
    /// colleague's) as the runner does its own: kind, title, culprit, the
    /// report's lines, frames decoded to source lines with --kernel or
    /// --vmlinux. Exit 0: no report; 3: at least one; 4: a log cannot be read.
    Report {
        /// The console logs.
        #[arg(required = true)]
        logs: Vec<std::path::PathBuf>,
        /// Decode frames with this variant's built kernel (needs
        /// `debug_info: true` in its recipe).
        #[arg(long, short = 'k', conflicts_with = "vmlinux")]
        kernel: Option<String>,
        /// The kernel's flavor, with --kernel.
        #[arg(long, default_value = "normal", value_parser = parse_flavor, requires = "kernel")]
        flavor: Flavor,
        /// Decode frames with this vmlinux (its System.map beside it is used
        /// when there is one).
        #[arg(long)]
        vmlinux: Option<std::path::PathBuf>,
        /// One JSON document on stdout, for machines.
        #[arg(long)]
        json: bool,
    },
    /// Seeded stress runs (the `stress` probe) in fresh VMs, side by side:
    /// findings grouped by crash title or direct-map violation, each new one
    /// minimized into cases/found_SLUG.yaml. Exit 3 when something new was
    /// found, 0 when not.
    Fuzz {
        #[arg(long = "kernel", short = 'k')]
        kernel: String,
        /// The kernel's flavor: `normal` or `debug`.
        #[arg(long, default_value = "normal", value_parser = parse_flavor)]
        flavor: Flavor,
        /// How long to start new runs: `90s`, `10m`, `1h`.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        time: std::time::Duration,
        /// Run exactly this many seeds instead (from --seed), whatever the time.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        seeds: Option<u64>,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// VMs at once.
        #[arg(long, short = 'j', default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
        jobs: u64,
        /// Threads of each stress run.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=8))]
        threads: u64,
        /// Seconds of each stress run.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Pages of a guest_memfd at most.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=64))]
        pages: u64,
        /// Report new findings without minimizing them.
        #[arg(long)]
        no_minimize: bool,
        /// Where found cases are written (default: the suite's cases/).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// The corpus of findings already reported (default: the cache's fuzz/).
        #[arg(long)]
        corpus: Option<std::path::PathBuf>,
    },
    /// Corpora of real console logs made by our own kernels.
    Corpus {
        #[command(subcommand)]
        which: CorpusCmd,
    },
    /// Run cases and accept their outcomes as the new snapshots.
    Bless {
        #[arg(long = "case", short = 'c')]
        cases: Vec<String>,
        #[arg(long = "kernel", short = 'k')]
        kernels: Vec<String>,
        /// VMs at once.
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Record outcomes that hold a failure (a step that did not end
        /// well, a failed selftest, an unexpected crash) too.
        #[arg(long)]
        accept_failures: bool,
        /// Boot the kernel for every case instead of starting each from a
        /// saved VM.
        #[arg(long)]
        boot: bool,
        /// Only `normal`: a flavor's outcomes are compared with the
        /// variant's snapshots, never recorded (refused, nothing written).
        #[arg(long, default_value = "normal", value_parser = parse_flavor)]
        flavor: Flavor,
    },
    /// Compare the outcomes of two kernels (or of one kernel at two
    /// commits: KERNEL@REVISION), case by case: same, different (a diff), on
    /// one side only; outcomes that hold a failure are flagged. Exit 1 when
    /// any differ.
    Compare {
        /// KERNEL or KERNEL@REVISION (the snapshots as they were then).
        a: runner::compare::Side,
        b: runner::compare::Side,
        /// The outcomes of the last run (the logs) instead of the snapshots.
        #[arg(long)]
        runs: bool,
        /// Also write the comparison as plain text to this file (a reply to
        /// the series, ready to send).
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// Measure what users feel (medians): boot-to-result, edit-to-result,
    /// the warm suite in shared boots and a boot per case, vng against the
    /// hermetic backend. Writes target/gmemtest/bench/bench.{md,svg,json}.
    Bench {
        /// Only these parts (comma-separated): run (whole process), boot,
        /// edit, suite, vng.
        #[arg(long, value_delimiter = ',', default_value = "run,boot,vng,edit,suite")]
        only: Vec<runner::bench::Part>,
        /// Runs of the short figures (boot, vng, edit).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Runs of each whole-suite figure.
        #[arg(long, default_value_t = 3)]
        suite_runs: usize,
        /// VMs at once for the suite figures (default: as `test`).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Keep the figures as the README's (xtask/bench.json) and
        /// regenerate its table from them.
        #[arg(long)]
        readme: bool,
        /// With --readme: measure nothing, take the figures of this
        /// bench.json.
        #[arg(long, requires = "readme", value_name = "BENCH_JSON")]
        from: Option<std::path::PathBuf>,
    },
    /// List the cases and kernels.
    List,
    /// Kernel variants.
    Variant {
        #[command(subcommand)]
        cmd: VariantCmd,
    },
    /// Patch series as mailed (an mbox, a maildir, a folder of mails or
    /// format-patch files): how each patch applies onto kernel bases, a git
    /// tree of it on a base and back, and which patch changed each case.
    Series {
        #[command(subcommand)]
        cmd: SeriesCmd,
    },
    /// Find the first bad commit of a kernel git tree with a case as the oracle
    /// (`git bisect run` in a separate worktree; build failures are skipped).
    Bisect {
        /// The kernel git tree (its working tree is not touched).
        #[arg(long)]
        tree: std::path::PathBuf,
        #[arg(long)]
        good: String,
        #[arg(long)]
        bad: String,
        #[arg(long)]
        case: String,
        /// The recipe in kernels/ whose config fragments every step uses.
        #[arg(long = "kernel-config", default_value = "stock-7.3")]
        recipe: String,
        /// What a good revision does: same-as-good, no-crash,
        /// crash:REGEX (bad when a crash title matches) or snapshot:KERNEL.
        #[arg(long, default_value = "same-as-good")]
        expect: String,
    },
    /// One step of `bisect` (run by git bisect run).
    #[command(hide = true)]
    BisectStep {
        #[arg(long)]
        state: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // Output into a pipe that closes (`cargo xtask list | head -3`) ends the
    // process as it does any Unix tool, instead of println! panicking.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    // insta finds the workspace (for the paths its snapshot files record)
    // by spawning `cargo metadata` unless told; it is this checkout. Set
    // before any thread exists.
    if std::env::var_os("INSTA_WORKSPACE_ROOT").is_none() {
        if let Some(root) = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
            std::env::set_var("INSTA_WORKSPACE_ROOT", root);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The work runs as a task of its own, so that an interruption is seen
    // at once even while the work blocks a thread (a kernel build).
    let mut work = rt.spawn(dispatch(cli.cmd));
    let code = rt.block_on(async {
        tokio::select! {
            // An interruption wins over a result that the interruption caused.
            biased;
            _ = interrupted() => {
                eprintln!("interrupted: stopping");
                // The engine hears of it first, so that what the kills below
                // end is judged interrupted (never a snapshot failure) and
                // nothing more starts. Every child (QEMU, make and its
                // compilers) is killed; the work then reports what it had.
                // Cancelling it after a grace drops its futures, which
                // removes what it set up (QEMU's sockets, bisect's worktree).
                runner::interrupt::raise();
                runner::children::kill_all();
                let grace = std::time::Duration::from_secs(3);
                if tokio::time::timeout(grace, &mut work).await.is_err() {
                    work.abort();
                    let _ = tokio::time::timeout(grace, &mut work).await;
                }
                runner::children::kill_all();
                exit::INTERRUPTED
            }
            r = &mut work => match r {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    eprintln!("error: {e:#}");
                    exit::of_fault(runner::fault::kind_of(&e))
                }
                Err(e) => {
                    eprintln!("error: the work failed: {e}");
                    exit::INFRA
                }
            },
        }
    });
    // Shut the runtime down (and with it every child still held) before
    // exiting, without waiting long for a blocking build an interruption left.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    ExitCode::from(code)
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[derive(Subcommand)]
enum CorpusCmd {
    /// One fresh debug-flavor guest per LKDTM crash type: its console log
    /// written to runner/tests/data/console/lkdtm/TYPE.log, and the
    /// directory's README.md table updated.
    Lkdtm {
        /// The variant whose debug flavor is booted.
        #[arg(long = "kernel", short = 'k', default_value = "stock-7.3")]
        kernel: String,
        /// Only these crash types (default: every one the corpus knows).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// VMs at once.
        #[arg(long, short = 'j', default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
        jobs: u64,
        /// Where the logs go (default: runner/tests/data/console/lkdtm).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

async fn dispatch(cmd: Cmd) -> Result<u8> {
    let paths = Paths::of_this_checkout()?;
    match cmd {
        Cmd::Setup => {
            setup(&paths)?;
            eprintln!("setup: done");
            Ok(exit::PASS)
        }
        Cmd::Report {
            logs,
            kernel,
            flavor,
            vmlinux,
            json,
        } => {
            // Every log is read before a kernel is looked for.
            for l in &logs {
                runner::triage::read_log(l)?;
            }
            let debug = match (kernel, vmlinux) {
                (Some(k), _) => {
                    let recipe = runner::kernel::recipe::Recipe::load_named(&paths.kernels(), &k)?;
                    let built = runner::kernel::build(&paths, &flavor.apply(&recipe)?)?;
                    Some(runner::decode::DebugInfo::of_kernel(&built))
                }
                (None, Some(v)) => Some(runner::decode::DebugInfo::of_vmlinux(&v)?),
                (None, None) => None,
            };
            let r = runner::triage::triage(&logs, debug.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", runner::triage::text(&r));
            }
            Ok(if r.iter().any(|l| !l.reports.is_empty()) {
                exit::CRASH
            } else {
                exit::PASS
            })
        }
        Cmd::Fuzz {
            kernel,
            flavor,
            time,
            seeds,
            seed,
            jobs,
            threads,
            seconds,
            pages,
            no_minimize,
            out,
            corpus,
        } => {
            let mut o = runner::fuzz::FuzzOptions::new(&paths, &kernel);
            o.flavor = flavor;
            o.time = time;
            o.seeds = seeds;
            o.first_seed = seed;
            o.jobs = jobs as usize;
            o.threads = threads as usize;
            o.seconds = seconds;
            o.pages = pages as usize;
            o.minimize = !no_minimize;
            if let Some(d) = out {
                o.cases_dir = d;
            }
            if let Some(d) = corpus {
                o.corpus_dir = d;
            }
            let r = runner::fuzz::fuzz(&paths, &o, &|l| eprintln!("fuzz: {l}")).await?;
            print!("{}", runner::fuzz::text(&r));
            Ok(if r.new.is_empty() {
                exit::PASS
            } else {
                exit::CRASH
            })
        }
        Cmd::Corpus {
            which:
                CorpusCmd::Lkdtm {
                    kernel,
                    only,
                    jobs,
                    out,
                },
        } => {
            let mut o = runner::lkdtm::CorpusOptions::new(&paths);
            o.kernel = kernel;
            o.only = only;
            o.jobs = jobs as usize;
            if let Some(d) = out {
                o.out = d;
            }
            let r = runner::lkdtm::corpus(&paths, &o, &|l| eprintln!("lkdtm: {l}")).await?;
            print!("{}", runner::lkdtm::text(&r));
            Ok(exit::PASS)
        }
        Cmd::Build { kernels, flavor } => {
            runner::setup::host()?;
            let names = if kernels.is_empty() {
                runner::kernel::recipe::list(&paths.kernels())?
            } else {
                kernels
            };
            for n in names {
                let r = runner::kernel::Recipe::load_named(&paths.kernels(), &n)?;
                let k = runner::kernel::build(&paths, &flavor.apply(&r)?)?;
                println!("{}: {} ({})", k.name, k.bzimage.display(), k.source);
            }
            Ok(exit::PASS)
        }
        Cmd::Test {
            cases,
            kernels,
            stream,
            backend,
            no_batch,
            boot,
            jobs,
            repeat,
            skip_crashing,
            flavor,
        } => {
            let opts = RunOptions {
                stream,
                backend,
                boot,
                ..Default::default()
            };
            let schedule = Schedule {
                batch: !no_batch,
                jobs,
                repeat,
                skip_crashing,
            };
            let suite = Suite::load(paths, &cases, &kernels)?.flavored(flavor)?;
            test(Session::new(suite, opts, schedule), Crashes::OfFailures).await
        }
        Cmd::Run {
            case,
            kernel,
            shell,
            gdb,
            backend,
            boot,
            flavor,
        } => {
            // With a shell the console is the terminal itself, not a stream.
            let opts = RunOptions {
                stream: !shell,
                shell,
                gdb,
                backend,
                boot,
                ..Default::default()
            };
            let suite = Suite::load_one(paths, &case, &kernel)?.flavored(flavor)?;
            // Whoever reproduces a crash wants it decoded, expected or not.
            test(Session::new(suite, opts, Schedule::alone()), Crashes::All).await
        }
        Cmd::Shell {
            kernel,
            exec,
            memory,
            cpus,
            append,
            dry_run,
        } => {
            let opts = runner::shell::ShellOptions {
                exec,
                memory_mb: memory,
                cpus,
                append,
            };
            shell(paths, &kernel, opts, dry_run).await
        }
        Cmd::Bless {
            cases,
            kernels,
            jobs,
            accept_failures,
            boot,
            flavor,
        } => {
            // insta writes every snapshot; the verdicts then read "pass".
            std::env::set_var("INSTA_UPDATE", "always");
            std::env::set_var("INSTA_FORCE_PASS", "1");
            // Snapshots are made from runs of their own (restored, or booted
            // alone with --boot).
            let schedule = Schedule {
                batch: false,
                jobs,
                ..Schedule::alone()
            };
            // A flavor is refused by the session, before anything is built.
            let suite = Suite::load(paths, &cases, &kernels)?.flavored(flavor)?;
            let opts = RunOptions {
                accept_failures,
                boot,
                ..Default::default()
            };
            let session = Session::new(suite, opts, schedule);
            test(session, Crashes::OfFailures).await
        }
        Cmd::Bisect {
            tree,
            good,
            bad,
            case,
            recipe,
            expect,
        } => bisect(paths, tree, good, bad, case, recipe, expect).await,
        Cmd::BisectStep { state } => {
            let spec: runner::bisect::Spec = serde_json::from_slice(
                &std::fs::read(state.join("spec.json"))
                    .context("reading the bisection's spec.json")?,
            )?;
            match runner::bisect::step(&paths, &spec, &state).await {
                Ok((verdict, step, _)) => {
                    runner::bisect::record_step(&state, &step)?;
                    eprintln!(
                        "bisect: {} {:?}: {} ({})",
                        step.rev, verdict, step.outcome, step.build
                    );
                    Ok(verdict.exit_code())
                }
                Err(e) => {
                    // 128 and above abort `git bisect run`.
                    eprintln!("bisect: step failed: {e:#}");
                    Ok(128)
                }
            }
        }
        Cmd::Bench {
            only,
            runs,
            suite_runs,
            jobs,
            readme,
            from,
        } => match from {
            Some(json) => bench_readme(&paths, &runner::bench::Report::read(&json)?),
            None => {
                let code = bench(&paths, only, runs, suite_runs, jobs).await?;
                if readme {
                    let json = paths.out.join("bench").join("bench.json");
                    bench_readme(&paths, &runner::bench::Report::read(&json)?)?;
                }
                Ok(code)
            }
        },
        Cmd::Series { cmd } => series(&paths, cmd).await,
        Cmd::Variant {
            cmd:
                VariantCmd::New {
                    name,
                    series,
                    like,
                    tags,
                },
        } => {
            let tags = (!tags.is_empty()).then_some(tags);
            let r =
                runner::kernel::recipe::new_variant(&paths.kernels(), &name, &series, &like, tags)?;
            let suite = Suite::load(paths.clone(), &[], std::slice::from_ref(&name))?;
            let joined: Vec<&str> = suite
                .cases
                .iter()
                .filter(|c| !c.kernels.is_empty())
                .map(|c| c.name.as_str())
                .collect();
            println!(
                "{}: {} patches, tags [{}]",
                r.file.display(),
                r.patches.len(),
                r.tags.join(", ")
            );
            println!(
                "it joins {} case{}: {}",
                joined.len(),
                if joined.len() == 1 { "" } else { "s" },
                joined.join(", ")
            );
            println!("next: cargo xtask series check --onto {name}; cargo xtask test -k {name}; cargo xtask compare {like} {name} --runs");
            Ok(exit::PASS)
        }
        Cmd::Compare { a, b, runs, report } => compare(&paths, &a, &b, runs, report.as_deref()),
        Cmd::List => {
            let suite = Suite::load(paths, &[], &[])?;
            println!("kernels:");
            for r in &suite.recipes {
                println!("  {:<24} {}", r.name, r.description);
            }
            println!("cases:");
            for c in &suite.cases {
                println!(
                    "  {:<24} [{}] {}",
                    c.name,
                    c.kernels.join(", "),
                    c.description
                );
            }
            Ok(exit::PASS)
        }
    }
}

async fn bisect(
    paths: Paths,
    tree: std::path::PathBuf,
    good: String,
    bad: String,
    case: String,
    recipe: String,
    expect: String,
) -> Result<u8> {
    runner::setup::host()?;
    let expect: runner::bisect::Expect = expect.parse()?;
    // Fail early on a bad case or recipe, before any worktree exists.
    runner::case::Case::load(
        &paths.cases().join(format!("{case}.yaml")),
        runner::kernel::recipe::known(&paths.kernels())?,
    )?;
    runner::kernel::Recipe::load_named(&paths.kernels(), &recipe)?;
    let tree = tree
        .canonicalize()
        .with_context(|| format!("--tree {}", tree.display()))?;
    let spec = runner::bisect::Spec {
        tree,
        worktree: Default::default(),
        good,
        bad,
        case,
        recipe,
        expect,
    };
    let me = std::env::current_exe()?.display().to_string();
    let report = runner::bisect::run(&paths, spec, &[me, "bisect-step".into()]).await?;
    println!(
        "\n{:<14} {:<8} {:<22} {:<60} subject",
        "revision", "verdict", "build", "outcome"
    );
    for s in &report.steps {
        let outcome: String = s.outcome.chars().take(60).collect();
        println!(
            "{:<14} {:<8} {:<22} {:<60} {}",
            s.rev,
            format!("{:?}", s.verdict).to_lowercase(),
            s.build,
            outcome,
            s.subject
        );
    }
    println!();
    match &report.first_bad {
        Some((sha, subject)) => println!("first bad commit: {sha} {subject}"),
        None => println!("no single first bad commit:\n{}", report.git_said.trim()),
    }
    println!(
        "{} ({} skipped) in {:.0?}; bisect log: {}",
        count(report.steps.len(), "step", "steps"),
        report
            .steps
            .iter()
            .filter(|s| s.verdict == runner::bisect::Verdict::Skip)
            .count(),
        report.elapsed,
        report.log.display()
    );
    Ok(if report.first_bad.is_some() {
        exit::PASS
    } else {
        exit::SNAPSHOT
    })
}

/// Keeps `report` as the README's figures and regenerates its table.
fn bench_readme(paths: &Paths, report: &runner::bench::Report) -> Result<u8> {
    let json = runner::bench::readme_figures(paths);
    runner::paths::write_atomic(&json, serde_json::to_string_pretty(report)?.as_bytes())?;
    let readme = paths.root.join("README.md");
    let text = std::fs::read_to_string(&readme)
        .with_context(|| format!("cannot read {}", readme.display()))?;
    runner::paths::write_atomic(
        &readme,
        runner::bench::readme_with(&text, report)?.as_bytes(),
    )?;
    println!("{} and its table in {}", json.display(), readme.display());
    Ok(exit::PASS)
}

async fn bench(
    paths: &Paths,
    parts: Vec<runner::bench::Part>,
    runs: usize,
    suite_runs: usize,
    jobs: Option<usize>,
) -> Result<u8> {
    runner::setup::host()?;
    let suite = Suite::load(paths.clone(), &[], &[])?;
    let cases: Vec<_> = suite.cases.iter().collect();
    let opts = runner::bench::Options {
        parts,
        runs: runs.max(1),
        suite_runs: suite_runs.max(1),
        jobs: jobs.unwrap_or_else(|| runner::batch::default_jobs(&cases)),
    };
    let started = std::time::Instant::now();
    let say = |s: &str| eprintln!("bench: {s} ({:.0?} so far)", started.elapsed());
    let report = runner::bench::run(paths, &opts, &say).await?;
    let files = report.write(&paths.out.join("bench"))?;
    println!("\n{}", report.markdown());
    for f in files {
        println!("{}", f.display());
    }
    Ok(exit::PASS)
}

fn compare(
    paths: &Paths,
    a: &runner::compare::Side,
    b: &runner::compare::Side,
    runs: bool,
    report: Option<&std::path::Path>,
) -> Result<u8> {
    use runner::compare::{self, Change, Source};
    let source = if runs {
        Source::Runs
    } else {
        Source::Snapshots
    };
    let rows = compare::sides(paths, a, b, source)?;
    let text = compare::text(a, b, &rows);
    print!("{text}");
    if let Some(f) = report {
        runner::paths::write_atomic(f, text.as_bytes())?;
        println!("report: {}", f.display());
    }
    Ok(if rows.iter().any(|r| r.change != Change::Same) {
        exit::SNAPSHOT
    } else {
        exit::PASS
    })
}

async fn series(paths: &Paths, cmd: SeriesCmd) -> Result<u8> {
    use runner::kernel::series;
    let (file, onto) = match cmd {
        SeriesCmd::Check { series, onto } => (series, onto),
        SeriesCmd::Port { series, onto, to } => return series_port(paths, &series, &onto, &to),
        SeriesCmd::Walk {
            variant,
            cases,
            report,
        } => {
            let suite = Suite::load(paths.clone(), &cases, std::slice::from_ref(&variant))?;
            let w = runner::walk::walk(&suite, &variant, &|l| eprintln!("walk: {l}")).await?;
            let text = runner::walk::text(&w);
            print!("{text}");
            if let Some(f) = report {
                runner::paths::write_atomic(&f, text.as_bytes())?;
                println!("report: {}", f.display());
            }
            return Ok(exit::PASS);
        }
        SeriesCmd::Export { from, to } => {
            let files = series::export(&from, &to)?;
            for f in &files {
                println!("{}", f.display());
            }
            println!(
                "{} patches: point a recipe's `patches:` at them",
                files.len()
            );
            return Ok(exit::PASS);
        }
    };
    let bases = onto
        .iter()
        .map(|n| runner::kernel::Recipe::load_named(&paths.kernels(), n))
        .collect::<Result<Vec<_>>>()?;
    let (name, patches, base_commit) = match &file {
        Some(f) => {
            let s = series::load(f)?;
            for l in &s.left_out {
                eprintln!("series: left out {l}");
            }
            let name = format!(
                "{} ({}{})",
                f.display(),
                s.identity(),
                s.base_commit
                    .as_deref()
                    .map(|b| format!(", base-commit {b}"))
                    .unwrap_or_default()
            );
            (name, s.patches, s.base_commit)
        }
        None => ("the recipes' own patches".to_string(), vec![], None),
    };
    let checks = series::check_onto(paths, &bases, &patches, base_commit.as_deref())?;
    for c in &checks {
        println!("{}", series::table(&name, &c.base, &c.rows));
    }
    if checks.len() > 1 {
        println!("{}", series::matrix(&checks));
    }
    Ok(if checks.iter().any(|c| c.failing() > 0) {
        exit::SNAPSHOT
    } else {
        exit::PASS
    })
}

fn series_port(
    paths: &Paths,
    file: &std::path::Path,
    onto: &str,
    to: &std::path::Path,
) -> Result<u8> {
    use runner::kernel::series;
    let recipe = runner::kernel::Recipe::load_named(&paths.kernels(), onto)?;
    let s = series::load(file)?;
    eprintln!("series: copying {onto}'s base into {}", to.display());
    let recipe = series::at_base_commit(&recipe, s.base_commit.as_deref());
    let p = series::port_onto(paths, &recipe, &s.patches, to)?;
    println!(
        "{}: {} commit{} on the base (tag {})",
        p.dir.display(),
        p.applied.len(),
        if p.applied.len() == 1 { "" } else { "s" },
        series::PORT_BASE_TAG
    );
    match &p.stopped_at {
        None => {
            println!("every patch applied; `cargo xtask series export --from {} --to DIR` writes them out", p.dir.display());
            Ok(exit::PASS)
        }
        Some((k, mail, rejects)) => {
            println!("patch {k} does not apply whole; what did not is in:");
            for r in rejects {
                println!("    {}", r.display());
            }
            println!(
                "resolve, then `git add -A && git commit` with the patch's author and message (in {}),",
                mail.display()
            );
            if !p.pending.is_empty() {
                println!("then `git am` the {} patches after it:", p.pending.len());
                for f in &p.pending {
                    println!("    {}", f.display());
                }
            }
            Ok(exit::SNAPSHOT)
        }
    }
}

/// `90s`, `10m`, `2h` or plain seconds, at most a day.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("expected e.g. 90s, 10m or 1h, got `{s}`"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("expected e.g. 90s, 10m or 1h, got `{s}`")),
    };
    if !(1..=86_400).contains(&secs) {
        return Err(format!("expected 1 s to 24 h, got `{s}`"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

fn parse_flavor(s: &str) -> Result<Flavor, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

async fn shell(
    paths: Paths,
    kernel: &str,
    opts: runner::shell::ShellOptions,
    dry_run: bool,
) -> Result<u8> {
    let vng = runner::setup::vng()?;
    let names = runner::kernel::recipe::list(&paths.kernels())?;
    if !names.iter().any(|n| n == kernel) {
        anyhow::bail!(
            "no kernel `{kernel}` in {} (kernels: {})",
            paths.kernels().display(),
            names.join(", ")
        );
    }
    let recipe = runner::kernel::Recipe::load_named(&paths.kernels(), kernel)?;
    let built = runner::kernel::build(&paths, &recipe)?;
    let bins = runner::pack::build_guest_binaries(&paths)?;
    let (accel, why) = runner::boot::Accel::detect();
    let v = runner::shell::vng_for(&paths, &built, &bins, accel, &opts)?;
    if dry_run {
        println!("{}", v.shell_line(&vng.bin));
        println!("{}", v.qemu_command(&vng.bin)?);
        return Ok(exit::PASS);
    }
    eprintln!(
        "shell: {} ({}) through virtme-ng {}.{}, {accel:?} ({why})",
        built.name, built.source, vng.version.0, vng.version.1
    );
    eprintln!("shell: {}", v.shell_line(&vng.bin));
    let code = runner::shell::run(&vng, &v).await?;
    Ok(u8::try_from(code).unwrap_or(exit::INFRA))
}

fn setup(paths: &Paths) -> Result<()> {
    let vng = runner::setup::vng()?;
    eprintln!(
        "setup: virtme-ng {}.{} at {}",
        vng.version.0,
        vng.version.1,
        vng.bin.display()
    );
    for n in runner::kernel::recipe::list(&paths.kernels())? {
        let r = runner::kernel::Recipe::load_named(&paths.kernels(), &n)?;
        if let runner::kernel::recipe::SourceSpec::Debian { package, version } = &r.source {
            let t = runner::setup::source(paths, package, version.as_deref())?;
            eprintln!(
                "setup: kernel {n}: {} {} in {}",
                t.package,
                t.version,
                t.path.display()
            );
        }
    }
    Ok(())
}

/// Which decoded crash reports a session prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crashes {
    /// Those of the pairs that did not pass (in their failure reports).
    OfFailures,
    /// Every crash seen, expected or not (`run`: reproducing a crash).
    All,
}

/// Runs a session and prints it: the plan, each verdict as it comes, then
/// the failures, the reruns, the table, the totals and the flakes.
async fn test(session: Session, crashes: Crashes) -> Result<u8> {
    let junit = session.suite().paths.out.join("junit.xml");
    let report = session.junit_to(junit).run(&print_event).await?;
    print_failures(&report);
    if crashes == Crashes::All {
        print_expected_crashes(&report);
    }
    print_reruns(&report);
    println!("\n{}", report.summary_table());
    print_totals(&report);
    print_flakes(&report);
    if let Some(junit) = &report.junit {
        println!("JUnit report: {}", junit.display());
    }
    Ok(exit::of_session(report.result()))
}

/// `n` and the noun, its plural when `n` is not one.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_event(e: Event) {
    match e {
        Event::Planned(p) => eprintln!(
            "running {} in {}, {} at a time{}",
            count(p.pairs, "pair", "pairs"),
            if p.restored {
                format!(
                    "{} restored from saved ones (--boot to boot each)",
                    count(p.boots, "VM", "VMs")
                )
            } else {
                format!(
                    "{} ({} shared by several cases)",
                    count(p.boots, "boot", "boots"),
                    p.shared
                )
            },
            p.jobs,
            if p.rounds > 1 {
                format!(", {} times", p.rounds)
            } else {
                String::new()
            }
        ),
        Event::Round {
            round,
            rounds,
            logs,
        } => {
            eprintln!("round {round} of {rounds} (logs in {})", logs.display())
        }
        Event::Verdict { n, total, run } => {
            let how = match &run.boot {
                BootMode::Alone | BootMode::Restored => String::new(),
                BootMode::Booted { .. } => ", booted".into(),
                BootMode::Saved => ", booted and saved".into(),
                BootMode::Batched { cases, .. } => format!(", in a boot of {cases}"),
                BootMode::Rerun { .. } => ", rerun alone".into(),
            };
            eprintln!(
                "[{n}/{total}] {} on {}: {}{} ({:.1}s{how})",
                run.case,
                run.kernel,
                run.verdict.label(),
                run.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
                run.elapsed.as_secs_f64()
            );
        }
    }
}

fn print_totals(report: &Report) {
    let rounds = report.plan.rounds;
    println!(
        "{}{} in {:.1?} ({}, {} at a time)",
        count(report.plan.pairs, "pair", "pairs"),
        if rounds > 1 {
            format!(" x {rounds} rounds")
        } else {
            String::new()
        },
        report.elapsed,
        if report.plan.restored {
            let restored = report
                .runs()
                .filter(|r| r.boot == BootMode::Restored)
                .count();
            format!(
                "{} restored, {}",
                restored,
                count(report.boots - restored.min(report.boots), "boot", "boots")
            )
        } else {
            count(report.boots, "boot", "boots")
        },
        report.plan.jobs,
    );
}

fn print_flakes(report: &Report) {
    let rounds = report.plan.rounds;
    if rounds < 2 {
        return;
    }
    for (i, r) in report.rounds.iter().enumerate().skip(1) {
        let passed = r.iter().filter(|x| x.verdict == Verdict::Pass).count();
        println!("round {}: {passed} of {} passed", i + 1, r.len());
    }
    if report.flakes.is_empty() {
        println!("no flakes: every pair gave the same outcome in all {rounds} rounds");
        return;
    }
    println!(
        "\n{} (the outcome differed between rounds; logs under {}/round-N/logs):",
        count(report.flakes.len(), "flake", "flakes"),
        report.out.display()
    );
    for f in &report.flakes {
        print!("{f}");
    }
}

/// The cases that ran again alone after their shared boot went wrong: a
/// case that passes alone but not after others is worth knowing about.
fn print_reruns(report: &Report) {
    let reruns: Vec<_> = report.reruns().collect();
    if reruns.is_empty() {
        return;
    }
    println!("\nrun again alone (their own boot gives the verdict):");
    for (r, why) in reruns {
        let note = if r.changed_by_an_earlier_case() {
            "; alone it passes: an earlier case of the boot changed its outcome"
        } else {
            ""
        };
        println!(
            "    {} on {}: {}, because {why}{note}",
            r.case,
            r.kernel,
            r.verdict.label()
        );
    }
}

fn print_failures(report: &Report) {
    for r in report.runs().filter(|r| r.verdict != Verdict::Pass) {
        println!("\n=== {} on {}", r.case, r.kernel);
        for l in r.failure_report().lines() {
            println!("    {l}");
        }
    }
}

/// The decoded reports of the crashes of the pairs that passed (those of
/// the others are in their failure reports): crashes the case expected.
fn print_expected_crashes(report: &Report) {
    let passed = |r: &&CaseRun| r.verdict == Verdict::Pass;
    for r in report.runs().filter(passed) {
        let Some(text) = &r.crash_report else {
            continue;
        };
        println!(
            "\n=== {} on {}: {} (expected), decoded (also in {}):",
            r.case,
            r.kernel,
            count(r.crashes.len(), "crash", "crashes"),
            r.log_dir.join("crash-report.txt").display()
        );
        for l in text.trim_end().lines() {
            println!("    {l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn fuzz_durations_and_bounds() {
        assert_eq!(
            parse_duration("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("10m"),
            Ok(std::time::Duration::from_secs(600))
        );
        assert_eq!(
            parse_duration("2h"),
            Ok(std::time::Duration::from_secs(7200))
        );
        assert_eq!(parse_duration("45"), Ok(std::time::Duration::from_secs(45)));
        for bad in ["", "m", "10x", "0s", "25h", "99999999999999999999h", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for bad in [
            vec!["xtask", "fuzz"],
            vec!["xtask", "fuzz", "-k", "k", "--threads", "9"],
            vec!["xtask", "fuzz", "-k", "k", "--pages", "0"],
            vec!["xtask", "fuzz", "-k", "k", "--seconds", "601"],
            vec!["xtask", "fuzz", "-k", "k", "--time", "1y"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from([
            "xtask", "fuzz", "-k", "k", "--time", "30m", "--flavor", "debug"
        ])
        .is_ok());
    }

    #[test]
    fn run_needs_a_kernel() {
        let e = Cli::try_parse_from(["xtask", "run", "gmem_caps"])
            .err()
            .expect("missing --kernel");
        assert!(e.to_string().contains("--kernel"), "{e}");
        let ok =
            Cli::try_parse_from(["xtask", "run", "gmem_caps", "--kernel", "stock-7.3"]).unwrap();
        assert!(
            matches!(ok.cmd, Cmd::Run { ref case, ref kernel, shell: false, gdb: None, backend: BackendKind::Hermetic, boot: false, flavor: Flavor::Normal } if case == "gmem_caps" && kernel == "stock-7.3")
        );
    }

    #[test]
    fn run_takes_a_shell_and_an_optional_gdb_port() {
        let cli =
            Cli::try_parse_from(["xtask", "run", "c", "-k", "k", "--shell", "--gdb"]).unwrap();
        assert!(matches!(
            cli.cmd,
            Cmd::Run {
                shell: true,
                gdb: Some(1234),
                ..
            }
        ));
        let cli = Cli::try_parse_from(["xtask", "run", "c", "-k", "k", "--gdb", "4321"]).unwrap();
        assert!(matches!(
            cli.cmd,
            Cmd::Run {
                shell: false,
                gdb: Some(4321),
                ..
            }
        ));
    }

    #[test]
    fn test_filters_repeat() {
        let cli = Cli::try_parse_from(["xtask", "test", "-c", "a", "-c", "b", "-k", "stock-7.3"])
            .unwrap();
        assert!(
            matches!(cli.cmd, Cmd::Test { ref cases, ref kernels, stream: false, backend: BackendKind::Hermetic, no_batch: false, boot: false, jobs: None, repeat: 1, skip_crashing: false, flavor: Flavor::Normal }
            if cases == &["a", "b"] && kernels == &["stock-7.3"])
        );
    }

    #[test]
    fn repeat_is_bounded_and_skip_crashing_parsed() {
        let cli =
            Cli::try_parse_from(["xtask", "test", "--repeat", "3", "--skip-crashing"]).unwrap();
        assert!(matches!(
            cli.cmd,
            Cmd::Test {
                repeat: 3,
                skip_crashing: true,
                ..
            }
        ));
        for bad in ["0", "101", "x"] {
            assert!(
                Cli::try_parse_from(["xtask", "test", "--repeat", bad]).is_err(),
                "--repeat {bad}"
            );
        }
    }

    #[test]
    fn backend_and_shell_are_parsed() {
        let cli = Cli::try_parse_from(["xtask", "test", "--backend", "vng"]).unwrap();
        assert!(matches!(
            cli.cmd,
            Cmd::Test {
                backend: BackendKind::Vng,
                ..
            }
        ));
        let e = Cli::try_parse_from(["xtask", "test", "--backend", "docker"])
            .err()
            .expect("unknown backend");
        assert!(
            e.to_string().contains("expected `hermetic` or `vng`"),
            "{e}"
        );
        let cli = Cli::try_parse_from([
            "xtask",
            "shell",
            "-k",
            "stock-7.3",
            "--exec",
            "gmem-probe caps {}",
        ])
        .unwrap();
        assert!(
            matches!(cli.cmd, Cmd::Shell { ref kernel, exec: Some(ref e), memory: 1024, cpus: 2, dry_run: false, .. }
            if kernel == "stock-7.3" && e == "gmem-probe caps {}")
        );
        assert!(
            Cli::try_parse_from(["xtask", "shell"]).is_err(),
            "a shell needs --kernel"
        );
    }
}
