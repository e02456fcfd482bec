//! POSIX details kernel filesystems get right, each run through Strata and through kernel
//! overlayfs over the same lower tree: the two must print the same, and what they print
//! is checked against what POSIX and the kernel's own filesystems do.

mod common;

use std::fs;
use std::process::Command;

use common::*;

/// Runs `script` (bash, in the mount's directory) on a fresh Strata mount and on a fresh
/// kernel overlayfs mount over a lower tree made by `lower` (bash, in the lower dir);
/// returns what Strata printed after checking that the kernel printed the same.
fn both(lower: &str, script: &str) -> String {
    both_with("", lower, script)
}

/// [`both`], with mount options `extra` (`,opt,...`) for both mounts.
fn both_with(extra: &str, lower: &str, script: &str) -> String {
    let mut out = Vec::new();
    for style in ["strata", "kernel"] {
        let s = Scratch::new();
        let dir = s.mkdir("lower");
        sh(Command::new("bash").arg("-euc").arg(lower).current_dir(&dir));
        let (upper, work, mnt) = (s.mkdir("upper"), s.mkdir("work"), s.mkdir("mnt"));
        let opts = format!("lowerdir={},upperdir={},workdir={}{extra}", dir.display(), upper.display(), work.display());
        let m = if style == "strata" {
            Some(Mount::new(&[&opts], &mnt))
        } else {
            sh(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&mnt));
            None
        };
        let printed = Command::new("bash").arg("-euc").arg(script).current_dir(&mnt).output().unwrap();
        match m {
            Some(m) => m.unmount(),
            None => {
                sh(Command::new("umount").arg(&mnt));
            }
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&printed.stdout),
            String::from_utf8_lossy(&printed.stderr).replace(mnt.to_str().unwrap(), "MNT")
        );
        assert!(printed.status.success(), "{style}: {text}");
        out.push(text);
    }
    assert_eq!(out[0], out[1], "strata (left) and kernel overlayfs (right) differ");
    out.swap_remove(0)
}

/// A parent's default ACL decides a new entry's permissions, not the umask (the kernel
/// leaves the umask to the filesystem, `FUSE_DONT_MASK`); without one, the umask applies.
#[test]
fn a_default_acl_overrides_the_umask() {
    let out = both(
        "mkdir d plain && setfacl -d -m u::rwx,g::rwx,o::- d",
        "umask 077; touch d/f plain/f; mkdir d/e plain/e; python3 -c \"import os; os.close(os.open('d/x', os.O_CREAT, 0o750))\"
         for p in d/f d/e d/x plain/f plain/e; do echo \"$p $(stat -c %a $p) $(getfacl -cp $p | grep -E '^(group|mask)::' | paste -sd' ')\"; done",
    );
    assert_eq!(
        out,
        "d/f 660 group::rw-\nd/e 770 group::rwx\nd/x 750 group::r-x\nplain/f 600 group::---\nplain/e 700 group::---\n"
    );
}

/// Set-group-ID: a file root makes in a set-group-ID directory keeps the bit it asks for;
/// `chmod` and `setfacl` by an owner outside the file's group clear it.
#[test]
fn set_group_id_is_kept_and_cleared_as_the_kernel_does() {
    let out = both(
        "mkdir s && chown 0:1234 s && chmod 2775 s && touch t u && chown 1000:1234 t u",
        "python3 -c \"import os; os.umask(0); os.close(os.open('s/f', os.O_CREAT, 0o2755)); os.mkdir('s/d', 0o755)\"
         stat -c '%n %a %g' s/f s/d
         setpriv --reuid 1000 --regid 1000 --clear-groups chmod 2755 t
         chmod 2755 u && setpriv --reuid 1000 --regid 1000 --clear-groups setfacl -m u:0:r u
         stat -c '%n %a' t u",
    );
    assert_eq!(out, "s/f 2755 1234\ns/d 2755 1234\nt 755\nu 755\n");
}

/// Every call on a descriptor whose name is gone works on the open file, never ESTALE.
#[test]
fn an_open_file_whose_name_was_replaced_keeps_working() {
    let script = r#"
import os
for name in ("lowerfile", "upperfile"):
    if name == "upperfile":
        open(name, "w").write("upper\n")
    open("other", "w").write("other\n")
    fd = os.open(name, os.O_RDWR)
    os.rename("other", name)
    st = os.fstat(fd)
    os.fchmod(fd, 0o640)
    os.setxattr(fd, "user.k", b"v")
    print(name, oct(os.fstat(fd).st_mode & 0o7777), os.getxattr(fd, "user.k"), "user.k" in os.listxattr(fd))
    os.removexattr(fd, "user.k")
    os.ftruncate(fd, 2)
    os.utime(fd, (1, 2))
    print(name, os.fstat(fd).st_size, os.fstat(fd).st_mtime, os.pread(fd, 10, 0), open(name).read(), end="")
    os.fsync(fd)
    os.close(fd)
"#;
    let out = both("echo lower > lowerfile", &format!("python3 -c '{script}'"));
    assert_eq!(
        out,
        "lowerfile 0o640 b'v' True\nlowerfile 2 2.0 b'lo' other\nupperfile 0o640 b'v' True\nupperfile 2 2.0 b'up' other\n"
    );
}

/// A position saved with `telldir` and restored with `seekdir` after the pass ended,
/// many listings later, and after names were added and removed, goes on from there: every name present before and
/// still present comes exactly once, none already read comes again, never an early end.
#[test]
fn a_saved_directory_position_goes_on_after_changes_and_many_listings() {
    let script = r#"
import ctypes, ctypes.util, os
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_ulong), ("d_off", ctypes.c_long), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.telldir.argtypes = [ctypes.c_void_p]
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.closedir.argtypes = [ctypes.c_void_p]
def read(d, n=None):
    out = []
    while n is None or len(out) < n:
        e = libc.readdir(d)
        if not e:
            break
        name = e.contents.d_name.decode()
        if name not in (".", ".."):
            out.append(name)
    return out
os.mkdir("d")
before = [f"f{i:03d}" for i in range(300)]
for n in before:
    open("d/" + n, "w").close()
for i in range(80):
    os.mkdir(f"o{i}")
    open(f"o{i}/x", "w").close()
d = libc.opendir(b"d")
seen = read(d, 100)
pos = libc.telldir(d)
read(d)  # to the end: that pass is over
for i in range(80):
    os.listdir(f"o{i}")
unseen = [n for n in before if n not in seen]
gone = set(seen[:30] + unseen[:30])
for n in gone:
    os.unlink("d/" + n)
for i in range(20):
    open(f"d/new{i}", "w").close()
os.listdir("d")  # another pass from the start: the cached listing in the kernel is replaced
libc.seekdir(d, pos)
rest = read(d)
libc.closedir(d)
survivors = [n for n in unseen if n not in gone]
print("read before:", len(seen))
print("again:", sorted(set(rest) & set(seen)))
print("missing:", sorted(set(survivors) - set(rest)))
print("twice:", sorted(n for n in set(rest) if rest.count(n) > 1))
"#;
    let out = both("true", &format!("python3 -c '{script}'"));
    assert_eq!(out, "read before: 100\nagain: []\nmissing: []\ntwice: []\n");
}

/// Writes through a shared writable mapping change mtime and ctime, seen by `stat` while
/// mapped, after `msync`, and after `munmap` and `close`; on lower files too.
#[test]
fn writes_through_mmap_update_the_file_times() {
    let script = r#"
import mmap, os
for case in ("mapped", "msync", "closed"):
    for where in ("lower", "new"):
        p = f"{where}_{case}"
        if where == "new":
            open(p, "wb").write(bytes(8192))
            os.utime(p, (1, 1))
        before = os.stat(p)
        fd = os.open(p, os.O_RDWR)
        m = mmap.mmap(fd, 8192)
        m[0:1] = b"y"
        if case == "msync":
            m.flush()
        if case == "closed":
            m.close()
            os.close(fd)
        after = os.stat(p)
        print(p, after.st_mtime_ns != before.st_mtime_ns, after.st_ctime_ns != before.st_ctime_ns)
"#;
    let lower = "for c in mapped msync closed; do head -c 8192 /dev/zero > lower_$c; touch -d @1 lower_$c; done";
    let out = both(lower, &format!("python3 -c '{script}'"));
    assert_eq!(out.matches(" True True\n").count(), 6, "{out}");
}

/// `chattr` and `lsattr` reach the file below (a lower one is copied up first), and
/// `copy_file_range` copies within the union.
#[test]
fn file_attributes_and_copy_file_range_reach_the_file_below() {
    let out = both(
        "echo lower > f && mkdir d",
        "chattr +A f d && lsattr -d f d | cut -d' ' -f1
         python3 -c \"import os
a = os.open('f', os.O_RDONLY); b = os.open('g', os.O_WRONLY | os.O_CREAT, 0o644)
print(os.copy_file_range(a, b, 6), open('g').read(), end='')\"",
    );
    let flags: Vec<&str> = out.lines().take(2).collect();
    assert!(flags.iter().all(|f| f.contains('A')), "{out}");
    assert!(out.ends_with("6 lower\n"), "{out}");
}

/// File handles (`name_to_handle_at`, `open_by_handle_at`) open files and directories
/// after the kernel forgot them and after a remount; a removed file's handle is ESTALE.
#[test]
fn file_handles_live_as_long_as_the_files() {
    const HANDLES: &str = r#"
import ctypes, ctypes.util, errno, json, os, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
class Handle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]
def handle(path):
    h, mount_id = Handle(), ctypes.c_int()
    h.handle_bytes = 128
    if libc.name_to_handle_at(-100, path.encode(), ctypes.byref(h), ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), path)
    return [h.handle_bytes, h.handle_type, list(h.f_handle[: h.handle_bytes])]
def opened(mnt, saved):
    h = Handle()
    h.handle_bytes, h.handle_type = saved[0], saved[1]
    for i, b in enumerate(saved[2]):
        h.f_handle[i] = b
    mfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(h), os.O_RDONLY)
    err = ctypes.get_errno()
    os.close(mfd)
    if fd < 0:
        return errno.errorcode[err]
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        names = sorted(os.listdir(fd))
        os.close(fd)
        return names
    data = os.read(fd, 100).decode()
    os.close(fd)
    return data
what, mnt = sys.argv[1], sys.argv[2]
if what == "save":
    print(json.dumps({p: handle(os.path.join(mnt, p)) for p in ("dir/file", "dir", "new", "gone")}))
else:
    saved = json.load(sys.stdin)
    print(json.dumps({p: opened(mnt, h) for p, h in sorted(saved.items())}))
"#;
    let s = Scratch::new();
    s.write("lower", "dir/file", "lower\n");
    s.write("lower", "gone", "gone\n");
    let br = format!("br={}=rw:{}=ro", s.mkdir("upper").display(), s.path("lower").display());
    let mnt = s.path("mnt");
    let m = Mount::new(&[&br], &mnt);
    fs::write(m.p("new"), "new\n").unwrap();
    let saved = sh(Command::new("python3").args(["-c", HANDLES, "save"]).arg(&mnt));
    let open_all = || {
        let mut child = Command::new("python3")
            .args(["-c", HANDLES, "open"])
            .arg(&mnt)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(saved.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let live = r#"{"dir": ["file"], "dir/file": "lower\n", "gone": "gone\n", "new": "new\n"}"#;
    assert_eq!(open_all().trim(), live, "while cached");
    // The kernel forgets what it cached (on this machine's page and inode caches only).
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    assert_eq!(open_all().trim(), live, "after the kernel forgot them");
    m.unmount();
    let m = Mount::new(&[&br], &mnt);
    assert_eq!(open_all().trim(), live, "after a remount");
    fs::remove_file(m.p("gone")).unwrap();
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let after = open_all();
    assert!(after.contains(r#""gone": "ESTALE""#), "{after}");
    m.unmount();
}

/// A renamed lower directory counts its subdirectories in `st_nlink`, as the copy kernel
/// overlayfs makes of it (no `redirect_dir`) does.
#[test]
fn a_renamed_lower_directory_counts_its_links() {
    let out = both("mkdir -p a/x a/y && touch a/f", "mv a b && mkdir b/z && stat -c %h b");
    assert_eq!(out, "5\n");
}

/// Access times: a read through the union never changes a lower branch; in the upper
/// branch `relatime` (the default) updates an access time older than the modification
/// only, `strictatime` every one, `nodiratime` none of a directory, `noatime` none. Files
/// are read through passthrough, which the daemon never sees.
#[test]
fn access_times_follow_the_atime_options() {
    let lower = "echo f > f && mkdir d && touch d/x && touch -a -d @1000 f d";
    let script = "echo u > u && mkdir ud && touch ud/x && touch -a -d @1000 u ud && sleep 0.01
         cat f u > /dev/null && ls d ud > /dev/null
         stat -c '%n %X' f d u ud | awk '$2 != 1000 { print $1 }'
         touch -a -d @4000000000 u ud && sleep 0.01
         cat u > /dev/null && ls ud > /dev/null
         stat -c '%n %X' u ud | awk '$2 != 4000000000 { print $1 \" again\" }'";
    let mut seen = Vec::new();
    for extra in ["", ",relatime", ",nodiratime", ",noatime", ",strictatime", ",strictatime,nodiratime"] {
        let out = both_with(extra, lower, script);
        seen.push(format!("{extra}: {}", out.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    assert_eq!(
        seen,
        [
            ": u ud",
            ",relatime: u ud",
            ",nodiratime: u",
            ",noatime: ",
            ",strictatime: u ud u again ud again",
            ",strictatime,nodiratime: u u again"
        ]
    );
}
