//! The FUSE face of the union: kernel requests in, [`Union`] calls, replies out.
//! Open regular files go through FUSE passthrough when the kernel allows it, so reads,
//! writes and mmap never reach this daemon; otherwise the daemon serves them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, INodeNo, InitFlags, KernelConfig, LockOwner,
    Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Mutex, RwLockUpgradableReadGuard, RwLockWriteGuard};
use rustix::fs::{AtFlags, Mode, OFlags, Stat, Timespec, Timestamps};
use tracing::{debug, warn};

use crate::copyup::Data;
use crate::fileattr;
use crate::inode::{Ino, ROOT};
use crate::listings::Listings;
use crate::reply::{self, Backing};
use crate::sys::{self, errno};
use crate::union::{DirEntry, Staged, Union, check_new_name, file_type};
use crate::whiteout;

/// Virtual xattr on the mount root listing the branches (read by `strata branches`).
pub const BRANCHES_XATTR: &str = "trusted.strata.branches";
/// Virtual xattr on the mount root with the daemon's process id (`strata umount` waits
/// for it to finish writing its state).
pub const PID_XATTR: &str = "trusted.strata.pid";
/// Virtual xattr on the mount root taking branch changes (see `restack`).
pub const CTL_XATTR: &str = "trusted.strata.ctl";
/// Virtual xattr on the mount root with the message of the last refused branch change.
pub const ERROR_XATTR: &str = "trusted.strata.error";
/// Virtual xattr on the mount root: kernel cache invalidations still running.
pub const PENDING_XATTR: &str = "trusted.strata.pending";
/// Virtual xattr on the mount root with the daemon's counters, one `name value` a line.
pub const STATS_XATTR: &str = "trusted.strata.stats";

/// What the daemon has served: tells whether passthrough keeps file I/O away from it.
#[derive(Default)]
pub struct Stats {
    passthrough_opens: AtomicU64,
    daemon_opens: AtomicU64,
    daemon_reads: AtomicU64,
    daemon_writes: AtomicU64,
    /// Requests that came over io_uring (see `crate::uring`).
    pub uring_requests: AtomicU64,
}

struct OpenFile {
    ino: Ino,
    file: OwnedFd,
    /// The user who opened it for writing, if it was (a branch under it cannot become
    /// read-only, and see [`StrataFs::setid_guard`]).
    writer: Option<u32>,
    /// Keeps the passthrough registration alive while this handle is open.
    _backing: Option<Arc<Backing>>,
    /// The branch of `file`, renumbered when the branch stack changes. Another branch than
    /// the node's when the file is not the node's own: the data below a metadata-only
    /// copy, or a lower file a reader has kept since before a copy-up.
    branch: AtomicU16,
}

impl OpenFile {
    /// Is the file the one of a node now in `branch` (see [`OpenFile::branch`])?
    fn is_own(&self, branch: u16) -> bool {
        self.branch.load(Ordering::Relaxed) == branch
    }
}

/// The attribute changes of one `setattr` request.
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

/// Entries prepared per readdir request; more than a reply page holds, so none is short.
const READDIR_BATCH: usize = 256;

/// One entry of a directory reply: offset, node, type, name, and the stat its resolution
/// took when that is the node's own.
type Listed = (u64, Ino, fuser::FileType, std::ffi::OsString, Option<rustix::fs::Stat>);

pub struct StrataFs {
    union: Arc<Union>,
    ttl: Duration,
    passthrough: AtomicBool,
    want_passthrough: bool,
    /// `-o io_uring` / `noio_uring`; unset means: when the kernel offers it.
    want_uring: Option<bool>,
    /// INIT chose FUSE over io_uring: the queues must start (see `crate::uring`).
    uring: AtomicBool,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    listings: Listings,
    next_fh: AtomicU64,
    pub stats: Stats,
    /// Set once the session exists: tells the kernel to drop cached entries.
    notifier: Arc<OnceLock<Notifier>>,
    /// Set once the session exists: the session's own unmount, cleared at the end when
    /// someone else unmounted the filesystem (fuser would try again and log EINVAL).
    unmounter: Arc<OnceLock<Mutex<fuser::SessionUnmounter>>>,
    mountpoint: PathBuf,
    last_error: Mutex<String>,
    pending: Arc<AtomicU64>,
}

fn time(sec: i64, nsec: u32) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec.into())
    }
}

/// Attributes as the union shows them: our inode number, and (as overlayfs does) a link
/// count of 1 for directories merged from several branches.
fn to_attr(ino: Ino, st: &Stat, merged: bool) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec as u32),
        mtime: time(st.st_mtime, st.st_mtime_nsec as u32),
        ctime: time(st.st_ctime, st.st_ctime_nsec as u32),
        crtime: UNIX_EPOCH,
        kind: file_type(st),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: if merged { 1 } else { st.st_nlink as u32 },
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// The attributes of a negative entry (node id 0).
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn timespec(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        Some(TimeOrNow::Now) => Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW },
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ },
            // fuser 0.18 decodes a kernel time (-s, n) before 1970 as EPOCH - (s + n ns);
            // undo exactly that, so what the caller set is what lands on disk.
            Err(e) => Timespec { tv_sec: -(e.duration().as_secs() as i64), tv_nsec: e.duration().subsec_nanos() as _ },
        },
    }
}

/// Flags the backing open keeps; creation and truncation are the union's business.
fn backing_flags(flags: i32) -> OFlags {
    let keep = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_DIRECT
        | libc::O_SYNC
        | libc::O_DSYNC
        | libc::O_NOATIME
        | libc::O_NONBLOCK;
    OFlags::from_bits_retain((flags & keep) as u32)
}

/// A registered file handle, with its passthrough backing file when the kernel took one.
type Opened = (u64, Option<Arc<Backing>>);

/// The xattrs holding an entry's ACL and a directory's default ACL.
const ACCESS_ACL: &str = "system.posix_acl_access";
const DEFAULT_ACL: &str = "system.posix_acl_default";

/// Who sent a request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    fn of(req: &Request) -> Caller {
        Caller { uid: req.uid(), gid: req.gid() }
    }
}

/// Root stands for `CAP_FSETID`: fuser does not pass on the kernel's own verdict for opens
/// and setattr (`FUSE_OPEN_KILL_SUIDGID`, `FATTR_KILL_SUIDGID`).
fn may_keep_setid(uid: u32) -> bool {
    uid == 0
}

/// Clears the set-id bits Linux clears when `caller` writes or truncates the regular file
/// `file` (a `/proc/self/fd/N` name, of any descriptor), as the kernel would
/// (`setattr_should_drop_suidgid`): set-user-ID always, set-group-ID when the file is
/// group-executable or not of the caller's group. The request carries only the caller's
/// primary group, so a supplementary one does not count: set-group-ID goes where Linux
/// might keep it. With `FUSE_HANDLE_KILLPRIV_V2` this is the daemon's job
/// (`security.capability` the kernel removes itself, through `removexattr`). Returns
/// whether it changed anything.
fn drop_setid(file: &Path, caller: Caller) -> Result<bool, Errno> {
    if may_keep_setid(caller.uid) {
        return Ok(false);
    }
    let st = rustix::fs::stat(file).map_err(errno)?;
    if sys::file_type_bits(&st) != libc::S_IFREG {
        return Ok(false);
    }
    let mode = st.st_mode & 0o7777;
    let mut kept = mode & !libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 || st.st_gid != caller.gid {
        kept &= !libc::S_ISGID;
    }
    if kept == mode {
        return Ok(false);
    }
    rustix::fs::chmod(file, Mode::from_raw_mode(kept)).map_err(errno)?;
    Ok(true)
}

fn wants_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl StrataFs {
    pub fn new(
        union: Arc<Union>,
        ttl: Duration,
        (passthrough, uring): (bool, Option<bool>),
        notifier: Arc<OnceLock<Notifier>>,
        unmounter: Arc<OnceLock<Mutex<fuser::SessionUnmounter>>>,
        mountpoint: PathBuf,
    ) -> StrataFs {
        StrataFs {
            notifier,
            unmounter,
            mountpoint,
            last_error: Mutex::new(String::new()),
            pending: Arc::new(AtomicU64::new(0)),
            union,
            ttl,
            passthrough: AtomicBool::new(false),
            want_passthrough: passthrough,
            want_uring: uring,
            uring: AtomicBool::new(false),
            files: Mutex::new(HashMap::new()),
            listings: Listings::default(),
            next_fh: AtomicU64::new(1),
            stats: Stats::default(),
        }
    }

    fn attr_of(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let (_, _, st) = self.union.stat(ino)?;
        self.attr_from(ino, &st)
    }

    /// The attributes the union shows for node `ino` whose backing entry has stat `st`.
    fn attr_from(&self, ino: Ino, st: &rustix::fs::Stat) -> Result<FileAttr, Errno> {
        let (merged, redirected) = match sys::is_dir(st) {
            true => {
                let t = self.union.table.read();
                let dirs = &t.get(ino)?.dirs;
                (dirs.len() > 1, dirs.iter().any(|p| p.path.is_some()))
            }
            false => (false, false),
        };
        let mut attr = to_attr(ino, st, merged);
        if attr.kind == fuser::FileType::RegularFile && st.st_nlink > 1 {
            attr.nlink = self.union.nlink(ino, st)?;
        }
        // A metadata-only copy uses the blocks of its data, as on kernel overlayfs (only a
        // `metacopy=on` mount has any).
        let below = match self.union.metacopy && !sys::is_dir(st) {
            true => self.union.table.read().get(ino)?.data().cloned(),
            false => None,
        };
        if let Some((b, rel)) = below {
            attr.blocks = sys::lstat(self.union.root(b), &*rel).map_err(errno)?.st_blocks as u64;
        }
        if redirected {
            // A merged directory counts 1, as overlayfs's do; a renamed lower directory
            // counts its subdirectories, as the copy that overlayfs makes of it does.
            attr.nlink = self.union.dir_nlink(ino)?;
        }
        Ok(attr)
    }

    /// Attributes of a file whose names are all gone but which is still open or looked up
    /// (`statx` on its descriptor arrives without a file handle): see [`Self::gone`].
    fn attr_of_unlinked(&self, ino: Ino) -> Option<FileAttr> {
        let h = self.gone(ino, false).ok()?;
        rustix::fs::stat(&h.proc).ok().map(|st| to_attr(ino, &st, false))
    }

    /// Attributes after a lookup-like reply: the kernel now holds one more reference.
    fn entry_attr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        self.entry_attr_with(ino, None)
    }

    /// [`Self::entry_attr`], from a stat already taken when there is one.
    fn entry_attr_with(&self, ino: Ino, st: Option<&rustix::fs::Stat>) -> Result<FileAttr, Errno> {
        let attr = match st {
            Some(st) => self.attr_from(ino, st)?,
            None => self.attr_of(ino)?,
        };
        self.union.table.write().get_mut(ino)?.lookups += 1;
        Ok(attr)
    }

    fn file(&self, fh: u64) -> Result<Arc<OpenFile>, Errno> {
        self.files.lock().get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// The namespace lock for a change to `ino` that may need a copy-up: the file data is
    /// copied while lookups still run, then the lock is taken alone for the rest.
    fn lock_for_change(&self, ino: Ino, data: Data) -> Result<(RwLockWriteGuard<'_, ()>, Option<Staged>), Errno> {
        let ns = self.union.ns.upgradable_read();
        let staged = self.union.stage_copy_up(ino, data)?;
        Ok((RwLockUpgradableReadGuard::upgrade(ns), staged))
    }

    /// Opens the backing file of `ino` and registers the handle (see `register_open`).
    fn open_backing(
        &self,
        ino: Ino,
        flags: i32,
        uid: u32,
        register: impl FnOnce(&OwnedFd) -> std::io::Result<Backing>,
    ) -> Result<Opened, Errno> {
        let (branch, rel) = self.union.data_location(ino)?;
        let how = backing_flags(flags) | self.union.read_flags(branch, false);
        let file = sys::open_at(self.union.root(branch), &rel, how, Mode::empty()).map_err(errno)?;
        self.register_open(ino, branch, file, wants_write(flags).then_some(uid), register)
    }

    /// Records an open backing file of `ino` (in `branch`) as a handle, with a passthrough
    /// backing file when the kernel takes one: the one already live for the inode, or a
    /// new registration.
    fn register_open(
        &self,
        ino: Ino,
        branch: u16,
        file: OwnedFd,
        writer: Option<u32>,
        register: impl FnOnce(&OwnedFd) -> std::io::Result<Backing>,
    ) -> Result<Opened, Errno> {
        let mut backing = None;
        let mut t = self.union.table.write();
        let node = t.get_mut(ino)?;
        if self.passthrough.load(Ordering::Relaxed) {
            let live = node.backing().and_then(|(b, w)| w.upgrade().map(|id| (*b, id)));
            backing = match live {
                Some((b, id)) if b == branch => Some(id),
                // A removed file made writable (see `Union::orphan`) has no names to move.
                Some(_) if !node.linked => None,
                Some(_) => {
                    // Copied up while descriptors still read the lower file through
                    // passthrough: the kernel takes one backing file per inode, so the names
                    // move to a new node and ESTALE makes the kernel look them up again.
                    t.replace_node(ino);
                    debug!(ino, "copied up under open passthrough readers: new inode for its names");
                    return Err(Errno::ESTALE);
                }
                None => match register(&file) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        node.set_backing(Some((branch, Arc::downgrade(&id))));
                        Some(id)
                    }
                    Err(e) => {
                        // Without the capability (user namespaces) it never works: stop
                        // asking. Other refusals concern this one file.
                        if e.raw_os_error() == Some(libc::EPERM) {
                            warn!("FUSE passthrough refused ({e}); serving file I/O from the daemon from now on");
                            self.passthrough.store(false, Ordering::Relaxed);
                        } else {
                            debug!(ino, "passthrough refused for this file ({e}); served by the daemon");
                        }
                        None
                    }
                },
            };
        }
        t.get_mut(ino)?.opens += 1;
        drop(t);
        let counter = if backing.is_some() { &self.stats.passthrough_opens } else { &self.stats.daemon_opens };
        counter.fetch_add(1, Ordering::Relaxed);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(
            fh,
            Arc::new(OpenFile { ino, file, writer, _backing: backing.clone(), branch: AtomicU16::new(branch) }),
        );
        Ok((fh, backing))
    }

    /// Opens node `ino` whose names were all removed after the kernel looked it up,
    /// through its kept backing file (see `Union::orphan`); `None` when it was not kept.
    fn open_orphan(
        &self,
        ino: Ino,
        flags: i32,
        uid: u32,
        register: impl FnOnce(&OwnedFd) -> std::io::Result<Backing>,
    ) -> Result<Option<Opened>, Errno> {
        let write = wants_write(flags);
        // A removed metadata-only copy is read from its data below, which stays on disk.
        if !write && self.union.table.read().get(ino)?.data().is_some() {
            return self.open_backing(ino, flags, uid, register).map(Some);
        }
        let kept = if write {
            let _ns = self.union.ns.write();
            self.union.orphan(ino, true)?
        } else {
            self.union.orphan(ino, false)?
        };
        let Some((branch, file)) = kept else { return Ok(None) };
        // The kernel takes one backing file per inode and fails any other open of it with
        // EIO: a passthrough reader of the file below that has just closed (its release
        // comes after close returns) must be gone before the writable copy is opened.
        let reading_below = || {
            let t = self.union.table.read();
            t.get(ino).ok().and_then(|n| n.backing()).is_some_and(|(b, w)| *b != branch && w.strong_count() > 0)
        };
        let t0 = std::time::Instant::now();
        while reading_below() && t0.elapsed() < std::time::Duration::from_secs(1) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let how = backing_flags(flags) | OFlags::CLOEXEC;
        let reopened = rustix::fs::open(sys::proc_path(&*file), how, Mode::empty()).map_err(errno)?;
        if flags & libc::O_TRUNC != 0 {
            rustix::fs::ftruncate(&reopened, 0).map_err(errno)?;
        }
        self.register_open(ino, branch, reopened, write.then_some(uid), register).map(Some)
    }

    /// After an ACL was set on `entry` (a `/proc/self/fd` name): as `chmod`, setting an
    /// ACL clears set-group-ID when the caller is neither root nor of the file's group
    /// (the kernel's `posix_acl_update_mode`; the daemon sets it as root, so it is done
    /// here). The request names the caller's primary group only.
    fn acl_drops_setgid(&self, entry: &Path, caller: Caller) -> Result<(), Errno> {
        let st = rustix::fs::stat(entry).map_err(errno)?;
        if st.st_mode & libc::S_ISGID == 0 || may_keep_setid(caller.uid) || caller.gid == st.st_gid {
            return Ok(());
        }
        rustix::fs::chmod(entry, Mode::from_raw_mode(st.st_mode & 0o7777 & !libc::S_ISGID)).map_err(errno)
    }

    /// An `O_PATH` handle on node `ino`'s backing entry: at its location, or, once its
    /// names are all gone, through [`Self::gone`]. `write`: the entry is about to change.
    fn handle(&self, ino: Ino, write: bool) -> Result<sys::PathFd, Errno> {
        match self.union.location(ino) {
            Ok((b, rel)) => sys::PathFd::open(self.union.root(b), &rel).map_err(errno),
            Err(e) if e == Errno::ESTALE => self.gone(ino, write),
            Err(e) => Err(e),
        }
    }

    /// Runs `read` (an xattr read) on node `ino`'s entry: `rel` below its branch's root,
    /// or, once its names are all gone, the file itself (`rel` empty, `dir` a descriptor
    /// on it). No descriptor is opened for a named entry.
    fn read_entry<T>(
        &self,
        ino: Ino,
        read: impl Fn(rustix::fd::BorrowedFd<'_>, &Path) -> Result<T, rustix::io::Errno>,
    ) -> Result<T, Errno> {
        match self.union.location(ino) {
            Ok((b, rel)) => read(self.union.root(b).as_fd(), &rel).map_err(errno),
            Err(e) if e == Errno::ESTALE => read(self.gone(ino, false)?.as_fd(), Path::new("")).map_err(errno),
            Err(e) => Err(e),
        }
    }

    /// The file behind node `ino` once its names are all gone (removed, or replaced by a
    /// rename): a descriptor still open on it, else the orphan kept for the kernel's
    /// references. So every call on an open descriptor reaches its file, as on a local
    /// filesystem. `write`: one in a read-only branch is first copied aside (see
    /// `Union::orphan`); callers then hold `ns` exclusively.
    fn gone(&self, ino: Ino, write: bool) -> Result<sys::PathFd, Errno> {
        let branch = self.union.table.read().get(ino)?.branch;
        if !write || self.union.perm(branch).is_writable() {
            // The node's own file: not one a reader kept from below a copy-up, nor the data
            // below a metadata-only copy.
            let open = self.files.lock().values().find(|f| f.ino == ino && f.is_own(branch)).cloned();
            if let Some(f) = open {
                return sys::PathFd::of(&f.file).map_err(errno);
            }
        }
        match self.union.orphan(ino, write)? {
            Some((_, file)) => sys::PathFd::of(&*file).map_err(errno),
            None => Err(Errno::ESTALE),
        }
    }

    /// `O_TRUNC` on open: truncates by path, since the descriptor may be read-only
    /// (`O_RDONLY|O_TRUNC` truncates too).
    fn truncate_for_open(&self, ino: Ino) -> Result<(), Errno> {
        let (b, rel) = self.union.location(ino)?;
        let f = sys::open_at(self.union.root(b), &rel, OFlags::WRONLY, Mode::empty()).map_err(errno)?;
        rustix::fs::ftruncate(&f, 0).map_err(errno)
    }

    /// Clears set-id bits a writer without `CAP_FSETID` must not leave behind, on the file
    /// it is opening for writing (already in the writable branch): its writes go to the
    /// backing file through passthrough and never reach the daemon, so it is done now
    /// rather than at the first write.
    fn drop_setid_for_writer(&self, ino: Ino, caller: Caller) -> Result<(), Errno> {
        if may_keep_setid(caller.uid) {
            return Ok(());
        }
        let (b, rel) = self.union.location(ino)?;
        let file = sys::PathFd::open(self.union.root(b), &rel).map_err(errno)?;
        if drop_setid(&file.proc, caller)? {
            self.forget_attributes(ino);
        }
        Ok(())
    }

    /// Did INIT choose FUSE over io_uring? Then every request waits until
    /// [`crate::uring::start`] has registered the queues.
    pub fn uring_chosen(&self) -> bool {
        self.uring.load(Ordering::Relaxed)
    }

    /// Are the node's entry and data both in the writable branch? A change to it, or in
    /// it for a directory, then copies nothing up.
    pub(crate) fn in_writable_branch(&self, ino: Ino) -> bool {
        let Some(wb) = self.union.wb_opt() else { return false };
        self.union.table.read().get(ino).is_ok_and(|n| n.branch == wb && n.data().is_none())
    }

    /// Ends the connection (the fusectl `abort` file): every request waiting on it
    /// fails, the mount answers ENOTCONN and the session ends. For when requests can no
    /// longer be served at all (an io_uring queue that cannot register).
    pub fn abort_connection(&self) {
        let conn = crate::mount::fuse_connection(&self.mountpoint);
        let done = conn.map(|c| std::fs::write(format!("/sys/fs/fuse/connections/{c}/abort"), "1"));
        match done {
            Some(Ok(())) => warn!("{}: FUSE connection aborted", self.mountpoint.display()),
            Some(Err(e)) => warn!("{}: aborting the FUSE connection failed: {e}", self.mountpoint.display()),
            None => warn!("{}: no FUSE connection found to abort", self.mountpoint.display()),
        }
    }

    /// Has the kernel drop the attributes it caches for `ino`.
    fn forget_attributes(&self, ino: Ino) {
        self.notify_in_background(move |n| {
            let _ = n.inval_inode(INodeNo(ino), -1, 0);
        });
    }

    /// Sends notifications to the kernel from a thread of its own: the kernel may need
    /// locks held by the request that got here. `pending` counts it until it is done.
    fn notify_in_background(&self, send: impl FnOnce(&Notifier) + Send + 'static) {
        let Some(notifier) = self.notifier.get().cloned() else { return };
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            send(&notifier);
            pending.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// A set-id bit must not be set while a user without `CAP_FSETID` other than the caller
    /// holds the file open for writing: that user's writes go through passthrough, where
    /// nothing would clear it again (EBUSY). The opener itself may: it owns the file or
    /// could not change its mode.
    fn setid_guard(&self, ino: Ino, mode: u32, caller: Caller) -> Result<(), Errno> {
        if mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
            return Ok(());
        }
        let foreign_writer = self
            .files
            .lock()
            .values()
            .any(|f| f.ino == ino && f.writer.is_some_and(|w| !may_keep_setid(w) && w != caller.uid));
        if foreign_writer { Err(Errno::EBUSY) } else { Ok(()) }
    }

    fn fopen_flags(flags: i32) -> FopenFlags {
        if flags & libc::O_DIRECT != 0 { FopenFlags::FOPEN_DIRECT_IO } else { FopenFlags::FOPEN_KEEP_CACHE }
    }

    fn do_setattr(&self, ino: Ino, fh: Option<u64>, c: AttrChange, caller: Caller) -> Result<FileAttr, Errno> {
        let data = match c.size {
            Some(0) => Data::Skip,
            Some(_) => Data::Copy,
            None => Data::Meta,
        };
        let (_ns, staged) = self.lock_for_change(ino, data)?;
        if let Some(m) = c.mode {
            self.setid_guard(ino, m, caller)?;
        }
        let open = fh.map(|fh| self.file(fh)).transpose()?;
        let linked = self.union.table.read().get(ino)?.linked;
        if !linked {
            // Its names are all gone: the file is reached through a descriptor open on it
            // (the node's own file, see `Self::gone`).
            let own = self.union.table.read().get(ino)?.branch;
            let h = match open.as_ref().filter(|f| f.is_own(own)) {
                Some(f) => sys::PathFd::of(&f.file).map_err(errno)?,
                None => self.gone(ino, true)?,
            };
            let p = h.proc.as_path();
            if let Some(m) = c.mode {
                rustix::fs::chmod(p, Mode::from_raw_mode(m & 0o7777)).map_err(errno)?;
            }
            if c.uid.is_some() || c.gid.is_some() {
                let (uid, gid) = (c.uid.map(rustix::process::Uid::from_raw), c.gid.map(rustix::process::Gid::from_raw));
                rustix::fs::chown(p, uid, gid).map_err(errno)?;
            }
            if let Some(s) = c.size {
                let f = rustix::fs::open(p, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(errno)?;
                rustix::fs::ftruncate(&f, s).map_err(errno)?;
                drop_setid(p, caller)?; // the reply carries the new mode
            }
            if c.atime.is_some() || c.mtime.is_some() {
                let ts = Timestamps { last_access: timespec(c.atime), last_modification: timespec(c.mtime) };
                rustix::fs::utimensat(rustix::fs::CWD, p, &ts, AtFlags::empty()).map_err(errno)?;
            }
            let st = rustix::fs::stat(p).map_err(errno)?;
            return Ok(to_attr(ino, &st, false));
        }
        self.union.copy_up(ino, data, staged)?;
        let (b, rel) = self.union.location(ino)?;
        let root_fd = self.union.root(b);
        let root = root_fd.as_fd();
        if let Some(m) = c.mode {
            sys::chmod_nofollow(root, &rel, Mode::from_raw_mode(m & 0o7777)).map_err(errno)?;
        }
        if c.uid.is_some() || c.gid.is_some() {
            sys::chownat(
                root,
                &rel,
                c.uid.map(rustix::process::Uid::from_raw),
                c.gid.map(rustix::process::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        if let Some(s) = c.size {
            let f = sys::open_at(root, &rel, OFlags::WRONLY, Mode::empty()).map_err(errno)?;
            rustix::fs::ftruncate(&f, s).map_err(errno)?;
            drop_setid(&sys::proc_path(&f), caller)?; // the reply carries the new mode
        }
        if c.atime.is_some() || c.mtime.is_some() {
            let ts = Timestamps { last_access: timespec(c.atime), last_modification: timespec(c.mtime) };
            sys::utimensat(root, &rel, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)?;
        }
        self.attr_of(ino)
    }

    /// Makes a new entry with `make(dirfd, name, mode)`; `mode` is the one asked for
    /// (`requested`), under the caller's `umask` unless a default ACL takes its place.
    fn new_entry(
        &self,
        caller: Caller,
        parent: Ino,
        name: &OsStr,
        is_dir: bool,
        (requested, umask): (u32, u32),
        make: impl Fn(rustix::fd::BorrowedFd<'_>, &OsStr, Mode) -> Result<Option<OwnedFd>, rustix::io::Errno>,
    ) -> Result<(Ino, FileAttr, Option<OwnedFd>), Errno> {
        let _ns = self.union.ns.write();
        self.union.check_creatable(parent, name)?;
        self.create_with_mode(caller, parent, name, is_dir, (requested, umask), make)
    }

    /// `Union::create_entry` with the mode the kernel's own filesystems would give. The
    /// kernel leaves the umask to the daemon (`FUSE_DONT_MASK`) because a parent's default
    /// ACL replaces it: the branch filesystem applies that ACL when the entry is made in
    /// the parent itself. An entry made aside, in the work dir, gets the umask instead
    /// (no ACL reaches it there: stricter, never looser). Returns the new node, its
    /// attributes (from the stat its creation took) and the descriptor `make` gave.
    fn create_with_mode(
        &self,
        caller: Caller,
        parent: Ino,
        name: &OsStr,
        is_dir: bool,
        (requested, umask): (u32, u32),
        make: impl Fn(rustix::fd::BorrowedFd<'_>, &OsStr, Mode) -> Result<Option<OwnedFd>, rustix::io::Errno>,
    ) -> Result<(Ino, FileAttr, Option<OwnedFd>), Errno> {
        let acl = self.has_xattr(parent, OsStr::new(DEFAULT_ACL)).unwrap_or(false);
        let setid = requested & (libc::S_ISUID | libc::S_ISGID);
        let (ino, st, fd) =
            self.union.create_entry(parent, name, (caller.uid, caller.gid), is_dir, setid, |dirfd, n, aside| {
                let mask = if acl && !aside { 0 } else { umask };
                make(dirfd, n, Mode::from_raw_mode(requested & 0o7777 & !mask))
            })?;
        Ok((ino, self.entry_attr_with(ino, Some(&st))?, fd))
    }

    fn branches_text(&self) -> String {
        let mut s = String::new();
        for b in &self.union.stack().branches {
            s.push_str(&format!("{}={}\n", b.path.display(), b.perm));
        }
        s.push_str(&format!("si_{}\n", self.union.id));
        s
    }

    /// The xattr names of a node, read once and kept until they may change.
    fn xattr_names(&self, ino: Ino) -> Result<Box<[std::ffi::OsString]>, Errno> {
        if let Some(names) = self.union.table.read().get(ino)?.xattr_names() {
            return Ok(names.into());
        }
        let names: Box<[std::ffi::OsString]> = self.read_entry(ino, |dir, rel| sys::list_xattrs_at(dir, rel))?.into();
        self.union.table.write().get_mut(ino)?.set_xattr_names(Some(names.clone()));
        Ok(names)
    }

    /// Does the node have xattr `name`? Asked for on nearly every write and `ls -l`, so the
    /// cached list is searched in place, not copied.
    fn has_xattr(&self, ino: Ino, name: &OsStr) -> Result<bool, Errno> {
        if let Some(names) = self.union.table.read().get(ino)?.xattr_names() {
            return Ok(names.iter().any(|n| n == name));
        }
        Ok(self.xattr_names(ino)?.iter().any(|n| n == name))
    }

    /// Forgets the cached xattr names of a node whose xattrs change.
    fn xattrs_changed(&self, ino: Ino) {
        if let Ok(n) = self.union.table.write().get_mut(ino) {
            n.set_xattr_names(None);
        }
    }

    /// Applies a branch change sent through `trusted.strata.ctl`: refused (EBUSY, naming
    /// the file) while a file on a branch to delete is open, or a file on a branch to make
    /// read-only is open for writing; then the kernel's caches are dropped.
    fn change_branches(&self, text: &[u8]) -> Result<(), (Errno, String)> {
        let text = std::str::from_utf8(text).map_err(|_| (Errno::EINVAL, "branch change is not UTF-8".to_string()))?;
        let change = crate::restack::BranchChange::parse(text).map_err(|m| (Errno::EINVAL, m))?;
        let _ns = self.union.ns.write();
        let stack = self.union.stack();
        let target = stack
            .branches
            .iter()
            .position(|b| b.path == change.path() || Some(b.path.clone()) == change.path().canonicalize().ok());
        if let Some(i) = target {
            let needs_idle = match &change {
                crate::restack::BranchChange::Del(_) => Some(false),
                crate::restack::BranchChange::Mod(spec)
                    if !spec.perm.is_writable() && stack.branches[i].perm.is_writable() =>
                {
                    Some(true)
                }
                _ => None,
            };
            if let Some(writers_only) = needs_idle {
                let open: Vec<Arc<OpenFile>> = self.files.lock().values().cloned().collect();
                let t = self.union.table.read();
                for f in open.iter().filter(|f| !writers_only || f.writer.is_some()) {
                    // The file's own branch: a reader of the data below a metadata-only
                    // copy, or one kept from before a copy-up, holds a lower branch.
                    if f.branch.load(Ordering::Relaxed) as usize == i {
                        let name =
                            t.path(f.ino).map(|p| p.display().to_string()).unwrap_or_else(|_| "(deleted file)".into());
                        let why = if writers_only { "open for writing" } else { "open" };
                        return Err((
                            Errno::EBUSY,
                            format!("{}: busy, /{name} is {why}", stack.branches[i].path.display()),
                        ));
                    }
                }
            }
        }
        let (changed, moved) = self.union.change_branches(&change, &self.mountpoint).map_err(|m| (Errno::EINVAL, m))?;
        for f in self.files.lock().values() {
            if let Some(Some(nb)) = moved.get(f.branch.load(Ordering::Relaxed) as usize) {
                f.branch.store(*nb, Ordering::Relaxed);
            }
        }
        self.drop_kernel_caches(changed);
        Ok(())
    }

    /// Has the kernel forget cached names (positive and negative) and attributes.
    fn drop_kernel_caches(&self, changed: PathBuf) {
        let (names, inos) = {
            let t = self.union.table.read();
            let names: Vec<(Ino, std::ffi::OsString)> = t.names().map(|(_, p, n)| (p, n)).collect();
            let inos: Vec<(Ino, bool)> = t.inos().collect();
            (names, inos)
        };
        // Names in the changed branch that the union never indexed may sit in the kernel
        // as negative entries: walk that branch for them (whiteouts name what they hide).
        let table_dirs: std::collections::HashMap<PathBuf, Ino> = {
            let t = self.union.table.read();
            inos.iter().filter(|(_, dir)| *dir).filter_map(|(i, _)| t.path(*i).ok().map(|p| (p, *i))).collect()
        };
        self.notify_in_background(move |notifier| {
            for (parent, name) in &names {
                let _ = notifier.inval_entry(INodeNo(*parent), name);
            }
            for (dir, ino) in &table_dirs {
                let Ok(rd) = std::fs::read_dir(changed.join(dir)) else { continue };
                for e in rd.flatten() {
                    let n = e.file_name();
                    let shown = whiteout::whited_out_name(&n).map(|x| x.to_os_string()).unwrap_or(n);
                    let _ = notifier.inval_entry(INodeNo(*ino), &shown);
                }
            }
            for (ino, dir) in &inos {
                let _ = notifier.inval_inode(INodeNo(*ino), if *dir { 0 } else { -1 }, 0);
            }
        });
    }

    fn stats_text(&self) -> String {
        let st = &self.stats;
        format!(
            "passthrough {}\npassthrough_opens {}\ndaemon_opens {}\ndaemon_reads {}\ndaemon_writes {}\ninodes {}\n\
             io_uring {}\nuring_requests {}\n",
            self.passthrough.load(Ordering::Relaxed) as u8,
            st.passthrough_opens.load(Ordering::Relaxed),
            st.daemon_opens.load(Ordering::Relaxed),
            st.daemon_reads.load(Ordering::Relaxed),
            st.daemon_writes.load(Ordering::Relaxed),
            self.union.table.read().len(),
            self.uring_chosen() as u8,
            st.uring_requests.load(Ordering::Relaxed),
        )
    }

    fn reply_xattr(reply: impl reply::Xattr, size: u32, data: &[u8]) {
        if size == 0 {
            reply.size(data.len() as u32);
        } else if data.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(data);
        }
    }

    /// The entries of directory `ino` after `offset`, as (offset, inode, kind, name, stat),
    /// `.` and `..` first. One reply holds a few hundred entries at most (about 200 with
    /// attributes in the kernel's 32 KiB request): resolving and copying the whole rest of
    /// a large directory for each reply would cost O(n^2).
    fn listing(&self, ino: Ino, offset: u64) -> Result<Vec<Listed>, Errno> {
        let (dir, dirs) = self.union.dir_info(ino)?;
        // A pass from offset 0 (a first read or a rewinddir) shows the directory as it is
        // now; the kernel has recorded the directory's version for its cache before asking,
        // so a change racing with the listing invalidates the cache instead of hiding in it.
        let pass = self.listings.resume(ino, offset, || {
            let entries = self.union.list(&dir, &dirs)?;
            self.union.listed(ino, &dirs, &entries);
            Ok(entries)
        })?;
        let parent = self.union.table.read().get(ino)?.parent();
        let mut out = Vec::with_capacity(READDIR_BATCH + 2);
        if offset == 0 {
            out.push((1, ino, fuser::FileType::Directory, ".".into(), None));
        }
        if offset <= 1 {
            out.push((2, parent, fuser::FileType::Directory, "..".into(), None));
        }
        let entries = &pass.listing.entries;
        if pass.next >= entries.len() {
            self.listings.finished(pass.id);
        }
        for (i, e) in entries.iter().enumerate().skip(pass.next).take(READDIR_BATCH) {
            // An entry removed since the listing was taken is skipped.
            let Ok((child, st)) = self.listed_node(ino, &dir, &dirs, e) else { continue };
            out.push((pass.listing.offset_of(pass.id, i), child, e.kind, e.name.clone(), st));
        }
        Ok(out)
    }

    /// Node of a listed entry; the listing told which branch it came from, so only a
    /// directory needs resolving further (for the branches it merges). With the stat the
    /// resolution took when it is the node's own (see [`Union::child_with_stat`]).
    fn listed_node(
        &self,
        dir_ino: Ino,
        dir: &Path,
        dirs: &[crate::inode::Part],
        e: &DirEntry,
    ) -> Result<(Ino, Option<rustix::fs::Stat>), Errno> {
        if let Some(ino) = self.union.table.read().child(dir_ino, &e.name) {
            return Ok((ino, None));
        }
        let found =
            self.union.resolve(dir, dirs.get(e.pos as usize..).unwrap_or(&[]), &e.name)?.ok_or(Errno::ENOENT)?;
        let own = crate::union::own_stat(&found);
        Ok((self.union.index(dir_ino, &e.name, found), own))
    }
}

/// The operations, whichever transport brought the request.
impl StrataFs {
    /// Asks the kernel for what the union needs (FUSE INIT).
    pub fn init(&self, cfg: &mut KernelConfig) {
        // Readdirplus always (not FUSE_READDIRPLUS_AUTO, under which only a pass's first
        // request is "plus" and every later entry costs its own LOOKUP): a listed entry
        // is resolved, and so stat'ed, anyway.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_EXPLICIT_INVAL_DATA
            // O_TRUNC arrives with the open: a lower file is then copied up empty.
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            // The kernel then checks ACLs in permission checks and caches them.
            | InitFlags::FUSE_POSIX_ACL
            // The kernel then stops asking for security.capability before every write (it
            // marks inodes S_NOSEC); clearing set-id bits becomes the daemon's job: see
            // `drop_setid`.
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            // The umask arrives with each creation and is the daemon's to apply: a
            // parent's default ACL replaces it (see `create_with_mode`).
            | InitFlags::FUSE_DONT_MASK
            // File handles outlive the kernel's cache: it then looks up `.` in the node
            // (see `lookup`), and numbers outlive a remount (see `persist`).
            | InitFlags::FUSE_EXPORT_SUPPORT;
        let _ = cfg.add_capabilities(wanted & cfg.capabilities());
        if self.want_passthrough {
            if cfg.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && cfg.set_max_stack_depth(2).is_ok() {
                self.passthrough.store(true, Ordering::Relaxed);
            } else {
                warn!("kernel offers no FUSE passthrough; the daemon serves file I/O");
            }
        }
        if self.want_uring != Some(false) && crate::uring::offer(cfg, self.want_uring == Some(true)) {
            self.uring.store(true, Ordering::Relaxed);
        }
    }

    /// The filesystem goes away: keeps its inode numbers for the next mount.
    pub fn destroy(&self) {
        if let Err(e) = self.union.save_inode_numbers() {
            warn!("inode numbers not kept for the next mount: {e}");
        }
        // Unmounted by `strata umount` or umount(8): nothing is left for the session to
        // unmount; its attempt fails quietly here instead of with a warning later.
        if !crate::mount::is_strata_mount(&self.mountpoint)
            && let Some(u) = self.unmounter.get()
        {
            let _ = u.lock().unmount();
        }
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr, reply: impl reply::Entry) {
        if name.len() > crate::union::NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        if whiteout::is_meta_name(name) {
            return reply.error(Errno::ENOENT);
        }
        let _ns = self.union.ns.read();
        if name == "." || name == ".." {
            // Only from a file handle the kernel no longer has in its cache: `.` is the node
            // with that number, `..` its parent (FUSE_EXPORT_SUPPORT).
            let node = self
                .union
                .node_by_number(parent)
                .and_then(|n| if name == "." { Ok(n) } else { self.union.table.read().get(n).map(|n| n.parent()) });
            return match node.and_then(|n| self.entry_attr(n)) {
                Ok(attr) => reply.entry(&self.ttl, &attr),
                Err(e) => reply.error(e),
            };
        }
        // A fresh resolution has just stat'ed the entry: no second lstat per lookup.
        let entry = self.union.child_with_stat(parent, name);
        match entry.and_then(|(ino, st)| self.entry_attr_with(ino, st.as_ref())) {
            Ok(attr) => reply.entry(&self.ttl, &attr),
            // Node id 0: the kernel caches the absence too (the daemon is the only writer).
            Err(e) if e == Errno::ENOENT => reply.entry(&self.ttl, &negative_attr()),
            Err(e) => reply.error(e),
        }
    }

    pub fn forget(&self, ino: Ino, nlookup: u64) {
        self.union.table.write().forget(ino, nlookup);
    }

    pub fn getattr(&self, ino: Ino, fh: Option<u64>, reply: impl reply::Attr) {
        // Through the handle when its file is the node's own (not the data below a
        // metadata-only copy, nor a lower file read since before a copy-up).
        let own = |f: &Arc<OpenFile>| self.union.table.read().get(ino).is_ok_and(|n| f.is_own(n.branch));
        let open = fh.and_then(|fh| self.file(fh).ok()).filter(own);
        let attr = match open {
            Some(f) => rustix::fs::fstat(&f.file).map(|st| to_attr(ino, &st, false)).map_err(errno),
            None => {
                let _ns = self.union.ns.read();
                self.attr_of(ino).or_else(|e| self.attr_of_unlinked(ino).ok_or(e))
            }
        };
        match attr {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    pub fn setattr(&self, caller: Caller, ino: Ino, change: AttrChange, fh: Option<u64>, reply: impl reply::Attr) {
        match self.do_setattr(ino, fh, change, caller) {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    pub fn readlink(&self, ino: Ino, reply: impl reply::Data) {
        let _ns = self.union.ns.read();
        let r = self
            .union
            .location(ino)
            .and_then(|(b, rel)| sys::readlinkat(self.union.root(b), &rel, Vec::new()).map_err(errno));
        match r {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    pub fn mknod(
        &self,
        caller: Caller,
        parent: Ino,
        name: &OsStr,
        (mode, umask, rdev): (u32, u32, u32),
        reply: impl reply::Entry,
    ) {
        if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 && self.union.overlay_whiteouts {
            return reply.error(Errno::EPERM); // a 0/0 device is a whiteout, as overlayfs says
        }
        let r = self.new_entry(caller, parent, name, false, (mode, umask), |dirfd, n, m| {
            let kind = rustix::fs::FileType::from_raw_mode(mode & libc::S_IFMT);
            rustix::fs::mknodat(dirfd, n, kind, m, rdev.into()).map(|()| None)
        });
        match r {
            Ok((_, attr, _)) => reply.entry(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    pub fn mkdir(&self, caller: Caller, parent: Ino, name: &OsStr, mode: u32, umask: u32, reply: impl reply::Entry) {
        let r = self.new_entry(caller, parent, name, true, (mode, umask), |dirfd, n, m| {
            rustix::fs::mkdirat(dirfd, n, m).map(|()| None)
        });
        match r {
            Ok((_, attr, _)) => reply.entry(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr, reply: impl reply::Empty) {
        let _ns = self.union.ns.write();
        match self.union.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr, reply: impl reply::Empty) {
        let _ns = self.union.ns.write();
        match self.union.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn symlink(&self, caller: Caller, parent: Ino, link_name: &OsStr, target: &Path, reply: impl reply::Entry) {
        let r = self.new_entry(caller, parent, link_name, false, (0o777, 0), |dirfd, n, _| {
            rustix::fs::symlinkat(target, dirfd, n).map(|()| None)
        });
        match r {
            Ok((_, attr, _)) => reply.entry(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    pub fn rename(
        &self,
        (parent, name): (Ino, &OsStr),
        (newparent, newname): (Ino, &OsStr),
        flags: RenameFlags,
        reply: impl reply::Empty,
    ) {
        let _ns = self.union.ns.write();
        match self.union.rename(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, reply: impl reply::Entry) {
        let _ns = self.union.ns.write();
        match self.union.link(ino, newparent, newname).and_then(|()| self.entry_attr(ino)) {
            Ok(attr) => reply.entry(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    pub fn open(&self, caller: Caller, ino: Ino, flags: i32, reply: impl reply::Open) {
        // (linked, an orphan kept): see `Union::keep_orphan`.
        let state = || self.union.table.read().get(ino).map(|n| (n.linked, n.orphan().is_some()));
        let open_orphan = || {
            self.open_orphan(ino, flags, caller.uid, |f| reply.open_backing(f))
                .and_then(|opened| opened.ok_or(Errno::ESTALE))
        };
        let was_linked = state().is_ok_and(|(linked, _)| linked);
        let mut opened = if !was_linked {
            open_orphan()
        } else if wants_write(flags) {
            let data = if flags & libc::O_TRUNC != 0 { Data::Skip } else { Data::Copy };
            self.lock_for_change(ino, data).and_then(|(_ns, staged)| {
                self.union.copy_up(ino, data, staged)?;
                self.drop_setid_for_writer(ino, caller)?;
                let opened = self.open_backing(ino, flags, caller.uid, |f| reply.open_backing(f))?;
                if flags & libc::O_TRUNC != 0 {
                    self.truncate_for_open(ino)?;
                }
                Ok(opened)
            })
        } else {
            let _ns = self.union.ns.read();
            self.open_backing(ino, flags, caller.uid, |f| reply.open_backing(f))
        };
        // Its last name went before the open took the lock (or before it came): as on a
        // local filesystem the open reaches the removed file, through the kept orphan. (A
        // node replaced under passthrough readers keeps none: ESTALE, the kernel looks again.)
        if was_linked && opened.as_ref().is_err_and(|e| *e == Errno::ESTALE) && state() == Ok((false, true)) {
            opened = open_orphan();
        }
        match opened {
            Ok((fh, Some(id))) => reply.opened_passthrough(fh, &id),
            Ok((fh, None)) => reply.opened(fh, Self::fopen_flags(flags)),
            Err(e) => reply.error(e),
        }
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32, reply: impl reply::Data) {
        self.stats.daemon_reads.fetch_add(1, Ordering::Relaxed);
        let r = self.file(fh).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let n = rustix::io::pread(&f.file, &mut buf, offset).map_err(errno)?;
            buf.truncate(n);
            Ok(buf)
        });
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    pub fn write(
        &self,
        caller: Caller,
        (fh, offset): (u64, u64),
        data: &[u8],
        kill_setid: bool,
        flags: i32,
        reply: impl reply::Written,
    ) {
        self.stats.daemon_writes.fetch_add(1, Ordering::Relaxed);
        let r = self.file(fh).and_then(|f| {
            if kill_setid && drop_setid(&sys::proc_path(&f.file), caller)? {
                self.forget_attributes(f.ino);
            }
            if flags & libc::O_APPEND != 0 {
                rustix::io::write(&f.file, data).map_err(errno)
            } else {
                rustix::io::pwrite(&f.file, data, offset).map_err(errno)
            }
        });
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    pub fn flush(&self, reply: impl reply::Empty) {
        // Nothing to do on close(2): ENOSYS makes the kernel stop sending FLUSH at all.
        reply.error(Errno::ENOSYS);
    }

    pub fn release(&self, fh: u64, reply: impl reply::Empty) {
        if let Some(f) = self.files.lock().remove(&fh) {
            let mut t = self.union.table.write();
            if let Ok(n) = t.get_mut(f.ino) {
                n.opens = n.opens.saturating_sub(1);
            }
            t.collect(f.ino);
        }
        reply.ok();
    }

    pub fn fsync(&self, fh: u64, datasync: bool, reply: impl reply::Empty) {
        let r = self.file(fh).and_then(|f| {
            if datasync { rustix::fs::fdatasync(&f.file) } else { rustix::fs::fsync(&f.file) }.map_err(errno)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn opendir(&self, reply: impl reply::Open) {
        if self.union.strictatime {
            // Opened without FOPEN_CACHE_DIR: every listing reads the branches.
            return reply.opened(0, FopenFlags::empty());
        }
        // Declined: the kernel stops asking (two round trips less per directory open) and
        // keeps caching listings; see `listings`.
        reply.error(Errno::ENOSYS);
    }

    pub fn readdir(&self, ino: Ino, offset: u64, mut reply: impl reply::Dir) {
        let _ns = self.union.ns.read();
        let listing = match self.listing(ino, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (off, child, kind, name, _) in listing {
            if reply.add(child, off, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    pub fn readdirplus(&self, ino: Ino, offset: u64, mut reply: impl reply::DirPlus) {
        let _ns = self.union.ns.read();
        let listing = match self.listing(ino, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (off, child, _, name, st) in listing {
            // A freshly resolved entry was just stat'ed: not again.
            let attr = match &st {
                Some(st) => self.attr_from(child, st),
                None => self.attr_of(child),
            };
            let Ok(a) = attr else { continue };
            if reply.add(child, off, &name, &self.ttl, &a) {
                break;
            }
            // The kernel takes a reference on every entry it accepted, except . and ..
            if off > 2
                && let Ok(n) = self.union.table.write().get_mut(child)
            {
                n.lookups += 1;
            }
        }
        reply.ok();
    }

    pub fn fsyncdir(&self, ino: Ino, reply: impl reply::Empty) {
        let _ns = self.union.ns.read();
        let r = self.union.location(ino).and_then(|(b, rel)| {
            let fd = sys::open_at(self.union.root(b), &rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .map_err(errno)?;
            rustix::fs::fsync(&fd).map_err(errno)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn statfs(&self, reply: impl reply::Statfs) {
        match self.union.statvfs() {
            Ok(s) => reply.statfs(&reply::FsStats {
                blocks: s.f_blocks,
                bfree: s.f_bfree,
                bavail: s.f_bavail,
                files: s.f_files,
                ffree: s.f_ffree,
                bsize: s.f_bsize as u32,
                namelen: crate::union::NAME_MAX as u32,
                frsize: s.f_frsize as u32,
            }),
            Err(e) => reply.error(e),
        }
    }

    pub fn setxattr(&self, caller: Caller, ino: Ino, name: &OsStr, value: &[u8], flags: i32, reply: impl reply::Empty) {
        if ino == ROOT && name == CTL_XATTR {
            return match self.change_branches(value) {
                Ok(()) => reply.ok(),
                Err((e, msg)) => {
                    warn!("branch change refused: {msg}");
                    *self.last_error.lock() = msg;
                    reply.error(e)
                }
            };
        }
        if whiteout::is_private_xattr(name) {
            return reply.error(Errno::EPERM);
        }
        let r = self.lock_for_change(ino, Data::Meta).and_then(|(_ns, staged)| {
            self.union.copy_up(ino, Data::Meta, staged)?;
            let p = self.handle(ino, true)?;
            let r = rustix::fs::setxattr(&p.proc, name, value, rustix::fs::XattrFlags::from_bits_retain(flags as u32))
                .map_err(errno);
            self.xattrs_changed(ino);
            r?;
            if name == ACCESS_ACL {
                self.acl_drops_setgid(&p.proc, caller)?;
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr, size: u32, reply: impl reply::Xattr) {
        if ino == ROOT && name == BRANCHES_XATTR {
            return Self::reply_xattr(reply, size, self.branches_text().as_bytes());
        }
        if ino == ROOT && name == ERROR_XATTR {
            let msg = self.last_error.lock().clone();
            return Self::reply_xattr(reply, size, msg.as_bytes());
        }
        if ino == ROOT && name == PENDING_XATTR {
            return Self::reply_xattr(reply, size, self.pending.load(Ordering::SeqCst).to_string().as_bytes());
        }
        if ino == ROOT && name == PID_XATTR {
            return Self::reply_xattr(reply, size, std::process::id().to_string().as_bytes());
        }
        if ino == ROOT && name == STATS_XATTR {
            return Self::reply_xattr(reply, size, self.stats_text().as_bytes());
        }
        if whiteout::is_private_xattr(name) {
            return reply.error(Errno::ENODATA);
        }
        let _ns = self.union.ns.read();
        match self.has_xattr(ino, name) {
            Ok(false) => return reply.error(Errno::ENODATA),
            Ok(true) => {}
            Err(e) => return reply.error(e),
        }
        let r = self.read_entry(ino, |dir, rel| sys::get_xattr_at(dir, rel, name));
        match r {
            Ok(Some(v)) => Self::reply_xattr(reply, size, &v),
            Ok(None) => reply.error(Errno::ENODATA),
            Err(e) => reply.error(e),
        }
    }

    pub fn listxattr(&self, ino: Ino, size: u32, reply: impl reply::Xattr) {
        let _ns = self.union.ns.read();
        match self.xattr_names(ino) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names.iter().filter(|n| !whiteout::is_private_xattr(n)) {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                Self::reply_xattr(reply, size, &buf);
            }
            Err(e) => reply.error(e),
        }
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr, reply: impl reply::Empty) {
        if whiteout::is_private_xattr(name) {
            return reply.error(Errno::EPERM);
        }
        let r = self.lock_for_change(ino, Data::Meta).and_then(|(_ns, staged)| {
            self.union.copy_up(ino, Data::Meta, staged)?;
            let p = self.handle(ino, true)?;
            let r = rustix::fs::removexattr(&p.proc, name).map_err(errno);
            self.xattrs_changed(ino);
            r
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn access(&self, ino: Ino, mask: i32, reply: impl reply::Empty) {
        let _ns = self.union.ns.read();
        match self.union.stat(ino) {
            Ok(_) if mask & libc::W_OK != 0 && self.union.wb_opt().is_none() => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub fn create(
        &self,
        caller: Caller,
        (parent, name): (Ino, &OsStr),
        (mode, umask): (u32, u32),
        flags: i32,
        reply: impl reply::Create,
    ) {
        let r = (|| {
            let ns = self.union.ns.write();
            let (ino, attr, fd) = {
                check_new_name(name)?;
                if let Some(existing) = self.union.child_opt(parent, name)? {
                    // O_CREAT without O_EXCL on an existing name: an ordinary open.
                    if flags & libc::O_EXCL != 0 {
                        return Err(Errno::EEXIST);
                    }
                    if wants_write(flags) {
                        let data = if flags & libc::O_TRUNC != 0 { Data::Skip } else { Data::Copy };
                        self.union.copy_up(existing, data, None)?;
                        self.drop_setid_for_writer(existing, caller)?;
                    }
                    if flags & libc::O_TRUNC != 0 {
                        self.truncate_for_open(existing)?;
                    }
                    (existing, self.entry_attr(existing)?, None)
                } else {
                    self.create_with_mode(caller, parent, name, false, (mode, umask), |dirfd, n, m| {
                        let how = backing_flags(flags) | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
                        rustix::fs::openat(dirfd, n, how, m).map(Some)
                    })?
                }
            };
            // Keep the namespace shared, never released, until the new file is open.
            let _ns = RwLockWriteGuard::downgrade(ns);
            let (fh, backing) = match fd {
                Some(fd) => {
                    // The descriptor from creation carries the caller's flags already.
                    let (b, _) = self.union.location(ino)?;
                    self.register_open(ino, b, fd, Some(caller.uid), |f| reply.open_backing(f))?
                }
                None => self.open_backing(ino, flags & !libc::O_TRUNC, caller.uid, |f| reply.open_backing(f))?,
            };
            Ok((attr, fh, backing))
        })();
        match r {
            Ok((attr, fh, Some(id))) => reply.created_passthrough(&self.ttl, &attr, fh, &id),
            Ok((attr, fh, None)) => reply.created(&self.ttl, &attr, fh, Self::fopen_flags(flags)),
            Err(e) => reply.error(e),
        }
    }

    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32, reply: impl reply::Empty) {
        let r = self.file(fh).and_then(|f| {
            rustix::fs::fallocate(&f.file, rustix::fs::FallocateFlags::from_bits_retain(mode as u32), offset, length)
                .map_err(errno)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// No ioctl is served (issue 18 will pass some to the file below): "not a
    /// terminal", the answer programs expect, and nothing logged, since some probe for
    /// every file they open.
    pub fn ioctl(&self, ino: Ino, cmd: u32, in_data: &[u8], out_size: u32, reply: impl reply::Ioctl) {
        // File attributes pass to the file below (copied up before a change); every other
        // ioctl is not the filesystem's: the kernel hands over only these for regular
        // files and directories.
        let Some(op) = fileattr::Op::parse(cmd, in_data) else { return reply.error(Errno::ENOTTY) };
        let run = || -> Result<Vec<u8>, Errno> {
            let h = self.handle(ino, op.changes())?;
            let st = rustix::fs::stat(&h.proc).map_err(errno)?;
            if !matches!(sys::file_type_bits(&st), libc::S_IFREG | libc::S_IFDIR) {
                return Err(Errno::ENOTTY);
            }
            let how = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
            let file = rustix::fs::open(&h.proc, how, Mode::empty()).map_err(errno)?;
            op.run(&file).map_err(errno)
        };
        let out = if op.changes() {
            self.lock_for_change(ino, Data::Copy).and_then(|(_ns, staged)| {
                self.union.copy_up(ino, Data::Copy, staged)?;
                let out = run();
                self.forget_attributes(ino);
                out
            })
        } else {
            let _ns = self.union.ns.read();
            run()
        };
        match out {
            Ok(data) => reply.ioctl(0, &data[..data.len().min(out_size as usize)]),
            Err(e) => reply.error(e),
        }
    }

    pub fn copy_file_range(
        &self,
        caller: Caller,
        (fh_in, offset_in): (u64, u64),
        (ino_out, fh_out, offset_out): (Ino, u64, u64),
        len: u64,
        reply: impl reply::Written,
    ) {
        // Served by the filesystem below: a reflink or an in-kernel copy there, instead of
        // every byte through the kernel's splice fallback.
        let r = (|| {
            let (src, dst) = (self.file(fh_in)?, self.file(fh_out)?);
            let (mut off_in, mut off_out) = (offset_in, offset_out);
            let want = len.min(u64::from(u32::MAX) & !0xfff) as usize;
            let n = rustix::fs::copy_file_range(&src.file, Some(&mut off_in), &dst.file, Some(&mut off_out), want)
                .map_err(errno)?;
            if n > 0 && drop_setid(&sys::proc_path(&dst.file), caller)? {
                self.forget_attributes(ino_out);
            }
            Ok(n as u32)
        })();
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    pub fn lseek(&self, fh: u64, offset: i64, whence: i32, reply: impl reply::Offset) {
        let r = self.file(fh).and_then(|f| {
            let pos = match whence {
                libc::SEEK_SET => rustix::fs::SeekFrom::Start(offset as u64),
                libc::SEEK_CUR => rustix::fs::SeekFrom::Current(offset),
                libc::SEEK_END => rustix::fs::SeekFrom::End(offset),
                libc::SEEK_DATA => rustix::fs::SeekFrom::Data(offset as u64),
                libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(offset as u64),
                _ => return Err(Errno::EINVAL),
            };
            rustix::fs::seek(f.file.as_fd(), pos).map_err(errno)
        });
        match r {
            Ok(p) => reply.offset(p as i64),
            Err(e) => reply.error(e),
        }
    }
}

/// The `/dev/fuse` transport: fuser reads each request, decodes it and encodes the reply.
/// It also takes INIT, FORGET and INTERRUPT when requests come over io_uring.
pub struct DevFuse(pub Arc<StrataFs>);

impl Filesystem for DevFuse {
    fn init(&mut self, _req: &Request, cfg: &mut KernelConfig) -> std::io::Result<()> {
        self.0.init(cfg);
        Ok(())
    }

    fn destroy(&mut self) {
        self.0.destroy();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.0.lookup(parent.0, name, reply)
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.forget(ino.0, nlookup)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.0.getattr(ino.0, fh.map(|f| f.0), reply)
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange { mode, uid, gid, size, atime, mtime };
        self.0.setattr(Caller::of(req), ino.0, change, fh.map(|f| f.0), reply)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.0.readlink(ino.0, reply)
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        self.0.mknod(Caller::of(req), parent.0, name, (mode, umask, rdev), reply)
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.0.mkdir(Caller::of(req), parent.0, name, mode, umask, reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.0.unlink(parent.0, name, reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.0.rmdir(parent.0, name, reply)
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.0.symlink(Caller::of(req), parent.0, link_name, target, reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.0.rename((parent.0, name), (newparent.0, newname), flags, reply)
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.0.link(ino.0, newparent.0, newname, reply)
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.0.open(Caller::of(req), ino.0, flags.0, reply)
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.0.read(fh.0, offset, size, reply)
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wf: WriteFlags,
        flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The kernel asks it of a writer without CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2).
        let kill_setid = wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.0.write(Caller::of(req), (fh.0, offset), data, kill_setid, flags.0, reply)
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        self.0.flush(reply)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.release(fh.0, reply)
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.0.fsync(fh.0, datasync, reply)
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.0.opendir(reply)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        self.0.readdir(ino.0, offset, reply)
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectoryPlus) {
        self.0.readdirplus(ino.0, offset, reply)
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.0.fsyncdir(ino.0, reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.0.statfs(reply)
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.0.setxattr(Caller::of(req), ino.0, name, value, flags, reply)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.0.getxattr(ino.0, name, size, reply)
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.0.listxattr(ino.0, size, reply)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.0.removexattr(ino.0, name, reply)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.0.access(ino.0, mask.bits(), reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.0.create(Caller::of(req), (parent.0, name), (mode, umask), flags, reply)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.0.fallocate(fh.0, offset, length, mode, reply)
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        self.0.ioctl(ino.0, cmd, in_data, out_size, reply)
    }

    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.0.copy_file_range(Caller::of(req), (fh_in.0, offset_in), (ino_out.0, fh_out.0, offset_out), len, reply)
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        self.0.lseek(fh.0, offset, whence, reply)
    }
}
