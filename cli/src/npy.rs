//! `.npy` and `.npz` tensor files (numpy's formats), read and written with
//! npyz and zip: the `npy` feature, on by default (off in the board build).

use std::io::{Read, Seek, Write};

use npyz::WriterBuilder;
use p2pa_node::task::tensor::{self, Dtype, Tensor, TensorRef};

fn dtype_of(descr: &str) -> Option<Dtype> {
    // numpy's type strings: byte order (<, >, | or =), kind, size.
    let kind = descr.get(1..)?;
    Some(match kind {
        "f4" => Dtype::F32,
        "f8" => Dtype::F64,
        "f2" => Dtype::F16,
        "i8" => Dtype::I64,
        "i4" => Dtype::I32,
        "u1" => Dtype::U8,
        "b1" => Dtype::Bool,
        _ => return None,
    })
}

/// A `.npy` file's tensor without its data (`data` empty): its header,
/// checked as [`read_npy`] checks it, and the file's length checked against
/// the data the header promises. What a batch checks every line against the
/// model with before sending anything, without reading megabytes twice.
pub fn npy_facts(path: &std::path::Path, what: &str) -> Result<Tensor, String> {
    let io = |e: std::io::Error| format!("cannot read {what}: {e}");
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{what}: not a .npy file ({e})"))?;
    let Header {
        shape, dtype, len, ..
    } = header(&npy, what)?;
    let len = u64::try_from(len).map_err(|_| format!("{what}: shape too large"))?;
    let at = npy.into_inner().stream_position().map_err(io)?;
    if size.checked_sub(at) != Some(len) {
        return Err(format!(
            "{what}: data does not fill its shape ({} bytes of data, the header's shape needs {len})",
            size.saturating_sub(at)
        ));
    }
    Ok(Tensor {
        name: None,
        shape,
        dtype,
        data: Vec::new(),
    })
}

/// What a `.npy` header says.
struct Header {
    shape: Vec<usize>,
    dtype: Dtype,
    /// Bytes of data the shape and dtype need.
    len: usize,
    /// Whether the data is little-endian (the tensor format's layout).
    little: bool,
}

fn header<R: Read>(npy: &npyz::NpyFile<R>, what: &str) -> Result<Header, String> {
    let descr = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => other.descr(),
    };
    let dtype = dtype_of(&descr).ok_or_else(|| {
        format!("{what}: dtype {descr} is not supported (f32, f64, f16, i64, i32, u8, bool)")
    })?;
    if npy.order() == npyz::Order::Fortran {
        return Err(format!(
            "{what}: Fortran order; save it with numpy.ascontiguousarray first"
        ));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|d| usize::try_from(*d).map_err(|_| format!("{what}: shape too large")))
        .collect::<Result<_, _>>()?;
    let len = p2pa_node::task::tensor::elements(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| format!("{what}: shape too large"))?;
    let little = descr.starts_with('<')
        || descr.starts_with('|')
        || (descr.starts_with('=') && cfg!(target_endian = "little"));
    Ok(Header {
        shape,
        dtype,
        len,
        little,
    })
}

/// The most a header's shape alone reserves for the data: the buffer grows
/// as the data arrives, so a forged shape allocates little.
const RESERVE_AT_MOST: usize = 1 << 26;

pub fn read_npy(r: impl Read, what: &str) -> Result<Tensor, String> {
    let npy = npyz::NpyFile::new(r).map_err(|e| format!("{what}: not a .npy file ({e})"))?;
    let h = header(&npy, what)?;
    if h.little {
        let data = read_data(
            npy,
            &h,
            Vec::with_capacity(h.len.min(RESERVE_AT_MOST)),
            what,
        )?;
        return Tensor::from_bytes(h.shape, h.dtype, data).ok_or_else(|| unfilled(what));
    }
    read_swapped(npy, h, what)
}

/// A `.npy` file as the one-tensor set an `infer` task takes (what
/// `tensor::encode` makes of [`read_npy`]'s tensor), its data read straight
/// after the set's header: a copy of a megabyte input, and a buffer for it,
/// fewer per line of a batch.
pub fn read_npy_encoded(r: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let npy = npyz::NpyFile::new(r).map_err(|e| format!("{what}: not a .npy file ({e})"))?;
    let h = header(&npy, what)?;
    if !h.little {
        return read_swapped(npy, h, what).map(|t| tensor::encode(&[t]));
    }
    let head = tensor::single_head(h.dtype, &h.shape, h.len.min(RESERVE_AT_MOST));
    let at = head.len();
    let set = read_data(npy, &h, head, what)?;
    let data = set.get(at..).unwrap_or_default();
    if data.len() != h.len || !h.dtype.holds(data) {
        return Err(unfilled(what));
    }
    Ok(set)
}

fn unfilled(what: &str) -> String {
    format!("{what}: data does not fill its shape (or a bool is not 0 or 1)")
}

/// Appends a little-endian file's data (what numpy writes on every machine
/// p2pa runs on: the tensor format's layout already, taken as it is, not
/// element by element) to `out`, at most the shape's bytes; the caller
/// checks that it fills the shape.
fn read_data<R: Read>(
    npy: npyz::NpyFile<R>,
    h: &Header,
    mut out: Vec<u8>,
    what: &str,
) -> Result<Vec<u8>, String> {
    npy.into_inner()
        .take(u64::try_from(h.len).unwrap_or(u64::MAX))
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(out)
}

/// A big-endian file's data, element by element.
fn read_swapped<R: Read>(
    npy: npyz::NpyFile<R>,
    Header { shape, dtype, .. }: Header,
    what: &str,
) -> Result<Tensor, String> {
    let io = |e: std::io::Error| format!("{what}: {e}");
    let t = match dtype {
        Dtype::F32 => Tensor::f32(shape, npy.into_vec().map_err(io)?),
        Dtype::F64 => Tensor::f64(shape, npy.into_vec().map_err(io)?),
        Dtype::I64 => Tensor::i64(shape, npy.into_vec().map_err(io)?),
        Dtype::I32 => Tensor::i32(shape, npy.into_vec().map_err(io)?),
        Dtype::U8 => Tensor::u8(shape, npy.into_vec().map_err(io)?),
        Dtype::Bool => {
            let v: Vec<bool> = npy.into_vec().map_err(io)?;
            Tensor::from_bytes(shape, Dtype::Bool, v.into_iter().map(u8::from).collect())
        }
        _ => {
            let v: Vec<half::f16> = npy.into_vec().map_err(io)?;
            let bytes = v.iter().flat_map(|h| h.to_bits().to_le_bytes()).collect();
            Tensor::from_bytes(shape, Dtype::F16, bytes)
        }
    };
    t.ok_or_else(|| format!("{what}: data does not fill its shape"))
}

pub fn read_npz(r: impl Read + Seek, what: &str) -> Result<Vec<Tensor>, String> {
    let mut zip = zip::ZipArchive::new(r).map_err(|e| format!("{what}: not a .npz file ({e})"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| format!("{what}: {e}"))?;
        let name = entry.name().trim_end_matches(".npy").to_owned();
        let t = read_npy(entry, &format!("{what}:{name}"))?;
        out.push(t.named(name));
    }
    // numpy.savez(f, a, b) names them arr_0, arr_1, …: those go by position.
    if out
        .iter()
        .all(|t| t.name.as_deref().is_some_and(|n| n.starts_with("arr_")))
    {
        out.sort_by_key(|t| {
            t.name
                .as_deref()
                .and_then(|n| n.get(4..)?.parse::<usize>().ok())
        });
        out.iter_mut().for_each(|t| t.name = None);
    }
    Ok(out)
}

/// Writes `t` as `.npy`: npyz writes the header, and the data goes out as it
/// is (the tensor format's layout, little-endian and C order, is numpy's),
/// not element by element (that was a fifth of a requester's CPU on
/// 400 KB outputs with `--out-dir`).
pub fn write_npy(t: &TensorRef<'_>, w: impl Write) -> std::io::Result<()> {
    let descr = match t.dtype {
        Dtype::F32 => "<f4",
        Dtype::F64 => "<f8",
        Dtype::F16 => "<f2",
        Dtype::I64 => "<i8",
        Dtype::I32 => "<i4",
        Dtype::U8 => "|u1",
        Dtype::Bool => "|b1",
        other => {
            return Err(std::io::Error::other(format!(
                "{other:?} has no .npy form here"
            )))
        }
    };
    let ts: npyz::TypeStr = descr.parse().map_err(std::io::Error::other)?;
    let shape: Vec<u64> = t.shape.iter().map(|d| *d as u64).collect();
    let mut w = npyz::WriteOptions::new_header_only()
        .dtype(npyz::DType::new_scalar(ts))
        .shape(&shape)
        .writer(w)
        .write_header_only()?;
    w.write_all(t.data)?;
    w.flush()
}
