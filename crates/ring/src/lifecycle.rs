//! The op lifecycle: a slab of in-flight operations keyed by `user_data`, with no syscalls in
//! it, so that loom, Miri and proptest can check it against scripted completions.
//!
//! # States
//!
//! ```text
//!                 insert                      CQE with F_MORE (multishot): queued, stays Active
//!   Vacant ──────────────────► Active ◄──────┐
//!     ▲                        │  │  └───────┘
//!     │ taken by the future    │  │ final CQE (no F_MORE): queued, finished = true
//!     │ (poll_complete /       │  ▼
//!     │  poll_next → None)     Active{finished}
//!     ├────────────────────────┘  │
//!     │                           │ future dropped before its final CQE
//!     │ final CQE: resources      ▼
//!     └──── handed back ───── Cancelled ──► (CQEs with F_MORE: handed back for clean-up)
//!           for release
//! ```
//!
//! # Invariants
//!
//! * An entry's resources (buffers, addresses, iovecs, the accepted descriptor's slot...) are
//!   owned by the entry from `insert` until the op's **final** CQE has been delivered *and* the
//!   future has let go — whichever is later. Only then are they handed back (`Completion`,
//!   `Reaped` or `Released`), never before: the kernel never sees memory Rust could free.
//! * `user_data` is `generation << 32 | index`; a vacated slot's generation is bumped, so a
//!   late CQE for an old op is reported as `Stale` and can never complete the op now in the slot.
//! * Every CQE is handed to exactly one place: the op's queue (its future consumes it), or back
//!   to the caller for clean-up (`Discard`, `Reaped`, `Released`) when nobody will consume it —
//!   so accepted descriptors and provided buffers in completions are never leaked.

use std::collections::VecDeque;
use std::fmt;
use std::task::{Context, Poll, Waker};

use crate::sync::{Mutex, lock};

/// One completion: the kernel's `res` and `flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    /// The result: a count, a descriptor, or `-errno`.
    pub result: i32,
    /// `IORING_CQE_F_*` flags (`F_MORE`, `F_BUFFER` with the buffer id in the upper 16 bits...).
    pub flags: u32,
}

/// `IORING_CQE_F_MORE`: more completions will follow for this op.
pub const CQE_F_MORE: u32 = 1 << 1;

impl Cqe {
    /// `true` if more completions follow (multishot).
    pub fn has_more(&self) -> bool {
        self.flags & CQE_F_MORE != 0
    }
}

/// Names one entry: what the kernel carries as `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId {
    index: u32,
    generation: u32,
}

impl OpId {
    /// The `user_data` to put in the SQE.
    pub fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    pub(crate) fn from_user_data(user_data: u64) -> Self {
        OpId {
            index: user_data as u32,
            generation: (user_data >> 32) as u32,
        }
    }
}

/// CQEs waiting for their future: the first one inline (a single-shot op never allocates), the
/// rest of a multishot burst in a deque.
#[derive(Default)]
struct CqeQueue {
    first: Option<Cqe>,
    rest: VecDeque<Cqe>,
}

impl CqeQueue {
    fn push_back(&mut self, cqe: Cqe) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(cqe);
        } else {
            self.rest.push_back(cqe);
        }
    }

    fn pop_front(&mut self) -> Option<Cqe> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn drain(&mut self) -> impl Iterator<Item = Cqe> + '_ {
        self.first.take().into_iter().chain(self.rest.drain(..))
    }
}

enum State<R> {
    Vacant {
        next_free: Option<u32>,
    },
    Active {
        resources: R,
        waker: Option<Waker>,
        queue: CqeQueue,
        finished: bool,
    },
    Cancelled {
        resources: R,
    },
}

struct Entry<R> {
    generation: u32,
    state: State<R>,
    /// The CQE queue's storage, kept while the slot is vacant so the next op in it (a re-armed
    /// multishot, say) queues a burst without allocating.
    spare: VecDeque<Cqe>,
}

struct Slab<R> {
    entries: Vec<Entry<R>>,
    free_head: Option<u32>,
    live: usize,
    cancelled: usize,
    stale: u64,
}

/// What [`OpTable::complete`] did with a CQE.
#[derive(Debug)]
pub enum CompleteOutcome<R> {
    /// Queued for the op's future; wake this (if it had parked).
    Queued(Option<Waker>),
    /// The op's future is gone and more CQEs follow: the CQE was handed to `discard` (to close
    /// an accepted descriptor or recycle a provided buffer); the resources stay parked.
    Discarded,
    /// The op's future is gone and this was its final CQE (handed to `discard`): release the
    /// resources.
    Reaped(R),
    /// No such op (a late CQE for a slot since reused, or garbage): ignored and counted.
    Stale,
}

/// What [`OpTable::cancel`] asks of the caller. CQEs the future never consumed have been handed
/// to `discard` in every case.
#[derive(Debug)]
pub enum CancelOutcome<R> {
    /// The op had finished: release the resources now.
    Released(R),
    /// The kernel still owns the op: queue an async cancel for `user_data`; the resources stay
    /// parked until the final CQE.
    CancelInKernel(u64),
    /// No such op (already taken).
    Gone,
}

/// The table of in-flight ops. All methods take `&self`: a completion may be recorded on the
/// driver's thread while a future is dropped on another.
pub struct OpTable<R> {
    slab: Mutex<Slab<R>>,
}

impl<R> Default for OpTable<R> {
    fn default() -> Self {
        OpTable::new()
    }
}

impl<R> OpTable<R> {
    /// An empty table.
    pub fn new() -> Self {
        OpTable {
            slab: Mutex::new(Slab {
                entries: Vec::new(),
                free_head: None,
                live: 0,
                cancelled: 0,
                stale: 0,
            }),
        }
    }

    /// Parks `resources` in a new entry; put the returned id's `user_data` in the SQE.
    pub fn insert(&self, resources: R) -> OpId {
        let mut slab = lock(&self.slab);
        slab.live += 1;
        let state = State::Active {
            resources,
            waker: None,
            queue: CqeQueue::default(),
            finished: false,
        };
        match slab.free_head {
            Some(index) => {
                let entry = &mut slab.entries[index as usize];
                let next_free = match entry.state {
                    State::Vacant { next_free } => next_free,
                    _ => None,
                };
                entry.state = state;
                if let State::Active { queue, .. } = &mut entry.state {
                    queue.rest = std::mem::take(&mut entry.spare);
                }
                let generation = entry.generation;
                slab.free_head = next_free;
                OpId { index, generation }
            }
            None => {
                let index = u32::try_from(slab.entries.len()).unwrap_or(u32::MAX);
                slab.entries.push(Entry {
                    generation: 0,
                    state,
                    spare: VecDeque::new(),
                });
                OpId {
                    index,
                    generation: 0,
                }
            }
        }
    }

    /// Records a CQE. If the op's future is gone, the CQE goes to `discard` with the parked
    /// resources (under the table's lock: `discard` must not call back into the table).
    pub fn complete(
        &self,
        user_data: u64,
        cqe: Cqe,
        discard: impl FnOnce(&mut R, Cqe),
    ) -> CompleteOutcome<R> {
        let id = OpId::from_user_data(user_data);
        let mut slab = lock(&self.slab);
        let Some(entry) = slab
            .entries
            .get_mut(id.index as usize)
            .filter(|e| e.generation == id.generation)
        else {
            slab.stale += 1;
            return CompleteOutcome::Stale;
        };
        match &mut entry.state {
            State::Active {
                waker,
                queue,
                finished,
                ..
            } => {
                if *finished {
                    // A CQE after the final one: the kernel never does this; treat it as stale
                    // rather than trust it.
                    slab.stale += 1;
                    return CompleteOutcome::Stale;
                }
                queue.push_back(cqe);
                *finished = !cqe.has_more();
                CompleteOutcome::Queued(waker.take())
            }
            State::Cancelled { resources } if cqe.has_more() => {
                discard(resources, cqe);
                CompleteOutcome::Discarded
            }
            State::Cancelled { .. } => match vacate(&mut slab, id.index) {
                Some(mut resources) => {
                    slab.cancelled -= 1;
                    discard(&mut resources, cqe);
                    CompleteOutcome::Reaped(resources)
                }
                None => CompleteOutcome::Stale,
            },
            State::Vacant { .. } => {
                slab.stale += 1;
                CompleteOutcome::Stale
            }
        }
    }

    /// For a single-shot op: its first CQE and its resources, once the final CQE is in (for an op
    /// like `SEND_ZC` the first carries the result and the last only says the kernel let go of
    /// the buffer; for ordinary ops they are the same CQE).
    ///
    /// Returns `Ready(None)` for an id that is no longer in the table.
    pub fn poll_complete(&self, id: OpId, cx: &mut Context<'_>) -> Poll<Option<(R, Cqe)>> {
        let mut slab = lock(&self.slab);
        let Some(entry) = slab.entry_mut(id) else {
            return Poll::Ready(None);
        };
        match &mut entry.state {
            State::Active {
                finished: true,
                queue,
                ..
            } => {
                let first = queue.pop_front();
                match (first, vacate(&mut slab, id.index)) {
                    (Some(cqe), Some(resources)) => Poll::Ready(Some((resources, cqe))),
                    _ => Poll::Ready(None),
                }
            }
            State::Active { waker, .. } => {
                park(waker, cx);
                Poll::Pending
            }
            _ => Poll::Ready(None),
        }
    }

    /// For a multishot op: the next CQE; `Ready(None)` after the final one has been returned,
    /// at which point the entry is gone and its resources are handed back through `on_end`.
    pub fn poll_next(&self, id: OpId, cx: &mut Context<'_>) -> Poll<Option<Cqe>> {
        let mut slab = lock(&self.slab);
        let Some(entry) = slab.entry_mut(id) else {
            return Poll::Ready(None);
        };
        match &mut entry.state {
            State::Active {
                queue,
                finished,
                waker,
                ..
            } => {
                if let Some(cqe) = queue.pop_front() {
                    return Poll::Ready(Some(cqe));
                }
                if *finished {
                    // Dropping the resources here is sound: the final CQE has been reaped.
                    drop(vacate(&mut slab, id.index));
                    return Poll::Ready(None);
                }
                park(waker, cx);
                Poll::Pending
            }
            _ => Poll::Ready(None),
        }
    }

    /// CQEs queued for op `id` that its future has not taken yet (0 for an unknown op).
    pub fn queued(&self, id: OpId) -> usize {
        let mut slab = lock(&self.slab);
        match slab.entry_mut(id).map(|entry| &entry.state) {
            Some(State::Active { queue, .. }) => {
                usize::from(queue.first.is_some()) + queue.rest.len()
            }
            _ => 0,
        }
    }

    /// The op's future is being dropped. CQEs it never consumed go to `discard` (under the
    /// table's lock).
    pub fn cancel(&self, id: OpId, mut discard: impl FnMut(&mut R, Cqe)) -> CancelOutcome<R> {
        let mut slab = lock(&self.slab);
        let Some(entry) = slab.entry_mut(id) else {
            return CancelOutcome::Gone;
        };
        let State::Active {
            finished,
            queue,
            resources,
            ..
        } = &mut entry.state
        else {
            return CancelOutcome::Gone;
        };
        for cqe in queue.drain() {
            discard(resources, cqe);
        }
        if *finished {
            return match vacate(&mut slab, id.index) {
                Some(resources) => CancelOutcome::Released(resources),
                None => CancelOutcome::Gone,
            };
        }
        let previous = std::mem::replace(&mut entry.state, State::Vacant { next_free: None });
        if let State::Active { resources, .. } = previous {
            entry.state = State::Cancelled { resources };
        }
        slab.cancelled += 1;
        CancelOutcome::CancelInKernel(id.user_data())
    }

    /// `true` if op `user_data` is still waiting for its final CQE (its future may be gone).
    pub fn is_pending(&self, user_data: u64) -> bool {
        let mut slab = lock(&self.slab);
        matches!(
            slab.entry_mut(OpId::from_user_data(user_data))
                .map(|entry| &entry.state),
            Some(
                State::Active {
                    finished: false,
                    ..
                } | State::Cancelled { .. }
            )
        )
    }

    /// The `user_data` of every op still waiting for its final CQE whose resources pass `keep`.
    pub fn pending(&self, mut keep: impl FnMut(&R) -> bool) -> Vec<u64> {
        let slab = lock(&self.slab);
        slab.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let resources = match &entry.state {
                    State::Active {
                        finished: false,
                        resources,
                        ..
                    }
                    | State::Cancelled { resources } => resources,
                    _ => return None,
                };
                let id = OpId {
                    index: u32::try_from(index).ok()?,
                    generation: entry.generation,
                };
                keep(resources).then(|| id.user_data())
            })
            .collect()
    }

    /// Runs `f` on the resources of op `user_data`, if it is in the table (under the table's
    /// lock: `f` must not call back into the table).
    pub fn update(&self, user_data: u64, f: impl FnOnce(&mut R)) {
        let mut slab = lock(&self.slab);
        if let Some(State::Active { resources, .. } | State::Cancelled { resources }) = slab
            .entry_mut(OpId::from_user_data(user_data))
            .map(|entry| &mut entry.state)
        {
            f(resources);
        }
    }

    /// Entries whose resources the table holds (active or cancelled).
    pub fn len(&self) -> usize {
        lock(&self.slab).live
    }

    /// `true` if no op is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries whose future is gone but whose final CQE has not arrived.
    pub fn cancelled(&self) -> usize {
        lock(&self.slab).cancelled
    }

    /// CQEs that matched no op.
    pub fn stale(&self) -> u64 {
        lock(&self.slab).stale
    }

    /// Takes every remaining entry's resources out, for a teardown that has given up waiting on
    /// the kernel: the caller must leak them (`mem::forget`), never drop them.
    pub fn take_all_for_leak(&self) -> Vec<R> {
        let mut slab = lock(&self.slab);
        let indices: Vec<u32> = (0..slab.entries.len() as u32).collect();
        indices
            .into_iter()
            .filter_map(|index| vacate(&mut slab, index))
            .collect()
    }
}

impl<R> Slab<R> {
    fn entry_mut(&mut self, id: OpId) -> Option<&mut Entry<R>> {
        self.entries
            .get_mut(id.index as usize)
            .filter(|e| e.generation == id.generation)
    }
}

/// Frees slot `index`, returning its resources; bumps the generation so old ids go stale.
fn vacate<R>(slab: &mut Slab<R>, index: u32) -> Option<R> {
    let free_head = slab.free_head;
    let entry = slab.entries.get_mut(index as usize)?;
    let previous = std::mem::replace(
        &mut entry.state,
        State::Vacant {
            next_free: free_head,
        },
    );
    let resources = match previous {
        State::Active {
            resources,
            mut queue,
            ..
        } => {
            queue.rest.clear();
            entry.spare = queue.rest;
            resources
        }
        State::Cancelled { resources } => resources,
        vacant @ State::Vacant { .. } => {
            entry.state = vacant;
            return None;
        }
    };
    entry.generation = entry.generation.wrapping_add(1);
    slab.free_head = Some(index);
    slab.live -= 1;
    Some(resources)
}

fn park(slot: &mut Option<Waker>, cx: &mut Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

impl<R> fmt::Debug for OpTable<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slab = lock(&self.slab);
        f.debug_struct("OpTable")
            .field("live", &slab.live)
            .field("cancelled", &slab.cancelled)
            .field("stale", &slab.stale)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    const DONE: Cqe = Cqe {
        result: 5,
        flags: 0,
    };
    const MORE: Cqe = Cqe {
        result: 7,
        flags: CQE_F_MORE,
    };

    #[test]
    fn complete_then_poll_hands_back_resources_once() {
        let table = OpTable::new();
        let id = table.insert(vec![1u8; 4]);
        assert!(table.poll_complete(id, &mut noop()).is_pending());
        assert!(matches!(
            table.complete(id.user_data(), DONE, |_, _| {}),
            CompleteOutcome::Queued(Some(_))
        ));
        let Poll::Ready(Some((buf, cqe))) = table.poll_complete(id, &mut noop()) else {
            panic!("completed op not ready");
        };
        assert_eq!((buf.len(), cqe), (4, DONE));
        assert!(table.is_empty());
        assert!(matches!(
            table.poll_complete(id, &mut noop()),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn cancel_before_completion_parks_resources_until_the_final_cqe() {
        let table = OpTable::new();
        let id = table.insert(String::from("kernel-owned"));
        let CancelOutcome::CancelInKernel(user_data) =
            table.cancel(id, |_, _| panic!("nothing unconsumed"))
        else {
            panic!("an in-flight op must be cancelled in the kernel");
        };
        assert_eq!((table.len(), table.cancelled()), (1, 1));
        let CompleteOutcome::Reaped(resources) = table.complete(user_data, DONE, |_, _| {}) else {
            panic!("the final CQE of a cancelled op reaps it");
        };
        assert_eq!(resources, "kernel-owned");
        assert!(table.is_empty());
    }

    #[test]
    fn late_cqe_never_completes_the_op_now_in_the_slot() {
        let table = OpTable::new();
        let old = table.insert(1);
        table.complete(old.user_data(), DONE, |_, _| {});
        assert!(table.poll_complete(old, &mut noop()).is_ready());
        let new = table.insert(2);
        assert_eq!(old.index, new.index, "the slot is reused");
        assert!(matches!(
            table.complete(old.user_data(), DONE, |_, _| {}),
            CompleteOutcome::Stale
        ));
        assert!(table.poll_complete(new, &mut noop()).is_pending());
        assert_eq!(table.stale(), 1);
    }

    #[test]
    fn multishot_stays_until_the_cqe_without_more() {
        let table = OpTable::new();
        let id = table.insert(());
        table.complete(id.user_data(), MORE, |_, _| {});
        table.complete(id.user_data(), MORE, |_, _| {});
        assert_eq!(table.poll_next(id, &mut noop()), Poll::Ready(Some(MORE)));
        assert_eq!(table.poll_next(id, &mut noop()), Poll::Ready(Some(MORE)));
        assert!(table.poll_next(id, &mut noop()).is_pending());
        table.complete(id.user_data(), DONE, |_, _| {});
        assert_eq!(table.poll_next(id, &mut noop()), Poll::Ready(Some(DONE)));
        assert_eq!(table.poll_next(id, &mut noop()), Poll::Ready(None));
        assert!(table.is_empty());
    }

    #[test]
    fn cancelled_multishot_hands_unconsumed_and_later_cqes_back_for_clean_up() {
        let table = OpTable::new();
        let id = table.insert(Vec::new());
        table.complete(id.user_data(), MORE, |_, _| {});
        let record = |cleaned: &mut Vec<Cqe>, cqe| cleaned.push(cqe);
        let CancelOutcome::CancelInKernel(user_data) = table.cancel(id, record) else {
            panic!("still in the kernel");
        };
        assert!(matches!(
            table.complete(user_data, MORE, record),
            CompleteOutcome::Discarded
        ));
        let CompleteOutcome::Reaped(cleaned) = table.complete(user_data, DONE, record) else {
            panic!("the final CQE reaps it");
        };
        assert_eq!(
            cleaned,
            [MORE, MORE, DONE],
            "every CQE was cleaned up exactly once"
        );
        assert!(table.is_empty());
    }
}
