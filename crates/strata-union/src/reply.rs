//! What an operation answers, whichever transport brought its request: fuser's reply
//! objects for `/dev/fuse` and [`crate::uring`]'s for FUSE over io_uring implement these,
//! so each operation of [`crate::fs::StrataFs`] is written once.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackingId, Errno, FileAttr, FileType, FopenFlags, Generation};

/// A passthrough backing file registered with the kernel, unregistered on drop.
pub enum Backing {
    /// Registered through fuser's channel (the `/dev/fuse` transport).
    Fuser(BackingId),
    /// Registered by the io_uring transport.
    Raw(crate::uring::RawBacking),
}

pub trait Fail {
    fn error(self, e: Errno);
}

pub trait Entry: Fail {
    fn entry(self, ttl: &Duration, attr: &FileAttr);
}

pub trait Attr: Fail {
    fn attr(self, ttl: &Duration, attr: &FileAttr);
}

pub trait Data: Fail {
    fn data(self, data: &[u8]);
}

pub trait Empty: Fail {
    fn ok(self);
}

pub trait Written: Fail {
    fn written(self, size: u32);
}

pub trait Offset: Fail {
    fn offset(self, offset: i64);
}

pub trait Xattr: Fail {
    fn size(self, size: u32);
    fn data(self, data: &[u8]);
}

/// A filesystem's statistics, as `statfs` answers them.
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

pub trait Statfs: Fail {
    fn statfs(self, s: &FsStats);
}

pub trait Ioctl: Fail {
    fn ioctl(self, result: i32, data: &[u8]);
}

/// Registers an open file as the passthrough backing file of a reply to come.
pub trait Backer {
    fn open_backing(&self, file: &OwnedFd) -> std::io::Result<Backing>;
}

pub trait Open: Fail + Backer {
    fn opened(self, fh: u64, flags: FopenFlags);
    fn opened_passthrough(self, fh: u64, backing: &Arc<Backing>);
}

pub trait Create: Fail + Backer {
    fn created(self, ttl: &Duration, attr: &FileAttr, fh: u64, flags: FopenFlags);
    fn created_passthrough(self, ttl: &Duration, attr: &FileAttr, fh: u64, backing: &Arc<Backing>);
}

/// A directory listing: `add` returns true once the reply is full.
pub trait Dir: Fail {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &OsStr) -> bool;
    fn ok(self);
}

/// A listing with each entry's attributes (readdirplus).
pub trait DirPlus: Fail {
    fn add(&mut self, ino: u64, offset: u64, name: &OsStr, ttl: &Duration, attr: &FileAttr) -> bool;
    fn ok(self);
}

// The /dev/fuse transport: fuser's replies.

macro_rules! fails {
    ($($t:ty),*) => {$(
        impl Fail for $t {
            fn error(self, e: Errno) {
                <$t>::error(self, e)
            }
        }
    )*};
}

fails!(
    fuser::ReplyEntry,
    fuser::ReplyAttr,
    fuser::ReplyData,
    fuser::ReplyEmpty,
    fuser::ReplyWrite,
    fuser::ReplyLseek,
    fuser::ReplyXattr,
    fuser::ReplyStatfs,
    fuser::ReplyIoctl,
    fuser::ReplyOpen,
    fuser::ReplyCreate,
    fuser::ReplyDirectory,
    fuser::ReplyDirectoryPlus
);

impl Entry for fuser::ReplyEntry {
    fn entry(self, ttl: &Duration, attr: &FileAttr) {
        fuser::ReplyEntry::entry(self, ttl, attr, Generation(0))
    }
}

impl Attr for fuser::ReplyAttr {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        fuser::ReplyAttr::attr(self, ttl, attr)
    }
}

impl Data for fuser::ReplyData {
    fn data(self, data: &[u8]) {
        fuser::ReplyData::data(self, data)
    }
}

impl Empty for fuser::ReplyEmpty {
    fn ok(self) {
        fuser::ReplyEmpty::ok(self)
    }
}

impl Written for fuser::ReplyWrite {
    fn written(self, size: u32) {
        fuser::ReplyWrite::written(self, size)
    }
}

impl Offset for fuser::ReplyLseek {
    fn offset(self, offset: i64) {
        fuser::ReplyLseek::offset(self, offset)
    }
}

impl Xattr for fuser::ReplyXattr {
    fn size(self, size: u32) {
        fuser::ReplyXattr::size(self, size)
    }
    fn data(self, data: &[u8]) {
        fuser::ReplyXattr::data(self, data)
    }
}

impl Statfs for fuser::ReplyStatfs {
    fn statfs(self, s: &FsStats) {
        fuser::ReplyStatfs::statfs(self, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize)
    }
}

impl Ioctl for fuser::ReplyIoctl {
    fn ioctl(self, result: i32, data: &[u8]) {
        fuser::ReplyIoctl::ioctl(self, result, data)
    }
}

impl Backer for fuser::ReplyOpen {
    fn open_backing(&self, file: &OwnedFd) -> std::io::Result<Backing> {
        fuser::ReplyOpen::open_backing(self, file).map(Backing::Fuser)
    }
}

impl Backer for fuser::ReplyCreate {
    fn open_backing(&self, file: &OwnedFd) -> std::io::Result<Backing> {
        fuser::ReplyCreate::open_backing(self, file).map(Backing::Fuser)
    }
}

/// fuser's replies take its own registrations only; this transport never makes others.
fn fuser_id(backing: &Backing) -> Option<&BackingId> {
    match backing {
        Backing::Fuser(id) => Some(id),
        Backing::Raw(_) => None,
    }
}

impl Open for fuser::ReplyOpen {
    fn opened(self, fh: u64, flags: FopenFlags) {
        fuser::ReplyOpen::opened(self, fuser::FileHandle(fh), flags)
    }
    fn opened_passthrough(self, fh: u64, backing: &Arc<Backing>) {
        match fuser_id(backing) {
            Some(id) => fuser::ReplyOpen::opened_passthrough(self, fuser::FileHandle(fh), FopenFlags::empty(), id),
            None => fuser::ReplyOpen::error(self, Errno::EIO),
        }
    }
}

impl Create for fuser::ReplyCreate {
    fn created(self, ttl: &Duration, attr: &FileAttr, fh: u64, flags: FopenFlags) {
        fuser::ReplyCreate::created(self, ttl, attr, Generation(0), fuser::FileHandle(fh), flags)
    }
    fn created_passthrough(self, ttl: &Duration, attr: &FileAttr, fh: u64, backing: &Arc<Backing>) {
        match fuser_id(backing) {
            Some(id) => fuser::ReplyCreate::created_passthrough(
                self,
                ttl,
                attr,
                Generation(0),
                fuser::FileHandle(fh),
                FopenFlags::empty(),
                id,
            ),
            None => fuser::ReplyCreate::error(self, Errno::EIO),
        }
    }
}

impl Dir for fuser::ReplyDirectory {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &OsStr) -> bool {
        fuser::ReplyDirectory::add(self, fuser::INodeNo(ino), offset, kind, name)
    }
    fn ok(self) {
        fuser::ReplyDirectory::ok(self)
    }
}

impl DirPlus for fuser::ReplyDirectoryPlus {
    fn add(&mut self, ino: u64, offset: u64, name: &OsStr, ttl: &Duration, attr: &FileAttr) -> bool {
        fuser::ReplyDirectoryPlus::add(self, fuser::INodeNo(ino), offset, name, ttl, attr, Generation(0))
    }
    fn ok(self) {
        fuser::ReplyDirectoryPlus::ok(self)
    }
}
