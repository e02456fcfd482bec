//! The kernel's FUSE wire format (include/uapi/linux/fuse.h, protocol 7.45 on 6.18) for
//! the requests Strata serves over io_uring: each field read or written at its C offset,
//! little-endian, so no struct is ever reinterpreted from bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType};

pub const LOOKUP: u32 = 1;
pub const GETATTR: u32 = 3;
pub const SETATTR: u32 = 4;
pub const READLINK: u32 = 5;
pub const SYMLINK: u32 = 6;
pub const MKNOD: u32 = 8;
pub const MKDIR: u32 = 9;
pub const UNLINK: u32 = 10;
pub const RMDIR: u32 = 11;
pub const RENAME: u32 = 12;
pub const LINK: u32 = 13;
pub const OPEN: u32 = 14;
pub const READ: u32 = 15;
pub const WRITE: u32 = 16;
pub const STATFS: u32 = 17;
pub const RELEASE: u32 = 18;
pub const FSYNC: u32 = 20;
pub const SETXATTR: u32 = 21;
pub const GETXATTR: u32 = 22;
pub const LISTXATTR: u32 = 23;
pub const REMOVEXATTR: u32 = 24;
pub const FLUSH: u32 = 25;
pub const OPENDIR: u32 = 27;
pub const READDIR: u32 = 28;
pub const RELEASEDIR: u32 = 29;
pub const FSYNCDIR: u32 = 30;
pub const ACCESS: u32 = 34;
pub const CREATE: u32 = 35;
pub const DESTROY: u32 = 38;
pub const IOCTL: u32 = 39;
pub const FALLOCATE: u32 = 43;
pub const READDIRPLUS: u32 = 44;
pub const RENAME2: u32 = 45;
pub const LSEEK: u32 = 46;
pub const COPY_FILE_RANGE: u32 = 47;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
pub const ATTR_LEN: usize = 88;
pub const ENTRY_OUT_LEN: usize = 40 + ATTR_LEN;
pub const ATTR_OUT_LEN: usize = 16 + ATTR_LEN;
pub const OPEN_OUT_LEN: usize = 16;
pub const DIRENT_LEN: usize = 24;

/// `struct fuse_uring_req_header`: the in/out header, the opcode's fixed argument, and
/// `struct fuse_uring_ent_in_out`.
pub const REQ_HEADER_LEN: usize = 128 + 128 + 32;
pub const OFF_OP_IN: usize = 128;
pub const OP_IN_LEN: usize = 128;
pub const OFF_ENT_IN_OUT: usize = 256;
pub const CMD_REGISTER: u32 = 1;
pub const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `FOPEN_PASSTHROUGH`, and the set-attribute bits of `struct fuse_setattr_in.valid`.
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;
pub const FATTR_MODE: u32 = 1 << 0;
pub const FATTR_UID: u32 = 1 << 1;
pub const FATTR_GID: u32 = 1 << 2;
pub const FATTR_SIZE: u32 = 1 << 3;
pub const FATTR_ATIME: u32 = 1 << 4;
pub const FATTR_MTIME: u32 = 1 << 5;
pub const FATTR_FH: u32 = 1 << 6;
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
pub const FATTR_MTIME_NOW: u32 = 1 << 8;
pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;
pub const FUSE_GETATTR_FH: u32 = 1 << 0;

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// `struct fuse_in_header`.
#[derive(Clone, Copy, Debug)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> InHeader {
        InHeader {
            len: u32_at(b, 0),
            opcode: u32_at(b, 4),
            unique: u64_at(b, 8),
            nodeid: u64_at(b, 16),
            uid: u32_at(b, 24),
            gid: u32_at(b, 28),
        }
    }
}

/// `struct fuse_out_header`.
pub fn put_out_header(b: &mut [u8], len: u32, error: i32, unique: u64) {
    put_u32(b, 0, len);
    put_u32(b, 4, error as u32);
    put_u64(b, 8, unique);
}

/// The NUL-terminated names that follow a request's fixed argument, in order.
pub struct Names<'a>(&'a [u8]);

impl<'a> Names<'a> {
    pub fn new(b: &'a [u8]) -> Names<'a> {
        Names(b)
    }

    /// The next name (without its NUL); `None` when there is none.
    pub fn next_name(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&c| c == 0)?;
        let (name, rest) = self.0.split_at(end);
        self.0 = &rest[1..];
        Some(name)
    }

    /// What is left after the names taken so far (a setxattr value).
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

fn split(t: SystemTime) -> (u64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos()),
        // Before 1970: the kernel's (negative seconds, positive nanoseconds).
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => ((d.as_secs() as i64).wrapping_neg() as u64, 0),
                n => ((d.as_secs() as i64 + 1).wrapping_neg() as u64, 1_000_000_000 - n),
            }
        }
    }
}

/// A time the kernel sent (seconds, nanoseconds) as the `SystemTime` fuser would give.
pub fn time_of(secs: u64, nsecs: u32) -> SystemTime {
    let secs = secs as i64;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        // As fuser 0.18 decodes it (see `fs::timespec`, which undoes exactly this).
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), nsecs)
    }
}

fn mode_bits(kind: FileType) -> u32 {
    match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Directory => libc::S_IFDIR,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
    }
}

/// The `DT_*` type of a directory entry.
pub fn dirent_type(kind: FileType) -> u32 {
    mode_bits(kind) >> 12
}

/// `struct fuse_attr`.
pub fn put_attr(b: &mut [u8], a: &FileAttr) {
    let (at, atn) = split(a.atime);
    let (mt, mtn) = split(a.mtime);
    let (ct, ctn) = split(a.ctime);
    put_u64(b, 0, a.ino.0);
    put_u64(b, 8, a.size);
    put_u64(b, 16, a.blocks);
    put_u64(b, 24, at);
    put_u64(b, 32, mt);
    put_u64(b, 40, ct);
    put_u32(b, 48, atn);
    put_u32(b, 52, mtn);
    put_u32(b, 56, ctn);
    put_u32(b, 60, mode_bits(a.kind) | u32::from(a.perm));
    put_u32(b, 64, a.nlink);
    put_u32(b, 68, a.uid);
    put_u32(b, 72, a.gid);
    put_u32(b, 76, a.rdev);
    put_u32(b, 80, a.blksize);
    put_u32(b, 84, a.flags);
}

/// `struct fuse_entry_out`.
pub fn put_entry(b: &mut [u8], ttl: &Duration, a: &FileAttr) {
    put_u64(b, 0, a.ino.0);
    put_u64(b, 8, 0); // generation
    put_u64(b, 16, ttl.as_secs());
    put_u64(b, 24, ttl.as_secs());
    put_u32(b, 32, ttl.subsec_nanos());
    put_u32(b, 36, ttl.subsec_nanos());
    put_attr(&mut b[40..], a);
}

/// `struct fuse_attr_out`.
pub fn put_attr_out(b: &mut [u8], ttl: &Duration, a: &FileAttr) {
    put_u64(b, 0, ttl.as_secs());
    put_u32(b, 8, ttl.subsec_nanos());
    put_u32(b, 12, 0);
    put_attr(&mut b[16..], a);
}

/// `struct fuse_open_out`.
pub fn put_open(b: &mut [u8], fh: u64, flags: u32, backing_id: u32) {
    put_u64(b, 0, fh);
    put_u32(b, 8, flags);
    put_u32(b, 12, backing_id);
}

/// `struct fuse_dirent` and its name, padded to 8 bytes; `None` when `b` is too short.
pub fn put_dirent(b: &mut [u8], ino: u64, off: u64, kind: FileType, name: &[u8]) -> Option<usize> {
    let len = (DIRENT_LEN + name.len()).next_multiple_of(8);
    let b = b.get_mut(..len)?;
    put_u64(b, 0, ino);
    put_u64(b, 8, off);
    put_u32(b, 16, name.len() as u32);
    put_u32(b, 20, dirent_type(kind));
    b[DIRENT_LEN..DIRENT_LEN + name.len()].copy_from_slice(name);
    b[DIRENT_LEN + name.len()..].fill(0);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_uapi_header() {
        assert_eq!(REQ_HEADER_LEN, 288);
        assert_eq!(ENTRY_OUT_LEN, 128);
        assert_eq!(ATTR_OUT_LEN, 104);
    }

    #[test]
    fn names_split_at_nul() {
        let mut n = Names::new(b"old\0new\0value");
        assert_eq!(n.next_name(), Some(&b"old"[..]));
        assert_eq!(n.next_name(), Some(&b"new"[..]));
        assert_eq!(n.rest(), b"value");
        assert_eq!(n.next_name(), None);
    }

    #[test]
    fn times_before_1970() {
        assert_eq!(split(time_of(5, 7)), (5, 7));
        // As fuser decodes the kernel's (-3 s, 0.25 s): EPOCH - 3.25 s.
        assert_eq!(
            UNIX_EPOCH.duration_since(time_of((-3i64) as u64, 250_000_000)).ok(),
            Some(Duration::from_millis(3250))
        );
        // 2.75 s before 1970 is the kernel's (-3 s, 0.25 s).
        assert_eq!(split(UNIX_EPOCH - Duration::from_millis(2750)), ((-3i64) as u64, 250_000_000));
    }

    #[test]
    fn a_dirent_is_padded_to_eight_bytes() {
        let mut b = [0xffu8; 64];
        assert_eq!(put_dirent(&mut b, 9, 3, FileType::Directory, b"abc"), Some(32));
        assert_eq!(u32_at(&b, 20), libc::DT_DIR as u32);
        assert_eq!(&b[24..32], b"abc\0\0\0\0\0");
        assert_eq!(put_dirent(&mut b[..20], 9, 3, FileType::Directory, b"abc"), None);
    }
}
