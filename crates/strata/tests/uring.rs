//! FUSE over io_uring (the default where the kernel offers it): the same operations
//! through mounts served over io_uring (by default, asked for, without passthrough) and
//! through one served over /dev/fuse (`noio_uring`) give the same results, and the
//! requests really came over io_uring; without the kernel's consent (`enable_uring` N) a
//! mount asking for it falls back to /dev/fuse.
//!
//! The fuse module's `enable_uring` parameter is the machine's: each test sets it for its
//! run and puts back the value it found (existing connections keep their transport; only
//! Strata mounts made meanwhile would take io_uring). The tests hold one lock, so they
//! never disagree about it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::*;

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
static PARAM_LOCK: Mutex<()> = Mutex::new(());

/// Sets `enable_uring` for as long as it lives, holding the tests' lock, then restores it.
struct EnableUring {
    before: String,
    _lock: MutexGuard<'static, ()>,
}

impl EnableUring {
    fn set(value: &str) -> EnableUring {
        let lock = PARAM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let why = "(a kernel without CONFIG_FUSE_IO_URING?)";
        let before = fs::read_to_string(PARAM).unwrap_or_else(|e| panic!("{PARAM}: {e} {why}")).trim().to_string();
        fs::write(PARAM, value).unwrap_or_else(|e| panic!("{PARAM}: {e} {why}"));
        EnableUring { before, _lock: lock }
    }
}

impl Drop for EnableUring {
    fn drop(&mut self) {
        let _ = fs::write(PARAM, &self.before);
    }
}

/// Runs every kind of request the union serves and prints one line per result.
const WORK: &str = r#"
import ctypes, errno, fcntl, hashlib, os, stat, sys
m = sys.argv[1]
out = []
def rec(name, f):
    try:
        out.append(f"{name}: {f()}")
    except OSError as e:
        out.append(f"{name}: {errno.errorcode.get(e.errno, e.errno)}")
def st(p):
    s = os.lstat(p)
    return (stat.filemode(s.st_mode), s.st_size, s.st_nlink, s.st_uid, s.st_gid)
def digest(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]
j = lambda *a: os.path.join(m, *a)
rec("listdir", lambda: sorted(os.listdir(m)))
rec("wide", lambda: (len(os.listdir(j("wide"))), sorted(os.listdir(j("wide")))[:3]))
rec("stat lower", lambda: st(j("lower.txt")))
rec("read lower", lambda: open(j("lower.txt")).read())
rec("read big", lambda: digest(j("big")))
rec("missing", lambda: st(j("nope")))
def create():
    with open(j("new.txt"), "w") as f:
        f.write("created\n" * 1000)
    return st(j("new.txt")), digest(j("new.txt"))
rec("create", create)
def big_write():
    data = bytes(range(256)) * 8192
    with open(j("written"), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return digest(j("written"))
rec("big write", big_write)
def append():
    with open(j("lower.txt"), "a") as f:
        f.write("appended\n")
    return open(j("lower.txt")).read()
rec("append (copy-up)", append)
rec("chmod", lambda: (os.chmod(j("new.txt"), 0o600), st(j("new.txt")))[1])
rec("chown", lambda: (os.chown(j("new.txt"), 1234, 5678), st(j("new.txt")))[1])
rec("utime", lambda: (os.utime(j("new.txt"), (1000000000, 1200000000)), os.stat(j("new.txt")).st_mtime)[1])
rec("truncate", lambda: (os.truncate(j("new.txt"), 10), st(j("new.txt")))[1])
rec("symlink", lambda: (os.symlink("lower.txt", j("link")), os.readlink(j("link")), st(j("link")))[1:])
rec("mkfifo", lambda: (os.mkfifo(j("fifo")), st(j("fifo")))[1])
rec("mkdir", lambda: (os.mkdir(j("dir"), 0o750), st(j("dir")))[1])
rec("rmdir", lambda: (os.rmdir(j("dir")), os.path.exists(j("dir")))[1])
rec("unlink lower", lambda: (os.unlink(j("gone.txt")), sorted(os.listdir(m)))[1])
rec("rename", lambda: (os.rename(j("new.txt"), j("moved.txt")), sorted(os.listdir(m)))[1])
libc = ctypes.CDLL(None, use_errno=True)
def noreplace():
    r = libc.renameat2(-100, j("moved.txt").encode(), -100, j("link").encode(), 1)
    return r if r == 0 else errno.errorcode[ctypes.get_errno()]
rec("rename noreplace", noreplace)
rec("link", lambda: (os.link(j("moved.txt"), j("hard")), st(j("hard")))[1])
rec("statfs", lambda: os.statvfs(m).f_namemax)
rec("setxattr", lambda: os.setxattr(j("moved.txt"), "user.k", b"v" * 300))
rec("getxattr", lambda: os.getxattr(j("moved.txt"), "user.k")[:5])
rec("listxattr", lambda: sorted(os.listxattr(j("moved.txt"))))
rec("removexattr", lambda: (os.removexattr(j("moved.txt"), "user.k"), os.listxattr(j("moved.txt")))[1])
rec("getxattr missing", lambda: os.getxattr(j("moved.txt"), "user.none"))
rec("access", lambda: (os.access(j("lower.txt"), os.W_OK), os.access(j("nope"), os.F_OK)))
def falloc():
    fd = os.open(j("sparse"), os.O_CREAT | os.O_RDWR, 0o644)
    os.ftruncate(fd, 1 << 20)
    os.posix_fallocate(fd, 8192, 4096)
    os.pwrite(fd, b"d" * 4096, 0)
    os.fsync(fd)
    data = os.lseek(fd, 0, os.SEEK_DATA)
    hole = os.lseek(fd, 0, os.SEEK_HOLE)
    os.close(fd)
    return os.stat(j("sparse")).st_size, data, hole
rec("fallocate, lseek", falloc)
def cfr():
    src = os.open(j("big"), os.O_RDONLY)
    dst = os.open(j("copy"), os.O_CREAT | os.O_WRONLY, 0o644)
    n = os.copy_file_range(src, dst, 1 << 20)
    os.close(src)
    os.close(dst)
    return n, digest(j("copy"))[:4]
rec("copy_file_range", cfr)
def flags():
    fd = os.open(j("moved.txt"), os.O_RDONLY)
    buf = bytearray(4)
    fcntl.ioctl(fd, 0x80086601, buf)  # FS_IOC_GETFLAGS
    os.close(fd)
    return True
rec("ioctl getflags", flags)
rec("o_trunc", lambda: (open(j("hard"), "w").close(), st(j("moved.txt")))[1])
rec("final listing", lambda: sorted(os.listdir(m)))
print("\n".join(out))
"#;

/// Lower files for `WORK`.
fn layers(s: &Scratch) -> String {
    s.write("lower", "lower.txt", "lower\n");
    s.write("lower", "gone.txt", "to remove\n");
    let big: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    s.write("lower", "big", &big);
    for i in 0..300 {
        s.write("lower", &format!("wide/entry-with-a-longer-name-{i:04}"), "x");
    }
    let (upper, work) = (s.mkdir("upper"), s.mkdir("work"));
    format!("lowerdir={},upperdir={},workdir={}", s.path("lower").display(), upper.display(), work.display())
}

fn stats(m: &Mount) -> BTreeMap<String, u64> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::getxattr(&m.mnt, "trusted.strata.stats", &mut buf[..]).expect("stats");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// `WORK` on a fresh mount with `extra` options; its transcript and the daemon's stats.
fn transcript(extra: &str) -> (String, BTreeMap<String, u64>) {
    let s = Scratch::new();
    let opts = format!("{}{extra}", layers(&s));
    let m = Mount::new(&[&opts], &s.path("mnt"));
    let out = sh(Command::new("python3").arg("-c").arg(WORK).arg(&m.mnt));
    let stats = stats(&m);
    m.unmount();
    (out, stats)
}

#[test]
fn requests_over_io_uring_give_what_dev_fuse_gives() {
    let _param = EnableUring::set("Y");
    let (reference, ref_stats) = transcript(",noio_uring");
    assert_eq!(ref_stats.get("uring_requests"), Some(&0), "{ref_stats:?}");
    println!("{reference}");
    // io_uring is the default where the kernel offers it.
    for extra in ["", ",io_uring", ",io_uring,nopassthrough"] {
        let (got, stats) = transcript(extra);
        assert_eq!(stats.get("io_uring"), Some(&1), "{extra}: {stats:?}");
        // The work's requests came that way (it makes well over a hundred).
        assert!(stats["uring_requests"] > 100, "{extra}: {stats:?}");
        if extra.contains("nopassthrough") {
            assert!(stats["daemon_reads"] > 0 && stats["daemon_writes"] > 0, "{extra}: {stats:?}");
        } else {
            assert!(stats["passthrough_opens"] > 0, "{extra}: {stats:?}");
        }
        for (a, b) in reference.lines().zip(got.lines()) {
            assert_eq!(a, b, "{extra}: /dev/fuse and io_uring differ");
        }
        assert_eq!(reference.lines().count(), got.lines().count(), "{extra}");
    }
}

#[test]
fn without_the_kernels_consent_io_uring_falls_back_to_dev_fuse() {
    let _param = EnableUring::set("N");
    let (out, stats) = transcript(",io_uring");
    assert_eq!(stats.get("io_uring"), Some(&0), "{stats:?}");
    assert_eq!(stats.get("uring_requests"), Some(&0), "{stats:?}");
    assert!(out.contains("read lower: lower\n"), "{out}");
}
