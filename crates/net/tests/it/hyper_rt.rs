//! hyper fully on Weir (feature `hyper`): hyper's own HTTP/1.1 and HTTP/2 clients over Weir
//! sockets, with `WeirExecutor` and `WeirTimer`, against the `hyper_hello` example; curl's
//! HTTP/2 where it is installed; and hyper's header-read timeout cutting off a slowloris client.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use weir_net::hyper_rt::{WeirExecutor, WeirTimer};
use weir_net::{Runtime, TcpStream};

use crate::support::{backends, flag, start_example, terminate};

/// GETs `path` on `sender`; returns the response's version and body.
async fn get<S>(sender: &mut S, path: &str) -> (hyper::Version, String)
where
    S: Sender,
{
    let request = hyper::Request::builder()
        .uri(format!("http://weir{path}"))
        .header(hyper::header::HOST, "weir")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send(request).await.expect("response");
    assert_eq!(response.status(), hyper::StatusCode::OK, "{path}");
    let version = response.version();
    let body = response.into_body().collect().await.expect("body");
    (
        version,
        String::from_utf8(body.to_bytes().to_vec()).expect("utf-8"),
    )
}

/// hyper's HTTP/1 and HTTP/2 request senders, alike.
trait Sender {
    fn send(
        &mut self,
        request: hyper::Request<Empty<Bytes>>,
    ) -> impl Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>;
}

impl Sender for hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    fn send(
        &mut self,
        request: hyper::Request<Empty<Bytes>>,
    ) -> impl Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>> {
        self.send_request(request)
    }
}

impl Sender for hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    fn send(
        &mut self,
        request: hyper::Request<Empty<Bytes>>,
    ) -> impl Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>> {
        self.send_request(request)
    }
}

#[test]
fn hyper_clients_speak_http1_keep_alive_and_multiplexed_http2_to_hyper_hello() {
    let _serial = crate::support::serial();
    for backend in backends() {
        let (child, stdout, addr) = start_example("hyper_hello", &["--backend", flag(backend)]);
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .expect("runtime");
        rt.block_on(async move {
            // HTTP/1.1: three requests one after another on one keep-alive connection.
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
                .handshake(stream)
                .await
                .expect("http1 handshake");
            let driver = weir_net::spawn(connection);
            for path in ["/one", "/two", "/three"] {
                let (version, body) = get(&mut sender, path).await;
                assert_eq!(version, hyper::Version::HTTP_11, "{backend:?}");
                assert!(
                    body.ends_with(&format!("HTTP/1.1): GET {path}\n")),
                    "{backend:?}: {body:?}"
                );
            }
            drop(sender);
            driver.await.expect("http1 task").expect("http1 connection");

            // HTTP/2 (prior knowledge): ten requests in flight at once on one connection, each
            // from its own task.
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (sender, connection) = hyper::client::conn::http2::Builder::new(WeirExecutor)
                .timer(WeirTimer)
                .handshake(stream)
                .await
                .expect("http2 handshake");
            let driver = weir_net::spawn(connection);
            let requests: Vec<_> = (0..10)
                .map(|i| {
                    let mut sender = sender.clone();
                    weir_net::spawn(async move { get(&mut sender, &format!("/stream/{i}")).await })
                })
                .collect();
            for (i, request) in requests.into_iter().enumerate() {
                let (version, body) = request.await.expect("request task");
                assert_eq!(version, hyper::Version::HTTP_2, "{backend:?}");
                assert!(
                    body.ends_with(&format!("HTTP/2.0): GET /stream/{i}\n")),
                    "{backend:?}: {body:?}"
                );
            }
            drop(sender);
            driver.await.expect("http2 task").expect("http2 connection");
        });
        // curl's HTTP/2, where installed, as an outside client.
        match std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "--http2-prior-knowledge"])
            .arg(format!("http://{addr}/curl"))
            .output()
        {
            Ok(out) => assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!(
                    "Hello from Weir ({}, HTTP/2.0): GET /curl\n",
                    if flag(backend) == "uring" {
                        "io_uring"
                    } else {
                        "poll"
                    }
                ),
                "{backend:?}: curl got {out:?}"
            ),
            Err(e) => eprintln!(
                "NOT RUN: curl --http2-prior-knowledge ({e}); hyper's HTTP/2 client above covers \
                 the server"
            ),
        }
        let report = terminate(child, stdout);
        assert!(report.contains("forced 0"), "{backend:?}: {report}");
    }
}

/// Reads from `stream` until the server closes it; `Ok(bytes)` at a real end of stream, an
/// error if the read timed out first.
fn read_to_close(mut stream: std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(e),
    }
}

#[test]
fn hyper_hello_cuts_off_slowloris_clients_at_the_header_timeout() {
    let _serial = crate::support::serial();
    for backend in backends() {
        let (child, stdout, addr) = start_example(
            "hyper_hello",
            &["--backend", flag(backend), "--header-timeout-ms", "300"],
        );
        // One sends half a request's headers and stops (hyper's header-read timeout); one sends
        // nothing at all (the protocol sniff's timeout).
        let mut halfway = std::net::TcpStream::connect(addr).expect("connect");
        halfway
            .write_all(b"GET /slow HTTP/1.1\r\nHost: weir\r\nX-Slow: ")
            .expect("write");
        let silent = std::net::TcpStream::connect(addr).expect("connect");
        for (name, stream) in [("half a request", halfway), ("silent", silent)] {
            let got = read_to_close(stream).unwrap_or_else(|e| {
                panic!("{backend:?}: the {name} client was not cut off within 10 s: {e}")
            });
            assert!(
                !String::from_utf8_lossy(&got).contains("Hello"),
                "{backend:?}: the {name} client was served: {got:?}"
            );
        }
        // A client that finishes its headers in time is served.
        let mut prompt = std::net::TcpStream::connect(addr).expect("connect");
        prompt
            .write_all(b"GET /prompt HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
            .expect("write");
        let got = read_to_close(prompt).expect("response and close");
        assert!(
            String::from_utf8_lossy(&got).ends_with("HTTP/1.1): GET /prompt\n"),
            "{backend:?}: {got:?}"
        );
        let report = terminate(child, stdout);
        assert!(report.contains("accepted 3"), "{backend:?}: {report}");
    }
}
