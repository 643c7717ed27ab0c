//! SIGTERM and SIGINT as a shutdown trigger, for every [`Server`](super::Server) of the process.
//!
//! While at least one server handles signals, a process-wide handler (`sigaction`) catches both
//! signals on whichever thread the kernel picks — threads started before the server included,
//! so no thread takes the default action and kills the process mid-drain. The handler only
//! writes the signal's number to a pipe (async-signal-safe); a thread reads the pipe and tells
//! every registered server: the first signal starts each one's graceful shutdown, a second one
//! during the drain forces it (the handlers still running are closed at once). When the last
//! server is done, the previous dispositions come back (by default: the signal ends the
//! process).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use weir_shutdown::Token;

use crate::sys;

/// The pipe's write end, for the handler (`-1`: no pipe yet).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The servers that handle signals, and what the handler replaced.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    servers: Vec::new(),
    next_id: 0,
    installed: None,
});

struct Registry {
    /// Each server's id, graceful token and force token.
    servers: Vec<(u64, Token, Token)>,
    next_id: u64,
    /// While the handler is installed: the actions it replaced.
    installed: Option<sys::SignalActions>,
}

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A server's place in the registry; dropping it removes the server (and, for the last one,
/// restores the previous signal dispositions).
#[derive(Debug)]
pub(crate) struct Registration {
    id: u64,
}

/// Registers a server: SIGTERM/SIGINT cancel `graceful`, and a second one `force`.
pub(crate) fn register(graceful: Token, force: Token) -> io::Result<Registration> {
    let mut registry = registry();
    if registry.installed.is_none() {
        start_reader()?;
        registry.installed = Some(sys::catch_shutdown_signals(on_signal)?);
    }
    let id = registry.next_id;
    registry.next_id += 1;
    registry.servers.push((id, graceful, force));
    Ok(Registration { id })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = registry();
        registry.servers.retain(|(id, ..)| *id != self.id);
        if registry.servers.is_empty() {
            if let Some(previous) = registry.installed.take() {
                sys::restore_signal_actions(&previous);
            }
        }
    }
}

/// The handler: one byte to the pipe, nothing else (async-signal-safe).
extern "C" fn on_signal(signal: std::ffi::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        sys::write_from_handler(fd, signal);
    }
}

/// Creates the pipe and its reader thread, once per process (called under the registry lock).
fn start_reader() -> io::Result<()> {
    if WAKE_FD.load(Ordering::Acquire) >= 0 {
        return Ok(());
    }
    let (read, write) = sys::signal_pipe()?;
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || deliver(read))?;
    // The write end stays open for the process's life: a late signal must never write to a
    // reused descriptor number.
    let write = std::mem::ManuallyDrop::new(write);
    WAKE_FD.store(write.as_raw_fd(), Ordering::Release);
    Ok(())
}

/// The reader thread: each signal starts the registered servers' shutdown, or forces it.
fn deliver(read: OwnedFd) {
    while let Some(name) = sys::read_signal(read.as_fd()) {
        let registry = registry();
        for (_, graceful, force) in &registry.servers {
            if graceful.is_cancelled() {
                crate::event!(
                    WARN,
                    "weir server: {name} received again, closing the remaining connections"
                );
                force.cancel_with(name);
            } else {
                crate::event!(INFO, "weir server: {name} received, shutting down");
                graceful.cancel_with(name);
            }
        }
    }
    crate::event!(
        ERROR,
        "weir server: the signal pipe failed; signals no longer reach the servers"
    );
}
