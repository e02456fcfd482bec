//! Thin helpers over the `*at` system calls: every path here is relative to a branch root fd.
//!
//! A path below a root may be longer than the kernel takes in one call (`PATH_MAX`, 4096
//! bytes): a deep tree in a lower branch, or one made through the mount by a process
//! working relative to a deep directory. Every helper here reaches such a path in steps
//! (see [`reach`]), so depth never makes an entry fail or look absent.

use std::ffi::{CStr, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use fuser::Errno;
use rustix::fs::{AtFlags, Dev, FileType, Gid, Mode, OFlags, RenameFlags, ResolveFlags, Stat, Timestamps, Uid};
use rustix::io::Errno as SysErrno;

/// The longest path given to one system call: below `PATH_MAX`, with room to spare.
const ONE_CALL: usize = 3072;

/// A path made reachable by one system call: a directory and a short path below it.
pub struct Reach<'a> {
    root: BorrowedFd<'a>,
    /// The deepest ancestor opened on the way, when the path was too long.
    deep: Option<OwnedFd>,
    rel: &'a Path,
}

impl Reach<'_> {
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.deep.as_ref().map_or(self.root, |d| d.as_fd())
    }

    pub fn rel(&self) -> &Path {
        self.rel
    }
}

/// `rel` below `root` as one call can take it: as it is when short (no system call),
/// else by opening ancestors (`O_PATH`) a few thousand bytes at a time, cut between
/// components. Symlinks among the ancestors are followed, exactly as in the whole path.
pub fn reach<'a>(root: BorrowedFd<'a>, rel: &'a Path) -> Result<Reach<'a>, SysErrno> {
    reach_by(root, rel, |base, step| {
        rustix::fs::openat(base, step, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    })
}

/// `openat2`, tried again while it answers EAGAIN: with `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH` the kernel gives that when a rename or mount anywhere on the machine
/// raced with a `..` in the walk, and asks the caller to retry.
pub fn openat2(
    dirfd: impl AsFd,
    path: impl AsRef<Path>,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, SysErrno> {
    let (dirfd, path) = (dirfd.as_fd(), path.as_ref());
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dirfd, path, flags, mode, resolve) {
            Err(SysErrno::AGAIN) if tries < 100 => tries += 1,
            r => return r,
        }
    }
}

/// [`reach`] for a path that must stay below `root` through no symlink at all (what the
/// store reads out of a layer directory).
pub fn reach_beneath<'a>(root: BorrowedFd<'a>, rel: &'a Path) -> Result<Reach<'a>, SysErrno> {
    reach_by(root, rel, |base, step| {
        openat2(
            base,
            step,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    })
}

fn reach_by<'a>(
    root: BorrowedFd<'a>,
    rel: &'a Path,
    open_step: impl Fn(BorrowedFd<'_>, &Path) -> Result<OwnedFd, SysErrno>,
) -> Result<Reach<'a>, SysErrno> {
    let bytes = rel.as_os_str().as_bytes();
    let mut deep: Option<OwnedFd> = None;
    let mut start = 0;
    while bytes.len() - start >= ONE_CALL {
        let rest = &bytes[start..];
        let cut = rest[..ONE_CALL].iter().rposition(|&b| b == b'/').filter(|&i| i > 0).ok_or(SysErrno::NAMETOOLONG)?;
        let base = deep.as_ref().map_or(root, |d| d.as_fd());
        let step = Path::new(OsStr::from_bytes(&rest[..cut]));
        deep = Some(open_step(base, step)?);
        start += cut;
        while bytes.get(start) == Some(&b'/') {
            start += 1;
        }
    }
    Ok(Reach { root, deep, rel: Path::new(OsStr::from_bytes(&bytes[start..])) })
}

/// Runs a `*at` call on `rel` below `root`, reached by [`reach`].
fn at<T>(
    root: impl AsFd,
    rel: impl AsRef<Path>,
    call: impl FnOnce(BorrowedFd<'_>, &Path) -> Result<T, SysErrno>,
) -> Result<T, SysErrno> {
    let r = reach(root.as_fd(), rel.as_ref())?;
    call(r.dir(), r.rel())
}

pub fn mkdirat(root: impl AsFd, rel: impl AsRef<Path>, mode: Mode) -> Result<(), SysErrno> {
    at(root, rel, |d, r| rustix::fs::mkdirat(d, r, mode))
}

pub fn unlinkat(root: impl AsFd, rel: impl AsRef<Path>, flags: AtFlags) -> Result<(), SysErrno> {
    at(root, rel, |d, r| rustix::fs::unlinkat(d, r, flags))
}

pub fn symlinkat(target: &CStr, root: impl AsFd, rel: impl AsRef<Path>) -> Result<(), SysErrno> {
    at(root, rel, |d, r| rustix::fs::symlinkat(target, d, r))
}

pub fn readlinkat(root: impl AsFd, rel: impl AsRef<Path>, buf: Vec<u8>) -> Result<std::ffi::CString, SysErrno> {
    at(root, rel, |d, r| rustix::fs::readlinkat(d, r, buf))
}

pub fn mknodat(root: impl AsFd, rel: impl AsRef<Path>, kind: FileType, mode: Mode, dev: Dev) -> Result<(), SysErrno> {
    at(root, rel, |d, r| rustix::fs::mknodat(d, r, kind, mode, dev))
}

pub fn chownat(
    root: impl AsFd,
    rel: impl AsRef<Path>,
    uid: Option<Uid>,
    gid: Option<Gid>,
    flags: AtFlags,
) -> Result<(), SysErrno> {
    at(root, rel, |d, r| rustix::fs::chownat(d, r, uid, gid, flags))
}

pub fn utimensat(root: impl AsFd, rel: impl AsRef<Path>, times: &Timestamps, flags: AtFlags) -> Result<(), SysErrno> {
    at(root, rel, |d, r| rustix::fs::utimensat(d, r, times, flags))
}

/// `renameat2` between two places, each reached by [`reach`].
pub fn renameat_with(
    from_root: impl AsFd,
    from: impl AsRef<Path>,
    to_root: impl AsFd,
    to: impl AsRef<Path>,
    flags: RenameFlags,
) -> Result<(), SysErrno> {
    let (a, b) = (reach(from_root.as_fd(), from.as_ref())?, reach(to_root.as_fd(), to.as_ref())?);
    rustix::fs::renameat_with(a.dir(), a.rel(), b.dir(), b.rel(), flags)
}

pub fn renameat(
    from_root: impl AsFd,
    from: impl AsRef<Path>,
    to_root: impl AsFd,
    to: impl AsRef<Path>,
) -> Result<(), SysErrno> {
    renameat_with(from_root, from, to_root, to, RenameFlags::empty())
}

pub fn linkat(
    from_root: impl AsFd,
    from: impl AsRef<Path>,
    to_root: impl AsFd,
    to: impl AsRef<Path>,
    flags: AtFlags,
) -> Result<(), SysErrno> {
    let (a, b) = (reach(from_root.as_fd(), from.as_ref())?, reach(to_root.as_fd(), to.as_ref())?);
    rustix::fs::linkat(a.dir(), a.rel(), b.dir(), b.rel(), flags)
}

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

/// A private, detached copy of the mounts at and below `path` (`open_tree` with
/// `OPEN_TREE_CLONE`), made read-only and `noatime`: its root, for `*at` calls.
pub fn quiet_copy(path: &Path) -> Result<OwnedFd, SysErrno> {
    private_copy(path, mount_attr::RDONLY | mount_attr::NOATIME)
}

/// `MOUNT_ATTR_*` of mount_setattr(2), for [`private_copy`].
pub mod mount_attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    /// The three access-time modes share these bits: one is set by clearing all.
    pub const ATIME_MASK: u64 = 0x70;
}

/// A private, detached copy of the mount at `path` (and those below it) with the
/// attributes `set` (an access-time mode among them replaces the mount's own).
pub fn private_copy(path: &Path, set: u64) -> Result<OwnedFd, SysErrno> {
    use rustix::mount::OpenTreeFlags;
    let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
    let copy = rustix::mount::open_tree(rustix::fs::CWD, path, flags)?;
    // `struct mount_attr`; rustix has no `mount_setattr`.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let clr = if set & mount_attr::ATIME_MASK != 0 { mount_attr::ATIME_MASK } else { 0 };
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr(2) reads one `struct mount_attr` of the size given, from a
    // live reference, and an empty C string; the descriptor is ours and open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            copy.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    raw_result(r)?;
    Ok(copy)
}

/// The result of a raw system call: its non-negative return, or the thread's errno.
fn raw_result(r: libc::c_long) -> Result<usize, SysErrno> {
    if r >= 0 {
        return Ok(r as usize);
    }
    Err(SysErrno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)))
}

/// Runs `call`, a system call some kernels lack, unless one of them answered ENOSYS
/// before (`missing`, remembered for good): `None` then, and the caller falls back.
fn unless_missing<T>(missing: &AtomicBool, call: impl FnOnce() -> Result<T, SysErrno>) -> Option<Result<T, SysErrno>> {
    if missing.load(Ordering::Relaxed) {
        return None;
    }
    match call() {
        Err(SysErrno::NOSYS) => {
            missing.store(true, Ordering::Relaxed);
            None
        }
        r => Some(r),
    }
}

/// `lstat` relative to a branch root.
pub fn lstat(root: impl AsFd, rel: impl AsRef<Path>) -> Result<Stat, SysErrno> {
    at(root, rel, |d, r| rustix::fs::statat(d, r, AtFlags::SYMLINK_NOFOLLOW))
}

/// Looks up a name in one branch: `Ok(None)` when absent (ENOENT, a parent that is not a
/// directory there, or a name longer than a name can be, such as the AUFS whiteout
/// `.wh.NAME` of a name of 252 bytes or more; a deep path is reached, never refused).
pub fn lstat_opt(root: impl AsFd, rel: impl AsRef<Path>) -> Result<Option<Stat>, SysErrno> {
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
pub fn open_at(root: impl AsFd, rel: impl AsRef<Path>, flags: OFlags, mode: Mode) -> Result<OwnedFd, SysErrno> {
    at(root, rel, |d, r| rustix::fs::openat(d, r, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode))
}

/// Whether the kernel lacks `fchmodat2` (before 6.6): then [`chmod_nofollow`] goes
/// through an `O_PATH` handle.
static NO_FCHMODAT2: AtomicBool = AtomicBool::new(false);

/// Sets the mode of `rel` below `root`, never following a final symlink: one
/// `fchmodat2(AT_SYMLINK_NOFOLLOW)` (rustix refuses the flag, glibc 2.36 emulates it
/// with three calls), else [`PathFd`] and `chmod` of its `/proc` name.
pub fn chmod_nofollow(root: impl AsFd, rel: impl AsRef<Path>, mode: Mode) -> Result<(), SysErrno> {
    let (root, rel) = (root.as_fd(), rel.as_ref());
    let newer = unless_missing(&NO_FCHMODAT2, || {
        at(root, rel, |d, r| {
            let name = c_path(r)?;
            // SAFETY: fchmodat2(2) reads a NUL-terminated path that outlives the call; the
            // descriptor is borrowed, so open; the other arguments are integers.
            raw_result(unsafe {
                libc::syscall(
                    libc::SYS_fchmodat2,
                    d.as_raw_fd(),
                    name.as_ptr(),
                    mode.bits() as libc::c_uint,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        })
    });
    match newer {
        Some(r) => r.map(drop),
        None => rustix::fs::chmod(&PathFd::open(root, rel)?.proc, mode),
    }
}

/// An `O_PATH` handle on `rel` and its `/proc/self/fd/N` name: the way to reach xattrs
/// and modes of entries of any type (symlinks and devices included) without opening them.
pub struct PathFd {
    fd: OwnedFd,
    pub proc: PathBuf,
}

impl AsFd for PathFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PathFd {
    pub fn open(root: impl AsFd, rel: impl AsRef<Path>) -> Result<PathFd, SysErrno> {
        let fd = open_at(root, rel, OFlags::PATH, Mode::empty())?;
        let proc = proc_path(&fd);
        Ok(PathFd { fd, proc })
    }

    /// The attributes of the entry itself (a symlink's own, not its target's).
    pub fn stat(&self) -> Result<Stat, SysErrno> {
        rustix::fs::fstat(&self.fd)
    }

    /// A handle on the file an open descriptor refers to, named or not.
    pub fn of(file: &impl AsRawFd) -> Result<PathFd, SysErrno> {
        let fd = rustix::fs::open(proc_path(file), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
        let proc = proc_path(&fd);
        Ok(PathFd { fd, proc })
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
    absent_as_none(grown(256, |buf| rustix::fs::getxattr(path, name, buf)))
}

/// Reads xattr `name` of `rel` below `dir` (never following a final symlink; `rel` empty:
/// the file `dir` is open on, whatever its type); `Ok(None)` when it does not exist.
pub fn get_xattr_at(dir: impl AsFd, rel: impl AsRef<Path>, name: &OsStr) -> Result<Option<Vec<u8>>, SysErrno> {
    at(dir, rel, |d, r| absent_as_none(grown(256, |buf| getxattrat(d, r, name, buf))))
}

/// Does entry `rel` below `root` (never followed if a symlink) carry xattr `name`? One
/// system call where the path fits: asked of every file a lookup meets on a `metacopy=on`
/// mount.
pub fn has_xattr(root: impl AsFd, rel: impl AsRef<Path>, name: &OsStr) -> Result<bool, SysErrno> {
    at(root, rel, |d, r| match getxattrat(d, r, name, &mut []) {
        Ok(_) | Err(SysErrno::RANGE) => Ok(true),
        Err(SysErrno::NODATA) | Err(SysErrno::NOTSUP) => Ok(false),
        Err(e) => Err(e),
    })
}

/// Lists xattr names.
pub fn list_xattrs(path: &Path) -> Result<Vec<OsString>, SysErrno> {
    xattr_names(|buf| rustix::fs::listxattr(path, buf))
}

/// Lists the xattr names of an open file: one system call, where [`list_xattrs`] of a
/// [`PathFd`] takes three.
pub fn list_xattrs_of(fd: impl AsFd) -> Result<Vec<OsString>, SysErrno> {
    xattr_names(|buf| rustix::fs::flistxattr(&fd, buf))
}

/// Lists the xattr names of `rel` below `dir`, as [`get_xattr_at`] finds it.
pub fn list_xattrs_at(dir: impl AsFd, rel: impl AsRef<Path>) -> Result<Vec<OsString>, SysErrno> {
    at(dir, rel, |d, r| xattr_names(|buf| listxattrat(d, r, buf)))
}

/// The names of a `listxattr` call's answer; none where the filesystem has no xattrs.
fn xattr_names(list: impl Fn(&mut [u8]) -> Result<usize, SysErrno>) -> Result<Vec<OsString>, SysErrno> {
    let buf = match grown(1024, list) {
        Ok(buf) => buf,
        Err(SysErrno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(buf.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsStr::from_bytes(n).to_os_string()).collect())
}

/// An xattr call's whole answer: `read` is tried with a buffer of `first` bytes, and
/// again with one of the size an empty buffer is told (the value may grow between).
fn grown(first: usize, read: impl Fn(&mut [u8]) -> Result<usize, SysErrno>) -> Result<Vec<u8>, SysErrno> {
    let mut buf = vec![0u8; first];
    loop {
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(SysErrno::RANGE) => {
                let n = read(&mut [])?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

fn absent_as_none(r: Result<Vec<u8>, SysErrno>) -> Result<Option<Vec<u8>>, SysErrno> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(SysErrno::NODATA) | Err(SysErrno::NOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the kernel lacks `getxattrat`/`listxattrat` (before 6.13): then they go
/// through the `/proc/self/fd` name of `dir`.
static NO_XATTRAT: AtomicBool = AtomicBool::new(false);
/// The system call numbers of `getxattrat` and `listxattrat`, the same on every
/// architecture (the kernel's common table); libc does not name them yet.
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;

/// Runs `call`, a `*xattrat` system call, on `rel` below `dir` (it is given the path and
/// the buffer). They refuse an `O_PATH` descriptor with an empty path (EBADF) and are
/// missing before 6.13: then `by_proc` runs on the `/proc/self/fd` name of `dir` (joined
/// with `rel`; `follow` says whether to follow the name: only the magic link itself,
/// which leads to the entry whatever its type).
fn xattrat(
    (dir, rel): (BorrowedFd<'_>, &Path),
    buf: &mut [u8],
    call: impl FnOnce(&CStr, &mut [u8]) -> libc::c_long,
    by_proc: impl FnOnce(&Path, bool, &mut [u8]) -> Result<usize, SysErrno>,
) -> Result<usize, SysErrno> {
    if rel.as_os_str().is_empty() {
        return by_proc(&proc_path(&dir), true, buf);
    }
    match unless_missing(&NO_XATTRAT, || raw_result(call(&c_path(rel)?, buf))) {
        Some(r) => r,
        None => by_proc(&proc_path(&dir).join(rel), false, buf),
    }
}

/// `getxattrat(2)`: one call, where the `/proc/self/fd` route takes an `O_PATH` open, a
/// walk through procfs and a close.
fn getxattrat(dir: BorrowedFd<'_>, rel: &Path, name: &OsStr, buf: &mut [u8]) -> Result<usize, SysErrno> {
    let cname = std::ffi::CString::new(name.as_bytes()).map_err(|_| SysErrno::INVAL)?;
    let call = |path: &CStr, buf: &mut [u8]| {
        // `struct xattr_args` of the kernel's uapi (VER0, 16 bytes).
        #[repr(C)]
        struct XattrArgs {
            value: u64,
            size: u32,
            flags: u32,
        }
        let args = XattrArgs { value: buf.as_mut_ptr() as u64, size: buf.len() as u32, flags: 0 };
        // SAFETY: getxattrat(2) reads two NUL-terminated strings and one `struct
        // xattr_args` of the size given, all live for the call, and writes at most
        // `args.size` bytes where `args.value` points: into `buf`, borrowed mutably for
        // the call; the descriptor is borrowed, so open.
        unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                dir.as_raw_fd(),
                path.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                cname.as_ptr(),
                &args as *const XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        }
    };
    xattrat((dir, rel), buf, call, |p, follow, buf| match follow {
        true => rustix::fs::getxattr(p, name, buf),
        false => rustix::fs::lgetxattr(p, name, buf),
    })
}

/// `listxattrat(2)`: see [`getxattrat`].
fn listxattrat(dir: BorrowedFd<'_>, rel: &Path, buf: &mut [u8]) -> Result<usize, SysErrno> {
    let call = |path: &CStr, buf: &mut [u8]| {
        let flags = libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
        // SAFETY: listxattrat(2) reads a NUL-terminated path that lives for the call and
        // writes at most `buf.len()` bytes into `buf`, borrowed mutably for the call; the
        // descriptor is borrowed, so open.
        unsafe { libc::syscall(SYS_LISTXATTRAT, dir.as_raw_fd(), path.as_ptr(), flags, buf.as_mut_ptr(), buf.len()) }
    };
    xattrat((dir, rel), buf, call, |p, follow, buf| match follow {
        true => rustix::fs::listxattr(p, buf),
        false => rustix::fs::llistxattr(p, buf),
    })
}

fn c_path(rel: &Path) -> Result<std::ffi::CString, SysErrno> {
    std::ffi::CString::new(rel.as_os_str().as_bytes()).map_err(|_| SysErrno::INVAL)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers of the xattr and mode helpers, with the kernel's newer calls
    /// (`getxattrat`/`listxattrat`, `fchmodat2`) and with their older fallbacks.
    fn answers(dir: &OwnedFd) -> Vec<String> {
        let file = PathFd::open(dir, "f").unwrap();
        let n = |s: &str| OsStr::new(s).to_os_string();
        // In the order of the names, not the filesystem's.
        let sorted = |r: Result<Vec<OsString>, SysErrno>| format!("{:?}", r.map(|mut v| (v.sort(), v).1));
        let mut seen = vec![
            sorted(list_xattrs_at(dir, "f")),
            sorted(list_xattrs_at(dir, "s")),
            sorted(list_xattrs_at(&file, "")),
            format!("{:?}", get_xattr_at(dir, "f", &n("trusted.big")).map(|v| v.map(|v| v.len()))),
            format!("{:?}", get_xattr_at(dir, "s", &n("trusted.big"))),
            format!("{:?}", get_xattr_at(dir, "s", &n("trusted.link"))),
            format!("{:?}", get_xattr_at(&file, "", &n("trusted.small"))),
            format!("{:?}", has_xattr(dir, "s", &n("trusted.link"))),
            format!("{:?}", has_xattr(dir, "f", &n("trusted.none"))),
            format!("{:?}", get_xattr_at(dir, "missing", &n("trusted.small"))),
        ];
        seen.push(format!("{:?}", chmod_nofollow(dir, "f", Mode::from_raw_mode(0o640))));
        seen.push(format!("{:o}", lstat(dir, "f").unwrap().st_mode & 0o7777));
        seen.push(format!("{:?}", chmod_nofollow(dir, "s", Mode::from_raw_mode(0o600))));
        seen.push(format!("{:o}", lstat(dir, "f").unwrap().st_mode & 0o7777));
        rustix::fs::chmodat(dir, "f", Mode::from_raw_mode(0o644), AtFlags::empty()).unwrap();
        seen
    }

    #[test]
    fn xattr_and_mode_helpers_answer_alike_with_or_without_the_newer_system_calls() {
        let root = std::env::temp_dir().join(format!("strata-sys-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), "x").unwrap();
        std::os::unix::fs::symlink("f", root.join("s")).unwrap();
        let set = |p: &Path, name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
        };
        // Past the first buffer (256 bytes), so the value is asked for again, grown.
        set(&root.join("f"), "trusted.big", &[7u8; 1000]);
        set(&root.join("f"), "trusted.small", b"1");
        set(&root.join("s"), "trusted.link", b"2");
        let dir = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();

        let newer = answers(&dir);
        NO_XATTRAT.store(true, Ordering::Relaxed);
        NO_FCHMODAT2.store(true, Ordering::Relaxed);
        let older = answers(&dir);
        NO_XATTRAT.store(false, Ordering::Relaxed);
        NO_FCHMODAT2.store(false, Ordering::Relaxed);
        std::fs::remove_dir_all(&root).unwrap();

        assert_eq!(newer, older);
        let expected = [
            r#"Ok(["trusted.big", "trusted.small"])"#,
            r#"Ok(["trusted.link"])"#,
            r#"Ok(["trusted.big", "trusted.small"])"#,
            "Ok(Some(1000))",
            "Ok(None)",
            r#"Ok(Some([50]))"#,
            r#"Ok(Some([49]))"#,
            "Ok(true)",
            "Ok(false)",
            "Err(Os { code: 2, kind: NotFound, message: \"No such file or directory\" })",
            "Ok(())",
            "640",
            "Err(Os { code: 95, kind: Unsupported, message: \"Operation not supported\" })",
            "640",
        ];
        assert_eq!(newer, expected);
    }
}
