//! The `infer` task: ONNX models run with tract (pure Rust, nothing fetched at
//! build or run time). A model is parsed once and kept (the most recently
//! used first); for each set of input shapes it is optimised once into a plan
//! with every symbolic dimension fixed from the actual input, and the plans
//! are kept in a bounded LRU. Inputs are checked against the model's declared
//! names, dtypes and shapes before running. In a node this runs inside a
//! child process (`task::child`), where a crash takes down only that process.

use std::sync::{Arc, Mutex};

use p2pa_protocol::TaskStatus;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::tensor::{self, Dtype, TensorError};
use crate::hex::hex;
use crate::models::{ModelError, ModelStore};

type Plan = Arc<TypedRunnableModel>;

/// One declared input of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Its name in the graph.
    pub name: String,
    /// Its dtype, if the model declares one this format carries.
    pub dtype: Option<Dtype>,
    /// Its shape (`None`: a symbolic or unknown dimension).
    pub shape: Shape,
}

/// A parsed model (not yet optimised for any shape).
struct Parsed {
    model: InferenceModel,
    inputs: Vec<InputSpec>,
    outputs: Vec<String>,
    /// File size, a proxy for its memory.
    bytes: usize,
}

/// Parsed models kept at once; the least recently used goes first (the disk
/// store keeps them all; parsing again costs a read, not a fetch).
pub const MAX_LOADED: usize = 4;
/// Optimised plans kept at once, over every (model, input shapes).
pub const MAX_PLANS: usize = 8;
/// Memory the kept models and plans may take, counted as their file size
/// each (weights dominate); the one in use always stays.
pub const MAX_LOADED_BYTES: usize = 512 << 20;

/// Least recently used first.
struct Lru<K, V> {
    entries: Vec<(K, V, usize)>,
    max: usize,
}

impl<K: PartialEq, V: Clone> Lru<K, V> {
    fn get(&mut self, k: &K) -> Option<V> {
        let i = self.entries.iter().position(|(key, _, _)| key == k)?;
        let e = self.entries.remove(i);
        let v = e.1.clone();
        self.entries.push(e);
        Some(v)
    }

    fn put(&mut self, k: K, v: V, bytes: usize, budget: usize) {
        self.entries.retain(|(key, _, _)| *key != k);
        let total =
            |e: &Vec<(K, V, usize)>| e.iter().map(|x| x.2).fold(bytes, usize::saturating_add);
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max || total(&self.entries) > budget)
        {
            self.entries.remove(0);
        }
        self.entries.push((k, v, bytes));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

type PlanKey = ([u8; 32], Vec<(Dtype, Vec<usize>)>);

/// Runs `infer` tasks against the models in a store.
pub struct Engine {
    /// Where models come from (`None`: only those given with [`Engine::hold`]).
    store: Option<ModelStore>,
    parsed: Mutex<Lru<[u8; 32], Arc<Parsed>>>,
    plans: Mutex<Lru<PlanKey, Plan>>,
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

impl Shape {
    /// Whether `dims` fits: same rank, every fixed dimension equal.
    pub fn fits(&self, dims: &[usize]) -> bool {
        self.0.len() == dims.len()
            && self
                .0
                .iter()
                .zip(dims)
                .all(|(e, a)| e.is_none_or(|e| e == *a))
    }

    /// A concrete shape.
    pub fn of(dims: &[usize]) -> Self {
        Self(dims.iter().map(|d| Some(*d)).collect())
    }
}

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
    /// tract could not parse the model, or optimise it for these shapes.
    Load {
        /// The model's hash.
        model: [u8; 32],
        /// tract's reason, with the operator and node it names.
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
    /// A named input tensor the model does not take.
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's input names.
        want: Vec<String>,
    },
    /// An input tensor's shape or dtype differs from the model's.
    WrongShape {
        /// The model input's name.
        input: String,
        /// The model's shape.
        want: Shape,
        /// The model's dtype (`None`: not declared).
        want_dtype: Option<Dtype>,
        /// The input's shape.
        got: Shape,
        /// The input's dtype.
        got_dtype: Dtype,
    },
    /// tract failed while running it.
    Run(TractError),
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoModel => f.write_str("an infer task needs a model hash"),
            Self::Store(e) => e.fmt(f),
            Self::Load { model, source } => {
                write!(f, "model {} failed to load: {source:#}", hex(model))
            }
            Self::Input(e) => write!(f, "bad input tensors: {e}"),
            Self::InputCount { want, got } => {
                write!(f, "the model takes {want} input tensors, got {got}")
            }
            Self::UnknownInput { name, want } => write!(
                f,
                "the model has no input named {name:?} (its inputs: {})",
                want.join(", ")
            ),
            Self::WrongShape {
                input,
                want,
                want_dtype,
                got,
                got_dtype,
            } => {
                let dt = want_dtype.map_or("any dtype", Dtype::name);
                write!(
                    f,
                    "wrong input {input:?}: the model expects {want} ({dt}), got {got} ({got_dtype})"
                )
            }
            Self::Run(e) => write!(f, "inference failed: {e:#}"),
        }
    }
}

impl std::error::Error for InferError {}

/// The declared inputs of the ONNX model in `bytes` (names, dtypes, shapes):
/// what a requester checks its inputs against before sending them.
pub fn model_inputs(bytes: &[u8]) -> TractResult<Vec<InputSpec>> {
    parse(bytes).map(|p| p.inputs)
}

fn parse(bytes: &[u8]) -> TractResult<Parsed> {
    let model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    let mut inputs = Vec::new();
    for (i, outlet) in model.inputs.iter().enumerate() {
        let fact = model.input_fact(i)?;
        let shape = fact
            .shape
            .dims()
            .map(|d| {
                d.concretize()
                    .and_then(|d| d.to_i64().ok())
                    .and_then(|v| usize::try_from(v).ok())
            })
            .collect();
        let dtype = fact.datum_type.concretize().and_then(dtype_of);
        let name = model.node(outlet.node).name.clone();
        inputs.push(InputSpec {
            name,
            dtype,
            shape: Shape(shape),
        });
    }
    let outputs = model
        .outputs
        .iter()
        .map(|o| {
            model
                .outlet_label(*o)
                .map_or_else(|| model.node(o.node).name.clone(), str::to_owned)
        })
        .collect();
    Ok(Parsed {
        model,
        inputs,
        outputs,
        bytes: bytes.len(),
    })
}

/// For each model input in order, the index of the tensor that feeds it (by
/// name where every tensor is named, else by position), each one checked
/// against the input's declared dtype and fixed dimensions.
fn order(specs: &[InputSpec], tensors: &[tensor::Tensor]) -> Result<Vec<usize>, InferError> {
    let count = |got| InferError::InputCount {
        want: specs.len(),
        got,
    };
    if tensors.len() != specs.len() {
        return Err(count(tensors.len()));
    }
    let named = tensors.iter().all(|t| t.name.is_some());
    let mut order: Vec<Option<usize>> = vec![None; specs.len()];
    for (i, t) in tensors.iter().enumerate() {
        let at =
            match &t.name {
                Some(n) if named => specs.iter().position(|s| s.name == *n).ok_or_else(|| {
                    InferError::UnknownInput {
                        name: n.clone(),
                        want: specs.iter().map(|s| s.name.clone()).collect(),
                    }
                })?,
                _ => i,
            };
        if let Some(slot) = order.get_mut(at) {
            *slot = Some(i);
        }
    }
    specs
        .iter()
        .zip(order)
        .map(|(spec, i)| {
            let (i, t) = i
                .and_then(|i| Some((i, tensors.get(i)?)))
                .ok_or_else(|| count(0))?;
            if !spec.shape.fits(&t.shape) || spec.dtype.is_some_and(|d| d != t.dtype) {
                return Err(InferError::WrongShape {
                    input: spec.name.clone(),
                    want: spec.shape.clone(),
                    want_dtype: spec.dtype,
                    got: Shape::of(&t.shape),
                    got_dtype: t.dtype,
                });
            }
            Ok(i)
        })
        .collect()
}

/// Checks `tensors` against a model's inputs (what a requester does before
/// sending), without touching them.
pub fn check(specs: &[InputSpec], tensors: &[tensor::Tensor]) -> Result<(), InferError> {
    order(specs, tensors).map(drop)
}

/// Checks `tensors` against a model's inputs and puts them in its order.
pub fn arrange(
    specs: &[InputSpec],
    tensors: Vec<tensor::Tensor>,
) -> Result<Vec<tensor::Tensor>, InferError> {
    let order = order(specs, &tensors)?;
    let mut slots: Vec<Option<tensor::Tensor>> = tensors.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect())
}

impl Engine {
    /// How many models are parsed and kept now.
    pub fn loaded(&self) -> usize {
        self.parsed.lock().map_or(0, |m| m.len())
    }

    /// The models parsed and kept now, most recently used last.
    pub fn loaded_models(&self) -> Vec<[u8; 32]> {
        self.parsed
            .lock()
            .map(|m| m.entries.iter().map(|e| e.0).collect())
            .unwrap_or_default()
    }

    /// How many optimised plans are kept now.
    pub fn plans(&self) -> usize {
        self.plans.lock().map_or(0, |m| m.len())
    }

    /// An engine over the models in `store` (each loaded on first use).
    pub fn new(store: ModelStore) -> Self {
        Self::with_store(Some(store))
    }

    /// An engine with no store: it runs the models given to [`Engine::hold`].
    pub fn in_memory() -> Self {
        Self::with_store(None)
    }

    /// The declared inputs of a model this engine has parsed (after
    /// [`Engine::hold`], say), without parsing it again.
    pub fn inputs(&self, hash: &[u8; 32]) -> Option<Vec<InputSpec>> {
        let parsed = self.parsed.lock().ok()?.get(hash)?;
        Some(parsed.inputs.clone())
    }

    /// Parses `model` and keeps it (as long as the LRU does); returns its hash.
    pub fn hold(&self, model: &[u8]) -> Result<[u8; 32], InferError> {
        let hash = crate::core::sha256(model);
        let parsed = Arc::new(parse(model).map_err(|source| InferError::Load {
            model: hash,
            source,
        })?);
        if let Ok(mut m) = self.parsed.lock() {
            m.put(hash, parsed, model.len(), MAX_LOADED_BYTES / 2);
        }
        Ok(hash)
    }

    fn with_store(store: Option<ModelStore>) -> Self {
        Self {
            store,
            parsed: Mutex::new(Lru {
                entries: Vec::new(),
                max: MAX_LOADED,
            }),
            plans: Mutex::new(Lru {
                entries: Vec::new(),
                max: MAX_PLANS,
            }),
        }
    }

    fn parsed(&self, hash: &[u8; 32]) -> Result<Arc<Parsed>, InferError> {
        if let Some(p) = self.parsed.lock().ok().and_then(|mut m| m.get(hash)) {
            return Ok(p);
        }
        let bytes = match &self.store {
            Some(store) => store.read(hash).map_err(InferError::Store)?,
            None => return Err(InferError::Store(ModelError::NotFound { hash: *hash })),
        };
        let parsed = Arc::new(parse(&bytes).map_err(|source| InferError::Load {
            model: *hash,
            source,
        })?);
        if let Ok(mut m) = self.parsed.lock() {
            m.put(*hash, parsed.clone(), parsed.bytes, MAX_LOADED_BYTES / 2);
        }
        Ok(parsed)
    }

    /// The plan for `hash` with these inputs, optimised once per shape set.
    fn plan(
        &self,
        hash: &[u8; 32],
        parsed: &Parsed,
        inputs: &[tensor::Tensor],
    ) -> Result<Plan, InferError> {
        let key: PlanKey = (
            *hash,
            inputs.iter().map(|t| (t.dtype, t.shape.clone())).collect(),
        );
        if let Some(p) = self.plans.lock().ok().and_then(|mut m| m.get(&key)) {
            return Ok(p);
        }
        let optimise = || -> TractResult<Plan> {
            let mut model = parsed.model.clone();
            for (i, t) in inputs.iter().enumerate() {
                model.set_input_fact(
                    i,
                    InferenceFact::dt_shape(datum_of(t.dtype), t.shape.clone()),
                )?;
            }
            model.into_optimized()?.into_runnable()
        };
        let plan = optimise().map_err(|source| InferError::Load {
            model: *hash,
            source,
        })?;
        if let Ok(mut m) = self.plans.lock() {
            m.put(key, plan.clone(), parsed.bytes, MAX_LOADED_BYTES / 2);
        }
        Ok(plan)
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
        let hash = model.ok_or(InferError::NoModel)?;
        let parsed = self.parsed(&hash)?;
        let tensors = tensor::decode(input).map_err(InferError::Input)?;
        let tensors = arrange(&parsed.inputs, tensors)?;
        let plan = self.plan(&hash, &parsed, &tensors)?;
        let values = tensors
            .into_iter()
            .map(to_value)
            .collect::<Result<TVec<_>, _>>()?;
        let outputs = plan.run(values).map_err(InferError::Run)?;
        let out: Vec<tensor::Tensor> = outputs
            .iter()
            .zip(
                parsed
                    .outputs
                    .iter()
                    .map(Some)
                    .chain(std::iter::repeat(None)),
            )
            .map(|(o, name)| {
                let t = from_value(o);
                match name {
                    Some(n) => t.named(n.clone()),
                    None => t,
                }
            })
            .collect();
        Ok(tensor::encode(&out))
    }
}

fn dtype_of(dt: DatumType) -> Option<Dtype> {
    Some(match dt {
        DatumType::F32 => Dtype::F32,
        DatumType::I64 => Dtype::I64,
        DatumType::F64 => Dtype::F64,
        DatumType::I32 => Dtype::I32,
        DatumType::U8 => Dtype::U8,
        DatumType::Bool => Dtype::Bool,
        DatumType::F16 => Dtype::F16,
        _ => return None,
    })
}

fn datum_of(dt: Dtype) -> DatumType {
    match dt {
        Dtype::F32 => DatumType::F32,
        Dtype::I64 => DatumType::I64,
        Dtype::F64 => DatumType::F64,
        Dtype::I32 => DatumType::I32,
        Dtype::U8 => DatumType::U8,
        Dtype::Bool => DatumType::Bool,
        Dtype::F16 => DatumType::F16,
    }
}

fn le<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N]))
}

fn array<T: Datum>(shape: &[usize], v: Vec<T>) -> Result<TValue, InferError> {
    tract_ndarray::ArrayD::from_shape_vec(shape, v)
        .map(|a| Tensor::from(a).into_tvalue())
        .map_err(|_| InferError::Input(TensorError::ShapeMismatch))
}

/// An input tensor as tract takes it.
fn to_value(t: tensor::Tensor) -> Result<TValue, InferError> {
    let s = &t.shape;
    match t.dtype {
        Dtype::F32 => array(s, le(&t.data).map(f32::from_le_bytes).collect()),
        Dtype::I64 => array(s, le(&t.data).map(i64::from_le_bytes).collect()),
        Dtype::F64 => array(s, le(&t.data).map(f64::from_le_bytes).collect()),
        Dtype::I32 => array(s, le(&t.data).map(i32::from_le_bytes).collect()),
        Dtype::U8 => array(s, t.data),
        Dtype::Bool => array(s, t.data.iter().map(|b| *b != 0).collect::<Vec<bool>>()),
        Dtype::F16 => array(
            s,
            le(&t.data)
                .map(|b| f16::from_bits(u16::from_le_bytes(b)))
                .collect(),
        ),
    }
}

fn bytes_of<T: Datum + Copy, const N: usize>(
    o: &TValue,
    to_le: impl Fn(T) -> [u8; N],
) -> Option<Vec<u8>> {
    let view = o.to_plain_array_view::<T>().ok()?;
    Some(view.iter().flat_map(|v| to_le(*v)).collect())
}

/// An output of tract as a tensor: the dtypes the format carries kept, other
/// integers as i64, other floats as f32.
fn from_value(o: &TValue) -> tensor::Tensor {
    let shape = o.shape().to_vec();
    let direct = match o.datum_type() {
        DatumType::F32 => bytes_of::<f32, 4>(o, f32::to_le_bytes).map(|b| (Dtype::F32, b)),
        DatumType::I64 => bytes_of::<i64, 8>(o, i64::to_le_bytes).map(|b| (Dtype::I64, b)),
        DatumType::F64 => bytes_of::<f64, 8>(o, f64::to_le_bytes).map(|b| (Dtype::F64, b)),
        DatumType::I32 => bytes_of::<i32, 4>(o, i32::to_le_bytes).map(|b| (Dtype::I32, b)),
        DatumType::U8 => bytes_of::<u8, 1>(o, u8::to_le_bytes).map(|b| (Dtype::U8, b)),
        DatumType::Bool => bytes_of::<bool, 1>(o, |b| [u8::from(b)]).map(|b| (Dtype::Bool, b)),
        DatumType::F16 => {
            bytes_of::<f16, 2>(o, |h| h.to_bits().to_le_bytes()).map(|b| (Dtype::F16, b))
        }
        dt if dt.is_integer() => o
            .cast_to::<i64>()
            .ok()
            .and_then(|c| bytes_of::<i64, 8>(&c.into_owned().into_tvalue(), i64::to_le_bytes))
            .map(|b| (Dtype::I64, b)),
        _ => o
            .cast_to::<f32>()
            .ok()
            .and_then(|c| bytes_of::<f32, 4>(&c.into_owned().into_tvalue(), f32::to_le_bytes))
            .map(|b| (Dtype::F32, b)),
    };
    let (dtype, data) = direct.unwrap_or((Dtype::F32, Vec::new()));
    tensor::Tensor::from_bytes(shape.clone(), dtype, data).unwrap_or(tensor::Tensor {
        name: None,
        shape: vec![0],
        dtype: Dtype::F32,
        data: Vec::new(),
    })
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

    fn engine(name: &str) -> (Engine, ModelStore, crate::models::TestDir) {
        let dir = crate::models::TestDir::new(&format!("infer-{name}"));
        let store = ModelStore::new(dir.0.clone(), 1 << 20);
        (Engine::new(store.clone()), store, dir)
    }

    fn label(out: &[u8]) -> i64 {
        let set = tensor::decode(out).unwrap();
        set[1].i64s().expect("label is i64")[0]
    }

    #[test]
    fn digits_model_classifies_the_test_split() {
        let (model, rows) = digits();
        let (engine, store, _dir) = engine("acc");
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
            assert_eq!(set[0].dtype, Dtype::F32);
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
        let (engine, store, _dir) = engine("bad");
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
