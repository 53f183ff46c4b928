//! `replay`: runs a list of operations (a minimized finding of `cargo xtask
//! fuzz`, or any program a person writes) with the oracle of `stress`
//! ([`super::program`]). With `threads: false` (the default) every
//! operation runs in the order listed on one thread, deterministically;
//! with `threads: true` each thread (`tN`) runs its own operations in order,
//! all threads at once, as the stress run that found them did.
//!
//! Observed: the worker's end, the operations started, their outcomes by
//! verb, the violations and the operations that never finished; exit 3
//! when it found something.

use std::time::Duration;

use gmem_protocol::args::MAX_THREADS;

use super::program::{self, Observation, PerThread};
use super::Probe;
use crate::{Failure, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::ReplayArgs as Args;

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let listed = if self.threads {
            let n = self.ops.iter().map(|op| op.thread + 1).max().unwrap_or(1);
            let mut per = vec![Vec::new(); n.min(MAX_THREADS)];
            for op in &self.ops {
                per[op.thread].push(op.kind.clone());
            }
            PerThread(per)
        } else {
            PerThread(vec![self.ops.iter().map(|op| op.kind.clone()).collect()])
        };
        let log = program::run(&listed, Duration::from_secs(self.seconds))?;
        let (obs, _) = Observation::of(&log, &listed);
        program::tell("replay", &obs);
        if obs.found() {
            let json = serde_json::to_string(&obs)
                .map_err(|e| Failure::Work(format!("serializing: {e}")))?;
            return Err(Failure::Found(json));
        }
        Ok(obs)
    }
}
