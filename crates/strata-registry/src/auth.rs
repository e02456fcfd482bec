//! Credentials, kept as containers' `auth.json` keeps them (`{"auths": {"host":
//! {"auth": base64("user:password")}}}`), and `WWW-Authenticate` challenges.
//!
//! Read from `REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//! `/run/containers/<uid>/auth.json` (podman's places), then Docker's
//! `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`). Written only to the first.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use crate::error::{RegistryError, Result};

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.user)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        format!("Basic {}", B64.encode(format!("{}:{}", self.user, self.password)))
    }
}

/// The file `login` writes.
pub fn auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("containers/auth.json");
    }
    PathBuf::from(format!("/run/containers/{}/auth.json", rustix::process::getuid().as_raw()))
}

fn docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The registry a key of `auths` (or a registry as a user names it) stands for:
/// `https://index.docker.io/v1/` is `docker.io`.
pub fn key_host(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

fn read_file(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| RegistryError::Credentials {
            path: path.display().to_string(),
            message: format!("bad JSON: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Credentials { path: path.display().to_string(), message: e.to_string() }),
    }
}

/// The credentials for `registry`, from the first file that has them. A key with a
/// repository path (`host/ns`) matches that repository and those below it, the longest first.
pub fn lookup(registry: &str, repository: &str) -> Result<Option<Credentials>> {
    let files: Vec<PathBuf> = [Some(auth_file()), docker_config()].into_iter().flatten().collect();
    lookup_in(&files, registry, repository)
}

fn lookup_in(files: &[PathBuf], registry: &str, repository: &str) -> Result<Option<Credentials>> {
    for path in files {
        let Some(doc) = read_file(path)? else { continue };
        let Some(auths) = doc.get("auths").and_then(Value::as_object) else { continue };
        let full = format!("{registry}/{repository}");
        let mut best: Option<(usize, &Value)> = None;
        for (key, entry) in auths {
            let bare = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
            let matches = if bare.contains('/') && !bare.ends_with("/v1/") && !bare.ends_with("/v2/") {
                full == bare || full.starts_with(&format!("{bare}/"))
            } else {
                key_host(key) == registry
            };
            if matches && best.is_none_or(|(len, _)| bare.len() > len) {
                best = Some((bare.len(), entry));
            }
        }
        if let Some((_, entry)) = best
            && let Some(encoded) = entry.get("auth").and_then(Value::as_str)
        {
            let bad = |m: &str| RegistryError::Credentials { path: path.display().to_string(), message: m.into() };
            let decoded = B64.decode(encoded.trim()).map_err(|_| bad("an 'auth' value is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("an 'auth' value is not UTF-8"))?;
            let (user, password) = text.split_once(':').ok_or_else(|| bad("an 'auth' value is not user:password"))?;
            return Ok(Some(Credentials { user: user.into(), password: password.into() }));
        }
    }
    Ok(None)
}

/// Stores credentials for `registry` in [`auth_file`], keeping the rest of the file.
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = auth_file();
    let mut doc = read_file(&path)?.unwrap_or_else(|| serde_json::json!({}));
    if !doc.is_object() {
        doc = serde_json::json!({});
    }
    let auths = doc.as_object_mut().map(|o| o.entry("auths").or_insert_with(|| serde_json::json!({})));
    if let Some(Value::Object(auths)) = auths {
        auths.insert(
            registry.to_string(),
            serde_json::json!({ "auth": B64.encode(format!("{}:{}", creds.user, creds.password)) }),
        );
    }
    write_private(&path, &doc)?;
    Ok(path)
}

/// Removes the credentials for `registry`; false when there were none.
pub fn remove(registry: &str) -> Result<bool> {
    let path = auth_file();
    let Some(mut doc) = read_file(&path)? else { return Ok(false) };
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else { return Ok(false) };
    let keys: Vec<String> = auths.keys().filter(|k| *k == registry || key_host(k) == registry).cloned().collect();
    if keys.is_empty() {
        return Ok(false);
    }
    for k in keys {
        auths.remove(&k);
    }
    write_private(&path, &doc)?;
    Ok(true)
}

/// Writes `doc` as a 0600 file: a new file beside the target (never through a link),
/// synced, renamed over it.
fn write_private(path: &Path, doc: &Value) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err =
        |e: std::io::Error| RegistryError::Credentials { path: path.display().to_string(), message: e.to_string() };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        strata_store::store::random_hex(6)
    ));
    let bytes = serde_json::to_vec_pretty(doc).map_err(|e| err(std::io::Error::other(e)))?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// A `WWW-Authenticate` challenge: the scheme (lower case) and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="https://auth",service="reg",scope="repository:a:pull"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("basic", "Registry Realm"));
    }

    #[test]
    fn the_longest_matching_key_of_the_first_file_wins() {
        let dir = std::env::temp_dir().join(format!("strata-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (podman, docker) = (dir.join("auth.json"), dir.join("config.json"));
        let entry = |u: &str| serde_json::json!({ "auth": B64.encode(format!("{u}:pw-{u}")) });
        let doc = serde_json::json!({"auths": {"quay.io": entry("host"), "quay.io/org": entry("org"), "quay.io/org/deep": entry("deep")}});
        std::fs::write(&podman, serde_json::to_vec(&doc).unwrap()).unwrap();
        let doc =
            serde_json::json!({"auths": {"https://index.docker.io/v1/": entry("hub"), "quay.io": entry("ignored")}});
        std::fs::write(&docker, serde_json::to_vec(&doc).unwrap()).unwrap();
        let files = [podman.clone(), docker.clone()];
        let user = |reg: &str, repo: &str| lookup_in(&files, reg, repo).unwrap().map(|c| c.user);
        assert_eq!(user("quay.io", "other/x").as_deref(), Some("host"));
        assert_eq!(user("quay.io", "org/x").as_deref(), Some("org"));
        assert_eq!(user("quay.io", "org/deep/x").as_deref(), Some("deep"));
        assert_eq!(user("quay.io", "organic/x").as_deref(), Some("host"));
        assert_eq!(user("docker.io", "library/busybox").as_deref(), Some("hub"));
        assert_eq!(user("ghcr.io", "a/b"), None);
        let c = lookup_in(&files, "docker.io", "x/y").unwrap().unwrap();
        assert_eq!(c.password, "pw-hub");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn docker_hub_keys() {
        assert_eq!(key_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(key_host("quay.io"), "quay.io");
        assert_eq!(key_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
