//! `Handle`: spawning onto a runtime from any thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::executor::Queue;
use super::{JoinError, Runtime, spawn};

/// A `Send + Sync` handle to a [`Runtime`](crate::Runtime): spawns onto it from any thread, waking it if it is
/// blocked.
///
/// # Examples
///
/// ```
/// let rt = weir_net::Runtime::new().expect("runtime");
/// let handle = rt.handle();
/// let answer = std::thread::spawn(move || {
///     // Built on the runtime's thread, so the future itself need not be `Send`.
///     handle.spawn(|| async { std::rc::Rc::new(40).as_ref() + 2 })
/// })
/// .join()
/// .expect("thread");
/// assert_eq!(rt.block_on(answer), Ok(42));
/// ```
#[derive(Clone)]
pub struct Handle {
    queue: Arc<Queue>,
}

impl Runtime {
    /// A handle for spawning onto this runtime from other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            queue: self.core.queue.clone(),
        }
    }
}

impl Handle {
    /// Runs `make` on the runtime's thread and spawns the future it returns there. The returned
    /// handle (`Send`) resolves to the output, or to [`JoinError::Cancelled`] if the task was
    /// aborted, panicked, or the runtime was dropped before running it.
    pub fn spawn<M, F>(&self, make: M) -> RemoteJoinHandle<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let state = Arc::new(Mutex::new(RemoteState {
            output: None,
            done: false,
            waker: None,
        }));
        // Dropped unrun (runtime gone) or run to the end, the guard marks the handle done.
        let guard = RemoteGuard(state.clone());
        self.queue.push_job(Box::new(move || {
            let fut = make();
            drop(spawn(async move {
                let out = fut.await;
                guard.finish(out);
            }));
        }));
        RemoteJoinHandle { state }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

struct RemoteState<T> {
    output: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

struct RemoteGuard<T>(Arc<Mutex<RemoteState<T>>>);

impl<T> RemoteGuard<T> {
    fn finish(self, out: T) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).output = Some(out);
    }
}

impl<T> Drop for RemoteGuard<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
            state.done = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Awaits the output of a task spawned through a [`Handle`]; `Send`, awaitable anywhere.
/// Dropping it detaches the task.
pub struct RemoteJoinHandle<T> {
    state: Arc<Mutex<RemoteState<T>>>,
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.done {
            return Poll::Ready(state.output.take().ok_or(JoinError::Cancelled));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle").finish_non_exhaustive()
    }
}
