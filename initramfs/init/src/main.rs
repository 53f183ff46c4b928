//! PID 1 of the gmemtest guest.
//!
//! Mounts /dev, /proc, /sys, debugfs and /tmp; opens the result port; reads
//! the plan; sends Hello; runs each step (the probe binary, with a deadline)
//! and reports it; sends Done; syncs and reboots, which ends QEMU (it runs
//! with -no-reboot; the guest kernel has no ACPI, so power-off would hang).
//!
//! PID 1 must never exit or panic (either panics the kernel): the main logic
//! runs under `catch_unwind`, and whatever happens the guest reboots.

mod mounts;
mod report;
mod shell;
mod step;

use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};

use gmem_protocol::{Plan, Record, PLAN_PATH, PROTOCOL_VERSION, RESULT_PORT};
use report::{console, Reporter};

fn main() {
    panic::set_hook(Box::new(|info| console(&format!("init panicked: {info}"))));
    let mut reporter = Reporter::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(&mut reporter)));
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
    reboot();
}

/// Everything but the reboot. An `Err` is fatal: reported, then reboot.
fn run(reporter: &mut Reporter) -> Result<(), String> {
    let mount_errors = mounts::mount_all();
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

    let text = std::fs::read_to_string(PLAN_PATH)
        .map_err(|e| format!("reading the plan {PLAN_PATH}: {e}"))?;
    let plan: Plan =
        serde_json::from_str(&text).map_err(|e| format!("parsing the plan {PLAN_PATH}: {e}"))?;
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
    console(&format!(
        "case {} on {kernel_release} ({cpus} cpus): {} steps",
        plan.case,
        plan.steps.len()
    ));

    for s in &plan.steps {
        let pin = s.cpu.map(|c| format!(" on cpu {c}")).unwrap_or_default();
        console(&format!("step {} (probe {}){pin} ...", s.name, s.probe));
        reporter.send(&Record::StepStart {
            step: s.name.clone(),
            probe: s.probe.clone(),
        });
        let r = step::run(s);
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
    reporter.send(&Record::Done);
    if plan.shell {
        shell::run();
    }
    console("done, rebooting");
    Ok(())
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
