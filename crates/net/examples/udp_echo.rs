//! A UDP echo server: every datagram goes back to its sender, on either backend.
//!
//! ```text
//! cargo run -p weir-net --example udp_echo -- --addr 127.0.0.1:7001 --backend auto
//! ```
//!
//! The first line on stdout is the bound address. `--count N` exits after N echoes (printing
//! `echoed N`); without it the server runs until killed.

use weir_net::{Backend, Runtime, UdpSocket};

#[path = "support/args.rs"]
mod args;
#[path = "support/weir_log.rs"]
mod weir_log;
use args::Args;

fn main() {
    weir_log::install(weir_log::to_stderr);
    let mut args = Args::parse(
        "udp_echo",
        "[--addr HOST:PORT] [--backend uring|poll|auto] [--count N]",
    );
    let addr: String = args.get("--addr", "127.0.0.1:7001".into());
    let backend: Backend = args.get("--backend", Backend::Auto);
    let count: Option<u64> = args.get_opt("--count");
    args.finish();
    let runtime = match Runtime::builder().backend(backend).build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("udp_echo: {error}");
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(async move {
        let socket = UdpSocket::bind(addr)?;
        println!("{}", socket.local_addr()?);
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut echoed = 0;
        while count.is_none_or(|limit| echoed < limit) {
            buf.clear();
            let (received, back) = socket.recv_from(buf).await;
            let (_, from) = received?;
            let (sent, back) = socket.send_to(back, from).await;
            sent?;
            buf = back;
            echoed += 1;
        }
        println!("echoed {echoed}");
        Ok::<_, std::io::Error>(())
    });
    if let Err(error) = outcome {
        eprintln!("udp_echo: {error}");
        std::process::exit(1);
    }
}
