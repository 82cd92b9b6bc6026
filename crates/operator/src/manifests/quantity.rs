//! Kubernetes quantities as the API server writes them back.
//!
//! The API server stores quantities in canonical form (`1000m` becomes
//! `1`, `1024Mi` becomes `1Gi`, `0.5` becomes `500m`). Emitting the same
//! form is what lets a reconcile see "nothing changed" instead of
//! re-applying forever, so every quantity we build goes through here.

const BINARY: [(&str, u128); 6] = [
    ("Pi", 1 << 50),
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
    ("", 1),
];
const DECIMAL: [(&str, u128); 6] = [
    ("P", 1_000_000_000_000_000),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("k", 1_000),
    ("", 1),
];

/// (amount in thousandths of the unit, binary suffix?) or None.
fn parse(q: &str) -> Option<(u128, bool)> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let milli = int.parse::<u128>().ok()? * 1000 + format!("{frac:0<3}").parse::<u128>().ok()?;
    if suffix == "m" {
        return milli.is_multiple_of(1000).then_some((milli / 1000, false));
    }
    if let Some((_, f)) = BINARY.iter().find(|(s, _)| !s.is_empty() && *s == suffix) {
        return Some((milli * f, true));
    }
    let (_, f) = DECIMAL.iter().find(|(s, _)| *s == suffix)?;
    Some((milli * f, false))
}

fn format(milli: u128, binary: bool) -> String {
    if milli == 0 {
        return "0".into();
    }
    if !milli.is_multiple_of(1000) {
        return format!("{milli}m");
    }
    let whole = milli / 1000;
    let table = if binary { &BINARY } else { &DECIMAL };
    let (suffix, f) = table
        .iter()
        .find(|(_, f)| whole.is_multiple_of(*f))
        .unwrap_or(&("", 1));
    format!("{}{suffix}", whole / f)
}

/// `q` in the API server's canonical form (unchanged if unparsable).
pub fn canonical(q: &str) -> String {
    parse(q)
        .map(|(m, b)| format(m, b))
        .unwrap_or_else(|| q.to_string())
}

/// `q` times `n`, canonical, or None when `q` is not a plain quantity.
pub fn times(q: &str, n: u32) -> Option<String> {
    let (milli, binary) = parse(q)?;
    Some(format(milli * u128::from(n), binary))
}

#[cfg(test)]
mod tests {
    use super::{canonical, times};

    #[test]
    fn canonical_forms_match_the_api_server() {
        for (given, stored) in [
            ("1000m", "1"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("2", "2"),
            ("1.5", "1500m"),
            ("1024Mi", "1Gi"),
            ("512Mi", "512Mi"),
            ("1.5Gi", "1536Mi"),
            ("4Gi", "4Gi"),
            ("1000", "1k"),
            ("1500M", "1500M"),
            ("0", "0"),
        ] {
            assert_eq!(canonical(given), stored, "{given}");
        }
        assert_eq!(canonical("lots"), "lots");
    }

    #[test]
    fn scales_in_canonical_form() {
        assert_eq!(times("500m", 2).as_deref(), Some("1"));
        assert_eq!(times("2", 2).as_deref(), Some("4"));
        assert_eq!(times("1.25", 2).as_deref(), Some("2500m"));
        assert_eq!(times("4Gi", 3).as_deref(), Some("12Gi"));
        assert_eq!(times("512Mi", 2).as_deref(), Some("1Gi"));
        assert_eq!(times("Gi", 2), None);
    }
}
