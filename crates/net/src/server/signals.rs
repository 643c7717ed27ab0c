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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use weir_shutdown::Token;

/// The pipe's write end, for the handler (`-1`: no handler installed).
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
    /// While installed: the previous SIGTERM and SIGINT actions.
    installed: Option<Installed>,
}

struct Installed {
    previous: [libc::sigaction; 2],
}

// SAFETY: `libc::sigaction` is plain data (a handler address, flags and a mask); it is only
// handed back to the kernel.
unsafe impl Send for Installed {}

const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

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
        registry.installed = Some(install()?);
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
            if let Some(installed) = registry.installed.take() {
                restore(&installed);
            }
        }
    }
}

/// The handler: async-signal-safe, it only writes one byte (and keeps `errno`).
extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let saved = io::Error::last_os_error().raw_os_error();
    let byte = u8::try_from(signal).unwrap_or(0);
    // SAFETY: `fd` is the pipe's write end, open for the process's life; one byte from a
    // local. A full pipe (EAGAIN, non-blocking) drops the byte: signals are already pending.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    if let Some(errno) = saved {
        set_errno(errno);
    }
}

/// Restores the calling thread's `errno` (for the code a handler interrupted).
fn set_errno(errno: libc::c_int) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: the calling thread's errno location, valid for the thread's life.
    unsafe {
        *libc::__errno_location() = errno;
    }
    #[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "ios"))]
    // SAFETY: as above (these systems name it `__error`).
    unsafe {
        *libc::__error() = errno;
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "macos",
        target_os = "ios"
    )))]
    let _ = errno;
}

/// Creates the pipe and its reader thread (once per process) and installs the handler.
fn install() -> io::Result<Installed> {
    if WAKE_FD.load(Ordering::Acquire) < 0 {
        let (read, write) = pipe()?;
        std::thread::Builder::new()
            .name("weir-signals".into())
            .spawn(move || deliver(read))?;
        // The write end stays open for the process's life: a late signal must never write to
        // a reused descriptor number.
        WAKE_FD.store(
            std::mem::ManuallyDrop::new(write).as_raw_fd(),
            Ordering::Release,
        );
    }
    let mut previous = [empty_action(), empty_action()];
    for (signal, previous) in SIGNALS.into_iter().zip(&mut previous) {
        let mut action = empty_action();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: valid action and out-pointer; the handler is async-signal-safe.
        if unsafe { libc::sigaction(signal, &action, previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(Installed { previous })
}

fn restore(installed: &Installed) {
    for (signal, previous) in SIGNALS.into_iter().zip(&installed.previous) {
        // SAFETY: an action the kernel gave us for this signal.
        unsafe { libc::sigaction(signal, previous, std::ptr::null_mut()) };
    }
}

fn empty_action() -> libc::sigaction {
    // SAFETY: all-zero is a valid `sigaction` (no handler, no flags, an empty mask).
    unsafe { std::mem::zeroed() }
}

/// A pipe, close-on-exec, the write end non-blocking (the handler must never block).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe returned two fresh descriptors, owned from here on.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for (fd, status) in [(&read, 0), (&write, libc::O_NONBLOCK)] {
        // SAFETY: F_SETFD and F_SETFL on descriptors we own.
        let failed = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0
            // SAFETY: as above.
            || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, status) } != 0;
        if failed {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((read, write))
}

/// The reader thread: each signal starts the registered servers' shutdown, or forces it.
fn deliver(read: OwnedFd) {
    loop {
        let mut byte = 0u8;
        // SAFETY: one byte into a local, from the pipe's read end, which this thread owns.
        let n = unsafe { libc::read(read.as_raw_fd(), (&raw mut byte).cast(), 1) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            crate::event!(
                ERROR,
                "weir server: the signal pipe failed; signals are ignored"
            );
            return;
        }
        let name = if i32::from(byte) == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
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
}
