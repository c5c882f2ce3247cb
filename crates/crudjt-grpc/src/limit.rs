//! A cap on the connections the master holds open at once, shared by its
//! listeners, so that one client opening connections in a loop cannot
//! exhaust the master's file descriptors and memory for everyone else.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// An accepted connection that holds one of the master's connection slots
/// until it is dropped.
pub(crate) struct Counted<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
}

/// The accepted connections that find a free slot in `slots`; the rest are
/// closed at once, and logged.
pub(crate) fn counted<S>(
    incoming: impl Stream<Item = io::Result<S>>,
    slots: Arc<Semaphore>,
    limit: usize,
) -> impl Stream<Item = io::Result<Counted<S>>> {
    incoming.filter_map(move |accepted| match accepted {
        Ok(stream) => match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(Ok(Counted {
                inner: stream,
                _slot: slot,
            })),
            Err(_) => {
                tracing::warn!(
                    limit,
                    "refused a connection: the master holds its limit of connections"
                );
                None
            }
        },
        Err(err) => Some(Err(err)),
    })
}

impl<S: Connected> Connected for Counted<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
