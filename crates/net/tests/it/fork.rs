//! Forking a process whose runtime has connections in flight, on both backends. The child exits
//! at once, builds its own runtime and serves, execs, or drops what it inherited; the parent's
//! connection must keep echoing byte-exact, and the child must leave the parent's ring (or
//! epoll instance) alone: both are shared across `fork(2)`, so a cancel pushed or a
//! registration deleted in the child would reach the parent's.
//!
//! Each child reports through a pipe (what it did, and the data it served) and its exit code;
//! the parent checks both, so a child that exited without running its scenario fails the test.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

use weir_net::{Backend, Runtime, TcpListener, TcpStream, spawn, time::timeout};

use crate::support::{fnv, on_each_backend_owned, pattern};

/// How long a round trip may take before the parent's connection counts as stalled (a child
/// that deleted the parent's registrations leaves it waiting forever).
const STALL: Duration = Duration::from_secs(10);

/// Bytes per echo round trip.
const ROUND: usize = 64 * 1024;

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2(2) writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just made by pipe2(2) and are owned by nothing else.
    let read = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let write = unsafe { std::fs::File::from_raw_fd(fds[1]) };
    (read, write)
}

enum Forked {
    Child,
    Parent(libc::pid_t),
}

fn fork() -> Forked {
    // SAFETY: the children below only write to a pipe, build new objects, drop what they
    // inherited, exec, or `_exit` (glibc's fork keeps malloc usable in the child).
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => Forked::Child,
        pid => Forked::Parent(pid),
    }
}

/// In the child: runs `body`, writes what it reports to `out`, and exits — 0 if it succeeded,
/// 1 if it failed, 101 if it panicked (a panic must not unwind into the copy of the test
/// harness the child inherited) — running no destructor and no `atexit` handler of the
/// parent's.
fn run_child(mut out: &std::fs::File, body: impl FnOnce() -> Result<String, String>) -> ! {
    let (report, code) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(report)) => (report, 0),
        Ok(Err(error)) => (format!("failed: {error}\n"), 1),
        Err(_) => ("panicked\n".to_owned(), 101),
    };
    let _ = out.write_all(report.as_bytes());
    // SAFETY: `_exit(2)` ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Waits for child `pid` and returns its exit code; a child killed by a signal fails the test.
fn wait_exit(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child, not yet reaped; `status` outlives the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "waitpid: {error}"
        );
    }
    assert!(
        libc::WIFEXITED(status),
        "the child died of signal {}",
        libc::WTERMSIG(status)
    );
    libc::WEXITSTATUS(status)
}

/// Reads what the child wrote until it closed the pipe (the parent's write end must be closed).
fn read_report(from: &std::fs::File) -> String {
    read_from_child(from, false)
}

/// Reads what the child wrote, byte by byte, to the end of the first line (`line`) or until
/// it closed the pipe; a child that stays silent for `STALL` fails the test instead of hanging
/// it.
fn read_from_child(mut from: &std::fs::File, line: bool) -> String {
    let mut report = Vec::new();
    let mut byte = [0u8; 1];
    while !(line && report.last() == Some(&b'\n')) {
        let mut fd = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(STALL.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd that outlives the call.
        let ready = unsafe { libc::poll(&mut fd, 1, millis) };
        assert!(
            ready != 0,
            "the child said nothing for {STALL:?}; so far: {:?}",
            String::from_utf8_lossy(&report)
        );
        match from.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => report.push(byte[0]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => panic!("child report: {error}"),
        }
    }
    String::from_utf8(report).expect("the child's report is text")
}

/// The payload of round trip `round`.
fn payload(round: usize) -> Vec<u8> {
    (0..ROUND).map(|i| pattern(i + round * 7)).collect()
}

/// Starts an echo server on `rt` (a task accepting and echoing every connection) and connects
/// a client to it; one round trip shows both work. The server task and the client's armed
/// receive stay in the runtime's driver between `block_on` calls.
fn start_echo(rt: &Runtime) -> (TcpStream, SocketAddr) {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                spawn(async move {
                    let mut buf = Vec::with_capacity(ROUND);
                    loop {
                        buf.clear();
                        let (n, back) = conn.read(buf).await;
                        buf = back;
                        if !matches!(n, Ok(1..)) {
                            return;
                        }
                        let (r, back) = conn.write_all(buf).await;
                        buf = back;
                        if r.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let mut client = TcpStream::connect(addr).await.expect("connect");
        round_trip(&mut client, 0, "before the fork").await;
        (client, addr)
    })
}

/// One echo round trip of `ROUND` bytes over `client`, byte-exact, within `STALL`.
async fn round_trip(client: &mut TcpStream, round: usize, when: &str) {
    let sent = payload(round);
    let expected = fnv(&sent);
    let exchange = async {
        let (r, _) = client.write_all(sent).await;
        r.expect("write");
        let (r, back) = client.read_exact(Vec::new(), ROUND).await;
        r.expect("read back");
        back
    };
    let back = timeout(STALL, exchange)
        .await
        .unwrap_or_else(|_| panic!("the parent's connection stalled {when}"));
    assert_eq!(back.len(), ROUND, "{when}: length");
    assert_eq!(fnv(&back), expected, "{when}: content");
}

/// The parent's connection echoes on after the child, and the listener accepts a new one.
fn parent_serves_on(rt: &Runtime, client: &mut TcpStream, addr: SocketAddr, when: &str) {
    rt.block_on(async {
        for round in 1..4 {
            round_trip(client, round, when).await;
        }
        let mut fresh = TcpStream::connect(addr).await.expect("new connection");
        round_trip(&mut fresh, 9, &format!("{when}, on a new connection")).await;
    });
}

#[test]
fn a_child_that_exits_at_once_leaves_the_parent_serving() {
    on_each_backend_owned(|backend, rt| {
        let (mut client, addr) = start_echo(&rt);
        let (from_child, to_parent) = pipe();
        // Forked inside `block_on`, with the server's and the client's receives armed.
        let pid = rt.block_on(async {
            match fork() {
                Forked::Child => run_child(&to_parent, || Ok("exiting\n".to_owned())),
                Forked::Parent(pid) => pid,
            }
        });
        drop(to_parent);
        assert_eq!(read_report(&from_child), "exiting\n", "{backend:?}");
        assert_eq!(wait_exit(pid), 0, "{backend:?}");
        parent_serves_on(
            &rt,
            &mut client,
            addr,
            &format!("{backend:?}: after a child exited"),
        );
    });
}

#[test]
fn a_child_that_drops_what_it_inherited_leaves_the_parent_s_driver_alone() {
    on_each_backend_owned(|backend, rt| {
        let (mut client, addr) = start_echo(&rt);
        let tracked = rt.driver_tracked();
        assert!(
            tracked > 0,
            "{backend:?}: the connections are in the driver"
        );
        let (from_child, to_parent) = pipe();
        // Forked between `block_on` calls: the child tries the inherited runtime, then drops the
        // client (cancelling its armed receive, at once, as outside `block_on`), then the
        // runtime with its tasks, listener, server connection, pool and driver — every
        // destructor runs.
        let pid = match fork() {
            Forked::Child => run_child(&to_parent, || {
                // A new connection through the inherited runtime is refused (on the ring its
                // op never reaches the parent's queue, on the reactor its registration never
                // reaches the parent's epoll), at once.
                let connect = rt.block_on(TcpStream::connect(addr));
                let refused = match connect {
                    Ok(_) => "connected".to_owned(),
                    Err(error) => format!(
                        "refused: {}",
                        error.raw_os_error().is_some_and(|e| e == libc::EBADFD)
                            || error.to_string().contains("inherited across fork")
                    ),
                };
                drop(client);
                drop(rt);
                Ok(format!("{refused}, dropped {tracked}\n"))
            }),
            Forked::Parent(pid) => pid,
        };
        drop(to_parent);
        assert_eq!(
            read_report(&from_child),
            format!("refused: true, dropped {tracked}\n"),
            "{backend:?}"
        );
        assert_eq!(wait_exit(pid), 0, "{backend:?}");
        parent_serves_on(
            &rt,
            &mut client,
            addr,
            &format!("{backend:?}: after a child dropped the runtime"),
        );
    });
}

/// The child's side of `a_child_builds_its_own_runtime_and_serves`: a fresh runtime on the
/// same backend, a listener whose port goes to the parent, one connection echoed to its end.
fn serve_one_in_child(backend: Backend, report: &std::fs::File) -> Result<String, String> {
    let rt = Runtime::builder()
        .backend(backend)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("addr: {e}"))?
            .port();
        let mut out = report;
        out.write_all(format!("port {port}\n").as_bytes())
            .map_err(|e| format!("report: {e}"))?;
        let (mut conn, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let mut echoed = 0;
        loop {
            let (n, buf) = conn.read(Vec::with_capacity(ROUND)).await;
            match n.map_err(|e| format!("read: {e}"))? {
                0 => break,
                n => echoed += n,
            }
            conn.write_all(buf)
                .await
                .0
                .map_err(|e| format!("write: {e}"))?;
        }
        Ok(format!(
            "echoed {echoed} on {:?}\n",
            rt.backend_report().backend
        ))
    })
}

#[test]
fn a_child_builds_its_own_runtime_and_serves() {
    on_each_backend_owned(|backend, rt| {
        let (mut client, addr) = start_echo(&rt);
        let (from_child, to_parent) = pipe();
        let pid = match fork() {
            Forked::Child => run_child(&to_parent, || serve_one_in_child(backend, &to_parent)),
            Forked::Parent(pid) => pid,
        };
        drop(to_parent);
        let line = read_from_child(&from_child, true);
        let port: u16 = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{backend:?}: the child reported {line:?}, not its port"));
        // The parent talks to the child's server with a plain blocking socket.
        let sent = payload(3);
        let mut peer = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect child");
        peer.set_read_timeout(Some(STALL)).expect("timeout");
        peer.write_all(&sent).expect("write to child");
        peer.shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut back = Vec::new();
        peer.read_to_end(&mut back)
            .expect("the child's echo, to its end");
        assert_eq!(fnv(&back), fnv(&sent), "{backend:?}: the child's echo");
        let rest = read_report(&from_child);
        assert_eq!(wait_exit(pid), 0, "{backend:?}: {rest}");
        assert_eq!(
            rest,
            format!("echoed {ROUND} on {backend:?}\n"),
            "{backend:?}"
        );
        parent_serves_on(
            &rt,
            &mut client,
            addr,
            &format!("{backend:?}: after a child served"),
        );
    });
}

/// What `readlink(2)` says each descriptor of this process is, by number.
fn own_descriptors() -> Vec<(String, String)> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

#[test]
fn an_exec_d_child_holds_no_ring_epoll_or_socket_of_the_parent() {
    on_each_backend_owned(|backend, rt| {
        let before: Vec<String> = own_descriptors().into_iter().map(|(_, t)| t).collect();
        let (mut client, addr) = start_echo(&rt);
        // What the runtime and the test's sockets added (a parallel test may add a few more;
        // none of them may reach an exec'd child either).
        let added: Vec<String> = own_descriptors()
            .into_iter()
            .map(|(_, target)| target)
            .filter(|target| !before.contains(target))
            .collect();
        // The parent holds what the child must not: its driver and the driver's eventfd.
        let driver = if backend == Backend::Uring {
            "anon_inode:[io_uring]"
        } else {
            "anon_inode:[eventpoll]"
        };
        for held in [driver, "anon_inode:[eventfd]"] {
            assert!(
                own_descriptors().iter().any(|(_, t)| t == held),
                "{backend:?}: the parent holds {held}"
            );
        }
        assert!(
            added.iter().filter(|t| t.starts_with("socket:")).count() >= 3,
            "{backend:?}: the listener and both ends of the connection are descriptors: {added:?}"
        );
        let (from_child, to_parent) = pipe();
        let script = c"echo exec-ran; for f in /proc/$$/fd/*; do echo \"$f $(readlink $f)\"; done";
        let argv = [
            c"sh".as_ptr(),
            c"-c".as_ptr(),
            script.as_ptr(),
            std::ptr::null(),
        ];
        // Forked inside `block_on`, with the receives armed; the child execs a shell that lists
        // its descriptors to the pipe.
        let pid = rt.block_on(async {
            match fork() {
                Forked::Child => run_child(&to_parent, || {
                    // SAFETY: dup2(2) of a descriptor the child holds onto its stdout.
                    unsafe { libc::dup2(to_parent.as_raw_fd(), 1) };
                    // SAFETY: execv(2) with a NUL-terminated path and a NULL-terminated argv
                    // of NUL-terminated strings that live until the exec; it returns only if
                    // the exec failed.
                    unsafe { libc::execv(c"/bin/sh".as_ptr(), argv.as_ptr()) };
                    Err(format!("exec: {}", std::io::Error::last_os_error()))
                }),
                Forked::Parent(pid) => pid,
            }
        });
        drop(to_parent);
        let listing = read_report(&from_child);
        assert_eq!(wait_exit(pid), 0, "{backend:?}: {listing}");
        assert!(listing.starts_with("exec-ran\n"), "{backend:?}: {listing}");
        let descriptors: Vec<&str> = listing.lines().skip(1).collect();
        assert!(
            descriptors.iter().any(|l| l.contains("/fd/1 pipe:")),
            "{backend:?}: the listing shows the shell's stdout, the pipe: {listing}"
        );
        for line in &descriptors {
            // The ring, the epoll instance and their wake-up eventfds.
            assert!(
                ![
                    "anon_inode:[io_uring]",
                    "anon_inode:[eventpoll]",
                    "anon_inode:[eventfd]"
                ]
                .iter()
                .any(|driver| line.contains(driver)),
                "{backend:?}: the exec'd child holds a driver's descriptor: {line}"
            );
            assert!(
                !added
                    .iter()
                    .any(|t| t.starts_with("socket:") && line.ends_with(t.as_str())),
                "{backend:?}: the exec'd child holds a socket of the parent's runtime: {line}"
            );
        }
        parent_serves_on(
            &rt,
            &mut client,
            addr,
            &format!("{backend:?}: after a child exec'd"),
        );
    });
}
