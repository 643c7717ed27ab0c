//! Spawned tasks: `spawn`, their join handles, and `yield_now`.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use super::current;
use super::executor::Core;

/// Spawns `fut` on this thread's runtime; it runs alongside the `block_on` future.
///
/// `!Send` futures are welcome: a task never leaves its thread.
///
/// # Panics
///
/// Outside [`Runtime::block_on`](crate::Runtime::block_on).
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let core = current();
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        done: false,
        waker: None,
    }));
    let task_state = state.clone();
    let task = async move {
        let guard = CompleteOnDrop(task_state.clone());
        let out = fut.await;
        task_state.borrow_mut().output = Some(out);
        drop(guard);
    };
    let index = core.insert_task(Box::pin(task));
    JoinHandle {
        state,
        index,
        core: Rc::downgrade(&core),
    }
}

/// Marks the join state done however the task ends (output, panic, abort).
struct CompleteOnDrop<T>(Rc<RefCell<JoinState<T>>>);

impl<T> Drop for CompleteOnDrop<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.borrow_mut();
            state.done = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct JoinState<T> {
    output: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

/// Why a task produced no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// It was aborted, or it panicked (the panic is caught and the task dropped).
    #[error("the task was aborted or panicked")]
    Cancelled,
}

/// Awaits a spawned task's output. Dropping it detaches the task (it keeps running).
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    index: usize,
    core: Weak<Core>,
}

impl<T> JoinHandle<T> {
    /// Stops the task: its future is dropped (at once, or when its current poll returns).
    pub fn abort(&self) {
        if self.state.borrow().done {
            return;
        }
        if let Some(core) = self.core.upgrade() {
            core.abort_task(self.index);
        }
    }

    /// `true` once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().done
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.borrow_mut();
        if state.done {
            return Poll::Ready(state.output.take().ok_or(JoinError::Cancelled));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Yields once to the other tasks and the driver.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}
