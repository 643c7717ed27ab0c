//! `Buf`: the owned handle to one pooled buffer.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use bytes::Bytes;

use crate::Error;
use crate::pool::SharedRef;

/// One buffer from a [`Pool`](crate::Pool): `len` valid bytes out of a fixed capacity.
///
/// Dropping it returns the buffer to its pool, from any thread. [`freeze`](Buf::freeze) turns it
/// into `bytes::Bytes` without copying.
pub struct Buf {
    /// The pool; the id's unit (see the `pool` module) keeps its memory alive while this
    /// buffer exists.
    shared: SharedRef,
    /// Start of the buffer; `capacity` bytes, initialised (regions are zeroed at allocation).
    /// Invariant: no other `Buf` has this id, so this handle has exclusive access.
    ptr: NonNull<u8>,
    id: u16,
    /// Invariant: `len <= capacity`.
    len: usize,
}

// SAFETY: a `Buf` is the unique owner of its bytes (see the invariant on `ptr`), like a
// `Box<[u8]>`; the pool it points into is `Sync` (atomics and mutexes only), and releasing into
// whichever thread's cache is current is the point of the caches.
unsafe impl Send for Buf {}
// SAFETY: shared references only read the bytes; see above.
unsafe impl Sync for Buf {}

impl Buf {
    /// `id` must be owned by the caller, with its unit, which pass to the new `Buf`.
    pub(crate) fn new(shared: SharedRef, ptr: NonNull<u8>, id: u16, len: usize) -> Self {
        Buf {
            shared,
            ptr,
            id,
            len,
        }
    }

    /// The buffer's id in its pool (what the kernel reports for provided buffers).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        // SAFETY: this buffer's unit keeps the pool alive.
        unsafe { self.shared.get() }.buffer_size
    }

    /// Sets how many bytes are valid (after filling them through [`as_full_mut`](Buf::as_full_mut)).
    ///
    /// # Errors
    ///
    /// [`Error::LengthOutOfRange`] if `len` exceeds the capacity; the length is unchanged.
    pub fn set_len(&mut self, len: usize) -> Result<(), Error> {
        if len > self.capacity() {
            return Err(Error::LengthOutOfRange {
                len,
                capacity: self.capacity(),
            });
        }
        self.len = len;
        Ok(())
    }

    /// The whole capacity, to read into. Bytes beyond `len` hold whatever the buffer held before
    /// (zeroes when fresh) — never uninitialised memory.
    pub fn as_full_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `capacity` initialised bytes owned exclusively by this `Buf`
        // (the invariant on `ptr`), alive while `shared` is.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity()) }
    }

    /// The buffer's address, for handing to the kernel.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Turns the buffer into `bytes::Bytes` holding its `len` bytes, without copying. The buffer
    /// returns to the pool when the last clone (or slice) of those `Bytes` drops.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }

    /// Gives up ownership without returning the buffer: only its id remains, to be passed to
    /// the kernel (a provided buffer ring) and later rebuilt with
    /// [`Pool::from_raw`](crate::Pool::from_raw). The pool counts it as in use until then, and
    /// its memory stays allocated (the kernel may still write it) until the rebuilt `Buf` drops.
    pub fn into_raw(self) -> u16 {
        std::mem::ManuallyDrop::new(self).id
    }
}

impl Deref for Buf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: as in `as_full_mut`, and `len <= capacity` (the invariant on `len`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.as_full_mut()[..len]
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for Buf {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Drop for Buf {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: this `Buf` owns `id` and its unit and passes both on; nothing of `self` is
        // used afterwards.
        unsafe { self.shared.release(self.id, self.ptr) };
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf")
            .field("id", &self.id)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}
