//! The build cache: `build-cache/<key>.json` holds, byte for byte, the image config a
//! build step produced; `<key>` is the hex SHA-256 the builder computed from the step's
//! parent and inputs. The layers of a record are kept by `rmi` (they are referenced, like
//! an image's), so the cache outlives the images built with it; `check` drops records
//! that are corrupt or lost a layer; `prune` drops them all (`strata builder prune`).

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use crate::digest::chain_ids;
use crate::error::{IoContext, Result};
use crate::store::{Store, parse_config, remove_if_exists};

const DIR: &str = "build-cache";

fn path(store: &Store, key: &str) -> PathBuf {
    store.root().join(DIR).join(format!("{key}.json"))
}

fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The layer ids (chain IDs) a config names.
fn layers_of(bytes: &[u8], what: &str) -> Result<Vec<String>> {
    let (_, diff_ids) = parse_config(bytes, what)?;
    Ok(chain_ids(&diff_ids).iter().map(|c| c.hex().to_string()).collect())
}

/// The config recorded for `key`, if there is one and all its layers exist.
pub fn get(store: &Store, key: &str) -> Result<Option<Vec<u8>>> {
    if !valid_key(key) {
        return Ok(None);
    }
    let _lock = store.lock(false)?;
    let p = path(store, key);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&p),
    };
    match layers_of(&bytes, key) {
        Ok(layers) if layers.iter().all(|l| store.has_layer(l)) => Ok(Some(bytes)),
        _ => Ok(None),
    }
}

/// Records `config` for `key`.
pub fn put(store: &Store, key: &str, config: &[u8]) -> Result<()> {
    if !valid_key(key) {
        return Err(crate::StoreError::Format(format!("bad build cache key '{key}'")));
    }
    layers_of(config, key)?;
    let dir = store.root().join(DIR);
    // Root's only, as every directory of the store.
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).at(&dir),
    }
    let _lock = store.lock(true)?;
    store.write_atomic(&path(store, key), config)
}

fn records(store: &Store) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let dir = store.root().join(DIR);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(&dir),
    };
    for e in entries {
        let p = e.at(&dir)?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let bytes = fs::read(&p).at(&p)?;
            out.push((p, bytes));
        }
    }
    Ok(out)
}

/// Layers the records use (lock held by the caller). A corrupt record keeps nothing.
pub(crate) fn layers(store: &Store) -> Result<BTreeSet<String>> {
    let mut keep = BTreeSet::new();
    for (p, bytes) in records(store)? {
        if let Ok(l) = layers_of(&bytes, &p.display().to_string()) {
            keep.extend(l);
        }
    }
    Ok(keep)
}

/// For `check` (lock held): removes records that are corrupt, misnamed or lost a layer.
pub(crate) fn check(store: &Store) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (p, bytes) in records(store)? {
        let key = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let ok = valid_key(&key) && layers_of(&bytes, &key).is_ok_and(|l| l.iter().all(|id| store.has_layer(id)));
        if !ok {
            remove_if_exists(&p)?;
            done.push(format!("removed build cache record {} (corrupt, or a layer is gone)", p.display()));
        }
    }
    Ok(done)
}

/// `builder prune`: removes every record, then the layers nothing else references.
/// Returns the number of records and the layers deleted.
pub fn prune(store: &Store) -> Result<(usize, Vec<String>)> {
    let _lock = store.lock(true)?;
    let all = records(store)?;
    for (p, _) in &all {
        remove_if_exists(p)?;
    }
    Ok((all.len(), store.collect_layers()?))
}
