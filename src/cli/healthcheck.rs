//! `poirot healthcheck`: asks a running poirot's `/readyz` (or `/healthz` with
//! `--live`), for container HEALTHCHECKs (the runtime image has no curl). Exit
//! status 0 when it answers 200 within the timeout, 1 otherwise, with one line
//! naming what fails and why.
//!
//! It reads the same configuration as the server: with `run.tls_cert` set it
//! speaks TLS and trusts exactly that certificate (whatever name it carries:
//! inside a container the check reaches the listener on loopback). `/readyz`
//! and `/healthz` need no credentials.

use crate::sink::web_security;
use crate::telemetry::health::Report;
use anyhow::Context as _;
use clap::Args;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// Address of poirot's page (`run.listen`); defaults to 127.0.0.1 on the port of run.listen.
    #[arg(long)]
    pub addr: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// Check liveness (`/healthz`: the process serves) instead of readiness (`/readyz`).
    #[arg(long)]
    pub live: bool,
}

/// Most bytes of an answer read.
const MAX_ANSWER: u64 = 1 << 20;

pub fn run(args: HealthcheckArgs, config: &crate::config::Config) -> anyhow::Result<()> {
    let addr = args.addr.unwrap_or_else(|| {
        // run.listen is often 0.0.0.0:PORT in a container: ask loopback on that port.
        let port = config.run.listen.rsplit(':').next().unwrap_or("9464");
        format!("127.0.0.1:{port}")
    });
    let path = if args.live { "/healthz" } else { "/readyz" };
    let tls = !config.run.tls_cert.is_empty();
    let url = format!("{}://{addr}{path}", if tls { "https" } else { "http" });
    let timeout = Duration::from_secs(args.timeout.max(1));
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr:?} is not an address like 127.0.0.1:9464"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to nothing"))?;
    let tcp = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("poirot is not listening on {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let raw = if tls {
        let certs = web_security::read_certificates(Path::new(&config.run.tls_cert))
            .context("config key `run.tls_cert`")?;
        let pinned = certs.into_iter().next().context("run.tls_cert holds no certificate")?;
        let client = web_security::pinned_client(pinned)?;
        let name = rustls::pki_types::ServerName::IpAddress(sock.ip().into());
        let conn =
            rustls::ClientConnection::new(Arc::new(client), name).context("cannot start a TLS connection")?;
        exchange(rustls::StreamOwned::new(conn, tcp), &request)
    } else {
        exchange(tcp, &request)
    }
    .with_context(|| format!("no answer from {url}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let status = if status_line.starts_with("HTTP/") { status_line.split_whitespace().nth(1) } else { None };
    match status {
        Some("200") => Ok(()),
        Some("503") if !args.live => {
            let why = serde_json::from_str::<Report>(body.trim())
                .map(|r| r.problems())
                .unwrap_or_else(|_| body.trim().chars().take(500).collect());
            anyhow::bail!("poirot at {addr} is not ready: {why}")
        }
        Some(_) => anyhow::bail!("{url} answered {status_line:?}"),
        None if tls => anyhow::bail!("{url} gave no HTTP answer"),
        None => anyhow::bail!("{url} gave no HTTP answer (is its listener TLS? then set run.tls_cert)"),
    }
}

/// Sends `request` and reads the answer until the server closes.
fn exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut raw = Vec::new();
    match (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A peer that closes without TLS close_notify, after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}
