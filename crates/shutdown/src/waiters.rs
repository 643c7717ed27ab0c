//! A small slab of parked wakers, shared by the token and the tracker.
//!
//! Each parked future holds a [`WaiterKey`]; re-polling replaces its waker in place, dropping the
//! future removes it, and [`WakerSlab::take_all`] empties the slab when the awaited event fires.
//! Keys carry the slab's epoch so that a future woken by `take_all` and dropped later can never
//! remove a waker registered after that.

use std::task::Waker;

/// Where one parked future's waker lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterKey {
    epoch: u64,
    index: usize,
}

/// Parked wakers; always used under the owner's lock.
#[derive(Debug, Default)]
pub(crate) struct WakerSlab {
    /// Incremented by every `take_all`; keys from an older epoch are stale.
    epoch: u64,
    slots: Vec<Option<Waker>>,
    /// Indices of `None` slots, reused before `slots` grows.
    free: Vec<usize>,
}

impl WakerSlab {
    /// Parks `waker` under `key`, reusing the slot the key already names if it is still current.
    pub(crate) fn register(&mut self, key: &mut Option<WaiterKey>, waker: &Waker) {
        if let Some(k) = *key {
            if k.epoch == self.epoch {
                if let Some(slot @ Some(_)) = self.slots.get_mut(k.index) {
                    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        *slot = Some(waker.clone());
                    }
                    return;
                }
            }
        }
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(waker.clone());
                index
            }
            None => {
                self.slots.push(Some(waker.clone()));
                self.slots.len() - 1
            }
        };
        *key = Some(WaiterKey {
            epoch: self.epoch,
            index,
        });
    }

    /// Removes the waker parked under `key`, if it is still there.
    pub(crate) fn remove(&mut self, key: WaiterKey) {
        if key.epoch != self.epoch {
            return;
        }
        if let Some(slot) = self.slots.get_mut(key.index) {
            if slot.take().is_some() {
                self.free.push(key.index);
            }
        }
    }

    /// Empties the slab and returns every parked waker, to be woken after the lock is released.
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        self.epoch = self.epoch.wrapping_add(1);
        self.free.clear();
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }

    /// How many wakers are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Wakes every waker in `wakers`; call it with no lock held.
pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn stale_key_after_take_all_does_not_remove_a_newer_waiter() {
        let mut slab = WakerSlab::default();
        let mut old = None;
        slab.register(&mut old, Waker::noop());
        assert_eq!(slab.take_all().len(), 1);
        let mut new = None;
        slab.register(&mut new, Waker::noop());
        slab.remove(old.expect("registered"));
        assert_eq!(slab.len(), 1, "the stale key removed the newer waiter");
    }

    #[test]
    fn slots_are_reused_after_removal() {
        let mut slab = WakerSlab::default();
        let mut a = None;
        let mut b = None;
        slab.register(&mut a, Waker::noop());
        slab.remove(a.expect("registered"));
        slab.register(&mut b, Waker::noop());
        assert_eq!(slab.slots.len(), 1);
        assert_eq!(slab.len(), 1);
    }
}
