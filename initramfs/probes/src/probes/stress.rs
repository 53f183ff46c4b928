//! `stress`: `threads` threads, each drawing operations from `seed`
//! (`gmem_protocol::args::ThreadOps`: create with any flags, fallocate and
//! punch, mmap and munmap, read and write faults, reads through every GUP
//! path, fork, memory pressure, compaction, close in any order), for at
//! most `seconds` or `max_ops` operations each, checked against the model
//! of the direct map ([`super::program`]).
//!
//! Observed: the worker's end, the operations started, their outcomes by
//! verb, the violations and the operations that never finished. When it
//! found something (exit 3), also `log`: every operation in the order they
//! started, what the host minimizes. Each thread's operations are a
//! function of the seed alone; the order between threads is what `log`
//! records. The rate goes to the console, for a human only.

use std::time::Duration;

use gmem_protocol::args::{GenOptions, ThreadOps};
use serde::Serialize;

use super::program::{self, Observation as Run, PerThread};
use super::Probe;
use crate::{Failure, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::StressArgs as Args;

#[derive(Debug, Serialize)]
pub struct Observation {
    pub seed: u64,
    pub threads: usize,
    #[serde(flatten)]
    pub run: Run,
    /// Operations per second (all threads, up to the end of the last
    /// operation that ended), for the fuzzer's figures.
    pub ops_per_second: u64,
    /// Every operation in the order started, when something was found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let opts = GenOptions {
            pages: self.pages,
            hwpoison: self.hwpoison,
        };
        let drawn = PerThread(
            (0..self.threads)
                .map(|t| {
                    ThreadOps::new(self.seed, t, opts)
                        .take(self.max_ops)
                        .map(|op| op.kind)
                        .collect()
                })
                .collect(),
        );
        let log = program::run(&drawn, Duration::from_secs(self.seconds))?;
        let (run, lines) = Run::of(&log, &drawn);
        let secs = log.busy.as_secs_f64().max(0.001);
        let obs = Observation {
            seed: self.seed,
            threads: self.threads,
            ops_per_second: (run.ops as f64 / secs) as u64,
            log: if run.found() { lines } else { Vec::new() },
            run,
        };
        eprintln!(
            "gmem-probe stress: seed {} threads {}: {} operations in {:.1} s, worker {}",
            obs.seed, obs.threads, obs.run.ops, secs, obs.run.worker
        );
        program::tell("stress", &obs.run);
        if obs.run.found() {
            let json = serde_json::to_string(&obs)
                .map_err(|e| Failure::Work(format!("serializing: {e}")))?;
            return Err(Failure::Found(json));
        }
        Ok(obs)
    }
}
