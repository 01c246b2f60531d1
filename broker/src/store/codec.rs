//! The one encoding of stored records, shared by every backend: JSON, so a record reads
//! the same in a sled tree, a PostgreSQL column and the audit API.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

/// Encodes a record.
pub(super) fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

/// Decodes the record stored under `key`.
pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}
