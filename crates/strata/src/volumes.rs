//! Volumes of containers, beside their unions (so what is written there is never in
//! their read-write layer, `diff` or `commit`): `-v HOST:CTR[:ro|rw]` binds of host
//! paths, `-v NAME:CTR` named volumes of the store (`volume create/ls/inspect/rm/prune`),
//! `-v CTR` and the image's `VOLUME`s as anonymous volumes, Docker's `--mount` and
//! `--tmpfs`. The runtime resolves every destination inside the container's root.
//!
//! A container's record keeps Docker's forms: `SOURCE:CTR[:OPTIONS]` (SOURCE a
//! canonical host path or a volume name; OPTIONS `ro`, `nocopy`) and `CTR[:OPTIONS]` for
//! a tmpfs.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use strata_store::Store;
use strata_store::container::{Container, RunConfig};
use strata_store::volume::{self as vol, VolumeRecord};

use crate::ui::table;

/// `create` and `run` options for volumes.
#[derive(clap::Args, Debug, Default)]
pub struct VolumeArgs {
    /// Bind-mount a host path (HOST:CONTAINER[:ro|rw]), mount a named volume
    /// (NAME:CONTAINER[:ro][,nocopy]) or a new anonymous volume (CONTAINER)
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Docker's --mount: type=bind|volume|tmpfs,source=SRC,target=DST[,readonly][,volume-nocopy]
    /// [,tmpfs-size=BYTES][,tmpfs-mode=OCTAL]
    #[arg(long = "mount", value_name = "type=TYPE,source=SRC,target=DST")]
    pub mounts: Vec<String>,
    /// Mount a tmpfs: CONTAINER[:OPTIONS] (size=64m,mode=1777,exec,...; default noexec,nosuid,nodev)
    #[arg(long = "tmpfs", value_name = "CONTAINER[:OPTIONS]")]
    pub tmpfs: Vec<String>,
}

/// Where a mount's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Host(PathBuf),
    Named(String),
    /// A new volume with a random name, for this container.
    Anonymous,
    /// A tmpfs with these options.
    Tmpfs(String),
}

/// One mount of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub source: Source,
    pub target: String,
    pub read_only: bool,
    /// A new named volume is not filled from the image.
    pub nocopy: bool,
}

impl Spec {
    /// The record's form.
    fn record(&self) -> String {
        let mut opts: Vec<&str> = Vec::new();
        if self.read_only {
            opts.push("ro");
        }
        if self.nocopy {
            opts.push("nocopy");
        }
        let tail = if opts.is_empty() { String::new() } else { format!(":{}", opts.join(",")) };
        match &self.source {
            Source::Host(p) => format!("{}:{}{tail}", p.display(), self.target),
            Source::Named(n) => format!("{n}:{}{tail}", self.target),
            Source::Anonymous => format!("{}{tail}", self.target),
            Source::Tmpfs(o) => {
                let mut all: Vec<&str> = o.split(',').filter(|o| !o.is_empty()).collect();
                if self.read_only && !all.contains(&"ro") {
                    all.push("ro");
                }
                if all.is_empty() { self.target.clone() } else { format!("{}:{}", self.target, all.join(",")) }
            }
        }
    }
}

/// The container path of a mount: absolute, no `..`, not the root, not under /proc.
fn check_target(target: &str, what: &str) -> Result<()> {
    if !target.starts_with('/') {
        bail!("{what}: the container path must be absolute");
    }
    let path = Path::new(target);
    if path.components().any(|c| c == Component::ParentDir) {
        bail!("{what}: '..' is not allowed in the container path");
    }
    let normal: Vec<Component<'_>> = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    if normal.is_empty() {
        bail!("{what}: cannot mount over the container's root");
    }
    // The container's /proc is the runtime's (and holds masked paths), as runc refuses.
    if normal[0] == Component::Normal("proc".as_ref()) {
        bail!("{what}: a mount on /proc is not allowed");
    }
    Ok(())
}

/// A `-v` value (also the record's form of binds and volumes).
pub fn parse(spec: &str) -> Result<Spec> {
    let what = format!("-v {spec}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [c] => ("", *c, ""),
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => bail!("{what}: expected [SOURCE:]CONTAINER[:OPTIONS]"),
    };
    check_target(target, &what)?;
    let (mut read_only, mut nocopy) = (false, false);
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "rw" => read_only = false,
            "ro" => read_only = true,
            "nocopy" => nocopy = true,
            m => bail!("{what}: unknown option '{m}' (ro, rw, nocopy)"),
        }
    }
    let source = if source.is_empty() {
        Source::Anonymous
    } else if source.starts_with('/') {
        Source::Host(PathBuf::from(source))
    } else if vol::valid_name(source) {
        Source::Named(source.to_string())
    } else {
        bail!(
            "{what}: \"{source}\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; a host path must be absolute"
        );
    };
    if nocopy && matches!(source, Source::Host(_)) {
        bail!("{what}: nocopy is for volumes, not binds");
    }
    Ok(Spec { source, target: target.to_string(), read_only, nocopy })
}

/// A `--tmpfs` value (also the record's form of tmpfs mounts).
pub fn parse_tmpfs(spec: &str) -> Result<Spec> {
    let what = format!("--tmpfs {spec}");
    let (target, options) = spec.split_once(':').unwrap_or((spec, ""));
    check_target(target, &what)?;
    strata_runtime::check_tmpfs_options(options).map_err(|e| anyhow!("{what}: {e}"))?;
    let read_only = options.split(',').any(|o| o == "ro");
    let options: Vec<&str> = options.split(',').filter(|o| !o.is_empty() && *o != "ro" && *o != "rw").collect();
    Ok(Spec { source: Source::Tmpfs(options.join(",")), target: target.to_string(), read_only, nocopy: false })
}

/// A `--mount` value, with Docker's keys.
pub fn parse_mount(spec: &str) -> Result<Spec> {
    let what = format!("--mount {spec}");
    let (mut kind, mut source, mut target) = ("volume".to_string(), None::<String>, None::<String>);
    let (mut read_only, mut nocopy) = (false, false);
    let (mut size, mut mode) = (None::<String>, None::<String>);
    let boolean = |key: &str, v: Option<&str>| -> Result<bool> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(o) => bail!("{what}: invalid value for {key}: {o}"),
        }
    };
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = || {
            value.map(str::to_string).ok_or_else(|| anyhow!("{what}: invalid field '{field}' must be a key=value pair"))
        };
        match key.as_str() {
            "type" => kind = need()?,
            "source" | "src" => source = Some(need()?),
            "target" | "destination" | "dst" => target = Some(need()?),
            "readonly" | "ro" => read_only = boolean(&key, value)?,
            "volume-nocopy" => nocopy = boolean(&key, value)?,
            "tmpfs-size" => size = Some(need()?),
            "tmpfs-mode" => mode = Some(need()?),
            // Docker's: ignored on Linux.
            "consistency" => {}
            "bind-propagation" => {
                if !matches!(value, Some("rprivate")) {
                    bail!("{what}: bind-propagation other than rprivate is not supported");
                }
            }
            _ => bail!("{what}: unexpected key '{key}' in '{field}'"),
        }
    }
    let target = target.ok_or_else(|| anyhow!("{what}: target is required"))?;
    check_target(&target, &what)?;
    let invalid = |msg: &str| anyhow!("{what}: invalid mount config for type \"{kind}\": {msg}");
    if kind != "tmpfs" && (size.is_some() || mode.is_some()) {
        return Err(invalid("tmpfs-size and tmpfs-mode are for tmpfs mounts"));
    }
    let source = match kind.as_str() {
        "bind" => {
            let s = source.ok_or_else(|| invalid("field Source must not be empty"))?;
            if !s.starts_with('/') {
                return Err(invalid("the bind source must be an absolute path"));
            }
            if nocopy {
                return Err(invalid("volume-nocopy is for volumes"));
            }
            Source::Host(PathBuf::from(s))
        }
        "volume" => match source {
            None => Source::Anonymous,
            Some(s) if vol::valid_name(&s) => Source::Named(s),
            Some(s) => return Err(invalid(&format!("\"{s}\" is not a valid volume name"))),
        },
        "tmpfs" => {
            if source.is_some() {
                return Err(invalid("field Source must not be specified"));
            }
            let mut opts = Vec::new();
            if let Some(s) = size {
                let bytes = parse_size(&s).map_err(|e| invalid(&format!("tmpfs-size {e}")))?;
                opts.push(format!("size={bytes}"));
            }
            if let Some(m) = mode {
                let m = u32::from_str_radix(&m, 8).map_err(|_| invalid(&format!("tmpfs-mode '{m}' is not octal")))?;
                opts.push(format!("mode={m:o}"));
            }
            Source::Tmpfs(opts.join(","))
        }
        other => bail!("{what}: invalid mount type '{other}' (bind, volume or tmpfs)"),
    };
    Ok(Spec { source, target, read_only, nocopy })
}

/// "64m" -> 67108864 (k, m, g suffixes, as Docker's sizes).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (examples: 65536, 64m, 1g)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// A container's mounts, as its record keeps them.
pub fn specs(config: &RunConfig) -> Result<Vec<Spec>> {
    let mut out: Vec<Spec> = config.volumes.iter().map(|v| parse(v)).collect::<Result<_>>()?;
    for t in &config.tmpfs {
        out.push(parse_tmpfs(t)?);
    }
    Ok(out)
}

/// What `create` records.
pub struct Resolved {
    pub volumes: Vec<String>,
    pub tmpfs: Vec<String>,
    /// Anonymous volumes made for the container (removed again if it is not made).
    pub made: Vec<String>,
}

/// Checks the mounts of a new container, adds anonymous volumes for the image's
/// `VOLUME`s that no mount covers, makes the volumes that do not exist yet. No
/// destination twice (as Docker); a bind source must exist.
pub fn resolve(store: &Store, args: &VolumeArgs, image_volumes: &[String]) -> Result<Resolved> {
    let mut all = Vec::new();
    for v in &args.volumes {
        all.push(parse(v)?);
    }
    for m in &args.mounts {
        all.push(parse_mount(m)?);
    }
    for t in &args.tmpfs {
        all.push(parse_tmpfs(t)?);
    }
    let key = |t: &str| -> PathBuf { Path::new(t).components().collect() };
    let mut seen: Vec<PathBuf> = Vec::new();
    for s in &all {
        let t = key(&s.target);
        if seen.contains(&t) {
            bail!("duplicate mount point: {}", t.display());
        }
        seen.push(t);
    }
    for v in image_volumes {
        if v.starts_with('/') && !seen.contains(&key(v)) && check_target(v, "the image's VOLUME").is_ok() {
            seen.push(key(v));
            all.push(Spec { source: Source::Anonymous, target: v.clone(), read_only: false, nocopy: false });
        }
    }
    for s in all.iter_mut() {
        if let Source::Host(p) = &s.source {
            let canonical = p.canonicalize().map_err(|_| {
                anyhow!("invalid mount config for type \"bind\": bind source path does not exist: {}", p.display())
            })?;
            s.source = Source::Host(canonical);
        }
    }
    let mut made = Vec::new();
    let res = make_volumes(store, &mut all, &mut made);
    if let Err(e) = res {
        discard(store, &made);
        return Err(e);
    }
    let (tmpfs, volumes): (Vec<Spec>, Vec<Spec>) = all.into_iter().partition(|s| matches!(s.source, Source::Tmpfs(_)));
    Ok(Resolved {
        volumes: volumes.iter().map(Spec::record).collect(),
        tmpfs: tmpfs.iter().map(Spec::record).collect(),
        made,
    })
}

fn make_volumes(store: &Store, all: &mut [Spec], made: &mut Vec<String>) -> Result<()> {
    for s in all.iter_mut() {
        match &s.source {
            Source::Anonymous => {
                let (v, _) = vol::create(store, None, BTreeMap::new(), true)?;
                made.push(v.name.clone());
                s.source = Source::Named(v.name);
            }
            Source::Named(n) => {
                let (_, new) = vol::create(store, Some(n), BTreeMap::new(), false)?;
                if new {
                    made.push(n.clone());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes volumes made for a container that was not made after all.
pub fn discard(store: &Store, names: &[String]) {
    for n in names {
        if let Err(e) = vol::remove(store, n) {
            tracing::warn!("cannot remove volume {n}: {e}");
        }
    }
}

/// The mounts the runtime makes for a container.
pub fn runtime(store: &Store, config: &RunConfig) -> Result<Vec<strata_runtime::Volume>> {
    let mut out = Vec::new();
    for s in specs(config)? {
        let (source, tmpfs) = match s.source {
            Source::Host(p) => (p, None),
            Source::Named(n) => {
                vol::find(store, &n)?;
                (vol::data_dir(store, &n), None)
            }
            Source::Tmpfs(o) => (PathBuf::from("tmpfs"), Some(o)),
            Source::Anonymous => bail!("{}: an anonymous volume without a name in the record", s.target),
        };
        out.push(strata_runtime::Volume { source, target: s.target, read_only: s.read_only, tmpfs });
    }
    // Outer paths first, so that `/a` does not hide a mount at `/a/b` (as Docker sorts).
    out.sort_by_key(|v| Path::new(&v.target).components().count());
    Ok(out)
}

/// Before a container starts: each of its named volumes that is new and empty is first
/// filled with what the container's root (`mnt`, its union) has at the mount's path,
/// modes, owners, times, xattrs and links kept (as Docker does, unless `nocopy`).
pub fn populate(store: &Store, c: &Container, mnt: &Path) -> Result<()> {
    for s in specs(&c.config)? {
        let Source::Named(name) = &s.source else { continue };
        let rec = vol::find(store, name)?;
        if rec.populated {
            continue;
        }
        if !s.nocopy && vol::is_empty(store, name)? {
            crate::cp::fill_from_root(mnt, &s.target, &vol::data_dir(store, name))
                .with_context(|| format!("filling volume {name} from the image's {}", s.target))?;
        }
        vol::set_populated(store, name)?;
    }
    Ok(())
}

/// `inspect`'s `Mounts`.
pub fn inspect_mounts(store: &Store, config: &RunConfig) -> Vec<serde_json::Value> {
    let Ok(specs) = specs(config) else { return Vec::new() };
    specs
        .iter()
        .map(|s| match &s.source {
            Source::Host(p) => serde_json::json!({"Type": "bind", "Source": p, "Destination": s.target,
                "Mode": if s.read_only { "ro" } else { "" }, "RW": !s.read_only, "Propagation": "rprivate"}),
            Source::Named(n) => serde_json::json!({"Type": "volume", "Name": n, "Source": vol::data_dir(store, n),
                "Destination": s.target, "Driver": "local", "Mode": "", "RW": !s.read_only, "Propagation": ""}),
            Source::Tmpfs(o) => serde_json::json!({"Type": "tmpfs", "Source": "", "Destination": s.target,
                "Options": o, "RW": !s.read_only}),
            Source::Anonymous => serde_json::json!({"Type": "volume", "Destination": s.target}),
        })
        .collect()
}

/// After `rm -v` or `run --rm`: the container's anonymous volumes, unless another
/// container uses them too.
pub fn remove_anonymous(store: &Store, c: &Container) {
    for name in vol::names_in(&c.config) {
        match vol::get(store, name) {
            Ok(Some(v)) if v.anonymous => {
                if let Err(e) = vol::remove(store, name) {
                    tracing::warn!("volume {name} not removed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("volume {name}: {e}"),
        }
    }
}

/// `strata volume ...`
#[derive(clap::Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given); prints its name
    Create {
        /// Set metadata on the volume (KEY=VALUE)
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Only `local`
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only the names
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: crate::images::ListFormat,
    },
    /// Show volumes as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one)
    #[command(alias = "remove")]
    Rm {
        /// No error for a volume that does not exist
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes no container uses (-a: all unused volumes)
    Prune {
        /// Named volumes too
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not ask for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
}

fn json(store: &Store, v: &VolumeRecord) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": v.created_at, "Driver": v.driver, "Labels": v.labels,
        "Mountpoint": vol::data_dir(store, &v.name), "Name": v.name, "Options": {}, "Scope": "local",
        "Anonymous": v.anonymous,
    })
}

pub fn cmd_volume(store: &Store, command: VolumeCommand) -> Result<ExitCode> {
    match command {
        VolumeCommand::Create { labels, driver, name } => {
            if driver != "local" {
                bail!("volume driver '{driver}' is not supported (only local)");
            }
            let mut map = BTreeMap::new();
            for l in labels {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                map.insert(k.to_string(), v.to_string());
            }
            let (v, _) = vol::create(store, name.as_deref(), map, false)?;
            println!("{}", v.name);
        }
        VolumeCommand::Ls { quiet, format } => {
            let list = vol::list(store)?;
            match format {
                crate::images::ListFormat::Json => {
                    let all: Vec<_> = list.iter().map(|v| json(store, v)).collect();
                    println!("{}", serde_json::to_string_pretty(&all)?);
                }
                crate::images::ListFormat::Table if quiet => list.iter().for_each(|v| println!("{}", v.name)),
                crate::images::ListFormat::Table => {
                    let rows: Vec<Vec<String>> = list.iter().map(|v| vec![v.driver.clone(), v.name.clone()]).collect();
                    table(&["DRIVER", "VOLUME NAME"], &rows);
                }
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in &names {
                match vol::find(store, n) {
                    Ok(v) => out.push(json(store, &v)),
                    Err(e) => {
                        eprintln!("strata: {e}");
                        failed = true;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        VolumeCommand::Rm { force, names } => {
            let mut failed = false;
            for n in &names {
                match vol::remove(store, n) {
                    Ok(_) => println!("{n}"),
                    Err(strata_store::StoreError::NoSuchVolume(_)) if force => {}
                    Err(e) => {
                        eprintln!("strata: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        VolumeCommand::Prune { all, force } => {
            if !force {
                let what = if all { "all local volumes" } else { "anonymous local volumes" };
                eprint!(
                    "WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] "
                );
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let mut freed = 0;
            let mut removed = Vec::new();
            for v in vol::list(store)? {
                if !(all || v.anonymous) || !vol::users(store, &v.name)?.is_empty() {
                    continue;
                }
                match vol::remove(store, &v.name) {
                    Ok(n) => {
                        freed += n;
                        removed.push(v.name);
                    }
                    // Taken by a container made meanwhile.
                    Err(strata_store::StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                removed.iter().for_each(|n| println!("{n}"));
                println!();
            }
            println!("Total reclaimed space: {}", crate::ui::human_size(freed));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs() {
        let v = parse("/srv/data:/data:ro").expect("valid");
        assert_eq!((v.source, v.target.as_str(), v.read_only), (Source::Host("/srv/data".into()), "/data", true));
        assert!(!parse("/a:/b").expect("valid").read_only);
        let n = parse("cache:/var/cache:ro,nocopy").expect("valid");
        assert_eq!((n.source, n.read_only, n.nocopy), (Source::Named("cache".into()), true, true));
        assert_eq!(parse("/d").expect("valid").source, Source::Anonymous);
        for bad in ["./data:/d", "/a:d", "/a:/d/../..", "/a:/", "/a:/proc/x", "/a:/d:rx", "/a:/b:ro:x", "/a:/b:nocopy"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // The record's form reads back as the same mount.
        for s in ["/srv:/data:ro", "cache:/c:ro,nocopy", "cache:/c"] {
            assert_eq!(parse(s).expect("valid").record(), s);
        }
    }

    #[test]
    fn mount_and_tmpfs_specs() {
        let m = parse_mount("type=bind,src=/srv,dst=/data,readonly").expect("valid");
        assert_eq!((m.source, m.target.as_str(), m.read_only), (Source::Host("/srv".into()), "/data", true));
        let m = parse_mount("source=v1,target=/v,volume-nocopy").expect("valid");
        assert_eq!((m.source, m.nocopy, m.read_only), (Source::Named("v1".into()), true, false));
        let m = parse_mount("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770").expect("valid");
        assert_eq!(m.source, Source::Tmpfs(format!("size={},mode=1770", 64 << 20)));
        assert_eq!(parse_mount("type=volume,target=/x,ro=false").expect("valid").source, Source::Anonymous);
        let err = |s: &str| parse_mount(s).expect_err(s).to_string();
        assert!(err("type=bind,target=/x,colour=red").contains("unexpected key 'colour'"));
        assert!(err("type=bind,target=/x").contains("field Source must not be empty"));
        assert!(err("type=tmpfs,src=/a,target=/x").contains("must not be specified"));
        assert!(err("type=bind,src=/a").contains("target is required"));
        assert!(err("type=nfs,target=/x").contains("invalid mount type"));
        let t = parse_tmpfs("/run:size=1m,ro,exec").expect("valid");
        assert_eq!((t.read_only, t.record()), (true, "/run:size=1m,exec,ro".to_string()));
        assert!(parse_tmpfs("/run:bogus").is_err());
    }
}
