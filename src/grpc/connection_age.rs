//! The hard end of a gRPC connection's life. tonic sends GOAWAY once a
//! connection reaches `max_connection_age`, and calls in flight then finish
//! at their own pace; the grace period after which they are cut is kept here,
//! as a deadline on the connection's socket, because tonic 0.14's own
//! `max_connection_age_grace` replaces the GOAWAY instead of following it (it
//! waits age + grace and then drops the connection without one).

use std::{
    future::Future as _,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tonic::transport::server::Connected;

/// A socket that fails every read and write once its lifetime has passed,
/// so that the connection serving it ends; without a lifetime, the socket.
pub struct Aged<IO> {
    inner: IO,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> Aged<IO> {
    pub fn new(inner: IO, lifetime: Option<Duration>) -> Self {
        let deadline = lifetime.map(|lifetime| Box::pin(tokio::time::sleep_until(Instant::now() + lifetime)));
        Self { inner, deadline }
    }

    /// An error once the deadline has passed; before, the task is woken at
    /// the deadline, so that a connection idle on a read still ends then.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let deadline = self.deadline.as_mut()?;
        deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(io::ErrorKind::TimedOut, "the connection outlived max_connection_age and its grace")
        })
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Aged<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Aged<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(error) = self.expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The peer's address stays what the socket says, for `remote_addr` and the
/// trusted-proxy check.
impl<IO: Connected> Connected for Aged<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_connection_ends_at_its_deadline_even_when_idle() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut aged = Aged::new(near, Some(Duration::from_millis(300)));
        far.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        aged.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        // Nothing arrives: the read ends at the deadline, not never.
        let idle = aged.read(&mut buf).await.unwrap_err();
        assert_eq!(idle.kind(), io::ErrorKind::TimedOut);
        assert!(aged.write_all(b"late").await.is_err());
    }

    #[tokio::test]
    async fn without_a_lifetime_it_is_the_socket() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut aged = Aged::new(near, None);
        aged.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
