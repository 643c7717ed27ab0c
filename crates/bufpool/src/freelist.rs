//! The shared free list: a lock-free stack of buffer ids (a Treiber stack over indices).
//!
//! # Layout
//!
//! ```text
//!  head: u64 = [ tag : 32 bits ][ id of the top buffer, or EMPTY : 32 bits ]
//!  next: [u32; max buffers]      next[id] = the id below `id` while `id` is on the stack
//! ```
//!
//! Every successful push or pop increments the tag, so a pop that read `head`, was preempted
//! while the top buffer was popped and pushed back (the ABA problem), fails its
//! compare-and-swap instead of installing a stale `next`. Ids are plain integers, so a stale
//! read of `next` is harmless: it is only used if the tag proves nothing changed.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

const EMPTY: u32 = u32::MAX;

pub(crate) struct FreeList {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
}

fn pack(tag: u32, id: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(id)
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

    /// Pushes `id`, which the caller owns and which is not on the list.
    ///
    /// The successful exchange is `SeqCst`: together with the `SeqCst` load of the waiter count
    /// that follows it in `Shared::release`, it forms the store-load pair that guarantees a
    /// waiter either sees this id or is seen by the releaser (no lost wake-up). It also
    /// releases the buffer's contents to whoever pops it.
    pub(crate) fn push(&self, id: u16) {
        let id = u32::from(id);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(head);
            // Relaxed: published by the exchange below.
            self.next[id as usize].store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), id),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Pops an id, if any; the caller then owns it.
    pub(crate) fn pop(&self) -> Option<u16> {
        // Acquire (and SeqCst on success, pairing with `push`): the popper sees the `next` link
        // and the buffer contents written before the push.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(head);
            if top == EMPTY {
                return None;
            }
            let below = self.next[top as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), below),
                Ordering::SeqCst,
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
}
