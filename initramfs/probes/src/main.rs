//! `gmem-probe <probe> '<args json>'`: makes one guest_memfd / direct-map
//! observation and prints it as ONE JSON object on stdout.
//!
//! Exit status: 0 when the observation was made (whatever it says, an errno
//! included); 1 when the probe could not do its work (the reason on stderr);
//! 2 for an unknown probe or bad arguments; 3 when the observation was made
//! and shows a violation of what the probe checks (`stress`, `replay`: it is
//! printed all the same). Observations hold only what is
//! stable across runs and machines: booleans, errno and flag names, sizes the
//! case chose, counts, signs of deltas. Never addresses, PFNs or timings.

mod cpu;
mod errno;
mod flags;
mod ksft;
mod kvm;
mod l2code;
mod mapping;
mod meminfo;
mod pagemap;
mod probes;

use std::io::Write;
use std::process::ExitCode;

use gmem_protocol::args::{parse, ProbeArgs, PROBES, PROBE_INFO};

/// Why a probe made no observation.
#[derive(Debug)]
pub enum Failure {
    /// Unknown probe, bad arguments: exit 2.
    Usage(String),
    /// The probe could not do its work (e.g. /dev/kvm missing): exit 1.
    Work(String),
    /// The observation (this JSON) was made and shows a violation of what
    /// the probe checks: printed as any observation, exit 3.
    Found(String),
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Adds what was being done to an I/O error, turning it into a [`Failure::Work`].
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Failure::Work(format!("{}: {} ({e})", what(), errno::of(&e))))
    }
}

/// Runs a probe on its parsed arguments, to its observation as one line of
/// JSON (serialized straight from the struct, so fields keep their order).
/// The match is over the protocol's one list of probes: a probe added
/// there without a runner here does not compile.
fn run(args: ProbeArgs) -> Result<String> {
    match args {
        ProbeArgs::Caps(a) => observe(a),
        ProbeArgs::Create(a) => observe(a),
        ProbeArgs::Fallocate(a) => observe(a),
        ProbeArgs::MmapRw(a) => observe(a),
        ProbeArgs::VcpuRun(a) => observe(a),
        ProbeArgs::KvmAccess(a) => observe(a),
        ProbeArgs::DirectMap(a) => observe(a),
        ProbeArgs::GupRead(a) => observe(a),
        ProbeArgs::StaleTlb(a) => observe(a),
        ProbeArgs::Sweep(a) => observe(a),
        ProbeArgs::FaultInject(a) => observe(a),
        ProbeArgs::Meminfo(a) => observe(a),
        ProbeArgs::Selftest(a) => observe(a),
        ProbeArgs::Kselftest(a) => observe(a),
        ProbeArgs::Isolation(a) => observe(a),
        ProbeArgs::Stress(a) => observe(a),
        ProbeArgs::Replay(a) => observe(a),
        ProbeArgs::Lkdtm(a) => observe(a),
    }
}

fn observe<A: probes::Probe>(args: A) -> Result<String> {
    let out = args.run()?;
    serde_json::to_string(&out).map_err(|e| Failure::Work(format!("serializing: {e}")))
}

fn usage() -> String {
    let mut s = String::from("usage: gmem-probe <probe> ['<args json>']\nprobes:\n");
    for p in PROBE_INFO {
        s += &format!("  {:<12} {}\n", p.name, p.summary);
    }
    s
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.as_slice() {
        [probe] => dispatch(probe, "{}"),
        [probe, args] => dispatch(probe, args),
        _ => Err(Failure::Usage(usage())),
    };
    let print = |obs: &str, code: u8| {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{obs}").and_then(|_| out.flush()).is_err() {
            return ExitCode::from(1);
        }
        ExitCode::from(code)
    };
    match result {
        Ok(obs) => print(&obs, 0),
        Err(Failure::Found(obs)) => print(&obs, 3),
        Err(Failure::Usage(msg)) => {
            eprintln!("gmem-probe: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Work(msg)) => {
            eprintln!(
                "gmem-probe {}: {msg}",
                argv.first().map(String::as_str).unwrap_or("?")
            );
            ExitCode::from(1)
        }
    }
}

fn dispatch(probe: &str, args: &str) -> Result<String> {
    if probe == "--help" || probe == "-h" {
        print!("{}", usage());
        std::process::exit(0);
    }
    if !PROBES.contains(&probe) {
        return Err(Failure::Usage(format!(
            "unknown probe {probe:?}\n{}",
            usage()
        )));
    }
    let args: serde_json::Value = serde_json::from_str(args)
        .map_err(|e| Failure::Usage(format!("probe {probe}: arguments are not JSON: {e}")))?;
    // The same schema the host checked the case with: a refusal here
    // means a plan made by something else.
    let args = parse(probe, &args)
        .map_err(|e| Failure::Usage(format!("probe {probe}: bad arguments: {e}")))?;
    run(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_name_the_probe_and_the_field() {
        let Err(Failure::Usage(msg)) = dispatch("create", r#"{"attempts":[{"size":1,"flag":[]}]}"#)
        else {
            panic!("expected a usage error")
        };
        assert!(
            msg.contains("probe create")
                && msg.contains("field `attempts[0].flag`: unknown argument"),
            "{msg}"
        );
        let Err(Failure::Usage(msg)) = dispatch("fallocate", r#"{"size":1}"#) else {
            panic!()
        };
        assert!(msg.contains("field `ops`: missing"), "{msg}");
        assert!(matches!(dispatch("nope", "{}"), Err(Failure::Usage(_))));
    }
}
