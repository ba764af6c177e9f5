//! A model as a session holds it: its bytes (served to workers that lack
//! it), its hash, its declared inputs and outputs, and the CLI's check of
//! every input against them before anything is sent.

use std::path::PathBuf;
use std::sync::Arc;

use p2pa_cli::models::ModelCheck;
use p2pa_node::task::infer::InputSpec;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::{arrays, py_err, InputError};

/// One declared input or output: name, dtype (numpy's name, or None where
/// the file says none p2pa carries), shape (None for a free dimension).
type Arg = (String, Option<&'static str>, Vec<Option<usize>>);

fn arg(s: &InputSpec) -> Arg {
    (
        s.name.clone(),
        s.dtype.map(arrays::numpy_name),
        s.shape.0.clone(),
    )
}

/// An ONNX model: from a file, a hash in the data directory's model store
/// (`p2pa model add`), or its bytes.
#[pyclass(frozen, module = "p2pa._native")]
pub struct Model {
    pub bytes: Arc<Vec<u8>>,
    pub hash: [u8; 32],
    what: String,
    inputs: Vec<InputSpec>,
    outputs: Vec<InputSpec>,
    check: ModelCheck,
}

impl Model {
    /// Checks `feeds` against the model and encodes them as an infer input.
    pub fn input(&self, feeds: &[(String, Bound<'_, PyAny>)]) -> PyResult<Vec<u8>> {
        let set = feeds
            .iter()
            .map(|(n, a)| arrays::tensor_of(n, a))
            .collect::<PyResult<Vec<_>>>()?;
        self.check
            .check(&set)
            .map_err(|e| InputError::new_err(e.msg))?;
        Ok(p2pa_node::task::tensor::encode(&set))
    }
}

#[pymethods]
impl Model {
    /// `source`: a path (str or os.PathLike), a 64-hex-digit hash of a
    /// model in `data_dir`'s store, or the model's bytes.
    #[new]
    #[pyo3(signature = (source, data_dir=None))]
    fn new(source: &Bound<'_, PyAny>, data_dir: Option<PathBuf>) -> PyResult<Self> {
        let (bytes, what): (Vec<u8>, String) = if let Ok(b) = source.cast::<PyBytes>() {
            (b.as_bytes().to_vec(), "the model bytes".to_owned())
        } else {
            let spec: String = match source.cast::<PyString>() {
                Ok(s) => s.extract::<String>()?,
                Err(_) => source.extract::<PathBuf>()?.display().to_string(),
            };
            let dir = p2pa_cli::data_dir(data_dir.as_ref());
            (p2pa_cli::load_model(&dir, &spec).map_err(py_err)?, spec)
        };
        let (inputs, outputs) = p2pa_node::task::infer::model_signature(&bytes).map_err(|e| {
            InputError::new_err(format!("{what} is not an ONNX model p2pa can read: {e}"))
        })?;
        let check = ModelCheck::new(&bytes, &what).map_err(py_err)?;
        Ok(Self {
            hash: p2pa_node::core::sha256(&bytes),
            bytes: Arc::new(bytes),
            what,
            inputs,
            outputs,
            check,
        })
    }

    /// The model's SHA-256 (what workers name it by), in hex.
    #[getter]
    fn hash(&self) -> String {
        p2pa_node::hex::hex(&self.hash)
    }

    /// Where it came from (a path, a hash, or "the model bytes").
    #[getter]
    fn source(&self) -> &str {
        &self.what
    }

    /// Its size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The declared inputs: `[(name, dtype, shape), ...]`.
    fn inputs(&self) -> Vec<Arg> {
        self.inputs.iter().map(arg).collect()
    }

    /// The declared outputs: `[(name, dtype, shape), ...]`.
    fn outputs(&self) -> Vec<Arg> {
        self.outputs.iter().map(arg).collect()
    }

    /// Why inputs cannot be stacked along axis 0 (a model that fixes its
    /// first dimension), or None.
    fn fixed_batch(&self) -> Option<String> {
        self.check.fixed_batch()
    }

    /// Checks named arrays against the model and encodes them as an infer
    /// task's input; raises InputError with what was expected and given.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        feeds: Vec<(String, Bound<'py, PyAny>)>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.input(&feeds)?))
    }

    fn __repr__(&self) -> String {
        let hash = self.hash();
        format!(
            "Model({:?}, hash={})",
            self.what,
            hash.get(..12).unwrap_or(&hash)
        )
    }
}
