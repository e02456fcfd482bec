//! The command line: bad input is refused with one clear line and exit status 2, with
//! nothing mounted and nothing changed; background, signals and dead daemons.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

fn refused(opts: &[&str], mnt: &std::path::Path, expect: &str) {
    let mut cmd = strata();
    cmd.arg("mount");
    for o in opts {
        cmd.arg("-o").arg(o);
    }
    let out = run(cmd.arg(mnt));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status for {opts:?}: {err}");
    assert!(err.contains(expect), "error for {opts:?} should mention {expect:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!is_mounted(mnt), "nothing mounted for {opts:?}");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let s = Scratch::new();
    s.write("a", "f", "a");
    s.write("b", "f", "b");
    let mnt = s.mkdir("mnt");
    let inside = s.mkdir("a/mnt");
    let before = raw_fingerprint(s.dir.path());
    let a = s.path("a").display().to_string();
    let b = s.path("b").display().to_string();
    let missing = s.path("missing").display().to_string();
    refused(&[&format!("br={a}:{missing}")], &mnt, "missing: No such file or directory");
    refused(&[&format!("br={a}:{}", s.path("a/f").display())], &mnt, "not a directory");
    refused(&[&format!("br={a}:{a}")], &mnt, "given twice");
    refused(&[&format!("br={a}"), "frobnicate"], &mnt, "unknown mount option 'frobnicate'");
    refused(&[&format!("br={a}=rx")], &mnt, "bad branch permission 'rx'");
    refused(&[&format!("br={a}"), "fsname=two words"], &mnt, "unknown mount option 'fsname=two words'");
    refused(&[&format!("lowerdir={a},upperdir={b}")], &mnt, "workdir");
    refused(&[], &mnt, "no branches");
    // A mountpoint inside a branch would make the union look up names in itself.
    refused(&[&format!("br={a}:{b}")], &inside, "is inside branch");
    // A missing mountpoint.
    refused(&[&format!("br={a}")], &s.path("nowhere"), "nowhere");
    assert_eq!(raw_fingerprint(s.dir.path()), before, "bad input changed something on disk");
}

#[test]
fn read_only_when_no_branch_is_writable() {
    let s = Scratch::new();
    s.write("l1", "f", "one");
    s.write("l2", "g", "two");
    let lo = format!("lowerdir={}:{}", s.path("l1").display(), s.path("l2").display());
    s.mkdir("mnt");
    let before = raw_fingerprint(s.dir.path());
    let m = Mount::new(&[&lo], &s.path("mnt"));
    assert_eq!(read(m.p("f")), "one");
    assert_eq!(read(m.p("g")), "two");
    assert_eq!(errno_of(fs::write(m.p("h"), "x")), libc::EROFS);
    assert_eq!(errno_of(fs::create_dir(m.p("d"))), libc::EROFS);
    m.unmount();
    assert_eq!(raw_fingerprint(s.dir.path()), before);
}

fn daemon_pid(mnt: &std::path::Path) -> i32 {
    // The daemon is the strata process whose command line names this mountpoint.
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("strata") && cmd.contains(" mount ") && cmd.trim_end().ends_with(mnt.to_str().unwrap()) {
            return pid;
        }
    }
    panic!("no daemon for {}", mnt.display());
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_unmounts_cleanly() {
    let s = Scratch::new();
    s.write("a", "f", "a");
    let br = format!("br={}", s.path("a").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    let pid = daemon_pid(&m.mnt);
    // SAFETY: sending a signal to a process we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_until("unmount after SIGTERM", || !is_mounted(&m.mnt));
    wait_until("daemon exit", || !std::path::Path::new(&format!("/proc/{pid}")).exists());
    std::mem::forget(m);
}

#[test]
fn umount_cleans_a_dead_daemons_mount() {
    let s = Scratch::new();
    s.write("a", "f", "a");
    let br = format!("br={}", s.path("a").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    let pid = daemon_pid(&m.mnt);
    // SAFETY: killing a process we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_until("daemon death", || matches!(fs::metadata(m.p("f")), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN)));
    let out = run(strata().arg("umount").arg(&m.mnt));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&m.mnt));
    // The same branches mount again.
    let m2 = Mount::new(&[&br], &m.mnt);
    assert_eq!(read(m2.p("f")), "a");
    std::mem::forget(m);
}

#[test]
fn umount_takes_relative_paths() {
    let s = Scratch::new();
    s.write("a", "f", "a");
    let br = format!("br={}", s.path("a").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    let out = run(strata().current_dir(s.path("a")).args(["umount", "../mnt"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&m.mnt));
    std::mem::forget(m);
}

/// `fsname=` and `subtype=` name the mount as tools see it; `strata umount` still knows it.
#[test]
fn fsname_and_subtype_name_the_mount() {
    let s = Scratch::new();
    s.write("a", "f", "a");
    let br = format!("br={}", s.path("a").display());
    let m = Mount::new(&[&br, "fsname=mydata,subtype=myfs"], &s.path("mnt"));
    let abs = std::path::absolute(&m.mnt).unwrap();
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts.lines().find(|l| l.split(' ').nth(1) == abs.to_str()).unwrap_or_else(|| panic!("{mounts}"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!((fields[0], fields[2]), ("mydata", "fuse.myfs"), "{line}");
    assert_eq!(read(m.p("f")), "a");
    m.unmount();
}

#[test]
fn umount_refuses_what_is_not_a_strata_mount() {
    let s = Scratch::new();
    let out = run(strata().arg("umount").arg(s.dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not mounted"));
}

#[test]
fn drop_in_version_and_a_clean_unmount_logs_nothing() {
    let s = Scratch::new();
    let drop_in = s.path("fuse-overlayfs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_strata"), &drop_in).unwrap();
    for flag in ["--version", "-V"] {
        let out = sh(std::process::Command::new(&drop_in).arg(flag));
        assert!(out.starts_with("fuse-overlayfs: version "), "{out}");
    }
    let (a, mnt, log) = (s.mkdir("a"), s.mkdir("m"), s.path("daemon.log"));
    sh(strata().args(["mount", "--log-file"]).arg(&log).arg("-o").arg(format!("br={}=rw", a.display())).arg(&mnt));
    std::fs::write(mnt.join("f"), "x").unwrap();
    sh(strata().arg("umount").arg(&mnt));
    // The daemon ends after the unmount; its log is complete once no process holds it.
    let held = || {
        fs::read_dir("/proc").unwrap().flatten().any(|p| {
            fs::read_dir(p.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == log))
        })
    };
    let t0 = Instant::now();
    while held() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the daemon outlived its mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read(&log), "", "a clean unmount logs nothing");
}
