//! Compatibility with tokio's and hyper's I/O traits (features `tokio` and `hyper`): code
//! written against them — hyper's HTTP server and client, tokio-util codecs — runs on Weir's
//! streams, on either backend.
//!
//! The traits are poll-based. On the reactor a poll reads or writes when the socket is ready;
//! on the ring each stream keeps one receive and one send in flight and copies bytes between
//! them and the caller's buffer (the owned-buffer methods avoid that copy). Read timeouts set by
//! a [`Server`](crate::server::Server) apply to the owned-buffer reads only.
//!
//! Cancel safety: a stream dropped with a receive in flight loses nothing it owes anyone (the
//! bytes were never returned); a send in flight when `poll_write` last returned `Pending`
//! completes or is cancelled with the stream, as the traits allow.

/// Implements tokio's `AsyncRead`/`AsyncWrite` and hyper's `rt::Read`/`rt::Write` for a stream
/// type holding a `Stream` in a field `inner`.
macro_rules! compat_impls {
    ($ty:ident) => {
        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                // SAFETY: the stream only writes into the unfilled part, never de-initialises.
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = std::task::ready!(this.inner.poll_read(cx, unfilled))?;
                // SAFETY: `poll_read` initialised the first `n` bytes of the unfilled part.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut().inner.poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().inner.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().inner.poll_shutdown(cx)
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Read for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                // SAFETY: the stream only writes into the cursor's space, never de-initialises.
                let space = unsafe { buf.as_mut() };
                let n = std::task::ready!(this.inner.poll_read(cx, space))?;
                // SAFETY: `poll_read` initialised the first `n` bytes of that space.
                unsafe { buf.advance(n) };
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Write for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut().inner.poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().inner.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().inner.poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use compat_impls;
