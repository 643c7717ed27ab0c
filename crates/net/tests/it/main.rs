//! The `weir-net` suite; every socket test runs on both backends (or on the one `WEIR_BACKEND`
//! forces).

mod accept;
mod affinity;
mod bad_args;
mod cancel;
mod examples;
mod fallback;
#[cfg(target_os = "linux")]
mod fork;
#[cfg(feature = "hyper")]
mod hyper_rt;
mod mixed_io;
mod multishot;
mod pooled;
mod server;
mod signals;
mod sigterm;
mod splice;
mod support;
mod tasks;
mod tcp;
#[cfg(feature = "tokio")]
mod tls;
mod udp;
mod unix;
