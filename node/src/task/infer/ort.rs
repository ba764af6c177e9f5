//! The onnxruntime backend: the engine ML practitioners already run, loaded
//! from the host at run time (`ort` with `load-dynamic`: nothing is linked or
//! downloaded at build time). It owns the process-wide onnxruntime
//! environment and one session per model; where to find the library is
//! `locate`'s business, which inputs fit a model is `infer`'s.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::InferError;
use crate::task::tensor::{self, Dtype};

/// The loaded library: its version, or why it did not load. One per process
/// (onnxruntime allows one environment).
static RUNTIME: OnceLock<Result<(String, Environment), String>> = OnceLock::new();

/// Loads onnxruntime from `lib` (once per process: later calls return the
/// first answer) and returns its version.
pub fn load(lib: &Path) -> Result<String, String> {
    RUNTIME
        .get_or_init(|| {
            let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
            let env = builder
                .with_name("p2pa")
                .build()
                .map_err(|e| format!("onnxruntime did not start: {e}"))?;
            Ok((version(lib), env))
        })
        .as_ref()
        .map(|(v, _)| v.clone())
        .map_err(Clone::clone)
}

/// The library's version: from its build string (`git-branch=rel-1.32.0`),
/// else from its file name (`libonnxruntime.so.1.32.0`).
fn version(lib: &Path) -> String {
    let info = ort::info();
    let from_info = info
        .split([',', ' '])
        .find_map(|f| f.trim().strip_prefix("git-branch=rel-"))
        .map(str::to_owned);
    let from_name = || {
        let name = lib.file_name()?.to_str()?;
        let v = name.split_once(".so.")?.1;
        Some(v.to_owned())
    };
    from_info
        .or_else(from_name)
        .unwrap_or_else(|| "unknown".into())
}

/// One model as an onnxruntime session (running takes `&mut`: one task at
/// a time per session, as a child runs one task at a time anyway).
pub struct Model(Mutex<Session>);

/// Creates a session for the model in `bytes`, with `threads` intra-op
/// threads (one per slot by default, so slots and threads never
/// oversubscribe the cores) and no spinning between runs (an idle worker
/// gives its core back to the machine's owner).
pub fn open(bytes: &[u8], threads: usize) -> Result<Model, String> {
    let Some(Ok((_, env))) = RUNTIME.get() else {
        return Err("onnxruntime is not loaded".into());
    };
    let text = |e: ort::Error<SessionBuilder>| e.to_string();
    let mut builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(text)?
        .with_intra_threads(threads.max(1))
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        .with_intra_op_spinning(false)
        .map_err(text)?
        .with_inter_op_spinning(false)
        .map_err(text)?;
    let session = builder
        .commit_from_memory(bytes)
        .map_err(|e| e.to_string())?;
    Ok(Model(Mutex::new(session)))
}

/// Runs the model on inputs already checked and put in its input order.
pub fn run(
    model: &Model,
    names: &[String],
    inputs: Vec<tensor::Tensor>,
) -> Result<Vec<tensor::Tensor>, InferError> {
    let run_err = |e: ort::Error| InferError::Run(e.to_string());
    let mut feed: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
    for (name, t) in names.iter().zip(inputs) {
        feed.push((name.clone(), to_value(t).map_err(run_err)?));
    }
    let mut session = model
        .0
        .lock()
        .map_err(|_| InferError::Run("the session was poisoned by an earlier panic".into()))?;
    let outputs = session.run(feed).map_err(run_err)?;
    outputs
        .iter()
        .map(|(name, v)| from_value(&v).map(|t| t.named(name.to_owned())))
        .collect()
}

fn shape_i64(shape: &[usize]) -> Vec<i64> {
    shape
        .iter()
        .map(|d| i64::try_from(*d).unwrap_or(i64::MAX))
        .collect()
}

fn typed<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
    shape: Vec<i64>,
    values: Vec<T>,
) -> ort::Result<DynValue> {
    Tensor::from_array((shape, values)).map(|t| t.into_dyn())
}

/// An input tensor as onnxruntime takes it (one copy into a typed buffer).
fn to_value(t: tensor::Tensor) -> ort::Result<DynValue> {
    let s = shape_i64(&t.shape);
    // The tensor's own typed views (checked against its dtype).
    match t.dtype {
        Dtype::F32 => typed(s, t.f32s().unwrap_or_default()),
        Dtype::I64 => typed(s, t.i64s().unwrap_or_default()),
        Dtype::F64 => typed(s, t.f64s().unwrap_or_default()),
        Dtype::I32 => typed(s, t.i32s().unwrap_or_default()),
        Dtype::U8 => typed(s, t.data),
        Dtype::Bool => typed(s, t.data.iter().map(|b| *b != 0).collect::<Vec<bool>>()),
        Dtype::F16 => typed(
            s,
            t.data
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes(c.try_into().unwrap_or([0; 2]))))
                .collect(),
        ),
    }
}

fn out<T: ort::value::PrimitiveTensorElementType + Copy, const N: usize>(
    v: &ort::value::DynValueRef<'_>,
    dtype: Dtype,
    to_le: impl Fn(T) -> [u8; N],
) -> Result<tensor::Tensor, InferError> {
    let (shape, data) = v
        .try_extract_tensor::<T>()
        .map_err(|e| InferError::Run(e.to_string()))?;
    let shape: Vec<usize> = shape
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .collect();
    let bytes = data.iter().flat_map(|x| to_le(*x)).collect();
    tensor::Tensor::from_bytes(shape, dtype, bytes)
        .ok_or_else(|| InferError::Run("onnxruntime returned a tensor of the wrong size".into()))
}

fn widened<T: ort::value::PrimitiveTensorElementType + Copy>(
    v: &ort::value::DynValueRef<'_>,
    to_i64: impl Fn(T) -> i64,
) -> Result<tensor::Tensor, InferError> {
    out::<T, 8>(v, Dtype::I64, |x| to_i64(x).to_le_bytes())
}

/// An output as a tensor: the dtypes the format carries kept, other integers
/// as i64 and bfloat16 as f32 (as the tract backend does).
fn from_value(v: &ort::value::DynValueRef<'_>) -> Result<tensor::Tensor, InferError> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(InferError::Run(format!(
            "the model returned a {} where p2pa carries only tensors",
            v.dtype()
        )));
    };
    match ty {
        TensorElementType::Float32 => out::<f32, 4>(v, Dtype::F32, f32::to_le_bytes),
        TensorElementType::Int64 => out::<i64, 8>(v, Dtype::I64, i64::to_le_bytes),
        TensorElementType::Float64 => out::<f64, 8>(v, Dtype::F64, f64::to_le_bytes),
        TensorElementType::Int32 => out::<i32, 4>(v, Dtype::I32, i32::to_le_bytes),
        TensorElementType::Uint8 => out::<u8, 1>(v, Dtype::U8, u8::to_le_bytes),
        TensorElementType::Bool => out::<bool, 1>(v, Dtype::Bool, |b| [u8::from(b)]),
        TensorElementType::Float16 => {
            out::<half::f16, 2>(v, Dtype::F16, |h| h.to_bits().to_le_bytes())
        }
        TensorElementType::Bfloat16 => {
            out::<half::bf16, 4>(v, Dtype::F32, |h| h.to_f32().to_le_bytes())
        }
        TensorElementType::Int8 => widened::<i8>(v, i64::from),
        TensorElementType::Int16 => widened::<i16>(v, i64::from),
        TensorElementType::Uint16 => widened::<u16>(v, i64::from),
        TensorElementType::Uint32 => widened::<u32>(v, i64::from),
        TensorElementType::Uint64 => widened::<u64>(v, |x| i64::try_from(x).unwrap_or(i64::MAX)),
        other => Err(InferError::Run(format!(
            "the model returned a tensor of {other}, which p2pa's tensor format does not carry"
        ))),
    }
}
