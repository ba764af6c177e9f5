//! One task's outcome as Python sees it, and Python's seconds as a duration.

use std::time::Duration;

use p2pa_node::core::TaskOutcome;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Seconds from Python as a duration (negative and NaN as zero).
pub fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// How one task went: its status, worker, output, receipt.
#[pyclass(frozen, module = "p2pa._native")]
pub struct Outcome {
    /// Its place in the inputs (0 for a single task).
    #[pyo3(get)]
    pub index: usize,
    #[pyo3(get)]
    pub status: &'static str,
    #[pyo3(get)]
    pub task_id: u64,
    /// The worker's full id, where one answered.
    #[pyo3(get)]
    pub worker: Option<String>,
    /// Why it did not complete.
    #[pyo3(get)]
    pub error: Option<String>,
    #[pyo3(get)]
    pub elapsed_ms: f64,
    #[pyo3(get)]
    pub attempts: u32,
    /// The signed receipt as JSON (as `p2pa verify` reads it).
    #[pyo3(get)]
    pub receipt: Option<String>,
    /// Read back from a journal, not run now.
    #[pyo3(get)]
    pub resumed: bool,
    pub output: Vec<u8>,
}

impl Outcome {
    /// From the node's outcome; `task_output` is a stacked task's whole
    /// output, which its receipt signs.
    pub fn new(index: usize, o: TaskOutcome, task_output: Option<&[u8]>) -> Self {
        let receipt = o.receipt.as_ref().map(|r| {
            p2pa_cli::verify::receipt_json(r, task_output.unwrap_or(&o.output)).to_string()
        });
        let completed = o.status == p2pa_node::protocol::TaskStatus::Completed;
        // The node's reason, and the worker's words in the output.
        let said = (!completed && !o.output.is_empty())
            .then(|| String::from_utf8_lossy(&o.output).into_owned());
        let error = match (o.error.as_ref().map(ToString::to_string), said) {
            (Some(e), Some(w)) => Some(format!("{e}: {w}")),
            (e, w) => e
                .or(w)
                .or_else(|| (!completed).then(|| o.status.name().to_owned())),
        };
        Self {
            index,
            status: o.status.name(),
            task_id: o.task_id,
            worker: o.worker.map(|w| w.to_string()),
            error,
            elapsed_ms: o.elapsed.as_secs_f64() * 1e3,
            attempts: o.attempts,
            receipt,
            resumed: false,
            output: o.output,
        }
    }
}

#[pymethods]
impl Outcome {
    /// The task's output bytes (for infer, decode them with `decode`).
    #[getter]
    fn output<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.output)
    }

    fn __repr__(&self) -> String {
        format!(
            "Outcome(index={}, status={:?}, worker={:?}, attempts={})",
            self.index, self.status, self.worker, self.attempts
        )
    }
}
