//! `push`: each layer as the registry needs it (rebuilt from the store and checked
//! against its diff ID, compressed into staging), uploaded only when a HEAD says the
//! registry lacks it (monolithic: POST, then PUT with the digest); then the config, then
//! the manifest. The config goes byte for byte, so the image ID stays the same.
//!
//! The digest each layer got compressed is remembered by diff ID ([`crate::blobs`]), so
//! that pushing a layer again costs a HEAD, not a compression; a blob another repository
//! of the same registry has is mounted from it, not uploaded.

use std::io::BufWriter;
use std::path::Path;

use strata_store::digest::DigestWriter;
use strata_store::save::{Counted, write_layer};
use strata_store::store::{LayerRecord, random_hex};
use strata_store::{Digest, Store, StoreError};

use crate::client::{Body, Client, Options};
use crate::error::{RegistryError, Result};
use crate::parallel::for_each;
use crate::pull::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::{Reporter, blobs};
use strata_store::refs::Reference;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    Oci,
    DockerV2S2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushCompression {
    Gzip,
    Zstd,
    None,
}

impl PushCompression {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PushCompression::Gzip => "gzip",
            PushCompression::Zstd => "zstd",
            PushCompression::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PushOptions {
    pub net: Options,
    pub format: PushFormat,
    pub compression: PushCompression,
    pub jobs: usize,
    /// Upload layers in PATCHes of this many bytes (default: one PUT each).
    pub chunk_size: Option<u64>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            net: Options::default(),
            format: PushFormat::Oci,
            compression: PushCompression::Gzip,
            jobs: 3,
            chunk_size: None,
        }
    }
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    pub manifest_digest: Digest,
    /// Blobs (layers and config) uploaded, mounted from another repository, and present.
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
}

/// How a layer got to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Present,
    Mounted,
    Uploaded,
}

/// Writes layer `id`'s blob, compressed as asked, to `path`; returns its digest and size.
fn make_blob(
    store: &Store,
    id: &str,
    rec: &LayerRecord,
    c: PushCompression,
    path: &Path,
    progress: &dyn strata_store::Progress,
) -> Result<(Digest, u64)> {
    let io = |e: std::io::Error| StoreError::Io { path: path.to_path_buf(), cause: e };
    let file = BufWriter::with_capacity(1 << 17, std::fs::File::create(path).map_err(io)?);
    let (mut out, digester) = DigestWriter::new(file);
    match c {
        PushCompression::None => write_layer(store, id, rec, &mut Counted { inner: &mut out, progress })?,
        PushCompression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            write_layer(store, id, rec, &mut Counted { inner: &mut gz, progress })?;
            gz.finish().map_err(io)?;
        }
        PushCompression::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(&mut out, 3).map_err(io)?;
            write_layer(store, id, rec, &mut Counted { inner: &mut z, progress })?;
            z.finish().map_err(io)?;
        }
    }
    out.into_inner().into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    Ok(digester.result())
}

/// Whether the repository has blob `digest` (a HEAD).
fn has_blob(client: &Client, digest: &Digest) -> Result<bool> {
    match client.request(
        "HEAD",
        &client.repo_path(&format!("blobs/{digest}")),
        &[],
        Body::Empty,
        &format!("blob {digest}"),
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.status() == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A cross-repository mount (`POST ?mount=&from=`): true when the registry mounted the
/// blob (201); anything else and the blob is uploaded. A 202 opened an upload session
/// instead, which is cancelled (the blob is not made yet).
fn mount(client: &Client, digest: &Digest, from: &str) -> Result<bool> {
    let what = format!("mount of blob {digest} from {from}");
    let path = client.repo_path(&format!("blobs/uploads/?mount={digest}&from={from}"));
    match client.request("POST", &path, &[("Content-Length", "0")], Body::Empty, &what) {
        Ok(resp) if resp.status() == 202 => {
            if let Ok(location) = location_of(client, &resp, &what) {
                let _ = client.request("DELETE", &location, &[], Body::Empty, &what);
            }
            Ok(false)
        }
        Ok(resp) => Ok(resp.status() == 201),
        Err(e) if matches!(e.status(), Some(400..=499)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// An upload: POST for a session, then the whole blob in the PUT that names its digest
/// (monolithic), or PATCHes of `chunk` bytes each and an empty PUT (chunked, for
/// registries or proxies that limit the size of a request).
fn upload(client: &Client, digest: &Digest, body: Body<'_>, chunk: Option<u64>) -> Result<()> {
    let what = format!("upload of blob {digest}");
    let resp =
        client.request("POST", &client.repo_path("blobs/uploads/"), &[("Content-Length", "0")], Body::Empty, &what)?;
    let mut location = location_of(client, &resp, &what)?;
    let body = match (body, chunk) {
        (Body::File { path, offset: 0, len, progress }, Some(chunk)) if chunk > 0 && len > chunk => {
            let mut offset = 0;
            while offset < len {
                let n = chunk.min(len - offset);
                let range = format!("{offset}-{}", offset + n - 1);
                let part = Body::File { path, offset, len: n, progress };
                let headers = [("Content-Type", "application/octet-stream"), ("Content-Range", range.as_str())];
                let resp = client.request("PATCH", &location, &headers, part, &what)?;
                location = location_of(client, &resp, &what)?;
                offset += n;
            }
            Body::Empty
        }
        (body, _) => body,
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={digest}");
    let headers = [("Content-Type", "application/octet-stream")];
    let headers = if matches!(body, Body::Empty) { &[("Content-Length", "0")][..] } else { &headers[..] };
    client.request("PUT", &url, headers, body, &what)?;
    Ok(())
}

/// The upload session's `Location`, which every step of an upload answers with.
fn location_of(client: &Client, resp: &ureq::Response, what: &str) -> Result<String> {
    resp.header("Location").map(str::to_string).ok_or_else(|| RegistryError::Refused {
        registry: client.registry().to_string(),
        what: what.to_string(),
        message: "no Location for the upload".into(),
    })
}

/// Pushes image `image` of the store to `dest`.
pub fn push(
    store: &Store,
    image: &str,
    dest: &Reference,
    opts: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<Pushed> {
    let (manifest_type, config_type, layer_type) = match (opts.format, opts.compression) {
        (PushFormat::Oci, c) => (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            match c {
                PushCompression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                PushCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                PushCompression::None => "application/vnd.oci.image.layer.v1.tar",
            },
        ),
        (PushFormat::DockerV2S2, PushCompression::Zstd) => {
            return Err(RegistryError::Reference("zstd layers need --format oci (Docker schema 2 has no zstd)".into()));
        }
        (PushFormat::DockerV2S2, c) => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            if c == PushCompression::Gzip {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else {
                "application/vnd.docker.image.rootfs.diff.tar"
            },
        ),
    };
    let img = store.image(image)?;
    let mut layers = Vec::new();
    for (id, diff_id) in img.layer_ids().into_iter().zip(&img.diff_ids) {
        let rec = store.layer(&id)?.ok_or_else(|| {
            StoreError::Format(format!("image {}: layer {id} is missing (run `strata check`)", img.id.short()))
        })?;
        layers.push((id, diff_id.clone(), rec));
    }
    let tag = dest
        .tag
        .clone()
        .ok_or_else(|| RegistryError::Reference(format!("{dest}: push needs a tag to put the manifest under")))?;
    let client = Client::connect(dest, true, opts.net)?;
    let staging = store.staging()?;
    let what = format!("{}/{}:{tag}", dest.registry, dest.repository);

    let here = format!("{}/{}", dest.registry, dest.repository);
    let results = for_each(&layers, opts.jobs, |(id, diff_id, rec)| -> Result<(Digest, u64, Sent)> {
        if let Some((digest, size, sources)) = blobs::get(store, diff_id, opts.compression) {
            if has_blob(&client, &digest)? {
                blobs::remember(store, diff_id, opts.compression, &digest, size, Some(&here));
                return Ok((digest, size, Sent::Present));
            }
            let prefix = format!("{}/", dest.registry);
            for from in sources.iter().rev().filter_map(|s| s.strip_prefix(&prefix)).filter(|r| *r != dest.repository) {
                if mount(&client, &digest, from)? {
                    blobs::remember(store, diff_id, opts.compression, &digest, size, Some(&here));
                    return Ok((digest, size, Sent::Mounted));
                }
            }
        }
        let progress = reporter.blob();
        let path = staging.dir.join(format!("push-{}", random_hex(8)));
        progress.begin(&format!("Compressing {}", diff_id.short()), Some(rec.tar_size));
        let made = make_blob(store, id, rec, opts.compression, &path, &*progress);
        progress.end();
        let (digest, size) = made.map_err(|e| match e {
            RegistryError::Plain(cause) => RegistryError::Store { what: format!("{what}: layer {diff_id}"), cause },
            other => other,
        })?;
        blobs::remember(store, diff_id, opts.compression, &digest, size, None);
        let sent = if has_blob(&client, &digest)? {
            Sent::Present
        } else {
            progress.begin(&format!("Pushing {}", digest.short()), Some(size));
            let body = Body::File { path: &path, offset: 0, len: size, progress: &*progress };
            let sent = upload(&client, &digest, body, opts.chunk_size);
            progress.end();
            sent?;
            Sent::Uploaded
        };
        let _ = std::fs::remove_file(&path);
        blobs::remember(store, diff_id, opts.compression, &digest, size, Some(&here));
        Ok((digest, size, sent))
    })?;
    let count = |k: Sent| results.iter().filter(|r| r.2 == k).count();
    let (mut uploaded, mounted, mut present) = (count(Sent::Uploaded), count(Sent::Mounted), count(Sent::Present));

    let config_digest = img.id.clone();
    if has_blob(&client, &config_digest)? {
        present += 1;
    } else {
        upload(&client, &config_digest, Body::Bytes(&img.config_bytes), None)?;
        uploaded += 1;
    }
    let descriptor =
        |mt: &str, d: &Digest, size: u64| serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": descriptor(config_type, &config_digest, img.config_bytes.len() as u64),
        "layers": results.iter().map(|(d, s, _)| descriptor(layer_type, d, *s)).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| RegistryError::Reference(e.to_string()))?;
    let manifest_digest = Digest::of(&bytes);
    client.request(
        "PUT",
        &client.repo_path(&format!("manifests/{tag}")),
        &[("Content-Type", manifest_type)],
        Body::Bytes(&bytes),
        &format!("manifest of {what}"),
    )?;
    reporter.note(&format!("Pushed {what}: {uploaded} blob(s) uploaded, {mounted} mounted, {present} present"));
    Ok(Pushed { manifest_digest, uploaded, mounted, present })
}
