//! How every mapreg client connects (SPEC.md 8.6): the CLI, [`MappingCache`](super::MappingCache)
//! and the gateway example.
//!
//! - An `https://` endpoint always uses TLS and never falls back to plaintext. The server's
//!   certificate is verified against the system's roots plus `--ca-bundle` (AWS CLI's name;
//!   `MAPREG_CA_BUNDLE`), unless `--no-verify-ssl` (still encrypted, not authenticated).
//!   `--client-cert` / `--client-key` present a certificate to servers that ask for one.
//! - An `http://` endpoint is plaintext. Against a TLS server it fails, and
//!   [`explain_status`] turns the server's answer (a GOAWAY whose text is
//!   [`TLS_ONLY`](crate::transport::TLS_ONLY)) into a message that says to use `https://`;
//!   [`explain_failure`] also asks the server when the call ended before that text arrived.
//! - A `host:port` endpoint means `http://host:port`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};

use crate::transport::tls::{TlsError, provider, read_certificates};

/// TLS flags of a client; all unset means: system roots, no client certificate.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsOptions {
    /// CA certificates (PEM) trusted for an https:// endpoint, besides the system's.
    #[arg(long, env = "MAPREG_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Do not verify the server's certificate (https:// only; the traffic stays encrypted).
    #[arg(long)]
    pub no_verify_ssl: bool,
    /// Client certificate (PEM) for a server that asks for one (needs --client-key).
    #[arg(
        long,
        env = "MAPREG_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(
        long,
        env = "MAPREG_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint {url:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TLS file could not be used, or the TLS flags do not fit the endpoint.
    #[error("{0}")]
    Tls(String),
    /// The connection failed.
    #[error("{reason}")]
    Transport {
        /// What failed, with a hint when it looks like a TLS/plaintext mismatch.
        reason: String,
    },
}

impl From<TlsError> for ConnectError {
    fn from(e: TlsError) -> Self {
        ConnectError::Tls(e.to_string())
    }
}

/// The endpoint URL, with `http://` added when only `host:port` is given.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// An [`Endpoint`] for `endpoint` (see [`endpoint_url`]): TLS as `tls` says for `https://`,
/// plaintext for `http://`. Every file is read now.
pub fn endpoint(endpoint: &str, tls: &TlsOptions) -> Result<Endpoint, ConnectError> {
    let url = endpoint_url(endpoint);
    let bad = |reason: String| ConnectError::Endpoint {
        url: url.clone(),
        reason,
    };
    let ep = Endpoint::from_shared(url.clone()).map_err(|e| bad(error_chain(&e)))?;
    match ep.uri().scheme_str() {
        Some("https") => {
            let mut config = ClientTlsConfig::new();
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                config = config.identity(Identity::from_pem(
                    read_file("--client-cert", cert)?,
                    read_file("--client-key", key)?,
                ));
            } else if tls.client_cert.is_some() || tls.client_key.is_some() {
                return Err(ConnectError::Tls(
                    "--client-cert and --client-key must be given together".into(),
                ));
            }
            let verifier: Arc<dyn ServerCertVerifier> = if tls.no_verify_ssl {
                Arc::new(NoVerification(provider()))
            } else {
                webpki_verifier(tls.ca_bundle.as_deref())?
            };
            ep.tls_config_with_verifier(config, verifier)
                .map_err(|e| ConnectError::Tls(error_chain(&e)))
        }
        Some("http") => Ok(ep),
        other => Err(bad(format!(
            "the scheme must be http:// or https://, not {}",
            other.unwrap_or("none")
        ))),
    }
}

/// Connects to `endpoint`, giving up after `timeout` (TCP and TLS handshake).
pub async fn connect(
    endpoint_: &str,
    tls: &TlsOptions,
    timeout: Duration,
) -> Result<Channel, ConnectError> {
    let ep = endpoint(endpoint_, tls)?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    ep.connect().await.map_err(|e| {
        let reason = error_chain(&e);
        let reason = match mismatch_hint(&reason) {
            Some(hint) => format!("{reason}: {hint}"),
            None => reason,
        };
        ConnectError::Transport { reason }
    })
}

/// A hint for a TLS handshake error that means the server speaks plaintext.
fn mismatch_hint(reason: &str) -> Option<&'static str> {
    if reason.contains("InvalidContentType") || reason.contains("corrupt message") {
        Some("the server did not answer TLS: it may serve plaintext (http://) only")
    } else if reason.contains("handshake eof") || reason.contains("UnexpectedEof") {
        Some(
            "the server closed the connection during the TLS handshake: it may serve plaintext \
             (http://) only, or require a client certificate (--client-cert, --client-key)",
        )
    } else {
        None
    }
}

/// When `status` is a TLS server's refusal of a plaintext (`http://`) client, the message to
/// show instead: it says to use `https://`.
pub fn explain_status(endpoint: &str, status: &tonic::Status) -> Option<String> {
    let text = format!("{} {:?}", status.message(), status);
    if !text.contains(crate::transport::TLS_ONLY) {
        return None;
    }
    let url = endpoint_url(endpoint);
    let https = url.replacen("http://", "https://", 1);
    Some(format!(
        "the server at {url} accepts TLS only: use {https} (with --ca-bundle if its \
         certificate is not signed by a CA the system trusts)"
    ))
}

/// [`explain_status`], and when the answer does not say it (a plaintext request that lost the
/// race with the server's GOAWAY ends as a cancelled or unavailable call, without its text),
/// asks the server itself: an `http://` endpoint that answers a one-line HTTP/1.1 request with
/// [`TLS_ONLY`](crate::transport::TLS_ONLY) is a TLS port. The probe takes at most 2 s and is
/// made only after such a failure.
pub async fn explain_failure(endpoint: &str, status: &tonic::Status) -> Option<String> {
    if let Some(why) = explain_status(endpoint, status) {
        return Some(why);
    }
    use tonic::Code;
    if !matches!(
        status.code(),
        Code::Cancelled | Code::Unknown | Code::Unavailable | Code::Internal
    ) {
        return None;
    }
    let url = endpoint_url(endpoint);
    let authority = url.strip_prefix("http://")?.split('/').next()?.to_string();
    let probe = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(&authority).await.ok()?;
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: mapreg\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        let _ = (&mut tcp).take(4096).read_to_end(&mut answer).await;
        Some(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&answer);
    if !text.contains(crate::transport::TLS_ONLY) {
        return None;
    }
    explain_status(
        endpoint,
        &tonic::Status::unavailable(crate::transport::TLS_ONLY),
    )
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path)
        .map_err(|e| ConnectError::Tls(format!("cannot read {what} {}: {e}", path.display())))
}

/// The system's roots plus those of `bundle`.
fn webpki_verifier(bundle: Option<&Path>) -> Result<Arc<dyn ServerCertVerifier>, ConnectError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(bundle) = bundle {
        for cert in read_certificates("--ca-bundle", bundle)? {
            roots.add(cert).map_err(|e| {
                ConnectError::Tls(format!(
                    "--ca-bundle {} holds a certificate that cannot be a trust anchor: {e}",
                    bundle.display()
                ))
            })?;
        }
    }
    if roots.is_empty() {
        return Err(ConnectError::Tls(
            "no CA certificates to verify the server with: the system has none; give \
             --ca-bundle FILE (or MAPREG_CA_BUNDLE)"
                .into(),
        ));
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    Ok(verifier)
}

/// The handshake signature checks of a [`ServerCertVerifier`] that holds its
/// [`CryptoProvider`] in field 0: each TLS version's check with the provider's algorithms.
macro_rules! signature_checks {
    ($($method:ident => $check:path),*) => {
        $(
            fn $method(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                $check(message, cert, dss, &self.0.signature_verification_algorithms)
            }
        )*
    };
}

/// `--no-verify-ssl`: any certificate is accepted, but the handshake's signatures are still
/// checked, so the session is encrypted with the key of the certificate shown.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!(
        verify_tls12_signature => rustls::crypto::verify_tls12_signature,
        verify_tls13_signature => rustls::crypto::verify_tls13_signature
    );

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An error and its sources, joined by ": " (tonic's transport errors hide the useful part in
/// their sources); a source whose text the message already holds is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(endpoint_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        let none = TlsOptions::default();
        assert!(endpoint("http://127.0.0.1:1", &none).is_ok());
        assert!(matches!(
            endpoint("ftp://127.0.0.1:1", &none),
            Err(ConnectError::Endpoint { .. })
        ));
        let missing = TlsOptions {
            ca_bundle: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = endpoint("https://127.0.0.1:1", &missing).expect_err("no bundle");
        assert!(e.to_string().contains("--ca-bundle"), "{e}");
    }
}
