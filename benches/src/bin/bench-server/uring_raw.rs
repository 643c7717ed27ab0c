//! The raw io_uring floor: one ring, no runtime, nothing allocated per request.
//!
//! TCP: a multishot accept on the listener and, per connection, a multishot receive that takes
//! its buffers from one provided-buffer ring; each received buffer is sent back as it is and
//! returns to the ring when its send completes. UDP: a multishot `recvmsg` over the same kind of
//! buffer ring, each datagram sent back to its sender with `sendmsg` straight from the buffer it
//! arrived in. Each turn is one `io_uring_enter` (`submit_and_wait(1)`) followed by every
//! completion it brought.

use std::alloc::Layout;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut};
use io_uring::{CompletionQueue, IoUring, SubmissionQueue, Submitter, cqueue, opcode, squeue};

/// Buffers in the provided-buffer ring (a power of two, at most 32,768): B2's 50 connections
/// with one message each use 50, and a bulk stream's bursts fit in the rest.
const BUFFERS: u16 = 256;
/// Bytes per buffer: the read buffer of every other mode.
const BUFFER_LEN: u32 = super::BUFFER as u32;
/// The buffer group id the receives name.
const GROUP: u16 = 0;
const RING_ENTRIES: u32 = 1024;

// Operation kinds, in the high half of `user_data`.
const ACCEPT: u64 = 0;
const RECEIVE: u64 = 1;
const SEND: u64 = 2;

/// The `user_data` of an operation: its kind in the high 32 bits and, in the low 32 bits,
/// the connection slot (TCP) or the buffer id of the datagram being sent (UDP).
fn user_data(kind: u64, index: u32) -> u64 {
    kind << 32 | u64::from(index)
}

/// A ring with `SINGLE_ISSUER` and `DEFER_TASKRUN` (completions are posted only inside
/// `io_uring_enter`, on this thread), or a plain one on a kernel without them (before 6.1).
fn new_ring() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::new(RING_ENTRIES))
        .expect("io_uring setup")
}

/// The submission side of the ring.
struct Submissions<'ring> {
    submitter: Submitter<'ring>,
    queue: SubmissionQueue<'ring>,
}

impl Submissions<'_> {
    /// Queues `entry`, handing the queue to the kernel first if it is full.
    ///
    /// # Safety
    ///
    /// Everything `entry` points to (buffers, a `msghdr`, a descriptor) stays valid until its
    /// final CQE, and nothing touches the memory the kernel writes until then.
    unsafe fn push(&mut self, entry: &squeue::Entry) {
        if self.queue.is_full() {
            self.queue.sync();
            self.submitter.submit().expect("io_uring_enter");
            self.queue.sync();
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the raw io_uring floor is a baseline outside Weir: it drives the ring \
                      itself, and this is its one push site"
        )]
        // SAFETY: the caller keeps what `entry` points to valid until its final CQE.
        let pushed = unsafe { self.queue.push(entry) };
        pushed.expect("the queue has room: it was handed to the kernel when full");
    }

    /// Hands the queued entries to the kernel and waits for at least one completion.
    fn submit_and_wait(&mut self) {
        self.queue.sync();
        match self.submitter.submit_and_wait(1) {
            Ok(_) => {}
            // A signal, or completions the kernel has yet to post: reap what there is and
            // enter again.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
    }
}

/// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, see
/// [io_uring_register_buf_ring(3)](https://man7.org/linux/man-pages/man3/io_uring_register_buf_ring.3.html)):
/// the kernel picks a buffer for each receive and names it in the CQE.
///
/// ```text
///  entries (page-aligned, BUFFERS x 16 B, shared with the kernel; the u16 tail overlays
///           bytes 14..16 of entry 0):
///  [ addr len bid | addr len bid | ... ]   the kernel consumes from its head up to the tail
///  memory (BUFFERS x BUFFER_LEN B):
///  [ buffer 0 | buffer 1 | ... ]           buffer `id` starts at `id * BUFFER_LEN`
/// ```
///
/// # Invariants
///
/// * Each buffer is either in the ring — the kernel may write it at any moment and we do not
///   touch it — or ours, from the CQE that names it until [`provide`](Self::provide) puts it
///   back: never both.
/// * `entries` and `memory` are leaked when registered: they outlive the ring and every
///   operation, so no drop order can leave the kernel writing into freed memory.
struct ProvidedBuffers {
    entries: *mut BufRingEntry,
    memory: *mut u8,
    /// Entries written so far (wrapping), published to the kernel as each is written.
    tail: u16,
    /// How many buffers are ours: taken from a CQE and not yet provided again.
    ours: u16,
}

impl ProvidedBuffers {
    /// Allocates the buffers, registers them as group [`GROUP`] and puts them all in the ring.
    fn register(submitter: &Submitter<'_>) -> Self {
        let layout =
            Layout::from_size_align(usize::from(BUFFERS) * size_of::<BufRingEntry>(), 4096)
                .expect("buffer ring layout");
        // SAFETY: the layout's size is not zero.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        assert!(!entries.is_null(), "allocating the buffer ring failed");
        let memory =
            Box::leak(vec![0u8; usize::from(BUFFERS) * BUFFER_LEN as usize].into_boxed_slice())
                .as_mut_ptr();
        // SAFETY: `entries` is page-aligned room for `BUFFERS` entries and never freed.
        unsafe { submitter.register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0) }
            .expect("register the buffer ring (Linux 5.19 or later)");
        let mut buffers = ProvidedBuffers {
            entries,
            memory,
            tail: 0,
            ours: BUFFERS,
        };
        for id in 0..BUFFERS {
            // SAFETY: freshly allocated, no buffer is in the ring yet.
            unsafe { buffers.provide(id) };
        }
        buffers
    }

    /// The address of buffer `id`.
    fn address(&self, id: u16) -> *mut u8 {
        debug_assert!(id < BUFFERS);
        self.memory
            .wrapping_add(usize::from(id) * BUFFER_LEN as usize)
    }

    /// Takes the buffer a CQE names (`IORING_CQE_F_BUFFER`), if any: it is ours from now on.
    fn take(&mut self, cqe_flags: u32) -> Option<u16> {
        let id = cqueue::buffer_select(cqe_flags)?;
        self.ours += 1;
        Some(id)
    }

    /// Whether the ring holds a buffer, as far as the CQEs reaped so far tell.
    fn ring_has_buffers(&self) -> bool {
        self.ours < BUFFERS
    }

    /// The first `len` bytes of buffer `id`.
    ///
    /// # Safety
    ///
    /// Buffer `id` is ours, and the kernel wrote `len <= BUFFER_LEN` bytes of it.
    unsafe fn received(&self, id: u16, len: usize) -> &[u8] {
        // SAFETY: inside the buffer, which the kernel no longer writes (it is ours) and
        // which the kernel initialised up to `len` (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.address(id), len) }
    }

    /// Puts buffer `id` back in the ring for the kernel to fill.
    ///
    /// # Safety
    ///
    /// Buffer `id` is ours, no operation in flight reads it, and we keep no slice of it.
    unsafe fn provide(&mut self, id: u16) {
        let index = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `index < BUFFERS`, so the offset is inside the entries allocation.
        let slot = unsafe { self.entries.add(index) };
        // SAFETY: the kernel reads only the entries between its head and the published tail;
        // this one is past the tail, and only this thread writes entries.
        let entry = unsafe { &mut *slot };
        entry.set_addr(self.address(id) as u64);
        entry.set_len(BUFFER_LEN);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        self.ours -= 1;
        // SAFETY: computes the address of the tail field inside entry 0, in the allocation.
        let tail = unsafe { BufRingEntry::tail(self.entries) }.cast::<AtomicU16>();
        // SAFETY: the tail is an aligned `u16` that the kernel reads concurrently, so it is
        // accessed only as an atomic.
        let tail = unsafe { &*tail };
        // Release: the kernel reads the tail with an acquire load and then the entries below
        // it; a relaxed store could let it see the new tail before the entry written above.
        tail.store(self.tail, Ordering::Release);
    }
}

/// The end of an unsent queue: no buffer has this id.
const NO_BUFFER: u16 = u16::MAX;

/// One accepted connection.
struct Connection {
    stream: TcpStream,
    /// The multishot receive is armed: its last CQE carried `F_MORE`.
    receiving: bool,
    /// The receive ended with `ENOBUFS`: it is armed again once the ring has a buffer.
    starved: bool,
    /// End of stream or an error: the connection closes once no operation on it is left.
    closing: bool,
    /// A send from the head of the unsent queue is in flight.
    sending: bool,
    /// Received buffers not yet sent back, oldest first, linked through
    /// [`TcpFloor::next_unsent`]. Only the head is ever being sent, so the echo keeps its
    /// order across short sends.
    unsent_head: u16,
    unsent_tail: u16,
    /// Bytes of the head buffer already sent.
    head_sent: u32,
}

/// The TCP floor's state.
struct TcpFloor {
    buffers: ProvidedBuffers,
    /// By buffer id, for the buffers that are ours: the bytes received into it.
    received_len: Box<[u32]>,
    /// By buffer id: the next buffer in the same connection's unsent queue.
    next_unsent: Box<[u16]>,
    /// Connections by slot (the low half of `user_data`). A slot is emptied, and reused,
    /// only once no operation on its connection is left in the kernel, so a CQE always
    /// finds the connection it was submitted for.
    connections: Vec<Option<Connection>>,
    free_slots: Vec<u32>,
    /// Slots whose receive waits for a buffer (may name slots no longer starved).
    starved: Vec<u32>,
    closed: usize,
}

/// Echoes TCP until `conns` connections have closed.
pub(super) fn tcp(listener: TcpListener, conns: usize) {
    let mut ring = new_ring();
    let (submitter, queue, mut completions) = ring.split();
    let mut submissions = Submissions { submitter, queue };
    let mut floor = TcpFloor {
        buffers: ProvidedBuffers::register(&submissions.submitter),
        received_len: vec![0; usize::from(BUFFERS)].into_boxed_slice(),
        next_unsent: vec![NO_BUFFER; usize::from(BUFFERS)].into_boxed_slice(),
        connections: Vec::new(),
        free_slots: Vec::new(),
        starved: Vec::new(),
        closed: 0,
    };
    floor.arm_accept(&mut submissions, &listener);
    while floor.closed < conns {
        submissions.submit_and_wait();
        floor.reap(&mut submissions, &mut completions, &listener);
        floor.rearm_starved(&mut submissions);
    }
}

impl TcpFloor {
    /// Handles every completion there is.
    fn reap(
        &mut self,
        submissions: &mut Submissions<'_>,
        completions: &mut CompletionQueue<'_>,
        listener: &TcpListener,
    ) {
        completions.sync();
        for cqe in &mut *completions {
            let slot = cqe.user_data() as u32;
            match cqe.user_data() >> 32 {
                ACCEPT => self.accepted(submissions, &cqe, listener),
                RECEIVE => self.received(submissions, slot, &cqe),
                _ => self.sent(submissions, slot, cqe.result()),
            }
        }
        // Tell the kernel these are consumed: it counts a wait's `min_complete` from the
        // published head, so a stale one would end the next wait at once.
        completions.sync();
    }

    fn arm_accept(&mut self, submissions: &mut Submissions<'_>, listener: &TcpListener) {
        let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(ACCEPT, 0));
        // SAFETY: the accept points to no memory, and the listener outlives the ring.
        unsafe { submissions.push(&accept) };
    }

    fn accepted(
        &mut self,
        submissions: &mut Submissions<'_>,
        cqe: &cqueue::Entry,
        listener: &TcpListener,
    ) {
        if !cqueue::more(cqe.flags()) {
            self.arm_accept(submissions, listener);
        }
        let fd = cqe.result();
        if fd == -libc::ECONNABORTED {
            // Reset by the peer before it was accepted: there is nothing to serve.
            return;
        }
        assert!(fd >= 0, "accept: {}", io::Error::from_raw_os_error(-fd));
        // SAFETY: the kernel just opened this descriptor for us; nothing else owns it.
        let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        stream.set_nodelay(true).expect("nodelay");
        let connection = Connection {
            stream,
            receiving: false,
            starved: false,
            closing: false,
            sending: false,
            unsent_head: NO_BUFFER,
            unsent_tail: NO_BUFFER,
            head_sent: 0,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.connections[slot as usize] = Some(connection);
                slot
            }
            None => {
                self.connections.push(Some(connection));
                (self.connections.len() - 1) as u32
            }
        };
        self.arm_receive(submissions, slot);
    }

    fn arm_receive(&mut self, submissions: &mut Submissions<'_>, slot: u32) {
        let Some(connection) = self.connections[slot as usize].as_mut() else {
            return;
        };
        connection.receiving = true;
        connection.starved = false;
        let receive = opcode::RecvMulti::new(Fd(connection.stream.as_raw_fd()), GROUP)
            .build()
            .user_data(user_data(RECEIVE, slot));
        // SAFETY: the receive writes only into buffers it takes from the ring; the stream
        // stays open until its final CQE (`finish_if_done` waits for `receiving` to clear).
        unsafe { submissions.push(&receive) };
    }

    fn received(&mut self, submissions: &mut Submissions<'_>, slot: u32, cqe: &cqueue::Entry) {
        let result = cqe.result();
        if let Some(id) = self.buffers.take(cqe.flags()) {
            self.received_len[usize::from(id)] = result.max(0) as u32;
            self.enqueue_unsent(slot, id);
        }
        let Some(connection) = self.connections[slot as usize].as_mut() else {
            return;
        };
        if !cqueue::more(cqe.flags()) {
            connection.receiving = false;
            if result == -libc::ENOBUFS {
                connection.starved = true;
                self.starved.push(slot);
            } else if result > 0 {
                // The kernel ended the multishot on its own (a full completion queue, say):
                // the stream goes on.
                self.arm_receive(submissions, slot);
            } else {
                connection.closing = true;
            }
        }
        self.send_head(submissions, slot);
        self.finish_if_done(slot);
    }

    fn enqueue_unsent(&mut self, slot: u32, id: u16) {
        let Some(connection) = self.connections[slot as usize].as_mut() else {
            return;
        };
        self.next_unsent[usize::from(id)] = NO_BUFFER;
        if connection.unsent_tail == NO_BUFFER {
            connection.unsent_head = id;
        } else {
            self.next_unsent[usize::from(connection.unsent_tail)] = id;
        }
        connection.unsent_tail = id;
    }

    /// Removes the head of the slot's unsent queue and gives it back to the ring.
    fn give_back_head(&mut self, slot: u32) {
        let Some(connection) = self.connections[slot as usize].as_mut() else {
            return;
        };
        let id = connection.unsent_head;
        if id == NO_BUFFER {
            return;
        }
        connection.unsent_head = self.next_unsent[usize::from(id)];
        if connection.unsent_head == NO_BUFFER {
            connection.unsent_tail = NO_BUFFER;
        }
        connection.head_sent = 0;
        // SAFETY: the buffer is ours (a receive's CQE named it), out of the queue now, and
        // no send of it is in flight (callers call this only while `sending` is false).
        unsafe { self.buffers.provide(id) };
    }

    /// Starts sending the rest of the head buffer unless a send is already in flight.
    fn send_head(&mut self, submissions: &mut Submissions<'_>, slot: u32) {
        let Some(connection) = self.connections[slot as usize].as_mut() else {
            return;
        };
        let id = connection.unsent_head;
        if connection.sending || id == NO_BUFFER {
            return;
        }
        connection.sending = true;
        let from = self
            .buffers
            .address(id)
            .wrapping_add(connection.head_sent as usize);
        let len = self.received_len[usize::from(id)] - connection.head_sent;
        let send = opcode::Send::new(Fd(connection.stream.as_raw_fd()), from, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(SEND, slot));
        // SAFETY: the buffer is ours and stays at the head of the queue, untouched, until
        // this send's CQE (`sent` gives it back only then); the stream stays open until
        // then too (`finish_if_done` waits for `sending` to clear).
        unsafe { submissions.push(&send) };
    }

    fn sent(&mut self, submissions: &mut Submissions<'_>, slot: u32, result: i32) {
        let Some(connection) = self.connections[slot as usize].as_mut() else {
            return;
        };
        connection.sending = false;
        if result <= 0 {
            // The peer is gone: drop what is unsent, and end the receive too (a shut-down
            // socket completes it with end of stream).
            connection.closing = true;
            if connection.receiving {
                let _ = connection.stream.shutdown(Shutdown::Both);
            }
            while self.connections[slot as usize]
                .as_ref()
                .is_some_and(|c| c.unsent_head != NO_BUFFER)
            {
                self.give_back_head(slot);
            }
        } else {
            connection.head_sent += result as u32;
            let head = usize::from(connection.unsent_head);
            if connection.head_sent == self.received_len[head] {
                self.give_back_head(slot);
            }
            // The rest of a short send, or the next buffer.
            self.send_head(submissions, slot);
        }
        self.finish_if_done(slot);
    }

    /// Closes the slot's connection once it is closing and nothing of it is in flight.
    fn finish_if_done(&mut self, slot: u32) {
        let done = self.connections[slot as usize]
            .as_ref()
            .is_some_and(|c| c.closing && !c.receiving && !c.sending);
        if done {
            // Nothing is unsent: a buffer in the queue would have a send in flight.
            self.connections[slot as usize] = None;
            self.free_slots.push(slot);
            self.closed += 1;
        }
    }

    /// Arms the starved receives again once the ring has a buffer.
    fn rearm_starved(&mut self, submissions: &mut Submissions<'_>) {
        if self.starved.is_empty() || !self.buffers.ring_has_buffers() {
            return;
        }
        while let Some(slot) = self.starved.pop() {
            let starved = self.connections[slot as usize]
                .as_ref()
                .is_some_and(|c| c.starved && !c.closing);
            if starved {
                self.arm_receive(submissions, slot);
            }
        }
    }
}

/// The `sendmsg` arguments for the datagram in one buffer: they point into that buffer (the
/// sender's address and the payload, where `recvmsg` put them).
struct SendHeader {
    message: libc::msghdr,
    payload: libc::iovec,
}

/// Echoes UDP datagrams until an empty one arrives.
pub(super) fn udp(socket: UdpSocket) {
    let mut ring = new_ring();
    let (submitter, queue, mut completions) = ring.split();
    let mut submissions = Submissions { submitter, queue };
    let mut buffers = ProvidedBuffers::register(&submissions.submitter);
    // By buffer id, leaked like the buffers so that they outlive every send. A header is
    // written only while its buffer is ours and no send of it is in flight.
    let headers: &'static mut [SendHeader] = Box::leak(
        (0..BUFFERS)
            .map(|_| SendHeader {
                // SAFETY: `msghdr` is a plain C struct: all zeroes (null pointers, zero
                // lengths) is a valid value.
                message: unsafe { std::mem::zeroed() },
                payload: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            })
            .collect(),
    );
    // The multishot receive reads only the name and control lengths: room for any sender's
    // address, no control data. Leaked so that it outlives the receive.
    // SAFETY: as above.
    let receive_header: &'static mut libc::msghdr =
        Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    receive_header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let receive_header: &'static libc::msghdr = receive_header;
    let fd = Fd(socket.as_raw_fd());
    let receive = opcode::RecvMsgMulti::new(fd, receive_header, GROUP)
        .build()
        .user_data(user_data(RECEIVE, 0));
    // SAFETY: the receive reads the leaked `receive_header` and writes only into buffers it
    // takes from the ring; the socket outlives the ring.
    unsafe { submissions.push(&receive) };
    let mut receiving = true;
    loop {
        submissions.submit_and_wait();
        completions.sync();
        for cqe in &mut completions {
            let result = cqe.result();
            if cqe.user_data() >> 32 == SEND {
                // The send's result is not looked at, as in the other modes.
                let id = cqe.user_data() as u16;
                // SAFETY: the send that read the buffer and its header has completed.
                unsafe { buffers.provide(id) };
                continue;
            }
            if !cqueue::more(cqe.flags()) {
                receiving = false;
                if result < 0 && result != -libc::ENOBUFS {
                    return;
                }
            }
            let Some(id) = buffers.take(cqe.flags()) else {
                continue;
            };
            // SAFETY: the CQE handed the buffer to us with `result` bytes written.
            let bytes = unsafe { buffers.received(id, result.max(0) as usize) };
            let Ok(datagram) = RecvMsgOut::parse(bytes, receive_header) else {
                // SAFETY: ours, and `datagram` borrows nothing of it any more.
                unsafe { buffers.provide(id) };
                continue;
            };
            if datagram.payload_data().is_empty() {
                return;
            }
            let header = &mut headers[usize::from(id)];
            header.payload = libc::iovec {
                iov_base: datagram.payload_data().as_ptr().cast_mut().cast(),
                iov_len: datagram.payload_data().len(),
            };
            header.message.msg_name = datagram.name_data().as_ptr().cast_mut().cast();
            header.message.msg_namelen = datagram
                .incoming_name_len()
                .min(datagram.name_data().len() as u32);
            header.message.msg_iov = &raw mut header.payload;
            header.message.msg_iovlen = 1;
            let send = opcode::SendMsg::new(fd, &raw const header.message)
                .build()
                .user_data(user_data(SEND, u32::from(id)));
            // SAFETY: the header is leaked and, with the buffer it points into, stays
            // untouched until this send's CQE gives the buffer back.
            unsafe { submissions.push(&send) };
        }
        // Published before the next wait, which counts from it (see `TcpFloor::reap`).
        completions.sync();
        if !receiving && buffers.ring_has_buffers() {
            // SAFETY: as for the first receive.
            unsafe { submissions.push(&receive) };
            receiving = true;
        }
    }
}
