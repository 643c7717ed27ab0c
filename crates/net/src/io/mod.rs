//! One read state machine and one write state machine per stream (see each module): every read
//! API and every write API of a stream goes through them, so any mix of owned, pooled and
//! poll-based calls keeps the byte stream in order.

pub(crate) mod datagram;
pub(crate) mod read;
pub(crate) mod write;
