//! The batch journal: the results file, read back. Each result line names
//! its input line, the task's kind and model and a hash of its input, so a
//! re-run resumes only the same batch: other inputs, another kind or model
//! are refused instead of being taken for done work.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use p2pa_node::hex::hex;
use p2pa_node::protocol::TaskKind;
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
            input_sha256: hex(&item.input_sha256),
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
/// f32 outputs as f32 ([`crate::output::compact_bytes`]).
pub fn line_bytes(v: &Value) -> Vec<u8> {
    let mut line = crate::output::compact_bytes(v);
    line.push(b'\n');
    line
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
