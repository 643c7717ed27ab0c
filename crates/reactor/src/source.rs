//! What the reactor registers: an object with a descriptor on Unix (`AsFd`), a socket on
//! Windows (`AsSocket`), reduced to the one raw handle the poller is given.

#[cfg(unix)]
pub(crate) use std::os::fd::RawFd as RawSource;
#[cfg(windows)]
pub(crate) use std::os::windows::io::RawSocket as RawSource;

/// An I/O object a [`Reactor`](crate::Reactor) can register: anything that implements
/// [`AsFd`](std::os::fd::AsFd) on Unix, or `std::os::windows::io::AsSocket` on
/// Windows (where the poller, IOCP through `polling`, waits on sockets only). Implemented for
/// those and nothing else (sealed).
pub trait Source: sealed::RawHandle {}

impl<T: sealed::RawHandle> Source for T {}

mod sealed {
    use super::RawSource;

    #[allow(
        unreachable_pub,
        reason = "the sealed supertrait of `Source`: public, but nameable only in this crate"
    )]
    pub trait RawHandle {
        /// The raw descriptor or socket, borrowed for as long as `self` lives.
        fn raw_source(&self) -> RawSource;
    }

    #[cfg(unix)]
    impl<T: std::os::fd::AsFd> RawHandle for T {
        fn raw_source(&self) -> RawSource {
            std::os::fd::AsRawFd::as_raw_fd(&self.as_fd())
        }
    }

    #[cfg(windows)]
    impl<T: std::os::windows::io::AsSocket> RawHandle for T {
        fn raw_source(&self) -> RawSource {
            std::os::windows::io::AsRawSocket::as_raw_socket(&self.as_socket())
        }
    }
}
