//! The inputs of a batch: one task per line, checked before anything is
//! sent (a `.npy` file by its header and length: names, dtypes and shapes
//! against the model; its values are read, encoded and hashed once, when its
//! task is sent).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use p2pa_node::core::Hashed;
use p2pa_node::protocol::TaskKind;

use crate::CliError;

/// One task of a batch.
#[derive(Debug, Clone)]
pub struct Item {
    pub line: usize,
    /// The input (empty when it is read from `file`).
    input: Hashed,
    /// A tensor file to read when the task is sent (so a batch of large
    /// inputs never holds them all).
    pub file: Option<PathBuf>,
    /// SHA-256 of a file's input, once it was read (an input at hand
    /// carries its own).
    file_sha256: Option<[u8; 32]>,
    /// Set once it ran stacked with other lines (`--batch-size`).
    pub batched: Option<Batched>,
}

/// How a line ran as part of a stacked task: the task's lines, its own rows
/// along axis 0, and the task's whole output (its receipt signs that; kept
/// for a receipt whose output travelled inline).
#[derive(Debug, Clone)]
pub struct Batched {
    pub lines: Vec<usize>,
    pub rows: (usize, usize),
    pub task_output: std::sync::Arc<Vec<u8>>,
}

impl Item {
    /// An item with its input at hand.
    pub fn new(line: usize, input: Vec<u8>) -> Self {
        Self {
            line,
            input: Hashed::new(input),
            file: None,
            file_sha256: None,
            batched: None,
        }
    }

    /// An item whose input is read from `file` when its task is sent.
    fn in_file(line: usize, file: PathBuf) -> Self {
        Self {
            line,
            input: Hashed::default(),
            file: Some(file),
            file_sha256: None,
            batched: None,
        }
    }

    /// About how many bytes its input takes (a file's size until read).
    pub fn size(&self) -> usize {
        match &self.file {
            Some(f) => {
                std::fs::metadata(f).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
            }
            None => self.input.len(),
        }
    }

    /// Its input, read, encoded and hashed now if it lives in a file (the
    /// hash is kept for the journal); handed over if it is at hand.
    pub fn load(&mut self) -> Result<Hashed, String> {
        match &self.file {
            Some(f) => {
                let input = Hashed::new(crate::tensors::read_file_encoded(f)?);
                self.file_sha256 = Some(input.sha256());
                Ok(input)
            }
            None => Ok(self.input.clone()),
        }
    }

    /// Keeps its input in memory from now on (read once for a stacked task).
    pub fn hold(&mut self, input: Hashed) {
        self.input = input;
        self.file = None;
    }

    /// Its input's SHA-256, if known: always for an input at hand, once
    /// read for a file's.
    fn known_sha256(&self) -> Option<[u8; 32]> {
        match &self.file {
            None => Some(self.input.sha256()),
            Some(_) => self.file_sha256,
        }
    }

    /// Its input's SHA-256, reading the file now if it was not read yet (a
    /// resumed batch checks its finished lines against their inputs).
    pub fn hash_now(&mut self) -> Result<[u8; 32], String> {
        match self.known_sha256() {
            Some(h) => Ok(h),
            None => self.load().map(|i| i.sha256()),
        }
    }

    /// Its input's SHA-256 for the journal: the hash of no bytes when its
    /// file could not be read (the line failed with that reason).
    pub fn sha256(&self) -> [u8; 32] {
        self.known_sha256()
            .unwrap_or_else(|| Hashed::default().sha256())
    }
}

/// The model's inputs, to check each line against before sending (none:
/// no model file, or a build without `onnx`).
type Check<'a> = Option<&'a crate::models::ModelCheck>;

/// Reads the input file; a bad line is an error naming it. Infer inputs are
/// checked against the model (`check`) here, before anything is sent.
pub fn read_inputs(path: &Path, kind: TaskKind, check: Check<'_>) -> Result<Vec<Item>, CliError> {
    let f = File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read inputs {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    let mut kept = 0u64;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| CliError::usage(format!("{}:{n}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad =
            |why: &str| CliError::usage(format!("{}:{n}: {why}; nothing was run", path.display()));
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(&format!("not JSON ({e})")))?;
        if kind == TaskKind::Infer {
            items.push(infer_item(n, &v, base, check, &mut kept).map_err(|e| bad(&e))?);
            continue;
        }
        let input = match &v {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            serde_json::Value::Object(o) => match o.get("input") {
                Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
                _ => return Err(bad("expected an object with an \"input\" string")),
            },
            _ => {
                return Err(bad(
                    "expected a JSON string or an object with an \"input\" string",
                ))
            }
        };
        items.push(Item::new(n, input));
    }
    Ok(items)
}

/// A tensor file this small is read whole at planning and kept in memory
/// (its header parse costs as much as its bytes: a sentence's `.npz` was a
/// quarter of a requester's CPU read twice)...
const SMALL_FILE: u64 = 64 << 10;
/// ...and kept if it encodes to at most this much...
const KEPT_EACH_AT_MOST: u64 = 1 << 20;
/// ...while the batch keeps at most this much so (encoded bytes).
const KEPT_AT_MOST: u64 = 64 << 20;

/// One infer line: a tensor in JSON, or the name of a tensor file.
fn infer_item(
    line: usize,
    v: &serde_json::Value,
    base: &Path,
    check: Check<'_>,
    kept: &mut u64,
) -> Result<Item, String> {
    let t = v.get("input").unwrap_or(v);
    let check_set = |set: &[p2pa_node::task::tensor::Tensor]| match check {
        Some(c) => c.check(set).map_err(|e| e.msg),
        None => Ok(()),
    };
    if let Some(name) = t.as_str() {
        let file = base.join(name);
        let size = std::fs::metadata(&file).map_or(u64::MAX, |m| m.len());
        if size > SMALL_FILE || *kept >= KEPT_AT_MOST {
            check_set(&crate::tensors::read_facts(&file)?)?;
            return Ok(Item::in_file(line, file));
        }
        // Small: read whole now and kept, not read (and parsed) again,
        // unless it decodes large (a compressed .npz).
        let set = crate::tensors::read_file(&file)?;
        check_set(&set)?;
        let input = p2pa_node::task::tensor::encode(&set);
        let len = u64::try_from(input.len()).unwrap_or(u64::MAX);
        if len > KEPT_EACH_AT_MOST {
            return Ok(Item::in_file(line, file));
        }
        *kept = kept.saturating_add(len);
        return Ok(Item::new(line, input));
    }
    let set = crate::tensors::tensors_from_json(t).map_err(|e| format!("bad tensor: {e}"))?;
    check_set(&set)?;
    Ok(Item::new(line, p2pa_node::task::tensor::encode(&set)))
}

#[cfg(test)]
#[cfg(feature = "npy")]
mod tests {
    use super::*;
    use p2pa_node::task::tensor::{encode, Tensor};

    #[test]
    fn a_small_file_is_read_once_at_planning_and_a_large_one_when_sent() {
        let dir = std::env::temp_dir().join(format!("p2pa-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = Tensor::f32(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let large = Tensor::f32(vec![1, 20_000], vec![0.5; 20_000]).unwrap(); // 80 KB
        for (name, t) in [("small", &small), ("large", &large)] {
            let p = crate::tensors::write_npy_dir(&encode(std::slice::from_ref(t)), &dir).unwrap();
            std::fs::rename(&p[0], dir.join(format!("{name}.npy"))).unwrap();
        }
        // A compressed .npz: a small file that decodes to 2 MB.
        let zeros = Tensor::f32(vec![1, 500_000], vec![0.0; 500_000]).unwrap();
        let p = crate::tensors::write_npy_dir(&encode(std::slice::from_ref(&zeros)), &dir).unwrap();
        let mut zw = zip::ZipWriter::new(std::fs::File::create(dir.join("zeros.npz")).unwrap());
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zw.start_file("x.npy", deflated).unwrap();
        std::io::Write::write_all(&mut zw, &std::fs::read(&p[0]).unwrap()).unwrap();
        zw.finish().unwrap();
        assert!(std::fs::metadata(dir.join("zeros.npz")).unwrap().len() <= SMALL_FILE);
        let lines = dir.join("in.jsonl");
        std::fs::write(
            &lines,
            "{\"input\": \"small.npy\"}\n{\"input\": \"large.npy\"}\n{\"input\": \"zeros.npz\"}\n",
        )
        .unwrap();
        let mut items = read_inputs(&lines, TaskKind::Infer, None).unwrap();
        let want = |t: &Tensor| p2pa_node::core::sha256(&encode(std::slice::from_ref(t)));
        assert!(items[0].file.is_none(), "small: kept");
        assert_eq!(items[0].sha256(), want(&small));
        assert!(items[1].file.is_some(), "large: read when sent");
        assert_ne!(
            items[1].sha256(),
            want(&large),
            "not hashed before it is read"
        );
        let input = items[1].load().unwrap();
        assert_eq!(
            (input.sha256(), items[1].sha256()),
            (want(&large), want(&large))
        );
        assert_eq!(items[0].load().unwrap().bytes(), encode(&[small]));
        assert!(items[2].file.is_some(), "decodes large: not kept");
        std::fs::remove_dir_all(&dir).ok();
    }
}
