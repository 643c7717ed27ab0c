//! Mixing the read and write APIs of one stream — owned, pooled, and tokio's poll-based traits —
//! in every pair and order, with operations left in flight, dropped or timed out between them:
//! the bytes come out exactly as sent, and waiting never spins.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use weir_net::{TcpListener, TcpStream, spawn, time};

use crate::support::{on_each_backend, pattern};

/// A connected pair: (client, server side).
pub(crate) async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = spawn(async move { listener.accept().await.expect("accept").0 });
    let client = TcpStream::connect(addr).await.expect("connect");
    (client, accept.await.expect("accept task"))
}

/// The read APIs of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Owned,
    Pooled,
    #[cfg(feature = "tokio")]
    Compat,
}

#[cfg(feature = "tokio")]
const APIS: [Api; 3] = [Api::Owned, Api::Pooled, Api::Compat];
#[cfg(not(feature = "tokio"))]
const APIS: [Api; 2] = [Api::Owned, Api::Pooled];

/// Counts the polls of the future it wraps: a reader that spins instead of waiting for a wake-up
/// is polled thousands of times.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: u64,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = (F::Output, u64);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        let polls = self.polls;
        self.inner.as_mut().poll(cx).map(|out| (out, polls))
    }
}

/// One read with `api`: some bytes, or an empty vector at the end of the stream.
async fn read_once(stream: &mut TcpStream, api: Api) -> Vec<u8> {
    match api {
        Api::Owned => {
            let (n, buf) = stream.read(Vec::with_capacity(1500)).await;
            n.expect("owned read");
            buf
        }
        Api::Pooled => match stream.read_pooled().await.expect("pooled read") {
            Some(buf) => buf.to_vec(),
            None => Vec::new(),
        },
        #[cfg(feature = "tokio")]
        Api::Compat => {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0; 1500];
            let n = AsyncReadExt::read(stream, &mut buf)
                .await
                .expect("compat read");
            buf.truncate(n);
            buf
        }
    }
}

/// Starts a read with `api` and leaves it in flight: the read's future is polled once and then
/// dropped (owned, pooled) or, for the poll-based trait, left `Pending` — on io_uring its receive
/// is then in the kernel.
async fn leave_in_flight(stream: &mut TcpStream, api: Api) {
    std::future::poll_fn(|cx| {
        match api {
            Api::Owned => {
                let mut read = Box::pin(stream.read(Vec::with_capacity(700)));
                assert!(read.as_mut().poll(cx).is_pending(), "nothing was sent yet");
            }
            Api::Pooled => {
                let mut read = Box::pin(stream.read_pooled());
                assert!(read.as_mut().poll(cx).is_pending(), "nothing was sent yet");
            }
            #[cfg(feature = "tokio")]
            Api::Compat => {
                let mut space = [0u8; 700];
                let mut buf = tokio::io::ReadBuf::new(&mut space);
                let polled = tokio::io::AsyncRead::poll_read(Pin::new(&mut *stream), cx, &mut buf);
                assert!(polled.is_pending(), "nothing was sent yet");
            }
        }
        Poll::Ready(())
    })
    .await;
    // Let the driver submit whatever the read started.
    weir_net::yield_now().await;
}

#[test]
fn every_pair_of_read_apis_in_either_order_returns_the_stream_exactly() {
    const LEN: usize = 64 * 1024;
    on_each_backend(|backend, rt| {
        for first in APIS {
            for second in APIS {
                rt.block_on(async {
                    let (mut client, mut server) = tcp_pair().await;
                    leave_in_flight(&mut server, first).await;
                    let sent: Vec<u8> = (0..LEN).map(pattern).collect();
                    let writer = spawn(async move {
                        client.write_all(sent).await.0.expect("send");
                        client
                            .shutdown(std::net::Shutdown::Write)
                            .expect("half-close");
                    });
                    // Alternate the two APIs until the end of the stream; a spinning reader fails
                    // on the poll count or, at worst, on this watchdog.
                    let collect = async {
                        let mut got = Vec::new();
                        let mut polls = 0;
                        for turn in 0.. {
                            let api = if turn % 2 == 0 { first } else { second };
                            let (chunk, n) = CountPolls {
                                inner: Box::pin(read_once(&mut server, api)),
                                polls: 0,
                            }
                            .await;
                            polls = polls.max(n);
                            if chunk.is_empty() {
                                break;
                            }
                            got.extend_from_slice(&chunk);
                        }
                        (got, polls)
                    };
                    let (got, polls) = time::timeout(Duration::from_secs(10), collect)
                        .await
                        .unwrap_or_else(|_| {
                            panic!("{backend:?} {first:?} then {second:?}: no progress in 10 s")
                        });
                    writer.await.expect("writer");
                    assert_eq!(got.len(), LEN, "{backend:?} {first:?} then {second:?}");
                    let bad = got.iter().enumerate().position(|(i, &b)| b != pattern(i));
                    assert_eq!(
                        bad, None,
                        "{backend:?} {first:?} then {second:?}: reordered"
                    );
                    assert!(
                        polls < 100,
                        "{backend:?} {first:?} then {second:?}: a read was polled {polls} times \
                         (it spun instead of waiting)"
                    );
                });
            }
        }
    });
}

/// A 4 MiB first write cannot fit the socket buffers (shrunk to [`SMALL_BUFFER`] on both sides)
/// of a peer that is not reading, so its send is still in flight when its deadline passes.
const BLOCKED_WRITE: usize = 4 << 20;

/// The send buffer of the writer and the receive buffer of the peer (the kernel doubles each).
const SMALL_BUFFER: usize = 64 << 10;

/// Writes `a` under a deadline the peer makes sure to miss (it reads nothing until told), then
/// all of `b`; returns what the peer received. `write_all_compat` chooses tokio's `write_all`
/// over the owned one.
fn timed_out_write_then_write(backend: weir_net::Backend, rt: &weir_net::Runtime, compat: bool) {
    let a: Vec<u8> = (0..BLOCKED_WRITE).map(|i| pattern(i * 3 + 1)).collect();
    let b: Vec<u8> = (0..(1 << 20)).map(|i| pattern(i * 5 + 2) ^ 0x5a).collect();
    let (start_reading, go) = std::sync::mpsc::channel::<()>();
    let (received_tx, received) = std::sync::mpsc::channel::<Vec<u8>>();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = std::thread::spawn(move || {
            use std::io::Read;
            let mut peer = std::net::TcpStream::connect(addr).expect("connect");
            socket2::SockRef::from(&peer)
                .set_recv_buffer_size(SMALL_BUFFER)
                .expect("SO_RCVBUF");
            go.recv().expect("told to read");
            let mut all = Vec::new();
            peer.read_to_end(&mut all).expect("read to the end");
            received_tx.send(all).expect("report");
        });
        let (mut stream, _) = listener.accept().await.expect("accept");
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(SMALL_BUFFER)
            .expect("SO_SNDBUF");
        let first = if compat {
            compat_write_all(&mut stream, a.clone(), Duration::from_millis(50)).await
        } else {
            time::timeout(Duration::from_millis(50), stream.write_all(a.clone()))
                .await
                .is_ok()
        };
        assert!(
            !first,
            "{backend:?}: 4 MiB fitted a peer that reads nothing"
        );
        start_reading.send(()).expect("peer");
        if compat {
            assert!(compat_write_all(&mut stream, b.clone(), Duration::from_secs(60)).await);
        } else {
            stream.write_all(b.clone()).await.0.expect("second write");
        }
        drop(stream);
        peer.join().expect("peer");
    });
    let got = received.recv().expect("received");
    assert!(
        got.len() >= b.len(),
        "{backend:?}: only {} bytes arrived",
        got.len()
    );
    let kept = got.len() - b.len();
    assert!(kept <= a.len(), "{backend:?}: more bytes than were written");
    let first_bad = got[..kept].iter().zip(&a).position(|(x, y)| x != y);
    assert_eq!(
        first_bad, None,
        "{backend:?}: the timed-out write's bytes are not a's prefix"
    );
    let second_bad = got[kept..].iter().zip(&b).position(|(x, y)| x != y);
    assert_eq!(
        second_bad, None,
        "{backend:?}: the second write arrived corrupted (compat: {compat}; {kept} bytes of the \
         first went)"
    );
}

#[cfg(feature = "tokio")]
async fn compat_write_all(stream: &mut TcpStream, bytes: Vec<u8>, limit: Duration) -> bool {
    use tokio::io::AsyncWriteExt;
    time::timeout(limit, AsyncWriteExt::write_all(stream, &bytes))
        .await
        .map(|r| r.expect("compat write_all"))
        .is_ok()
}

#[cfg(not(feature = "tokio"))]
async fn compat_write_all(_: &mut TcpStream, _: Vec<u8>, _: Duration) -> bool {
    unreachable!("compat writes need the tokio feature")
}

#[cfg(feature = "tokio")]
#[test]
fn a_timed_out_compat_write_does_not_corrupt_the_next_one() {
    on_each_backend(|backend, rt| timed_out_write_then_write(backend, rt, true));
}

#[test]
fn a_timed_out_owned_write_does_not_corrupt_the_next_one() {
    on_each_backend(|backend, rt| timed_out_write_then_write(backend, rt, false));
}
