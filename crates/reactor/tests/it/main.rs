//! Integration tests of `weir-reactor`: real sockets on a real poller, timers against a model.

mod sockets;
mod support;
mod timers;
