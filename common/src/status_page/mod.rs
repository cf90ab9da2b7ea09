//! Building blocks of the programs' status pages (`GET /`): one small HTML
//! document per request, rendered on the server, with no script, no
//! external asset and no build step.
//!
//! The page reloads itself (`<meta http-equiv="refresh">`), so it works with
//! JavaScript disabled and through anything that adds headers to every
//! request (a reverse proxy, a browser extension adding the admin token);
//! each program serves the same figures as JSON for scripts. Rates come from
//! a [`RateWindow`] the program keeps.
//!
//! Every piece of text goes into the document through [`Html::text`], which
//! escapes it: cluster, host and upstream names and error messages come from
//! the network or from configuration files. Markup is only ever made by the
//! constructors here.

mod rates;

use std::fmt::{self, Write as _};
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use self::rates::{Counters, RECORD_EVERY, RateWindow, Rates};

/// A piece of HTML that is safe to put into the page: escaped text, or
/// markup made by this module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

/// How a value is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Healthy.
    Ok,
    /// Needs a look.
    Warn,
    /// Broken.
    Bad,
    /// Unimportant or absent (`—`).
    Dim,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Dim => "dim",
        }
    }
}

impl Html {
    /// `text`, escaped.
    #[must_use]
    pub fn text(text: impl AsRef<str>) -> Html {
        Html(escape(text.as_ref()))
    }

    /// `text`, escaped and highlighted with `tone`.
    #[must_use]
    pub fn tone(tone: Tone, text: impl AsRef<str>) -> Html {
        Html(format!(
            "<span class=\"{}\">{}</span>",
            tone.class(),
            escape(text.as_ref())
        ))
    }

    /// `text`, escaped, as code (a command, a configuration key).
    #[must_use]
    pub fn code(text: impl AsRef<str>) -> Html {
        Html(format!("<code>{}</code>", escape(text.as_ref())))
    }

    /// `—`, for a value that does not exist (yet).
    #[must_use]
    pub fn none() -> Html {
        Html::tone(Tone::Dim, "—")
    }

    /// A moment given in Unix milliseconds, as its distance from `now_ms`
    /// (`12 s ago`) with the UTC time as tooltip; `never` for 0.
    #[must_use]
    pub fn ago_ms(unix_ms: u64, now_ms: u64) -> Html {
        if unix_ms == 0 {
            return Html::tone(Tone::Dim, "never");
        }
        let Some(when) = UNIX_EPOCH.checked_add(Duration::from_millis(unix_ms)) else {
            return Html::none();
        };
        let stamp = humantime::format_rfc3339_seconds(when).to_string();
        let age = Duration::from_millis(now_ms.saturating_sub(unix_ms));
        Html(format!(
            "<time datetime=\"{stamp}\" title=\"{stamp}\">{} ago</time>",
            duration(age)
        ))
    }

    /// [`Html::ago_ms`] for Unix seconds; `never` for 0 and below.
    #[must_use]
    pub fn ago_secs(unix_secs: i64, now_secs: i64) -> Html {
        let ms = |s: i64| u64::try_from(s).unwrap_or(0).saturating_mul(1000);
        Html::ago_ms(ms(unix_secs), ms(now_secs))
    }

    /// Several pieces, separated by `sep` (escaped).
    #[must_use]
    pub fn join(pieces: impl IntoIterator<Item = Html>, sep: &str) -> Html {
        let sep = escape(sep);
        let mut out = String::new();
        for (i, p) in pieces.into_iter().enumerate() {
            if i > 0 {
                out.push_str(&sep);
            }
            out.push_str(&p.0);
        }
        Html(out)
    }

    /// The markup.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe as
/// element content and as a quoted attribute value.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A column of a [`Page::table`].
#[derive(Debug, Clone, Copy)]
pub struct Column {
    title: &'static str,
    numeric: bool,
}

impl Column {
    /// A column of text, left-aligned.
    #[must_use]
    pub const fn text(title: &'static str) -> Column {
        Column {
            title,
            numeric: false,
        }
    }

    /// A column of numbers, right-aligned.
    #[must_use]
    pub const fn num(title: &'static str) -> Column {
        Column {
            title,
            numeric: true,
        }
    }
}

/// A status page under construction: a title, then sections of facts,
/// tables and notes, then a footer naming the refresh interval and the JSON.
#[derive(Debug)]
pub struct Page {
    body: String,
    title: String,
    refresh_secs: u32,
}

/// The style sheet: readable in light and dark mode, numbers aligned.
const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
p.sub{margin:0;color:#555}\
dl{display:grid;grid-template-columns:max-content auto;gap:.15em 1.2em;margin:.4em 0}\
dt{color:#555}dd{margin:0}code{font-family:ui-monospace,monospace}\
table{border-collapse:collapse;margin:.3em 0}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f2f2f2;font-weight:600}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#1b6e20}.warn{color:#8a5a00;font-weight:600}.bad{color:#b00020;font-weight:600}\
.dim{color:#888}footer{margin-top:2em;color:#666;font-size:.9em}\
@media(prefers-color-scheme:dark){body{color:#ddd;background:#161616}\
th{background:#262626}th,td{border-color:#444}dt,p.sub{color:#aaa}\
.ok{color:#7bd88f}.warn{color:#e6b450}.bad{color:#ff6b6b}}";

impl Page {
    /// A page titled `title` (escaped) that reloads every `refresh_secs`.
    #[must_use]
    pub fn new(title: &str, refresh_secs: u32) -> Page {
        Page {
            body: format!("<h1>{}</h1>", escape(title)),
            title: title.to_owned(),
            refresh_secs,
        }
    }

    /// A line under the title.
    pub fn subtitle(&mut self, text: &Html) {
        let _ = write!(self.body, "<p class=\"sub\">{text}</p>");
    }

    /// A section heading.
    pub fn section(&mut self, title: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", escape(title));
    }

    /// A list of label–value pairs.
    pub fn facts(&mut self, facts: &[(&str, Html)]) {
        self.body.push_str("<dl>");
        for (label, value) in facts {
            let _ = write!(self.body, "<dt>{}</dt><dd>{value}</dd>", escape(label));
        }
        self.body.push_str("</dl>");
    }

    /// A paragraph.
    pub fn note(&mut self, text: &Html) {
        let _ = write!(self.body, "<p>{text}</p>");
    }

    /// A table with `columns`; `empty` (escaped) stands in for it when there
    /// are no rows. Cells beyond the columns are ignored.
    pub fn table(&mut self, columns: &[Column], rows: &[Vec<Html>], empty: &str) {
        if rows.is_empty() {
            let _ = write!(self.body, "<p class=\"dim\">{}</p>", escape(empty));
            return;
        }
        self.body.push_str("<table><thead><tr>");
        for c in columns {
            let class = if c.numeric { " class=\"num\"" } else { "" };
            let _ = write!(self.body, "<th{class}>{}</th>", escape(c.title));
        }
        self.body.push_str("</tr></thead><tbody>");
        for row in rows {
            self.body.push_str("<tr>");
            for (c, cell) in columns.iter().zip(row) {
                let class = if c.numeric { " class=\"num\"" } else { "" };
                let _ = write!(self.body, "<td{class}>{cell}</td>");
            }
            self.body.push_str("</tr>");
        }
        self.body.push_str("</tbody></table>");
    }

    /// The whole document; the footer names the refresh interval and links
    /// to `json_path` (relative, so that it works behind a path prefix).
    #[must_use]
    pub fn finish(self, json_path: &str) -> String {
        let json = escape(json_path);
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta http-equiv=\"refresh\" content=\"{refresh}\">\
             <title>{title}</title><style>{STYLE}</style></head><body>{body}\
             <footer>Reloads every {refresh} s. The same figures as JSON: \
             <a href=\"{json}\">{json}</a>.</footer></body></html>\n",
            refresh = self.refresh_secs,
            title = escape(&self.title),
            body = self.body,
        )
    }
}

/// An HTML answer that no cache keeps.
#[must_use]
pub fn html_response(document: String) -> Response {
    let mut r = (StatusCode::OK, document).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON answer (one line) that no cache keeps.
#[must_use]
pub fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(mut text) => {
            text.push('\n');
            let mut r = (StatusCode::OK, text).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the status as JSON");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the status\n",
            )
                .into_response()
        }
    }
}

/// `n` with its thousands separated by narrow spaces (`1 234 567`).
#[must_use]
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A per-second rate (`12.5/s`, `1 234/s`); `—` when not measured yet.
#[must_use]
pub fn rate(per_second: Option<f64>) -> Html {
    match per_second {
        None => Html::none(),
        Some(r) if r < 10.0 => Html::text(format!("{r:.1}/s")),
        Some(r) => Html::text(format!("{}/s", count(rounded(r)))),
    }
}

/// A non-negative rate rounded to a whole number (saturating).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a rate rounded for display; `as` saturates"
)]
fn rounded(r: f64) -> u64 {
    r.round() as u64
}

/// A size in bytes with a binary unit (`512 B`, `1.5 KiB`, `3.25 GiB`).
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[expect(clippy::cast_precision_loss, reason = "a size for display")]
    let mut value = n as f64 / 1024.0;
    let mut unit = "KiB";
    for u in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if value < 10.0 {
        format!("{value:.2} {unit}")
    } else if value < 100.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// A duration in its two largest units (`45 s`, `3 min 20 s`, `2 h 5 min`,
/// `3 d 4 h`); below a second in ms.
#[must_use]
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{} ms", d.as_millis());
    }
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min {secs} s"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The text of a page as a reader sees it: markup removed (each tag counts
/// as a space), entities decoded, the style sheet skipped. For tests of the
/// pages and for scripts that want the words without an HTML parser.
#[must_use]
pub fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let body = html.split("</style>").nth(1).unwrap_or(html);
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        let evil = "<script>alert('x')</script>&\"";
        let expected = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;";
        assert_eq!(Html::text(evil).as_str(), expected);
        let mut page = Page::new(evil, 5);
        page.subtitle(&Html::text(evil));
        page.section(evil);
        page.facts(&[(evil, Html::tone(Tone::Bad, evil))]);
        page.table(&[Column::text("a")], &[vec![Html::text(evil)]], evil);
        page.table(&[Column::text("a")], &[], evil);
        let doc = page.finish(evil);
        assert!(!doc.contains("<script>"), "{doc}");
        assert!(!doc.contains("'x'"), "{doc}");
        // Title (twice), subtitle, section, label, value, cell, empty-table
        // note, and the JSON link (twice).
        assert_eq!(doc.matches(expected).count(), 10, "{doc}");
    }

    #[test]
    fn the_document_reloads_itself_and_links_the_json() {
        let mut page = Page::new("cc-relay r1", 5);
        page.section("Upstreams");
        page.table(
            &[Column::text("name"), Column::num("queued lines")],
            &[vec![Html::text("store"), Html::text(count(1234))]],
            "none",
        );
        let doc = page.finish("status");
        assert!(doc.starts_with("<!DOCTYPE html>"));
        assert!(doc.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(doc.contains("<title>cc-relay r1</title>"));
        assert!(doc.contains("<th class=\"num\">queued lines</th>"));
        assert!(doc.contains("<td class=\"num\">1\u{202f}234</td>"));
        assert!(doc.contains("<a href=\"status\">status</a>"));
        assert!(!doc.contains("<script"), "no script at all");
        assert!(!doc.contains("src="), "no external asset");
    }

    #[test]
    fn an_empty_table_says_so() {
        let mut page = Page::new("t", 5);
        page.table(&[Column::text("a")], &[], "no sources configured");
        let doc = page.finish("status");
        assert!(doc.contains("no sources configured"));
        assert!(!doc.contains("<table>"));
    }

    #[test]
    fn numbers_sizes_and_durations_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1\u{202f}000");
        assert_eq!(count(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(50 << 20), "50.0 MiB");
        assert_eq!(bytes(300 << 30), "300 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_secs(45)), "45 s");
        assert_eq!(duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(duration(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(duration(Duration::from_secs(273_600)), "3 d 4 h");
        assert_eq!(rate(None).as_str(), Html::none().as_str());
        assert_eq!(rate(Some(2.25)).as_str(), "2.2/s");
        assert_eq!(rate(Some(12_345.6)).as_str(), "12\u{202f}346/s");
    }

    #[test]
    fn moments_are_shown_as_their_age_with_the_time_as_tooltip() {
        let now = 1_765_000_000_000;
        let html = Html::ago_ms(now - 12_000, now);
        assert_eq!(
            html.as_str(),
            "<time datetime=\"2025-12-06T05:46:28Z\" title=\"2025-12-06T05:46:28Z\">12 s ago</time>"
        );
        assert!(Html::ago_ms(0, now).as_str().contains("never"));
        assert!(Html::ago_secs(0, 1).as_str().contains("never"));
        assert!(
            Html::ago_secs(1_765_000_000 - 90, 1_765_000_000)
                .as_str()
                .contains("1 min 30 s ago")
        );
    }

    #[test]
    fn join_separates_pieces() {
        let j = Html::join([Html::text("a<"), Html::code("b&")], ", ");
        assert_eq!(j.as_str(), "a&lt;, <code>b&amp;</code>");
    }
}
