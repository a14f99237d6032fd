//! One accepted connection: its byte stream (plain TCP or TLS), what is known of the peer,
//! the connection-limit permit it holds, and the deadline for its first request.
//!
//! The permit is released when hyper drops the connection, whatever ended it. The deadline is
//! checked on every read until a request has reached the service
//! ([`mark_served`]): once it passes, the next read fails with `TimedOut` and hyper closes the
//! connection. hyper always has a read pending on a live connection (HTTP/2) or while it waits
//! for a request head (HTTP/1.1), so the deadline's timer wakes it in time.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::auth::ClientCertificate;

/// What the transport knows of a connection. tonic puts it in the extensions of every request
/// of the connection, where the authenticator finds the client certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The verified client certificate's names, on a TLS connection whose client sent one.
    pub client_certificate: Option<Arc<ClientCertificate>>,
    served: Arc<AtomicBool>,
}

impl Peer {
    /// A peer that has not sent a request yet.
    pub(crate) fn new(remote_addr: SocketAddr, cert: Option<ClientCertificate>) -> Peer {
        Peer {
            remote_addr,
            client_certificate: cert.map(Arc::new),
            served: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// A request of the connection reached the service: the first-request deadline no longer
/// applies. Used as a `map_request` layer in front of every service.
pub fn mark_served<B>(req: http::Request<B>) -> http::Request<B> {
    if let Some(peer) = req.extensions().get::<Peer>() {
        peer.served.store(true, Ordering::Relaxed);
    }
    req
}

/// The byte stream of a connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, ready for hyper; see the module documentation.
pub struct Conn {
    stream: Stream,
    peer: Peer,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    pub(crate) fn new(
        stream: Stream,
        peer: Peer,
        deadline: Instant,
        timeout: Duration,
        permit: OwnedSemaphorePermit,
    ) -> Conn {
        Conn {
            stream,
            peer,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            timeout,
            _permit: permit,
        }
    }

    /// Err once the first-request deadline passed without a request.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = self.deadline.as_mut() else {
            return Ok(());
        };
        if self.peer.served.load(Ordering::Relaxed) {
            self.deadline = None;
            return Ok(());
        }
        if deadline.as_mut().poll(cx).is_ready() {
            tracing::debug!(peer = %self.peer.remote_addr, "closing a connection that sent no request in {:?}", self.timeout);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no request within {:?} of connecting", self.timeout),
            ));
        }
        Ok(())
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
