//! Hard links survive copy-up: every name of a multiply-linked lower file stays one file,
//! with one inode number and an exact link count before, during and after copy-up.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

fn nlink(p: &std::path::Path) -> u64 {
    fs::symlink_metadata(p).unwrap().nlink()
}

#[test]
fn hard_link_farm_written_through_different_names() {
    for style in ["aufs", "overlay"] {
        let s = Scratch::new();
        // One file with five names in four directories, in the lowest layer.
        let f = s.write("low", "a/x", "original\n");
        for name in ["a/y", "b/z", "c/d/w", "top"] {
            let p = s.path("low").join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::hard_link(&f, p).unwrap();
        }
        // A second farm: three names, one of them whited out by the middle layer.
        let g = s.write("low", "g1", "g\n");
        fs::hard_link(&g, s.path("low/g2")).unwrap();
        fs::hard_link(&g, s.path("low/g3")).unwrap();
        s.mkdir("mid");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            s.path("mid/g3"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        s.mkdir("up");
        s.mkdir("work");
        let opts = if style == "aufs" {
            format!(
                "br={}=rw:{}=ro+wh:{}=ro+wh",
                s.path("up").display(),
                s.path("mid").display(),
                s.path("low").display()
            )
        } else {
            format!(
                "lowerdir={}:{},upperdir={},workdir={}",
                s.path("mid").display(),
                s.path("low").display(),
                s.path("up").display(),
                s.path("work").display()
            )
        };
        let low_before = raw_fingerprint(&s.path("low"));
        let m = Mount::new(&[&opts], &s.path("mnt"));
        let names = ["a/x", "a/y", "b/z", "c/d/w", "top"];

        // Before copy-up: one inode number, the count of visible names.
        let ino = fs::metadata(m.p("b/z")).unwrap().ino();
        for n in names {
            assert_eq!(fs::metadata(m.p(n)).unwrap().ino(), ino, "{style}: {n} shares the inode");
            assert_eq!(nlink(&m.p(n)), 5, "{style}: {n}");
        }
        assert_eq!(nlink(&m.p("g1")), 2, "{style}: a whited-out name does not count");

        // Write through one name: every name sees it; the count stays exact.
        fs::write(m.p("c/d/w"), "written via c/d/w\n").unwrap();
        for n in names {
            assert_eq!(read(m.p(n)), "written via c/d/w\n", "{style}: {n}");
            assert_eq!(nlink(&m.p(n)), 5, "{style}: {n} after copy-up");
            assert_eq!(fs::metadata(m.p(n)).unwrap().ino(), ino, "{style}: {n} keeps st_ino");
        }
        assert_eq!(fs::metadata(s.path("up/top")).unwrap().nlink(), 5, "{style}: one file in the upper");

        // Unlink some names, link a new one.
        fs::remove_file(m.p("a/x")).unwrap();
        fs::remove_file(m.p("top")).unwrap();
        assert_eq!(nlink(&m.p("b/z")), 3, "{style}");
        fs::hard_link(m.p("b/z"), m.p("b/new")).unwrap();
        assert_eq!(nlink(&m.p("a/y")), 4, "{style}");
        fs::write(m.p("b/new"), "via new\n").unwrap();
        assert_eq!(read(m.p("a/y")), "via new\n", "{style}");

        // link() to a lower file that was never written, then write through the new name.
        fs::hard_link(m.p("g2"), m.p("g-new")).unwrap();
        assert_eq!(nlink(&m.p("g1")), 3, "{style}: g1, g2, g-new");
        fs::write(m.p("g-new"), "g changed\n").unwrap();
        assert_eq!(read(m.p("g1")), "g changed\n", "{style}");
        assert_eq!(read(m.p("g2")), "g changed\n", "{style}");
        assert!(!m.p("g3").exists());
        m.unmount();
        assert_eq!(raw_fingerprint(&s.path("low")), low_before, "{style}: the lower layer is untouched");

        // After a remount the names are still one file.
        let m = Mount::new(&[&opts], &s.path("mnt"));
        assert_eq!(nlink(&m.p("b/z")), 4, "{style}");
        assert_eq!(fs::metadata(m.p("a/y")).unwrap().ino(), fs::metadata(m.p("c/d/w")).unwrap().ino(), "{style}");
        m.unmount();
    }
}
