//! Paths inside a container's root, as the container would see them. The root holds
//! what the container and its image put there, symbolic links to host paths included,
//! so nothing here follows a path string: every name is resolved with `openat2`
//! (`RESOLVE_IN_ROOT`: a link to `/tmp/x` means the container's `/tmp/x`; no magic
//! links), missing directories are made one component at a time with `mkdirat`,
//! files with `O_CREAT | O_EXCL | O_NOFOLLOW`, and mounts land on the resolved
//! descriptor (`/proc/self/fd/N`), never on a host path a link could redirect.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::RuntimeError;

pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// The path the kernel gives a descriptor, for mount(2) and friends.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// The normal components of `rel`; `..` and the like are refused (the runtime's own
/// targets never have them; a user's volume path is checked before it gets here).
fn components(rel: &str) -> Result<Vec<&OsStr>, String> {
    let mut out = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(format!("{rel}: '..' is not allowed here")),
        }
    }
    Ok(out)
}

impl Root {
    pub fn open(path: &Path) -> Result<Root, RuntimeError> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(crate::sys(format!("opening the container's root {}", path.display())))?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    fn error(&self, rel: &str, what: &str, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Other(format!(
            "{what} /{} in the container's root {}: {e}",
            rel.trim_start_matches('/'),
            self.path.display()
        ))
    }

    fn openat2(&self, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = rel.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        // EAGAIN: a rename or mount anywhere raced with a `..` in the walk; the kernel
        // asks for another try.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve_flags()) {
                Err(Errno::AGAIN) if tries < 100 => tries += 1,
                r => return r,
            }
        }
    }

    /// `rel` resolved inside the root, as an `O_PATH` descriptor; `None` if absent.
    pub fn resolve(&self, rel: &str) -> Result<Option<OwnedFd>, RuntimeError> {
        match self.openat2(rel, OFlags::PATH) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.error(rel, "resolving", e)),
        }
    }

    /// Directory `rel`, made (0755, with its missing parents) if absent.
    pub fn mkdir_all(&self, rel: &str) -> Result<OwnedFd, RuntimeError> {
        let comps = components(rel).map_err(|e| self.error(rel, "resolving", e))?;
        let mut dir = self.openat2(".", OFlags::PATH | OFlags::DIRECTORY).map_err(|e| self.error("", "opening", e))?;
        let mut prefix = PathBuf::new();
        for name in comps {
            prefix.push(name);
            let p = prefix.to_string_lossy().into_owned();
            dir = match self.openat2(&p, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    // mkdirat never follows a link in the last component: a dangling
                    // link is EEXIST and the second resolution below fails on it.
                    match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.error(&p, "making directory", e)),
                    }
                    self.openat2(&p, OFlags::PATH | OFlags::DIRECTORY)
                        .map_err(|e| self.error(&p, "making directory", format!("{e} (a dangling symbolic link?)")))?
                }
                Err(Errno::NOTDIR) => return Err(self.error(&p, "making directory", "not a directory")),
                Err(e) => return Err(self.error(&p, "resolving", e)),
            };
        }
        Ok(dir)
    }

    /// The parent directory of `rel` (made if absent) and `rel`'s last name.
    fn parent_of<'a>(&self, rel: &'a str) -> Result<(OwnedFd, &'a OsStr), RuntimeError> {
        let path = Path::new(rel);
        let name = path.file_name().ok_or_else(|| self.error(rel, "resolving", "no file name"))?;
        let parent = path.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        Ok((self.mkdir_all(&parent)?, name))
    }

    /// Regular file `rel` (created empty, 0644, if absent) as an `O_PATH` descriptor: a
    /// mount target for a file bind.
    pub fn file(&self, rel: &str) -> Result<OwnedFd, RuntimeError> {
        let fd = match self.resolve(rel)? {
            Some(fd) => fd,
            None => {
                let (parent, name) = self.parent_of(rel)?;
                let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC;
                match rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(0o644)) {
                    Ok(_) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.error(rel, "creating", e)),
                }
                self.resolve(rel)?.ok_or_else(|| {
                    let target = rustix::fs::readlinkat(&parent, name, Vec::new())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.error(
                        rel,
                        "mounting on",
                        format!("it is a symbolic link to {target}, which does not exist in the container"),
                    )
                })?
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.error(rel, "checking", e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(self.error(rel, "mounting a file on", "it is a directory"));
        }
        Ok(fd)
    }

    /// A symbolic link `rel` -> `target`, unless something is there already.
    pub fn symlink(&self, target: &str, rel: &str) -> Result<(), RuntimeError> {
        let (parent, name) = self.parent_of(rel)?;
        match rustix::fs::symlinkat(target, &parent, name) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(self.error(rel, "making a link", e)),
        }
    }

    /// A device node `rel` (in a directory the runtime just mounted, so nothing is there).
    pub fn mknod(&self, rel: &str, kind: FileType, mode: u32, dev: u64) -> Result<(), RuntimeError> {
        let (parent, name) = self.parent_of(rel)?;
        match rustix::fs::mknodat(&parent, name, kind, Mode::from_raw_mode(mode), dev) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(self.error(rel, "making device", e)),
        }
    }

    /// Mounts `fstype` on directory `rel` (made if absent).
    pub fn mount(
        &self,
        source: &str,
        rel: &str,
        fstype: &str,
        flags: rustix::mount::MountFlags,
        data: &str,
    ) -> Result<(), RuntimeError> {
        let target = self.mkdir_all(rel)?;
        let data = std::ffi::CString::new(data).unwrap_or_default();
        rustix::mount::mount(source, fd_path(&target).as_str(), fstype, flags, Some(data.as_c_str()))
            .map_err(|e| self.error(rel, &format!("mounting {fstype} on"), e))
    }

    /// Bind-mounts `source` (a descriptor or a path outside the root) on `target`.
    pub fn bind(&self, source: &str, target: &impl AsFd, rel: &str, recursive: bool) -> Result<(), RuntimeError> {
        let t = fd_path(&target.as_fd());
        let r = if recursive {
            rustix::mount::mount_bind_recursive(source, t.as_str())
        } else {
            rustix::mount::mount_bind(source, t.as_str())
        };
        r.map_err(|e| self.error(rel, &format!("bind-mounting {source} on"), e))
    }

    /// Makes the mount at `rel` read-only (it must be a mount point: bind it first).
    pub fn remount_read_only(&self, rel: &str, extra: rustix::mount::MountFlags) -> Result<(), RuntimeError> {
        use rustix::mount::MountFlags as M;
        let Some(fd) = self.resolve(rel)? else { return Ok(()) };
        rustix::mount::mount_remount(fd_path(&fd).as_str(), M::BIND | M::RDONLY | extra, "")
            .map_err(|e| self.error(rel, "making read-only", e))
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}
