//! Mails as patch series arrive in: an mbox saved from a list archive or by
//! b4, a maildir or a folder of `.eml` / `.patch` files, `git format-patch`
//! output. Each message is split into headers and a body, and decoded:
//! RFC 2047 encoded words in headers, quoted-printable and base64 bodies,
//! the charsets patches come in (UTF-8, Latin-1), and multipart messages
//! whose patch is a text part or an attachment.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Header fields in order, names as written, values unfolded and decoded.
    pub headers: Vec<(String, String)>,
    /// The body (of the part that holds the patch, for multipart mail),
    /// decoded to text.
    pub body: String,
    /// Where it came from: a file, and the message's index in it.
    pub origin: String,
}

impl Mail {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or("")
    }

    /// Whether the body carries a diff.
    pub fn has_diff(&self) -> bool {
        self.body.lines().any(|l| l.starts_with("diff --git "))
            || (self.body.lines().any(|l| l.starts_with("--- "))
                && self.body.lines().any(|l| l.starts_with("+++ ")))
    }
}

/// Reads every message at `path`: an mbox or single message file, or a
/// directory (a maildir's `cur/` and `new/`, or `.eml`, `.patch`, `.mbox`
/// and `.mbx` files, in name order).
pub fn read_mails(path: &Path) -> Result<Vec<Mail>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut mails = Vec::new();
        for f in mail_files(path)? {
            mails.extend(read_mail_file(&f)?);
        }
        if mails.is_empty() {
            bail!(
                "{}: no mail in it (expected .eml, .patch or mbox files, or a maildir)",
                path.display()
            );
        }
        Ok(mails)
    } else {
        read_mail_file(path)
    }
}

/// The mail files of a directory, in the order their names sort.
fn mail_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let maildir = ["cur", "new"].iter().any(|d| dir.join(d).is_dir());
    let dirs: Vec<PathBuf> = if maildir {
        ["cur", "new"]
            .iter()
            .map(|d| dir.join(d))
            .filter(|d| d.is_dir())
            .collect()
    } else {
        vec![dir.to_path_buf()]
    };
    for d in dirs {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            let wanted = maildir
                || p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| ["eml", "patch", "mbox", "mbx", "diff"].contains(&x));
            if p.is_file() && wanted {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The largest mail file read: a series of hundreds of patches fits.
const MAX_MAIL_FILE: u64 = 64 << 20;

fn read_mail_file(path: &Path) -> Result<Vec<Mail>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_MAIL_FILE {
        bail!(
            "{}: {len} bytes; expected at most {MAX_MAIL_FILE} for a mail file",
            path.display()
        );
    }
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.contains(&0) {
        bail!("{}: holds NUL bytes; expected mail text", path.display());
    }
    Ok(split_mbox(&raw)
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_message(&m, &format!("{} #{}", path.display(), i + 1)))
        .collect())
}

/// Splits an mbox at its `From ` separator lines (at the start of the file
/// or after a blank line); a file without them is one message. `>From `
/// quoting (mboxo and mboxrd) is undone.
pub fn split_mbox(raw: &[u8]) -> Vec<Vec<u8>> {
    let lines: Vec<&[u8]> = raw.split_inclusive(|b| *b == b'\n').collect();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut blank_before = true;
    let is_mbox = lines.first().is_some_and(|l| l.starts_with(b"From "));
    for l in lines {
        if is_mbox && blank_before && l.starts_with(b"From ") {
            if !current.is_empty() {
                messages.push(without_separator(std::mem::take(&mut current)));
            }
            blank_before = false;
            continue;
        }
        let trimmed = trim_eol(l);
        blank_before = trimmed.is_empty();
        // mboxrd: ">From " and ">>From " lose one '>'.
        let body_line = match trimmed.iter().position(|b| *b != b'>') {
            Some(n) if n > 0 && trimmed[n..].starts_with(b"From ") => &l[1..],
            _ => l,
        };
        current.extend_from_slice(body_line);
    }
    if !current.iter().all(|b| b.is_ascii_whitespace()) {
        messages.push(if is_mbox {
            without_separator(current)
        } else {
            current
        });
    }
    messages
}

/// A message of an mbox less the blank line that separates it from the
/// next: that line is the mbox's, not the message's.
fn without_separator(mut m: Vec<u8>) -> Vec<u8> {
    if m.ends_with(b"\r\n\r\n") {
        m.truncate(m.len() - 2);
    } else if m.ends_with(b"\n\n") {
        m.truncate(m.len() - 1);
    }
    m
}

fn trim_eol(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Parses one message: headers, then the decoded body (for multipart mail,
/// the part that holds a diff, or the first text part).
pub fn parse_message(raw: &[u8], origin: &str) -> Mail {
    let (headers, body) = split_headers(raw);
    let content_type = header_of(&headers, "Content-Type").unwrap_or_default();
    let body = if content_type.to_ascii_lowercase().starts_with("multipart/") {
        multipart_body(&content_type, body)
    } else {
        decode_body(
            body,
            header_of(&headers, "Content-Transfer-Encoding").as_deref(),
            &content_type,
        )
    };
    Mail {
        headers: headers
            .into_iter()
            .map(|(n, v)| (n, decode_words(&v)))
            .collect(),
        body,
        origin: origin.to_string(),
    }
}

/// Header lines (unfolded, raw) and the body's bytes.
fn split_headers(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let end = raw[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| at + p + 1)
            .unwrap_or(raw.len());
        let line = trim_eol(&raw[at..end]);
        at = end;
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(text.trim());
            }
            continue;
        }
        match text.split_once(':') {
            Some((n, v)) if !n.is_empty() && !n.contains(' ') => {
                headers.push((n.to_string(), v.trim().to_string()))
            }
            // Not a header: the message has none, and this is its body.
            _ if headers.is_empty() => return (headers, raw),
            _ => {}
        }
    }
    (headers, &raw[at.min(raw.len())..])
}

fn header_of(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// A parameter of a header value (`charset`, `boundary`), unquoted.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The part of a multipart body that holds the patch: the first part with a
/// diff, else the first text part.
fn multipart_body(content_type: &str, body: &[u8]) -> String {
    let Some(boundary) = param(content_type, "boundary") else {
        return String::from_utf8_lossy(body).into_owned();
    };
    let delim = format!("--{boundary}");
    let text = String::from_utf8_lossy(body).into_owned();
    let mut parts = Vec::new();
    for chunk in text.split(&delim).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or(chunk.strip_prefix('\n'))
            .unwrap_or(chunk);
        let part = parse_message(chunk.as_bytes(), "part");
        let ct = part
            .header("Content-Type")
            .unwrap_or("text/plain")
            .to_ascii_lowercase();
        parts.push((ct, part.body));
    }
    let diff = parts.iter().find(|(_, b)| {
        b.lines()
            .any(|l| l.starts_with("diff --git ") || l.starts_with("+++ "))
    });
    diff.or_else(|| parts.iter().find(|(ct, _)| ct.starts_with("text/")))
        .map(|(_, b)| b.clone())
        .unwrap_or_default()
}

/// A body decoded from its transfer encoding and charset.
fn decode_body(body: &[u8], encoding: Option<&str>, content_type: &str) -> String {
    let bytes = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("quoted-printable") => decode_qp(body, false),
        Some("base64") => decode_base64(body),
        _ => body.to_vec(),
    };
    to_text(&bytes, param(content_type, "charset").as_deref())
}

/// Bytes in a charset to text: UTF-8 (invalid sequences replaced), or
/// Latin-1 / Windows-1252 byte for byte.
fn to_text(bytes: &[u8], charset: Option<&str>) -> String {
    match charset.map(str::to_ascii_lowercase).as_deref() {
        Some("iso-8859-1" | "latin1" | "iso-8859-15" | "windows-1252" | "cp1252") => {
            bytes.iter().map(|b| *b as char).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Quoted-printable: `=XX` bytes and `=` soft line breaks; in a header's
/// encoded word (`in_header`), `_` is a space.
pub fn decode_qp(text: &[u8], in_header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'=' => {
                let rest = &text[i + 1..];
                if rest.starts_with(b"\r\n") {
                    i += 3;
                } else if rest.starts_with(b"\n") {
                    i += 2;
                } else if let Some(v) = rest.get(..2).and_then(hex_byte) {
                    out.push(v);
                    i += 3;
                } else {
                    out.push(b'=');
                    i += 1;
                }
            }
            b'_' if in_header => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(two).ok()?;
    u8::from_str_radix(s, 16).ok()
}

/// Base64, whitespace ignored; stops at padding or the first byte that is
/// not of the alphabet.
pub fn decode_base64(text: &[u8]) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        if c.is_ascii_whitespace() {
            continue;
        }
        let Some(v) = value(c) else { break };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// RFC 2047 encoded words (`=?utf-8?q?...?=`, `=?UTF-8?B?...?=`) decoded;
/// white space between two encoded words dropped, as the RFC says.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, from) = rest.split_at(start);
        let decoded = encoded_word(from);
        match decoded {
            Some((text, used)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &from[used..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &from[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `s`: its text and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, rest) = inner.split_once('?')?;
    let (enc, data_and_rest) = rest.split_once('?')?;
    let end = data_and_rest.find("?=")?;
    let data = &data_and_rest[..end];
    let bytes = match enc {
        "q" | "Q" => decode_qp(data.as_bytes(), true),
        "b" | "B" => decode_base64(data.as_bytes()),
        _ => return None,
    };
    // Where the data starts in `s`, plus the data and the closing `?=`.
    let used = (s.len() - data_and_rest.len()) + end + 2;
    // RFC 2231 language suffix: `utf-8*en`.
    let charset = charset.split('*').next().unwrap_or(charset);
    Some((to_text(&bytes, Some(charset)), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_bodies_and_soft_breaks() {
        assert_eq!(
            decode_qp(b"a=3Db=\nc =C3=A9", false),
            "a=bc \u{e9}".as_bytes()
        );
        assert_eq!(decode_qp(b"x=\r\ny", false), b"xy");
        assert_eq!(decode_qp(b"100%=", false), b"100%=");
    }

    #[test]
    fn base64_ignores_whitespace() {
        assert_eq!(decode_base64(b"ZGlm\nZiAtLWdp\ndA=="), b"diff --git");
    }

    #[test]
    fn encoded_words_in_subjects() {
        assert_eq!(
            decode_words("=?utf-8?q?=5BPATCH_v12_03/16=5D_KVM:_caf=C3=A9?="),
            "[PATCH v12 03/16] KVM: caf\u{e9}"
        );
        assert_eq!(
            decode_words("=?UTF-8?B?w6lk?= =?UTF-8?B?aXQ=?= now"),
            "\u{e9}dit now"
        );
        assert_eq!(decode_words("plain =? not a word"), "plain =? not a word");
        assert_eq!(
            decode_words("Patrick =?iso-8859-1?q?R=F6y?= <p@x>"),
            "Patrick R\u{f6}y <p@x>"
        );
    }

    #[test]
    fn an_mbox_splits_at_from_lines_after_blank_ones() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From here\n\nFrom b@c Mon Jan  1 00:00:00 2024\nSubject: two\n\nx\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        let one = parse_message(&m[0], "t");
        assert_eq!(one.subject(), "one");
        assert_eq!(one.body, "body\nFrom here\n");
        assert_eq!(parse_message(&m[1], "t").subject(), "two");
        // Not an mbox: one message.
        assert_eq!(split_mbox(b"Subject: x\n\nFrom me\n").len(), 1);
    }

    #[test]
    fn folded_headers_and_encoded_bodies() {
        let raw = b"Subject: [PATCH 1/2] a very\n long subject\nContent-Type: text/plain; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: quoted-printable\n\n+caf=E9\n";
        let m = parse_message(raw, "t");
        assert_eq!(m.subject(), "[PATCH 1/2] a very long subject");
        assert_eq!(m.body, "+caf\u{e9}\n");
    }

    #[test]
    fn a_patch_attached_to_a_multipart_mail() {
        let raw = b"Subject: [PATCH] x\nContent-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\nContent-Type: text/plain\n\nSee attached.\n--XX\nContent-Type: text/x-patch\nContent-Transfer-Encoding: base64\n\nZGlmZiAtLWdpdCBhL2YgYi9mCg==\n--XX--\n";
        let m = parse_message(raw, "t");
        assert_eq!(m.body, "diff --git a/f b/f\n");
        assert!(m.has_diff());
    }
}
