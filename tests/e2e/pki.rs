//! Certificates made at test time (rcgen), written to a temp dir as PEM files, and a TLS
//! server harness: a real server on 127.0.0.1:0 with those files, reloadable in-process.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mapreg::client::connect::{self, TlsOptions};
use mapreg::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::common::{Bearer, Client};

/// A certificate authority that signs server and client certificates into `dir`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's PEM file.
    pub cert: PathBuf,
    dir: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let cert = dir.join(format!("{name}.pem"));
        std::fs::write(&cert, issuer.pem()).expect("write ca");
        Ca {
            issuer,
            cert,
            dir: dir.to_path_buf(),
        }
    }

    fn issue(
        &self,
        file: &str,
        common_name: &str,
        dns: &[&str],
        ip: bool,
        usage: ExtendedKeyUsagePurpose,
    ) -> CertFiles {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .expect("params");
        if ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, file: &str) -> CertFiles {
        self.issue(
            file,
            "mapreg test server",
            &["localhost"],
            true,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with subject `common_name` and DNS SANs `dns`.
    pub fn client(&self, file: &str, common_name: &str, dns: &[&str]) -> CertFiles {
        self.issue(
            file,
            common_name,
            dns,
            false,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// Client TLS options trusting `ca`, presenting `cert` if any.
pub fn tls_options(ca: &Path, cert: Option<&CertFiles>) -> TlsOptions {
    TlsOptions {
        ca_bundle: Some(ca.to_path_buf()),
        no_verify_ssl: false,
        client_cert: cert.map(|c| c.cert.clone()),
        client_key: cert.map(|c| c.key.clone()),
    }
}

/// A channel to `https://addr` through mapreg's own client connector.
pub async fn https_channel(
    addr: SocketAddr,
    tls: &TlsOptions,
) -> Result<Channel, connect::ConnectError> {
    connect::connect(&format!("https://{addr}"), tls, Duration::from_secs(10)).await
}

/// A Registry client over TLS, sending `token` if any.
pub async fn https_client(
    addr: SocketAddr,
    tls: &TlsOptions,
    token: Option<&str>,
) -> Result<Client, connect::ConnectError> {
    let ch = https_channel(addr, tls).await?;
    Ok(
        mapreg::pb::registry_client::RegistryClient::with_interceptor(
            ch,
            Bearer(token.map(str::to_string)),
        ),
    )
}

/// A server running `config` in this process, with a handle to reload it.
pub struct ReloadableServer {
    pub addr: SocketAddr,
    pub reload: mpsc::Sender<Config>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), mapreg::server::ServeError>>>,
}

impl ReloadableServer {
    /// Starts `config` on 127.0.0.1:0; panics if the server refuses to start.
    pub async fn start(config: Config) -> ReloadableServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let (reload, reloads) = mpsc::channel(4);
        let handle = tokio::spawn(mapreg::server::run_with_reloads(
            config,
            listener,
            async move {
                let _ = rx.await;
            },
            tokio_stream::wrappers::ReceiverStream::new(reloads),
        ));
        ReloadableServer {
            addr,
            reload,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it (at most 30 s).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("server stops within 30 s")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

impl Drop for ReloadableServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
