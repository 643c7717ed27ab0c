//! `splice_to`: socket to socket through a pipe the source stream keeps, after the destination's
//! send in flight; a copy through the read state when that state has bytes of its own.

use std::io;

use super::Stream;
use crate::driver::SplicePipe;
use crate::stats::{self, Count};

/// The most a copying `splice_to` reads at once.
const COPY_CHUNK: usize = 64 * 1024;

impl Stream {
    /// See `TcpStream::splice_to`.
    pub(crate) async fn splice_to(&mut self, to: &mut Stream, len: usize) -> io::Result<usize> {
        crate::coop::proceed().await;
        std::future::poll_fn(|cx| to.write.poll_settle(&to.socket, cx)).await;
        if len == 0 {
            return Ok(0);
        }
        // Held bytes or an armed receive come before what waits in the socket, and a splice
        // must not race the receive: copy through the read state. Bytes a dropped splice left
        // in the pipe came out of the socket before anything the read state took since, except
        // that a read after that drop may already have armed a receive: the pipe goes first.
        let pipe_waiting = match &self.splice_pipe {
            Some(pipe) => pipe.len()? > 0,
            None => false,
        };
        if !pipe_waiting && (!self.read.is_idle() || !self.socket.can_splice_to(&to.socket)) {
            stats::note(Count::SpliceFallback);
            return self.copy_to(to, len).await;
        }
        let pipe = match &mut self.splice_pipe {
            Some(pipe) => pipe,
            None => self.splice_pipe.insert(SplicePipe::new()?),
        };
        self.socket
            .splice_to(pipe, &to.socket, len, to.write.orphan_slot())
            .await
    }

    /// One read of up to `len` bytes through the read state, then all of them written.
    async fn copy_to(&mut self, to: &mut Stream, len: usize) -> io::Result<usize> {
        let buf = Vec::with_capacity(len.min(COPY_CHUNK));
        let (result, buf) = self.read(buf).await;
        let n = result?;
        if n == 0 {
            return Ok(0);
        }
        to.write_all(buf).await.0.map(|()| n)
    }
}
