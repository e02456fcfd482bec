//! Named volumes (Docker's `local` driver): `volumes/NAME/_data` holds the content,
//! bind-mounted into the containers that use it, beside their unions (so never in a
//! layer); `volumes/NAME/volume.json` the record. A container uses volume NAME when
//! one of its `volumes` is `NAME:/path[:options]` (a source that is not a path).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::{self, Container, RunConfig};
use crate::error::{IoContext, Result, StoreError};
use crate::store::{Store, now_rfc3339, random_hex, read_json};

const RECORD: &str = "volume.json";
const DATA: &str = "_data";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    /// Always `local`.
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for a container (an image's `VOLUME`, `-v /path`): removed with it by `rm -v`
    /// and `run --rm`, and by `volume prune` without `-a`.
    #[serde(default)]
    pub anonymous: bool,
    /// Filled from an image already, or used empty once: never filled again.
    #[serde(default)]
    pub populated: bool,
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    (2..=255).contains(&name.len()) && container::valid_name(name)
}

fn volumes_dir(store: &Store) -> PathBuf {
    store.root().join("volumes")
}

/// The volume's directory in the store.
pub fn dir(store: &Store, name: &str) -> PathBuf {
    volumes_dir(store).join(name)
}

/// What containers see of the volume (its mount point on the host).
pub fn data_dir(store: &Store, name: &str) -> PathBuf {
    dir(store, name).join(DATA)
}

fn check_name(name: &str) -> Result<()> {
    if !valid_name(name) {
        return Err(StoreError::Format(format!(
            "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
        )));
    }
    Ok(())
}

/// Volume `name`, if it exists.
pub fn get(store: &Store, name: &str) -> Result<Option<VolumeRecord>> {
    if !valid_name(name) {
        return Ok(None);
    }
    read_json(&dir(store, name).join(RECORD), "volume record")
}

/// Volume `name`, or Docker's error.
pub fn find(store: &Store, name: &str) -> Result<VolumeRecord> {
    get(store, name)?.ok_or_else(|| StoreError::NoSuchVolume(name.to_string()))
}

/// Creates volume `name` (a random 64-hex name when `None`) unless it exists; returns
/// it and whether it is new. An existing volume is returned as it is (as Docker).
pub fn create(
    store: &Store,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
    anonymous: bool,
) -> Result<(VolumeRecord, bool)> {
    let name = name.map(str::to_string).unwrap_or_else(|| random_hex(32));
    check_name(&name)?;
    // Made in the staging area (before the lock: staging takes it shared), then renamed
    // in: a volume exists whole or not at all.
    let staging = store.staging()?;
    let _lock = store.lock(true)?;
    if let Some(v) = get(store, &name)? {
        return Ok((v, false));
    }
    let rec = VolumeRecord {
        name: name.clone(),
        driver: "local".into(),
        created_at: now_rfc3339(),
        labels,
        anonymous,
        populated: false,
    };
    let vdir = staging.dir.join("volume");
    let data = vdir.join(DATA);
    fs::create_dir_all(&data).at(&data)?;
    fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755)).at(&data)?;
    fs::write(vdir.join(RECORD), serde_json::to_vec_pretty(&rec)?).at(vdir.join(RECORD))?;
    let dest = dir(store, &name);
    fs::rename(&vdir, &dest).at(&dest)?;
    Ok((rec, true))
}

/// All volumes, by name.
pub fn list(store: &Store) -> Result<Vec<VolumeRecord>> {
    let d = volumes_dir(store);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(&d),
    };
    for e in entries {
        let e = e.at(&d)?;
        if let Some(v) = get(store, &e.file_name().to_string_lossy())? {
            out.push(v);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The names of the volumes a container's config uses.
pub fn names_in(config: &RunConfig) -> Vec<&str> {
    config.volumes.iter().filter_map(|v| v.split(':').next()).filter(|s| !s.starts_with('/') && !s.is_empty()).collect()
}

/// The containers that use volume `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<Container>> {
    Ok(container::list(store)?.into_iter().filter(|c| names_in(&c.config).contains(&name)).collect())
}

/// Records that the volume was filled (or found not empty) once.
pub fn set_populated(store: &Store, name: &str) -> Result<()> {
    let _lock = store.lock(true)?;
    let mut v = find(store, name)?;
    v.populated = true;
    store.write_atomic(&dir(store, name).join(RECORD), &serde_json::to_vec_pretty(&v)?)
}

/// Removes volume `name`, refused while a container uses it; returns the bytes freed.
pub fn remove(store: &Store, name: &str) -> Result<u64> {
    let _lock = store.lock(true)?;
    find(store, name)?;
    let users = users(store, name)?;
    if !users.is_empty() {
        let who: Vec<String> = users.iter().map(|c| format!("{} ({})", c.name, c.short_id())).collect();
        return Err(StoreError::Conflict(format!("remove {name}: volume is in use - [{}]", who.join(", "))));
    }
    let d = dir(store, name);
    let size = disk_usage(&d.join(DATA));
    store.discard_dir(&d)?;
    Ok(size)
}

/// Bytes the tree under `path` takes on disk (best effort; links not followed).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else { return 0 };
    let mut total = md.blocks() * 512;
    if md.is_dir() {
        for e in fs::read_dir(path).into_iter().flatten().flatten() {
            total += disk_usage(&e.path());
        }
    }
    total
}

/// Whether the volume's content directory is empty.
pub fn is_empty(store: &Store, name: &str) -> Result<bool> {
    let d = data_dir(store, name);
    Ok(fs::read_dir(&d).at(&d)?.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ab", "my-vol", "v1.2_x", &"a".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["a", "-x", ".x", "a/b", "a:b", "", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
