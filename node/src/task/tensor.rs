//! Typed tensors as `infer` task inputs and outputs, in a small binary format
//! that a microcontroller can write by hand:
//!
//! ```text
//! set    := count: u8, tensor × count
//! tensor := tag: u8, [name_len: u8, name: UTF-8 × name_len if tag & 0x80],
//!           rank: u8 (≤ 8), dims: u32 LE × rank, data: element LE × product(dims)
//! dtype  := tag & 0x7f: 1 f32, 2 i64, 3 f64, 4 i32, 5 u8, 6 bool (0 or 1), 7 f16
//! ```
//!
//! Element data stays as little-endian bytes (no copy per element to carry a
//! set); typed views convert on demand. Parsing checks every length with
//! checked arithmetic and bounds allocation by the bytes present; nothing
//! panics. A set without names (tag < 0x80) is the format of p2pa 0.1.

use std::fmt;

/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;
/// Tag bit: a name follows the tag.
const NAMED: u8 = 0x80;

/// An element type, as ONNX models take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    F32 = 1,
    I64 = 2,
    F64 = 3,
    I32 = 4,
    U8 = 5,
    Bool = 6,
    F16 = 7,
}

impl Dtype {
    /// Every dtype, by tag.
    pub const ALL: [Dtype; 7] = [
        Self::F32,
        Self::I64,
        Self::F64,
        Self::I32,
        Self::U8,
        Self::Bool,
        Self::F16,
    ];

    /// Whether `data` holds only values of this type: every byte pattern
    /// does, but a bool's bytes must be 0 or 1.
    pub fn holds(self, data: &[u8]) -> bool {
        self != Self::Bool || data.iter().all(|b| *b <= 1)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::I64 | Self::F64 => 8,
            Self::U8 | Self::Bool => 1,
            Self::F16 => 2,
        }
    }

    /// Its name as numpy spells it (`f32` is `float32`'s short form).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::I64 => "i64",
            Self::F64 => "f64",
            Self::I32 => "i32",
            Self::U8 => "u8",
            Self::Bool => "bool",
            Self::F16 => "f16",
        }
    }

    /// The dtype named `name` (as [`Dtype::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| *d as u8 == tag)
    }

    /// Whether values compare exactly (integers, bools) or within a tolerance.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64 | Self::F16)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shaped, typed tensor, optionally named after the model input it feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The model input or output it belongs to (`None`: by position).
    pub name: Option<String>,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// `product(shape)` elements, little-endian.
    pub data: Vec<u8>,
}

/// Elements in `shape`, if it does not overflow.
pub fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d))
}

macro_rules! typed {
    ($new:ident, $view:ident, $t:ty, $dt:expr) => {
        /// A tensor of these values; `None` if the shape does not match their count.
        pub fn $new(shape: Vec<usize>, values: Vec<$t>) -> Option<Self> {
            (elements(&shape) == Some(values.len())).then(|| Self {
                name: None,
                shape,
                dtype: $dt,
                data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            })
        }

        /// Its values, if it holds this type.
        pub fn $view(&self) -> Option<Vec<$t>> {
            const N: usize = core::mem::size_of::<$t>();
            (self.dtype == $dt).then(|| {
                self.data
                    .chunks_exact(N)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; N])))
                    .collect()
            })
        }
    };
}

impl Tensor {
    typed!(f32, f32s, f32, Dtype::F32);
    typed!(i64, i64s, i64, Dtype::I64);
    typed!(f64, f64s, f64, Dtype::F64);
    typed!(i32, i32s, i32, Dtype::I32);
    typed!(u8, u8s, u8, Dtype::U8);

    /// A tensor from raw little-endian bytes; `None` if their length does not
    /// fill the shape, or a bool is neither 0 nor 1.
    pub fn from_bytes(shape: Vec<usize>, dtype: Dtype, data: Vec<u8>) -> Option<Self> {
        let fits = elements(&shape).and_then(|n| n.checked_mul(dtype.size())) == Some(data.len());
        (fits && dtype.holds(&data)).then_some(Self {
            name: None,
            shape,
            dtype,
            data,
        })
    }

    /// The same tensor, named.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Its element type's name.
    pub fn dtype_name(&self) -> &'static str {
        self.dtype.name()
    }

    /// Every element widened to f64 (for display and comparison).
    pub fn to_f64(&self) -> Vec<f64> {
        let n = self.dtype.size();
        self.data
            .chunks_exact(n)
            .map(|c| match self.dtype {
                Dtype::F32 => f64::from(f32::from_le_bytes(arr(c))),
                Dtype::F64 => f64::from_le_bytes(arr(c)),
                Dtype::I64 => i64::from_le_bytes(arr(c)) as f64,
                Dtype::I32 => f64::from(i32::from_le_bytes(arr(c))),
                Dtype::U8 | Dtype::Bool => f64::from(c.first().copied().unwrap_or(0)),
                Dtype::F16 => f16_to_f64(u16::from_le_bytes(arr(c))),
            })
            .collect()
    }
}

fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().unwrap_or([0; N])
}

/// IEEE 754 half precision to f64 (exact: every f16 is an f64).
pub fn f16_to_f64(h: u16) -> f64 {
    half::f16::from_bits(h).to_f64()
}

/// Why a tensor set could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorError {
    Truncated,
    UnknownDtype(u8),
    RankTooLarge(usize),
    TooManyElements,
    TrailingBytes(usize),
    ShapeMismatch,
    /// A bool element other than 0 or 1.
    BadBool,
    /// A name that is not UTF-8.
    BadName,
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("tensor data is truncated"),
            Self::UnknownDtype(d) => write!(
                f,
                "unknown tensor element type {d} (1 f32, 2 i64, 3 f64, 4 i32, 5 u8, 6 bool, 7 f16)"
            ),
            Self::RankTooLarge(r) => write!(f, "tensor rank {r} exceeds {MAX_RANK}"),
            Self::TooManyElements => f.write_str("tensor shape overflows"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the last tensor"),
            Self::ShapeMismatch => f.write_str("tensor data does not fill its shape"),
            Self::BadBool => f.write_str("a bool tensor holds a byte other than 0 or 1"),
            Self::BadName => f.write_str("a tensor name is not UTF-8"),
        }
    }
}

impl std::error::Error for TensorError {}

/// Bytes [`encode`] writes for `tensors`.
pub fn encoded_len(tensors: &[Tensor]) -> usize {
    tensors.iter().fold(1usize, |n, t| {
        let name = t
            .name
            .as_ref()
            .map_or(0, |s| s.len().min(255).saturating_add(1));
        n.saturating_add(2)
            .saturating_add(name)
            .saturating_add(t.shape.len().saturating_mul(4))
            .saturating_add(t.data.len())
    })
}

/// Encodes a tensor set (at most 255 tensors, names cut at 255 bytes).
pub fn encode(tensors: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(tensors));
    out.push(u8::try_from(tensors.len()).unwrap_or(u8::MAX));
    for t in tensors.iter().take(usize::from(u8::MAX)) {
        push_head(&mut out, t.name.as_deref(), t.dtype, &t.shape);
        out.extend_from_slice(&t.data);
    }
    out
}

/// The encoding of a set of one unnamed tensor up to its data, with room
/// for `data_len` bytes more: a caller that reads the data straight after
/// it (a `.npy` file's bytes) spares [`encode`]'s copy of them. The data
/// appended must be `product(shape)` elements, little-endian, as in
/// [`Tensor::data`].
pub fn single_head(dtype: Dtype, shape: &[usize], data_len: usize) -> Vec<u8> {
    let head = 3usize.saturating_add(shape.len().saturating_mul(4));
    let mut out = Vec::with_capacity(head.saturating_add(data_len));
    out.push(1);
    push_head(&mut out, None, dtype, shape);
    out
}

/// One tensor's header: its tag (and name), its dimensions.
fn push_head(out: &mut Vec<u8>, name: Option<&str>, dtype: Dtype, shape: &[usize]) {
    let tag = dtype as u8;
    match name {
        Some(name) => {
            let mut end = name.len().min(255);
            while !name.is_char_boundary(end) {
                end = end.saturating_sub(1);
            }
            let cut = name.get(..end).unwrap_or("");
            out.push(tag | NAMED);
            out.push(u8::try_from(cut.len()).unwrap_or(0));
            out.extend_from_slice(cut.as_bytes());
        }
        None => out.push(tag),
    }
    out.push(u8::try_from(shape.len()).unwrap_or(u8::MAX));
    for d in shape {
        out.extend_from_slice(&u32::try_from(*d).unwrap_or(u32::MAX).to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TensorError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(TensorError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, TensorError> {
        self.take(1).map(|b| b.first().copied().unwrap_or(0))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TensorError> {
        self.take(N)?.try_into().map_err(|_| TensorError::Truncated)
    }
}

/// One tensor of an encoded set, borrowed from the set's bytes: what a
/// reader that only looks at a tensor (writing it to a file) needs, without
/// copying its data out first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef<'a> {
    pub name: Option<&'a str>,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// `product(shape)` elements, little-endian.
    pub data: &'a [u8],
}

impl TensorRef<'_> {
    /// The tensor, its name and data copied (not `ToOwned::to_owned`,
    /// which would give another borrowed `TensorRef`).
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            name: self.name.map(str::to_owned),
            shape: self.shape.clone(),
            dtype: self.dtype,
            data: self.data.to_vec(),
        }
    }
}

/// Decodes and checks a tensor set, each tensor borrowed from `bytes`.
pub fn decode_refs(bytes: &[u8]) -> Result<Vec<TensorRef<'_>>, TensorError> {
    let mut r = Reader(bytes);
    let count = r.u8()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let tag = r.u8()?;
        let dtype = Dtype::from_tag(tag & !NAMED).ok_or(TensorError::UnknownDtype(tag))?;
        let name = if tag & NAMED != 0 {
            let len = usize::from(r.u8()?);
            let raw = r.take(len)?;
            Some(std::str::from_utf8(raw).map_err(|_| TensorError::BadName)?)
        } else {
            None
        };
        let rank = usize::from(r.u8()?);
        if rank > MAX_RANK {
            return Err(TensorError::RankTooLarge(rank));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(
                usize::try_from(u32::from_le_bytes(r.array()?))
                    .map_err(|_| TensorError::TooManyElements)?,
            );
        }
        let len = elements(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or(TensorError::TooManyElements)?;
        let data = r.take(len)?;
        if !dtype.holds(data) {
            return Err(TensorError::BadBool);
        }
        out.push(TensorRef {
            name,
            shape,
            dtype,
            data,
        });
    }
    if !r.0.is_empty() {
        return Err(TensorError::TrailingBytes(r.0.len()));
    }
    Ok(out)
}

/// Decodes and checks a tensor set, each tensor copied out of `bytes`
/// ([`decode_refs`] borrows them).
pub fn decode(bytes: &[u8]) -> Result<Vec<Tensor>, TensorError> {
    Ok(decode_refs(bytes)?
        .iter()
        .map(TensorRef::to_tensor)
        .collect())
}

/// Relative tolerance when comparing float outputs of two workers (with an
/// absolute floor of the same size near zero): different CPUs (SIMD widths,
/// FMA) and runtimes round differently; integers and bools compare exactly.
pub const F32_TOLERANCE: f64 = 1e-4;

/// Whether two floats agree within [`F32_TOLERANCE`], relative to the larger.
pub fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= F32_TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// Whether two tensors agree: same dtype and shape, integers exactly, floats
/// within [`F32_TOLERANCE`].
pub fn tensors_agree(p: &Tensor, q: &Tensor) -> bool {
    p.shape == q.shape
        && p.dtype == q.dtype
        && (p.data == q.data
            || (p.dtype.is_float() && p.to_f64().iter().zip(q.to_f64()).all(|(s, t)| close(*s, t))))
}

/// Whether two encoded outputs agree (see [`tensors_agree`]). Bytes that are
/// not tensor sets must be identical.
pub fn outputs_agree(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (Ok(x), Ok(y)) = (decode(a), decode(b)) else {
        return false;
    };
    x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| tensors_agree(p, q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_agreement() {
        let set = vec![
            Tensor::f32(vec![1, 3], vec![0.5, -1.0, 2.25]).unwrap(),
            Tensor::i64(vec![1], vec![7]).unwrap().named("label"),
            Tensor::from_bytes(vec![2], Dtype::Bool, vec![0, 1]).unwrap(),
            Tensor::from_bytes(vec![1], Dtype::F16, 0x3c00u16.to_le_bytes().to_vec()).unwrap(),
        ];
        let bytes = encode(&set);
        assert_eq!(bytes.len(), encoded_len(&set));
        assert_eq!(decode(&bytes).unwrap(), set);
        // The borrowed form: the same tensors, their data inside `bytes`.
        let refs = decode_refs(&bytes).unwrap();
        assert_eq!(
            refs.iter().map(TensorRef::to_tensor).collect::<Vec<_>>(),
            set
        );
        assert_eq!(refs[1].name, Some("label"));
        let span = bytes.as_ptr_range();
        assert!(refs
            .iter()
            .all(|t| span.contains(&t.data.as_ptr()) || t.data.is_empty()));
        assert_eq!(set[3].to_f64(), vec![1.0], "f16 1.0");
        let mut close = set.clone();
        close[0] = Tensor::f32(vec![1, 3], vec![0.50001, -1.0, 2.25]).unwrap();
        assert!(outputs_agree(&bytes, &encode(&close)));
        let mut far = set.clone();
        far[0] = Tensor::f32(vec![1, 3], vec![0.6, -1.0, 2.25]).unwrap();
        assert!(!outputs_agree(&bytes, &encode(&far)));
        let mut other_label = set.clone();
        other_label[1] = Tensor::i64(vec![1], vec![8]).unwrap();
        assert!(!outputs_agree(&bytes, &encode(&other_label)));
        assert!(Tensor::f32(vec![2, 2], vec![1.0]).is_none());
        assert!(Tensor::from_bytes(vec![1], Dtype::Bool, vec![2]).is_none());
        // Relative: large values may differ by 1e-4 of themselves.
        assert!(super::close(1000.0, 1000.05) && !super::close(1000.0, 1000.2));
    }

    #[test]
    fn a_single_head_and_its_data_are_the_encoding() {
        for t in [
            Tensor::f32(vec![1, 3, 2], vec![0.5, -1.0, 2.25, 0.0, 7.0, 1e-3]).unwrap(),
            Tensor::i64(vec![], vec![42]).unwrap(),
            Tensor::from_bytes(vec![0, 4], Dtype::U8, vec![]).unwrap(),
        ] {
            let mut bytes = single_head(t.dtype, &t.shape, t.data.len());
            bytes.extend_from_slice(&t.data);
            assert_eq!(bytes, encode(std::slice::from_ref(&t)));
            assert_eq!(decode(&bytes).unwrap(), vec![t]);
        }
    }

    #[test]
    fn the_unnamed_format_of_0_1_still_reads() {
        // count 1, f32, rank 1, dim 1, 1.0f32
        let old = [1u8, 1, 1, 1, 0, 0, 0, 0, 0, 0x80, 0x3f];
        assert_eq!(
            decode(&old).unwrap(),
            vec![Tensor::f32(vec![1], vec![1.0]).unwrap()]
        );
    }

    #[test]
    fn hostile_inputs_are_refused() {
        assert_eq!(decode(&[]), Err(TensorError::Truncated));
        assert_eq!(decode(&[1, 9, 0]), Err(TensorError::UnknownDtype(9)));
        assert_eq!(decode(&[1, 1, 9]), Err(TensorError::RankTooLarge(9)));
        let mut huge = vec![1, 1, 2];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decode(&huge).is_err(),
            "no allocation beyond the bytes present"
        );
        let mut extra = encode(&[Tensor::i64(vec![1], vec![1]).unwrap()]);
        extra.push(0);
        assert_eq!(decode(&extra), Err(TensorError::TrailingBytes(1)));
        assert_eq!(decode(&[1, 6, 1, 1, 0, 0, 0, 5]), Err(TensorError::BadBool));
        assert_eq!(decode_refs(&extra), Err(TensorError::TrailingBytes(1)));
        assert_eq!(
            decode_refs(&[1, 6, 1, 1, 0, 0, 0, 5]),
            Err(TensorError::BadBool)
        );
        assert_eq!(decode(&[1, 0x81, 1, 0xff]), Err(TensorError::BadName));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(set) = decode(&bytes) {
                prop_assert_eq!(encode(&set), bytes);
            }
        }
    }
}
