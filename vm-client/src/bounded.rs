//! Reading no more than a limit: what the client takes from the network, a file or a
//! kernel interface is bounded before it is held.

use std::io::Read;

/// All of `source`, or `None` when it holds more than `max` bytes (of which at most one
/// more was read).
pub(crate) fn read_at_most(source: impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    source.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= max).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::read_at_most;

    #[test]
    fn up_to_the_limit_is_read_and_past_it_is_refused() {
        assert_eq!(read_at_most(&b"four"[..], 4).unwrap(), Some(b"four".to_vec()));
        assert_eq!(read_at_most(&b"four"[..], 3).unwrap(), None);
        assert_eq!(read_at_most(&b""[..], 0).unwrap(), Some(Vec::new()));
    }
}
