//! The batch journal: the results file, read back. Each result line names
//! its input line, the task's kind and model and a hash of its input, so a
//! re-run resumes only the same batch: other inputs, another kind or model
//! are refused instead of being taken for done work.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use p2pa_node::hex::hex;
use p2pa_node::protocol::TaskKind;
use p2pa_node::task::tensor::Tensor;
use serde_json::{json, Value};

use crate::inputs::Item;
use crate::CliError;

/// What one result line says of its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub completed: bool,
    pub stamp: Stamp,
}

/// What identifies a line's task: kind, model and input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub kind: String,
    pub model: Option<String>,
    pub input_sha256: String,
}

impl Stamp {
    pub fn of(kind: TaskKind, model: Option<[u8; 32]>, item: &Item) -> Self {
        Self {
            kind: kind.name().to_owned(),
            model: model.map(|m| hex(&m)),
            input_sha256: hex(&item.sha256()),
        }
    }

    /// Adds the stamp's fields to a result line.
    pub fn write_into(&self, v: &mut Value) {
        v["kind"] = json!(self.kind);
        v["model"] = json!(self.model);
        v["input_sha256"] = json!(self.input_sha256);
    }

    fn read(v: &Value) -> Option<Self> {
        Some(Self {
            kind: v.get("kind")?.as_str()?.to_owned(),
            model: v.get("model")?.as_str().map(str::to_owned),
            input_sha256: v.get("input_sha256")?.as_str()?.to_owned(),
        })
    }
}

/// A result line as the bytes to append, newline included: written by
/// serde_json straight into bytes (formatting through `Display` costs
/// about twice as much, which a line of 100 000 output floats feels), with
/// f32 numbers as f32 ([`crate::output::compact_bytes`]), and `outputs`
/// (when given) written from the tensors under that key.
pub fn line_bytes(v: &Value, outputs: Option<&[Tensor]>) -> Vec<u8> {
    let mut line = match (outputs, v.as_object()) {
        (Some(outputs), Some(fields)) => serde_json::to_vec(&Line { fields, outputs })
            .unwrap_or_else(|_| crate::output::compact_bytes(v)),
        _ => crate::output::compact_bytes(v),
    };
    line.push(b'\n');
    line
}

/// A line's fields with its output tensors added, keys in order.
struct Line<'a> {
    fields: &'a serde_json::Map<String, Value>,
    outputs: &'a [Tensor],
}

impl serde::Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const KEY: &str = "outputs";
        let mut m = s.serialize_map(None)?;
        let mut written = false;
        for (k, x) in self.fields.iter().filter(|(k, _)| k.as_str() != KEY) {
            if !written && k.as_str() > KEY {
                m.serialize_entry(KEY, &crate::tensors::TensorList(self.outputs))?;
                written = true;
            }
            m.serialize_entry(k, &crate::output::Compact::new(x))?;
        }
        if !written {
            m.serialize_entry(KEY, &crate::tensors::TensorList(self.outputs))?;
        }
        m.end()
    }
}

/// The last entry of each input line in the results file; cuts off a
/// half-written last line (a batch killed mid-write).
pub fn read(path: &Path) -> Result<BTreeMap<usize, Entry>, CliError> {
    let mut entries = BTreeMap::new();
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(entries);
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    if complete < bytes.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        f.set_len(complete as u64)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        eprintln!(
            "note: dropped a half-written last line of {}",
            path.display()
        );
    }
    for (n, line) in bytes
        .get(..complete)
        .unwrap_or(&[])
        .split(|b| *b == b'\n')
        .enumerate()
    {
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| {
            CliError::usage(format!(
                "{}:{}: not a result line ({e}); is --out a results file of `p2pa batch`?",
                path.display(),
                n + 1
            ))
        })?;
        let (Some(input_line), Some(stamp)) =
            (v.get("line").and_then(Value::as_u64), Stamp::read(&v))
        else {
            return Err(CliError::usage(format!(
                "{}:{}: a result line without its line, kind, model and input hash; use another --out",
                path.display(),
                n + 1
            )));
        };
        let completed = v.get("status").and_then(Value::as_str) == Some("completed");
        entries.insert(input_line as usize, Entry { completed, stamp });
    }
    Ok(entries)
}

/// Refuses a journal written for another batch (other inputs, kind or model).
pub fn check_same_batch(
    path: &Path,
    entries: &BTreeMap<usize, Entry>,
    stamps: &BTreeMap<usize, Stamp>,
) -> Result<(), CliError> {
    for (line, entry) in entries {
        let why = match stamps.get(line) {
            None => format!("line {line} has a result but the inputs have no line {line}"),
            Some(s) if s.kind != entry.stamp.kind => format!(
                "line {line} was run as `{}`, this batch is `{}`",
                entry.stamp.kind, s.kind
            ),
            Some(s) if s.model != entry.stamp.model => {
                format!("line {line} was run with another model")
            }
            Some(s) if s.input_sha256 != entry.stamp.input_sha256 => {
                format!("line {line} of the inputs has changed since it was run")
            }
            Some(_) => continue,
        };
        return Err(CliError::usage(format!(
            "{} holds results of another batch: {why}; give another --out (or remove it to start over)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pa_node::task::tensor::{self, Dtype};

    #[test]
    fn a_line_with_deferred_outputs_reads_as_the_value_path_writes_it() {
        let set = vec![
            Tensor::f32(vec![2, 2], vec![0.1, -3.5e-7, f32::MAX, 2.0])
                .unwrap()
                .named("scores"),
            Tensor::from_bytes(
                vec![3],
                Dtype::I64,
                [7i64, -1, 0].iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
            .unwrap(),
            Tensor::from_bytes(vec![2], Dtype::Bool, vec![1, 0]).unwrap(),
            Tensor::from_bytes(vec![1], Dtype::F16, 0x3555u16.to_le_bytes().to_vec()).unwrap(),
            Tensor::f64(vec![1], vec![0.1]).unwrap(),
        ];
        let fields = json!({"zz": 1, "line": 3, "status": "completed", "outputs": "stale"});
        let line = line_bytes(&fields, Some(&set));
        assert_eq!(line.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&line).unwrap();
        let keys =
            ["\"line\"", "\"outputs\"", "\"status\"", "\"zz\""].map(|k| text.find(k).unwrap());
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "keys in order: {text}"
        );
        assert!(
            !text.contains("stale"),
            "the tensors replace any \"outputs\" field"
        );

        let back: Value = serde_json::from_slice(&line).unwrap();
        let (old, _) = crate::tensors::to_json(&tensor::encode(&set)).unwrap();
        assert_eq!(
            crate::tensors::tensors_from_json(&back["outputs"]).unwrap(),
            crate::tensors::tensors_from_json(&old).unwrap(),
            "the same tensors, bit for bit, as the Value path's"
        );
        assert_eq!(back["outputs"][0]["name"], "scores");
        assert_eq!(back["outputs"][1]["i64"], json!([7, -1, 0]));
        assert_eq!(back["outputs"][2]["bool"], json!([true, false]));
        assert_eq!(back["outputs"][4]["f64"], json!([0.1]));
        assert_eq!(back["line"], 3);

        let plain = line_bytes(&fields, None);
        assert!(
            std::str::from_utf8(&plain).unwrap().contains("stale"),
            "no tensors: the fields as they are"
        );
    }
}
