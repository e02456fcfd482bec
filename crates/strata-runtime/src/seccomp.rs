//! Seccomp filters from profiles in Docker's JSON format (`defaultAction`, `archMap`,
//! `syscalls` with `names`, `action`, `args`, `includes`/`excludes` by capability,
//! architecture and kernel version), compiled by libseccomp.
//!
//! The default profile is the one Debian ships with podman
//! (`/usr/share/containers/seccomp.json`, from containers-common). That profile lets
//! through some calls that Docker's own default profile allows only to a container with
//! the matching capability; [`Seccomp::Default`] closes those as Docker does (see
//! [`GATED`]), so the default is as strict as Docker's on them and never looser than
//! podman's.

use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use rustix::thread::CapabilitySet;
use serde::Deserialize;

use crate::RuntimeError;

/// Where the default profile is read from.
pub const DEFAULT_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// The namespace flags of clone(2): without CAP_SYS_ADMIN a container may not use them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Calls Docker's default profile allows only with a capability (any of a set; never,
/// for `None`), which the containers-common profile allows to everyone. Each is
/// answered EPERM when the container lacks them.
pub const GATED: [(&str, Option<CapabilitySet>); 30] = [
    ("mount", Some(CapabilitySet::SYS_ADMIN)),
    ("umount", Some(CapabilitySet::SYS_ADMIN)),
    ("umount2", Some(CapabilitySet::SYS_ADMIN)),
    ("pivot_root", Some(CapabilitySet::SYS_ADMIN)),
    ("unshare", Some(CapabilitySet::SYS_ADMIN)),
    ("setns", Some(CapabilitySet::SYS_ADMIN)),
    ("open_tree", Some(CapabilitySet::SYS_ADMIN)),
    ("move_mount", Some(CapabilitySet::SYS_ADMIN)),
    ("fsopen", Some(CapabilitySet::SYS_ADMIN)),
    ("fsconfig", Some(CapabilitySet::SYS_ADMIN)),
    ("fsmount", Some(CapabilitySet::SYS_ADMIN)),
    ("fspick", Some(CapabilitySet::SYS_ADMIN)),
    ("mount_setattr", Some(CapabilitySet::SYS_ADMIN)),
    ("quotactl", Some(CapabilitySet::SYS_ADMIN)),
    ("quotactl_fd", Some(CapabilitySet::SYS_ADMIN)),
    ("name_to_handle_at", Some(CapabilitySet::SYS_ADMIN)),
    ("sethostname", Some(CapabilitySet::SYS_ADMIN)),
    ("setdomainname", Some(CapabilitySet::SYS_ADMIN)),
    ("syslog", Some(CapabilitySet::SYS_ADMIN.union(CapabilitySet::SYSLOG))),
    ("perf_event_open", Some(CapabilitySet::SYS_ADMIN.union(CapabilitySet::PERFMON))),
    ("bpf", Some(CapabilitySet::SYS_ADMIN.union(CapabilitySet::BPF))),
    ("get_mempolicy", Some(CapabilitySet::SYS_NICE)),
    ("set_mempolicy", Some(CapabilitySet::SYS_NICE)),
    ("mbind", Some(CapabilitySet::SYS_NICE)),
    ("reboot", Some(CapabilitySet::SYS_BOOT)),
    ("delete_module", Some(CapabilitySet::SYS_MODULE)),
    // The kernel keyring is not namespaced: never.
    ("keyctl", None),
    ("add_key", None),
    ("request_key", None),
    ("userfaultfd", None),
];

/// Is `name` closed to a container with `caps` (it has none of the capabilities that
/// open it)?
fn is_gated(name: &str, caps: CapabilitySet) -> bool {
    GATED.iter().any(|(n, cap)| *n == name && cap.is_none_or(|c| !caps.intersects(c)))
}

/// Which filter a container gets.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
pub enum Seccomp {
    /// [`DEFAULT_PROFILE`], with the calls of [`GATED`] closed as Docker closes them.
    #[default]
    Default,
    /// A profile the user gave (Docker's format), applied as it is.
    Profile(String),
    /// No filter (`--security-opt seccomp=unconfined`, `--privileged`).
    Unconfined,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<i32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<i32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

fn err(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(format!("seccomp: {what}"))
}

/// Reads a profile file, checking that it parses (so that errors show at `create`).
pub fn read_profile(path: &Path) -> Result<String, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    serde_json::from_str::<Profile>(&text)
        .map_err(|e| err(format!("{}: not a seccomp profile: {e}", path.display())))?;
    Ok(text)
}

/// The architecture names Docker's profiles use in `includes.arches`.
fn docker_arch_name(arch: ScmpArch) -> &'static str {
    match arch {
        ScmpArch::X8664 => "amd64",
        ScmpArch::X86 => "x86",
        ScmpArch::X32 => "x32",
        ScmpArch::Aarch64 => "arm64",
        ScmpArch::Arm => "arm",
        ScmpArch::Ppc64Le => "ppc64le",
        ScmpArch::S390X => "s390x",
        ScmpArch::Riscv64 => "riscv64",
        _ => "other",
    }
}

fn scmp_arch_name(arch: ScmpArch) -> &'static str {
    match arch {
        ScmpArch::X8664 => "SCMP_ARCH_X86_64",
        ScmpArch::Aarch64 => "SCMP_ARCH_AARCH64",
        ScmpArch::Ppc64Le => "SCMP_ARCH_PPC64LE",
        ScmpArch::S390X => "SCMP_ARCH_S390X",
        ScmpArch::Riscv64 => "SCMP_ARCH_RISCV64",
        _ => "",
    }
}

/// `6.18.44-foo` -> (6, 18).
fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn cap_set(names: &[String]) -> Option<CapabilitySet> {
    names.iter().try_fold(CapabilitySet::empty(), |acc, n| crate::confine::parse_capability(n).map(|c| acc | c))
}

impl Condition {
    /// Does a container with `caps` on `arch` and kernel `kernel` meet every part?
    fn holds(&self, caps: CapabilitySet, arch: &str, kernel: (u32, u32)) -> bool {
        let caps_ok = cap_set(&self.caps).is_some_and(|c| caps.contains(c));
        let arch_ok = self.arches.iter().any(|a| a == arch);
        let kernel_ok = self.min_kernel.as_deref().is_some_and(|k| kernel >= kernel_version(k));
        (self.caps.is_empty() || caps_ok)
            && (self.arches.is_empty() || arch_ok)
            && (self.min_kernel.is_none() || kernel_ok)
    }

    /// Does a container meet any part (for `excludes`)?
    fn any(&self, caps: CapabilitySet, arch: &str, kernel: (u32, u32)) -> bool {
        self.caps.iter().any(|c| crate::confine::parse_capability(c).is_some_and(|c| caps.contains(c)))
            || self.arches.iter().any(|a| a == arch)
            || self.min_kernel.as_deref().is_some_and(|k| kernel >= kernel_version(k))
    }
}

fn action(name: &str, errno: Option<i32>) -> Result<ScmpAction, RuntimeError> {
    ScmpAction::from_str(name, Some(errno.unwrap_or(libc::EPERM))).map_err(|e| err(format!("action {name}: {e}")))
}

fn compare(a: &Arg) -> Result<ScmpArgCompare, RuntimeError> {
    let (op, datum) = match a.op.as_str() {
        "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, a.value),
        "SCMP_CMP_LT" => (ScmpCompareOp::Less, a.value),
        "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, a.value),
        "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, a.value),
        "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, a.value),
        "SCMP_CMP_GT" => (ScmpCompareOp::Greater, a.value),
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(a.value), a.value_two),
        other => return Err(err(format!("unknown argument operator {other}"))),
    };
    Ok(ScmpArgCompare::new(a.index, op, datum))
}

/// The filter for a container with capabilities `caps`, ready to load.
pub fn compile(policy: &Seccomp, caps: CapabilitySet) -> Result<Option<ScmpFilterContext>, RuntimeError> {
    let text = match policy {
        Seccomp::Unconfined => return Ok(None),
        Seccomp::Profile(text) => text.clone(),
        Seccomp::Default => std::fs::read_to_string(DEFAULT_PROFILE).map_err(|e| {
            err(format!(
                "the default profile {DEFAULT_PROFILE}: {e} (install Debian's golang-github-containers-common, \
                 or choose one with --security-opt seccomp=PROFILE.json)"
            ))
        })?,
    };
    let profile: Profile = serde_json::from_str(&text).map_err(|e| err(format!("profile: {e}")))?;
    let harden = *policy == Seccomp::Default;
    let native = ScmpArch::native();
    let arch = docker_arch_name(native);
    let kernel = kernel_version(&rustix::system::uname().release().to_string_lossy());

    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err(format!("new filter: {e}")))?;
    // libseccomp refuses a rule whose action is the default one; it would change nothing.
    let add = |ctx: &mut ScmpFilterContext, name: &str, act: ScmpAction, args: &[ScmpArgCompare]| {
        if act == default {
            return Ok(());
        }
        // A name this libseccomp does not know is skipped, as runc does.
        let Ok(sc) = ScmpSyscall::from_name(name) else { return Ok(()) };
        ctx.add_rule_conditional(act, sc, args).map(|_| ()).map_err(|e| err(format!("rule for {name}: {e}")))
    };
    // No no_new_privs unless asked for: libseccomp would set it when loading.
    ctx.set_ctl_nnp(false).map_err(|e| err(e.to_string()))?;
    for m in profile.arch_map.iter().filter(|m| m.architecture == scmp_arch_name(native)) {
        for sub in &m.sub_architectures {
            if let Ok(a) = sub.parse::<ScmpArch>() {
                ctx.add_arch(a).map_err(|e| err(format!("architecture {sub}: {e}")))?;
            }
        }
    }
    let gated = |name: &str| harden && is_gated(name, caps);
    let clone_gated = harden && !caps.contains(CapabilitySet::SYS_ADMIN);
    for rule in &profile.syscalls {
        if !rule.includes.holds(caps, arch, kernel) || rule.excludes.any(caps, arch, kernel) {
            continue;
        }
        let act = action(&rule.action, rule.errno_ret)?;
        let args: Vec<ScmpArgCompare> = rule.args.iter().flatten().map(compare).collect::<Result<_, _>>()?;
        for name in rule.names.iter().chain(rule.name.iter()) {
            let loosening = act == ScmpAction::Allow;
            if loosening && (gated(name) || (clone_gated && (name == "clone" || name == "clone3"))) {
                continue;
            }
            add(&mut ctx, name, act, &args)?;
        }
    }
    if harden {
        for (name, _) in GATED.iter().filter(|(n, _)| gated(n)) {
            add(&mut ctx, name, ScmpAction::Errno(libc::EPERM), &[])?;
        }
        if clone_gated {
            // clone without namespace flags only; clone3 hides its flags in memory, so
            // it answers ENOSYS and the C library falls back to clone.
            let index = if native == ScmpArch::S390X { 1 } else { 0 };
            let no_ns = ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(CLONE_NAMESPACE_FLAGS), 0);
            add(&mut ctx, "clone", ScmpAction::Allow, &[no_ns])?;
            add(&mut ctx, "clone3", ScmpAction::Errno(libc::ENOSYS), &[])?;
        }
    }
    Ok(Some(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_dockers_rules() {
        let c = Condition { caps: vec!["CAP_SYS_ADMIN".into()], ..Condition::default() };
        assert!(c.holds(CapabilitySet::SYS_ADMIN | CapabilitySet::CHOWN, "amd64", (6, 1)));
        assert!(!c.holds(CapabilitySet::CHOWN, "amd64", (6, 1)));
        let k = Condition { min_kernel: Some("4.8".into()), ..Condition::default() };
        assert!(k.holds(CapabilitySet::empty(), "amd64", (6, 18)));
        assert!(!k.holds(CapabilitySet::empty(), "amd64", (4, 4)));
        let a = Condition { arches: vec!["arm64".into()], ..Condition::default() };
        assert!(!a.holds(CapabilitySet::empty(), "amd64", (6, 1)));
        assert!(a.any(CapabilitySet::empty(), "arm64", (6, 1)));
        assert_eq!(kernel_version("6.18.44-strata"), (6, 18));
    }

    #[test]
    fn gated_calls_open_with_any_of_their_capabilities() {
        let none = CapabilitySet::empty();
        assert!(is_gated("syslog", none));
        assert!(!is_gated("syslog", CapabilitySet::SYSLOG));
        assert!(!is_gated("syslog", CapabilitySet::SYS_ADMIN));
        assert!(is_gated("mbind", CapabilitySet::SYS_ADMIN));
        assert!(!is_gated("mbind", CapabilitySet::SYS_NICE));
        assert!(is_gated("keyctl", crate::confine::all_capabilities()));
        assert!(!is_gated("read", none));
    }

    #[test]
    fn a_small_profile_compiles() {
        let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]}],
            "syscalls":[{"names":["read","write","no_such_call"],"action":"SCMP_ACT_ALLOW"},
                        {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
        let ctx = compile(&Seccomp::Profile(text.into()), CapabilitySet::CHOWN).unwrap();
        assert!(ctx.is_some());
        let bad = r#"{"defaultAction":"SCMP_ACT_NOPE","syscalls":[]}"#;
        assert!(compile(&Seccomp::Profile(bad.into()), CapabilitySet::empty()).is_err());
    }
}
