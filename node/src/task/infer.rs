//! The `infer` task: ONNX models run with tract (pure Rust, nothing fetched at
//! build or run time). Each model is loaded once per worker process and reused;
//! inputs are checked against the model's input shapes before running.

use std::sync::{Arc, Mutex};

use p2pa_protocol::TaskStatus;
use tract_onnx::prelude::*;

use super::tensor::{self, Data, TensorError};
use crate::hex::hex;
use crate::models::{ModelError, ModelStore};

type Plan = Arc<TypedRunnableModel>;

/// A loaded model and the input shapes it expects (`None`: any size).
struct Loaded {
    plan: Plan,
    inputs: Vec<(DatumType, Vec<Option<usize>>)>,
}

/// Models kept loaded at once; the least recently used is dropped first
/// (the disk store keeps them all; loading again costs a read and an
/// optimisation, not a fetch).
pub const MAX_LOADED: usize = 4;

/// Runs `infer` tasks against the models in a store.
pub struct Engine {
    store: ModelStore,
    /// Loaded models, least recently used first (at most [`MAX_LOADED`]).
    loaded: Mutex<Vec<([u8; 32], Arc<Loaded>)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A shape as people write it, `N` for a free dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<Option<usize>>);

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match d {
                Some(v) => write!(f, "{v}")?,
                None => f.write_str("N")?,
            }
        }
        f.write_str("]")
    }
}

/// Why an `infer` task failed (its text is the task's failure output).
#[derive(Debug)]
#[non_exhaustive]
pub enum InferError {
    /// The task named no model.
    NoModel,
    /// The model is not in the store (or cannot be read).
    Store(ModelError),
    /// tract could not load or optimise the model.
    Load {
        /// The model's hash.
        model: [u8; 32],
        /// tract's reason.
        source: TractError,
    },
    /// The input is not a valid tensor set.
    Input(TensorError),
    /// The input has another number of tensors than the model.
    InputCount {
        /// What the model takes.
        want: usize,
        /// What came.
        got: usize,
    },
    /// An input tensor's shape or dtype differs from the model's.
    WrongShape {
        /// The model's shape.
        want: Shape,
        /// The model's dtype.
        want_dtype: &'static str,
        /// The input's shape.
        got: Shape,
        /// The input's dtype.
        got_dtype: &'static str,
    },
    /// tract failed while running it.
    Run(TractError),
    /// An output of a type the tensor format cannot carry.
    Output(DatumType),
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoModel => f.write_str("an infer task needs a model hash"),
            Self::Store(e) => e.fmt(f),
            Self::Load { model, source } => {
                write!(f, "model {} failed to load: {source}", hex(model))
            }
            Self::Input(e) => write!(f, "bad input tensors: {e}"),
            Self::InputCount { want, got } => {
                write!(f, "the model takes {want} input tensors, got {got}")
            }
            Self::WrongShape {
                want,
                want_dtype,
                got,
                got_dtype,
            } => write!(
                f,
                "wrong input shape: the model expects {want} ({want_dtype}), got {got} ({got_dtype})"
            ),
            Self::Run(e) => write!(f, "inference failed: {e}"),
            Self::Output(dt) => write!(f, "output of type {dt:?} cannot be returned"),
        }
    }
}

impl std::error::Error for InferError {}

impl Engine {
    /// How many models are loaded now.
    pub fn loaded(&self) -> usize {
        self.loaded.lock().map_or(0, |m| m.len())
    }

    /// An engine over the models in `store` (each loaded on first use).
    pub fn new(store: ModelStore) -> Self {
        Self {
            store,
            loaded: Mutex::new(Vec::new()),
        }
    }

    fn load(&self, hash: &[u8; 32]) -> Result<Arc<Loaded>, InferError> {
        if let Some(l) = self.loaded.lock().ok().and_then(|mut m| {
            let i = m.iter().position(|(h, _)| h == hash)?;
            let entry = m.remove(i);
            let l = entry.1.clone();
            m.push(entry); // most recently used last
            Some(l)
        }) {
            return Ok(l);
        }
        let bytes = self.store.read(hash).map_err(InferError::Store)?;
        let loaded = Self::compile(&bytes).map_err(|source| InferError::Load {
            model: *hash,
            source,
        })?;
        let loaded = Arc::new(loaded);
        if let Ok(mut m) = self.loaded.lock() {
            m.retain(|(h, _)| h != hash);
            if m.len() >= MAX_LOADED {
                m.remove(0);
            }
            m.push((*hash, loaded.clone()));
        }
        Ok(loaded)
    }

    fn compile(bytes: &[u8]) -> TractResult<Loaded> {
        let typed = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])?
            .into_optimized()?;
        let mut inputs = Vec::new();
        for i in 0..typed.inputs.len() {
            let fact = typed.input_fact(i)?;
            let dims = fact
                .shape
                .iter()
                .map(|d| d.to_i64().ok().and_then(|v| usize::try_from(v).ok()))
                .collect();
            inputs.push((fact.datum_type, dims));
        }
        Ok(Loaded {
            plan: typed.into_runnable()?,
            inputs,
        })
    }

    /// Runs model `model` on the tensor set `input`; the output is a tensor
    /// set, or the failure's text.
    pub fn run(&self, model: Option<[u8; 32]>, input: &[u8]) -> (TaskStatus, Vec<u8>) {
        match self.infer(model, input) {
            Ok(out) => (TaskStatus::Completed, out),
            Err(e) => (TaskStatus::Failed, e.to_string().into_bytes()),
        }
    }

    fn infer(&self, model: Option<[u8; 32]>, input: &[u8]) -> Result<Vec<u8>, InferError> {
        let loaded = self.load(&model.ok_or(InferError::NoModel)?)?;
        let tensors = tensor::decode(input).map_err(InferError::Input)?;
        if tensors.len() != loaded.inputs.len() {
            return Err(InferError::InputCount {
                want: loaded.inputs.len(),
                got: tensors.len(),
            });
        }
        let mut values = TVec::new();
        for (t, (dt, dims)) in tensors.into_iter().zip(&loaded.inputs) {
            values.push(to_value(t, *dt, dims)?);
        }
        let outputs = loaded.plan.run(values).map_err(InferError::Run)?;
        let out = outputs
            .iter()
            .map(from_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(tensor::encode(&out))
    }
}

/// An input tensor as tract takes it, checked against the model's input.
fn to_value(
    t: tensor::Tensor,
    dt: DatumType,
    dims: &[Option<usize>],
) -> Result<TValue, InferError> {
    let fits = t.shape.len() == dims.len()
        && t.shape
            .iter()
            .zip(dims)
            .all(|(a, e)| e.is_none_or(|e| e == *a));
    let want_dtype = if dt == DatumType::I64 { "i64" } else { "f32" };
    if !fits || t.dtype() != want_dtype {
        return Err(InferError::WrongShape {
            want: Shape(dims.to_vec()),
            want_dtype,
            got: Shape(t.shape.iter().map(|d| Some(*d)).collect()),
            got_dtype: t.dtype(),
        });
    }
    let value = match t.data {
        Data::F32(v) => tract_ndarray::ArrayD::from_shape_vec(t.shape, v).map(Tensor::from),
        Data::I64(v) => tract_ndarray::ArrayD::from_shape_vec(t.shape, v).map(Tensor::from),
    };
    value
        .map(Tensor::into_tvalue)
        .map_err(|_| InferError::Input(TensorError::ShapeMismatch))
}

/// An output of tract in the tensor format (i64 kept, the rest as f32).
fn from_value(o: &TValue) -> Result<tensor::Tensor, InferError> {
    let shape = o.shape().to_vec();
    let converted = if o.datum_type() == DatumType::I64 {
        o.to_plain_array_view::<i64>()
            .ok()
            .and_then(|a| tensor::Tensor::i64(shape, a.iter().copied().collect()))
    } else {
        o.cast_to::<f32>()
            .ok()
            .and_then(|c| {
                c.to_plain_array_view::<f32>()
                    .ok()
                    .map(|a| a.iter().copied().collect::<Vec<f32>>())
            })
            .and_then(|v| tensor::Tensor::f32(shape, v))
    };
    converted.ok_or(InferError::Output(o.datum_type()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tensor::Tensor as T;

    fn digits() -> (Vec<u8>, Vec<(Vec<f32>, i64)>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let model = std::fs::read(root.join("digits.onnx")).unwrap();
        let text = std::fs::read_to_string(root.join("digits_test.jsonl")).unwrap();
        let rows = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let x = v["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_f64().unwrap() as f32)
                    .collect();
                (x, v["label"].as_i64().unwrap())
            })
            .collect();
        (model, rows)
    }

    fn engine(name: &str) -> (Engine, ModelStore) {
        let dir = std::env::temp_dir().join(format!("p2pa-infer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ModelStore::new(dir, 1 << 20);
        (Engine::new(store.clone()), store)
    }

    fn label(out: &[u8]) -> i64 {
        let set = tensor::decode(out).unwrap();
        match &set[1].data {
            Data::I64(v) => v[0],
            Data::F32(_) => panic!("label is i64"),
        }
    }

    #[test]
    fn digits_model_classifies_the_test_split() {
        let (model, rows) = digits();
        let (engine, store) = engine("acc");
        let hash = store.put(None, &model).unwrap();
        let mut right = 0;
        for (x, y) in &rows {
            let input = tensor::encode(&[T::f32(vec![1, 64], x.clone()).unwrap()]);
            let (status, out) = engine.run(Some(hash), &input);
            assert_eq!(
                status,
                TaskStatus::Completed,
                "{}",
                String::from_utf8_lossy(&out)
            );
            let set = tensor::decode(&out).unwrap();
            assert_eq!(set[0].shape, vec![1, 10]);
            assert_eq!(set[0].dtype(), "f32");
            right += usize::from(label(&out) == *y);
        }
        let acc = right as f64 / rows.len() as f64;
        assert!(acc > 0.95, "accuracy {acc}");
        // Loaded once: it keeps working after the file is gone.
        std::fs::remove_file(store.path(&hash)).unwrap();
        let input =
            tensor::encode(&[
                T::f32(vec![2, 64], [rows[0].0.clone(), rows[1].0.clone()].concat()).unwrap(),
            ]);
        let (status, out) = engine.run(Some(hash), &input);
        assert_eq!(status, TaskStatus::Completed);
        assert_eq!(
            tensor::decode(&out).unwrap()[1].shape,
            vec![2],
            "batch of two"
        );
    }

    #[test]
    fn wrong_shape_missing_model_and_broken_model_fail_with_reasons() {
        let (model, _) = digits();
        let (engine, store) = engine("bad");
        let hash = store.put(None, &model).unwrap();
        let wrong = tensor::encode(&[T::f32(vec![1, 60], vec![0.0; 60]).unwrap()]);
        let (status, out) = engine.run(Some(hash), &wrong);
        let msg = String::from_utf8(out).unwrap();
        assert_eq!(status, TaskStatus::Failed);
        assert!(msg.contains("[N, 64]") && msg.contains("[1, 60]"), "{msg}");
        let ints = tensor::encode(&[T::i64(vec![1, 64], vec![0; 64]).unwrap()]);
        let (status, out) = engine.run(Some(hash), &ints);
        assert_eq!(status, TaskStatus::Failed);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("(f32), got [1, 64] (i64)"));
        let (status, out) = engine.run(Some([7; 32]), &wrong);
        assert_eq!(status, TaskStatus::Failed);
        assert!(String::from_utf8(out).unwrap().contains("not in the store"));
        let broken = store.put(None, b"this is not an onnx model").unwrap();
        let (status, out) = engine.run(Some(broken), &wrong);
        assert_eq!(status, TaskStatus::Failed);
        assert!(String::from_utf8(out).unwrap().contains("failed to load"));
        let (status, _) = engine.run(Some(hash), b"\x01\x09");
        assert_eq!(status, TaskStatus::Failed);
    }
}
