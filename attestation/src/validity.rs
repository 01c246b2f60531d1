//! A value that holds for a window of time: a verification result cached while everything
//! it rests on is valid (the certificates of a verified path, the keys of a trust bundle),
//! and ignored outside that window. Times are seconds since the Unix epoch, from the
//! caller's clock.

use std::ops::{Bound, RangeBounds};

/// `value`, valid at the times inside a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windowed<T> {
    value: T,
    start: Bound<i64>,
    end: Bound<i64>,
}

impl<T> Windowed<T> {
    /// `value`, valid at the times in `window`: `first..=last` when both ends are valid
    /// times (X.509 notBefore..=notAfter), `first..end` when `end` is the first time it no
    /// longer holds (an expiry).
    #[must_use]
    pub fn new(value: T, window: impl RangeBounds<i64>) -> Self {
        Self { value, start: window.start_bound().cloned(), end: window.end_bound().cloned() }
    }

    /// The value, when `now` is inside the window.
    #[must_use]
    pub fn at(&self, now: i64) -> Option<&T> {
        (self.start, self.end).contains(&now).then_some(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_windows_include_both_ends() {
        let path = Windowed::new("path", 10..=20);
        assert_eq!([9, 10, 20, 21].map(|t| path.at(t)), [None, Some(&"path"), Some(&"path"), None]);
    }

    #[test]
    fn half_open_windows_end_before_the_expiry() {
        let bundle = Windowed::new("bundle", 10..20);
        assert_eq!([9, 10, 19, 20].map(|t| bundle.at(t)), [None, Some(&"bundle"), Some(&"bundle"), None]);
        let unbounded = Windowed::new("always", i64::MIN..);
        assert_eq!(unbounded.at(i64::MAX), Some(&"always"));
    }
}
