//! SIGTERM and SIGINT as a shutdown trigger: blocked in the process's threads and received by a
//! dedicated thread with `sigwait(3)`.

use std::io::{self, Write};

use weir_shutdown::Token;

/// The thread that waits for the signals; it ends when one arrives (or stays parked for the
/// process's life otherwise, which costs nothing).
#[derive(Debug)]
pub(crate) struct SignalThread {
    _thread: std::thread::JoinHandle<()>,
}

fn shutdown_signals() -> libc::sigset_t {
    // SAFETY: `set` is initialised by sigemptyset before use; the calls only write into it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&mut set, libc::SIGTERM) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&mut set, libc::SIGINT) };
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread (threads it starts later inherit that) and
/// starts the thread that waits for them and cancels `token`.
pub(crate) fn spawn(token: Token) -> io::Result<SignalThread> {
    let set = shutdown_signals();
    // SAFETY: a valid signal set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let thread = std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            let set = shutdown_signals();
            loop {
                let mut received = 0;
                // SAFETY: a valid set and out-pointer; the signals are blocked, so sigwait gets
                // them.
                let rc = unsafe { libc::sigwait(&set, &mut received) };
                if rc != 0 {
                    continue; // an interrupted wait: wait again
                }
                let name = if received == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                token.cancel_with(name);
                // Never panic on a closed stderr: the shutdown matters more than the log line.
                let _ = writeln!(
                    std::io::stderr(),
                    "weir server: {name} received, shutting down"
                );
                return;
            }
        })?;
    Ok(SignalThread { _thread: thread })
}
