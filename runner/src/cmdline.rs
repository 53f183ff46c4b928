//! Shell-quoted command lines, for logs and for the commands printed to a
//! person (`qemu.cmdline`, `vng.cmdline`, `shell --dry-run`).

use std::path::Path;

/// One word of a shell command, quoted if it needs it.
pub fn quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Shell-quoted command line of any program.
pub fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(quote(&program.to_string_lossy()))
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_that_need_it_are_quoted() {
        assert_eq!(quote("console=ttyS0"), "console=ttyS0");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(
            command_line(Path::new("/bin/x y"), &["a b".into(), "-c".into()]),
            "'/bin/x y' 'a b' -c"
        );
    }
}
