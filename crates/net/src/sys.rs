//! Every raw system call weir-net makes outside the backend crates, behind one [`syscall!`]
//! helper: the non-blocking socket calls of the readiness driver (through `socket2` where it has
//! them), `sendfile(2)`, `splice(2)`, `pipe2(2)` and the server's signal handler. Descriptors become `OwnedFd`s
//! at once.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{MaybeUninitSlice, SockAddr, SockRef};

/// Calls a `libc` function that returns `-1` and sets `errno` on failure; evaluates to the
/// result or the `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller's `unsafe` block states why the arguments are valid for `$fn`.
        let result = unsafe { libc::$fn($($arg),*) };
        if result == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(result)
        }
    }};
}

/// The error of an operation the kernel cancelled.
pub(crate) const ECANCELED: i32 = libc::ECANCELED;

/// `send(2)` flags: never raise `SIGPIPE` on a closed connection.
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Datagram flags: never raise `SIGPIPE`, and never wait, even on a blocking socket (the ring's
/// sockets are blocking; it tries a datagram call at once and waits in the kernel only on
/// `EAGAIN`).
const DATAGRAM_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;

/// `recv(2)` into `spare`; returns how many bytes arrived (0: the end of the stream).
pub(crate) fn recv(fd: BorrowedFd<'_>, spare: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    SockRef::from(&fd).recv(spare)
}

/// `send(2)` of `bytes`.
pub(crate) fn send(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    SockRef::from(&fd).send_with_flags(bytes, SEND_FLAGS)
}

/// `sendmsg(2)` of several buffers in order.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    SockRef::from(&fd).send_vectored_with_flags(bufs, SEND_FLAGS)
}

/// `sendto(2)`: one datagram to `to`, or to the connected peer; `EAGAIN` rather than waiting.
pub(crate) fn send_to(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    to: Option<&SockAddr>,
) -> io::Result<usize> {
    let socket = SockRef::from(&fd);
    match to {
        Some(to) => socket.send_to_with_flags(bytes, to, DATAGRAM_FLAGS),
        None => socket.send_with_flags(bytes, DATAGRAM_FLAGS),
    }
}

/// `recvmsg(2)` of one datagram into `spare`: its length, its sender, and whether it was cut to
/// fit (`MSG_TRUNC`); `EAGAIN` rather than waiting.
pub(crate) fn recv_msg(
    fd: BorrowedFd<'_>,
    spare: &mut [MaybeUninit<u8>],
) -> io::Result<(usize, SockAddr, bool)> {
    let mut bufs = [MaybeUninitSlice::new(spare)];
    let (n, flags, from) =
        SockRef::from(&fd).recv_from_vectored_with_flags(&mut bufs, libc::MSG_DONTWAIT)?;
    Ok((n, from, flags.is_truncated()))
}

/// A pipe, both ends close-on-exec: (read end, write end).
#[cfg(target_os = "linux")]
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0; 2];
    // SAFETY: `pipe2` writes two descriptors into `ends`, which lives across the call.
    syscall!(pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: `pipe2` succeeded: both descriptors are new and ours alone.
    let read_end = unsafe { OwnedFd::from_raw_fd(ends[0]) };
    // SAFETY: as above.
    let write_end = unsafe { OwnedFd::from_raw_fd(ends[1]) };
    Ok((read_end, write_end))
}

/// `sendfile(2)`: up to `len` bytes of `file` from `*offset` to `socket`, advancing `offset`.
#[cfg(target_os = "linux")]
pub(crate) fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    let mut at: libc::off_t = *offset;
    // SAFETY: both descriptors are open for the call; `at` lives across it.
    let sent = syscall!(sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut at, len))?;
    *offset = at;
    Ok(sent as usize)
}

/// `sendfile(2)` where its signature differs by platform: `pread(2)` a chunk into `scratch`,
/// then `send(2)` what fits; `offset` advances by what was sent.
#[cfg(not(target_os = "linux"))]
pub(crate) fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut chunk = vec![0; len.min(64 * 1024)];
    let at = u64::try_from(*offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let file = std::fs::File::from(file.try_clone_to_owned()?);
    let got = file.read_at(&mut chunk, at)?;
    if got == 0 {
        return Ok(0);
    }
    let sent = send(socket, &chunk[..got])?;
    *offset += sent as i64;
    Ok(sent)
}

/// [`splice(2)`](https://man7.org/linux/man-pages/man2/splice.2.html): moves up to `len` bytes
/// from `from` to `to` inside the kernel (one of them a pipe), never waiting
/// (`SPLICE_F_NONBLOCK`; the socket is non-blocking too); `EAGAIN` rather than waiting.
#[cfg(target_os = "linux")]
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: both descriptors are open for the call; null offsets mean "the current position"
    // (required for pipes and sockets).
    let moved = syscall!(splice(
        from.as_raw_fd(),
        std::ptr::null_mut(),
        to.as_raw_fd(),
        std::ptr::null_mut(),
        len,
        flags
    ))?;
    Ok(moved as usize)
}

/// `splice(2)` exists only on Linux; elsewhere socket-to-socket splices copy through user space
/// instead (`Socket::can_splice_to` says so), and this is never reached.
#[cfg(not(target_os = "linux"))]
pub(crate) fn splice(_: BorrowedFd<'_>, _: BorrowedFd<'_>, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// How many bytes wait in the pipe `fd` (`ioctl(FIONREAD)`).
pub(crate) fn pipe_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut len: libc::c_int = 0;
    // SAFETY: FIONREAD writes one `c_int` through the pointer, to a local that outlives the call.
    syscall!(ioctl(fd.as_raw_fd(), libc::FIONREAD, &raw mut len))?;
    Ok(usize::try_from(len).unwrap_or(0))
}

/// SIGTERM and SIGINT, the signals that start a server's graceful shutdown, with their names.
pub(crate) const SHUTDOWN_SIGNALS: [(libc::c_int, &str); 2] =
    [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];

/// The actions SIGTERM and SIGINT had before [`catch_shutdown_signals`].
pub(crate) struct SignalActions([libc::sigaction; 2]);

// SAFETY: `libc::sigaction` is plain data (a handler address, flags and a mask); it is only
// handed back to the kernel.
unsafe impl Send for SignalActions {}

/// Installs `handler` for SIGTERM and SIGINT (process-wide, `SA_RESTART`); returns what they had.
pub(crate) fn catch_shutdown_signals(
    handler: extern "C" fn(libc::c_int),
) -> io::Result<SignalActions> {
    // SAFETY: all-zero is a valid `sigaction` (no handler, no flags, an empty mask).
    let mut previous: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };
    for ((signal, _), previous) in SHUTDOWN_SIGNALS.into_iter().zip(&mut previous) {
        // SAFETY: as above.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: a valid action and out-pointer; the caller's handler is async-signal-safe.
        syscall!(sigaction(signal, &action, previous))?;
    }
    Ok(SignalActions(previous))
}

/// Puts back the actions [`catch_shutdown_signals`] replaced.
pub(crate) fn restore_signal_actions(actions: &SignalActions) {
    for ((signal, _), previous) in SHUTDOWN_SIGNALS.into_iter().zip(&actions.0) {
        // SAFETY: an action the kernel gave us for this signal; a failure leaves ours, which
        // only writes to a pipe nobody reads once no server is registered.
        let _ = syscall!(sigaction(signal, previous, std::ptr::null_mut()));
    }
}

/// A pipe for a signal handler: both ends close-on-exec, the write end non-blocking (a handler
/// must never block).
pub(crate) fn signal_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0; 2];
    // SAFETY: `pipe` writes two descriptors into `ends`, which lives across the call.
    syscall!(pipe(ends.as_mut_ptr()))?;
    // SAFETY: `pipe` succeeded: both descriptors are new and ours alone.
    let read = unsafe { OwnedFd::from_raw_fd(ends[0]) };
    // SAFETY: as above.
    let write = unsafe { OwnedFd::from_raw_fd(ends[1]) };
    for (fd, status) in [(&read, 0), (&write, libc::O_NONBLOCK)] {
        // SAFETY: F_SETFD on a descriptor we own.
        syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC))?;
        // SAFETY: F_SETFL on a descriptor we own.
        syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, status))?;
    }
    Ok((read, write))
}

/// From a signal handler: writes `signal` as one byte to `fd` and keeps the interrupted code's
/// `errno`. Async-signal-safe. A full pipe drops the byte (a signal is already pending).
pub(crate) fn write_from_handler(fd: std::os::fd::RawFd, signal: libc::c_int) {
    let saved = io::Error::last_os_error().raw_os_error();
    let byte = u8::try_from(signal).unwrap_or(0);
    // SAFETY: `fd` is a pipe's write end kept open for the process's life; one byte from a
    // local.
    let _ = syscall!(write(fd, (&raw const byte).cast(), 1));
    if let Some(errno) = saved {
        set_errno(errno);
    }
}

/// Sets the calling thread's `errno`.
fn set_errno(errno: libc::c_int) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: no preconditions; it returns the calling thread's errno location.
    let location = unsafe { libc::__errno_location() };
    #[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "ios"))]
    // SAFETY: as above (these systems name it `__error`).
    let location = unsafe { libc::__error() };
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "macos",
        target_os = "ios"
    ))]
    // SAFETY: the thread's errno, valid and only this thread's for the thread's life.
    unsafe {
        *location = errno;
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

/// Waits for the next signal a handler wrote to the pipe `fd` with [`write_from_handler`]: its
/// name, or `None` once the pipe failed or closed.
pub(crate) fn read_signal(fd: BorrowedFd<'_>) -> Option<&'static str> {
    loop {
        let mut byte = 0u8;
        // SAFETY: one byte into a local.
        match syscall!(read(fd.as_raw_fd(), (&raw mut byte).cast(), 1)) {
            Ok(1) => {
                let signal = libc::c_int::from(byte);
                let name = SHUTDOWN_SIGNALS.iter().find(|(s, _)| *s == signal);
                return Some(name.map_or("a shutdown signal", |(_, name)| name));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
}
