//! The HTTP client every HTTPS provider uses: rustls, one timeout per request (and per connect),
//! no redirects (a credentialed request must not be forwarded anywhere), our user agent, an
//! optional extra CA bundle, and certificate verification that is only switched off explicitly,
//! with a warning.

use std::path::Path;
use std::time::Duration;

pub(crate) struct HttpSettings<'a> {
    /// The provider's name, for the warning when verification is off.
    pub name: &'a str,
    pub timeout: Duration,
    pub ca_file: Option<&'a Path>,
    pub verify_tls: bool,
    pub default_headers: reqwest::header::HeaderMap,
}

/// Builds the client; the error is a sentence for `MfaError::Config`.
pub(crate) fn client(s: HttpSettings<'_>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(s.timeout)
        .connect_timeout(s.timeout)
        .default_headers(s.default_headers)
        .user_agent(concat!("Portcullis/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = s.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("bad CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {} holds no certificate", path.display()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if !s.verify_tls {
        tracing::warn!(provider = %s.name, "TLS certificate verification is off");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// An error and its sources as one line (reqwest hides the useful part — refused, TLS, DNS — in
/// the chain), without repeating text a source already contributed.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// What a failed HTTP exchange means for the MFA logic. Only a failed connect proves nothing
/// reached the service, so only that is `Unreachable` (which `crate::resilience` may retry);
/// anything after the request may have been sent is `Protocol`, so a push is never sent twice.
pub(crate) fn transport_error(
    provider: &str,
    e: &reqwest::Error,
    limit: std::time::Duration,
) -> crate::MfaError {
    use crate::MfaError;
    let provider = provider.to_owned();
    let detail = error_chain(e);
    if e.is_timeout() {
        MfaError::Timeout {
            provider,
            after: limit,
        }
    } else if e.is_builder() {
        MfaError::Config { provider, detail }
    } else if e.is_connect() {
        MfaError::Unreachable { provider, detail }
    } else {
        MfaError::Protocol { provider, detail }
    }
}
