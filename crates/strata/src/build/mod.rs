//! `strata build`: an image from a Dockerfile, one layer per RUN, COPY and ADD, with a
//! cache. See docs/build.md.
//!
//! [`dockerfile`] parses, [`plan`] substitutes and checks everything up front,
//! [`context`] reads the context and copies files. This module executes the plan: a RUN
//! is a container of the store run by the runtime and committed (the same create, start
//! and commit `strata run`/`commit` use); a COPY is a container whose union is mounted,
//! written and committed; other instructions only change the config.

pub mod context;
pub mod dockerfile;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use strata_store::container::{self, Container, RunConfig};
use strata_store::{Digest, Image, Store, buildcache};

use context::{Attrs, Dest, Item, Source};
use plan::{Action, Base, From, Plan, Step};

/// The options of `strata build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Name the image NAME[:TAG] (may be repeated)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build argument (KEY=VALUE, or KEY to take this process's value)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) and tag it
    #[arg(long)]
    pub target: Option<String>,
    /// Build every step again
    #[arg(long)]
    pub no_cache: bool,
    /// The network of RUN steps
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// Add a label to the image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print only the image ID
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The build context: a directory, or '-' for a Dockerfile on stdin and no context
    pub context: String,
}

/// `strata builder ...`
#[derive(clap::Subcommand, Debug)]
pub enum BuilderCommand {
    /// Remove the build cache's records, and the layers no image or container uses
    Prune,
}

pub fn cmd_builder(store: &Store, command: BuilderCommand) -> Result<ExitCode> {
    match command {
        BuilderCommand::Prune => {
            let (records, layers) = buildcache::prune(store)?;
            for l in &layers {
                println!("Deleted layer: {l}");
            }
            println!("Deleted {records} build cache record(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Empty image config of `FROM scratch`.
fn scratch() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": strata_store::load::host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }))
    .unwrap_or_default()
}

pub fn cmd_build(store: &Store, args: &BuildArgs) -> Result<ExitCode> {
    let (text, context) = if args.context == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the Dockerfile from stdin")?;
        (s, None)
    } else {
        let dir = Path::new(&args.context);
        if !dir.is_dir() {
            bail!("{}: the build context is not a directory", dir.display());
        }
        let file = args.file.clone().unwrap_or_else(|| dir.join("Dockerfile"));
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        (text, Some(Source::context(dir)?))
    };
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(a.clone(), std::env::var(a).unwrap_or_default()),
        };
    }
    let mut tags = Vec::new();
    for t in &args.tags {
        tags.push(strata_store::refs::normalize(t)?);
    }
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| anyhow!("--label {l}: expected KEY=VALUE"))?;
        labels.push((k.to_string(), v.to_string()));
    }
    let df = dockerfile::parse(&text)?;
    let plan = plan::plan(store, &df, context.as_ref(), &build_args, args.target.as_deref())?;
    if !plan.unused_args.is_empty() && !args.quiet {
        eprintln!("[Warning] one or more build args were not consumed: {}", plan.unused_args.join(", "));
    }
    catch_signals();
    let before: BTreeSet<String> = store.image_ids()?.iter().map(|d| d.to_string()).collect();
    let mut b = Builder {
        store,
        context,
        no_cache: args.no_cache,
        network: args.network.clone(),
        quiet: args.quiet,
        before,
        made: BTreeSet::new(),
        step: 0,
        total: plan.order.iter().map(|&i| 1 + plan.stages[i].steps.len()).sum(),
    };
    let res = b.build(&plan).and_then(|mut bytes| {
        if !labels.is_empty() {
            let mut cfg: Value = serde_json::from_slice(&bytes)?;
            if !cfg["config"]["Labels"].is_object() {
                cfg["config"]["Labels"] = json!({});
            }
            for (k, v) in &labels {
                cfg["config"]["Labels"][k] = json!(v);
            }
            bytes = serde_json::to_vec(&cfg)?;
        }
        match store.commit_image(&bytes, &mut BTreeMap::new(), &tags)? {
            Ok(id) => Ok(id),
            Err(missing) => bail!("the layers {} were removed during the build", missing.join(", ")),
        }
    });
    // Intermediate images go; their layers stay as long as the cache records them.
    let keep = res.as_ref().ok().map(|id| id.to_string());
    for id in &b.made {
        if Some(id) != keep.as_ref()
            && let Err(e) = store.remove_image(id, false)
        {
            tracing::debug!("intermediate image {id}: {e}");
        }
    }
    let id = res?;
    if !args.quiet {
        for t in &tags {
            println!("Successfully tagged {t}");
        }
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

struct Builder<'a> {
    store: &'a Store,
    context: Option<Source>,
    no_cache: bool,
    network: String,
    quiet: bool,
    /// Image IDs in the store before the build, and those it wrote.
    before: BTreeSet<String>,
    made: BTreeSet<String>,
    step: usize,
    total: usize,
}

/// A container of the build: removed (and unmounted) whatever happens.
struct Temp<'a> {
    store: &'a Store,
    c: Container,
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if let Err(e) = crate::containers::remove(self.store, &self.c, true) {
            tracing::warn!("cannot remove build container {}: {e:#}", self.c.id);
        }
    }
}

fn short(bytes: &[u8]) -> String {
    Digest::of(bytes).short().to_string()
}

impl<'a> Builder<'a> {
    fn say(&self, line: &str) {
        if !self.quiet {
            println!("{line}");
        }
    }

    fn next_step(&mut self, shown: &str) {
        self.step += 1;
        self.say(&format!("STEP {}/{}: {shown}", self.step, self.total));
    }

    /// Builds the stages the plan needs; returns the config of the last one.
    fn build(&mut self, plan: &Plan) -> Result<Vec<u8>> {
        let mut results: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut last = Vec::new();
        for &i in &plan.order {
            let st = &plan.stages[i];
            self.next_step(&st.shown);
            let mut bytes = match &st.base {
                Base::Scratch => scratch(),
                Base::Image(id) => self.store.image(id)?.config_bytes,
                Base::Stage(j) => results.get(j).cloned().ok_or_else(|| anyhow!("stage {j} was not built"))?,
            };
            for step in &st.steps {
                self.next_step(&step.shown);
                bytes = self.step(step, &bytes, &results).with_context(|| format!("Dockerfile line {}", step.line))?;
            }
            results.insert(i, bytes.clone());
            last = bytes;
        }
        Ok(last)
    }

    fn step(&mut self, step: &Step, parent: &[u8], results: &BTreeMap<usize, Vec<u8>>) -> Result<Vec<u8>> {
        interrupted()?;
        // The key: the parent image, the instruction after substitution (with the build
        // args in scope and the config it leads to), and for COPY what it reads.
        let mut h = Sha256::new();
        h.update(b"strata-build-1\0");
        h.update(Digest::of(parent).as_str());
        h.update(b"\0");
        h.update(step.key.as_bytes());
        if let Action::Run { .. } = step.action {
            // A RUN may behave differently with the host's network.
            h.update(format!("\0network={}", self.network));
        }
        let mut content = Sha256::new();
        // What a COPY from the context copies, as hashed: the copy takes the same items.
        let mut context_items = None;
        if let Action::Copy { from, sources, heredocs, .. } = &step.action {
            for h in heredocs {
                content.update(h.body.as_bytes());
            }
            match from {
                // Heredocs alone need no context (`strata build -` with `COPY <<EOF`).
                From::Context if sources.is_empty() => {}
                From::Context => {
                    let ctx = self.context.as_ref().ok_or_else(|| anyhow!("no build context"))?;
                    let items = plan::items(ctx, sources)?;
                    ctx.hash(&items, &mut content)?;
                    context_items = Some(items);
                }
                From::Stage(j) => content.update(Digest::of(&results[j]).as_str()),
                From::Image(id) => content.update(id.as_bytes()),
            }
        }
        let content: [u8; 32] = content.finalize().into();
        h.update(content);
        let key = hex(&h.finalize());
        if !self.no_cache
            && let Some(bytes) = buildcache::get(self.store, &key)?
        {
            self.say(&format!("---> Using cache {}", short(&bytes)));
            return Ok(bytes);
        }
        // A base's ONBUILD triggers are cleared from the config the first step runs on.
        let with_config;
        let parent = match &step.action {
            Action::Meta => parent,
            _ => {
                with_config = config_set(parent, &step.config)?;
                &with_config[..]
            }
        };
        let bytes = match &step.action {
            Action::Meta => self.meta(parent, step)?,
            Action::Run { argv, env } => self.run(parent, step, argv, env)?,
            Action::Copy { .. } => self.copy(parent, step, &hex(&content), context_items, results)?,
        };
        buildcache::put(self.store, &key, &bytes)?;
        self.say(&format!("---> {}", short(&bytes)));
        Ok(bytes)
    }

    /// A config-only step: a history entry with `empty_layer`.
    fn meta(&self, parent: &[u8], step: &Step) -> Result<Vec<u8>> {
        let mut cfg: Value = serde_json::from_slice(parent)?;
        let now = strata_store::store::now_rfc3339();
        cfg["config"] = step.config.clone();
        cfg["created"] = json!(now);
        if let Some(a) = &step.author {
            cfg["author"] = json!(a);
        }
        let mut history = cfg.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
        history.push(json!({"created": now, "created_by": step.created_by, "empty_layer": true}));
        cfg["history"] = json!(history);
        Ok(serde_json::to_vec(&cfg)?)
    }

    /// The image of config `bytes`, written to the store if it is not there.
    fn image_of(&mut self, bytes: &[u8]) -> Result<Image> {
        let id = Digest::of(bytes);
        if let Ok(img) = self.store.image(id.as_str()) {
            return Ok(img);
        }
        match self.store.commit_image(bytes, &mut BTreeMap::new(), &[])? {
            Ok(id) => {
                self.made(&id);
                Ok(self.store.image(id.as_str())?)
            }
            Err(missing) => bail!("the layers {} were removed during the build", missing.join(", ")),
        }
    }

    fn made(&mut self, id: &Digest) {
        if !self.before.contains(id.as_str()) {
            self.made.insert(id.to_string());
        }
    }

    /// A container over the image of `bytes`; `args` is what its history entry says.
    fn container(&mut self, bytes: &[u8], args: Vec<String>, env: Vec<String>) -> Result<Temp<'a>> {
        let image = self.image_of(bytes)?;
        let cfg = image.config.get("config").cloned().unwrap_or_else(|| json!({}));
        let get = |k: &str| cfg.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string);
        let mut env = env;
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(strata_store::import::DEFAULT_PATH.to_string());
        }
        let rc = RunConfig {
            args,
            env,
            cwd: get("WorkingDir").unwrap_or_else(|| "/".into()),
            user: get("User").unwrap_or_default(),
            network: self.network.clone(),
            ..RunConfig::default()
        };
        let c = container::create(self.store, &image, image.id.as_str(), None, rc, None)?;
        Ok(Temp { store: self.store, c })
    }

    /// Commits the container's layer; returns the new config.
    fn commit(&mut self, t: &Temp<'_>) -> Result<Vec<u8>> {
        let opts = strata_store::commit::CommitOptions { reference: None, message: None, author: None, changes: &[] };
        let id = strata_store::commit::commit(self.store, &t.c, &opts, &strata_store::Quiet)?;
        self.made(&id);
        Ok(self.store.image(id.as_str())?.config_bytes)
    }

    fn run(&mut self, parent: &[u8], step: &Step, argv: &[String], env: &[String]) -> Result<Vec<u8>> {
        let quiet = self.quiet;
        let t = self.container(parent, argv.to_vec(), env.to_vec())?;
        let store = t.store;
        // The working directory is made as Docker makes it (root's, 0755), not by the
        // runtime under the command's umask.
        let mnt = crate::containers::ensure_mounted(store, &t.c)?;
        Dest::new(&mnt)?.mkdirs(&t.c.config.cwd, None)?;
        let (res, stderr) = captured(quiet, || crate::containers::start(store, &t.c, false, false))?;
        // The runtime forwarded signals to the command meanwhile, and reset them after.
        catch_signals();
        let code = res?;
        if code != 0 {
            let tail = if stderr.trim().is_empty() { String::new() } else { format!(":\n{}", stderr.trim_end()) };
            bail!("{}: the command exited with status {code}{tail}", step.shown);
        }
        let bytes = self.commit(&t)?;
        // commit writes the command as it ran; the build args it saw go in front.
        let mut cfg: Value = serde_json::from_slice(&bytes)?;
        let last = cfg["history"].as_array_mut().and_then(|h| h.last_mut());
        match last {
            Some(entry) if entry["created_by"] != step.created_by.as_str() => {
                entry["created_by"] = json!(step.created_by);
                let bytes = serde_json::to_vec(&cfg)?;
                self.image_of(&bytes)?;
                Ok(bytes)
            }
            _ => Ok(bytes),
        }
    }

    fn copy(
        &mut self,
        parent: &[u8],
        step: &Step,
        content: &str,
        context_items: Option<Vec<Item>>,
        results: &BTreeMap<usize, Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let Action::Copy { from, sources, heredocs, dest, chown, chmod, add } = &step.action else {
            bail!("not a copy step");
        };
        let store = self.store;
        let kind = match (sources.len() + heredocs.len(), from) {
            (1, From::Context) if heredocs.is_empty() => {
                let items = context_items.as_ref().ok_or_else(|| anyhow!("no build context"))?;
                if items.iter().all(|i| !i.is_dir) { "file" } else { "dir" }
            }
            (1, _) => "file",
            _ => "multi",
        };
        let op = if *add { "ADD" } else { "COPY" };
        let created_by = format!("#(nop) {op} {kind}:{content} in {dest} ");
        let args = vec!["/bin/sh".to_string(), "-c".to_string(), created_by];
        // The source first: a stage's or image's root, mounted read-only in a container.
        let src_guard = match from {
            From::Context => None,
            From::Stage(j) => Some(self.container(&results[j], vec!["true".into()], Vec::new())?),
            From::Image(id) => {
                let bytes = store.image(id)?.config_bytes;
                Some(self.container(&bytes, vec!["true".into()], Vec::new())?)
            }
        };
        let t = self.container(parent, args, Vec::new())?;
        let staging = store.staging()?;
        let res = (|| -> Result<()> {
            let mnt = crate::containers::ensure_mounted(store, &t.c)?;
            let stage_src;
            let src: &Source = match &src_guard {
                None => match &self.context {
                    Some(c) => c,
                    None if sources.is_empty() => {
                        stage_src = Source::root_of(&staging.dir)?;
                        &stage_src
                    }
                    None => bail!("no build context"),
                },
                Some(g) => {
                    let m = crate::containers::ensure_mounted(store, &g.c)?;
                    stage_src = Source::root_of(&m)?;
                    &stage_src
                }
            };
            let owner = match chown {
                Some(spec) => {
                    let (uid, gid, _, _) = crate::containers::resolve_user(&mnt, spec)?;
                    // Docker: a user without a group gives the same number as GID.
                    Some(if spec.contains(':') { (uid, gid) } else { (uid, uid) })
                }
                None => None,
            };
            let attrs = Attrs { owner, chmod: *chmod, keep_owner: false };
            let dst = Dest::new(&mnt)?;
            let dest_rel = dest.trim_start_matches('/').trim_end_matches('/').to_string();
            let items = match context_items {
                Some(items) => items,
                None => plan::items(src, sources)?,
            };
            // A glob in another stage is only expanded now.
            if items.len() + heredocs.len() > 1 && !dest.ends_with('/') {
                bail!("{}: {}", step.shown, plan::MANY);
            }
            let into_dir = dest.ends_with('/') || dst.is_dir(&dest_rel);
            if into_dir {
                dst.mkdirs(&dest_rel, owner)?;
            }
            let target = |name: &str| if into_dir { context::join(&dest_rel, name) } else { dest_rel.clone() };
            for item in &items {
                let base = item.rel.rsplit('/').next().unwrap_or_default();
                if item.is_dir {
                    context::copy_item(src, item, &dst, &dest_rel, attrs)?;
                } else if *add && context::is_archive(src, &item.rel) {
                    extract(store, src, &item.rel, &dst, &dest_rel, attrs)?;
                } else {
                    context::copy_item(src, item, &dst, &target(base), attrs)?;
                }
            }
            // Heredoc sources: files made from the Dockerfile's text, 0644.
            for h in heredocs {
                let p = staging.dir.join(&h.name);
                std::fs::write(&p, &h.body).with_context(|| p.display().to_string())?;
                set_mode(&p, 0o644)?;
                let hs = Source::root_of(&staging.dir)?;
                let item = Item { rel: h.name.clone(), is_dir: false };
                context::copy_item(&hs, &item, &dst, &target(&h.name), attrs)?;
            }
            Ok(())
        })();
        if let Some(g) = &src_guard {
            crate::containers::unmount(store, &g.c);
        }
        // The union is unmounted before its layer is read: nothing stays in flight.
        crate::containers::unmount(store, &t.c);
        res?;
        interrupted()?;
        self.commit(&t)
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C, SIGTERM and SIGHUP stop the build at the next step boundary, so that its
/// containers, mounts and intermediate images are removed. (During a RUN the runtime
/// forwards them to the command instead, as `strata run` does.)
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// The config `bytes` with its `config` object replaced (no history entry), or as is.
fn config_set(bytes: &[u8], config: &Value) -> Result<Vec<u8>> {
    let mut cfg: Value = serde_json::from_slice(bytes)?;
    if cfg.get("config") == Some(config) {
        return Ok(bytes.to_vec());
    }
    cfg["config"] = config.clone();
    Ok(serde_json::to_vec(&cfg)?)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).with_context(|| p.display().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ADD` of a local archive: unpacked safely (the store's layer extraction) in a
/// staging directory, then copied into `dest_rel` with the owners it had.
fn extract(store: &Store, src: &Source, rel: &str, dst: &Dest, dest_rel: &str, attrs: Attrs) -> Result<()> {
    let staging = store.staging()?;
    let dir = staging.dir.join("x");
    std::fs::create_dir(&dir).with_context(|| dir.display().to_string())?;
    let file = context::open_file(src, rel)?;
    let reader = strata_store::compress::decompress(std::io::BufReader::new(file))
        .with_context(|| format!("{rel}: cannot read the archive"))?;
    strata_store::apply::apply_layer(reader, &dir, None).with_context(|| format!("{rel}: cannot unpack"))?;
    let s = Source::root_of(&dir)?;
    let keep = Attrs { keep_owner: attrs.owner.is_none(), ..attrs };
    // The unpacked tree's contents, links in it copied as links.
    let n = context::copy_item(&s, &Item { rel: String::new(), is_dir: true }, dst, dest_rel, keep)?;
    tracing::debug!("{rel}: {n} entries unpacked");
    Ok(())
}

/// Runs `f` with stderr going through a pipe: passed on (unless quiet) and its tail
/// kept for the error message. Quiet also silences stdout.
fn captured<T>(quiet: bool, f: impl FnOnce() -> T) -> Result<(T, String)> {
    let saved_err: OwnedFd = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 3)?;
    let saved_out: OwnedFd = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)?;
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let copy_to = if quiet { None } else { Some(rustix::io::fcntl_dupfd_cloexec(&saved_err, 3)?) };
    let reader = std::thread::spawn(move || {
        let mut r = std::fs::File::from(r);
        let mut out = copy_to.map(std::fs::File::from);
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(o) = out.as_mut() {
                let _ = o.write_all(&buf[..n]);
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    let _ = std::io::stdout().flush();
    rustix::stdio::dup2_stderr(&w)?;
    drop(w);
    if quiet {
        let null = std::fs::File::options().write(true).open("/dev/null")?;
        rustix::stdio::dup2_stdout(&null)?;
    }
    let out = f();
    let _ = std::io::stdout().flush();
    rustix::stdio::dup2_stdout(&saved_out)?;
    rustix::stdio::dup2_stderr(&saved_err)?;
    let tail = reader.join().map_err(|_| anyhow!("stderr reader failed"))?;
    Ok((out, tail))
}
