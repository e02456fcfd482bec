//! `pull`: the manifest (an index or list narrowed to one platform), the config, then
//! the layers the store lacks, several at once. Each layer's blob streams from the
//! registry straight into the store's own loader ([`unpack_layer`]), which checks the
//! blob's digest and size and the layer's diff ID as it extracts into staging; the image
//! is registered only when every layer is there ([`Store::commit_image`]). The store's
//! lock is never held while the network is waited on.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::rc::Rc;

use oci_spec::image::{ImageIndex, ImageManifest};
use strata_store::digest::chain_ids;
use strata_store::load::{LayerBlob, host_arch, unpack_layer};
use strata_store::store::{StagedLayer, parse_config};
use strata_store::{Digest, Store};

use crate::blobs::{self, compression_of};
use crate::client::{Body, Client, Options};
use crate::error::{RegistryError, Result};
use crate::parallel::for_each;
use crate::{MAX_MANIFEST, Reporter};
use strata_store::refs::Reference;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Configs are read up to this size.
const MAX_CONFIG: u64 = 16 << 20;
/// Times a layer's download is resumed after its connection broke.
const RESUMES: u32 = 3;

/// `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn host() -> Platform {
        Platform { os: "linux".into(), arch: host_arch().into(), variant: None }
    }

    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.into(),
                arch: arch.into(),
                variant: parts.get(2).filter(|v| !v.is_empty()).map(|v| v.to_string()),
            }),
            _ => Err(RegistryError::Reference(format!("platform '{text}': expected OS/ARCH[/VARIANT]"))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct PullOptions {
    pub net: Options,
    pub platform: Option<Platform>,
    /// Layers downloaded at once.
    pub jobs: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { net: Options::default(), platform: None, jobs: 3 }
    }
}

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    pub id: Digest,
    /// The digest of the image manifest that was pulled (of the platform's, for an index).
    pub manifest_digest: Digest,
    pub tag: Option<String>,
    /// Layers downloaded, and layers the store had already.
    pub downloaded: usize,
    pub present: usize,
}

/// Reads a body of at most `max` bytes; more is an error.
fn read_limited(r: impl Read, max: u64, what: &str, client: &Client) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(max + 1).read_to_end(&mut buf).map_err(|e| RegistryError::Transport {
        registry: client.registry().to_string(),
        what: what.to_string(),
        message: e.to_string(),
    })?;
    if buf.len() as u64 > max {
        return Err(refused(client, what, format!("larger than {max} bytes: refused")));
    }
    Ok(buf)
}

fn refused(client: &Client, what: &str, message: String) -> RegistryError {
    RegistryError::Refused { registry: client.registry().to_string(), what: what.to_string(), message }
}

/// Fetches a manifest (or index) by tag or digest; checks its digest against the one
/// asked for or the one the registry announces. Returns its bytes, media type and digest.
fn fetch_manifest(
    client: &Client,
    reference: &str,
    expected: Option<&Digest>,
    what: &str,
) -> Result<(Vec<u8>, String, Digest)> {
    let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, SCHEMA1[0], SCHEMA1[1]].join(", ");
    let resp = client.request(
        "GET",
        &client.repo_path(&format!("manifests/{reference}")),
        &[("Accept", &accept)],
        Body::Empty,
        what,
    )?;
    let announced = resp.header("Docker-Content-Digest").and_then(|d| d.parse::<Digest>().ok());
    let header_type = resp.content_type().to_string();
    let bytes = read_limited(resp.into_reader(), MAX_MANIFEST, what, client)?;
    let digest = Digest::of(&bytes);
    if let Some(want) = expected.or(announced.as_ref())
        && *want != digest
    {
        return Err(refused(client, what, format!("digest mismatch: expected {want}, content is {digest}")));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| refused(client, what, format!("not JSON: {e}")))?;
    let media_type = json
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| if json.get("manifests").is_some() { OCI_INDEX.into() } else { header_type.clone() });
    if SCHEMA1.contains(&media_type.as_str())
        || SCHEMA1.contains(&header_type.as_str())
        || json.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
    {
        return Err(refused(
            client,
            what,
            "a Docker schema 1 manifest: deprecated and not supported (push the image again with a current tool)"
                .into(),
        ));
    }
    Ok((bytes, media_type, digest))
}

/// Picks the manifest of `want` from an index; the error names the platforms it has.
fn pick_platform(client: &Client, index: &ImageIndex, want: &Platform, what: &str) -> Result<(Digest, String)> {
    let mut offered = Vec::new();
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        let variant = p.variant().clone().filter(|v| !v.is_empty());
        if os == "unknown" {
            continue; // attestations and signatures
        }
        let matches = os == want.os
            && arch == want.arch
            && (want.variant.is_none() || variant.as_deref() == want.variant.as_deref());
        if matches {
            let digest = m.digest().to_string().parse::<Digest>()?;
            return Ok((digest, m.media_type().to_string()));
        }
        offered.push(Platform { os, arch, variant }.to_string());
    }
    let list = if offered.is_empty() { "none".to_string() } else { offered.join(", ") };
    Err(refused(client, what, format!("no image for platform {want}; the index has: {list}")))
}

/// Pulls `reference` into `store`.
pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions, reporter: &dyn Reporter) -> Result<Pulled> {
    let client = Client::connect(reference, false, opts.net)?;
    let what = reference.to_string();
    // The reference without its registry, which every error of the client names first.
    let short = what.strip_prefix(&format!("{}/", reference.registry)).unwrap_or(&what).to_string();
    let (mut bytes, mut media_type, mut manifest_digest) =
        fetch_manifest(&client, &reference.manifest_ref(), reference.digest.as_ref(), &format!("manifest {short}"))?;
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| refused(&client, &format!("index {short}"), format!("malformed: {e}")))?;
        let want = opts.platform.clone().unwrap_or_else(Platform::host);
        let (digest, _) = pick_platform(&client, &index, &want, &format!("index {short}"))?;
        let w = format!("manifest {} for {want}", digest);
        (bytes, media_type, manifest_digest) = fetch_manifest(&client, digest.as_str(), Some(&digest), &w)?;
    }
    let what_m = format!("manifest {short} ({manifest_digest})");
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(refused(&client, &what_m, format!("unsupported media type '{media_type}'")));
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| refused(&client, &what_m, format!("malformed: {e}")))?;

    let config_digest: Digest = manifest.config().digest().to_string().parse()?;
    let config_what = format!("config {config_digest} of {short}");
    let config = fetch_small_blob(&client, &config_digest, manifest.config().size(), &config_what)?;
    let (config_json, diff_ids) = parse_config(&config, &config_what)?;
    // A single-platform image of another platform is pulled, as Docker does, with a word.
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let field = |k: &str| config_json.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let (os, arch) = (field("os"), field("architecture"));
    if !os.is_empty() && !arch.is_empty() && (os != want.os || arch != want.arch) {
        tracing::warn!("{what}: the image is for {os}/{arch}, not {want}");
    }
    let layers: Vec<LayerBlob> = manifest
        .layers()
        .iter()
        .map(|l| {
            let mt = l.media_type().to_string();
            if !(mt.contains("layer") || mt.contains("rootfs.diff")) {
                return Err(refused(&client, &what_m, format!("layer {}: unsupported media type '{mt}'", l.digest())));
            }
            let digest: Digest = l.digest().to_string().parse()?;
            Ok(LayerBlob { path: format!("blob {digest}"), digest: Some(digest), size: Some(l.size()) })
        })
        .collect::<Result<_>>()?;
    if diff_ids.len() != layers.len() {
        return Err(refused(
            &client,
            &what_m,
            format!("the config lists {} diff IDs but the manifest {} layers", diff_ids.len(), layers.len()),
        ));
    }

    let media_types: Vec<String> = manifest.layers().iter().map(|l| l.media_type().to_string()).collect();
    let source = format!("{}/{}", reference.registry, reference.repository);
    let chain: Vec<String> = chain_ids(&diff_ids).iter().map(|c| c.hex().to_string()).collect();
    let tags: Vec<String> = reference.familiar().into_iter().collect();
    let mut need: Vec<usize> = (0..chain.len()).filter(|i| !store.has_layer(&chain[*i])).collect();
    let present = chain.len() - need.len();
    let mut downloaded = 0;
    let staging = store.staging()?;
    let mut staged: BTreeMap<String, StagedLayer> = BTreeMap::new();
    for _round in 0..3 {
        let results = for_each(&need, opts.jobs, |&i| {
            let blob = &layers[i];
            let label = format!("Layer {}/{} {}", i + 1, chain.len(), &blob.path[12..24]);
            let layer_what = format!("{what}: layer {}/{} ({})", i + 1, chain.len(), blob.path);
            let request_what = format!("{short}: layer {}/{} ({})", i + 1, chain.len(), blob.path);
            fetch_layer(&client, blob, &diff_ids[i], &staging.dir, &label, &request_what, reporter)
                .inspect(|_| {
                    // Pushing this layer to this registry again can mount this blob.
                    if let (Some(c), Some(d), Some(size)) = (compression_of(&media_types[i]), &blob.digest, blob.size) {
                        blobs::remember(store, &diff_ids[i], c, d, size, Some(&source));
                    }
                })
                .map(|s| (chain[i].clone(), s))
                .map_err(|e| match e {
                    RegistryError::Plain(cause) => RegistryError::Store { what: layer_what, cause },
                    other => other,
                })
        })?;
        downloaded += results.len();
        staged.extend(results);
        match store.commit_image(&config, &mut staged, &tags)? {
            Ok(id) => {
                return Ok(Pulled { id, manifest_digest, tag: tags.into_iter().next(), downloaded, present });
            }
            // A concurrent rmi took layers found present: fetch those too.
            Err(missing) => need = (0..chain.len()).filter(|i| missing.contains(&chain[*i])).collect(),
        }
    }
    Err(RegistryError::Plain(strata_store::StoreError::Conflict(format!(
        "{what}: layers kept disappearing while pulling (concurrent rmi?)"
    ))))
}

fn fetch_small_blob(client: &Client, digest: &Digest, size: u64, what: &str) -> Result<Vec<u8>> {
    if size > MAX_CONFIG {
        return Err(refused(client, what, format!("{size} bytes: too large")));
    }
    let resp = client.request("GET", &client.repo_path(&format!("blobs/{digest}")), &[], Body::Empty, what)?;
    let bytes = read_limited(resp.into_reader(), MAX_CONFIG, what, client)?;
    let actual = Digest::of(&bytes);
    if actual != *digest || bytes.len() as u64 != size {
        return Err(refused(client, what, format!("digest mismatch: content is {actual} ({} bytes)", bytes.len())));
    }
    Ok(bytes)
}

/// A blob's body that carries on where its connection broke: a new GET with `Range`
/// from the byte reached (a registry that ignores the range sends it all, and the part
/// already read is skipped). What it gave up on is kept for the error.
struct Resuming<'a> {
    client: &'a Client,
    path: String,
    what: &'a str,
    inner: Box<dyn Read + Send + Sync>,
    offset: u64,
    size: u64,
    breaks: u32,
    gave_up: Rc<RefCell<Option<String>>>,
}

impl Resuming<'_> {
    fn resume(&self) -> Result<Box<dyn Read + Send + Sync>> {
        let range = format!("bytes={}-", self.offset);
        let resp = self.client.request("GET", &self.path, &[("Range", &range)], Body::Empty, self.what)?;
        // One byte more than announced is enough to tell a blob that is too long.
        let rest = self.size + 1 - self.offset;
        match resp.status() {
            206 => Ok(Box::new(resp.into_reader().take(rest))),
            _ => {
                let mut r = resp.into_reader().take(self.size + 1);
                let skipped = io::copy(&mut (&mut r).take(self.offset), &mut io::sink()).map_err(|e| {
                    RegistryError::Transport {
                        registry: self.client.registry().into(),
                        what: self.what.into(),
                        message: e.to_string(),
                    }
                })?;
                if skipped != self.offset {
                    return Err(refused(self.client, self.what, "the blob is shorter on a second download".into()));
                }
                Ok(Box::new(r))
            }
        }
    }
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.breaks += 1;
                    if self.breaks > RESUMES || self.offset > self.size {
                        *self.gave_up.borrow_mut() = Some(format!("download broke {} times, last: {e}", self.breaks));
                        return Err(e);
                    }
                    tracing::warn!("{}: {}: {e}; resuming at byte {}", self.client.registry(), self.what, self.offset);
                    match self.resume() {
                        Ok(r) => self.inner = r,
                        Err(again) => {
                            *self.gave_up.borrow_mut() =
                                Some(format!("download broke ({e}) and could not be resumed: {again}"));
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
}

/// Downloads one layer into staging through the store's loader.
fn fetch_layer(
    client: &Client,
    blob: &LayerBlob,
    diff_id: &Digest,
    staging: &std::path::Path,
    label: &str,
    what: &str,
    reporter: &dyn Reporter,
) -> Result<StagedLayer> {
    let digest = blob.digest.as_ref().map(|d| d.to_string()).unwrap_or_default();
    let size = blob.size.unwrap_or(0);
    let path = client.repo_path(&format!("blobs/{digest}"));
    let resp = client.request("GET", &path, &[], Body::Empty, what)?;
    let gave_up = Rc::new(RefCell::new(None));
    let reader = Resuming {
        client,
        path,
        what,
        inner: Box::new(resp.into_reader().take(size + 1)),
        offset: 0,
        size,
        breaks: 0,
        gave_up: gave_up.clone(),
    };
    let progress = reporter.blob();
    progress.begin(label, Some(size));
    let unpacked = unpack_layer(reader, blob, Some(diff_id), staging, &*progress);
    unpacked.map_err(|e| {
        progress.end();
        match gave_up.borrow_mut().take() {
            Some(message) => {
                RegistryError::Transport { registry: client.registry().to_string(), what: what.to_string(), message }
            }
            None => diagnose(client, blob, e),
        }
    })
}

/// A layer that failed to unpack: its blob is fetched again and only digested, so that a
/// blob that is not what the manifest names is reported as such (a corrupt gzip stream
/// fails before its digest could be compared), and a blob that is says its content is bad.
fn diagnose(client: &Client, blob: &LayerBlob, failure: strata_store::StoreError) -> RegistryError {
    let (Some(expected), Some(size)) = (&blob.digest, blob.size) else { return failure.into() };
    let Ok(resp) = client.request("GET", &client.repo_path(&format!("blobs/{expected}")), &[], Body::Empty, &blob.path)
    else {
        return failure.into();
    };
    let (mut r, digester) = strata_store::digest::DigestReader::new(resp.into_reader().take(size + 1));
    if io::copy(&mut r, &mut io::sink()).is_err() {
        return failure.into();
    }
    let (actual, got) = digester.result();
    if actual == *expected && got == size {
        return failure.into();
    }
    strata_store::StoreError::Format(format!(
        "blob: digest mismatch: expected {expected}, content is {actual} ({got} bytes, the manifest says {size}; \
         unpacking had stopped at: {failure})"
    ))
    .into()
}
