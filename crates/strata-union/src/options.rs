//! Mount options: AUFS style (`br=`, `dirs=`) and OverlayFS style
//! (`lowerdir=`, `upperdir=`, `workdir=`), parsed into one [`MountSpec`].

use std::path::PathBuf;
use std::str::FromStr;

use crate::branch::{BranchSpec, Perm};
use crate::error::OptionError;
use crate::whiteout::Format;

/// Everything a mount needs to know, independent of how it was spelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// Branches, top first.
    pub branches: Vec<BranchSpec>,
    /// Format of whiteouts and opaque markers written to the writable branch.
    pub whiteout: Format,
    /// A character device 0/0 in a branch is an OverlayFS whiteout. `whiteout=aufs-only`
    /// turns it off: every branch then holds AUFS whiteouts only, a 0/0 device is a device,
    /// and a lower name too long for `.wh.NAME` cannot be deleted (as in AUFS).
    pub overlay_whiteouts: bool,
    /// Scratch directory for atomic copy-up; on the writable branch's filesystem.
    /// `None` means `<top writable branch>/.wh..wh.work` (AUFS style).
    pub workdir: Option<PathBuf>,
    /// Mount read-only even if a branch is writable.
    pub read_only: bool,
    /// Seconds the kernel may cache names and attributes.
    pub cache_timeout: u64,
    /// Use FUSE passthrough for open files when the kernel allows it.
    pub passthrough: bool,
    /// Take requests over io_uring (one queue per CPU): `Some(true)` asked, `Some(false)`
    /// refused, `None` when the kernel offers it.
    pub io_uring: Option<bool>,
    /// Let users other than root use the mount (FUSE `allow_other`).
    pub allow_other: bool,
    /// Request threads; `None` picks twice the CPU count.
    pub threads: Option<usize>,
    /// Mount flags passed on to the kernel.
    pub nodev: bool,
    pub nosuid: bool,
    pub noexec: bool,
    /// The mount's source name (`fsname=`, what `df` and `findmnt` show) and the subtype
    /// of its type (`subtype=`: `fuse.SUBTYPE`).
    pub fsname: String,
    pub subtype: String,
    /// Reads through the union change no access time (`noatime`), or none of a directory
    /// (`nodiratime`); else the branches' own mount options decide (`relatime` mostly).
    pub noatime: bool,
    pub nodiratime: bool,
    /// Every read through the union updates the access time in the upper branch.
    pub strictatime: bool,
    /// Changes of metadata only (`chmod`, `chown`, `touch`, xattrs) copy a lower file up
    /// without its data, as kernel overlayfs `metacopy=on`; such copies are read too. The
    /// marks are overlayfs's xattrs in either whiteout format.
    pub metacopy: bool,
}

/// Options FUSE and fuse-overlayfs users commonly pass that change nothing here.
const ACCEPTED_NOOPS: &[&str] = &["rw", "dev", "suid", "exec", "default_permissions", "debug"];

/// fuse-overlayfs options taken for drop-in use (podman's `mount_program`), with the value
/// that means what Strata does anyway; any other value is refused.
const FUSE_OVERLAYFS_COMPAT: &[(&str, &[&str])] = &[
    ("fsync", &["0", "1"]),
    ("threaded", &["0", "1"]),
    ("fast_ino", &["0", "1"]),
    ("writeback", &["0", "1"]),
    ("redirect_dir", &["off", "nofollow"]),
    ("index", &["off"]),
    ("xino", &["off", "auto", "on"]),
    ("context", &[]),
];

/// fuse-overlayfs options whose behaviour Strata does not have.
const UNSUPPORTED: &[&str] = &[
    "uidmapping",
    "gidmapping",
    "squash_to_root",
    "squash_to_uid",
    "squash_to_gid",
    "plugins",
    "xattr_permissions",
    "userxattr",
    "static_nlink",
    "noxattrs",
];

impl MountSpec {
    /// Parses the comma-separated option strings given with `-o` (in order).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<MountSpec, OptionError> {
        let mut aufs: Option<Vec<BranchSpec>> = None;
        let mut lower: Option<Vec<PathBuf>> = None;
        let mut upper: Option<PathBuf> = None;
        let mut work: Option<PathBuf> = None;
        let mut whiteout: Option<Format> = None;
        let mut overlay_whiteouts = true;
        let mut read_only = false;
        let mut cache_timeout = 86_400;
        let mut passthrough = true;
        let mut io_uring = None;
        let mut allow_other = true;
        let mut threads = None;
        let (mut nodev, mut nosuid, mut noexec) = (false, false, false);
        let (mut fsname, mut subtype) = (String::from("strata"), String::from("strata"));
        let (mut noatime, mut nodiratime, mut strictatime) = (false, false, false);
        let mut metacopy = false;

        for opt in options.iter().flat_map(|o| split_options(o.as_ref())) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            let need =
                |v: Option<&str>| v.map(str::to_string).ok_or_else(|| OptionError::MissingValue(key.to_string()));
            match key {
                "br" | "dirs" => aufs = Some(parse_aufs_branches(&need(value)?)?),
                "lowerdir" => lower = Some(parse_paths(&need(value)?)?),
                "upperdir" => upper = Some(PathBuf::from(need(value)?)),
                "workdir" => work = Some(PathBuf::from(need(value)?)),
                "whiteout" if value == Some("aufs-only") => {
                    whiteout = Some(Format::Aufs);
                    overlay_whiteouts = false;
                }
                "whiteout" => {
                    whiteout = Some(need(value)?.parse()?);
                    overlay_whiteouts = true;
                }
                "ro" => read_only = true,
                "timeout" | "cache_timeout" => {
                    let v = need(value)?;
                    cache_timeout = v.parse().map_err(|_| OptionError::Unknown(opt.clone()))?;
                }
                "threads" => {
                    let v = need(value)?;
                    threads = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| OptionError::Unknown(opt.clone()))?);
                }
                "passthrough" => passthrough = true,
                "nopassthrough" => passthrough = false,
                "io_uring" if value.is_none() => io_uring = Some(true),
                "noio_uring" if value.is_none() => io_uring = Some(false),
                "nodev" => nodev = true,
                "nosuid" => nosuid = true,
                "noexec" => noexec = true,
                "noatime" if value.is_none() => (noatime, strictatime) = (true, false),
                "atime" | "relatime" if value.is_none() => (noatime, strictatime) = (false, false),
                "strictatime" if value.is_none() => (noatime, strictatime) = (false, true),
                "metacopy" if value == Some("on") => metacopy = true,
                "metacopy" if value == Some("off") => metacopy = false,
                "nodiratime" if value.is_none() => nodiratime = true,
                "diratime" if value.is_none() => nodiratime = false,
                "fsname" => fsname = mount_name(key, &need(value)?)?,
                "subtype" => subtype = mount_name(key, &need(value)?)?,
                "volatile" | "noacl" | "ino32_t" => {}
                k if UNSUPPORTED.contains(&k) => return Err(OptionError::Unsupported(opt.clone())),
                k if FUSE_OVERLAYFS_COMPAT
                    .iter()
                    .any(|(name, ok)| *name == k && value.is_some_and(|v| ok.is_empty() || ok.contains(&v))) => {}
                "allow_other" => allow_other = true,
                "noallow_other" => allow_other = false,
                k if value.is_none() && ACCEPTED_NOOPS.contains(&k) => {}
                _ => return Err(OptionError::Unknown(opt.clone())),
            }
        }

        let overlay_style = lower.is_some() || upper.is_some() || work.is_some();
        let (branches, default_format, workdir) = match (aufs, overlay_style) {
            (Some(_), true) => return Err(OptionError::MixedStyles),
            (Some(b), false) => (b, Format::Aufs, None),
            (None, true) => {
                if upper.is_some() != work.is_some() {
                    return Err(OptionError::UpperWithoutWork);
                }
                let mut branches = Vec::new();
                if let Some(u) = upper {
                    branches.push(BranchSpec { path: u, perm: Perm::Rw });
                }
                for l in lower.unwrap_or_default() {
                    branches.push(BranchSpec { path: l, perm: Perm::RoWh });
                }
                (branches, Format::Overlay, work)
            }
            (None, false) => return Err(OptionError::NoBranches),
        };
        if branches.is_empty() {
            return Err(OptionError::NoBranches);
        }
        Ok(MountSpec {
            branches,
            whiteout: whiteout.unwrap_or(default_format),
            overlay_whiteouts,
            workdir,
            read_only,
            cache_timeout,
            passthrough,
            io_uring,
            allow_other,
            threads,
            nodev,
            nosuid,
            noexec,
            fsname,
            subtype,
            noatime,
            nodiratime,
            strictatime,
            metacopy,
        })
    }

    /// Index of the topmost writable branch, if the mount can be written at all.
    pub fn writable_branch(&self) -> Option<usize> {
        if self.read_only {
            return None;
        }
        self.branches.iter().position(|b| b.perm.is_writable())
    }
}

/// A source or subtype name: mountinfo separates fields by spaces and options by commas.
fn mount_name(key: &str, value: &str) -> Result<String, OptionError> {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ',' || c.is_control()) {
        return Err(OptionError::Unknown(format!("{key}={value}")));
    }
    Ok(value.to_string())
}

impl FromStr for Format {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aufs" => Ok(Format::Aufs),
            "overlay" | "ovl" => Ok(Format::Overlay),
            other => Err(OptionError::BadWhiteout(other.to_string())),
        }
    }
}

/// Splits `a=1,b=2` at commas outside double quotes (an SELinux `context="a,b"` holds some).
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.retain(|p| !p.is_empty());
    out
}

fn parse_paths(list: &str) -> Result<Vec<PathBuf>, OptionError> {
    list.split(':')
        .map(|p| if p.is_empty() { Err(OptionError::EmptyPath(list.to_string())) } else { Ok(PathBuf::from(p)) })
        .collect()
}

/// `PATH[=PERM]:PATH[=PERM]...`; with no PERM the first branch is `rw`, the rest `ro` (AUFS).
fn parse_aufs_branches(list: &str) -> Result<Vec<BranchSpec>, OptionError> {
    list.split(':')
        .enumerate()
        .map(|(i, item)| {
            let (path, perm) = match item.rsplit_once('=') {
                Some((p, perm)) => (p, perm.parse()?),
                None => (item, if i == 0 { Perm::Rw } else { Perm::Ro }),
            };
            if path.is_empty() {
                return Err(OptionError::EmptyPath(list.to_string()));
            }
            Ok(BranchSpec { path: PathBuf::from(path), perm })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(opts: &[&str]) -> MountSpec {
        MountSpec::parse(opts).expect("valid options")
    }

    #[test]
    fn aufs_defaults_first_rw_rest_ro() {
        let s = spec(&["br=./image1:./image2"]);
        assert_eq!(s.branches[0].perm, Perm::Rw);
        assert_eq!(s.branches[1].perm, Perm::Ro);
        assert_eq!(s.whiteout, Format::Aufs);
        assert_eq!(s.writable_branch(), Some(0));
    }

    #[test]
    fn aufs_explicit_perms_and_dirs_alias() {
        let s = spec(&["dirs=/a=ro:/b=ro+wh:/c=rw"]);
        let perms: Vec<Perm> = s.branches.iter().map(|b| b.perm).collect();
        assert_eq!(perms, vec![Perm::Ro, Perm::RoWh, Perm::Rw]);
        assert_eq!(s.writable_branch(), Some(2));
        assert_eq!(spec(&["br=/a=ro:/b=ro"]).writable_branch(), None);
    }

    #[test]
    fn overlay_style() {
        let s = spec(&["lowerdir=/l1:/l2,upperdir=/u,workdir=/w"]);
        assert_eq!(s.branches.len(), 3);
        assert_eq!(s.branches[0], BranchSpec { path: "/u".into(), perm: Perm::Rw });
        assert_eq!(s.branches[1].perm, Perm::RoWh);
        assert_eq!(s.whiteout, Format::Overlay);
        assert_eq!(s.workdir, Some(PathBuf::from("/w")));
        let ro = spec(&["lowerdir=/l1:/l2"]);
        assert_eq!(ro.writable_branch(), None);
        let forced = spec(&["lowerdir=/l1,upperdir=/u,workdir=/w", "whiteout=aufs"]);
        assert_eq!(forced.whiteout, Format::Aufs);
        assert!(forced.overlay_whiteouts);
    }

    #[test]
    fn aufs_only_reads_no_overlay_whiteouts() {
        let s = spec(&["br=/a=rw:/b=ro", "whiteout=aufs-only"]);
        assert_eq!((s.whiteout, s.overlay_whiteouts), (Format::Aufs, false));
        // The last whiteout= wins.
        let s = spec(&["br=/a=rw:/b=ro", "whiteout=aufs-only,whiteout=aufs"]);
        assert_eq!((s.whiteout, s.overlay_whiteouts), (Format::Aufs, true));
        assert!(spec(&["br=/a"]).overlay_whiteouts);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(matches!(MountSpec::parse(&["br=/a", "frobnicate"]), Err(OptionError::Unknown(_))));
        assert!(matches!(MountSpec::parse(&["br=/a=rx"]), Err(OptionError::BadPerm(_))));
        assert!(matches!(MountSpec::parse(&["lowerdir=/a,upperdir=/u"]), Err(OptionError::UpperWithoutWork)));
        assert!(matches!(MountSpec::parse(&["br=/a,lowerdir=/b"]), Err(OptionError::MixedStyles)));
        assert!(matches!(MountSpec::parse::<&str>(&[]), Err(OptionError::NoBranches)));
        assert!(matches!(MountSpec::parse(&["br=/a::/b"]), Err(OptionError::EmptyPath(_))));
        assert!(matches!(MountSpec::parse(&["whiteout=zfs", "br=/a"]), Err(OptionError::BadWhiteout(_))));
        assert!(matches!(MountSpec::parse(&["lowerdir=/a", "uidmapping=0:1:1"]), Err(OptionError::Unsupported(_))));
        assert!(matches!(MountSpec::parse(&["lowerdir=/a", "redirect_dir=on"]), Err(OptionError::Unknown(_))));
    }

    #[test]
    fn fuse_overlayfs_options_are_taken() {
        let s =
            spec(&["lowerdir=/l,upperdir=/u,workdir=/w,fsync=0,context=\"a:b:c0,c1\",redirect_dir=off,nodev,nosuid"]);
        assert!(s.nodev && s.nosuid && !s.noexec);
    }
}
