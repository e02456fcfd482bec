//! `-v HOST:CTR[:ro|rw]`: host paths bind-mounted into a container beside its union
//! (so what is written there is never in its read-write layer, `diff` or `commit`).
//! The runtime resolves the destination inside the container's root.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use strata_runtime::Volume;

/// A `-v` value as the record keeps it: checked, the host path absolute and canonical.
pub fn check(spec: &str) -> Result<String> {
    let v = parse(spec)?;
    let source = v.source.canonicalize().map_err(|_| {
        anyhow!("invalid mount config for type \"bind\": bind source path does not exist: {}", v.source.display())
    })?;
    Ok(format!("{}:{}{}", source.display(), v.target, if v.read_only { ":ro" } else { "" }))
}

/// Checks every `-v` of a new container; no destination twice (as Docker).
pub fn check_all(specs: &[String]) -> Result<Vec<String>> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for s in specs {
        let target: PathBuf = Path::new(&parse(s)?.target).components().collect();
        if seen.contains(&target) {
            bail!("duplicate mount point: {}", target.display());
        }
        seen.push(target);
        out.push(check(s)?);
    }
    Ok(out)
}

pub fn parse(spec: &str) -> Result<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => bail!("-v {spec}: expected HOST:CONTAINER[:ro|rw]"),
    };
    if !host.starts_with('/') {
        bail!("-v {spec}: the host path must be absolute (named volumes are not supported yet)");
    }
    let target = Path::new(ctr);
    if !ctr.starts_with('/') {
        bail!("-v {spec}: the container path must be absolute");
    }
    if target.components().any(|c| c == Component::ParentDir) {
        bail!("-v {spec}: '..' is not allowed in the container path");
    }
    let normal: Vec<Component<'_>> = target.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    if normal.is_empty() {
        bail!("-v {spec}: cannot mount over the container's root");
    }
    // The container's /proc is the runtime's (and holds masked paths), as runc refuses.
    if normal[0] == Component::Normal("proc".as_ref()) {
        bail!("-v {spec}: a mount on /proc is not allowed");
    }
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        m => bail!("-v {spec}: unknown mode '{m}' (ro or rw)"),
    };
    Ok(Volume { source: PathBuf::from(host), target: ctr.to_string(), read_only })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs() {
        let v = parse("/srv/data:/data:ro").expect("valid");
        assert_eq!((v.source, v.target.as_str(), v.read_only), (PathBuf::from("/srv/data"), "/data", true));
        assert!(!parse("/a:/b").expect("valid").read_only);
        for bad in ["data:/d", "/a:d", "/a:/d/../..", "/a:/", "/a:/proc/x", "/a:/d:rx", "/a", "/a:/b:ro:x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let dup = check_all(&["/:/d".to_string(), "/tmp:/d/".to_string()]);
        assert!(dup.is_err_and(|e| e.to_string().contains("duplicate mount point: /d")));
    }
}
