//! Live branch changes (AUFS remount add/del/mod/append/prepend), seen at once through
//! the mount, refused with EBUSY naming the file while files on the branch are open.

mod common;

use std::fs;
use std::io::Write;

use common::*;

fn branches(m: &Mount) -> Vec<String> {
    let out = run(strata().arg("branches").arg(&m.mnt));
    String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.starts_with("si_")).map(str::to_string).collect()
}

#[test]
fn add_del_mod_on_a_live_mount() {
    let s = Scratch::new();
    s.mkdir("up");
    s.write("base", "f", "base\n");
    s.write("base", "dir/b", "b\n");
    s.write("extra", "new-file", "extra\n");
    s.write("extra", "f", "extra shadows base\n");
    s.write("extra", "dir/e", "e\n");
    s.write("wh", ".wh.f", "");
    let (up, base, extra, wh) = (s.path("up"), s.path("base"), s.path("extra"), s.path("wh"));
    let br = format!("br={}=rw:{}=ro", up.display(), base.display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    assert!(!m.p("new-file").exists(), "a negative entry the kernel now caches");
    assert_eq!(fs::read_dir(m.p("dir")).unwrap().count(), 1);

    // add: between the writable branch and base; visible at once.
    let out = m.change_branches(&["add", "--at", "1", &format!("{}=ro", extra.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        branches(&m),
        [format!("{}=rw", up.display()), format!("{}=ro", extra.display()), format!("{}=ro", base.display())]
    );
    assert_eq!(read(m.p("new-file")), "extra\n");
    assert_eq!(read(m.p("f")), "extra shadows base\n");
    assert_eq!(fs::read_dir(m.p("dir")).unwrap().count(), 2);

    // del refused while a file on the branch is open; the message names the file.
    let held = fs::File::open(m.p("new-file")).unwrap();
    let out = m.change_branches(&["del", extra.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy") && err.contains("/new-file"), "{err}");
    drop(held);
    let out = m.change_branches(&["del", extra.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!m.p("new-file").exists());
    assert_eq!(read(m.p("f")), "base\n");

    // append / prepend; mod ro -> ro+wh makes a branch's whiteouts count.
    assert!(m.change_branches(&["append", &format!("{}=ro", extra.display())]).status.success());
    assert_eq!(read(m.p("dir/e")), "e\n");
    assert!(m.change_branches(&["add", "--at", "1", &format!("{}=ro", wh.display())]).status.success());
    assert_eq!(read(m.p("f")), "base\n", "plain ro ignores its whiteouts");
    assert!(m.change_branches(&["mod", &format!("{}=ro+wh", wh.display())]).status.success());
    assert!(!m.p("f").exists(), "ro+wh honours them");
    assert!(m.change_branches(&["mod", &format!("{}=ro", wh.display())]).status.success());
    assert_eq!(read(m.p("f")), "base\n");

    // rw -> ro refused while a file on it is open for writing; then writes get EROFS.
    let mut w = fs::OpenOptions::new().create(true).truncate(true).write(true).open(m.p("writing")).unwrap();
    let out = m.change_branches(&["mod", &format!("{}=ro", up.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/writing is open for writing"));
    w.write_all(b"x").unwrap();
    drop(w);
    assert!(m.change_branches(&["mod", &format!("{}=ro", up.display())]).status.success());
    assert_eq!(errno_of(fs::write(m.p("another"), "y")), libc::EROFS);
    assert_eq!(read(m.p("writing")), "x");
    // ... and back to rw (it holds the work dir).
    assert!(m.change_branches(&["mod", &format!("{}=rw", up.display())]).status.success());
    fs::write(m.p("another"), "y").unwrap();

    // Bad changes: clear errors, nothing changed.
    let before = branches(&m);
    for (args, msg) in [
        (vec!["del".to_string(), up.display().to_string()], "writable branch cannot be deleted"),
        (vec!["del".to_string(), s.path("nowhere").display().to_string()], "not a branch"),
        (vec!["add".to_string(), format!("{}=ro", base.display())], "already a branch"),
        (vec!["add".to_string(), format!("{}=rw", s.mkdir("other").display())], "writable branch cannot be added"),
    ] {
        let out = m.change_branches(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(branches(&m), before);
}
