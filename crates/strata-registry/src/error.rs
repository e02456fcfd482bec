//! Errors of the registry client. Each names the registry and what was asked of it.

use strata_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{0}")]
    Reference(String),
    /// The registry answered with an error status.
    #[error("{registry}: {what}: {status} {message}")]
    Status { registry: String, what: String, status: u16, message: String },
    /// The registry could not be reached or the connection broke.
    #[error("{registry}: {what}: {message}")]
    Transport { registry: String, what: String, message: String },
    /// The registry sent something this client refuses (a bad manifest, a schema 1 image).
    #[error("{registry}: {what}: {message}")]
    Refused { registry: String, what: String, message: String },
    #[error("{what}: {cause}")]
    Store { what: String, cause: StoreError },
    #[error(transparent)]
    Plain(#[from] StoreError),
    #[error("{path}: {message}")]
    Credentials { path: String, message: String },
}

impl RegistryError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
