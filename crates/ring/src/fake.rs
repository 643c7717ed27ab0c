//! A scripted kernel for the ring's tests: it keeps the SQEs a [`Ring`] pushes and completes
//! them the way the test says, with the faults the real kernel shows only rarely (a full
//! submission queue, an enter that fails after SQEs were pushed, completion-queue overflow with
//! dropped completions, multishot endings, short sends). No syscalls, so Miri runs the ring's
//! submit, reap and teardown logic and its `unsafe` over it.
//!
//! # Memory
//!
//! Like the kernel, the fake really touches the memory an SQE names: a receive or read writes
//! the scripted bytes to the SQE's `addr`/`len`, a send or write reads `len` bytes from it, a
//! buffer-select receive takes the next entry of the registered provided-buffer ring and writes
//! into the buffer it names. So Miri sees a buffer the ring freed too early as a use after free.
//! An SQE carries addresses as integers; under strict provenance an address alone cannot be
//! dereferenced, so the test [`expose`](Script::expose)s the memory it hands to the ring (a
//! `Vec`'s heap pointer, a buffer source's block), and the fake derives the SQE's pointer from
//! the exposed region that contains it. An SQE address outside every exposed region is a test
//! failure. Provided-buffer ring memory needs no exposing: the ring registers it by pointer.
//!
//! # What it models
//!
//! Every SQE stays in flight until the test completes it, except `NOP` (completes at once),
//! `ASYNC_CANCEL` (ends its target with `ECANCELED`, or finds nothing: `ENOENT`; by descriptor
//! or "any" as `AsyncCancel2` asks) and `LINK_TIMEOUT` (rides with the SQE before it, and ends
//! with `ECANCELED` when that op ends). Completions go to a completion queue of `cq_entries`;
//! beyond that they wait in an overflow list (`IORING_SQ_CQ_OVERFLOW`, flushed by the next
//! enter) or, with [`drop_overflow`](Script::drop_overflow), are dropped and counted. An enter
//! never blocks: a wait with a timeout and nothing to reap fails with `ETIME`.

use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;

use io_uring::opcode;
use io_uring::squeue;
use io_uring::types::BufRingEntry;

use crate::kernel::{Enter, Kernel, RawCqe};
use crate::ring::Ring;
use crate::setup::{Opcode, ProbeReport, SetupFlag, SetupReport};
use crate::sync::unmodelled::{Arc, AtomicU16, Ordering};
use crate::sync::{Mutex, lock};

mod tests;

/// `IORING_CQE_F_BUFFER`: the upper 16 bits of the flags name the provided buffer.
pub(crate) const CQE_F_BUFFER: u32 = 1;
/// `IORING_CQE_F_MORE`: more completions follow for this SQE.
pub(crate) const CQE_F_MORE: u32 = 2;
/// `IOSQE_IO_LINK`: the next SQE is linked to this one.
const SQE_IO_LINK: u8 = 1 << 2;
/// `IOSQE_BUFFER_SELECT`: the kernel picks the buffer from the SQE's buffer group.
pub(crate) const SQE_BUFFER_SELECT: u8 = 1 << 5;
/// `IORING_ASYNC_CANCEL_FD`: cancel by descriptor, not by `user_data`.
const CANCEL_FD: u32 = 1 << 1;
/// `IORING_ASYNC_CANCEL_ANY`: cancel every op.
const CANCEL_ANY: u32 = 1 << 2;

/// An SQE as the fake read it from the 64 raw bytes of `struct io_uring_sqe`:
///
/// ```text
///  offset  size  field
///   0       1    opcode
///   1       1    flags (IOSQE_*)
///   2       2    ioprio (multishot bits of RECV / ACCEPT)
///   4       4    fd
///   8       8    off / addr2
///  16       8    addr (buffer; for ASYNC_CANCEL the target's user_data)
///  24       4    len
///  28       4    op flags (msg_flags, accept_flags, cancel_flags, ...)
///  32       8    user_data
///  40       2    buf_index / buf_group
///  42..64        personality, splice_fd_in / file_index, addr3, padding (not read)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sqe {
    pub(crate) opcode: u8,
    pub(crate) flags: u8,
    pub(crate) ioprio: u16,
    pub(crate) fd: i32,
    pub(crate) off: u64,
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) op_flags: u32,
    pub(crate) user_data: u64,
    pub(crate) buf_group: u16,
}

const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

impl Sqe {
    fn read(entry: &squeue::Entry) -> Sqe {
        // SAFETY: `squeue::Entry` is `repr(C)` around `struct io_uring_sqe`, 64 bytes (asserted
        // above) built from zeroed memory, so all 64 bytes are initialised; `[u8; 64]` has no
        // alignment or validity requirement.
        let raw: [u8; 64] = unsafe { std::mem::transmute_copy(entry) };
        let u16_at = |at: usize| u16::from_ne_bytes([raw[at], raw[at + 1]]);
        let u32_at = |at: usize| u32::from_ne_bytes(raw[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_ne_bytes(raw[at..at + 8].try_into().unwrap_or([0; 8]));
        Sqe {
            opcode: raw[0],
            flags: raw[1],
            ioprio: u16_at(2),
            fd: u32_at(4) as i32,
            off: u64_at(8),
            addr: u64_at(16),
            len: u32_at(24),
            op_flags: u32_at(28),
            user_data: u64_at(32),
            buf_group: u16_at(40),
        }
    }

    /// `true` if the op may post many completions (`RECV` / `RECVMSG` / `ACCEPT` multishot).
    pub(crate) fn is_multishot(&self) -> bool {
        // IORING_RECV_MULTISHOT (bit 1) for receives, IORING_ACCEPT_MULTISHOT (bit 0) for
        // accepts, both in `ioprio`.
        match self.opcode {
            opcode::RecvMulti::CODE | opcode::RecvMsgMulti::CODE => self.ioprio & 2 != 0,
            opcode::AcceptMulti::CODE => self.ioprio & 1 != 0,
            _ => false,
        }
    }
}

/// A way the next enter fails ([`Script::fail_enter`]).
#[derive(Debug, Clone, Copy)]
struct EnterFault {
    errno: i32,
    /// The SQEs queued before the enter are submitted before it fails.
    submit_first: bool,
}

/// A registered provided-buffer ring.
struct Group {
    id: u16,
    memory: NonNull<BufRingEntry>,
    entries: u16,
    /// The kernel's head: entries below it were consumed.
    head: u16,
}

/// Everything the fake kernel holds; shared between the ring's [`FakeKernel`] and the test's
/// [`Script`].
struct State {
    sq_entries: usize,
    cq_entries: usize,
    /// Pushed, not yet submitted.
    sq: Vec<Sqe>,
    /// Submitted, final completion not yet posted; a `LINK_TIMEOUT` follows its op.
    in_flight: Vec<Sqe>,
    cq: VecDeque<RawCqe>,
    overflow: VecDeque<RawCqe>,
    drop_overflow: bool,
    dropped: u32,
    faults: VecDeque<EnterFault>,
    enters: u64,
    /// Memory the test handed to the ring, which the fake may reach (module docs).
    regions: Vec<(NonNull<u8>, usize)>,
    groups: Vec<Group>,
    /// Bytes send and write SQEs gave the fake, in order.
    written: Vec<u8>,
}

// SAFETY: the raw pointers are the test's exposed memory and registered buffer rings, reached
// only under the state's lock and only while their owners keep them alive (module docs).
unsafe impl Send for State {}

impl State {
    fn post(&mut self, cqe: RawCqe) {
        if self.overflow.is_empty() && self.cq.len() < self.cq_entries {
            self.cq.push_back(cqe);
        } else if self.drop_overflow {
            self.dropped = self.dropped.wrapping_add(1);
        } else {
            self.overflow.push_back(cqe);
        }
    }

    fn flush_overflow(&mut self) {
        while self.cq.len() < self.cq_entries {
            let Some(cqe) = self.overflow.pop_front() else {
                return;
            };
            self.cq.push_back(cqe);
        }
    }

    /// Posts the final completion of in-flight op `user_data` (and ends a linked timeout).
    fn finish(&mut self, user_data: u64, result: i32, flags: u32) {
        let at = self
            .in_flight
            .iter()
            .position(|sqe| sqe.user_data == user_data)
            .unwrap_or_else(|| panic!("fake kernel: no op {user_data:#x} in flight"));
        let sqe = self.in_flight.remove(at);
        self.post(RawCqe {
            user_data,
            result,
            flags: flags & !CQE_F_MORE,
        });
        if sqe.flags & SQE_IO_LINK != 0
            && self
                .in_flight
                .get(at)
                .is_some_and(|next| next.opcode == opcode::LinkTimeout::CODE)
        {
            let timeout = self.in_flight.remove(at);
            self.post(RawCqe {
                user_data: timeout.user_data,
                result: -libc::ECANCELED,
                flags: 0,
            });
        }
    }

    fn start(&mut self, sqe: Sqe) {
        match sqe.opcode {
            opcode::Nop::CODE => self.post(RawCqe {
                user_data: sqe.user_data,
                result: 0,
                flags: 0,
            }),
            opcode::AsyncCancel::CODE => {
                let targets: Vec<u64> = self
                    .in_flight
                    .iter()
                    .filter(|op| op.opcode != opcode::LinkTimeout::CODE)
                    .filter(|op| {
                        if sqe.op_flags & CANCEL_ANY != 0 {
                            true
                        } else if sqe.op_flags & CANCEL_FD != 0 {
                            op.fd == sqe.fd
                        } else {
                            op.user_data == sqe.addr
                        }
                    })
                    .map(|op| op.user_data)
                    .collect();
                for &target in &targets {
                    self.finish(target, -libc::ECANCELED, 0);
                }
                let result = match targets.len() {
                    0 => -libc::ENOENT,
                    _ if sqe.op_flags & (CANCEL_ANY | CANCEL_FD) != 0 => targets.len() as i32,
                    _ => 0,
                };
                self.post(RawCqe {
                    user_data: sqe.user_data,
                    result,
                    flags: 0,
                });
            }
            _ => self.in_flight.push(sqe),
        }
    }

    fn submit(&mut self) -> usize {
        let sqes = std::mem::take(&mut self.sq);
        let count = sqes.len();
        for sqe in sqes {
            self.start(sqe);
        }
        count
    }

    /// A pointer to `len` bytes at `addr`, with the provenance of the exposed region holding
    /// them.
    fn reach(&self, addr: u64, len: usize) -> *mut u8 {
        let addr = usize::try_from(addr).unwrap_or(usize::MAX);
        let (base, _) = self
            .regions
            .iter()
            .find(|(base, size)| {
                let start = base.as_ptr().addr();
                addr >= start && addr.saturating_add(len) <= start + size
            })
            .unwrap_or_else(|| {
                panic!("fake kernel: an SQE names {len} bytes at {addr:#x}, outside exposed memory")
            });
        base.as_ptr().with_addr(addr)
    }

    fn in_flight_op(&self, user_data: u64) -> Sqe {
        self.in_flight
            .iter()
            .copied()
            .find(|sqe| sqe.user_data == user_data)
            .unwrap_or_else(|| panic!("fake kernel: no op {user_data:#x} in flight"))
    }
}

/// The tail Weir published in `group`'s ring.
fn group_tail(group: &Group) -> u16 {
    // SAFETY: byte 14 is inside the first entry of the registered (so allocated) ring.
    let at = unsafe { group.memory.as_ptr().cast::<u8>().add(14) };
    // SAFETY: the ring's `u16` tail overlays bytes 14..16 of the first entry (the layout of
    // `struct io_uring_buf_ring`), aligned; Weir writes it with an atomic release store, read
    // here with acquire.
    let tail = unsafe { &*at.cast::<AtomicU16>() };
    tail.load(Ordering::Acquire)
}

/// The ring's side of the fake (inside [`Kernel::Fake`]).
pub(crate) struct FakeKernel {
    state: Arc<Mutex<State>>,
}

impl FakeKernel {
    pub(crate) fn sq_room(&mut self) -> usize {
        let state = lock(&self.state);
        state.sq_entries - state.sq.len()
    }

    /// Nothing queued and no overflow (the fake has no deferred completion work).
    pub(crate) fn is_idle(&mut self) -> bool {
        let state = lock(&self.state);
        state.sq.is_empty() && state.overflow.is_empty()
    }

    pub(crate) fn cq_overflow(&mut self) -> bool {
        !lock(&self.state).overflow.is_empty()
    }

    pub(crate) fn push(&mut self, sqes: &[squeue::Entry]) -> bool {
        let mut state = lock(&self.state);
        if state.sq_entries - state.sq.len() < sqes.len() {
            return false;
        }
        state.sq.extend(sqes.iter().map(Sqe::read));
        true
    }

    pub(crate) fn enter(&mut self, how: Enter) -> io::Result<usize> {
        let mut state = lock(&self.state);
        state.enters += 1;
        if let Some(fault) = state.faults.pop_front() {
            if fault.submit_first {
                state.submit();
            }
            return Err(io::Error::from_raw_os_error(fault.errno));
        }
        let submitted = state.submit();
        // Every enter of the ring's flushes the overflow list: a wait or GETEVENTS does, and a
        // plain submit asks for GETEVENTS when the overflow flag is set (io_uring's `submit`).
        state.flush_overflow();
        if matches!(how, Enter::WaitFor(_)) && state.cq.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ETIME));
        }
        Ok(submitted)
    }

    pub(crate) fn reap(&mut self, mut each: impl FnMut(RawCqe)) {
        // Taken out first: the ring's handling may end up in test code that asks the fake.
        let cqes = std::mem::take(&mut lock(&self.state).cq);
        for cqe in cqes {
            each(cqe);
        }
    }

    pub(crate) fn dropped(&mut self) -> u32 {
        lock(&self.state).dropped
    }

    pub(crate) fn register_buf_ring(
        &mut self,
        memory: NonNull<BufRingEntry>,
        entries: u16,
        group: u16,
    ) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.groups.iter().any(|g| g.id == group) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        state.groups.push(Group {
            id: group,
            memory,
            entries,
            head: 0,
        });
        Ok(())
    }

    pub(crate) fn unregister_buf_ring(&mut self, group: u16) -> io::Result<()> {
        let mut state = lock(&self.state);
        let at = state
            .groups
            .iter()
            .position(|g| g.id == group)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        state.groups.remove(at);
        Ok(())
    }
}

/// The test's side of the fake: what is in flight, and the completions to post.
#[derive(Clone)]
pub(crate) struct Script {
    state: Arc<Mutex<State>>,
}

/// A ring over a fake kernel with `sq_entries` and `cq_entries`, set up as Weir's default
/// (`DEFER_TASKRUN`), every opcode supported; and the script that drives its kernel.
pub(crate) fn ring(sq_entries: u32, cq_entries: u32) -> (Ring, Script) {
    let state = Arc::new(Mutex::new(State {
        sq_entries: sq_entries as usize,
        cq_entries: cq_entries as usize,
        sq: Vec::new(),
        in_flight: Vec::new(),
        cq: VecDeque::new(),
        overflow: VecDeque::new(),
        drop_overflow: false,
        dropped: 0,
        faults: VecDeque::new(),
        enters: 0,
        regions: Vec::new(),
        groups: Vec::new(),
        written: Vec::new(),
    }));
    let setup = SetupReport {
        sq_entries,
        cq_entries,
        flags: vec![
            SetupFlag::SubmitAll,
            SetupFlag::CoopTaskrun,
            SetupFlag::TaskrunFlag,
            SetupFlag::SingleIssuer,
            SetupFlag::DeferTaskrun,
        ],
        sqpoll: false,
    };
    let probe = ProbeReport {
        supported: Opcode::ALL.to_vec(),
        missing: Vec::new(),
    };
    let kernel = Kernel::Fake(FakeKernel {
        state: state.clone(),
    });
    let ring = Ring::from_kernel(kernel, setup, probe).expect("a ring over the fake kernel");
    (ring, Script { state })
}

impl Script {
    /// Lets the fake reach `len` bytes at `base` (module docs).
    pub(crate) fn expose(&self, base: *mut u8, len: usize) {
        let base = NonNull::new(base).expect("exposed memory is not null");
        lock(&self.state).regions.push((base, len));
    }

    /// The ops in flight in the fake kernel (submitted, final completion not posted).
    pub(crate) fn in_flight(&self) -> Vec<Sqe> {
        lock(&self.state).in_flight.clone()
    }

    /// SQEs pushed and not yet submitted.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.state).sq.len()
    }

    /// The SQE pushed last and not yet submitted.
    pub(crate) fn last_queued(&self) -> Option<Sqe> {
        lock(&self.state).sq.last().copied()
    }

    /// The one op in flight with `code`, if exactly one.
    pub(crate) fn op(&self, code: u8) -> Option<Sqe> {
        let ops: Vec<Sqe> = self
            .in_flight()
            .into_iter()
            .filter(|sqe| sqe.opcode == code)
            .collect();
        match ops.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// `true` if an SQE in flight or queued names memory overlapping `len` bytes at `base`.
    pub(crate) fn names_memory(&self, base: *const u8, len: usize) -> bool {
        let state = lock(&self.state);
        let start = base.addr();
        state.in_flight.iter().chain(&state.sq).any(|sqe| {
            let at = usize::try_from(sqe.addr).unwrap_or(usize::MAX);
            sqe.len > 0
                && sqe.flags & SQE_BUFFER_SELECT == 0
                && sqe.opcode != opcode::AsyncCancel::CODE
                && at < start + len
                && start < at.saturating_add(sqe.len as usize)
        })
    }

    /// Ends op `user_data` with `result`.
    pub(crate) fn complete(&self, user_data: u64, result: i32) {
        lock(&self.state).finish(user_data, result, 0);
    }

    /// Posts a completion of multishot op `user_data` with `F_MORE` (it stays in flight).
    pub(crate) fn more(&self, user_data: u64, result: i32) {
        let mut state = lock(&self.state);
        let sqe = state.in_flight_op(user_data);
        assert!(
            sqe.is_multishot(),
            "fake kernel: F_MORE on a single-shot op"
        );
        state.post(RawCqe {
            user_data,
            result,
            flags: CQE_F_MORE,
        });
    }

    /// Completes receive or read `user_data` with `bytes`, written to its buffer (as many as
    /// fit); returns how many.
    pub(crate) fn fill(&self, user_data: u64, bytes: &[u8]) -> usize {
        let mut state = lock(&self.state);
        let sqe = state.in_flight_op(user_data);
        let n = bytes.len().min(sqe.len as usize);
        let to = state.reach(sqe.addr, n);
        // SAFETY: `to` is `n` bytes inside exposed memory (`reach`), which the SQE names as its
        // op's buffer; `bytes` is a separate slice of the test's.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, n) };
        state.finish(user_data, n as i32, 0);
        n
    }

    /// Completes send or write `user_data` after taking at most `max` of its bytes (a short
    /// send when fewer than it has); returns the bytes taken.
    pub(crate) fn drain(&self, user_data: u64, max: usize) -> Vec<u8> {
        let mut state = lock(&self.state);
        let sqe = state.in_flight_op(user_data);
        let n = max.min(sqe.len as usize);
        let from = state.reach(sqe.addr, n);
        // SAFETY: `from` is `n` bytes inside exposed memory (`reach`) that the SQE names as the
        // bytes to send, initialised by the op's buffer.
        let taken = unsafe { std::slice::from_raw_parts(from.cast_const(), n) }.to_vec();
        state.written.extend_from_slice(&taken);
        state.finish(user_data, n as i32, 0);
        taken
    }

    /// Bytes sends and writes took so far.
    pub(crate) fn written(&self) -> Vec<u8> {
        lock(&self.state).written.clone()
    }

    /// A buffer-select receive `user_data` gets `bytes`: the next buffer of its group is taken
    /// and filled, and a completion naming it posted (`F_MORE` if `more`). With no buffer left
    /// the op ends with `ENOBUFS`; returns the buffer id taken, if any.
    pub(crate) fn recv_provided(&self, user_data: u64, bytes: &[u8], more: bool) -> Option<u16> {
        let mut state = lock(&self.state);
        let sqe = state.in_flight_op(user_data);
        assert!(
            sqe.flags & SQE_BUFFER_SELECT != 0,
            "fake kernel: not a buffer-select op"
        );
        let at = state
            .groups
            .iter()
            .position(|g| g.id == sqe.buf_group)
            .expect("fake kernel: the op's buffer group is registered");
        let group = &state.groups[at];
        if group_tail(group) == group.head {
            state.finish(user_data, -libc::ENOBUFS, 0);
            return None;
        }
        let index = usize::from(group.head & (group.entries - 1));
        // SAFETY: `index < entries`, inside the registered ring.
        let slot = unsafe { group.memory.as_ptr().add(index) };
        // SAFETY: entries between head and the tail were written, and published by the ring's
        // release store of the tail (`group_tail`); nothing writes them until they are consumed.
        let entry = unsafe { slot.read() };
        state.groups[at].head = state.groups[at].head.wrapping_add(1);
        let n = bytes.len().min(entry.len() as usize);
        let to = state.reach(entry.addr(), n);
        // SAFETY: `to` is `n` bytes inside exposed memory, the buffer the ring put in its
        // provided ring for the kernel to fill.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, n) };
        let flags = CQE_F_BUFFER | (u32::from(entry.bid()) << 16);
        let cqe = RawCqe {
            user_data,
            result: n as i32,
            flags: flags | if more { CQE_F_MORE } else { 0 },
        };
        if more {
            state.post(cqe);
        } else {
            state.finish(user_data, cqe.result, cqe.flags);
        }
        Some(entry.bid())
    }

    /// Buffers the ring has put in group `group` and the fake has not taken.
    pub(crate) fn provided_left(&self, group: u16) -> usize {
        let state = lock(&self.state);
        let Some(group) = state.groups.iter().find(|g| g.id == group) else {
            return 0;
        };
        let tail = group_tail(group);
        usize::from(tail.wrapping_sub(group.head))
    }

    /// The next enter fails with `errno`, after submitting what is queued if `submit_first`.
    pub(crate) fn fail_enter(&self, errno: i32, submit_first: bool) {
        lock(&self.state).faults.push_back(EnterFault {
            errno,
            submit_first,
        });
    }

    /// Completions past a full completion queue are dropped (counted) instead of buffered.
    pub(crate) fn drop_overflow(&self, drop: bool) {
        lock(&self.state).drop_overflow = drop;
    }

    /// Completions posted and not yet reaped, in the queue and in the overflow list.
    pub(crate) fn unreaped(&self) -> usize {
        let state = lock(&self.state);
        state.cq.len() + state.overflow.len()
    }

    /// Enters so far.
    pub(crate) fn enters(&self) -> u64 {
        lock(&self.state).enters
    }

    /// Buffer groups registered now.
    pub(crate) fn groups(&self) -> usize {
        lock(&self.state).groups.len()
    }
}
