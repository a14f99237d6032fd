//! The connection layer under the gRPC and HTTP services (SPEC.md 8.6 and 8.7): accepting,
//! the connection limit, the first-request timeout, TLS, and back-off when the process runs
//! out of file descriptors.
//!
//! [`incoming`] runs one accept task and hands hyper (through tonic's
//! `serve_with_incoming_shutdown`) connections that are ready to speak HTTP:
//!
//! - **Limit**: each connection holds one of `max_connections` permits until it is dropped. A
//!   connection accepted while none is free is closed at once: the client sees a refused
//!   connection, not a hang, and the accept queue keeps moving.
//! - **First request**: a connection must complete its TLS handshake and deliver a request
//!   within `first_request_timeout` of being accepted, or it is closed ([`conn`]). Silent
//!   sockets cost a permit for that long and nothing else.
//! - **TLS**: handshakes run in their own tasks, never in the accept loop, with the settings
//!   current when the connection was accepted ([`tls::ServerTls`]; SIGHUP replaces them for
//!   new connections only). A client that speaks plaintext HTTP to a TLS port gets an answer
//!   saying so (an HTTP/2 GOAWAY, or an HTTP/1.1 400), not just a closed socket.
//! - **Back-off**: when `accept` fails for lack of resources (EMFILE, ENFILE, ENOBUFS,
//!   ENOMEM) the pending connection stays queued and the listener stays readable; accepting
//!   again at once would spin. The loop waits 5 ms, doubling to 1 s while it keeps failing.
//! - HTTP/2 keepalive pings ([`KEEPALIVE_INTERVAL`], [`KEEPALIVE_TIMEOUT`]) are set on the
//!   tonic server by `server`; they close connections whose peer vanished.

pub mod conn;
pub mod tls;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use conn::Stream as ConnStream;
pub use conn::{Conn, Peer, mark_served};
pub use tls::{ServerTls, TlsError, TlsFiles};

use crate::config::Config;

/// How often an idle HTTP/2 connection is pinged.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Repeated warnings (limit reached, accept failing) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connection settings of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a connection may take to deliver its first request.
    pub first_request_timeout: Duration,
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &Config) -> Settings {
        Settings {
            max_connections: config.max_connections,
            first_request_timeout: Duration::from_millis(config.first_request_timeout_ms),
        }
    }
}

/// Accepts connections on `listener` in a task of its own and yields them ready for hyper
/// (TLS handshake done when `tls` is set). Accepting stops, and the listener is closed, when
/// the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    settings: Settings,
    tls: Option<ServerTls>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(accept_loop(listener, settings, tls, tx));
    tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok)
}

/// Logs a repeated condition at most once per [`WARN_EVERY`], with how often it recurred.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last: None,
            suppressed: 0,
        }
    }

    /// Some(times suppressed since the last log) when it is time to log again.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|l| now < l + WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Errors after which accepting again at once is right: the failed connection is gone.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

async fn accept_loop(
    listener: TcpListener,
    settings: Settings,
    tls: Option<ServerTls>,
    tx: mpsc::Sender<Conn>,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut backoff = MIN_BACKOFF;
    let mut full = Throttled::new();
    let mut failing = Throttled::new();
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => {
                backoff = MIN_BACKOFF;
                a
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                if let Some(suppressed) = failing.due() {
                    tracing::warn!(
                        error = %e,
                        open = settings.max_connections - permits.available_permits(),
                        suppressed,
                        "cannot accept connections (out of file descriptors or memory?); \
                         retrying with back-off"
                    );
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(suppressed) = full.due() {
                tracing::warn!(
                    max_connections = settings.max_connections,
                    suppressed,
                    "connection limit reached: closing new connections until some end"
                );
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + settings.first_request_timeout;
        let timeout = settings.first_request_timeout;
        match &tls {
            None => {
                let peer = Peer::new(remote, None);
                let conn = Conn::new(ConnStream::Plain(tcp), peer, deadline, timeout, permit);
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Some((stream, cert)) = handshake(tcp, acceptor, deadline).await else {
                        return;
                    };
                    let peer = Peer::new(remote, cert);
                    let conn = Conn::new(stream, peer, deadline, timeout, permit);
                    let _ = tx.send(conn).await;
                });
            }
        }
    }
}

/// The TLS handshake of one connection, bounded by `deadline`; None if it failed (logged at
/// debug) or the client spoke plaintext (answered by [`refuse_plaintext`]).
async fn handshake(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    deadline: Instant,
) -> Option<(ConnStream, Option<crate::auth::ClientCertificate>)> {
    // A TLS connection starts with a handshake record (content type 22).
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != 0x16 {
        refuse_plaintext(tcp, deadline).await;
        return None;
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let cert = tls::client_certificate(stream.get_ref().1);
            Some((ConnStream::Tls(Box::new(stream)), cert))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// What a plaintext client of a TLS port is told.
pub const TLS_ONLY: &str = "this mapreg server accepts TLS only: use an https:// endpoint";

/// Answers a client that spoke plaintext to a TLS port in its own protocol, then closes:
/// HTTP/2 (gRPC) gets the server preface and a GOAWAY (INADEQUATE_SECURITY) whose debug data is
/// [`TLS_ONLY`], which clients print; anything else gets an HTTP/1.1 400 with that text.
async fn refuse_plaintext(mut tcp: TcpStream, deadline: Instant) {
    let deadline = deadline.min(Instant::now() + Duration::from_secs(2));
    let mut buf = [0u8; 64];
    let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let answer = if buf[..n].starts_with(b"PRI * HTTP/2.0") {
        let mut frames = Vec::with_capacity(9 + 17 + TLS_ONLY.len());
        // An empty SETTINGS frame: the server preface a client waits for.
        frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        // GOAWAY: last stream 0, INADEQUATE_SECURITY (0xc), the explanation as debug data.
        let len = 8 + TLS_ONLY.len();
        frames.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        frames.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
        frames.extend_from_slice(&0u32.to_be_bytes());
        frames.extend_from_slice(&0xcu32.to_be_bytes());
        frames.extend_from_slice(TLS_ONLY.as_bytes());
        frames
    } else {
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{TLS_ONLY}\n",
            TLS_ONLY.len() + 1
        )
        .into_bytes()
    };
    let _ = tokio::time::timeout_at(deadline, async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        // Read until the client closes: closing with unread input would reset the
        // connection, and the client might lose the answer.
        while tcp.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}
