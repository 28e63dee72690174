//! Durations as users write them: `500ms`, `30s`, `10m`, `1h30m`, `2d`.

use std::fmt::Write as _;
use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a number and a unit, found nothing")]
    Empty,
    #[error("expected a number at `{0}`")]
    MissingNumber(String),
    #[error("`{0}` has no unit (ms, s, m, h or d)")]
    MissingUnit(String),
    #[error("unknown unit `{0}` (expected ms, s, m, h or d)")]
    UnknownUnit(String),
    #[error("the duration is too long")]
    Overflow,
}

/// Parses a sequence of `<number><unit>` parts.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::MissingNumber(rest.to_owned()));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow)?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let part = match unit {
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60).ok_or(DurationError::Overflow)?),
            "h" => Duration::from_secs(number.checked_mul(3600).ok_or(DurationError::Overflow)?),
            "d" => Duration::from_secs(number.checked_mul(86_400).ok_or(DurationError::Overflow)?),
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        total = total.checked_add(part).ok_or(DurationError::Overflow)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The shortest spelling of a duration in the same syntax (`90s` → `1m30s`).
pub fn format(d: Duration) -> String {
    let millis = d.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_mins(10)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(parse("2d"), Ok(Duration::from_hours(48)));
    }

    #[test]
    fn rejects_bad_spellings() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("10"), Err(DurationError::MissingUnit("10".into())));
        assert_eq!(parse("10x"), Err(DurationError::UnknownUnit("x".into())));
        assert_eq!(parse("m"), Err(DurationError::MissingNumber("m".into())));
        assert_eq!(
            parse("-5s"),
            Err(DurationError::MissingNumber("-5s".into()))
        );
        assert_eq!(parse("99999999999999999999d"), Err(DurationError::Overflow));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["500ms", "30s", "1m30s", "1h", "2d3h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
