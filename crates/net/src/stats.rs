//! Counts of the I/O core's rarer paths, per thread (a runtime runs on one thread, so these are
//! its counts): multishot stream receives armed, paused for a reader that fell behind, and
//! re-armed after the kernel ended them; datagrams the ring sent or received at once, without an
//! operation in the kernel. For monitoring, and for tests that must show such a
//! path ran.

use std::cell::Cell;

/// A snapshot of [`io_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoStats {
    /// Multishot stream receives submitted (one per connection while it keeps up; a read that
    /// times out leaves its receive armed, so it adds none).
    pub receive_arms: u64,
    /// Multishot stream receives cancelled because their unread backlog was full (the data
    /// waited in the socket until the reader caught up).
    pub receive_pauses: u64,
    /// Multishot stream receives that ended without the stream ending (the pool ran dry, the
    /// kernel stopped them, or a pause) and were armed again.
    pub receive_rearms: u64,
    /// Of those, the ones the kernel ended because the provided ring ran dry (`ENOBUFS`).
    pub receive_dry: u64,
    /// Datagrams the ring received at once with a non-blocking `recvmsg(2)` (one was queued), so
    /// no receive went to the kernel and no completion was waited for.
    pub datagram_direct_receives: u64,
    /// Datagrams the ring sent at once with a non-blocking `sendmsg(2)` (the socket had room).
    pub datagram_direct_sends: u64,
    /// Stream sends the ring made with `SEND_ZC` (`Builder::send_zc_threshold`).
    pub zero_copy_sends: u64,
    /// Socket-to-socket splices (`splice_to`) that copied through the source's read state
    /// instead, because it held received bytes or had a receive armed (or the platform has no
    /// `splice(2)`): those bytes go first, so none is lost or reordered.
    pub splice_fallbacks: u64,
    /// Connections accepts returned (on either backend). On the ring a listener's multishot
    /// accept may hold more, taken from the kernel and queued for the next accepts.
    pub accepts: u64,
    /// Multishot accepts submitted (one per listener while it keeps up).
    pub accept_arms: u64,
    /// Multishot accepts cancelled to stop taking connections: the listener's queue was full,
    /// or a `Server` had no admission permit (the kernel's backlog holds the rest).
    pub accept_pauses: u64,
    /// Multishot datagram receives submitted (one per UDP socket while it keeps up).
    pub datagram_arms: u64,
    /// Multishot datagram receives that ended (their buffers ran dry, a pause, the kernel
    /// stopped them) and were armed again.
    pub datagram_rearms: u64,
    /// Of those, the ones the kernel ended because the datagram buffers ran dry (`ENOBUFS`).
    pub datagram_dry: u64,
}

#[derive(Clone, Copy)]
#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "counted on the ring")
)]
pub(crate) enum Count {
    Arm,
    Pause,
    Rearm,
    Dry,
    DirectReceive,
    DirectSend,
    ZeroCopySend,
    SpliceFallback,
    Accepted,
    AcceptArm,
    AcceptPause,
    DatagramArm,
    DatagramRearm,
    DatagramDry,
}

thread_local! {
    static STATS: Cell<IoStats> = const {
        Cell::new(IoStats {
            receive_arms: 0,
            receive_pauses: 0,
            receive_rearms: 0,
            receive_dry: 0,
            datagram_direct_receives: 0,
            datagram_direct_sends: 0,
            zero_copy_sends: 0,
            splice_fallbacks: 0,
            accepts: 0,
            accept_arms: 0,
            accept_pauses: 0,
            datagram_arms: 0,
            datagram_rearms: 0,
            datagram_dry: 0,
        })
    };
}

/// The counts of this thread (its runtime's) since the thread started.
pub fn io_stats() -> IoStats {
    STATS.with(Cell::get)
}

#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "counted on the ring")
)]
pub(crate) fn note(count: Count) {
    let _ = STATS.try_with(|stats| {
        let mut now = stats.get();
        let field = match count {
            Count::Arm => &mut now.receive_arms,
            Count::Pause => &mut now.receive_pauses,
            Count::Rearm => &mut now.receive_rearms,
            Count::Dry => &mut now.receive_dry,
            Count::DirectReceive => &mut now.datagram_direct_receives,
            Count::DirectSend => &mut now.datagram_direct_sends,
            Count::ZeroCopySend => &mut now.zero_copy_sends,
            Count::SpliceFallback => &mut now.splice_fallbacks,
            Count::Accepted => &mut now.accepts,
            Count::AcceptArm => &mut now.accept_arms,
            Count::AcceptPause => &mut now.accept_pauses,
            Count::DatagramArm => &mut now.datagram_arms,
            Count::DatagramRearm => &mut now.datagram_rearms,
            Count::DatagramDry => &mut now.datagram_dry,
        };
        *field += 1;
        stats.set(now);
    });
}
