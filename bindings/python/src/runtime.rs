//! The tokio runtime the nodes run on, owned here so that it can be stopped before the
//! interpreter finalizes.
//!
//! `pyo3-async-runtimes`'s own tokio runtime lives in a `static` and is never shut down:
//! a worker thread still resolving an asyncio future when the interpreter exits (it
//! releases the GIL inside `call_soon_threadsafe`'s socket write) is then killed by
//! CPython (< 3.14) with `pthread_exit`, which cannot unwind through Rust frames, and the
//! process aborts. [`stop_runtime`], run by an `atexit` hook of the package, shuts this
//! runtime down with the GIL released first, so every worker has left Python and ended.
//!
//! [`future_into_py`] hands a finished future's result back to its event loop without the
//! runtime's threads touching Python: a worker queues the result and writes one byte to a
//! socket the loop watches (`add_reader`), and the loop thread, which holds the GIL
//! anyway, converts the result and resolves the asyncio future. That is one thread
//! hand-off each way, as in the Node.js binding; `pyo3-async-runtimes`' own
//! `future_into_py` (the fallback for loops without `add_reader`) adds a hop to a blocking
//! thread, and a Python thread state created and destroyed on it for every call.

use std::cell::OnceCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::{IntoPyObjectExt, intern};
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::err::RustPanic;
use pyo3_async_runtimes::generic::{self, ContextExt};
use tokio::runtime::{Handle, Runtime};

/// How long [`stop_runtime`] waits for the workers to finish their current task.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime, until [`stop_runtime`] takes it.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);
/// A handle to it (spawning after the stop drops the task at once).
static HANDLE: OnceLock<Handle> = OnceLock::new();

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

fn handle() -> &'static Handle {
    HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("p2pf-node")
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"));
        let handle = rt.handle().clone();
        *crate::lock(&RUNTIME) = Some(rt);
        handle
    })
}

/// The `pyo3-async-runtimes` runtime type for [`RUNTIME`].
pub(crate) struct NodeRuntime;

impl generic::Runtime for NodeRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        handle().spawn_blocking(f)
    }
}

impl ContextExt for NodeRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Runs `fut` on the node runtime and returns an asyncio future of its result (cancelling
/// the asyncio future cancels `fut`). The result becomes a Python object on the event
/// loop's thread, so `T`'s conversion is where a future's Python objects are made.
pub(crate) fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let Some(waker) = wake::waker(&event_loop)? else {
        return generic::future_into_py::<NodeRuntime, F, T>(py, fut);
    };
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let target = future.clone().unbind();
    let task = handle().spawn(async move {
        let outcome = catch_unwind(fut).await;
        waker.push(target, move |py| match outcome {
            Ok(result) => result.and_then(|value| value.into_py_any(py)),
            Err(panic) => Err(RustPanic::new_err(format!(
                "rust future panicked: {}",
                panic_message(panic.as_ref())
            ))),
        });
    });
    future.call_method1(
        intern!(py, "add_done_callback"),
        (Canceller(task.abort_handle()),),
    )?;
    Ok(future)
}

/// `fut`'s output, or the payload of its panic.
async fn catch_unwind<F: Future>(fut: F) -> std::thread::Result<F::Output> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    match panic.downcast_ref::<&str>() {
        Some(s) => s,
        None => panic
            .downcast_ref::<String>()
            .map_or("unknown error", String::as_str),
    }
}

/// The done callback of an asyncio future from [`future_into_py`]: its cancellation aborts
/// the Rust task.
#[pyclass(frozen)]
struct Canceller(tokio::task::AbortHandle);

#[pymethods]
impl Canceller {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future
            .call_method0(intern!(future.py(), "cancelled"))?
            .is_truthy()?
        {
            self.0.abort();
        }
        Ok(())
    }
}

/// Resolves the asyncio `future` with `result` unless it is done (cancelled) already; an
/// error doing so is reported as unraisable.
fn resolve(future: &Bound<'_, PyAny>, result: PyResult<Py<PyAny>>) {
    let py = future.py();
    let set = || -> PyResult<()> {
        if future.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        match result {
            Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
            Err(e) => future.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
        };
        Ok(())
    };
    if let Err(e) = set() {
        e.write_unraisable(
            py,
            Some(&PyString::new(py, "resolving a p2p_foundation future")),
        );
    }
}

/// The running event loop and context, for Python code the runtime calls later.
pub(crate) fn current_locals(py: Python<'_>) -> PyResult<TaskLocals> {
    generic::get_current_locals::<NodeRuntime>(py)
}

/// Stops the node runtime: every node's tasks end and its sockets close. Called by the
/// package's `atexit` hook; nothing runs on the runtime afterwards.
#[pyfunction]
pub(crate) fn stop_runtime(py: Python<'_>) {
    let taken = crate::lock(&RUNTIME).take();
    if let Some(rt) = taken {
        py.detach(|| rt.shutdown_timeout(STOP_TIMEOUT));
    }
}

/// Waking an event loop from the runtime's threads without the GIL (Unix: a socket pair).
#[cfg(unix)]
mod wake {
    use std::cell::RefCell;
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsRawFd as _;
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Mutex};

    use pyo3::exceptions::PyNotImplementedError;
    use pyo3::intern;
    use pyo3::prelude::*;

    /// Makes a finished future's result, under the GIL on the loop's thread.
    type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

    /// One event loop's finished futures, and the socket pair that wakes it for them.
    pub(crate) struct LoopWaker {
        done: Mutex<Vec<(Py<PyAny>, Convert)>>,
        tx: UnixStream,
        rx: UnixStream,
    }

    impl LoopWaker {
        /// Queues `future`'s result (made by `convert`) and wakes the loop if the queue
        /// was empty (otherwise a byte is pending already). Needs no GIL.
        pub(crate) fn push(
            &self,
            future: Py<PyAny>,
            convert: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static,
        ) {
            let first = {
                let mut done = crate::lock(&self.done);
                done.push((future, Box::new(convert)));
                done.len() == 1
            };
            if first {
                // A full socket buffer (`WouldBlock`) has a byte pending already; a loop
                // whose read end is gone resolves nothing any more.
                let _ = (&self.tx).write(&[1]);
            }
        }
    }

    /// The loop's reader callback: resolves the queued futures.
    #[pyclass(frozen)]
    struct Drain(Arc<LoopWaker>);

    #[pymethods]
    impl Drain {
        fn __call__(&self, py: Python<'_>) {
            // The socket first, then the queue: a result queued after this read finds
            // the queue empty and writes a new byte, so none is left behind.
            let mut buf = [0u8; 256];
            while matches!((&self.0.rx).read(&mut buf), Ok(n) if n == buf.len()) {}
            let done = std::mem::take(&mut *crate::lock(&self.0.done));
            for (future, convert) in done {
                super::resolve(future.bind(py), convert(py));
            }
        }
    }

    /// The loops that ran on a thread and their wakers (`None`: the loop has no
    /// `add_reader`).
    type Wakers = Vec<(Py<PyAny>, Option<Arc<LoopWaker>>)>;

    thread_local! {
        /// This thread's [`Wakers`], until a loop closes.
        static WAKERS: RefCell<Wakers> =
            const { RefCell::new(Vec::new()) };
    }

    /// The waker of `event_loop`, the running loop of this thread, made and registered
    /// with the loop on first use; `None` if the loop cannot watch a socket.
    pub(crate) fn waker(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<LoopWaker>>> {
        let py = event_loop.py();
        // Out of the cell while Python runs (a loop's method could come back here).
        let mut wakers = WAKERS.take();
        let known = wakers
            .iter()
            .find(|(l, _)| l.is(event_loop))
            .map(|(_, w)| w.clone());
        let result = match known {
            Some(waker) => Ok(waker),
            None => {
                // A new loop on this thread: forget those closed since.
                wakers.retain(|(l, _)| {
                    !l.bind(py)
                        .call_method0(intern!(py, "is_closed"))
                        .and_then(|c| c.is_truthy())
                        .unwrap_or(true)
                });
                make(event_loop).inspect(|waker| {
                    wakers.push((event_loop.clone().unbind(), waker.clone()));
                })
            }
        };
        WAKERS.set(wakers);
        result
    }

    /// A new waker whose socket `event_loop` watches; `None` if it cannot (a loop
    /// without `add_reader`, such as the proactor loop).
    fn make(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<LoopWaker>>> {
        let py = event_loop.py();
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        let fd = rx.as_raw_fd();
        let waker = Arc::new(LoopWaker {
            done: Mutex::new(Vec::new()),
            tx,
            rx,
        });
        match event_loop.call_method1(intern!(py, "add_reader"), (fd, Drain(Arc::clone(&waker)))) {
            Ok(_) => Ok(Some(waker)),
            Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Without Unix sockets every loop takes `pyo3-async-runtimes`' path.
#[cfg(not(unix))]
mod wake {
    use pyo3::prelude::*;

    /// Never made.
    pub(crate) enum LoopWaker {}

    impl LoopWaker {
        pub(crate) fn push(
            &self,
            _: Py<PyAny>,
            _: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static,
        ) {
            match *self {}
        }
    }

    pub(crate) fn waker(_: &Bound<'_, PyAny>) -> PyResult<Option<std::sync::Arc<LoopWaker>>> {
        Ok(None)
    }
}
