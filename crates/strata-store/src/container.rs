//! Container records (`containers/<id>/config.json`): what the image side of the store
//! must know about containers, which layers and images they hold on to.

use std::fs;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::store::Store;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image ID (`sha256:...`).
    pub image: String,
    /// The image's layer ids, base first.
    pub image_layers: Vec<String>,
    pub created: String,
}

impl Container {
    /// The container's own layers: read-write and init.
    pub fn own_layers(&self) -> [String; 2] {
        [self.id.clone(), format!("{}-init", self.id)]
    }
}

/// Every container record in the store.
pub fn list(store: &Store) -> Result<Vec<Container>> {
    let dir = store.containers_dir();
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).at(&dir)? {
        let path = e.at(&dir)?.path().join("config.json");
        match fs::read(&path) {
            Ok(bytes) => out.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Format(format!("{}: corrupt container record: {e}", path.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(path),
        }
    }
    Ok(out)
}

/// Repairs container leftovers; returns what was done. Lock held.
pub fn check(_store: &Store) -> Result<Vec<String>> {
    Ok(Vec::new())
}
