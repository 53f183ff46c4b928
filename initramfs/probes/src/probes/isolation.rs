//! `isolation`: what of the host the guest can reach. The hermetic VM is
//! meant to have no network and no view of the host's files (the result
//! port, ttyS1, is the one channel out, and it carries records, not
//! commands); this probe looks from inside and reports what is there:
//! network interfaces, whether a datagram to an outside address or to the
//! host's vsock can leave, the mounts and the root filesystem, block
//! devices, and the PCI and virtio devices that could carry host files or a
//! network.
//!
//! Everything reported is fixed by the kernel's configuration and QEMU's
//! command line (names, types, class codes, errno names), never by the boot:
//! no sizes, mount options or addresses that vary.

use std::ffi::CString;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::Probe;
use crate::errno;
use crate::{Context, Result};

/// Its arguments: defined, with their defaults and bounds, in the
/// protocol, which the host validates cases with.
pub use gmem_protocol::args::IsolationArgs as Args;

#[derive(Debug, Serialize)]
pub struct Observation {
    /// /sys/class/net, sorted.
    pub net_interfaces: Vec<String>,
    /// One datagram (or a stream connect) to an address outside the guest,
    /// by what was tried: "sent", or the stage that failed and its errno.
    pub reach_out: Vec<Attempt>,
    /// /proc/mounts in order: "FSTYPE on MOUNTPOINT" (no options: tmpfs
    /// puts the memory size there).
    pub mounts: Vec<String>,
    /// The mounts whose type can carry the host's files (9p, virtiofs, NFS,
    /// SMB, FUSE).
    pub host_file_mounts: Vec<String>,
    /// The filesystem at "/": the type /proc/mounts gives it, and statfs's.
    pub root: String,
    /// Of the filesystem types that can carry host files, those the kernel
    /// knows (/proc/filesystems): known is not mounted, it needs a transport.
    pub host_file_types_known: Vec<String>,
    /// Whether the kernel has a block layer (/sys/block exists).
    pub block_layer: bool,
    /// /sys/block, sorted.
    pub block_devices: Vec<String>,
    /// /sys/bus/pci/devices, sorted: "SLOT CLASS VENDOR:DEVICE kind".
    pub pci_devices: Vec<String>,
    /// /sys/bus/virtio/devices, sorted: "NAME kind" (a virtio-net, -9p,
    /// -fs, -vsock or -blk device would be a way to the host).
    pub virtio_devices: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Attempt {
    pub to: &'static str,
    pub result: String,
}

/// Filesystem types that can show the guest the host's (or another
/// machine's) files.
const HOST_FILE_TYPES: &[&str] = &["9p", "virtiofs", "nfs", "nfs4", "cifs", "smb3", "fuse"];

impl Probe for Args {
    type Output = Observation;

    fn run(self) -> Result<Observation> {
        let mounts_text =
            std::fs::read_to_string("/proc/mounts").context(|| "reading /proc/mounts".into())?;
        let mounts = parse_mounts(&mounts_text);
        let filesystems = std::fs::read_to_string("/proc/filesystems")
            .context(|| "reading /proc/filesystems".into())?;
        let root_statfs = statfs_type("/").context(|| "statfs(/)".into())?;
        let root_mount = mounts
            .iter()
            .rev()
            .find(|(_, point)| point == "/")
            .map(|(fstype, _)| fstype.as_str())
            .unwrap_or("not in /proc/mounts");
        Ok(Observation {
            net_interfaces: list_dir("/sys/class/net")?.unwrap_or_default(),
            reach_out: reach_out(),
            host_file_mounts: mounts
                .iter()
                .filter(|(fstype, _)| is_host_file_type(fstype))
                .map(|(fstype, point)| format!("{fstype} on {point}"))
                .collect(),
            mounts: mounts
                .iter()
                .map(|(fstype, point)| format!("{fstype} on {point}"))
                .collect(),
            root: format!("{root_mount} (statfs: {})", magic_name(root_statfs)),
            host_file_types_known: known_host_file_types(&filesystems),
            block_layer: Path::new("/sys/block").is_dir(),
            block_devices: list_dir("/sys/block")?.unwrap_or_default(),
            pci_devices: pci_devices()?,
            virtio_devices: virtio_devices()?,
        })
    }
}

/// The entries of `dir`, sorted; `None` when it does not exist (sysfs
/// leaves out the directories of what the kernel was built without).
fn list_dir(dir: &str) -> Result<Option<Vec<String>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("listing {dir}")),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.context(|| format!("listing {dir}"))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(Some(names))
}

/// (fstype, mount point) of each line of /proc/mounts, in order.
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_source, point, fstype) = (f.next()?, f.next()?, f.next()?);
            Some((fstype.to_string(), point.to_string()))
        })
        .collect()
}

fn is_host_file_type(fstype: &str) -> bool {
    // fuse mounts show as "fuse.NAME" (sshfs: fuse.sshfs).
    HOST_FILE_TYPES.contains(&fstype) || fstype.starts_with("fuse.")
}

/// The host-file types /proc/filesystems lists, in its order.
pub fn known_host_file_types(proc_filesystems: &str) -> Vec<String> {
    proc_filesystems
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|t| is_host_file_type(t))
        .map(str::to_string)
        .collect()
}

fn statfs_type(path: &str) -> io::Result<i64> {
    let c = CString::new(path).expect("no NUL in a path literal");
    // SAFETY: a zeroed statfs is a valid out-buffer (plain data); `c` is
    // NUL-terminated and outlives the call.
    let (r, s) = unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut s), s)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s.f_type)
}

/// The name of a statfs magic number, for the ones a root can be.
pub fn magic_name(magic: i64) -> String {
    match magic {
        0x0102_1994 => "tmpfs".into(),
        0x8584_58f6 => "ramfs".into(),
        0x0102_1997 => "9p".into(),
        0x6573_5546 => "fuse (virtiofs or another)".into(),
        0x6969 => "nfs".into(),
        0xff53_4d42 | 0xfe53_4d42 => "cifs/smb".into(),
        0x794c_7630 => "overlayfs".into(),
        0xef53 => "ext2/3/4".into(),
        other => format!("magic {other:#x}"),
    }
}

/// Tries to send to addresses a network would reach: QEMU's user-mode
/// network puts the host at 10.0.2.2 and fec0::2, and vsock's CID 2 is the
/// host. UDP never waits for an answer; the vsock stream is non-blocking.
fn reach_out() -> Vec<Attempt> {
    let inet = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 53u16.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([10, 0, 2, 2]).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut inet6_addr = [0u8; 16];
    inet6_addr[..2].copy_from_slice(&[0xfe, 0xc0]);
    inet6_addr[15] = 2;
    let inet6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: 53u16.to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: inet6_addr,
        },
        sin6_scope_id: 0,
    };
    // SAFETY: sockaddr_vm is plain data; zero is a valid value of every field.
    let mut vsock: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    vsock.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    vsock.svm_cid = libc::VMADDR_CID_HOST;
    vsock.svm_port = 9;
    vec![
        Attempt {
            to: "udp 10.0.2.2:53",
            result: send_to(libc::AF_INET, libc::SOCK_DGRAM, &inet),
        },
        Attempt {
            to: "udp [fec0::2]:53",
            result: send_to(libc::AF_INET6, libc::SOCK_DGRAM, &inet6),
        },
        Attempt {
            to: "vsock host (cid 2) port 9",
            result: send_to(libc::AF_VSOCK, libc::SOCK_STREAM, &vsock),
        },
    ]
}

/// socket, connect, send one byte: "sent", or "STAGE: ERRNO" where it
/// stopped. A non-blocking stream still connecting says "connect:
/// EINPROGRESS": that, too, is a way out.
fn send_to<A>(domain: i32, ty: i32, addr: &A) -> String {
    // SAFETY: plain system calls on a descriptor we own; `addr` is a
    // sockaddr of the family and size we pass.
    unsafe {
        let fd = libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return format!("socket: {}", errno::of(&io::Error::last_os_error()));
        }
        let stage = if libc::connect(
            fd,
            addr as *const A as *const libc::sockaddr,
            std::mem::size_of::<A>() as libc::socklen_t,
        ) != 0
        {
            Some("connect")
        } else if libc::send(fd, b"x".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) != 1 {
            Some("send")
        } else {
            None
        };
        let err = io::Error::last_os_error();
        libc::close(fd);
        match stage {
            Some(stage) => format!("{stage}: {}", errno::of(&err)),
            None => "sent".into(),
        }
    }
}

/// PCI devices as "SLOT CLASS VENDOR:DEVICE kind", the slot without its
/// domain (always 0000 here).
fn pci_devices() -> Result<Vec<String>> {
    let dir = "/sys/bus/pci/devices";
    let Some(slots) = list_dir(dir)? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for slot in slots {
        let read = |f: &str| {
            let p = format!("{dir}/{slot}/{f}");
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_string())
                .context(|| format!("reading {p}"))
        };
        let class = read("class")?;
        let vendor = read("vendor")?;
        let device = read("device")?;
        let short = slot.strip_prefix("0000:").unwrap_or(&slot);
        out.push(format!(
            "{short} {class} {}:{} {}",
            vendor.trim_start_matches("0x"),
            device.trim_start_matches("0x"),
            pci_kind(&class, &vendor)
        ));
    }
    Ok(out)
}

/// What a PCI device is, from its class code, with "virtio" before it
/// when it is one (virtio's vendor id): a virtio-9p device's class says
/// nothing of host files.
pub fn pci_kind(class: &str, vendor: &str) -> String {
    let kind = class_kind(class);
    if vendor == "0x1af4" {
        return format!("virtio {kind}");
    }
    kind.to_string()
}

fn class_kind(class: &str) -> &'static str {
    let code = u32::from_str_radix(class.trim_start_matches("0x"), 16).unwrap_or(u32::MAX);
    match (code >> 16, (code >> 8) & 0xff) {
        (0x01, 0x01) => "IDE controller",
        (0x01, _) => "storage controller",
        (0x02, _) => "network controller",
        (0x03, _) => "display controller",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, _) => "bridge",
        (0x07, _) => "communication controller",
        (0x08, _) => "system peripheral",
        (0x0c, _) => "serial bus controller",
        _ => "other",
    }
}

/// virtio devices as "NAME kind".
fn virtio_devices() -> Result<Vec<String>> {
    let dir = "/sys/bus/virtio/devices";
    let Some(names) = list_dir(dir)? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for name in names {
        let p = format!("{dir}/{name}/device");
        let id = std::fs::read_to_string(&p).context(|| format!("reading {p}"))?;
        out.push(format!("{name} {}", virtio_kind(id.trim())));
    }
    Ok(out)
}

/// The virtio device id's name (the virtio specification's numbering).
pub fn virtio_kind(id: &str) -> String {
    let n = u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap_or(u32::MAX);
    match n {
        1 => "net".into(),
        2 => "block".into(),
        3 => "console".into(),
        4 => "rng".into(),
        5 => "balloon".into(),
        8 => "scsi".into(),
        9 => "9p".into(),
        19 => "vsock".into(),
        26 => "fs".into(),
        _ => format!("device id {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_keep_type_and_point_not_options() {
        let text = "rootfs / rootfs rw,size=1000k,nr_inodes=250 0 0\n\
                    devtmpfs /dev devtmpfs rw,nosuid,size=4k 0 0\n\
                    host0 /mnt 9p rw,trans=virtio 0 0\n";
        let m = parse_mounts(text);
        assert_eq!(
            m,
            vec![
                ("rootfs".into(), "/".into()),
                ("devtmpfs".into(), "/dev".into()),
                ("9p".into(), "/mnt".into())
            ]
        );
        assert!(is_host_file_type("9p") && is_host_file_type("fuse.sshfs"));
        assert!(!is_host_file_type("tmpfs") && !is_host_file_type("rootfs"));
    }

    #[test]
    fn known_host_file_types_come_from_proc_filesystems() {
        let text = "nodev\tsysfs\nnodev\ttmpfs\nnodev\t9p\n\text4\nnodev\tvirtiofs\n";
        assert_eq!(known_host_file_types(text), vec!["9p", "virtiofs"]);
    }

    #[test]
    fn devices_are_named_by_class_and_id() {
        assert_eq!(pci_kind("0x020000", "0x8086"), "network controller");
        assert_eq!(pci_kind("0x010180", "0x8086"), "IDE controller");
        assert_eq!(pci_kind("0x060000", "0x8086"), "host bridge");
        // virtio-net and virtio-9p as QEMU presents them.
        assert_eq!(pci_kind("0x020000", "0x1af4"), "virtio network controller");
        assert_eq!(pci_kind("0x000200", "0x1af4"), "virtio other");
        assert_eq!(virtio_kind("0x0009"), "9p");
        assert_eq!(virtio_kind("0x001a"), "fs");
        assert_eq!(virtio_kind("0x0063"), "device id 0x0063");
        assert_eq!(magic_name(0x0102_1994), "tmpfs");
        assert_eq!(magic_name(0x1234), "magic 0x1234");
    }
}
