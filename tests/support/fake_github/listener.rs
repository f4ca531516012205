//! The fake's listener: every connection carries a switch the chaos layer flips to reset it
//! (SO_LINGER 0, then close), so a "reset" fault is a real TCP reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Clone)]
pub struct Conn(Arc<AtomicBool>);

impl Conn {
    pub(super) fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub(super) struct ResettableListener(pub(super) tokio::net::TcpListener);

impl axum::serve::Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, addr)) => return (ResettableStream { inner: Some(s), reset: Arc::default() }, addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ResettableListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ResettableListener>) -> Self {
        Conn(stream.io().reset.clone())
    }
}

/// A TCP stream that, once its switch is flipped, closes with SO_LINGER 0 at the next read or
/// write: the peer gets a RST instead of the answer.
pub struct ResettableStream {
    inner: Option<tokio::net::TcpStream>,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn stream(&mut self) -> std::io::Result<&mut tokio::net::TcpStream> {
        if self.reset.load(Ordering::SeqCst) {
            if let Some(s) = self.inner.take() {
                let _ = s.set_zero_linger();
            }
        }
        self.inner.as_mut().ok_or_else(|| std::io::ErrorKind::ConnectionReset.into())
    }
}

macro_rules! through {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut().stream() {
            Ok($s) => $e,
            Err(err) => std::task::Poll::Ready(Err(err)),
        }
    };
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        through!(self, s => std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        through!(self, s => std::pin::Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        through!(self, s => std::pin::Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        through!(self, s => std::pin::Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        through!(self, s => std::pin::Pin::new(s).poll_shutdown(cx))
    }
}
