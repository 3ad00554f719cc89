//! Durations as written in the spec (`10s`, `5m`, `250ms`, `1h`).

use std::time::Duration;

/// The longest duration a spec may name: a year. The CRD pattern bounds a duration's form, not
/// its size, and the rollout adds and multiplies durations (interval × rounds + delays +
/// deadlines) to find its deadlines; a year keeps all of that far from `Duration`'s limit.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A duration string that does not match `^[0-9]+(ms|s|m|h)$` or is longer than
/// [`MAX_DURATION`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a whole number followed by ms, s, m or h, at most 8760h")]
pub struct DurationError(pub String);

/// Parses `<number><unit>` with unit `ms`, `s`, `m` or `h`, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError(text.to_owned());
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_the_rest() {
        let cases = [
            ("250ms", Some(Duration::from_millis(250))),
            ("10s", Some(Duration::from_secs(10))),
            ("5m", Some(Duration::from_secs(300))),
            ("2h", Some(Duration::from_secs(7200))),
            ("0s", Some(Duration::ZERO)),
            ("10", None),
            ("s", None),
            ("1.5s", None),
            ("-1s", None),
            ("10d", None),
            ("", None),
            ("99999999999999999999h", None),
            ("8760h", Some(MAX_DURATION)),
            ("31536000000ms", Some(MAX_DURATION)),
            ("8761h", None),
            ("31536000001ms", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), expected, "{text:?}");
        }
    }
}
