//! `poirot healthcheck`: asks a running poirot's `/healthz`, for container
//! HEALTHCHECKs (the runtime image has no curl). Exit status 0 when it answers
//! 200 within the timeout, 1 otherwise.

use anyhow::Context as _;
use clap::Args;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// Address of poirot's page (`run.listen`); defaults to 127.0.0.1 on the port of run.listen.
    #[arg(long)]
    pub addr: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

pub fn run(args: HealthcheckArgs, config: &crate::config::Config) -> anyhow::Result<()> {
    let addr = args.addr.unwrap_or_else(|| {
        // run.listen is often 0.0.0.0:PORT in a container: ask loopback on that port.
        let port = config.run.listen.rsplit(':').next().unwrap_or("9464");
        format!("127.0.0.1:{port}")
    });
    let timeout = Duration::from_secs(args.timeout.max(1));
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr:?} is not an address like 127.0.0.1:9464"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to nothing"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("poirot is not listening on {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = Vec::new();
    s.take(256).read_to_end(&mut head).with_context(|| format!("no answer from {addr}"))?;
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        anyhow::bail!("{addr}/healthz answered {:?}", text.lines().next().unwrap_or(""));
    }
    Ok(())
}
