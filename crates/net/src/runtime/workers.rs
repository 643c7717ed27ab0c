//! `Workers`: a runtime per thread, fed through handles.

use std::fmt;
use std::io;

use super::{Builder, Handle};
use crate::Error;

/// Worker threads, each with its own [`Runtime`](crate::Runtime) (thread-per-core), fed through [`Handle`](crate::Handle)s.
/// Dropping it (or [`shutdown`](Workers::shutdown)) stops the workers and joins them; their
/// tasks are dropped.
///
/// # Examples
///
/// ```
/// let workers = weir_net::Runtime::builder().build_workers(2).expect("workers");
/// let answers: Vec<_> = (0..2)
///     .map(|i| workers.handle(i).spawn(move || async move { i * 10 }))
///     .collect();
/// let rt = weir_net::Runtime::new().expect("runtime");
/// for (i, answer) in answers.into_iter().enumerate() {
///     assert_eq!(rt.block_on(answer), Ok(i * 10));
/// }
/// workers.shutdown();
/// ```
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: weir_shutdown::Token,
}

impl Builder {
    /// Starts `n` worker threads, each running a runtime built with this configuration.
    ///
    /// # Errors
    ///
    /// As [`build`](Builder::build), for the first worker that fails (the others are stopped);
    /// or a thread could not be started.
    pub fn build_workers(self, n: usize) -> Result<Workers, Error> {
        let stop = weir_shutdown::Token::new();
        let mut workers = Workers {
            handles: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            stop: stop.clone(),
        };
        for index in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let builder = self.clone();
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("weir-worker-{index}"))
                .spawn(move || match builder.build() {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle()));
                        rt.block_on(stop.cancelled());
                    }
                    Err(error) => drop(tx.send(Err(error))),
                })?;
            workers.threads.push(thread);
            match rx.recv() {
                Ok(Ok(handle)) => workers.handles.push(handle),
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(io::Error::other("a worker thread exited during start-up").into());
                }
            }
        }
        Ok(workers)
    }
}

impl Workers {
    /// The handle of worker `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index]
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// `true` if there are no workers.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Stops every worker and waits for its thread.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.handles.len())
            .finish()
    }
}
