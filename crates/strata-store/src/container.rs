//! Containers: a record (`containers/<id>/config.json`), the files bind-mounted over
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, an init layer `diff/<id>-init`
//! (their placeholders and the runtime's mount points, never committed) and a read-write
//! layer `diff/<id>`, stacked over the image's layers.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_union::view::View;

use crate::error::{IoContext, Result, StoreError};
use crate::store::{Image, Store, now_rfc3339, random_hex, read_json, remove_if_exists};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunConfig {
    /// The command: entrypoint and arguments.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `uid[:gid]` or a user name (resolved in the rootfs when the container starts).
    pub user: String,
    pub hostname: String,
    /// `none`, `host`, `bridge` (the default bridge network) or a network's name.
    pub network: String,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    /// `--cpuset-cpus`: the CPUs it may run on, a kernel CPU list ("0-2,4").
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// The command as given on the command line (or the image's Cmd): kept by commit.
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    /// How the container is confined, as the user asked (Docker's options).
    #[serde(default)]
    pub security: Security,
    /// `-v` and `--mount` binds and volumes (Docker's `Binds`), as `HOST:CTR[:OPTIONS]`
    /// with HOST absolute and canonical, or `NAME:CTR[:OPTIONS]` for volume NAME.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `--tmpfs` and `--mount type=tmpfs`: `CTR[:OPTIONS]`.
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// Published ports, DNS and extra hosts (`-p`, `-P`, `--dns`, `--add-host`).
    #[serde(default)]
    pub networking: Networking,
    /// How a detached container is run and kept: `--restart`, `--rm`, `-i`, `-t`.
    #[serde(default)]
    pub keep: Keep,
}

/// A container's network options, as given (checked at create).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Networking {
    /// `-p [IP:][HOSTPORT:]CTRPORT[/PROTO]`.
    pub publish: Vec<String>,
    /// `-P`: the image's exposed ports on random host ports.
    pub publish_all: bool,
    pub dns: Vec<String>,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
}

/// Docker's `HostConfig.RestartPolicy` and `AutoRemove`, `Config.OpenStdin` and `Tty`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Keep {
    /// `no` (empty), `on-failure[:N]`, `always` or `unless-stopped`.
    pub restart: String,
    /// Removed by its monitor once it has ended (`run -d --rm`).
    pub auto_remove: bool,
    /// Its stdin is a pipe that `attach` writes to (`run -d -i`).
    pub open_stdin: bool,
    /// It runs on a pseudo-terminal that `attach` relays (`run -d -t`).
    pub tty: bool,
}

/// Docker's options that change a container's confinement, as given. The default (all
/// empty) is Docker's default confinement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `seccomp=unconfined`, `seccomp=PROFILE.json` (its text is kept in the container's
    /// directory as `seccomp.json`), `no-new-privileges`.
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// `HOST[:CONTAINER[:PERMISSIONS]]`.
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub init: bool,
}

/// The file in a container's directory that holds its own seccomp profile.
pub const SECCOMP_PROFILE: &str = "seccomp.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// `created`, `running` or `exited`.
    pub status: String,
    /// Host pid of the container's init while it runs, and its start time (clock ticks
    /// since boot) so that a reused pid is not mistaken for it.
    pub pid: i32,
    pub pid_start: u64,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Host pid and start time of the container's monitor (`run -d`, `start -d`), which
    /// owns its mount, process and exit status; 0 for a run in the foreground.
    #[serde(default)]
    pub monitor_pid: i32,
    #[serde(default)]
    pub monitor_start: u64,
    /// Why the last start failed before the command ran (Docker's `State.Error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Restarts its monitor made under its restart policy since it was last started.
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped (or killed) by the user: its restart policy no longer applies.
    #[serde(default)]
    pub manually_stopped: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image ID (`sha256:...`).
    pub image: String,
    /// What the user called the image.
    pub image_name: String,
    /// The image's layer ids, base first.
    pub image_layers: Vec<String>,
    pub created: String,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub state: State,
}

impl Container {
    /// The container's own layers: read-write and init.
    pub fn own_layers(&self) -> [String; 2] {
        [self.id.clone(), self.init_layer()]
    }

    pub fn init_layer(&self) -> String {
        format!("{}-init", self.id)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The union's branches, top first: read-write layer, init layer, image layers.
    pub fn layer_dirs(&self, store: &Store) -> Vec<PathBuf> {
        let mut v = vec![store.diff_dir(&self.id), store.diff_dir(&self.init_layer())];
        v.extend(self.image_layers.iter().rev().map(|l| store.diff_dir(l)));
        v
    }

    /// The mount option for the container's union.
    pub fn branches_option(&self, store: &Store) -> String {
        let dirs = self.layer_dirs(store);
        let mut parts = Vec::with_capacity(dirs.len());
        for (i, d) in dirs.iter().enumerate() {
            parts.push(format!("{}={}", d.display(), if i == 0 { "rw" } else { "ro+wh" }));
        }
        format!("br={}", parts.join(":"))
    }

    /// Is the container's init alive (the recorded pid, with the recorded start time)?
    pub fn is_running(&self) -> bool {
        self.state.status == "running"
            && self.state.pid > 0
            && pid_start_time(self.state.pid) == Some(self.state.pid_start)
    }

    /// Is the container's monitor alive (the recorded pid, with the recorded start time)?
    pub fn monitor_alive(&self) -> bool {
        self.state.monitor_pid > 0 && alive_since(self.state.monitor_pid, self.state.monitor_start)
    }

    pub fn dir(&self, store: &Store) -> PathBuf {
        store.containers_dir().join(&self.id)
    }
}

/// Is process `pid`, started at `start`, alive? A zombie is not (its parent, once the
/// `strata` that spawned a monitor has exited, may be slow to reap it).
pub fn alive_since(pid: i32, start: u64) -> bool {
    proc_stat(pid).is_some_and(|(state, started)| state != 'Z' && state != 'X' && started == start)
}

/// Field 22 of /proc/PID/stat: when the process started.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, started)| started)
}

/// The state letter (field 3) and start time (field 22) of process `pid`: after the
/// parenthesised command name, which may itself hold spaces and parentheses.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(") ")?;
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Every container record in the store.
pub fn list(store: &Store) -> Result<Vec<Container>> {
    let dir = store.containers_dir();
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).at(&dir)? {
        let path = e.at(&dir)?.path().join("config.json");
        let Some(c) = read_json::<Container>(&path, "container record")? else { continue };
        // Ids become paths: anything but 64 hex digits is refused.
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&c.id) || !c.image_layers.iter().all(|l| hex(l)) {
            return Err(StoreError::Format(format!("{}: corrupt container record (bad id)", path.display())));
        }
        out.push(c);
    }
    out.sort_by(|a: &Container, b: &Container| b.created.cmp(&a.created));
    Ok(out)
}

/// A container by name, ID or unique ID prefix.
pub fn find(store: &Store, reference: &str) -> Result<Container> {
    let _lock = store.lock(false)?;
    find_locked(store, reference)
}

fn find_locked(store: &Store, reference: &str) -> Result<Container> {
    let all = list(store)?;
    if let Some(c) = all.iter().find(|c| c.name == reference || c.id == reference) {
        return Ok(c.clone());
    }
    let matches: Vec<&Container> = all.iter().filter(|c| reference.len() >= 4 && c.id.starts_with(reference)).collect();
    match matches.len() {
        1 => Ok(matches[0].clone()),
        0 => Err(StoreError::NoSuchContainer(reference.to_string())),
        _ => Err(StoreError::Conflict(format!("container ID prefix '{reference}' is ambiguous"))),
    }
}

fn write_record(store: &Store, c: &Container) -> Result<()> {
    store.write_atomic(&c.dir(store).join("config.json"), &serde_json::to_vec_pretty(c)?)
}

/// Changes a container's record under the lock (re-reading it first).
pub fn update(store: &Store, id: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
    let _lock = store.lock(true)?;
    let mut c = find_locked(store, id)?;
    f(&mut c);
    write_record(store, &c)?;
    Ok(c)
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud", "quiet",
    "sharp", "tidy", "witty",
];
const NOUNS: [&str; 16] = [
    "aufs", "badger", "branch", "cedar", "delta", "ferry", "granite", "harbor", "inode", "layer", "marble", "otter",
    "quartz", "shale", "tarn", "whiteout",
];

fn generated_name(id: &str, taken: &[Container]) -> String {
    let b = u8::from_str_radix(&id[..2], 16).unwrap_or(0) as usize;
    let base = format!("{}_{}", ADJECTIVES[b % 16], NOUNS[b / 16]);
    if !taken.iter().any(|c| c.name == base) {
        return base;
    }
    format!("{base}_{}", &id[..6])
}

/// Docker's rule for names (of containers, volumes, networks): `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Creates a container from `image`: its layers, files and record.
/// `seccomp_profile` is the text of a profile the user chose, kept with the container.
pub fn create(
    store: &Store,
    image: &Image,
    image_name: &str,
    name: Option<&str>,
    config: RunConfig,
    seccomp_profile: Option<&str>,
) -> Result<Container> {
    if let Some(n) = name
        && !valid_name(n)
    {
        return Err(StoreError::Format(format!(
            "invalid container name '{n}': use letters, digits, '_', '.', '-', starting with a letter or digit"
        )));
    }
    let id = random_hex(32);
    let staging = store.staging()?;
    // The init layer: mount points and placeholders, with the attributes the image
    // gives their directories (a merged directory shows the topmost one's).
    let init = staging.dir.join("init");
    let rw = staging.dir.join("rw");
    fs::create_dir(&init).at(&init)?;
    fs::create_dir(&rw).at(&rw)?;
    let image_dirs: Vec<PathBuf> = image.layer_ids().iter().rev().map(|l| store.diff_dir(l)).collect();
    let view = View::open(&image_dirs).at(store.root())?;
    let mirror = |rel: &str, dest: &Path| -> Result<()> {
        let mut dir = view.root();
        let mut st = None;
        for comp in Path::new(rel).components() {
            match view.lookup(&dir, comp.as_os_str()).at(dest)? {
                Some(e) if e.dir.is_some() => {
                    st = Some(e.stat);
                    dir = e.dir.unwrap_or_else(|| view.root());
                }
                _ => {
                    st = None;
                    break;
                }
            }
        }
        let (mode, uid, gid) = st.map_or((0o755, 0, 0), |s| (s.st_mode & 0o7777, s.st_uid, s.st_gid));
        fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(mode)).at(dest)?;
        std::os::unix::fs::lchown(dest, Some(uid), Some(gid)).at(dest)
    };
    for d in ["proc", "sys", "dev", "dev/pts", "dev/shm", "etc"] {
        let p = init.join(d);
        fs::create_dir_all(&p).at(&p)?;
    }
    for d in ["", "proc", "sys", "dev", "dev/pts", "dev/shm", "etc"] {
        mirror(d, &init.join(d))?;
    }
    mirror("", &rw)?;
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let p = init.join(f);
        write_0644(&p, b"")?;
    }
    // Mount points of directory volumes (`HOST:CTR[:ro]`) where the image has
    // directories or nothing on the way (a link or a file is left to the runtime, which
    // resolves it inside the root): not in the read-write layer, so not in `diff`.
    // Named volumes and tmpfs mounts are directories.
    let tmpfs = config.tmpfs.iter().map(|t| format!("tmpfs:{t}"));
    for v in config.volumes.iter().cloned().chain(tmpfs) {
        let mut parts = v.split(':');
        let (Some(host), Some(target)) = (parts.next(), parts.next()) else { continue };
        let rel = Path::new(target.trim_start_matches('/'));
        let dir_source = !host.starts_with('/') || Path::new(host).is_dir();
        if rel.as_os_str().is_empty() || !dir_source || !dirs_or_missing(&view, rel).at(&init)? {
            continue;
        }
        fs::create_dir_all(init.join(rel)).at(init.join(rel))?;
        // A merged directory shows the topmost's attributes: the image's, else 0755 root.
        let mut prefix = PathBuf::new();
        for comp in rel.components() {
            prefix.push(comp);
            mirror(&prefix.to_string_lossy(), &init.join(&prefix))?;
        }
    }
    let cdir = staging.dir.join("container");
    fs::create_dir(&cdir).at(&cdir)?;
    let hostname = if config.hostname.is_empty() { id[..12].to_string() } else { config.hostname.clone() };
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
    write_0644(&cdir.join("hosts"), hosts.as_bytes())?;
    write_0644(&cdir.join("hostname"), format!("{hostname}\n").as_bytes())?;
    let resolv = if config.network == "host" {
        fs::read("/etc/resolv.conf").unwrap_or_default()
    } else {
        b"# no network (--network none)\n".to_vec()
    };
    write_0644(&cdir.join("resolv.conf"), &resolv)?;
    if let Some(text) = seccomp_profile {
        write_0644(&cdir.join(SECCOMP_PROFILE), text.as_bytes())?;
    }

    let _lock = store.lock(true)?;
    let all = list(store)?;
    if let Some(n) = name
        && let Some(other) = all.iter().find(|c| c.name == n)
    {
        return Err(StoreError::Conflict(format!(
            "the container name '{n}' is already used by container {}",
            other.short_id()
        )));
    }
    // A volume removed since it was made for this container.
    for v in crate::volume::names_in(&config) {
        crate::volume::find(store, v)?;
    }
    // The image may have been removed since it was looked up.
    if !image.layer_ids().iter().all(|l| store.has_layer(l)) {
        return Err(StoreError::NoSuchImage(image_name.to_string()));
    }
    let name = name.map(str::to_string).unwrap_or_else(|| generated_name(&id, &all));
    let c = Container {
        id: id.clone(),
        name,
        image: image.id.to_string(),
        image_name: image_name.to_string(),
        image_layers: image.layer_ids(),
        created: now_rfc3339(),
        config: RunConfig { hostname, ..config },
        state: State { status: "created".into(), ..State::default() },
    };
    // Layers first, the record last: until it exists, `check` may remove the pieces.
    fs::rename(&init, store.diff_dir(&c.init_layer())).at(store.diff_dir(&c.init_layer()))?;
    fs::rename(&rw, store.diff_dir(&id)).at(store.diff_dir(&id))?;
    let ancestors: Vec<String> = c.image_layers.iter().rev().cloned().collect();
    store.write_atomic(&store.ancestors_path(&c.init_layer()), lines(&ancestors).as_bytes())?;
    let mut with_init = vec![c.init_layer()];
    with_init.extend(ancestors);
    store.write_atomic(&store.ancestors_path(&id), lines(&with_init).as_bytes())?;
    fs::rename(&cdir, c.dir(store)).at(c.dir(store))?;
    write_record(store, &c)?;
    Ok(c)
}

/// Whether every name on `rel`'s way in the image's view is a directory or absent.
fn dirs_or_missing(view: &View, rel: &Path) -> std::io::Result<bool> {
    let mut dir = view.root();
    for comp in rel.components() {
        match view.lookup(&dir, comp.as_os_str())? {
            Some(e) => match e.dir {
                Some(d) => dir = d,
                None => return Ok(false),
            },
            None => return Ok(true),
        }
    }
    Ok(true)
}

/// A new file readable by all and writable by root only, whatever the umask: the files
/// a container sees in its /etc.
fn write_0644(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path).at(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o644)).at(path)?;
    f.write_all(data).at(path)
}

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

/// Renames a container, refusing a name another container has (Docker's words).
pub fn rename(store: &Store, reference: &str, new: &str) -> Result<Container> {
    if !valid_name(new) {
        return Err(StoreError::Format(format!(
            "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let _lock = store.lock(true)?;
    let mut c = find_locked(store, reference)?;
    if c.name == new {
        return Err(StoreError::Conflict("Renaming a container with the same name as its current name".into()));
    }
    if let Some(other) = list(store)?.iter().find(|o| o.name == new) {
        return Err(StoreError::Conflict(format!(
            "Conflict. The container name \"/{new}\" is already in use by container \"{}\". \
             You have to remove (or rename) that container to be able to reuse that name.",
            other.id
        )));
    }
    c.name = new.to_string();
    write_record(store, &c)?;
    Ok(c)
}

/// Removes a stopped container: its record first, then its layers and files.
pub fn remove(store: &Store, c: &Container) -> Result<()> {
    let _lock = store.lock(true)?;
    let dir = c.dir(store);
    let record = dir.join("config.json");
    match fs::remove_file(&record) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at(record),
    }
    remove_pieces(store, &c.id)
}

/// Deletes whatever exists of container `id`'s files and layers. Lock held.
fn remove_pieces(store: &Store, id: &str) -> Result<()> {
    for layer in [id.to_string(), format!("{id}-init")] {
        let d = store.diff_dir(&layer);
        if d.exists() {
            store.discard_dir(&d)?;
        }
        remove_if_exists(&store.ancestors_path(&layer))?;
    }
    for d in [store.containers_dir().join(id), store.mnt_dir(id)] {
        if d.exists() {
            // A mount point still mounted (a killed run) is left for `strata rm` to unmount.
            if let Err(e) = fs::remove_dir_all(&d) {
                tracing::warn!("cannot remove {}: {e}", d.display());
            }
        }
    }
    Ok(())
}

/// Repairs container leftovers; returns what was done. Lock held.
pub fn check(store: &Store) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let dir = store.containers_dir();
    for e in fs::read_dir(&dir).at(&dir)? {
        let e = e.at(&dir)?;
        let id = e.file_name().to_string_lossy().into_owned();
        if !e.path().join("config.json").exists() {
            remove_pieces(store, &id)?;
            done.push(format!("removed the pieces of container {id}, which was never completely created"));
        }
    }
    for mut c in list(store)? {
        // A live monitor is recording its container's end itself.
        let ran = c.state.status == "running" || c.state.status == "restarting";
        if ran && !c.is_running() && !c.monitor_alive() {
            c.state.status = "exited".into();
            c.state.finished_at = Some(now_rfc3339());
            write_record(store, &c)?;
            done.push(format!("container {} was killed while running: marked exited", c.name));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_alive_only_with_its_start_time() {
        let me = std::process::id() as i32;
        let start = pid_start_time(me).expect("our own start time");
        assert!(alive_since(me, start));
        assert!(!alive_since(me, start + 1));
        // A zombie is not alive: a child that exited and is not reaped yet.
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i32;
        let started = pid_start_time(pid).expect("the child's start time");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!alive_since(pid, started));
        child.wait().expect("reaped");
        assert!(!alive_since(pid, started));
    }
}
