//! `meminfo`: which DirectMap lines /proc/meminfo prints (presence only; the
//! sizes depend on the machine). A kernel without them cannot show a
//! direct-map split, so cases that rely on `direct_map` deltas check this.

use serde::Serialize;

use super::{read_direct_map, Probe};
use crate::Result;

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::MeminfoArgs as Args;

#[derive(Debug, Serialize)]
pub struct Observation {
    pub direct_map_4k: bool,
    pub direct_map_2m: bool,
    pub direct_map_1g: bool,
}

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let dm = read_direct_map()?;
        Ok(Observation {
            direct_map_4k: dm.k4.is_some(),
            direct_map_2m: dm.m2.is_some(),
            direct_map_1g: dm.g1.is_some(),
        })
    }
}
