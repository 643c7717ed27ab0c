//! What the ring accepts as I/O buffers: owned memory whose address survives a move.

/// A buffer the kernel may read from while an op is in flight.
///
/// # Safety
///
/// `stable_ptr` must point to `bytes_init` initialised bytes that stay valid and unmoved for as
/// long as the value lives, even when the value itself is moved (heap memory, not inline
/// storage), and nothing else may write them while the ring owns the value.
pub unsafe trait IoBuf: Send + 'static {
    /// Start of the bytes.
    fn stable_ptr(&self) -> *const u8;
    /// Bytes that hold data (what a write sends).
    fn bytes_init(&self) -> usize;
}

/// A buffer the kernel may write into while an op is in flight.
///
/// # Safety
///
/// As [`IoBuf`], for `bytes_total` bytes from `stable_mut_ptr`, which the kernel may write.
pub unsafe trait IoBufMut: IoBuf {
    /// Start of the whole capacity.
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Bytes the kernel may fill.
    fn bytes_total(&self) -> usize;
    /// Records that the first `n` bytes now hold data.
    ///
    /// # Safety
    ///
    /// The first `n` bytes must have been initialised (by the kernel's completed read).
    unsafe fn set_init(&mut self, n: usize);
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

// SAFETY: as above; the spare capacity is writable and owned by the `Vec`.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        if n > self.len() {
            // SAFETY: the caller guarantees the first `n` bytes are initialised, and `n` is at
            // most the capacity (the kernel writes no more than `bytes_total`).
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

// SAFETY: as above; every byte of a boxed slice is initialised already.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
    unsafe fn set_init(&mut self, _n: usize) {}
}
