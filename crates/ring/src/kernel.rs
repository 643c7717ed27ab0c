//! The kernel side of a ring: the few io_uring operations the ring makes (push SQEs, enter,
//! take CQEs, read the queues' flags, register provided buffer rings), behind one enum.
//!
//! `Real` is the io_uring instance; in tests, `Fake` is a scripted kernel (`fake`) that lets the
//! ring's submit, reap and teardown logic run without syscalls, under Miri too. Dispatch is a
//! `match` on the enum: no allocation, no virtual call, and outside tests a single arm.

use std::io;
use std::ptr::NonNull;
use std::time::Duration;

use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{IoUring, squeue};

/// `IORING_ENTER_GETEVENTS`: the enter runs pending completion work and reaps.
pub(crate) const ENTER_GETEVENTS: u32 = 1;

/// What one `io_uring_enter` does besides submitting every queued SQE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enter {
    /// Submit only; completion work runs only if the kernel flagged some (`TASKRUN`, overflow).
    Submit,
    /// Submit and run pending completion work (`GETEVENTS`), without waiting.
    GetEvents,
    /// Submit and wait for one completion, at most `Duration`.
    WaitFor(Duration),
    /// Submit and wait for one completion.
    Wait,
}

/// One completion as the kernel posted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawCqe {
    pub(crate) user_data: u64,
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

/// The kernel a ring submits to.
#[cfg_attr(
    test,
    allow(
        clippy::large_enum_variant,
        reason = "the fake exists only in tests; the real ring stays unboxed"
    )
)]
pub(crate) enum Kernel {
    /// The io_uring instance.
    Real(IoUring),
    /// A scripted kernel for tests (`fake`).
    #[cfg(test)]
    Fake(crate::fake::FakeKernel),
}

impl Kernel {
    /// Free entries in the submission queue.
    #[inline]
    pub(crate) fn sq_room(&mut self) -> usize {
        match self {
            Kernel::Real(uring) => {
                let sq = uring.submission();
                sq.capacity() - sq.len()
            }
            #[cfg(test)]
            Kernel::Fake(fake) => fake.sq_room(),
        }
    }

    /// `true` if nothing is queued, no deferred completion work is flagged (`IORING_SQ_TASKRUN`)
    /// and the completion queue has not overflowed (`IORING_SQ_CQ_OVERFLOW`): an enter that
    /// must not wait has nothing to do.
    #[inline]
    pub(crate) fn is_idle(&mut self) -> bool {
        match self {
            Kernel::Real(uring) => {
                let sq = uring.submission();
                sq.is_empty() && !sq.taskrun() && !sq.cq_overflow()
            }
            #[cfg(test)]
            Kernel::Fake(fake) => fake.is_idle(),
        }
    }

    /// `IORING_SQ_CQ_OVERFLOW`: completions wait in the kernel's overflow list.
    #[inline]
    pub(crate) fn cq_overflow(&mut self) -> bool {
        match self {
            Kernel::Real(uring) => uring.submission().cq_overflow(),
            #[cfg(test)]
            Kernel::Fake(fake) => fake.cq_overflow(),
        }
    }

    /// Pushes `sqes` back to back, or none of them if the queue lacks room (`false`).
    ///
    /// # Safety
    ///
    /// Every pointer in `sqes` stays valid for what the op does with it until the op's final
    /// CQE has been taken.
    #[inline]
    pub(crate) unsafe fn push(&mut self, sqes: &[squeue::Entry]) -> bool {
        match self {
            Kernel::Real(uring) => {
                #[allow(clippy::disallowed_methods, reason = "the one place Weir pushes SQEs")]
                // SAFETY: the caller's contract is `push_multiple`'s.
                let pushed = unsafe { uring.submission().push_multiple(sqes) };
                pushed.is_ok()
            }
            #[cfg(test)]
            Kernel::Fake(fake) => fake.push(sqes),
        }
    }

    /// One `io_uring_enter`: submits every queued SQE and does what `how` says; returns how many
    /// SQEs were submitted.
    #[inline]
    pub(crate) fn enter(&mut self, how: Enter) -> io::Result<usize> {
        match self {
            Kernel::Real(uring) => match how {
                Enter::Submit => uring.submitter().submit(),
                Enter::GetEvents => {
                    let queued = u32::try_from(uring.submission().len()).unwrap_or(u32::MAX);
                    // SAFETY: no argument is passed, and the SQEs being submitted point into
                    // memory their ops keep until their final CQEs (`push`'s contract).
                    unsafe {
                        uring
                            .submitter()
                            .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
                    }
                }
                Enter::WaitFor(t) => {
                    let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                    uring
                        .submitter()
                        .submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                }
                Enter::Wait => uring.submitter().submit_and_wait(1),
            },
            #[cfg(test)]
            Kernel::Fake(fake) => fake.enter(how),
        }
    }

    /// Hands every completion in the queue to `each`, in order, then frees their slots.
    #[inline]
    pub(crate) fn reap(&mut self, mut each: impl FnMut(RawCqe)) {
        match self {
            Kernel::Real(uring) => {
                let mut completion = uring.completion();
                for cqe in &mut completion {
                    each(RawCqe {
                        user_data: cqe.user_data(),
                        result: cqe.result(),
                        flags: cqe.flags(),
                    });
                }
                completion.sync();
            }
            #[cfg(test)]
            Kernel::Fake(fake) => fake.reap(each),
        }
    }

    /// The kernel's count of completions it dropped since setup (cumulative, wrapping).
    #[inline]
    pub(crate) fn dropped(&mut self) -> u32 {
        match self {
            Kernel::Real(uring) => uring.completion().overflow(),
            #[cfg(test)]
            Kernel::Fake(fake) => fake.dropped(),
        }
    }

    /// Registers `entries` provided-buffer entries at `ring` as buffer group `group`.
    ///
    /// # Safety
    ///
    /// `ring` points to `entries` page-aligned entries that stay allocated until the group is
    /// unregistered (or the kernel refused it).
    pub(crate) unsafe fn register_buf_ring(
        &mut self,
        ring: NonNull<BufRingEntry>,
        entries: u16,
        group: u16,
    ) -> io::Result<()> {
        match self {
            Kernel::Real(uring) => {
                // SAFETY: the caller's contract is the registration's.
                unsafe {
                    uring.submitter().register_buf_ring_with_flags(
                        ring.as_ptr() as u64,
                        entries,
                        group,
                        0,
                    )
                }
            }
            #[cfg(test)]
            Kernel::Fake(fake) => fake.register_buf_ring(ring, entries, group),
        }
    }

    /// Unregisters buffer group `group`; the kernel no longer reads its memory after this.
    pub(crate) fn unregister_buf_ring(&mut self, group: u16) -> io::Result<()> {
        match self {
            Kernel::Real(uring) => uring.submitter().unregister_buf_ring(group),
            #[cfg(test)]
            Kernel::Fake(fake) => fake.unregister_buf_ring(group),
        }
    }
}
