//! Headless Chromium for the status page tests: renders a page as a browser
//! does and hands back the DOM, its visible text and, on request, a
//! screenshot.
//!
//! Chromium is Debian's `chromium` package (`scripts/test` installs it). A
//! test that needs it fails when it is missing; it is never skipped. The
//! browser may reach loopback only: every other host name resolves to
//! nothing and every other connection goes to a closed local proxy port, and
//! its background services (updates, safe browsing, sync) are off. (Other
//! hosts are refused at the proxy; the resolver rules keep Chromium from
//! looking names up, and spare 127.0.0.1 so that the proxy's own address,
//! which loopback bypasses anyway, is never refused first.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A page as Chromium rendered it.
#[derive(Debug)]
pub struct Rendered {
    /// The DOM after loading, serialised (`--dump-dom`).
    pub dom: String,
    /// The text a reader sees: the body without tags, entities decoded,
    /// runs of white space collapsed to one space.
    pub text: String,
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` on the `PATH`.
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Flags of every run: headless, as root, no GPU, a fresh profile in
/// `profile`, nothing but loopback on the network.
fn base_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--safebrowsing-disable-auto-update",
        "--no-pings",
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Runs Chromium with `args`, at most 90 s; its standard output and error.
fn run(args: &[String]) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let spawned = Command::new(chromium())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "chromium is not installed: this test renders the status pages in headless \
             Chromium; install Debian's `chromium` package (scripts/test does) or point \
             $CHROMIUM at a Chromium binary"
        ),
        Err(e) => panic!("cannot run chromium: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 90 s:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}):\n{stderr}");
    (stdout, stderr)
}

/// Loads `url` and returns the DOM after loading and its visible text.
pub fn render(url: &str) -> Rendered {
    let profile = tempfile::tempdir().expect("temp dir");
    let mut args = base_args(profile.path());
    args.push("--dump-dom".to_owned());
    args.push(url.to_owned());
    let (dom, stderr) = run(&args);
    assert!(
        dom.contains("<body"),
        "chromium printed no document for {url}:\n{dom}\n{stderr}"
    );
    let text = visible_text(&dom);
    Rendered { dom, text }
}

/// Loads `url` in a `width`×`height` window and saves a PNG screenshot to
/// `png`.
pub fn screenshot(url: &str, png: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().expect("temp dir");
    let mut args = base_args(profile.path());
    args.push(format!("--window-size={width},{height}"));
    args.push(format!("--screenshot={}", png.display()));
    args.push(url.to_owned());
    let (_, stderr) = run(&args);
    let size = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 1000,
        "no screenshot of {url} ({size} bytes):\n{stderr}"
    );
}

/// The text of `html`'s body: tags removed (with a space for each, so that
/// cells do not run together), entities decoded, white space collapsed.
pub fn visible_text(html: &str) -> String {
    let body = html
        .find("<body")
        .and_then(|i| html.get(i..))
        .unwrap_or(html);
    let mut raw = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                raw.push(' ');
            }
            c if !in_tag => raw.push(c),
            _ => {}
        }
    }
    let decoded = raw
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}
