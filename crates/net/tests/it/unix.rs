//! Unix-domain sockets on both backends: streams (echo with a hash check, half-close, pair),
//! datagrams (paths, truncation, pairs), and a dropped accept leaking nothing.

use std::net::Shutdown;
use std::path::PathBuf;

use weir_net::{UnixDatagram, UnixListener, UnixStream};

use crate::support::{fd_count, fnv, on_each_backend, pattern};

/// A fresh directory for this test's socket files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        let path = self.0.join(file);
        let _ = std::fs::remove_file(&path);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn stream_echo_half_close_and_addresses() {
    let dir = TempDir::new("stream");
    on_each_backend(|backend, rt| {
        let path = dir.path(&format!("{backend:?}.sock"));
        rt.block_on(async {
            let listener = UnixListener::bind(&path).expect("bind");
            assert_eq!(
                listener.local_addr().expect("addr").as_pathname(),
                Some(path.as_path())
            );
            let server = weir_net::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                loop {
                    let (n, buf) = conn.read(Vec::with_capacity(64 * 1024)).await;
                    match n.expect("server read") {
                        0 => break,
                        _ => conn.write_all(buf).await.0.expect("echo"),
                    }
                }
                // The client half-closed; our side can still write, then close.
                conn.write_all(b"bye".to_vec()).await.0.expect("bye");
            });
            let mut client = UnixStream::connect(&path).await.expect("connect");
            let message: Vec<u8> = (0..1 << 20).map(pattern).collect();
            let writer = {
                let mut tx = client.try_clone().expect("clone");
                let message = message.clone();
                weir_net::spawn(async move {
                    tx.write_all(message).await.0.expect("write");
                    tx.shutdown(Shutdown::Write).expect("half-close");
                })
            };
            let (result, echoed) = client.read_exact(Vec::new(), message.len()).await;
            result.expect("read echo");
            assert_eq!(fnv(&echoed), fnv(&message), "{backend:?}");
            let (result, bye) = client.read_exact(Vec::new(), 3).await;
            result.expect("read bye");
            assert_eq!(bye, b"bye");
            let (n, _) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(
                n.expect("eof"),
                0,
                "{backend:?}: end of stream after the peer closed"
            );
            writer.await.expect("writer");
            server.await.expect("server");
        });
    });
}

#[test]
fn stream_pair_writev_and_connect_errors() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut a, mut b) = UnixStream::pair().expect("pair");
            let parts = vec![b"one ".to_vec(), b"two ".to_vec(), b"three".to_vec()];
            let (n, parts) = a.writev(parts).await;
            assert_eq!(n.expect("writev"), 13, "{backend:?}");
            assert_eq!(parts.len(), 3, "the buffers come back");
            let (result, got) = b.read_exact(Vec::new(), 13).await;
            result.expect("read");
            assert_eq!(got, b"one two three");
            let missing = std::env::temp_dir().join("weir-unix-no-such-socket");
            let error = UnixStream::connect(&missing)
                .await
                .expect_err("no listener");
            assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{backend:?}");
        });
    });
}

#[test]
fn datagrams_paths_truncation_and_pairs() {
    let dir = TempDir::new("dgram");
    on_each_backend(|backend, rt| {
        let (a_path, b_path) = (
            dir.path(&format!("{backend:?}-a.sock")),
            dir.path(&format!("{backend:?}-b.sock")),
        );
        rt.block_on(async {
            let a = UnixDatagram::bind(&a_path).expect("bind a");
            let b = UnixDatagram::bind(&b_path).expect("bind b");
            for size in [1usize, 100, 4000] {
                let payload: Vec<u8> = (0..size).map(pattern).collect();
                let (sent, _) = a.send_to(payload.clone(), &b_path).await;
                assert_eq!(sent.expect("send_to"), size, "{backend:?}");
                let (got, buf) = b.recv_from(Vec::with_capacity(8192)).await;
                let (n, from) = got.expect("recv_from");
                assert_eq!(n, size);
                assert_eq!(from.as_pathname(), Some(a_path.as_path()), "{backend:?}");
                assert_eq!(buf, payload);
            }
            // Truncation: a datagram longer than the buffer is cut; the next is intact.
            a.send_to(vec![7u8; 50], &b_path).await.0.expect("send");
            a.send_to(b"next".to_vec(), &b_path).await.0.expect("send");
            let (n, buf) = b.recv_from(Vec::with_capacity(10)).await;
            assert_eq!(n.expect("recv").0, 10, "{backend:?}");
            assert_eq!(buf, [7u8; 10]);
            let (n, buf) = b.recv_from(Vec::with_capacity(10)).await;
            assert_eq!(n.expect("recv").0, 4);
            assert_eq!(buf, b"next");
            // Connected and paired sockets.
            let c = UnixDatagram::unbound().expect("unbound");
            c.connect(&b_path).expect("connect");
            c.send(b"hi".to_vec()).await.0.expect("send");
            let (n, buf) = b.recv(Vec::with_capacity(8)).await;
            assert_eq!(&buf[..n.expect("recv")], b"hi", "{backend:?}");
            let (x, y) = UnixDatagram::pair().expect("pair");
            y.send(b"pair".to_vec()).await.0.expect("send");
            let (n, buf) = x.recv(Vec::with_capacity(8)).await;
            assert_eq!(&buf[..n.expect("recv")], b"pair");
        });
    });
}

#[test]
fn dropped_unix_accepts_leak_no_descriptor() {
    let dir = TempDir::new("accept");
    on_each_backend(|backend, rt| {
        let path = dir.path(&format!("{backend:?}.sock"));
        rt.block_on(async {
            let listener = UnixListener::bind(&path).expect("bind");
            let before = fd_count();
            for round in 0..50 {
                let accept = listener.accept();
                let connect = UnixStream::connect(&path);
                // Poll the accept once (it may be submitted), connect, then drop the accept.
                let mut accept = Box::pin(accept);
                let _ = futures_poll_once(accept.as_mut()).await;
                let stream = connect.await.expect("connect");
                drop(accept);
                drop(stream);
                if round % 10 == 0 {
                    weir_net::yield_now().await;
                }
            }
            // Connections accepted by dropped futures are closed once their completions land.
            for _ in 0..100 {
                if fd_count() <= before {
                    break;
                }
                weir_net::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(
                fd_count() <= before,
                "{backend:?}: a dropped accept leaked a descriptor"
            );
        });
    });
}

/// Polls `fut` once and returns whether it finished.
async fn futures_poll_once<F: std::future::Future + ?Sized>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| {
        let ready = fut.take().is_some_and(|f| f.poll(cx).is_ready());
        std::task::Poll::Ready(ready)
    })
    .await
}
