//! Numbers for people: what the demo's summary and the benchmarks report
//! about a run. Nothing here is on a protocol path.

/// The `p`-quantile (0.0 to 1.0) of `sorted` (ascending), nearest rank;
/// 0.0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(idx.min(last)).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.99), 5.0);
        assert_eq!(percentile(&v, 2.0), 5.0, "clamped");
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
