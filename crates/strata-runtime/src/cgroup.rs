//! Resource limits through cgroups: the unified (v2) hierarchy when the machine has one
//! with controllers, else the v1 controllers (memory, pids, cpu). On a hybrid machine the
//! v2 mount has no controllers; the container gets a directory there too, for tracking.

use std::fs;
use std::path::{Path, PathBuf};

use crate::RuntimeError;

const ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes (swap included).
    pub memory: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// CPU share, in CPUs (1.5 = one and a half CPUs).
    pub cpus: Option<f64>,
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

impl Cgroup {
    /// Creates `strata/<name>` in every hierarchy that has one of the controllers the
    /// limits need, and sets them.
    pub fn create(name: &str, limits: &Limits) -> Result<Cgroup, RuntimeError> {
        Self::create_under(Path::new(ROOT), name, limits)
    }

    fn create_under(root: &Path, name: &str, limits: &Limits) -> Result<Cgroup, RuntimeError> {
        let mut dirs = Vec::new();
        if unified_with_controllers(root) {
            // v2: controllers must be enabled in every parent's subtree_control.
            let parent = root.join("strata");
            mkdir(&parent)?;
            for p in [root, parent.as_path()] {
                let available = fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default();
                let wanted: Vec<String> = ["memory", "pids", "cpu"]
                    .iter()
                    .filter(|c| available.split_whitespace().any(|a| a == **c))
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
            dirs.push(dir);
            return Ok(Cgroup { dirs });
        }
        // v1: one directory per controller hierarchy.
        let need = |ctrl: &str| match ctrl {
            "memory" => limits.memory.is_some(),
            "pids" => limits.pids.is_some(),
            "cpu" => limits.cpus.is_some(),
            _ => false,
        };
        for ctrl in ["memory", "pids", "cpu"] {
            let base = root.join(ctrl);
            if !base.join("cgroup.procs").exists() {
                if need(ctrl) {
                    return Err(RuntimeError::Cgroup(format!(
                        "the {ctrl} controller is not mounted at {}",
                        base.display()
                    )));
                }
                continue;
            }
            let dir = base.join("strata").join(name);
            mkdir(&dir)?;
            match ctrl {
                "memory" => {
                    if let Some(m) = limits.memory {
                        write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                        // Without this, the process would swap instead of being limited.
                        let memsw = dir.join("memory.memsw.limit_in_bytes");
                        if memsw.exists() {
                            write(&memsw, &m.to_string())?;
                        }
                    }
                }
                "pids" => {
                    if let Some(p) = limits.pids {
                        write(&dir.join("pids.max"), &p.to_string())?;
                    }
                }
                _ => {
                    if let Some(c) = limits.cpus {
                        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        write(&dir.join("cpu.cfs_quota_us"), &((c * CPU_PERIOD_US as f64) as u64).to_string())?;
                    }
                }
            }
            dirs.push(dir);
        }
        // Hybrid: the controller-less v2 tree, for tracking.
        let unified = root.join("unified");
        if unified.join("cgroup.procs").exists() {
            let dir = unified.join("strata").join(name);
            mkdir(&dir)?;
            dirs.push(dir);
        }
        Ok(Cgroup { dirs })
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

    /// The directories, for `exec` to join.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Reopens the cgroup of a container created earlier.
    pub fn existing(name: &str) -> Cgroup {
        let root = Path::new(ROOT);
        let mut dirs = Vec::new();
        let mut candidates = vec![root.join("strata").join(name)];
        for ctrl in ["memory", "pids", "cpu", "unified"] {
            candidates.push(root.join(ctrl).join("strata").join(name));
        }
        for c in candidates {
            if c.is_dir() {
                dirs.push(c);
            }
        }
        Cgroup { dirs }
    }

    /// Removes the directories (their processes are gone).
    pub fn remove(self) {
        for d in self.dirs {
            for _ in 0..50 {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    // EBUSY while the last processes are being torn down.
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_limits_are_written_per_controller() {
        let t = std::env::temp_dir().join(format!("strata-cg-test-{}", std::process::id()));
        for c in ["memory", "pids", "cpu"] {
            fs::create_dir_all(t.join(c)).unwrap();
            fs::write(t.join(c).join("cgroup.procs"), "").unwrap();
        }
        let limits = Limits { memory: Some(64 << 20), pids: Some(20), cpus: Some(0.5) };
        let cg = Cgroup::create_under(&t, "x", &limits).unwrap();
        assert_eq!(cg.dirs.len(), 3);
        let read = |p: &str| fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("memory/strata/x/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/strata/x/pids.max"), "20");
        assert_eq!(read("cpu/strata/x/cpu.cfs_quota_us"), "50000");
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn v2_limits_go_to_one_directory() {
        let t = std::env::temp_dir().join(format!("strata-cg2-test-{}", std::process::id()));
        fs::create_dir_all(t.join("strata")).unwrap();
        fs::write(t.join("cgroup.controllers"), "cpu memory pids").unwrap();
        fs::write(t.join("strata/cgroup.controllers"), "cpu memory pids").unwrap();
        let limits = Limits { memory: Some(1 << 30), pids: Some(7), cpus: Some(2.0) };
        let cg = Cgroup::create_under(&t, "y", &limits).unwrap();
        assert_eq!(cg.dirs, [t.join("strata/y")]);
        let read = |p: &str| fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +pids +cpu");
        assert_eq!(read("strata/y/memory.max"), "1073741824");
        assert_eq!(read("strata/y/pids.max"), "7");
        assert_eq!(read("strata/y/cpu.max"), "200000 100000");
        fs::remove_dir_all(&t).unwrap();
    }
}
