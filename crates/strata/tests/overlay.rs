//! OverlayFS compatibility: upper dirs written in overlay format are read back by kernel
//! overlayfs as the same tree, both whiteout formats are read, and a property-based
//! differential test runs the same random operations on Strata and on kernel overlayfs.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use proptest::prelude::*;

/// Kernel overlayfs with directory renames by redirect (as Strata does) and without the
/// hard-link index and metacopy (Strata's default).
fn kernel_overlay(lower: &str, upper: &Path, work: &Path, mnt: &Path) -> KernelOverlay {
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={},redirect_dir=on,index=off,metacopy=off,xino=off",
        upper.display(),
        work.display()
    );
    KernelOverlay::new(&opts, mnt)
}

/// Two lowers: shadowing, a whiteout (char device) and an opaque dir in the upper lower.
fn lowers(s: &Scratch) -> String {
    s.write("l2", "a", "l2 a\n");
    s.write("l2", "shadowed", "from l2\n");
    s.write("l2", "gone", "whited out by l1\n");
    s.write("l2", "d1/x", "l2 d1/x\n");
    s.write("l2", "d1/d2/y", "l2 y\n");
    s.write("l2", "opq/hidden", "hidden by opaque l1/opq\n");
    s.write("l2", "d3/z", "z\n");
    s.write("l1", "shadowed", "from l1\n");
    s.write("l1", "d1/b", "l1 d1/b\n");
    s.write("l1", "opq/visible", "v\n");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.path("l1/gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    rustix::fs::lsetxattr(s.path("l1/opq"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    std::os::unix::fs::symlink("a", s.path("l1/sym")).unwrap();
    fs::set_permissions(s.path("l2/d3"), fs::Permissions::from_mode(0o750)).unwrap();
    format!("{}:{}", s.path("l1").display(), s.path("l2").display())
}

#[test]
fn overlay_upper_reads_back_in_kernel_overlayfs() {
    let s = Scratch::new();
    let lower = lowers(&s);
    s.mkdir("upper");
    s.mkdir("work");
    let opts = format!("lowerdir={lower},upperdir={},workdir={}", s.path("upper").display(), s.path("work").display());
    let m = Mount::new(&[&opts], &s.path("mnt"));
    assert!(!m.p("gone").exists());
    assert!(!m.p("opq/hidden").exists());
    assert_eq!(read(m.p("shadowed")), "from l1\n");

    fs::remove_file(m.p("a")).unwrap();
    fs::remove_dir_all(m.p("d1")).unwrap();
    fs::create_dir(m.p("d1")).unwrap(); // over a whiteout: opaque
    fs::write(m.p("d1/new"), "new\n").unwrap();
    fs::write(m.p("shadowed"), "changed\n").unwrap();
    fs::rename(m.p("d3/z"), m.p("z-moved")).unwrap();
    fs::set_permissions(m.p("d3"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("z-moved", m.p("sym2")).unwrap();
    fs::write(m.p("gone"), "back\n").unwrap(); // over a lower whiteout
    fs::write(m.p("a"), "again\n").unwrap(); // over the upper whiteout `remove_file` made
    fs::remove_dir_all(m.p("opq")).unwrap();
    let seen = tree(&m.mnt);
    assert_eq!(read(m.p("a")), "again\n");
    m.unmount();

    // Only overlay-format markers in the upper dir.
    for e in walk_names(&s.path("upper")) {
        assert!(!e.contains(".wh."), "AUFS name in an overlay upper: {e}");
    }
    let k = kernel_overlay(&lower, &s.path("upper"), &s.path("work"), &s.path("kmnt"));
    assert_eq!(tree(&k.0), seen, "kernel overlayfs reads the Strata upper differently");
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}

#[test]
fn both_whiteout_formats_are_read() {
    let s = Scratch::new();
    s.write("low", "f1", "1");
    s.write("low", "f2", "2");
    s.write("low", "dir/old", "old");
    s.write("mid", ".wh.f1", ""); // AUFS whiteout
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.path("mid/f2"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    s.write("mid", "dir/.wh..wh..opq", "");
    s.write("mid", "dir/new", "new");
    s.mkdir("up");
    let br =
        format!("br={}=rw:{}=ro+wh:{}=ro+wh", s.path("up").display(), s.path("mid").display(), s.path("low").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    assert_eq!(names(&m.mnt), ["dir"]);
    assert_eq!(names(m.p("dir")), ["new"]);
    m.unmount();
    // A plain `ro` branch ignores its whiteouts (AUFS).
    let br = format!("br={}=rw:{}=ro:{}=ro", s.path("up").display(), s.path("mid").display(), s.path("low").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    assert_eq!(read(m.p("f1")), "1");
    assert_eq!(read(m.p("dir/old")), "old");
}

// ---- differential test -------------------------------------------------------------

// The root and d1 repeat: operations land where entries exist more often.
const DIRS: &[&str] = &["", "", "", "d1/", "d1/", "d1/d2/", "d3/", "opq/", "n/"];
const NAMES: &[&str] = &["a", "b", "shadowed", "gone", "x", "y", "z", "d1", "d2", "n", "sym"];

#[derive(Clone, Debug)]
enum Op {
    Write(usize, usize, u8),
    Append(usize, usize, u8),
    Truncate(usize, usize, u64),
    Unlink(usize, usize),
    Mkdir(usize, usize),
    Rmdir(usize, usize),
    RmRf(usize, usize),
    Rename(usize, usize, usize, usize),
    Chmod(usize, usize, u32),
    Symlink(usize, usize),
    Link(usize, usize, usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let n = 0..NAMES.len();
    prop_oneof![
        (d.clone(), n.clone(), any::<u8>()).prop_map(|(a, b, c)| Op::Write(a, b, c)),
        (d.clone(), n.clone(), any::<u8>()).prop_map(|(a, b, c)| Op::Append(a, b, c)),
        (d.clone(), n.clone(), 0..20u64).prop_map(|(a, b, c)| Op::Truncate(a, b, c)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Unlink(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Mkdir(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Rmdir(a, b)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::RmRf(a, b)),
        (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Rename(a, b, c, e)),
        (d.clone(), n.clone(), prop::sample::select(vec![0o600u32, 0o755, 0o4711, 0o640]))
            .prop_map(|(a, b, c)| Op::Chmod(a, b, c)),
        (d.clone(), n.clone()).prop_map(|(a, b)| Op::Symlink(a, b)),
        (d.clone(), n.clone(), d, n).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
    ]
}

fn apply(root: &Path, op: &Op) -> i32 {
    let p = |d: usize, n: usize| root.join(format!("{}{}", DIRS[d], NAMES[n]));
    match op {
        Op::Write(d, n, c) => errno_of(fs::write(p(*d, *n), vec![*c; (*c as usize % 7) + 1])),
        Op::Append(d, n, c) => errno_of(
            fs::OpenOptions::new()
                .append(true)
                .open(p(*d, *n))
                .and_then(|mut f| std::io::Write::write_all(&mut f, &[*c])),
        ),
        Op::Truncate(d, n, l) => {
            errno_of(fs::OpenOptions::new().write(true).open(p(*d, *n)).and_then(|f| f.set_len(*l)))
        }
        Op::Unlink(d, n) => errno_of(fs::remove_file(p(*d, *n))),
        Op::Mkdir(d, n) => errno_of(fs::create_dir(p(*d, *n))),
        Op::Rmdir(d, n) => errno_of(fs::remove_dir(p(*d, *n))),
        Op::RmRf(d, n) => {
            let t = p(*d, *n);
            if fs::symlink_metadata(&t).map(|m| m.is_dir()).unwrap_or(false) {
                errno_of(fs::remove_dir_all(t))
            } else {
                errno_of(fs::remove_file(t))
            }
        }
        Op::Rename(a, b, c, e) => errno_of(fs::rename(p(*a, *b), p(*c, *e))),
        Op::Chmod(d, n, m) => errno_of(fs::set_permissions(p(*d, *n), fs::Permissions::from_mode(*m))),
        Op::Symlink(d, n) => errno_of(std::os::unix::fs::symlink("target", p(*d, *n))),
        Op::Link(a, b, c, e) => errno_of(fs::hard_link(p(*a, *b), p(*c, *e))),
    }
}

fn differential(ops: &[Op], aufs: bool) -> Result<(), TestCaseError> {
    let s = Scratch::new();
    // Eight empty layers on top make every directory a many-branch one, so the name
    // index (built from 8 branches on) is checked against the kernel too.
    let mut padding = Vec::new();
    for i in 0..8 {
        for d in ["d1/d2", "d3", "n"] {
            s.mkdir(&format!("pad{i}/{d}"));
        }
        padding.push(s.path(&format!("pad{i}")).display().to_string());
    }
    let lower = format!("{}:{}", padding.join(":"), lowers(&s));
    for d in ["su", "sw", "ku", "kw"] {
        s.mkdir(d);
    }
    let mut opts =
        vec![format!("lowerdir={lower},upperdir={},workdir={}", s.path("su").display(), s.path("sw").display())];
    if aufs {
        opts.push("whiteout=aufs".into());
    }
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let m = Mount::new(&opts, &s.path("smnt"));
    let k = kernel_overlay(&lower, &s.path("ku"), &s.path("kw"), &s.path("kmnt"));
    for (i, op) in ops.iter().enumerate() {
        let ks = apply(&k.0, op);
        let ss = apply(&m.mnt, op);
        prop_assert_eq!(ss, ks, "step {} {:?}: errno differs (strata {}, kernel {})", i, op, ss, ks);
        let (st, kt) = (tree(&m.mnt), tree(&k.0));
        prop_assert_eq!(st, kt, "step {} {:?}: trees differ", i, op);
    }
    drop(m);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn differential_against_kernel_overlayfs(ops in prop::collection::vec(op(), 1..30), aufs in any::<bool>()) {
        differential(&ops, aufs)?;
    }
}

/// What writes, truncations and `O_TRUNC` opens by a user without `CAP_FSETID` leave of
/// set-user-ID, set-group-ID and file capabilities, and what root's writes leave: the same
/// on Strata (which clears them itself under `FUSE_HANDLE_KILLPRIV_V2`) as on kernel
/// overlayfs. Then Strata's one deviation: no set-id bit while another user writes.
#[test]
fn setid_bits_and_file_capabilities_after_other_users_write_match_the_kernel() {
    let s = Scratch::new();
    // A file capability: revision 2, effective, CAP_NET_BIND_SERVICE permitted.
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for (name, mode) in [
        ("suid", 0o4777),
        ("sgid_exec", 0o2777),
        ("sgid_noexec", 0o2766),
        ("root_writes", 0o4777),
        ("truncated", 0o4777),
        ("opened_trunc", 0o4777),
        ("cap", 0o777),
    ] {
        let p = s.write("lower", name, "#!/bin/sh\n");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    rustix::fs::setxattr(s.path("lower/cap"), "security.capability", &cap, rustix::fs::XattrFlags::empty())
        .expect("set a file capability");
    let as_user = |cmd: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", cmd])
            .output()
            .expect("setpriv");
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let exercise = |m: &Path| -> Vec<String> {
        let p = |n: &str| m.join(n).display().to_string();
        as_user(&format!("printf x >> {}", p("suid")));
        as_user(&format!("printf x >> {}", p("sgid_exec")));
        as_user(&format!("printf x >> {}", p("sgid_noexec")));
        fs::OpenOptions::new().append(true).open(m.join("root_writes")).unwrap().write_all(b"x").unwrap();
        as_user(&format!("truncate -s 1 {}", p("truncated")));
        as_user(&format!(": > {}", p("opened_trunc")));
        as_user(&format!("printf x >> {}", p("cap")));
        let mut seen: Vec<String> = ["suid", "sgid_exec", "sgid_noexec", "root_writes", "truncated", "opened_trunc"]
            .iter()
            .map(|n| format!("{n} {:o}", fs::metadata(m.join(n)).unwrap().permissions().mode() & 0o7777))
            .collect();
        let caps = rustix::fs::getxattr(m.join("cap"), "security.capability", &mut [0u8; 64]).is_ok();
        seen.push(format!("cap has a capability: {caps}"));
        seen
    };
    let lower = s.path("lower").display().to_string();
    let kernel = {
        let _k = kernel_overlay(&lower, &s.mkdir("k-upper"), &s.mkdir("k-work"), &s.path("k-mnt"));
        exercise(&s.path("k-mnt"))
    };
    let ours = {
        let opts = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            s.mkdir("s-upper").display(),
            s.mkdir("s-work").display()
        );
        let m = Mount::new(&[opts.as_str()], &s.path("s-mnt"));
        let seen = exercise(&m.mnt);

        // While another user holds a file open for writing, nobody may make it set-id:
        // that user's writes go through passthrough, where nothing would clear it.
        let f = m.p("held");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        let mut holder = Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
            .arg(format!("exec 3>>{}; echo open; exec sleep 5", f.display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line, "open\n");
        let refused = fs::set_permissions(&f, fs::Permissions::from_mode(0o4755));
        assert_eq!(refused.map_err(|e| e.raw_os_error()), Err(Some(libc::EBUSY)));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).expect("a mode without set-id bits");
        holder.kill().unwrap();
        holder.wait().unwrap();
        // The kernel releases the handle after the process is gone, asynchronously.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).is_err() {
            assert!(std::time::Instant::now() < deadline, "set-id still refused after the writer left");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        m.unmount();
        seen
    };
    assert_eq!(ours, kernel);
    assert!(kernel.contains(&"suid 777".to_string()) && kernel.contains(&"root_writes 4777".to_string()), "{kernel:?}");
}
