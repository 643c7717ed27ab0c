//! Telling Valgrind's memcheck what the kernel initialised.
//!
//! io_uring writes received bytes into user memory asynchronously, outside any syscall memcheck
//! can see, so memcheck would believe those bytes are still uninitialised. After a completion
//! reports `n` bytes, the ring marks them defined with memcheck's client request. Outside
//! Valgrind the request is a few register rotations that leave everything unchanged.

/// `VG_USERREQ__MAKE_MEM_DEFINED` (`VG_USERREQ_TOOL_BASE('M','C') + 2`).
#[cfg(all(target_arch = "x86_64", not(miri)))]
const MAKE_MEM_DEFINED: u64 = 0x4d43_0000 + 2;

/// Marks `len` bytes at `ptr` as initialised for memcheck (a no-op when not under Valgrind).
pub(crate) fn mark_initialised(ptr: *const u8, len: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let args: [u64; 6] = [MAKE_MEM_DEFINED, ptr as u64, len as u64, 0, 0, 0];
        let mut result: u64 = 0;
        // SAFETY: Valgrind's "special instruction" sequence: the four rotations of rdi add up to
        // 128 bits (rdi is unchanged) and `xchg rbx, rbx` is a no-op, so natively nothing
        // changes but rdx, which we declare. Under Valgrind it reads the six-word request at
        // `rax`, which lives across the block, and writes its answer to rdx.
        unsafe {
            core::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") result,
                in("rax") args.as_ptr(),
                inout("rdi") 0u64 => _,
                options(nostack),
            );
        }
        let _ = result;
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        let _ = (ptr, len);
    }
}
