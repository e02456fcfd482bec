//! The image commands: load, import, save, images, inspect, history, tag, rmi, check, and
//! mounting an image from the store.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use strata_store::import::{ImportSource, import};
use strata_store::load::{Input, load};
use strata_store::save::{Output, SaveFormat, save};
use strata_store::{Image, Store};

use crate::ui::{Bars, ago, human_size, table};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

pub fn open(root: &Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("cannot open the store at {}", root.display()))
}

pub fn cmd_load(store: &Store, input: Option<&Path>) -> Result<()> {
    let input = match input {
        Some(p) if p != Path::new("-") => Input::Path(p),
        _ => {
            if std::io::stdin().is_terminal() {
                bail!("no input: give an archive with -i FILE, or pipe one to stdin");
            }
            Input::Stdin
        }
    };
    load(store, input, &Bars::new())?;
    Ok(())
}

pub fn cmd_import(store: &Store, source: &Path, reference: &str) -> Result<()> {
    let source = if source == Path::new("-") { ImportSource::Stdin } else { ImportSource::Path(source) };
    import(store, source, reference, &Bars::new())?;
    Ok(())
}

pub fn cmd_save(store: &Store, images: &[String], output: Option<&Path>, format: SaveFormat) -> Result<()> {
    let out = match output {
        Some(p) if p != Path::new("-") => Output::Path(p),
        _ => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            Output::Stdout
        }
    };
    save(store, images, out, format, &Bars::new())?;
    Ok(())
}

/// Sum of the layers' content sizes.
fn image_size(store: &Store, image: &Image) -> u64 {
    image.layer_ids().iter().filter_map(|l| store.layer(l).ok().flatten()).map(|r| r.size).sum()
}

pub fn cmd_images(store: &Store, format: ListFormat) -> Result<()> {
    let mut images = store.images()?;
    images.sort_by(|a, b| b.created().cmp(&a.created()));
    let mut rows = Vec::new();
    for img in &images {
        let size = image_size(store, img);
        let names: Vec<(String, String)> = if img.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.tags
                .iter()
                .map(|t| {
                    let (n, tag) = strata_store::refs::split(t);
                    (n.to_string(), tag.to_string())
                })
                .collect()
        };
        for (repo, tag) in names {
            rows.push((repo, tag, img, size));
        }
    }
    match format {
        ListFormat::Json => {
            let list: Vec<Value> = rows
                .iter()
                .map(|(repo, tag, img, size)| {
                    json!({"Repository": repo, "Tag": tag, "Id": img.id.to_string(), "Created": img.created(), "Size": size})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ListFormat::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(repo, tag, img, size)| {
                    vec![repo.clone(), tag.clone(), img.id.short().to_string(), ago(img.created()), human_size(*size)]
                })
                .collect();
            table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &cells);
        }
    }
    Ok(())
}

/// `docker image inspect`'s shape, plus the image's history and its layer directories.
pub fn inspect_value(store: &Store, img: &Image) -> Value {
    let c = &img.config;
    let dirs: Vec<String> = img.layer_ids().iter().rev().map(|l| store.diff_dir(l).display().to_string()).collect();
    json!({
        "Id": img.id.to_string(),
        "RepoTags": img.tags,
        "Parent": "",
        "Comment": c.get("history").and_then(|h| h.as_array()).and_then(|h| h.last())
            .and_then(|h| h.get("comment")).cloned().unwrap_or(json!("")),
        "Created": c.get("created").cloned().unwrap_or(Value::Null),
        "Author": c.get("author").cloned().unwrap_or(json!("")),
        "Config": c.get("config").cloned().unwrap_or(json!({})),
        "Architecture": c.get("architecture").cloned().unwrap_or(Value::Null),
        "Os": c.get("os").cloned().unwrap_or(Value::Null),
        "Size": image_size(store, img),
        "GraphDriver": { "Name": "strata", "Data": { "Layers": dirs } },
        "RootFS": { "Type": "layers", "Layers": img.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>() },
        "History": c.get("history").cloned().unwrap_or(json!([])),
    })
}

pub fn cmd_inspect(store: &Store, images: &[String]) -> Result<()> {
    let mut out = Vec::new();
    for r in images {
        match store.image(r) {
            Ok(img) => out.push(inspect_value(store, &img)),
            // Not an image: a container, else the image error stands.
            Err(e @ strata_store::StoreError::NoSuchImage(_)) => match strata_store::container::find(store, r) {
                Ok(c) => out.push(crate::containers::inspect_value(store, &c)?),
                Err(_) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn cmd_history(store: &Store, reference: &str, no_trunc: bool, format: ListFormat) -> Result<()> {
    let img = store.image(reference)?;
    let sizes: Vec<u64> = img.layer_ids().iter().map(|l| store.layer(l).ok().flatten().map_or(0, |r| r.size)).collect();
    let empty = Vec::new();
    let history = img.config.get("history").and_then(|h| h.as_array()).unwrap_or(&empty);
    let mut layer = 0;
    let mut rows = Vec::new();
    for h in history {
        let is_empty = h.get("empty_layer").and_then(|e| e.as_bool()).unwrap_or(false);
        let size = if is_empty {
            0
        } else {
            layer += 1;
            sizes.get(layer - 1).copied().unwrap_or(0)
        };
        let text = |k: &str| h.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        rows.push((text("created"), text("created_by"), size, text("comment"), is_empty));
    }
    rows.reverse();
    match format {
        ListFormat::Json => {
            let list: Vec<Value> = rows
                .iter()
                .enumerate()
                .map(|(i, (created, by, size, comment, empty))| {
                    json!({"Id": if i == 0 { img.id.to_string() } else { "<missing>".into() },
                           "Created": created, "CreatedBy": by, "Size": size, "Comment": comment, "EmptyLayer": empty})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ListFormat::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .enumerate()
                .map(|(i, (created, by, size, comment, _))| {
                    let by = by.replace('\t', " ");
                    let by = if !no_trunc && by.chars().count() > 45 {
                        format!("{}…", by.chars().take(44).collect::<String>())
                    } else {
                        by
                    };
                    let id = if i == 0 { img.id.short().to_string() } else { "<missing>".into() };
                    vec![id, ago(Some(created)), by, human_size(*size), comment.clone()]
                })
                .collect();
            table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &cells);
        }
    }
    Ok(())
}

pub fn cmd_tag(store: &Store, source: &str, target: &str) -> Result<()> {
    store.tag(source, target)?;
    Ok(())
}

pub fn cmd_rmi(store: &Store, images: &[String], force: bool) -> Result<()> {
    for r in images {
        for line in store.remove_image(r, force)? {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn cmd_check(store: &Store) -> Result<bool> {
    let mut report = store.check()?;
    crate::containers::check_cgroups(store, &mut report.repaired, &mut report.problems)?;
    crate::network::check(store, &mut report.repaired, &mut report.problems)?;
    report.repaired.extend(strata_registry::blobs::clean_leftovers(store));
    for r in &report.repaired {
        println!("repaired: {r}");
    }
    for p in &report.problems {
        println!("problem: {p}");
    }
    if report.repaired.is_empty() && report.problems.is_empty() {
        println!("store at {} is consistent", store.root().display());
    }
    Ok(report.problems.is_empty())
}

/// The branch option and mount point for an image from the store, mounted read-only.
pub fn image_mount(store: &Store, reference: &str) -> Result<(String, PathBuf)> {
    let img = store.image(reference)?;
    let branches: Vec<String> =
        img.layer_ids().iter().rev().map(|l| format!("{}=ro+wh", store.diff_dir(l).display())).collect();
    if branches.is_empty() {
        bail!("image {reference} has no layers to mount");
    }
    let mnt = store.mnt_dir(&format!("image-{}", img.id.short()));
    std::fs::create_dir_all(&mnt).with_context(|| format!("{}", mnt.display()))?;
    // Made for looking at an image: its set-id binaries and device nodes do nothing.
    Ok((format!("br={},nosuid,nodev", branches.join(":")), mnt))
}
