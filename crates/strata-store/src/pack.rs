//! A directory as a layer tar: a rootfs (`import`) or a layer directory in the store's
//! AUFS form (`commit`). Names are sorted, so the same tree gives the same tar and the
//! same diff ID. Whiteouts leave as OCI whiteouts: AUFS `.wh.NAME` files as they are,
//! OverlayFS 0/0 devices as `.wh.NAME`, opaque xattrs as `.wh..wh..opq`; the union's own
//! `.wh..wh.*` directories stay out.

//!
//! Paths are reached through `strata_union::sys`, which takes a tree of any depth.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags, Stat};
use strata_union::sys::{self, PathFd, get_xattr, list_xattrs};
use strata_union::view::{View, ViewDir};
use strata_union::whiteout::{
    AUFS_OPAQUE, OVL_METACOPY_XATTR, OVL_OPAQUE_XATTRS, OVL_REDIRECT_XATTRS, is_private_xattr,
};

use crate::error::{IoContext, Result};
use crate::progress::Progress;

/// Writes the tree under `dir` as a tar to `out`.
pub fn pack_dir(dir: &Path, out: impl Write, progress: &dyn Progress) -> Result<()> {
    pack(dir, None, out, progress)
}

/// Writes a container's read-write layer `dir` as a layer tar. `view` is the container's
/// whole union: a directory renamed from a lower one (an overlay redirect) cannot be
/// expressed in a tar, so it leaves as an opaque directory with everything it shows.
pub fn pack_layer(dir: &Path, view: &View, out: impl Write, progress: &dyn Progress) -> Result<()> {
    pack(dir, Some(view), out, progress)
}

/// Writes the entry at `path` as a plain tar of a tree (`cp`, `export`, filling a
/// volume): named `name`, a directory with its contents below `name/` (`.` gives the
/// directory's own entry and its contents at the top); without `name`, the contents of
/// directory `path` only. Nothing is converted: no whiteouts (a union mount shows none),
/// a `.wh.`-named file or a 0/0 device is what it is. Symbolic links are never followed.
pub fn pack_tree(path: &Path, name: Option<&Path>, out: impl Write, progress: &dyn Progress) -> Result<()> {
    let mut p = Packer::new(path, None, out, progress);
    p.tree = true;
    match name {
        Some(name) => {
            p.prefix = Some(name.to_path_buf());
            p.entry(Path::new(""), path, path, None)?;
        }
        None => p.walk(Path::new(""), path)?,
    }
    p.builder.into_inner().at(path)?.flush().at(path)
}

fn pack(dir: &Path, view: Option<&View>, out: impl Write, progress: &dyn Progress) -> Result<()> {
    let mut p = Packer::new(dir, view, out, progress);
    p.walk(Path::new(""), dir)?;
    p.builder.into_inner().at(dir)?.flush().at(dir)
}

struct Packer<'a, W: Write> {
    root: PathBuf,
    builder: tar::Builder<W>,
    /// First path of each multiply-linked inode, to emit later names as hard links.
    links: HashMap<(u64, u64), PathBuf>,
    progress: &'a dyn Progress,
    view: Option<&'a View>,
    /// A plain tree ([`pack_tree`]): no whiteout conversion, nothing skipped.
    tree: bool,
    /// The tar name of the root (`pack_tree` with a name); else names are relative to it.
    prefix: Option<PathBuf>,
}

impl<'a, W: Write> Packer<'a, W> {
    fn new(root: &Path, view: Option<&'a View>, out: W, progress: &'a dyn Progress) -> Packer<'a, W> {
        Packer {
            root: root.to_path_buf(),
            builder: tar::Builder::new(out),
            links: HashMap::new(),
            progress,
            view,
            tree: false,
            prefix: None,
        }
    }

    /// The tar name of the entry at `rel` below the root.
    fn name(&self, rel: &Path) -> PathBuf {
        match &self.prefix {
            Some(p) if rel.as_os_str().is_empty() => p.clone(),
            Some(p) => p.join(rel),
            None => rel.to_path_buf(),
        }
    }

    /// Emits the entries of directory `rel`, reached at `dir` (the root, or a name in its
    /// parent's open descriptor). Each entry is reached through its directory's descriptor
    /// (`/proc/self/fd/N/NAME`, the last name never followed): a directory that a running
    /// container swaps for a link meanwhile fails, it never leads out of the tree.
    fn walk(&mut self, rel: &Path, dir: &Path) -> Result<()> {
        let shown = self.root.join(rel);
        let fd = sys::open_at(CWD, dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).at(&shown)?;
        let mut names = sys::dir_names(&fd).at(&shown)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let here = sys::proc_path(&fd);
        for name in names {
            let bytes = name.as_bytes();
            // The union's bookkeeping (work and state dirs), never content.
            if !self.tree && bytes.starts_with(b".wh..wh.") && name != AUFS_OPAQUE {
                continue;
            }
            let child = rel.join(&name);
            self.entry(&child, &here.join(&name), &shown.join(&name), None)?;
        }
        Ok(())
    }

    /// Emits `rel`, read from `full` (named `shown` in errors); `merged` is set when the
    /// entry comes from the union view (inside a renamed directory) rather than from the
    /// layer itself.
    fn entry(&mut self, rel: &Path, full: &Path, shown: &Path, merged: Option<&ViewDir>) -> Result<()> {
        // Everything below is read from this one inode, never from the name again: a
        // running container may replace the name meanwhile.
        let entry = PathFd::open(CWD, full).at(shown)?;
        let st = entry.stat().at(shown)?;
        let kind = sys::file_type_bits(&st);
        let mut h = header_of(&st);
        let name = self.name(rel);
        if !self.tree && kind == libc::S_IFCHR && st.st_rdev == 0 {
            // An OverlayFS whiteout.
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(rel.file_name().unwrap_or_default());
            let path = rel.with_file_name(wh);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o600);
            return self.builder.append_data(&mut h, &path, io::empty()).at(shown);
        }
        if kind != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                h.set_entry_type(tar::EntryType::Link);
                let first = first.clone();
                return self.builder.append_link(&mut h, &name, &first).at(shown);
            }
            self.links.insert((st.st_dev, st.st_ino), name.clone());
        }
        // A tree keeps times to the nanosecond (a PAX mtime); a layer keeps the header's
        // seconds, so that its bytes, and diff ID, stay what they were.
        let mtime = (self.tree && st.st_mtime_nsec != 0).then(|| format!("{}.{:09}", st.st_mtime, st.st_mtime_nsec));
        let xattr_names = self.xattrs(&entry.proc, shown, mtime)?;
        if kind == libc::S_IFDIR {
            h.set_entry_type(tar::EntryType::Directory);
            self.builder.append_data(&mut h, &name, io::empty()).at(shown)?;
            if self.tree {
                return self.walk(rel, full);
            }
            let xattr = |name: &str| get_xattr(&entry.proc, OsStr::new(name)).ok().flatten();
            let redirected = self.view.is_some() && xattr(OVL_REDIRECT_XATTRS[0]).is_some();
            let opaque = redirected || OVL_OPAQUE_XATTRS.iter().any(|x| xattr(x).is_some_and(|v| v == b"y"));
            if opaque && (redirected || sys::lstat_opt(CWD, full.join(AUFS_OPAQUE)).at(shown)?.is_none()) {
                let mut o = header_of(&st);
                o.set_entry_type(tar::EntryType::Regular);
                self.builder.append_data(&mut o, rel.join(AUFS_OPAQUE), io::empty()).at(shown)?;
            }
            let merged = match (merged, self.view) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(view)) if redirected => Some(lookup_dir(view, rel).at(shown)?),
                _ => None,
            };
            return match merged {
                Some(dir) => self.merged(rel, &dir),
                None => self.walk(rel, full),
            };
        }
        if kind == libc::S_IFLNK {
            let target = sys::readlinkat(CWD, full, Vec::new()).at(shown)?;
            h.set_entry_type(tar::EntryType::Symlink);
            return self.builder.append_link(&mut h, &name, OsStr::from_bytes(target.as_bytes())).at(shown);
        }
        if kind == libc::S_IFREG {
            let len = st.st_size as u64;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(len);
            // A metadata-only copy (a container's chmod, chown, touch) holds no data: the
            // layer's file takes the data from below.
            // Non-blocking: a FIFO swapped in meanwhile reads as a file that shrank, it
            // does not hang the copy.
            let read = |path: &Path| sys::open_at(CWD, path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty());
            let f = match self.view {
                Some(view) if !self.tree && xattr_names.iter().any(|n| n == OVL_METACOPY_XATTR) => {
                    match data_below(view, rel) {
                        Ok(below) => read(&below).at(shown)?,
                        Err(e) => {
                            // A running container completed the copy since: a full copy
                            // was renamed over it, which holds the data now.
                            let now = read(full).at(shown)?;
                            if get_xattr(&sys::proc_path(&now), OsStr::new(OVL_METACOPY_XATTR)).at(shown)?.is_some() {
                                return Err(e).at(shown);
                            }
                            now
                        }
                    }
                }
                // Reopened through its handle: the inode whose attributes were read.
                _ => rustix::fs::open(&entry.proc, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
                    .at(shown)?,
            };
            let f = File::from(f);
            self.progress.advance(len);
            // Exactly the size the header says: a file growing meanwhile (a running
            // container) must not spill bytes that would parse as further entries.
            let exact = Exact { inner: f.take(len), path: shown };
            return self.builder.append_data(&mut h, &name, exact).at(shown);
        }
        let entry_type = match kind {
            libc::S_IFCHR => tar::EntryType::Char,
            libc::S_IFBLK => tar::EntryType::Block,
            libc::S_IFIFO => tar::EntryType::Fifo,
            _ => {
                tracing::warn!("{}: sockets cannot go into a layer; skipped", shown.display());
                return Ok(());
            }
        };
        h.set_entry_type(entry_type);
        let dev = st.st_rdev;
        h.set_device_major(rustix::fs::major(dev)).at(shown)?;
        h.set_device_minor(rustix::fs::minor(dev)).at(shown)?;
        self.builder.append_data(&mut h, &name, io::empty()).at(shown)
    }

    /// Emits everything the union shows in `dir` (entries of any layer).
    fn merged(&mut self, rel: &Path, dir: &ViewDir) -> Result<()> {
        let Some(view) = self.view else { return Ok(()) };
        for e in view.entries(dir).at(&self.root)? {
            self.entry(&rel.join(&e.name), &e.disk_path, &e.disk_path, e.dir.as_ref())?;
        }
        Ok(())
    }

    /// The xattrs of the entry at `proc` (its `/proc/self/fd` name) as PAX records (before
    /// its header), the union's private ones left out; and `mtime` when given. Returns
    /// the names of all its xattrs, private ones included.
    fn xattrs(&mut self, proc: &Path, full: &Path, mtime: Option<String>) -> Result<Vec<OsString>> {
        let names = list_xattrs(proc).at(full)?;
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(t) = mtime {
            records.push(("mtime".into(), t.into_bytes()));
        }
        for n in &names {
            if is_private_xattr(n) {
                continue;
            }
            if let Some(v) = get_xattr(proc, n).at(full)? {
                records.push((format!("SCHILY.xattr.{}", n.to_string_lossy()), v));
            }
        }
        if !records.is_empty() {
            records.sort();
            self.builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).at(full)?;
        }
        Ok(names)
    }
}

/// A header with the entry's mode, owner and mtime, size 0.
fn header_of(st: &Stat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Reads exactly the `Take`'s limit or fails.
struct Exact<'a, R> {
    inner: io::Take<R>,
    path: &'a Path,
}

impl<R: io::Read> io::Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.inner.limit() > 0 {
            return Err(io::Error::other(format!("{} shrank while being packed", self.path.display())));
        }
        Ok(n)
    }
}

/// The view's directory at `rel`.
fn lookup_dir(view: &View, rel: &Path) -> io::Result<ViewDir> {
    let mut dir = view.root();
    for c in rel.components() {
        dir = view.lookup(&dir, c.as_os_str())?.and_then(|e| e.dir).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{} is not a directory of the union", rel.display()))
        })?;
    }
    Ok(dir)
}

/// Where the union reads the data of metadata-only copy `rel`: the layer below holding it.
fn data_below(view: &View, rel: &Path) -> io::Result<PathBuf> {
    let dir = lookup_dir(view, rel.parent().unwrap_or(Path::new("")))?;
    let name = rel.file_name().unwrap_or_default();
    view.lookup(&dir, name)?
        .and_then(|e| e.data_path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "a metadata-only copy whose data no layer below holds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A directory swapped for a link to the outside while trees are packed (a running
    /// container under `cp`/`export`): the outside's content never shows up in a tar.
    #[test]
    fn a_directory_swapped_for_a_link_is_never_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        std::fs::create_dir_all(root.join("d")).expect("mkdir");
        std::fs::create_dir(&outside).expect("mkdir");
        // The same names outside: a walk that follows `d` midway finds them.
        for i in 0..50 {
            std::fs::write(root.join("d").join(format!("f{i}")), "inside").expect("write");
            std::fs::write(outside.join(format!("f{i}")), "SECRET-OF-THE-HOST").expect("write");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (root, outside, stop) = (root.clone(), outside.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::rename(root.join("d"), root.join("d.real"));
                    let _ = std::os::unix::fs::symlink(&outside, root.join("d"));
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(root.join("d"));
                    let _ = std::fs::rename(root.join("d.real"), root.join("d"));
                }
            })
        };
        let mut leaked = 0;
        for _ in 0..200 {
            let mut out = Vec::new();
            // Failing is fine (the tree changed under the walk); following is not.
            let _ = pack_tree(&root, Some(Path::new(".")), &mut out, &crate::Quiet);
            if out.windows(18).any(|w| w == b"SECRET-OF-THE-HOST") {
                leaked += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().expect("swapper");
        assert_eq!(leaked, 0, "the outside's file was packed {leaked} times");
    }

    /// A running container completing metadata-only copies while its layer is packed (a
    /// full copy renamed over each sparse marked file, as the union does): every pack
    /// succeeds and holds the data.
    #[test]
    fn metadata_only_copies_completed_while_packed_keep_their_data() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let [upper, lower, aside] = ["upper", "lower", "aside"].map(|d| tmp.path().join(d));
        for d in [&upper, &lower, &aside] {
            std::fs::create_dir(d).expect("mkdir");
        }
        const FILES: usize = 300;
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        for i in 0..FILES {
            std::fs::write(lower.join(format!("f{i}")), &data).expect("write");
            let f = File::create(upper.join(format!("f{i}"))).expect("create");
            f.set_len(data.len() as u64).expect("truncate");
            strata_union::whiteout::set_metacopy(&f).expect("mark");
        }
        let container = {
            let (upper, aside, data) = (upper.clone(), aside.clone(), data.clone());
            std::thread::spawn(move || {
                for i in 0..FILES {
                    std::fs::write(aside.join("c"), &data).expect("write");
                    std::fs::rename(aside.join("c"), upper.join(format!("f{i}"))).expect("rename");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        };
        let (mut packs, mut failures) = (0, Vec::new());
        while packs < 3 || !container.is_finished() {
            packs += 1;
            let mut out = Vec::new();
            let packed = View::open(&[upper.clone(), lower.clone()])
                .and_then(|view| pack_layer(&upper, &view, &mut out, &crate::Quiet).map_err(io::Error::other));
            if let Err(e) = packed {
                failures.push(e.to_string());
                continue;
            }
            let mut tar = tar::Archive::new(&out[..]);
            for entry in tar.entries().expect("tar") {
                let mut entry = entry.expect("entry");
                let mut got = Vec::new();
                entry.read_to_end(&mut got).expect("read");
                if got != data {
                    failures.push(format!("{}: not the data", entry.path().expect("path").display()));
                }
            }
        }
        container.join().expect("container");
        assert!(
            failures.is_empty(),
            "{} of {packs} packs went wrong: {:?}",
            failures.len(),
            &failures[..3.min(failures.len())]
        );
    }
}
