//! Directory times across copy-up: ancestors made in the upper branch by a copy-up carry
//! the lower directories' times, and a directory's mtime changes only when an entry in
//! it is created, removed or renamed through the union; side by side with kernel
//! overlayfs over the same lower tree.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn mtimes(root: &Path) -> Vec<i64> {
    ["a", "a/b"].iter().map(|p| std::fs::metadata(root.join(p)).unwrap().mtime()).collect()
}

/// A lower tree `a/b/f` whose directories are dated 2020-01-01.
fn lower(s: &Scratch) {
    s.write("lower", "a/b/f", "x\n");
    s.write("lower", "a/b/g", "y\n");
    let l = s.path("lower");
    sh(Command::new("touch").args(["-h", "-d", "2020-01-01 00:00:00"]).arg(l.join("a/b")).arg(l.join("a")));
}

const JAN_2020: i64 = 1_577_836_800;

#[test]
fn copy_up_keeps_the_ancestors_times_as_kernel_overlayfs_does() {
    for style in ["strata-aufs", "strata-overlay", "kernel"] {
        let s = Scratch::new();
        lower(&s);
        let (upper, work, mnt) = (s.mkdir("upper"), s.mkdir("work"), s.mkdir("mnt"));
        let lower = s.path("lower");
        let overlay = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let mount = || -> Option<Mount> {
            match style {
                "strata-aufs" => {
                    Some(Mount::new(&[&format!("br={}=rw:{}=ro+wh", upper.display(), lower.display())], &mnt))
                }
                "strata-overlay" => Some(Mount::new(&[&overlay], &mnt)),
                _ => {
                    sh(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &overlay]).arg(&mnt));
                    None
                }
            }
        };
        let unmount = |m: Option<Mount>| match m {
            Some(m) => m.unmount(),
            None => {
                sh(Command::new("umount").arg(&mnt));
            }
        };
        let m = mount();
        // A write to a lower file: copy-up of it and of its two ancestors.
        sh(Command::new("sh").arg("-c").arg(format!("echo more >> {}/a/b/f", mnt.display())));
        assert_eq!(mtimes(&mnt), [JAN_2020, JAN_2020], "{style}: at once");
        unmount(m);
        // Read again from disk (no attribute cache can hide it).
        assert_eq!(mtimes(&upper), [JAN_2020, JAN_2020], "{style}: in the upper branch");
        let m = mount();
        assert_eq!(mtimes(&mnt), [JAN_2020, JAN_2020], "{style}: after remount");
        // A new entry in a/b: its mtime moves, a's does not.
        std::fs::write(mnt.join("a/b/new"), "n").unwrap();
        let t = mtimes(&mnt);
        assert_eq!(t[0], JAN_2020, "{style}");
        assert!(t[1] > JAN_2020, "{style}: a/b changed by a create");
        unmount(m);
    }
}
