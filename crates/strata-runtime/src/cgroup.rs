//! Resource limits and device access through cgroups: the unified (v2) hierarchy when
//! the machine has one with controllers, else every v1 hierarchy. On a hybrid machine
//! the container gets a directory in each v1 hierarchy and in the controller-less v2
//! tree, so that its cgroup namespace shows only its own cgroup everywhere.

use std::fs;
use std::path::{Path, PathBuf};

use crate::RuntimeError;

const ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;
/// The directory under each hierarchy's root that holds the containers' cgroups.
const PARENT: &str = "strata";

/// Character devices every container may use, as Docker allows them: null, zero, full,
/// random, urandom, tty, ptmx, the pseudo-terminals, tun.
const DEFAULT_DEVICES: [&str; 9] = [
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap included).
    pub memory: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// CPU share, in CPUs (1.5 = one and a half CPUs).
    pub cpus: Option<f64>,
    /// The CPUs it may run on, a kernel CPU list ("0-2,4").
    #[serde(default)]
    pub cpuset: Option<String>,
}

/// What the v1 `devices` controller lets the container open, besides mknod of anything.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DeviceAccess {
    /// Only the default devices and these rules (`c 1:3 rwm` form).
    #[default]
    Default,
    /// The container's own devices plus these rules (`c 4:64 rwm`, from `--device`).
    With(Vec<String>),
    /// Every device (`--privileged`).
    All,
}

/// A cgroup hierarchy mounted under /sys/fs/cgroup, as /proc/self/mountinfo shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Hierarchy {
    /// Its mount point.
    pub path: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// The mount's options without rw/ro: the controllers (`cpu,cpuacct`, `name=systemd`).
    pub options: String,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.options.split(',').any(|o| o == controller)
    }
}

/// The cgroup mounts of a mountinfo text.
fn cgroup_mounts(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let Some(mount_point) = left.split(' ').nth(4) else { continue };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_source), Some(opts)) = (r.next(), r.next(), r.next()) else { continue };
        if fstype == "cgroup" || fstype == "cgroup2" {
            let options = opts.split(',').filter(|o| *o != "rw" && *o != "ro").collect::<Vec<_>>().join(",");
            out.push(Hierarchy { path: PathBuf::from(mount_point), fstype: fstype.to_string(), options });
        }
    }
    out
}

/// The cgroup hierarchies mounted below `root`, from a mountinfo text.
fn hierarchies_in(mountinfo: &str, root: &Path) -> Vec<Hierarchy> {
    cgroup_mounts(mountinfo).into_iter().filter(|h| h.path.parent() == Some(root)).collect()
}

fn mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Is /sys/fs/cgroup itself the unified hierarchy (a v2-only machine)?
pub fn unified_only() -> bool {
    cgroup_mounts(&mountinfo()).iter().any(|h| h.path == Path::new(ROOT) && h.fstype == "cgroup2")
}

/// The cgroup hierarchies of this machine.
pub fn hierarchies() -> Vec<Hierarchy> {
    hierarchies_in(&mountinfo(), Path::new(ROOT))
}

/// Where the containers' cgroups are: `strata/` of the unified root (v2) and of every
/// hierarchy below it (v1, hybrid).
fn parents() -> Vec<PathBuf> {
    let mut parents = vec![Path::new(ROOT).join(PARENT)];
    parents.extend(hierarchies().iter().map(|h| h.path.join(PARENT)));
    parents
}

/// The container's cgroup directories; removed by [`Cgroup::remove`].
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    fs::write(path, value).map_err(|e| RuntimeError::Cgroup(format!("{}: writing {value:?}: {e}", path.display())))
}

fn mkdir(path: &Path) -> Result<(), RuntimeError> {
    fs::create_dir_all(path).map_err(|e| RuntimeError::Cgroup(format!("{}: {e}", path.display())))
}

/// Is the unified hierarchy the one with the controllers?
fn unified_with_controllers(root: &Path) -> bool {
    fs::read_to_string(root.join("cgroup.controllers")).is_ok_and(|c| !c.trim().is_empty())
}

/// A new cpuset cgroup has no CPUs and no memory nodes: give it its parent's.
fn inherit_cpuset(dir: &Path) -> Result<(), RuntimeError> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read_to_string(dir.join(f)).is_ok_and(|v| v.trim().is_empty()) {
            let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
            write(&dir.join(f), v.trim())?;
        }
    }
    Ok(())
}

impl Cgroup {
    /// Creates `strata/<name>` in every hierarchy and sets the limits and device rules.
    pub fn create(name: &str, limits: &Limits, devices: &DeviceAccess) -> Result<Cgroup, RuntimeError> {
        let root = Path::new(ROOT);
        if unified_with_controllers(root) {
            return Self::create_v2(root, name, limits);
        }
        Self::create_v1(&hierarchies(), name, limits, devices)
    }

    /// Whether the devices controller decides what the container may open (v1); on a v2
    /// host that needs an eBPF program, which the runtime does not load yet.
    pub fn controls_devices() -> bool {
        !unified_with_controllers(Path::new(ROOT)) && hierarchies().iter().any(|h| h.has("devices"))
    }

    fn create_v2(root: &Path, name: &str, limits: &Limits) -> Result<Cgroup, RuntimeError> {
        // Controllers must be enabled in every parent's subtree_control.
        let parent = root.join(PARENT);
        mkdir(&parent)?;
        for p in [root, parent.as_path()] {
            let available = fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default();
            let cpuset = limits.cpuset.as_ref().map(|_| "cpuset");
            let wanted: Vec<String> = ["memory", "pids", "cpu"]
                .iter()
                .copied()
                .chain(cpuset)
                .filter(|c| available.split_whitespace().any(|a| a == *c))
                .map(|c| format!("+{c}"))
                .collect();
            if !wanted.is_empty() {
                write(&p.join("cgroup.subtree_control"), &wanted.join(" "))?;
            }
        }
        let dir = parent.join(name);
        mkdir(&dir)?;
        if let Some(m) = limits.memory {
            write(&dir.join("memory.max"), &m.to_string())?;
            if dir.join("memory.swap.max").exists() {
                write(&dir.join("memory.swap.max"), "0")?;
            }
        }
        if let Some(p) = limits.pids {
            write(&dir.join("pids.max"), &p.to_string())?;
        }
        if let Some(c) = limits.cpus {
            write(&dir.join("cpu.max"), &format!("{} {CPU_PERIOD_US}", (c * CPU_PERIOD_US as f64) as u64))?;
        }
        if let Some(c) = &limits.cpuset {
            write(&dir.join("cpuset.cpus"), c)?;
        }
        Ok(Cgroup { dirs: vec![dir] })
    }

    fn create_v1(
        hierarchies: &[Hierarchy],
        name: &str,
        limits: &Limits,
        devices: &DeviceAccess,
    ) -> Result<Cgroup, RuntimeError> {
        for (ctrl, needed) in [
            ("memory", limits.memory.is_some()),
            ("pids", limits.pids.is_some()),
            ("cpu", limits.cpus.is_some()),
            ("cpuset", limits.cpuset.is_some()),
        ] {
            if needed && !hierarchies.iter().any(|h| h.has(ctrl)) {
                return Err(RuntimeError::Cgroup(format!("the {ctrl} controller is not mounted under {ROOT}")));
            }
        }
        let mut cg = Cgroup { dirs: Vec::new() };
        match Self::fill_v1(&mut cg, hierarchies, name, limits, devices) {
            Ok(()) => Ok(cg),
            Err(e) => {
                let _ = cg.remove();
                Err(e)
            }
        }
    }

    fn fill_v1(
        cg: &mut Cgroup,
        hierarchies: &[Hierarchy],
        name: &str,
        limits: &Limits,
        devices: &DeviceAccess,
    ) -> Result<(), RuntimeError> {
        for h in hierarchies {
            let dir = h.path.join(PARENT).join(name);
            mkdir(&dir)?;
            cg.dirs.push(dir.clone());
            if h.has("cpuset") {
                inherit_cpuset(&h.path.join(PARENT)).and_then(|()| inherit_cpuset(&dir))?;
                if let Some(c) = &limits.cpuset {
                    write(&dir.join("cpuset.cpus"), c)?;
                }
            }
            if h.has("memory")
                && let Some(m) = limits.memory
            {
                write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                // Without this, the process would swap instead of being limited.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &m.to_string())?;
                }
            }
            if h.has("pids")
                && let Some(p) = limits.pids
            {
                write(&dir.join("pids.max"), &p.to_string())?;
            }
            if h.has("cpu")
                && let Some(c) = limits.cpus
            {
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &((c * CPU_PERIOD_US as f64) as u64).to_string())?;
            }
            if h.has("devices") {
                set_devices(&dir, devices)?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` into every directory of the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), RuntimeError> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves process `pid` back to the root of each hierarchy.
    pub fn leave(&self, pid: i32) {
        for d in &self.dirs {
            // dirs are <hierarchy root>/strata/<name>
            if let Some(root) = d.parent().and_then(Path::parent)
                && let Err(e) = write(&root.join("cgroup.procs"), &pid.to_string())
            {
                tracing::debug!("leaving {}: {e}", d.display());
            }
        }
    }

    /// Reopens the cgroup of a container created earlier.
    pub fn existing(name: &str) -> Cgroup {
        Cgroup { dirs: parents().into_iter().map(|p| p.join(name)).filter(|c| c.is_dir()).collect() }
    }

    /// Removes the directories (their processes are gone); false if one still holds
    /// processes (every one is tried).
    pub fn remove(self) -> bool {
        let removed: Vec<bool> = self.dirs.iter().map(|d| remove_dir(d)).collect();
        removed.iter().all(|r| *r)
    }
}

/// Removes one cgroup directory, waiting briefly for its last processes to go.
fn remove_dir(d: &Path) -> bool {
    for _ in 0..50 {
        match fs::remove_dir(d) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            // EBUSY while the last processes are being torn down.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    false
}

fn set_devices(dir: &Path, devices: &DeviceAccess) -> Result<(), RuntimeError> {
    let extra = match devices {
        DeviceAccess::All => return write(&dir.join("devices.allow"), "a"),
        DeviceAccess::Default => &[][..],
        DeviceAccess::With(rules) => rules.as_slice(),
    };
    write(&dir.join("devices.deny"), "a")?;
    // Creating any node is allowed (as Docker); opening one is what the rules decide.
    for rule in
        ["c *:* m", "b *:* m"].iter().chain(DEFAULT_DEVICES.iter()).copied().chain(extra.iter().map(String::as_str))
    {
        write(&dir.join("devices.allow"), rule)?;
    }
    Ok(())
}

/// The names of the containers' cgroups found in any hierarchy (for `check`).
pub fn leftover_names() -> Vec<String> {
    let mut names: Vec<String> = parents()
        .iter()
        .filter_map(|p| fs::read_dir(p).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Removes the cgroups of a container that no longer runs; false if some still hold
/// processes.
pub fn remove_leftover(name: &str) -> bool {
    Cgroup::existing(name).remove()
}

/// The directory of container `name`'s cgroup that has `controller`: the unified one
/// where it has the controllers, else the v1 hierarchy's.
fn dir_with(name: &str, controller: &str) -> Option<PathBuf> {
    let root = Path::new(ROOT);
    if unified_with_controllers(root) {
        return Some(root.join(PARENT).join(name)).filter(|d| d.is_dir());
    }
    hierarchies().iter().find(|h| h.fstype == "cgroup" && h.has(controller)).map(|h| h.path.join(PARENT).join(name))
}

/// The v2 directory of container `name` (the unified root on a v2 host, the
/// controller-less tree on a hybrid one).
fn unified_dir(name: &str) -> Option<PathBuf> {
    let root = Path::new(ROOT);
    if unified_with_controllers(root) || unified_only() {
        return Some(root.join(PARENT).join(name));
    }
    hierarchies().iter().find(|h| h.fstype == "cgroup2").map(|h| h.path.join(PARENT).join(name))
}

/// Freezes (`docker pause`) or thaws the processes of container `name`: the v1 freezer
/// where one is mounted (`freezer.state`), else `cgroup.freeze` of v2. Returns once the
/// kernel reports them all frozen (or thawed). Thawing thaws whichever is frozen.
pub fn freeze(name: &str, frozen: bool) -> Result<(), RuntimeError> {
    let v1 = dir_with(name, "freezer").filter(|d| d.join("freezer.state").exists());
    let v2 = unified_dir(name).filter(|d| d.join("cgroup.freeze").exists());
    if !frozen {
        if let Some(d) = &v1 {
            freeze_v1(d, false)?;
        }
        if let Some(d) = &v2
            && fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        {
            freeze_v2(d, false)?;
        }
        return Ok(());
    }
    let res = match (&v1, &v2) {
        (Some(d), _) => freeze_v1(d, true),
        (None, Some(d)) => freeze_v2(d, true),
        (None, None) => {
            return Err(RuntimeError::Cgroup(format!(
                "no freezer for container {name}: no v1 freezer hierarchy and no cgroup.freeze"
            )));
        }
    };
    // A freeze that did not settle is undone (as runc does): not left half frozen.
    if res.is_err() {
        let thawed = match (&v1, &v2) {
            (Some(d), _) => freeze_v1(d, false),
            (None, Some(d)) => freeze_v2(d, false),
            (None, None) => Ok(()),
        };
        if let Err(e) = thawed {
            tracing::warn!("container {name}: thawing after a failed freeze: {e}");
        }
    }
    res
}

/// Writes `value` to `file` until `done` (up to 5 s): v1 may stay FREEZING while a
/// process is in an uninterruptible sleep.
fn settle(file: &Path, value: &str, done: impl Fn() -> bool) -> Result<(), RuntimeError> {
    for _ in 0..500 {
        write(file, value)?;
        if done() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(RuntimeError::Cgroup(format!("{}: still not {value} after 5 s", file.display())))
}

fn freeze_v1(dir: &Path, frozen: bool) -> Result<(), RuntimeError> {
    let state = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    settle(&state, want, || fs::read_to_string(&state).is_ok_and(|s| s.trim() == want))
}

fn freeze_v2(dir: &Path, frozen: bool) -> Result<(), RuntimeError> {
    let events = dir.join("cgroup.events");
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    settle(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }, || {
        fs::read_to_string(&events).is_ok_and(|e| e.lines().any(|l| l.trim() == want))
    })
}

/// Whether container `name`'s processes are frozen (or being frozen), by either freezer.
pub fn is_frozen(name: &str) -> bool {
    let v1 = dir_with(name, "freezer")
        .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() != "THAWED");
    v1 || unified_dir(name)
        .and_then(|d| fs::read_to_string(d.join("cgroup.freeze")).ok())
        .is_some_and(|s| s.trim() == "1")
}

/// The host pids of container `name`'s processes, from its cgroup.
pub fn procs(name: &str) -> Result<Vec<i32>, RuntimeError> {
    let dirs = Cgroup::existing(name).dirs;
    let dir = dirs.first().ok_or_else(|| RuntimeError::Cgroup(format!("container {name} has no cgroup")))?;
    let path = dir.join("cgroup.procs");
    let text = fs::read_to_string(&path).map_err(|e| RuntimeError::Cgroup(format!("{}: {e}", path.display())))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// What `docker stats` shows of a container, from its cgroup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU time used, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory used, less the inactive file cache (as Docker counts it).
    pub memory: u64,
    /// The memory limit; `None` without one.
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub block_read: u64,
    pub block_write: u64,
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `KEY VALUE` lines (memory.stat, cpu.stat).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Container `name`'s usage now.
pub fn usage(name: &str) -> Usage {
    let mut u = Usage::default();
    if unified_with_controllers(Path::new(ROOT)) {
        let Some(d) = dir_with(name, "") else { return u };
        u.cpu_ns = keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
        let inactive = keyed(&d.join("memory.stat"), "inactive_file").unwrap_or(0);
        u.memory = read_u64(&d.join("memory.current")).unwrap_or(0).saturating_sub(inactive);
        u.memory_limit = read_u64(&d.join("memory.max"));
        u.pids = read_u64(&d.join("pids.current")).unwrap_or(0);
        for line in fs::read_to_string(d.join("io.stat")).unwrap_or_default().lines() {
            for field in line.split_whitespace() {
                match field.split_once('=') {
                    Some(("rbytes", v)) => u.block_read += v.parse::<u64>().unwrap_or(0),
                    Some(("wbytes", v)) => u.block_write += v.parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
        return u;
    }
    if let Some(d) = dir_with(name, "cpuacct") {
        u.cpu_ns = read_u64(&d.join("cpuacct.usage")).unwrap_or(0);
    }
    if let Some(d) = dir_with(name, "memory") {
        let inactive = keyed(&d.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        u.memory = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0).saturating_sub(inactive);
        // No limit reads as the largest page-aligned value.
        u.memory_limit = read_u64(&d.join("memory.limit_in_bytes")).filter(|l| *l < 1 << 62);
    }
    match dir_with(name, "pids") {
        Some(d) => u.pids = read_u64(&d.join("pids.current")).unwrap_or(0),
        None => u.pids = procs(name).map_or(0, |p| p.len() as u64),
    }
    if let Some(d) = dir_with(name, "blkio") {
        let text = fs::read_to_string(d.join("blkio.throttle.io_service_bytes_recursive"))
            .or_else(|_| fs::read_to_string(d.join("blkio.throttle.io_service_bytes")))
            .unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [_, "Read", v] => u.block_read += v.parse::<u64>().unwrap_or(0),
                [_, "Write", v] => u.block_write += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_limits_are_written_per_controller() {
        let t = std::env::temp_dir().join(format!("strata-cg-test-{}", std::process::id()));
        let mountinfo: String = ["memory", "pids", "cpu,cpuacct", "devices", "cpuset"]
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i} 1 0:{i} / {}/{c} rw,relatime - cgroup cgroup rw,{c}\n", t.display()))
            .collect();
        let found = hierarchies_in(&mountinfo, &t);
        assert_eq!(found.len(), 5);
        assert_eq!(found[2].options, "cpu,cpuacct");
        let limits = Limits { memory: Some(64 << 20), pids: Some(20), cpus: Some(0.5), cpuset: Some("0-1".into()) };
        let devices = DeviceAccess::With(vec!["c 4:64 rw".into()]);
        let cg = Cgroup::create_v1(&found, "x", &limits, &devices).unwrap();
        assert_eq!(cg.dirs.len(), 5);
        let read = |p: &str| fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("memory/strata/x/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/strata/x/pids.max"), "20");
        assert_eq!(read("cpu,cpuacct/strata/x/cpu.cfs_quota_us"), "50000");
        // A plain file keeps only the last write: the extra device comes last.
        assert_eq!(read("devices/strata/x/devices.deny"), "a");
        assert_eq!(read("devices/strata/x/devices.allow"), "c 4:64 rw");
        assert_eq!(read("cpuset/strata/x/cpuset.cpus"), "0-1");
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn v2_limits_go_to_one_directory() {
        let t = std::env::temp_dir().join(format!("strata-cg2-test-{}", std::process::id()));
        fs::create_dir_all(t.join("strata")).unwrap();
        fs::write(t.join("cgroup.controllers"), "cpuset cpu memory pids").unwrap();
        fs::write(t.join("strata/cgroup.controllers"), "cpuset cpu memory pids").unwrap();
        let limits = Limits { memory: Some(1 << 30), pids: Some(7), cpus: Some(2.0), cpuset: Some("1".into()) };
        let cg = Cgroup::create_v2(&t, "y", &limits).unwrap();
        assert_eq!(cg.dirs, [t.join("strata/y")]);
        let read = |p: &str| fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +pids +cpu +cpuset");
        assert_eq!(read("strata/y/memory.max"), "1073741824");
        assert_eq!(read("strata/y/pids.max"), "7");
        assert_eq!(read("strata/y/cpu.max"), "200000 100000");
        assert_eq!(read("strata/y/cpuset.cpus"), "1");
        fs::remove_dir_all(&t).unwrap();
    }

    /// CPU time (user + system ticks) of a process.
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    #[test]
    fn v2_freeze_stops_a_busy_process_and_thaw_resumes_it() {
        // The v2 tree of this machine: the unified root, or the controller-less one of a
        // hybrid machine (which has the v1 freezer besides: `freeze` prefers that one).
        let base = if unified_only() {
            Some(PathBuf::from(ROOT))
        } else {
            hierarchies().into_iter().find(|h| h.fstype == "cgroup2").map(|h| h.path)
        };
        let Some(base) = base.filter(|_| rustix::process::geteuid().is_root()) else { return };
        let dir = base.join(PARENT).join(format!("freeze-test-{}", std::process::id()));
        if fs::create_dir_all(&dir).is_err() || !dir.join("cgroup.freeze").exists() {
            let _ = fs::remove_dir(&dir);
            return;
        }
        let mut busy = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        fs::write(dir.join("cgroup.procs"), busy.id().to_string()).unwrap();
        freeze_v2(&dir, true).unwrap();
        let frozen = cpu_ticks(busy.id());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let still = cpu_ticks(busy.id());
        freeze_v2(&dir, false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let thawed = cpu_ticks(busy.id());
        let _ = busy.kill();
        let _ = busy.wait();
        let _ = remove_dir(&dir);
        assert_eq!(frozen, still, "no CPU time while frozen");
        assert!(thawed > still, "running again once thawed");
    }
}
