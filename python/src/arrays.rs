//! numpy arrays to and from the tensor format tasks carry: the dtypes
//! the CLI supports (f32, f64, f16, i64, i32, u8, bool), any shape, any
//! memory layout (a strided array is copied in C order).

use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use p2pa_node::task::tensor::{self, Dtype, Tensor};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::InputError;

/// Copies the values of `a` (if it holds `T`) as little-endian bytes.
macro_rules! le_bytes {
    ($a:expr, $t:ty, $bytes:expr) => {
        if let Ok(a) = $a.cast::<PyArrayDyn<$t>>() {
            let ro = a.try_readonly()?;
            let view = ro.as_array();
            // C order only: numpy's own `as_slice` also takes Fortran order.
            let bytes: Vec<u8> = match view.as_slice() {
                Some(s) => s.iter().flat_map($bytes).collect(),
                None => view.iter().flat_map($bytes).collect(),
            };
            return Ok(Some(bytes));
        }
    };
}

/// The array's bytes in the tensor format's layout, if its dtype is one it carries.
fn data_of(a: &Bound<'_, PyAny>, dtype: Dtype) -> PyResult<Option<Vec<u8>>> {
    match dtype {
        Dtype::F32 => le_bytes!(a, f32, |v: &f32| v.to_le_bytes()),
        Dtype::F64 => le_bytes!(a, f64, |v: &f64| v.to_le_bytes()),
        Dtype::F16 => le_bytes!(a, half::f16, |v: &half::f16| v.to_le_bytes()),
        Dtype::I64 => le_bytes!(a, i64, |v: &i64| v.to_le_bytes()),
        Dtype::I32 => le_bytes!(a, i32, |v: &i32| v.to_le_bytes()),
        Dtype::U8 => le_bytes!(a, u8, |v: &u8| [*v]),
        Dtype::Bool => le_bytes!(a, bool, |v: &bool| [u8::from(*v)]),
        _ => {}
    }
    Ok(None)
}

/// The tensor dtype of a numpy dtype name (`float32`, `bool`, ...).
fn dtype_of(name: &str) -> Option<Dtype> {
    Some(match name {
        "float32" => Dtype::F32,
        "float64" => Dtype::F64,
        "float16" => Dtype::F16,
        "int64" => Dtype::I64,
        "int32" => Dtype::I32,
        "uint8" => Dtype::U8,
        "bool" => Dtype::Bool,
        _ => return None,
    })
}

/// numpy's name for a tensor dtype.
pub fn numpy_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "float32",
        Dtype::F64 => "float64",
        Dtype::F16 => "float16",
        Dtype::I64 => "int64",
        Dtype::I32 => "int32",
        Dtype::U8 => "uint8",
        Dtype::Bool => "bool",
        _ => "?",
    }
}

/// A numpy array as a tensor named `name` (its data copied).
pub fn tensor_of(name: &str, a: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let arr = a.cast::<PyUntypedArray>().map_err(|_| {
        InputError::new_err(format!(
            "input {name:?}: expected a numpy array, got {}",
            a.get_type().name().map_or("?".into(), |n| n.to_string())
        ))
    })?;
    let descr = arr.dtype();
    let np_name = descr.to_string();
    let dtype = dtype_of(&np_name)
        .filter(|_| descr.is_native_byteorder() != Some(false))
        .ok_or_else(|| {
            InputError::new_err(format!(
                "input {name:?}: dtype {np_name} is not one p2pa carries (float32, float64, float16, int64, int32, uint8, bool)"
            ))
        })?;
    let shape = arr.shape().to_vec();
    if shape.len() > tensor::MAX_RANK {
        return Err(InputError::new_err(format!(
            "input {name:?}: {} dimensions, at most {} are carried",
            shape.len(),
            tensor::MAX_RANK
        )));
    }
    let data = data_of(a, dtype)?.ok_or_else(|| {
        InputError::new_err(format!("input {name:?}: cannot read a {np_name} array"))
    })?;
    Tensor::from_bytes(shape, dtype, data)
        .map(|t| t.named(name))
        .ok_or_else(|| {
            InputError::new_err(format!("input {name:?}: its size does not fit its shape"))
        })
}

/// A tensor as a new numpy array (its own copy, writeable).
pub fn array_of<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let shape = t.shape.clone();
    let a = match t.dtype {
        Dtype::F32 => PyArray1::from_vec(py, t.f32s().unwrap_or_default())
            .reshape(shape)?
            .into_any(),
        Dtype::F64 => PyArray1::from_vec(py, t.f64s().unwrap_or_default())
            .reshape(shape)?
            .into_any(),
        Dtype::I64 => PyArray1::from_vec(py, t.i64s().unwrap_or_default())
            .reshape(shape)?
            .into_any(),
        Dtype::I32 => PyArray1::from_vec(py, t.i32s().unwrap_or_default())
            .reshape(shape)?
            .into_any(),
        Dtype::U8 => PyArray1::from_vec(py, t.data.clone())
            .reshape(shape)?
            .into_any(),
        Dtype::Bool => {
            let v: Vec<bool> = t.data.iter().map(|b| *b != 0).collect();
            PyArray1::from_vec(py, v).reshape(shape)?.into_any()
        }
        Dtype::F16 => {
            let v: Vec<half::f16> = t
                .data
                .chunks_exact(2)
                .map(|c| {
                    half::f16::from_le_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .collect();
            PyArray1::from_vec(py, v).reshape(shape)?.into_any()
        }
        other => {
            return Err(crate::Error::new_err(format!(
                "an output of dtype {} has no numpy counterpart here",
                other.name()
            )))
        }
    };
    Ok(a)
}

/// Encodes named arrays as an `infer` task's input (no model check).
#[pyfunction]
pub fn encode<'py>(
    py: Python<'py>,
    feeds: Vec<(String, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let set = feeds
        .iter()
        .map(|(n, a)| tensor_of(n, a))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyBytes::new(py, &tensor::encode(&set)))
}

/// Decodes an `infer` task's output: `[(name or None, array), ...]` in the
/// model's output order.
#[pyfunction]
pub fn decode<'py>(
    py: Python<'py>,
    output: &[u8],
) -> PyResult<Vec<(Option<String>, Bound<'py, PyAny>)>> {
    let set = tensor::decode(output).map_err(|e| {
        crate::Error::new_err(format!("the worker's output is not a tensor set: {e}"))
    })?;
    set.iter()
        .map(|t| Ok((t.name.clone(), array_of(py, t)?)))
        .collect()
}
