//! Insecure registries from containers' `registries.conf` (version 2), as podman and
//! skopeo read it: a `[[registry]]` with `insecure = true` is reached as with
//! `--tls-verify=false` (any certificate, plain HTTP when HTTPS fails).
//!
//! Read: `$CONTAINERS_REGISTRIES_CONF` when set, else `/etc/containers/registries.conf`
//! and the `*.conf` files of `/etc/containers/registries.conf.d/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    registry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    location: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    insecure: bool,
}

fn files() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = vec![PathBuf::from("/etc/containers/registries.conf")];
    if let Ok(dir) = std::fs::read_dir("/etc/containers/registries.conf.d") {
        let mut more: Vec<PathBuf> =
            dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
        more.sort();
        out.extend(more);
    }
    out
}

/// Whether a file marks `registry` insecure; a file that cannot be parsed is skipped
/// with a warning (it marks nothing).
fn insecure_in(path: &Path, registry: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let file: File = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("{}: not read: {e}", path.display());
            return false;
        }
    };
    file.registry.iter().any(|e| {
        let name = if e.location.is_empty() { &e.prefix } else { &e.location };
        e.insecure && name.split('/').next() == Some(registry)
    })
}

/// Whether `registry` (a host, with its port) is configured insecure.
pub fn insecure(registry: &str) -> bool {
    files().iter().any(|p| insecure_in(p, registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_registries_conf_v2() {
        let dir = std::env::temp_dir().join(format!("strata-regconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("registries.conf");
        std::fs::write(
            &conf,
            "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n\n\
             [[registry]]\nprefix = \"quay.io/org\"\nlocation = \"quay.io/org\"\n",
        )
        .unwrap();
        assert!(insecure_in(&conf, "127.0.0.1:5000"));
        assert!(!insecure_in(&conf, "127.0.0.1:5001"));
        assert!(!insecure_in(&conf, "quay.io"));
        std::fs::write(&conf, "[[registry]\nnot toml").unwrap();
        assert!(!insecure_in(&conf, "127.0.0.1:5000"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
