//! Decoding a crash's frames (`func+0x1a/0x30`) to source file and line with
//! the built kernel's System.map and vmlinux (`addr2line`). Needs a kernel
//! built with debug info (`debug_info: true` in its recipe); without it the
//! frames are kept as function+offset and the report says so. For people
//! only: decoded lines never reach a snapshot.

use anyhow::{Context, Result};
use regex::Regex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::kernel::BuiltKernel;

/// One frame of a report: `func+0xOFF/0xSIZE`, from its RIP line or its
/// call trace (unreliable `?` frames left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub func: String,
    pub offset: u64,
    pub size: u64,
}

impl Frame {
    pub fn text(&self) -> String {
        format!("{}+{:#x}/{:#x}", self.func, self.offset, self.size)
    }
}

fn frame_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:\[[ \d.]+\]\s*)?(?:RIP: [0-9a-f]{4}:|\s+)([A-Za-z_.$][\w.$]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)")
            .expect("valid regex")
    })
}

/// The frames of a crash report, in order, each once.
pub fn frames_of(lines: &[String]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for l in lines {
        let Some(c) = frame_re().captures(l) else {
            continue;
        };
        let f = Frame {
            func: c[1].to_string(),
            offset: u64::from_str_radix(&c[2], 16).unwrap_or(0),
            size: u64::from_str_radix(&c[3], 16).unwrap_or(0),
        };
        if !frames.contains(&f) {
            frames.push(f);
        }
    }
    frames
}

/// Text symbols of a System.map: name to addresses (static functions can
/// share a name).
pub fn text_symbols(system_map: &str) -> HashMap<String, Vec<u64>> {
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for l in system_map.lines() {
        let mut it = l.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(addr, 16) {
            m.entry(name.to_string()).or_default().push(a);
        }
    }
    m
}

/// Whether a built kernel carries DWARF debug info.
pub fn has_debug_info(kernel: &BuiltKernel) -> bool {
    std::fs::read_to_string(&kernel.config)
        .map(|c| c.lines().any(|l| l == "CONFIG_DEBUG_INFO=y"))
        .unwrap_or(false)
}

/// What frames are decoded with: a vmlinux and where its symbols come from.
#[derive(Debug, Clone)]
pub struct DebugInfo {
    pub vmlinux: PathBuf,
    /// The System.map; without one, `nm` reads the vmlinux's symbols.
    pub system_map: Option<PathBuf>,
    /// Whether the vmlinux has DWARF line tables.
    pub dwarf: bool,
    /// Why there is nothing to decode with, for the report.
    pub without_dwarf: String,
}

impl DebugInfo {
    /// A kernel the runner built.
    pub fn of_kernel(kernel: &BuiltKernel) -> DebugInfo {
        DebugInfo {
            vmlinux: kernel.vmlinux.clone(),
            system_map: Some(kernel.system_map.clone()),
            dwarf: has_debug_info(kernel),
            without_dwarf: format!(
                "kernel {} has no debug info; set `debug_info: true` in kernels/{}.yaml",
                kernel.name, kernel.name
            ),
        }
    }

    /// Any vmlinux (a CI's, a bot's): its System.map when one lies beside
    /// it, its DWARF when it has a `.debug_info` section.
    pub fn of_vmlinux(vmlinux: &Path) -> Result<DebugInfo> {
        let head = std::fs::read(vmlinux)
            .map(|b| b.get(..4).map(<[u8]>::to_vec).unwrap_or_default())
            .with_context(|| format!("cannot read {}", vmlinux.display()))?;
        if head != b"\x7fELF" {
            anyhow::bail!(
                "{}: not an ELF file (expected a vmlinux)",
                vmlinux.display()
            );
        }
        let sections = Command::new("readelf")
            .args(["-S", "-W"])
            .arg(vmlinux)
            .output()
            .context("cannot run readelf (binutils)")?;
        let map = vmlinux.with_file_name("System.map");
        Ok(DebugInfo {
            vmlinux: vmlinux.to_path_buf(),
            system_map: map.is_file().then_some(map),
            dwarf: String::from_utf8_lossy(&sections.stdout).contains(".debug_info"),
            without_dwarf: format!("{} has no DWARF (.debug_info)", vmlinux.display()),
        })
    }

    /// Text symbols, from the System.map or `nm`.
    fn symbols(&self) -> Result<HashMap<String, Vec<u64>>> {
        let text = match &self.system_map {
            Some(m) => std::fs::read_to_string(m)
                .with_context(|| format!("cannot read {}", m.display()))?,
            None => {
                let out = Command::new("nm")
                    .arg("--defined-only")
                    .arg(&self.vmlinux)
                    .output()
                    .context("cannot run nm (binutils)")?;
                if !out.status.success() {
                    anyhow::bail!(
                        "nm {}: {}",
                        self.vmlinux.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        Ok(text_symbols(&text))
    }
}

/// Each frame with its source location(s), innermost first, or the frames
/// as they are with a line saying why they are not decoded.
pub fn decode(kernel: &BuiltKernel, lines: &[String]) -> Result<Vec<String>> {
    decode_with(&DebugInfo::of_kernel(kernel), lines)
}

/// [`decode`] with any vmlinux.
pub fn decode_with(info: &DebugInfo, lines: &[String]) -> Result<Vec<String>> {
    let frames = frames_of(lines);
    if frames.is_empty() {
        return Ok(vec![]);
    }
    if !info.dwarf {
        let mut out = vec![format!("(not decoded: {})", info.without_dwarf)];
        out.extend(frames.iter().map(Frame::text));
        return Ok(out);
    }
    let symbols = info.symbols()?;
    let mut out = Vec::new();
    for f in &frames {
        let Some(addrs) = symbols.get(&f.func) else {
            out.push(format!("{}: not in the symbol table", f.text()));
            continue;
        };
        for (i, base) in addrs.iter().enumerate() {
            let locs = addr2line(&info.vmlinux, base + f.offset)?;
            let which = if addrs.len() > 1 {
                format!(" (symbol {} of {})", i + 1, addrs.len())
            } else {
                String::new()
            };
            out.push(format!("{}{which}:", f.text()));
            out.extend(locs.into_iter().map(|l| format!("    {l}")));
        }
    }
    Ok(out)
}

/// A Debian variant is built with its object directory inside the source
/// tree (`src/out`, srctree `..`): `/cache/.../src/out/../mm/gup.c` is
/// `mm/gup.c` to a reader.
fn source_relative(line: &str) -> String {
    match line.split_once(" at ") {
        Some((func, path)) => {
            let path = path.rsplit_once("/out/../").map(|(_, p)| p).unwrap_or(path);
            format!("{func} at {}", path.strip_prefix("../").unwrap_or(path))
        }
        None => line.to_string(),
    }
}

/// `addr2line -f -i -p`: the location of one address and the functions it
/// was inlined into.
fn addr2line(vmlinux: &Path, addr: u64) -> Result<Vec<String>> {
    let out = Command::new("addr2line")
        .args(["-f", "-i", "-p", "-e"])
        .arg(vmlinux)
        .arg(format!("{addr:#x}"))
        .output()
        .context("cannot run addr2line (binutils)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| source_relative(l.trim()))
        .filter(|l| !l.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn frames_from_rip_and_trace_without_unreliable_ones() {
        let l = lines(
            "[    3.1] RIP: 0010:__access_remote_vm+0x2bc/0x3b0\n\
             [    3.2] Call Trace:\n\
             [    3.2]  <TASK>\n\
             [    3.2]  mem_rw+0x11f/0x2b0\n\
             [    3.2]  ? srso_return_thunk+0x5/0x5f\n\
             [    3.2]  __x64_sys_pread64+0x68/0x90\n\
             [    3.2]  </TASK>\n\
             RIP: 0010:__access_remote_vm+0x2bc/0x3b0\n",
        );
        let f = frames_of(&l);
        let names: Vec<&str> = f.iter().map(|f| f.func.as_str()).collect();
        assert_eq!(names, ["__access_remote_vm", "mem_rw", "__x64_sys_pread64"]);
        assert_eq!(f[0].offset, 0x2bc);
        assert_eq!(f[0].text(), "__access_remote_vm+0x2bc/0x3b0");
    }

    #[test]
    fn source_paths_are_relative_to_the_tree() {
        assert_eq!(
            source_relative("mem_rw at /c/build/rfc/src/out/../fs/proc/base.c:912"),
            "mem_rw at fs/proc/base.c:912"
        );
        assert_eq!(
            source_relative("(inlined by) f at ../mm/gup.c:1"),
            "(inlined by) f at mm/gup.c:1"
        );
        assert_eq!(
            source_relative("f at /home/me/linux/mm/gup.c:1"),
            "f at /home/me/linux/mm/gup.c:1"
        );
    }

    #[test]
    fn system_map_text_symbols_keep_duplicates() {
        let m = text_symbols("ffffffff81000000 T _text\nffffffff81001000 t helper\nffffffff81002000 t helper\nffffffff82000000 D data\n");
        assert_eq!(m["_text"], vec![0xffffffff81000000]);
        assert_eq!(m["helper"].len(), 2);
        assert!(!m.contains_key("data"));
    }
}
