//! Credentials in configurations: tokens and passwords that are read from
//! files, kept out of logs and dumps, and handed out only where they are sent.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What [`Secret`] (and every other redacted value) prints instead of itself.
pub const REDACTED: &str = "***";

/// A credential (a token, a password) read from a file or, discouraged, given inline.
///
/// `Debug`, `Display` and `Serialize` print [`REDACTED`], so a secret can sit in
/// structs that are logged or dumped; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` (a password or token a client presented) is this
    /// secret, compared with [`constant_time_eq`].
    #[must_use]
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }

    /// Reads a secret file: the whole content with surrounding whitespace
    /// (the trailing newline) removed. Never looks at permissions; see
    /// [`permission_warning`].
    ///
    /// # Errors
    ///
    /// [`SecretError::Read`] if the file cannot be read as UTF-8 text,
    /// [`SecretError::Empty`] if nothing but whitespace is in it.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = read_secret_text(path)?;
        let value = text.trim();
        if value.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// A secret file (or a file of credentials) could not be used. Messages name
/// the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read (missing, no permission, not UTF-8).
    #[error("cannot read secret file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("secret file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line of a credentials file is malformed.
    #[error("{}: line {line}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line (never its content).
        message: String,
    },
}

/// Reads a secret file as UTF-8 text, unchanged.
///
/// # Errors
///
/// [`SecretError::Read`].
pub fn read_secret_text(path: &Path) -> Result<String, SecretError> {
    std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A warning text if the secret file at `path` can be read by its group or by
/// everyone (spec §4.10); `None` if not, or if the mode cannot be read.
#[must_use]
pub fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "secret file {} is readable by group or others (mode {:04o}); chmod 600 it",
            path.display(),
            mode & 0o7777
        )
    })
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths
/// only, not on the position of the first difference: a client guessing a
/// token byte by byte learns nothing from how fast it is refused.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_whole_secret() {
        let s = Secret::new("s3cret-token");
        assert!(s.matches("s3cret-token"));
        for wrong in [
            "",
            "s3cret-toke",
            "s3cret-tokenx",
            "S3cret-token",
            "x3cret-token",
        ] {
            assert!(!s.matches(wrong), "{wrong:?}");
        }
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
