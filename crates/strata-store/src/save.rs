//! `save`: images out as a docker-archive, an OCI layout directory or an OCI archive.
//! Layer tars are rebuilt from the layer directories and their tar-split skeletons and
//! checked against their diff IDs, so a saved image loads back with the same image ID.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;

use crate::digest::{Digest, DigestWriter};
use crate::error::{IoContext, Result, StoreError};
use crate::progress::Progress;
use crate::refs;
use crate::split::reassemble;
use crate::store::{Image, LayerRecord, Store, random_hex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    Oci,
    OciArchive,
}

/// Where the output goes.
pub enum Output<'a> {
    Path(&'a Path),
    Stdout,
}

struct Selected {
    image: Image,
    /// The names to record: the one asked for, or all of the image's tags when asked by ID.
    names: Vec<String>,
    layers: Vec<(String, LayerRecord)>,
}

fn select(store: &Store, references: &[String]) -> Result<Vec<Selected>> {
    let mut out: Vec<Selected> = Vec::new();
    for r in references {
        let image = store.image(r)?;
        let names = match refs::normalize(r) {
            Ok(n) if image.tags.contains(&n) => vec![n],
            _ => image.tags.clone(),
        };
        let mut layers = Vec::new();
        for id in image.layer_ids() {
            let rec = store.layer(&id)?.ok_or_else(|| {
                StoreError::Format(format!("image {}: layer {id} is missing (run `strata check`)", image.id.short()))
            })?;
            layers.push((id, rec));
        }
        if let Some(prev) = out.iter_mut().find(|s| s.image.id == image.id) {
            prev.names.extend(names);
        } else {
            out.push(Selected { image, names, layers });
        }
    }
    Ok(out)
}

/// Writes the layer's tar to `out`, checking it is the tar that was loaded.
pub fn write_layer(store: &Store, id: &str, rec: &LayerRecord, out: &mut dyn Write) -> Result<()> {
    let (mut w, digester) = DigestWriter::new(out);
    reassemble(&store.split_path(id), &store.diff_dir(id), &mut w)?;
    let (digest, size) = digester.result();
    if digest.as_str() != rec.diff_id || size != rec.tar_size {
        return Err(StoreError::DigestMismatch {
            what: format!("layer {id} rebuilt from disk (its files were changed?)"),
            expected: rec.diff_id.clone(),
            actual: digest.to_string(),
        });
    }
    Ok(())
}

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    let _ = h.set_path(path); // our names are short and plain
    h.set_cksum();
    h
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    b.append(&header(path, bytes.len() as u64), Cursor::new(bytes)).at(path)
}

fn docker_archive<W: Write>(store: &Store, images: &[Selected], out: W, progress: &dyn Progress) -> Result<W> {
    let mut b = tar::Builder::new(out);
    let mut written = BTreeSet::new();
    let mut manifest = Vec::new();
    for s in images {
        let mut layer_names = Vec::new();
        for (id, rec) in &s.layers {
            let diff: Digest = rec.diff_id.parse()?;
            let name = format!("{}.tar", diff.hex());
            if written.insert(name.clone()) {
                progress.begin(&format!("Writing layer {}", diff.short()), Some(rec.tar_size));
                b.get_mut().write_all(header(&name, rec.tar_size).as_bytes()).at(&name)?;
                let mut counted = Counted { inner: b.get_mut(), progress };
                write_layer(store, id, rec, &mut counted)?;
                let pad = (512 - rec.tar_size % 512) % 512;
                b.get_mut().write_all(&vec![0u8; pad as usize]).at(&name)?;
                progress.end();
            }
            layer_names.push(name);
        }
        let config_name = format!("{}.json", s.image.id.hex());
        append_bytes(&mut b, &config_name, &s.image.config_bytes)?;
        manifest.push(serde_json::json!({ "Config": config_name, "RepoTags": s.names, "Layers": layer_names }));
    }
    append_bytes(&mut b, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    b.into_inner().at("<output>")
}

/// Writes through, reporting the bytes written.
pub struct Counted<'a, W: Write + ?Sized> {
    pub inner: &'a mut W,
    pub progress: &'a dyn Progress,
}

impl<W: Write + ?Sized> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest.to_string(), "size": size })
}

/// Writes `bytes` as a blob of layout `dir`.
fn put_blob(dir: &Path, bytes: &[u8]) -> Result<(Digest, u64)> {
    let d = Digest::of(bytes);
    let p = dir.join("blobs/sha256").join(d.hex());
    fs::write(&p, bytes).at(&p)?;
    Ok((d, bytes.len() as u64))
}

/// Writes an OCI image layout into the empty directory `dir`, layers gzip-compressed.
fn oci_layout(store: &Store, images: &[Selected], dir: &Path, progress: &dyn Progress) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).at(&blobs)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).at(dir.join("oci-layout"))?;
    let mut index = Vec::new();
    let mut done: Vec<(String, (Digest, u64))> = Vec::new();
    for s in images {
        let mut layers = Vec::new();
        for (id, rec) in &s.layers {
            let blob = match done.iter().find(|(l, _)| l == id) {
                Some((_, b)) => b.clone(),
                None => {
                    progress.begin(&format!("Compressing layer {}", &rec.diff_id[7..19]), Some(rec.tar_size));
                    let tmp = blobs.join(format!(".tmp-{}", random_hex(8)));
                    let file = BufWriter::new(File::create(&tmp).at(&tmp)?);
                    let (counted, digester) = DigestWriter::new(file);
                    let mut gz = GzEncoder::new(counted, flate2::Compression::fast());
                    write_layer(store, id, rec, &mut Counted { inner: &mut gz, progress })?;
                    let mut file = gz.finish().at(&tmp)?.into_inner();
                    file.flush().at(&tmp)?;
                    let b = digester.result();
                    fs::rename(&tmp, blobs.join(b.0.hex())).at(&tmp)?;
                    progress.end();
                    done.push((id.clone(), b.clone()));
                    b
                }
            };
            layers.push(descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &blob.0, blob.1));
        }
        let (cd, cs) = put_blob(dir, &s.image.config_bytes)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", &cd, cs),
            "layers": layers,
        });
        let (md, ms) = put_blob(dir, &serde_json::to_vec(&manifest)?)?;
        let names: Vec<Option<&String>> =
            if s.names.is_empty() { vec![None] } else { s.names.iter().map(Some).collect() };
        for n in names {
            let mut d = descriptor("application/vnd.oci.image.manifest.v1+json", &md, ms);
            if let Some(n) = n {
                // The whole name as ref.name (Docker writes only the tag, which is
                // ambiguous when two images share it; umoci and skopeo take `name:tag`).
                d["annotations"] = serde_json::json!({
                    "io.containerd.image.name": n,
                    "org.opencontainers.image.ref.name": n,
                });
            }
            index.push(d);
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?).at(dir.join("index.json"))
}

/// Tars an OCI layout directory (regular files and directories only).
fn tar_layout<W: Write>(dir: &Path, out: W) -> Result<W> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    for name in ["oci-layout", "index.json"] {
        b.append_path_with_name(dir.join(name), name).at(dir.join(name))?;
    }
    b.append_dir("blobs", dir.join("blobs")).at(dir)?;
    b.append_dir("blobs/sha256", dir.join("blobs/sha256")).at(dir)?;
    let blobs = dir.join("blobs/sha256");
    let mut names: Vec<_> =
        fs::read_dir(&blobs).at(&blobs)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>().at(&blobs)?;
    names.sort();
    for n in names {
        let p = blobs.join(&n);
        b.append_path_with_name(&p, Path::new("blobs/sha256").join(&n)).at(&p)?;
    }
    b.into_inner().at(dir)
}

/// Saves `references` (names or IDs) to `output` in `format`. A file or directory output
/// appears only when complete.
pub fn save(
    store: &Store,
    references: &[String],
    output: Output<'_>,
    format: SaveFormat,
    progress: &dyn Progress,
) -> Result<()> {
    let images = select(store, references)?;
    match (format, output) {
        (SaveFormat::Oci, Output::Stdout) => {
            Err(StoreError::Format("an OCI layout is a directory: give it with -o".into()))
        }
        (SaveFormat::Oci, Output::Path(dest)) => {
            if dest.exists() && fs::read_dir(dest).at(dest)?.next().is_some() {
                return Err(StoreError::Conflict(format!("{}: exists and is not empty", dest.display())));
            }
            let tmp = sibling_temp(dest);
            fs::create_dir(&tmp).at(&tmp)?;
            let res = oci_layout(store, &images, &tmp, progress).and_then(|()| {
                if dest.exists() {
                    fs::remove_dir(dest).at(dest)?;
                }
                fs::rename(&tmp, dest).at(dest)
            });
            if res.is_err() {
                let _ = fs::remove_dir_all(&tmp);
            }
            res
        }
        (format, output) => {
            let staging = store.staging()?;
            let write = |w: &mut dyn Write| -> Result<()> {
                match format {
                    SaveFormat::DockerArchive => {
                        docker_archive(store, &images, w, progress)?;
                    }
                    _ => {
                        let layout = staging.dir.join("layout");
                        fs::create_dir(&layout).at(&layout)?;
                        oci_layout(store, &images, &layout, progress)?;
                        tar_layout(&layout, w)?;
                    }
                }
                Ok(())
            };
            match output {
                Output::Stdout => {
                    let mut out = BufWriter::with_capacity(1 << 17, io::stdout().lock());
                    write(&mut out)?;
                    out.flush().at("<stdout>")
                }
                Output::Path(dest) => {
                    let dest = &follow_links(dest)?;
                    if let Ok(meta) = fs::metadata(dest)
                        && !meta.is_file()
                    {
                        if meta.is_dir() {
                            return Err(StoreError::Conflict(format!("{}: is a directory", dest.display())));
                        }
                        // A device, a FIFO, a socket: written to, never replaced.
                        let file = fs::OpenOptions::new().write(true).open(dest).at(dest)?;
                        let mut out = BufWriter::with_capacity(1 << 17, file);
                        write(&mut out)?;
                        return out.flush().at(dest);
                    }
                    let tmp = sibling_temp(dest);
                    let res = (|| {
                        let mut out = BufWriter::with_capacity(1 << 17, File::create(&tmp).at(&tmp)?);
                        write(&mut out)?;
                        let file = out.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
                        file.sync_all().at(&tmp)?;
                        fs::rename(&tmp, dest).at(dest)
                    })();
                    if res.is_err() {
                        let _ = fs::remove_file(&tmp);
                    }
                    res
                }
            }
        }
    }
}

/// The file a path names: a symbolic link is followed (to a target that may not exist
/// yet), so that saving to a link writes the file it names rather than replacing it.
fn follow_links(dest: &Path) -> Result<PathBuf> {
    let mut path = dest.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&path).at(&path)?;
                path = path.parent().unwrap_or(Path::new("/")).join(target);
            }
            _ => return Ok(path),
        }
    }
    Err(StoreError::Format(format!("{}: too many levels of symbolic links", dest.display())))
}

fn sibling_temp(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.strata-tmp-{}", random_hex(4)))
}
