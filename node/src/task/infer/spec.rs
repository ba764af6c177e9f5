//! What a model declares and what a task must bring: the graph's inputs
//! (names, dtypes, shapes), read from the ONNX file itself so the same
//! checks hold for both engines, and the checks of a task's tensors
//! against them.

use tract_onnx::pb;

use super::tract::{read, Proto};
use super::InferError;
use crate::task::tensor::{self, Dtype};

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

/// The declared inputs of the ONNX model in `bytes` (names, dtypes, shapes):
/// what a requester checks its inputs against before sending them. Read
/// from the file's graph alone, so it works for models only one engine runs.
pub fn model_inputs(bytes: &[u8]) -> Result<Vec<InputSpec>, String> {
    let proto = read(bytes)?;
    Ok(declared(&proto).0)
}

/// The declared inputs and outputs of the ONNX model in `bytes`, as its
/// graph gives them (an output's shape may be empty where the exporter
/// wrote none): what the Python package's `get_inputs()` and
/// `get_outputs()` show.
pub fn model_signature(bytes: &[u8]) -> Result<(Vec<InputSpec>, Vec<InputSpec>), String> {
    let proto = read(bytes)?;
    let inputs = declared(&proto).0;
    let outputs = proto
        .get()
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(value_spec).collect())
        .unwrap_or_default();
    Ok((inputs, outputs))
}

/// The graph's inputs (less the initializers some exporters list among
/// them) and its output names.
pub(super) fn declared(proto: &Proto) -> (Vec<InputSpec>, Vec<String>) {
    let Some(graph) = proto.get().graph.as_ref() else {
        return (Vec::new(), Vec::new());
    };
    let weights: std::collections::BTreeSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !weights.contains(i.name.as_str()))
        .map(value_spec)
        .collect();
    let outputs = graph.output.iter().map(|o| o.name.clone()).collect();
    (inputs, outputs)
}

/// A graph input's or output's name, dtype and shape, as the file says.
fn value_spec(v: &pb::ValueInfoProto) -> InputSpec {
    let tensor = v
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .map(|pb::type_proto::Value::TensorType(t)| t);
    let dims = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(dim_of).collect())
        .unwrap_or_default();
    InputSpec {
        name: v.name.clone(),
        dtype: tensor.and_then(|t| dtype_of_onnx(t.elem_type)),
        shape: Shape(dims),
    }
}

/// A fixed dimension, or `None` for a symbol or an unset one (some
/// exporters write neither a value nor a name).
fn dim_of(d: &pb::tensor_shape_proto::Dimension) -> Option<usize> {
    match d.value {
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
            usize::try_from(v).ok()
        }
        _ => None,
    }
}

/// ONNX's `TensorProto.DataType` as the tensor format's dtype.
fn dtype_of_onnx(t: i32) -> Option<Dtype> {
    Some(match t {
        1 => Dtype::F32,
        2 => Dtype::U8,
        6 => Dtype::I32,
        7 => Dtype::I64,
        9 => Dtype::Bool,
        10 => Dtype::F16,
        11 => Dtype::F64,
        _ => return None,
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
