//! Branches: the directories a union is made of, each with a permission.

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::OptionError;

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
