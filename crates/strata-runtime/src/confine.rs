//! What a container's processes may do: capabilities, seccomp, no_new_privs, devices,
//! and the paths of /proc and /sys they may not see or change. The default is Docker's.

use rustix::thread::CapabilitySet;
use serde::{Deserialize, Serialize};

use crate::RuntimeError;
use crate::cgroup::DeviceAccess;
use crate::seccomp::Seccomp;

/// Paths of /proc and /sys hidden from a container (Docker's list): a directory gets an
/// empty read-only tmpfs over it, a file /dev/null; those this kernel lacks are skipped.
pub const MASKED_PATHS: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths of /proc made read-only (Docker's list).
pub const READ_ONLY_PATHS: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

/// The capabilities Docker grants a container by default.
pub fn default_capabilities() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::FSETID
        | CapabilitySet::FOWNER
        | CapabilitySet::MKNOD
        | CapabilitySet::NET_RAW
        | CapabilitySet::SETGID
        | CapabilitySet::SETUID
        | CapabilitySet::SETFCAP
        | CapabilitySet::SETPCAP
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::SYS_CHROOT
        | CapabilitySet::KILL
        | CapabilitySet::AUDIT_WRITE
}

/// The highest capability this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Every capability this kernel knows (`--privileged`, `--cap-add ALL`).
pub fn all_capabilities() -> CapabilitySet {
    CapabilitySet::from_bits_retain((1u64 << (last_capability() + 1)) - 1)
}

/// `CAP_NET_ADMIN`, `net_admin` and `NET_ADMIN` are the same capability.
pub fn parse_capability(name: &str) -> Option<CapabilitySet> {
    let upper = name.trim().to_ascii_uppercase();
    CapabilitySet::from_name(upper.strip_prefix("CAP_").unwrap_or(&upper))
}

/// `CAP_` names of a set, in the kernel's order.
pub fn capability_names(set: CapabilitySet) -> Vec<String> {
    set.iter_names().map(|(n, _)| format!("CAP_{n}")).collect()
}

/// The set after Docker's `--cap-add` and `--cap-drop` (`ALL` allowed in both; drops of
/// a name also added are ignored, as Docker does).
pub fn adjust_capabilities(
    base: CapabilitySet,
    add: &[String],
    drop: &[String],
) -> Result<CapabilitySet, RuntimeError> {
    let parse = |n: &String| -> Result<CapabilitySet, RuntimeError> {
        if n.eq_ignore_ascii_case("ALL") {
            return Ok(all_capabilities());
        }
        parse_capability(n).ok_or_else(|| RuntimeError::Other(format!("unknown capability: {n}")))
    };
    let added = add.iter().map(parse).try_fold(CapabilitySet::empty(), |a, c| c.map(|c| a | c))?;
    let dropped = drop.iter().map(parse).try_fold(CapabilitySet::empty(), |a, c| c.map(|c| a | c))?;
    Ok((base - dropped) | added)
}

/// A container's confinement, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confinement {
    /// The bounding set, and root's effective and permitted sets.
    #[serde(with = "bits")]
    pub capabilities: CapabilitySet,
    pub seccomp: Seccomp,
    pub no_new_privs: bool,
    /// No masked or read-only paths, /sys and cgroups writable.
    pub privileged: bool,
    pub devices: DeviceAccess,
    /// Host device nodes to create in the container's /dev: host path, container path.
    pub device_nodes: Vec<(String, String)>,
    /// The container's root filesystem mounted read-only.
    pub read_only_root: bool,
    /// A small init as pid 1 (from a sealed copy of this program) that forwards signals
    /// and reaps; else the command is pid 1.
    pub init: bool,
}

impl Default for Confinement {
    fn default() -> Self {
        Confinement {
            capabilities: default_capabilities(),
            seccomp: Seccomp::Default,
            no_new_privs: false,
            privileged: false,
            devices: DeviceAccess::Default,
            device_nodes: Vec::new(),
            read_only_root: false,
            init: false,
        }
    }
}

/// A capability set as its bits.
mod bits {
    use rustix::thread::CapabilitySet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(set: &CapabilitySet, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(set.bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CapabilitySet, D::Error> {
        u64::deserialize(d).map(CapabilitySet::from_bits_retain)
    }
}

fn setup_err(what: &str) -> impl FnOnce(rustix::io::Errno) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Confinement {
    /// Last steps before exec, in the container's root, still as full root: the
    /// bounding set, no_new_privs, the seccomp filter (loaded while we may), the user,
    /// then the capabilities the user keeps: all of the set for root, none for others.
    pub(crate) fn enter(
        &self,
        filter: Option<&libseccomp::ScmpFilterContext>,
        uid: u32,
        gid: u32,
        groups: &[u32],
    ) -> Result<(), String> {
        for bit in 0..=last_capability() {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            if !self.capabilities.contains(cap) {
                match rustix::thread::remove_capability_from_bounding_set(cap) {
                    Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                    Err(e) => return Err(format!("dropping {:?} from the bounding set: {e}", cap)),
                }
            }
        }
        if self.no_new_privs {
            rustix::thread::set_no_new_privs(true).map_err(setup_err("no_new_privs"))?;
        }
        // The filter lets through everything below (setgroups, setuid, capset, prctl, exec).
        if let Some(f) = filter {
            f.load().map_err(|e| format!("loading the seccomp filter: {e}"))?;
        }
        let groups: Vec<libc::gid_t> = groups.to_vec();
        // SAFETY: plain system calls on values we own.
        let ok = unsafe {
            libc::setgroups(groups.len(), groups.as_ptr()) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
        };
        if !ok {
            return Err(format!("cannot switch to user {uid}:{gid}: {}", std::io::Error::last_os_error()));
        }
        // setuid to a user other than root has cleared the effective and permitted sets;
        // root keeps the set, less what this process never had (`--privileged` asks for
        // all, and a runtime started without CAP_SYS_RESOURCE cannot give it).
        let held = rustix::thread::capabilities(None).map_err(setup_err("reading capabilities"))?.permitted;
        let keep = if uid == 0 { self.capabilities & held } else { CapabilitySet::empty() };
        let sets =
            rustix::thread::CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() };
        rustix::thread::set_capabilities(None, sets).map_err(setup_err("setting capabilities"))?;
        rustix::thread::clear_ambient_capability_set().map_err(setup_err("clearing ambient capabilities"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse_as_docker_takes_them() {
        assert_eq!(parse_capability("CAP_NET_ADMIN"), Some(CapabilitySet::NET_ADMIN));
        assert_eq!(parse_capability("net_admin"), Some(CapabilitySet::NET_ADMIN));
        assert_eq!(parse_capability("NOPE"), None);
        assert_eq!(default_capabilities().bits().count_ones(), 14);
        let set = adjust_capabilities(default_capabilities(), &["SYS_PTRACE".into()], &["ALL".into()]).unwrap();
        assert_eq!(set, CapabilitySet::SYS_PTRACE);
        let set = adjust_capabilities(default_capabilities(), &[], &["CAP_MKNOD".into(), "net_raw".into()]).unwrap();
        assert_eq!(set.bits().count_ones(), 12);
        assert!(adjust_capabilities(default_capabilities(), &["CAP_FLY".into()], &[]).is_err());
        assert_eq!(capability_names(CapabilitySet::CHOWN | CapabilitySet::KILL), ["CAP_CHOWN", "CAP_KILL"]);
    }
}
