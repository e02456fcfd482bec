//! A directory as a layer tar: a rootfs (`import`) or a layer directory in the store's
//! AUFS form (`commit`). Names are sorted, so the same tree gives the same tar and the
//! same diff ID. Whiteouts leave as OCI whiteouts: AUFS `.wh.NAME` files as they are,
//! OverlayFS 0/0 devices as `.wh.NAME`, opaque xattrs as `.wh..wh..opq`; the union's own
//! `.wh..wh.*` directories stay out.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata_union::sys::{get_xattr, list_xattrs};
use strata_union::view::{View, ViewDir};
use strata_union::whiteout::{AUFS_OPAQUE, OVL_OPAQUE_XATTRS, OVL_REDIRECT_XATTRS, is_private_xattr};

use crate::error::{IoContext, Result, StoreError};
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

fn pack(dir: &Path, view: Option<&View>, out: impl Write, progress: &dyn Progress) -> Result<()> {
    let mut p =
        Packer { root: dir.to_path_buf(), builder: tar::Builder::new(out), links: HashMap::new(), progress, view };
    p.walk(Path::new(""))?;
    p.builder.into_inner().at(dir)?.flush().at(dir)
}

struct Packer<'a, W: Write> {
    root: PathBuf,
    builder: tar::Builder<W>,
    /// First path of each multiply-linked inode, to emit later names as hard links.
    links: HashMap<(u64, u64), PathBuf>,
    progress: &'a dyn Progress,
    view: Option<&'a View>,
}

impl<W: Write> Packer<'_, W> {
    fn walk(&mut self, rel: &Path) -> Result<()> {
        let dir = self.root.join(rel);
        let mut names: Vec<_> =
            std::fs::read_dir(&dir).at(&dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>().at(&dir)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let bytes = name.as_bytes();
            // The union's bookkeeping (work and state dirs), never content.
            if bytes.starts_with(b".wh..wh.") && name != AUFS_OPAQUE {
                continue;
            }
            let child = rel.join(&name);
            let full = self.root.join(&child);
            self.entry(&child, &full, None)?;
        }
        Ok(())
    }

    /// Emits `rel`, read from `full`; `merged` is set when the entry comes from the
    /// union view (inside a renamed directory) rather than from the layer itself.
    fn entry(&mut self, rel: &Path, full: &Path, merged: Option<&ViewDir>) -> Result<()> {
        let meta = std::fs::symlink_metadata(full).at(full)?;
        let ft = meta.file_type();
        let mut h = header_of(&meta);
        if ft.is_char_device() && meta.rdev() == 0 {
            // An OverlayFS whiteout.
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(rel.file_name().unwrap_or_default());
            let path = rel.with_file_name(wh);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o600);
            return self.builder.append_data(&mut h, &path, io::empty()).at(full);
        }
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                let first = first.clone();
                return self.builder.append_link(&mut h, rel, &first).at(full);
            }
            self.links.insert((meta.dev(), meta.ino()), rel.to_path_buf());
        }
        self.xattrs(full)?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.builder.append_data(&mut h, rel, io::empty()).at(full)?;
            let redirected =
                self.view.is_some() && get_xattr(full, OsStr::new(OVL_REDIRECT_XATTRS[0])).ok().flatten().is_some();
            let opaque = redirected
                || OVL_OPAQUE_XATTRS
                    .iter()
                    .any(|x| get_xattr(full, OsStr::new(x)).ok().flatten().is_some_and(|v| v == b"y"));
            if opaque && (redirected || !full.join(AUFS_OPAQUE).exists()) {
                let mut o = header_of(&meta);
                o.set_entry_type(tar::EntryType::Regular);
                self.builder.append_data(&mut o, rel.join(AUFS_OPAQUE), io::empty()).at(full)?;
            }
            let merged = match (merged, self.view) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(view)) if redirected => Some(lookup_dir(view, rel).at(full)?),
                _ => None,
            };
            return match merged {
                Some(dir) => self.merged(rel, &dir),
                None => self.walk(rel),
            };
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(full).at(full)?;
            h.set_entry_type(tar::EntryType::Symlink);
            return self.builder.append_link(&mut h, rel, &target).at(full);
        }
        if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(full).at(full)?;
            self.progress.advance(meta.len());
            // Exactly the size the header says: a file growing meanwhile (a running
            // container) must not spill bytes that would parse as further entries.
            let exact = Exact { inner: f.take(meta.len()), path: full };
            return self.builder.append_data(&mut h, rel, exact).at(full);
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            tracing::warn!("{}: sockets cannot go into a layer; skipped", full.display());
            return Ok(());
        };
        h.set_entry_type(kind);
        let dev = meta.rdev();
        h.set_device_major(rustix::fs::major(dev)).at(full)?;
        h.set_device_minor(rustix::fs::minor(dev)).at(full)?;
        self.builder.append_data(&mut h, rel, io::empty()).at(full)
    }

    /// Emits everything the union shows in `dir` (entries of any layer).
    fn merged(&mut self, rel: &Path, dir: &ViewDir) -> Result<()> {
        let Some(view) = self.view else { return Ok(()) };
        for e in view.entries(dir).at(&self.root)? {
            self.entry(&rel.join(&e.name), &e.disk_path, e.dir.as_ref())?;
        }
        Ok(())
    }

    /// The entry's xattrs as PAX records (before its header), the union's private ones left out.
    fn xattrs(&mut self, full: &Path) -> Result<()> {
        let proc = strata_union::sys::PathFd::open(rustix::fs::CWD, full)
            .map_err(|e| StoreError::Io { path: full.to_path_buf(), cause: e.into() })?;
        let names = list_xattrs(&proc.proc).at(full)?;
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        for n in names {
            if is_private_xattr(&n) {
                continue;
            }
            if let Some(v) = get_xattr(&proc.proc, &n).at(full)? {
                records.push((format!("SCHILY.xattr.{}", n.to_string_lossy()), v));
            }
        }
        if !records.is_empty() {
            records.sort();
            self.builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).at(full)?;
        }
        Ok(())
    }
}

/// A header with the entry's mode, owner and mtime, size 0.
fn header_of(meta: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid() as u64);
    h.set_gid(meta.gid() as u64);
    h.set_mtime(meta.mtime().max(0) as u64);
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
