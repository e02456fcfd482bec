//! Image references in Docker's familiar form: `name:tag`, `docker.io/` and `library/`
//! dropped, `latest` when no tag is given.

use crate::error::{Result, StoreError};

/// Normalizes `reference` to `name:tag`.
pub fn normalize(reference: &str) -> Result<String> {
    let bad = |why: &str| StoreError::Format(format!("invalid reference '{reference}': {why}"));
    if reference.contains('@') {
        return Err(bad("digest references are not supported here; use the image ID"));
    }
    let mut r = reference.strip_prefix("docker.io/").unwrap_or(reference);
    r = r.strip_prefix("library/").unwrap_or(r);
    let last_slash = r.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match r[last_slash..].rfind(':') {
        Some(i) => (&r[..last_slash + i], &r[last_slash + i + 1..]),
        None => (r, "latest"),
    };
    if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err(bad("empty name component"));
    }
    let name_ok = name.split('/').enumerate().all(|(i, part)| {
        // The first part may be a registry host (with a port, upper case allowed).
        (i == 0
            && name.contains('/')
            && part.contains(['.', ':'])
            && part.starts_with(|c: char| c.is_ascii_alphanumeric()))
            || (part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)))
    });
    if !name_ok {
        return Err(bad("names use lower-case letters, digits, '.', '_', '-' and '/'"));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !tag_ok {
        return Err(bad("tags are 1-128 letters, digits, '.', '_', '-'"));
    }
    Ok(format!("{name}:{tag}"))
}

/// `name:tag` split at the tag.
pub fn split(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (&reference[..last_slash + i], &reference[last_slash + i + 1..]),
        None => (reference, "latest"),
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
}
