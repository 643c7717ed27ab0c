//! The examples, each run as a child process on each backend and spoken to as a user would:
//! `hyper_hello` over real HTTP (and with `curl` where it is installed), `udp_echo` with
//! datagrams, `file_server` fetching files sent with `send_file`, `proxy` carrying a seeded
//! stream to an echo upstream and back with `splice_to`. Also the tokio compatibility
//! traits driving Weir streams. (`echo_server` is exercised by the `sigterm` tests.)

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{backends, flag, fnv, pattern, start_example, terminate};

/// Reads one HTTP/1.1 response with a `content-length` body; returns the status line and body.
fn read_response(reader: &mut std::io::BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("content-length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (
        status.trim_end().to_string(),
        String::from_utf8(body).expect("utf-8 body"),
    )
}

#[test]
fn hyper_hello_answers_http_requests() {
    // Child processes mean pipes and sockets here: keep out of the descriptor-counting tests.
    let _serial = crate::support::serial();
    if !cfg!(feature = "hyper") {
        eprintln!(
            "SKIPPED hyper_hello_answers_http_requests: weir-net was built without the `hyper` \
             feature (cargo xtask ci enables it)"
        );
        return;
    }
    for backend in backends() {
        let (child, stdout, addr) = start_example("hyper_hello", &["--backend", flag(backend)]);
        // Two requests on one keep-alive connection, from a plain HTTP/1.1 client.
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = std::io::BufReader::new(stream);
        for path in ["/first", "/second?x=1"] {
            write!(writer, "GET {path} HTTP/1.1\r\nHost: weir\r\n\r\n").expect("request");
            let (status, body) = read_response(&mut reader);
            assert_eq!(status, "HTTP/1.1 200 OK", "{backend:?}");
            let path = path.split('?').next().unwrap_or(path);
            assert!(
                body.starts_with("Hello from Weir (") && body.ends_with(&format!("GET {path}\n")),
                "{backend:?}: {body:?}"
            );
        }
        // curl, where installed, as a second real client.
        match std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "-X", "POST", "-d", "data"])
            .arg(format!("http://{addr}/curl"))
            .output()
        {
            Ok(out) => assert_eq!(
                String::from_utf8_lossy(&out.stdout).rsplit(": ").next(),
                Some("POST /curl\n"),
                "{backend:?}: curl got {out:?}"
            ),
            Err(e) => eprintln!("curl not run ({e}); the raw HTTP client above covers the server"),
        }
        drop((writer, reader));
        let report = terminate(child, stdout);
        assert!(report.contains("forced 0"), "{backend:?}: {report}");
    }
}

#[test]
fn udp_echo_returns_every_datagram() {
    // Child processes mean pipes and sockets here: keep out of the descriptor-counting tests.
    let _serial = crate::support::serial();
    for backend in backends() {
        let (child, mut stdout, addr) =
            start_example("udp_echo", &["--backend", flag(backend), "--count", "3"]);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        for size in [1usize, 64, 1200] {
            let payload: Vec<u8> = (0..size).map(pattern).collect();
            socket.send_to(&payload, addr).expect("send");
            let mut back = vec![0; 2048];
            let (n, from) = socket.recv_from(&mut back).expect("echo");
            assert_eq!((&back[..n], from), (&payload[..], addr), "{backend:?}");
        }
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).expect("stdout");
        let mut child = child;
        assert!(child.wait().expect("wait").success());
        assert_eq!(rest.trim(), "echoed 3", "{backend:?}");
    }
}

#[test]
fn file_server_sends_files_and_refuses_bad_names() {
    // Child processes mean pipes and sockets here: keep out of the descriptor-counting tests.
    let _serial = crate::support::serial();
    let dir = std::env::temp_dir().join(format!("weir-file-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(pattern).collect();
    std::fs::write(dir.join("big.bin"), &big).expect("write");
    std::fs::write(dir.join("empty"), b"").expect("write");
    let dir_arg = dir.to_string_lossy().into_owned();
    for backend in backends() {
        let (child, stdout, addr) = start_example(
            "file_server",
            &["--backend", flag(backend), "--dir", &dir_arg],
        );
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        for (request, expected) in [
            ("GET big.bin\n", Some(&big[..])),
            ("GET empty\n", Some(&b""[..])),
            ("GET ../etc/passwd\n", None),
            ("GET missing\n", None),
            ("GET big.bin\n", Some(&big[..])),
        ] {
            writer.write_all(request.as_bytes()).expect("request");
            line.clear();
            reader.read_line(&mut line).expect("answer");
            match expected {
                Some(content) => {
                    assert_eq!(line, format!("OK {}\n", content.len()), "{backend:?}");
                    let mut got = vec![0; content.len()];
                    reader.read_exact(&mut got).expect("file bytes");
                    assert_eq!(fnv(&got), fnv(content), "{backend:?}: {request}");
                }
                None => assert!(line.starts_with("ERR "), "{backend:?}: {request} -> {line}"),
            }
        }
        drop((writer, reader));
        let report = terminate(child, stdout);
        assert!(
            report.contains("completed 1 forced 0"),
            "{backend:?}: {report}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[cfg(feature = "tokio")]
#[test]
fn tokio_traits_drive_weir_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::support::on_each_backend;
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let message: Vec<u8> = (0..(1 << 20) + 3).map(pattern).collect();
            let expected = fnv(&message);
            // The server speaks only tokio's traits: read everything, send it back, half-close.
            let server = weir_net::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut got = Vec::new();
                conn.read_to_end(&mut got).await.expect("read_to_end");
                // Fully qualified: the owned-buffer methods of the same names come first.
                AsyncWriteExt::write_all(&mut conn, &got)
                    .await
                    .expect("write_all");
                AsyncWriteExt::shutdown(&mut conn).await.expect("shutdown");
                got.len()
            });
            let mut client = weir_net::TcpStream::connect(addr).await.expect("connect");
            let mut tx = client.try_clone().expect("clone");
            let writer = weir_net::spawn(async move {
                tx.write_all(message).await.0.expect("send");
                tx.shutdown(std::net::Shutdown::Write).expect("half-close");
            });
            let mut echoed = Vec::new();
            client
                .read_to_end(&mut echoed)
                .await
                .expect("tokio read_to_end");
            writer.await.expect("writer");
            assert_eq!(server.await.expect("server"), echoed.len(), "{backend:?}");
            assert_eq!(fnv(&echoed), expected, "{backend:?}");
        });
    });
}

#[cfg(not(feature = "tokio"))]
#[test]
fn tokio_traits_drive_weir_streams() {
    eprintln!(
        "SKIPPED tokio_traits_drive_weir_streams: weir-net was built without the `tokio` \
         feature (cargo xtask ci enables it)"
    );
}

#[test]
fn examples_reject_bad_flags_with_a_message_and_status_2() {
    let mut examples = vec!["echo_server", "udp_echo", "file_server"];
    if cfg!(feature = "hyper") {
        examples.push("hyper_hello");
    } else {
        eprintln!("hyper_hello not checked: weir-net was built without the `hyper` feature");
    }
    if cfg!(feature = "tokio") {
        examples.push("tls_echo");
    } else {
        eprintln!("tls_echo not checked: weir-net was built without the `tokio` feature");
    }
    let cases: [(&[&str], &str); 4] = [
        (
            &["--backend", "urnig"],
            "--backend \"urnig\": unknown backend \"urnig\": expected one of uring, poll, auto",
        ),
        (&["--bogus", "1"], "unknown flag --bogus"),
        (&["--addr"], "--addr needs a value"),
        (&["stray"], "unexpected argument \"stray\""),
    ];
    for name in examples {
        let binary = crate::support::example_binary(name);
        assert!(binary.exists(), "{name} was not built");
        for (args, message) in cases {
            let child = std::process::Command::new(&binary)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("run {name}: {e}"));
            let pid = child.id();
            let (done, exited) = std::sync::mpsc::channel();
            std::thread::spawn(move || done.send(child.wait_with_output()));
            let Ok(output) = exited.recv_timeout(Duration::from_secs(30)) else {
                // SAFETY: signalling our own child (a wrong pid at worst signals nothing).
                unsafe { libc::kill(i32::try_from(pid).expect("pid"), libc::SIGKILL) };
                panic!("{name} {args:?} did not exit: it started despite the bad flag");
            };
            let output = output.unwrap_or_else(|e| panic!("wait for {name}: {e}"));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}");
            assert!(
                stderr.contains(message) && stderr.contains(&format!("usage: {name} ")),
                "{name} {args:?} said {stderr:?}, wanted {message:?} and the usage"
            );
            assert!(output.stdout.is_empty(), "{name} {args:?} started anyway");
        }
    }
}

#[cfg(feature = "tokio")]
#[test]
fn a_tokio_util_framed_codec_echoes_length_delimited_frames() {
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{Framed, LengthDelimitedCodec};

    crate::support::on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            // The server: every frame back, then the end of the stream after the client's.
            let server = weir_net::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut frames = Framed::new(stream, LengthDelimitedCodec::new());
                let mut echoed = 0;
                while let Some(frame) = frames.next().await {
                    frames
                        .send(frame.expect("frame").freeze())
                        .await
                        .expect("send");
                    echoed += 1;
                }
                echoed
            });
            let stream = weir_net::TcpStream::connect(addr).await.expect("connect");
            let mut frames = Framed::new(stream, LengthDelimitedCodec::new());
            // Seeded sizes from 0 B to 64 KiB, each frame a different slice of the pattern.
            let mut seed = 0x9e37_79b9_u32;
            let mut sent = Vec::new();
            for i in 0..200 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let len = seed as usize % (64 * 1024 + 1);
                let frame: Bytes = (i..i + len).map(pattern).collect();
                frames.feed(frame.clone()).await.expect("feed");
                sent.push(frame);
            }
            SinkExt::<Bytes>::flush(&mut frames).await.expect("flush");
            for (i, expected) in sent.iter().enumerate() {
                let frame = frames.next().await.expect("a frame").expect("decode");
                assert_eq!(
                    (frame.len(), fnv(&frame)),
                    (expected.len(), fnv(expected)),
                    "{backend:?}: frame {i}"
                );
            }
            SinkExt::<Bytes>::close(&mut frames)
                .await
                .expect("half-close");
            assert!(frames.next().await.is_none(), "{backend:?}: end of stream");
            assert_eq!(server.await.expect("server"), 200, "{backend:?}");
        });
    });
}

/// An echo server on a std thread: each connection's bytes come back, then its end of stream.
fn std_echo_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut stream, &mut writer);
                let _ = writer.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn proxy_carries_a_seeded_stream_to_an_echo_upstream_and_back_byte_exact() {
    let _serial = crate::support::serial();
    const TOTAL: usize = 4 << 20;
    let upstream = std_echo_upstream().to_string();
    for backend in backends() {
        let (child, stdout, addr) = start_example(
            "proxy",
            &["--upstream", upstream.as_str(), "--backend", flag(backend)],
        );
        let stream = TcpStream::connect(addr).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let sending = std::thread::spawn(move || {
            let bytes: Vec<u8> = (0..TOTAL).map(pattern).collect();
            writer.write_all(&bytes).expect("send through the proxy");
            // The half-close travels through the proxy to the upstream, whose end comes back.
            writer
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
        });
        let mut reader = stream;
        let mut back = Vec::with_capacity(TOTAL);
        reader
            .read_to_end(&mut back)
            .expect("read the echo to its end");
        sending.join().expect("sender");
        let expected: Vec<u8> = (0..TOTAL).map(pattern).collect();
        assert_eq!(back.len(), TOTAL, "{backend:?}");
        assert_eq!(fnv(&back), fnv(&expected), "{backend:?}");
        let rest = terminate(child, stdout);
        assert!(
            rest.contains("report: accepted 1 completed 1"),
            "{backend:?}: {rest}"
        );
    }
}
