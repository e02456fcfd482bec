//! `load`: images from docker-archive tars, OCI image layouts (directories) and OCI
//! archives (tars of layouts), from a file or stdin, compressed or not. Every blob is
//! verified (digest and size where the format records them, every layer's diff ID
//! always); anything that fails leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::apply::{apply_layer, clean_path};
use crate::compress::{self, Compression};
use crate::digest::{Digest, DigestReader, chain_ids};
use crate::error::{IoContext, Result, StoreError};
use crate::progress::{Progress, ProgressReader};
use crate::refs;
use crate::split::SplitRecorder;
use crate::store::{StagedLayer, Staging, Store, parse_config};

/// JSON blobs (manifests, configs, indexes) larger than this are refused.
const MAX_JSON: u64 = 16 << 20;

pub enum Input<'a> {
    Path(&'a Path),
    Stdin,
}

/// An image that was loaded.
pub struct Loaded {
    pub id: Digest,
    pub tags: Vec<String>,
}

/// Where the files of an archive or layout are read from.
trait Source {
    /// Opens `path` (relative to the archive root) and tells its size.
    fn open(&self, path: &str) -> Result<(Box<dyn Read + '_>, u64)>;
    fn exists(&self, path: &str) -> bool;
    fn name(&self) -> &Path;
}

struct DirSource(PathBuf);

impl Source for DirSource {
    fn open(&self, path: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let full = self.0.join(path);
        let root =
            rustix::fs::open(&self.0, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).at(&self.0)?;
        // Symlinks inside the layout may be followed, but never out of it; opened without
        // blocking, so that a FIFO is refused instead of waited on.
        let fd = strata_union::sys::openat2(
            &root,
            path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            rustix::io::Errno::XDEV => StoreError::Format(format!(
                "{}: refused: a symbolic link on the way leads out of the layout ({})",
                full.display(),
                std::fs::read_link(&full)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "an absolute or '..' link".into())
            )),
            e => StoreError::Io { path: full.clone(), cause: e.into() },
        })?;
        let meta = rustix::fs::fstat(&fd).at(&full)?;
        if rustix::fs::FileType::from_raw_mode(meta.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(StoreError::Format(format!(
                "{}: refused: not a regular file ({:?})",
                full.display(),
                rustix::fs::FileType::from_raw_mode(meta.st_mode)
            )));
        }
        let file = File::from(fd);
        let size = file.metadata().at(&full)?.len();
        Ok((Box::new(io::BufReader::with_capacity(1 << 17, file)), size))
    }
    fn exists(&self, path: &str) -> bool {
        self.0.join(path).exists()
    }
    fn name(&self) -> &Path {
        &self.0
    }
}

enum TarItem {
    File { offset: u64, size: u64 },
    Link(String),
    Symlink(String),
}

/// A tar file read in place: an index of its members, read with positioned reads.
struct TarSource {
    path: PathBuf,
    file: File,
    items: HashMap<String, TarItem>,
}

impl TarSource {
    fn index(path: &Path, file: File) -> Result<TarSource> {
        let bad = |e: io::Error| StoreError::Format(format!("{}: not a readable tar archive: {e}", path.display()));
        let mut items = HashMap::new();
        {
            let mut ar = tar::Archive::new(&file);
            for entry in ar.entries_with_seek().map_err(bad)? {
                let entry = entry.map_err(bad)?;
                let Ok(Some(name)) = clean_path(&entry.path_bytes()) else { continue };
                let name = name.to_string_lossy().into_owned();
                let link = || entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
                let item = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        TarItem::File { offset: entry.raw_file_position(), size: entry.size() }
                    }
                    tar::EntryType::Link => TarItem::Link(link().unwrap_or_default()),
                    tar::EntryType::Symlink => TarItem::Symlink(link().unwrap_or_default()),
                    _ => continue,
                };
                items.insert(name, item);
            }
        }
        Ok(TarSource { path: path.to_path_buf(), file, items })
    }

    /// Follows links inside the archive, never out of it.
    fn resolve(&self, path: &str) -> Option<(u64, u64)> {
        let mut cur = path.to_string();
        for _ in 0..40 {
            let next = match self.items.get(&cur)? {
                TarItem::File { offset, size } => return Some((*offset, *size)),
                TarItem::Link(target) => target.clone(),
                TarItem::Symlink(target) => {
                    let base = Path::new(&cur).parent().unwrap_or(Path::new(""));

                    if target.starts_with('/') { target.clone() } else { format!("{}/{target}", base.display()) }
                }
            };
            cur = clean_path(next.as_bytes()).ok()??.to_string_lossy().into_owned();
        }
        None
    }
}

struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive member cut short"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Source for TarSource {
    fn open(&self, path: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        let (offset, size) = self
            .resolve(path)
            .ok_or_else(|| StoreError::Format(format!("{}: archive has no file '{path}'", self.path.display())))?;
        let slice = Slice { file: &self.file, pos: offset, end: offset + size };
        Ok((Box::new(io::BufReader::with_capacity(1 << 17, slice)), size))
    }
    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }
    fn name(&self) -> &Path {
        &self.path
    }
}

fn read_small(src: &dyn Source, path: &str) -> Result<Vec<u8>> {
    let (r, size) = src.open(path)?;
    if size > MAX_JSON {
        return Err(StoreError::Format(format!("{}: '{path}' is too large ({size} bytes)", src.name().display())));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(MAX_JSON).read_to_end(&mut buf).at(src.name().join(path))?;
    Ok(buf)
}

/// One image to load: its config and where each layer's blob is.
struct Plan {
    what: String,
    config: Vec<u8>,
    layers: Vec<LayerBlob>,
    tags: Vec<String>,
}

/// Where a layer's blob is and what it must be (`path` names it in errors).
pub struct LayerBlob {
    pub path: String,
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a content-addressed member name carries (`blobs/sha256/<hex>`, `<hex>.json`).
fn digest_in_name(path: &str) -> Option<Digest> {
    let name = Path::new(path).file_name()?.to_str()?;
    let hex = name.strip_suffix(".json").unwrap_or(name);
    let parent_is_sha = Path::new(path).parent().and_then(|p| p.file_name()).is_some_and(|p| p == "sha256");
    if !parent_is_sha && !name.ends_with(".json") {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

fn docker_plans(src: &dyn Source) -> Result<Vec<Plan>> {
    let manifest = read_small(src, "manifest.json")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&manifest)
        .map_err(|e| StoreError::Format(format!("{}: bad manifest.json: {e}", src.name().display())))?;
    let mut plans = Vec::new();
    for e in entries {
        let config = read_small(src, &e.config)?;
        if let Some(named) = digest_in_name(&e.config) {
            check_digest(&format!("config {}", e.config), &named, &Digest::of(&config))?;
        }
        let tags = e.repo_tags.unwrap_or_default().iter().map(|t| refs::normalize(t)).collect::<Result<Vec<_>>>()?;
        let layers = e
            .layers
            .iter()
            .map(|p| LayerBlob {
                path: p.clone(),
                digest: p.starts_with("blobs/").then(|| digest_in_name(p)).flatten(),
                size: None,
            })
            .collect();
        let what = tags.first().cloned().unwrap_or_else(|| e.config.clone());
        plans.push(Plan { what, config, layers, tags });
    }
    Ok(plans)
}

/// Manifest media types; an empty one is what umoci writes (the field is optional).
const MANIFEST_TYPES: [&str; 3] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json", ""];
const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// The GOARCH name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Reads a small blob named by a descriptor and checks its size and digest.
fn verified_blob(src: &dyn Source, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let digest: Digest = desc.digest().to_string().parse()?;
    let bytes = read_small(src, &blob_path(&digest))?;
    if bytes.len() as u64 != desc.size() {
        return Err(StoreError::SizeMismatch {
            what: format!("{what} {digest}"),
            expected: desc.size(),
            actual: bytes.len() as u64,
        });
    }
    check_digest(what, &digest, &Digest::of(&bytes))?;
    Ok(bytes)
}

/// Parses an OCI JSON document; an error names the document, the field and the cause
/// (`manifest sha256:..: layers[0].digest: invalid digest "xyz"`).
fn parse_oci<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { format!("{field}: ") };
        // The bad value itself, when the document is JSON at all.
        let value = serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| {
            e.path()
                .iter()
                .try_fold(v, |v, seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => v.get(*index).cloned(),
                    serde_path_to_error::Segment::Map { key } => v.get(key).cloned(),
                    _ => None,
                })
                .filter(|v| !v.is_object() && !v.is_array())
        });
        let value = value.map(|v| format!(" (value {v})")).unwrap_or_default();
        StoreError::Format(format!("{what}: {field}{}{value}", e.inner()))
    })
}

fn oci_plans(src: &dyn Source) -> Result<Vec<Plan>> {
    let index_path = src.name().join("index.json");
    let index: ImageIndex = parse_oci(&read_small(src, "index.json")?, &index_path.display().to_string())?;
    let mut plans = Vec::new();
    let mut queue: Vec<(Descriptor, HashMap<String, String>)> =
        index.manifests().iter().map(|d| (d.clone(), d.annotations().clone().unwrap_or_default())).collect();
    queue.reverse();
    while let Some((desc, annotations)) = queue.pop() {
        let mt = desc.media_type().to_string();
        if INDEX_TYPES.contains(&mt.as_str()) {
            let nested: ImageIndex =
                parse_oci(&verified_blob(src, &desc, "image index")?, &format!("image index {}", desc.digest()))?;
            for d in nested.manifests().iter().rev() {
                let ours = d
                    .platform()
                    .as_ref()
                    .is_none_or(|p| p.os().to_string() == "linux" && p.architecture().to_string() == host_arch());
                if ours {
                    queue.push((d.clone(), annotations.clone()));
                }
            }
            continue;
        }
        if !MANIFEST_TYPES.contains(&mt.as_str()) {
            tracing::warn!("skipping {} of media type {mt}", desc.digest());
            continue;
        }
        let manifest: ImageManifest =
            parse_oci(&verified_blob(src, &desc, "manifest")?, &format!("manifest {}", desc.digest()))?;
        let config = verified_blob(src, manifest.config(), "config")?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let digest: Digest = l.digest().to_string().parse()?;
            let mt = l.media_type().to_string();
            if !(mt.contains("layer") || mt.contains("rootfs.diff")) {
                return Err(StoreError::Format(format!("layer {digest}: unsupported media type '{mt}'")));
            }
            layers.push(LayerBlob { path: blob_path(&digest), digest: Some(digest), size: Some(l.size()) });
        }
        let name = annotations
            .get("io.containerd.image.name")
            .or_else(|| annotations.get("org.opencontainers.image.ref.name"))
            .map(|n| refs::normalize(n))
            .transpose()?;
        let what = name.clone().unwrap_or_else(|| desc.digest().to_string());
        plans.push(Plan { what, config, layers, tags: name.into_iter().collect() });
    }
    Ok(plans)
}

fn check_digest(what: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if expected != actual {
        return Err(StoreError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Free space the spooling of an archive always leaves on the store's filesystem.
const SPOOL_RESERVE: u64 = 512 << 20;

/// Copies `r`, decompressed, into `dest`: blocks of zeros become holes (a compressed
/// archive of zeros takes no space), and the copy stops with an error before the store's
/// filesystem runs short of space.
pub(crate) fn spool(r: impl Read, dest: &Path, progress: &dyn Progress) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    const BLOCK: usize = 1 << 16;
    progress.begin("Reading archive", None);
    let mut out = File::create(dest).at(dest)?;
    let mut r = compress::decompress(ProgressReader { inner: r, progress }).at(dest)?;
    let mut buf = vec![0u8; BLOCK];
    let (mut len, mut since_check) = (0u64, 0u64);
    loop {
        let mut n = 0;
        while n < BLOCK {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(dest),
            }
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|b| *b == 0) {
            out.seek(SeekFrom::Current(n as i64)).at(dest)?;
        } else {
            out.write_all(&buf[..n]).at(dest)?;
            since_check += n as u64;
        }
        len += n as u64;
        if since_check >= 64 << 20 {
            since_check = 0;
            let st = rustix::fs::fstatvfs(&out).at(dest)?;
            let free = st.f_bavail * st.f_frsize;
            if free < SPOOL_RESERVE {
                return Err(StoreError::Format(format!(
                    "{}: stopped spooling the archive after {len} bytes: only {} MiB left on the store's filesystem",
                    dest.display(),
                    free >> 20
                )));
            }
        }
    }
    out.set_len(len).at(dest)?;
    progress.end();
    Ok(())
}

fn open_source(input: Input<'_>, staging: &Staging, progress: &dyn Progress) -> Result<Box<dyn Source>> {
    let spooled = staging.dir.join("archive.tar");
    let path = match input {
        Input::Stdin => {
            spool(io::stdin().lock(), &spooled, progress)?;
            return Ok(Box::new(TarSource::index(&spooled, File::open(&spooled).at(&spooled)?)?));
        }
        Input::Path(p) => p,
    };
    let meta = std::fs::metadata(path).at(path)?;
    if meta.is_dir() {
        return Ok(Box::new(DirSource(path.to_path_buf())));
    }
    let (kind, _) = compress::sniff(File::open(path).at(path)?).at(path)?;
    if kind != Compression::None {
        spool(File::open(path).at(path)?, &spooled, progress)?;
        return Ok(Box::new(TarSource::index(&spooled, File::open(&spooled).at(&spooled)?)?));
    }
    Ok(Box::new(TarSource::index(path, File::open(path).at(path)?)?))
}

/// Loads every image of `input` into the store.
pub fn load(store: &Store, input: Input<'_>, progress: &dyn Progress) -> Result<Vec<Loaded>> {
    let staging = store.staging()?;
    let src = open_source(input, &staging, progress)?;
    let plans = if src.exists("manifest.json") {
        docker_plans(&*src)?
    } else if src.exists("index.json") {
        oci_plans(&*src)?
    } else {
        return Err(StoreError::Format(format!(
            "{}: neither a docker-archive (no manifest.json) nor an OCI layout (no index.json)",
            src.name().display()
        )));
    };
    if plans.is_empty() {
        return Err(StoreError::Format(format!("{}: holds no image", src.name().display())));
    }
    let mut loaded = Vec::new();
    for plan in plans {
        let id = load_plan(store, &*src, &plan, &staging, progress)?;
        for t in &plan.tags {
            progress.note(&format!("Loaded image: {t}"));
        }
        if plan.tags.is_empty() {
            progress.note(&format!("Loaded image ID: {id}"));
        }
        loaded.push(Loaded { id, tags: plan.tags });
    }
    Ok(loaded)
}

fn load_plan(
    store: &Store,
    src: &dyn Source,
    plan: &Plan,
    staging: &Staging,
    progress: &dyn Progress,
) -> Result<Digest> {
    let (_, diff_ids) = parse_config(&plan.config, &plan.what)?;
    if diff_ids.len() != plan.layers.len() {
        return Err(StoreError::Format(format!(
            "{}: the config lists {} diff IDs but the image has {} layers",
            plan.what,
            diff_ids.len(),
            plan.layers.len()
        )));
    }
    let chain = chain_ids(&diff_ids);
    let mut staged = BTreeMap::new();
    let mut need: Vec<String> = chain.iter().map(|c| c.hex().to_string()).filter(|c| !store.has_layer(c)).collect();
    for (i, c) in chain.iter().enumerate().filter(|(_, c)| !need.contains(&c.hex().to_string())) {
        let blob = &plan.layers[i];
        let what = format!("{} layer {}/{} ({})", plan.what, i + 1, chain.len(), blob.path);
        verify_blob(src, blob, &diff_ids[i]).map_err(|e| StoreError::InLayer { layer: what, cause: Box::new(e) })?;
        tracing::debug!("layer {} is in the store already; its blob checked", c.short());
    }
    for _attempt in 0..3 {
        for (i, c) in chain.iter().enumerate() {
            if !need.contains(&c.hex().to_string()) || staged.contains_key(c.hex()) {
                continue;
            }
            let blob = &plan.layers[i];
            let what = format!("{} layer {}/{} ({})", plan.what, i + 1, chain.len(), blob.path);
            let (r, size) = src.open(&blob.path)?;
            progress.begin(&format!("Layer {}/{} {}", i + 1, chain.len(), diff_ids[i].short()), Some(size));
            let layer = unpack_layer(r, blob, Some(&diff_ids[i]), &staging.dir, progress)
                .map_err(|e| StoreError::InLayer { layer: what.clone(), cause: Box::new(e) })?;
            staged.insert(c.hex().to_string(), layer);
        }
        match store.commit_image(&plan.config, &mut staged, &plan.tags)? {
            Ok(id) => return Ok(id),
            Err(missing) => need = missing,
        }
    }
    Err(StoreError::Conflict(format!("{}: layers kept disappearing while loading (concurrent rmi?)", plan.what)))
}

/// A blob's size and digest against what the format recorded for it, where it did.
fn check_blob(blob: &LayerBlob, digest: &Digest, size: u64) -> Result<()> {
    if let Some(expected) = blob.size
        && expected != size
    {
        return Err(StoreError::SizeMismatch { what: "blob".into(), expected, actual: size });
    }
    match &blob.digest {
        Some(expected) => check_digest("blob", expected, digest),
        None => Ok(()),
    }
}

/// Checks the blob of a layer the store has already, without unpacking it: its digest and
/// size where the format records them, else the diff ID of its content. A corrupt
/// archive is refused even when nothing of it would be written.
fn verify_blob(src: &dyn Source, blob: &LayerBlob, diff_id: &Digest) -> Result<()> {
    let (r, _) = src.open(&blob.path)?;
    let (mut blob_r, blob_d) = DigestReader::new(r);
    if blob.digest.is_some() {
        io::copy(&mut blob_r, &mut io::sink()).at(&blob.path)?;
        let (digest, size) = blob_d.result();
        return check_blob(blob, &digest, size);
    }
    let (_, decoded) = compress::decompress_sniffed(blob_r).at(&blob.path)?;
    let (mut diff_r, diff_d) = DigestReader::new(decoded);
    io::copy(&mut diff_r, &mut io::sink()).at(&blob.path)?;
    check_digest("diff ID", diff_id, &diff_d.result().0)
}

/// Unpacks one layer blob into a staging directory, verifying what can be verified; the
/// caller has begun a progress stage, which this ends.
pub fn unpack_layer(
    r: impl Read,
    blob: &LayerBlob,
    diff_id: Option<&Digest>,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<StagedLayer> {
    let name = format!("layer-{}", crate::store::random_hex(8));
    let dir = staging.join(&name);
    let split = staging.join(format!("{name}.split"));
    std::fs::create_dir(&dir).at(&dir)?;
    let (blob_r, blob_d) = DigestReader::new(ProgressReader { inner: r, progress });
    let (kind, decoded) = compress::decompress_sniffed(blob_r).at(&blob.path)?;
    // A plain tar is its own blob: its diff ID is the blob digest, hashed once.
    let (diff_r, diff_d) = match kind {
        Compression::None => (Box::new(decoded) as Box<dyn Read>, None),
        _ => {
            let (r, d) = DigestReader::new(decoded);
            (Box::new(r) as Box<dyn Read>, Some(d))
        }
    };
    let rec = SplitRecorder::create(&split)?;
    let mut tee = rec.tee(diff_r);
    let applied = apply_layer(&mut tee, &dir, Some(&rec))?;
    io::copy(&mut tee, &mut io::sink()).map_err(|e| StoreError::Format(format!("layer tar: {e}")))?;
    drop(tee);
    rec.finish(&split)?;
    progress.end();
    let (blob_digest, blob_size) = blob_d.result();
    check_blob(blob, &blob_digest, blob_size)?;
    let (actual_diff, tar_size) = diff_d.map_or((blob_digest.clone(), blob_size), |d| d.result());
    if let Some(expected) = diff_id {
        check_digest("diff ID", expected, &actual_diff)?;
    }
    Ok(StagedLayer { dir, split, diff_id: actual_diff, size: applied.bytes, tar_size })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::progress::Quiet;

    #[test]
    fn a_compressed_archive_of_zeros_spools_as_holes() {
        let dir = std::env::temp_dir().join(format!("strata-spool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        gz.write_all(b"tail").unwrap();
        let packed = gz.finish().unwrap();
        let dest = dir.join("spooled");
        spool(&packed[..], &dest, &Quiet).unwrap();
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(meta.len(), (64 << 20) + 4);
        assert!(meta.blocks() * 512 < 1 << 20, "64 MiB of zeros took {} bytes on disk", meta.blocks() * 512);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
