//! Backend choice: `Auto` lands on the reactor, and says why, when io_uring is unavailable.

use weir_net::{Backend, Error, Runtime};

use crate::support::run_child_test;

#[path = "../../examples/support/weir_log.rs"]
mod weir_log;

/// The events Weir emitted in this process (with the `tracing` feature).
static EVENTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn collect(line: String) {
    EVENTS.lock().unwrap_or_else(|p| p.into_inner()).push(line);
}

/// The probe runs once per process, so the scenario runs in a child with io_uring "blocked".
#[test]
fn auto_falls_back_to_the_reactor_and_reports_why() {
    if std::env::var_os("WEIR_TEST_BLOCK_URING").is_some() {
        weir_log::install(collect);
        let rt = Runtime::builder()
            .backend(Backend::Auto)
            .build()
            .expect("runtime");
        let report = rt.backend_report().clone();
        assert_eq!(report.backend, Backend::Poll);
        assert!(report.reason.contains("EPERM"), "{report:?}");
        assert_eq!(weir_net::backend_report(), Some(report));
        let events = EVENTS.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if cfg!(feature = "tracing") {
            assert!(
                events.iter().any(|e| e.starts_with(
                    "weir backend: poll (fell back to the reactor: io_uring_setup is not permitted"
                )),
                "no tracing event for the backend: {events:?}"
            );
        } else {
            assert!(events.is_empty(), "events without the feature: {events:?}");
            eprintln!("tracing events not checked: weir-net was built without `tracing`");
        }
        let error = Runtime::builder()
            .backend(Backend::Uring)
            .build()
            .expect_err("uring is blocked");
        assert!(matches!(error, Error::UringUnavailable(_)), "{error}");
        // And the fallback works: a round trip on the reactor.
        rt.block_on(async {
            let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client =
                weir_net::spawn(async move { weir_net::TcpStream::connect(addr).await.is_ok() });
            listener.accept().await.expect("accept");
            assert!(client.await.expect("client"));
        });
        return;
    }
    // The child must not be forced onto a backend: `WEIR_BACKEND` empty means `Auto`.
    let output = run_child_test(
        "fallback::auto_falls_back_to_the_reactor_and_reports_why",
        &[("WEIR_TEST_BLOCK_URING", "1"), ("WEIR_BACKEND", "")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The report went to `tracing` (collected above), never to stderr by Weir itself.
    assert!(
        !stderr.contains("weir backend"),
        "Weir wrote to stderr: {stderr}"
    );
}

#[test]
fn a_bad_backend_variable_is_a_clear_error() {
    if std::env::var_os("WEIR_TEST_BAD_BACKEND").is_some() {
        let error = Runtime::new().expect_err("bad variable");
        assert!(
            matches!(error, Error::BadBackendVariable(ref v) if v == "iouring"),
            "{error}"
        );
        return;
    }
    run_child_test(
        "fallback::a_bad_backend_variable_is_a_clear_error",
        &[("WEIR_TEST_BAD_BACKEND", "1"), ("WEIR_BACKEND", "iouring")],
    );
}
