//! Typed tensors as `infer` task inputs and outputs, in a small binary format
//! that a microcontroller can write by hand:
//!
//! ```text
//! set    := count: u8, tensor × count
//! tensor := dtype: u8 (1 = f32, 2 = i64), rank: u8 (≤ 8),
//!           dims: u32 LE × rank, data: element LE × product(dims)
//! ```
//!
//! Parsing checks every length with checked arithmetic; nothing panics.

use std::fmt;

/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;
/// Most elements one tensor may hold (bounded by the frame size anyway).
pub const MAX_ELEMENTS: usize = 1 << 20;

/// Element data of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A shaped, typed tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    /// An f32 tensor; `None` if the shape does not match the data length.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)) == Some(data.len())).then_some(
            Self {
                shape,
                data: Data::F32(data),
            },
        )
    }

    /// An i64 tensor; `None` if the shape does not match the data length.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Option<Self> {
        (shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)) == Some(data.len())).then_some(
            Self {
                shape,
                data: Data::I64(data),
            },
        )
    }

    /// The element type's name.
    pub fn dtype(&self) -> &'static str {
        match self.data {
            Data::F32(_) => "f32",
            Data::I64(_) => "i64",
        }
    }
}

/// Why a tensor set could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorError {
    Truncated,
    UnknownDtype(u8),
    RankTooLarge(usize),
    TooManyElements,
    TrailingBytes(usize),
    ShapeMismatch,
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("tensor data is truncated"),
            Self::UnknownDtype(d) => {
                write!(f, "unknown tensor element type {d} (1 = f32, 2 = i64)")
            }
            Self::RankTooLarge(r) => write!(f, "tensor rank {r} exceeds {MAX_RANK}"),
            Self::TooManyElements => write!(f, "tensor has more than {MAX_ELEMENTS} elements"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the last tensor"),
            Self::ShapeMismatch => f.write_str("tensor data does not fill its shape"),
        }
    }
}

impl std::error::Error for TensorError {}

/// Encodes a tensor set.
pub fn encode(tensors: &[Tensor]) -> Vec<u8> {
    let mut out = vec![u8::try_from(tensors.len()).unwrap_or(u8::MAX)];
    for t in tensors.iter().take(usize::from(u8::MAX)) {
        out.push(match t.data {
            Data::F32(_) => 1,
            Data::I64(_) => 2,
        });
        out.push(u8::try_from(t.shape.len()).unwrap_or(u8::MAX));
        for d in &t.shape {
            out.extend_from_slice(&u32::try_from(*d).unwrap_or(u32::MAX).to_le_bytes());
        }
        match &t.data {
            Data::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
    out
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

/// Decodes a tensor set.
pub fn decode(bytes: &[u8]) -> Result<Vec<Tensor>, TensorError> {
    let mut r = Reader(bytes);
    let count = r.u8()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let dtype = r.u8()?;
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
        let n = shape
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .filter(|n| *n <= MAX_ELEMENTS)
            .ok_or(TensorError::TooManyElements)?;
        let data = match dtype {
            1 => {
                let raw = r.take(n.checked_mul(4).ok_or(TensorError::TooManyElements)?)?;
                Data::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                        .collect(),
                )
            }
            2 => {
                let raw = r.take(n.checked_mul(8).ok_or(TensorError::TooManyElements)?)?;
                Data::I64(
                    raw.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                )
            }
            d => return Err(TensorError::UnknownDtype(d)),
        };
        out.push(Tensor { shape, data });
    }
    if !r.0.is_empty() {
        return Err(TensorError::TrailingBytes(r.0.len()));
    }
    Ok(out)
}

/// Absolute tolerance when comparing f32 outputs of two workers: different
/// CPUs (SIMD widths, FMA) may round differently; class labels compare exactly.
pub const F32_TOLERANCE: f32 = 1e-4;

/// Whether two encoded outputs agree: i64 exactly, f32 within [`F32_TOLERANCE`].
/// Bytes that are not tensor sets must be identical.
pub fn outputs_agree(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (Ok(x), Ok(y)) = (decode(a), decode(b)) else {
        return false;
    };
    x.len() == y.len()
        && x.iter().zip(&y).all(|(p, q)| {
            p.shape == q.shape
                && match (&p.data, &q.data) {
                    (Data::I64(u), Data::I64(v)) => u == v,
                    (Data::F32(u), Data::F32(v)) => {
                        u.iter().zip(v).all(|(s, t)| (s - t).abs() <= F32_TOLERANCE)
                    }
                    _ => false,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_agreement() {
        let set = vec![
            Tensor::f32(vec![1, 3], vec![0.5, -1.0, 2.25]).unwrap(),
            Tensor::i64(vec![1], vec![7]).unwrap(),
        ];
        let bytes = encode(&set);
        assert_eq!(decode(&bytes).unwrap(), set);
        let mut close = set.clone();
        close[0].data = Data::F32(vec![0.50001, -1.0, 2.25]);
        assert!(outputs_agree(&bytes, &encode(&close)));
        let mut other_label = set.clone();
        other_label[1].data = Data::I64(vec![8]);
        assert!(!outputs_agree(&bytes, &encode(&other_label)));
        assert!(Tensor::f32(vec![2, 2], vec![1.0]).is_none());
    }

    #[test]
    fn hostile_inputs_are_refused() {
        assert_eq!(decode(&[]), Err(TensorError::Truncated));
        assert_eq!(decode(&[1, 9, 0]), Err(TensorError::UnknownDtype(9)));
        assert_eq!(decode(&[1, 1, 9]), Err(TensorError::RankTooLarge(9)));
        let mut huge = vec![1, 1, 2];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(TensorError::TooManyElements));
        let mut extra = encode(&[Tensor::i64(vec![1], vec![1]).unwrap()]);
        extra.push(0);
        assert_eq!(decode(&extra), Err(TensorError::TrailingBytes(1)));
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
