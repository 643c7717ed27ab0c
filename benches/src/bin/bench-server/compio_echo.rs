//! The compio baseline (io_uring, no polling fallback compiled in): the same echo logic as
//! every other server — read into a 16 KiB owned buffer, write it all back, `TCP_NODELAY` —
//! over TCP, and the same datagram echo over UDP.

use std::net::{TcpListener, UdpSocket};

use compio::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};

use super::BUFFER;

pub(crate) fn runtime() -> compio::runtime::Runtime {
    compio::runtime::Runtime::new().expect("compio runtime")
}

pub(crate) fn tcp(listener: TcpListener, conns: usize) {
    runtime().block_on(async move {
        let listener = compio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tasks.push(compio::runtime::spawn(async move {
                let mut buf = Vec::with_capacity(BUFFER);
                loop {
                    buf.clear();
                    let BufResult(n, back) = stream.read(buf).await;
                    buf = back;
                    match n {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let BufResult(written, back) = stream.write_all(buf).await;
                            buf = back;
                            if written.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

pub(crate) fn udp(socket: UdpSocket) {
    runtime().block_on(async move {
        let socket = compio::net::UdpSocket::from_std(socket).expect("socket");
        let mut buf = Vec::with_capacity(BUFFER);
        loop {
            buf.clear();
            let BufResult(received, back) = socket.recv_from(buf).await;
            let Ok((n, from)) = received else { return };
            if n == 0 {
                return;
            }
            let BufResult(_, back) = socket.send_to(back, from).await;
            buf = back;
        }
    });
}
