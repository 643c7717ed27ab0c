//! Deadline timers: an indexed binary heap over a slab, shared by both backends.
//!
//! # Layout
//!
//! ```text
//!  heap:  [ (deadline, seq, slot) ... ]   min-heap by (deadline, seq): earliest first, and
//!                                         insertion order among equal deadlines
//!  slots: [ Slot { generation, state: Pending { heap_index, payload } | Fired | Vacant } ]
//! ```
//!
//! Every slot in the `Pending` state knows its position in the heap, so cancelling a timer
//! removes it in O(log n) at once: a million timers that are set and cancelled (the usual fate
//! of I/O timeouts) never pile up. Firing pops due entries in order, O(log n) each. A key carries
//! its slot's generation, so a stale key can never touch a reused slot.
//!
//! The structure does no I/O and keeps no clock: the caller passes `now`. `weir-reactor` drives
//! it from `Reactor::turn`; `weir-net` uses the same type beside the io_uring driver.

use std::time::Instant;

/// Names one timer in a [`Timers`]; stale keys (removed or reused slots) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    slot: u32,
    generation: u32,
}

#[derive(Debug)]
enum SlotState<T> {
    Pending { heap_index: usize, payload: T },
    Fired,
    Vacant { next_free: Option<u32> },
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    state: SlotState<T>,
}

#[derive(Debug, Clone, Copy)]
struct HeapEntry {
    deadline: Instant,
    seq: u64,
    slot: u32,
}

impl HeapEntry {
    fn before(&self, other: &HeapEntry) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

/// What [`Timers::state`] reports for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerState {
    /// Not due yet.
    Pending,
    /// Its deadline passed and [`Timers::fire_due`] fired it.
    Fired,
    /// Removed, or never there.
    Gone,
}

/// A set of deadline timers carrying a payload each (a `Waker`, typically).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use weir_reactor::{TimerState, Timers};
///
/// let start = Instant::now();
/// let mut timers = Timers::new();
/// let late = timers.insert(start + Duration::from_millis(20), "late");
/// let early = timers.insert(start + Duration::from_millis(10), "early");
/// let mut fired = Vec::new();
/// timers.fire_due(start + Duration::from_millis(15), |name| fired.push(name));
/// assert_eq!(fired, ["early"]);
/// assert_eq!(timers.state(early), TimerState::Fired);
/// assert!(timers.remove(late), "cancelled before it fired");
/// assert_eq!(timers.next_deadline(), None);
/// ```
#[derive(Debug)]
pub struct Timers<T> {
    heap: Vec<HeapEntry>,
    slots: Vec<Slot<T>>,
    free_head: Option<u32>,
    next_seq: u64,
    fired_total: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers::new()
    }
}

impl<T> Timers<T> {
    /// An empty set.
    pub fn new() -> Self {
        Timers {
            heap: Vec::new(),
            slots: Vec::new(),
            free_head: None,
            next_seq: 0,
            fired_total: 0,
        }
    }

    /// Timers pending now.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// `true` when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Timers fired since creation.
    pub fn fired_total(&self) -> u64 {
        self.fired_total
    }

    /// Adds a timer due at `deadline`.
    pub fn insert(&mut self, deadline: Instant, payload: T) -> TimerKey {
        let heap_index = self.heap.len();
        let state = SlotState::Pending {
            heap_index,
            payload,
        };
        let slot = match self.free_head {
            Some(slot) => {
                let entry = &mut self.slots[slot as usize];
                self.free_head = match entry.state {
                    SlotState::Vacant { next_free } => next_free,
                    _ => None,
                };
                entry.state = state;
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    state,
                });
                // More than 4 billion live timers is beyond any use; the slot index saturates
                // rather than wrapping (the generation check then keeps keys apart).
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(HeapEntry {
            deadline,
            seq,
            slot,
        });
        self.sift_up(heap_index);
        TimerKey {
            slot,
            generation: self.slots[slot as usize].generation,
        }
    }

    fn slot(&self, key: TimerKey) -> Option<&Slot<T>> {
        self.slots
            .get(key.slot as usize)
            .filter(|s| s.generation == key.generation)
    }

    /// Where `key`'s timer stands.
    pub fn state(&self, key: TimerKey) -> TimerState {
        match self.slot(key).map(|s| &s.state) {
            Some(SlotState::Pending { .. }) => TimerState::Pending,
            Some(SlotState::Fired) => TimerState::Fired,
            _ => TimerState::Gone,
        }
    }

    /// The payload of a pending timer, to update (a newer waker, say).
    pub fn payload_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        let slot = self
            .slots
            .get_mut(key.slot as usize)
            .filter(|s| s.generation == key.generation)?;
        match &mut slot.state {
            SlotState::Pending { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Removes `key`'s timer, pending or fired. Returns `true` if it was still pending
    /// (cancelled before its deadline).
    pub fn remove(&mut self, key: TimerKey) -> bool {
        let Some(slot) = self
            .slots
            .get_mut(key.slot as usize)
            .filter(|s| s.generation == key.generation)
        else {
            return false;
        };
        let previous = std::mem::replace(
            &mut slot.state,
            SlotState::Vacant {
                next_free: self.free_head,
            },
        );
        slot.generation = slot.generation.wrapping_add(1);
        self.free_head = Some(key.slot);
        match previous {
            SlotState::Pending { heap_index, .. } => {
                self.remove_heap_entry(heap_index);
                true
            }
            _ => false,
        }
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|e| e.deadline)
    }

    /// Fires every timer due at `now`, earliest first (insertion order among equal deadlines),
    /// handing each payload to `on_fire`. Fired timers stay `Fired` until removed. Returns how
    /// many fired.
    pub fn fire_due(&mut self, now: Instant, mut on_fire: impl FnMut(T)) -> usize {
        let mut fired = 0;
        while let Some(first) = self.heap.first() {
            if first.deadline > now {
                break;
            }
            let slot = first.slot as usize;
            self.remove_heap_entry(0);
            if let SlotState::Pending { payload, .. } =
                std::mem::replace(&mut self.slots[slot].state, SlotState::Fired)
            {
                on_fire(payload);
            }
            fired += 1;
        }
        self.fired_total += fired as u64;
        fired
    }

    fn remove_heap_entry(&mut self, index: usize) {
        let last = self.heap.len() - 1;
        self.heap.swap(index, last);
        self.heap.pop();
        if index < self.heap.len() {
            self.set_index(index);
            self.sift_down(index);
            self.sift_up(index);
        }
    }

    fn set_index(&mut self, index: usize) {
        let slot = self.heap[index].slot as usize;
        if let SlotState::Pending { heap_index, .. } = &mut self.slots[slot].state {
            *heap_index = index;
        }
    }

    fn sift_up(&mut self, mut index: usize) {
        while index > 0 {
            let parent = (index - 1) / 2;
            if !self.heap[index].before(&self.heap[parent]) {
                break;
            }
            self.heap.swap(index, parent);
            self.set_index(index);
            index = parent;
        }
        self.set_index(index);
    }

    fn sift_down(&mut self, mut index: usize) {
        loop {
            let left = 2 * index + 1;
            let right = left + 1;
            let mut smallest = index;
            if left < self.heap.len() && self.heap[left].before(&self.heap[smallest]) {
                smallest = left;
            }
            if right < self.heap.len() && self.heap[right].before(&self.heap[smallest]) {
                smallest = right;
            }
            if smallest == index {
                break;
            }
            self.heap.swap(index, smallest);
            self.set_index(index);
            index = smallest;
        }
        self.set_index(index);
    }
}

impl Timers<Option<std::task::Waker>> {
    /// The polling step of a sleep future: resolves once `deadline` passed (or its timer fired),
    /// otherwise parks `cx`'s waker in the timer `key` names, inserting it on the first poll.
    /// Removes the timer when it resolves; a future dropped early must `remove` its key itself.
    pub fn poll_deadline(
        &mut self,
        key: &mut Option<TimerKey>,
        deadline: Instant,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        match *key {
            None if Instant::now() >= deadline => Poll::Ready(()),
            None => {
                *key = Some(self.insert(deadline, Some(cx.waker().clone())));
                Poll::Pending
            }
            Some(current) => match self.state(current) {
                TimerState::Pending => {
                    if let Some(waker) = self.payload_mut(current) {
                        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            *waker = Some(cx.waker().clone());
                        }
                    }
                    Poll::Pending
                }
                TimerState::Fired | TimerState::Gone => {
                    self.remove(current);
                    *key = None;
                    Poll::Ready(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let now = Instant::now();
        let mut timers = Timers::new();
        for n in 0..10 {
            timers.insert(now, n);
        }
        let mut order = Vec::new();
        timers.fire_due(now, |n| order.push(n));
        assert_eq!(order, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn stale_key_does_not_touch_a_reused_slot() {
        let now = Instant::now();
        let mut timers = Timers::new();
        let old = timers.insert(now + Duration::from_secs(1), 1);
        assert!(timers.remove(old));
        let new = timers.insert(now + Duration::from_secs(1), 2);
        assert!(!timers.remove(old));
        assert_eq!(timers.state(new), TimerState::Pending);
        assert_eq!(timers.state(old), TimerState::Gone);
    }

    #[test]
    fn a_million_set_and_cancelled_timers_leave_nothing_behind() {
        let now = Instant::now();
        let mut timers = Timers::new();
        let keys: Vec<_> = (0..1_000_000u64)
            .map(|n| timers.insert(now + Duration::from_millis(n % 5_000), ()))
            .collect();
        for key in keys {
            assert!(timers.remove(key));
        }
        assert!(timers.is_empty());
        assert_eq!(timers.next_deadline(), None);
    }
}
