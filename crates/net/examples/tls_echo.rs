//! A TLS echo server: tokio-rustls over Weir's streams (the `tokio` compatibility feature), with
//! a self-signed certificate for `localhost` generated at start-up, under the [`Server`]'s
//! limits and graceful shutdown.
//!
//! ```text
//! cargo run -p weir-net --features tokio --example tls_echo -- \
//!     --addr 127.0.0.1:7443 --cert-out /tmp/weir-cert.pem
//! openssl s_client -connect 127.0.0.1:7443 -CAfile /tmp/weir-cert.pem -servername localhost
//! ```
//!
//! The first line on stdout is the bound address; the certificate (PEM) is written to
//! `--cert-out` before it.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use weir_net::Backend;
use weir_net::server::Server;

#[path = "support/args.rs"]
mod args;
#[path = "support/weir_log.rs"]
mod weir_log;
use args::Args;

fn main() {
    weir_log::install(weir_log::to_stderr);
    let mut args = Args::parse(
        "tls_echo",
        "[--addr HOST:PORT] [--backend uring|poll|auto] [--cert-out PATH]",
    );
    let addr: String = args.get("--addr", "127.0.0.1:7443".into());
    let backend: Backend = args.get("--backend", Backend::Auto);
    let cert_out: Option<String> = args.get_opt("--cert-out");
    args.finish();
    let (config, pem) = match server_config() {
        Ok(made) => made,
        Err(error) => {
            eprintln!("tls_echo: certificate: {error}");
            std::process::exit(1);
        }
    };
    if let Some(path) = cert_out {
        if let Err(error) = std::fs::write(&path, pem) {
            eprintln!("tls_echo: writing {path}: {error}");
            std::process::exit(1);
        }
    }
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let server = Server::builder()
        .bind(addr)
        .backend(backend)
        .serve(move |stream, _peer, stop| {
            let acceptor = acceptor.clone();
            async move {
                let Some(Ok(mut tls)) = stop.run_until_cancelled(acceptor.accept(stream)).await
                else {
                    return;
                };
                let mut buf = vec![0; 16 * 1024];
                while let Some(Ok(n)) = stop.run_until_cancelled(tls.read(&mut buf)).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = tls.shutdown().await;
            }
        });
    let server = args::or_exit("tls_echo", server);
    println!("{}", server.local_addr());
    let report = server.join();
    println!(
        "report: accepted {} completed {} forced {}",
        report.accepted, report.completed, report.forced
    );
}

/// A server configuration with a fresh self-signed certificate for `localhost`, and the
/// certificate as PEM (for clients to trust).
fn server_config() -> Result<(rustls::ServerConfig, String), Box<dyn std::error::Error>> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    Ok((config, pem))
}
