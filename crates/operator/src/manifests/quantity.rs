//! Just enough Kubernetes quantity arithmetic for quotas: scale `500m`,
//! `2`, `1.5` or `4Gi` by a whole number and keep the suffix.

/// `q` times `n`, or None when `q` is not a plain quantity.
pub fn times(q: &str, n: u32) -> Option<String> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scaled = value * f64::from(n);
    let text = if scaled.fract() == 0.0 {
        format!("{}", scaled as u64)
    } else {
        format!("{scaled}")
    };
    Some(format!("{text}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::times;

    #[test]
    fn scales_and_keeps_the_suffix() {
        assert_eq!(times("500m", 2).as_deref(), Some("1000m"));
        assert_eq!(times("2", 2).as_deref(), Some("4"));
        assert_eq!(times("1.5", 2).as_deref(), Some("3"));
        assert_eq!(times("1.25", 2).as_deref(), Some("2.5"));
        assert_eq!(times("4Gi", 3).as_deref(), Some("12Gi"));
        assert_eq!(times("Gi", 2), None);
    }
}
