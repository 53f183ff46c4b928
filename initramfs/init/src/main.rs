//! PID 1 of the gmemtest guest.
//!
//! Mounts /dev, /proc, /sys, debugfs and /tmp; opens the result port; reads
//! the plan (from the initramfs, or handed over on the result port when the
//! initramfs has none: see `handed_over_plan`); sends Hello; for each case of the plan (one, or a batch),
//! writes its marker to the kernel log, sends CaseStart, runs each step (the
//! probe binary, with a deadline) and reports it, waits for the console to
//! drain and sends CaseEnd; sends Done; syncs and reboots, which ends QEMU
//! (it runs with -no-reboot; the guest kernel has no ACPI, so power-off
//! would hang).
//!
//! PID 1 must never exit or panic (either panics the kernel): the main logic
//! runs under `catch_unwind`, and whatever happens the guest reboots.
//!
//! Under virtme-ng (the `vng` backend) init is an ordinary command, `init
//! PLAN_FILE`, run by vng's init on the host's root filesystem: it mounts
//! only what vng did not, runs the `gmem-probe` beside it, and exits (vng
//! then powers the VM off). It refuses to run unless the kernel command line
//! carries [`GUEST_MARKER`], so a plan never runs on the host.

mod mounts;
mod report;
mod shell;
mod step;

use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use gmem_protocol::{
    case_marker, CasePlan, Handoff, Plan, Record, GUEST_MARKER, HANDOFF_MAX_BYTES, PLAN_PATH,
    PROBE_BIN, PROTOCOL_VERSION, RESULT_PORT,
};
use report::{console, Reporter};

/// How init was started.
enum Mode {
    /// PID 1 of the hermetic initramfs.
    Pid1,
    /// A command in a guest booted by virtme-ng.
    Hosted { plan: PathBuf },
}

impl Mode {
    fn plan(&self) -> PathBuf {
        match self {
            Mode::Pid1 => PathBuf::from(PLAN_PATH),
            Mode::Hosted { plan } => plan.clone(),
        }
    }

    /// The probe binary: packed in the initramfs, or beside this binary.
    fn probe(&self) -> PathBuf {
        match self {
            Mode::Pid1 => PathBuf::from(PROBE_BIN),
            Mode::Hosted { .. } => std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("gmem-probe")))
                .unwrap_or_else(|| PathBuf::from("gmem-probe")),
        }
    }
}

fn main() {
    panic::set_hook(Box::new(|info| console(&format!("init panicked: {info}"))));
    let mode = if std::process::id() == 1 {
        Mode::Pid1
    } else {
        let Some(plan) = std::env::args_os().nth(1) else {
            console("usage: init PLAN_FILE (in a gmemtest guest only)");
            std::process::exit(2);
        };
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        if !cmdline.split_whitespace().any(|w| w == GUEST_MARKER) {
            console(&format!(
                "refusing to run a plan: the kernel command line has no {GUEST_MARKER}, so this is not a gmemtest guest"
            ));
            std::process::exit(2);
        }
        Mode::Hosted {
            plan: PathBuf::from(plan),
        }
    };
    let mut reporter = Reporter::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(&mut reporter, &mode)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            console(&message);
            reporter.send(&Record::InitError { message });
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            reporter.send(&Record::InitError {
                message: format!("init panicked: {message}"),
            });
        }
    }
    reporter.drain();
    match mode {
        Mode::Pid1 => reboot(),
        Mode::Hosted { .. } => std::process::exit(0),
    }
}

/// Everything but the reboot. An `Err` is fatal: reported, then reboot.
fn run(reporter: &mut Reporter, mode: &Mode) -> Result<(), String> {
    let mount_errors = match mode {
        Mode::Pid1 => mounts::mount_all(),
        Mode::Hosted { .. } => mounts::mount_missing(),
    };
    report::ensure_console_fds();
    if let Err(e) = reporter.open_port() {
        console(&format!(
            "cannot open the result port {RESULT_PORT}: {e}; records go to the console"
        ));
    }
    for message in mount_errors {
        console(&message);
        reporter.send(&Record::InitError { message });
    }

    let plan_path = mode.plan();
    let probe = mode.probe();
    let plan = if matches!(mode, Mode::Pid1) && !plan_path.exists() {
        handed_over_plan(reporter)?
    } else {
        let text = std::fs::read_to_string(&plan_path)
            .map_err(|e| format!("reading the plan {}: {e}", plan_path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("parsing the plan {}: {e}", plan_path.display()))?
    };
    if plan.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "plan protocol {} but this init speaks {PROTOCOL_VERSION}",
            plan.protocol
        ));
    }

    let kernel_release = kernel_release();
    let cpus = cpus_online();
    reporter.send(&Record::Hello {
        protocol: PROTOCOL_VERSION,
        kernel_release: kernel_release.clone(),
        cpus,
    });
    for case in &plan.cases {
        run_case(reporter, case, &kernel_release, cpus, &probe);
    }
    reporter.send(&Record::Done);
    if plan.shell {
        match mode {
            Mode::Pid1 => shell::run(),
            Mode::Hosted { .. } => {
                console("no shell after the plan under vng (use `cargo xtask shell`)")
            }
        }
    }
    console(match mode {
        Mode::Pid1 => "done, rebooting",
        Mode::Hosted { .. } => "done",
    });
    Ok(())
}

/// An initramfs without a plan: say so on the result port and wait there
/// for the host's [`Handoff`]. The runner saves the VM while init waits and
/// restores it for every case, so whatever runs after this line runs once
/// per case, on a kernel nothing else has run on.
fn handed_over_plan(reporter: &mut Reporter) -> Result<Plan, String> {
    reporter.send(&Record::AwaitingPlan);
    reporter.drain();
    let line = reporter
        .receive_line(HANDOFF_MAX_BYTES)
        .map_err(|e| format!("reading the plan from {RESULT_PORT}: {e}"))?;
    let handoff: Handoff = serde_json::from_slice(&line)
        .map_err(|e| format!("parsing the plan handed over on {RESULT_PORT}: {e}"))?;
    let entropy = handoff
        .entropy_bytes()
        .ok_or("the handoff's entropy is not hex")?;
    reseed(&entropy).map_err(|e| format!("reseeding the kernel's random generator: {e}"))?;
    Ok(handoff.plan)
}

/// Mixes `entropy` into the kernel's pool and reseeds the generator from it
/// at once (RNDRESEEDCRNG), so a restored kernel's next random number is
/// not the one every other restore of the same state draws.
fn reseed(entropy: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    f.write_all(entropy)?;
    // _IO('R', 0x07), from <linux/random.h>.
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG as _) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One case: its marker in the kernel log, its steps, and its end once the
/// console has sent everything it printed (so the next marker follows it).
fn run_case(
    reporter: &mut Reporter,
    case: &CasePlan,
    kernel_release: &str,
    cpus: u32,
    probe: &Path,
) {
    // Whatever is still queued for the console belongs before the marker.
    report::drain_console();
    report::kernel_log(&case_marker(&case.case));
    reporter.send(&Record::CaseStart {
        case: case.case.clone(),
    });
    console(&format!(
        "case {} on {kernel_release} ({cpus} cpus): {} steps",
        case.case,
        case.steps.len()
    ));
    for s in &case.steps {
        let pin = s.cpu.map(|c| format!(" on cpu {c}")).unwrap_or_default();
        console(&format!("step {} (probe {}){pin} ...", s.name, s.probe));
        reporter.send(&Record::StepStart {
            step: s.name.clone(),
            probe: s.probe.clone(),
        });
        let r = step::run(s, probe);
        console(&format!(
            "step {} {} in {} ms",
            s.name,
            step::describe(&r.exit),
            r.duration_ms
        ));
        if r.bad_output.is_some() {
            console(&format!("step {}: stdout was not one JSON object", s.name));
        }
        reporter.send(&Record::StepEnd {
            step: s.name.clone(),
            exit: r.exit,
            observation: r.observation,
            bad_output: r.bad_output,
            duration_ms: r.duration_ms,
        });
        reap_orphans();
    }
    report::drain_console();
    reporter.send(&Record::CaseEnd {
        case: case.case.clone(),
    });
}

fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid; uname fills it with NUL-terminated
    // strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) < 0 {
            return "unknown".into();
        }
        CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

fn cpus_online() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u32
}

/// Orphans of a probe are re-parented to PID 1: collect them.
fn reap_orphans() {
    // SAFETY: waitpid with WNOHANG and a NULL status pointer.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// Syncs and restarts; never returns.
fn reboot() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot(RB_AUTOBOOT) does not
    // return on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    console(&format!(
        "reboot failed: {}",
        std::io::Error::last_os_error()
    ));
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}
