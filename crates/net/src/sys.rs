//! Every raw system call weir-net makes outside the backend crates, behind one [`syscall!`]
//! helper: the non-blocking socket calls of the readiness driver (through `socket2` where it has
//! them), `sendfile(2)`, `pipe2(2)` and the server's signal mask. Descriptors become `OwnedFd`s
//! at once.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{MaybeUninitSlice, SockAddr, SockRef};

#[cfg_attr(
    not(target_os = "linux"),
    allow(unused_macros, reason = "the Linux-only calls use it")
)]
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
