//! systemd unit names: escaping by systemd's rules, and a checked unit-name type.
//!
//! systemd keeps `A-Z a-z 0-9 : _ .` of a string, writes `/` as `-` and every other byte as
//! `\xNN` (lower case), a leading `.` included; `-` is escaped because it separates the levels of a slice
//! name (`a-b.slice` lives in `a.slice`). This is `systemd-escape STRING` (and
//! `unit_name_escape()` in systemd's `src/basic/unit-name.c`); the tests compare with the
//! `systemd-escape` binary where it is installed. A unit name is at most 255 bytes.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// The longest unit name systemd accepts (`UNIT_NAME_MAX - 1`).
pub const UNIT_NAME_MAX: usize = 255;

/// Escapes `s` as `systemd-escape` does.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else if b == b'/' {
            out.push('-');
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reverses [`escape`]; `None` for a string `escape` cannot have produced.
pub fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            let hex = s.get(i + 2..i + 4)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(if bytes[i] == b'-' { b'/' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The kinds of unit daemonic creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitType {
    /// A group of units and their cgroup subtree.
    Slice,
    /// A group of processes started elsewhere.
    Scope,
}

impl UnitType {
    fn suffix(self) -> &'static str {
        match self {
            UnitType::Slice => ".slice",
            UnitType::Scope => ".scope",
        }
    }
}

/// A valid unit name, made of escaped parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnitName(String);

impl UnitName {
    /// The unit whose prefix is `parts` escaped one by one and joined with `-` (for a slice:
    /// one level per part), followed by the type's suffix. Fails when the result is longer
    /// than systemd allows.
    pub fn new(parts: &[&str], kind: UnitType) -> Result<UnitName> {
        let name = format!("{}{}", parts.iter().map(|p| escape(p)).collect::<Vec<_>>().join("-"), kind.suffix());
        if name.len() > UNIT_NAME_MAX {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the unit name for {:?} would be {} bytes long; systemd allows {UNIT_NAME_MAX} (use shorter names)",
                    parts.join("/"),
                    name.len()
                ),
            ));
        }
        Ok(UnitName(name))
    }

    /// A whole unit name made by the caller from escaped parts; fails when it is too long.
    pub fn checked(name: String) -> Result<UnitName> {
        if name.len() > UNIT_NAME_MAX {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the unit name {}… would be {} bytes long; systemd allows {UNIT_NAME_MAX} (use shorter names)",
                    &name[..60],
                    name.len()
                ),
            ));
        }
        Ok(UnitName(name))
    }

    /// The name as systemd sees it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::cgroup::unit_name::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(escape("web-1/a b.x"), "web\\x2d1-a\\x20b.x");
        assert_eq!(escape(".hidden"), "\\x2ehidden");
        assert_eq!(escape("ÄÖ"), "\\xc3\\x84\\xc3\\x96");
        assert_eq!(escape("a:b_c.d"), "a:b_c.d");
        assert_eq!(escape("log@2+x"), "log\\x402\\x2bx");
    }

    #[test]
    fn unescape_reverses_escape() {
        for s in ["web-1", ".x", "ÄÖ a/b", "plain", "log@2+x", ""] {
            assert_eq!(unescape(&escape(s)).as_deref(), Some(s), "{s:?}");
        }
        assert_eq!(unescape("bad\\q"), None);
        assert_eq!(unescape("bad\\x2"), None);
    }

    #[test]
    fn matches_the_systemd_escape_binary() {
        let samples = ["web-1/a b.x", ".hidden", "ÄÖ", "log@2+x", "main-1.member", "a\\b", "tab\there"];
        let out = match std::process::Command::new("systemd-escape").args(samples).output() {
            Ok(out) if out.status.success() => out,
            _ => {
                eprintln!("*** SKIPPED comparison: systemd-escape is not installed ***");
                return;
            }
        };
        let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        let ours: Vec<String> = samples.iter().map(|s| escape(s)).collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn unit_names_are_built_and_bounded() {
        let slice = UnitName::new(&["daemonic", "web-42"], UnitType::Slice).expect("slice");
        assert_eq!(slice.as_str(), "daemonic-web\\x2d42.slice");
        let scope = UnitName::new(&["daemonic", "web-42", "logger-3"], UnitType::Scope).expect("scope");
        assert_eq!(scope.to_string(), "daemonic-web\\x2d42-logger\\x2d3.scope");
        let long = "x".repeat(250);
        let e = UnitName::new(&["daemonic", &long], UnitType::Scope).expect_err("too long");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("systemd allows 255"), "{e}");
    }
}
