//! `cp` between a container and the host (or a tar stream), and `export` of a
//! container's flattened root filesystem.
//!
//! The container side is its union (mounted here when it is not: a stopped container),
//! so what is written lands in its read-write layer by copy-up and hides what it
//! replaces as the union does; a running container is reached through its own root
//! (`/proc/PID/root`: the same union, with its volumes). Paths in the container are
//! resolved inside that root (`openat2(RESOLVE_IN_ROOT)`: a link to `/etc` means the
//! container's `/etc`), and the copy itself is a tar stream written and read by the
//! store's own code ([`strata_store::pack::pack_tree`], [`strata_store::apply::extract`]),
//! which never follows a link: a link pointing out of the root is copied as a link, and
//! both walk below the resolved path through directory descriptors (`O_NOFOLLOW`), so a
//! running container swapping a directory for a link midway cannot lead them out.

use std::ffi::{OsStr, OsString};
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use strata_store::Store;
use strata_store::apply::{Target, extract};
use strata_store::container::{self, Container};
use strata_store::pack::pack_tree;

/// Options of `cp`.
#[derive(clap::Args, Debug)]
pub struct CpArgs {
    /// Always follow a symbolic link that SRC_PATH names
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Archive mode (Docker's -a): owners are always kept by Strata
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin)
    #[arg(value_name = "SRC")]
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout)
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// One side of a copy.
enum Side<'a> {
    Container(&'a str, &'a str),
    Host(&'a str),
    Stream,
}

/// Docker's rule: a path starting with `/` or `.` is the host's; else `NAME:PATH` names a
/// container's path.
fn side(arg: &str) -> Side<'_> {
    if arg == "-" {
        return Side::Stream;
    }
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => Side::Container(c, p),
        _ => Side::Host(arg),
    }
}

/// A container's filesystem for `cp` and `export`: its union, mounted here if it was not
/// (and unmounted after, unless the container started meanwhile).
struct Mounted<'a> {
    store: &'a Store,
    c: Container,
    mnt: PathBuf,
    ours: bool,
}

impl<'a> Mounted<'a> {
    fn new(store: &'a Store, c: Container) -> Result<Mounted<'a>> {
        let was = strata_union::is_strata_mount(&store.mnt_dir(&c.id));
        let mnt = crate::containers::ensure_mounted(store, &c)?;
        Ok(Mounted { store, c, mnt, ours: !was })
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if !self.ours {
            return;
        }
        // Not while someone starts it (it holds the run lock, the union is its now).
        let Ok(Some(_starting)) = crate::monitor::run_lock(self.store, &self.c) else { return };
        match container::find(self.store, &self.c.id) {
            Ok(c) if !crate::monitor::live(&c) => crate::containers::unmount(self.store, &c),
            _ => {}
        }
    }
}

pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("opening {}", path.display()))
}

/// `rel` opened inside `root`, its links resolved there.
pub(crate) fn in_root(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    strata_union::sys::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// A path cleaned lexically (as Docker's `filepath.Clean`), relative to the root.
fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Where `path` is in the root: the directory that holds it (its own links resolved
/// inside the root) and its name (empty for the root itself). With `follow`, a link
/// that the last name is, is followed too, inside the root.
fn locate(root: &OwnedFd, path: &str, follow: bool) -> Result<(OwnedFd, OsString)> {
    let mut rel = clean(path);
    for _ in 0..40 {
        let Some(name) = rel.file_name().map(OsStr::to_os_string) else {
            let fd = in_root(root, Path::new("."), OFlags::PATH | OFlags::DIRECTORY)?;
            return Ok((fd, OsString::new()));
        };
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let dir = match in_root(root, &parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => bail!("no such directory: /{}", parent.display()),
            Err(e) => return Err(e).with_context(|| format!("resolving /{}", parent.display())),
        };
        if !follow {
            return Ok((dir, name));
        }
        match rustix::fs::readlinkat(&dir, &name, Vec::new()) {
            Ok(target) => {
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                // Absolute: from the root; relative: from the link's directory.
                rel = if target.is_absolute() { clean(&target.to_string_lossy()) } else { parent.join(target) };
                rel = clean(&rel.to_string_lossy());
            }
            Err(_) => return Ok((dir, name)),
        }
    }
    bail!("{path}: too many levels of symbolic links")
}

/// The path that reaches `dir/name` without following `name` ("." for the directory).
fn fd_name(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if name.is_empty() { base.join(".") } else { base.join(name) }
}

/// What is copied.
struct Source {
    /// Reaches it without following its last name.
    path: PathBuf,
    /// Its name for the copy.
    base: OsString,
    is_dir: bool,
    /// `SRC/.`: the directory's content, not the directory.
    contents: bool,
    /// Descriptors `path` goes through.
    _keep: Option<OwnedFd>,
}

/// What the destination is.
enum Dest {
    Dir,
    Other,
    Missing,
}

/// Where the copy goes: into the destination directory, or its parent under a name.
enum Plan {
    Into(Option<OsString>),
    Parent(OsString),
}

/// Docker's rules for a destination that is, or is not, a directory.
fn plan(src: &Source, dest_raw: &str, dest: Dest, shown: &str) -> Result<Plan> {
    let dest_name = clean(dest_raw).file_name().map(OsStr::to_os_string).unwrap_or_default();
    match dest {
        Dest::Dir if src.is_dir && (src.contents || src.base.is_empty()) => Ok(Plan::Into(None)),
        Dest::Dir => Ok(Plan::Into(Some(src.base.clone()))),
        Dest::Other if src.is_dir => {
            bail!("cannot overwrite non-directory \"{dest_raw}\" with directory \"{shown}\"")
        }
        Dest::Other if dest_raw.ends_with('/') => bail!("\"{dest_raw}\": not a directory"),
        Dest::Other => Ok(Plan::Parent(dest_name)),
        Dest::Missing if dest_raw.ends_with('/') && !src.is_dir => {
            bail!("destination directory \"{dest_raw}\" must exist to copy a file into it")
        }
        Dest::Missing if dest_name.is_empty() => bail!("\"{dest_raw}\": no such directory"),
        Dest::Missing => Ok(Plan::Parent(dest_name)),
    }
}

/// Copies `src` into directory `dir` as `name` (its content when `None`) through a tar
/// stream: one thread packs, this one unpacks.
pub fn copy_tree(src: &Path, name: Option<&Path>, dir: &Path, target: Target) -> Result<()> {
    let (reader, writer) = std::io::pipe().context("pipe")?;
    let (src_owned, name_owned) = (src.to_path_buf(), name.map(Path::to_path_buf));
    let packer = std::thread::spawn(move || -> strata_store::error::Result<()> {
        pack_tree(&src_owned, name_owned.as_deref(), BufWriter::with_capacity(1 << 17, writer), &strata_store::Quiet)
    });
    // Our own tar: a root entry is there only when asked for (`name` `.`).
    let unpacked = extract(BufReader::with_capacity(1 << 17, reader), dir, target, true);
    let packed = packer.join().map_err(|_| anyhow!("the thread packing {} panicked", src.display()))?;
    // The reader's error first: the packer's is then a broken pipe.
    unpacked?;
    packed?;
    Ok(())
}

/// Fills a new volume's directory `data` with what the root at `root` has at `target`
/// (nothing when that is not a directory): the directory's own owner, mode, times and
/// xattrs, and its content.
pub fn fill_from_root(root: &Path, target: &str, data: &Path) -> Result<()> {
    let rootfd = open_dir(root)?;
    let dir = match in_root(&rootfd, &clean(target), OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("resolving {target} in {}", root.display())),
    };
    copy_tree(&fd_name(&dir, OsStr::new("")), Some(Path::new(".")), data, Target::Directory)
}

/// A stopped container's path under one of its volumes: the volume's host directory and
/// the path in it (a running container shows its volumes itself).
fn in_volume(store: &Store, c: &Container, path: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
    let mut best: Option<(PathBuf, PathBuf, usize)> = None;
    for s in crate::volumes::specs(&c.config)? {
        let target = clean(&s.target);
        let Ok(rest) = path.strip_prefix(&target) else { continue };
        let host = match &s.source {
            crate::volumes::Source::Host(p) => p.clone(),
            crate::volumes::Source::Named(n) => strata_store::volume::data_dir(store, n),
            _ => continue,
        };
        let depth = target.components().count();
        if best.as_ref().is_none_or(|b| depth > b.2) {
            best = Some((host, rest.to_path_buf(), depth));
        }
    }
    Ok(best.map(|(h, r, _)| (h, r)))
}

/// Opens the root a container path is reached in and gives the path in it, and what
/// that root is: the union (a running container's root, or a stopped one's outside its
/// volumes) or a volume's plain directory.
fn root_of(store: &Store, c: &Container, union: &Path, path: &str) -> Result<(OwnedFd, String, Target)> {
    // A running container's own root: the same union, with its volumes and tmpfs.
    if c.is_running() {
        // Its pid 1 held by a pidfd while its root is opened: a pid reused meanwhile (the
        // container ended) must not give another process's root, or the host's.
        let pid1 = crate::lifecycle::pid1(c).ok_or_else(|| anyhow!("container {} is not running", c.name))?;
        let root = open_dir(Path::new(&format!("/proc/{}/root", c.state.pid)))?;
        if strata_runtime::pidfd_ended(pid1.as_fd()).context("polling the container's pidfd")? {
            bail!("container {} stopped while it was being opened", c.name);
        }
        return Ok((root, path.to_string(), Target::Union));
    }
    match in_volume(store, c, &clean(path))? {
        Some((host, rest)) => {
            let mut rel = rest.to_string_lossy().into_owned();
            if path.ends_with("/.") {
                rel.push_str("/.");
            } else if path.ends_with('/') {
                rel.push('/');
            }
            Ok((open_dir(&host)?, format!("/{rel}"), Target::Directory))
        }
        None => Ok((open_dir(union)?, path.to_string(), Target::Union)),
    }
}

/// Is `path` of the container under a volume or tmpfs (writable on a read-only root)?
fn under_mount(c: &Container, path: &str) -> bool {
    let p = clean(path);
    crate::volumes::specs(&c.config).is_ok_and(|v| v.iter().any(|s| !s.read_only && p.starts_with(clean(&s.target))))
}

fn source_in(root: &OwnedFd, raw: &str, follow: bool, c: &Container) -> Result<Source> {
    let contents = raw.ends_with("/.") || raw == ".";
    let follow = follow || raw.ends_with('/') || contents;
    let (dir, name) =
        locate(root, raw, follow).map_err(|_| anyhow!("Could not find the file {raw} in container {}", c.name))?;
    let st = match rustix::fs::statat(
        &dir,
        if name.is_empty() { OsStr::new(".") } else { &name },
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => st,
        Err(Errno::NOENT) => bail!("Could not find the file {raw} in container {}", c.name),
        Err(e) => return Err(e).with_context(|| format!("{raw} in container {}", c.name)),
    };
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if raw.ends_with('/') && !is_dir {
        bail!("{raw}: not a directory");
    }
    Ok(Source { path: fd_name(&dir, &name), base: name, is_dir, contents, _keep: Some(dir) })
}

fn source_on_host(raw: &str, follow: bool) -> Result<Source> {
    let contents = raw.ends_with("/.") || raw == ".";
    let trailing = raw.ends_with('/');
    let cleaned = std::path::absolute(raw).with_context(|| raw.to_string())?;
    let path = if follow || trailing || contents {
        cleaned.canonicalize().with_context(|| format!("{raw}: no such file or directory"))?
    } else {
        cleaned.clone()
    };
    let md = std::fs::symlink_metadata(&path).with_context(|| format!("{raw}: no such file or directory"))?;
    if trailing && !md.is_dir() {
        bail!("{raw}: not a directory");
    }
    let base = clean(&cleaned.to_string_lossy()).file_name().map(OsStr::to_os_string).unwrap_or_default();
    Ok(Source { path, base, is_dir: md.is_dir(), contents, _keep: None })
}

fn name_of(plan: &Plan) -> Option<PathBuf> {
    match plan {
        Plan::Into(n) => n.as_ref().map(PathBuf::from),
        Plan::Parent(n) => Some(PathBuf::from(n)),
    }
}

/// Writes `src` as a tar stream to stdout.
fn to_stdout(src: &Source) -> Result<()> {
    let out = std::io::stdout();
    if out.is_terminal() {
        bail!("refusing to write a tar stream to a terminal: redirect stdout");
    }
    let name = if src.contents || src.base.is_empty() { None } else { Some(PathBuf::from(&src.base)) };
    let mut w = BufWriter::with_capacity(1 << 17, out.lock());
    pack_tree(&src.path, name.as_deref(), &mut w, &strata_store::Quiet)?;
    w.flush().context("stdout")?;
    Ok(())
}

pub fn cmd_cp(store: &Store, args: &CpArgs) -> Result<ExitCode> {
    match (side(&args.src), side(&args.dest)) {
        (Side::Container(..), Side::Container(..)) => bail!("copying between containers is not supported"),
        (Side::Container(name, given), dest) => {
            let c = container::find(store, name)?;
            let m = Mounted::new(store, c.clone())?;
            let (root, path, _) = root_of(store, &c, &m.mnt, given)?;
            let mut src = source_in(&root, &path, args.follow_link, &c)?;
            // A volume's own directory is reached as the root of its host directory.
            if src.base.is_empty()
                && let Some(n) = clean(given).file_name()
            {
                src.base = n.to_os_string();
            }
            match dest {
                Side::Stream => to_stdout(&src)?,
                Side::Host(raw) => {
                    let kind = match std::fs::metadata(raw) {
                        Ok(md) if md.is_dir() => Dest::Dir,
                        Ok(_) => Dest::Other,
                        Err(_) => Dest::Missing,
                    };
                    let plan = plan(&src, raw, kind, &path)?;
                    let dir = match &plan {
                        Plan::Into(_) => PathBuf::from(raw),
                        Plan::Parent(_) => {
                            let abs = std::path::absolute(raw).with_context(|| raw.to_string())?;
                            let parent = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
                            if !parent.is_dir() {
                                bail!("no such directory: {}", parent.display());
                            }
                            parent
                        }
                    };
                    copy_tree(&src.path, name_of(&plan).as_deref(), &dir, Target::Directory)?;
                }
                Side::Container(..) => bail!("copying between containers is not supported"),
            }
        }
        (src_side, Side::Container(name, path)) => {
            let c = container::find(store, name)?;
            if c.config.security.read_only && !under_mount(&c, path) {
                bail!("container {} rootfs is marked read-only", c.name);
            }
            let m = Mounted::new(store, c.clone())?;
            let (root, rel, target) = root_of(store, &c, &m.mnt, path)?;
            // A link the destination is, is followed inside the root (as Docker).
            let (dir, dname) = locate(&root, &rel, true)?;
            let kind = if dname.is_empty() {
                Dest::Dir
            } else {
                match rustix::fs::statat(&dir, &dname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Dest::Dir,
                    Ok(_) => Dest::Other,
                    Err(Errno::NOENT) => Dest::Missing,
                    Err(e) => return Err(e).with_context(|| format!("{path} in container {}", c.name)),
                }
            };
            let open_dest = || -> Result<OwnedFd> {
                if dname.is_empty() {
                    return Ok(dir.try_clone()?);
                }
                rustix::fs::openat(
                    &dir,
                    &dname,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("{path} in container {}", c.name))
            };
            match src_side {
                Side::Stream => {
                    if !matches!(kind, Dest::Dir) {
                        bail!("destination \"{name}:{path}\" must be a directory");
                    }
                    let d = open_dest()?;
                    let stdin = std::io::stdin();
                    // A `./` entry of the stream leaves the existing directory as it is (as Docker).
                    let input = BufReader::with_capacity(1 << 17, stdin.lock());
                    extract(input, &fd_name(&d, OsStr::new("")), target, false)?;
                }
                Side::Host(raw) => {
                    let src = source_on_host(raw, args.follow_link)?;
                    let plan = plan(&src, path, kind, raw)?;
                    let d = match plan {
                        Plan::Into(_) => open_dest()?,
                        Plan::Parent(_) => dir.try_clone()?,
                    };
                    copy_tree(&src.path, name_of(&plan).as_deref(), &fd_name(&d, OsStr::new("")), target)?;
                }
                Side::Container(..) => bail!("copying between containers is not supported"),
            }
        }
        (Side::Stream | Side::Host(_), Side::Stream | Side::Host(_)) => {
            bail!("must specify at least one container source")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `export CONTAINER [-o FILE]`: the container's flattened root filesystem as a tar, from
/// its union (no volume content, as Docker), its root directory's entry (`./`) first.
pub fn cmd_export(store: &Store, reference: &str, output: Option<&Path>) -> Result<ExitCode> {
    let c = container::find(store, reference)?;
    let m = Mounted::new(store, c)?;
    let rootfd = open_dir(&m.mnt)?;
    let root = fd_name(&rootfd, OsStr::new(""));
    match output {
        Some(p) if p != Path::new("-") => {
            let file = std::fs::File::create(p).with_context(|| format!("{}", p.display()))?;
            let mut w = BufWriter::with_capacity(1 << 17, file);
            let res = pack_tree(&root, Some(Path::new(".")), &mut w, &crate::ui::Bars::new())
                .map_err(anyhow::Error::from)
                .and_then(|()| w.flush().with_context(|| format!("{}", p.display())));
            if let Err(e) = res {
                let _ = std::fs::remove_file(p);
                return Err(e);
            }
        }
        _ => {
            let out = std::io::stdout();
            if out.is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let mut w = BufWriter::with_capacity(1 << 17, out.lock());
            pack_tree(&root, Some(Path::new(".")), &mut w, &strata_store::Quiet)?;
            w.flush().context("stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_paths() {
        assert!(matches!(side("c1:/etc"), Side::Container("c1", "/etc")));
        assert!(matches!(side("./a:b"), Side::Host("./a:b")));
        assert!(matches!(side("/tmp/x:y"), Side::Host(_)));
        assert!(matches!(side("-"), Side::Stream));
        assert_eq!(clean("/a/./b/../c/"), PathBuf::from("a/c"));
        assert_eq!(clean("/../.."), PathBuf::new());
    }
}
