//! What is known of layer blobs in registries, by diff ID and compression: the blob's
//! digest and size, and the repositories (`registry/repository`) seen to have it, as
//! `ROOT/registry/<diff ID hex>.<gzip|zstd|none>` (JSON). Written by pull and push; a
//! lost or stale record only costs a compression or an upload.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_store::store::random_hex;
use strata_store::{Digest, Store};

use crate::push::PushCompression;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Known {
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub sources: Vec<String>,
}

/// Repositories remembered per blob, the most recent last.
const MAX_SOURCES: usize = 8;

fn path(store: &Store, diff_id: &Digest, c: PushCompression) -> PathBuf {
    store.root().join("registry").join(format!("{}.{}", diff_id.hex(), c.name()))
}

/// The compression a layer media type names.
pub fn compression_of(media_type: &str) -> Option<PushCompression> {
    if media_type.contains("zstd") {
        Some(PushCompression::Zstd)
    } else if media_type.contains("gzip") {
        Some(PushCompression::Gzip)
    } else if media_type.ends_with(".tar") || media_type.ends_with("diff.tar") {
        Some(PushCompression::None)
    } else {
        None
    }
}

pub fn get(store: &Store, diff_id: &Digest, c: PushCompression) -> Option<(Digest, u64, Vec<String>)> {
    let bytes = std::fs::read(path(store, diff_id, c)).ok()?;
    let k: Known = serde_json::from_slice(&bytes).ok()?;
    Some((k.digest.parse().ok()?, k.size, k.sources))
}

/// Records that blob `digest` is layer `diff_id` compressed with `c`, and that `source`
/// has it (a record for another digest is replaced).
pub fn remember(store: &Store, diff_id: &Digest, c: PushCompression, digest: &Digest, size: u64, source: Option<&str>) {
    use std::os::unix::fs::DirBuilderExt;
    let mut k = match get(store, diff_id, c) {
        Some((d, _, sources)) if d == *digest => Known { digest: d.to_string(), size, sources },
        _ => Known { digest: digest.to_string(), size, sources: Vec::new() },
    };
    if let Some(s) = source {
        k.sources.retain(|x| x != s);
        k.sources.push(s.to_string());
        if k.sources.len() > MAX_SOURCES {
            k.sources.remove(0);
        }
    }
    let path = path(store, diff_id, c);
    let Some(dir) = path.parent() else { return };
    let tmp = dir.join(format!(".tmp-{}", random_hex(6)));
    let res = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(&k).unwrap_or_default()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("cannot remember the blob of {diff_id}: {e}");
    }
}

/// For `strata check`: removes the scratch files (`.tmp-*`) a killed process left in
/// `ROOT/registry`, the ones older than an hour (a younger one may be another process's
/// record in the middle of its write). Returns what was removed.
pub fn clean_leftovers(store: &Store) -> Vec<String> {
    let dir = store.root().join("registry");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Ok(md) = e.metadata() else { continue };
        let scratch = name.to_string_lossy().starts_with(".tmp-") && md.is_file();
        if scratch && md.modified().is_ok_and(|t| t < hour_ago) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(format!("removed leftover {}", e.path().display()));
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_scratch_files_are_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("store");
        let dir = store.root().join("registry");
        std::fs::create_dir_all(&dir).expect("registry dir");
        let (old, young, record) = (dir.join(".tmp-aaaaaa"), dir.join(".tmp-bbbbbb"), dir.join("abc.gzip"));
        for p in [&old, &young, &record] {
            std::fs::write(p, "{}").expect("write");
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&old, &record] {
            std::fs::File::options().write(true).open(p).and_then(|f| f.set_modified(two_hours_ago)).expect("mtime");
        }
        let removed = clean_leftovers(&store);
        assert_eq!(removed, [format!("removed leftover {}", old.display())]);
        assert!(!old.exists() && young.exists() && record.exists());
    }
}
