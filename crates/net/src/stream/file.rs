//! `send_file`: after any send in flight, the driver's zero-copy file send.

use std::io;

use super::Stream;

impl Stream {
    /// See `stream_methods!`.
    pub(crate) async fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        crate::coop::proceed().await;
        std::future::poll_fn(|cx| self.write.poll_settle(&self.socket, cx)).await;
        self.socket
            .send_file(file, offset, len, self.write.orphan_slot())
            .await
    }
}
