//! Loom models of the lock-free free list.

use loom::sync::Arc;
use loom::thread;

use crate::freelist::FreeList;

#[test]
fn concurrent_pops_never_return_the_same_id() {
    loom::model(|| {
        let list = Arc::new(FreeList::new(2));
        list.push(0);
        list.push(1);
        let other = {
            let list = list.clone();
            thread::spawn(move || list.pop())
        };
        let mine = list.pop();
        let theirs = other.join().expect("popper");
        assert!(mine.is_some() && theirs.is_some());
        assert_ne!(mine, theirs, "one id handed out twice");
    });
}

#[test]
fn pop_push_races_pop_without_losing_or_duplicating() {
    loom::model(|| {
        let list = Arc::new(FreeList::new(2));
        list.push(0);
        list.push(1);
        // The ABA shape: one thread pops and pushes back while the other pops.
        let recycler = {
            let list = list.clone();
            thread::spawn(move || {
                if let Some(id) = list.pop() {
                    list.push(id);
                }
            })
        };
        let taken = list.pop();
        recycler.join().expect("recycler");
        let mut rest = Vec::new();
        while let Some(id) = list.pop() {
            rest.push(id);
        }
        rest.extend(taken);
        rest.sort_unstable();
        assert_eq!(rest, [0, 1], "an id was lost or duplicated");
    });
}

#[test]
fn batch_push_races_batch_pop_without_losing_or_duplicating() {
    loom::model(|| {
        let list = Arc::new(FreeList::new(4));
        list.push(0);
        list.push(1);
        // One thread returns a batch while the other takes one (the caches' refill and flush).
        let flusher = {
            let list = list.clone();
            thread::spawn(move || list.push_all(&[2, 3]))
        };
        let mut taken = [0; 3];
        let count = list.pop_many(&mut taken);
        flusher.join().expect("flusher");
        let mut all = taken[..count].to_vec();
        while let Some(id) = list.pop() {
            all.push(id);
        }
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3], "an id was lost or duplicated");
    });
}
