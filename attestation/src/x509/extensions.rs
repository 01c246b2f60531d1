//! Certificate extensions (RFC 5280 §4.2): the raw list, and the few this module
//! acts on — basicConstraints, keyUsage and the key identifiers.

use x509_parser::extensions::{ParsedExtension, X509Extension};

use super::cert::CertificateError;
use super::{oid, ACCEPTED_CRITICAL_EXTENSIONS};

/// keyUsage bit for keyCertSign (RFC 5280 §4.2.1.3, bit 5).
const KEY_CERT_SIGN: u16 = 1 << 5;

/// One extension: OID, criticality and the DER inside its OCTET STRING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    oid: String,
    critical: bool,
    value: Box<[u8]>,
}

impl Extension {
    /// Dotted OID (`2.5.29.17`).
    #[must_use]
    pub fn oid(&self) -> &str {
        &self.oid
    }

    /// Whether the extension is marked critical.
    #[must_use]
    pub fn critical(&self) -> bool {
        self.critical
    }

    /// The DER value (contents of `extnValue`).
    #[must_use]
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// basicConstraints (RFC 5280 §4.2.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BasicConstraints {
    pub(super) ca: bool,
    pub(super) path_len: Option<u32>,
}

/// A certificate's extensions, with the ones path validation uses decoded.
#[derive(Debug, Clone, Default)]
pub(super) struct Extensions {
    all: Vec<Extension>,
    basic_constraints: Option<BasicConstraints>,
    key_usage: Option<u16>,
    subject_key_id: Option<Box<[u8]>>,
    authority_key_id: Option<Box<[u8]>>,
}

impl Extensions {
    /// Reads the list. Duplicates, and a malformed basicConstraints or keyUsage,
    /// are errors; a malformed key identifier only stops it narrowing issuer
    /// candidates; other extensions are kept raw.
    pub(super) fn read(
        extensions: &[X509Extension<'_>],
        describe: impl Fn() -> String,
    ) -> Result<Self, CertificateError> {
        let mut out = Self { all: Vec::with_capacity(extensions.len()), ..Self::default() };
        for ext in extensions {
            let oid = ext.oid.to_id_string();
            if out.all.iter().any(|e| e.oid == oid) {
                return Err(CertificateError::DuplicateExtension { subject: describe(), oid });
            }
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => {
                    out.basic_constraints =
                        Some(BasicConstraints { ca: bc.ca, path_len: bc.path_len_constraint });
                }
                ParsedExtension::KeyUsage(ku) => out.key_usage = Some(ku.flags),
                ParsedExtension::SubjectKeyIdentifier(id) => out.subject_key_id = Some(id.0.into()),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    out.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.into());
                }
                ParsedExtension::ParseError { .. } if oid == oid::BASIC_CONSTRAINTS => {
                    return Err(CertificateError::MalformedExtension {
                        subject: describe(),
                        extension: "basicConstraints",
                    });
                }
                ParsedExtension::ParseError { .. } if oid == oid::KEY_USAGE => {
                    return Err(CertificateError::MalformedExtension {
                        subject: describe(),
                        extension: "keyUsage",
                    });
                }
                _ => {}
            }
            out.all.push(Extension { oid, critical: ext.critical, value: ext.value.into() });
        }
        Ok(out)
    }

    pub(super) fn all(&self) -> &[Extension] {
        &self.all
    }

    pub(super) fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.basic_constraints
    }

    /// Whether keyUsage allows keyCertSign; `None` when keyUsage is absent.
    pub(super) fn may_sign_certificates(&self) -> Option<bool> {
        self.key_usage.map(|ku| ku & KEY_CERT_SIGN != 0)
    }

    pub(super) fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }

    pub(super) fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }

    /// The first critical extension not in [`ACCEPTED_CRITICAL_EXTENSIONS`].
    pub(super) fn unhandled_critical(&self) -> Option<&str> {
        self.all
            .iter()
            .find(|e| e.critical && !ACCEPTED_CRITICAL_EXTENSIONS.iter().any(|(o, _)| *o == e.oid))
            .map(|e| e.oid.as_str())
    }
}
