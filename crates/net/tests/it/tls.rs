//! TLS over Weir's streams through the `tokio` compatibility traits (tokio-rustls, a
//! certificate generated at test time, no network): a seeded stream echoed byte-exact, between
//! two Weir tasks and through the `tls_echo` example, on both backends.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weir_net::{Runtime, TcpListener, TcpStream, spawn};

use crate::support::{backends, flag, fnv, on_each_backend, pattern, start_example, terminate};

/// A connector that trusts only `cert_pem`.
fn connector(cert_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Sends `len` pattern bytes over TLS to `addr` (as `localhost`) while reading the echo; returns
/// the hash of what came back before the server's close_notify.
async fn echo_through(addr: std::net::SocketAddr, cert_pem: &str, len: usize) -> u64 {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector(cert_pem)
        .connect(name, stream)
        .await
        .expect("handshake");
    let (mut reader, mut writer) = tokio::io::split(tls);
    let sending = spawn(async move {
        let data: Vec<u8> = (0..len).map(pattern).collect();
        for chunk in data.chunks(37_013) {
            writer.write_all(chunk).await.expect("write");
        }
        writer.shutdown().await.expect("close_notify");
        writer
    });
    let mut got = Vec::with_capacity(len);
    reader
        .read_to_end(&mut got)
        .await
        .expect("read to close_notify");
    drop(sending.await.expect("sender"));
    assert_eq!(got.len(), len);
    fnv(&got)
}

#[test]
fn a_tls_echo_between_weir_tasks_is_byte_exact() {
    const LEN: usize = 1024 * 1024 + 3;
    let expected = fnv(&(0..LEN).map(pattern).collect::<Vec<_>>());
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der())
        .expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    on_each_backend(|backend, rt| {
        let acceptor = acceptor.clone();
        let pem = pem.clone();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let tls = acceptor.accept(stream).await.expect("server handshake");
                let (mut reader, mut writer) = tokio::io::split(tls);
                let copied = tokio::io::copy(&mut reader, &mut writer)
                    .await
                    .expect("echo");
                writer.shutdown().await.expect("close_notify");
                copied
            });
            let hash = echo_through(addr, &pem, LEN).await;
            assert_eq!(hash, expected, "{backend:?}");
            assert_eq!(server.await.expect("server"), LEN as u64, "{backend:?}");
        });
    });
}

#[test]
fn the_tls_echo_example_serves_a_seeded_stream() {
    let _serial = crate::support::serial();
    const LEN: usize = 512 * 1024 + 1;
    let expected = fnv(&(0..LEN).map(pattern).collect::<Vec<_>>());
    for backend in backends() {
        let cert_path = std::env::temp_dir().join(format!(
            "weir-tls-echo-{}-{}.pem",
            std::process::id(),
            flag(backend)
        ));
        let (child, stdout, addr) = start_example(
            "tls_echo",
            &[
                "--backend",
                flag(backend),
                "--cert-out",
                cert_path.to_str().expect("path"),
            ],
        );
        let pem = std::fs::read_to_string(&cert_path).expect("the example's certificate");
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .expect("runtime");
        let hash = rt.block_on(async move { echo_through(addr, &pem, LEN).await });
        assert_eq!(hash, expected, "{backend:?}");
        let report = terminate(child, stdout);
        assert!(
            report.contains("accepted 1 completed 1 forced 0"),
            "{backend:?}: {report}"
        );
        let _ = std::fs::remove_file(cert_path);
    }
}
