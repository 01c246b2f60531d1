//! Why a request was refused: the broker's reason code and one line, as JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mooring_attestation::protocol::{Code, ErrorBody};
use mooring_attestation::svid::SvidError;

/// A refusal: status, stable code, reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: Code,
    pub(crate) reason: String,
}

impl Refusal {
    /// The credential is not good for this caller: the code's own status (403, or 503 for
    /// what a retry may cure, such as a stale revocation list).
    pub(crate) fn forbidden(code: Code, reason: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::FORBIDDEN);
        Self { status, code, reason: reason.into() }
    }

    /// 401: no credential at all.
    pub(crate) fn no_credential() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: Code::NoCredential,
            reason: "present a Mooring X.509-SVID over mutual TLS, or a JWT-SVID (Authorization: Bearer) \
                     with a mooring-possession header"
                .into(),
        }
    }

    /// 400: the request itself is not understood.
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: Code::MalformedRequest, reason: reason.into() }
    }

    /// 503: the broker could not be asked (broker mode fails closed).
    pub(crate) fn verifier_unavailable() -> Self {
        Self::verifier_unusable("the credential could not be checked with the broker; try again")
    }

    /// 503: the broker's answer cannot be acted on; `reason` says why (fails closed).
    pub(crate) fn verifier_unusable(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: Code::VerifierUnavailable,
            reason: reason.into(),
        }
    }
}

impl From<SvidError> for Refusal {
    fn from(e: SvidError) -> Self {
        Self::forbidden(e.code(), e.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { code: self.code, reason: self.reason })).into_response()
    }
}
