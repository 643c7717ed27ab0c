//! Test support for Weir's crates, and nothing else: no shipped crate depends on it (only
//! dev-dependencies and the `tests` member do), so it may be as blunt as a test needs.
//!
//! # What is here
//!
//! One executor for tests, in two forms: [`block_on`] polls a future on the current thread and
//! parks between wake-ups; [`block_on_turning`] turns a driver (a ring, a reactor) between
//! wake-ups instead, for futures that only that driver can complete. Both carry a watchdog: a
//! future that goes [`WATCHDOG`] without a wake-up panics the test rather than hanging the
//! suite, so a lost wake-up is a failure with a message, not a stuck CI job.
//!
//! Also [`sqpoll_threads`], the count of this process's io_uring SQPOLL kernel threads, and
//! [`run_child_test`], which re-runs one test of the calling test binary in a child process.
//!
//! # How it works
//!
//! The waker sets a flag (and, for [`block_on`], unparks the thread). The loop polls only when
//! the flag is set — for the first poll it always is — so a spurious unpark or a driver turn
//! that completed someone else's operation does not re-poll the future. Between polls it parks
//! or turns for at most [`WAIT`], and checks the watchdog each time it comes back unwoken.
//!
//! # Examples
//!
//! ```
//! use std::task::Poll;
//!
//! // A future that is pending once and wakes itself: the wake-up is what gets it polled again.
//! let mut first = true;
//! let out = weir_testkit::block_on(std::future::poll_fn(|cx| {
//!     if std::mem::take(&mut first) {
//!         cx.waker().wake_by_ref();
//!         return Poll::Pending;
//!     }
//!     Poll::Ready(42)
//! }));
//! assert_eq!(out, 42);
//! ```
//!
//! With a driver, the closure turns it (here a stand-in that does nothing):
//!
//! ```
//! let out = weir_testkit::block_on_turning(async { 7 }, |timeout| std::thread::sleep(timeout));
//! assert_eq!(out, 7);
//! ```

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a future may go without a wake-up before the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(10);

/// The longest single wait between two checks of the wake-up flag: the timeout passed to
/// [`block_on_turning`]'s `turn`, and the longest park of [`block_on`].
pub const WAIT: Duration = Duration::from_millis(100);

/// Polls `fut` to completion on the current thread, parking between wake-ups.
///
/// # Panics
///
/// If `fut` goes [`WATCHDOG`] without a wake-up (a lost wake-up would otherwise hang the
/// test), or if `fut` panics.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    run(fut, Some(thread::current()), thread::park_timeout, WATCHDOG)
}

/// Polls `fut` to completion on the current thread, calling `turn(timeout)` after every poll and
/// every idle wait instead of parking: `turn` drives whatever completes the future, and should
/// return by `timeout` even when nothing happens, e.g.
/// `|timeout| { ring.turn(Some(timeout)).expect("turn"); }`. The timeout is [`WAIT`] while the
/// future waits for a wake-up, and zero when it has one already (so a future that wakes itself
/// while it waits for the driver still gets the driver turned, without blocking).
///
/// The waker does not unpark the thread: whatever wakes the future from another thread must
/// end the turn through the driver's own notification.
///
/// # Panics
///
/// If `fut` goes [`WATCHDOG`] without a wake-up (a lost completion would otherwise hang the
/// test), or if `fut` or `turn` panics.
pub fn block_on_turning<F: Future>(fut: F, turn: impl FnMut(Duration)) -> F::Output {
    run(fut, None, turn, WATCHDOG)
}

/// The loop behind both entry points: `unpark` is the thread the waker unparks, if any;
/// `watchdog` is [`WATCHDOG`] but for this crate's own tests.
fn run<F: Future>(
    fut: F,
    unpark: Option<Thread>,
    mut wait: impl FnMut(Duration),
    watchdog: Duration,
) -> F::Output {
    let wakeup = Arc::new(Wakeup {
        woken: AtomicBool::new(true),
        unpark,
    });
    let waker = Waker::from(wakeup.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut last_wakeup = Instant::now();
    loop {
        // Acquire pairs with the waker's Release: whatever the waking thread published before
        // `wake` is visible to this poll. The future's own state carries its own
        // synchronisation; the flag only decides whether to poll.
        if wakeup.woken.swap(false, Ordering::Acquire) {
            last_wakeup = Instant::now();
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        } else {
            assert!(
                last_wakeup.elapsed() < watchdog,
                "block_on: no wake-up for {watchdog:?} (a lost wake-up or a completion that never came)"
            );
        }
        // Wait even when already woken, with a zero timeout: a future that wakes itself while
        // it waits for the driver still gets the driver turned (and a park consumes the token
        // of the wake-up already recorded). Relaxed: the swap above does the synchronising.
        let woken = wakeup.woken.load(Ordering::Relaxed);
        wait(if woken { Duration::ZERO } else { WAIT });
    }
}

/// The waker: records that the future asked to be polled and rouses the thread that polls it.
struct Wakeup {
    woken: AtomicBool,
    unpark: Option<Thread>,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release pairs with the poller's Acquire swap (see `run`). The store comes before the
        // unpark, so a poller that parks after its swap either sees the flag or is unparked.
        self.woken.store(true, Ordering::Release);
        if let Some(thread) = &self.unpark {
            thread.unpark();
        }
    }
}

/// The kernel threads polling this process's io_uring submission queues (`SQPOLL`), by name.
/// The kernel names such a thread once it first runs, so a fresh ring's may not count yet.
pub fn sqpoll_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|comm| comm.starts_with("iou-sqp"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Re-runs test `name` (its full path, `module::test`) of the calling test binary in a child
/// process with `env` set, and returns the child's output. Panics unless the child succeeded
/// *and* ran exactly that test: a renamed or filtered-out test must not pass with zero tests run.
/// A child still running after two minutes is killed and the test fails (a hang never hangs the
/// suite).
pub fn run_child_test(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = std::process::Command::new(exe);
    command
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("start the child");
    let pid = child.id();
    let (done, exited) = std::sync::mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    let Ok(output) = exited.recv_timeout(Duration::from_secs(120)) else {
        // The child hangs: kill it (`kill` from the shell, to need no unsafe code here).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("child {name} still running after 120 s: killed");
    };
    let output = output.expect("wait for the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child {name} failed ({}): {stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("test {name} ... "))
            && stdout.contains("test result: ok. 1 passed"),
        "the child did not run {name}: {stdout}\n{stderr}"
    );
    output
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_wake_up_from_another_thread_completes_the_future() {
        let (tx, rx) = mpsc::channel::<Waker>();
        let waking = thread::spawn(move || rx.recv().expect("waker").wake());
        let mut sent = Some(tx);
        let out = block_on(std::future::poll_fn(|cx| match sent.take() {
            Some(tx) => {
                tx.send(cx.waker().clone()).expect("waking thread");
                Poll::Pending
            }
            None => Poll::Ready("woken"),
        }));
        assert_eq!(out, "woken");
        waking.join().expect("waking thread");
    }

    #[test]
    #[should_panic(expected = "no wake-up for")]
    fn a_lost_wake_up_fails_instead_of_hanging() {
        run(
            std::future::pending::<()>(),
            Some(thread::current()),
            thread::park_timeout,
            Duration::from_millis(50),
        );
    }

    #[test]
    #[should_panic(expected = "no wake-up for")]
    fn turning_without_a_wake_up_fails_instead_of_hanging() {
        run(
            std::future::pending::<()>(),
            None,
            thread::sleep,
            Duration::from_millis(50),
        );
    }

    #[test]
    fn a_future_that_wakes_itself_still_gets_the_driver_turned() {
        let turned = std::cell::Cell::new(0);
        let out = block_on_turning(
            std::future::poll_fn(|cx| {
                if turned.get() < 3 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(turned.get())
            }),
            |timeout| {
                assert_eq!(
                    timeout,
                    Duration::ZERO,
                    "already woken: the turn must not block"
                );
                turned.set(turned.get() + 1);
            },
        );
        assert_eq!(out, 3);
    }
}
