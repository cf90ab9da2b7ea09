//! A trivial HTTP sink for benchmarks: accepts any request, reads and
//! discards its body, answers `204 No Content`, and counts what it got.
//!
//! It stands in for the store when a benchmark measures a relay alone
//! (cc-relay, vmagent, …), so that the upstream costs nothing and every
//! relay is compared against the same receiver.
//!
//! ```text
//! cargo run --release --example nullsink -- 127.0.0.1:18428
//! ```
//!
//! `GET /count` answers the number of requests and body bytes received so
//! far. One thread per connection; HTTP/1.1 keep-alive, bodies with
//! `Content-Length` or `Transfer-Encoding: chunked`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18428".into());
    let listener = TcpListener::bind(&addr).with_context(|| format!("binding {addr}"))?;
    eprintln!("nullsink listening on {}", listener.local_addr()?);
    let counts = Arc::new(Counts::default());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let counts = Arc::clone(&counts);
        std::thread::spawn(move || {
            let _ = serve(stream, &counts);
        });
    }
    Ok(())
}

fn serve(stream: TcpStream, counts: &Counts) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_owned();
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().context("bad Content-Length")?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut skipped = 0usize;
            let mut buf = [0u8; 64 * 1024];
            while skipped < length {
                let want = (length - skipped).min(buf.len());
                let n = reader.read(buf.get_mut(..want).unwrap_or_default())?;
                if n == 0 {
                    bail!("body ended early");
                }
                skipped += n;
            }
            length
        };
        if request_line.starts_with("GET /count") {
            let text = format!(
                "{} {}\n",
                counts.requests.load(Ordering::Relaxed),
                counts.bytes.load(Ordering::Relaxed)
            );
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )?;
        } else {
            counts.requests.fetch_add(1, Ordering::Relaxed);
            counts.bytes.fetch_add(body as u64, Ordering::Relaxed);
            writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(total);
                }
            }
        }
        std::io::copy(&mut reader.by_ref().take(size as u64), &mut std::io::sink())?;
        total += size;
        line.clear();
        reader.read_line(&mut line)?;
    }
}
