//! Shared helpers: per-backend runtimes, descriptor counts, a deterministic byte stream.

use weir_net::{Backend, Runtime};

/// The backends to test: the one `WEIR_BACKEND` names, or both.
pub(crate) fn backends() -> Vec<Backend> {
    match std::env::var("WEIR_BACKEND").as_deref() {
        Ok("uring") => vec![Backend::Uring],
        Ok("poll") => vec![Backend::Poll],
        _ => {
            if cfg!(target_os = "linux") {
                vec![Backend::Uring, Backend::Poll]
            } else {
                vec![Backend::Poll]
            }
        }
    }
}

/// Runs `test` once per backend, each on a fresh runtime. The socket tests run one at a time:
/// some count this process's descriptors, which parallel tests would disturb.
pub(crate) fn on_each_backend(test: impl Fn(Backend, &Runtime)) {
    let _serial = serial();
    for backend in backends() {
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .unwrap_or_else(|e| panic!("{backend:?} runtime: {e}"));
        test(backend, &rt);
    }
}

/// Open descriptors of this process.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Serialises tests that count descriptors.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Byte `i` of the known stream the cancel tests send.
pub(crate) fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 7)) as u8
}

/// FNV-1a, for comparing large payloads.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
