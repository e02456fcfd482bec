//! Metadata-only copy-up (`metacopy=on`): `chmod`, `chown`, `touch` and xattrs of a lower
//! file copy no data; the data is copied on the first open for writing. The on-disk form
//! is kernel overlayfs's, checked both ways against a kernel overlayfs mount.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

/// Data that no filesystem stores as holes: 1 MiB and a bit from a simple generator.
fn data(seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..(1 << 20) + 4321)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A lower branch with `big`, `d/f` and `small`, and empty upper and work dirs.
fn branches(s: &Scratch) {
    s.mkdir("lower/d");
    fs::write(s.path("lower/big"), data(1)).unwrap();
    fs::write(s.path("lower/d/f"), data(2)).unwrap();
    fs::write(s.path("lower/small"), "small\n").unwrap();
    s.mkdir("upper");
    s.mkdir("work");
}

fn options(s: &Scratch, extra: &str) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        s.path("lower").display(),
        s.path("upper").display(),
        s.path("work").display()
    )
}

#[test]
fn metadata_changes_leave_the_data_below_in_kernel_form() {
    let s = Scratch::new();
    branches(&s);
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.p("d/f"), Some(5), Some(6)).unwrap();
    rustix::fs::setxattr(m.p("small"), "user.note", b"kept", rustix::fs::XattrFlags::empty()).unwrap();

    for (name, seed) in [("big", 1), ("d/f", 2)] {
        let up = fs::metadata(s.path("upper").join(name)).unwrap();
        assert!(is_metacopy(&s.path("upper").join(name)), "{name}: marked as a metadata-only copy");
        assert_eq!(up.len(), data(seed).len() as u64, "{name}: same size as the data below");
        assert_eq!(up.blocks(), 0, "{name}: no data copied");
        // Through the union: the data from below, the blocks of the data (as overlayfs).
        assert_eq!(fs::read(m.p(name)).unwrap(), data(seed), "{name}");
        assert_eq!(
            fs::metadata(m.p(name)).unwrap().blocks(),
            fs::metadata(s.path("lower").join(name)).unwrap().blocks()
        );
    }
    assert!(is_metacopy(&s.path("upper/small")));
    assert_eq!(fs::metadata(m.p("big")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!((fs::metadata(m.p("d/f")).unwrap().uid(), fs::metadata(m.p("d/f")).unwrap().gid()), (5, 6));
    let mut v = [0u8; 16];
    let n = rustix::fs::getxattr(m.p("small"), "user.note", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"kept");
    let mut names = [0u8; 256];
    let n = rustix::fs::listxattr(m.p("big"), &mut names[..]).unwrap();
    assert!(!String::from_utf8_lossy(&names[..n]).contains("overlay"), "the mark is never shown");
    let before = tree(&m.mnt);
    m.unmount();

    // Kernel overlayfs reads the same tree from these branches.
    let k = KernelOverlay::new(&options(&s, ",metacopy=on,redirect_dir=on"), &s.path("kmnt"));
    assert_eq!(tree(&s.path("kmnt")), before, "kernel overlayfs over Strata's metadata-only copies");
    k.unmount();
    assert_eq!(fs::read(s.path("lower/big")).unwrap(), data(1), "the lower branch never changes");
}

#[test]
fn writing_completes_the_copy_and_keeps_its_times() {
    let s = Scratch::new();
    branches(&s);
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    for name in ["big", "d/f", "small"] {
        fs::set_permissions(m.p(name), fs::Permissions::from_mode(0o640)).unwrap();
        assert!(is_metacopy(&s.path("upper").join(name)), "{name}");
    }
    let mtime = |p: &Path| fs::metadata(p).unwrap().mtime_nsec() + fs::metadata(p).unwrap().mtime() * 1_000_000_000;

    // Opened for writing, not written: the data is copied, the times stay.
    let was = mtime(&m.p("big"));
    drop(fs::OpenOptions::new().write(true).open(m.p("big")).unwrap());
    assert!(!is_metacopy(&s.path("upper/big")));
    assert!(fs::metadata(s.path("upper/big")).unwrap().blocks() > 0, "the data is in the upper file now");
    assert_eq!(mtime(&s.path("upper/big")), was);
    assert_eq!(fs::read(m.p("big")).unwrap(), data(1));

    // Appended to.
    fs::OpenOptions::new().append(true).open(m.p("d/f")).unwrap().write_all(b"tail").unwrap();
    let mut want = data(2);
    want.extend_from_slice(b"tail");
    assert_eq!(fs::read(m.p("d/f")).unwrap(), want);
    assert!(!is_metacopy(&s.path("upper/d/f")));

    // Truncated: to a length, and to nothing.
    fs::OpenOptions::new().write(true).open(m.p("small")).unwrap().set_len(3).unwrap();
    assert_eq!(read(m.p("small")), "sma");
    fs::set_permissions(m.p("d"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(s.path("lower/d/g"), data(3)).unwrap();
    fs::set_permissions(m.p("d/g"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(is_metacopy(&s.path("upper/d/g")));
    fs::File::create(m.p("d/g")).unwrap();
    assert_eq!(fs::metadata(m.p("d/g")).unwrap().len(), 0);
    assert!(!is_metacopy(&s.path("upper/d/g")));
    assert_eq!(fs::metadata(m.p("d/g")).unwrap().mode() & 0o777, 0o600);
    m.unmount();

    // What Strata wrote reads the same after a fresh mount.
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    assert_eq!(fs::read(m.p("d/f")).unwrap(), want);
    assert_eq!(read(m.p("small")), "sma");
}

#[test]
fn renames_links_readers_and_removal() {
    let s = Scratch::new();
    branches(&s);
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    // A reader opened before the copy-up goes on reading; its fstat shows the new mode.
    let mut reader = fs::File::open(m.p("big")).unwrap();
    fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o604)).unwrap();
    assert!(is_metacopy(&s.path("upper/big")));
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, data(1));
    let mut late = fs::File::open(m.p("big")).unwrap();
    assert_eq!(late.metadata().unwrap().mode() & 0o777, 0o604);

    // Removed while open: the open file still reads its data.
    let lower_mode = fs::metadata(s.path("lower/big")).unwrap().mode();
    let kept =
        rustix::fs::open(m.p("big"), rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .unwrap();
    fs::remove_file(m.p("big")).unwrap();
    assert!(!m.p("big").exists());
    let mut got = Vec::new();
    late.read_to_end(&mut got).unwrap();
    assert_eq!(got, data(1));
    late.set_permissions(fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(late.metadata().unwrap().mode() & 0o777, 0o640);
    drop((reader, late));
    // Opened again through a descriptor, it reads its data too; changes reach its own
    // file, never the one below.
    let again = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&kept));
    assert_eq!(fs::read(&again).unwrap(), data(1));
    fs::set_permissions(&again, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&again).unwrap().mode() & 0o777, 0o600);
    fs::OpenOptions::new().append(true).open(&again).unwrap().write_all(b"!").unwrap();
    let mut want = data(1);
    want.push(b'!');
    assert_eq!(fs::read(&again).unwrap(), want);
    assert_eq!(fs::metadata(s.path("lower/big")).unwrap().mode(), lower_mode);
    assert_eq!(fs::read(s.path("lower/big")).unwrap(), data(1));
    drop(kept);

    // A rename and a hard link take the data along (the copy is completed first).
    fs::set_permissions(m.p("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(m.p("d/f"), m.p("moved")).unwrap();
    fs::hard_link(m.p("moved"), m.p("d/link")).unwrap();
    for name in ["moved", "d/link"] {
        assert_eq!(fs::read(m.p(name)).unwrap(), data(2), "{name}");
        assert!(!is_metacopy(&s.path("upper").join(name)), "{name}");
    }
    m.unmount();
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    assert_eq!(fs::read(m.p("moved")).unwrap(), data(2));
    assert!(!m.p("big").exists() && !m.p("d/f").exists());
}

#[test]
fn kernel_metadata_only_copies_read_through_strata() {
    let s = Scratch::new();
    branches(&s);
    s.mkdir("lower/e");
    fs::write(s.path("lower/e/g"), data(3)).unwrap();
    let kopts = options(&s, ",metacopy=on,redirect_dir=on");
    let k = KernelOverlay::new(&kopts, &s.path("kmnt"));
    fs::set_permissions(s.path("kmnt/big"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.path("kmnt/d/f"), fs::Permissions::from_mode(0o600)).unwrap();
    // The kernel records a renamed metadata-only copy's origin with a redirect: relative
    // (a sibling name) within one directory, which is itself renamed after.
    fs::rename(s.path("kmnt/d/f"), s.path("kmnt/d/renamed")).unwrap();
    fs::set_permissions(s.path("kmnt/e/g"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(s.path("kmnt/e/g"), s.path("kmnt/e/h")).unwrap();
    fs::rename(s.path("kmnt/e"), s.path("kmnt/e2")).unwrap();
    let before = tree(&s.path("kmnt"));
    k.unmount();
    assert!(is_metacopy(&s.path("upper/big")) && is_metacopy(&s.path("upper/d/renamed")));

    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    assert_eq!(tree(&m.mnt), before, "Strata over the kernel's metadata-only copies");
    assert_eq!(fs::read(m.p("e2/h")).unwrap(), data(3));
    fs::OpenOptions::new().append(true).open(m.p("d/renamed")).unwrap().write_all(b"!").unwrap();
    let mut want = data(2);
    want.push(b'!');
    assert_eq!(fs::read(m.p("d/renamed")).unwrap(), want);
    assert!(!is_metacopy(&s.path("upper/d/renamed")));
    m.unmount();

    // A metadata-only copy whose data is gone is an I/O error, not an empty file.
    fs::remove_file(s.path("lower/big")).unwrap();
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    assert_eq!(errno_of(fs::metadata(m.p("big"))), libc::EIO);
    assert_eq!(fs::read(m.p("d/renamed")).unwrap(), want);
}

#[test]
fn aufs_format_mounts_and_option_errors() {
    let s = Scratch::new();
    branches(&s);
    // The store's containers are AUFS-format mounts: the same marks serve there.
    let aufs = format!("br={}=rw:{}=ro+wh,metacopy=on", s.path("upper").display(), s.path("lower").display());
    let m = Mount::new(&[&aufs], &s.path("mnt"));
    fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(is_metacopy(&s.path("upper/big")));
    assert_eq!(fs::read(m.p("big")).unwrap(), data(1));
    fs::OpenOptions::new().append(true).open(m.p("big")).unwrap().write_all(b"!").unwrap();
    assert!(!is_metacopy(&s.path("upper/big")));
    let mut want = data(1);
    want.push(b'!');
    assert_eq!(fs::read(s.path("upper/big")).unwrap(), want);
    m.unmount();
    fs::remove_dir_all(s.path("upper")).unwrap();
    fs::create_dir(s.path("upper")).unwrap();

    let err = Mount::try_new(&[&options(&s, ",metacopy=maybe")], &s.path("mnt")).err().expect("refused");
    assert!(err.contains("metacopy=maybe"), "{err}");

    // Without it (the default), a metadata change copies the data as before.
    let m = Mount::new(&[&options(&s, "")], &s.path("mnt"));
    fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!is_metacopy(&s.path("upper/big")));
    assert_eq!(fs::read(s.path("upper/big")).unwrap(), data(1));
    m.unmount();

    // Such a mount does not read the marks: it shows the copy as it is on disk (kernel
    // overlayfs refuses it with EPERM instead).
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    fs::set_permissions(m.p("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
    m.unmount();
    let m = Mount::new(&[&options(&s, "")], &s.path("mnt"));
    assert_eq!(fs::metadata(m.p("d/f")).unwrap().blocks(), 0);
    assert_eq!(fs::read(m.p("big")).unwrap(), data(1));
}

/// Completing a copy keeps `security.capability` (a data write clears it); a symbolic
/// link is never a metadata-only copy (its rename and link work).
#[test]
fn capabilities_and_symlinks() {
    let s = Scratch::new();
    branches(&s);
    // cap_net_raw, effective (struct vfs_cap_data, revision 2).
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rustix::fs::setxattr(s.path("lower/big"), "security.capability", &cap, rustix::fs::XattrFlags::empty()).unwrap();
    std::os::unix::fs::symlink("big", s.path("lower/lnk")).unwrap();
    let m = Mount::new(&[&options(&s, ",metacopy=on")], &s.path("mnt"));
    let caps_of = |p: &Path| {
        let mut v = [0u8; 64];
        let n = rustix::fs::lgetxattr(p, "security.capability", &mut v[..]).unwrap();
        v[..n].to_vec()
    };
    fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(is_metacopy(&s.path("upper/big")));
    fs::rename(m.p("big"), m.p("renamed")).unwrap();
    assert!(!is_metacopy(&s.path("upper/renamed")));
    assert_eq!(caps_of(&m.p("renamed")), cap);
    assert_eq!(fs::read(m.p("renamed")).unwrap(), data(1));

    std::os::unix::fs::lchown(m.p("lnk"), Some(1), Some(1)).unwrap();
    assert!(fs::symlink_metadata(s.path("upper/lnk")).unwrap().file_type().is_symlink());
    fs::rename(m.p("lnk"), m.p("lnk2")).unwrap();
    fs::hard_link(m.p("lnk2"), m.p("lnk3")).unwrap();
    assert_eq!(fs::read_link(m.p("lnk3")).unwrap(), Path::new("big"));
    assert_eq!(fs::symlink_metadata(m.p("lnk3")).unwrap().uid(), 1);
}

/// A live branch change sees the readers of a metadata-only copy's data: the branch that
/// holds it cannot go while they read it.
#[test]
fn the_branch_holding_the_data_stays_while_read() {
    let s = Scratch::new();
    branches(&s);
    s.mkdir("extra");
    let aufs = format!(
        "br={}=rw:{}=ro:{}=ro,metacopy=on",
        s.path("upper").display(),
        s.path("extra").display(),
        s.path("lower").display()
    );
    let m = Mount::new(&[&aufs], &s.path("mnt"));
    fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(is_metacopy(&s.path("upper/big")));
    let held = fs::File::open(m.p("big")).unwrap();
    // Branches above it move: the reader's branch is renumbered with them.
    let out = m.change_branches(&["del", s.path("extra").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = m.change_branches(&["del", s.path("lower").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy") && err.contains("/big"), "{err}");
    let mut got = Vec::new();
    (&held).read_to_end(&mut got).unwrap();
    assert_eq!(got, data(1));
}
