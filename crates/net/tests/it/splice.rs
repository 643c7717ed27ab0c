//! Socket-to-socket `splice_to` on both backends: a seeded 8 MiB stream arrives byte-exact, the
//! end of the stream comes through, and a source whose read state holds bytes copies through it
//! first (counted, so the test shows that path ran).

use std::time::Duration;

use weir_net::{TcpStream, io_stats, spawn, time};

use crate::mixed_io::tcp_pair;
use crate::support::{fnv, on_each_backend, pattern};

/// The stream the tests push through.
const TOTAL: usize = 8 << 20;

/// Writes `pattern(from..TOTAL)` to `stream`, then closes it.
async fn send_pattern(mut stream: TcpStream, from: usize) {
    let bytes: Vec<u8> = (from..TOTAL).map(pattern).collect();
    let (result, _) = stream.write_all(bytes).await;
    result.expect("write the pattern");
}

/// Reads `stream` to its end; returns the byte count and their hash.
async fn read_to_end(mut stream: TcpStream) -> (usize, u64) {
    let mut all = Vec::with_capacity(TOTAL);
    loop {
        let (result, buf) = stream.read(Vec::with_capacity(256 * 1024)).await;
        match result.expect("read") {
            0 => return (all.len(), fnv(&all)),
            _ => all.extend_from_slice(&buf),
        }
    }
}

#[test]
fn split_halves_splice_a_seeded_stream_byte_exact_and_pass_the_end_on() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (source_peer, source) = tcp_pair().await;
            let (destination, sink_peer) = tcp_pair().await;
            let writer = spawn(send_pattern(source_peer, 0));
            let reader = spawn(read_to_end(sink_peer));
            let (mut from, _from_write) = source.into_split().await.expect("split");
            let (_to_read, mut to) = destination.into_split().await.expect("split");
            let before = io_stats().splice_fallbacks;
            let mut moved = 0;
            loop {
                match from.splice_to(&mut to, 64 * 1024).await.expect("splice") {
                    0 => break,
                    n => moved += n,
                }
            }
            // Nothing was held: every call spliced.
            assert_eq!(io_stats().splice_fallbacks, before, "{backend:?}");
            // Dropping the write half half-closes: the reader sees the end.
            drop(to);
            writer.await.expect("writer");
            let (got, hash) = reader.await.expect("reader");
            let expected: Vec<u8> = (0..TOTAL).map(pattern).collect();
            assert_eq!(moved, TOTAL, "{backend:?}");
            assert_eq!(got, TOTAL, "{backend:?}");
            assert_eq!(hash, fnv(&expected), "{backend:?}");
        });
    });
}

#[test]
fn held_bytes_go_first_through_the_read_state_then_the_rest_splices() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut source_peer, mut source) = tcp_pair().await;
            let (mut destination, sink_peer) = tcp_pair().await;
            let first: Vec<u8> = (0..100).map(pattern).collect();
            let (result, _) = source_peer.write_all(first).await;
            result.expect("first bytes");
            // A plain read takes one byte...
            let (result, one) = source.read(Vec::with_capacity(1)).await;
            assert_eq!(result.expect("read"), 1);
            assert_eq!(one, [pattern(0)]);
            // ...and a read_exact that cannot finish (the peer sent 100 bytes of the 201 it
            // asks for) is dropped: the bytes it gathered go back to the read state.
            let gave_up = time::timeout(
                Duration::from_millis(50),
                source.read_exact(Vec::new(), 200),
            )
            .await;
            assert!(gave_up.is_err(), "{backend:?}: read_exact finished");
            let writer = spawn(send_pattern(source_peer, 100));
            let reader = spawn(read_to_end(sink_peer));
            let before = io_stats().splice_fallbacks;
            loop {
                if source
                    .splice_to(&mut destination, 64 * 1024)
                    .await
                    .expect("splice")
                    == 0
                {
                    break;
                }
            }
            assert!(
                io_stats().splice_fallbacks > before,
                "{backend:?}: the held bytes did not go through the read state"
            );
            destination
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            writer.await.expect("writer");
            let (got, hash) = reader.await.expect("reader");
            let expected: Vec<u8> = (1..TOTAL).map(pattern).collect();
            assert_eq!(got, TOTAL - 1, "{backend:?}");
            assert_eq!(hash, fnv(&expected), "{backend:?}");
        });
    });
}

#[test]
fn a_splice_dropped_while_it_waits_for_data_loses_nothing() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (source_peer, mut source) = tcp_pair().await;
            let (mut destination, sink_peer) = tcp_pair().await;
            // Nothing was sent yet: the splice waits for data and is dropped.
            let gave_up = time::timeout(
                Duration::from_millis(20),
                source.splice_to(&mut destination, 64 * 1024),
            )
            .await;
            assert!(
                gave_up.is_err(),
                "{backend:?}: a splice of nothing finished"
            );
            let writer = spawn(send_pattern(source_peer, 0));
            let reader = spawn(read_to_end(sink_peer));
            while source
                .splice_to(&mut destination, 64 * 1024)
                .await
                .expect("splice")
                > 0
            {}
            destination
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            writer.await.expect("writer");
            let (got, hash) = reader.await.expect("reader");
            let expected: Vec<u8> = (0..TOTAL).map(pattern).collect();
            assert_eq!(got, TOTAL, "{backend:?}");
            assert_eq!(hash, fnv(&expected), "{backend:?}");
        });
    });
}
