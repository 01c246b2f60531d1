//! PEM text (RFC 7468), read and written with the `pem` crate: the one PEM codec of the
//! workspace (certificate bundles, PEM public keys, the client's key files, issued SVIDs).
//!
//! Reading is strict about the blocks and tolerant around them: any text may stand before,
//! between and after the `-----BEGIN <label>-----` … `-----END <label>-----` blocks (and
//! lines may end in CRLF), but every block must carry the expected label, decode as base64,
//! and end; RFC 1421 headers (`Proc-Type`, `DEK-Info`: encrypted keys) are refused.

use pem::{EncodeConfig, LineEnding, Pem};
use thiserror::Error;

/// What starts every block.
const BEGIN: &[u8] = b"-----BEGIN ";

/// Why PEM text was refused; `block` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PemError {
    /// A block carries another label than the one asked for.
    #[error("PEM block {block} is labelled {found:?}, expected {expected}")]
    Label {
        /// The block.
        block: usize,
        /// Its label.
        found: String,
        /// The label asked for.
        expected: String,
    },
    /// A block is malformed.
    #[error("PEM block {block}: {reason}")]
    Malformed {
        /// The block.
        block: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The text holds more blocks than the caller accepts.
    #[error("more than {max} PEM blocks")]
    TooMany {
        /// The most accepted.
        max: usize,
    },
    /// The text holds no block.
    #[error("no -----BEGIN {label}----- block")]
    Missing {
        /// The label asked for.
        label: String,
    },
}

/// The decoded contents of every block in `text`, in order; each must carry `label`, and
/// there may be at most `max`. No block at all gives an empty list.
///
/// # Errors
/// [`PemError`] naming the first block at fault, or [`PemError::TooMany`].
pub fn decode_all(text: &[u8], label: &str, max: usize) -> Result<Vec<Vec<u8>>, PemError> {
    let starts: Vec<usize> =
        text.windows(BEGIN.len()).enumerate().filter(|(_, w)| *w == BEGIN).map(|(at, _)| at).collect();
    if starts.len() > max {
        return Err(PemError::TooMany { max });
    }
    // Each block runs to the next BEGIN line (base64 never contains one), so a block that
    // does not end is reported as such rather than skipped.
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    starts
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(i, (&start, end))| decode_block(text.get(start..end).unwrap_or_default(), label, i + 1))
        .collect()
}

/// The decoded contents of the one block in `text`, which must carry `label`.
///
/// # Errors
/// [`PemError::Missing`] without a block, [`PemError::TooMany`] with several, otherwise as
/// [`decode_all`].
pub fn decode_one(text: &[u8], label: &str) -> Result<Vec<u8>, PemError> {
    decode_all(text, label, 1)?.pop().ok_or_else(|| PemError::Missing { label: label.to_owned() })
}

/// One block with `label` around `der`: 64-character base64 lines, LF line ends, a final LF.
#[must_use]
pub fn encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(&Pem::new(label, der), EncodeConfig::new().set_line_ending(LineEnding::LF))
}

fn decode_block(text: &[u8], label: &str, block: usize) -> Result<Vec<u8>, PemError> {
    let malformed = |reason: String| PemError::Malformed { block, reason };
    // The pem crate reads whatever stands before a blank line as RFC 1421 headers. Inside
    // the block (between its BEGIN and END lines), headers are refused by their `Name:
    // value` form and blank lines dropped, as real bundles have them; what follows the END
    // line (text before the next block) is left as it is.
    let lines: Vec<&[u8]> =
        text.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)).collect();
    let end = lines.iter().position(|line| line.starts_with(b"-----END ")).unwrap_or(lines.len());
    let mut kept = Vec::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        let inside = i > 0 && i < end;
        if inside && line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if inside && line.contains(&b':') {
            return Err(malformed("RFC 1421 headers (an encrypted key?) are not supported".to_owned()));
        }
        kept.extend_from_slice(line);
        kept.push(b'\n');
    }
    let parsed = pem::parse(&kept).map_err(|e| {
        malformed(match e {
            pem::PemError::MalformedFraming | pem::PemError::MissingEndTag => {
                "no -----END line closes the block".to_owned()
            }
            pem::PemError::MismatchedTags(begin, end) => format!("BEGIN {begin:?} is closed by END {end:?}"),
            pem::PemError::InvalidData(e) => format!("invalid base64: {e}"),
            other => other.to_string(),
        })
    })?;
    if parsed.tag() != label {
        return Err(PemError::Label { block, found: parsed.tag().to_owned(), expected: label.to_owned() });
    }
    if parsed.headers().iter().next().is_some() {
        return Err(malformed("RFC 1421 headers (an encrypted key?) are not supported".to_owned()));
    }
    Ok(parsed.into_contents())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_between_text_with_lf_or_crlf() {
        let text = b"junk\n-----BEGIN X-----\naGk=\n-----END X-----\nmore\n-----BEGIN X-----\r\nYQ==\r\n-----END X-----";
        assert_eq!(decode_all(text, "X", 8), Ok(vec![b"hi".to_vec(), b"a".to_vec()]));
        assert_eq!(decode_all(text, "X", 1), Err(PemError::TooMany { max: 1 }));
        assert_eq!(
            decode_all(text, "Y", 8),
            Err(PemError::Label { block: 1, found: "X".into(), expected: "Y".into() })
        );
        assert_eq!(decode_all(b"no pem here", "X", 8), Ok(vec![]));
    }

    #[test]
    fn blank_lines_inside_a_block_are_tolerated() {
        let text = b"-----BEGIN X-----\naGk=\n\n-----END X-----\n";
        assert_eq!(decode_all(text, "X", 8), Ok(vec![b"hi".to_vec()]));
        let text = b"-----BEGIN X-----\r\n\r\naG\r\n  \r\nk=\r\n-----END X-----";
        assert_eq!(decode_all(text, "X", 8), Ok(vec![b"hi".to_vec()]));
        // Text between blocks may hold anything, colons included (`openssl x509 -text`).
        let text = b"-----BEGIN X-----\naGk=\n-----END X-----\nCertificate:\n    Data:\n-----BEGIN X-----\nYQ==\n-----END X-----\n";
        assert_eq!(decode_all(text, "X", 8), Ok(vec![b"hi".to_vec(), b"a".to_vec()]));
    }

    #[test]
    fn malformed_blocks_are_named() {
        for (text, block) in [
            (&b"-----BEGIN X-----\naGk=\n"[..], 1),
            (b"-----BEGIN X-----\naGk=\n-----END X-----\n-----BEGIN X-----\naGk=\n", 2),
            (b"-----BEGIN X-----\n!!!!\n-----END X-----", 1),
            (b"-----BEGIN X-----\naGk=\n-----END Y-----", 1),
            (b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n\naGk=\n-----END X-----", 1),
        ] {
            let err = decode_all(text, "X", 8).unwrap_err();
            assert!(
                matches!(err, PemError::Malformed { block: b, .. } if b == block),
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn one_block_round_trips() {
        let text = encode("TEST", &[0xab; 100]);
        let body: Vec<&str> = text.lines().skip(1).take_while(|l| !l.starts_with("-----")).collect();
        assert_eq!(body.first().map(|l| l.len()), Some(64));
        assert!(text.starts_with("-----BEGIN TEST-----\n") && text.ends_with("-----END TEST-----\n"));
        assert_eq!(decode_one(text.as_bytes(), "TEST"), Ok(vec![0xab; 100]));
        assert_eq!(decode_one(b"", "TEST"), Err(PemError::Missing { label: "TEST".into() }));
        let two = [text.as_str(), text.as_str()].concat();
        assert_eq!(decode_one(two.as_bytes(), "TEST"), Err(PemError::TooMany { max: 1 }));
    }
}
