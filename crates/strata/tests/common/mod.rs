//! Test harness: branches in a temp dir, a real `strata mount` in the background,
//! unmounted on drop; helpers to snapshot trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run strata")
}

/// A scratch area with named directories.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        // Not under /tmp's tmpfs necessarily: the base of TMPDIR, as the machine has it.
        Scratch { dir: tempfile::Builder::new().prefix("strata-test").tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// Writes `content` at `rel` inside directory `name`, creating parents.
    pub fn write(&self, name: &str, rel: &str, content: &str) -> PathBuf {
        let p = self.path(name).join(rel);
        fs::create_dir_all(p.parent().unwrap()).expect("mkdir -p");
        fs::write(&p, content).expect("write");
        p
    }
}

/// A live Strata mount; unmounted (lazily, so a failing test never leaves it) on drop.
pub struct Mount {
    pub mnt: PathBuf,
}

impl Mount {
    pub fn new(options: &[&str], mnt: &Path) -> Mount {
        Self::try_new(options, mnt).unwrap_or_else(|e| panic!("mount failed: {e}"))
    }

    pub fn try_new(options: &[&str], mnt: &Path) -> Result<Mount, String> {
        fs::create_dir_all(mnt).expect("mountpoint");
        let mut cmd = strata();
        cmd.arg("mount");
        for o in options {
            cmd.arg("-o").arg(o);
        }
        // scripts/test runs the filesystem suites again with requests over io_uring.
        if std::env::var_os("STRATA_TEST_IO_URING").is_some() {
            cmd.arg("-o").arg("io_uring");
        }
        let out = run(cmd.arg(mnt));
        if out.status.success() {
            Ok(Mount { mnt: mnt.to_path_buf() })
        } else {
            Err(format!("status {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// `strata branches MNT ARGS...`: a change of the live mount's branch stack.
    pub fn change_branches(&self, args: &[&str]) -> Output {
        run(strata().arg("branches").arg(&self.mnt).args(args))
    }

    pub fn unmount(self) {
        let out = run(strata().arg("umount").arg(&self.mnt));
        assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
        std::mem::forget(self);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run(strata().arg("umount").arg("-l").arg(&self.mnt));
    }
}

/// A kernel overlayfs mount (the reference) made by a test; unmounted on drop.
pub struct KernelOverlay(pub PathBuf);

impl KernelOverlay {
    pub fn new(options: &str, mnt: &Path) -> KernelOverlay {
        fs::create_dir_all(mnt).expect("mountpoint");
        sh(Command::new("mount").args(["-t", "overlay", "overlay", "-o", options]).arg(mnt));
        KernelOverlay(mnt.to_path_buf())
    }

    pub fn unmount(self) {
        sh(Command::new("umount").arg(&self.0));
        std::mem::forget(self);
    }
}

impl Drop for KernelOverlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Does the branch file at `p` carry overlayfs's mark of a metadata-only copy?
pub fn is_metacopy(p: &Path) -> bool {
    match rustix::fs::lgetxattr(p, "trusted.overlay.metacopy", &mut [0u8; 64][..]) {
        Ok(_) => true,
        Err(rustix::io::Errno::NODATA) => false,
        Err(e) => panic!("{}: {e}", p.display()),
    }
}

pub fn is_mounted(mnt: &Path) -> bool {
    let abs = std::path::absolute(mnt).unwrap();
    fs::read_to_string("/proc/self/mounts").unwrap().lines().any(|l| l.split(' ').nth(1) == Some(abs.to_str().unwrap()))
}

/// The names in a directory, sorted.
pub fn names(dir: impl AsRef<Path>) -> Vec<String> {
    let dir = dir.as_ref();
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

pub fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("read {}: {e}", p.as_ref().display()))
}

/// One line per entry: path, type, mode, owner, size, link count, content hash or
/// symlink target, xattrs (user.* and security.*). Directories report no size/nlink
/// (they differ legitimately between union implementations).
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())).map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let ft = md.file_type();
        let desc = if ft.is_dir() {
            format!("dir {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid())
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            let data = fs::read(&p).unwrap();
            format!(
                "file {:o} {}:{} size={} nlink={} sha={:x}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                md.len(),
                md.nlink(),
                Sha256::digest(&data)
            )
        } else if ft.is_fifo() {
            format!("fifo {:o}", md.mode() & 0o7777)
        } else if ft.is_char_device() {
            format!("chr {:o} {}", md.mode() & 0o7777, md.rdev())
        } else if ft.is_block_device() {
            format!("blk {:o} {}", md.mode() & 0o7777, md.rdev())
        } else {
            format!("socket {:o}", md.mode() & 0o7777)
        };
        out.insert(rel, format!("{desc}{}", xattrs(&p)));
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

fn xattrs(p: &Path) -> String {
    let mut buf = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(p, &mut buf[..]) else { return String::new() };
    let mut names: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|n| n.starts_with("user."))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(p, n.as_str(), &mut v[..]).unwrap_or(0);
            format!(" {n}={}", String::from_utf8_lossy(&v[..len]))
        })
        .collect()
}

/// A fingerprint of a directory exactly as it is on disk (whiteouts and meta files
/// included, times too): used to prove read-only branches never change.
pub fn raw_fingerprint(root: &Path) -> String {
    let mut lines = Vec::new();
    fn go(root: &Path, dir: &Path, lines: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let data =
                if md.is_file() { format!("{:x}", Sha256::digest(fs::read(&p).unwrap())) } else { String::new() };
            lines.push(format!(
                "{} {:o} {} {} {} {} {}{}",
                p.strip_prefix(root).unwrap().display(),
                md.mode(),
                md.uid(),
                md.len(),
                md.mtime_nsec() + md.mtime() * 1_000_000_000,
                md.ctime() * 1_000_000_000 + md.ctime_nsec(),
                data,
                xattrs(&p)
            ));
            if md.is_dir() {
                go(root, &p, lines);
            }
        }
    }
    go(root, root, &mut lines);
    lines.join("\n")
}

pub fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Runs a command, asserts success, returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared fixtures' directory (`../shared/fixtures`, or `STRATA_FIXTURES`).
pub fn fixtures() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir =
        std::env::var_os("STRATA_FIXTURES").map(PathBuf::from).unwrap_or_else(|| here.join("../../../shared/fixtures"));
    dir.join("make-images").exists().then_some(dir)
}

/// The fixture images (`make-images` output), built once per test binary under the
/// target dir; `None` (and the test skips) only outside CI when the fixtures are missing.
pub fn fixture_images() -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let Some(fixtures) = fixtures() else {
                assert!(std::env::var_os("CI").is_none(), "shared fixtures not found (set STRATA_FIXTURES)");
                eprintln!("skipped: shared fixtures not found");
                return None;
            };
            // make-images is deterministic and writes tools.txt last: a complete set is reused.
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-images");
            if !out.join("tools.txt").exists() {
                sh(Command::new("bash").arg(fixtures.join("make-images")).arg(&out));
            }
            Some(out)
        })
        .clone()
}

/// A store-rooted `strata` command.
pub fn st(root: &Path) -> Command {
    let mut c = strata();
    c.arg("--root").arg(root);
    c
}

/// The flattened-rootfs listing `make-images` writes in `expected/*.tree` (same columns,
/// same order), of the tree at `root`.
pub fn fixture_tree(root: &Path) -> String {
    const SCRIPT: &str = r#"
printf '#path\ttype\tmode\tuid\tgid\tsize\tnlink\tsha256|target\txattrs\n'
cd "$1" && find . -mindepth 1 -printf '%P\t%y\t%m\t%U\t%G\t%s\t%n\t%l\n' | LC_ALL=C sort |
while IFS=$'\t' read -r p y m u g s n l; do
  x=$(getfattr -h -d -m '^user\.' --absolute-names "./$p" 2>/dev/null |
      sed -n 's/^\(user\.[^=]*\)="\(.*\)"$/\1=\2/p' | paste -sd';')
  case $y in
    f) c=$(sha256sum < "./$p" | cut -c1-64) ;;
    l) c=$l; s=-; n=- ;;
    *) c=-; s=-; n=- ;;
  esac
  printf '%s\t%s\t%04o\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$y" "0$m" "$u" "$g" "$s" "$n" "$c" "${x:--}"
done
"#;
    sh(Command::new("bash").arg("-c").arg(SCRIPT).arg("tree").arg(root).env("LC_ALL", "C"))
}

/// Mounts `image` from the store at `root` and returns its flattened tree (see
/// [`fixture_tree`]).
pub fn mounted_tree(root: &Path, image: &str) -> String {
    let mnt = PathBuf::from(sh(st(root).args(["mount", image])).trim());
    let tree = fixture_tree(&mnt);
    sh(strata().arg("umount").arg(&mnt));
    tree
}

/// What a `strata` command printed and returned.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `strata --root ROOT ARGS...`.
pub fn go(root: &Path, args: &[&str]) -> Out {
    let o = st(root).args(args).output().expect("spawn strata");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A store with the fixture `app` image (busybox, /etc/passwd with user app = 1000).
pub fn store_with_app(s: &Scratch) -> Option<PathBuf> {
    let img = fixture_images()?;
    let root = s.path("store");
    sh(st(&root).args(["load", "-i"]).arg(img.join("app.docker.tar")));
    sh(st(&root).args(["tag", "fixtures/app", "app"]));
    Some(root)
}

pub fn ps_json(root: &Path) -> serde_json::Value {
    serde_json::from_str(&sh(st(root).args(["ps", "-a", "--format", "json"]))).unwrap()
}

pub fn wait_running(root: &Path, name: &str) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let all = ps_json(root);
        if let Some(c) = all.as_array().unwrap().iter().find(|c| c["Names"] == name && c["State"] == "running") {
            return c.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{name} never ran: {all}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn spawn_run(root: &Path, args: &[&str]) -> Child {
    st(root).arg("run").args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}
