//! `data_keys`: the keys that encrypt secrets at rest (TOTP secrets, queued email bodies).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};
use crate::crypto::data_keys::valid_key_id;

/// Where the data keys live: never in the database (see docs/operations.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DataKeysConfig {
    /// A folder holding one file per key: the file's name is the key id, its
    /// content base64 of 32 random bytes (a Kubernetes Secret mounted as a
    /// volume is such a folder). Unset: `data-keys/` beside the SQLite file
    /// (or under `./data/` for PostgreSQL), where the first start creates a key.
    pub dir: Option<PathBuf>,
    /// The key id that encrypts; the others only decrypt. Unset: the folder's only key.
    pub current: Option<String>,
}

impl DataKeysConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(current) = &self.current
            && !valid_key_id(current)
        {
            return Err(bad("data_keys.current", "must be 1 to 64 letters, digits, '-' or '_'"));
        }
        Ok(())
    }
}
