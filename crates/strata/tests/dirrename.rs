//! Renaming directories that come from lower branches: O(1) by redirect, as on a plain
//! filesystem for everything that follows, kept across remount, and read back by kernel
//! overlayfs from an overlay-format upper dir.

mod common;

use std::fs;
use std::process::Command;

use common::*;

fn lower_tree(s: &Scratch, files: usize) {
    for i in 0..files {
        s.write("lower", &format!("tree/d{}/f{i}", i % 10), &format!("{i}\n"));
    }
    s.write("lower", "tree/sub/deep/leaf", "leaf\n");
    s.write("lower", "empty-lower-dir/.keep-not", "");
    fs::remove_file(s.path("lower/empty-lower-dir/.keep-not")).unwrap();
}

fn count_entries(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| 1 + if e.file_type().unwrap().is_dir() { count_entries(&e.path()) } else { 0 })
        .sum()
}

#[test]
fn rename_a_lower_directory_of_thousands_of_files() {
    for style in ["aufs", "overlay"] {
        let s = Scratch::new();
        lower_tree(&s, 3000);
        let lower_before = raw_fingerprint(&s.path("lower"));
        s.mkdir("upper");
        s.mkdir("work");
        let opts = if style == "aufs" {
            format!("br={}=rw:{}=ro+wh", s.path("upper").display(), s.path("lower").display())
        } else {
            format!(
                "lowerdir={},upperdir={},workdir={}",
                s.path("lower").display(),
                s.path("upper").display(),
                s.path("work").display()
            )
        };
        let m = Mount::new(&[&opts], &s.path("mnt"));
        let before = tree(&m.p("tree"));
        let ino = fs::metadata(m.p("tree/sub")).unwrap().ino();
        fs::rename(m.p("tree"), m.p("moved")).unwrap();
        assert!(!m.p("tree").exists(), "{style}: old name gone");
        assert_eq!(tree(&m.p("moved")), before, "{style}: same tree under the new name");
        assert_eq!(fs::metadata(m.p("moved/sub")).unwrap().ino(), ino, "{style}: numbers follow");
        // Only the directory itself was copied up, not its 3,000 files.
        assert!(
            count_entries(&s.path("upper")) < 10,
            "{style}: upper holds {} entries",
            count_entries(&s.path("upper"))
        );

        // Everything a plain filesystem does, afterwards.
        fs::write(m.p("moved/d1/f1"), "changed\n").unwrap();
        fs::write(m.p("moved/new"), "new\n").unwrap();
        fs::remove_file(m.p("moved/d2/f2")).unwrap();
        fs::rename(m.p("moved/sub"), m.p("moved/sub2")).unwrap(); // nested, itself lower
        fs::rename(m.p("moved/sub2/deep"), m.p("deep-out")).unwrap(); // out to another parent
        assert_eq!(read(m.p("deep-out/leaf")), "leaf\n");
        fs::create_dir(m.p("tree")).unwrap(); // re-create the old name: fresh and empty
        assert_eq!(fs::read_dir(m.p("tree")).unwrap().count(), 0);
        fs::remove_dir(m.p("tree")).unwrap();
        fs::rename(m.p("moved"), m.p("tree")).unwrap(); // back to the old name
        assert_eq!(read(m.p("tree/d1/f1")), "changed\n");
        assert_eq!(read(m.p("tree/new")), "new\n");
        assert!(!m.p("tree/d2/f2").exists());
        assert_eq!(read(m.p("tree/d3/f3")), "3\n");
        // Over an empty merged directory from the lower branch.
        fs::rename(m.p("tree/d4"), m.p("empty-lower-dir")).unwrap();
        assert_eq!(read(m.p("empty-lower-dir/f4")), "4\n");
        assert!(!m.p("tree/d4").exists());
        let seen = tree(&m.mnt);
        m.unmount();

        // Kept on disk: the same tree after remounting.
        let m = Mount::new(&[&opts], &s.path("mnt"));
        assert_eq!(tree(&m.mnt), seen, "{style}: remount shows the same tree");
        // Deleting a renamed directory works as anywhere else.
        fs::remove_dir_all(m.p("deep-out")).unwrap();
        assert!(!m.p("deep-out").exists());
        let seen = tree(&m.mnt);
        m.unmount();
        assert_eq!(raw_fingerprint(&s.path("lower")), lower_before, "{style}: the lower branch never changes");

        if style == "overlay" {
            // Kernel overlayfs follows the redirects Strata wrote.
            let k = s.mkdir("kmnt");
            let opts = format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=on,index=off,metacopy=off",
                s.path("lower").display(),
                s.path("upper").display(),
                s.path("work").display()
            );
            let out = Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&k).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let kt = tree(&k);
            let _ = Command::new("umount").arg(&k).status();
            assert_eq!(kt, seen, "kernel overlayfs reads the renames the same way");
        }
    }
}

use std::os::unix::fs::MetadataExt;

/// A layer cannot point the union outside its branches with a crafted redirect, nor
/// through a symlink on the way to a redirect target.
#[test]
fn hostile_redirects_are_ignored() {
    let s = Scratch::new();
    s.write("low", "d/inner", "mine\n");
    s.write("low", "real/x", "x\n");
    std::os::unix::fs::symlink("/", s.path("low/link")).unwrap();
    s.mkdir("top/evil");
    s.mkdir("top/sneaky");
    for (dir, target) in [("evil", "/../../../../../../etc"), ("sneaky", "/link/etc")] {
        rustix::fs::lsetxattr(
            s.path("top").join(dir),
            "trusted.overlay.redirect",
            target.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let opts = format!("lowerdir={}:{}", s.path("top").display(), s.path("low").display());
    let m = Mount::new(&[&opts], &s.path("mnt"));
    assert_eq!(fs::read_dir(m.p("evil")).unwrap().count(), 0, "no host /etc through a ../ redirect");
    assert_eq!(fs::read_dir(m.p("sneaky")).unwrap().count(), 0, "no redirect through a symlink");
    assert_eq!(read(m.p("d/inner")), "mine\n");
}

/// A file renamed while a reader holds it open through passthrough opens fine afterwards.
#[test]
fn rename_under_an_open_reader() {
    let s = Scratch::new();
    s.write("low", "app", "binary\n");
    s.mkdir("up");
    let br = format!("br={}=rw:{}=ro", s.path("up").display(), s.path("low").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    let reader = fs::File::open(m.p("app")).unwrap();
    fs::rename(m.p("app"), m.p("app.old")).unwrap();
    assert_eq!(read(m.p("app.old")), "binary\n");
    fs::hard_link(m.p("app.old"), m.p("app2")).unwrap();
    assert_eq!(read(m.p("app2")), "binary\n");
    drop(reader);
    // A 0/0 device is a whiteout: users cannot make one.
    let r = rustix::fs::mknodat(
        rustix::fs::CWD,
        m.p("wh"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    );
    assert_eq!(r, Err(rustix::io::Errno::PERM));
}
