//! `poirot run`'s own section and the HTTP listener's protections.

use serde::Deserialize;

/// `poirot run` itself, and the protections of the HTTP listener (of `poirot
/// demo` too).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Address of the page, `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
    /// PEM certificate chain (server certificate first): TLS on when set, with `tls_key`.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Bearer token for the page and the API (`/`, `/api/*`, `/graph.svg`).
    pub auth_token: String,
    /// A file holding it (a docker secret), instead of `auth_token`.
    pub auth_token_file: String,
    /// Basic credentials for the page and the API, with `auth_password(_file)`.
    pub auth_user: String,
    pub auth_password: String,
    pub auth_password_file: String,
    /// Bearer token for `/metrics`. When no metrics credentials are set, `/metrics`
    /// takes the page's (and is open when the page is).
    pub metrics_token: String,
    pub metrics_token_file: String,
    /// Basic credentials for `/metrics`, with `metrics_password(_file)`.
    pub metrics_user: String,
    pub metrics_password: String,
    pub metrics_password_file: String,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            listen: "127.0.0.1:9464".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            auth_token: String::new(),
            auth_token_file: String::new(),
            auth_user: String::new(),
            auth_password: String::new(),
            auth_password_file: String::new(),
            metrics_token: String::new(),
            metrics_token_file: String::new(),
            metrics_user: String::new(),
            metrics_password: String::new(),
            metrics_password_file: String::new(),
        }
    }
}
