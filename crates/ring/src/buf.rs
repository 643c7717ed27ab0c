//! Owned I/O buffers: what an operation lends to the kernel. An operation takes its buffer by
//! value and gives it back with the result ([`BufResult`]), so no borrow can outlive a future
//! that was dropped while the kernel still writes.
//!
//! Sends take a buffer's initialised bytes ([`IoBuf::as_init`]); receives append to them, into
//! the spare capacity ([`IoBufMut::spare_mut`]). [`Slice`] narrows either to a range. These are
//! the only buffer traits in Weir: `weir-net` re-exports them, and they compile on every
//! platform (the reactor backend uses them too).
//!
//! ```text
//!  stable_ptr ─┐
//!              ▼
//!              ┌──────────────────────────┬────────────────────────┐
//!              │ initialised (bytes_init) │ spare capacity         │
//!              └──────────────────────────┴────────────────────────┘
//!              ◄────────────────────── bytes_total ────────────────►
//!   a send reads ▲▲▲▲▲▲▲▲▲▲▲▲   a receive writes here ▲▲▲▲, then set_init(init + n)
//! ```

use std::mem::MaybeUninit;
use std::ops::{Bound, RangeBounds};

/// The result of an owned-buffer operation: the outcome, and the buffer, always given back.
pub type BufResult<T, B> = (std::io::Result<T>, B);

/// A buffer the kernel may read from while an operation is in flight.
///
/// # Safety
///
/// `stable_ptr` must point to `bytes_init` initialised bytes that stay valid and unmoved for as
/// long as the value lives, even when the value itself is moved (heap memory, not inline
/// storage), and that nothing else writes while an operation owns the value. Buffers move by
/// value and are never pinned (`Unpin`).
pub unsafe trait IoBuf: Send + Unpin + 'static {
    /// Start of the bytes.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes hold data (what a send sends).
    fn bytes_init(&self) -> usize;

    /// The bytes that hold data.
    fn as_init(&self) -> &[u8] {
        // SAFETY: the trait's contract: `bytes_init` initialised bytes at `stable_ptr`, valid
        // while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.stable_ptr(), self.bytes_init()) }
    }

    /// A range of the bytes holding data, to send just those; [`Slice::into_inner`] gives the
    /// buffer back. The range is clamped to the initialised bytes (never a panic).
    ///
    /// With this trait in scope, `bytes.slice(..)` on a `bytes::Bytes` by value names this
    /// method (a `Slice<Bytes>`), not `Bytes::slice`; call `Bytes::slice(&bytes, ..)` for that.
    ///
    /// ```
    /// use weir_ring::IoBuf;
    ///
    /// let middle = b"hello world".to_vec().slice(6..);
    /// assert_eq!(middle.as_init(), b"world");
    /// assert_eq!(middle.into_inner().len(), 11);
    /// ```
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let (begin, end) = bounds(&range, self.bytes_init());
        Slice {
            buf: self,
            begin,
            end,
        }
    }
}

/// A buffer the kernel may write into while an operation is in flight.
///
/// # Safety
///
/// As [`IoBuf`], for `bytes_total` writable bytes from `stable_mut_ptr` (the same address as
/// `stable_ptr`), of which the first `bytes_init` are initialised; `set_init(n)` with
/// `bytes_init <= n <= bytes_total` makes `bytes_init` return `n`.
pub unsafe trait IoBufMut: IoBuf {
    /// Start of the whole capacity.
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Bytes that may be written.
    fn bytes_total(&self) -> usize;
    /// Records that the first `n` bytes hold data.
    ///
    /// # Safety
    ///
    /// The first `n` bytes must be initialised.
    unsafe fn set_init(&mut self, n: usize);

    /// The spare capacity after the bytes that hold data: where a receive writes.
    fn spare_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        let init = self.bytes_init();
        let len = self.bytes_total().saturating_sub(init);
        let at = self
            .stable_mut_ptr()
            .wrapping_add(init)
            .cast::<MaybeUninit<u8>>();
        // SAFETY: the trait's contract: `bytes_total` writable bytes at `stable_mut_ptr`, borrowed
        // mutably with `self`; `init <= bytes_total`; `MaybeUninit` asks nothing of the contents.
        unsafe { std::slice::from_raw_parts_mut(at, len) }
    }

    /// Records that the first `n` bytes of the spare capacity now hold data (a receive of `n`
    /// bytes completed).
    ///
    /// # Safety
    ///
    /// Those `n` bytes must have been initialised (by the kernel or a copy).
    unsafe fn advance_init(&mut self, n: usize) {
        let init = self.bytes_init() + n.min(self.bytes_total() - self.bytes_init());
        // SAFETY: the caller's guarantee: the bytes up to `init` are initialised.
        unsafe { self.set_init(init) };
    }

    /// Copies as much of `src` as fits into the spare capacity; returns how many bytes.
    fn extend_from(&mut self, src: &[u8]) -> usize {
        let spare = self.spare_mut();
        let n = spare.len().min(src.len());
        for (slot, &byte) in spare.iter_mut().zip(&src[..n]) {
            slot.write(byte);
        }
        // SAFETY: the loop initialised the first `n` spare bytes.
        unsafe { self.advance_init(n) };
        n
    }

    /// A range of the capacity to receive into, for example after a header already in the
    /// buffer; [`Slice::into_inner`] gives the buffer back. The range is clamped to the capacity,
    /// and its start to the bytes already holding data (a receive may not leave a gap of
    /// uninitialised bytes before it) — never a panic.
    ///
    /// ```
    /// use weir_ring::{IoBuf, IoBufMut};
    ///
    /// let mut header = Vec::with_capacity(64);
    /// header.extend_from_slice(b"len:");
    /// let body = header.slice_mut(4..);
    /// assert_eq!((body.begin(), body.bytes_total(), body.bytes_init()), (4, 60, 0));
    /// ```
    fn slice_mut(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let (begin, end) = bounds(&range, self.bytes_total());
        let begin = begin.min(self.bytes_init());
        Slice {
            buf: self,
            begin,
            end,
        }
    }
}

/// `range` resolved and clamped to `0..limit`, with `begin <= end`.
fn bounds(range: &impl RangeBounds<usize>, limit: usize) -> (usize, usize) {
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => limit,
    }
    .min(limit);
    let begin = match range.start_bound() {
        Bound::Included(&b) => b,
        Bound::Excluded(&b) => b.saturating_add(1),
        Bound::Unbounded => 0,
    }
    .min(end);
    (begin, end)
}

/// A range of an owned buffer (from [`IoBuf::slice`] or [`IoBufMut::slice_mut`]): operations
/// send from or receive into just that range, and give the slice back.
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B> Slice<B> {
    /// The whole buffer back.
    pub fn into_inner(self) -> B {
        self.buf
    }

    /// The whole buffer.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// Where the range starts in the buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Where the range ends in the buffer.
    pub fn end(&self) -> usize {
        self.end
    }
}

// SAFETY: the range is inside the buffer (clamped at construction), so the pointer and length
// describe part of the memory `B` guarantees.
unsafe impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.begin)
    }
    fn bytes_init(&self) -> usize {
        self.buf
            .bytes_init()
            .min(self.end)
            .saturating_sub(self.begin)
    }
}

// SAFETY: as above, for `end - begin` writable bytes; `begin` never exceeds the initialised
// length (see `slice_mut`), so recording `n` bytes after it leaves no uninitialised gap.
unsafe impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr().wrapping_add(self.begin)
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
    unsafe fn set_init(&mut self, n: usize) {
        // Never below what the whole buffer holds: a receive into a range must not forget data
        // after it.
        let init = (self.begin + n.min(self.end - self.begin)).max(self.buf.bytes_init());
        // SAFETY: the caller initialised `n` bytes from `begin`, the bytes before `begin` were
        // initialised already, and those up to the buffer's own length were too.
        unsafe { self.buf.set_init(init) };
    }
}

// SAFETY: a `Vec`'s elements live on the heap and do not move when the `Vec` does.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the whole capacity belongs to the `Vec`.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        if n > self.len() {
            // SAFETY: the caller guarantees `n` initialised bytes, kept within the capacity.
            unsafe { self.set_len(n.min(self.capacity())) };
        }
    }
}

// SAFETY: a boxed slice lives on the heap and does not move with the box.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; every byte of a boxed slice is initialised already, so it has no spare
// capacity and `set_init` has nothing to record.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
    unsafe fn set_init(&mut self, _n: usize) {}
}

// SAFETY: `Bytes` is immutable and its storage never moves while a handle exists.
unsafe impl IoBuf for bytes::Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: `BytesMut` keeps its storage on the heap and is never reallocated while an operation
// owns it (nothing calls its growing methods meanwhile).
unsafe impl IoBuf for bytes::BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the spare capacity belongs to the `BytesMut`.
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        if n > self.len() {
            // SAFETY: the caller guarantees `n` initialised bytes, kept within the capacity.
            unsafe { self.set_len(n.min(self.capacity())) };
        }
    }
}

// SAFETY: a pool buffer has a fixed address for the pool's lifetime, which the `Buf` keeps alive,
// and the `Buf` is its only owner.
#[cfg(feature = "bufpool")]
unsafe impl IoBuf for weir_bufpool::Buf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the whole capacity is initialised (pools zero their regions).
#[cfg(feature = "bufpool")]
unsafe impl IoBufMut for weir_bufpool::Buf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_ptr().as_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // Grow-only, like the other buffers: recording a receive never forgets data.
        if n > self.len() {
            let _ = self.set_len(n.min(self.capacity()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_capacity_follows_the_initialised_bytes() {
        let mut buf = Vec::with_capacity(8);
        buf.extend_from_slice(b"ab");
        assert_eq!(buf.spare_mut().len(), 6);
        assert_eq!(buf.extend_from(b"cdefghij"), 6);
        assert_eq!(buf, b"abcdefgh");
        assert_eq!(buf.extend_from(b"x"), 0);
    }

    #[test]
    fn slices_clamp_instead_of_panicking() {
        let sent = b"hello".to_vec().slice(3..100);
        assert_eq!(sent.as_init(), b"lo");
        let empty = b"hello".to_vec().slice(9..);
        assert_eq!(empty.as_init(), b"");
        let mut room = Vec::with_capacity(16).slice_mut(4..8);
        assert_eq!(
            (room.begin(), room.bytes_total()),
            (0, 8),
            "start clamped to the data"
        );
        assert_eq!(room.extend_from(b"0123456789"), 8);
        assert_eq!(room.into_inner(), b"01234567");
    }

    #[cfg(feature = "bufpool")]
    #[test]
    fn recording_a_receive_into_a_slice_never_shortens_the_buffer() {
        let pool = weir_bufpool::Config::new(256, 1).build().expect("pool");
        let mut buf = pool.try_get().expect("buffer");
        buf.extend_from(&[7; 100]);
        let mut head = buf.slice_mut(..10);
        assert_eq!(head.extend_from(b"more"), 0, "the range is full");
        assert_eq!(
            head.into_inner().len(),
            100,
            "the bytes after the range were kept"
        );
    }

    #[test]
    fn a_receive_into_a_slice_keeps_what_came_before() {
        let mut buf = Vec::with_capacity(8);
        buf.extend_from_slice(b"hd");
        let mut body = buf.slice_mut(2..);
        assert_eq!(body.extend_from(b"xyz"), 3);
        assert_eq!(body.into_inner(), b"hdxyz");
    }
}
