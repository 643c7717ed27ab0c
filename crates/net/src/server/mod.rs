//! `Server`: admission before accept, accept-error backoff, graceful shutdown with a deadline,
//! one runtime per worker thread.
//!
//! # Lifecycle
//!
//! ```text
//!  worker loop:  acquire permit ──► accept ──► spawn handler(stream, peer, child token)
//!                     ▲   (no permit: no accept; the kernel backlog holds the excess)
//!                     └── permit returns when the handler ends (normally, by error, panic, abort)
//!
//!  accepts on io_uring: one multishot accept per listener while the free permits cover the
//!  most it can take at once (every listener's backlog: the kernel drains a backlog in one go);
//!  below that, single-shot accepts, one per permit; with no permit, none at all (the multishot
//!  is cancelled). So no more connections are taken from the kernel than permits allow.
//!
//!  shutdown (SIGTERM, SIGINT or ServerHandle::shutdown):
//!    1. the server token is cancelled: accept loops stop; connections a multishot accept had
//!       already taken from the kernel are still handed to handlers, and the listeners close
//!       (what waits in the kernel's backlog is refused);
//!    2. every connection's child token is cancelled: handlers finish the current request and
//!       return (idle ones return at once);
//!    3. the in-flight tracker is awaited up to `shutdown_timeout`;
//!    4. what remains is force-closed: its handler is dropped, which cancels its in-flight ops
//!       (on the ring an async cancel, not a bare close) and closes the socket;
//!    5. `join` returns the report: accepted, completed, forced, errors by kind.
//! ```

mod metrics;
#[cfg(unix)]
mod signals;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use weir_shutdown::{Limit, OwnedPermit, Token, Tracker};

pub use metrics::{Metrics, Report};

use crate::{Backend, RemoteJoinHandle, Runtime, TcpListener, TcpStream, Workers, time};

/// Builds and starts a [`Server`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_net::server::Server;
///
/// let handle = Server::builder()
///     .bind("127.0.0.1:0")
///     .max_connections(100)
///     .shutdown_timeout(Duration::from_secs(1))
///     .handle_signals(false)
///     .serve(|mut stream, _peer, stop| async move {
///         // Echo until the peer or the server says stop; the read sleeps until one of them.
///         // After the stop, what had already arrived is still served (a zero limit).
///         loop {
///             let (n, buf) = match stop.run_until_cancelled(stream.read(Vec::with_capacity(4096))).await {
///                 Some(done) => done,
///                 None => stream.read_timeout(Vec::with_capacity(4096), Duration::ZERO).await,
///             };
///             if !matches!(n, Ok(n) if n > 0) || stream.write_all(buf).await.0.is_err() { break }
///         }
///     })
///     .expect("server");
/// let addr = handle.local_addr();
/// let mut client = std::net::TcpStream::connect(addr).expect("connect");
/// use std::io::{Read, Write};
/// client.write_all(b"hi").expect("write");
/// let mut reply = [0; 2];
/// client.read_exact(&mut reply).expect("read");
/// handle.shutdown();
/// let report = handle.join();
/// assert_eq!(report.accepted, 1);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    addr: Option<String>,
    listener: Option<Arc<StdListener>>,
    workers: usize,
    max_connections: usize,
    shutdown_timeout: Duration,
    #[cfg(unix)]
    handle_signals: bool,
    backend: Backend,
    first_byte_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    shutdown_on: Option<ShutdownFuture>,
    backlog: i32,
}

/// A caller's shutdown trigger, shared by clones of the builder: the first server started takes
/// it.
#[derive(Clone)]
struct ShutdownFuture(Arc<std::sync::Mutex<Option<Trigger>>>);

/// What [`Builder::shutdown_on`] was given.
type Trigger = Pin<Box<dyn Future<Output = ()> + Send>>;

impl ShutdownFuture {
    fn take(&self) -> Option<Trigger> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl fmt::Debug for ShutdownFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShutdownFuture")
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            addr: None,
            listener: None,
            workers: 1,
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(30),
            #[cfg(unix)]
            handle_signals: true,
            backend: Backend::Auto,
            first_byte_timeout: None,
            idle_timeout: None,
            shutdown_on: None,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// The listen backlog of the sockets [`Builder::bind`] makes, unless
/// [`Builder::listen_backlog`] says otherwise.
const DEFAULT_BACKLOG: i32 = 1024;

/// The backlog assumed for a listener [`Builder::from_listener`] was given (its own is not
/// known): Linux's default cap on any backlog (`net.core.somaxconn`).
const ASSUMED_BACKLOG: i32 = 4096;

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Listens on `addr` (each worker binds its own socket with `SO_REUSEPORT`).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// Serves an already bound, listening socket, shared by the workers.
    pub fn from_listener(mut self, listener: StdListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The listen backlog of the sockets [`bind`](Builder::bind) makes (default 1024; the
    /// kernel caps it at `net.core.somaxconn`): how many connections wait in the kernel while
    /// the server has no permit to accept them.
    pub fn listen_backlog(mut self, backlog: u32) -> Self {
        self.backlog = i32::try_from(backlog.max(1)).unwrap_or(i32::MAX);
        self
    }

    /// Worker threads, each with its own runtime (default 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The most connections served at once, across workers (default 10,000). Beyond it the
    /// server stops accepting and the kernel's backlog holds new connections.
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = limit.max(1);
        self
    }

    /// How long a graceful shutdown waits for handlers before force-closing them (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether SIGTERM and SIGINT trigger the shutdown (default `true`, unless
    /// [`shutdown_on`](Builder::shutdown_on) was called).
    ///
    /// While a server handles them, a process-wide handler catches both signals whichever
    /// thread the kernel delivers them to (no thread needs to block them, and none dies of the
    /// default action). The first signal starts the graceful shutdown of every server of the
    /// process that handles signals; a second one during the drain forces it (the handlers
    /// still running are closed at once, as at the deadline). Once the last such server is
    /// done, the dispositions from before come back.
    /// Unix only: on Windows a server stops through [`ServerHandle::shutdown`] or
    /// [`shutdown_on`](Builder::shutdown_on).
    #[cfg(unix)]
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Starts the graceful shutdown when `trigger` resolves, instead of on signals (call
    /// [`handle_signals(true)`](Builder::handle_signals) afterwards for both). `trigger` is
    /// polled on the server's shutdown thread, which has no Weir runtime: any runtime-agnostic
    /// future works (a channel, a [`Token`]'s `cancelled_owned()`, a custom signal source).
    ///
    /// ```
    /// use weir_net::server::Server;
    /// use weir_shutdown::Token;
    ///
    /// let stop = Token::new();
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")
    ///     .shutdown_on(stop.clone().cancelled_owned())
    ///     .serve(|_stream, _peer, _stop| async {})
    ///     .expect("server");
    /// stop.cancel();
    /// let report = server.join();
    /// assert_eq!(report.forced, 0);
    /// ```
    pub fn shutdown_on(mut self, trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown_on = Some(ShutdownFuture(Arc::new(std::sync::Mutex::new(Some(
            Box::pin(trigger),
        )))));
        #[cfg(unix)]
        {
            self.handle_signals = false;
        }
        self
    }

    /// Closes connections whose first byte does not arrive within `timeout`: their reads fail
    /// with `TimedOut` (default: none).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = Some(timeout);
        self
    }

    /// Fails a connection's read with `TimedOut` when the peer sends nothing for `timeout` (a
    /// slow or stalled client; default: none).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The runtime backend of the workers (default `Auto`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Starts the workers; `handler` runs once per connection with the stream, the peer address
    /// and a token that is cancelled when the server shuts down.
    ///
    /// # Errors
    ///
    /// Binding failed, or no address or listener was given.
    pub fn serve<H, F>(self, handler: H) -> io::Result<ServerHandle>
    where
        H: Fn(TcpStream, SocketAddr, Token) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + 'static,
    {
        let listeners: Vec<StdListener> = match (&self.listener, &self.addr) {
            (Some(shared), _) => (0..self.workers)
                .map(|_| shared.try_clone())
                .collect::<io::Result<_>>()?,
            (None, Some(addr)) => bind_reuseport(addr, self.workers, self.backlog)?,
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "Server needs bind() or from_listener()",
                ));
            }
        };
        let local_addr = listeners[0].local_addr()?;
        let shared = Arc::new(Shared {
            token: Token::new(),
            force: Token::new(),
            tracker: Tracker::new(),
            limit: Limit::new(self.max_connections),
            metrics: Metrics::default(),
        });
        #[cfg(unix)]
        let signals = if self.handle_signals {
            Some(signals::register(
                shared.token.clone(),
                shared.force.clone(),
            )?)
        } else {
            None
        };
        let handler = Arc::new(handler);
        let timeouts = (self.first_byte_timeout, self.idle_timeout);
        // The most connections the listeners' multishot accepts may take at once: each drains
        // its backlog in one go.
        let backlog = if self.listener.is_some() {
            ASSUMED_BACKLOG
        } else {
            self.backlog
        };
        let burst = usize::try_from(backlog)
            .unwrap_or(usize::MAX)
            .saturating_mul(listeners.len());
        let workers = Runtime::builder()
            .backend(self.backend)
            .build_workers(listeners.len())
            .map_err(io::Error::from)?;
        let accept_loops = listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| {
                let (shared, handler) = (shared.clone(), handler.clone());
                workers
                    .handle(index)
                    .spawn(move || accept_loop(listener, shared, handler, timeouts, burst))
            })
            .collect();
        let coordinator = {
            let shared = shared.clone();
            let timeout = self.shutdown_timeout;
            let trigger = self.shutdown_on.as_ref().and_then(ShutdownFuture::take);
            std::thread::Builder::new()
                .name("weir-shutdown".into())
                .spawn(move || coordinate(shared, timeout, trigger))?
        };
        Ok(ServerHandle {
            shared,
            local_addr,
            accept_loops,
            workers: Some(workers),
            coordinator: Some(coordinator),
            #[cfg(unix)]
            _signals: signals,
        })
    }
}

fn bind_reuseport(addr: &str, workers: usize, backlog: i32) -> io::Result<Vec<StdListener>> {
    use std::net::ToSocketAddrs;
    let mut addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
    let mut listeners = Vec::new();
    for _ in 0..workers {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        let listener: StdListener = socket.into();
        // Port 0: the first bind picks the port, the others join it.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

struct Shared {
    /// Cancelled to start the graceful shutdown; connection tokens are its children.
    token: Token,
    /// Cancelled at the deadline: handlers still running are dropped.
    force: Token,
    tracker: Tracker,
    limit: Limit,
    metrics: Metrics,
}

/// Waits for the shutdown signal, then drains with the deadline.
///
/// Runs on its own thread with no runtime and no descriptor of its own (a runtime would need an
/// epoll or io_uring descriptor, which a process out of descriptors cannot open): the lifecycle
/// primitives work under any executor, here a thread that parks between wake-ups.
fn coordinate(shared: Arc<Shared>, timeout: Duration, trigger: Option<Trigger>) -> Report {
    match trigger {
        Some(trigger) => {
            park_until(select(shared.token.cancelled(), trigger), None);
        }
        None => {
            park_until(shared.token.cancelled(), None);
        }
    }
    let started = Instant::now();
    // The first reason stays: a signal or `shutdown()` that came first keeps its name.
    shared.token.cancel_with("the shutdown future resolved");
    shared.tracker.close();
    let in_flight = shared.metrics.active();
    crate::event!(
        INFO,
        "weir server: shutting down ({}), draining {in_flight} connections",
        shared.token.reason().as_deref().unwrap_or("requested")
    );
    // A timeout too long to add to now (`Duration::MAX`) has no deadline: wait for every handler.
    let drained = park_until(shared.tracker.wait(), started.checked_add(timeout)).is_some();
    if !drained {
        crate::event!(
            WARN,
            "weir server: the drain deadline passed with {} connections open; closing them",
            shared.tracker.len()
        );
        shared.force.cancel();
        // Force-closing is prompt (handlers are dropped at their next poll); wait for it.
        park_until(
            shared.tracker.wait(),
            Some(Instant::now() + Duration::from_secs(5)),
        );
    }
    shared.limit.close();
    let mut report = shared.metrics.report();
    report.drain_time = started.elapsed();
    crate::event!(
        INFO,
        "weir server: stopped after {:?} (completed {}, forced {})",
        report.drain_time,
        report.completed,
        report.forced
    );
    report
}

/// Polls `fut` on this thread, parking between wake-ups, until it resolves or `deadline`.
fn park_until<F: Future>(fut: F, deadline: Option<Instant>) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                std::thread::park_timeout(deadline - now);
            }
            None => std::thread::park(),
        }
    }
}

/// A worker's accept loop: admission, accept, a task per connection; after the shutdown
/// signal, it closes its listener and waits for its connections to end.
async fn accept_loop<H, F>(
    listener: StdListener,
    shared: Arc<Shared>,
    handler: Arc<H>,
    (first_byte, idle): (Option<Duration>, Option<Duration>),
    burst: usize,
) where
    H: Fn(TcpStream, SocketAddr, Token) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + 'static,
{
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            shared.metrics.error("listener");
            crate::event!(ERROR, "weir server: the listener cannot be used: {error}");
            return;
        }
    };
    // Held while the loop runs: each connection's guard comes from it, so a connection the
    // loop took is tracked even when the coordinator closes the tracker meanwhile.
    let Ok(tracked) = shared.tracker.track() else {
        return;
    };
    let serve = |mut stream: TcpStream, peer: SocketAddr, permit: OwnedPermit| {
        let Ok(guard) = tracked.track_another() else {
            shared.metrics.error("tracker full");
            return;
        };
        if first_byte.is_some() || idle.is_some() {
            stream.set_read_timeouts(first_byte, idle, shared.metrics.timeouts_counter());
        }
        shared.metrics.accepted();
        let stop = shared.token.child();
        let force = shared.force.clone();
        let connection = handler(stream, peer, stop);
        let metrics_shared = shared.clone();
        crate::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            let _active = metrics_shared.metrics.active_guard();
            match select(force.cancelled(), connection).await {
                // The deadline passed: dropping the handler closes the connection and
                // cancels its in-flight ops.
                Either::Left(()) => metrics_shared.metrics.forced(),
                Either::Right(()) => metrics_shared.metrics.completed(),
            }
        });
    };
    let mut backoff = Backoff::default();
    loop {
        // Admission first: no permit, no accept.
        let permit = match shared.limit.try_acquire_many_owned(1) {
            Ok(permit) => permit,
            Err(_) => {
                // Nothing more from the kernel until a permit returns: its backlog holds them.
                listener.pause_accepting();
                shared.metrics.queued();
                let acquire = shared.limit.acquire_owned();
                match select(shared.token.cancelled(), acquire).await {
                    Either::Left(()) => break,
                    Either::Right(Ok(permit)) => permit,
                    Either::Right(Err(_)) => break,
                }
            }
        };
        // The permit held and those free cover what a multishot accept may take at once, or
        // each accept takes one connection.
        listener.set_multishot_accept(shared.limit.available().saturating_add(1) >= burst);
        let accepted = match select(shared.token.cancelled(), listener.accept()).await {
            Either::Left(()) => break,
            Either::Right(result) => result,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                serve(stream, peer, permit);
            }
            Err(error) => {
                drop(permit);
                match classify(&error) {
                    AcceptError::PerConnection(kind) => shared.metrics.error(kind),
                    AcceptError::Resource(kind) => {
                        shared.metrics.error(kind);
                        shared.metrics.backoff();
                        let delay = backoff.next();
                        backoff.log(&error, delay);
                        if let Either::Left(()) =
                            select(shared.token.cancelled(), time::sleep(delay)).await
                        {
                            break;
                        }
                    }
                }
            }
        }
    }
    // Connections a multishot accept had already taken from the kernel are served like the
    // others (their stop token is cancelled already): dropped, they would reset requests that
    // had arrived. The multishot accept took them only while free permits covered them all.
    loop {
        let taken = match select(shared.force.cancelled(), listener.take_accepted()).await {
            Either::Right(Some(taken)) => taken,
            Either::Left(()) | Either::Right(None) => break,
        };
        match (taken, shared.limit.try_acquire_many_owned(1)) {
            (Ok((stream, peer)), Ok(permit)) => {
                shared.metrics.taken_at_stop();
                serve(stream, peer, permit);
            }
            (Ok(_), Err(_)) => shared.metrics.error("no permit at the shutdown"),
            (Err(error), _) => shared.metrics.error(match classify(&error) {
                AcceptError::PerConnection(kind) | AcceptError::Resource(kind) => kind,
            }),
        }
    }
    // Stop accepting at once: the listener closes here (the kernel's backlog is refused).
    // Then keep serving until every connection of this worker has ended (gracefully or
    // forced).
    drop(listener);
    drop(tracked);
    shared.tracker.wait().await;
}

#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// The connection failed before we got it: skip it and accept again at once.
    PerConnection(&'static str),
    /// The process or system is out of something, or the error is one we do not know (which
    /// may well come back at once, so retrying at once could spin): back off.
    Resource(&'static str),
}

fn classify(error: &io::Error) -> AcceptError {
    let known = error.raw_os_error().and_then(|raw| {
        crate::sys::ACCEPT_ERRORS
            .iter()
            .find(|(code, _, _)| *code == raw)
    });
    match known {
        Some(&(_, name, true)) => AcceptError::Resource(name),
        Some(&(_, name, false)) => AcceptError::PerConnection(name),
        // Unknown errors back off like resource errors: retrying at once would spin.
        None => AcceptError::Resource("other"),
    }
}

/// Exponential backoff for resource errors: 1 ms doubling to 1 s; logs at most once a second.
#[derive(Debug, Default)]
struct Backoff {
    current: Option<Duration>,
    last_log: Option<Instant>,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let next = match self.current {
            None => Duration::from_millis(1),
            Some(current) => (current * 2).min(Duration::from_secs(1)),
        };
        self.current = Some(next);
        next
    }

    fn reset(&mut self) {
        self.current = None;
    }

    fn log(&mut self, error: &io::Error, delay: Duration) {
        if self
            .last_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.last_log = Some(Instant::now());
            crate::event!(
                WARN,
                "weir server: accept failed ({error}); backing off {delay:?}"
            );
        }
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both; the first to finish wins, the other is dropped (`left` is polled first).
async fn select<A: Future, B: Future>(left: A, right: B) -> Either<A::Output, B::Output> {
    let mut left = std::pin::pin!(left);
    let mut right = std::pin::pin!(right);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(out) = left.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::Left(out));
        }
        right.as_mut().poll(cx).map(Either::Right)
    })
    .await
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Each worker's accept loop; it ends once the worker's connections have ended.
    accept_loops: Vec<RemoteJoinHandle<()>>,
    workers: Option<Workers>,
    coordinator: Option<ThreadHandle<Report>>,
    #[cfg(unix)]
    _signals: Option<signals::Registration>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts the graceful shutdown (what SIGTERM does).
    pub fn shutdown(&self) {
        self.shared.token.cancel_with("shutdown requested");
    }

    /// Live counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Admission permits free now: the limit minus the connections being served, minus the one
    /// each accept loop holds while it waits for the next connection.
    pub fn permits_available(&self) -> usize {
        self.shared.limit.available()
    }

    /// Waits for the shutdown to finish and returns the report.
    pub fn join(mut self) -> Report {
        let report = self
            .coordinator
            .take()
            .and_then(|c| c.join().ok())
            .unwrap_or_else(|| self.shared.metrics.report());
        for accept_loop in self.accept_loops.drain(..) {
            let _ = park_until(accept_loop, None);
        }
        drop(self.workers.take());
        let mut report = report;
        report.permits_available = self.shared.limit.available();
        report
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("metrics", &self.shared.metrics)
            .finish_non_exhaustive()
    }
}

/// Errors counted by kind, for the report.
pub(crate) type ErrorCounts = BTreeMap<&'static str, u64>;

#[cfg(test)]
mod tests {
    use super::{AcceptError, classify};

    #[test]
    fn unknown_accept_errors_back_off() {
        for errno in [libc::EINVAL, libc::EBADF, libc::ENOTSOCK, libc::EIO] {
            let error = std::io::Error::from_raw_os_error(errno);
            assert_eq!(classify(&error), AcceptError::Resource("other"), "{error}");
        }
        let aborted = std::io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(
            classify(&aborted),
            AcceptError::PerConnection("ECONNABORTED")
        );
    }
}
