//! Booting a kernel with an initramfs in QEMU, and collecting what comes out:
//! the console (ttyS0, the kernel log) and the result stream (ttyS1, JSON
//! [`Record`]s from the guest's init), read concurrently.
//!
//! The VM ends by itself: init reboots when the plan is done and the kernel
//! reboots on panic (`panic=-1`), and QEMU runs with `-no-reboot`, so either
//! ends QEMU. A deadline kills it otherwise. QEMU never outlives the runner:
//! it is killed when its handle is dropped (error, timeout, Ctrl-C) and, should
//! the runner itself die, by `PR_SET_PDEATHSIG`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use gmem_protocol::Record;

pub use crate::accel::Accel;
pub use crate::cmdline::{command_line, quote};
pub use crate::nmi::{BACKTRACE_GRACE, NMI_NOTE};

/// What starts the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// QEMU directly, our kernel command line, our initramfs with init as
    /// PID 1: nothing of the host is visible in the guest.
    Hermetic,
    /// virtme-ng: the host's root filesystem (read-only, with overlays)
    /// and vng's own init, which runs `exec` (our init, hosted) as root.
    Vng {
        /// The `vng` binary ([`crate::vng::check`]).
        bin: PathBuf,
        /// The command vng executes in the guest.
        exec: String,
    },
}

/// Everything one boot needs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub backend: Backend,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Appended to the base command line.
    pub extra_cmdline: String,
    pub accel: Accel,
    /// The whole boot is killed after this long.
    pub deadline: Duration,
    /// The result port's socket (created by us, QEMU connects to it).
    pub result_socket: PathBuf,
    /// QEMU's human monitor (QEMU listens; we connect to ask for backtraces).
    pub monitor_socket: PathBuf,
    /// A guest that prints nothing on either port for this long is taken for
    /// hung: it is sent an NMI for backtraces, then stopped.
    pub silence: Option<Duration>,
    /// `Some(log)`: the console is the user's terminal (QEMU's stdin and
    /// stdout), for `run --shell`; QEMU also writes it to `log`.
    pub interactive: Option<PathBuf>,
    /// Start QEMU's gdb stub on this local port, the CPU stopped until gdb
    /// continues it.
    pub gdb: Option<u16>,
    /// Start from a saved VM (hermetic only) instead of booting.
    pub restore: Option<Restore>,
    /// Boot, and save the VM where init waits for its plan before handing
    /// it over (hermetic, an initramfs without a plan): the first run of a
    /// machine that has no saved VM yet.
    pub save: Option<SaveOnTheWay>,
}

/// Where a booting VM is saved, and the line init is handed after.
#[derive(Debug, Clone)]
pub struct SaveOnTheWay {
    pub state: PathBuf,
    pub handoff: String,
}

/// A run that starts from a saved VM ([`crate::saved_vm`]): QEMU loads the
/// state init was saved in, waiting for its plan, and is handed the plan.
#[derive(Debug, Clone)]
pub struct Restore {
    /// QEMU's migration stream of the saved VM.
    pub state: PathBuf,
    /// What the console showed up to the save (the kernel's boot): the
    /// restored run's console begins with it, as a booted one would.
    pub console: String,
    /// The line init is handed once the state is loaded.
    pub handoff: String,
}

/// The kernel command line: console on ttyS0, reboot (so QEMU exits) on panic,
/// our init from the initramfs. An NMI the kernel did not expect (the one the
/// runner sends a silent guest) panics it, printing every task and every CPU's
/// backtrace first.
pub fn kernel_cmdline(extra: &str) -> String {
    format!("console=ttyS0,115200 rdinit=/init {}", guest_cmdline(extra))
}

/// What every guest's command line has, whatever boots it: reboot (so QEMU
/// exits) on panic, timestamps, the unexpected-NMI panic with backtraces,
/// and the marker that tells init it is in a gmemtest guest (init refuses to
/// run a plan without it, so a plan never runs on the host by mistake).
///
/// `tsc=reliable`: no clocksource watchdog. Under TCG on a loaded host a
/// boot hung for good at 1.0 s, one vCPU in the watchdog's skew check
/// (`watchdog_check_skew`, timer softirq) while the other waited in
/// `multi_cpu_stop` for it to join the clocksource switch of
/// `clocksource_done_booting`. The guest's TSC is QEMU's, and no case
/// measures time.
///
/// `no_timer_check`: no check at boot that the IO-APIC delivers the timer
/// within a calibrated delay loop. Under TCG on a host busy with a kernel
/// build, 1 boot in 44 of CI's no-VM-left-behind test panicked there
/// (`IO-APIC + timer doesn't work!`) before init; KVM guests skip the check
/// for the same reason.
pub fn guest_cmdline(extra: &str) -> String {
    let mut c = format!(
        "panic=-1 reboot=t printk.time=1 tsc=reliable no_timer_check unknown_nmi_panic panic_sys_info=tasks,all_bt {}",
        gmem_protocol::GUEST_MARKER
    );
    if !extra.trim().is_empty() {
        c.push(' ');
        c.push_str(extra.trim());
    }
    c
}

/// `-accel` and `-cpu`: the CPU model that gives the guest nested SVM/VMX.
pub fn accel_args(accel: Accel) -> Vec<String> {
    match accel {
        Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
        Accel::Tcg => vec!["-accel".into(), "tcg".into(), "-cpu".into(), "max".into()],
    }
}

/// A bare machine: no default devices, no display, no network, no reboot.
/// `-nodefaults` already leaves out QEMU's default user-mode NIC; `-nic
/// none` says so explicitly, so the guest has no network whatever a QEMU
/// version's defaults are. No drive, 9p, virtiofs or other device is added
/// anywhere: the guest sees nothing of the host but its two serial ports.
pub fn machine_args(memory_mb: u32, cpus: u32) -> Vec<String> {
    [
        "-nodefaults",
        "-no-user-config",
        "-nic",
        "none",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        &memory_mb.to_string(),
        "-smp",
        &cpus.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// qboot, a firmware that only loads a kernel (from qemu-system-data): it
/// starts the guest about 0.1 s sooner than SeaBIOS, about a twentieth of a
/// case's boot-to-result.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// Direct kernel boot with our initramfs (through qboot where it is
/// installed).
pub fn kernel_args(kernel: &Path, initramfs: &Path, cmdline: &str) -> Vec<String> {
    let mut a = Vec::new();
    if Path::new(QBOOT).is_file() {
        a.extend(["-bios".to_string(), QBOOT.to_string()]);
    }
    a.extend([
        "-kernel".to_string(),
        kernel.display().to_string(),
        "-initrd".to_string(),
        initramfs.display().to_string(),
        "-append".to_string(),
        cmdline.to_string(),
    ]);
    a
}

/// ttyS0 = QEMU's stdio (the kernel log), ttyS1 = our result socket, and
/// the human monitor on a socket QEMU listens on.
pub fn serial_args(
    result_socket: &Path,
    monitor_socket: &Path,
    console_log: Option<&Path>,
) -> Vec<String> {
    let console = match console_log {
        Some(log) => format!("stdio,id=console,signal=off,logfile={}", log.display()),
        None => "stdio,id=console,signal=off".into(),
    };
    vec![
        "-chardev".into(),
        console,
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        format!("socket,id=results,path={}", result_socket.display()),
        "-serial".into(),
        "chardev:results".into(),
        "-monitor".into(),
        format!("unix:{},server=on,wait=off", monitor_socket.display()),
    ]
}

/// The program and arguments that start the VM of `cfg`.
pub fn launch_command(cfg: &VmConfig) -> (PathBuf, Vec<String>) {
    match &cfg.backend {
        Backend::Hermetic => (qemu_program(), qemu_args(cfg)),
        Backend::Vng { bin, exec } => (bin.clone(), vng_of(cfg, exec).args()),
    }
}

/// The vng invocation of `cfg`: the same memory, CPUs, acceleration and
/// command line as the hermetic boot; the result port (ttyS1, after vng's
/// console on ttyS0) and the monitor added as QEMU options.
pub fn vng_of(cfg: &VmConfig, exec: &str) -> crate::vng::Vng {
    crate::vng::Vng {
        kernel: cfg.kernel.clone(),
        exec: Some(exec.to_string()),
        memory_mb: cfg.memory_mb,
        cpus: cfg.cpus,
        append: vec![guest_cmdline(&cfg.extra_cmdline)],
        accel: Some(cfg.accel),
        user: Some("root".into()),
        // The kernel log on the console: the crashes are found there.
        verbose: true,
        qemu_opts: vec![
            "-chardev".into(),
            format!("socket,id=results,path={}", cfg.result_socket.display()),
            "-serial".into(),
            "chardev:results".into(),
            "-monitor".into(),
            format!("unix:{},server=on,wait=off", cfg.monitor_socket.display()),
        ],
        ..Default::default()
    }
}

/// All of QEMU's arguments for `cfg`.
pub fn qemu_args(cfg: &VmConfig) -> Vec<String> {
    let mut a = machine_args(cfg.memory_mb, cfg.cpus);
    a.extend(accel_args(cfg.accel));
    a.extend(kernel_args(
        &cfg.kernel,
        &cfg.initramfs,
        &kernel_cmdline(&cfg.extra_cmdline),
    ));
    a.extend(serial_args(
        &cfg.result_socket,
        &cfg.monitor_socket,
        cfg.interactive.as_deref(),
    ));
    a.extend(gdb_args(cfg.gdb));
    if let Some(r) = &cfg.restore {
        a.extend(incoming_args(&r.state));
    }
    a
}

/// Load a saved VM at start instead of running the firmware: QEMU reads
/// the state through `cat` (the one incoming channel of QEMU 7.2 that reads
/// a file) and stays paused once loaded, as the VM was when it was saved.
pub fn incoming_args(state: &Path) -> Vec<String> {
    vec![
        "-incoming".into(),
        format!("exec:cat {}", quote(&state.to_string_lossy())),
    ]
}

/// QEMU's gdb stub on a local port, the CPU held at reset until gdb says
/// `continue`.
pub fn gdb_args(port: Option<u16>) -> Vec<String> {
    match port {
        Some(p) => vec!["-gdb".into(), format!("tcp:127.0.0.1:{p}"), "-S".into()],
        None => vec![],
    }
}

/// The QEMU binary (found on the PATH; `GMEMTEST_QEMU` names another).
pub const QEMU: &str = "qemu-system-x86_64";

/// The QEMU the hermetic backend runs: `GMEMTEST_QEMU` (a QEMU of one's own
/// build) or [`QEMU`] from the PATH.
pub fn qemu_program() -> PathBuf {
    std::env::var_os("GMEMTEST_QEMU")
        .filter(|q| !q.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(QEMU))
}

/// Shell-quoted QEMU command line, for logs and reproduce hints.
pub fn shell_line(args: &[String]) -> String {
    command_line(&qemu_program(), args)
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// QEMU exited by itself (guest reboot or power-off).
    Exited { code: Option<i32> },
    /// Killed at the deadline.
    TimedOut { after: Duration },
    /// Silent for this long, so sent an NMI for backtraces; then it ended
    /// (its panic rebooted it) or was killed.
    Hung { silent_for: Duration },
    /// The runner itself was interrupted (Ctrl-C, SIGTERM) and stopped it:
    /// what the guest did says nothing about the kernel.
    Interrupted,
}

/// What came out of one boot.
#[derive(Debug, Clone)]
pub struct BootResult {
    pub console: String,
    pub records: Vec<Record>,
    /// When each record arrived, from the start of the boot.
    pub record_times: Vec<Duration>,
    /// Result-stream lines that were not records (a corrupted stream), each
    /// with the number of records that came before it.
    pub bad_lines: Vec<String>,
    pub bad_line_positions: Vec<usize>,
    /// The console lines (0-based) the runner wrote itself: its note of a
    /// silent guest (the NMI), and any trouble sending that NMI. Told apart
    /// by place, not by their words.
    pub runner_notes: Vec<usize>,
    pub end: BootEnd,
    pub elapsed: Duration,
    /// QEMU's own stderr (its errors, not the guest's).
    pub qemu_stderr: String,
}

/// Sends each line `r` yields to `tx`, as it arrives, cleaned by `clean`
/// (`None` drops the line), until `r` ends. Lines are read as bytes and
/// decoded lossily: a byte that is not UTF-8 costs its line a replacement
/// character, where reading text would end the stream there and lose the
/// rest.
async fn send_lines<R>(
    r: R,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    clean: impl Fn(&str) -> Option<&str>,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                if let Some(line) = clean(&line) {
                    if tx.send(line.to_string()).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Forwards the console (or vng's stderr), every line, on a task of its own.
fn forward_lines<R>(
    r: R,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(send_lines(r, tx, |l| {
        Some(l.trim_end_matches(['\n', '\r']))
    }))
}

/// Forwards the non-empty lines of the result stream (without the padding
/// a serial port may add): a bad line is reported, and the stream goes on.
async fn forward_result_lines<R>(r: R, tx: tokio::sync::mpsc::UnboundedSender<String>)
where
    R: tokio::io::AsyncRead + Unpin,
{
    send_lines(r, tx, |l| {
        let l = l.trim_matches(|c| c == '\n' || c == '\r' || c == '\0' || c == ' ');
        (!l.is_empty()).then_some(l)
    })
    .await
}

/// Boots and collects. `on_console` sees each console line as it arrives
/// (to stream it to a person). The stages: listen on the result socket,
/// spawn the VM, attach its output, restore or save it when asked, watch
/// it (deadline, silence), collect what is left once it is gone.
pub async fn boot(cfg: &VmConfig, on_console: impl FnMut(&str)) -> Result<BootResult> {
    boot_saving(cfg, on_console, |_| {}).await
}

/// [`boot`], and with [`VmConfig::save`] the VM saved on the way: once
/// init waits for its plan (and sent nothing else before), its state is
/// written, `on_saved` is told (while the run goes on), and init is handed
/// its plan. A guest that never gets there (a kernel that does not reach
/// init, an error of init's) is not saved; its run is judged as any boot.
pub async fn boot_saving(
    cfg: &VmConfig,
    mut on_console: impl FnMut(&str),
    on_saved: impl FnOnce(SavedBoot),
) -> Result<BootResult> {
    let listener = listen(&cfg.result_socket)?;
    if let Backend::Vng { exec, .. } = &cfg.backend {
        vng_of(cfg, exec).check_plain()?;
    }
    let started = Instant::now();
    let (program, mut vm) = spawn(cfg)?;
    let (handoff_tx, handoff_rx) = tokio::sync::oneshot::channel();
    let hands_over = cfg.restore.is_some() || cfg.save.is_some();
    let handoff_rx = hands_over.then_some(handoff_rx);
    let mut streams = Streams::attach(&mut vm.child, cfg, listener, handoff_rx);
    let mut got = Collected::new(started);
    if let Some(r) = &cfg.restore {
        got.console = r.console.clone();
        if let Err(e) = resume(cfg, r, handoff_tx).await {
            vm.kill();
            let stderr = streams.drain(&mut vm, &mut got).await;
            return Err(crate::fault::Fault::RestoreFailed {
                state: r.state.display().to_string(),
                error: format!("{e:#}"),
                stderr: stderr.trim().to_string(),
            }
            .into());
        }
    } else if let Some(s) = &cfg.save {
        let waited = wait_for_plan_request(cfg, &mut streams, &mut got, &mut on_console).await;
        if waited == Waited::Clean {
            let booted = started.elapsed();
            match save_and_hand_over(cfg, s, handoff_tx).await {
                Ok(()) => on_saved(SavedBoot {
                    console: got.console.clone(),
                    boot: booted,
                    save: started.elapsed() - booted,
                }),
                Err(e) => {
                    vm.kill();
                    let stderr = streams.drain(&mut vm, &mut got).await;
                    let mut e = e.context(format!("saving the VM of {}", cfg.kernel.display()));
                    if !stderr.trim().is_empty() {
                        e = e.context(format!("QEMU said: {}", stderr.trim()));
                    }
                    return Err(e);
                }
            }
        } else if waited == Waited::NotClean {
            // Asked for its plan after something else: run it, unsaved.
            let _ = handoff_tx.send(s.handoff.clone().into_bytes());
        }
    }
    let end = watch(cfg, &mut vm, &mut streams, &mut got, &mut on_console).await?;
    // Stopped by the runner's own interruption, whatever the VM did then.
    let end = if crate::interrupt::raised() {
        BootEnd::Interrupted
    } else {
        end
    };
    if matches!(end, BootEnd::TimedOut { .. } | BootEnd::Hung { .. }) {
        vm.kill();
    }
    let qemu_stderr = streams.drain(&mut vm, &mut got).await;
    finish(cfg, &program, end, got, qemu_stderr)
}

/// How long a saved VM may take to load (a few hundred ms here, under load).
pub const LOAD_PATIENCE: Duration = Duration::from_secs(30);

/// Waits for QEMU to have loaded the saved state, hands init its plan on the
/// result port and lets the VM run. The plan is sent only once the state is
/// loaded: bytes the serial port received before would be overwritten by
/// the saved port's state.
async fn resume(
    cfg: &VmConfig,
    r: &Restore,
    handoff: tokio::sync::oneshot::Sender<Vec<u8>>,
) -> Result<()> {
    let until = tokio::time::Instant::now() + LOAD_PATIENCE.min(cfg.deadline);
    let mut m = crate::monitor::Monitor::connect(&cfg.monitor_socket, LOAD_PATIENCE).await?;
    loop {
        let answer = m.command("info status").await?;
        match crate::monitor::status_of(&answer) {
            Some("paused") => break,
            Some(s) if s.contains("inmigrate") => {}
            other => anyhow::bail!(
                "the loaded VM is {} where a paused one was saved",
                other.unwrap_or("in an unknown state")
            ),
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("QEMU had not loaded the saved VM after {LOAD_PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    hand_over(&mut m, handoff, &r.handoff).await
}

/// Sends init its plan (through the result port's writer) and lets the
/// paused VM run.
async fn hand_over(
    m: &mut crate::monitor::Monitor,
    handoff: tokio::sync::oneshot::Sender<Vec<u8>>,
    line: &str,
) -> Result<()> {
    handoff
        .send(line.as_bytes().to_vec())
        .map_err(|_| anyhow::anyhow!("QEMU never connected to the result port"))?;
    m.command("cont").await?;
    Ok(())
}

/// What a boot to init's wait for a plan left, once saved.
#[derive(Debug, Clone)]
pub struct SavedBoot {
    /// The console up to the save.
    pub console: String,
    /// From QEMU's start to init's wait.
    pub boot: Duration,
    /// The save itself.
    pub save: Duration,
}

/// How the wait for init's plan request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// init asked for its plan, and sent nothing before.
    Clean,
    /// init asked for its plan after other records (kept).
    NotClean,
    /// The VM ended, or the result port closed, or the deadline came:
    /// the watch that follows sees which.
    Never,
}

/// Collects the VM's output (console lines, records) until init asks for
/// its plan. The VM's end, the deadline and a silent guest (the NMI for its
/// backtraces) are left to the watch that follows.
async fn wait_for_plan_request(
    cfg: &VmConfig,
    s: &mut Streams,
    got: &mut Collected,
    on_console: &mut impl FnMut(&str),
) -> Waited {
    let deadline = tokio::time::Instant::now() + cfg.deadline;
    let silent_for = cfg.silence.unwrap_or(cfg.deadline);
    let mut clean = true;
    loop {
        tokio::select! {
            line = s.console.recv() => match line {
                Some(line) => {
                    on_console(&line);
                    got.console_line(&line);
                }
                None => return Waited::Never,
            },
            _ = tokio::time::sleep(silent_for) => return Waited::Never,
            line = s.results.recv() => match line {
                Some(l) => {
                    if matches!(Record::from_line(&l), Ok(Record::AwaitingPlan)) {
                        return if clean { Waited::Clean } else { Waited::NotClean };
                    }
                    clean = false;
                    got.result_line(l);
                }
                None => return Waited::Never,
            },
            _ = tokio::time::sleep_until(deadline) => return Waited::Never,
        }
    }
}

/// Stops the VM, writes its state, hands init its plan and lets it go on.
/// The migration runs detached and is polled: HMP's own wait for it rounds
/// up to whole seconds.
async fn save_and_hand_over(
    cfg: &VmConfig,
    s: &SaveOnTheWay,
    handoff: tokio::sync::oneshot::Sender<Vec<u8>>,
) -> Result<()> {
    let mut m = crate::monitor::Monitor::connect(&cfg.monitor_socket, LOAD_PATIENCE).await?;
    // QEMU 7.2 limits a migration to 32 MiB/s by default; a file takes
    // whatever comes. The guest is paused first: its state is one pass.
    for c in ["migrate_set_parameter max-bandwidth 100G", "stop"] {
        let a = m.command(c).await?;
        if a.to_ascii_lowercase().contains("error") {
            anyhow::bail!("monitor command `{c}`: {a}");
        }
    }
    let uri = format!("exec:cat > {}", quote(&s.state.to_string_lossy()));
    let a = m.command(&format!("migrate -d \"{uri}\"")).await?;
    if !a.trim().is_empty() {
        anyhow::bail!("`migrate {uri}`: {a}");
    }
    let until = tokio::time::Instant::now() + LOAD_PATIENCE;
    loop {
        let a = m.command("info migrate").await?;
        match crate::monitor::migration_status_of(&a) {
            Some("completed") => break,
            Some("failed") | Some("cancelled") => anyhow::bail!("saving the VM failed: {a}"),
            _ => {}
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("saving the VM took over {LOAD_PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hand_over(&mut m, handoff, &s.handoff).await
}

/// The result socket, listening before QEMU starts (QEMU connects to it).
fn listen(socket: &Path) -> Result<tokio::net::UnixListener> {
    let _ = std::fs::remove_file(socket);
    tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))
}

/// Starts the VM of `cfg`: the program it ran and its process.
fn spawn(cfg: &VmConfig) -> Result<(PathBuf, VmProcess)> {
    let (program, args) = launch_command(cfg);
    let mut cmd = Command::new(&program);
    let interactive = cfg.interactive.is_some();
    let (stdin, stdout) = if interactive {
        (Stdio::inherit(), Stdio::inherit())
    } else {
        (Stdio::null(), Stdio::piped())
    };
    cmd.args(&args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setpgid and prctl are async-signal-safe. A process group of
    // its own lets the whole of it (vng is a Python process that starts
    // QEMU) be killed at once, and keeps a terminal's Ctrl-C for the runner,
    // which then stops it; an interactive VM stays in the terminal's
    // foreground group, or reading the terminal would stop it. PDEATHSIG
    // kills it should the runner itself die.
    unsafe {
        cmd.pre_exec(move || {
            if !interactive {
                libc::setpgid(0, 0);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        let program = program.display().to_string();
        if e.kind() == std::io::ErrorKind::NotFound {
            crate::fault::Fault::QemuMissing {
                program,
                error: e.to_string(),
            }
        } else {
            crate::fault::Fault::QemuFailed {
                program,
                code: format!("no process ({e})"),
                stderr: String::new(),
            }
        }
    })?;
    let vm = VmProcess {
        child,
        own_group: !interactive,
    };
    Ok((program, vm))
}

/// What came out of the VM so far.
struct Collected {
    started: Instant,
    console: String,
    records: Vec<Record>,
    record_times: Vec<Duration>,
    bad_lines: Vec<String>,
    bad_line_positions: Vec<usize>,
    runner_notes: Vec<usize>,
}

impl Collected {
    fn new(started: Instant) -> Collected {
        Collected {
            started,
            console: String::new(),
            records: Vec::new(),
            record_times: Vec::new(),
            bad_lines: Vec::new(),
            bad_line_positions: Vec::new(),
            runner_notes: Vec::new(),
        }
    }

    fn console_line(&mut self, line: &str) {
        self.console.push_str(line);
        self.console.push('\n');
    }

    /// A line of the runner's own, in the console where it happened.
    fn runner_note(&mut self, note: &str) {
        let at = self.console.matches('\n').count();
        self.runner_notes.push(at);
        self.console_line(note);
    }

    /// A result-stream line: a record, or a bad line kept with its place.
    fn result_line(&mut self, line: String) {
        match Record::from_line(&line) {
            Ok(r) => {
                self.records.push(r);
                self.record_times.push(self.started.elapsed());
            }
            Err(_) => {
                self.bad_lines.push(line);
                self.bad_line_positions.push(self.records.len());
            }
        }
    }
}

/// The VM's output as it arrives, each source on a task of its own.
struct Streams {
    /// The console: QEMU's stdout; with vng, also its stderr (vng puts the
    /// kernel log there when it executes a command).
    console: tokio::sync::mpsc::UnboundedReceiver<String>,
    console_readers: Vec<tokio::task::JoinHandle<()>>,
    /// QEMU's own complaints (its stderr, unless that is console).
    stderr: tokio::task::JoinHandle<String>,
    /// The result stream's lines, once QEMU has connected.
    results: tokio::sync::mpsc::UnboundedReceiver<String>,
    results_reader: tokio::task::JoinHandle<()>,
}

impl Streams {
    /// `handoff`: bytes to write to the result port when they come (the
    /// write side is kept open until the stream ends: QEMU takes a closed
    /// one for a client gone and would drop what the guest writes).
    fn attach(
        child: &mut tokio::process::Child,
        cfg: &VmConfig,
        listener: tokio::net::UnixListener,
        handoff: Option<tokio::sync::oneshot::Receiver<Vec<u8>>>,
    ) -> Streams {
        let interactive = cfg.interactive.is_some();
        let (console_tx, console) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut console_readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            console_readers.push(forward_lines(out, console_tx.clone()));
        }
        let stderr = child.stderr.take().expect("piped");
        let stderr = if matches!(cfg.backend, Backend::Vng { .. }) && !interactive {
            console_readers.push(forward_lines(stderr, console_tx));
            tokio::spawn(async { String::new() })
        } else {
            let mut stderr = stderr;
            tokio::spawn(async move {
                let mut s = String::new();
                let _ = stderr.read_to_string(&mut s).await;
                s
            })
        };
        let (line_tx, results) = tokio::sync::mpsc::unbounded_channel::<String>();
        let results_reader = tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            let send = async move {
                if let Some(Ok(bytes)) = match handoff {
                    Some(rx) => Some(rx.await),
                    None => None,
                } {
                    use tokio::io::AsyncWriteExt;
                    let _ = write.write_all(&bytes).await;
                }
                write
            };
            let (_, write) = tokio::join!(forward_result_lines(read, line_tx), send);
            drop(write);
        });
        Streams {
            console,
            console_readers,
            stderr,
            results,
            results_reader,
        }
    }

    /// Once the VM is gone: what the console and the result stream still
    /// had buffered, and QEMU's stderr.
    async fn drain(self, vm: &mut VmProcess, got: &mut Collected) -> String {
        let Streams {
            mut console,
            console_readers,
            stderr,
            mut results,
            results_reader,
        } = self;
        let _ = vm.child.wait().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            for r in console_readers {
                let _ = r.await;
            }
        })
        .await;
        while let Ok(line) = console.try_recv() {
            got.console_line(&line);
        }
        let qemu_stderr = tokio::time::timeout(Duration::from_secs(2), stderr)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let _ = tokio::time::timeout(Duration::from_secs(2), results_reader).await;
        while let Ok(l) = results.try_recv() {
            got.result_line(l);
        }
        qemu_stderr
    }
}

/// The clock a boot is watched by: its deadline, its last sign of life and
/// whether it has been sent the NMI.
struct Watch {
    started: Instant,
    deadline: tokio::time::Instant,
    last_sign_of_life: tokio::time::Instant,
    silence: Option<Duration>,
    nmi_sent: Option<Duration>,
}

impl Watch {
    fn new(cfg: &VmConfig, started: Instant) -> Watch {
        let now = tokio::time::Instant::now();
        Watch {
            started,
            deadline: now + cfg.deadline,
            last_sign_of_life: now,
            silence: cfg.silence,
            nmi_sent: None,
        }
    }

    /// When the guest is taken for hung (never, once the NMI is sent).
    fn silence_at(&self) -> tokio::time::Instant {
        match (self.silence, self.nmi_sent) {
            (Some(s), None) => self.last_sign_of_life + s,
            _ => self.deadline + Duration::from_secs(3600),
        }
    }

    fn alive(&mut self) {
        self.last_sign_of_life = tokio::time::Instant::now();
    }

    /// The NMI went out: the guest has a short grace to print and reboot.
    fn nmi_sent(&mut self, silent_for: Duration) {
        self.nmi_sent = Some(silent_for);
        self.deadline = self
            .deadline
            .min(tokio::time::Instant::now() + crate::nmi::BACKTRACE_GRACE);
    }

    /// How a VM that ended (or was stopped) now ended, seen from here.
    fn end(&self, exit: Option<std::process::ExitStatus>) -> BootEnd {
        match (self.nmi_sent, exit) {
            (Some(silent_for), _) => BootEnd::Hung { silent_for },
            (None, Some(status)) => BootEnd::Exited {
                code: status.code(),
            },
            (None, None) => BootEnd::TimedOut {
                after: self.started.elapsed(),
            },
        }
    }
}

/// Streams the VM's output into `got` until it ends, is silent too long
/// (the NMI, then a grace) or reaches its deadline.
async fn watch(
    cfg: &VmConfig,
    vm: &mut VmProcess,
    s: &mut Streams,
    got: &mut Collected,
    on_console: &mut impl FnMut(&str),
) -> Result<BootEnd> {
    let interactive = cfg.interactive.is_some();
    let mut w = Watch::new(cfg, got.started);
    let mut results_open = true;
    loop {
        tokio::select! {
            // Interactive: the console is the user's; QEMU logs it.
            status = vm.child.wait(), if interactive => {
                return Ok(BootEnd::Exited { code: status?.code() });
            }
            line = s.console.recv(), if !interactive => match line {
                None => return console_closed(vm, &w).await,
                Some(line) => {
                    w.alive();
                    on_console(&line);
                    got.console_line(&line);
                }
            },
            // Each record is also a sign of life.
            line = s.results.recv(), if results_open => match line {
                Some(l) => {
                    w.alive();
                    got.result_line(l);
                }
                None => results_open = false,
            },
            _ = tokio::time::sleep_until(w.silence_at()) => {
                ask_for_backtraces(cfg, &mut w, got, on_console).await;
            }
            _ = tokio::time::sleep_until(w.deadline) => return Ok(w.end(None)),
        }
    }
}

/// The console closed: the VM is ending; wait for it (up to the deadline).
async fn console_closed(vm: &mut VmProcess, w: &Watch) -> Result<BootEnd> {
    tokio::select! {
        s = vm.child.wait() => Ok(w.end(Some(s?))),
        _ = tokio::time::sleep_until(w.deadline) => Ok(BootEnd::TimedOut { after: w.started.elapsed() }),
    }
}

/// The guest was silent too long: note it in the console and send the NMI.
async fn ask_for_backtraces(
    cfg: &VmConfig,
    w: &mut Watch,
    got: &mut Collected,
    on_console: &mut impl FnMut(&str),
) {
    let silent_for = cfg.silence.unwrap_or_default();
    let mut say = |note: String| {
        on_console(&note);
        got.runner_note(&note);
    };
    say(crate::nmi::note(silent_for));
    if let Err(e) = crate::nmi::send(&cfg.monitor_socket).await {
        say(format!("gmemtest: {e:#}"));
    }
    w.nmi_sent(silent_for);
}

/// The boot's result from what was collected; a VM that failed before the
/// guest printed anything is QEMU's failure, not an outcome.
fn finish(
    cfg: &VmConfig,
    program: &Path,
    end: BootEnd,
    got: Collected,
    qemu_stderr: String,
) -> Result<BootResult> {
    let mut console = got.console;
    if let Some(log) = &cfg.interactive {
        console = std::fs::read_to_string(log)
            .unwrap_or_default()
            .replace('\r', "");
    }
    let _ = std::fs::remove_file(&cfg.result_socket);
    let _ = std::fs::remove_file(&cfg.monitor_socket);
    if let BootEnd::Exited { code } = end {
        if code != Some(0) && console.trim().is_empty() {
            return Err(crate::fault::Fault::QemuFailed {
                program: program.display().to_string(),
                code: code.map_or("a signal".into(), |c| format!("exit code {c}")),
                stderr: qemu_stderr.trim().to_string(),
            }
            .into());
        }
    }
    Ok(BootResult {
        console,
        records: got.records,
        record_times: got.record_times,
        bad_lines: got.bad_lines,
        bad_line_positions: got.bad_line_positions,
        runner_notes: got.runner_notes,
        end,
        elapsed: got.started.elapsed(),
        qemu_stderr,
    })
}

/// The VM's process. Unless interactive, it leads a process group of its
/// own, killed whole: vng and the QEMU it started, or QEMU alone
/// (`kill_on_drop` alone would kill vng but not its QEMU). Killed when
/// dropped (an error, a timeout, Ctrl-C dropping the future).
struct VmProcess {
    child: tokio::process::Child,
    own_group: bool,
}

impl VmProcess {
    fn kill(&mut self) {
        if let (true, Some(pid)) = (self.own_group, self.child.id()) {
            // SAFETY: kill with a negative pid signals the process group the
            // child leads (it called setpgid(0, 0) before exec).
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A configuration for the tests of the modules that build on this one
/// (its paths need not exist).
#[cfg(test)]
pub(crate) fn example_config() -> VmConfig {
    VmConfig {
        backend: Backend::Hermetic,
        kernel: "/k/bzImage".into(),
        initramfs: "/i/initramfs.cpio.gz".into(),
        memory_mb: 1024,
        cpus: 2,
        extra_cmdline: "foo=1".into(),
        accel: Accel::Tcg,
        deadline: Duration::from_secs(10),
        result_socket: "/tmp/r.sock".into(),
        monitor_socket: "/tmp/m.sock".into(),
        silence: None,
        interactive: None,
        gdb: None,
        restore: None,
        save: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        example_config()
    }

    /// A flavor's boot parameters (in the extra command line, before a
    /// case's own) reach the guest on both backends: QEMU's `-append` and
    /// vng's `--append`.
    #[test]
    fn a_flavors_boot_params_reach_both_backends() {
        let mut c = cfg();
        c.extra_cmdline = crate::kernel::Flavor::Debug.cmdline_with("oops=panic");
        let a = qemu_args(&c);
        let append = &a[a.iter().position(|x| x == "-append").unwrap() + 1];
        let v = vng_of(&c, "true").args();
        let vng_append: Vec<&String> = v.iter().filter(|x| x.starts_with("--append=")).collect();
        for p in crate::kernel::Flavor::Debug.boot_params() {
            assert!(append.split(' ').any(|w| w == *p), "{p} not in {append}");
            assert!(
                vng_append.iter().any(|x| x
                    .trim_start_matches("--append=")
                    .split(' ')
                    .any(|w| w == *p)),
                "{p} not in {vng_append:?}"
            );
        }
        assert!(append.ends_with(" oops=panic"), "{append}");
    }

    #[test]
    fn tcg_uses_cpu_max_for_nested_svm() {
        let a = qemu_args(&cfg());
        let s = a.join(" ");
        assert!(s.contains("-accel tcg -cpu max"), "{s}");
        assert!(s.contains("-no-reboot"), "{s}");
        assert!(s.contains("-m 1024 -smp 2"), "{s}");
        assert!(
            s.contains("-kernel /k/bzImage -initrd /i/initramfs.cpio.gz"),
            "{s}"
        );
    }

    /// Least privilege: the hermetic guest gets no network and no host
    /// files. Only these options add devices or host resources, and the
    /// argv has none of them but the two serial ports and the monitor.
    #[test]
    fn hermetic_vm_has_no_network_and_no_host_files() {
        let a = qemu_args(&cfg());
        assert!(a.contains(&"-nodefaults".to_string()), "{a:?}");
        assert!(
            a.windows(2).any(|w| w == ["-nic", "none"]),
            "no explicit `-nic none`: {a:?}"
        );
        let adds_devices = [
            "-net",
            "-netdev",
            "-device",
            "-drive",
            "-blockdev",
            "-hda",
            "-hdb",
            "-cdrom",
            "-virtfs",
            "-fsdev",
            "-usb",
            "-usbdevice",
        ];
        for opt in adds_devices {
            assert!(!a.iter().any(|x| x == opt), "{opt} in {a:?}");
        }
        assert_eq!(a.iter().filter(|x| *x == "-nic").count(), 1, "{a:?}");
        // The only character devices: the console (stdio) and the result
        // socket, which QEMU connects to (the guest writes, the runner reads).
        let chardevs: Vec<&String> = a
            .windows(2)
            .filter(|w| w[0] == "-chardev")
            .map(|w| &w[1])
            .collect();
        assert_eq!(chardevs.len(), 2, "{a:?}");
        assert!(chardevs[0].starts_with("stdio,"), "{a:?}");
        assert!(
            chardevs[1].starts_with("socket,id=results,path=/tmp/r.sock"),
            "{a:?}"
        );
        // The gdb stub, when asked for, listens on the host's loopback only.
        let mut c = cfg();
        c.gdb = Some(1234);
        assert!(qemu_args(&c).contains(&"tcp:127.0.0.1:1234".to_string()));
    }

    #[test]
    fn gdb_stub_holds_the_cpu_and_interactive_console_is_logged() {
        assert_eq!(
            gdb_args(Some(1234)),
            vec!["-gdb", "tcp:127.0.0.1:1234", "-S"]
        );
        assert!(gdb_args(None).is_empty());
        let a = serial_args(
            Path::new("/r"),
            Path::new("/m"),
            Some(Path::new("/l/console.log")),
        );
        assert_eq!(a[1], "stdio,id=console,signal=off,logfile=/l/console.log");
    }

    #[test]
    fn kvm_uses_host_cpu() {
        assert_eq!(
            accel_args(Accel::Kvm),
            vec!["-accel", "kvm", "-cpu", "host"]
        );
    }

    #[test]
    fn cmdline_panics_into_reboot_and_appends_extra() {
        let c = kernel_cmdline(" foo=1 ");
        assert!(c.contains("console=ttyS0"));
        assert!(c.contains("panic=-1"));
        assert!(c.contains("rdinit=/init"));
        // A silent guest's NMI gives backtraces and a reboot.
        assert!(c.contains("unknown_nmi_panic") && c.contains("panic_sys_info=tasks,all_bt"));
        assert!(c.ends_with(" foo=1"));
    }

    #[test]
    fn two_serial_ports_console_first_and_a_monitor_socket() {
        let a = serial_args(Path::new("/tmp/r.sock"), Path::new("/tmp/m.sock"), None);
        assert_eq!(a[3], "chardev:console");
        assert_eq!(a[7], "chardev:results");
        assert!(a[5].starts_with("socket,id=results,path=/tmp/r.sock"));
        assert_eq!(a[8..], ["-monitor", "unix:/tmp/m.sock,server=on,wait=off"]);
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let s = shell_line(&["-append".into(), "console=ttyS0 panic=-1".into()]);
        assert_eq!(s, "qemu-system-x86_64 -append 'console=ttyS0 panic=-1'");
    }

    /// What the guest writes to the result port, byte for byte, and the
    /// lines the runner reads from it.
    fn result_lines(bytes: &[u8]) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        rt.block_on(forward_result_lines(bytes, tx));
        let mut out = Vec::new();
        while let Ok(l) = rx.try_recv() {
            out.push(l);
        }
        out
    }

    #[test]
    fn a_byte_that_is_not_utf8_does_not_end_the_result_stream() {
        let got = result_lines(b"{\"a\":1}\r\n\x80\n\0\0\n{\"b\":2}\n{\"c\":3}");
        assert_eq!(got, ["{\"a\":1}", "\u{fffd}", "{\"b\":2}", "{\"c\":3}"]);
    }
}
