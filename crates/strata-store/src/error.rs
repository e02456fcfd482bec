//! Errors of the store. Every one names what failed: a path, a blob, an entry, an image.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    // The cause is part of the message, not a `source()`: printed as a chain it would
    // show twice.
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    /// A layer tar entry that cannot be applied safely or makes no sense.
    #[error("layer entry '{entry}': {reason}")]
    BadEntry { entry: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: size mismatch: expected {expected} bytes, content is {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    /// An error while loading or applying one layer, named by what it is.
    #[error("{layer}: {cause}")]
    InLayer { layer: String, cause: Box<StoreError> },
    /// Malformed input: an archive, a manifest, a config, a reference.
    #[error("{0}")]
    Format(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    /// The request conflicts with the store's state (a name taken, an image in use).
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the failing path to an I/O error.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|cause| StoreError::Io { path: path.as_ref().to_path_buf(), cause })
    }
}

impl<T> IoContext<T> for Result<T, rustix::io::Errno> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| StoreError::Io { path: path.as_ref().to_path_buf(), cause: e.into() })
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> StoreError {
        StoreError::Format(format!("bad JSON: {e}"))
    }
}
