//! What the Neo4j and Elasticsearch clients' TLS failures have in common: both
//! use rustls, whose error sits somewhere in the client's error chain (behind
//! an `io::Error` whose `source()` skips it).

use crate::config::{invalid, ConfigError};
use std::error::Error;

/// The rustls error in `e`'s chain, as one line with a hint, when the failure
/// is the TLS handshake (an untrusted or wrong certificate, a server that does
/// not speak TLS): trying again cannot help.
pub fn handshake_failure(e: &(dyn Error + 'static), ca_key: &str) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(r, ca_key));
        }
        // An io::Error's source() is its inner error's source, skipping the inner
        // error itself (another io::Error, or the rustls error): step into it.
        let inner = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        next = match inner {
            Some(i) => Some(i as &(dyn Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn describe(e: &rustls::Error, ca_key: &str) -> String {
    let hint = match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            format!(" (the server's certificate is not signed by a trusted CA: set {ca_key})")
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => " (the certificate does not name the host poirot connects to)".to_owned(),
        _ => String::new(),
    };
    format!("TLS handshake failed: {e}{hint}")
}

/// The bytes of the PEM certificate file `path`, checked to hold at least one
/// certificate; an error names `key` and the path.
pub(crate) fn pem_certificates(path: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
    super::web_security::read_certificates(std::path::Path::new(path))
        .map_err(|e| invalid(key, e.to_string()))?;
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))
}

/// The bytes of the PEM private key file `path`, checked to hold a key.
pub(crate) fn pem_private_key(path: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    let bytes = std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| invalid(key, format!("no private key in {path}: {e}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_behind_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let line = handshake_failure(&io, "neo4j.ca_file").expect("a TLS failure");
        assert!(line.starts_with("TLS handshake failed: invalid peer certificate"), "{line}");
        assert!(line.contains("set neo4j.ca_file"), "{line}");
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert!(handshake_failure(&nested, "x").is_some(), "an io::Error in an io::Error");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(handshake_failure(&refused, "neo4j.ca_file"), None);
    }
}
