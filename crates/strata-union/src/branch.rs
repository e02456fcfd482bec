//! Branches: the directories a union is made of, each with a permission.

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

use crate::error::OptionError;
use crate::sys;

/// What the union may do with a branch, as AUFS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Writable: new entries and copy-ups land here; whiteouts honoured.
    Rw,
    /// Read-only; whiteouts and opaque markers in it are ignored (AUFS `ro`).
    Ro,
    /// Read-only, but its whiteouts and opaque markers are honoured (AUFS `ro+wh`).
    RoWh,
}

impl Perm {
    pub fn is_writable(self) -> bool {
        self == Perm::Rw
    }

    /// AUFS looks for whiteouts only in branches that may hold them.
    pub fn honours_whiteouts(self) -> bool {
        self != Perm::Ro
    }
}

impl FromStr for Perm {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rw" => Ok(Perm::Rw),
            "ro" => Ok(Perm::Ro),
            "ro+wh" | "rr+wh" => Ok(Perm::RoWh),
            other => Err(OptionError::BadPerm(other.to_string())),
        }
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Perm::Rw => "rw",
            Perm::Ro => "ro",
            Perm::RoWh => "ro+wh",
        })
    }
}

/// One branch as the user named it, before it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchSpec {
    pub path: PathBuf,
    pub perm: Perm,
}

impl fmt::Display for BranchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.path.display(), self.perm)
    }
}

/// An opened branch: all access goes through `root`, never through path strings
/// from `/`, so a branch stays reachable even when the mountpoint hides it.
#[derive(Debug)]
pub struct Branch {
    pub path: PathBuf,
    pub perm: Perm,
    /// Shared: a live branch change builds a new stack while requests still use the old.
    pub root: Arc<OwnedFd>,
}

/// The root of a branch, as the daemon reaches it. A read-only branch is reached through a
/// private, detached copy of its mount (as overlayfs reaches its layers) that is itself
/// read-only and `noatime`: nothing the daemon does can write the branch, and reading
/// through the union never changes its access times, passthrough reads included (the
/// kernel opens those below with the reader's flags, on this copy's mount). Where the
/// copy is refused (no `CAP_SYS_ADMIN`, as in a user namespace) the directory itself.
pub fn open_root(path: &Path, perm: Perm) -> std::io::Result<OwnedFd> {
    if !perm.is_writable() {
        match sys::quiet_copy(path) {
            Ok(root) => return Ok(root),
            Err(e) => tracing::debug!("{}: no private read-only copy of the mount ({e}); used as is", path.display()),
        }
    }
    Ok(rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}
