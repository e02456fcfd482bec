//! Everything an ordinary filesystem must do, exercised through a real mount over a
//! lower (read-only) and an upper (writable) branch.

mod common;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use common::*;
use rustix::fs::{AtFlags, CWD, Mode, Timespec, Timestamps};

struct Fx {
    s: Scratch,
    m: Mount,
}

/// upper (rw) over lower (ro+wh), AUFS format unless `opts` says otherwise.
fn fixture(extra: &[&str]) -> Fx {
    let s = Scratch::new();
    s.mkdir("upper");
    s.write("lower", "file", "lower file\n");
    s.write("lower", "dir/inner", "inner\n");
    s.write("lower", "dir/sub/deep", "deep\n");
    let br = format!("br={}=rw:{}=ro+wh", s.path("upper").display(), s.path("lower").display());
    let mut opts = vec![br.as_str()];
    opts.extend_from_slice(extra);
    let m = Mount::new(&opts, &s.path("mnt"));
    Fx { s, m }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

#[test]
fn setattr_mode_owner_size_times() {
    let f = fixture(&[]);
    let p = f.m.p("file");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    rustix::fs::chownat(
        CWD,
        &p,
        Some(rustix::process::Uid::from_raw(1234)),
        Some(rustix::process::Gid::from_raw(5678)),
        AtFlags::empty(),
    )
    .unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    // The lower file is untouched; the copy carries the new metadata.
    let lower = fs::metadata(f.s.path("lower/file")).unwrap();
    assert_eq!((lower.uid(), lower.mode() & 0o777), (0, 0o644));
    assert_eq!(fs::metadata(f.s.path("upper/file")).unwrap().uid(), 1234);

    OpenOptions::new().write(true).open(&p).unwrap().set_len(3).unwrap();
    assert_eq!(read(&p), "low");
    fs::File::options().write(true).open(&p).unwrap().set_len(10_000).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 10_000);

    // utimensat with explicit times, UTIME_OMIT and UTIME_NOW.
    let set = |a: Timespec, m: Timespec| {
        rustix::fs::utimensat(CWD, &p, &Timestamps { last_access: a, last_modification: m }, AtFlags::empty()).unwrap()
    };
    set(Timespec { tv_sec: 1_000_000_000, tv_nsec: 5 }, Timespec { tv_sec: 1_500_000_000, tv_nsec: 7 });
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.atime(), md.atime_nsec(), md.mtime(), md.mtime_nsec()), (1_000_000_000, 5, 1_500_000_000, 7));
    set(Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT }, Timespec { tv_sec: 1_600_000_000, tv_nsec: 0 });
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.atime(), md.mtime()), (1_000_000_000, 1_600_000_000));
    set(
        Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW },
        Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
    );
    let md = fs::metadata(&p).unwrap();
    assert!(md.atime() > 1_700_000_000);
    assert_eq!(md.mtime(), 1_600_000_000);
    // Times before 1970 survive too.
    set(Timespec { tv_sec: -86_400, tv_nsec: 0 }, Timespec { tv_sec: -1, tv_nsec: 500 });
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.atime(), md.mtime(), md.mtime_nsec()), (-86_400, -1, 500));
}

#[test]
fn open_flags() {
    let f = fixture(&[]);
    // O_APPEND on a lower file copies up and appends.
    OpenOptions::new().append(true).open(f.m.p("file")).unwrap().write_all(b"more\n").unwrap();
    assert_eq!(read(f.m.p("file")), "lower file\nmore\n");
    // O_TRUNC on a lower file: copied up empty.
    let lower2 = f.m.p("dir/inner");
    OpenOptions::new().write(true).truncate(true).open(&lower2).unwrap().write_all(b"x").unwrap();
    assert_eq!(read(&lower2), "x");
    assert_eq!(read(f.s.path("lower/dir/inner")), "inner\n");
    // O_EXCL on an existing (lower) name fails; on a new one succeeds.
    assert_eq!(errno_of(OpenOptions::new().write(true).create_new(true).open(f.m.p("dir/sub/deep"))), libc::EEXIST);
    OpenOptions::new().write(true).create_new(true).open(f.m.p("dir/sub/new")).unwrap();
    assert!(f.s.path("upper/dir/sub/new").exists());
    // The copied-up parents keep the lower dirs' metadata.
    assert_eq!(
        fs::metadata(f.s.path("upper/dir/sub")).unwrap().mode() & 0o777,
        fs::metadata(f.s.path("lower/dir/sub")).unwrap().mode() & 0o777
    );
    // O_CREAT without O_EXCL on an existing lower file opens it.
    let mut h =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(f.m.p("dir/sub/deep")).unwrap();
    let mut s = String::new();
    h.read_to_string(&mut s).unwrap();
    assert_eq!(s, "deep\n");
    // O_DIRECT: aligned I/O works.
    let p = f.m.p("direct");
    let mut buf = vec![0u8; 8192];
    let aligned = {
        let off = buf.as_ptr().align_offset(4096);
        &mut buf[off..off + 4096]
    };
    aligned.fill(b'd');
    let mut d = OpenOptions::new().write(true).read(true).create(true).custom_flags(libc::O_DIRECT).open(&p).unwrap();
    d.write_all(aligned).unwrap();
    d.seek(SeekFrom::Start(0)).unwrap();
    aligned.fill(0);
    d.read_exact(aligned).unwrap();
    assert!(aligned.iter().all(|b| *b == b'd'));
    assert_eq!(fs::metadata(&p).unwrap().len(), 4096);
    // O_RDONLY|O_TRUNC on a lower file truncates too, as on a plain filesystem.
    let h = OpenOptions::new().read(true).custom_flags(libc::O_TRUNC).open(f.m.p("file")).unwrap();
    assert_eq!(h.metadata().unwrap().len(), 0);
    assert_eq!(read(f.s.path("lower/file")), "lower file\n");
}

#[test]
fn mmap_shared_writable() {
    let f = fixture(&[]);
    let p = f.m.p("file");
    let file = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = 11;
    // SAFETY: test-only mapping of a file we own, unmapped below.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(ptr, libc::MAP_FAILED);
        let s = std::slice::from_raw_parts_mut(ptr as *mut u8, len);
        assert_eq!(&s[..5], b"lower");
        s[..5].copy_from_slice(b"UPPER");
        assert_eq!(libc::msync(ptr, len, libc::MS_SYNC), 0);
        libc::munmap(ptr, len);
    }
    drop(file);
    assert_eq!(read(&p), "UPPER file\n");
    assert_eq!(read(f.s.path("upper/file")), "UPPER file\n");
    assert_eq!(read(f.s.path("lower/file")), "lower file\n");
}

#[test]
fn fsync_fallocate_and_holes() {
    let f = fixture(&[]);
    let p = f.m.p("sparse");
    let mut h = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    h.write_all(b"head").unwrap();
    h.seek(SeekFrom::Start(1 << 20)).unwrap();
    h.write_all(b"tail").unwrap();
    h.sync_all().unwrap();
    h.sync_data().unwrap();
    let fd = h.as_raw_fd();
    // SAFETY: plain lseek on an owned descriptor.
    let (data, hole) = unsafe { (libc::lseek(fd, 4096, libc::SEEK_DATA), libc::lseek(fd, 0, libc::SEEK_HOLE)) };
    assert_eq!(data, 1 << 20, "SEEK_DATA skips the hole");
    assert_eq!(hole, 4096, "SEEK_HOLE finds the hole after the first block");
    rustix::fs::fallocate(&h, rustix::fs::FallocateFlags::empty(), 0, 8 << 20).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 8 << 20);
    rustix::fs::fallocate(&h, rustix::fs::FallocateFlags::KEEP_SIZE | rustix::fs::FallocateFlags::PUNCH_HOLE, 0, 4096)
        .unwrap();
    let mut b = [1u8; 4];
    h.seek(SeekFrom::Start(0)).unwrap();
    h.read_exact(&mut b).unwrap();
    assert_eq!(b, [0; 4]);
}

#[test]
fn special_files_symlinks_and_links() {
    let f = fixture(&[]);
    let fifo = f.m.p("fifo");
    rustix::fs::mknodat(CWD, &fifo, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let sock = f.m.p("sock");
    rustix::fs::mknodat(CWD, &sock, rustix::fs::FileType::Socket, Mode::from_raw_mode(0o600), 0).unwrap();
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    let dev = f.m.p("null");
    rustix::fs::mknodat(
        CWD,
        &dev,
        rustix::fs::FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let md = fs::symlink_metadata(&dev).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    // A device made through the union works as one.
    fs::write(&dev, b"gone").unwrap();

    std::os::unix::fs::symlink("dir/inner", f.m.p("link")).unwrap();
    assert_eq!(fs::read_link(f.m.p("link")).unwrap(), Path::new("dir/inner"));
    assert_eq!(read(f.m.p("link")), "inner\n");

    // Hard link to a lower file: copied up, then linked; counts exact.
    fs::hard_link(f.m.p("file"), f.m.p("file2")).unwrap();
    let a = fs::metadata(f.m.p("file")).unwrap();
    let b = fs::metadata(f.m.p("file2")).unwrap();
    assert_eq!((a.nlink(), b.nlink()), (2, 2));
    assert_eq!(a.ino(), b.ino());
    fs::write(f.m.p("file2"), "via link\n").unwrap();
    assert_eq!(read(f.m.p("file")), "via link\n");
    let ctime_before = fs::metadata(f.m.p("file")).unwrap().ctime_nsec();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::remove_file(f.m.p("file2")).unwrap();
    let md = fs::metadata(f.m.p("file")).unwrap();
    assert_eq!(md.nlink(), 1);
    assert_ne!(md.ctime_nsec(), ctime_before, "unlink of a link updates ctime");
    // Linking to a directory is refused.
    assert_ne!(errno_of(fs::hard_link(f.m.p("dir"), f.m.p("dir2"))), 0);
}

#[test]
fn unlinked_open_file_stays_usable() {
    let f = fixture(&[]);
    let p = f.m.p("file");
    let mut h = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    h.write_all(b"still here").unwrap();
    h.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    h.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here\n");
    assert_eq!(h.metadata().unwrap().nlink(), 0);
    h.set_len(2).unwrap();
    assert_eq!(h.metadata().unwrap().len(), 2);
    // And the name can be reused meanwhile.
    fs::write(&p, "new").unwrap();
    assert_eq!(read(&p), "new");
}

/// A file whose last name goes while the kernel still holds it (here an `O_PATH`
/// descriptor; in real life an open racing with `unlink` or `rename`) opens again, as on a
/// local filesystem: reading it, and writing a lower one (copied aside, never into a name).
#[test]
fn a_removed_file_still_held_opens_again() {
    let f = fixture(&[]);
    fs::write(f.m.p("up"), "upper\n").unwrap();
    fs::write(f.m.p("other"), "other\n").unwrap();
    let lower = rustix::fs::open(f.m.p("file"), rustix::fs::OFlags::PATH, Mode::empty()).unwrap();
    let upper = rustix::fs::open(f.m.p("up"), rustix::fs::OFlags::PATH, Mode::empty()).unwrap();
    fs::remove_file(f.m.p("file")).unwrap();
    fs::rename(f.m.p("other"), f.m.p("up")).unwrap();
    let again = |fd: &std::os::fd::OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());

    assert_eq!(read(again(&upper)), "upper\n", "the replaced upper file");
    assert_eq!(read(again(&lower)), "lower file\n", "the removed lower file");
    let mut w = OpenOptions::new().append(true).open(again(&lower)).unwrap();
    w.write_all(b"more\n").unwrap();
    assert_eq!(read(again(&lower)), "lower file\nmore\n", "written, then read through the copy");
    drop(w);

    assert_eq!(read(f.s.path("lower/file")), "lower file\n", "the lower branch is untouched");
    assert!(!f.m.p("file").exists());
    assert_eq!(read(f.m.p("up")), "other\n");
    let mut upper_names: Vec<_> = fs::read_dir(f.s.path("upper"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(".wh..wh."))
        .collect();
    upper_names.sort();
    assert_eq!(upper_names, [".wh.file", "up"], "no name for the written copy");
}

#[test]
fn rename_variants() {
    let f = fixture(&[]);
    // A lower file to a new name.
    fs::rename(f.m.p("file"), f.m.p("moved")).unwrap();
    assert_eq!(read(f.m.p("moved")), "lower file\n");
    assert!(!f.m.p("file").exists());
    // Over an existing lower target.
    fs::rename(f.m.p("moved"), f.m.p("dir/inner")).unwrap();
    assert_eq!(read(f.m.p("dir/inner")), "lower file\n");
    // RENAME_NOREPLACE refuses an existing target.
    fs::write(f.m.p("a"), "a").unwrap();
    fs::write(f.m.p("b"), "b").unwrap();
    let r = rustix::fs::renameat_with(CWD, f.m.p("a"), CWD, f.m.p("b"), rustix::fs::RenameFlags::NOREPLACE);
    assert_eq!(r, Err(rustix::io::Errno::EXIST));
    // RENAME_EXCHANGE swaps, also with a lower file.
    rustix::fs::renameat_with(CWD, f.m.p("a"), CWD, f.m.p("dir/sub/deep"), rustix::fs::RenameFlags::EXCHANGE).unwrap();
    assert_eq!(read(f.m.p("a")), "deep\n");
    assert_eq!(read(f.m.p("dir/sub/deep")), "a");
    // A directory that exists only in the writable branch.
    fs::create_dir(f.m.p("newdir")).unwrap();
    fs::write(f.m.p("newdir/x"), "x").unwrap();
    fs::rename(f.m.p("newdir"), f.m.p("newdir2")).unwrap();
    assert_eq!(read(f.m.p("newdir2/x")), "x");
    // ... onto an empty directory.
    fs::create_dir(f.m.p("empty")).unwrap();
    fs::rename(f.m.p("newdir2"), f.m.p("empty")).unwrap();
    assert_eq!(read(f.m.p("empty/x")), "x");
    // Onto a non-empty directory fails.
    fs::create_dir(f.m.p("full")).unwrap();
    fs::write(f.m.p("full/y"), "y").unwrap();
    assert_eq!(errno_of(fs::rename(f.m.p("empty"), f.m.p("full"))), libc::ENOTEMPTY);
    // A lower directory moves too (by redirect; tests/dirrename.rs has the details).
    fs::rename(f.m.p("dir"), f.m.p("dir-renamed")).unwrap();
    fs::rename(f.m.p("dir-renamed"), f.m.p("dir")).unwrap();
    // Inode numbers follow the file across rename and copy-up.
    let ino = fs::metadata(f.m.p("dir/sub")).unwrap().ino();
    fs::write(f.m.p("dir/sub/touch"), "t").unwrap();
    assert_eq!(fs::metadata(f.m.p("dir/sub")).unwrap().ino(), ino);
    // ctime changes on rename of a file.
    let before = fs::metadata(f.m.p("b")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::rename(f.m.p("b"), f.m.p("c")).unwrap();
    let after = fs::metadata(f.m.p("c")).unwrap();
    assert_eq!(before.ino(), after.ino());
    assert!((after.ctime(), after.ctime_nsec()) > (before.ctime(), before.ctime_nsec()));
}

#[test]
fn readdir_offsets_are_stable() {
    let f = fixture(&[]);
    for i in 0..300 {
        fs::write(f.m.p(&format!("dir/f{i:03}")), "").unwrap();
    }
    let dir = cpath(&f.m.p("dir"));
    // SAFETY: libc directory stream calls on a stream we open and close here.
    unsafe {
        let d = libc::opendir(dir.as_ptr());
        assert!(!d.is_null());
        let mut names = Vec::new();
        let mut marks = Vec::new();
        loop {
            let pos = libc::telldir(d);
            let e = libc::readdir(d);
            if e.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned();
            marks.push((pos, name.clone(), (*e).d_ino));
            names.push(name);
        }
        assert_eq!(names.len(), 2 + 300 + 2, "., .., 300 new, inner and sub");
        assert_eq!(names.iter().filter(|n| n.starts_with(".wh.")).count(), 0);
        // seekdir back to any mark gives the same entry.
        for (pos, name, ino) in marks.iter().rev().step_by(37) {
            libc::seekdir(d, *pos);
            let e = libc::readdir(d);
            assert_eq!(std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy(), name.as_str());
            assert_eq!((*e).d_ino, *ino);
        }
        // Entries removed during the listing do not break it.
        libc::rewinddir(d);
        let mut seen = 0;
        let mut removed = false;
        loop {
            let e = libc::readdir(d);
            if e.is_null() {
                break;
            }
            seen += 1;
            if !removed {
                for i in 200..300 {
                    fs::remove_file(f.m.p(&format!("dir/f{i:03}"))).unwrap();
                }
                fs::write(f.m.p("dir/added"), "").unwrap();
                removed = true;
            }
        }
        assert!(seen >= 204, "listing went on after removals ({seen})");
        libc::closedir(d);

        // Two passes over one directory, interleaved, with no open handle in the daemon to
        // keep them apart: each sees every entry exactly once.
        fs::create_dir(f.m.p("two")).unwrap();
        for i in 0..500 {
            fs::write(f.m.p(&format!("two/e{i:03}")), "").unwrap();
        }
        let two = cpath(&f.m.p("two"));
        let streams = [libc::opendir(two.as_ptr()), libc::opendir(two.as_ptr())];
        assert!(streams.iter().all(|d| !d.is_null()));
        let mut seen: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut open = [true, true];
        while open.iter().any(|o| *o) {
            for (k, d) in streams.iter().enumerate() {
                if !open[k] {
                    continue;
                }
                let e = libc::readdir(*d);
                if e.is_null() {
                    open[k] = false;
                } else {
                    seen[k].push(std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned());
                }
            }
        }
        streams.iter().for_each(|d| {
            libc::closedir(*d);
        });
        for s in &mut seen {
            assert_eq!(s.len(), 502, "., .. and 500 entries, none twice");
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 502, "an entry came twice");
        }
    }
    // d_ino equals st_ino.
    for e in fs::read_dir(f.m.p("dir")).unwrap() {
        let e = e.unwrap();
        assert_eq!(std::os::unix::fs::DirEntryExt::ino(&e), fs::symlink_metadata(e.path()).unwrap().ino());
    }
}

#[test]
fn statfs_access_and_names() {
    let f = fixture(&[]);
    let st = rustix::fs::statfs(&f.m.mnt).unwrap();
    let up = rustix::fs::statfs(f.s.path("upper")).unwrap();
    assert_eq!(st.f_blocks, up.f_blocks, "statfs reports the writable branch");
    assert_eq!(rustix::fs::statvfs(&f.m.mnt).unwrap().f_namemax, 255);
    rustix::fs::accessat(
        CWD,
        f.m.p("file"),
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
        AtFlags::empty(),
    )
    .unwrap();

    // Names: 255 bytes fine (even when a whiteout is needed), 256 too long, .wh.* refused.
    let long = "n".repeat(255);
    fs::write(f.s.path("lower").join(&long), "long").unwrap();
    assert_eq!(read(f.m.p(&long)), "long");
    fs::remove_file(f.m.p(&long)).unwrap();
    assert!(!f.m.p(&long).exists(), "long name whited out");
    fs::write(f.m.p(&long), "again").unwrap();
    assert_eq!(read(f.m.p(&long)), "again");
    assert_eq!(errno_of(fs::write(f.m.p(&"n".repeat(256)), "x")), libc::ENAMETOOLONG);
    assert_eq!(errno_of(fs::write(f.m.p(".wh.evil"), "x")), libc::EINVAL);
    assert_eq!(errno_of(fs::create_dir(f.m.p(".wh..wh..opq"))), libc::EINVAL);
    assert_eq!(errno_of(fs::metadata(f.m.p(".wh..wh.work"))), libc::ENOENT);

    // Paths near PATH_MAX work.
    let mut p = f.m.mnt.clone();
    let comp = "d".repeat(200);
    while p.as_os_str().len() + 201 < 4000 {
        p.push(&comp);
        fs::create_dir(&p).unwrap();
    }
    p.push("leaf");
    fs::write(&p, "deep").unwrap();
    assert_eq!(read(&p), "deep");
    assert!(p.as_os_str().len() > 3800);
}

#[test]
fn xattrs_all_namespaces() {
    let f = fixture(&[]);
    let p = f.m.p("file");
    for name in ["user.k", "trusted.k", "security.k"] {
        rustix::fs::lsetxattr(&p, name, b"v1", rustix::fs::XattrFlags::empty()).unwrap();
        let mut buf = [0u8; 16];
        let n = rustix::fs::lgetxattr(&p, name, &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"v1");
    }
    assert_eq!(
        rustix::fs::lsetxattr(&p, "user.k", b"x", rustix::fs::XattrFlags::CREATE),
        Err(rustix::io::Errno::EXIST)
    );
    assert_eq!(
        rustix::fs::lsetxattr(&p, "user.none", b"x", rustix::fs::XattrFlags::REPLACE),
        Err(rustix::io::Errno::NODATA)
    );
    let mut list = [0u8; 256];
    let n = rustix::fs::llistxattr(&p, &mut list[..]).unwrap();
    let names: Vec<&[u8]> = list[..n].split(|b| *b == 0).filter(|s| !s.is_empty()).collect();
    for want in [&b"user.k"[..], b"trusted.k", b"security.k"] {
        assert!(names.contains(&want), "{want:?} listed");
    }
    rustix::fs::lremovexattr(&p, "user.k").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(rustix::fs::lgetxattr(&p, "user.k", &mut buf[..]), Err(rustix::io::Errno::NODATA));
    // The lower file never got them.
    assert_eq!(
        rustix::fs::lgetxattr(f.s.path("lower/file"), "trusted.k", &mut buf[..]),
        Err(rustix::io::Errno::NODATA)
    );
    // The union's private xattrs are neither visible nor settable.
    assert_eq!(
        rustix::fs::lsetxattr(f.m.p("dir"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()),
        Err(rustix::io::Errno::PERM)
    );
}

#[test]
fn posix_and_flock_locks() {
    let f = fixture(&[]);
    let p = f.m.p("file");
    let a = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let b = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    rustix::fs::flock(&a, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    assert_eq!(
        rustix::fs::flock(&b, rustix::fs::FlockOperation::NonBlockingLockExclusive),
        Err(rustix::io::Errno::WOULDBLOCK)
    );
    rustix::fs::flock(&a, rustix::fs::FlockOperation::Unlock).unwrap();
    rustix::fs::flock(&b, rustix::fs::FlockOperation::NonBlockingLockShared).unwrap();
    // POSIX record lock, seen from a child process (locks are per process).
    let lk =
        libc::flock { l_type: libc::F_WRLCK as i16, l_whence: libc::SEEK_SET as i16, l_start: 0, l_len: 0, l_pid: 0 };
    // SAFETY: fcntl on an owned descriptor with a valid struct.
    assert_eq!(unsafe { libc::fcntl(a.as_raw_fd(), libc::F_SETLK, &lk) }, 0);
    let out = std::process::Command::new("flock").args(["--nonblock", "--exclusive"]).arg(&p).arg("true").output();
    assert!(!out.expect("flock(1) from util-linux").status.success(), "flock(1) must not get the lock b shares");
    let probe = "import fcntl,sys\nf=open(sys.argv[1],'r+')\ntry:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\n print('got')\nexcept OSError:\n print('busy')";
    let out = std::process::Command::new("python3").arg("-c").arg(probe).arg(&p).output().expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "busy");
    drop(a);
}

#[test]
fn copy_up_keeps_metadata_xattrs_and_holes() {
    let s = Scratch::new();
    s.mkdir("upper");
    let lower = s.mkdir("lower");
    let p = lower.join("big");
    {
        let mut h = File::create(&p).unwrap();
        h.write_all(b"start").unwrap();
        h.seek(SeekFrom::Start(64 << 20)).unwrap();
        h.write_all(b"end").unwrap();
    }
    rustix::fs::lsetxattr(&p, "user.color", b"blue", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(&p, "trusted.t", b"1", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::chownat(
        CWD,
        &p,
        Some(rustix::process::Uid::from_raw(1000)),
        Some(rustix::process::Gid::from_raw(1001)),
        AtFlags::empty(),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4751)).unwrap();
    rustix::fs::utimensat(
        CWD,
        &p,
        &Timestamps {
            last_access: Timespec { tv_sec: 1111, tv_nsec: 1 },
            last_modification: Timespec { tv_sec: 2222, tv_nsec: 2 },
        },
        AtFlags::empty(),
    )
    .unwrap();
    let br = format!("br={}=rw:{}=ro", s.path("upper").display(), lower.display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    let ino_before = fs::metadata(m.p("big")).unwrap().ino();
    // A metadata-only change (an xattr) copies the whole file up.
    rustix::fs::lsetxattr(m.p("big"), "user.extra", b"x", rustix::fs::XattrFlags::empty()).unwrap();
    let up = s.path("upper/big");
    let md = fs::metadata(&up).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1001, 0o4751));
    assert_eq!((md.mtime(), md.mtime_nsec(), md.atime()), (2222, 2, 1111));
    assert_eq!(md.len(), (64 << 20) + 3);
    assert!(md.blocks() * 512 < 1 << 20, "sparse file stayed sparse ({} blocks)", md.blocks());
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(&up, "user.color", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"blue");
    let n = rustix::fs::lgetxattr(&up, "trusted.t", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"1");
    assert_eq!(fs::metadata(m.p("big")).unwrap().ino(), ino_before, "st_ino kept across copy-up");
    let mut h = File::open(m.p("big")).unwrap();
    let mut head = [0u8; 5];
    h.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"start");
    // No leftovers in the work dir.
    assert_eq!(fs::read_dir(s.path("upper/.wh..wh.work")).unwrap().count(), 0);
}

/// POSIX ACLs take part in permission checks (the kernel checks them, the daemon stores
/// them), for lower files and for copied-up ones.
#[test]
fn acls_grant_access() {
    let f = fixture(&[]);
    let secret = f.s.path("lower/secret");
    fs::write(&secret, "acl data\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let as_nobody = |p: &Path| {
        std::process::Command::new("runuser").args(["-u", "nobody", "--", "cat"]).arg(p).output().expect("runuser")
    };
    assert!(!as_nobody(&f.m.p("secret")).status.success(), "mode 0600 keeps nobody out");
    let out = std::process::Command::new("setfacl").args(["-m", "u:nobody:r"]).arg(f.m.p("secret")).output().unwrap();
    assert!(out.status.success(), "setfacl: {}", String::from_utf8_lossy(&out.stderr));
    let out = as_nobody(&f.m.p("secret"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "acl data\n", "{}", String::from_utf8_lossy(&out.stderr));
    // The ACL lives on the copied-up file; the lower file is unchanged.
    let get = std::process::Command::new("getfacl").arg("-c").arg(f.s.path("upper/secret")).output().unwrap();
    assert!(String::from_utf8_lossy(&get.stdout).contains("user:nobody:r--"));
    let lower = std::process::Command::new("getfacl").arg("-c").arg(&secret).output().unwrap();
    assert!(!String::from_utf8_lossy(&lower.stdout).contains("nobody"));
    // An ACL already in a lower layer is honoured too.
    let other = f.s.path("lower/other");
    fs::write(&other, "lower acl\n").unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(std::process::Command::new("setfacl").args(["-m", "u:nobody:r"]).arg(&other).status().unwrap().success());
    assert_eq!(String::from_utf8_lossy(&as_nobody(&f.m.p("other")).stdout), "lower acl\n");
}

/// Inode numbers: stable across copy-up and rename within a mount, `d_ino == st_ino`,
/// and the same after unmount and remount over unchanged branches.
#[test]
fn inode_numbers_survive_remount() {
    let s = Scratch::new();
    s.write("lower", "file", "x");
    s.write("lower", "dir/sub/deep", "deep");
    s.write("lower", "other", "o");
    s.write("lower", "quiet/untouched", "u");
    for (style, opts) in [
        ("aufs", format!("br={}=rw:{}=ro", s.mkdir("upper").display(), s.path("lower").display())),
        (
            "overlay",
            format!(
                "lowerdir={},upperdir={},workdir={}",
                s.path("lower").display(),
                s.mkdir("up2").display(),
                s.mkdir("work2").display()
            ),
        ),
    ] {
        let m = Mount::new(&[&opts], &s.path("mnt"));
        let ino = |p: &str| fs::symlink_metadata(m.p(p)).unwrap().ino();
        let before: Vec<u64> =
            ["file", "dir", "dir/sub", "dir/sub/deep", "other", "quiet/untouched"].iter().map(|p| ino(p)).collect();
        fs::write(m.p("dir/sub/deep"), "copied up").unwrap();
        fs::rename(m.p("other"), m.p("moved")).unwrap();
        assert_eq!(ino("dir/sub/deep"), before[3], "{style}: copy-up keeps st_ino");
        assert_eq!(ino("moved"), before[4], "{style}: rename keeps st_ino");
        fs::write(m.p("new"), "n").unwrap();
        let new = ino("new");
        m.unmount();
        let m = Mount::new(&[&opts], &s.path("mnt"));
        let ino = |p: &str| fs::symlink_metadata(m.p(p)).unwrap().ino();
        // Looked up in another order than before, on purpose.
        assert_eq!(ino("new"), new, "{style}");
        assert_eq!(ino("moved"), before[4], "{style}");
        assert_eq!(ino("dir/sub/deep"), before[3], "{style}");
        assert_eq!(ino("dir/sub"), before[2], "{style}");
        assert_eq!(ino("file"), before[0], "{style}");
        // A brand-new name never reuses an old number.
        fs::write(m.p("newer"), "n").unwrap();
        assert!(!before.contains(&ino("newer")) && ino("newer") != new, "{style}");
        for e in fs::read_dir(&m.mnt).unwrap() {
            let e = e.unwrap();
            assert_eq!(std::os::unix::fs::DirEntryExt::ino(&e), fs::symlink_metadata(e.path()).unwrap().ino());
        }
        m.unmount();
        // A name this mount never touched keeps its number for the next one.
        let m = Mount::new(&[&opts], &s.path("mnt"));
        assert_eq!(
            fs::symlink_metadata(m.p("quiet/untouched")).unwrap().ino(),
            before[5],
            "{style}: untouched names keep numbers"
        );
        // The state file is a meta name: never listed.
        assert!(fs::read_dir(&m.mnt).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".wh.")));
        m.unmount();
    }
}

/// `whiteout=aufs-only`: a character device 0/0 is a device (pjdfstest's `mknod c 0 0`
/// cases), kept across remount, listed, removed and renamed as any file; deleting a lower
/// name too long for `.wh.NAME` is refused as AUFS refuses it, and changes nothing. The
/// default mount still refuses to make one (it would read it as a whiteout).
#[test]
fn aufs_only_mounts_keep_real_zero_devices() {
    let zero =
        |p: &Path| rustix::fs::mknodat(CWD, p, rustix::fs::FileType::CharacterDevice, Mode::from_raw_mode(0o640), 0);
    let default = fixture(&[]);
    assert_eq!(zero(&default.m.p("z")), Err(rustix::io::Errno::PERM));
    drop(default);

    let f = fixture(&["whiteout=aufs-only"]);
    let long = "l".repeat(252);
    f.s.write("lower", &long, "long\n");
    // A real 0/0 device in the lower branch shows as one too (made beside the mount: the
    // branch is read-only through it).
    zero(&f.s.path("lower").join("lowerdev")).unwrap();

    zero(&f.m.p("z")).unwrap();
    zero(&f.m.p("dir/z2")).unwrap();
    for (p, name) in [(f.m.p("z"), "z"), (f.m.p("dir/z2"), "z2"), (f.m.p("lowerdev"), "lowerdev")] {
        let md = fs::symlink_metadata(&p).unwrap();
        assert!(md.file_type().is_char_device(), "{name}");
        assert_eq!((md.rdev(), md.mode() & 0o777), (0, 0o640), "{name}");
        assert!(names(p.parent().unwrap()).contains(&name.to_string()), "{name} is listed");
    }
    fs::rename(f.m.p("z"), f.m.p("z3")).unwrap();
    assert!(fs::symlink_metadata(f.m.p("z3")).unwrap().file_type().is_char_device());
    assert_eq!(errno_of(fs::symlink_metadata(f.m.p("z"))), libc::ENOENT);

    // The lower name of 252 bytes: `.wh.` + it passes NAME_MAX.
    assert_eq!(errno_of(fs::remove_file(f.m.p(&long))), libc::ENAMETOOLONG);
    assert_eq!(errno_of(fs::rename(f.m.p(&long), f.m.p("short"))), libc::ENAMETOOLONG);
    assert_eq!(read(f.m.p(&long)), "long\n");
    assert_eq!(errno_of(fs::symlink_metadata(f.m.p("short"))), libc::ENOENT);
    // A shorter lower name goes as usual, by an AUFS whiteout.
    fs::remove_file(f.m.p("file")).unwrap();
    assert!(f.s.path("upper/.wh.file").exists());

    // Removing the devices made through the union leaves nothing behind; remount sees the rest.
    fs::remove_file(f.m.p("dir/z2")).unwrap();
    let Fx { s, m } = f;
    m.unmount();
    let br = format!("br={}=rw:{}=ro+wh", s.path("upper").display(), s.path("lower").display());
    let m = Mount::new(&[br.as_str(), "whiteout=aufs-only"], &s.path("mnt"));
    assert!(fs::symlink_metadata(m.p("z3")).unwrap().file_type().is_char_device());
    assert_eq!(errno_of(fs::symlink_metadata(m.p("dir/z2"))), libc::ENOENT);
    assert_eq!(errno_of(fs::symlink_metadata(m.p("file"))), libc::ENOENT);
    assert_eq!(read(m.p(&long)), "long\n");
}
