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
