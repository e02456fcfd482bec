//! FUSE over io_uring (the kernel's Documentation/filesystems/fuse/fuse-io-uring.rst):
//! requests come through one queue per CPU instead of `read`/`write` on `/dev/fuse`.
//! The kernel puts a request on the queue of the CPU its caller runs on, and that
//! queue's threads are pinned there; they answer as `SCHED_IDLE` so that the caller is
//! woken on that CPU too (see `queue::set_policy`). On `/dev/fuse` whichever daemon
//! thread waited longest is woken, often on the other CPU, and the caller after it.
//!
//! fuser still owns `/dev/fuse`: it answers INIT (where [`offer`] asks for io_uring) and
//! takes FORGET and INTERRUPT, which the kernel keeps sending there. Every other request
//! arrives here, is decoded by [`abi`], and is served by the same [`StrataFs`] operations
//! as fuser's, through the [`crate::reply`] traits.

mod abi;
mod queue;

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Errno, FileAttr, FileType, FopenFlags, InitFlags, KernelConfig, TimeOrNow};
use tracing::{debug, warn};

use crate::fs::{AttrChange, Caller, StrataFs};
use crate::reply::{self, Backing};
use abi::*;

/// The largest write the kernel sends when requests come over io_uring: every ring entry
/// holds a payload buffer of this size (fuser's default, 16 MiB, would be 64 MiB a CPU).
const MAX_WRITE: u32 = 1 << 20;
/// Threads per queue, each with its own ring and one entry: a request that blocks (a
/// large copy-up) leaves the other to the rest of that CPU's callers.
const THREADS_PER_QUEUE: usize = 2;

/// At INIT: asks for FUSE over io_uring when the kernel offers it (`enable_uring` of the
/// fuse module set to Y). `asked`: the mount said `io_uring` (not only the default), so
/// not getting it is worth a warning. Returns whether it was asked for.
pub fn offer(cfg: &mut KernelConfig, asked: bool) -> bool {
    if !cfg.capabilities().contains(InitFlags::FUSE_OVER_IO_URING) {
        let why = "the kernel does not offer FUSE over io_uring (is /sys/module/fuse/parameters/enable_uring Y?); \
                   requests come through /dev/fuse";
        if asked {
            warn!("{why}");
        } else {
            debug!("{why}");
        }
        return false;
    }
    // Once INIT chose it, the connection cannot go back: make sure rings can be made.
    if let Err(e) = queue::probe() {
        warn!("FUSE over io_uring not used: io_uring_setup: {e}; requests come through /dev/fuse");
        return false;
    }
    if cfg.add_capabilities(InitFlags::FUSE_OVER_IO_URING).is_err() {
        warn!("FUSE over io_uring refused at INIT; requests come through /dev/fuse");
        return false;
    }
    if let Err(e) = cfg.set_max_write(MAX_WRITE) {
        warn!("max_write {MAX_WRITE} refused (nearest {e}); FUSE over io_uring not used");
        return false;
    }
    true
}

/// Starts the queues on the connection of `dev` (a `/dev/fuse` descriptor), once per
/// possible CPU as the kernel requires: it switches to io_uring only when every queue
/// has an entry, and holds every request until then.
pub fn start(fs: Arc<StrataFs>, dev: Arc<OwnedFd>) {
    let cpus = possible_cpus();
    debug!(queues = cpus.len(), "FUSE over io_uring: registering queues");
    for qid in cpus {
        for t in 0..THREADS_PER_QUEUE {
            let (queue_fs, dev) = (fs.clone(), dev.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("uring-{qid}.{t}"))
                .spawn(move || queue::serve(qid, &queue_fs, &dev, MAX_WRITE as usize));
            if let Err(e) = spawned {
                warn!("FUSE over io_uring: queue {qid}: no thread ({e})");
                fs.abort_connection();
            }
        }
    }
}

/// The CPUs the kernel may ever run a caller on (`/sys/devices/system/cpu/possible`,
/// "0-3,6"): the kernel's ring has one queue for each.
fn possible_cpus() -> Vec<u16> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let mut cpus = cpu_list(&text);
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
        cpus.extend(0..n);
    }
    cpus
}

/// The CPUs of a kernel CPU list ("0-3,6"); malformed parts are left out.
fn cpu_list(text: &str) -> Vec<u16> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// A passthrough backing file registered on the `/dev/fuse` descriptor by this transport.
pub struct RawBacking {
    id: u32,
    dev: Arc<OwnedFd>,
}

/// `FUSE_DEV_IOC_BACKING_CLOSE`: `_IOW(229, 2, uint32_t)`.
const BACKING_CLOSE: libc::c_ulong = (1 << 30) | (4 << 16) | (229 << 8) | 2;

impl Drop for RawBacking {
    fn drop(&mut self) {
        // SAFETY: the ioctl reads one u32 from the pointer, which outlives the call.
        let r = unsafe { libc::ioctl(self.dev.as_raw_fd(), BACKING_CLOSE, &self.id as *const u32) };
        if r != 0 {
            debug!(id = self.id, "closing a passthrough backing id: {}", std::io::Error::last_os_error());
        }
    }
}

/// Where an operation's answer goes: the ring entry's payload buffer, and the error or
/// the length written there.
pub(crate) struct Answer<'a> {
    buf: &'a mut [u8],
    len: usize,
    error: i32,
    /// The most a directory listing may hold (the request's size).
    max: usize,
    dev: &'a Arc<OwnedFd>,
}

impl<'a> Answer<'a> {
    fn new(buf: &'a mut [u8], dev: &'a Arc<OwnedFd>) -> Answer<'a> {
        Answer { buf, len: 0, error: 0, max: 0, dev }
    }

    fn put(&mut self, data: &[u8]) {
        match self.buf.get_mut(self.len..self.len + data.len()) {
            Some(b) => {
                b.copy_from_slice(data);
                self.len += data.len();
            }
            None => self.error = -libc::EIO,
        }
    }

    /// Room for `n` more bytes, zeroed; `None` (and EIO) when the buffer is too small.
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = self.len;
        match self.buf.get_mut(start..start + n) {
            Some(b) => {
                b.fill(0);
                self.len += n;
                Some(b)
            }
            None => {
                self.error = -libc::EIO;
                None
            }
        }
    }
}

impl reply::Fail for &mut Answer<'_> {
    fn error(self, e: Errno) {
        self.len = 0;
        self.error = -e.code();
    }
}

impl reply::Entry for &mut Answer<'_> {
    fn entry(self, ttl: &Duration, attr: &FileAttr) {
        if let Some(b) = self.room(ENTRY_OUT_LEN) {
            put_entry(b, ttl, attr);
        }
    }
}

impl reply::Attr for &mut Answer<'_> {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        if let Some(b) = self.room(ATTR_OUT_LEN) {
            put_attr_out(b, ttl, attr);
        }
    }
}

impl reply::Data for &mut Answer<'_> {
    fn data(self, data: &[u8]) {
        self.put(data);
    }
}

impl reply::Empty for &mut Answer<'_> {
    fn ok(self) {}
}

impl reply::Written for &mut Answer<'_> {
    fn written(self, size: u32) {
        if let Some(b) = self.room(8) {
            put_u32(b, 0, size);
        }
    }
}

impl reply::Offset for &mut Answer<'_> {
    fn offset(self, offset: i64) {
        if let Some(b) = self.room(8) {
            put_u64(b, 0, offset as u64);
        }
    }
}

impl reply::Xattr for &mut Answer<'_> {
    fn size(self, size: u32) {
        if let Some(b) = self.room(8) {
            put_u32(b, 0, size);
        }
    }
    fn data(self, data: &[u8]) {
        self.put(data);
    }
}

impl reply::Statfs for &mut Answer<'_> {
    fn statfs(self, s: &reply::FsStats) {
        if let Some(b) = self.room(80) {
            for (i, v) in [s.blocks, s.bfree, s.bavail, s.files, s.ffree].into_iter().enumerate() {
                put_u64(b, i * 8, v);
            }
            put_u32(b, 40, s.bsize);
            put_u32(b, 44, s.namelen);
            put_u32(b, 48, s.frsize);
        }
    }
}

impl reply::Ioctl for &mut Answer<'_> {
    fn ioctl(self, result: i32, data: &[u8]) {
        if let Some(b) = self.room(16) {
            put_u32(b, 0, result as u32);
        }
        self.put(data);
    }
}

impl reply::Backer for &mut Answer<'_> {
    fn open_backing(&self, file: &OwnedFd) -> std::io::Result<Backing> {
        let id = fuser::BackingId::create_raw(self.dev.as_fd(), file)?;
        Ok(Backing::Raw(RawBacking { id, dev: self.dev.clone() }))
    }
}

fn backing_id(backing: &Backing) -> Option<u32> {
    match backing {
        Backing::Raw(raw) => Some(raw.id),
        Backing::Fuser(_) => None,
    }
}

impl reply::Open for &mut Answer<'_> {
    fn opened(self, fh: u64, flags: FopenFlags) {
        if let Some(b) = self.room(OPEN_OUT_LEN) {
            put_open(b, fh, flags.bits(), 0);
        }
    }
    fn opened_passthrough(self, fh: u64, backing: &Arc<Backing>) {
        match backing_id(backing) {
            Some(id) => {
                if let Some(b) = self.room(OPEN_OUT_LEN) {
                    put_open(b, fh, FOPEN_PASSTHROUGH, id);
                }
            }
            None => reply::Fail::error(self, Errno::EIO),
        }
    }
}

impl reply::Create for &mut Answer<'_> {
    fn created(self, ttl: &Duration, attr: &FileAttr, fh: u64, flags: FopenFlags) {
        if let Some(b) = self.room(ENTRY_OUT_LEN + OPEN_OUT_LEN) {
            put_entry(b, ttl, attr);
            put_open(&mut b[ENTRY_OUT_LEN..], fh, flags.bits(), 0);
        }
    }
    fn created_passthrough(self, ttl: &Duration, attr: &FileAttr, fh: u64, backing: &Arc<Backing>) {
        match backing_id(backing) {
            Some(id) => {
                if let Some(b) = self.room(ENTRY_OUT_LEN + OPEN_OUT_LEN) {
                    put_entry(b, ttl, attr);
                    put_open(&mut b[ENTRY_OUT_LEN..], fh, FOPEN_PASSTHROUGH, id);
                }
            }
            None => reply::Fail::error(self, Errno::EIO),
        }
    }
}

impl reply::Dir for &mut Answer<'_> {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &OsStr) -> bool {
        let limit = self.max.min(self.buf.len());
        match put_dirent(&mut self.buf[self.len..limit], ino, offset, kind, name.as_bytes()) {
            Some(n) => {
                self.len += n;
                false
            }
            None => true,
        }
    }
    fn ok(self) {}
}

impl reply::DirPlus for &mut Answer<'_> {
    fn add(&mut self, ino: u64, offset: u64, name: &OsStr, ttl: &Duration, attr: &FileAttr) -> bool {
        let limit = self.max.min(self.buf.len());
        let Some(room) = self.buf.get_mut(self.len..limit) else { return true };
        if room.len() < ENTRY_OUT_LEN {
            return true;
        }
        let (entry, dirent) = room.split_at_mut(ENTRY_OUT_LEN);
        match put_dirent(dirent, ino, offset, attr.kind, name.as_bytes()) {
            Some(n) => {
                entry.fill(0);
                put_entry(entry, ttl, attr);
                self.len += ENTRY_OUT_LEN + n;
                false
            }
            None => true,
        }
    }
    fn ok(self) {}
}

fn name(n: Option<&[u8]>) -> &OsStr {
    OsStr::from_bytes(n.unwrap_or_default())
}

/// The attribute changes of a `struct fuse_setattr_in`.
fn attr_change(arg: &[u8]) -> (AttrChange, Option<u64>) {
    let valid = u32_at(arg, 0);
    let has = |bit| valid & bit != 0;
    let time = |set, now, secs, nsecs| match (has(set), has(now)) {
        (_, true) => Some(TimeOrNow::Now),
        (true, false) => Some(TimeOrNow::SpecificTime(time_of(u64_at(arg, secs), u32_at(arg, nsecs)))),
        _ => None,
    };
    let change = AttrChange {
        mode: has(FATTR_MODE).then(|| u32_at(arg, 68)),
        uid: has(FATTR_UID).then(|| u32_at(arg, 76)),
        gid: has(FATTR_GID).then(|| u32_at(arg, 80)),
        size: has(FATTR_SIZE).then(|| u64_at(arg, 16)),
        atime: time(FATTR_ATIME, FATTR_ATIME_NOW, 32, 56),
        mtime: time(FATTR_MTIME, FATTR_MTIME_NOW, 40, 60),
    };
    (change, has(FATTR_FH).then(|| u64_at(arg, 8)))
}

/// Serves one request: `arg` is its fixed argument, `rest` what follows (names, data).
pub(crate) fn dispatch(fs: &StrataFs, h: &InHeader, arg: &[u8], rest: &[u8], out: &mut Answer<'_>) {
    fs.stats.uring_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    debug!(opcode = h.opcode, unique = h.unique, nodeid = h.nodeid, "request over io_uring");
    let caller = Caller { uid: h.uid, gid: h.gid };
    let ino = h.nodeid;
    let mut names = Names::new(rest);
    match h.opcode {
        LOOKUP => fs.lookup(ino, name(names.next_name()), out),
        GETATTR => {
            let fh = (u32_at(arg, 0) & FUSE_GETATTR_FH != 0).then(|| u64_at(arg, 8));
            fs.getattr(ino, fh, out)
        }
        SETATTR => {
            let (change, fh) = attr_change(arg);
            fs.setattr(caller, ino, change, fh, out)
        }
        READLINK => fs.readlink(ino, out),
        SYMLINK => {
            let link = name(names.next_name());
            let target = name(names.next_name());
            fs.symlink(caller, ino, link, Path::new(target), out)
        }
        MKNOD => {
            let (mode, rdev, umask) = (u32_at(arg, 0), u32_at(arg, 4), u32_at(arg, 8));
            fs.mknod(caller, ino, name(names.next_name()), (mode, umask, rdev), out)
        }
        MKDIR => fs.mkdir(caller, ino, name(names.next_name()), u32_at(arg, 0), u32_at(arg, 4), out),
        UNLINK => fs.unlink(ino, name(names.next_name()), out),
        RMDIR => fs.rmdir(ino, name(names.next_name()), out),
        RENAME | RENAME2 => {
            let flags = if h.opcode == RENAME2 { u32_at(arg, 8) } else { 0 };
            let (old, new) = (name(names.next_name()), name(names.next_name()));
            let flags = fuser::RenameFlags::from_bits_retain(flags);
            fs.rename((ino, old), (u64_at(arg, 0), new), flags, out)
        }
        LINK => fs.link(u64_at(arg, 0), ino, name(names.next_name()), out),
        OPEN => fs.open(caller, ino, u32_at(arg, 0) as i32, out),
        READ => fs.read(u64_at(arg, 0), u64_at(arg, 8), u32_at(arg, 16), out),
        WRITE => {
            let size = (u32_at(arg, 16) as usize).min(rest.len());
            let kill_setid = u32_at(arg, 20) & FUSE_WRITE_KILL_SUIDGID != 0;
            let flags = u32_at(arg, 32) as i32;
            fs.write(caller, (u64_at(arg, 0), u64_at(arg, 8)), &rest[..size], kill_setid, flags, out)
        }
        STATFS => fs.statfs(out),
        RELEASE => fs.release(u64_at(arg, 0), out),
        FSYNC => fs.fsync(u64_at(arg, 0), u32_at(arg, 8) & 1 != 0, out),
        SETXATTR => {
            let (size, flags) = (u32_at(arg, 0) as usize, u32_at(arg, 4) as i32);
            let n = name(names.next_name());
            let value = names.rest();
            fs.setxattr(caller, ino, n, &value[..size.min(value.len())], flags, out)
        }
        GETXATTR => fs.getxattr(ino, name(names.next_name()), u32_at(arg, 0), out),
        LISTXATTR => fs.listxattr(ino, u32_at(arg, 0), out),
        REMOVEXATTR => fs.removexattr(ino, name(names.next_name()), out),
        FLUSH => fs.flush(out),
        OPENDIR => fs.opendir(out),
        READDIR | READDIRPLUS => {
            out.max = u32_at(arg, 16) as usize;
            if h.opcode == READDIR {
                fs.readdir(ino, u64_at(arg, 8), out)
            } else {
                fs.readdirplus(ino, u64_at(arg, 8), out)
            }
        }
        RELEASEDIR | DESTROY => {}
        FSYNCDIR => fs.fsyncdir(ino, out),
        ACCESS => fs.access(ino, u32_at(arg, 0) as i32, out),
        CREATE => {
            let (flags, mode, umask) = (u32_at(arg, 0) as i32, u32_at(arg, 4), u32_at(arg, 8));
            fs.create(caller, (ino, name(names.next_name())), (mode, umask), flags, out)
        }
        IOCTL => {
            let (cmd, in_size, out_size) = (u32_at(arg, 12), u32_at(arg, 24) as usize, u32_at(arg, 28));
            fs.ioctl(ino, cmd, &rest[..in_size.min(rest.len())], out_size, out)
        }
        FALLOCATE => fs.fallocate(u64_at(arg, 0), u64_at(arg, 8), u64_at(arg, 16), u32_at(arg, 24) as i32, out),
        LSEEK => fs.lseek(u64_at(arg, 0), u64_at(arg, 8) as i64, u32_at(arg, 16) as i32, out),
        COPY_FILE_RANGE => {
            let from = (u64_at(arg, 0), u64_at(arg, 8));
            let to = (u64_at(arg, 16), u64_at(arg, 24), u64_at(arg, 32));
            fs.copy_file_range(caller, from, to, u64_at(arg, 40), out)
        }
        // Whatever else the kernel may send, it stops sending once told ENOSYS.
        _ => reply::Fail::error(out, Errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setattr_decodes_what_is_valid() {
        let mut arg = [0u8; 88];
        put_u32(&mut arg, 0, FATTR_MODE | FATTR_SIZE | FATTR_MTIME_NOW | FATTR_FH);
        put_u64(&mut arg, 8, 42);
        put_u64(&mut arg, 16, 4096);
        put_u32(&mut arg, 68, 0o100644);
        let (c, fh) = attr_change(&arg);
        assert_eq!((c.mode, c.uid, c.gid, c.size, fh), (Some(0o100644), None, None, Some(4096), Some(42)));
        assert!(matches!((c.atime, c.mtime), (None, Some(TimeOrNow::Now))));
    }

    #[test]
    fn cpu_lists_are_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0-1\n"), [0, 1]);
        assert_eq!(cpu_list("0-3,6,8-9"), [0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(cpu_list("0,x-2,5"), [0, 5]);
        assert!(cpu_list("").is_empty());
    }
}
