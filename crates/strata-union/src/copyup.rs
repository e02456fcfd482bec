//! Copying one entry (data and metadata) from a branch into a scratch name in the work dir.
//! The caller renames the result into place, so a crash never exposes a half-copied file.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::sys;
use crate::whiteout;

/// What a copy-up does with a regular file's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// Copied.
    Copy,
    /// Left out: the copy starts empty (the caller truncates it anyway).
    Skip,
    /// Left below: the copy is a metadata-only one of the same size, marked as kernel
    /// overlayfs marks it (`metacopy=on`), for changes that touch metadata only. Mounts
    /// without `metacopy=on` copy the data instead (see `Union::copy_up`).
    Meta,
}

/// Where a regular file's data is read from when not from the entry copied itself.
pub type DataSource<'a> = Option<(BorrowedFd<'a>, &'a Path)>;

/// Copies `src_rel` (of kind given by `st`) from `src_root` to `dst_name` in `work`, with
/// owner, mode, xattrs (not the union's private ones) and times. Directories are created
/// empty. A regular file's data comes from `data_src` when given (a metadata-only copy
/// below), else from the entry.
pub fn copy_entry(
    src_root: impl AsFd,
    src_rel: &Path,
    st: &Stat,
    work: impl AsFd,
    dst_name: &OsStr,
    data: Data,
    data_src: DataSource<'_>,
) -> Result<(), Errno> {
    let work = work.as_fd();
    let src_root = src_root.as_fd();
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    match sys::file_type_bits(st) {
        libc::S_IFREG => {
            let dst = sys::open_at(
                work,
                Path::new(dst_name),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
                Mode::from_raw_mode(0o600),
            )?;
            let src = sys::open_at(src_root, src_rel, OFlags::RDONLY, Mode::empty())?;
            match data {
                Data::Copy if st.st_size > 0 => match data_src {
                    Some((root, rel)) => {
                        let below = sys::open_at(root, rel, OFlags::RDONLY, Mode::empty())?;
                        copy_data(&below, &dst, st.st_size as u64)?;
                    }
                    None => copy_data(&src, &dst, st.st_size as u64)?,
                },
                Data::Meta => {
                    rustix::fs::ftruncate(&dst, st.st_size as u64)?;
                    whiteout::set_metacopy(&dst)?;
                }
                _ => {}
            }
            // Through the open files: no path walks, and the fsync covers metadata too.
            copy_file_metadata(&src, st, &dst)?;
            // A metadata-only copy holds nothing an fsync would save that the journal
            // does not (kernel overlayfs does not sync it either).
            return if data == Data::Meta { Ok(()) } else { rustix::fs::fsync(&dst) };
        }
        libc::S_IFDIR => sys::mkdirat(work, dst_name, Mode::from_raw_mode(0o700))?,
        libc::S_IFLNK => {
            let target = sys::readlinkat(src_root, src_rel, Vec::new())?;
            sys::symlinkat(target.as_c_str(), work, dst_name)?;
        }
        kind => {
            let ft = rustix::fs::FileType::from_raw_mode(kind);
            sys::mknodat(work, dst_name, ft, mode, st.st_rdev)?;
        }
    }
    copy_metadata(src_root, src_rel, st, work, Path::new(dst_name))
}

/// A copy of the open regular file `src`, data and metadata, made unnamed (`O_TMPFILE`)
/// in directory `dir`: the writable copy of a file whose names are all gone.
pub fn copy_unnamed(src: &OwnedFd, dir: impl AsFd) -> Result<OwnedFd, Errno> {
    let st = rustix::fs::fstat(src)?;
    let dst =
        rustix::fs::openat(dir, ".", OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
    copy_data(src, &dst, st.st_size as u64)?;
    copy_file_metadata(src, &st, &dst)?;
    Ok(dst)
}

/// Owner, xattrs, mode (after chown, which may clear set-id bits) and times.
pub fn copy_metadata(
    src_root: impl AsFd,
    src_rel: &Path,
    st: &Stat,
    dst_root: impl AsFd,
    dst_rel: &Path,
) -> Result<(), Errno> {
    let dst_root = dst_root.as_fd();
    sys::chownat(
        dst_root,
        dst_rel,
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    let src = sys::PathFd::open(src_root, src_rel)?;
    let dst = sys::PathFd::open(dst_root, dst_rel)?;
    sys::copy_xattrs(&src.proc, &dst.proc, |n| !whiteout::is_private_xattr(n))?;
    if sys::file_type_bits(st) != libc::S_IFLNK {
        rustix::fs::chmod(&dst.proc, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    }
    sys::utimensat(dst_root, dst_rel, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)
}

/// [`copy_metadata`] for a regular file, through open files.
fn copy_file_metadata(src: &OwnedFd, st: &Stat, dst: &OwnedFd) -> Result<(), Errno> {
    rustix::fs::fchown(
        dst,
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
    )?;
    sys::copy_xattrs(&sys::proc_path(src), &sys::proc_path(dst), |n| !whiteout::is_private_xattr(n))?;
    rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    rustix::fs::futimens(dst, &times_of(st))
}

pub(crate) fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
    }
}

/// Below this size a file is copied in one go: looking for holes costs more than it saves.
const SMALL_FILE: u64 = 64 << 10;

/// Copies `len` bytes keeping holes: a reflink when the filesystem offers one, else each
/// data extent (found with SEEK_DATA/SEEK_HOLE) by `copy_file_range`, falling back to
/// read/write where that is refused.
pub fn copy_data(src: &OwnedFd, dst: &OwnedFd, len: u64) -> Result<(), Errno> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    if len <= SMALL_FILE {
        return copy_range(src, dst, 0, len);
    }
    let mut pos = 0u64;
    while pos < len {
        let start = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(Errno::NXIO) => break, // only a hole remains
            Err(Errno::INVAL) => pos,  // no SEEK_DATA support: copy everything
            Err(e) => return Err(e),
        };
        let end = match rustix::fs::seek(src, SeekFrom::Hole(start)) {
            Ok(e) => e.min(len),
            Err(_) => len,
        };
        copy_range(src, dst, start, end)?;
        pos = end;
    }
    rustix::fs::ftruncate(dst, len)
}

fn copy_range(src: &OwnedFd, dst: &OwnedFd, start: u64, end: u64) -> Result<(), Errno> {
    let mut off_in = start;
    let mut off_out = start;
    while off_in < end {
        let want = (end - off_in).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::XDEV) | Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::OPNOTSUPP) => {
                return copy_range_rw(src, dst, off_in, end);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn copy_range_rw(src: &OwnedFd, dst: &OwnedFd, mut off: u64, end: u64) -> Result<(), Errno> {
    let mut buf = vec![0u8; 1 << 20];
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        let n = rustix::io::pread(src, &mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        let mut done = 0;
        while done < n {
            done += rustix::io::pwrite(dst, &buf[done..n], off + done as u64)?;
        }
        off += n as u64;
    }
    Ok(())
}
