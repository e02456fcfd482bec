//! Thin helpers over the `*at` system calls: every path here is relative to a branch root fd.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fuser::Errno;
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno as SysErrno;

/// Converts a system errno into the errno sent to the kernel.
pub fn errno(e: SysErrno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

/// Converts a std I/O error into the errno sent to the kernel.
pub fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `parent/name`, where the root is `.`.
pub fn join(parent: &Path, name: &OsStr) -> PathBuf {
    if parent == Path::new(".") { PathBuf::from(name) } else { parent.join(name) }
}

/// `lstat` relative to a branch root.
pub fn lstat(root: impl AsFd, rel: &Path) -> Result<Stat, SysErrno> {
    rustix::fs::statat(root, rel, AtFlags::SYMLINK_NOFOLLOW)
}

/// Looks up a name in one branch: `Ok(None)` when absent (ENOENT, or a parent that is not a
/// directory there).
pub fn lstat_opt(root: impl AsFd, rel: &Path) -> Result<Option<Stat>, SysErrno> {
    match lstat(root, rel) {
        Ok(st) => Ok(Some(st)),
        Err(SysErrno::NOENT) | Err(SysErrno::NOTDIR) | Err(SysErrno::NAMETOOLONG) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn is_dir(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn file_type_bits(st: &Stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// Opens `rel` without following a final symlink.
pub fn open_at(root: impl AsFd, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, SysErrno> {
    rustix::fs::openat(root, rel, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode)
}

/// An `O_PATH` handle on `rel` and its `/proc/self/fd/N` name: the way to reach xattrs
/// and modes of entries of any type (symlinks and devices included) without opening them.
pub struct PathFd {
    _fd: OwnedFd,
    pub proc: PathBuf,
}

impl PathFd {
    pub fn open(root: impl AsFd, rel: &Path) -> Result<PathFd, SysErrno> {
        let fd = open_at(root, rel, OFlags::PATH, Mode::empty())?;
        let proc = proc_path(&fd);
        Ok(PathFd { _fd: fd, proc })
    }
}

/// The `/proc/self/fd/N` name of an open file: path-only calls (xattrs) reach it there.
pub fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The names in a directory, without `.` and `..`.
pub fn dir_names(dir: impl AsFd) -> Result<Vec<OsString>, SysErrno> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(ent) = d.read() {
        let n = OsStr::from_bytes(ent?.file_name().to_bytes()).to_os_string();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    Ok(names)
}

/// Reads an xattr fully; `Ok(None)` when it does not exist. Follows symlinks: use it on
/// [`PathFd::proc`] names, which lead to the entry itself whatever its type.
pub fn get_xattr(path: &Path, name: &OsStr) -> Result<Option<Vec<u8>>, SysErrno> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::getxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(SysErrno::RANGE) => {
                let n = rustix::fs::getxattr_query(path, name)?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(SysErrno::NODATA) | Err(SysErrno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Lists xattr names.
pub fn list_xattrs(path: &Path) -> Result<Vec<OsString>, SysErrno> {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::listxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break;
            }
            Err(SysErrno::RANGE) => {
                let n = rustix::fs::listxattr_query(path)?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(SysErrno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
    Ok(buf.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsStr::from_bytes(n).to_os_string()).collect())
}

/// Copies every xattr of `src` to `dst` for which `keep(name)` holds.
pub fn copy_xattrs(src: &Path, dst: &Path, keep: impl Fn(&OsStr) -> bool) -> Result<(), SysErrno> {
    for name in list_xattrs(src)? {
        if !keep(&name) {
            continue;
        }
        if let Some(value) = get_xattr(src, &name)? {
            rustix::fs::setxattr(dst, &name, &value, rustix::fs::XattrFlags::empty())?;
        }
    }
    Ok(())
}
