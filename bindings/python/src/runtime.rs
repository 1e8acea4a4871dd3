//! The tokio runtime the nodes run on, owned here so that it can be stopped before the
//! interpreter finalizes.
//!
//! `pyo3-async-runtimes`'s own tokio runtime lives in a `static` and is never shut down:
//! a worker thread still resolving an asyncio future when the interpreter exits (it
//! releases the GIL inside `call_soon_threadsafe`'s socket write) is then killed by
//! CPython (< 3.14) with `pthread_exit`, which cannot unwind through Rust frames, and the
//! process aborts. [`stop_runtime`], run by an `atexit` hook of the package, shuts this
//! runtime down with the GIL released first, so every worker has left Python and ended.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
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
/// the asyncio future cancels `fut`).
pub(crate) fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    generic::future_into_py::<NodeRuntime, F, T>(py, fut)
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
