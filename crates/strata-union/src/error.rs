//! Errors of mount set-up. Errors of file operations are plain errnos sent to the kernel.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    #[error("unknown mount option '{0}'")]
    Unknown(String),
    #[error("mount option '{0}' is not supported by Strata")]
    Unsupported(String),
    #[error("mount option '{0}' needs a value")]
    MissingValue(String),
    #[error("bad branch permission '{0}' (expected rw, ro or ro+wh)")]
    BadPerm(String),
    #[error("bad whiteout format '{0}' (expected aufs, aufs-only or overlay)")]
    BadWhiteout(String),
    #[error("no branches given (use -o br=DIR[=PERM]:... or -o lowerdir=...)")]
    NoBranches,
    #[error("mixing br=/dirs= with lowerdir=/upperdir= is not allowed")]
    MixedStyles,
    #[error("upperdir= needs workdir= (and workdir= needs upperdir=)")]
    UpperWithoutWork,
    #[error("empty branch path in '{0}'")]
    EmptyPath(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error("branch {path}: {source}")]
    Branch { path: PathBuf, source: io::Error },
    #[error("branch {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("branch {0} is given twice (as {1})")]
    DuplicateBranch(PathBuf, PathBuf),
    #[error("mountpoint {mountpoint}: {source}")]
    Mountpoint { mountpoint: PathBuf, source: io::Error },
    #[error("mountpoint {mountpoint} is inside branch {branch}: the union would look up names in itself")]
    MountpointInBranch { mountpoint: PathBuf, branch: PathBuf },
    #[error("workdir {workdir}: {reason}")]
    Workdir { workdir: PathBuf, reason: String },
    #[error("mounting {mountpoint}: {source}")]
    Mount { mountpoint: PathBuf, source: io::Error },
}
