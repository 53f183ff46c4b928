//! Errno names: observations carry `"EINVAL"`, never a number or a
//! locale-dependent message, so they read the same on every machine.

use std::io;

/// The symbolic name of an errno value (`"EINVAL"`), or `"errno N"` for one
/// not in the table.
pub fn name(errno: i32) -> String {
    let known = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::EDOM => "EDOM",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENOSYS => "ENOSYS",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EHWPOISON => "EHWPOISON",
        // What a socket to the outside can meet.
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINPROGRESS => "EINPROGRESS",
        // Kernel-internal codes that can leak out of ioctls.
        512 => "ERESTARTSYS",
        524 => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    known.to_string()
}

/// The errno name of an I/O error, or its text when it carries no errno.
pub fn of(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => name(errno),
        None => err.to_string(),
    }
}

/// `"ok"` or the errno name: the shape of most per-operation observations.
pub fn outcome<T>(result: &io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => of(e),
    }
}

/// Puts `"ok"` or the errno name of `result` in an observation's field and
/// hands back the value: a probe records each step this way and stops at the
/// first that fails (`let Some(fd) = record(&mut obs.step, ...) else {
/// return Ok(obs) }`), so an observation ends where the kernel said no.
pub fn record<T, F: From<String>>(field: &mut F, result: io::Result<T>) -> Option<T> {
    *field = F::from(outcome(&result));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_errnos_guest_memfd_returns() {
        assert_eq!(name(libc::EINVAL), "EINVAL");
        assert_eq!(name(libc::EFAULT), "EFAULT");
        assert_eq!(name(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(name(libc::ENODEV), "ENODEV");
        assert_eq!(name(libc::ENOTTY), "ENOTTY");
        assert_eq!(name(524), "ENOTSUPP");
    }

    #[test]
    fn unknown_errno_keeps_its_number() {
        assert_eq!(name(4000), "errno 4000");
    }

    #[test]
    fn outcome_is_ok_or_the_name() {
        assert_eq!(outcome(&Ok::<(), io::Error>(())), "ok");
        assert_eq!(
            outcome::<()>(&Err(io::Error::from_raw_os_error(libc::EIO))),
            "EIO"
        );
    }

    #[test]
    fn record_fills_plain_and_optional_fields() {
        let mut plain = String::new();
        assert_eq!(record(&mut plain, Ok::<u8, io::Error>(7)), Some(7));
        assert_eq!(plain, "ok");
        let mut optional: Option<String> = None;
        let refused = Err::<u8, _>(io::Error::from_raw_os_error(libc::ENODEV));
        assert_eq!(record(&mut optional, refused), None);
        assert_eq!(optional.as_deref(), Some("ENODEV"));
    }
}
