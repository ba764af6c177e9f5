//! JSON ⇄ tensor sets for `infer` tasks on the command line.
//!
//! Input forms: `[0.0, 1.5, …]` (one row: f32 `[1, n]`), `[[…], […]]`
//! (rows: f32 `[rows, n]`), or `{"shape": [..], "f32": [..]}` /
//! `{"shape": [..], "i64": [..]}`; a list of such objects for several inputs.

use p2pa_node::task::tensor::{self, Data, Tensor};
use serde_json::{json, Value};

fn numbers(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(Value::as_f64).collect()
}

fn one(v: &Value) -> Result<Tensor, String> {
    if let Some(row) = numbers(v) {
        let n = row.len();
        return Tensor::f32(vec![1, n], row.into_iter().map(|x| x as f32).collect())
            .ok_or("bad row".into());
    }
    if let Some(rows) = v
        .as_array()
        .and_then(|a| a.iter().map(numbers).collect::<Option<Vec<_>>>())
    {
        let cols = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|r| r.len() != cols) {
            return Err("rows of different lengths".into());
        }
        let data = rows
            .into_iter()
            .flatten()
            .map(|x| x as f32)
            .collect::<Vec<_>>();
        return Tensor::f32(vec![data.len() / cols.max(1), cols], data).ok_or("bad rows".into());
    }
    let obj = v
        .as_object()
        .ok_or("expected numbers, rows of numbers, or {\"shape\": [...], \"f32\": [...]}")?;
    let shape: Vec<usize> = obj
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or("\"shape\" must be a list of sizes")?;
    if let Some(f) = obj.get("f32") {
        let data = numbers(f).ok_or("\"f32\" must be a list of numbers")?;
        Tensor::f32(shape, data.into_iter().map(|x| x as f32).collect())
            .ok_or_else(|| "\"shape\" does not match the data length".into())
    } else if let Some(i) = obj.get("i64") {
        let data: Vec<i64> = i
            .as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect())
            .ok_or("\"i64\" must be a list of integers")?;
        Tensor::i64(shape, data).ok_or_else(|| "\"shape\" does not match the data length".into())
    } else {
        Err("a tensor object needs \"f32\" or \"i64\" data".into())
    }
}

/// Parses JSON input into the binary tensor set an `infer` task takes.
pub fn from_json(v: &Value) -> Result<Vec<u8>, String> {
    let set = match v.as_array() {
        Some(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            items.iter().map(one).collect::<Result<Vec<_>, _>>()?
        }
        _ => vec![one(v)?],
    };
    Ok(tensor::encode(&set))
}

/// Output tensors as JSON, plus the first integer output as `prediction`.
pub fn to_json(bytes: &[u8]) -> Option<(Value, Option<i64>)> {
    let set = tensor::decode(bytes).ok()?;
    let mut prediction = None;
    let list: Vec<Value> = set
        .iter()
        .map(|t| match &t.data {
            Data::F32(v) => json!({"shape": t.shape, "f32": v}),
            Data::I64(v) => {
                if prediction.is_none() {
                    prediction = v.first().copied();
                }
                json!({"shape": t.shape, "i64": v})
            }
        })
        .collect();
    Some((Value::Array(list), prediction))
}
