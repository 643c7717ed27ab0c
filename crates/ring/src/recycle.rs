//! Recycled op boxes: an op's data lives in a heap box from submission to its final CQE (the
//! kernel holds pointers into it), and the box is given back here when the op's future takes
//! the data out. The next op of the same type on the same thread reuses it, so a steady stream
//! of reads and writes allocates nothing.
//!
//! Each thread keeps up to [`PER_TYPE`] empty boxes of each of up to [`TYPES`] op types; a box
//! beyond that goes back to the allocator. Syscall-free: Miri runs this module's tests.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Empty boxes kept per op type and thread.
const PER_TYPE: usize = 64;
/// Op types kept per thread (an application uses a handful: receive, send, accept...).
const TYPES: usize = 16;

/// Empty boxes of one type; each element is a `Box<MaybeUninit<T>>` for that type.
struct Shelf {
    ty: TypeId,
    boxes: Vec<Box<dyn Any>>,
}

thread_local! {
    static SHELVES: RefCell<Vec<Shelf>> = const { RefCell::new(Vec::new()) };
}

/// Boxes `data`, reusing an empty box of this type from this thread if one is kept.
pub(crate) fn boxed<T: 'static>(data: T) -> Box<T> {
    let empty = SHELVES
        .try_with(|shelves| {
            let mut shelves = shelves.try_borrow_mut().ok()?;
            let shelf = shelves.iter_mut().find(|s| s.ty == TypeId::of::<T>())?;
            shelf.boxes.pop()?.downcast::<MaybeUninit<T>>().ok()
        })
        .ok()
        .flatten();
    match empty {
        Some(mut slot) => {
            slot.write(data);
            let raw = Box::into_raw(slot).cast::<T>();
            // SAFETY: `raw` comes from a `Box<MaybeUninit<T>>` that was just initialised:
            // same allocation, same layout, and the value is valid.
            unsafe { Box::from_raw(raw) }
        }
        None => Box::new(data),
    }
}

/// Moves the data out of `boxed` and keeps the empty box for the next op of this type.
pub(crate) fn unbox<T: 'static>(boxed: Box<T>) -> T {
    let raw = Box::into_raw(boxed);
    // SAFETY: `raw` is a valid, initialised `T` that we own; it is read exactly once.
    let data = unsafe { raw.read() };
    // SAFETY: the same allocation, now treated as uninitialised (`MaybeUninit<T>` has `T`'s
    // layout), so the value just read out is not dropped twice.
    let empty = unsafe { Box::from_raw(raw.cast::<MaybeUninit<T>>()) };
    keep(empty);
    data
}

fn keep<T: 'static>(empty: Box<MaybeUninit<T>>) {
    if size_of::<T>() == 0 {
        return;
    }
    // Off-thread or during thread exit the box simply goes back to the allocator.
    let _ = SHELVES.try_with(|shelves| {
        let Ok(mut shelves) = shelves.try_borrow_mut() else {
            return;
        };
        let ty = TypeId::of::<T>();
        let at = match shelves.iter().position(|s| s.ty == ty) {
            Some(at) => at,
            None if shelves.len() < TYPES => {
                shelves.push(Shelf {
                    ty,
                    boxes: Vec::new(),
                });
                shelves.len() - 1
            }
            None => return,
        };
        let shelf = &mut shelves[at];
        if shelf.boxes.len() < PER_TYPE {
            shelf.boxes.push(empty);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept<T: 'static>() -> usize {
        SHELVES.with(|shelves| {
            shelves
                .borrow()
                .iter()
                .find(|s| s.ty == TypeId::of::<T>())
                .map_or(0, |s| s.boxes.len())
        })
    }

    #[test]
    fn a_box_comes_back_and_is_reused() {
        let first = boxed(vec![1u8, 2, 3]);
        let address = &raw const *first;
        assert_eq!(unbox(first), vec![1, 2, 3]);
        assert_eq!(kept::<Vec<u8>>(), 1);
        let second = boxed(vec![4u8]);
        assert_eq!(&raw const *second, address, "the kept box is reused");
        assert_eq!(kept::<Vec<u8>>(), 0);
        assert_eq!(*second, vec![4]);
        drop(second); // a box dropped without `unbox` frees normally
    }

    #[test]
    fn types_never_share_boxes() {
        let a = boxed([7u64; 4]);
        let _ = unbox(a);
        let b = boxed([7u32; 8]);
        assert_eq!(
            kept::<[u64; 4]>(),
            1,
            "a box of another type stays on its shelf"
        );
        assert_eq!(*b, [7; 8]);
    }

    #[test]
    fn shelves_are_bounded() {
        let boxes: Vec<_> = (0..PER_TYPE + 10).map(|i| boxed((i, [0u8; 3]))).collect();
        for b in boxes {
            let _ = unbox(b);
        }
        assert_eq!(kept::<(usize, [u8; 3])>(), PER_TYPE);
    }

    #[test]
    fn data_with_a_destructor_is_dropped_once() {
        use std::rc::Rc;
        let counted = Rc::new(());
        let b = boxed(counted.clone());
        let back = unbox(b);
        assert_eq!(Rc::strong_count(&counted), 2);
        drop(back);
        let again = boxed(counted.clone());
        assert_eq!(
            Rc::strong_count(&counted),
            2,
            "the reused box held no stale value"
        );
        drop(again);
        assert_eq!(Rc::strong_count(&counted), 1);
    }

    #[test]
    fn zero_sized_data_is_fine() {
        let b = boxed(());
        unbox(b);
        assert_eq!(kept::<()>(), 0);
    }
}
