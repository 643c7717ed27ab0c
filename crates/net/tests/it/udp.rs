//! UDP on both backends: round trips, truncation, connected sockets.

use weir_net::UdpSocket;

use crate::support::on_each_backend;

#[test]
fn round_trips_truncation_and_connected_sockets() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let (a_addr, b_addr) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
            for size in [1usize, 64, 1200, 8000] {
                let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
                let (sent, _) = a.send_to(payload.clone(), b_addr).await;
                assert_eq!(sent.expect("send_to"), size, "{backend:?}");
                let (got, buf) = b.recv_from(Vec::with_capacity(9000)).await;
                let (n, from) = got.expect("recv_from");
                assert_eq!((n, from), (size, a_addr), "{backend:?}");
                assert_eq!(buf, payload, "{backend:?}");
            }
            // A datagram longer than the buffer is cut to fit; the next one is intact.
            a.send_to(vec![9u8; 100], b_addr).await.0.expect("send");
            a.send_to(b"next".to_vec(), b_addr).await.0.expect("send");
            let (got, buf) = b.recv_from(Vec::with_capacity(10)).await;
            assert_eq!(got.expect("recv").0, 10, "{backend:?}");
            assert_eq!(buf, [9u8; 10]);
            let (got, buf) = b.recv_from(Vec::with_capacity(10)).await;
            assert_eq!(got.expect("recv").0, 4, "{backend:?}");
            assert_eq!(buf, b"next");
            // Connected sockets.
            a.connect(b_addr).expect("connect");
            b.connect(a_addr).expect("connect");
            a.send(b"ping".to_vec()).await.0.expect("send");
            let (n, buf) = b.recv(Vec::with_capacity(16)).await;
            assert_eq!(&buf[..n.expect("recv")], b"ping", "{backend:?}");
        });
    });
}
