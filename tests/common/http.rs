//! A minimal HTTP/1.1 client for loopback test servers (`Connection: close`),
//! over plain TCP or, for `https://` URLs, TLS trusting a given CA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A response: status code (0 when the answer was no HTTP), head and body.
pub struct Response {
    pub status: u16,
    /// The status line and the header lines.
    pub head: String,
    pub body: String,
}

impl Response {
    /// The values of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// What else a request carries.
#[derive(Default, Clone, Copy)]
pub struct Options<'a> {
    /// PEM of the CA that `https://` servers must be signed by.
    pub ca_pem: Option<&'a str>,
    /// Extra header lines, e.g. `("Authorization", "Bearer x")`.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Sends one request to `url` (`http://host:port/path`).
pub fn request(method: &str, url: &str, content_type: &str, body: &[u8]) -> std::io::Result<Response> {
    send(method, url, content_type, body, Options::default())
}

pub fn get(url: &str) -> std::io::Result<Response> {
    request("GET", url, "text/plain", b"")
}

/// GET with `options` (`https://` URLs need `options.ca_pem`).
pub fn get_with(url: &str, options: Options<'_>) -> std::io::Result<Response> {
    send("GET", url, "text/plain", b"", options)
}

fn send(
    method: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
    options: Options<'_>,
) -> std::io::Result<Response> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(std::io::Error::other(format!("not http(s): {url}")));
    };
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in options.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let raw = if tls {
        let ca = options.ca_pem.ok_or_else(|| std::io::Error::other("https needs a CA"))?;
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        exchange(tls_stream(s, ca, name)?, head.as_bytes(), body)?
    } else {
        exchange(s, head.as_bytes(), body)?
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = if head.starts_with("HTTP/") {
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    } else {
        0
    };
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response { status, head: head.to_owned(), body })
}

/// A TLS client stream to `name` over `tcp`, trusting only `ca_pem`.
fn tls_stream(
    tcp: TcpStream,
    ca_pem: &str,
    name: &str,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn exchange(mut s: impl Read + Write, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
