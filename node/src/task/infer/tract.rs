//! The tract backend: pure Rust, builds and runs everywhere p2pa does (armv7,
//! musl, no Python). A model is parsed once; for each set of input shapes it
//! is optimised once into a plan with every dimension fixed from the actual
//! input. It owns the tract-specific parts of loading and nothing else: the
//! input checks and the caches' policy live in `infer`.
//!
//! Exporters write symbolic shapes on outputs and intermediate values
//! (`batch`, `sequence`, `DynamicDimension.0`). Once the inputs are concrete
//! those symbols can no longer unify with the real sizes, so they are not
//! read: tract infers every shape from the inputs, as its own examples do.

use std::sync::{Arc, OnceLock};

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{expand, InferenceOp};

use super::InferError;
use crate::task::tensor::{self, Dtype, TensorError};

/// The tract release linked in (kept in step with Cargo.lock by a test).
pub const VERSION: &str = "0.23.9";

/// An optimised, runnable model for one set of input shapes.
pub type Plan = Arc<TypedRunnableModel>;

/// A model parsed by tract, not yet optimised for any shape.
pub struct Parsed(InferenceModel);

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed").finish_non_exhaustive()
    }
}

type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own `Squeeze` builder, which the one below hands every node it
/// does not handle itself.
static SQUEEZE: OnceLock<Option<Builder>> = OnceLock::new();

/// `Squeeze` before opset 13 with no `axes` attribute: valid ONNX (it means
/// every axis of size one, the same as opset 13's form without the axes
/// input), which tract 0.23 refuses at parse time.
fn squeeze_any_opset(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if ctx.onnx_operator_set_version < 13 && !node.attribute.iter().any(|a| a.name == "axes") {
        let op = tract_onnx::tract_hir::ops::array::Squeeze::new(None);
        return Ok((expand(op), vec![]));
    }
    match SQUEEZE.get().copied().flatten() {
        Some(builder) => builder(ctx, node),
        None => Err(TractError::msg("no Squeeze builder registered")),
    }
}

fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true);
    let register: &mut OnnxOpRegister = &mut onnx.op_register;
    let original = register.0.get("Squeeze").copied();
    SQUEEZE.get_or_init(|| original);
    register.insert("Squeeze", squeeze_any_opset);
    onnx
}

/// Builds tract's model from the parsed protobuf.
pub fn parse(proto: &Proto) -> TractResult<Parsed> {
    onnx().model_for_proto_model(proto.get()).map(Parsed)
}

/// An ONNX file's protobuf, weights included (parsed once per load).
pub struct Proto(ModelProto);

impl Proto {
    /// The protobuf, for the engine that builds its model from it.
    pub(super) fn get(&self) -> &ModelProto {
        &self.0
    }
}

impl std::fmt::Debug for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proto").finish_non_exhaustive()
    }
}

/// The protobuf of an ONNX file (weights included, read once), or why it
/// is not one.
pub fn read(bytes: &[u8]) -> Result<Proto, String> {
    let proto = onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| format!("{e:#}"))?;
    if proto.graph.is_none() {
        return Err("the file has no graph".into());
    }
    Ok(Proto(proto))
}

/// Optimises `parsed` for these exact inputs.
pub fn plan(parsed: &Parsed, inputs: &[tensor::Tensor]) -> TractResult<Plan> {
    let mut model = parsed.0.clone();
    for (i, t) in inputs.iter().enumerate() {
        model.set_input_fact(
            i,
            InferenceFact::dt_shape(datum_of(t.dtype), t.shape.clone()),
        )?;
    }
    model.into_optimized()?.into_runnable()
}

/// Runs a plan; the outputs in the model's order.
pub fn run(plan: &Plan, inputs: Vec<tensor::Tensor>) -> Result<Vec<tensor::Tensor>, InferError> {
    let values = inputs
        .into_iter()
        .map(to_value)
        .collect::<Result<TVec<_>, _>>()?;
    let outputs = plan
        .run(values)
        .map_err(|e| InferError::Run(format!("{e:#}")))?;
    Ok(outputs.iter().map(from_value).collect())
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
    #[test]
    fn version_matches_the_lock_file() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        let entry = format!("name = \"tract-onnx\"\nversion = \"{}\"", super::VERSION);
        assert!(lock.contains(&entry), "tract::VERSION is stale");
    }
}
