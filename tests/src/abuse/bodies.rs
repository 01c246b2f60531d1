//! What the abusers send: requests that prove no identity, each kind refused for a
//! different reason, several built to make an error message as long as possible.

use base64::Engine as _;
use serde_json::json;

/// Size of the strings meant to be echoed in a JSON error (a key or a value).
pub(crate) const ECHOED_BYTES: usize = 200 * 1024;
/// Size of the oversized bodies: above the broker's default `max_body_bytes` (256 KiB).
pub(crate) const OVERSIZED_BYTES: usize = 300 * 1024;

/// One request: route and body.
#[derive(Debug, Clone)]
pub(crate) struct Junk {
    pub(crate) path: &'static str,
    pub(crate) body: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A long string that serde_json would quote in its error, with a control character in
/// each line that a careless log would write raw; [`ECHOED_BYTES`] once JSON-escaped.
fn echoed_text() -> String {
    let unit = "abuse abuse abuse abuse abuse abuse abuse abuse abuse abuse abuse abuse\n";
    let escaped = unit.len() + 1;
    unit.repeat(ECHOED_BYTES / escaped)
}

/// A challenge id nobody was given.
fn unknown_id(n: u64) -> String {
    format!("{n:016x}{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The malformed flood's requests, taken in turn.
#[derive(Debug)]
pub(crate) struct MalformedSet {
    kinds: Vec<Junk>,
}

impl MalformedSet {
    pub(crate) fn new() -> Self {
        let echoed = echoed_text();
        let mut key_object = serde_json::Map::new();
        key_object.insert(echoed.clone(), json!(1));
        let mut garbage = Vec::with_capacity(1024);
        let mut x: u32 = 0x1234_5678;
        for _ in 0..1024 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            garbage.push(x.to_le_bytes()[0]);
        }
        let oversized = format!("{{\"challenge_id\":\"{}\"}}", "x".repeat(OVERSIZED_BYTES)).into_bytes();
        let kinds = vec![
            // `{"<200 KB key>":1}`: "unknown field `<200 KB>`, expected one of ...".
            Junk { path: "/v1/tpm/begin", body: to_vec(&serde_json::Value::Object(key_object)) },
            // A 200 KB string where an object belongs: "invalid type: string \"<200 KB>\"".
            Junk { path: "/v1/tpm/finish", body: to_vec(&json!(echoed)) },
            // Over max_body_bytes.
            Junk { path: "/v1/snp/finish", body: oversized },
            // Not JSON at all.
            Junk { path: "/v1/tpm/begin", body: garbage },
            // Cut short.
            Junk { path: "/v1/snp/finish", body: b"{\"challenge_id\": \"AAAA".to_vec() },
            // A TPM begin whose EK certificate and keys are junk.
            Junk {
                path: "/v1/tpm/begin",
                body: to_vec(&json!({
                    "ek_public": b64(&[0x00, 0x01, 0x02]),
                    "ek_certificate": b64(b"not a certificate"),
                    "ak_public": b64(&[0x00, 0x23]),
                    "key_public": b64(&[0x00, 0x23]),
                })),
            },
            // Verify a credential the broker never issued.
            Junk {
                path: "/v1/credentials/verify",
                body: to_vec(&json!({
                    "credential": {"type": "jwt", "token": "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl"},
                    "peer_address": "127.0.0.1",
                    "audience": "payments",
                })),
            },
        ];
        Self { kinds }
    }

    /// Request number `n`: the kinds in turn, plus `finish` calls naming challenges nobody
    /// was given (a fresh id each time).
    pub(crate) fn get(&self, n: u64) -> Junk {
        let kinds = u64::try_from(self.kinds.len()).unwrap_or(u64::MAX);
        let slot = n % (kinds + 2);
        if slot == kinds {
            return unknown_tpm_finish(n);
        }
        if slot == kinds + 1 {
            return unknown_snp_finish(n);
        }
        usize::try_from(slot)
            .ok()
            .and_then(|i| self.kinds.get(i).cloned())
            .unwrap_or_else(|| unknown_tpm_finish(n))
    }
}

fn to_vec(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// A well-formed TPM `finish` for a challenge nobody was given.
fn unknown_tpm_finish(n: u64) -> Junk {
    let body = json!({
        "challenge_id": unknown_id(n),
        "activated_secret": b64(&[7; 32]),
        "quote": b64(&[1; 64]),
        "quote_signature": b64(&[2; 64]),
        "pcrs": {"sha256": {"0": "00".repeat(32)}},
        "certify": b64(&[3; 64]),
        "certify_signature": b64(&[4; 64]),
    });
    Junk { path: "/v1/tpm/finish", body: to_vec(&body) }
}

/// A well-formed SEV-SNP `finish` for a challenge nobody was given.
fn unknown_snp_finish(n: u64) -> Junk {
    let body = json!({
        "challenge_id": unknown_id(n),
        "report": b64(&[0; 1184]),
        "key_spki": b64(&[5; 91]),
        "sealing_key": b64(&[6; 32]),
    });
    Junk { path: "/v1/snp/finish", body: to_vec(&body) }
}

/// The begin flood's requests, taken in turn: an SEV-SNP `begin` (which needs no body)
/// and a TPM `begin` with junk keys and certificate.
pub(crate) fn begin_flood(n: u64) -> Junk {
    if n % 2 == 0 {
        Junk { path: "/v1/snp/begin", body: b"{}".to_vec() }
    } else {
        let junk = |len: usize, fill: u8| b64(&vec![fill; len]);
        let body = json!({
            "ek_public": junk(280, 0x11),
            "ek_certificate": junk(900, 0x30),
            "ak_public": junk(90, 0x22),
            "key_public": junk(90, 0x33),
        });
        Junk { path: "/v1/tpm/begin", body: to_vec(&body) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_set_cycles_through_every_kind() {
        let set = MalformedSet::new();
        let paths: std::collections::BTreeSet<&str> = (0..9).map(|n| set.get(n).path).collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        for echoed in [set.get(0).body.len(), set.get(1).body.len()] {
            // Echoed in the error, and not refused for its size before it is parsed.
            assert!(echoed > ECHOED_BYTES * 9 / 10 && echoed < 256 * 1024, "{echoed}");
        }
        assert!(set.get(2).body.len() > OVERSIZED_BYTES);
        assert_ne!(set.get(7).body, set.get(16).body, "unknown challenge ids differ");
    }
}
