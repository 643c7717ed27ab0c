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
    on_each_backend_owned(|backend, rt| test(backend, &rt));
}

/// As [`on_each_backend`], handing `test` the runtime itself (to drop it, or a forked child's
/// copy of it).
pub(crate) fn on_each_backend_owned(test: impl Fn(Backend, Runtime)) {
    let _serial = serial();
    for backend in backends() {
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .unwrap_or_else(|e| panic!("{backend:?} runtime: {e}"));
        test(backend, rt);
    }
}

/// A connected loopback pair on this thread's runtime: (client, server).
pub(crate) async fn tcp_pair() -> (weir_net::TcpStream, weir_net::TcpStream) {
    let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = weir_net::TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (client, server)
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

/// An example's binary: `cargo test` builds the examples next to the test binaries, in
/// target/<profile>/examples.
pub(crate) fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("target layout")
}

/// The backend's name as the examples' `--backend` flag spells it.
pub(crate) fn flag(backend: Backend) -> &'static str {
    if backend == Backend::Uring {
        "uring"
    } else {
        "poll"
    }
}

/// Starts example `name` with `--addr 127.0.0.1:0` and `args`, and reads the address it prints
/// first.
pub(crate) fn start_example(
    name: &str,
    args: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    std::net::SocketAddr,
) {
    use std::io::BufRead;
    let binary = example_binary(name);
    assert!(
        binary.exists(),
        "the {name} example was not built at {} (run the tests with `cargo test`, which builds \
         the examples; hyper_hello needs `--features hyper`)",
        binary.display()
    );
    let mut child = std::process::Command::new(&binary)
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("address line");
    let addr = line
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name} printed {line:?} instead of its address: {e}"));
    (child, stdout, addr)
}

/// Sends SIGTERM to `child` and returns the rest of its stdout once it exits.
pub(crate) fn terminate(
    mut child: std::process::Child,
    mut stdout: std::io::BufReader<std::process::ChildStdout>,
) -> String {
    use std::io::Read;
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signalling our own child, which has not been reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status}; stdout: {rest}");
    rest
}

/// Re-runs test `name` of this binary in a child under `strace -e trace=<syscalls>`, with
/// `child_env` set (the test's child branch runs the scenario and prints `marker`). Returns the
/// trace, or `None` (printed loudly) where strace is missing. Panics if the child failed or did
/// not print `marker` (the expected test did not run).
pub(crate) fn strace_child(
    name: &str,
    syscalls: &str,
    child_env: &str,
    marker: &str,
) -> Option<String> {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        println!("SKIPPED {name}: strace is not installed");
        return None;
    }
    let trace = std::env::temp_dir().join(format!(
        "weir-strace-{}-{}",
        std::process::id(),
        name.replace(':', "_")
    ));
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e"])
        .arg(format!("trace={syscalls}"))
        .arg("-o")
        .arg(&trace)
        .arg(&exe)
        .args(["--exact", name, "--nocapture"])
        .env(child_env, "1")
        .output()
        .expect("strace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    assert!(
        stdout.contains(marker),
        "the child did not run {name}: {stdout}"
    );
    let text = std::fs::read_to_string(&trace).expect("trace");
    let _ = std::fs::remove_file(&trace);
    Some(text)
}

/// Asserts that the peer closed `stream`: a read sees the end of the stream (or a reset), not a
/// timeout (which `read().unwrap_or(0) == 0` took for a close). Sets a read timeout so a peer
/// that never closes fails the test instead of hanging it; `what` names the connection.
pub(crate) fn assert_closed(stream: &mut std::net::TcpStream, what: &str) {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    let mut byte = [0; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: expected the end of the stream, read {n} byte(s)"),
        Err(error) => panic!("{what}: expected the end of the stream, got {error}"),
    }
}

pub(crate) use weir_testkit::run_child_test;

/// The kernel's accept queue of the loopback listener on `port`: connections it completed that
/// nobody accepted yet (`rx_queue` of a LISTEN socket in `/proc/net/tcp`).
/// Blocks (bounded: 10 s) until the kernel's accept queue of listening `port` holds `count`
/// connections.
pub(crate) fn wait_for_accept_queue(port: u16, count: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while accept_queue(port) != Some(count) {
        assert!(
            std::time::Instant::now() < deadline,
            "the accept queue of port {port} holds {:?}, not {count}, after 10 s",
            accept_queue(port)
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Connections waiting in the accept queues of the IPv4 listeners on `port`, summed over all of
/// them (a `Server` with several workers has one `SO_REUSEPORT` listener each); `None` if no
/// listener is on the port.
pub(crate) fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let queues: Vec<u64> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let listening = fields.get(3)? == &"0A";
            let (_, local_port) = local.split_once(':')?;
            if !listening || u16::from_str_radix(local_port, 16).ok()? != port {
                return None;
            }
            let (_, rx) = fields.get(4)?.split_once(':')?;
            u64::from_str_radix(rx, 16).ok()
        })
        .collect();
    (!queues.is_empty()).then(|| queues.iter().sum())
}
