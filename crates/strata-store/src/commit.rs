//! `commit`: a container's read-write layer becomes a new image layer over its image.
//! The init layer is never part of it; the new config keeps the image's and records the
//! container's command, the new diff ID and a history entry.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};

use serde_json::{Value, json};
use strata_union::view::View;

use crate::container::Container;
use crate::digest::{Digest, chain_ids};
use crate::error::{IoContext, Result, StoreError};
use crate::load::{LayerBlob, unpack_layer};
use crate::pack::pack_layer;
use crate::progress::Progress;
use crate::refs;
use crate::store::{Store, now_rfc3339};

pub struct CommitOptions<'a> {
    pub reference: Option<&'a str>,
    pub message: Option<&'a str>,
    pub author: Option<&'a str>,
    /// Dockerfile instructions applied to the config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL.
    pub changes: &'a [String],
}

/// A Dockerfile instruction's argument: JSON array form or shell form.
fn command_value(arg: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(arg.trim()) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", arg.trim()]),
    }
}

/// Applies `--change` instructions to the image config's `config` object.
pub fn apply_changes(config: &mut Value, changes: &[String]) -> Result<()> {
    if !config.is_object() {
        *config = json!({});
    }
    for change in changes {
        let (op, arg) = change.trim().split_once(char::is_whitespace).unwrap_or((change.trim(), ""));
        let arg = arg.trim();
        match op.to_ascii_uppercase().as_str() {
            "CMD" => config["Cmd"] = command_value(arg),
            "ENTRYPOINT" => config["Entrypoint"] = command_value(arg),
            "WORKDIR" => config["WorkingDir"] = json!(arg),
            "USER" => config["User"] = json!(arg),
            "ENV" => {
                let (k, v) = arg
                    .split_once('=')
                    .or_else(|| arg.split_once(char::is_whitespace))
                    .ok_or_else(|| StoreError::Format(format!("--change '{change}': ENV needs KEY=VALUE")))?;
                let mut env: Vec<String> = config["Env"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(k.trim()));
                env.push(format!("{}={}", k.trim(), v.trim()));
                config["Env"] = json!(env);
            }
            "LABEL" => {
                let (k, v) = arg
                    .split_once('=')
                    .ok_or_else(|| StoreError::Format(format!("--change '{change}': LABEL needs KEY=VALUE")))?;
                if !config["Labels"].is_object() {
                    config["Labels"] = json!({});
                }
                config["Labels"][k.trim()] = json!(v.trim().trim_matches('"'));
            }
            _ => {
                return Err(StoreError::Format(format!(
                    "--change '{change}': only CMD, ENTRYPOINT, ENV, WORKDIR, USER and LABEL can be changed"
                )));
            }
        }
    }
    Ok(())
}

/// Commits container `c`; returns the new image's ID.
pub fn commit(store: &Store, c: &Container, opts: &CommitOptions<'_>, progress: &dyn Progress) -> Result<Digest> {
    let tags: Vec<String> = opts.reference.map(refs::normalize).transpose()?.into_iter().collect();
    let image = store.image(&c.image).map_err(|e| match e {
        StoreError::NoSuchImage(_) => {
            StoreError::NoSuchImage(format!("{} (the container's image was removed)", c.image_name))
        }
        other => other,
    })?;
    let (mut config, diff_ids) = (image.config, image.diff_ids);

    let staging = store.staging()?;
    let tar_path = staging.dir.join("layer.tar");
    let dirs = c.layer_dirs(store);
    let view = View::open(&dirs).at(&dirs[0])?;
    progress.begin("Packing the container's changes", None);
    pack_layer(&dirs[0], &view, BufWriter::new(File::create(&tar_path).at(&tar_path)?), progress)?;
    progress.end();
    let file = File::open(&tar_path).at(&tar_path)?;
    let size = file.metadata().at(&tar_path)?.len();
    progress.begin("Storing the layer", Some(size));
    let blob = LayerBlob { path: tar_path.display().to_string(), digest: None, size: None };
    let layer = unpack_layer(io::BufReader::with_capacity(1 << 17, file), &blob, None, &staging.dir, progress)?;

    let mut all_diffs = diff_ids.clone();
    all_diffs.push(layer.diff_id.clone());
    let chain = chain_ids(&all_diffs);
    let now = now_rfc3339();
    config["created"] = json!(now);
    if let Some(a) = opts.author {
        config["author"] = json!(a);
    }
    config["rootfs"]["diff_ids"] = json!(all_diffs.iter().map(|d| d.to_string()).collect::<Vec<_>>());
    // The container's command becomes the image's, as docker commit does.
    let mut run = config.get("config").cloned().unwrap_or_else(|| json!({}));
    if !c.config.cmd.is_empty() {
        run["Cmd"] = json!(c.config.cmd);
    }
    if !c.config.entrypoint.is_empty() {
        run["Entrypoint"] = json!(c.config.entrypoint);
    }
    apply_changes(&mut run, opts.changes)?;
    config["config"] = run;
    let mut history = config.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    let mut entry = json!({ "created": now, "created_by": c.config.args.join(" ") });
    if let Some(m) = opts.message {
        entry["comment"] = json!(m);
    }
    history.push(entry);
    config["history"] = json!(history);
    let bytes = serde_json::to_vec(&config)?;

    let top = chain.last().map(|d| d.hex().to_string()).unwrap_or_default();
    let mut staged = BTreeMap::new();
    staged.insert(top, layer);
    match store.commit_image(&bytes, &mut staged, &tags)? {
        Ok(id) => Ok(id),
        Err(missing) => Err(StoreError::Conflict(format!(
            "the image's layers {} were removed while committing",
            missing.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_the_config() {
        let mut c = json!({"Env": ["PATH=/bin", "A=1"]});
        let ch: Vec<String> = ["CMD [\"echo\", \"hi\"]", "ENV A=2", "WORKDIR /w", "ENTRYPOINT top -b", "LABEL k=v"]
            .map(String::from)
            .into();
        apply_changes(&mut c, &ch).unwrap();
        assert_eq!(c["Cmd"], json!(["echo", "hi"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2"]));
        assert_eq!(c["WorkingDir"], "/w");
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(c["Labels"]["k"], "v");
        assert!(apply_changes(&mut c, &["RUN rm -rf /".into()]).is_err());
    }
}
