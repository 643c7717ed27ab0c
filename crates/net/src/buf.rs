//! Owned buffers: an operation takes its buffer by value and gives it back with the result.

use bytes::{Bytes, BytesMut};

/// A buffer an operation may send from. Its bytes stay put while the value moves.
///
/// # Safety
///
/// `stable_ptr` must point to `bytes_init` initialised bytes that stay valid and unmoved for as
/// long as the value lives, even when it is moved (heap memory), and are not written through
/// another path while an operation owns the value.
pub unsafe trait IoBuf: Send + 'static {
    /// Start of the bytes.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes hold data.
    fn bytes_init(&self) -> usize;

    /// A range of the bytes holding data, to send just those; [`Slice::into_inner`] gives the
    /// buffer back. The range is clamped to the initialised bytes (never a panic).
    ///
    /// With this trait in scope, `bytes.slice(..)` on a `bytes::Bytes` by value names this
    /// method (a `Slice<Bytes>`), not `Bytes::slice`; call `Bytes::slice(&bytes, ..)` for that.
    ///
    /// ```
    /// use weir_net::IoBuf;
    ///
    /// let middle = b"hello world".to_vec().slice(6..);
    /// assert_eq!(middle.bytes_init(), 5);
    /// assert_eq!(middle.into_inner().len(), 11);
    /// ```
    fn slice(self, range: impl std::ops::RangeBounds<usize>) -> Slice<Self>
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

/// `range` resolved and clamped to `0..limit`, with `begin <= end`.
fn bounds(range: &impl std::ops::RangeBounds<usize>, limit: usize) -> (usize, usize) {
    use std::ops::Bound;
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
        // SAFETY: the caller initialised `n` bytes from `begin`, and the bytes before `begin`
        // were initialised already.
        unsafe { self.buf.set_init(self.begin + n.min(self.end - self.begin)) };
    }
}

/// A buffer an operation may receive into.
///
/// # Safety
///
/// As [`IoBuf`], for `bytes_total` writable bytes from `stable_mut_ptr`.
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

    /// A range of the capacity to receive into, for example after a header already in the
    /// buffer; [`Slice::into_inner`] gives the buffer back. The range is clamped to the capacity,
    /// and its start to the bytes already holding data (a receive may not leave a gap of
    /// uninitialised bytes before it) — never a panic.
    ///
    /// ```
    /// use weir_net::{IoBuf, IoBufMut};
    ///
    /// let mut header = Vec::with_capacity(64);
    /// header.extend_from_slice(b"len:");
    /// let body = header.slice_mut(4..);
    /// assert_eq!((body.begin(), body.bytes_total(), body.bytes_init()), (4, 60, 0));
    /// ```
    fn slice_mut(self, range: impl std::ops::RangeBounds<usize>) -> Slice<Self>
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

/// The result of an owned-buffer operation: the outcome and the buffer, always given back.
pub type BufResult<T, B> = (std::io::Result<T>, B);

// SAFETY: a `Vec`'s elements are on the heap and do not move with the `Vec`.
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
            // SAFETY: the caller guarantees `n` initialised bytes, within the capacity.
            unsafe { self.set_len(n.min(self.capacity())) };
        }
    }
}

// SAFETY: a boxed slice is on the heap.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; all of it is initialised.
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
unsafe impl IoBuf for Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: `BytesMut` keeps its storage on the heap; we never reallocate it while owned by an op.
unsafe impl IoBuf for BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the spare capacity belongs to the `BytesMut`.
unsafe impl IoBufMut for BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        if n > self.len() {
            // SAFETY: the caller guarantees `n` initialised bytes, within the capacity.
            unsafe { self.set_len(n.min(self.capacity())) };
        }
    }
}

// SAFETY: a pool buffer has a fixed address for the pool's lifetime, which the `Buf` keeps alive.
unsafe impl IoBuf for weir_bufpool::Buf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the whole capacity is initialised (pools zero their regions).
unsafe impl IoBufMut for weir_bufpool::Buf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_ptr().as_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        let _ = self.set_len(n.min(self.capacity()));
    }
}

/// Adapts Weir's buffer traits to the ring's (same contract, separate crates).
#[cfg(target_os = "linux")]
pub(crate) struct RingBuf<B>(pub(crate) B);

// SAFETY: forwards to `B`'s `IoBuf`, whose contract is the same.
#[cfg(target_os = "linux")]
unsafe impl<B: IoBuf> weir_ring::IoBuf for RingBuf<B> {
    fn stable_ptr(&self) -> *const u8 {
        self.0.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.0.bytes_init()
    }
}

// SAFETY: forwards to `B`'s `IoBufMut`, whose contract is the same.
#[cfg(target_os = "linux")]
unsafe impl<B: IoBufMut> weir_ring::IoBufMut for RingBuf<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.0.stable_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.0.bytes_total()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { self.0.set_init(n) }
    }
}
