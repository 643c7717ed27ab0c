//! Provided buffer rings (`IORING_REGISTER_PBUF_RING`): memory the kernel picks receive
//! buffers from, so an idle connection holds no buffer at all.
//!
//! # Layout
//!
//! ```text
//!  ring memory (page-aligned, `entries` × 16 bytes, shared with the kernel):
//!  ┌──────────────────────────┬──────────────────────────┬─────┐
//!  │ addr:u64 len:u32 bid:u16 │ addr len bid             │ ... │
//!  │ (tail:u16 overlays the   │                          │     │
//!  │  first entry's last 2 B) │                          │     │
//!  └──────────────────────────┴──────────────────────────┴─────┘
//! ```
//!
//! Weir writes entries at `tail` and publishes the new tail with a release store; the kernel
//! consumes from its head and reports the chosen buffer id in each CQE. The buffers themselves
//! come from a [`BufferSource`] (in `weir-net`, the buffer pool); this crate does not depend on
//! any pool.

use crate::sync::unmodelled::{Arc, AtomicU16, AtomicU64, Ordering, Weak};
use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, types};

use crate::lifecycle::Cqe;
use crate::op::MultiOp;
use crate::ops::SharedFd;
use crate::ring::{Ring, Shared};
use crate::sync::{Mutex, lock};

/// Memory the kernel may fill with received data.
///
/// # Safety
///
/// For every id below `buffer_count`, `buffer_ptr(id)` must point to `buffer_len` writable
/// bytes that stay valid and unmoved for as long as the source lives, and that nothing else
/// reads or writes while the buffer is in the ring (between `register`/recycling and the CQE
/// that reports it).
pub unsafe trait BufferSource: Send + Sync + 'static {
    /// How many buffers (ids `0..count`).
    fn buffer_count(&self) -> u16;
    /// Bytes in each buffer.
    fn buffer_len(&self) -> u32;
    /// The address of buffer `id`.
    fn buffer_ptr(&self, id: u16) -> NonNull<u8>;
    /// Buffer `id` was still in the ring when it was unregistered: the kernel is done with it
    /// and it is the source's again (a pool takes it back). The default does nothing.
    fn reclaim(&self, id: u16) {
        let _ = id;
    }
}

/// A registered provided-buffer ring (one buffer group). Clones share it.
///
/// A `BufRing` holds its [`Ring`]; the group itself (what a receive in flight keeps alive in
/// the op table) holds the ring only weakly, so a ring dropped with such a receive in flight is
/// not kept alive by it (op data → group → ring → op table would be a cycle).
#[derive(Clone)]
pub struct BufRing {
    ring: Ring,
    inner: Arc<Inner>,
}

struct Inner {
    /// Weak: see [`BufRing`]. Used only to unregister the group when it is dropped.
    ring: Weak<Shared>,
    group: u16,
    entries: u16,
    memory: NonNull<BufRingEntry>,
    layout: Layout,
    /// Weir's tail (entries written; published to the kernel after each write), which ids are
    /// in the ring, and how many provided buffers it counts.
    tail: Mutex<Tail>,
    source: Box<dyn BufferSource>,
    recycled: AtomicU64,
}

struct Tail {
    value: u16,
    in_ring: Vec<bool>,
    /// Buffers put in with `provide` and not yet taken out for good with `into_id`: in the
    /// ring, or out of it in a `ProvidedBuf` that goes back on drop. Never above `entries`
    /// (checked and counted in one step, under the lock, so the tail cannot overrun entries
    /// the kernel has not consumed).
    provided: u32,
}

// SAFETY: `memory` is shared with the kernel and only written under `tail`'s lock; everything
// else is `Send + Sync`.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl BufRing {
    /// Registers `source`'s buffers as buffer group `group` on `ring`, all of them in the ring.
    ///
    /// # Errors
    ///
    /// `source` has no buffers or more than 32,768; the allocation failed; or the kernel refused
    /// the registration (no `IORING_REGISTER_PBUF_RING` before Linux 5.19).
    pub fn register(ring: &Ring, group: u16, source: impl BufferSource) -> io::Result<BufRing> {
        let count = source.buffer_count();
        let group = BufRing::register_empty(ring, group, source, count)?;
        {
            let mut tail = lock(&group.inner.tail);
            for id in 0..count {
                group.inner.push_locked(&mut tail, id);
            }
        }
        Ok(group)
    }

    /// Registers an empty ring with room for `room` buffers (rounded up to a power of two):
    /// the caller [`provide`](BufRing::provide)s the ids it owns, and takes buffers out for good
    /// with [`ProvidedBuf::into_id`] — for sources that lend buffers, like a pool.
    ///
    /// # Errors
    ///
    /// `room` is 0 or above 32,768; the allocation failed; or the kernel refused the
    /// registration (no `IORING_REGISTER_PBUF_RING` before Linux 5.19).
    pub fn register_empty(
        ring: &Ring,
        group: u16,
        source: impl BufferSource,
        room: u16,
    ) -> io::Result<BufRing> {
        if room == 0 || room > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a provided buffer ring holds 1 to 32768 buffers",
            ));
        }
        let entries = room.next_power_of_two();
        let layout = Layout::from_size_align(
            usize::from(entries) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad buffer ring layout"))?;
        // SAFETY: the layout has a non-zero size (at least one 16-byte entry).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(memory) = NonNull::new(raw.cast::<BufRingEntry>()) else {
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        // `memory` is page-aligned and holds `entries` entries; it stays allocated until
        // `Inner::drop`, which unregisters the group first.
        if let Err(error) = ring.register_buf_ring(memory, entries, group) {
            // SAFETY: allocated above with `layout`; the kernel refused it, so never uses it.
            unsafe { alloc::dealloc(raw, layout) };
            return Err(error);
        }
        let inner = Inner {
            ring: Arc::downgrade(&ring.shared),
            group,
            entries,
            memory,
            layout,
            tail: Mutex::new(Tail {
                value: 0,
                in_ring: vec![false; usize::from(source.buffer_count())],
                provided: 0,
            }),
            source: Box::new(source),
            recycled: AtomicU64::new(0),
        };
        Ok(BufRing {
            ring: ring.clone(),
            inner: Arc::new(inner),
        })
    }

    /// Puts buffer `id` in the ring for the kernel to fill.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an id the source does not have or that is in the ring already;
    /// `StorageFull` if the ring already holds as many buffers as it has room for (the id stays
    /// with the caller). Safe to call from several threads at once: the check and the insertion
    /// are one step.
    ///
    /// # Safety
    ///
    /// The caller owns buffer `id` and gives it up until a CQE reports it (or the ring is
    /// dropped): nothing else reads or writes it meanwhile, and it is not in the ring already.
    pub unsafe fn provide(&self, id: u16) -> io::Result<()> {
        if id >= self.inner.source.buffer_count() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no such buffer in this source",
            ));
        }
        let mut tail = lock(&self.inner.tail);
        if tail.in_ring.get(usize::from(id)) == Some(&true) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this buffer is in the ring already",
            ));
        }
        if tail.provided >= u32::from(self.inner.entries) {
            return Err(io::ErrorKind::StorageFull.into());
        }
        tail.provided += 1;
        self.inner.push_locked(&mut tail, id);
        Ok(())
    }

    /// `true` if the ring has room for another buffer (see [`provide`](BufRing::provide)).
    pub fn has_room(&self) -> bool {
        lock(&self.inner.tail).provided < u32::from(self.inner.entries)
    }

    /// Buffers in the ring now, for the kernel to fill (not those a completion handed out).
    pub fn in_ring(&self) -> usize {
        lock(&self.inner.tail)
            .in_ring
            .iter()
            .filter(|&&present| present)
            .count()
    }

    /// The buffer group id to name in receive ops.
    pub fn group(&self) -> u16 {
        self.inner.group
    }

    /// Buffers handed back to the kernel so far.
    pub fn recycled(&self) -> u64 {
        self.inner.recycled.load(Ordering::Relaxed)
    }

    /// Adopts the buffer a CQE reported (`IORING_CQE_F_BUFFER`), if it names one.
    pub fn take(&self, cqe: Cqe) -> Option<ProvidedBuf> {
        take(&self.inner, cqe)
    }

    /// What a receive's CQE delivered: data in the buffer it names, the end of the stream, or
    /// an error. A buffer an empty or failed completion names goes back to the kernel.
    fn received(&self, cqe: Cqe) -> io::Result<Received> {
        let buf = self.take(cqe);
        if cqe.result < 0 {
            drop(buf);
            return Err(io::Error::from_raw_os_error(-cqe.result));
        }
        Ok(match buf {
            Some(buf) if cqe.result > 0 => Received::Data(buf),
            // An empty completion is the peer's end of stream (its buffer, if any, goes back).
            _ => Received::Eof,
        })
    }

    /// Multishot receive on `socket` into this group: one SQE, a CQE per arrival.
    ///
    /// The stream ends with `ENOBUFS` when the group runs dry; data stays in the socket, so arm a
    /// new receive once buffers are back — nothing is lost.
    pub fn recv_multi(&self, socket: &SharedFd) -> RecvStream {
        let group = self.inner.group;
        let op = self.ring.submit_multishot(
            (socket.clone(), Group(self.inner.clone())),
            move |(fd, _)| {
                opcode::RecvMulti::new(types::Fd(std::os::fd::AsRawFd::as_raw_fd(&**fd)), group)
                    .build()
            },
            recycle_discarded,
        );
        RecvStream {
            op,
            ring: self.clone(),
        }
    }
}

/// What a receive over the group parks in the op table: the group, without the ring (see
/// [`BufRing`]).
struct Group(Arc<Inner>);

/// What a multishot message receive parks: the socket, the group (see [`Group`]) and the
/// `msghdr` the kernel reads for every datagram (only its name and control lengths: the
/// header, address and payload are laid out in each provided buffer).
struct MsgTemplate {
    fd: SharedFd,
    group: Group,
    msghdr: libc::msghdr,
}

// SAFETY: the `msghdr`'s pointers are all null (the kernel writes into provided buffers, not
// through them); everything else is `Send`.
unsafe impl Send for MsgTemplate {}

/// A `msghdr` naming only the lengths a multishot `recvmsg` reserves in each buffer.
fn msg_template(name_len: u32) -> libc::msghdr {
    // SAFETY: `msghdr` is plain data for which all-zero bytes (null pointers, zero lengths) are
    // a valid value.
    let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
    msghdr.msg_namelen = name_len;
    msghdr
}

/// A message-receive CQE nobody will read: give its buffer back to the kernel.
fn recycle_discarded_msg(data: &mut (dyn std::any::Any + Send), cqe: Cqe) {
    if let Some(template) = data.downcast_mut::<MsgTemplate>() {
        drop(take(&template.group.0, cqe));
    }
}

impl BufRing {
    /// Multishot `recvmsg(2)` on `socket` into this group: one SQE, a CQE per datagram. Each
    /// buffer holds the kernel's `io_uring_recvmsg_out` header, `name_len` bytes reserved for
    /// the sender's address, then the payload; a datagram longer than the rest of the buffer is
    /// cut and reported truncated. `MSG_TRUNC` is passed, so the header names the datagram's
    /// full length.
    ///
    /// The stream ends with `ENOBUFS` when the group runs dry; datagrams stay in the socket, so
    /// arm a new receive once buffers are back — nothing is lost.
    pub fn recv_msg_multi(&self, socket: &SharedFd, name_len: u32) -> RecvMsgStream {
        let group = self.inner.group;
        let template = MsgTemplate {
            fd: socket.clone(),
            group: Group(self.inner.clone()),
            msghdr: msg_template(name_len),
        };
        let op = self.ring.submit_multishot(
            template,
            move |t| {
                opcode::RecvMsgMulti::new(
                    types::Fd(std::os::fd::AsRawFd::as_raw_fd(&*t.fd)),
                    &raw const t.msghdr,
                    group,
                )
                .flags(libc::MSG_TRUNC as u32)
                .build()
            },
            recycle_discarded_msg,
        );
        RecvMsgStream {
            op,
            ring: self.clone(),
            name_len,
        }
    }
}

/// The stream of a multishot message receive ([`BufRing::recv_msg_multi`]).
#[derive(Debug)]
pub struct RecvMsgStream {
    op: MultiOp,
    ring: BufRing,
    name_len: u32,
}

impl RecvMsgStream {
    /// Datagrams (or the ending) waiting to be taken.
    pub fn queued(&self) -> usize {
        self.op.queued()
    }

    /// Asks the kernel to stop receiving: datagrams that arrived first are still delivered,
    /// then the stream ends with `ECANCELED` (or with its own ending if that came first).
    pub fn cancel(&mut self) {
        self.op.cancel();
    }

    /// The next datagram; `Some(Err(ENOBUFS))` when the group ran dry (the stream has ended:
    /// arm a new one once buffers are back); `None` after the stream ended.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<ReceivedMsg>>> {
        let Poll::Ready(cqe) = self.op.poll_next(cx) else {
            return Poll::Pending;
        };
        let Some(cqe) = cqe else {
            return Poll::Ready(None);
        };
        let buf = self.ring.take(cqe);
        if cqe.result < 0 {
            drop(buf);
            return Poll::Ready(Some(Err(io::Error::from_raw_os_error(-cqe.result))));
        }
        Poll::Ready(Some(match buf {
            Some(buf) => Ok(ReceivedMsg {
                buf,
                name_len: self.name_len,
            }),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a message receive completed without a buffer",
            )),
        }))
    }
}

/// One datagram of a multishot message receive, in its provided buffer (which goes back to the
/// kernel when this is dropped).
#[derive(Debug)]
pub struct ReceivedMsg {
    buf: ProvidedBuf,
    name_len: u32,
}

/// Bytes of the kernel's `struct io_uring_recvmsg_out` (four `u32`s) at the start of each
/// buffer of a multishot message receive.
const RECVMSG_OUT_LEN: usize = 16;

/// A datagram's parts, read from its provided buffer.
#[derive(Debug)]
pub struct Message<'a> {
    /// The sender.
    pub from: crate::RawAddr,
    /// The bytes the buffer holds (all of the datagram unless `truncated`).
    pub payload: &'a [u8],
    /// The datagram's full length, as the kernel reported it.
    pub len: usize,
    /// `true` if the datagram was longer than the buffer's room and was cut (`MSG_TRUNC`).
    pub truncated: bool,
}

impl ReceivedMsg {
    /// The datagram: sender, payload, length.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the buffer is shorter than the header the kernel writes.
    pub fn message(&self) -> io::Result<Message<'_>> {
        let template = msg_template(self.name_len);
        let out = types::RecvMsgOut::parse(&self.buf, &template).map_err(|()| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a message receive's buffer is shorter than its header",
            )
        })?;
        let name = out.name_data();
        // SAFETY: `sockaddr_storage` is plain data; all-zero bytes are a valid (empty) address.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let copied = name
            .len()
            .min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: `copied` bytes fit both the name (a slice of the buffer) and the storage, and
        // the two do not overlap (the storage is a local).
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), (&raw mut storage).cast::<u8>(), copied);
        }
        let from = crate::RawAddr::from_parts(storage, copied as libc::socklen_t);
        // The payload follows the header and the name field (no control data is asked for).
        let start = RECVMSG_OUT_LEN + self.name_len as usize;
        let payload = self
            .buf
            .get(start..start + out.payload_data().len())
            .unwrap_or_default();
        Ok(Message {
            from,
            payload,
            len: (out.incoming_payload_len() as usize).max(payload.len()),
            truncated: out.is_payload_truncated()
                || out.incoming_payload_len() as usize > payload.len(),
        })
    }
}

/// Adopts the buffer a CQE reported (`IORING_CQE_F_BUFFER`), if it names one of `inner`'s.
fn take(inner: &Arc<Inner>, cqe: Cqe) -> Option<ProvidedBuf> {
    let id = cqueue::buffer_select(cqe.flags)?;
    if id >= inner.source.buffer_count() {
        return None;
    }
    if let Some(present) = lock(&inner.tail).in_ring.get_mut(usize::from(id)) {
        *present = false;
    }
    let len = usize::try_from(cqe.result.max(0)).unwrap_or(0);
    let len = len.min(inner.source.buffer_len() as usize);
    crate::memcheck::mark_initialised(inner.source.buffer_ptr(id).as_ptr(), len);
    Some(ProvidedBuf {
        inner: inner.clone(),
        id,
        len,
    })
}

/// A CQE nobody will read: give its buffer back to the kernel.
fn recycle_discarded(data: &mut (dyn std::any::Any + Send), cqe: Cqe) {
    if let Some((_, Group(inner))) = data.downcast_mut::<(SharedFd, Group)>() {
        drop(take(inner, cqe));
    }
}

impl Inner {
    /// Puts buffer `id` back at the tail and publishes it.
    fn push(&self, id: u16) {
        self.push_locked(&mut lock(&self.tail), id);
    }

    /// [`push`](Inner::push) with the tail's lock held.
    fn push_locked(&self, tail: &mut Tail, id: u16) {
        if let Some(present) = tail.in_ring.get_mut(usize::from(id)) {
            *present = true;
        }
        let index = usize::from(tail.value & (self.entries - 1));
        // SAFETY: `index < entries`, so the offset is inside the allocation.
        let slot = unsafe { self.memory.as_ptr().add(index) };
        // SAFETY: the kernel only reads entries between its head and the published tail, and
        // this slot is past the published tail; we hold the tail lock, so nobody else writes it.
        let entry = unsafe { &mut *slot };
        entry.set_addr(self.source.buffer_ptr(id).as_ptr() as u64);
        entry.set_len(self.source.buffer_len());
        entry.set_bid(id);
        tail.value = tail.value.wrapping_add(1);
        // SAFETY: byte offset 14 is inside the first entry, where the ring's `u16` tail lives.
        let tail_ptr = unsafe { self.memory.as_ptr().cast::<u8>().add(14) }.cast::<AtomicU16>();
        // SAFETY: the tail is a suitably aligned `u16` the kernel reads concurrently, hence an
        // atomic; the release store also publishes the entry written above.
        let shared_tail = unsafe { &*tail_ptr };
        shared_tail.store(tail.value, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every op that could pick from this group holds a clone, so none is in flight, and
        // none can start: the kernel reads this memory no more. While the ring lives, the group
        // is unregistered (its id free again); if unregistering fails the kernel may still hold
        // the memory: leak it rather than free memory it can read. Once the ring is gone (or
        // being torn down: no handle is left to submit with), the kernel drops the registration
        // with the ring. The ring never drops a group while it holds its own lock (`reap` hands
        // the final CQEs' op data back to be dropped after the lock is released), so taking it
        // here cannot deadlock.
        let unregistered = match self.ring.upgrade() {
            Some(shared) => Ring::from_shared(shared)
                .unregister_buf_ring(self.group)
                .is_ok(),
            None => true,
        };
        if unregistered {
            // SAFETY: allocated in `register` with `layout`; the kernel let go of it above.
            unsafe { alloc::dealloc(self.memory.as_ptr().cast(), self.layout) };
            // The kernel can no longer pick these: they go back to their source.
            let tail = lock(&self.tail);
            for (id, _) in tail.in_ring.iter().enumerate().filter(|(_, p)| **p) {
                if let Ok(id) = u16::try_from(id) {
                    self.source.reclaim(id);
                }
            }
        }
    }
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("group", &self.inner.group)
            .field("entries", &self.inner.entries)
            .field("recycled", &self.recycled())
            .finish()
    }
}

/// A received buffer from a [`BufRing`]; goes back to the kernel when dropped.
pub struct ProvidedBuf {
    inner: Arc<Inner>,
    id: u16,
    len: usize,
}

impl ProvidedBuf {
    /// The buffer id in its group.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Takes the buffer out of the ring for good: returns its id and the received length, and
    /// does not give it back to the kernel. The caller owns the buffer from now on (for a ring
    /// fed with [`BufRing::provide`]).
    pub fn into_id(self) -> (u16, usize) {
        let this = std::mem::ManuallyDrop::new(self);
        {
            let mut tail = lock(&this.inner.tail);
            tail.provided = tail.provided.saturating_sub(1);
        }
        // SAFETY: `this` is never used or dropped again, so moving its group handle out is the
        // only read of that field; dropping the handle keeps the count of clones right.
        drop(unsafe { std::ptr::read(&this.inner) });
        (this.id, this.len)
    }
}

impl Deref for ProvidedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let ptr = self.inner.source.buffer_ptr(self.id);
        // SAFETY: the kernel filled `len` bytes of this buffer (its CQE said so) and gave it up;
        // until this guard drops nobody else writes it (the `BufferSource` contract).
        unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.len) }
    }
}

impl Drop for ProvidedBuf {
    fn drop(&mut self) {
        self.inner.push(self.id);
        self.inner.recycled.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for ProvidedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvidedBuf")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

/// What a multishot receive delivers.
#[derive(Debug)]
pub enum Received {
    /// Bytes, in a provided buffer.
    Data(ProvidedBuf),
    /// The peer closed its side.
    Eof,
}

/// The stream of a multishot receive ([`BufRing::recv_multi`]).
#[derive(Debug)]
pub struct RecvStream {
    op: MultiOp,
    ring: BufRing,
}

impl RecvStream {
    /// The next arrival; `Some(Err(ENOBUFS))` when the group ran dry (the stream has ended: arm a
    /// new one once buffers are back); `None` after the stream ended.
    pub async fn next(&mut self) -> Option<io::Result<Received>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Arrivals waiting to be taken (each holds a provided buffer, or is the ending).
    pub fn queued(&self) -> usize {
        self.op.queued()
    }

    /// Asks the kernel to stop receiving: what arrived first is still delivered, then the
    /// stream ends with `ECANCELED` (or with its own ending if that came first).
    pub fn cancel(&mut self) {
        self.op.cancel();
    }

    /// Polling form of [`next`](RecvStream::next).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Received>>> {
        let Poll::Ready(cqe) = self.op.poll_next(cx) else {
            return Poll::Pending;
        };
        let Some(cqe) = cqe else {
            return Poll::Ready(None);
        };
        Poll::Ready(Some(self.ring.received(cqe)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Buffers in one boxed slice the source owns (freed when the group drops it, after the
    /// group is unregistered).
    pub(crate) struct Owned {
        pub(crate) memory: NonNull<u8>,
        count: u16,
    }

    pub(crate) const SIZE: u32 = 64;

    pub(crate) fn owned(count: u16) -> Owned {
        let memory =
            Box::into_raw(vec![0u8; usize::from(count) * SIZE as usize].into_boxed_slice());
        Owned {
            memory: NonNull::new(memory.cast::<u8>()).expect("a box is never null"),
            count,
        }
    }

    impl Drop for Owned {
        fn drop(&mut self) {
            let len = usize::from(self.count) * SIZE as usize;
            let slice = std::ptr::slice_from_raw_parts_mut(self.memory.as_ptr(), len);
            // SAFETY: `memory` came from `Box::into_raw` of a slice of exactly `len` bytes, and
            // the group drops its source only after the kernel let go of the buffers.
            drop(unsafe { Box::from_raw(slice) });
        }
    }

    // SAFETY: the memory is owned by the source alone and never moves; ids map to disjoint
    // ranges of it.
    unsafe impl Send for Owned {}
    // SAFETY: as above.
    unsafe impl Sync for Owned {}

    // SAFETY: see `Send`: `count` disjoint `SIZE`-byte buffers that live as long as the source.
    unsafe impl BufferSource for Owned {
        fn buffer_count(&self) -> u16 {
            self.count
        }
        fn buffer_len(&self) -> u32 {
            SIZE
        }
        fn buffer_ptr(&self, id: u16) -> NonNull<u8> {
            // SAFETY: `id < count` (the ring checks), so the offset is inside the allocation.
            unsafe { self.memory.add(usize::from(id) * SIZE as usize) }
        }
    }

    /// `IORING_CQE_F_BUFFER` naming buffer `id`.
    fn names(id: u16) -> u32 {
        1 | (u32::from(id) << 16)
    }

    #[test]
    fn a_failed_completion_gives_the_buffer_it_names_back() {
        let ring = Ring::new().expect("ring");
        let group = BufRing::register_empty(&ring, 3, owned(2), 2).expect("register");
        // SAFETY: buffer 0 is ours and not in the ring.
        unsafe { group.provide(0) }.expect("provide");
        let failed = Cqe {
            result: -libc::ECONNRESET,
            flags: names(0),
        };
        let error = group.received(failed).expect_err("a failed completion");
        assert_eq!(error.raw_os_error(), Some(libc::ECONNRESET));
        assert_eq!(group.recycled(), 1, "the buffer never went back");
        assert_eq!(lock(&group.inner.tail).in_ring.first(), Some(&true));
    }

    #[test]
    fn provide_refuses_a_buffer_already_in_the_ring() {
        let ring = Ring::new().expect("ring");
        let group = BufRing::register_empty(&ring, 4, owned(2), 2).expect("register");
        // SAFETY: buffer 1 is ours and not in the ring; the second call is refused.
        unsafe { group.provide(1) }.expect("provide");
        // SAFETY: as above (refused: the buffer is in the ring).
        let again = unsafe { group.provide(1) }.expect_err("in the ring already");
        assert_eq!(again.kind(), io::ErrorKind::InvalidInput);
        assert!(group.has_room());
    }
}
