//! Every raw system call weir-net makes outside the backend crates, behind one [`syscall!`]
//! helper: the non-blocking socket calls of the readiness driver (through `socket2` where it has
//! them), `sendfile(2)`, `splice(2)`, `pipe2(2)` and the server's signal handler. Descriptors become `OwnedFd`s
//! at once.
//!
//! A socket is an [`OwnedSock`]: an `OwnedFd` on Unix, an `OwnedSocket` on Windows (where only
//! the socket calls exist: no `sendfile`, no signal mask, no Unix sockets).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
#[cfg(unix)]
use std::os::fd::BorrowedFd;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[cfg(unix)]
pub(crate) use std::os::fd::{AsFd as AsSock, BorrowedFd as BorrowedSock, OwnedFd as OwnedSock};
#[cfg(windows)]
pub(crate) use std::os::windows::io::{
    AsSocket as AsSock, BorrowedSocket as BorrowedSock, OwnedSocket as OwnedSock,
};

use socket2::{MaybeUninitSlice, SockAddr, SockRef};

/// Calls a `libc` function that returns `-1` and sets `errno` on failure; evaluates to the
/// result or the `io::Error`.
#[cfg_attr(windows, allow(unused_macros, reason = "the Unix-only calls use it"))]
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

/// The error of an operation the kernel cancelled (only the ring cancels operations).
#[cfg(unix)]
pub(crate) const ECANCELED: i32 = libc::ECANCELED;
/// The error of an operation the kernel cancelled: none on Windows (no ring) — a value no
/// Winsock error has.
#[cfg(windows)]
pub(crate) const ECANCELED: i32 = i32::MIN;

/// The `accept(2)` errors a server tells apart: (error, name, whether the process or system is
/// out of a resource — back off — rather than one connection failing before it was accepted).
#[cfg(unix)]
pub(crate) const ACCEPT_ERRORS: &[(i32, &str, bool)] = &[
    (libc::EMFILE, "EMFILE", true),
    (libc::ENFILE, "ENFILE", true),
    (libc::ENOBUFS, "ENOBUFS", true),
    (libc::ENOMEM, "ENOMEM", true),
    (libc::ECONNABORTED, "ECONNABORTED", false),
    (libc::ECONNRESET, "ECONNRESET", false),
    (libc::EPERM, "EPERM", false),
    (libc::EPROTO, "EPROTO", false),
];
/// The `accept` errors a server tells apart on Windows (Winsock codes; `libc` has only the C
/// runtime's `errno` values there).
#[cfg(windows)]
pub(crate) const ACCEPT_ERRORS: &[(i32, &str, bool)] = &[
    (10024, "WSAEMFILE", true),
    (10055, "WSAENOBUFS", true),
    (10053, "WSAECONNABORTED", false),
    (10054, "WSAECONNRESET", false),
];

/// Borrows a socket (`as_fd` on Unix, `as_socket` on Windows).
pub(crate) fn borrow(sock: &impl AsSock) -> BorrowedSock<'_> {
    #[cfg(unix)]
    let borrowed = sock.as_fd();
    #[cfg(windows)]
    let borrowed = sock.as_socket();
    borrowed
}

/// `send(2)` flags: never raise `SIGPIPE` on a closed connection.
#[cfg(unix)]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
/// `send` flags on Windows: there is no `SIGPIPE` to suppress.
#[cfg(windows)]
const SEND_FLAGS: libc::c_int = 0;

/// Datagram flags: never raise `SIGPIPE`, and never wait, even on a blocking socket (the ring's
/// sockets are blocking; it tries a datagram call at once and waits in the kernel only on
/// `EAGAIN`).
#[cfg(unix)]
const DATAGRAM_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
/// Datagram flags on Windows: none (no `SIGPIPE`; the reactor's sockets are non-blocking, and
/// there is no ring).
#[cfg(windows)]
const DATAGRAM_FLAGS: libc::c_int = 0;

/// `recvmsg(2)` flags for datagrams: never wait (see [`DATAGRAM_FLAGS`]).
#[cfg(unix)]
const RECV_DATAGRAM_FLAGS: libc::c_int = libc::MSG_DONTWAIT;
/// `recvmsg` flags on Windows: none, as [`DATAGRAM_FLAGS`].
#[cfg(windows)]
const RECV_DATAGRAM_FLAGS: libc::c_int = 0;

/// Whether a non-blocking `connect` is under way rather than failed: TCP says `EINPROGRESS`
/// (`WSAEWOULDBLOCK` on Windows); a Unix socket with a full backlog says `EAGAIN`.
pub(crate) fn connect_in_progress(error: &io::Error) -> bool {
    #[cfg(unix)]
    let in_progress = matches!(error.raw_os_error(), Some(libc::EINPROGRESS | libc::EAGAIN));
    #[cfg(windows)]
    let in_progress = error.kind() == io::ErrorKind::WouldBlock;
    in_progress
}

/// `recv(2)` into `spare`; returns how many bytes arrived (0: the end of the stream).
pub(crate) fn recv(fd: BorrowedSock<'_>, spare: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    SockRef::from(&fd).recv(spare)
}

/// `send(2)` of `bytes`.
pub(crate) fn send(fd: BorrowedSock<'_>, bytes: &[u8]) -> io::Result<usize> {
    SockRef::from(&fd).send_with_flags(bytes, SEND_FLAGS)
}

/// `sendmsg(2)` of several buffers in order.
pub(crate) fn send_vectored(fd: BorrowedSock<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    SockRef::from(&fd).send_vectored_with_flags(bufs, SEND_FLAGS)
}

/// `sendto(2)`: one datagram to `to`, or to the connected peer; `EAGAIN` rather than waiting.
pub(crate) fn send_to(
    fd: BorrowedSock<'_>,
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
    fd: BorrowedSock<'_>,
    spare: &mut [MaybeUninit<u8>],
) -> io::Result<(usize, SockAddr, bool)> {
    let mut bufs = [MaybeUninitSlice::new(spare)];
    let (n, flags, from) =
        SockRef::from(&fd).recv_from_vectored_with_flags(&mut bufs, RECV_DATAGRAM_FLAGS)?;
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
    socket: BorrowedSock<'_>,
    file: BorrowedSock<'_>,
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
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) fn sendfile(
    socket: BorrowedSock<'_>,
    file: BorrowedSock<'_>,
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
pub(crate) fn splice(_: BorrowedSock<'_>, _: BorrowedSock<'_>, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// How many bytes wait in the pipe `fd` (`ioctl(FIONREAD)`).
#[cfg(unix)]
pub(crate) fn pipe_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut len: libc::c_int = 0;
    // SAFETY: FIONREAD writes one `c_int` through the pointer, to a local that outlives the call.
    syscall!(ioctl(fd.as_raw_fd(), libc::FIONREAD, &raw mut len))?;
    Ok(usize::try_from(len).unwrap_or(0))
}

/// No pipes for splices on Windows (`SplicePipe::new` refuses), so none holds bytes.
#[cfg(windows)]
pub(crate) fn pipe_len(_: BorrowedSock<'_>) -> io::Result<usize> {
    Ok(0)
}

/// SIGTERM and SIGINT, the signals that start a server's graceful shutdown, with their names.
#[cfg(unix)]
pub(crate) const SHUTDOWN_SIGNALS: [(libc::c_int, &str); 2] =
    [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];

/// The actions SIGTERM and SIGINT had before [`catch_shutdown_signals`].
#[cfg(unix)]
pub(crate) struct SignalActions([libc::sigaction; 2]);

#[cfg(unix)]
// SAFETY: `libc::sigaction` is plain data (a handler address, flags and a mask); it is only
// handed back to the kernel.
unsafe impl Send for SignalActions {}

/// Installs `handler` for SIGTERM and SIGINT (process-wide, `SA_RESTART`); returns what they had.
#[cfg(unix)]
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
#[cfg(unix)]
pub(crate) fn restore_signal_actions(actions: &SignalActions) {
    for ((signal, _), previous) in SHUTDOWN_SIGNALS.into_iter().zip(&actions.0) {
        // SAFETY: an action the kernel gave us for this signal; a failure leaves ours, which
        // only writes to a pipe nobody reads once no server is registered.
        let _ = syscall!(sigaction(signal, previous, std::ptr::null_mut()));
    }
}

/// A pipe for a signal handler: both ends close-on-exec, the write end non-blocking (a handler
/// must never block).
#[cfg(unix)]
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
#[cfg(unix)]
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
#[cfg(unix)]
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
#[cfg(unix)]
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
