//! hyper's runtime traits on Weir (feature `hyper`): [`WeirExecutor`] spawns the tasks hyper
//! asks for (HTTP/2's streams and connection) on the current thread's runtime, and [`WeirTimer`]
//! gives hyper its timeouts (`header_read_timeout`, keep-alive pings) from the runtime's timers.
//!
//! ```no_run
//! # async fn serve(stream: weir_net::TcpStream) {
//! use weir_net::hyper_rt::{WeirExecutor, WeirTimer};
//!
//! # let service = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
//! #     Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hi")))
//! # });
//! let http1 = hyper::server::conn::http1::Builder::new()
//!     .timer(WeirTimer)
//!     .header_read_timeout(std::time::Duration::from_secs(5))
//!     .serve_connection(stream, service);
//! # let _ = http1.await;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::time;

/// hyper's `rt::Executor` for Weir: each future hyper hands over becomes a task on the runtime
/// of the thread that calls it (so `!Send` futures are fine). It is called from inside the
/// connection's task, on a runtime thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeirExecutor;

impl<F> hyper::rt::Executor<F> for WeirExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        // Detached: hyper keeps track of its own tasks.
        drop(crate::spawn(fut));
    }
}

/// hyper's `rt::Timer` for Weir, over [`time::sleep`]: any duration works (`Duration::MAX`
/// waits forever).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeirTimer;

impl hyper::rt::Timer for WeirTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(time::sleep_until(deadline)))
    }
}

/// A [`time::Sleep`] as hyper's `rt::Sleep`.
struct HyperSleep(time::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}
