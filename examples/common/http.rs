//! A minimal HTTP/1.1 client over one keep-alive connection, for the load
//! and query generators (no TLS; answers with a length or chunked: enough
//! for cc-store, cc-relay and VictoriaMetrics).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::Context;

/// Sends one request on `conn` and reads the whole answer; returns the
/// status and the body length.
pub fn request(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    host: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> anyhow::Result<(u16, usize)> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let stream = conn.get_mut();
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut status_line = String::new();
    conn.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        conn.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse()?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.trim().eq_ignore_ascii_case("chunked");
            }
        }
    }
    if !chunked {
        let mut sink = vec![0; length];
        conn.read_exact(&mut sink)?;
        return Ok((status, length));
    }
    // Chunked: size lines in hex, each chunk followed by CRLF, a last chunk
    // of size 0, then optional trailers and an empty line.
    let mut total = 0;
    loop {
        let mut size_line = String::new();
        conn.read_line(&mut size_line)?;
        let size_hex = size_line.trim_end().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex.trim(), 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                conn.read_line(&mut trailer)?;
                if trailer.trim_end().is_empty() {
                    return Ok((status, total));
                }
            }
        }
        let mut sink = vec![0; size + 2];
        conn.read_exact(&mut sink)?;
        total += size;
    }
}

/// Splits `http://HOST:PORT/PATH` into host and path (`/` when empty).
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("the URL must start with http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((
        host.to_owned(),
        if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    ))
}
