//! The line-protocol decoder: bytes in, one [`Line`] or [`ParseError`] per line out.
//!
//! The decoder walks the input once. It never allocates for a well-formed line
//! without escapes: names and values are slices of the input; only a token that
//! contains a backslash escape is copied (unescaped) into a `String`.
//!
//! Grammar, per line (InfluxDB line protocol v2):
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! - Lines end with `\n`; a `\r` right before it is dropped. Leading spaces and
//!   tabs are skipped; blank lines and lines whose first character is `#` are
//!   skipped without a result.
//! - Backslash escapes: `\,` and `\ ` in measurements; `\,`, `\=` and `\ ` in
//!   tag keys, tag values and field keys; `\\` is one backslash everywhere. A
//!   backslash before any other character is kept as it is.
//! - Field values: floats (`1`, `-2.5`, `1e+21`), integers (`42i`), unsigned
//!   integers (`42u`), booleans (`t`, `T`, `true`, `True`, `TRUE` and the
//!   `f` forms) and double-quoted strings (`\"`, `\\`, `\n`, `\r`, `\t`
//!   escapes). A raw newline always ends the line, even inside quotes, so one
//!   broken line can never swallow the lines after it.
//! - The timestamp is an optional signed integer; its unit is the caller's
//!   business (see [`super::Precision`]).
//!
//! Invalid UTF-8 makes only the lines that contain it fail.

use std::borrow::Cow;
use std::fmt;

/// One field value as written on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A float without suffix, e.g. `35.5`, `5`, `1e+21`. Always finite.
    Float(f64),
    /// A signed integer with the `i` suffix, e.g. `42i`.
    Integer(i64),
    /// An unsigned integer with the `u` suffix, e.g. `42u`.
    UInteger(u64),
    /// `t`/`true`/`f`/`false` in any of the accepted spellings.
    Boolean(bool),
    /// A double-quoted string, unescaped.
    String(Cow<'a, str>),
}

impl FieldValue<'_> {
    /// The value as a float, for the numeric kinds; `None` for booleans and
    /// strings. Large integers lose precision as in any `as f64` conversion.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Float(v) => Some(*v),
            #[expect(
                clippy::cast_precision_loss,
                reason = "line protocol integers become f64 samples"
            )]
            FieldValue::Integer(v) => Some(*v as f64),
            #[expect(
                clippy::cast_precision_loss,
                reason = "line protocol integers become f64 samples"
            )]
            FieldValue::UInteger(v) => Some(*v as f64),
            FieldValue::Boolean(_) | FieldValue::String(_) => None,
        }
    }

    /// A short name of the kind, for error messages (`float`, `integer`,
    /// `unsigned`, `boolean`, `string`).
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Integer(_) => "integer",
            FieldValue::UInteger(_) => "unsigned",
            FieldValue::Boolean(_) => "boolean",
            FieldValue::String(_) => "string",
        }
    }

    /// Detaches the value from the input buffer.
    #[must_use]
    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            FieldValue::Float(v) => FieldValue::Float(v),
            FieldValue::Integer(v) => FieldValue::Integer(v),
            FieldValue::UInteger(v) => FieldValue::UInteger(v),
            FieldValue::Boolean(v) => FieldValue::Boolean(v),
            FieldValue::String(s) => FieldValue::String(Cow::Owned(s.into_owned())),
        }
    }
}

/// What was wrong with a line. Messages are stable and tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The line starts with a separator instead of a name.
    #[error("missing measurement name")]
    MissingMeasurement,
    /// A tag key is not followed by `=`.
    #[error("expected '=' after tag key")]
    MissingTagEquals,
    /// `,=value`.
    #[error("empty tag key")]
    EmptyTagKey,
    /// `key=` followed by a separator.
    #[error("empty tag value")]
    EmptyTagValue,
    /// The line ends before any field.
    #[error("line has no fields")]
    MissingFields,
    /// A field key is not followed by `=`.
    #[error("expected '=' after field key")]
    MissingFieldEquals,
    /// `,=1` in the field set.
    #[error("empty field key")]
    EmptyFieldKey,
    /// `key=` followed by a separator.
    #[error("missing field value")]
    MissingFieldValue,
    /// Not a number, boolean or quoted string.
    #[error("invalid field value")]
    InvalidFieldValue,
    /// A float that does not fit in f64.
    #[error("float field value out of range")]
    FloatOutOfRange,
    /// An `i`/`u` value that does not fit in 64 bits.
    #[error("integer field value out of range")]
    IntegerOutOfRange,
    /// A string field value without its closing quote.
    #[error("unterminated string field value")]
    UnterminatedString,
    /// Something other than `,` or a space after a field value.
    #[error("expected ',' or ' ' after field value")]
    UnexpectedAfterField,
    /// The timestamp is not a 64-bit signed integer.
    #[error("invalid timestamp")]
    InvalidTimestamp,
    /// More text after the timestamp.
    #[error("unexpected text after timestamp")]
    TrailingCharacters,
    /// The line contains bytes that are not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
}

/// A line that could not be parsed: where, what, and a short quote of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the batch.
    pub line: usize,
    /// 1-based byte column within the line.
    pub column: usize,
    /// What was wrong.
    pub kind: ErrorKind,
    /// Up to ten characters of the input, starting where the problem was found.
    pub near: String,
    /// Byte offset of the start of the bad line in the input, so callers can
    /// look at the line (e.g. at its measurement) themselves.
    pub offset: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at line {}:{}: {}", self.line, self.column, self.kind)?;
        if !self.near.is_empty() {
            write!(f, " (near {:?})", self.near)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// A well-formed line. Names and values borrow from the input unless they
/// contained escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    number: usize,
    raw: &'a str,
    head_len: usize,
    fields_offset: usize,
    measurement: Cow<'a, str>,
    tags: &'a str,
    /// Whether the tag set contains a backslash; without one, iterating the
    /// tags is a plain split.
    tags_escaped: bool,
    first_field: (Cow<'a, str>, FieldValue<'a>),
    more_fields: &'a str,
    timestamp: Option<i64>,
}

impl<'a> Line<'a> {
    /// 1-based line number of this line in its batch.
    #[must_use]
    pub fn number(&self) -> usize {
        self.number
    }

    /// The line exactly as received, without the line terminator.
    #[must_use]
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The line without its timestamp: measurement, tags and fields exactly
    /// as received (no trailing space). Used to rewrite only the timestamp.
    #[must_use]
    pub fn raw_without_timestamp(&self) -> &'a str {
        self.raw.get(..self.head_len).unwrap_or(self.raw)
    }

    /// The field set as received (`value=1.5` or `a=1,b="x"`, escapes intact).
    #[must_use]
    pub fn raw_fields(&self) -> &'a str {
        self.raw
            .get(self.fields_offset..self.head_len)
            .unwrap_or("")
    }

    /// The tag set as received (`k=v,k2=v2`, escapes intact); empty if none.
    #[must_use]
    pub fn raw_tags(&self) -> &'a str {
        self.tags
    }

    /// The measurement name, unescaped.
    #[must_use]
    pub fn measurement(&self) -> &str {
        &self.measurement
    }

    /// The tags in wire order, unescaped.
    #[must_use]
    pub fn tags(&self) -> Tags<'a> {
        Tags {
            rest: self.tags,
            escaped: self.tags_escaped,
        }
    }

    /// The value of the last tag named `key`, if any.
    #[must_use]
    pub fn tag(&self, key: &str) -> Option<Cow<'a, str>> {
        self.tags().filter(|(k, _)| k == key).last().map(|(_, v)| v)
    }

    /// Number of tags.
    #[must_use]
    pub fn tag_count(&self) -> usize {
        self.tags().count()
    }

    /// The fields in wire order (at least one).
    #[must_use]
    pub fn fields(&self) -> Fields<'_, 'a> {
        Fields {
            first: Some(&self.first_field),
            rest: self.more_fields,
        }
    }

    /// The first field (every line has one): for ClusterCockpit metrics this
    /// is `value`.
    #[must_use]
    pub fn first_field(&self) -> (&str, &FieldValue<'a>) {
        (&self.first_field.0, &self.first_field.1)
    }

    /// Whether the line has exactly one field (the usual metric line), known
    /// without iterating the fields.
    #[must_use]
    pub fn has_one_field(&self) -> bool {
        self.more_fields.is_empty()
    }

    /// The value of the last field named `key`, if any.
    #[must_use]
    pub fn field(&self, key: &str) -> Option<FieldValue<'a>> {
        self.fields()
            .filter(|(k, _)| k == key)
            .last()
            .map(|(_, v)| v)
    }

    /// The timestamp as written, in the sender's unit; `None` if absent.
    #[must_use]
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

/// Iterator over the tags of a [`Line`]: `(key, value)`, unescaped.
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    rest: &'a str,
    escaped: bool,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if !self.escaped {
            // No backslash anywhere: the first '=' ends the key (keys cannot
            // hold one) and the first ',' ends the value.
            let b = self.rest.as_bytes();
            let eq = b.iter().position(|&c| c == b'=')?;
            let end = b
                .get(eq..)
                .and_then(|r| r.iter().position(|&c| c == b','))
                .map_or(b.len(), |p| eq + p);
            let key = self.rest.get(..eq)?;
            let value = self.rest.get(eq + 1..end)?;
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            return Some((Cow::Borrowed(key), Cow::Borrowed(value)));
        }
        let b = self.rest.as_bytes();
        let (key_end, key_esc) = scan_key(b, 0);
        let (val_end, val_esc) = scan_tag_value(b, key_end + 1);
        let key = token(self.rest, 0, key_end, key_esc, KEY_ESCAPES)?;
        let value = token(self.rest, key_end + 1, val_end, val_esc, KEY_ESCAPES)?;
        self.rest = self.rest.get(val_end + 1..).unwrap_or("");
        Some((key, value))
    }
}

/// Iterator over the fields of a [`Line`]: `(key, value)`.
#[derive(Debug, Clone)]
pub struct Fields<'l, 'a> {
    first: Option<&'l (Cow<'a, str>, FieldValue<'a>)>,
    rest: &'a str,
}

impl<'a> Iterator for Fields<'_, 'a> {
    type Item = (Cow<'a, str>, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(first.clone());
        }
        if self.rest.is_empty() {
            return None;
        }
        // The field set was validated when the line was parsed, so this
        // cannot fail; should it, the iteration simply ends.
        let (key, value, end) = parse_field(self.rest, 0).ok()?;
        self.rest = self.rest.get(end + 1..).unwrap_or("");
        Some((key, value))
    }
}

/// Parses a batch. Yields one item per non-blank, non-comment line, in order.
#[must_use]
pub fn parse_lines(input: &[u8]) -> Lines<'_> {
    let mut lines = Lines {
        bytes: input,
        seg: "",
        seg_start: 0,
        pos: 0,
        line: 1,
        bad: None,
    };
    lines.load_segment(0);
    lines
}

/// Parses a batch that is already a `&str`.
#[must_use]
pub fn parse_str(input: &str) -> Lines<'_> {
    Lines {
        bytes: input.as_bytes(),
        seg: input,
        seg_start: 0,
        pos: 0,
        line: 1,
        bad: None,
    }
}

/// Iterator returned by [`parse_lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    /// The whole input.
    bytes: &'a [u8],
    /// The current run of input known to be valid UTF-8. It ends at the end of
    /// the input or right after the last `\n` before an invalid byte.
    seg: &'a str,
    /// Offset of `seg` in `bytes`.
    seg_start: usize,
    /// Parse position within `seg`.
    pos: usize,
    /// Line number of the line starting at `pos`.
    line: usize,
    /// Offset in `bytes` of the first byte of invalid UTF-8 after `seg`.
    bad: Option<usize>,
}

impl<'a> Lines<'a> {
    /// Makes `seg` the longest valid run starting at `from`.
    fn load_segment(&mut self, from: usize) {
        let rest = self.bytes.get(from..).unwrap_or_default();
        self.seg_start = from;
        self.pos = 0;
        match std::str::from_utf8(rest) {
            Ok(s) => {
                self.seg = s;
                self.bad = None;
            }
            Err(e) => {
                let valid = rest.get(..e.valid_up_to()).unwrap_or_default();
                let cut = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                self.seg = std::str::from_utf8(valid.get(..cut).unwrap_or_default()).unwrap_or("");
                self.bad = Some(from + e.valid_up_to());
            }
        }
    }

    /// Reports the line holding invalid UTF-8 and moves past it.
    fn invalid_utf8_line(&mut self, bad: usize) -> ParseError {
        let line_start = self.seg_start + self.seg.len();
        let next = self
            .bytes
            .get(bad..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(self.bytes.len(), |p| bad + p + 1);
        let err = ParseError {
            offset: line_start,
            line: self.line,
            column: bad - line_start + 1,
            kind: ErrorKind::InvalidUtf8,
            near: String::from_utf8_lossy(self.bytes.get(bad..).unwrap_or_default())
                .chars()
                .take(NEAR_CHARS)
                .collect(),
        };
        self.line += 1;
        self.load_segment(next);
        err
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.seg.len() {
                let bad = self.bad?;
                return Some(Err(self.invalid_utf8_line(bad)));
            }
            let start = self.pos;
            let number = self.line;
            match parse_line(self.seg, start) {
                Step::Skip { next, newlines } => {
                    self.pos = next;
                    self.line += newlines;
                }
                Step::Line { line, next } => {
                    self.pos = next;
                    self.line += 1;
                    return Some(Ok(Line { number, ..line }));
                }
                Step::Error { kind, at } => {
                    let b = self.seg.as_bytes();
                    let next = b
                        .get(at..)
                        .and_then(|r| r.iter().position(|&c| c == b'\n'))
                        .map_or(b.len(), |p| at + p + 1);
                    self.pos = next;
                    self.line += 1;
                    let mut err = error_at(self.seg, start, at, kind, number);
                    err.offset += self.seg_start;
                    return Some(Err(err));
                }
            }
        }
    }
}

const NEAR_CHARS: usize = 10;

fn error_at(seg: &str, line_start: usize, at: usize, kind: ErrorKind, line: usize) -> ParseError {
    let after: String = seg
        .get(at..)
        .unwrap_or("")
        .chars()
        .take_while(|&c| c != '\n' && c != '\r')
        .take(NEAR_CHARS)
        .collect();
    // At the end of a line there is nothing to quote after the position, so
    // quote what leads up to it.
    let near = if after.is_empty() {
        let before = seg.get(line_start..at).unwrap_or("");
        let skip = before.chars().count().saturating_sub(NEAR_CHARS);
        before.chars().skip(skip).collect()
    } else {
        after
    };
    ParseError {
        offset: line_start,
        line,
        column: at.saturating_sub(line_start) + 1,
        kind,
        near,
    }
}

/// Result of looking at one line.
enum Step<'a> {
    Skip { next: usize, newlines: usize },
    Line { line: Line<'a>, next: usize },
    Error { kind: ErrorKind, at: usize },
}

/// Characters a backslash escapes in measurements.
const MEASUREMENT_ESCAPES: &[u8] = b", \\";
/// Characters a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[u8] = b",= \\";

/// Byte classes for the scanners: one table lookup per byte.
const SPACE: u8 = 1;
const COMMA: u8 = 2;
const EQUALS: u8 = 4;
const BACKSLASH: u8 = 8;
const NEWLINE: u8 = 16;

#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of range fails the build"
)]
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b' ' as usize] = SPACE;
    table[b',' as usize] = COMMA;
    table[b'=' as usize] = EQUALS;
    table[b'\\' as usize] = BACKSLASH;
    table[b'\n' as usize] = NEWLINE;
    table
};

#[inline(always)]
fn class(c: u8) -> u8 {
    // The table has an entry for every byte value.
    CLASS.get(usize::from(c)).copied().unwrap_or(0)
}

/// Scans from `i` to the first unescaped byte of a class in `stop` (or to
/// `\n` or the end). Returns its index and whether a backslash was seen. A
/// backslash escapes the byte after it, except a newline.
#[inline(always)]
fn scan(b: &[u8], mut i: usize, stop: u8) -> (usize, bool) {
    let mask = stop | BACKSLASH | NEWLINE;
    let mut escaped = false;
    loop {
        let Some(rest) = b.get(i..) else {
            return (b.len(), escaped);
        };
        match rest.iter().position(|&c| class(c) & mask != 0) {
            None => return (b.len(), escaped),
            Some(p) => {
                i += p;
                if b.get(i) != Some(&b'\\') {
                    return (i, escaped);
                }
                escaped = true;
                i += if matches!(b.get(i + 1), Some(&n) if n != b'\n') {
                    2
                } else {
                    1
                };
            }
        }
    }
}

/// Scans a measurement: ends at an unescaped `,` or space.
#[inline(always)]
fn scan_measurement(b: &[u8], i: usize) -> (usize, bool) {
    scan(b, i, SPACE | COMMA)
}

/// Scans a tag key or field key: ends at an unescaped `=`, `,` or space.
#[inline(always)]
fn scan_key(b: &[u8], i: usize) -> (usize, bool) {
    scan(b, i, EQUALS | SPACE | COMMA)
}

/// Scans a tag value: ends at an unescaped `,` or space (`=` belongs to it).
#[inline(always)]
fn scan_tag_value(b: &[u8], i: usize) -> (usize, bool) {
    scan(b, i, SPACE | COMMA)
}

/// The text of `s[start..end]`, unescaped if it contained a backslash.
#[inline(always)]
fn token<'a>(
    s: &'a str,
    start: usize,
    end: usize,
    escaped: bool,
    escapes: &[u8],
) -> Option<Cow<'a, str>> {
    let raw = s.get(start..end)?;
    Some(if escaped {
        unescape(raw, escapes)
    } else {
        Cow::Borrowed(raw)
    })
}

/// Removes backslash escapes of the given characters.
#[cold]
#[inline(never)]
fn unescape<'a>(raw: &'a str, escapes: &[u8]) -> Cow<'a, str> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && n.is_ascii()
            && escapes.contains(&(n as u8))
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Removes the escapes of a string field value.
fn unescape_string(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let replacement = match chars.peek() {
                Some('"') => Some('"'),
                Some('\\') => Some('\\'),
                Some('n') => Some('\n'),
                Some('r') => Some('\r'),
                Some('t') => Some('\t'),
                _ => None,
            };
            if let Some(r) = replacement {
                out.push(r);
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Parses the line starting at `start` of `s`.
fn parse_line(s: &str, start: usize) -> Step<'_> {
    let b = s.as_bytes();
    let mut i = start;
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match b.get(i) {
        None => {
            return Step::Skip {
                next: b.len(),
                newlines: 0,
            };
        }
        Some(b'\n') => {
            return Step::Skip {
                next: i + 1,
                newlines: 1,
            };
        }
        Some(b'\r') if matches!(b.get(i + 1), Some(b'\n') | None) => {
            return Step::Skip {
                next: (i + 2).min(b.len()),
                newlines: 1,
            };
        }
        Some(b'#') => {
            let next = b
                .get(i..)
                .and_then(|r| r.iter().position(|&c| c == b'\n'))
                .map_or(b.len(), |p| i + p + 1);
            return Step::Skip { next, newlines: 1 };
        }
        _ => {}
    }
    let line_start = i;

    // Measurement.
    let (m_end, m_esc) = scan_measurement(b, i);
    if m_end == i {
        return Step::Error {
            kind: ErrorKind::MissingMeasurement,
            at: i,
        };
    }
    let Some(measurement) = token(s, i, m_end, m_esc, MEASUREMENT_ESCAPES) else {
        return Step::Error {
            kind: ErrorKind::MissingMeasurement,
            at: i,
        };
    };
    i = m_end;

    // Tags.
    let mut tags = "";
    let mut tags_escaped = false;
    if b.get(i) == Some(&b',') {
        let tags_start = i + 1;
        loop {
            i += 1; // past ',' before a key
            let (k_end, k_esc) = scan_key(b, i);
            if b.get(k_end) != Some(&b'=') {
                return Step::Error {
                    kind: ErrorKind::MissingTagEquals,
                    at: k_end,
                };
            }
            if k_end == i {
                return Step::Error {
                    kind: ErrorKind::EmptyTagKey,
                    at: i,
                };
            }
            let v_start = k_end + 1;
            let (v_end, v_esc) = scan_tag_value(b, v_start);
            tags_escaped |= k_esc | v_esc;
            if v_end == v_start {
                return Step::Error {
                    kind: ErrorKind::EmptyTagValue,
                    at: v_start,
                };
            }
            i = v_end;
            if b.get(i) != Some(&b',') {
                break;
            }
        }
        tags = s.get(tags_start..i).unwrap_or("");
    }

    // Separator: one or more spaces.
    if b.get(i) != Some(&b' ') {
        return Step::Error {
            kind: ErrorKind::MissingFields,
            at: i,
        };
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if matches!(b.get(i), None | Some(b'\n' | b'\r')) {
        return Step::Error {
            kind: ErrorKind::MissingFields,
            at: i,
        };
    }

    // Fields.
    let fields_start = i;
    let (first_key, first_value, mut end) = match parse_field(s, i) {
        Ok(f) => f,
        Err((kind, at)) => return Step::Error { kind, at },
    };
    let more_start = end + 1;
    while b.get(end) == Some(&b',') {
        match parse_field(s, end + 1) {
            Ok((_, _, e)) => end = e,
            Err((kind, at)) => return Step::Error { kind, at },
        }
    }
    let more_fields = if more_start <= end {
        s.get(more_start..end).unwrap_or("")
    } else {
        ""
    };
    let head_end = end;
    i = end;

    // Timestamp.
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let mut timestamp = None;
    let mut ts_end = head_end;
    if let Some(&c) = b.get(i)
        && c != b'\n'
        && c != b'\r'
    {
        {
            let ts_start = i;
            let rest = b.get(i..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|&c| matches!(c, b' ' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            i += len;
            match rest.get(..len).and_then(parse_i64) {
                Some(ts) => timestamp = Some(ts),
                None => {
                    return Step::Error {
                        kind: ErrorKind::InvalidTimestamp,
                        at: ts_start,
                    };
                }
            }
            ts_end = i;
            while matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
        }
    }

    // End of line.
    if b.get(i) == Some(&b'\r') {
        i += 1;
    }
    let next = match b.get(i) {
        None => i,
        Some(b'\n') => i + 1,
        Some(_) => {
            return Step::Error {
                kind: ErrorKind::TrailingCharacters,
                at: i,
            };
        }
    };
    // Trailing blanks are not part of `raw`.
    let raw = s.get(line_start..ts_end).unwrap_or("");
    Step::Line {
        line: Line {
            number: 0,
            raw,
            head_len: head_end - line_start,
            fields_offset: fields_start - line_start,
            measurement,
            tags,
            tags_escaped,
            first_field: (first_key, first_value),
            more_fields,
            timestamp,
        },
        next,
    }
}

type FieldOk<'a> = (Cow<'a, str>, FieldValue<'a>, usize);

/// Parses `key=value` at `i`. Returns the key, the value, the index just past
/// the value (at `,`, space, `\r`, `\n` or the end).
fn parse_field(s: &str, i: usize) -> Result<FieldOk<'_>, (ErrorKind, usize)> {
    let b = s.as_bytes();
    let (k_end, k_esc) = scan_key(b, i);
    if b.get(k_end) != Some(&b'=') {
        return Err((ErrorKind::MissingFieldEquals, k_end));
    }
    if k_end == i {
        return Err((ErrorKind::EmptyFieldKey, i));
    }
    let key = token(s, i, k_end, k_esc, KEY_ESCAPES).ok_or((ErrorKind::EmptyFieldKey, i))?;
    let v_start = k_end + 1;
    let (value, v_end) = if b.get(v_start) == Some(&b'"') {
        let mut j = v_start + 1;
        let mut escaped = false;
        loop {
            match b.get(j) {
                None | Some(b'\n') => return Err((ErrorKind::UnterminatedString, v_start)),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    j += if matches!(b.get(j + 1), Some(&n) if n != b'\n') {
                        2
                    } else {
                        1
                    };
                }
                Some(_) => j += 1,
            }
        }
        let raw = s
            .get(v_start + 1..j)
            .ok_or((ErrorKind::UnterminatedString, v_start))?;
        let text = if escaped {
            Cow::Owned(unescape_string(raw))
        } else {
            Cow::Borrowed(raw)
        };
        let end = j + 1;
        if !matches!(b.get(end), None | Some(b',' | b' ' | b'\n' | b'\r')) {
            return Err((ErrorKind::UnexpectedAfterField, end));
        }
        (FieldValue::String(text), end)
    } else {
        let rest = b.get(v_start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&c| matches!(c, b',' | b' ' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
        let j = v_start + len;
        let raw = rest.get(..len).unwrap_or_default();
        (parse_scalar(raw).map_err(|kind| (kind, v_start))?, j)
    };
    Ok((key, value, v_end))
}

/// Parses a field value that is not a string.
fn parse_scalar(t: &[u8]) -> Result<FieldValue<'static>, ErrorKind> {
    let (&last, body) = t.split_last().ok_or(ErrorKind::MissingFieldValue)?;
    match last {
        b'i' => {
            let digits = body.strip_prefix(b"+").unwrap_or(body);
            if !is_signed_digits(digits) {
                return Err(ErrorKind::InvalidFieldValue);
            }
            parse_i64(digits)
                .map(FieldValue::Integer)
                .ok_or(ErrorKind::IntegerOutOfRange)
        }
        b'u' => {
            if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
                return Err(ErrorKind::InvalidFieldValue);
            }
            parse_u64(body)
                .map(FieldValue::UInteger)
                .ok_or(ErrorKind::IntegerOutOfRange)
        }
        _ => match t {
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(FieldValue::Boolean(true)),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(FieldValue::Boolean(false)),
            _ => parse_float(t).map(FieldValue::Float),
        },
    }
}

fn is_signed_digits(t: &[u8]) -> bool {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Parses `-?[0-9]+` into an i64; `None` on any other text or overflow.
#[inline]
fn parse_i64(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut acc: i64 = 0;
    for &c in digits {
        let d = i64::from(c.wrapping_sub(b'0'));
        if !(0..=9).contains(&d) {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(d)?;
    }
    if neg { Some(acc) } else { acc.checked_neg() }
}

/// Parses `[0-9]+` into a u64; `None` on overflow.
fn parse_u64(t: &[u8]) -> Option<u64> {
    let mut acc: u64 = 0;
    for &c in t {
        acc = acc
            .checked_mul(10)?
            .checked_add(u64::from(c.wrapping_sub(b'0')))?;
    }
    Some(acc)
}

/// Powers of ten that are exact in f64.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses a decimal float: `[+-]?digits[.digits][(e|E)[+-]digits]`, at least
/// one digit before the exponent. Rejects `inf`, `nan` and out-of-range values.
///
/// Short plain decimals (the usual metric values) take an exact fast path:
/// when the digits form an integer below 2^53 and there are at most 22
/// fraction digits, one IEEE division of two exact values gives the correctly
/// rounded result. Everything else goes through the standard library.
#[inline]
fn parse_float(t: &[u8]) -> Result<f64, ErrorKind> {
    let (neg, body) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, t),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_dot = false;
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        match c {
            b'0'..=b'9' => {
                if digits < 19 {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                }
                digits += 1;
                if seen_dot {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return Err(ErrorKind::InvalidFieldValue);
    }
    if i == body.len()
        && digits <= 19
        && mantissa < (1 << 53)
        && let Some(&p) = EXACT_POW10.get(frac_digits)
    {
        #[expect(clippy::cast_precision_loss, reason = "mantissa < 2^53 is exact")]
        let v = mantissa as f64 / p;
        return Ok(if neg { -v } else { v });
    }
    // Exponent, if any, must be the rest of the token.
    if let Some(&c) = body.get(i) {
        if c != b'e' && c != b'E' {
            return Err(ErrorKind::InvalidFieldValue);
        }
        let exp = body.get(i + 1..).unwrap_or_default();
        let exp_digits = match exp.split_first() {
            Some((b'+' | b'-', rest)) => rest,
            _ => exp,
        };
        if exp_digits.is_empty() || !exp_digits.iter().all(u8::is_ascii_digit) {
            return Err(ErrorKind::InvalidFieldValue);
        }
    }
    let text = std::str::from_utf8(t).map_err(|_| ErrorKind::InvalidFieldValue)?;
    let v: f64 = text.parse().map_err(|_| ErrorKind::InvalidFieldValue)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ErrorKind::FloatOutOfRange)
    }
}

#[cfg(test)]
mod tests;
