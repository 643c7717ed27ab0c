//! The shared free list: a lock-free stack of buffer ids (a Treiber stack over indices).
//!
//! # Layout
//!
//! ```text
//!  head: u64 = [ tag : 31 bits ][ waiters : 1 bit ][ id of the top buffer, or EMPTY : 32 bits ]
//!  next: [u32; max buffers]      next[id] = the id below `id` while `id` is on the stack
//! ```
//!
//! Every successful push or pop increments the tag, so a pop that read `head`, was preempted
//! while the top buffer was popped and pushed back (the ABA problem), fails its
//! compare-and-swap instead of installing a stale `next`. Ids are plain integers, so a stale
//! read of `next` is harmless: it is only used if the tag proves nothing changed.
//!
//! The `waiters` bit lives in the same word so that "the list is empty, I will wait" and "I
//! pushed a buffer" are ordered by one atomic variable: a waiter sets the bit only by an exchange
//! that also proves the list empty, and every push reports whether the bit was set. Either the
//! push comes first (the waiter sees the buffer) or the bit does (the pusher serves the waiter):
//! no wake-up is lost, under any memory model.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

const EMPTY: u32 = u32::MAX;
const WAITERS: u32 = 1;
const TAG_ONE: u32 = 2;

pub(crate) struct FreeList {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
}

/// `tag` holds the tag in its upper 31 bits and the waiters bit in bit 0.
fn pack(tag: u32, id: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(id)
}

/// The next tag, keeping the waiters bit.
fn bump(tag: u32) -> u32 {
    tag.wrapping_add(TAG_ONE)
}

fn unpack(word: u64) -> (u32, u32) {
    // Truncation is the point: the halves of the word.
    ((word >> 32) as u32, word as u32)
}

impl FreeList {
    /// An empty list able to hold ids `0..capacity`.
    pub(crate) fn new(capacity: usize) -> Self {
        FreeList {
            head: AtomicU64::new(pack(0, EMPTY)),
            next: (0..capacity).map(|_| AtomicU32::new(EMPTY)).collect(),
        }
    }

    /// Pushes `id`, which the caller owns and which is not on the list. Returns `true` if
    /// waiters were flagged, so the caller must serve them.
    ///
    /// The exchange is `AcqRel`: it releases the buffer's contents to whoever pops it.
    pub(crate) fn push(&self, id: u16) -> bool {
        let id = u32::from(id);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(head);
            // Relaxed: published by the exchange below.
            self.next[id as usize].store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(bump(tag), id),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return tag & WAITERS != 0,
                Err(actual) => head = actual,
            }
        }
    }

    /// Pushes `ids` (owned by the caller, none on the list) in one exchange; the first ends up
    /// on top. Returns `true` if waiters were flagged, as [`push`](FreeList::push) does.
    pub(crate) fn push_all(&self, ids: &[u16]) -> bool {
        let Some((&first, rest)) = ids.split_first() else {
            return false;
        };
        // Link the batch privately first: its ids are ours until the exchange publishes them.
        let mut below_first = u32::from(first);
        for &id in rest {
            self.next[below_first as usize].store(u32::from(id), Ordering::Relaxed);
            below_first = u32::from(id);
        }
        let last = below_first;
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(head);
            self.next[last as usize].store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(bump(tag), u32::from(first)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return tag & WAITERS != 0,
                Err(actual) => head = actual,
            }
        }
    }

    /// Pops up to `out.len()` ids in one exchange, filling `out` from the front; returns how
    /// many. Never flags waiters.
    ///
    /// The walk down the list may read links that another thread is changing; that is harmless
    /// for the same reason as in `pop`: links of ids on the list do not change while they stay
    /// there, and any change to the list bumps the tag, failing the exchange.
    pub(crate) fn pop_many(&self, out: &mut [u16]) -> usize {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(head);
            let mut count = 0;
            let mut cursor = top;
            while count < out.len() && cursor != EMPTY {
                // Ids pushed are `u16`; a stale link still holds a pushed id or EMPTY.
                out[count] = cursor as u16;
                count += 1;
                cursor = self.next[cursor as usize].load(Ordering::Relaxed);
            }
            if count == 0 {
                return 0;
            }
            match self.head.compare_exchange_weak(
                head,
                pack(bump(tag), cursor),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return count,
                Err(actual) => head = actual,
            }
        }
    }

    /// Whether a waiter is flagged. A hint only (a relaxed load): callers that must not miss a
    /// waiter use the result of a push.
    pub(crate) fn has_waiters(&self) -> bool {
        let (tag, _) = unpack(self.head.load(Ordering::Relaxed));
        tag & WAITERS != 0
    }

    /// Pops an id, if any; the caller then owns it.
    pub(crate) fn pop(&self) -> Option<u16> {
        self.pop_or_flag(false)
    }

    /// Pops an id or, if the list is empty, sets the waiters bit in the same exchange.
    pub(crate) fn pop_or_flag_waiters(&self) -> Option<u16> {
        self.pop_or_flag(true)
    }

    /// Clears the waiters bit (the caller holds the waiter queue's lock and it is empty).
    pub(crate) fn clear_waiters(&self) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(head);
            if tag & WAITERS == 0 {
                return;
            }
            match self.head.compare_exchange_weak(
                head,
                pack(bump(tag) & !WAITERS, top),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    fn pop_or_flag(&self, flag_if_empty: bool) -> Option<u16> {
        // Acquire (on load, failure and success, pairing with `push`): the popper sees the `next`
        // link and the buffer contents written before the push.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(head);
            if top == EMPTY {
                if !flag_if_empty || tag & WAITERS != 0 {
                    return None;
                }
                match self.head.compare_exchange_weak(
                    head,
                    pack(bump(tag) | WAITERS, EMPTY),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return None,
                    Err(actual) => {
                        head = actual;
                        continue;
                    }
                }
            }
            let below = self.next[top as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(bump(tag), below),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // `top` came from a push of a `u16`.
                Ok(_) => return u16::try_from(top).ok(),
                Err(actual) => head = actual,
            }
        }
    }

    /// How many ids are on the list (walks it; for tests, not for hot paths).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let (_, mut cursor) = unpack(self.head.load(Ordering::Acquire));
        let mut count = 0;
        while cursor != EMPTY && count <= self.next.len() {
            count += 1;
            cursor = self.next[cursor as usize].load(Ordering::Relaxed);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_order_and_empty() {
        let list = FreeList::new(4);
        assert_eq!(list.pop(), None);
        list.push(1);
        list.push(3);
        assert_eq!(list.len(), 2);
        assert_eq!(list.pop(), Some(3));
        assert_eq!(list.pop(), Some(1));
        assert_eq!(list.pop(), None);
    }

    #[test]
    fn batches_keep_order_and_stop_at_empty() {
        let list = FreeList::new(8);
        list.push(7);
        assert!(!list.push_all(&[1, 2, 3]));
        assert!(!list.push_all(&[]));
        assert_eq!(list.len(), 4);
        let mut out = [0; 3];
        assert_eq!(list.pop_many(&mut out), 3);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(list.pop_many(&mut out), 1);
        assert_eq!(out[0], 7);
        assert_eq!(list.pop_many(&mut out), 0);
        assert_eq!(list.pop_or_flag_waiters(), None);
        assert!(list.has_waiters());
        assert!(list.push_all(&[5]), "a batch push reports the waiters");
    }
}
