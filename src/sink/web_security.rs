//! Protections of the HTTP listener ([`super::web`]): TLS (rustls) and who may
//! read what. The page and the API (`/`, `/api/*`, `/graph.svg`) and `/metrics`
//! each have their own [`Access`]: a bearer token and/or basic credentials,
//! compared in constant time. `/healthz` and `/readyz` stay open (they show no
//! evidence).
//!
//! [`pinned_client`] is the TLS client `poirot healthcheck` uses: it trusts
//! exactly the certificate the listener is configured with, whatever the name
//! it is reached by (loopback inside a container).

use crate::config::{ConfigError, RunSection};
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {detail}")]
    Certificate { path: String, detail: String },
    #[error("cannot read the private key {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("the certificate and the key do not make a TLS server: {0}")]
    Server(String),
}

/// A secret compared in constant time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Secret {
        Secret(value.into())
    }

    /// Constant-time equality (the length of a wrong guess may show, its content does not).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(candidate))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Who may read one group of routes. Open when it has no credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// `Authorization: Basic base64(user:password)`.
    pub basic: Option<(String, Secret)>,
}

impl Access {
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.basic.is_none()
    }

    /// Whether a request with this `Authorization` header value may pass.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(value) = authorization else { return false };
        let (scheme, credentials) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], value[i + 1..].trim_ascii()),
            None => return false,
        };
        if scheme.eq_ignore_ascii_case(b"bearer") {
            return self.token.as_ref().is_some_and(|t| t.matches(credentials));
        }
        if scheme.eq_ignore_ascii_case(b"basic") {
            let Some((user, password)) = &self.basic else { return false };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else { return false };
            // Both compared, whatever the first says.
            let user_ok = Secret::new(user.as_bytes()).matches(&decoded[..colon]);
            let password_ok = password.matches(&decoded[colon + 1..]);
            return user_ok & password_ok;
        }
        false
    }

    /// The `WWW-Authenticate` challenges of a 401.
    pub fn challenges(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.basic.is_some() {
            c.push("Basic realm=\"poirot\", charset=\"UTF-8\"");
        }
        if self.token.is_some() {
            c.push("Bearer realm=\"poirot\"");
        }
        c
    }
}

/// The listener's protections; the default is none (plain HTTP, everything open).
#[derive(Clone, Default)]
pub struct WebSecurity {
    /// TLS on when set.
    pub tls: Option<Arc<ServerConfig>>,
    /// `/`, `/api/*`, `/graph.svg`.
    pub page: Access,
    /// `/metrics`.
    pub metrics: Access,
}

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("page", &self.page)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl WebSecurity {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// What is on, for the start-up log line: e.g. `TLS, page: token, metrics: token`.
    pub fn describe(&self) -> String {
        let access = |a: &Access| match (&a.token, &a.basic) {
            (None, None) => "open",
            (Some(_), None) => "token",
            (None, Some(_)) => "basic",
            (Some(_), Some(_)) => "token or basic",
        };
        format!(
            "{}, page: {}, metrics: {}",
            if self.tls.is_some() { "TLS" } else { "plain HTTP" },
            access(&self.page),
            access(&self.metrics)
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// Reads the PEM certificates of `path` (the server's first, then its chain).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |detail: String| TlsError::Certificate { path: path.display().to_string(), detail };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// A TLS server for the certificate chain in `cert` and the private key in `key`
/// (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let certs = read_certificates(cert)?;
    let key_err = |detail: String| TlsError::Key { path: key.display().to_string(), detail };
    let key_bytes = std::fs::read(key).map_err(|e| key_err(e.to_string()))?;
    let private =
        PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| key_err(format!("no private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Server(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| TlsError::Server(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS client that accepts exactly the server certificate `pinned` (the first
/// certificate of the listener's `tls_cert`), by whatever name or address it is
/// reached; the handshake still proves the server holds its key.
pub fn pinned_client(pinned: CertificateDer<'static>) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(Pinned { cert: pinned, provider: provider.clone() });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Server(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the server's certificate is not the one in run.tls_cert".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl WebSecurity {
    /// The listener's protections from `[run]`, reading the secret and certificate
    /// files (a missing or unreadable one is an error naming its key and path).
    pub fn from_section(section: &RunSection) -> Result<WebSecurity, ConfigError> {
        let access = |prefix: &str,
                      token: &str,
                      token_file: &str,
                      user: &str,
                      password: &str,
                      password_file: &str|
         -> Result<Access, ConfigError> {
            let token = secret_value(token, token_file, &format!("run.{prefix}_token_file"))?;
            let password = secret_value(password, password_file, &format!("run.{prefix}_password_file"))?;
            Ok(Access {
                token: (!token.is_empty()).then(|| Secret::new(token)),
                basic: (!user.is_empty()).then(|| (user.to_owned(), Secret::new(password))),
            })
        };
        let page = access(
            "auth",
            &section.auth_token,
            &section.auth_token_file,
            &section.auth_user,
            &section.auth_password,
            &section.auth_password_file,
        )?;
        let mut metrics = access(
            "metrics",
            &section.metrics_token,
            &section.metrics_token_file,
            &section.metrics_user,
            &section.metrics_password,
            &section.metrics_password_file,
        )?;
        if metrics.is_open() {
            metrics = page.clone();
        }
        let tls = if section.tls_cert.is_empty() {
            None
        } else {
            let config =
                server_config(Path::new(&section.tls_cert), Path::new(&section.tls_key)).map_err(|e| {
                    let key = match e {
                        TlsError::Key { .. } => "run.tls_key",
                        _ => "run.tls_cert",
                    };
                    ConfigError::Invalid { key: key.into(), origin: String::new(), message: e.to_string() }
                })?;
            Some(std::sync::Arc::new(config))
        };
        Ok(WebSecurity { tls, page, metrics })
    }
}

/// `value`, or the content of `file` (trimmed) when `file` is set; `key` names `file`.
pub(crate) fn secret_value(value: &str, file: &str, key: &str) -> Result<String, ConfigError> {
    if file.is_empty() {
        return Ok(value.to_owned());
    }
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        key: key.into(),
        origin: String::new(),
        message: format!("cannot read {file}: {e}"),
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::Invalid {
            key: key.into(),
            origin: String::new(),
            message: format!("{file} is empty"),
        });
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn open_access_lets_everything_pass() {
        let a = Access::default();
        assert!(a.is_open());
        assert!(a.allows(None));
        assert!(a.allows(Some(b"Bearer anything")));
        assert!(a.challenges().is_empty());
    }

    #[test]
    fn bearer_tokens() {
        let a = Access { token: Some(Secret::new("s3cret-token")), basic: None };
        assert!(a.allows(Some(b"Bearer s3cret-token")));
        assert!(a.allows(Some(b"bearer s3cret-token ")), "scheme is case-insensitive");
        assert!(!a.allows(None));
        assert!(!a.allows(Some(b"Bearer s3cret-toke")));
        assert!(!a.allows(Some(b"Bearer s3cret-tokenX")));
        assert!(!a.allows(Some(b"Bearer ")));
        assert!(!a.allows(Some(b"s3cret-token")));
        assert!(!a.allows(Some(format!("Basic {}", b64("x:s3cret-token")).as_bytes())));
        assert_eq!(a.challenges(), vec!["Bearer realm=\"poirot\""]);
    }

    #[test]
    fn basic_credentials() {
        let a = Access { token: None, basic: Some(("alice".into(), Secret::new("pa:ss"))) };
        let header = |s: &str| format!("Basic {}", b64(s));
        assert!(a.allows(Some(header("alice:pa:ss").as_bytes())), "the password may hold a colon");
        assert!(!a.allows(Some(header("alice:pa:s").as_bytes())));
        assert!(!a.allows(Some(header("bob:pa:ss").as_bytes())));
        assert!(!a.allows(Some(header("alicepa:ss").as_bytes())));
        assert!(!a.allows(Some(b"Basic !!notbase64")));
        assert!(!a.allows(Some(b"Bearer pa:ss")));
        assert!(a.challenges()[0].starts_with("Basic realm="));
        let both = Access { token: Some(Secret::new("t")), ..a };
        assert!(both.allows(Some(b"Bearer t")));
        assert!(both.allows(Some(header("alice:pa:ss").as_bytes())));
        assert_eq!(both.challenges().len(), 2);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = WebSecurity {
            tls: None,
            page: Access { token: Some(Secret::new("hunter2")), basic: None },
            metrics: Access::default(),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.describe(), "plain HTTP, page: token, metrics: open");
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &missing).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let e = server_config(&junk, &junk).expect_err("junk");
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }
}
