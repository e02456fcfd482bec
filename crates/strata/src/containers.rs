//! The container commands: create, run, start, exec, ps, rm, diff, commit, and mounting
//! a container's union.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use strata_runtime::confine::{self, Confinement};
use strata_runtime::{DeviceAccess, Limits, Network, RunSpec, Seccomp};
use strata_store::Store;
use strata_store::container::{self, Container, RunConfig, Security};

use crate::ui::{Bars, ago, table};

/// Options shared by `create` and `run`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Name the container (default: a generated name)
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to take this process's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User: UID[:GID] or NAME[:GROUP] from the image's /etc/passwd and /etc/group
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (bytes, or with k, m, g suffix; at least 6m)
    #[arg(short = 'm', long = "memory", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// Maximum number of processes
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<u64>,
    /// CPU share in CPUs (e.g. 0.5)
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// CPUs the container may run on (e.g. 0-2,4)
    #[arg(long = "cpuset-cpus", value_parser = parse_cpuset, value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    #[command(flatten)]
    pub net: crate::network::NetArgs,
    #[command(flatten)]
    pub volumes: crate::volumes::VolumeArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub pull: crate::registry::RunPullArgs,
    #[command(flatten)]
    pub restart: crate::monitor::RestartArg,
    /// The image, then the command and its arguments (default: the image's)
    #[arg(required = true, trailing_var_arg = true, value_name = "IMAGE [COMMAND [ARG...]]")]
    pub image_and_cmd: Vec<String>,
}

/// Docker's options that change the default confinement.
#[derive(clap::Args, Debug, Default)]
pub struct SecurityArgs {
    /// Give the container every capability, no seccomp filter, every device, and a
    /// writable /sys (trust it with the host)
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability (CAP_NET_ADMIN, net_admin, or ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=PROFILE.json (Docker's format), no-new-privileges
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER[:PERMISSIONS]], e.g. /dev/fuse or /dev/sdb:/dev/xvdc:r
    #[arg(long = "device", value_name = "DEVICE")]
    pub devices: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run a small init as pid 1 that forwards signals and reaps (else the command is pid 1)
    #[arg(long)]
    pub init: bool,
}

impl SecurityArgs {
    fn record(&self) -> Security {
        Security {
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opt: self.security_opt.clone(),
            devices: self.devices.clone(),
            read_only: self.read_only,
            init: self.init,
        }
    }
}

/// A `--device` value: host path, container path, cgroup permissions.
fn parse_device(spec: &str) -> Result<(String, String, String)> {
    let mut parts = spec.split(':');
    let host = parts.next().unwrap_or_default().to_string();
    let ctr = parts.next().filter(|p| !p.is_empty()).unwrap_or(&host).to_string();
    let perms = parts.next().unwrap_or("rwm").to_string();
    if !host.starts_with('/') || !ctr.starts_with("/dev/") || parts.next().is_some() {
        bail!("--device {spec}: expected HOST[:CONTAINER[:PERMISSIONS]], the container path under /dev");
    }
    if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
        bail!("--device {spec}: permissions are a combination of r, w and m");
    }
    if ctr.split('/').any(|c| c == "..") {
        bail!("--device {spec}: '..' is not allowed in the container path");
    }
    Ok((host, ctr, perms))
}

/// The confinement a container's record asks for, resolved (checked at `create`, so
/// that a bad option is refused before anything exists).
pub fn confinement(sec: &Security, seccomp_profile: Option<String>) -> Result<Confinement> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut c = Confinement { read_only_root: sec.read_only, init: sec.init, ..Confinement::default() };
    if sec.privileged {
        c.capabilities = confine::all_capabilities();
        c.seccomp = Seccomp::Unconfined;
        c.privileged = true;
        c.devices = DeviceAccess::All;
    }
    c.capabilities = confine::adjust_capabilities(c.capabilities, &sec.cap_add, &sec.cap_drop)?;
    for opt in &sec.security_opt {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("no-new-privileges", "" | "true") => c.no_new_privs = true,
            ("no-new-privileges", "false") => c.no_new_privs = false,
            ("seccomp", "unconfined") => c.seccomp = Seccomp::Unconfined,
            ("seccomp", path) if !path.is_empty() => {
                c.seccomp = match &seccomp_profile {
                    Some(text) => Seccomp::Profile(text.clone()),
                    None => Seccomp::Profile(strata_runtime::seccomp::read_profile(Path::new(path))?),
                };
            }
            _ => bail!(
                "--security-opt {opt}: unknown option (known: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges)"
            ),
        }
    }
    let mut rules = Vec::new();
    for d in &sec.devices {
        let (host, ctr, perms) = parse_device(d)?;
        let meta = std::fs::metadata(&host).with_context(|| format!("--device {d}: {host}"))?;
        let kind = if meta.file_type().is_char_device() {
            'c'
        } else if meta.file_type().is_block_device() {
            'b'
        } else {
            bail!("--device {d}: {host} is not a device node");
        };
        let (major, minor) = (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()));
        rules.push(format!("{kind} {major}:{minor} {perms}"));
        c.device_nodes.push((host, ctr));
    }
    if !rules.is_empty() && c.devices == DeviceAccess::Default {
        c.devices = DeviceAccess::With(rules);
    }
    Ok(c)
}

/// `inspect` of a container: its record, and the confinement it runs with.
pub fn inspect_value(store: &Store, c: &Container) -> Result<serde_json::Value> {
    let sec = &c.config.security;
    let conf = confinement(sec, seccomp_profile(store, c))?;
    let seccomp = match &conf.seccomp {
        Seccomp::Default => {
            format!("default ({}, Docker's capability rules)", strata_runtime::seccomp::DEFAULT_PROFILE)
        }
        Seccomp::Profile(_) => format!("profile ({})", c.dir(store).join(container::SECCOMP_PROFILE).display()),
        Seccomp::Unconfined => "unconfined".into(),
    };
    let (masked, read_only): (Vec<&str>, Vec<&str>) = if conf.privileged {
        (Vec::new(), Vec::new())
    } else {
        (confine::MASKED_PATHS.to_vec(), confine::READ_ONLY_PATHS.to_vec())
    };
    let abs = |v: Vec<&str>| v.iter().map(|p| format!("/{p}")).collect::<Vec<_>>();
    let mut namespaces = vec!["mount", "pid", "uts", "ipc", "cgroup"];
    if c.config.network != "host" {
        namespaces.push("network");
    }
    let state = state(c);
    Ok(serde_json::json!({
        "Id": c.id, "Name": c.name, "Created": c.created, "Image": c.image, "ImageName": c.image_name,
        "State": {"Status": state, "Running": c.is_running(), "Paused": crate::manage::paused(c),
                  "Restarting": state == "restarting", "Pid": c.state.pid, "ExitCode": c.state.exit_code,
                  "StartedAt": c.state.started_at, "FinishedAt": c.state.finished_at},
        "RestartCount": c.state.restart_count,
        "Config": {"Cmd": c.config.args, "Env": c.config.env, "WorkingDir": c.config.cwd, "User": c.config.user,
                   "Hostname": c.config.hostname, "OpenStdin": c.config.keep.open_stdin, "Tty": c.config.keep.tty},
        "HostConfig": {"Privileged": sec.privileged, "CapAdd": sec.cap_add, "CapDrop": sec.cap_drop,
                       "SecurityOpt": sec.security_opt, "Devices": sec.devices, "ReadonlyRootfs": sec.read_only,
                       "Init": sec.init, "NetworkMode": c.config.network, "Memory": c.config.memory,
                       "PidsLimit": c.config.pids, "NanoCpus": c.config.cpus.map(|c| (c * 1e9) as u64),
                       "CpusetCpus": c.config.cpuset_cpus.clone().unwrap_or_default(),
                       "RestartPolicy": crate::monitor::policy_json(&c.config.keep.restart),
                       "AutoRemove": c.config.keep.auto_remove},
        "Confinement": {"Capabilities": confine::capability_names(conf.capabilities),
                        "NonRootCapabilities": [], "Seccomp": seccomp, "NoNewPrivileges": conf.no_new_privs,
                        "MaskedPaths": abs(masked), "ReadonlyPaths": abs(read_only),
                        "Namespaces": namespaces,
                        "Pid1": if sec.init { "strata-init (sealed in-memory copy)" } else { "the command" }},
        "Mounts": crate::volumes::inspect_mounts(store, &c.config),
        "NetworkSettings": crate::network::inspect_container(store, c),
        "GraphDriver": {"Name": "strata", "Data": {"MergedDir": store.mnt_dir(&c.id), "UpperDir": store.diff_dir(&c.id),
                        "InitDir": store.diff_dir(&c.init_layer())}},
    }))
}

/// "32m" -> 33554432.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("'{s}': not a size (examples: 67108864, 64m, 1g)"))?;
    let bytes = (n * mult as f64) as u64;
    if bytes < 6 << 20 {
        return Err(format!("'{s}': the minimum memory limit is 6m"));
    }
    Ok(bytes)
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if c > 0.0 && c <= 1024.0 => Ok(c),
        _ => Err(format!("'{s}': CPUs are a positive number, e.g. 0.5 or 2")),
    }
}

/// "0-2,4", checked: every CPU in it must be online here (the kernel would refuse the
/// cgroup write later, with a less helpful error).
fn parse_cpuset(s: &str) -> Result<String, String> {
    let asked = cpu_ranges(s).ok_or_else(|| format!("'{s}': CPUs are a list of numbers and ranges, e.g. 0-2,4"))?;
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let online = online.trim();
    let up = cpu_ranges(online).unwrap_or_default();
    let offline = asked.iter().flat_map(|&(a, b)| a..=b).find(|c| !up.iter().any(|&(a, b)| (a..=b).contains(c)));
    match offline {
        Some(cpu) => Err(format!("'{s}': CPU {cpu} is not online here (online: {online})")),
        None => Ok(s.to_string()),
    }
}

/// The ranges of a kernel CPU list ("0-2,4" -> (0, 2), (4, 4)); `None` if malformed.
fn cpu_ranges(s: &str) -> Option<Vec<(u32, u32)>> {
    s.split(',')
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

fn image_list(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Creates the container the options describe.
pub fn create(store: &Store, args: &CreateArgs) -> Result<Container> {
    let (image_ref, cmd) = args.image_and_cmd.split_first().ok_or_else(|| anyhow!("no image given"))?;
    let image = crate::registry::image_for_run(store, image_ref, &args.pull)?;
    let cfg = image.config.get("config");
    let get = |k: &str| cfg.and_then(|c| c.get(k));
    let entrypoint = image_list(get("Entrypoint"));
    let cmd: Vec<String> = if cmd.is_empty() { image_list(get("Cmd")) } else { cmd.to_vec() };
    let mut argv = entrypoint.clone();
    argv.extend(cmd.iter().cloned());
    if argv.is_empty() {
        bail!("no command given, and image {image_ref} has no Cmd or Entrypoint");
    }
    let mut env = image_list(get("Env"));
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(strata_store::import::DEFAULT_PATH.to_string());
    }
    for e in &args.env {
        let e = if e.contains('=') { e.clone() } else { format!("{e}={}", std::env::var(e).unwrap_or_default()) };
        let key = e.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    let cwd = args
        .workdir
        .clone()
        .or_else(|| get("WorkingDir").and_then(|w| w.as_str()).filter(|w| !w.is_empty()).map(str::to_string))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("working directory '{cwd}' must be absolute");
    }
    let user =
        args.user.clone().or_else(|| get("User").and_then(|u| u.as_str()).map(str::to_string)).unwrap_or_default();
    let security = args.security.record();
    // Checked now, so that a bad option is refused before anything exists, with Docker's
    // exit status for a bad option (125). A profile named on the command line is read
    // now and kept with the container.
    let resolved = confinement(&security, None).map_err(|e| strata_runtime::RuntimeError::Other(format!("{e:#}")))?;
    let mounts = crate::volumes::resolve(store, &args.volumes, &image_list(get("Volumes").map(volume_paths).as_ref()))
        .map_err(|e| strata_runtime::RuntimeError::Other(format!("{e:#}")))?;
    let networking = args.net.record(store)?;
    let profile = match resolved.seccomp {
        Seccomp::Profile(text) => Some(text),
        _ => None,
    };
    let config = RunConfig {
        args: argv,
        env,
        cwd,
        user,
        hostname: args.hostname.clone().unwrap_or_default(),
        network: args.net.network.clone(),
        memory: args.memory,
        pids: args.pids_limit,
        cpus: args.cpus,
        cpuset_cpus: args.cpuset_cpus.clone(),
        cmd,
        entrypoint,
        security,
        volumes: mounts.volumes,
        tmpfs: mounts.tmpfs,
        networking,
        keep: container::Keep { restart: args.restart.restart.clone(), ..container::Keep::default() },
    };
    container::create(store, &image, image_ref, args.name.as_deref(), config, profile.as_deref()).map_err(|e| {
        crate::volumes::discard(store, &mounts.made);
        e.into()
    })
}

/// The image's `Volumes` (`{"/data": {}}`) as a list of paths.
fn volume_paths(v: &serde_json::Value) -> serde_json::Value {
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// Mounts the container's union at `mnt/<id>` unless it is mounted already.
pub fn ensure_mounted(store: &Store, c: &Container) -> Result<PathBuf> {
    let mnt = store.mnt_dir(&c.id);
    if strata_union::is_strata_mount(&mnt) {
        if std::fs::metadata(&mnt).is_ok() {
            return Ok(mnt);
        }
        // Its daemon died: clear it and mount again.
        let _ = strata_union::unmount(&mnt, true);
    }
    std::fs::create_dir_all(&mnt).with_context(|| format!("{}", mnt.display()))?;
    // Device nodes of the image never open from the container's root (its /dev is a
    // tmpfs of the runtime's); set-id binaries work, for the container's own users.
    // `chmod`, `chown` and `touch` of image files copy no data (`diff`, `commit` and
    // `pack` read it from the layer below).
    let options = [c.branches_option(store), "nodev".into(), "metacopy=on".into()];
    let code = crate::daemon::mount(&options, false, None, &mnt);
    if code != ExitCode::SUCCESS {
        bail!("cannot mount the container's filesystem at {}", mnt.display());
    }
    Ok(mnt)
}

pub(crate) fn unmount(store: &Store, c: &Container) {
    let mnt = store.mnt_dir(&c.id);
    if strata_union::is_strata_mount(&mnt)
        && let Err(e) = strata_union::unmount(&mnt, false)
    {
        tracing::debug!("{e}; detaching");
        let _ = strata_union::unmount(&mnt, true);
    }
}

/// A small regular file of the container, its symlinks resolved inside `root` (an
/// image's `/etc/passwd -> /dev/zero` or `-> /etc/shadow` must not reach the host's).
fn read_in_root(root: &Path, rel: &str) -> String {
    use rustix::fs::OFlags;
    let Ok(dir) = crate::cp::open_dir(root) else {
        return String::new();
    };
    let Ok(fd) = crate::cp::in_root(&dir, Path::new(rel), OFlags::RDONLY | OFlags::NONBLOCK) else {
        return String::new();
    };
    let file = std::fs::File::from(fd);
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::Read::take(file, 4 << 20), &mut text);
    text
}

/// uid, gid, supplementary groups and home for a user spec, from the rootfs's files.
pub(crate) fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>, String)> {
    let read = |f: &str| read_in_root(rootfs, f);
    let passwd = read("etc/passwd");
    let group = read("etc/group");
    let (user, grp) = spec.split_once(':').map_or((spec, None), |(u, g)| (u, Some(g)));
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == user || f[2] == user));
    let (uid, mut gid, name, home) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0), f[0].to_string(), f[5].to_string()),
        (None, Ok(n)) => (n, 0, String::new(), "/".to_string()),
        (None, Err(_)) => bail!("unable to find user {user}: no matching entries in the image's /etc/passwd"),
    };
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| anyhow!("unable to find group {g}: no matching entries in the image's /etc/group"))?,
        };
    }
    let groups: Vec<u32> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && !name.is_empty() && f[3].split(',').any(|m| m == name))
        .filter_map(|f| f[2].parse().ok())
        .collect();
    Ok((uid, gid, groups, home))
}

/// The container's own seccomp profile, if it has one.
fn seccomp_profile(store: &Store, c: &Container) -> Option<String> {
    std::fs::read_to_string(c.dir(store).join(container::SECCOMP_PROFILE)).ok()
}

fn spec_for(store: &Store, c: &Container, rootfs: &Path, user_root: &Path, stdin: bool) -> Result<RunSpec> {
    let (uid, gid, groups, home) = resolve_user(user_root, &c.config.user)?;
    let mut env = c.config.env.clone();
    env.push(format!("HOSTNAME={}", c.config.hostname));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    Ok(RunSpec {
        rootfs: rootfs.to_path_buf(),
        args: c.config.args.clone(),
        env,
        cwd: c.config.cwd.clone(),
        uid,
        gid,
        groups,
        hostname: c.config.hostname.clone(),
        network: match c.config.network.as_str() {
            "host" => Network::Host,
            "none" | "" => Network::None,
            _ => Network::Join(crate::network::netns_path(store, &c.id)),
        },
        binds: ["hosts", "hostname", "resolv.conf"].iter().map(|f| (PathBuf::from(f), format!("/etc/{f}"))).collect(),
        limits: Limits {
            memory: c.config.memory,
            pids: c.config.pids,
            cpus: c.config.cpus,
            cpuset: c.config.cpuset_cpus.clone(),
        },
        cgroup: c.id.clone(),
        stdin,
        tty: false,
        confinement: confinement(&c.config.security, seccomp_profile(store, c))?,
        volumes: crate::volumes::runtime(store, &c.config)?,
    })
}

/// Runs a created or exited container in the foreground; returns its exit status.
pub fn start(store: &Store, c: &Container, stdin: bool, tty: bool) -> Result<i32> {
    if c.is_running() || (c.monitor_alive() && c.state.monitor_pid != std::process::id() as i32) {
        bail!("container {} is already running", c.name);
    }
    let _run = crate::monitor::run_lock(store, c)?;
    let mnt = ensure_mounted(store, c)?;
    let prepared = (|| -> Result<_> {
        crate::volumes::populate(store, c, &mnt)?;
        // Torn down (CNI DEL, namespace removed) when dropped, once the container ended.
        // A failure is the runtime's (exit status 125, as Docker's).
        let network =
            crate::network::setup(store, c).map_err(|e| strata_runtime::RuntimeError::Other(format!("{e:#}")))?;
        let mut spec = spec_for(store, c, &mnt, &mnt, stdin)?;
        let cdir = c.dir(store);
        for b in spec.binds.iter_mut() {
            b.0 = cdir.join(&b.0);
        }
        spec.tty = tty;
        // Without a terminal, the output is kept in the container's log too.
        let capture = crate::logs::capture_for(store, c, tty)?;
        Ok((network, spec, capture))
    })();
    // A failure before the container runs leaves no mount (nor network) behind.
    let (network, spec, capture) = prepared.inspect_err(|_| unmount(store, c))?;
    let raw = tty.then(crate::terminal::RawMode::enter);
    let id = c.id.clone();
    let res = strata_runtime::run(&spec, |pid| {
        let start = container::pid_start_time(pid).unwrap_or(0);
        let r = container::update(store, &id, |c| {
            c.state.status = "running".into();
            c.state.pid = pid;
            c.state.pid_start = start;
            c.state.exit_code = None;
            c.state.started_at = Some(strata_store::store::now_rfc3339());
        });
        if let Err(e) = r {
            tracing::warn!("cannot record the container as running: {e}");
        }
    });
    drop(raw);
    drop(capture);
    let code = res.as_ref().ok().copied();
    let recorded = container::update(store, &c.id, |c| {
        c.state.status =
            if code.is_some() || c.state.status == "running" { "exited".into() } else { c.state.status.clone() };
        c.state.pid = 0;
        c.state.exit_code = code;
        c.state.finished_at = Some(strata_store::store::now_rfc3339());
    });
    drop(network);
    unmount(store, c);
    recorded?;
    // main tells a runtime failure (exit status 125) by its type, under this context.
    res.context("container runtime")
}

/// The command's exit status as ours.
fn exit_status(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

pub fn cmd_create(store: &Store, args: &CreateArgs) -> Result<ExitCode> {
    let c = create(store, args)?;
    println!("{}", c.id);
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_run(
    store: &Store,
    args: &CreateArgs,
    rm: bool,
    interactive: bool,
    tty: bool,
    detach: bool,
) -> Result<ExitCode> {
    crate::monitor::check_run(&args.restart.restart, rm)?;
    let c = create(store, args)?;
    if detach {
        return crate::monitor::run_detached(store, &c, rm, interactive, tty);
    }
    let res = start(store, &c, interactive, tty);
    if rm {
        let c = container::find(store, &c.id)?;
        remove(store, &c, true)?;
        crate::volumes::remove_anonymous(store, &c);
    }
    Ok(exit_status(res?))
}

pub fn cmd_start(store: &Store, reference: &str, interactive: bool, tty: bool, detach: bool) -> Result<ExitCode> {
    let c = container::find(store, reference)?;
    if detach {
        crate::monitor::start_detached(store, &c)?;
        println!("{reference}");
        return Ok(ExitCode::SUCCESS);
    }
    let code = start(store, &c, interactive, tty)?;
    Ok(exit_status(code))
}

/// Options of `exec`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub fn cmd_exec(store: &Store, args: &ExecArgs) -> Result<ExitCode> {
    let (interactive, tty) = (args.interactive, args.tty);
    let mut c = container::find(store, &args.container)?;
    if !c.is_running() {
        bail!("container {} is not running", c.name);
    }
    if crate::manage::paused(&c) {
        bail!("Container {} is paused, unpause the container before exec", c.id);
    }
    c.config.args = args.command.clone();
    if let Some(w) = &args.workdir {
        c.config.cwd = w.clone();
    }
    if let Some(u) = &args.user {
        c.config.user = u.clone();
    }
    c.config.env.extend(args.env.iter().cloned());
    // Held while the runtime opens the container's namespaces and root by its pid.
    let pid1 = crate::lifecycle::pid1(&c).ok_or_else(|| anyhow!("container {} is not running", c.name))?;
    let root = PathBuf::from(format!("/proc/{}/root", c.state.pid));
    let mut spec = spec_for(store, &c, Path::new("/"), &root, interactive)?;
    spec.tty = tty;
    let raw = tty.then(crate::terminal::RawMode::enter);
    let res = strata_runtime::exec_in(c.state.pid, pid1.as_fd(), &c.id, &spec);
    drop(raw);
    let code = res.context("container runtime")?;
    Ok(exit_status(code))
}

fn status(c: &Container) -> String {
    if c.is_running() {
        let up = crate::ui::human_duration(c.state.started_at.as_deref());
        if strata_runtime::cgroup::is_frozen(&c.id) { format!("Up {up} (Paused)") } else { format!("Up {up}") }
    } else if c.state.status == "restarting" && c.monitor_alive() {
        let code = c.state.exit_code.map_or("unknown".into(), |n| n.to_string());
        format!("Restarting ({code}) {} ago", crate::ui::human_duration(c.state.finished_at.as_deref()))
    } else if c.state.status == "created" {
        "Created".into()
    } else {
        match c.state.exit_code {
            Some(code) => format!("Exited ({code}) {} ago", crate::ui::human_duration(c.state.finished_at.as_deref())),
            // Nobody saw how it ended (its monitor or `strata run` was killed first).
            None if c.state.finished_at.is_none() => "Exited (unknown)".into(),
            None => format!("Exited (unknown) {}", ago(c.state.finished_at.as_deref())),
        }
    }
}

/// Docker's state word; a container recorded as running whose process is gone (its
/// monitor was killed) has exited.
fn state(c: &Container) -> &str {
    match c.state.status.as_str() {
        "running" if !c.is_running() => "exited",
        // Running, as the arm above found: frozen is paused.
        "running" if strata_runtime::cgroup::is_frozen(&c.id) => "paused",
        "restarting" if !c.monitor_alive() => "exited",
        s => s,
    }
}

pub fn cmd_ps(store: &Store, all: bool, format: crate::images::ListFormat) -> Result<ExitCode> {
    // Docker's default list: running, paused and restarting ones.
    let list: Vec<Container> = container::list(store)?
        .into_iter()
        .filter(|c| all || c.is_running() || (c.state.status == "restarting" && c.monitor_alive()))
        .collect();
    match format {
        crate::images::ListFormat::Json => {
            let v: Vec<serde_json::Value> = list
                .iter()
                .map(|c| {
                    serde_json::json!({"Id": c.id, "Names": c.name, "Image": c.image_name, "ImageId": c.image,
                        "Command": c.config.args, "Created": c.created, "State": state(c),
                        "Status": status(c), "Ports": crate::network::ports_column(store, c), "ExitCode": c.state.exit_code, "Pid": if c.is_running() { c.state.pid } else { 0 }})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        crate::images::ListFormat::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    let mut cmd = c.config.args.join(" ");
                    if cmd.chars().count() > 22 {
                        cmd = format!("{}…", cmd.chars().take(21).collect::<String>());
                    }
                    vec![
                        c.short_id().to_string(),
                        c.image_name.clone(),
                        format!("\"{cmd}\""),
                        ago(Some(&c.created)),
                        status(c),
                        crate::network::ports_column(store, c),
                        c.name.clone(),
                    ]
                })
                .collect();
            table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes a container; a running one only with `force` (its processes are killed).
pub fn remove(store: &Store, c: &Container, force: bool) -> Result<()> {
    crate::monitor::before_rm(store, c, force)?;
    if c.is_running() {
        if !force {
            bail!("container {} is running: stop it first, or use rm -f", c.name);
        }
        // Through a pidfd opened while its start time matched: never a reused pid.
        if let Some(pid1) = crate::lifecycle::pid1(c) {
            crate::lifecycle::send(&pid1, libc::SIGKILL)?;
        }
        // A paused one gets it once thawed.
        crate::manage::thaw_after_signal(c);
        for _ in 0..250 {
            if container::pid_start_time(c.state.pid) != Some(c.state.pid_start) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    // A detached container's monitor records its end and unmounts first.
    crate::monitor::wait_monitor(store, &c.id, std::time::Duration::from_secs(10));
    // Held while the container goes, so that a `start` beginning now fails rather than
    // run a container whose files are being removed. (A monitor removing its own `--rm`
    // container holds it already: `None`.)
    let _run = match crate::monitor::run_lock(store, c) {
        Ok(lock) => lock,
        Err(e) if !force => return Err(e.context(format!("cannot remove container {}", c.name))),
        Err(e) => {
            tracing::warn!("removing container {} anyway: {e:#}", c.name);
            None
        }
    };
    unmount(store, c);
    // A failure is reported but does not keep the container (`check` finds what is left).
    if let Err(e) = crate::network::teardown(store, &c.id) {
        tracing::warn!("releasing the network of container {}: {e:#}", c.name);
    }
    // A run whose `strata` process was killed left them behind.
    if !strata_runtime::cgroup::remove_leftover(&c.id) {
        tracing::warn!("the cgroups of container {} still hold processes", c.name);
    }
    container::remove(store, c)?;
    Ok(())
}

/// For `check`: cgroups of this store's containers that no longer run (their `strata
/// run` was killed before it could remove them). Other stores' cgroups are left alone.
pub fn check_cgroups(store: &Store, repaired: &mut Vec<String>, problems: &mut Vec<String>) -> Result<()> {
    let leftovers = strata_runtime::cgroup::leftover_names();
    for c in container::list(store)?.iter().filter(|c| !c.is_running() && leftovers.contains(&c.id)) {
        if strata_runtime::cgroup::remove_leftover(&c.id) {
            repaired.push(format!("removed the cgroups of container {}, left by a killed run", c.name));
        } else {
            problems.push(format!("the cgroups of container {} (not running) still hold processes", c.name));
        }
    }
    Ok(())
}

pub fn cmd_rm(store: &Store, refs: &[String], force: bool, volumes: bool) -> Result<ExitCode> {
    let mut failed = false;
    for r in refs {
        let removed = container::find(store, r).map_err(anyhow::Error::from).and_then(|c| {
            remove(store, &c, force)?;
            if volumes {
                crate::volumes::remove_anonymous(store, &c);
            }
            Ok(())
        });
        match removed {
            Ok(()) => println!("{r}"),
            Err(e) => {
                eprintln!("strata: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn cmd_diff(store: &Store, reference: &str) -> Result<ExitCode> {
    let c = container::find(store, reference)?;
    for (kind, path) in strata_store::changes::changes(store, &c)? {
        println!("{} {}", kind.letter(), path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_commit(
    store: &Store,
    reference: &str,
    target: Option<&str>,
    message: Option<&str>,
    author: Option<&str>,
    changes: &[String],
) -> Result<ExitCode> {
    let c = container::find(store, reference)?;
    let opts = strata_store::commit::CommitOptions { reference: target, message, author, changes };
    let id = strata_store::commit::commit(store, &c, &opts, &Bars::new())?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
