//! Reads into the runtime's buffer pool. The first pooled read arms the driver's pooled receive
//! (see `driver::PooledRecv`); from then on every read of the stream takes from it.

use std::io;

use weir_bufpool::Buf;

use super::Stream;
use crate::io::read::Settled;

impl Stream {
    /// See `stream_methods!`. Cancel-safe: nothing is taken from the read state before the
    /// last await.
    pub(crate) async fn read_pooled(&mut self) -> io::Result<Option<Buf>> {
        crate::coop::proceed().await;
        let (pool, provided) = crate::runtime::pooled()?;
        loop {
            let settled = std::future::poll_fn(|cx| self.read.poll_settle(&self.socket, cx)).await;
            if let Settled::Idle = settled {
                self.read
                    .arm_pooled(self.socket.pooled_recv(&pool, &provided));
                continue;
            }
            if let Some(buf) = self.read.take_pool_buffer() {
                return buf.map(Some);
            }
            if self.read.holds_an_ending() {
                let mut none = Vec::new();
                return self.read.take_into(&mut none).map(|_| None);
            }
            // Held bytes that are not a whole pool buffer: copy them into one.
            let mut buf = pool.get().await;
            let n = self.read.take_into(&mut buf)?;
            if n > 0 {
                return Ok(Some(buf));
            }
        }
    }
}
