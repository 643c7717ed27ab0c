//! Vectored, zero-copy, message, splice and linked-timeout ops on a real kernel.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use weir_ring::Ring;

use crate::support::{block_on, serial};

fn ring() -> Ring {
    Ring::builder().entries(32).build().expect("ring")
}

#[test]
fn writev_sends_every_buffer_in_order() {
    let _serial = serial();
    let ring = ring();
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    let (n, bufs) = block_on(
        &ring,
        ring.writev(
            &a,
            vec![b"one ".to_vec(), b"two ".to_vec(), b"three".to_vec()],
        ),
    );
    assert_eq!(n.expect("writev"), 13);
    assert_eq!(bufs.len(), 3, "the buffers came back");
    let mut got = [0u8; 13];
    b.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"one two three");
}

#[test]
fn readv_fills_buffers_in_order() {
    let _serial = serial();
    let ring = ring();
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    b.write_all(b"abcdefghij").expect("write");
    let bufs = vec![
        Vec::with_capacity(3),
        Vec::with_capacity(4),
        Vec::with_capacity(8),
    ];
    let (n, bufs) = block_on(&ring, ring.readv(&a, bufs));
    assert_eq!(n.expect("readv"), 10);
    assert_eq!(bufs, [b"abc".to_vec(), b"defg".to_vec(), b"hij".to_vec()]);
}

#[test]
fn send_zc_returns_the_buffer_after_the_notification() {
    let _serial = serial();
    let ring = ring();
    if !ring.probe().supports(weir_ring::Opcode::SendZc) {
        println!("SKIPPED send_zc: this kernel lacks IORING_OP_SEND_ZC");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let server = Arc::new(OwnedFd::from(server));
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 241) as u8).collect();
    let in_flight_before = ring.in_flight();
    let (sent, buf) = block_on(&ring, ring.send_zc(&server, payload.clone()));
    let sent = sent.expect("send_zc");
    assert!(sent > 0);
    assert_eq!(buf, payload, "the buffer came back untouched");
    assert_eq!(
        ring.in_flight(),
        in_flight_before,
        "both CQEs (result and notification) were reaped"
    );
    let mut got = vec![0u8; sent];
    client.read_exact(&mut got).expect("read");
    assert_eq!(got, payload[..sent]);
}

#[test]
fn datagrams_with_addresses_and_truncation() {
    let _serial = serial();
    let ring = ring();
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (a_addr, b_addr) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
    let a = Arc::new(OwnedFd::from(a));
    let b = Arc::new(OwnedFd::from(b));
    let (sent, _) = block_on(&ring, ring.send_to(&a, b"datagram".to_vec(), b_addr));
    assert_eq!(sent.expect("send_to"), 8);
    let (got, buf) = block_on(&ring, ring.recv_msg(&b, Vec::with_capacity(64)));
    let got = got.expect("recv_msg");
    assert_eq!(
        (got.len, got.from.to_std(), got.truncated),
        (8, Some(a_addr), false)
    );
    assert_eq!(buf, b"datagram");
    // A datagram longer than the buffer is cut, and says so.
    let (sent, _) = block_on(&ring, ring.send_to(&a, vec![7u8; 100], b_addr));
    assert_eq!(sent.expect("send_to"), 100);
    let (got, buf) = block_on(&ring, ring.recv_msg(&b, Vec::with_capacity(10)));
    let got = got.expect("recv_msg");
    assert_eq!((got.len, got.truncated, buf.len()), (10, true, 10));
}

#[test]
fn splice_moves_bytes_from_a_pipe_to_a_socket() {
    let _serial = serial();
    let ring = ring();
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills two descriptors, which we adopt at once.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: a fresh descriptor nobody else owns.
    let read_end = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: likewise.
    let write_end = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    let mut writer = std::fs::File::from(write_end);
    writer.write_all(b"spliced bytes").expect("fill the pipe");
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let (read_end, a) = (Arc::new(read_end), Arc::new(OwnedFd::from(a)));
    let moved =
        block_on(&ring, ring.splice(&read_end, -1, &a, -1, 64, Vec::new())).expect("splice");
    assert_eq!(moved, 13);
    let mut got = [0u8; 13];
    b.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"spliced bytes");
}

#[test]
fn linked_timeout_cancels_a_quiet_receive_and_spares_a_busy_one() {
    let _serial = serial();
    let ring = ring();
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    let (quiet, _) = block_on(
        &ring,
        ring.recv_timeout(&a, Vec::with_capacity(16), Duration::from_millis(20)),
    );
    let error = quiet.expect_err("nothing arrives");
    assert_eq!(error.raw_os_error(), Some(libc::ECANCELED));
    b.write_all(b"in time").expect("write");
    let (busy, buf) = block_on(
        &ring,
        ring.recv_timeout(&a, Vec::with_capacity(16), Duration::from_secs(5)),
    );
    let n = busy.expect("recv");
    assert_eq!(&buf[..n], b"in time");
    crate::support::settle(&ring);
}
