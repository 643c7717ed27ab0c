//! Soak, on both backends: a Weir echo server on one runtime thread and 1,000 concurrent Weir
//! client connections on another, each streaming a seeded pseudo-random byte stream in random
//! write sizes (half of them half-closing and reading the echo to its end), every stream's hash
//! checked; resident memory must not grow by more than 5% after warm-up, descriptors and both
//! drivers' tracked operations must come back to their baseline, and no pool buffer may be held
//! at the end of a round.
//! Variants: 4 KiB `SO_SNDBUF`/`SO_RCVBUF` with a slow reader (short reads and writes
//! everywhere), and an EINTR storm (`SIGPROF` at 5 kHz of CPU time).
//!
//! `cargo xtask ci` runs the short form; so does `cargo test -p weir-net --all-features --test
//! soak` (plain `cargo test` skips this target). Sized by the environment (the defaults are the short form):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WEIR_SOAK_CONNECTIONS` | 1000 | concurrent connections per round |
//! | `WEIR_SOAK_MAX_BYTES` | 128 KiB | the longest stream (lengths are uniform in 1 B..=this) |
//! | `WEIR_SOAK_SECONDS` | 0 | keep running rounds after the warm-up one until this long has passed (at least one measured round) |
//!
//! The long form: `WEIR_SOAK_MAX_BYTES=4194304 WEIR_SOAK_SECONDS=600`; 10,000 connections:
//! `WEIR_SOAK_CONNECTIONS=10000`. A round whose descriptors (three a connection) do not fit under
//! the hard `RLIMIT_NOFILE` keeps the server in this process and runs the clients in child
//! processes (this test binary again, each with its share of the connections, one round per seed
//! on its input), which check their own memory and descriptors and must report that they ran the
//! test and passed.
//!
//! Memory is checked twice: resident memory (`VmRSS`, after `malloc_trim`, with one malloc arena:
//! see [`one_malloc_arena`]) and the live heap as the global allocator counts it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_net::{Backend, Runtime, TcpListener, TcpStream};

/// The largest single write, as the scenario asks.
const MAX_WRITE: usize = 256 * 1024;
/// The socket buffers of the small-buffer variant.
const SMALL_SOCKET_BUFFER: usize = 4096;
/// The small-buffer variant's TCP segment size: Ethernet's. Loopback's own (64 KiB) does not go
/// with 4 KiB buffers: a segment's memory exceeds the receive buffer, the receiver drops it
/// (`TcpExtTCPRcvQDrop`) and the sender's retransmission timer backs off to minutes. Seen as a
/// connection stalled for over a minute with the receiver's queue empty, the sender retrying
/// 8 KiB every 100 s (`ss -i`: `backoff:9`, `bytes_retrans` ten times `bytes_acked`).
const SMALL_SEGMENT: u32 = 1448;
/// The listener's backlog: a round's connections arrive together.
const LISTEN_BACKLOG: u32 = 4096;
/// The global allocator, counting the bytes live on the heap: the exact check that nothing
/// accumulates, beside the resident-memory bound.
struct Counting;

/// Set once [`one_malloc_arena`] ran.
static ONE_ARENA: AtomicBool = AtomicBool::new(false);

/// Bytes allocated and not yet freed, through [`Counting`].
static LIVE_HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Before the first allocation of the process, so before any thread has an arena.
        if !ONE_ARENA.load(Ordering::Relaxed) {
            ONE_ARENA.store(true, Ordering::Relaxed);
            one_malloc_arena();
        }
        LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            LIVE_HEAP.fetch_add(new_size, Ordering::Relaxed);
            LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One malloc arena for every thread. glibc gives each thread that allocates under contention
/// an arena of its own, and `malloc_trim` cannot shrink the top of those: freed memory there
/// stays resident, so the reactor's soak (whose reads allocate their buffers, where the ring's
/// come from the pool) grew 20–90% in resident memory with the live heap flat to the KiB. With
/// one arena, resident memory tracks the live heap. Set by the global allocator before the
/// process's first allocation: arenas made before it would stay, and be handed to new threads.
fn one_malloc_arena() {
    // SAFETY: mallopt only changes the allocator's tuning; no pointer is involved.
    let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    ARENA_SET.store(set == 1, Ordering::Relaxed);
}

/// Whether glibc took the one-arena setting ([`one_malloc_arena`]).
static ARENA_SET: AtomicBool = AtomicBool::new(false);

/// Resident memory (and the live heap) may grow by this much after the warm-up round.
const RSS_GROWTH_ALLOWED: f64 = 0.05;
/// How long leftovers (cancelled operations' final completions, buffers coming back) may take
/// to drain once every connection is closed; a leak never drains and fails the soak.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Progress of the round under way, for the message of a round that stalls.
struct Progress {
    accepted: AtomicU64,
    echoed: AtomicU64,
    connected: AtomicU64,
    written: AtomicU64,
    finished: AtomicU64,
}

static PROGRESS: Progress = Progress {
    accepted: AtomicU64::new(0),
    echoed: AtomicU64::new(0),
    connected: AtomicU64::new(0),
    written: AtomicU64::new(0),
    finished: AtomicU64::new(0),
};

impl Progress {
    fn reset(&self) {
        for counter in [
            &self.accepted,
            &self.echoed,
            &self.connected,
            &self.written,
            &self.finished,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn note(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn describe(&self) -> String {
        format!(
            "server: {} accepted, {} echoed to the end; client: {} connected, {} finished writing, {} finished",
            self.accepted.load(Ordering::Relaxed),
            self.echoed.load(Ordering::Relaxed),
            self.connected.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }
}

/// A round that makes no progress for this long has lost a wake-up (or hangs): it fails.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long this process waits on client child processes before calling the round stalled.
const CHILD_WAIT: Duration = Duration::from_secs(90);

/// The soak tests share this process's descriptors, memory and signal handlers: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn backends() -> Vec<Backend> {
    match std::env::var("WEIR_BACKEND").as_deref() {
        Ok("uring") => vec![Backend::Uring],
        Ok("poll") => vec![Backend::Poll],
        _ => vec![Backend::Uring, Backend::Poll],
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?}: {e}")),
        Err(_) => default,
    }
}

/// How one soak runs.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    /// The test running it (a client child process re-runs exactly this test).
    test: &'static str,
    connections: usize,
    max_bytes: u64,
    /// Run measured rounds until this much time has passed (at least one).
    seconds: u64,
    /// 4 KiB socket buffers on both ends and a client that reads in small pieces.
    small_buffers: bool,
}

impl Scenario {
    fn from_env(
        name: &'static str,
        test: &'static str,
        small_buffers: bool,
        default_max_bytes: u64,
    ) -> Scenario {
        Scenario {
            name,
            test,
            connections: usize::try_from(env_number("WEIR_SOAK_CONNECTIONS", 1000))
                .expect("connections"),
            max_bytes: env_number("WEIR_SOAK_MAX_BYTES", default_max_bytes).max(1),
            seconds: env_number("WEIR_SOAK_SECONDS", 0),
            small_buffers,
        }
    }
}

/// splitmix64: a small seeded generator, the same on both ends of the test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in 1..=max.
    fn between_1_and(&mut self, max: u64) -> u64 {
        1 + self.next() % max
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// FNV-1a over the stream's 8-byte words (a partial word waits for the next bytes), so the
/// hash does not depend on how the stream was cut into writes or reads.
struct StreamHash {
    hash: u64,
    carry: [u8; 8],
    carried: usize,
    bytes: u64,
}

impl StreamHash {
    fn new() -> StreamHash {
        StreamHash {
            hash: 0xcbf2_9ce4_8422_2325,
            carry: [0; 8],
            carried: 0,
            bytes: 0,
        }
    }

    fn word(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(0x0100_0000_01b3);
    }

    fn update(&mut self, mut bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        if self.carried > 0 {
            let take = (8 - self.carried).min(bytes.len());
            let carried = self.carried;
            self.carry[carried..carried + take].copy_from_slice(&bytes[..take]);
            self.carried += take;
            bytes = &bytes[take..];
            if self.carried < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.carry));
            self.carried = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.word(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }

    fn finish(mut self) -> (u64, u64) {
        let mut tail = 0u64;
        for (i, byte) in self.carry[..self.carried].iter().enumerate() {
            tail |= u64::from(*byte) << (8 * i);
        }
        self.word(tail);
        self.word(self.bytes);
        (self.hash, self.bytes)
    }
}

/// One connection's plan, from the round's seed and its index.
struct Plan {
    len: u64,
    half_close: bool,
    rng: Rng,
}

fn plan(seed: u64, index: usize, max_bytes: u64) -> Plan {
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
    let len = rng.between_1_and(max_bytes);
    Plan {
        len,
        half_close: index % 2 == 0,
        rng: Rng(rng.next()),
    }
}

/// A socket for the small-buffer variant: 4 KiB buffers and Ethernet's segment size, set before
/// `connect` or `listen` (accepted connections inherit them), so the handshake carries the size.
fn small_socket() -> std::io::Result<weir_net::TcpSocket> {
    let socket = weir_net::TcpSocket::new_v4()?;
    let options = socket2::SockRef::from(&socket);
    options.set_send_buffer_size(SMALL_SOCKET_BUFFER)?;
    options.set_recv_buffer_size(SMALL_SOCKET_BUFFER)?;
    options.set_tcp_mss(SMALL_SEGMENT)?;
    Ok(socket)
}

/// What one round left on one side, once everything drained.
#[derive(Debug)]
struct SideReport {
    errors: Vec<String>,
    /// `Interrupted` errors among them (none may reach a caller).
    interrupted: usize,
    /// The runtime's driver: operations in flight (ring) or sources registered (reactor).
    tracked: usize,
    /// The runtime buffer pool's buffers held outside the kernel: in use, less those lent to it
    /// for receives (`Runtime::buffers_lent_to_kernel`). Zero once every stream is gone.
    pool_held: usize,
}

/// Waits (turning the runtime) until no pool buffer is held and the driver's tracked count is at
/// most the baseline (any, without one), or the drain limit passed; returns what they were.
async fn drained(rt: &Runtime, baseline: Option<usize>) -> (usize, usize) {
    let pool = weir_net::buffer_pool().expect("buffer pool");
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let held = pool
            .stats()
            .in_use
            .saturating_sub(rt.buffers_lent_to_kernel());
        let tracked = rt.driver_tracked();
        let settled = held == 0 && baseline.is_none_or(|baseline| tracked <= baseline);
        if settled || Instant::now() >= deadline {
            return (tracked, held);
        }
        weir_net::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let (read, back) = stream.read(buf).await;
        if read? == 0 {
            Progress::note(&PROGRESS.echoed);
            return Ok(());
        }
        let (written, mut back) = stream.write_all(back).await;
        written?;
        back.clear();
        buf = back;
    }
}

async fn serve_round(listener: &TcpListener, connections: usize) -> Vec<std::io::Error> {
    let mut tasks = Vec::with_capacity(connections);
    let mut errors = Vec::new();
    for _ in 0..connections {
        match listener.accept().await {
            Ok((stream, _)) => {
                Progress::note(&PROGRESS.accepted);
                tasks.push(weir_net::spawn(echo(stream)));
            }
            Err(error) => {
                errors.push(error);
                break;
            }
        }
    }
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => errors.push(error),
            Err(join) => errors.push(std::io::Error::other(format!("echo task: {join:?}"))),
        }
    }
    errors
}

fn side_report(
    errors: Vec<std::io::Error>,
    what: &str,
    tracked: usize,
    pool_held: usize,
) -> SideReport {
    SideReport {
        interrupted: errors
            .iter()
            .filter(|e| e.kind() == std::io::ErrorKind::Interrupted)
            .count(),
        errors: errors.iter().map(|e| format!("{what}: {e}")).collect(),
        tracked,
        pool_held,
    }
}

/// The server's thread: one runtime, one listener, a round per command.
fn server(
    backend: Backend,
    small: bool,
    addr: mpsc::Sender<std::net::SocketAddr>,
    rounds: mpsc::Receiver<usize>,
    reports: mpsc::Sender<SideReport>,
) {
    let rt = Runtime::builder()
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("{backend:?} server runtime: {e}"));
    let listener = rt
        .block_on(async {
            let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
            let socket = if small {
                small_socket()?
            } else {
                weir_net::TcpSocket::new_v4()?
            };
            socket.bind(addr)?;
            // Room for a whole round connecting at once (the kernel caps it at somaxconn).
            socket.listen(LISTEN_BACKLOG)
        })
        .expect("bind");
    addr.send(listener.local_addr().expect("addr"))
        .expect("send addr");
    let mut baseline = None;
    for connections in rounds {
        let errors = rt.block_on(serve_round(&listener, connections));
        let (tracked, held) = rt.block_on(drained(&rt, baseline));
        baseline.get_or_insert(tracked);
        if reports
            .send(side_report(errors, "server", tracked, held))
            .is_err()
        {
            return;
        }
    }
}

/// One client connection: a writer task streams the plan's bytes (and half-closes, for half of
/// them) while this task reads the echo and hashes it. Returns the bytes echoed.
async fn client_connection(
    addr: std::net::SocketAddr,
    plan: Plan,
    small: bool,
) -> Result<u64, std::io::Error> {
    let mut reader = if small {
        small_socket()?.connect(addr).await?
    } else {
        TcpStream::connect(addr).await?
    };
    Progress::note(&PROGRESS.connected);
    let mut writer = reader.try_clone()?;
    let Plan {
        len,
        half_close,
        mut rng,
    } = plan;
    let writing = weir_net::spawn(async move {
        let mut sizes = Rng(rng.next());
        let mut sent = StreamHash::new();
        let mut buf = Vec::with_capacity(MAX_WRITE);
        let mut left = len;
        while left > 0 {
            let size = sizes.between_1_and(left.min(MAX_WRITE as u64));
            buf.resize(usize::try_from(size).expect("size"), 0);
            rng.fill(&mut buf);
            sent.update(&buf);
            let (written, back) = writer.write_all(buf).await;
            written?;
            buf = back;
            left -= size;
        }
        if half_close {
            writer.shutdown(std::net::Shutdown::Write)?;
        }
        Progress::note(&PROGRESS.written);
        Ok::<_, std::io::Error>(sent.finish())
    });
    let mut got = StreamHash::new();
    let mut pieces = Rng(len);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        if small {
            // A slow reader: short reads of 1 B..4 KiB, and a turn for the others between them.
            buf = Vec::with_capacity(usize::try_from(pieces.between_1_and(4096)).expect("size"));
        }
        let (read, back) = reader.read(buf).await;
        let n = read?;
        if n == 0 {
            break;
        }
        got.update(&back);
        buf = back;
        buf.clear();
        if small {
            weir_net::yield_now().await;
        }
        if !half_close && got.bytes == len {
            break;
        }
    }
    let (sent_hash, sent_bytes) = writing
        .await
        .map_err(|e| std::io::Error::other(format!("writer task: {e:?}")))??;
    Progress::note(&PROGRESS.finished);
    let (got_hash, got_bytes) = got.finish();
    if (got_hash, got_bytes) != (sent_hash, sent_bytes) || sent_bytes != len {
        return Err(std::io::Error::other(format!(
            "echo differs (half-close {half_close}): sent {sent_bytes} of {len} bytes hashing {sent_hash:#x}, got {got_bytes} bytes hashing {got_hash:#x}"
        )));
    }
    Ok(len)
}

/// What a client round did.
struct ClientRound {
    side: SideReport,
    matched: usize,
    bytes: u64,
}

/// Starts [`client`] on its own thread for connections `indices`: a round's seed goes in, its
/// report comes out.
fn client_thread(
    backend: Backend,
    scenario: Scenario,
    addr: std::net::SocketAddr,
    indices: std::ops::Range<usize>,
) -> (
    mpsc::Sender<u64>,
    mpsc::Receiver<ClientRound>,
    std::thread::JoinHandle<()>,
) {
    let (rounds, rounds_rx) = mpsc::channel();
    let (reports_tx, reports) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("soak-client".into())
        .spawn(move || client(backend, scenario, addr, indices, rounds_rx, reports_tx))
        .expect("client thread");
    (rounds, reports, thread)
}

/// Runs connections `indices` of each round whose seed arrives on `rounds`, on a runtime of
/// its own, and sends each round's report to `reports`.
fn client(
    backend: Backend,
    scenario: Scenario,
    addr: std::net::SocketAddr,
    indices: std::ops::Range<usize>,
    rounds: mpsc::Receiver<u64>,
    reports: mpsc::Sender<ClientRound>,
) {
    let rt = Runtime::builder()
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("{backend:?} client runtime: {e}"));
    let mut baseline = None;
    for seed in rounds {
        let (errors, matched, bytes) = rt.block_on(async {
            let tasks: Vec<_> = indices
                .clone()
                .map(|i| {
                    weir_net::spawn(client_connection(
                        addr,
                        plan(seed, i, scenario.max_bytes),
                        scenario.small_buffers,
                    ))
                })
                .collect();
            let (mut errors, mut matched, mut bytes) = (Vec::new(), 0, 0);
            for task in tasks {
                match task.await {
                    Ok(Ok(n)) => {
                        matched += 1;
                        bytes += n;
                    }
                    Ok(Err(error)) => errors.push(error),
                    Err(join) => {
                        errors.push(std::io::Error::other(format!("client task: {join:?}")))
                    }
                }
            }
            (errors, matched, bytes)
        });
        let (tracked, held) = rt.block_on(drained(&rt, baseline));
        baseline.get_or_insert(tracked);
        let side = side_report(errors, "client", tracked, held);
        if reports
            .send(ClientRound {
                side,
                matched,
                bytes,
            })
            .is_err()
        {
            return;
        }
    }
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of this process, in KiB (`VmRSS`), once the allocator has handed back
/// the free memory it keeps cached (`malloc_trim`): what is measured is what is live, so a leak
/// shows and the allocator's caching of the test's own large buffers does not.
fn rss_kib() -> u64 {
    // SAFETY: malloc_trim only returns free heap memory to the kernel; no pointer is involved.
    unsafe { libc::malloc_trim(0) };
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Resident KiB of this process's io_uring mappings (submission and completion queues, provided
/// buffer rings): a part of `VmRSS` that grows, up to the mappings' size, as the rings' indices
/// first pass over their pages, and not with anything live.
fn ring_mappings_kib() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut in_ring = false;
    let mut total = 0;
    for line in smaps.lines() {
        let is_header = line
            .split_whitespace()
            .next()
            .is_some_and(|first| first.contains('-') && !first.ends_with(':'));
        if is_header {
            in_ring = line.contains("io_uring");
        } else if in_ring && let Some(rss) = line.strip_prefix("Rss:") {
            total += rss
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    total
}

/// This process's limits on open descriptors (`RLIMIT_NOFILE`).
fn descriptor_limits() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit
}

/// Descriptors a process needs beside its connections' (the runtime's, the test harness's).
const SPARE_DESCRIPTORS: usize = 256;

/// Raises the soft descriptor limit to `needed` if it is short (`what` names the need).
fn ensure_descriptors(needed: usize, what: &str) {
    let needed = needed as libc::rlim_t;
    let mut limit = descriptor_limits();
    if limit.rlim_cur >= needed {
        return;
    }
    limit.rlim_cur = needed.max(limit.rlim_cur);
    limit.rlim_max = limit.rlim_max.max(needed);
    // SAFETY: `limit` is a valid rlimit.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(
        raised,
        0,
        "{what} need {needed} descriptors and RLIMIT_NOFILE cannot be raised that far: {}",
        std::io::Error::last_os_error()
    );
}

/// How many client processes a round of `connections` takes: none when the whole round fits in
/// this process (three descriptors a connection: the server's, the client's and its clone), else
/// enough children that each one's clients (two descriptors a connection) fit under the hard
/// limit, while this process keeps the server (one a connection).
fn client_processes(connections: usize) -> usize {
    let limit = usize::try_from(descriptor_limits().rlim_max).unwrap_or(usize::MAX);
    if connections
        .saturating_mul(3)
        .saturating_add(SPARE_DESCRIPTORS)
        <= limit
    {
        return 0;
    }
    assert!(
        connections + SPARE_DESCRIPTORS <= limit,
        "{connections} connections need {} descriptors for the server alone, above the hard \
         limit of {limit}",
        connections + SPARE_DESCRIPTORS
    );
    let per_child = (limit - SPARE_DESCRIPTORS) / 2;
    connections.div_ceil(per_child)
}

/// The kernel's view of the TCP connections to or from `port` that have bytes queued, with
/// their timers and retransmissions (`ss -tnoi`): what tells a stall of Weir's (bytes waiting in
/// a receive queue nobody reads) from one of TCP's (a sender backing off).
fn queued_sockets(port: u16) -> String {
    let listed = match std::process::Command::new("ss")
        .args(["-tnoi", "state", "all"])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(error) => return format!("(ss did not run: {error})"),
    };
    let port = format!(":{port} ");
    let lines: Vec<&str> = listed.lines().collect();
    let mut found = String::new();
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let queued = fields.len() > 4 && (fields[1] != "0" || fields[2] != "0");
        if queued && format!("{line} ").contains(&port) && !line.starts_with("LISTEN") {
            found.push_str(line);
            found.push('\n');
            if let Some(info) = lines.get(i + 1) {
                found.push_str(info);
                found.push('\n');
            }
        }
    }
    found
}

/// The next report from a side, failing the test if the round stalls (progress is what the
/// connections completed; a round still moving is waited for).
fn wait_for<T>(reports: &mpsc::Receiver<T>, what: &str, side: &str, port: u16) -> T {
    wait_for_within(reports, what, side, port, STALL_LIMIT)
}

/// [`wait_for`] with a stall limit of `limit`.
fn wait_for_within<T>(
    reports: &mpsc::Receiver<T>,
    what: &str,
    side: &str,
    port: u16,
    limit: Duration,
) -> T {
    let mut seen = PROGRESS.describe();
    loop {
        match reports.recv_timeout(limit) {
            Ok(report) => return report,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the {side} thread died"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = PROGRESS.describe();
                assert_ne!(
                    now,
                    seen,
                    "{what}: no progress for {limit:?} (a lost wake-up?): {now}; \
                     connections to port {port} with bytes queued (ss -tnoi):\n{}",
                    queued_sockets(port)
                );
                seen = now;
            }
        }
    }
}

/// Set in a client child process: `<server address> <first connection index> <count>`.
const CLIENT_OF: &str = "WEIR_SOAK_CLIENT_OF";
/// What a client child prints before each of its report lines.
const CHILD_TAG: &str = "soak-client: ";

/// This process's footprint: resident memory, the live heap, open descriptors.
#[derive(Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    /// Of `rss_kib`, the io_uring mappings' ([`ring_mappings_kib`]).
    ring_kib: u64,
    heap_kib: usize,
    fds: usize,
}

impl Footprint {
    fn now() -> Footprint {
        let fds = fd_count();
        Footprint {
            rss_kib: rss_kib(),
            ring_kib: ring_mappings_kib(),
            heap_kib: LIVE_HEAP.load(Ordering::Relaxed) / 1024,
            fds,
        }
    }

    /// Fails `what` if memory grew by more than allowed, or descriptors changed, since `before`
    /// (taken after the warm-up round); describes the change.
    fn check_since(self, before: Footprint, what: &str) -> String {
        let growth = self.rss_kib as f64 / before.rss_kib as f64 - 1.0;
        let heap_growth = self.heap_kib as f64 / before.heap_kib.max(1) as f64 - 1.0;
        let change = format!(
            "RSS {} KiB -> {} KiB ({:+.2}%; io_uring mappings {} -> {} KiB of it); live heap {} KiB -> {} KiB ({:+.2}%); descriptors {} -> {}",
            before.rss_kib,
            self.rss_kib,
            growth * 100.0,
            before.ring_kib,
            self.ring_kib,
            before.heap_kib,
            self.heap_kib,
            heap_growth * 100.0,
            before.fds,
            self.fds
        );
        assert!(
            growth <= RSS_GROWTH_ALLOWED && heap_growth <= RSS_GROWTH_ALLOWED,
            "{what}: memory grew by more than {:.0}% after the warm-up: {change}",
            RSS_GROWTH_ALLOWED * 100.0
        );
        assert_eq!(self.fds, before.fds, "{what}: descriptors ({change})");
        change
    }
}

impl ClientRound {
    /// Two shares of one round, as one.
    fn merge(mut self, other: ClientRound) -> ClientRound {
        self.side.errors.extend(other.side.errors);
        self.side.interrupted += other.side.interrupted;
        self.side.tracked += other.side.tracked;
        self.side.pool_held += other.side.pool_held;
        self.matched += other.matched;
        self.bytes += other.bytes;
        self
    }
}

/// The client side of a soak: a thread of this process, or child processes (each re-running the
/// scenario's test for its share of the connections) when the descriptors of the whole round do
/// not fit in one process.
enum Clients {
    Thread {
        rounds: mpsc::Sender<u64>,
        reports: mpsc::Receiver<ClientRound>,
        thread: std::thread::JoinHandle<()>,
    },
    Children {
        children: Vec<ClientChild>,
        events: mpsc::Receiver<FromChild>,
    },
}

struct ClientChild {
    process: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
}

/// What a client child's reader thread passes on.
enum FromChild {
    Round(ClientRound),
    Exited {
        index: usize,
        /// The child's test harness says it ran the scenario's test, and it passed.
        ran: bool,
        stdout: String,
        stderr: String,
    },
}

impl Clients {
    fn thread(backend: Backend, scenario: Scenario, addr: std::net::SocketAddr) -> Clients {
        let (rounds, reports, thread) =
            client_thread(backend, scenario, addr, 0..scenario.connections);
        Clients::Thread {
            rounds,
            reports,
            thread,
        }
    }

    fn children(
        backend: Backend,
        scenario: Scenario,
        addr: std::net::SocketAddr,
        count: usize,
    ) -> Clients {
        let exe = std::env::current_exe().expect("the test binary's path");
        let backend_name = match backend {
            Backend::Uring => "uring",
            _ => "poll",
        };
        let share = scenario.connections.div_ceil(count);
        let (events_tx, events) = mpsc::channel();
        let children = (0..count)
            .map(|index| {
                let first = index * share;
                let connections = share.min(scenario.connections.saturating_sub(first));
                let mut process = std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        scenario.test,
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(CLIENT_OF, format!("{addr} {first} {connections}"))
                    .env("WEIR_BACKEND", backend_name)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start a client process");
                let stdout = process.stdout.take().expect("child stdout");
                let stderr = process.stderr.take().expect("child stderr");
                let events = events_tx.clone();
                let test = scenario.test;
                std::thread::spawn(move || read_child(index, test, stdout, stderr, events));
                ClientChild {
                    stdin: process.stdin.take(),
                    process,
                }
            })
            .collect();
        Clients::Children { children, events }
    }

    fn start(&mut self, seed: u64) {
        match self {
            Clients::Thread { rounds, .. } => rounds.send(seed).expect("client gone"),
            Clients::Children { children, .. } => {
                for child in children {
                    let stdin = child.stdin.as_mut().expect("child stdin");
                    use std::io::Write;
                    writeln!(stdin, "{seed}")
                        .and_then(|()| stdin.flush())
                        .expect("a client process took no round");
                }
            }
        }
    }

    fn report(&mut self, what: &str, port: u16) -> ClientRound {
        match self {
            Clients::Thread { reports, .. } => wait_for(reports, what, "client", port),
            Clients::Children { children, events } => {
                let mut merged: Option<ClientRound> = None;
                for _ in 0..children.len() {
                    // Longer than a child's own stall limit: a stalled child reports first, with
                    // its own progress (this process sees only the server's).
                    match wait_for_within(events, what, "client processes'", port, CHILD_WAIT) {
                        FromChild::Round(round) => {
                            merged = Some(match merged {
                                Some(merged) => merged.merge(round),
                                None => round,
                            });
                        }
                        FromChild::Exited {
                            index,
                            stdout,
                            stderr,
                            ..
                        } => panic!(
                            "{what}: client process {index} exited during a round:\n{stdout}\n{stderr}"
                        ),
                    }
                }
                merged.expect("at least one client process")
            }
        }
    }

    /// Ends the clients; for child processes, checks that each ran its test and passed its own
    /// checks, and returns what each said of its footprint.
    fn finish(self, what: &str, port: u16) -> Vec<String> {
        match self {
            Clients::Thread { rounds, thread, .. } => {
                drop(rounds);
                thread.join().expect("client thread");
                Vec::new()
            }
            Clients::Children {
                mut children,
                events,
            } => {
                for child in &mut children {
                    // The end of its input ends the child's rounds.
                    drop(child.stdin.take());
                }
                let mut footprints = Vec::new();
                for _ in 0..children.len() {
                    let FromChild::Exited {
                        index,
                        ran,
                        stdout,
                        stderr,
                    } = wait_for_within(&events, what, "client processes'", port, CHILD_WAIT)
                    else {
                        panic!("{what}: a client process reported a round nobody asked for");
                    };
                    let status = children[index].process.wait().expect("wait for a client");
                    assert!(
                        status.success() && ran,
                        "{what}: client process {index} failed ({status}, ran its test: {ran}):\n{stdout}\n{stderr}"
                    );
                    let footprint = stdout
                        .lines()
                        .find_map(|line| line.split_once(&format!("{CHILD_TAG}footprint ")))
                        .map_or("(no footprint line)", |(_, rest)| rest);
                    footprints.push(format!("client process {index}: {footprint}"));
                }
                footprints
            }
        }
    }
}

/// A client child's reader: passes its round reports on as they come, then its exit.
fn read_child(
    index: usize,
    test: &'static str,
    stdout: std::process::ChildStdout,
    mut stderr: std::process::ChildStderr,
    events: mpsc::Sender<FromChild>,
) {
    use std::io::{BufRead, Read};
    let errors_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut all = String::new();
    let mut errors = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        all.push_str(&line);
        all.push('\n');
        let Some((_, said)) = line.split_once(CHILD_TAG) else {
            continue;
        };
        if let Some(error) = said.strip_prefix("error ") {
            errors.push(error.to_string());
        } else if let Some(round) = said.strip_prefix("round ") {
            let numbers: Vec<u64> = round
                .split_whitespace()
                .map(|n| n.parse().expect("a client process's round line"))
                .collect();
            let &[matched, bytes, interrupted, tracked, held] = numbers.as_slice() else {
                panic!("client process {index}: a bad round line {line:?}");
            };
            let as_usize = |n: u64| usize::try_from(n).expect("a count");
            let round = ClientRound {
                side: SideReport {
                    errors: std::mem::take(&mut errors),
                    interrupted: as_usize(interrupted),
                    tracked: as_usize(tracked),
                    pool_held: as_usize(held),
                },
                matched: as_usize(matched),
                bytes,
            };
            if events.send(FromChild::Round(round)).is_err() {
                return;
            }
        }
    }
    let stderr = errors_thread.join().unwrap_or_default();
    let ran =
        all.contains(&format!("test {test} ... ")) && all.contains("test result: ok. 1 passed");
    let _ = events.send(FromChild::Exited {
        index,
        ran,
        stdout: all,
        stderr,
    });
}

/// A client child process: runs its share of each round's connections, a round per seed read
/// from its input, reporting each on its output; at the end of its input, checks its own
/// footprint against the one after its warm-up round.
fn client_child(backend: Backend, scenario: Scenario, spec: &str) {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    let &[addr, first, count] = fields.as_slice() else {
        panic!("{CLIENT_OF}={spec:?}: expected an address, a first index and a count");
    };
    let addr: std::net::SocketAddr = addr.parse().expect("the server's address");
    let first: usize = first.parse().expect("the first connection's index");
    let count: usize = count.parse().expect("the connection count");
    ensure_descriptors(
        count * 2 + SPARE_DESCRIPTORS,
        &format!("{count} client connections"),
    );
    let (rounds, reports, thread) = client_thread(backend, scenario, addr, first..first + count);
    let what = format!(
        "{} on {backend:?}, client connections {first}..{}",
        scenario.name,
        first + count
    );
    let mut after_warm_up = None;
    for line in std::io::stdin().lines() {
        let line = line.expect("the parent's input");
        let seed: u64 = line.trim().parse().expect("a round's seed");
        PROGRESS.reset();
        rounds.send(seed).expect("client gone");
        let report = wait_for(&reports, &what, "client", addr.port());
        for error in &report.side.errors {
            println!("{CHILD_TAG}error {}", error.replace('\n', " "));
        }
        println!(
            "{CHILD_TAG}round {} {} {} {} {}",
            report.matched,
            report.bytes,
            report.side.interrupted,
            report.side.tracked,
            report.side.pool_held
        );
        after_warm_up.get_or_insert_with(Footprint::now);
    }
    // Measured while the client's runtime is still up, as after the warm-up.
    let after = Footprint::now();
    drop(rounds);
    thread.join().expect("client thread");
    if let Some(before) = after_warm_up {
        let change = after.check_since(before, &what);
        println!("{CHILD_TAG}footprint {change}");
    }
}

/// Runs `scenario` on `backend`: a warm-up round, then measured rounds; checks every stream and
/// the baselines, and prints the figures. Rounds too large for one process's descriptors run
/// their clients in child processes ([`client_processes`]).
fn soak(backend: Backend, scenario: Scenario) {
    assert!(
        ARENA_SET.load(Ordering::Relaxed),
        "mallopt(M_ARENA_MAX, 1) was refused: the resident-memory bound would measure arenas"
    );
    if let Ok(spec) = std::env::var(CLIENT_OF) {
        client_child(backend, scenario, &spec);
        return;
    }
    let children = client_processes(scenario.connections);
    let per_connection = if children == 0 { 3 } else { 1 };
    ensure_descriptors(
        scenario.connections * per_connection + SPARE_DESCRIPTORS,
        &format!("{} connections", scenario.connections),
    );
    let started = Instant::now();
    let (addr_tx, addr_rx) = mpsc::channel();
    let (server_rounds, server_rounds_rx) = mpsc::channel();
    let (server_reports_tx, server_reports) = mpsc::channel();
    let small = scenario.small_buffers;
    let server_thread = std::thread::Builder::new()
        .name("soak-server".into())
        .spawn(move || server(backend, small, addr_tx, server_rounds_rx, server_reports_tx))
        .expect("server thread");
    let addr = addr_rx.recv().expect("the server's address");
    let mut clients = if children == 0 {
        Clients::thread(backend, scenario, addr)
    } else {
        Clients::children(backend, scenario, addr, children)
    };

    let what = format!("{} on {backend:?}", scenario.name);
    let mut round = |seed: u64| {
        PROGRESS.reset();
        server_rounds
            .send(scenario.connections)
            .expect("server gone");
        clients.start(seed);
        let client = clients.report(&what, addr.port());
        let server = wait_for(&server_reports, &what, "server", addr.port());
        let errors: Vec<_> = client.side.errors.iter().chain(&server.errors).collect();
        assert!(
            errors.is_empty() && client.matched == scenario.connections,
            "{what}: {} of {} streams matched; {} errors ({} Interrupted), the first: {:#?}",
            client.matched,
            scenario.connections,
            errors.len(),
            client.side.interrupted + server.interrupted,
            &errors[..errors.len().min(5)]
        );
        (client, server)
    };

    let (warm_client, warm_server) = round(0x5eed);
    let before = Footprint::now();
    let measured_from = Instant::now();
    let (mut matched, mut bytes, mut rounds) = (0, 0, 0);
    let (last_client, last_server) = loop {
        rounds += 1;
        let (client, server) = round(0x5eed + rounds);
        matched += client.matched;
        bytes += client.bytes;
        if measured_from.elapsed() >= Duration::from_secs(scenario.seconds) {
            break (client, server);
        }
    };
    let after = Footprint::now();
    drop(server_rounds);
    let child_footprints = clients.finish(&what, addr.port());
    server_thread.join().expect("server thread");
    let change = after.check_since(before, &what);
    let layout = if children == 0 {
        "server and clients in this process".to_string()
    } else {
        format!("server in this process, clients in {children} child processes")
    };
    println!(
        "soak {what}: {rounds} measured round(s) of {} connections after a warm-up round ({layout}); \
         {matched} streams, {bytes} bytes echoed, {matched} hashes matched; {change}; \
         server driver tracked {} -> {}, server pool buffers held {} -> {}; \
         client driver tracked {} -> {}, client pool buffers held {} -> {}; {:.1} s",
        scenario.connections,
        warm_server.tracked,
        last_server.tracked,
        warm_server.pool_held,
        last_server.pool_held,
        warm_client.side.tracked,
        last_client.side.tracked,
        warm_client.side.pool_held,
        last_client.side.pool_held,
        started.elapsed().as_secs_f64(),
    );
    for footprint in child_footprints {
        println!("soak {what}: {footprint}");
    }
    assert!(
        last_server.tracked <= warm_server.tracked
            && last_client.side.tracked <= warm_client.side.tracked,
        "{what}: the drivers track more than after the warm-up: server {} -> {}, client {} -> {}",
        warm_server.tracked,
        last_server.tracked,
        warm_client.side.tracked,
        last_client.side.tracked
    );
    assert!(
        warm_server.pool_held == 0
            && last_server.pool_held == 0
            && warm_client.side.pool_held == 0
            && last_client.side.pool_held == 0,
        "{what}: pool buffers held: server {} -> {}, client {} -> {}",
        warm_server.pool_held,
        last_server.pool_held,
        warm_client.side.pool_held,
        last_client.side.pool_held
    );
}

#[test]
fn a_thousand_streams_echo_exactly_and_leave_nothing_behind() {
    let _serial = serial();
    for backend in backends() {
        soak(
            backend,
            Scenario::from_env(
                "soak",
                "a_thousand_streams_echo_exactly_and_leave_nothing_behind",
                false,
                128 * 1024,
            ),
        );
    }
}

#[test]
fn four_kib_socket_buffers_and_a_slow_reader_stay_byte_exact() {
    let _serial = serial();
    for backend in backends() {
        soak(
            backend,
            Scenario::from_env(
                "4 KiB buffers, slow reader",
                "four_kib_socket_buffers_and_a_slow_reader_stay_byte_exact",
                true,
                32 * 1024,
            ),
        );
    }
}

/// `SIGPROF`s delivered during the storm.
static SIGNALS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigprof(_: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Arms (`Some(interval)`) or disarms (`None`) `ITIMER_PROF`.
fn profiling_timer(interval: Option<Duration>) {
    let interval = interval.unwrap_or_default();
    let tick = libc::timeval {
        tv_sec: 0,
        tv_usec: libc::suseconds_t::try_from(interval.as_micros()).expect("under a second"),
    };
    let timer = libc::itimerval {
        it_interval: tick,
        it_value: tick,
    };
    // SAFETY: `timer` is a valid itimerval; the old value is not asked for.
    let set = unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) };
    assert_eq!(set, 0, "setitimer: {}", std::io::Error::last_os_error());
}

#[test]
fn an_eintr_storm_reaches_no_caller_and_loses_no_wakeup() {
    let _serial = serial();
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigprof as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // No SA_RESTART: every blocking syscall the signal lands in fails with EINTR.
    action.sa_flags = 0;
    // SAFETY: installs a handler that only does an atomic add; the old action is not asked for.
    let installed = unsafe { libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()) };
    assert_eq!(
        installed,
        0,
        "sigaction: {}",
        std::io::Error::last_os_error()
    );
    for backend in backends() {
        let before = SIGNALS.load(Ordering::Relaxed);
        // 5 kHz of this process's CPU time.
        profiling_timer(Some(Duration::from_micros(200)));
        soak(
            backend,
            Scenario::from_env(
                "EINTR storm",
                "an_eintr_storm_reaches_no_caller_and_loses_no_wakeup",
                false,
                64 * 1024,
            ),
        );
        profiling_timer(None);
        let signals = SIGNALS.load(Ordering::Relaxed) - before;
        println!("EINTR storm on {backend:?}: {signals} SIGPROF delivered");
        assert!(signals > 0, "{backend:?}: the timer delivered no signal");
    }
}
