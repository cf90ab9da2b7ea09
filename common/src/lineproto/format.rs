//! The line-protocol encoder: the inverse of [`super::parse_lines`].
//!
//! Escaping follows the decoder's rules, so that `parse(format(x)) == x` for
//! every line the encoder accepts: `,` and space in measurements; `,`, `=`
//! and space in tag keys, tag values and field keys; backslashes everywhere
//! are doubled; `"`, `\`, newline, carriage return and tab in string values.
//! Floats are written in Rust's shortest round-trip form.

use std::fmt::Write as _;

use super::{FieldValue, OwnedLine};

/// Why a line could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Measurement names, keys and tag values must not be empty.
    #[error("empty {0}")]
    Empty(&'static str),
    /// A line needs at least one field.
    #[error("line has no fields")]
    NoFields,
    /// NaN and infinities have no line-protocol spelling.
    #[error("field {0:?} is not a finite number")]
    NotFinite(String),
    /// A name or value holds a newline, which no escape can carry.
    #[error("{0} contains a newline")]
    Newline(&'static str),
    /// A measurement starting with `#` or a tab would read back as a comment
    /// or lose the tab.
    #[error("measurement must not start with '#' or a tab")]
    BadStart,
}

/// Appends `s` to `out`, escaping it as a measurement name.
pub fn escape_measurement(out: &mut String, s: &str) {
    escape_into(out, s, |c| matches!(c, ',' | ' ' | '\\'));
}

/// Appends `s` to `out`, escaping it as a tag key, tag value or field key.
pub fn escape_key(out: &mut String, s: &str) {
    escape_into(out, s, |c| matches!(c, ',' | '=' | ' ' | '\\'));
}

fn escape_into(out: &mut String, s: &str, special: impl Fn(char) -> bool) {
    if !s.chars().any(&special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends a field value in its wire form (`1.5`, `42i`, `7u`, `true`, `"text"`).
pub fn write_field_value(out: &mut String, value: &FieldValue<'_>) {
    match value {
        // Debug is the shortest round-trip form, with an exponent for very
        // large or small magnitudes (`1e300`); both parse back exactly.
        FieldValue::Float(v) => {
            let _ = write!(out, "{v:?}");
        }
        FieldValue::Integer(v) => {
            let _ = write!(out, "{v}i");
        }
        FieldValue::UInteger(v) => {
            let _ = write!(out, "{v}u");
        }
        FieldValue::Boolean(v) => out.push_str(if *v { "true" } else { "false" }),
        FieldValue::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

/// Appends one line (with its trailing `\n`) to `out`.
///
/// Tags are written in the order given; collectors sort them by key, and
/// callers that build new lines should do the same.
///
/// # Errors
///
/// Refuses what the decoder could not read back: empty names, keys or tag
/// values, no fields, non-finite floats, newlines in names, keys or tag values.
/// Nothing is appended on error.
pub fn write_line<'x, T, F>(
    out: &mut String,
    measurement: &str,
    tags: T,
    fields: F,
    timestamp: Option<i64>,
) -> Result<(), FormatError>
where
    T: IntoIterator<Item = (&'x str, &'x str)>,
    F: IntoIterator<Item = (&'x str, &'x FieldValue<'x>)>,
{
    let mark = out.len();
    let result = write_line_inner(out, measurement, tags, fields, timestamp);
    if result.is_err() {
        out.truncate(mark);
    }
    result
}

fn write_line_inner<'x, T, F>(
    out: &mut String,
    measurement: &str,
    tags: T,
    fields: F,
    timestamp: Option<i64>,
) -> Result<(), FormatError>
where
    T: IntoIterator<Item = (&'x str, &'x str)>,
    F: IntoIterator<Item = (&'x str, &'x FieldValue<'x>)>,
{
    check_name(measurement, "measurement")?;
    if measurement.starts_with(['#', '\t']) {
        return Err(FormatError::BadStart);
    }
    escape_measurement(out, measurement);
    for (k, v) in tags {
        check_name(k, "tag key")?;
        check_name(v, "tag value")?;
        out.push(',');
        escape_key(out, k);
        out.push('=');
        escape_key(out, v);
    }
    let mut sep = ' ';
    for (k, v) in fields {
        check_name(k, "field key")?;
        if let FieldValue::Float(f) = v
            && !f.is_finite()
        {
            return Err(FormatError::NotFinite(k.to_owned()));
        }
        out.push(sep);
        sep = ',';
        escape_key(out, k);
        out.push('=');
        write_field_value(out, v);
    }
    if sep == ' ' {
        return Err(FormatError::NoFields);
    }
    if let Some(ts) = timestamp {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
    Ok(())
}

fn check_name(s: &str, what: &'static str) -> Result<(), FormatError> {
    if s.is_empty() {
        return Err(FormatError::Empty(what));
    }
    if s.contains('\n') {
        return Err(FormatError::Newline(what));
    }
    Ok(())
}

impl OwnedLine {
    /// Appends this line in wire form (with `\n`) to `out`.
    ///
    /// # Errors
    ///
    /// See [`write_line`].
    pub fn write_to(&self, out: &mut String) -> Result<(), FormatError> {
        write_line(
            out,
            &self.measurement,
            self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.fields.iter().map(|(k, v)| (k.as_str(), v)),
            self.timestamp,
        )
    }
}
