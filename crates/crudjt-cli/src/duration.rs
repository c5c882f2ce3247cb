//! Durations on the command line: a whole number and a unit, like `500ms`.

use std::time::Duration;

/// Parses `200us`, `500ms`, `2s`, `5m` or `24h`. A bare number is refused rather
/// than guessed at, since `--flush-interval 500` could mean either unit.
///
/// # Errors
///
/// A message for clap to show when the text is not such a duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`: give a whole number and a unit \
             (us, ms, s, m or h), like 500ms"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    let count: u64 = digits.parse().map_err(|_| invalid())?;
    let micros_per = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        _ => return Err(invalid()),
    };
    let micros = count
        .checked_mul(micros_per)
        .ok_or_else(|| format!("duration `{text}` is too long"))?;
    Ok(Duration::from_micros(micros))
}

/// Parses a busy-polling window: a duration of at most
/// [`crudjt_grpc::MAX_BUSY_POLL`].
///
/// # Errors
///
/// As [`parse`], and for a longer window.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    let window = parse(text)?;
    if window > crudjt_grpc::MAX_BUSY_POLL {
        return Err(format!(
            "a busy-polling window of `{text}` is too long: at most {}",
            show(crudjt_grpc::MAX_BUSY_POLL)
        ));
    }
    Ok(window)
}

/// Shows a duration the way [`parse`] reads it, in the largest whole unit.
pub fn show(duration: Duration) -> String {
    match duration.as_micros() {
        0 => "0s".to_owned(),
        u if u % 3_600_000_000 == 0 => format!("{}h", u / 3_600_000_000),
        u if u % 60_000_000 == 0 => format!("{}m", u / 60_000_000),
        u if u % 1_000_000 == 0 => format!("{}s", u / 1_000_000),
        u if u % 1_000 == 0 => format!("{}ms", u / 1_000),
        u => format!("{u}us"),
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
        assert_eq!(parse("200us"), Ok(Duration::from_micros(200)));
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
    fn a_window_is_at_most_a_second() {
        assert_eq!(parse_window("200us"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_window("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_window("1001ms").unwrap_err().contains("at most 1s"));
        assert!(parse_window("1").is_err());
    }

    #[test]
    fn shows_what_it_parses() {
        for text in [
            "200us", "1500us", "500ms", "1500ms", "2s", "5m", "24h", "0s",
        ] {
            assert_eq!(show(parse(text).unwrap()), text);
        }
    }
}
