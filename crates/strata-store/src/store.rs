//! The store on disk (see docs/on-disk-format.md):
//!
//! ```text
//! ROOT/lock                   flock: exclusive while metadata changes, shared while read
//! ROOT/diff/<layer>/          a layer's files, AUFS whiteout form; <layer> = chain ID hex
//! ROOT/layers/<layer>         the layer's ancestors, one per line, nearest first (Docker aufs)
//! ROOT/layerdb/<layer>.json   the layer's record; its presence is what makes the layer exist
//! ROOT/layerdb/<layer>.split  the layer tar's skeleton (tar-split), to rebuild it on save
//! ROOT/images/<id>.json       image config, byte for byte; id = sha256 of those bytes
//! ROOT/repositories.json      {"name:tag": "sha256:<id>"}
//! ROOT/containers/<id>/       containers
//! ROOT/build-cache/<key>.json the build cache's records (see buildcache.rs)
//! ROOT/mnt/<id>/              mount points
//! ROOT/tmp/                   staging; everything here is disposable
//! ```
//!
//! Every metadata file is written to `tmp/`, synced and renamed into place under the
//! exclusive lock, so a reader sees the old or the new file and a killed process leaves
//! only `tmp/` leftovers, which [`Store::check`] removes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, chain_ids};
use crate::error::{IoContext, Result, StoreError};
use crate::refs;

pub const DEFAULT_ROOT: &str = "/var/lib/strata";
const DIRS: [&str; 8] = ["diff", "layers", "layerdb", "images", "containers", "mnt", "tmp", "volumes"];

pub struct Store {
    root: PathBuf,
}

/// A layer's record (`layerdb/<id>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerRecord {
    pub id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    /// Bytes of regular-file content in the layer.
    pub size: u64,
    /// Bytes of the uncompressed layer tar.
    pub tar_size: u64,
    pub created: String,
}

/// An image: its config bytes and what the store knows about it.
pub struct Image {
    pub id: Digest,
    pub config_bytes: Vec<u8>,
    pub config: serde_json::Value,
    pub diff_ids: Vec<Digest>,
    pub tags: Vec<String>,
}

impl Image {
    /// The image's layer ids, base first.
    pub fn layer_ids(&self) -> Vec<String> {
        chain_ids(&self.diff_ids).iter().map(|c| c.hex().to_string()).collect()
    }

    pub fn created(&self) -> Option<&str> {
        self.config.get("created").and_then(|c| c.as_str())
    }
}

/// Parses an image config: `rootfs.type` must be `layers` and every diff ID valid.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<(serde_json::Value, Vec<Digest>)> {
    let config: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Format(format!("{what}: bad image config: {e}")))?;
    let rootfs = config.get("rootfs").ok_or_else(|| StoreError::Format(format!("{what}: config has no rootfs")))?;
    if rootfs.get("type").and_then(|t| t.as_str()) != Some("layers") {
        return Err(StoreError::Format(format!("{what}: rootfs.type must be \"layers\"")));
    }
    let diff_ids = rootfs
        .get("diff_ids")
        .and_then(|d| d.as_array())
        .ok_or_else(|| StoreError::Format(format!("{what}: config has no rootfs.diff_ids")))?
        .iter()
        .map(|d| d.as_str().unwrap_or("").parse())
        .collect::<Result<Vec<Digest>>>()?;
    Ok((config, diff_ids))
}

/// The store's lock, released on drop (closing the file releases the flock).
pub struct StoreLock(#[allow(dead_code)] File);

/// A private directory under `tmp/`, flocked for its owner's life so that `check` can
/// tell an abandoned one from one in use; removed on drop.
pub struct Staging {
    pub dir: PathBuf,
    _lock: File,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// A layer unpacked in a staging directory, verified, ready to be registered.
pub struct StagedLayer {
    pub dir: PathBuf,
    pub split: PathBuf,
    pub diff_id: Digest,
    pub size: u64,
    pub tar_size: u64,
}

/// What [`Store::check`] found and did.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub repaired: Vec<String>,
    pub problems: Vec<String>,
}

fn lock_file(file: &File, exclusive: bool, wait: bool) -> rustix::io::Result<()> {
    use rustix::fs::FlockOperation as F;
    let op = match (exclusive, wait) {
        (true, true) => F::LockExclusive,
        (true, false) => F::NonBlockingLockExclusive,
        (false, true) => F::LockShared,
        (false, false) => F::NonBlockingLockShared,
    };
    rustix::fs::flock(file.as_fd(), op)
}

/// A random hex id of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(_) => continue,
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        use std::os::unix::fs::PermissionsExt;
        let new = !root.exists();
        fs::create_dir_all(root).at(root)?;
        // Absolute and symlink-free: mount points are compared with the mount table.
        let root = root.canonicalize().at(root)?;
        // Layers and mounts hold what untrusted images and containers hold (set-id
        // binaries, device nodes, a container's writable /tmp): only root may reach any
        // of them, so every directory below ROOT is 0700 whatever its mode was (a store
        // made by an older Strata had mnt/ at 0711). A directory the user gave that
        // already existed keeps its own mode.
        if new {
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).at(&root)?;
        }
        for d in DIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).at(&p)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).at(&p)?;
        }
        let lock = root.join("lock");
        if !lock.exists() {
            File::create(&lock).at(&lock)?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn diff_dir(&self, layer: &str) -> PathBuf {
        self.root.join("diff").join(layer)
    }
    fn layer_record_path(&self, layer: &str) -> PathBuf {
        self.root.join("layerdb").join(format!("{layer}.json"))
    }
    pub fn split_path(&self, layer: &str) -> PathBuf {
        self.root.join("layerdb").join(format!("{layer}.split"))
    }
    pub(crate) fn ancestors_path(&self, layer: &str) -> PathBuf {
        self.root.join("layers").join(layer)
    }
    fn image_path(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }
    fn tags_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn mnt_dir(&self, id: &str) -> PathBuf {
        self.root.join("mnt").join(id)
    }

    /// Takes the store lock (exclusive to change metadata, shared to read it).
    pub fn lock(&self, exclusive: bool) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let file = File::open(&path).at(&path)?;
        lock_file(&file, exclusive, true).at(&path)?;
        Ok(StoreLock(file))
    }

    /// A fresh staging directory.
    pub fn staging(&self) -> Result<Staging> {
        // Made and flocked under the store lock: `check` never sees it unowned.
        let _lock = self.lock(false)?;
        let dir = self.root.join("tmp").join(format!("stage-{}", random_hex(8)));
        fs::create_dir(&dir).at(&dir)?;
        let lock_path = dir.join(".owner");
        let lock = File::create(&lock_path).at(&lock_path)?;
        lock_file(&lock, true, false).at(&lock_path)?;
        Ok(Staging { dir, _lock: lock })
    }

    /// Writes `bytes` to `path` atomically: temp file in `tmp/`, fsync, rename, fsync of
    /// the directory. Call with the exclusive lock held.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.root.join("tmp").join(format!("write-{}", random_hex(8)));
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).at(&tmp)?;
        let res =
            f.write_all(bytes).and_then(|()| f.sync_all()).at(&tmp).and_then(|()| fs::rename(&tmp, path).at(path));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res?;
        sync_parent(path)
    }

    // ------------------------------------------------------------------ layers

    pub fn layer(&self, id: &str) -> Result<Option<LayerRecord>> {
        read_json(&self.layer_record_path(id), "layer record")
    }

    pub fn has_layer(&self, id: &str) -> bool {
        self.layer_record_path(id).exists()
    }

    /// Registers image `config_bytes` whose layers are either in the store or in `staged`
    /// (by chain ID hex), and points `tags` at it. Returns the chain IDs that are neither
    /// (removed by a concurrent `rmi` since they were found present): the caller unpacks
    /// those and tries again.
    pub fn commit_image(
        &self,
        config_bytes: &[u8],
        staged: &mut BTreeMap<String, StagedLayer>,
        tags: &[String],
    ) -> Result<std::result::Result<Digest, Vec<String>>> {
        let id = Digest::of(config_bytes);
        let (_, diff_ids) = parse_config(config_bytes, id.as_str())?;
        let chain: Vec<String> = chain_ids(&diff_ids).iter().map(|c| c.hex().to_string()).collect();
        let _lock = self.lock(true)?;
        let missing: Vec<String> =
            chain.iter().filter(|c| !self.has_layer(c) && !staged.contains_key(*c)).cloned().collect();
        if !missing.is_empty() {
            return Ok(Err(missing));
        }
        // The staged files reach the disk before any record says their layer exists: one
        // syncfs for all of them (staging is in `tmp/`, on the store's filesystem).
        if chain.iter().any(|c| !self.has_layer(c) && staged.contains_key(c)) {
            let tmp = self.root.join("tmp");
            rustix::fs::syncfs(File::open(&tmp).at(&tmp)?).at(&tmp)?;
        }
        for (i, layer) in chain.iter().enumerate() {
            if self.has_layer(layer) {
                continue;
            }
            let Some(s) = staged.remove(layer) else { continue };
            let ancestors: Vec<&str> = chain[..i].iter().rev().map(String::as_str).collect();
            self.register_layer(layer, ancestors, s)?;
        }
        self.write_atomic(&self.image_path(&id), config_bytes)?;
        if !tags.is_empty() {
            let mut all = self.read_tags()?;
            for t in tags {
                all.insert(t.clone(), id.to_string());
            }
            self.write_tags(&all)?;
        }
        Ok(Ok(id))
    }

    /// Moves a staged layer, its files already synced, into place; its record is written
    /// last, so until then the layer does not exist and `check` may remove the pieces.
    /// Lock held.
    fn register_layer(&self, id: &str, ancestors: Vec<&str>, s: StagedLayer) -> Result<()> {
        let dir = self.diff_dir(id);
        if dir.exists() {
            self.discard_dir(&dir)?; // a leftover of a killed process: no record points at it
        }
        fs::rename(&s.dir, &dir).at(&dir)?;
        fs::rename(&s.split, self.split_path(id)).at(self.split_path(id))?;
        sync_parent(&dir)?;
        let mut text = ancestors.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        self.write_atomic(&self.ancestors_path(id), text.as_bytes())?;
        let record = LayerRecord {
            id: id.to_string(),
            diff_id: s.diff_id.to_string(),
            parent: ancestors.first().map(|p| p.to_string()),
            size: s.size,
            tar_size: s.tar_size,
            created: now_rfc3339(),
        };
        // write_atomic syncs layerdb/, where the split file went too.
        self.write_atomic(&self.layer_record_path(id), &serde_json::to_vec_pretty(&record)?)
    }

    /// Moves a directory out of the store's view into `tmp/` and deletes it there.
    pub(crate) fn discard_dir(&self, dir: &Path) -> Result<()> {
        let trash = self.root.join("tmp").join(format!("trash-{}", random_hex(8)));
        fs::rename(dir, &trash).at(dir)?;
        fs::remove_dir_all(&trash).at(&trash)
    }

    /// Deletes a layer: its record first (from then on it does not exist), then the rest.
    fn remove_layer(&self, id: &str) -> Result<()> {
        remove_if_exists(&self.layer_record_path(id))?;
        remove_if_exists(&self.split_path(id))?;
        remove_if_exists(&self.ancestors_path(id))?;
        let dir = self.diff_dir(id);
        if dir.exists() {
            self.discard_dir(&dir)?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ images and tags

    pub fn read_tags(&self) -> Result<BTreeMap<String, String>> {
        Ok(read_json(&self.tags_path(), "tag file")?.unwrap_or_default())
    }

    fn write_tags(&self, tags: &BTreeMap<String, String>) -> Result<()> {
        self.write_atomic(&self.tags_path(), &serde_json::to_vec_pretty(tags)?)
    }

    pub fn image_ids(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("images");
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let name = e.at(&dir)?.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".json")
                && let Ok(d) = format!("sha256:{hex}").parse::<Digest>()
            {
                ids.push(d);
            }
        }
        Ok(ids)
    }

    fn load_image(&self, id: &Digest, tags: &BTreeMap<String, String>) -> Result<Image> {
        let p = self.image_path(id);
        let config_bytes = fs::read(&p).at(&p)?;
        let (config, diff_ids) = parse_config(&config_bytes, id.as_str())?;
        let tags = tags.iter().filter(|(_, v)| **v == id.as_str()).map(|(k, _)| k.clone()).collect();
        Ok(Image { id: id.clone(), config_bytes, config, diff_ids, tags })
    }

    pub fn images(&self) -> Result<Vec<Image>> {
        let _lock = self.lock(false)?;
        let tags = self.read_tags()?;
        self.image_ids()?.iter().map(|id| self.load_image(id, &tags)).collect()
    }

    /// Finds an image by `name[:tag]`, by ID (`sha256:...`) or by a unique ID prefix.
    pub fn image(&self, reference: &str) -> Result<Image> {
        let _lock = self.lock(false)?;
        self.image_locked(reference)
    }

    fn image_locked(&self, reference: &str) -> Result<Image> {
        let tags = self.read_tags()?;
        if let Ok(name) = refs::normalize(reference)
            && let Some(id) = tags.get(&name)
        {
            let id: Digest = id.parse()?;
            return self.load_image(&id, &tags);
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let found: Vec<Digest> = self.image_ids()?.into_iter().filter(|d| d.hex().starts_with(&hex)).collect();
            match found.len() {
                1 => return self.load_image(&found[0], &tags),
                0 => {}
                _ => return Err(StoreError::Conflict(format!("image ID prefix '{reference}' is ambiguous"))),
            }
        }
        Err(StoreError::NoSuchImage(reference.to_string()))
    }

    /// Points `new_ref` at the image `reference` names.
    pub fn tag(&self, reference: &str, new_ref: &str) -> Result<String> {
        let name = refs::normalize(new_ref)?;
        let _lock = self.lock(true)?;
        let image = self.image_locked(reference)?;
        let mut tags = self.read_tags()?;
        tags.insert(name.clone(), image.id.to_string());
        self.write_tags(&tags)?;
        Ok(name)
    }

    /// The image IDs that containers are using (read from their records).
    fn images_in_use(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in crate::container::list(self)? {
            used.entry(c.image.clone()).or_default().push(c.name.clone());
        }
        Ok(used)
    }

    /// `rmi`: a tag is removed; the image goes with its last tag (or when named by ID),
    /// unless a container uses it (then only with `force`, and its layers stay while the
    /// container does). Unreferenced layers are deleted. Returns what was done, line by line.
    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<String>> {
        let _lock = self.lock(true)?;
        let image = self.image_locked(reference)?;
        let mut tags = self.read_tags()?;
        let by_tag = refs::normalize(reference).ok().filter(|n| tags.contains_key(n));
        let mut done = Vec::new();
        if let Some(name) = &by_tag {
            if image.tags.len() > 1 {
                tags.remove(name);
                self.write_tags(&tags)?;
                return Ok(vec![format!("Untagged: {name}")]);
            }
        } else if image.tags.len() > 1 && !force {
            return Err(StoreError::Conflict(format!(
                "image {} is tagged {}: remove the tags one by one, or use -f",
                image.id.short(),
                image.tags.join(", ")
            )));
        }
        if let Some(users) = self.images_in_use()?.get(image.id.as_str())
            && !force
        {
            return Err(StoreError::Conflict(format!(
                "image {} is used by container(s) {}: remove them first, or use -f",
                reference,
                users.join(", ")
            )));
        }
        for t in &image.tags {
            tags.remove(t);
            done.push(format!("Untagged: {t}"));
        }
        self.write_tags(&tags)?;
        remove_if_exists(&self.image_path(&image.id))?;
        done.push(format!("Deleted: {}", image.id));
        for layer in self.collect_layers()? {
            done.push(format!("Deleted layer: {layer}"));
        }
        Ok(done)
    }

    /// Layers referenced by an image or a container.
    fn referenced_layers(&self) -> Result<BTreeSet<String>> {
        let tags = BTreeMap::new();
        let mut keep = BTreeSet::new();
        for id in self.image_ids()? {
            // An image that cannot be read stops the collection: its layers might be
            // taken for unused ones.
            let img = self
                .load_image(&id, &tags)
                .map_err(|e| StoreError::Format(format!("image {id} cannot be read ({e}); run `strata check`")))?;
            keep.extend(img.layer_ids());
        }
        for c in crate::container::list(self)? {
            keep.extend(c.image_layers.iter().cloned());
        }
        keep.extend(crate::buildcache::layers(self)?);
        Ok(keep)
    }

    /// Deletes layers nothing references. Lock held.
    pub(crate) fn collect_layers(&self) -> Result<Vec<String>> {
        let keep = self.referenced_layers()?;
        let mut removed = Vec::new();
        for id in self.layer_ids()? {
            if !keep.contains(&id) {
                self.remove_layer(&id)?;
                removed.push(id);
            }
        }
        Ok(removed)
    }

    /// Ids of the layers that have records.
    pub fn layer_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("layerdb");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let name = e.at(&dir)?.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ check

    /// Finds and repairs what a killed process can leave behind, and reports damage it
    /// cannot repair (an image whose layer was deleted by hand).
    pub fn check(&self) -> Result<CheckReport> {
        let _lock = self.lock(true)?;
        let mut report = CheckReport::default();
        // Staging and temp files whose owner is gone.
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).at(&tmp)? {
            let path = e.at(&tmp)?.path();
            if path.is_dir() {
                if let Ok(f) = File::open(path.join(".owner"))
                    && lock_file(&f, true, false).is_err()
                {
                    continue; // its owner is alive
                }
                fs::remove_dir_all(&path).at(&path)?;
            } else {
                fs::remove_file(&path).at(&path)?;
            }
            report.repaired.push(format!("removed leftover {}", path.display()));
        }
        let layers: BTreeSet<String> = self.layer_ids()?.into_iter().collect();
        let container_layers: BTreeSet<String> =
            crate::container::list(self)?.iter().flat_map(|c| c.own_layers()).collect();
        // Layer records whose files are gone: the layer is lost.
        for id in &layers {
            if !self.diff_dir(id).is_dir() || !self.split_path(id).is_file() {
                self.remove_layer(id)?;
                report.problems.push(format!("layer {id} was damaged (files missing) and is removed"));
            }
        }
        // Pieces of layers that were never registered.
        for (dir, suffix) in [("diff", ""), ("layers", ""), ("layerdb", ".split")] {
            let d = self.root.join(dir);
            for e in fs::read_dir(&d).at(&d)? {
                let e = e.at(&d)?;
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_suffix(suffix) else { continue };
                if dir == "layerdb" && name.ends_with(".json") {
                    continue;
                }
                if layers.contains(id) || container_layers.contains(id) {
                    continue;
                }
                let path = e.path();
                if path.is_dir() {
                    self.discard_dir(&path)?
                } else {
                    fs::remove_file(&path).at(&path)?
                }
                report.repaired.push(format!("removed unregistered {}", path.display()));
            }
        }
        // Images whose layers are gone cannot be used: drop them and their tags.
        let mut tags = self.read_tags()?;
        let none = BTreeMap::new();
        for id in self.image_ids()? {
            let ok = match self.load_image(&id, &none) {
                Ok(img) => img.layer_ids().iter().all(|l| self.has_layer(l)),
                Err(_) => false,
            };
            if !ok {
                remove_if_exists(&self.image_path(&id))?;
                report
                    .problems
                    .push(format!("image {id} lost a layer or its config is corrupt: removed (load it again)"));
            }
        }
        report.repaired.extend(crate::buildcache::check(self)?);
        let before = tags.len();
        tags.retain(|_, id| id.parse::<Digest>().is_ok_and(|d| self.image_path(&d).exists()));
        if tags.len() != before {
            self.write_tags(&tags)?;
            report.repaired.push(format!("removed {} tag(s) of missing images", before - tags.len()));
        }
        report.repaired.extend(crate::container::check(self)?);
        Ok(report)
    }
}

/// A JSON file of the store (`what` names it in errors); `None` when it does not exist.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Format(format!("{}: corrupt {what}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(path),
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    File::open(parent).and_then(|d| d.sync_all()).at(parent)
}
