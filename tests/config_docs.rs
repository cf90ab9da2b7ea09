//! The configuration references in `docs/` list exactly the keys the
//! programs accept: a key the loaders read but the reference lacks, or a key
//! the reference lists but the loaders refuse, fails a test that names it.
//!
//! **Documented keys** are the first cells of the tables headed `| key |` in
//! `docs/configure-relay.md` and `docs/configure-store.md`, written as dotted
//! paths: `upstreams[].buffer.max_bytes` (`[]`: every element of a list),
//! `metrics.<name>.frequency` (`<name>`: any key of a map).
//!
//! **Accepted keys** are asked of the real loaders (`Config::from_json_str`
//! of each crate), not of a list kept beside them. Every object of both
//! configurations refuses unknown keys, and the loader's error names the keys
//! that object accepts (``at upstreams[0].buffer.__probe__ …: unknown field
//! `__probe__`, expected one of `max_bytes`, `when_full`, `max_age` ``). So
//! the test writes a file with one unknown key at a path, reads the accepted
//! keys from the error, and does the same one level down for each of them:
//! an object answers with its keys, a list of objects or a map of objects
//! answers for its element, anything else is a value. A key added to a config
//! struct shows up in its parent's answer; a key removed stops being
//! accepted. Two places accept any key by design, as cc-metric-store does:
//! the store's top level and its `nats` section; their keys come from
//! `cc_store::config::top_level_keys` (built from the section list and the
//! `NAME-file` rule the loader uses) and `nats_keys` (the field list of the
//! struct the loader reads `nats` into, which it also uses to warn about
//! unknown `nats` keys). If serde's message ever changes shape, no key is
//! found and the tests fail instead of passing.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cc_common::config::ConfigError;
use serde_json::{Map, Value, json};

/// The unknown key written to ask an object for its keys.
const PROBE: &str = "__probe__";

/// One step of a key path.
#[derive(Debug, Clone)]
enum Step {
    /// A named key of an object.
    Key(String),
    /// Every element of a list (`[]` in the docs).
    Each,
    /// Any key of a map (`<name>` in the docs).
    AnyName,
}

/// The path as the docs write it: `upstreams[].buffer.max_bytes`,
/// `metrics.<name>.frequency`.
fn doc_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Each => out.push_str("[]"),
            Step::AnyName => out.push_str(".<name>"),
        }
    }
    out
}

/// The path as the loaders name it in errors (`upstreams[0].buffer`), with
/// [`PROBE`] as the map key of an [`Step::AnyName`].
fn error_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Each => out.push_str("[0]"),
            Step::AnyName => {
                out.push('.');
                out.push_str(PROBE);
            }
        }
    }
    out
}

/// `value` placed at `path` inside otherwise empty objects and lists.
fn place(path: &[Step], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, step| match step {
        Step::Key(key) => json!({ key.as_str(): inner }),
        Step::Each => json!([inner]),
        Step::AnyName => json!({ PROBE: inner }),
    })
}

/// `overlay` merged into `base`, objects key by key.
fn merge(base: &Value, overlay: Value) -> Value {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            let mut out: Map<String, Value> = base.clone();
            for (key, value) in overlay {
                let merged = match out.get(&key) {
                    Some(existing) => merge(existing, value),
                    None => value,
                };
                out.insert(key, merged);
            }
            Value::Object(out)
        }
        (_, overlay) => overlay,
    }
}

/// The keys in the quoted list of serde's "unknown field" message:
/// ``unknown field `x`, expected one of `a`, `b` `` (or ``expected `a` or
/// `b` ``, ``expected `a` ``, `there are no fields`).
fn listed_keys(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// A configuration loader under test and the smallest file it reads up to
/// the point of interest.
struct Loader {
    load: fn(&str) -> Result<(), ConfigError>,
    base: Value,
}

impl Loader {
    /// The keys the loader accepts in the object at `path`, or `None` if
    /// what is at `path` is not an object that refuses unknown keys.
    fn keys_at(&self, path: &[Step]) -> Option<Vec<String>> {
        // The probe's own value is an object holding the probe again, so
        // that a map of objects answers for its element.
        let probe = json!({ PROBE: { PROBE: {} } });
        let text = merge(&self.base, place(path, probe)).to_string();
        let err = (self.load)(&text).err()?;
        let ConfigError::Parse { key, message, .. } = err else {
            return None;
        };
        let at = error_path(path);
        let expected_key = if at.is_empty() {
            PROBE.to_owned()
        } else {
            format!("{at}.{PROBE}")
        };
        (key == expected_key && message.starts_with(&format!("unknown field `{PROBE}`")))
            .then(|| listed_keys(&message))
    }

    /// Every key path below `path` (an object), objects included.
    fn discover(&self, path: &[Step], out: &mut BTreeSet<String>) {
        let keys = self
            .keys_at(path)
            .unwrap_or_else(|| panic!("{} is not an object", doc_path(path)));
        assert!(
            !keys.is_empty(),
            "the loader names no key at {}: has serde's message changed?",
            doc_path(path)
        );
        for key in keys {
            let mut child = path.to_vec();
            child.push(Step::Key(key));
            self.discover_value(&child, out);
        }
    }

    /// The key path `path` and every key path below it: an object, a map of
    /// objects (`path.<name>`), a list of objects (`path[]`) or a value.
    fn discover_value(&self, path: &[Step], out: &mut BTreeSet<String>) {
        let shapes = [vec![], vec![Step::AnyName], vec![Step::Each]];
        let object = shapes.into_iter().find_map(|suffix| {
            let mut inner = path.to_vec();
            inner.extend(suffix);
            self.keys_at(&inner).map(|_| inner)
        });
        match object {
            Some(inner) => {
                out.insert(doc_path(&inner));
                self.discover(&inner, out);
            }
            None => {
                out.insert(doc_path(path));
            }
        }
    }
}

fn relay_load(text: &str) -> Result<(), ConfigError> {
    cc_relay::config::Config::from_json_str(text, "probe.json", Path::new("/nonexistent")).map(drop)
}

fn store_load(text: &str) -> Result<(), ConfigError> {
    cc_store::config::Config::from_json_str(text, "probe.json", Path::new("/nonexistent")).map(drop)
}

fn relay_loader() -> Loader {
    Loader {
        load: relay_load,
        base: json!({}),
    }
}

/// Sections are read in order, so the ones before the probed one must load.
fn store_loader() -> Loader {
    Loader {
        load: store_load,
        base: json!({
            "main": {},
            "metrics": {},
            "metric-store": { "retention-in-memory": "1h", "memory-cap": 0 }
        }),
    }
}

/// Every key path the relay accepts.
fn relay_keys() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    relay_loader().discover(&[], &mut out);
    out
}

/// Every key path the store accepts.
fn store_keys() -> BTreeSet<String> {
    let loader = store_loader();
    let mut out: BTreeSet<String> = cc_store::config::top_level_keys().into_iter().collect();
    for section in cc_store::config::SECTIONS {
        let path = [Step::Key(section.to_owned())];
        if section == "nats" {
            // Upstream ignores unknown keys here, and so does the store.
            assert!(
                loader.keys_at(&path).is_none(),
                "the nats section refuses unknown keys now: drop this special case"
            );
            out.extend(
                cc_store::config::nats_keys()
                    .iter()
                    .map(|key| format!("nats.{key}")),
            );
        } else {
            loader.discover_value(&path, &mut out);
        }
    }
    out
}

/// The docs directory of the workspace.
fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// The cells of a Markdown table row, trimmed (`|` inside code spans is not
/// used in the key tables).
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// The first cells of every table whose header's first cell is `key`; each
/// must be one code span.
fn documented_keys(file: &str) -> BTreeSet<String> {
    let path = docs_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut keys = BTreeSet::new();
    let mut in_key_table = false;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, line)) = lines.next() {
        if !line.trim_start().starts_with('|') {
            in_key_table = false;
            continue;
        }
        if !in_key_table {
            // A header row; its separator follows.
            in_key_table = cells(line).first().is_some_and(|c| c == "key");
            if in_key_table {
                lines.next();
            }
            continue;
        }
        let first = cells(line).into_iter().next().unwrap_or_default();
        let key = first
            .strip_prefix('`')
            .and_then(|k| k.strip_suffix('`'))
            .filter(|k| !k.is_empty() && !k.contains('`'))
            .unwrap_or_else(|| {
                panic!(
                    "{file}:{}: the first cell of a key table must be one `key`, not {first:?}",
                    number + 1
                )
            });
        assert!(
            keys.insert(key.to_owned()),
            "{file}:{}: `{key}` is listed twice",
            number + 1
        );
    }
    keys
}

/// Whether `object` is a proper prefix of the key path `key`.
fn is_below(key: &str, object: &str) -> bool {
    key.strip_prefix(object)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// What is wrong with `documented` (the keys of `docs/{file}`) against
/// `accepted`: every accepted key the docs lack (an object counts as
/// documented when a key below it is) and every documented key the loader
/// refuses. `None` when they agree.
fn mismatch(
    file: &str,
    accepted: &BTreeSet<String>,
    documented: &BTreeSet<String>,
) -> Option<String> {
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|a| !documented.contains(*a) && !documented.iter().any(|d| is_below(d, a)))
        .collect();
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| !accepted.contains(*d))
        .collect();
    (!missing.is_empty() || !unknown.is_empty()).then(|| {
        format!(
            "docs/{file} is out of date.\n\
             Accepted by the program but not documented: {missing:#?}\n\
             Documented but not accepted: {unknown:#?}"
        )
    })
}

#[test]
fn relay_reference_lists_every_key_the_relay_accepts() {
    let file = "configure-relay.md";
    if let Some(problem) = mismatch(file, &relay_keys(), &documented_keys(file)) {
        panic!("{problem}");
    }
}

#[test]
fn store_reference_lists_every_key_the_store_accepts() {
    let file = "configure-store.md";
    if let Some(problem) = mismatch(file, &store_keys(), &documented_keys(file)) {
        panic!("{problem}");
    }
}

/// The discovery itself: it finds keys at every depth and of every shape,
/// and a key that does not exist is not accepted.
#[test]
fn key_discovery_finds_nested_keys_of_every_shape() {
    let relay = relay_keys();
    for key in [
        "instance_id",
        "storage.max_disk_bytes",
        "ingress.http[].auth.mode",
        "ingress.nats[].subjects[].subject",
        "ingress.nats[].jetstream.stream_config.replicas",
        "upstreams[].buffer.max_bytes",
        "upstreams[].processing.rename_tags",
    ] {
        assert!(relay.contains(key), "relay: {key} not found in {relay:#?}");
    }
    assert!(!relay.contains("upstreams[].buffer.max_byte"));
    assert!(!relay.contains("source"), "a skipped field is not a key");

    let store = store_keys();
    for key in [
        "main.addr",
        "main.debug.gops",
        "metrics.<name>.frequency",
        "metric-store.checkpoints.interval",
        "metric-store.cleanup.interval",
        "metric-store.nats-subscriptions[].cluster-tag",
        "nats.creds-file-path",
        "metrics-file",
    ] {
        assert!(store.contains(key), "store: {key} not found in {store:#?}");
    }
    assert!(!store.contains("metric-store-file"));
}

#[test]
fn listed_keys_reads_each_form_of_serdes_message() {
    assert_eq!(
        listed_keys("unknown field `x`, expected one of `a`, `b`, `c`"),
        ["a", "b", "c"]
    );
    assert_eq!(
        listed_keys("unknown field `x`, expected `a` or `b`"),
        ["a", "b"]
    );
    assert_eq!(listed_keys("unknown field `x`, expected `a`"), ["a"]);
    assert!(listed_keys("unknown field `x`, there are no fields").is_empty());
}

#[test]
fn a_key_missing_from_the_docs_is_named() {
    let accepted: BTreeSet<String> = ["a", "a.b", "a.c", "d[]", "d[].e"].map(String::from).into();
    let documented: BTreeSet<String> = ["a.b", "d[].e", "f"].map(String::from).into();
    let text = mismatch("x.md", &accepted, &documented).expect("a mismatch is reported");
    assert!(text.contains("\"a.c\""), "{text}");
    assert!(text.contains("\"f\""), "{text}");
    assert!(!text.contains("\"a.b\""), "{text}");
    assert!(!text.contains("\"d[]\""), "{text}");
    assert!(mismatch("x.md", &documented, &documented).is_none());
}
