//! Setting a union up: checking and opening branches, then serving it through FUSE;
//! and taking it down again.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use rustix::fs::{Mode, OFlags};
use tracing::{info, warn};

use crate::branch::{Branch, BranchSpec};
use crate::error::MountError;
use crate::fs::{BRANCHES_XATTR, DevFuse, PID_XATTR, StrataFs};
use crate::options::MountSpec;
use crate::union::Union;

/// The work dir inside an AUFS-style writable branch (a meta name: never listed).
pub const AUFS_WORKDIR: &str = ".wh..wh.work";
/// Mount state kept between mounts (inode numbers) in an AUFS-style writable branch.
pub const AUFS_STATEDIR: &str = ".wh..wh.strata";
pub const FS_TYPE: &str = "fuse.strata";

/// A union whose branches are checked and open, ready to be served.
pub struct Prepared {
    pub spec: MountSpec,
    pub mountpoint: PathBuf,
    pub union: Arc<Union>,
}

fn branch_err(path: &Path) -> impl FnOnce(std::io::Error) -> MountError + '_ {
    move |source| MountError::Branch { path: path.to_path_buf(), source }
}

/// Checks every branch and the mountpoint, and opens the branches. Nothing on disk
/// changes unless every check passes.
pub fn prepare(mut spec: MountSpec, mountpoint: &Path) -> Result<Prepared, MountError> {
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|source| MountError::Mountpoint { mountpoint: mountpoint.to_path_buf(), source })?;
    if !mountpoint.is_dir() {
        return Err(MountError::Mountpoint { mountpoint, source: std::io::Error::from_raw_os_error(libc::ENOTDIR) });
    }
    let mut seen: Vec<((u64, u64), PathBuf)> = Vec::new();
    for b in spec.branches.iter_mut() {
        let path = b.path.canonicalize().map_err(branch_err(&b.path))?;
        let md = std::fs::metadata(&path).map_err(branch_err(&path))?;
        if !md.is_dir() {
            return Err(MountError::NotADirectory(path));
        }
        if let Some((_, first)) = seen.iter().find(|(id, _)| *id == (md.dev(), md.ino())) {
            return Err(MountError::DuplicateBranch(path, first.clone()));
        }
        if mountpoint.starts_with(&path) {
            return Err(MountError::MountpointInBranch { mountpoint: mountpoint.clone(), branch: path });
        }
        seen.push(((md.dev(), md.ino()), path.clone()));
        b.path = path;
    }
    let wb = spec.writable_branch();
    let workdir = match (wb, &spec.workdir) {
        (None, _) => None,
        (Some(w), Some(dir)) => Some(check_workdir(dir, &spec.branches[w])?.join("work")),
        (Some(w), None) => Some(spec.branches[w].path.join(AUFS_WORKDIR)),
    };
    if let Some(dir) = &spec.workdir {
        spec.workdir =
            Some(dir.canonicalize().map_err(|e| MountError::Workdir { workdir: dir.clone(), reason: e.to_string() })?);
    }

    let mut branches = spec
        .branches
        .iter()
        .map(|b| {
            let root = crate::branch::open_root(&b.path, b.perm)
                .map_err(|e| MountError::Branch { path: b.path.clone(), source: e })?;
            Ok(Branch { path: b.path.clone(), perm: b.perm, root: Arc::new(root) })
        })
        .collect::<Result<Vec<_>, MountError>>()?;
    let mut work = workdir.as_deref().map(open_workdir).transpose()?;
    if let (Some(w), Some(dir)) = (wb, &workdir)
        && let Some((root, work_fd)) = atime_copy(&spec, &spec.branches[w].path, dir)?
    {
        branches[w].root = Arc::new(root);
        work = Some(work_fd);
    }
    let inode_map = match (wb, &spec.workdir) {
        (None, _) => None,
        (Some(_), Some(dir)) => Some(dir.join("strata").join("inodes")),
        (Some(w), None) => Some(spec.branches[w].path.join(AUFS_STATEDIR).join("inodes")),
    };
    let format = spec.whiteout;
    let mut union = Union::new(branches, format, wb.map(|w| w as u16), work, mount_id(), inode_map);
    union.noatime_files = spec.noatime;
    union.overlay_whiteouts = spec.overlay_whiteouts;
    union.noatime_dirs = spec.noatime || spec.nodiratime;
    union.strictatime = spec.strictatime;
    union.metacopy = spec.metacopy;
    union.clean_work().map_err(|e| MountError::Workdir {
        workdir: PathBuf::from("work"),
        reason: std::io::Error::from_raw_os_error(e.code()).to_string(),
    })?;
    if union.metacopy
        && let Err(e) = union.holds_metacopy_marks()
    {
        // As kernel overlayfs: the mount goes on, copying data.
        let e = std::io::Error::from_raw_os_error(e.code());
        tracing::warn!("metacopy=on: the upper branch cannot hold trusted.* xattrs ({e}); copy-up copies data");
        union.metacopy = false;
    }
    Ok(Prepared { spec, mountpoint, union: Arc::new(union) })
}

/// Under `noatime` or `strictatime`, the writable branch and the work dir reached through
/// one private copy of their mount with that access-time mode. Passthrough reads never
/// reach the daemon: the kernel opens the file below on the mount of the daemon's
/// descriptor, so that mount's rule is the one reads follow (overlayfs too reads its upper
/// layer through a private copy, under its own mount's rule). `None` under `relatime`,
/// the upper filesystem's own rule.
fn atime_copy(spec: &MountSpec, upper: &Path, work: &Path) -> Result<Option<(OwnedFd, OwnedFd)>, MountError> {
    use crate::sys::mount_attr;
    let set = match (spec.noatime, spec.strictatime) {
        (true, _) => mount_attr::NOATIME,
        (false, true) => mount_attr::STRICTATIME,
        (false, false) => return Ok(None),
    };
    // One copy holds both, so that renames from the work dir into the branch stay on
    // one mount.
    let base: PathBuf = upper.components().zip(work.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    let copy = match crate::sys::private_copy(&base, set) {
        Ok(copy) => copy,
        Err(e) if spec.strictatime => {
            let reason = format!("strictatime needs a private copy of its mount: {e}");
            return Err(MountError::Branch { path: upper.to_path_buf(), source: std::io::Error::other(reason) });
        }
        Err(e) => {
            warn!("{}: no private copy of the mount ({e}); noatime holds for directories only", upper.display());
            return Ok(None);
        }
    };
    let open = |p: &Path, flags: OFlags| {
        let rel = p.strip_prefix(&base).unwrap_or(p);
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        rustix::fs::openat(&copy, rel, flags | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| MountError::Branch { path: p.to_path_buf(), source: e.into() })
    };
    Ok(Some((open(upper, OFlags::PATH)?, open(work, OFlags::RDONLY)?)))
}

/// An overlay-style workdir must be a directory on the upper dir's filesystem, outside it.
fn check_workdir(dir: &Path, upper: &BranchSpec) -> Result<PathBuf, MountError> {
    let bad = |reason: String| MountError::Workdir { workdir: dir.to_path_buf(), reason };
    let canon = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
    let md = std::fs::metadata(&canon).map_err(|e| bad(e.to_string()))?;
    if !md.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let up = std::fs::metadata(&upper.path).map_err(|e| bad(e.to_string()))?;
    if md.dev() != up.dev() {
        return Err(bad(format!("not on the same filesystem as upperdir {}", upper.path.display())));
    }
    if canon.starts_with(&upper.path) || upper.path.starts_with(&canon) {
        return Err(bad(format!("must not contain or be inside upperdir {}", upper.path.display())));
    }
    Ok(canon)
}

fn open_workdir(path: &Path) -> Result<OwnedFd, MountError> {
    let err = |e: std::io::Error| MountError::Workdir { workdir: path.to_path_buf(), reason: e.to_string() };
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(err)?;
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| err(e.into()))
}

fn mount_id() -> String {
    let mut b = [0u8; 8];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        b = (std::process::id() as u64 ^ std::time::UNIX_EPOCH.elapsed().map(|d| d.as_nanos() as u64).unwrap_or(0))
            .to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Prepared {
    /// Mounts and serves until unmounted or sent SIGTERM/SIGINT. `ready` is called once
    /// the mount is live (or failed), so a parent can return to its caller then.
    pub fn serve(self, ready: impl FnOnce(Result<(), &MountError>)) -> Result<(), MountError> {
        let mountpoint = self.mountpoint.clone();
        let read_only = self.union.wb_opt().is_none();
        let mut options = vec![
            MountOption::FSName(self.spec.fsname.clone()),
            // fuser's own `Subtype` would only name the source; the kernel takes it here.
            MountOption::CUSTOM(format!("subtype={}", self.spec.subtype)),
            MountOption::DefaultPermissions,
            if self.spec.nodev { MountOption::NoDev } else { MountOption::Dev },
            if self.spec.nosuid { MountOption::NoSuid } else { MountOption::Suid },
        ];
        if self.spec.noexec {
            options.push(MountOption::NoExec);
        }
        if self.spec.noatime {
            options.push(MountOption::NoAtime);
        }
        if read_only {
            options.push(MountOption::RO);
        }
        let mut config = Config::default();
        config.mount_options = options;
        config.acl = if self.spec.allow_other { SessionACL::All } else { SessionACL::Owner };
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        config.n_threads = Some(self.spec.threads.unwrap_or(cpus * 2));
        config.clone_fd = true;

        let notifier = Arc::new(std::sync::OnceLock::new());
        let ttl = Duration::from_secs(self.spec.cache_timeout);
        let unmounter_slot = Arc::new(std::sync::OnceLock::new());
        let fs = StrataFs::new(
            self.union.clone(),
            ttl,
            (self.spec.passthrough, self.spec.io_uring),
            notifier.clone(),
            unmounter_slot.clone(),
            mountpoint.clone(),
        );
        let fs = Arc::new(fs);
        let mut session = match Session::new(DevFuse(fs.clone()), &mountpoint, &config) {
            Ok(s) => s,
            Err(source) => {
                let e = MountError::Mount { mountpoint, source };
                ready(Err(&e));
                return Err(e);
            }
        };
        if fs.uring_chosen() {
            // INIT is done (fuser answers it while mounting); requests wait for the queues.
            match session.as_fd().try_clone_to_owned() {
                Ok(dev) => crate::uring::start(fs.clone(), Arc::new(dev)),
                Err(e) => {
                    warn!("FUSE over io_uring: no /dev/fuse descriptor for the queues: {e}");
                    fs.abort_connection();
                }
            }
        }
        let _ = notifier.set(session.notifier());
        let _ = unmounter_slot.set(parking_lot::Mutex::new(session.unmount_callable()));
        info!(mountpoint = %mountpoint.display(), id = %self.union.id, "mounted");
        let mut unmounter = session.unmount_callable();
        let mp = mountpoint.clone();
        let signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ]);
        if let Ok(mut signals) = signals {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    info!(sig, "signal: unmounting");
                    if unmounter.unmount().is_err() {
                        // Busy: detach it, the kernel finishes when the last user leaves.
                        let _ = rustix::mount::unmount(&mp, rustix::mount::UnmountFlags::DETACH);
                    }
                    // The session normally ends at once; a daemon that cannot end (a request
                    // stuck in a branch's filesystem) must still go when told to.
                    std::thread::sleep(Duration::from_secs(10));
                    warn!("the session did not end 10 s after the signal: exiting");
                    std::process::exit(1);
                }
            });
        }
        ready(Ok(()));
        session.run().map_err(|source| MountError::Mount { mountpoint, source })
    }
}

/// Unmounts a Strata mount, also one whose daemon died ("Transport endpoint is not
/// connected"). `lazy` detaches a busy mount.
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<(), std::io::Error> {
    let abs = mount_path(mountpoint)?;
    match mount_type(&abs)? {
        None => return Err(std::io::Error::other(format!("{}: not mounted", abs.display()))),
        Some(ty) if !is_ours(&abs, &ty) => {
            return Err(std::io::Error::other(format!("{}: not a Strata mount (type {ty})", abs.display())));
        }
        Some(_) => {}
    }
    let dead = matches!(std::fs::metadata(&abs), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
    let daemon = if dead { None } else { daemon_pid(&abs) };
    let flags = if lazy || dead { rustix::mount::UnmountFlags::DETACH } else { rustix::mount::UnmountFlags::empty() };
    rustix::mount::unmount(&abs, flags).map_err(|e| {
        let e = std::io::Error::from(e);
        if e.raw_os_error() == Some(libc::EBUSY) {
            std::io::Error::other(format!(
                "{}: target is busy (a process uses it; -l detaches it lazily)",
                abs.display()
            ))
        } else {
            std::io::Error::other(format!("{}: {e}", abs.display()))
        }
    })?;
    // The daemon writes its state (inode numbers) as it ends: wait, so that the branches
    // are at rest when this returns.
    if let (Some(pid), false) = (daemon, lazy) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// The type of the topmost mount at the absolute, canonical path `abs`, if any.
fn mount_type(abs: &Path) -> std::io::Result<Option<String>> {
    Ok(std::fs::read_to_string("/proc/self/mounts")?
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, mp, ty) = (f.next()?, f.next()?, f.next()?);
            Some((unescape_mount_path(mp), ty.to_string()))
        })
        .rfind(|(mp, _)| mp == abs)
        .map(|(_, ty)| ty))
}

/// Is `path` (any form: relative, through symlinks) a Strata mount, live or with a dead daemon?
pub fn is_strata_mount(path: &Path) -> bool {
    let Some(abs) = mount_path(path).ok() else { return false };
    mount_type(&abs).ok().flatten().is_some_and(|ty| is_ours(&abs, &ty))
}

/// Whether the mount of type `ty` at `abs` is Strata's: `fuse.strata`, or another type
/// (`subtype=`) whose live daemon answers Strata's own xattr. A dead daemon's mount under
/// another subtype cannot be told from a foreign one.
fn is_ours(abs: &Path, ty: &str) -> bool {
    ty == FS_TYPE || (ty.starts_with("fuse.") && daemon_pid(abs).is_some())
}

/// Running, as opposed to gone or a zombie waiting for init to reap it.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised command name, which may itself hold spaces.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X")
}

fn daemon_pid(mountpoint: &Path) -> Option<u32> {
    let v = crate::sys::get_xattr(mountpoint, OsStr::new(PID_XATTR)).ok()??;
    std::str::from_utf8(&v).ok()?.parse().ok()
}

/// The absolute, symlink-free path of a mountpoint, without touching the mountpoint
/// itself (a dead daemon's mount answers ENOTCONN): the parent is resolved instead.
fn mount_path(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(parent.canonicalize()?.join(name)),
        _ => abs.canonicalize(),
    }
}

/// The number of the FUSE connection mounted at `mountpoint` (its directory under
/// /sys/fs/fuse/connections): the minor device number the mount table gives it.
pub(crate) fn fuse_connection(mountpoint: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let here = f.get(4).is_some_and(|m| unescape_mount_path(m) == mountpoint);
        here.then(|| f.get(2).and_then(|d| d.split_once(':')).map(|(_, minor)| minor.to_string())).flatten()
    })
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// The branch list of a live mount, top first, as `PATH=PERM` lines, then `si_<id>`.
pub fn branches_of(mountpoint: &Path) -> Result<String, std::io::Error> {
    let v = crate::sys::get_xattr(mountpoint, OsStr::new(BRANCHES_XATTR))
        .map_err(|e| std::io::Error::other(format!("{}: {}", mountpoint.display(), std::io::Error::from(e))))?;
    let v = v.ok_or_else(|| std::io::Error::other(format!("{}: not a Strata mount", mountpoint.display())))?;
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// Changes the branches of a live mount and waits until the kernel has dropped what it
/// cached. A refusal comes back with the daemon's message.
pub fn change_branches(mountpoint: &Path, change: &crate::restack::BranchChange) -> Result<(), std::io::Error> {
    let text = change.to_text();
    if let Err(e) =
        rustix::fs::setxattr(mountpoint, crate::fs::CTL_XATTR, text.as_bytes(), rustix::fs::XattrFlags::empty())
    {
        let msg = crate::sys::get_xattr(mountpoint, OsStr::new(crate::fs::ERROR_XATTR)).ok().flatten();
        let msg = msg.map(|m| String::from_utf8_lossy(&m).into_owned()).filter(|m| !m.is_empty());
        return Err(std::io::Error::other(
            msg.unwrap_or_else(|| format!("{}: {}", mountpoint.display(), std::io::Error::from(e))),
        ));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match crate::sys::get_xattr(mountpoint, OsStr::new(crate::fs::PENDING_XATTR)) {
            Ok(Some(v)) if v == b"0" => break,
            Ok(Some(_)) => std::thread::sleep(Duration::from_millis(2)),
            _ => break,
        }
    }
    Ok(())
}
