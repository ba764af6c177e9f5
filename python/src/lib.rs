//! p2pa's Python package, native half (`p2pa._native`): a requester node
//! (the one `p2pa submit` and `p2pa batch` start, here on its own thread),
//! models and the checks of inputs against them, numpy arrays to and from
//! the tensor format, and receipts. `p2pa/__init__.py` builds the
//! onnxruntime-like API on these.
//!
//! Every wait releases the GIL and looks at Python's signals every
//! `TICK` (50 ms), so other threads run meanwhile and Ctrl-C interrupts it.

mod arrays;
mod batch;
mod model;
mod node;
mod outcome;

use std::future::Future;
use std::time::Duration;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    p2pa,
    Error,
    PyException,
    "Every error of p2pa's own is one of these."
);
pyo3::create_exception!(
    p2pa,
    NoPeersError,
    Error,
    "No worker that runs the task was found (within `wait` seconds)."
);
pyo3::create_exception!(
    p2pa,
    InputError,
    Error,
    "An input does not fit the model (names, dtypes, shapes): nothing was sent."
);
pyo3::create_exception!(
    p2pa,
    TaskFailedError,
    Error,
    "A task did not complete: `.worker` and `.reason` say where and why."
);
pyo3::create_exception!(
    p2pa,
    ReceiptError,
    Error,
    "A receipt does not verify (a wrong signature, or another output)."
);

/// How often a wait looks at Python's signals (Ctrl-C).
const TICK: Duration = Duration::from_millis(50);

/// A CLI error as the Python exception of its kind.
fn py_err(e: p2pa_cli::CliError) -> PyErr {
    match e.code {
        p2pa_cli::exit::NETWORK => Error::new_err(e.msg),
        _ => InputError::new_err(e.msg),
    }
}

/// Runs `work` with the GIL released; every [`TICK`] it takes the GIL
/// back for a moment to run Python's signal handlers, and a handler's
/// exception (KeyboardInterrupt) drops `work` and is raised.
fn wait<T: Send>(py: Python<'_>, work: impl Future<Output = T> + Send) -> PyResult<T> {
    py.detach(|| {
        async_io::block_on(async {
            let mut work = std::pin::pin!(work);
            loop {
                let tick = async {
                    async_io::Timer::after(TICK).await;
                    None
                };
                if let Some(v) =
                    futures_lite::future::or(async { Some(work.as_mut().await) }, tick).await
                {
                    return Ok(v);
                }
                Python::attach(|py| py.check_signals())?;
            }
        })
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<node::Node>()?;
    m.add_class::<outcome::Outcome>()?;
    m.add_class::<model::Model>()?;
    m.add_class::<batch::Batch>()?;
    m.add_function(wrap_pyfunction!(arrays::decode, m)?)?;
    m.add_function(wrap_pyfunction!(arrays::encode, m)?)?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("NoPeersError", py.get_type::<NoPeersError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("TaskFailedError", py.get_type::<TaskFailedError>())?;
    m.add("ReceiptError", py.get_type::<ReceiptError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PROTOCOL_VERSION", p2pa_node::protocol::PROTOCOL_VERSION)?;
    Ok(())
}

/// Checks a receipt (the JSON `Receipt.json` holds, as `p2pa verify` reads
/// it) offline: the worker's signature over its result. Returns what it
/// proves; raises ReceiptError when it does not verify.
#[pyfunction]
fn verify_receipt(receipt: &str) -> PyResult<String> {
    let v: serde_json::Value = serde_json::from_str(receipt)
        .map_err(|e| ReceiptError::new_err(format!("not a receipt: {e}")))?;
    p2pa_cli::verify::check_one(&v).map_err(ReceiptError::new_err)
}
