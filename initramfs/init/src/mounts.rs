//! The filesystems the probes need. Nothing is mounted for PID 1 in an
//! initramfs (DEVTMPFS_MOUNT only applies to a real root), so init does it.

use std::ffi::CString;
use std::io;

/// (source, target, fstype), in order: /dev first, as the result port lives
/// there; debugfs after sysfs, as its mount point is in sysfs.
const MOUNTS: &[(&str, &str, &str)] = &[
    ("devtmpfs", "/dev", "devtmpfs"),
    ("proc", "/proc", "proc"),
    ("sysfs", "/sys", "sysfs"),
    ("debugfs", "/sys/kernel/debug", "debugfs"),
    ("tmpfs", "/tmp", "tmpfs"),
];

/// Mounts everything; returns one message per failure (the rest still run).
pub fn mount_all() -> Vec<String> {
    MOUNTS
        .iter()
        .filter_map(|(source, target, fstype)| {
            mount(source, target, fstype)
                .err()
                .map(|e| format!("mount {fstype} on {target}: {e}"))
        })
        .collect()
}

/// Under virtme-ng: vng's init mounted /dev, /proc, /sys and /tmp; mounts
/// debugfs (for fault injection and the page-table dump) only if it is not
/// there yet.
pub fn mount_missing() -> Vec<String> {
    let debugfs_mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/kernel/debug"));
    if debugfs_mounted {
        return vec![];
    }
    mount("debugfs", "/sys/kernel/debug", "debugfs")
        .err()
        .map(|e| format!("mount debugfs on /sys/kernel/debug: {e}"))
        .into_iter()
        .collect()
}

fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    // The mount point may be missing from the archive (debugfs's is made by sysfs).
    if let Err(e) = std::fs::create_dir_all(target) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    let c = |s: &str| CString::new(s).expect("mount strings have no NUL");
    let (source, target_c, fstype) = (c(source), c(target), c(fstype));
    // SAFETY: every pointer is a live NUL-terminated string; data is NULL.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID,
            std::ptr::null(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // Already mounted (e.g. a kernel that did automount devtmpfs): fine.
    if e.raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    Err(e)
}
