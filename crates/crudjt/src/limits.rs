//! A token's lifetime and read budget.

use std::num::NonZeroU64;

use crate::error::Error;

/// The optional limits of a token: a lifetime (`ttl`, whole seconds) and a
/// read budget (`silence_read`, the number of reads it survives).
///
/// Each is at least 1 or absent. Huge values saturate instead of
/// overflowing: a lifetime that reaches past the year 584,000,000 never
/// expires in practice and reports what remains of it.
///
/// # Example
///
/// ```
/// use crudjt::Limits;
///
/// let one_time = Limits::new(Some(3600), Some(1)).unwrap();
/// assert_eq!(one_time.ttl(), Some(3600));
/// assert!(Limits::new(Some(0), None).is_err());
/// assert_eq!(Limits::NONE.silence_read(), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    ttl: Option<NonZeroU64>,
    silence_read: Option<NonZeroU64>,
}

impl Limits {
    /// No lifetime and no read budget.
    pub const NONE: Limits = Limits {
        ttl: None,
        silence_read: None,
    };

    /// Limits from optional counts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLimit`] when either is zero.
    pub fn new(ttl: Option<u64>, silence_read: Option<u64>) -> Result<Limits, Error> {
        Ok(Limits {
            ttl: positive("ttl", ttl)?,
            silence_read: positive("silence_read", silence_read)?,
        })
    }

    /// Limits from the signed values of the wire contract and dynamic
    /// languages, where `-1` means "no limit".
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLimit`] for zero and for negatives other than `-1`.
    pub fn from_signed(ttl: i128, silence_read: i128) -> Result<Limits, Error> {
        let convert = |name, value: i128| match value {
            -1 => Ok(None),
            v if v >= 1 => Ok(Some(u64::try_from(v).unwrap_or(u64::MAX))),
            v => Err(Error::InvalidLimit { name, value: v }),
        };
        Limits::new(convert("ttl", ttl)?, convert("silence_read", silence_read)?)
    }

    /// Lifetime in seconds, if any.
    pub fn ttl(&self) -> Option<u64> {
        self.ttl.map(NonZeroU64::get)
    }

    /// Read budget, if any.
    pub fn silence_read(&self) -> Option<u64> {
        self.silence_read.map(NonZeroU64::get)
    }

    /// The expiry in milliseconds since the Unix epoch for a token made at
    /// `now_ms`, saturating at `u64::MAX`.
    pub(crate) fn expires_at(&self, now_ms: u64) -> Option<u64> {
        self.ttl()
            .map(|secs| now_ms.saturating_add(secs.saturating_mul(1000)))
    }
}

fn positive(name: &'static str, value: Option<u64>) -> Result<Option<NonZeroU64>, Error> {
    match value {
        None => Ok(None),
        Some(v) => NonZeroU64::new(v)
            .map(Some)
            .ok_or(Error::InvalidLimit { name, value: 0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negatives_are_refused() {
        assert!(matches!(
            Limits::new(Some(0), None),
            Err(Error::InvalidLimit {
                name: "ttl",
                value: 0
            })
        ));
        assert!(matches!(
            Limits::new(None, Some(0)),
            Err(Error::InvalidLimit {
                name: "silence_read",
                value: 0
            })
        ));
        assert!(Limits::from_signed(-2, -1).is_err());
        assert!(Limits::from_signed(-1, 0).is_err());
        assert_eq!(Limits::from_signed(-1, -1).unwrap(), Limits::NONE);
        let huge = Limits::from_signed(i128::MAX, 1).unwrap();
        assert_eq!(huge.ttl(), Some(u64::MAX));
    }

    #[test]
    fn expiry_saturates() {
        let l = Limits::new(Some(u64::MAX), None).unwrap();
        assert_eq!(l.expires_at(1), Some(u64::MAX));
        let l = Limits::new(Some(2), None).unwrap();
        assert_eq!(l.expires_at(1_000), Some(3_000));
        assert_eq!(Limits::NONE.expires_at(5), None);
    }
}
