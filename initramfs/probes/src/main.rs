//! `gmem-probe <probe> '<args json>'`: makes one guest_memfd / direct-map
//! observation and prints it as ONE JSON object on stdout.
//!
//! Exit status: 0 when the observation was made (whatever it says, an errno
//! included); 1 when the probe could not do its work (the reason on stderr);
//! 2 for an unknown probe or bad arguments. Observations hold only what is
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

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a probe made no observation.
#[derive(Debug)]
pub enum Failure {
    /// Unknown probe, bad arguments: exit 2.
    Usage(String),
    /// The probe could not do its work (e.g. /dev/kvm missing): exit 1.
    Work(String),
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

/// Runs a probe from its JSON arguments to its observation as one line of
/// JSON (serialized straight from the struct, so fields keep their order).
type Runner = fn(&str, serde_json::Value) -> Result<String>;

/// Every probe: its name, what it observes (for `--help`), how to run it.
const PROBES: &[(&str, &str, Runner)] = &[
    (
        "caps",
        "KVM API version and guest_memfd-related capabilities, system-wide and per VM",
        run::<probes::caps::Args, _>,
    ),
    (
        "create",
        "KVM_CREATE_GUEST_MEMFD with each (size, flags) attempt: ok or errno",
        run::<probes::create::Args, _>,
    ),
    (
        "fallocate",
        "fallocate operations on a guest_memfd, and the pages it holds after each",
        run::<probes::fallocate::Args, _>,
    ),
    (
        "mmap_rw",
        "mmap a guest_memfd, write a pattern, read it back through two mappings",
        run::<probes::mmap_rw::Args, _>,
    ),
    (
        "vcpu_run",
        "run a tiny real-mode guest from guest_memfd memory: exits, I/O value, memory value",
        run::<probes::vcpu_run::Args, _>,
    ),
    (
        "kvm_access",
        "one of KVM's own ways into guest memory (pvclock, emulation, nested, ...) on three backings",
        run::<probes::kvm_access::Args, _>,
    ),
    (
        "direct_map",
        "guest_memfd pages in the kernel direct map (/dev/mem at their PFN), DirectMap deltas",
        run::<probes::direct_map::Args, _>,
    ),
    (
        "gup_read",
        "read mmapped guest_memfd pages through GUP paths (/proc/self/mem, process_vm_readv, vmsplice)",
        run::<probes::gup_read::Args, _>,
    ),
    (
        "stale_tlb",
        "pages readable through /dev/mem right after their direct-map removal, and after a TLB flush",
        run::<probes::stale_tlb::Args, _>,
    ),
    (
        "sweep",
        "make the kernel write most free memory through the direct map (anonymous memory, tmpfs)",
        run::<probes::sweep::Args, _>,
    ),
    (
        "fault_inject",
        "failed page allocations (fail_page_alloc) in the direct-map removal and restore",
        run::<probes::fault_inject::Args, _>,
    ),
    (
        "meminfo",
        "which DirectMap lines /proc/meminfo has",
        run::<probes::meminfo::Args, _>,
    ),
    (
        "isolation",
        "what of the host the guest reaches: network interfaces, sockets out, mounts, block, PCI and virtio devices",
        run::<probes::isolation::Args, _>,
    ),
    (
        "kselftest",
        "run an upstream KVM selftest packed with the kernel: exit meaning, TAP results, assertion",
        run::<probes::kselftest::Args, _>,
    ),
    (
        "selftest",
        "misbehave on purpose (sleep, bad stdout, signal, exit code) to test the framework",
        run::<probes::selftest::Args, _>,
    ),
];

/// Parses a probe's arguments into its own type and runs it.
fn run<A, O>(probe: &str, args: serde_json::Value) -> Result<String>
where
    A: DeserializeOwned + probes::Probe<Output = O>,
    O: Serialize,
{
    // A step without arguments carries `null`: the same as `{}`.
    let args = if args.is_null() {
        serde_json::json!({})
    } else {
        args
    };
    let args: A = serde_json::from_value(args)
        .map_err(|e| Failure::Usage(format!("probe {probe}: bad arguments: {e}")))?;
    let out = args.run()?;
    serde_json::to_string(&out)
        .map_err(|e| Failure::Work(format!("probe {probe}: serializing: {e}")))
}

fn usage() -> String {
    let mut s = String::from("usage: gmem-probe <probe> ['<args json>']\nprobes:\n");
    for (name, what, _) in PROBES {
        s += &format!("  {name:<11} {what}\n");
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
    match result {
        Ok(obs) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{obs}").and_then(|_| out.flush()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
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
    let (_, _, runner) = PROBES
        .iter()
        .find(|(name, _, _)| *name == probe)
        .ok_or_else(|| Failure::Usage(format!("unknown probe {probe:?}\n{}", usage())))?;
    let args: serde_json::Value = serde_json::from_str(args)
        .map_err(|e| Failure::Usage(format!("probe {probe}: arguments are not JSON: {e}")))?;
    runner(probe, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host validates cases against the protocol's list: every probe it
    /// knows must be here (`selftest`, for framework tests, is extra).
    #[test]
    fn probe_table_matches_the_protocol() {
        let mine: Vec<&str> = PROBES.iter().map(|(name, _, _)| *name).collect();
        for name in gmem_protocol::PROBES {
            assert!(
                mine.contains(name),
                "probe {name} is in gmem_protocol::PROBES but not in the probe binary"
            );
        }
        for name in &mine {
            assert!(
                gmem_protocol::PROBES.contains(name) || *name == "selftest",
                "probe {name} is missing from gmem_protocol::PROBES"
            );
        }
    }

    #[test]
    fn bad_arguments_name_the_probe_and_the_field() {
        let Err(Failure::Usage(msg)) = dispatch("create", r#"{"attempts":[{"size":1,"flag":[]}]}"#)
        else {
            panic!("expected a usage error")
        };
        assert!(
            msg.contains("probe create") && msg.contains("unknown field `flag`"),
            "{msg}"
        );
        let Err(Failure::Usage(msg)) = dispatch("fallocate", r#"{"size":1}"#) else {
            panic!()
        };
        assert!(msg.contains("missing field `ops`"), "{msg}");
        assert!(matches!(dispatch("nope", "{}"), Err(Failure::Usage(_))));
    }
}
