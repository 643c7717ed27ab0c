//! The load generator: one thread pinned to CPU 0, raw epoll, `conns` connections each with one
//! request outstanding (closed loop). After a warm-up it reads the server's CPU time (schedstat),
//! allocation count and — if `perf` works — attaches `perf stat` to count the server's syscalls,
//! then runs exactly `requests` requests and prints one line of `key=value` figures.
//!
//! `bench-load <port> <conns> <message-bytes> <warmup-requests> <requests> <server-pid> <alloc-file>`
//!
//! With `WEIR_BENCH_UPSTREAM_PID` (B11: the server is a proxy, that pid the echo server behind
//! it) the upstream's CPU over the measured phase is printed too, as `upstream_cpu_ns`.
//!
//! `WEIR_BENCH_MODE` picks another load (each function's doc says which scenario it drives); with
//! `idle-timed` (B9) the connections stay idle and the figure is the server's CPU while they do.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_benches::framing::{Framing, Replies};
use weir_benches::{pin_to, pin_token, read_allocations};

struct Conn {
    stream: TcpStream,
    sent_at: Instant,
    replies: Replies,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 8 {
        eprintln!(
            "usage: bench-load <port> <conns> <bytes> <warmup> <requests> <server-pid> <alloc-file>"
        );
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("port");
    let conns: usize = args[2].parse().expect("conns");
    let size: usize = args[3].parse().expect("bytes");
    let warmup: u64 = args[4].parse().expect("warmup");
    let requests: u64 = args[5].parse().expect("requests");
    let server_pid: u32 = args[6].parse().expect("pid");
    let alloc_file = &args[7];
    // The harness reads this token and reports a failed pin in the run's header.
    println!("{}", pin_token(&pin_to(0)));

    if size == 0 {
        idle(port, conns, server_pid);
        return;
    }
    match std::env::var("WEIR_BENCH_MODE").as_deref() {
        Ok("idle-timed") => return idle_timed(port, conns, size, server_pid),
        Ok("churn") => return measure(churn(port, size), warmup, requests, server_pid, alloc_file),
        Ok("bulk") => return measure(bulk(port, size), warmup, requests, server_pid, alloc_file),
        Ok(mode @ ("open" | "http-open")) => {
            let rate: f64 = std::env::var("WEIR_BENCH_RATE")
                .ok()
                .and_then(|r| r.parse().ok())
                .filter(|r: &f64| *r > 0.0)
                .expect("WEIR_BENCH_RATE (requests per second) for the open loop");
            let framing = if mode == "open" {
                Framing::Echo(size)
            } else {
                Framing::Http
            };
            let load = open_loop(port, conns, framing, rate);
            return measure(load, warmup, requests, server_pid, alloc_file);
        }
        Ok("udp") => {
            let flows = udp(port, conns, size);
            measure(flows, warmup, requests, server_pid, alloc_file);
            // An empty datagram stops the server.
            let stop = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let _ = stop.send_to(&[], ("127.0.0.1", port));
            return;
        }
        Ok("http") => {
            let load = closed_loop(port, conns, Framing::Http);
            return measure(load, warmup, requests, server_pid, alloc_file);
        }
        _ => {}
    }
    measure(
        closed_loop(port, conns, Framing::Echo(size)),
        warmup,
        requests,
        server_pid,
        alloc_file,
    );
}

/// B1, B2, B3 (echo) and B10 (HTTP/1.1 keep-alive): `conns` connections, one request
/// outstanding on each.
fn closed_loop(port: u16, conns: usize, framing: Framing) -> impl FnMut(u64, &mut Vec<u32>) {
    let message = framing.request();
    let size = message.len();
    let mut buf = vec![0u8; size.max(65_536)];
    let mut connections: Vec<Conn> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_nonblocking(true).expect("nonblocking");
            Conn {
                stream,
                sent_at: Instant::now(),
                replies: Replies::new(framing),
            }
        })
        .collect();
    // SAFETY: plain epoll setup on descriptors we own.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    for (key, conn) in connections.iter().enumerate() {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: key as u64,
        };
        // SAFETY: as above; `event` lives across the call.
        unsafe {
            libc::epoll_ctl(
                epoll,
                libc::EPOLL_CTL_ADD,
                conn.stream.as_raw_fd(),
                &mut event,
            )
        };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];

    move |total: u64, latencies: &mut Vec<u32>| {
        let mut done = 0u64;
        let mut in_flight = 0u64;
        for conn in connections.iter_mut() {
            if in_flight < total {
                send(conn, &message);
                in_flight += 1;
            }
        }
        while done < total {
            // SAFETY: `events` has room for its length.
            let n =
                unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
            for event in events.iter().take(n.max(0) as usize) {
                let conn = &mut connections[event.u64 as usize];
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => panic!("the server closed a connection"),
                        Ok(n) => {
                            let complete = conn.replies.feed(&buf[..n]).expect("a reply");
                            for _ in 0..complete {
                                latencies.push(
                                    conn.sent_at.elapsed().as_nanos().min(u128::from(u32::MAX))
                                        as u32,
                                );
                                done += 1;
                                if in_flight < total {
                                    send(conn, &message);
                                    in_flight += 1;
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
        }
    }
}

/// Warms up, then counts exactly `requests` requests of `run` (server CPU, allocations,
/// syscalls or callgrind instructions, latencies) and prints the figures line.
fn measure(
    mut run: impl FnMut(u64, &mut Vec<u32>),
    warmup: u64,
    requests: u64,
    server_pid: u32,
    alloc_file: &str,
) {
    let mut warm = Vec::new();
    run(warmup, &mut warm);

    // Under callgrind (`WEIR_BENCH_CALLGRIND`), the server's instruction counters are zeroed
    // now and dumped after the counted phase; perf stays out of the way.
    let callgrind = std::env::var_os("WEIR_BENCH_CALLGRIND").is_some();
    if callgrind {
        callgrind_control("-z", server_pid);
    }
    let cpu_before = server_cpu_ns(server_pid);
    // B11: the upstream echo server behind the proxy shares this core; its CPU is the
    // client side's too.
    let upstream_pid: Option<u32> = std::env::var("WEIR_BENCH_UPSTREAM_PID")
        .ok()
        .and_then(|pid| pid.parse().ok());
    let upstream_before = upstream_pid.map(server_cpu_ns);
    let allocs_before = read_allocations(alloc_file).unwrap_or(0);
    let perf_out = format!("{alloc_file}.perf");
    // `WEIR_BENCH_NO_PERF`: this round does not count syscalls (the harness counts them in
    // some rounds only; attaching perf costs a fifth of a second a run).
    let count_syscalls = !callgrind && std::env::var_os("WEIR_BENCH_NO_PERF").is_none();
    let mut perf = count_syscalls
        .then(|| {
            Command::new("perf")
                .args([
                    "stat",
                    "-x,",
                    "-e",
                    "raw_syscalls:sys_enter",
                    "-o",
                    &perf_out,
                    "-p",
                    &server_pid.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .flatten();
    if perf.is_some() {
        // perf needs a moment to attach before the counted phase starts.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let mut latencies = Vec::with_capacity(requests as usize);
    let start = Instant::now();
    run(requests, &mut latencies);
    let elapsed = start.elapsed();
    if callgrind {
        callgrind_control("-d", server_pid);
    }
    let cpu_after = server_cpu_ns(server_pid);
    let upstream_cpu = upstream_pid
        .zip(upstream_before)
        .map(|(pid, before)| server_cpu_ns(pid).saturating_sub(before));
    let allocs_after = read_allocations(alloc_file).unwrap_or(0);
    let syscalls = perf.as_mut().and_then(|child| {
        // SAFETY: kill(2) with SIGINT to our own child: perf then writes its counts and exits.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait().ok()?;
        let text = std::fs::read_to_string(&perf_out).ok()?;
        let _ = std::fs::remove_file(&perf_out);
        text.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    // Client CPU (this thread): was the client the bottleneck?
    let client_cpu = thread_cpu_ns();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "requests={requests} elapsed_ns={} server_cpu_ns={} client_cpu_ns={client_cpu} allocs={} syscalls={} p50_ns={} p99_ns={} p999_ns={}{}",
        elapsed.as_nanos(),
        cpu_after.saturating_sub(cpu_before),
        allocs_after.saturating_sub(allocs_before),
        match syscalls {
            Some(count) => format!("{count}"),
            None if count_syscalls => "na".to_string(),
            None => "off".to_string(),
        },
        pct(0.50),
        pct(0.99),
        pct(0.999),
        upstream_cpu.map_or_else(String::new, |ns| format!(" upstream_cpu_ns={ns}")),
    );
}

/// B7: `size`-byte echo on a fresh connection each time — connect, write, read the echo, close.
fn churn(port: u16, size: usize) -> impl FnMut(u64, &mut Vec<u32>) {
    let message = vec![0x5au8; size];
    let mut echo = vec![0u8; size];
    move |total, latencies| {
        for _ in 0..total {
            let started = Instant::now();
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream.write_all(&message).expect("write");
            stream.read_exact(&mut echo).expect("echo");
            drop(stream);
            latencies.push(started.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        }
    }
}

/// B4: an open loop — requests are due at a fixed rate whatever the server does, spread over
/// `conns` connections (pipelined: the echo keeps their order). Latency counts from when a
/// request was *due*, not when it was sent, so a stalled server is charged for the requests
/// that queued behind it (no coordinated omission). The client spins; it has its own core.
fn open_loop(
    port: u16,
    conns: usize,
    framing: Framing,
    rate: f64,
) -> impl FnMut(u64, &mut Vec<u32>) {
    let mut streams: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_nonblocking(true).expect("nonblocking");
            stream
        })
        .collect();
    let message = framing.request();
    let mut buf = vec![0u8; 65_536];
    let interval = std::time::Duration::from_secs_f64(1.0 / rate);
    move |total, latencies| {
        let mut due: Vec<std::collections::VecDeque<Instant>> =
            vec![std::collections::VecDeque::new(); streams.len()];
        let mut replies: Vec<Replies> = (0..streams.len()).map(|_| Replies::new(framing)).collect();
        let start = Instant::now();
        let (mut issued, mut done) = (0u64, 0u64);
        while done < total {
            let now = Instant::now();
            while issued < total && start + interval.mul_f64(issued as f64) <= now {
                let at = start + interval.mul_f64(issued as f64);
                let key = issued as usize % streams.len();
                let mut rest = &message[..];
                while !rest.is_empty() {
                    match streams[key].write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::hint::spin_loop()
                        }
                        Err(e) => panic!("write: {e}"),
                    }
                }
                due[key].push_back(at);
                issued += 1;
            }
            for (key, stream) in streams.iter_mut().enumerate() {
                if due[key].is_empty() {
                    continue;
                }
                match stream.read(&mut buf) {
                    Ok(0) => panic!("the server closed a connection"),
                    Ok(n) => {
                        let complete = replies[key].feed(&buf[..n]).expect("a reply");
                        for _ in 0..complete {
                            if let Some(at) = due[key].pop_front() {
                                latencies
                                    .push(at.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                                done += 1;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
}

/// B6: `flows` UDP sockets, each with one `size`-byte datagram outstanding (closed loop). A
/// datagram lost on loopback (never seen here, but UDP allows it) is resent after 200 ms.
fn udp(port: u16, flows: usize, size: usize) -> impl FnMut(u64, &mut Vec<u32>) {
    let sockets: Vec<std::net::UdpSocket> = (0..flows)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.connect(("127.0.0.1", port)).expect("connect");
            socket.set_nonblocking(true).expect("nonblocking");
            socket
        })
        .collect();
    // SAFETY: plain epoll setup on descriptors we own; each `event` lives across its call.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    for (key, socket) in sockets.iter().enumerate() {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: key as u64,
        };
        // SAFETY: as above.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event) };
    }
    let message = vec![0x5au8; size];
    let mut buf = vec![0u8; 65_536];
    let mut sent_at = vec![Instant::now(); flows];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    move |total, latencies| {
        let mut done = 0u64;
        let mut in_flight = 0u64;
        for (key, socket) in sockets.iter().enumerate() {
            if in_flight < total {
                socket.send(&message).expect("send");
                sent_at[key] = Instant::now();
                in_flight += 1;
            }
        }
        while done < total {
            // SAFETY: `events` has room for its length.
            let n =
                unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 200) };
            if n == 0 {
                // Nothing for 200 ms: resend every outstanding datagram.
                for (key, socket) in sockets.iter().enumerate() {
                    let _ = socket.send(&message);
                    sent_at[key] = Instant::now();
                }
                continue;
            }
            for event in events.iter().take(n.max(0) as usize) {
                let key = event.u64 as usize;
                let socket = &sockets[key];
                while let Ok(got) = socket.recv(&mut buf) {
                    if got != size || done >= total {
                        continue;
                    }
                    latencies
                        .push(sent_at[key].elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                    done += 1;
                    if in_flight < total {
                        socket.send(&message).expect("send");
                        sent_at[key] = Instant::now();
                        in_flight += 1;
                    }
                }
            }
        }
    }
}

/// B5: one connection streaming `size`-byte writes from a second thread while this one reads
/// the echo; a request is one chunk echoed, its latency the time since the previous one.
fn bulk(port: u16, size: usize) -> impl FnMut(u64, &mut Vec<u32>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 256 * 1024];
    move |total, latencies| {
        let mut writer = stream.try_clone().expect("clone");
        let chunk = vec![0x5au8; size];
        let feeder = std::thread::spawn(move || {
            // The reading thread's pin is the one reported; this is best effort.
            let _ = pin_to(0);
            for _ in 0..total {
                writer.write_all(&chunk).expect("bulk write");
            }
        });
        let expected = total as usize * size;
        let mut received = 0;
        let mut last = Instant::now();
        let mut reader = &stream;
        while received < expected {
            let n = reader.read(&mut buf).expect("bulk read");
            assert!(n > 0, "the server closed the bulk stream");
            let before = received / size;
            received += n;
            for _ in before..received / size {
                latencies.push(last.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                last = Instant::now();
            }
        }
        feeder.join().expect("feeder");
    }
}

fn send(conn: &mut Conn, message: &[u8]) {
    conn.sent_at = Instant::now();
    let mut rest = message;
    while !rest.is_empty() {
        match conn.stream.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// CPU time of every thread of `pid`, from `/proc/<pid>/task/*/schedstat` (nanoseconds).
fn server_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// B8: opens `conns` connections that send nothing and reports the server's resident memory per
/// connection (`VmRSS` after minus before, over `conns`).
fn idle(port: u16, conns: usize, server_pid: u32) {
    let before = rss_bytes(server_pid);
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // Let the server accept them all and settle.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let after = rss_bytes(server_pid);
    println!(
        "requests=0 idle_conns={conns} rss_before={before} rss_after={after} idle_bytes_per_conn={}",
        after.saturating_sub(before) / conns.max(1) as u64
    );
    drop(streams);
}

/// How long B9 measures the server's CPU over: `WEIR_BENCH_IDLE_WINDOW_MS`, 3 s if unset.
/// Before it, the server settles for a third of that once it holds every connection.
fn idle_timed_window() -> Duration {
    std::env::var("WEIR_BENCH_IDLE_WINDOW_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_millis)
}

/// B9: opens `conns` connections that stay idle while the server loops on timed reads on each.
/// Once the server holds them all (one descriptor each) and has settled, measures its CPU time
/// over [`idle_timed_window`] and its resident memory per connection. Then a `size`-byte message
/// goes out on every connection and every echo must come back (the server is alive, not just
/// quiet); closing the connections lets it exit. Exits non-zero if an echo is missing.
fn idle_timed(port: u16, conns: usize, size: usize, server_pid: u32) {
    let fds_before = open_fds(server_pid);
    let rss_before = rss_bytes(server_pid);
    let mut streams: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream
        })
        .collect();
    let accept_deadline = Instant::now() + Duration::from_secs(30);
    while open_fds(server_pid) < fds_before + conns {
        if Instant::now() > accept_deadline {
            eprintln!(
                "bench-load: the server holds {} of the {conns} connections after 30 s",
                open_fds(server_pid).saturating_sub(fds_before)
            );
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let window = idle_timed_window();
    std::thread::sleep(window / 3);

    let cpu_before = process_cpu_ns(server_pid);
    let started = Instant::now();
    std::thread::sleep(window);
    let cpu_after = process_cpu_ns(server_pid);
    let window = started.elapsed();
    let rss_after = rss_bytes(server_pid);

    let message: Vec<u8> = (0..size.max(1)).map(|i| i as u8).collect();
    let echo_started = Instant::now();
    for stream in &mut streams {
        stream.write_all(&message).expect("write");
    }
    let echo_deadline = Instant::now() + Duration::from_secs(10);
    let mut echo = vec![0u8; message.len()];
    let mut echoed = 0;
    for stream in &mut streams {
        let left = echo_deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        if stream.read_exact(&mut echo).is_ok() && echo == message {
            echoed += 1;
        }
    }
    let echo_elapsed = echo_started.elapsed();
    println!(
        "requests=0 idle_conns={conns} window_ns={} server_cpu_ns={} rss_before={rss_before} \
         rss_after={rss_after} idle_bytes_per_conn={} echoed={echoed} echo_ns={}",
        window.as_nanos(),
        cpu_after.saturating_sub(cpu_before),
        rss_after.saturating_sub(rss_before) / conns.max(1) as u64,
        echo_elapsed.as_nanos(),
    );
    drop(streams);
    if echoed < conns {
        eprintln!(
            "bench-load: {} of {conns} idle connections did not echo their message",
            conns - echoed
        );
        std::process::exit(1);
    }
}

/// Descriptors `pid` holds open, from `/proc/<pid>/fd` (0 if it is gone).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count())
}

/// CPU time of `pid`: [`server_cpu_ns`] (nanoseconds, per thread), or, where the kernel keeps no
/// schedstat, `utime + stime` from `/proc/<pid>/stat` (whole clock ticks, usually 10 ms).
fn process_cpu_ns(pid: u32) -> u64 {
    let precise = server_cpu_ns(pid);
    if precise > 0 {
        return precise;
    }
    // SAFETY: sysconf(3) reads a configuration value; it touches no memory of ours.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces): state is field 3, utime
            // and stime are fields 14 and 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    ticks * 1_000_000_000 / ticks_per_second
}

/// Resident memory of `pid` in bytes, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `callgrind_control <action> <pid>` (zero or dump the counters of a server that runs
/// under callgrind), waiting for it.
fn callgrind_control(action: &str, pid: u32) {
    let status = Command::new("callgrind_control")
        .args([action, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("bench-load: callgrind_control {action} {pid} failed");
        std::process::exit(1);
    }
}
