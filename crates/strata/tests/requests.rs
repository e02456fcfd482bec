//! What reaches the daemon: the kernel's caches stay in use. Read from the daemon's own
//! request log (fuser logs every request at debug level), through a real mount.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;

/// `upper` (rw) over `lower` (ro) of `s`, mounted at `mnt` by a daemon that logs every
/// request it receives to the file returned.
fn logged_mount(s: &Scratch) -> (Mount, PathBuf) {
    let mnt = s.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let log = s.path("daemon.log");
    let br = format!("br={}=rw:{}=ro", s.path("upper").display(), s.path("lower").display());
    let out = run(strata()
        .env("STRATA_LOG", "fuser::request=debug")
        .args(["mount", "--log-file"])
        .arg(&log)
        .args(["-o", &br])
        .arg(&mnt));
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    (Mount { mnt }, log)
}

/// Empties the log (the daemon appends), so that `requests` shows what comes next.
fn forget_requests(log: &Path) {
    fs::File::options().write(true).open(log).unwrap().set_len(0).unwrap();
}

/// The requests the daemon received since the log was last emptied, one line each.
fn requests(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).expect("daemon log");
    text.lines().filter(|l| l.contains("fuser::request")).map(str::to_owned).collect()
}

/// `ls -l` of a directory, in Rust and in its order: the whole listing first, then a stat
/// of every entry.
fn list_and_stat(dir: &Path) -> usize {
    let paths: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    for p in &paths {
        assert!(fs::symlink_metadata(p).unwrap().ino() > 0);
    }
    paths.len()
}

#[test]
fn listings_need_no_opendir_nor_a_lookup_per_entry_and_come_back_from_the_cache() {
    let s = Scratch::new();
    s.mkdir("upper");
    for i in 0..600 {
        s.write("lower", &format!("dir/file{i:03}"), "x");
    }
    s.write("lower", "dir/sub/inner", "y");
    let (m, log) = logged_mount(&s);

    // First pass: the listing arrives with attributes (readdirplus on every request of the
    // pass, 600 entries need several), so stat'ing the entries asks nothing more.
    assert_eq!(list_and_stat(&m.p("dir")), 601);
    let first = requests(&log);
    let count = |reqs: &[String], op: &str| reqs.iter().filter(|l| l.contains(&format!(" {op} "))).count();
    assert!(count(&first, "READDIRPLUS") >= 2, "a 600-entry listing takes several requests: {first:#?}");
    assert_eq!(count(&first, "READDIR"), 0, "plain readdir: {first:#?}");
    let entry_lookups: Vec<&String> = first.iter().filter(|l| l.contains("LOOKUP name \"file")).collect();
    assert!(entry_lookups.is_empty(), "a lookup per listed entry: {entry_lookups:#?}");
    // OPENDIR is declined once; the kernel never sends it (nor RELEASEDIR) again.
    assert!(count(&first, "OPENDIR") <= 1, "{first:#?}");
    assert_eq!(count(&first, "RELEASEDIR"), 0);

    // Second pass: names, attributes and the listing itself come from the kernel's caches.
    forget_requests(&log);
    assert_eq!(list_and_stat(&m.p("dir")), 601);
    let second = requests(&log);
    for op in ["OPENDIR", "RELEASEDIR", "READDIR", "READDIRPLUS", "LOOKUP"] {
        assert_eq!(count(&second, op), 0, "{op} on a cached listing: {second:#?}");
    }
    // Only the directory's own attributes may be asked again (reading it made its atime stale).
    assert!(second.iter().all(|l| l.contains(" GETATTR ")), "{second:#?}");

    // A change through the mount drops the cached listing: the new name is there at once.
    fs::write(m.p("dir/new"), "z").unwrap();
    assert_eq!(list_and_stat(&m.p("dir")), 602);
    m.unmount();
}

/// Before each write the kernel checks whether privileges must be dropped; under
/// `FUSE_HANDLE_KILLPRIV_V2` it remembers, after the first, that a file has none to drop,
/// so a stream of small writes stays in the kernel (passthrough) instead of asking the
/// daemon for `security.capability` every time.
#[test]
fn small_writes_ask_for_security_capability_at_most_once() {
    let s = Scratch::new();
    s.mkdir("upper");
    s.write("lower", "old", "lower file\n");
    let (m, log) = logged_mount(&s);
    for name in ["new", "old"] {
        forget_requests(&log);
        let before = fs::metadata(m.p(name)).map_or(0, |md| md.len());
        let mut f = fs::OpenOptions::new().create(true).append(true).open(m.p(name)).unwrap();
        for _ in 0..200 {
            std::io::Write::write_all(&mut f, &[7u8; 4096]).unwrap();
        }
        drop(f);
        let asked = requests(&log).iter().filter(|l| l.contains("security.capability")).count();
        assert!(asked <= 1, "{name}: {asked} security.capability queries for 200 writes");
        assert_eq!(fs::metadata(m.p(name)).unwrap().len(), before + 200 * 4096);
    }
    m.unmount();
}
