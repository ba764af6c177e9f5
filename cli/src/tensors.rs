//! Tensor sets for `infer` tasks on the command line: JSON, `.npy` and `.npz`.
//!
//! JSON input forms: `[0.0, 1.5, …]` (one row: f32 `[1, n]`), `[[…], […]]`
//! (rows: f32 `[rows, n]`), or `{"shape": [..], "<dtype>": [..]}` with dtype
//! one of f32, f64, f16, i64, i32, u8, bool (and an optional `"name"`); a list
//! of such objects for several inputs. Files: `.npy` (one tensor), `.npz`
//! (named tensors, as `numpy.savez` writes them), `.json`.

use std::path::{Path, PathBuf};

use p2pa_node::task::tensor::{self, Dtype, Tensor, TensorRef};
use serde_json::{json, Value};

#[cfg(feature = "npy")]
use crate::npy;

/// Without the `npy` feature (boards: `--no-default-features`), tensor files
/// are JSON only.
#[cfg(not(feature = "npy"))]
mod npy {
    use p2pa_node::task::tensor::{Tensor, TensorRef};

    const NO_NPY: &str = "this p2pa was built without .npy/.npz support (cargo feature `npy`); use a .json tensor file";

    pub fn read_npy(_: impl std::io::Read, what: &str) -> Result<Tensor, String> {
        Err(format!("{what}: {NO_NPY}"))
    }

    pub fn read_npz(_: impl std::io::Read, what: &str) -> Result<Vec<Tensor>, String> {
        Err(format!("{what}: {NO_NPY}"))
    }

    pub fn write_npy(_: &TensorRef<'_>, _: impl std::io::Write) -> std::io::Result<()> {
        Err(std::io::Error::other(NO_NPY))
    }

    pub fn npy_facts(_: &std::path::Path, what: &str) -> Result<Tensor, String> {
        Err(format!("{what}: {NO_NPY}"))
    }

    pub fn read_npy_encoded(_: impl std::io::Read, what: &str) -> Result<Vec<u8>, String> {
        Err(format!("{what}: {NO_NPY}"))
    }
}

fn numbers(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(Value::as_f64).collect()
}

fn typed(shape: Vec<usize>, dtype: Dtype, v: &Value) -> Result<Tensor, String> {
    let items = v.as_array().ok_or(format!("\"{dtype}\" must be a list"))?;
    let bad = || format!("\"{dtype}\" holds a value that is not a {dtype}");
    let t = match dtype {
        Dtype::F32 | Dtype::F64 | Dtype::F16 => {
            let xs = numbers(v).ok_or_else(bad)?;
            match dtype {
                Dtype::F64 => Tensor::f64(shape, xs),
                Dtype::F16 => {
                    let bits = xs
                        .iter()
                        .flat_map(|x| half::f16::from_f32(*x as f32).to_bits().to_le_bytes());
                    Tensor::from_bytes(shape, Dtype::F16, bits.collect())
                }
                _ => Tensor::f32(shape, xs.into_iter().map(|x| x as f32).collect()),
            }
        }
        Dtype::Bool => {
            let bits: Option<Vec<u8>> = items
                .iter()
                .map(|x| {
                    x.as_bool()
                        .map(u8::from)
                        .or_else(|| x.as_u64().filter(|b| *b <= 1).map(|b| b as u8))
                })
                .collect();
            Tensor::from_bytes(shape, Dtype::Bool, bits.ok_or_else(bad)?)
        }
        _ => {
            let ints: Vec<i64> = items
                .iter()
                .map(Value::as_i64)
                .collect::<Option<_>>()
                .ok_or_else(bad)?;
            match dtype {
                Dtype::I32 => Tensor::i32(
                    shape,
                    ints.iter()
                        .map(|i| i32::try_from(*i).map_err(|_| bad()))
                        .collect::<Result<_, _>>()?,
                ),
                Dtype::U8 => Tensor::u8(
                    shape,
                    ints.iter()
                        .map(|i| u8::try_from(*i).map_err(|_| bad()))
                        .collect::<Result<_, _>>()?,
                ),
                _ => Tensor::i64(shape, ints),
            }
        }
    };
    t.ok_or_else(|| "\"shape\" does not match the data length".into())
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
    let (dtype, data) = Dtype::ALL
        .into_iter()
        .find_map(|d| obj.get(d.name()).map(|x| (d, x)))
        .ok_or(
            "a tensor object needs data under a dtype key: f32, f64, f16, i64, i32, u8 or bool",
        )?;
    let t = typed(shape, dtype, data)?;
    Ok(match obj.get("name").and_then(Value::as_str) {
        Some(n) => t.named(n),
        None => t,
    })
}

/// Parses JSON input into tensors.
pub fn tensors_from_json(v: &Value) -> Result<Vec<Tensor>, String> {
    match v.as_array() {
        Some(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            items.iter().map(one).collect()
        }
        _ => Ok(vec![one(v)?]),
    }
}

/// Parses JSON input into the binary tensor set an `infer` task takes.
#[cfg(feature = "onnx")]
pub fn from_json(v: &Value) -> Result<Vec<u8>, String> {
    tensors_from_json(v).map(|set| tensor::encode(&set))
}

/// A tensor file's tensors, for checking names, shapes and dtypes: a
/// `.npy` file's without its data (the header, and its length against the
/// shape), any other file read whole.
pub fn read_facts(path: &Path) -> Result<Vec<Tensor>, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => Ok(vec![npy::npy_facts(path, &path.display().to_string())?]),
        _ => read_file(path),
    }
}

/// Reads input tensors from a `.npy`, `.npz` or `.json` file.
pub fn read_file(path: &Path) -> Result<Vec<Tensor>, String> {
    let (what, reader) = open(path)?;
    read_set(path, reader, &what)
}

/// Reads an input file as the tensor set an `infer` task takes: what
/// `tensor::encode(&read_file(path)?)` gives, a `.npy` file's data read
/// straight into it.
pub fn read_file_encoded(path: &Path) -> Result<Vec<u8>, String> {
    let (what, reader) = open(path)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy::read_npy_encoded(reader, &what),
        _ => read_set(path, reader, &what).map(|set| tensor::encode(&set)),
    }
}

type Reader = std::io::BufReader<std::fs::File>;

/// A file opened for reading, and its name for messages.
fn open(path: &Path) -> Result<(String, Reader), String> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    Ok((what, std::io::BufReader::new(file)))
}

/// The tensors of an opened file, read as its name's extension says.
fn read_set(path: &Path, reader: Reader, what: &str) -> Result<Vec<Tensor>, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => Ok(vec![npy::read_npy(reader, what)?]),
        Some("npz") => npy::read_npz(reader, what),
        _ => {
            let v: Value = serde_json::from_reader(reader).map_err(|e| {
                format!("{what}: not .npy, .npz or JSON (numbers, rows, or tensor objects): {e}")
            })?;
            tensors_from_json(&v).map_err(|e| format!("{what}: {e}"))
        }
    }
}

/// A file name for an output: its name with anything but `[A-Za-z0-9._-]`
/// replaced, or `output_<i>`.
fn file_name(t: &TensorRef<'_>, i: usize) -> String {
    match t.name {
        Some(n) if !n.is_empty() => n
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        _ => format!("output_{i}"),
    }
}

/// Writes each output tensor of `bytes` as `<dir>/<name>.npy`, straight
/// from `bytes` (no copy of a tensor's data first); returns the paths.
pub fn write_npy_dir(bytes: &[u8], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let set =
        tensor::decode_refs(bytes).map_err(|e| format!("the output is not a tensor set: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    set.iter()
        .enumerate()
        .map(|(i, t)| {
            let path = dir.join(format!("{}.npy", file_name(t, i)));
            let f = std::fs::File::create(&path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            npy::write_npy(t, std::io::BufWriter::new(f))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Output tensors as JSON, plus `prediction`: the first integer output's
/// values (one per row of a multi-row output; a single value as a number).
pub fn to_json(bytes: &[u8]) -> Option<(Value, Option<Value>)> {
    let set = tensor::decode(bytes).ok()?;
    let list = serde_json::to_value(TensorList(&set)).ok()?;
    Some((list, prediction(&set)))
}

/// The first integer output's values, as [`to_json`] says them.
pub fn prediction(set: &[Tensor]) -> Option<Value> {
    set.iter()
        .find_map(Tensor::i64s)
        .map(|v| match v.as_slice() {
            [one] => json!(one),
            many => json!(many),
        })
}

/// A tensor set as JSON, written straight from its bytes: a list of
/// `{"<dtype>": [values], "name": .., "shape": [..]}` (keys in the order a
/// [`Value`] map keeps). f32 and f16 values are written as f32 (`0.1`, and
/// they read back bit for bit); a non-finite float is `null`.
pub struct TensorList<'a>(pub &'a [Tensor]);

impl serde::Serialize for TensorList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(TensorJson))
    }
}

struct TensorJson<'a>(&'a Tensor);

impl serde::Serialize for TensorJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let t = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(t.dtype.name(), &Values(t))?;
        if let Some(n) = &t.name {
            m.serialize_entry("name", n)?;
        }
        m.serialize_entry("shape", &t.shape)?;
        m.end()
    }
}

/// A tensor's values, element by element from its little-endian bytes.
struct Values<'a>(&'a Tensor);

impl serde::Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn le<const N: usize>(c: &[u8]) -> [u8; N] {
            c.try_into().unwrap_or([0; N])
        }
        let t = self.0;
        let elems = t.data.chunks_exact(t.dtype.size());
        match t.dtype {
            Dtype::F32 => s.collect_seq(elems.map(|c| f32::from_le_bytes(le(c)))),
            Dtype::F16 => s.collect_seq(
                elems.map(|c| half::f16::from_bits(u16::from_le_bytes(le(c))).to_f32()),
            ),
            Dtype::F64 => s.collect_seq(elems.map(|c| f64::from_le_bytes(le(c)))),
            Dtype::I64 => s.collect_seq(elems.map(|c| i64::from_le_bytes(le(c)))),
            Dtype::I32 => s.collect_seq(elems.map(|c| i32::from_le_bytes(le(c)))),
            Dtype::U8 => s.collect_seq(t.data.iter()),
            Dtype::Bool => s.collect_seq(t.data.iter().map(|b| *b != 0)),
            _ => s.collect_seq(t.to_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("p2pa-cli-tensors-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    #[cfg(feature = "npy")]
    fn npy_round_trips_every_dtype_and_npz_keeps_names() {
        use std::io::Write;
        let dir = temp("npy");
        let set = vec![
            Tensor::f32(vec![2, 2], vec![1.0, -2.5, 3.25, 0.0])
                .unwrap()
                .named("a"),
            Tensor::f64(vec![1], vec![0.1]).unwrap().named("b"),
            Tensor::i64(vec![3], vec![1, -2, 1 << 40])
                .unwrap()
                .named("c"),
            Tensor::i32(vec![1, 1], vec![-7]).unwrap().named("d/e"),
            Tensor::u8(vec![2], vec![0, 255]).unwrap().named("f"),
            Tensor::from_bytes(vec![2], Dtype::Bool, vec![1, 0])
                .unwrap()
                .named("g"),
            Tensor::from_bytes(vec![1], Dtype::F16, 0x3c00u16.to_le_bytes().to_vec())
                .unwrap()
                .named("h"),
        ];
        let paths = write_npy_dir(&tensor::encode(&set), &dir).unwrap();
        assert_eq!(paths.len(), set.len());
        assert!(paths[3].ends_with("d_e.npy"), "{:?}", paths[3]);
        for (p, t) in paths.iter().zip(&set) {
            let back = read_file(p).unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(
                (back[0].dtype, &back[0].shape, &back[0].data),
                (t.dtype, &t.shape, &t.data)
            );
        }
        // An .npz built from those files reads back with its names.
        let npz = dir.join("x.npz");
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&npz).unwrap());
        for (p, name) in paths.iter().zip(["a", "b"]) {
            zw.start_file(
                format!("{name}.npy"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zw.write_all(&std::fs::read(p).unwrap()).unwrap();
        }
        zw.finish().unwrap();
        let back = read_file(&npz).unwrap();
        assert_eq!(
            back.iter()
                .map(|t| t.name.clone().unwrap())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(back[0].data, set[0].data);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(feature = "npy")]
    fn facts_are_the_header_and_a_file_short_or_long_of_its_data_is_refused() {
        let dir = temp("npy-facts");
        let t = Tensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let paths = write_npy_dir(&tensor::encode(std::slice::from_ref(&t)), &dir).unwrap();
        let facts = read_facts(&paths[0]).unwrap();
        assert_eq!(facts.len(), 1);
        assert_eq!(
            (facts[0].shape.clone(), facts[0].dtype),
            (vec![2, 3], Dtype::F32)
        );
        assert!(facts[0].data.is_empty(), "the data is not read");
        assert_eq!(read_file(&paths[0]).unwrap()[0].data, t.data);
        let bytes = std::fs::read(&paths[0]).unwrap();
        std::fs::write(&paths[0], &bytes[..bytes.len() - 1]).unwrap();
        let short = read_facts(&paths[0]).unwrap_err();
        assert!(
            short.contains("does not fill its shape") && short.contains("23 bytes"),
            "{short}"
        );
        let mut long = bytes.clone();
        long.push(0);
        std::fs::write(&paths[0], &long).unwrap();
        assert!(read_facts(&paths[0]).unwrap_err().contains("25 bytes"));
        std::fs::write(&paths[0], b"not a header").unwrap();
        assert!(read_facts(&paths[0])
            .unwrap_err()
            .contains("not a .npy file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(feature = "npy")]
    fn a_truncated_npy_or_a_bool_that_is_not_0_or_1_is_refused() {
        let dir = temp("npy-bad");
        let t = Tensor::from_bytes(vec![4], Dtype::Bool, vec![1, 0, 1, 1]).unwrap();
        let paths = write_npy_dir(&tensor::encode(&[t.named("b")]), &dir).unwrap();
        let bytes = std::fs::read(&paths[0]).unwrap();
        std::fs::write(&paths[0], &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_file(&paths[0])
            .unwrap_err()
            .contains("does not fill its shape"));
        assert!(read_file_encoded(&paths[0])
            .unwrap_err()
            .contains("does not fill its shape"));
        let mut two = bytes.clone();
        *two.last_mut().unwrap() = 2;
        std::fs::write(&paths[0], &two).unwrap();
        assert!(read_file(&paths[0]).unwrap_err().contains("not 0 or 1"));
        assert!(read_file_encoded(&paths[0])
            .unwrap_err()
            .contains("not 0 or 1"));
        std::fs::write(&paths[0], &bytes).unwrap();
        assert_eq!(read_file(&paths[0]).unwrap()[0].data, [1, 0, 1, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(feature = "npy")]
    fn an_npy_read_straight_into_its_encoding_is_the_encoding_of_its_tensor() {
        let dir = temp("npy-encoded");
        let f = Tensor::f32(vec![1, 3, 2], vec![0.5, -1.0, 2.25, 0.0, 7.0, 1e-3]).unwrap();
        let b = Tensor::from_bytes(vec![2, 2], Dtype::Bool, vec![1, 0, 0, 1]).unwrap();
        let i = Tensor::i64(vec![0], vec![]).unwrap();
        for t in [f.clone(), b, i] {
            let p = write_npy_dir(&tensor::encode(&[t]), &dir)
                .unwrap()
                .remove(0);
            let want = tensor::encode(&read_file(&p).unwrap());
            assert_eq!(read_file_encoded(&p).unwrap(), want);
        }
        // Big-endian data (numpy's `>f4`) is swapped element by element.
        let big = dir.join("big.npy");
        let head = "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 3, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + head.len() + 1) % 64;
        let hlen = u16::try_from(head.len() + pad + 1).unwrap();
        bytes.extend_from_slice(&hlen.to_le_bytes());
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend(std::iter::repeat_n(b' ', pad));
        bytes.push(b'\n');
        for x in [0.5f32, -1.0, 2.25, 0.0, 7.0, 1e-3] {
            bytes.extend_from_slice(&x.to_be_bytes());
        }
        std::fs::write(&big, &bytes).unwrap();
        assert_eq!(read_file_encoded(&big).unwrap(), tensor::encode(&[f]));
        // Other files go through read_file.
        let json = dir.join("t.json");
        std::fs::write(&json, r#"{"shape": [2], "i32": [5, 6]}"#).unwrap();
        let want = tensor::encode(&read_file(&json).unwrap());
        assert_eq!(read_file_encoded(&json).unwrap(), want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_and_json_are_refused_with_reasons() {
        let dir = temp("bad");
        let p = dir.join("x.npy");
        std::fs::write(&p, b"not numpy").unwrap();
        assert!(read_file(&p).unwrap_err().contains("not a .npy file"));
        let e = tensors_from_json(&json!({"shape": [2], "u8": [1, 300]})).unwrap_err();
        assert!(e.contains("not a u8"), "{e}");
        let e = tensors_from_json(&json!({"shape": [3], "i64": [1, 2]})).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let t =
            tensors_from_json(&json!([{"name": "ids", "shape": [1, 2], "i32": [5, 6]}])).unwrap();
        assert_eq!(
            (t[0].name.as_deref(), t[0].dtype),
            (Some("ids"), Dtype::I32)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prediction_covers_every_row() {
        let out = tensor::encode(&[Tensor::i64(vec![3], vec![4, 1, 9]).unwrap()]);
        assert_eq!(to_json(&out).unwrap().1, Some(json!([4, 1, 9])));
        let one = tensor::encode(&[Tensor::i64(vec![1], vec![4]).unwrap()]);
        assert_eq!(to_json(&one).unwrap().1, Some(json!(4)));
    }
}
