//! Files: the naming rules of the named keyspaces a database holds.
//!
//! A file name is one or more components joined by `/` (`account/file`), each made of
//! `[A-Za-z0-9_.-]`, at most [`MAX_NAME_LEN`] bytes in all. `main` is the default file;
//! `sys/...` is reserved for hotbackup's own files (canary, incidents): clients may read them
//! but never write them. This module owns those rules and nothing else: the catalog of existing
//! files and their logged flags lives in the store.

use thiserror::Error;

/// The file a new connection works on.
pub const DEFAULT_FILE: &str = "main";
/// Prefix of the files reserved for hotbackup itself.
pub const RESERVED_PREFIX: &str = "sys/";
/// Longest file name accepted.
pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid file name: empty")]
    Empty,
    #[error("invalid file name: longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error(
        "invalid file name '{0}': use letters, digits, '_', '.', '-' in components joined by '/'"
    )]
    Chars(String),
    #[error("file '{0}' is reserved for hotbackup's own use")]
    Reserved(String),
}

/// Checks a file name as a client gave it; returns it as a `String`.
pub fn validate(name: &[u8]) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let shown = || String::from_utf8_lossy(name).into_owned();
    for comp in name.split(|&b| b == b'/') {
        let ok = !comp.is_empty()
            && comp != b"."
            && comp != b".."
            && comp
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !ok {
            return Err(NameError::Chars(shown()));
        }
    }
    // All bytes are ASCII here.
    Ok(shown())
}

/// Whether a file belongs to hotbackup itself.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX) || name == "sys"
}

/// Checks a name a client wants to write to.
pub fn validate_writable(name: &[u8]) -> Result<String, NameError> {
    let n = validate(name)?;
    if is_reserved(&n) {
        return Err(NameError::Reserved(n));
    }
    Ok(n)
}

/// The file `SELECT <n>` means: 0 is `main`, n is `db<n>`.
pub fn numbered(n: u32) -> String {
    if n == 0 {
        DEFAULT_FILE.to_string()
    } else {
        format!("db{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_account_file_names() {
        assert_eq!(validate(b"main").as_deref(), Ok("main"));
        assert_eq!(
            validate(b"acct/orders-2026.v1").as_deref(),
            Ok("acct/orders-2026.v1")
        );
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            &b""[..],
            b"/a",
            b"a/",
            b"a//b",
            b"a b",
            b"..",
            b"a/../b",
            b"\xff",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate(&[b'a'; 201]), Err(NameError::TooLong));
    }

    #[test]
    fn sys_files_are_readable_not_writable() {
        assert!(validate(b"sys/canary").is_ok());
        assert_eq!(
            validate_writable(b"sys/canary"),
            Err(NameError::Reserved("sys/canary".into()))
        );
        assert!(validate_writable(b"system").is_ok());
    }

    #[test]
    fn numbered_files() {
        assert_eq!(numbered(0), "main");
        assert_eq!(numbered(3), "db3");
    }
}
