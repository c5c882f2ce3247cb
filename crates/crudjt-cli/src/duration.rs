//! Durations on the command line: a whole number and a unit, like `500ms`.

use std::time::Duration;

/// Parses `500ms`, `2s`, `5m` or `24h`. A bare number is refused rather
/// than guessed at, since `--flush-interval 500` could mean either unit.
///
/// # Errors
///
/// A message for clap to show when the text is not such a duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`: give a whole number and a unit (ms, s, m or h), like 500ms"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    let count: u64 = digits.parse().map_err(|_| invalid())?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    let millis = count
        .checked_mul(millis_per)
        .ok_or_else(|| format!("duration `{text}` is too long"))?;
    Ok(Duration::from_millis(millis))
}

/// Shows a duration the way [`parse`] reads it, in the largest whole unit.
pub fn show(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0 => "0s".to_owned(),
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_it_would_have_to_guess() {
        for text in ["", "500", "s", "1.5s", "-1s", "2 s", "3d", "1sm"] {
            assert!(parse(text).is_err(), "{text:?} should be refused");
        }
        assert!(
            parse("18446744073709551615h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn shows_what_it_parses() {
        for text in ["500ms", "1500ms", "2s", "5m", "24h", "0s"] {
            assert_eq!(show(parse(text).unwrap()), text);
        }
    }
}
