//! A cap on the connections the master holds open at once, shared by its
//! listeners, so that one client opening connections in a loop cannot
//! exhaust the master's file descriptors and memory for everyone else.
//!
//! A connection over the cap is not just closed, which its client could
//! only report as a broken connection. It goes to a server of its own that
//! answers every call with `RESOURCE_EXHAUSTED` and says why. Those
//! connections are capped as well ([`REFUSALS_AT_ONCE`]) and closed after
//! [`REFUSAL_DEADLINE`], so that they cannot become a way to exhaust the
//! master in turn. Any connection beyond both caps is closed at once.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tonic::transport::server::Connected;

/// Connections over the limit that are answered at once. A refused client
/// makes one or two calls, so a few dozen cover a crowd of them.
pub(crate) const REFUSALS_AT_ONCE: usize = 32;
/// How long a connection over the limit is served: long enough for a
/// client that has just connected to make its calls and read the answer.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// Calls a connection over the limit may have in flight at once.
pub(crate) const REFUSAL_CALLS: u32 = 4;

/// The master's connection slots, and the slots for answering the
/// connections that find none free.
#[derive(Clone)]
pub(crate) struct Limit {
    max: usize,
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

impl Limit {
    pub(crate) fn new(max_connections: usize) -> Limit {
        Limit {
            max: max_connections,
            slots: Arc::new(Semaphore::new(max_connections)),
            refusals: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
        }
    }

    /// Splits accepted connections into those that find a free slot and
    /// those to be answered by [`Refuse`]; any beyond both caps is closed.
    /// Each connection over the limit is logged.
    pub(crate) fn split<S, I>(
        &self,
        incoming: I,
    ) -> (
        impl Stream<Item = io::Result<Counted<S>>> + use<S, I>,
        impl Stream<Item = io::Result<Counted<S>>> + use<S, I>,
    )
    where
        I: Stream<Item = io::Result<S>>,
    {
        let (send_refused, refused) = mpsc::channel(REFUSALS_AT_ONCE);
        let limit = self.clone();
        let admitted = incoming.filter_map(move |accepted| {
            let stream = match accepted {
                Ok(stream) => stream,
                Err(err) => return Some(Err(err)),
            };
            if let Ok(slot) = limit.slots.clone().try_acquire_owned() {
                return Some(Ok(Counted::admitted(stream, slot)));
            }
            let max = limit.max;
            match limit.refusals.clone().try_acquire_owned() {
                // The channel holds at most as many as there are refusal
                // slots, so only a stopped refusal server drops one here.
                Ok(slot) => {
                    tracing::warn!(
                        limit = max,
                        "refused a connection: the master holds its limit of connections"
                    );
                    let _ = send_refused.try_send(Counted::refused(stream, slot));
                }
                Err(_) => tracing::warn!(
                    limit = max,
                    refusals = REFUSALS_AT_ONCE,
                    "closed a connection unanswered: the master holds its limit of connections \
                     and is answering as many refused ones as it will"
                ),
            }
            None
        });
        let refused = ReceiverStream::new(refused).map(Ok);
        (admitted, refused)
    }

    /// The service that answers the connections over the limit.
    pub(crate) fn refuse(&self) -> Refuse {
        let noun = if self.max == 1 {
            "connection"
        } else {
            "connections"
        };
        Refuse {
            message: format!(
                "the master holds its limit of {} {noun}; try again later",
                self.max
            ),
        }
    }
}

/// An accepted connection that holds one of the master's connection slots,
/// or one of its refusal slots, until it is dropped.
pub(crate) struct Counted<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
    /// For a refused connection, when it ends: from then on reads see the
    /// end of the stream and writes fail, so the server closes it whatever
    /// the client does, even in the middle of a TLS handshake.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Counted<S> {
    fn admitted(inner: S, slot: OwnedSemaphorePermit) -> Counted<S> {
        Counted {
            inner,
            _slot: slot,
            deadline: None,
        }
    }

    fn refused(inner: S, slot: OwnedSemaphorePermit) -> Counted<S> {
        Counted {
            inner,
            _slot: slot,
            deadline: Some(Box::pin(tokio::time::sleep(REFUSAL_DEADLINE))),
        }
    }

    /// Whether the deadline has passed; if not, the task is woken when it
    /// does.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }
}

fn past_deadline() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "a connection over the limit is served only briefly",
    )
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
        if self.expired(cx) {
            // Nothing read: the end of the stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(past_deadline()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(past_deadline()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(past_deadline()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Answers every call, whatever its service and method, with
/// `RESOURCE_EXHAUSTED` and a message that names the limit.
#[derive(Clone)]
pub(crate) struct Refuse {
    message: String,
}

impl<R> tower::Service<R> for Refuse {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: R) -> Self::Future {
        let status = Status::resource_exhausted(self.message.clone());
        std::future::ready(Ok(status.into_http()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_ends_at_its_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let limit = Limit::new(1);
        let (ours, _theirs) = tokio::io::duplex(64);
        let slot = limit.refusals.clone().try_acquire_owned().unwrap();
        let mut refused = Counted::refused(ours, slot);
        tokio::time::advance(REFUSAL_DEADLINE).await;
        let mut byte = [0u8; 1];
        assert_eq!(refused.read(&mut byte).await.unwrap(), 0);
        let write = refused.write_all(b"x").await.unwrap_err();
        assert_eq!(write.kind(), io::ErrorKind::TimedOut);
        drop(refused);
        assert_eq!(limit.refusals.available_permits(), REFUSALS_AT_ONCE);
    }

    #[tokio::test]
    async fn connections_past_both_caps_are_closed() {
        let limit = Limit::new(1);
        let total = 1 + REFUSALS_AT_ONCE + 5;
        let accepted = tokio_stream::iter((0..total).map(|_| Ok(tokio::io::duplex(64).0)));
        let (admitted, refused) = limit.split(accepted);
        let admitted: Vec<_> = admitted.collect().await;
        assert_eq!(admitted.len(), 1);
        // The admitted half is done, so the refused one ends too.
        let refused: Vec<_> = refused.collect().await;
        assert_eq!(refused.len(), REFUSALS_AT_ONCE);
        assert_eq!(
            limit.refuse().message,
            "the master holds its limit of 1 connection; try again later"
        );
        assert_eq!(
            Limit::new(2).refuse().message,
            "the master holds its limit of 2 connections; try again later"
        );
    }
}
