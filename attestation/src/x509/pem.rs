//! PEM text (RFC 7468): `-----BEGIN <label>-----` … `-----END <label>-----` blocks
//! anywhere in the input, with any text before, between and after them. The
//! base64 body is decoded by `x509_parser::pem`.

use std::io::Cursor;

use x509_parser::pem::Pem;

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

/// What is wrong with the PEM block numbered `block` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PemProblem {
    /// The block has another label than asked for.
    Label { block: usize, label: String },
    /// The block is malformed, or there are more than allowed.
    Malformed { block: usize, reason: String },
}

/// The decoded contents of every block in `text`, each of which must carry
/// `label`; at most `max` blocks.
pub(super) fn decode_all(text: &[u8], label: &str, max: usize) -> Result<Vec<Vec<u8>>, PemProblem> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, BEGIN) {
        let block = out.len() + 1;
        if block > max {
            return Err(PemProblem::Malformed { block, reason: format!("more than {max} PEM blocks") });
        }
        let (body, after) = split_block(rest.get(start..).unwrap_or_default(), label, block)?;
        out.push(decode(body, block)?);
        rest = after;
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits `text` (starting at `-----BEGIN `) after its `-----END <label>-----` marker.
fn split_block<'a>(text: &'a [u8], label: &str, block: usize) -> Result<(&'a [u8], &'a [u8]), PemProblem> {
    let bad = |reason: String| PemProblem::Malformed { block, reason };
    let after_begin = text.get(BEGIN.len()..).unwrap_or_default();
    let found = find(after_begin, DASHES)
        .and_then(|len| after_begin.get(..len))
        .filter(|l| !l.contains(&b'\n'))
        .ok_or_else(|| bad("BEGIN line does not end with -----".into()))?;
    if found != label.as_bytes() {
        return Err(PemProblem::Label { block, label: String::from_utf8_lossy(found).into_owned() });
    }
    let end_marker = [END, label.as_bytes(), DASHES].concat();
    let end =
        find(text, &end_marker).ok_or_else(|| bad(format!("no matching -----END {label}----- line")))?;
    let split = end + end_marker.len();
    Ok((text.get(..split).unwrap_or_default(), text.get(split..).unwrap_or_default()))
}

fn decode(block_text: &[u8], block: usize) -> Result<Vec<u8>, PemProblem> {
    let mut with_newline = block_text.to_vec();
    with_newline.push(b'\n');
    Pem::read(Cursor::new(&with_newline[..]))
        .map(|(pem, _)| pem.contents)
        .map_err(|e| PemProblem::Malformed { block, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_between_text() {
        let text = b"junk\n-----BEGIN X-----\naGk=\n-----END X-----\nmore\n-----BEGIN X-----\r\nYQ==\r\n-----END X-----";
        assert_eq!(decode_all(text, "X", 8), Ok(vec![b"hi".to_vec(), b"a".to_vec()]));
        assert_eq!(
            decode_all(text, "X", 1),
            Err(PemProblem::Malformed { block: 2, reason: "more than 1 PEM blocks".into() })
        );
        assert_eq!(decode_all(text, "Y", 8), Err(PemProblem::Label { block: 1, label: "X".into() }));
        assert!(matches!(
            decode_all(b"-----BEGIN X-----\naGk=\n", "X", 8),
            Err(PemProblem::Malformed { block: 1, .. })
        ));
        assert!(matches!(
            decode_all(b"-----BEGIN X-----\n!!!!\n-----END X-----", "X", 8),
            Err(PemProblem::Malformed { .. })
        ));
        assert_eq!(decode_all(b"no pem here", "X", 8), Ok(vec![]));
    }
}
