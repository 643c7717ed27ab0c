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

/// What a child whose io_uring is really denied checks: `Auto` lands on the reactor, says why,
/// and serves a round trip; an explicit `Uring` is a clear error.
fn check_auto_falls_back(expected_reason: &str) {
    let rt = Runtime::builder()
        .backend(Backend::Auto)
        .build()
        .expect("runtime");
    let report = rt.backend_report().clone();
    assert_eq!(report.backend, Backend::Poll, "{report:?}");
    assert!(report.reason.contains(expected_reason), "{report:?}");
    let error = Runtime::builder()
        .backend(Backend::Uring)
        .build()
        .expect_err("io_uring is denied");
    assert!(matches!(error, Error::UringUnavailable(_)), "{error}");
    round_trip(&rt);
}

/// One connection accepted and one message echoed on `rt`.
fn round_trip(rt: &Runtime) {
    rt.block_on(async {
        let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = weir_net::spawn(async move {
            let mut stream = weir_net::TcpStream::connect(addr).await.expect("connect");
            let (sent, _) = stream.write_all(b"ping".to_vec()).await;
            sent.expect("send");
            let (n, back) = stream.read(Vec::with_capacity(4)).await;
            (n.expect("read"), back)
        });
        let (mut stream, _) = listener.accept().await.expect("accept");
        let (n, buf) = stream.read(Vec::with_capacity(4)).await;
        assert_eq!(n.expect("read"), 4);
        let (sent, _) = stream.write_all(buf).await;
        sent.expect("echo");
        assert_eq!(client.await.expect("client"), (4, b"ping".to_vec()));
    });
}

/// The io_uring system calls a container runtime's default seccomp profile denies.
#[cfg(target_arch = "x86_64")]
const URING_CALLS: [libc::c_long; 3] = [
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Installs, on every thread of this process, a seccomp filter that fails the io_uring system
/// calls with EPERM and allows everything else.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring() {
    // `seccomp_data`: the call number at offset 0, the architecture at offset 4.
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let ld = |offset: u32| libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: offset,
    };
    let jeq = |value: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k: value,
    };
    let ret = |value: u32| libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: value,
    };
    let deny = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut program = vec![
        ld(4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        ret(libc::SECCOMP_RET_ALLOW),
        ld(0),
    ];
    for (i, call) in URING_CALLS.iter().enumerate() {
        // Jump over the remaining comparisons and the allow to the deny at the end.
        let to_deny = (URING_CALLS.len() - i) as u8;
        program.push(jeq(*call as u32, to_deny, 0));
    }
    program.push(ret(libc::SECCOMP_RET_ALLOW));
    program.push(ret(deny));
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers; it only restricts this process.
    let no_new_privs = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(no_new_privs, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `filter` points at `program`, a valid BPF program that outlives the call (the
    // kernel copies it); TSYNC applies it to every thread of this child process.
    let installed = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &filter as *const libc::sock_fprog,
        )
    };
    assert_eq!(installed, 0, "{}", std::io::Error::last_os_error());
}

/// A container's default seccomp profile: io_uring_setup/enter/register fail with EPERM.
#[cfg(target_arch = "x86_64")]
#[test]
fn auto_falls_back_under_a_seccomp_filter_denying_io_uring() {
    if std::env::var_os("WEIR_TEST_SECCOMP").is_some() {
        deny_io_uring();
        check_auto_falls_back("EPERM");
        return;
    }
    run_child_test(
        "fallback::auto_falls_back_under_a_seccomp_filter_denying_io_uring",
        &[("WEIR_TEST_SECCOMP", "1"), ("WEIR_BACKEND", "")],
    );
}

/// A tiny `RLIMIT_MEMLOCK` (as unprivileged containers on older kernels had): where the kernel
/// charges io_uring's rings to it, `Auto` falls back to the reactor and says why; where it does
/// not (Linux 5.12 and later charge them to the memory cgroup instead), `Auto` keeps io_uring,
/// which must then serve. Either way the runtime works, and the test says which case ran.
#[test]
fn auto_serves_under_a_tiny_memlock_limit() {
    if std::env::var_os("WEIR_TEST_MEMLOCK").is_some() {
        let limit = libc::rlimit {
            rlim_cur: 4096,
            rlim_max: 4096,
        };
        // SAFETY: `limit` is a valid rlimit for the duration of the call.
        let set = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        drop_ipc_lock();
        let rt = Runtime::builder()
            .backend(Backend::Auto)
            .build()
            .expect("runtime");
        let report = rt.backend_report().clone();
        match report.backend {
            Backend::Poll => {
                println!("MEMLOCK CASE: fell back ({})", report.reason);
                assert!(report.reason.contains("fell back"), "{report:?}");
            }
            _ => println!(
                "MEMLOCK CASE: kept io_uring ({}): this kernel does not charge rings to \
                 RLIMIT_MEMLOCK, so no fallback is needed",
                report.reason
            ),
        }
        round_trip(&rt);
        return;
    }
    let output = run_child_test(
        "fallback::auto_serves_under_a_tiny_memlock_limit",
        &[("WEIR_TEST_MEMLOCK", "1"), ("WEIR_BACKEND", "")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let case = stdout
        .lines()
        .find_map(|line| line.split_once("MEMLOCK CASE: ").map(|(_, case)| case))
        .expect("the child says which case ran");
    eprintln!("tiny RLIMIT_MEMLOCK: {case}");
}

/// Drops `CAP_IPC_LOCK` from this process's effective and permitted sets, so that the memlock
/// limit applies to it as to an unprivileged container's process (a root test run has it).
fn drop_ipc_lock() {
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and `data` are the layout capget expects for version 3 (a header and two
    // data words), both live for the call.
    let got = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_IPC_LOCK);
    data[0].permitted &= !(1 << CAP_IPC_LOCK);
    // SAFETY: as for capget; capset only reads them.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", std::io::Error::last_os_error());
}
