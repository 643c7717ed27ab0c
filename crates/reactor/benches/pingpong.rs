//! Loopback TCP ping-pong: an echo server on Weir's reactor against one on tokio's
//! `current_thread` runtime, measured in the same run.
//!
//! `cargo bench -p weir-reactor --bench pingpong` (or `cargo xtask bench`). The client runs in
//! this process pinned to CPU 0; each server runs in a child process pinned to CPU 1, under
//! `perf stat -e raw_syscalls:sys_enter` when `perf` is available, so the syscall count is the
//! kernel's own. Rounds alternate between the two servers; the best round of each is reported.
//! Nothing here is asserted.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use weir_reactor::{Direction, Reactor};

const MESSAGE: usize = 64;
const BUFFER: usize = 4096;

fn round_trips() -> u64 {
    if std::env::var_os("WEIR_BENCH_FULL").is_some() {
        200_000
    } else {
        50_000
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: `cpu_set_t` is a plain bit set; all-zero is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, initialised `cpu_set_t`; `CPU_SET` ignores out-of-range CPUs.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is live and sized as the call expects; pid 0 is this thread. Failure only
    // leaves the thread unpinned.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

fn listen() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    println!("{}", listener.local_addr().expect("addr").port());
    io::stdout().flush().expect("stdout");
    listener
}

fn serve_weir() {
    let listener = listen();
    let (stream, _) = listener.accept().expect("accept");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_nonblocking(true).expect("nonblocking");
    let reactor = Reactor::new().expect("reactor");
    let stream = reactor.register(stream).expect("register");
    let mut buf = [0u8; BUFFER];
    let noop = &mut Context::from_waker(Waker::noop());
    loop {
        let Poll::Ready(event) = stream.poll_ready(Direction::Read, noop) else {
            reactor.turn(None).expect("turn");
            continue;
        };
        match (stream.get_ref()).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if n < buf.len() {
                    // A short read drained the socket: an edge-triggered poller reports the next
                    // arrival as a new event, so no speculative read for EAGAIN is needed.
                    stream.clear_readiness(event);
                }
                let mut sent = 0;
                while sent < n {
                    match (stream.get_ref()).write(&buf[sent..n]) {
                        Ok(m) => sent += m,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            reactor.turn(None).expect("turn");
                        }
                        Err(_) => return,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.clear_readiness(event),
            Err(_) => return,
        }
    }
}

fn serve_tokio() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = listen();
    listener.set_nonblocking(true).expect("nonblocking");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; BUFFER];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

struct Round {
    ns_per_round_trip: f64,
    syscalls_per_round_trip: Option<f64>,
}

fn run_round(server: &str, perf: bool) -> Round {
    let me = std::env::current_exe().expect("own path");
    let perf_out = std::env::temp_dir().join(format!(
        "weir-pingpong-{}-{server}.perf",
        std::process::id()
    ));
    let mut command = if perf {
        let mut c = Command::new("perf");
        c.args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o"])
            .arg(&perf_out)
            .arg("--")
            .arg(&me);
        c
    } else {
        Command::new(&me)
    };
    let mut child = command
        .args(["--server", server])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut port = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("port");
    let mut stream = TcpStream::connect(("127.0.0.1", port.trim().parse::<u16>().expect("port")))
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let message = [42u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    let n = round_trips();
    for _ in 0..1_000 {
        stream.write_all(&message).expect("write");
        stream.read_exact(&mut reply).expect("read");
    }
    let start = Instant::now();
    for _ in 0..n {
        stream.write_all(&message).expect("write");
        stream.read_exact(&mut reply).expect("read");
    }
    let elapsed = start.elapsed();
    drop(stream);
    child.wait().expect("server exit");
    let syscalls = perf
        .then(|| std::fs::read_to_string(&perf_out).ok())
        .flatten()
        .and_then(|text| {
            text.lines()
                .find(|l| l.contains("raw_syscalls:sys_enter"))
                .and_then(|l| l.split(',').next())
                .and_then(|count| count.trim().parse::<f64>().ok())
        });
    let _ = std::fs::remove_file(&perf_out);
    Round {
        ns_per_round_trip: elapsed.as_nanos() as f64 / n as f64,
        syscalls_per_round_trip: syscalls.map(|s| s / (n + 1_000) as f64),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--server") {
        pin_to(1);
        match args.get(i + 1).map(String::as_str) {
            Some("weir") => serve_weir(),
            Some("tokio") => serve_tokio(),
            other => panic!("unknown server {other:?}"),
        }
        return;
    }
    pin_to(0);
    let perf = Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let rounds = 3;
    let mut best: [Option<Round>; 2] = [None, None];
    for _ in 0..rounds {
        for (index, server) in ["weir", "tokio"].into_iter().enumerate() {
            let round = run_round(server, perf);
            if best[index]
                .as_ref()
                .is_none_or(|b| round.ns_per_round_trip < b.ns_per_round_trip)
            {
                best[index] = Some(round);
            }
        }
    }
    println!(
        "weir-reactor ping-pong: loopback TCP, {MESSAGE} B messages, {} round trips x {rounds} rounds (best round)",
        round_trips()
    );
    println!("{:<28} {:>12} {:>18}", "server", "ns / RT", "syscalls / RT");
    for (index, server) in ["weir reactor", "tokio current_thread"]
        .into_iter()
        .enumerate()
    {
        if let Some(round) = &best[index] {
            let syscalls = round
                .syscalls_per_round_trip
                .map_or_else(|| "n/a (no perf)".to_string(), |s| format!("{s:.2}"));
            println!(
                "{server:<28} {:>12.0} {syscalls:>18}",
                round.ns_per_round_trip
            );
        }
    }
    if let [Some(weir), Some(tokio)] = &best {
        println!(
            "ratio weir / tokio (ns per RT): {:.3}",
            weir.ns_per_round_trip / tokio.ns_per_round_trip
        );
    }
}
