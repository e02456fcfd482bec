//! Image references as Docker parses them: `busybox` is
//! `docker.io/library/busybox:latest`, `host:port/ns/name:tag`, `name@sha256:...`; and the
//! familiar form the store names images by (`busybox:latest`, `docker.io/` and
//! `library/` dropped, `latest` when no tag is given).

use std::fmt;

use crate::digest::Digest;
use crate::error::{Result, StoreError};

/// Normalizes `reference` to the familiar `name:tag`.
pub fn normalize(reference: &str) -> Result<String> {
    if reference.contains('@') {
        return Err(StoreError::Format(format!(
            "invalid reference '{reference}': digest references are not supported here; use the image ID"
        )));
    }
    Reference::parse(reference)?
        .familiar()
        .ok_or_else(|| StoreError::Format(format!("invalid reference '{reference}': no tag")))
}

/// `name:tag` split at the tag.
pub fn split(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (&reference[..last_slash + i], &reference[last_slash + i + 1..]),
        None => (reference, "latest"),
    }
}

/// Docker Hub: the name users write and the host that serves its API.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry as named (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository path in it (`library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |why: &str| StoreError::Format(format!("invalid reference '{text}': {why}"));
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?)),
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        // The first component is a registry when it looks like a host.
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path),
            _ => (DOCKER_HUB, name),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB } else { registry };
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) || repository.len() > 255 {
            return Err(bad("names use lower-case letters, digits, '.', '_', '-' and '/'"));
        }
        let host_ok = registry.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[')
            && !registry.contains("..")
            && registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !host_ok {
            return Err(bad("bad registry host"));
        }
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad("tags are 1-128 letters, digits, '.', '_', '-'"));
            }
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Reference { registry: registry.to_string(), repository, tag, digest })
    }

    /// The host the API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB { DOCKER_HUB_API } else { &self.registry }
    }

    /// What the manifest is asked for by: the digest when given, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The name the store keeps an image by, as Docker shows it (`busybox:latest`,
    /// `fixtures/app:v1`, `127.0.0.1:5000/ns/app:v1`); none for a reference by digest
    /// alone.
    pub fn familiar(&self) -> Option<String> {
        let tag = self.tag.as_ref()?;
        let name = match self.registry.as_str() {
            DOCKER_HUB => match self.repository.strip_prefix("library/") {
                Some(official) if !official.contains('/') => official.to_string(),
                _ => self.repository.clone(),
            },
            host => format!("{host}/{}", self.repository),
        };
        Some(format!("{name}:{tag}"))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_forms() {
        let n = |s: &str| normalize(s).unwrap();
        assert_eq!(n("busybox"), "busybox:latest");
        assert_eq!(n("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(n("docker.io/fixtures/app:latest"), "fixtures/app:latest");
        assert_eq!(n("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(n("localhost:5000/a"), "localhost:5000/a:latest");
        for bad in ["", "UPPER", "a:", "a@sha256:00", "a//b", "a:b c", "../x"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert_eq!(split("localhost:5000/a:v1"), ("localhost:5000/a", "v1"));
    }

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn docker_forms() {
        let r = p("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar().as_deref(), Some("busybox:latest"));
        let r = p("127.0.0.1:5000/fixtures/app:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "fixtures/app", Some("v1"))
        );
        assert_eq!(r.familiar().as_deref(), Some("127.0.0.1:5000/fixtures/app:v1"));
        let r = p("localhost/a/b");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost", "a/b"));
        let r = p("ns/name:1.0");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("docker.io", "ns/name"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("quay.io/x/y@{d}"));
        assert_eq!((r.tag.clone(), r.manifest_ref()), (None, d.clone()));
        assert_eq!(r.familiar(), None);
        assert_eq!(r.to_string(), format!("quay.io/x/y@{d}"));
        for bad in ["", "UPPER", "a:", "a@sha256:00", "a//b", "a:b c", "../x", "h:1/"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
