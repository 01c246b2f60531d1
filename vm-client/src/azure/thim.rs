//! The VCEK chain from Azure's instance metadata service (IMDS): `GET
//! http://169.254.169.254/metadata/THIM/amd/certification` with the header `Metadata: true`
//! answers, from the Trusted Hardware Identity Management cache, a JSON object whose
//! `vcekCert` is the VM's VCEK (PEM) and `certificateChain` the ASK and ARK (PEM); `tcbm`
//! (the TCB the VCEK is for) and `cacheControl` are not used: the broker reads the TCB from
//! the report and the VCEK and checks the chain against its pinned AMD roots.
//!
//! Nothing here is trusted by the client either: the certificates are only decoded (so a
//! wrong answer is named here, not at the broker) and passed on, re-encoded as PEM.

use std::time::Duration;

use mooring_attestation::pem;
use serde::Deserialize;

use crate::api::read_limited;

/// How long connecting to the metadata service may take (it is on the host).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the whole request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a VCEK, ASK and ARK in PEM are about 6 KiB).
const MAX_ANSWER: usize = 64 * 1024;
/// Certificates `certificateChain` may hold: the ASK and the ARK.
const MAX_CHAIN_CERTIFICATES: usize = 2;
/// PEM label of a certificate.
const CERTIFICATE: &str = "CERTIFICATE";

/// Why the VCEK chain could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThimError {
    /// The request failed (no metadata service: not an Azure VM, or no route to it).
    #[error("GET {url}: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The service answered with another status than 200.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer is not the THIM JSON, or a certificate in it is not PEM.
    #[error("GET {url}: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// The fields of the answer this client uses (the others are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Certification {
    vcek_cert: String,
    certificate_chain: String,
}

/// The VCEK, then the ASK and ARK, as PEM text for [`AzureFinishRequest::vcek_chain`].
///
/// [`AzureFinishRequest::vcek_chain`]: mooring_attestation::protocol::AzureFinishRequest::vcek_chain
///
/// # Errors
/// See [`ThimError`].
pub fn vcek_chain(url: &str) -> Result<String, ThimError> {
    let request = |reason: String| ThimError::Request { url: url.to_owned(), reason };
    // No proxy: the metadata service is link-local and must be asked directly.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| request(e.to_string()))?;
    let response = client
        .get(url)
        .header("Metadata", "true")
        .send()
        .map_err(|e| request(crate::api::error_chain(&e)))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(ThimError::Status { url: url.to_owned(), status });
    }
    let body = read_limited(response, MAX_ANSWER).map_err(request)?;
    parse(&body).map_err(|reason| ThimError::Malformed { url: url.to_owned(), reason })
}

/// The PEM chain in a THIM answer: one VCEK, then at most [`MAX_CHAIN_CERTIFICATES`].
fn parse(body: &[u8]) -> Result<String, String> {
    let answer: Certification =
        serde_json::from_slice(body).map_err(|e| format!("not the THIM certification JSON: {e}"))?;
    let vcek =
        pem::decode_one(answer.vcek_cert.as_bytes(), CERTIFICATE).map_err(|e| format!("vcekCert: {e}"))?;
    let chain = pem::decode_all(answer.certificate_chain.as_bytes(), CERTIFICATE, MAX_CHAIN_CERTIFICATES)
        .map_err(|e| format!("certificateChain: {e}"))?;
    Ok([vcek].iter().chain(&chain).map(|der| pem::encode(CERTIFICATE, der)).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn certificate(n: u8) -> String {
        pem::encode(CERTIFICATE, &[0x30, 0x03, 0x02, 0x01, n])
    }

    #[test]
    fn the_vcek_comes_first_then_the_chain() {
        let body = serde_json::json!({
            "vcekCert": certificate(1),
            "tcbm": "DB18000000000004",
            "certificateChain": format!("{}{}", certificate(2), certificate(3)),
            "cacheControl": "86400",
        });
        let chain = parse(body.to_string().as_bytes()).unwrap();
        let ders = pem::decode_all(chain.as_bytes(), CERTIFICATE, 3).unwrap();
        assert_eq!(ders, vec![vec![0x30, 3, 2, 1, 1], vec![0x30, 3, 2, 1, 2], vec![0x30, 3, 2, 1, 3]]);
    }

    #[test]
    fn wrong_answers_are_named() {
        let err = parse(b"<html>not json</html>").unwrap_err();
        assert!(err.contains("not the THIM certification JSON"), "{err}");
        let err = parse(br#"{"vcekCert":"","certificateChain":""}"#).unwrap_err();
        assert!(err.contains("vcekCert: no -----BEGIN CERTIFICATE----- block"), "{err}");
        let two = format!("{}{}", certificate(1), certificate(2));
        let err = parse(serde_json::json!({"vcekCert": two, "certificateChain": ""}).to_string().as_bytes())
            .unwrap_err();
        assert!(err.contains("vcekCert"), "{err}");
        let three = format!("{}{}{}", certificate(1), certificate(2), certificate(3));
        let err = parse(
            serde_json::json!({"vcekCert": certificate(1), "certificateChain": three}).to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(err.contains("certificateChain: more than 2"), "{err}");
        let key = pem::encode("PRIVATE KEY", &[1, 2, 3]);
        let err = parse(serde_json::json!({"vcekCert": key, "certificateChain": ""}).to_string().as_bytes())
            .unwrap_err();
        assert!(err.contains("labelled"), "{err}");
    }

    #[test]
    fn nothing_listening_is_a_request_error() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err =
            vcek_chain(&format!("http://127.0.0.1:{port}/metadata/THIM/amd/certification")).unwrap_err();
        assert!(matches!(err, ThimError::Request { .. }), "{err}");
    }
}
