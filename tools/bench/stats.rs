//! Medians, quantiles and spreads of repeated measurements.

use crate::chart::Figure;

/// The q-th quantile (nearest rank) of `values`, which need not be sorted; NaN when empty.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The median (the mean of the two middle values for an even count); NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 0 { (v[n / 2 - 1] + v[n / 2]) / 2.0 } else { v[n / 2] }
}

/// A figure over repeated runs: the median of the runs' values, and their min–max.
pub(crate) fn over_runs(per_run: &[f64]) -> Figure {
    let finite: Vec<f64> = per_run.iter().copied().filter(|v| v.is_finite()).collect();
    Figure {
        median: median(&finite),
        lo: finite.iter().copied().fold(f64::NAN, f64::min),
        hi: finite.iter().copied().fold(f64::NAN, f64::max),
    }
}

/// "1.23 (1.10–1.40)": a figure with its spread, `decimals` places.
pub(crate) fn show(f: &Figure, decimals: usize) -> String {
    if !f.median.is_finite() {
        return "–".into();
    }
    if f.lo == f.hi {
        return format!("{:.*}", decimals, f.median);
    }
    format!("{:.*} ({:.*}–{:.*})", decimals, f.median, decimals, f.lo, decimals, f.hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(median(&v), 3.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert_eq!(quantile(&v, 0.99), 5.0);
        assert_eq!(quantile(&v, 0.2), 1.0);
        assert!(median(&[]).is_nan());
        let f = over_runs(&[3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!((f.median, f.lo, f.hi), (2.0, 1.0, 3.0));
        assert_eq!(show(&f, 1), "2.0 (1.0–3.0)");
    }
}
