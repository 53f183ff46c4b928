//! `/proc/meminfo` parsing: the DirectMap lines count how much of the
//! kernel's direct map is mapped with 4 KiB, 2 MiB and 1 GiB pages, so a
//! split of a large direct-map page shows up as DirectMap4k growing.

use std::collections::BTreeMap;
use std::io;

/// The direct-map sizes in kB, each `None` when the kernel does not print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectMap {
    pub k4: Option<u64>,
    pub m2: Option<u64>,
    pub g1: Option<u64>,
}

/// Parses meminfo text into `key -> value in kB` (the unit is dropped; a
/// line without a number is skipped).
pub fn parse(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.trim().to_string(), value))
        })
        .collect()
}

impl DirectMap {
    pub fn from_text(text: &str) -> DirectMap {
        let map = parse(text);
        DirectMap {
            k4: map.get("DirectMap4k").copied(),
            m2: map.get("DirectMap2M").copied(),
            g1: map.get("DirectMap1G").copied(),
        }
    }

    /// Reads `/proc/meminfo` now.
    pub fn read() -> io::Result<DirectMap> {
        Ok(DirectMap::from_text(&std::fs::read_to_string(
            "/proc/meminfo",
        )?))
    }
}

/// The sign of a change, the only stable thing about a size delta.
/// The change in kB, signed: `+2048 kB`, `0 kB`, `-2048 kB`.
pub fn delta_kb(before: Option<u64>, after: Option<u64>) -> Option<String> {
    let (b, a) = (before? as i128, after? as i128);
    Some(match a - b {
        d if d > 0 => format!("+{d} kB"),
        d => format!("{d} kB"),
    })
}

pub fn delta(before: Option<u64>, after: Option<u64>) -> Option<&'static str> {
    let (b, a) = (before?, after?);
    Some(match a.cmp(&b) {
        std::cmp::Ordering::Greater => "grew",
        std::cmp::Ordering::Equal => "unchanged",
        std::cmp::Ordering::Less => "shrank",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "MemTotal:        1004568 kB\n\
                          MemFree:          953456 kB\n\
                          HugePages_Total:       0\n\
                          Hugepagesize:       2048 kB\n\
                          DirectMap4k:       14208 kB\n\
                          DirectMap2M:     1034240 kB\n";

    #[test]
    fn parses_direct_map_lines() {
        let dm = DirectMap::from_text(SAMPLE);
        assert_eq!(
            dm,
            DirectMap {
                k4: Some(14208),
                m2: Some(1034240),
                g1: None
            }
        );
    }

    #[test]
    fn parses_lines_without_a_unit_and_skips_garbage() {
        let map = parse("HugePages_Total:       0\nno colon here\nEmpty:\nX: y kB\n");
        assert_eq!(map.get("HugePages_Total"), Some(&0));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn delta_is_a_sign() {
        assert_eq!(delta(Some(1), Some(2)), Some("grew"));
        assert_eq!(delta(Some(2), Some(2)), Some("unchanged"));
        assert_eq!(delta(Some(2), Some(1)), Some("shrank"));
        assert_eq!(delta(None, Some(1)), None);
    }
}
