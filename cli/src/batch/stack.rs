//! `batch --batch-size B`: same-shape inputs stacked along axis 0 into one
//! task, and the task's outputs split back per line. Small inputs then stop
//! paying a round trip and a model launch each. Pure functions over tensor
//! sets; which lines go together and what happens when a model's outputs do
//! not split is `batch`'s business.

use p2pa_node::task::tensor::{Dtype, Tensor};

/// What must match for two input sets to stack: names, dtypes and shapes.
type Signature = Vec<(Option<String>, Dtype, Vec<usize>)>;

/// The set's signature, and the rows it adds along axis 0 (every tensor
/// must have the same first dimension); `None` for a set that cannot stack
/// (a scalar, or tensors with different first dimensions).
pub fn rows_of(set: &[Tensor]) -> Option<(Signature, usize)> {
    let rows = *set.first()?.shape.first()?;
    if rows == 0 || set.iter().any(|t| t.shape.first() != Some(&rows)) {
        return None;
    }
    let sig = set
        .iter()
        .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
        .collect();
    Some((sig, rows))
}

/// The sets stacked along axis 0: each tensor's data concatenated (axis 0
/// is the outermost in row-major order). All sets must share a signature.
pub fn stack<S: AsRef<[Tensor]>>(sets: &[S]) -> Option<Vec<Tensor>> {
    let (sig, _) = rows_of(sets.first()?.as_ref())?;
    let mut total = 0usize;
    for s in sets {
        let (other, rows) = rows_of(s.as_ref())?;
        if other != sig {
            return None;
        }
        total = total.checked_add(rows)?;
    }
    sig.iter()
        .enumerate()
        .map(|(i, (name, dtype, shape))| {
            let mut data = Vec::new();
            for s in sets {
                data.extend_from_slice(&s.as_ref().get(i)?.data);
            }
            let mut shape = shape.clone();
            *shape.first_mut()? = total;
            let t = Tensor::from_bytes(shape, *dtype, data)?;
            Some(match name {
                Some(n) => t.named(n.clone()),
                None => t,
            })
        })
        .collect()
}

/// The outputs of a stacked task split back: one set per input, `rows[k]`
/// rows each. `Err` names the output whose first dimension is not the
/// stacked rows (a model whose outputs do not follow its batch axis).
pub fn split(outputs: &[Tensor], rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    let total = rows.iter().try_fold(0usize, |a, r| a.checked_add(*r));
    let mut sets: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::new()).collect();
    for t in outputs {
        let name = t.name.as_deref().unwrap_or("?");
        if t.shape.first().copied() != total {
            return Err(format!(
                "output {name:?} has shape {:?}, not {} rows along axis 0",
                t.shape,
                total.unwrap_or(0)
            ));
        }
        let per_row = t
            .data
            .len()
            .checked_div(total.unwrap_or(0))
            .ok_or_else(|| format!("output {name:?} is empty"))?;
        let mut at = 0usize;
        for (set, r) in sets.iter_mut().zip(rows) {
            let len = per_row.saturating_mul(*r);
            let end = at.saturating_add(len);
            let data = t.data.get(at..end).ok_or("output shorter than its shape")?;
            at = end;
            let mut shape = t.shape.clone();
            if let Some(d) = shape.first_mut() {
                *d = *r;
            }
            let part = Tensor::from_bytes(shape, t.dtype, data.to_vec())
                .ok_or("output data does not fit its shape")?;
            set.push(match &t.name {
                Some(n) => part.named(n.clone()),
                None => part,
            });
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::f32(shape, v).unwrap().named(name)
    }

    #[test]
    fn stacked_then_split_gives_each_line_its_own_rows_back() {
        let a = vec![t("x", vec![1, 2], vec![1.0, 2.0])];
        let b = vec![t("x", vec![1, 2], vec![3.0, 4.0])];
        let s = stack(&[a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!(s[0].shape, vec![3, 2]);
        assert_eq!(s[0].f32s().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0]);
        let back = split(&s, &[1, 1, 1]).unwrap();
        assert_eq!(back, vec![a.clone(), b, a.clone()]);
        let two = vec![t("x", vec![2, 2], vec![0.0; 4])];
        assert!(stack(&[a, two]).is_none(), "same shapes only");
        // Another shape (past axis 0), a scalar, or mixed first dims: no stack.
        let c = vec![t("x", vec![1, 3], vec![0.0; 3])];
        assert!(stack(&[s.clone(), c]).is_none());
        let scalar = vec![t("sr", vec![], vec![16000.0])];
        assert!(rows_of(&scalar).is_none());
        let mixed = vec![
            t("x", vec![1, 2], vec![0.0; 2]),
            t("y", vec![2], vec![0.0; 2]),
        ];
        assert!(rows_of(&mixed).is_none());
        // An output that does not follow the batch axis is named.
        let pooled = vec![t("score", vec![1], vec![0.5])];
        let e = split(&pooled, &[1, 1, 1]).unwrap_err();
        assert!(e.contains("\"score\"") && e.contains("3 rows"), "{e}");
    }
}
