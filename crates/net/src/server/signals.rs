//! SIGTERM and SIGINT as a shutdown trigger: blocked in the process's threads and received by a
//! dedicated thread with `sigwait(3)`.

use std::io;

use weir_shutdown::Token;

/// The thread that waits for the signals; it ends when one arrives (or stays parked for the
/// process's life otherwise, which costs nothing).
#[derive(Debug)]
pub(crate) struct SignalThread {
    _thread: std::thread::JoinHandle<()>,
}

/// Blocks SIGTERM and SIGINT in the calling thread (threads it starts later inherit that) and
/// starts the thread that waits for them and cancels `token`.
pub(crate) fn spawn(token: Token) -> io::Result<SignalThread> {
    crate::sys::block_shutdown_signals()?;
    let thread = std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            loop {
                let Some(name) = crate::sys::wait_shutdown_signal() else {
                    continue; // an interrupted wait: wait again
                };
                token.cancel_with(name);
                crate::event!(INFO, "weir server: {name} received, shutting down");
                return;
            }
        })?;
    Ok(SignalThread { _thread: thread })
}
