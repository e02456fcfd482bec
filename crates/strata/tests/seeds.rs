//! Every exercise of the seed texts (../shared/seeds), replayed through a real mount.

mod common;

use std::fs;
use std::io::Write;

use common::*;

/// Seed 000: container-layer over image-layer-high over image-layer-low.
#[test]
fn seed_000_aufs_three_layers() {
    let s = Scratch::new();
    s.mkdir("container-layer");
    s.write("image-layer-high", "image-layer-high.txt", "I am image layer high.\n");
    s.write("image-layer-high", "x.txt", "x.txt from image layer high.\n");
    s.write("image-layer-low", "image-layer-low.txt", "I am image layer low.\n");
    s.write("image-layer-low", "x.txt", "x.txt from image layer low.\n");
    let (high, low) = (raw_fingerprint(&s.path("image-layer-high")), raw_fingerprint(&s.path("image-layer-low")));
    let dirs = format!(
        "dirs={}:{}:{}",
        s.path("container-layer").display(),
        s.path("image-layer-high").display(),
        s.path("image-layer-low").display()
    );
    let m = Mount::new(&[&dirs], &s.path("aufs-mnt"));

    // The upper layer covers the lower one.
    assert_eq!(names(&m.mnt), ["image-layer-high.txt", "image-layer-low.txt", "x.txt"]);
    assert_eq!(read(m.p("x.txt")), "x.txt from image layer high.\n");

    // The branches, as /sys/fs/aufs/si_*/br* shows them.
    let out = run(strata().arg("branches").arg(&m.mnt));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("{}=rw", s.path("container-layer").display()));
    assert_eq!(lines[1], format!("{}=ro", s.path("image-layer-high").display()));
    assert_eq!(lines[2], format!("{}=ro", s.path("image-layer-low").display()));
    assert!(lines[3].starts_with("si_") && lines[3].len() == 19, "mount id line: {}", lines[3]);

    // A new file lands in the read-write layer.
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.p("container-layer.txt"))
        .unwrap()
        .write_all(b"I am container layer.\n")
        .unwrap();
    assert_eq!(read(m.p("container-layer.txt")), "I am container layer.\n");
    assert_eq!(read(s.path("container-layer/container-layer.txt")), "I am container layer.\n");

    // Copy-on-write: the lower file is copied up, the lower layer unchanged.
    fs::OpenOptions::new().append(true).open(m.p("image-layer-low.txt")).unwrap().write_all(b"modify txt\n").unwrap();
    assert_eq!(read(m.p("image-layer-low.txt")), "I am image layer low.\nmodify txt\n");
    assert_eq!(read(s.path("image-layer-low/image-layer-low.txt")), "I am image layer low.\n");
    assert_eq!(read(s.path("container-layer/image-layer-low.txt")), "I am image layer low.\nmodify txt\n");

    // Deletion by whiteout.
    assert_eq!(read(m.p("image-layer-high.txt")), "I am image layer high.\n");
    fs::remove_file(m.p("image-layer-high.txt")).unwrap();
    assert_eq!(errno_of(fs::read(m.p("image-layer-high.txt"))), libc::ENOENT);
    assert_eq!(read(s.path("image-layer-high/image-layer-high.txt")), "I am image layer high.\n");
    assert!(s.path("container-layer/.wh.image-layer-high.txt").exists());
    // Whiteouts and the work dir never show through the union.
    let listed = names(&m.mnt);
    assert!(listed.iter().all(|n| !n.starts_with(".wh.")), "{listed:?}");

    m.unmount();
    assert_eq!(raw_fingerprint(&s.path("image-layer-high")), high, "a ro branch changed");
    assert_eq!(raw_fingerprint(&s.path("image-layer-low")), low, "a ro branch changed");
}

/// Seed 002: four image layers under a container layer.
#[test]
fn seed_002_four_image_layers() {
    let s = Scratch::new();
    s.write("container-layer", "container-layer.txt", "I am container layer\n");
    for n in 1..=4 {
        s.write(&format!("image-layer{n}"), &format!("image-layer{n}.txt"), &format!("I am image layer {n}\n"));
    }
    let dirs = "dirs=./container-layer:./image-layer4:./image-layer3:./image-layer2:./image-layer1";
    // Relative branch paths, as in the seed: resolved against the current directory.
    let mnt = s.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let out = run(strata().current_dir(s.dir.path()).args(["mount", "-o", dirs, "./mnt"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = Mount { mnt };
    let listed = names(&m.mnt);
    assert_eq!(
        listed,
        ["container-layer.txt", "image-layer1.txt", "image-layer2.txt", "image-layer3.txt", "image-layer4.txt"]
    );
    let text = String::from_utf8(run(strata().arg("branches").arg(&m.mnt)).stdout).unwrap();
    let perms: Vec<&str> = text.lines().take(5).map(|l| l.rsplit('=').next().unwrap()).collect();
    assert_eq!(perms, ["rw", "ro", "ro", "ro", "ro"]);
    assert!(text.lines().next().unwrap().starts_with(&s.path("container-layer").display().to_string()));

    fs::OpenOptions::new()
        .append(true)
        .open(m.p("image-layer4.txt"))
        .unwrap()
        .write_all(b"\nwrite to mnt's image-layer1.txt\n")
        .unwrap();
    assert_eq!(read(m.p("image-layer4.txt")), "I am image layer 4\n\nwrite to mnt's image-layer1.txt\n");
    assert_eq!(read(s.path("image-layer4/image-layer4.txt")), "I am image layer 4\n");
    let mut upper: Vec<String> = fs::read_dir(s.path("container-layer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(".wh."))
        .collect();
    upper.sort();
    assert_eq!(upper, ["container-layer.txt", "image-layer4.txt"]);
}

/// Seed 003: the read, write and delete rules of AUFS, including deleting a lower
/// directory and renaming a lower file.
#[test]
fn seed_003_read_write_delete_rules() {
    let s = Scratch::new();
    s.write("image", "shared.txt", "image\n");
    s.write("image", "only-image.txt", "image only\n");
    s.write("image", "dir/a", "a\n");
    s.write("image", "dir/sub/b", "b\n");
    s.write("container", "shared.txt", "container\n");
    let img = raw_fingerprint(&s.path("image"));
    let br = format!("br={}=rw:{}=ro+wh", s.path("container").display(), s.path("image").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    // Read: the container layer wins; otherwise the search goes down.
    assert_eq!(read(m.p("shared.txt")), "container\n");
    assert_eq!(read(m.p("only-image.txt")), "image only\n");
    // Write to a container-layer file: in place.
    fs::write(m.p("shared.txt"), "changed\n").unwrap();
    assert_eq!(read(s.path("container/shared.txt")), "changed\n");
    // Delete a container-layer file that also exists below: whiteout hides the lower one.
    fs::remove_file(m.p("shared.txt")).unwrap();
    assert!(!m.p("shared.txt").exists());
    assert!(s.path("container/.wh.shared.txt").exists());
    assert!(!s.path("container/shared.txt").exists());
    // Delete a lower directory tree.
    fs::remove_dir_all(m.p("dir")).unwrap();
    assert!(!m.p("dir").exists());
    assert!(s.path("container/.wh.dir").exists());
    // Re-create it: a fresh, opaque directory (nothing from below shows).
    fs::create_dir(m.p("dir")).unwrap();
    assert_eq!(fs::read_dir(m.p("dir")).unwrap().count(), 0);
    assert!(s.path("container/dir/.wh..wh..opq").exists());
    assert!(!s.path("container/.wh.dir").exists());
    // Rename of a lower file: copied up, the old name whited out.
    fs::rename(m.p("only-image.txt"), m.p("renamed.txt")).unwrap();
    assert_eq!(read(m.p("renamed.txt")), "image only\n");
    assert!(!m.p("only-image.txt").exists());
    m.unmount();
    assert_eq!(raw_fingerprint(&s.path("image")), img);
}

/// Seed 004: `br=image1:image2` (image1 rw, image2 ro) and explicit ro / rw mounts.
#[test]
fn seed_004_br_default_ro_and_rw_mounts() {
    let s = Scratch::new();
    s.write("image1", "001", "image1\n");
    s.write("image1", "002", "image1\n");
    s.write("image2", "002", "image2\n");
    s.write("image1", "003", "image2\n"); // as in the seed: `echo image2 > image1/003`
    s.write("image2", "003", "image2\n");
    let br = format!("br={}:{}", s.path("image1").display(), s.path("image2").display());
    let m = Mount::new(&[&br], &s.path("container"));
    assert_eq!(names(&m.mnt), ["001", "002", "003"]);
    assert_eq!(read(m.p("002")), "image1\n");
    fs::OpenOptions::new().append(true).open(m.p("001")).unwrap().write_all(b"container\n").unwrap();
    assert_eq!(read(s.path("image1/001")), "image1\ncontainer\n", "image1 is rw: changed in place");
    m.unmount();

    // A file only in image2 is copied up into image1 on write.
    fs::remove_file(s.path("image1/003")).unwrap();
    let m = Mount::new(&[&br], &s.path("container"));
    fs::OpenOptions::new().append(true).open(m.p("003")).unwrap().write_all(b"container\n").unwrap();
    assert_eq!(read(s.path("image2/003")), "image2\n");
    assert_eq!(read(s.path("image1/003")), "image2\ncontainer\n");
    m.unmount();

    // Read-only mount: every branch ro, writes get EROFS.
    let ro = format!("br={}=ro:{}=ro", s.path("image1").display(), s.path("image2").display());
    let before = raw_fingerprint(s.dir.path());
    let m = Mount::new(&[&ro], &s.path("container"));
    assert_eq!(read(m.p("002")), "image1\n");
    assert_eq!(errno_of(fs::write(m.p("new"), "x")), libc::EROFS);
    assert_eq!(errno_of(fs::remove_file(m.p("001"))), libc::EROFS);
    assert_eq!(errno_of(fs::OpenOptions::new().append(true).open(m.p("001"))), libc::EROFS);
    m.unmount();
    assert_eq!(raw_fingerprint(s.dir.path()), before);

    // Both rw: a write to a file of image2 happens in image2.
    let rw = format!("br={}=rw:{}=rw", s.path("image1").display(), s.path("image2").display());
    fs::remove_file(s.path("image1/003")).unwrap();
    let m = Mount::new(&[&rw], &s.path("container"));
    fs::OpenOptions::new().append(true).open(m.p("003")).unwrap().write_all(b"rw\n").unwrap();
    assert_eq!(read(s.path("image2/003")), "image2\nrw\n");
    assert!(!s.path("image1/003").exists());
    m.unmount();
}

/// A branch above the writable one cannot be changed: EROFS, never a silent no-op.
#[test]
fn entries_above_the_writable_branch_are_read_only() {
    let s = Scratch::new();
    s.write("top", "f", "top");
    s.write("mid", "g", "mid");
    let br = format!("br={}=ro:{}=rw", s.path("top").display(), s.path("mid").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    assert_eq!(errno_of(fs::remove_file(m.p("f"))), libc::EROFS);
    assert_eq!(errno_of(fs::OpenOptions::new().append(true).open(m.p("f"))), libc::EROFS);
    assert_eq!(read(m.p("f")), "top");
    // The writable branch below still takes changes and new files.
    fs::write(m.p("g"), "changed").unwrap();
    fs::write(m.p("h"), "new").unwrap();
    assert_eq!(read(s.path("mid/g")), "changed");
    assert_eq!(read(s.path("mid/h")), "new");
}
