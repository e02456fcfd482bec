//! `import`: a one-layer image from a root filesystem directory or tarball.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::load::{LayerBlob, host_arch, unpack_layer};
use crate::pack::pack_dir;
use crate::progress::Progress;
use crate::refs;
use crate::store::{Store, now_rfc3339};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub enum ImportSource<'a> {
    /// A directory, or a tarball (plain, gzip or zstd).
    Path(&'a Path),
    Stdin,
}

/// Imports `source` as a new image tagged `reference`; returns its ID.
pub fn import(store: &Store, source: ImportSource<'_>, reference: &str, progress: &dyn Progress) -> Result<Digest> {
    let tag = refs::normalize(reference)?;
    let staging = store.staging()?;
    let packed = staging.dir.join("rootfs.tar");
    let (tar_path, shown) = match source {
        ImportSource::Path(p) if p.is_dir() => {
            progress.begin(&format!("Packing {}", p.display()), None);
            let out = BufWriter::new(File::create(&packed).at(&packed)?);
            pack_dir(p, out, progress)?;
            progress.end();
            (packed, p.display().to_string())
        }
        ImportSource::Path(p) => (p.to_path_buf(), p.display().to_string()),
        ImportSource::Stdin => {
            let mut out = File::create(&packed).at(&packed)?;
            io::copy(&mut io::stdin().lock(), &mut out).at(&packed)?;
            (packed, "-".to_string())
        }
    };
    let file = File::open(&tar_path).at(&tar_path)?;
    let size = file.metadata().at(&tar_path)?.len();
    let blob = LayerBlob { path: shown.clone(), digest: None, size: None };
    progress.begin(&format!("Importing {shown}"), Some(size));
    let layer = unpack_layer(io::BufReader::with_capacity(1 << 17, file), &blob, None, &staging.dir, progress)?;
    let now = now_rfc3339();
    let config = serde_json::json!({
        "created": now,
        "architecture": host_arch(),
        "os": "linux",
        "config": { "Env": [DEFAULT_PATH] },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.to_string()] },
        "history": [{ "created": now, "created_by": format!("strata import {shown}"), "comment": "Imported" }],
    });
    let config = serde_json::to_vec(&config)?;
    let mut staged = BTreeMap::new();
    staged.insert(layer.diff_id.hex().to_string(), layer);
    match store.commit_image(&config, &mut staged, std::slice::from_ref(&tag))? {
        Ok(id) => {
            progress.note(&format!("Imported image: {tag} ({})", id));
            Ok(id)
        }
        Err(missing) => Err(StoreError::Conflict(format!("layer {} vanished while importing", missing.join(", ")))),
    }
}
