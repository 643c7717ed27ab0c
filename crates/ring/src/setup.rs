//! Setting a ring up: the setup flags asked for and the fallbacks for older kernels, the features
//! Weir requires, and the probe of the opcodes the kernel supports.

use std::fmt;
use std::io;
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode};

use crate::error::{Error, setup_error};
use crate::ring::Ring;

/// An `IORING_SETUP_*` flag Weir may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SetupFlag {
    /// `IORING_SETUP_SUBMIT_ALL`: keep submitting a batch past an entry that fails.
    SubmitAll,
    /// `IORING_SETUP_COOP_TASKRUN`: no inter-processor interrupt to run completion work.
    CoopTaskrun,
    /// `IORING_SETUP_TASKRUN_FLAG`: the kernel flags pending completion work in the SQ ring.
    TaskrunFlag,
    /// `IORING_SETUP_SINGLE_ISSUER`: only the creating thread submits.
    SingleIssuer,
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only inside the owner's
    /// `io_uring_enter`.
    DeferTaskrun,
}

impl SetupFlag {
    /// The flag's name without the `IORING_SETUP_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            SetupFlag::SubmitAll => "SUBMIT_ALL",
            SetupFlag::CoopTaskrun => "COOP_TASKRUN",
            SetupFlag::TaskrunFlag => "TASKRUN_FLAG",
            SetupFlag::SingleIssuer => "SINGLE_ISSUER",
            SetupFlag::DeferTaskrun => "DEFER_TASKRUN",
        }
    }

    fn apply(self, builder: &mut io_uring::Builder) {
        match self {
            SetupFlag::SubmitAll => builder.setup_submit_all(),
            SetupFlag::CoopTaskrun => builder.setup_coop_taskrun(),
            SetupFlag::TaskrunFlag => builder.setup_taskrun_flag(),
            SetupFlag::SingleIssuer => builder.setup_single_issuer(),
            SetupFlag::DeferTaskrun => builder.setup_defer_taskrun(),
        };
    }
}

impl fmt::Display for SetupFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An io_uring opcode Weir uses, for the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Opcode {
    /// `IORING_OP_NOP`.
    Nop,
    /// `IORING_OP_READ`.
    Read,
    /// `IORING_OP_WRITE`.
    Write,
    /// `IORING_OP_READV`.
    Readv,
    /// `IORING_OP_WRITEV`.
    Writev,
    /// `IORING_OP_RECV`.
    Recv,
    /// `IORING_OP_SEND`.
    Send,
    /// `IORING_OP_SEND_ZC`.
    SendZc,
    /// `IORING_OP_SENDMSG`.
    SendMsg,
    /// `IORING_OP_RECVMSG`.
    RecvMsg,
    /// `IORING_OP_ACCEPT`.
    Accept,
    /// `IORING_OP_CONNECT`.
    Connect,
    /// `IORING_OP_CLOSE`.
    Close,
    /// `IORING_OP_TIMEOUT`.
    Timeout,
    /// `IORING_OP_LINK_TIMEOUT`.
    LinkTimeout,
    /// `IORING_OP_ASYNC_CANCEL`.
    AsyncCancel,
    /// `IORING_OP_POLL_ADD`.
    PollAdd,
    /// `IORING_OP_SHUTDOWN`.
    Shutdown,
    /// `IORING_OP_SPLICE`.
    Splice,
}

impl Opcode {
    /// Every opcode Weir uses.
    pub const ALL: &'static [Opcode] = &[
        Opcode::Nop,
        Opcode::Read,
        Opcode::Write,
        Opcode::Readv,
        Opcode::Writev,
        Opcode::Recv,
        Opcode::Send,
        Opcode::SendZc,
        Opcode::SendMsg,
        Opcode::RecvMsg,
        Opcode::Accept,
        Opcode::Connect,
        Opcode::Close,
        Opcode::Timeout,
        Opcode::LinkTimeout,
        Opcode::AsyncCancel,
        Opcode::PollAdd,
        Opcode::Shutdown,
        Opcode::Splice,
    ];

    /// The opcode's number.
    pub fn code(self) -> u8 {
        match self {
            Opcode::Nop => opcode::Nop::CODE,
            Opcode::Read => opcode::Read::CODE,
            Opcode::Write => opcode::Write::CODE,
            Opcode::Readv => opcode::Readv::CODE,
            Opcode::Writev => opcode::Writev::CODE,
            Opcode::Recv => opcode::Recv::CODE,
            Opcode::Send => opcode::Send::CODE,
            Opcode::SendZc => opcode::SendZc::CODE,
            Opcode::SendMsg => opcode::SendMsg::CODE,
            Opcode::RecvMsg => opcode::RecvMsg::CODE,
            Opcode::Accept => opcode::Accept::CODE,
            Opcode::Connect => opcode::Connect::CODE,
            Opcode::Close => opcode::Close::CODE,
            Opcode::Timeout => opcode::Timeout::CODE,
            Opcode::LinkTimeout => opcode::LinkTimeout::CODE,
            Opcode::AsyncCancel => opcode::AsyncCancel::CODE,
            Opcode::PollAdd => opcode::PollAdd::CODE,
            Opcode::Shutdown => opcode::Shutdown::CODE,
            Opcode::Splice => opcode::Splice::CODE,
        }
    }

    /// The opcode's name without the `IORING_OP_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Nop => "NOP",
            Opcode::Read => "READ",
            Opcode::Write => "WRITE",
            Opcode::Readv => "READV",
            Opcode::Writev => "WRITEV",
            Opcode::Recv => "RECV",
            Opcode::Send => "SEND",
            Opcode::SendZc => "SEND_ZC",
            Opcode::SendMsg => "SENDMSG",
            Opcode::RecvMsg => "RECVMSG",
            Opcode::Accept => "ACCEPT",
            Opcode::Connect => "CONNECT",
            Opcode::Close => "CLOSE",
            Opcode::Timeout => "TIMEOUT",
            Opcode::LinkTimeout => "LINK_TIMEOUT",
            Opcode::AsyncCancel => "ASYNC_CANCEL",
            Opcode::PollAdd => "POLL_ADD",
            Opcode::Shutdown => "SHUTDOWN",
            Opcode::Splice => "SPLICE",
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which setup flags and features the ring got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// The setup flags that were accepted.
    pub flags: Vec<SetupFlag>,
    /// `true` if a kernel thread polls the submission queue.
    pub sqpoll: bool,
}

/// Which opcodes the kernel supports, from `IORING_REGISTER_PROBE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Opcodes Weir uses that the kernel supports.
    pub supported: Vec<Opcode>,
    /// Opcodes Weir uses that the kernel lacks.
    pub missing: Vec<Opcode>,
}

impl ProbeReport {
    /// `true` if the kernel supports `opcode`.
    pub fn supports(&self, opcode: Opcode) -> bool {
        self.supported.contains(&opcode)
    }
}

/// The largest submission queue the kernel accepts (`IORING_MAX_ENTRIES`).
pub const MAX_ENTRIES: u32 = 32_768;

/// Builds a [`Ring`].
#[derive(Debug, Clone)]
pub struct Builder {
    entries: u32,
    cq_entries: Option<u32>,
    sqpoll_idle: Option<Duration>,
    plain: bool,
    defer_taskrun: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            entries: 256,
            cq_entries: None,
            sqpoll_idle: None,
            plain: false,
            defer_taskrun: true,
        }
    }
}

impl Builder {
    /// Submission queue entries, 1 to [`MAX_ENTRIES`] (rounded up to a power of two by the
    /// kernel).
    pub fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// Completion queue entries (default: twice the submission queue).
    pub fn cq_entries(mut self, entries: u32) -> Self {
        self.cq_entries = Some(entries);
        self
    }

    /// Lets a kernel thread poll the submission queue, sleeping after `idle`. Off by default: it
    /// burns a core.
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.sqpoll_idle = Some(idle);
        self
    }

    /// Whether to ask for `IORING_SETUP_DEFER_TASKRUN` (on by default; see `build`).
    pub fn defer_taskrun(mut self, on: bool) -> Self {
        self.defer_taskrun = on;
        self
    }

    /// Asks for no optional setup flags at all (for comparisons and diagnostics).
    pub fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    /// Sets the ring up, with the best flags the kernel accepts. The calling thread becomes the
    /// ring's owner: the one that turns it (see [`Ring`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a queue size of 0 or above [`MAX_ENTRIES`];
    /// [`Error::Unavailable`] if `io_uring_setup` fails (ENOSYS, EPERM, ENOMEM...);
    /// [`Error::Missing`] if the kernel lacks a feature Weir relies on.
    pub fn build(self) -> Result<Ring, Error> {
        if self.entries == 0 || self.entries > MAX_ENTRIES {
            return Err(Error::InvalidConfig(format!(
                "{} submission queue entries (1 to {MAX_ENTRIES})",
                self.entries
            )));
        }
        // Most capable first; each fallback drops the flags an older kernel refuses.
        // DEFER_TASKRUN batches completion work into the owner's own io_uring_enter.
        let all: &[SetupFlag] = &[
            SetupFlag::SubmitAll,
            SetupFlag::CoopTaskrun,
            SetupFlag::TaskrunFlag,
            SetupFlag::SingleIssuer,
            SetupFlag::DeferTaskrun,
        ];
        let best = if self.defer_taskrun { all } else { &all[..4] };
        let attempts: [&[SetupFlag]; 3] = [best, &all[..3], &[]];
        let mut last_error = None;
        let skip = if self.plain { attempts.len() - 1 } else { 0 };
        for flags in attempts.into_iter().skip(skip) {
            let mut builder = IoUring::builder();
            for flag in flags {
                flag.apply(&mut builder);
            }
            if let Some(cq) = self.cq_entries {
                builder.setup_cqsize(cq);
            }
            if let Some(idle) = self.sqpoll_idle {
                builder.setup_sqpoll(u32::try_from(idle.as_millis()).unwrap_or(u32::MAX));
            }
            match builder.build(self.entries) {
                Ok(uring) => {
                    return Ring::from_uring(uring, flags.to_vec(), self.sqpoll_idle.is_some());
                }
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    last_error = Some(error)
                }
                Err(error) => return Err(setup_error(error)),
            }
        }
        Err(setup_error(last_error.unwrap_or_else(|| {
            io::Error::from_raw_os_error(libc::EINVAL)
        })))
    }
}

/// Checks the features Weir requires and probes the opcodes.
pub(crate) fn check_and_probe(uring: &IoUring) -> Result<ProbeReport, Error> {
    let params = uring.params();
    if !params.is_feature_nodrop() {
        return Err(Error::Missing("IORING_FEAT_NODROP (kernel 5.5+)"));
    }
    if !params.is_feature_ext_arg() {
        return Err(Error::Missing("IORING_FEAT_EXT_ARG (kernel 5.11+)"));
    }
    let mut probe = Probe::new();
    uring
        .submitter()
        .register_probe(&mut probe)
        .map_err(|e| Error::Unavailable {
            reason: "IORING_REGISTER_PROBE failed".into(),
            source: Some(e),
        })?;
    let (supported, missing) = Opcode::ALL
        .iter()
        .partition(|op| probe.is_supported(op.code()));
    Ok(ProbeReport { supported, missing })
}
