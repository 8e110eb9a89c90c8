//! Summaries: min / median / max over repeats, percentiles over samples.

/// "min / median / max" of the values, with `decimals` digits.
pub fn spread(values: &[f64], decimals: usize) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.as_slice() {
        [] => "-".to_owned(),
        [only] => format!("{only:.decimals$}"),
        _ => format!(
            "{:.decimals$} / {:.decimals$} / {:.decimals$}",
            sorted[0],
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1]
        ),
    }
}

/// The value below which `fraction` of the samples fall (nearest rank).
pub fn percentile(samples: &[f64], fraction: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_min_median_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0], 1), "1.0 / 2.0 / 3.0");
        assert_eq!(spread(&[0.5], 2), "0.50");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), 50.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
    }
}
