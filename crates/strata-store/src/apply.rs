//! Applying a layer tar to an empty layer directory, safely.
//!
//! The tar is untrusted. Every path is cleaned lexically and refused if it climbs out of
//! the layer; every parent is walked one component at a time with `O_NOFOLLOW`, so a
//! symlink on the way (one the archive made itself) is refused, never followed; final
//! names are created with `*at` calls that do not follow links either. Hard links must
//! point at an entry of the same layer. OCI whiteouts become the store's on-disk form,
//! which is AUFS's (`.wh.NAME`, `.wh..wh..opq`): the union reads it as it is.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use strata_union::whiteout::{AUFS_OPAQUE, is_private_xattr};
use tar::EntryType;

use crate::compress::read_full;
use crate::error::{IoContext, Result, StoreError};
use crate::split::SplitRecorder;

/// What applying a layer wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
}

/// Applies the layer tar read from `tar` to `dest`, an empty directory. With `split`, the
/// tar's skeleton is recorded (the reader must then be `split.tee(..)`).
pub fn apply_layer(tar: impl Read, dest: &Path, split: Option<&SplitRecorder>) -> Result<Applied> {
    unpack(tar, dest, split, Whiteouts::Convert, true)
}

/// Where [`extract`] writes: a union (through its mount) refuses names the union keeps for
/// itself, a plain directory takes any name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Union,
    Directory,
}

/// Unpacks a plain tar of a tree (`cp`, filling a volume) into `dest`, an existing
/// directory that may hold files: an entry replaces what is at its name (a directory
/// is merged into), with the same care as [`apply_layer`] (nothing is followed, hard
/// links only to earlier entries). `.wh.` names are no whiteouts here: into a union they
/// are refused (they would be the union's own), into a directory they are plain names.
/// The root entry (`./`) gives `dest` its owner, mode, xattrs and time only with
/// `root_attrs` (else it is skipped, as Docker does for an existing directory).
pub fn extract(tar: impl Read, dest: &Path, target: Target, root_attrs: bool) -> Result<Applied> {
    let w = match target {
        Target::Union => Whiteouts::Refuse,
        Target::Directory => Whiteouts::Plain,
    };
    unpack(tar, dest, None, w, root_attrs)
}

/// What `.wh.` names in a tar are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whiteouts {
    /// OCI whiteouts, made the store's AUFS form (a layer).
    Convert,
    /// Ordinary names.
    Plain,
    /// Refused: the tree goes into a union, whose names they are.
    Refuse,
}

fn unpack(
    tar: impl Read,
    dest: &Path,
    split: Option<&SplitRecorder>,
    wh: Whiteouts,
    root_attrs: bool,
) -> Result<Applied> {
    let root = rustix::fs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).at(dest)?;
    let mut a = Applier {
        wh,
        root_attrs,
        root,
        dest: dest.to_path_buf(),
        parent: None,
        dir_times: HashMap::new(),
        whiteouts: Vec::new(),
        buf: vec![0; 1 << 17],
        stats: Applied::default(),
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| StoreError::Format(format!("not a tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| StoreError::Format(format!("layer tar: {e}")))?;
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        a.entry(&mut entry, &raw_name, split).map_err(|e| match e {
            // Where on disk, so that a full or failing filesystem is named.
            StoreError::Io { path, cause } => {
                StoreError::BadEntry { entry: shown.clone(), reason: format!("{}: {cause}", dest.join(path).display()) }
            }
            StoreError::BadEntry { reason, .. } => StoreError::BadEntry { entry: shown.clone(), reason },
            other => other,
        })?;
        a.stats.entries += 1;
    }
    a.finish()?;
    Ok(a.stats)
}

/// Cleans a tar path: no leading `/`, no `.`, `..` resolved lexically and refused when it
/// would climb above the root. `None` is the root itself.
pub fn clean_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, String> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("path climbs out of the layer (..)".into());
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(OsStr::from_bytes(&parts.join(&b'/')))))
}

fn bad(reason: impl Into<String>) -> StoreError {
    StoreError::BadEntry { entry: String::new(), reason: reason.into() }
}

/// Attributes every entry carries, PAX records applied over the header.
struct Attrs {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

fn attrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Attrs> {
    let h = entry.header();
    let num = |r: io::Result<u64>, what: &str| r.map_err(|e| bad(format!("bad {what}: {e}")));
    let mut attrs = Attrs {
        uid: num(h.uid(), "uid")? as u32,
        gid: num(h.gid(), "gid")? as u32,
        mode: h.mode().map_err(|e| bad(format!("bad mode: {e}")))? & 0o7777,
        mtime: Timespec { tv_sec: num(h.mtime(), "mtime")? as i64, tv_nsec: 0 },
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad(format!("bad PAX header: {e}")))? {
        for ext in pax {
            let ext = ext.map_err(|e| bad(format!("bad PAX record: {e}")))?;
            let (Ok(key), value) = (ext.key(), ext.value_bytes()) else { continue };
            let text = std::str::from_utf8(value).unwrap_or("");
            match key {
                "uid" => attrs.uid = text.parse().map_err(|_| bad(format!("bad PAX uid '{text}'")))?,
                "gid" => attrs.gid = text.parse().map_err(|_| bad(format!("bad PAX gid '{text}'")))?,
                "mtime" => attrs.mtime = pax_time(text).ok_or_else(|| bad(format!("bad PAX mtime '{text}'")))?,
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        attrs.xattrs.push((name.into(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(attrs)
}

/// A PAX time: decimal seconds with an optional fraction.
fn pax_time(text: &str) -> Option<Timespec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(Timespec { tv_sec, tv_nsec })
}

struct Applier {
    root: OwnedFd,
    dest: PathBuf,
    /// The last parent directory opened, by layer path: tars list a directory's entries together.
    parent: Option<(PathBuf, OwnedFd)>,
    /// Directory times are set last: creating children changes them.
    /// The last entry for a directory decides its time, as it decides its owner and mode.
    dir_times: HashMap<Option<PathBuf>, Timespec>,
    /// Names whited out in this layer (`dir/NAME` for `dir/.wh.NAME`).
    whiteouts: Vec<PathBuf>,
    buf: Vec<u8>,
    stats: Applied,
    wh: Whiteouts,
    /// The root entry's attributes apply to the root.
    root_attrs: bool,
}

impl Applier {
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        split: Option<&SplitRecorder>,
    ) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let Some(rel) = clean_path(raw).map_err(bad)? else {
            // The root entry (`.` or `./`): only its attributes apply.
            if kind == EntryType::Directory && self.root_attrs {
                let attrs = attrs_of(entry)?;
                self.set_owner_mode(&self.root.try_clone().at(&self.dest)?, None, &attrs, false)?;
                self.dir_times.insert(None, attrs.mtime);
            }
            return Ok(());
        };
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
            match self.wh {
                Whiteouts::Convert => return self.whiteout(&parent_rel, hidden),
                Whiteouts::Refuse => {
                    return Err(bad("names starting with .wh. are the union's own: it cannot hold such a file"));
                }
                Whiteouts::Plain => {}
            }
        }
        let attrs = attrs_of(entry)?;
        let parent = self.open_dir(&parent_rel, true)?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&parent, &name, false)?;
                let fd = rustix::fs::openat(
                    &parent,
                    &name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .at(&rel)?;
                if let Some(rec) = split.filter(|_| kind != EntryType::GNUSparse) {
                    rec.file_content(entry.raw_file_position(), entry.size(), &rel);
                }
                let file = File::from(fd);
                self.stats.bytes += self.write_content(entry, &file).at(&rel)?;
                fchown_mode(&file, &attrs).at(&rel)?;
                set_xattrs(&attrs, &rel, |k, v| {
                    rustix::fs::fsetxattr(file.as_fd(), k, v, rustix::fs::XattrFlags::empty())
                });
                rustix::fs::futimens(&file, &times(attrs.mtime)).at(&rel)?;
            }
            EntryType::Directory => {
                if !self.clear(&parent, &name, true)? {
                    rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o700)).at(&rel)?;
                }
                self.set_owner_mode(&parent, Some(&name), &attrs, true)?;
                self.dir_times.insert(Some(rel), attrs.mtime);
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| bad("symlink without a target"))?;
                self.clear(&parent, &name, false)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, &name).at(&rel)?;
                self.set_owner_mode(&parent, Some(&name), &attrs, false)?;
                set_times_at(&parent, &name, attrs.mtime).at(&rel)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| bad("hard link without a target"))?;
                self.hard_link(&parent, &name, &rel, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let h = entry.header();
                        let major = h.device_major().ok().flatten().unwrap_or(0);
                        let minor = h.device_minor().ok().flatten().unwrap_or(0);
                        let ft =
                            if kind == EntryType::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                };
                self.clear(&parent, &name, false)?;
                rustix::fs::mknodat(&parent, &name, ft, Mode::from_raw_mode(0o600), dev).at(&rel)?;
                self.set_owner_mode(&parent, Some(&name), &attrs, true)?;
                set_times_at(&parent, &name, attrs.mtime).at(&rel)?;
            }
            other => {
                tracing::warn!(entry = %rel.display(), "skipping tar entry of unsupported type {other:?}");
            }
        }
        Ok(())
    }

    /// `.wh.NAME` hides NAME in the layers below; `.wh..wh..opq` hides everything below
    /// its directory; other `.wh..wh.*` names are AUFS bookkeeping and are skipped.
    fn whiteout(&mut self, parent_rel: &Path, hidden: &[u8]) -> Result<()> {
        let opaque = hidden == &AUFS_OPAQUE.as_bytes()[4..];
        if !opaque && hidden.starts_with(b".wh.") {
            return Ok(());
        }
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(bad("invalid whiteout: it names nothing"));
        }
        let parent = self.open_dir(parent_rel, true)?;
        let mut marker = OsString::from(".wh.");
        marker.push(OsStr::from_bytes(hidden));
        self.clear(&parent, &marker, false)?;
        let fd = rustix::fs::openat(
            &parent,
            &marker,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at(parent_rel.join(&marker))?;
        drop(fd);
        if !opaque {
            self.whiteouts.push(parent_rel.join(OsStr::from_bytes(hidden)));
        }
        Ok(())
    }

    fn hard_link(&mut self, parent: &OwnedFd, name: &OsStr, rel: &Path, target: &[u8]) -> Result<()> {
        let target = clean_path(target).map_err(|e| bad(format!("hard link target: {e}")))?;
        let Some(target) = target else { return Err(bad("hard link to the layer root")) };
        if target == rel {
            return Err(bad("hard link to itself"));
        }
        let not_here =
            || bad(format!("hard link to '{}', which is not an earlier entry of this layer", target.display()));
        let tname = target.file_name().unwrap_or_default().to_os_string();
        let tparent = match self.open_dir(target.parent().unwrap_or(Path::new("")), false) {
            Ok(fd) => fd,
            Err(StoreError::Io { cause, .. }) if cause.raw_os_error() == Some(libc::ENOENT) => return Err(not_here()),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&tparent, &tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => return Err(bad("hard link to a directory")),
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(not_here()),
            Err(e) => return Err(e).at(&target),
        }
        self.clear(parent, name, false)?;
        rustix::fs::linkat(&tparent, &tname, parent, name, AtFlags::empty()).at(rel)
    }

    /// Opens layer directory `rel` one component at a time, never through a symlink;
    /// with `create`, missing directories are made (root-owned, 0755, as Docker does).
    fn open_dir(&mut self, rel: &Path, create: bool) -> Result<OwnedFd> {
        if let Some((p, fd)) = &self.parent
            && p == rel
        {
            return fd.try_clone().at(rel);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut cur = rustix::fs::openat(&self.root, ".", flags, Mode::empty()).at(&self.dest)?;
        let mut walked = PathBuf::new();
        for comp in rel.components() {
            let comp = comp.as_os_str();
            walked.push(comp);
            cur = match rustix::fs::openat(&cur, comp, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)).at(&walked)?;
                    rustix::fs::chmodat(&cur, comp, Mode::from_raw_mode(0o755), AtFlags::empty()).at(&walked)?;
                    rustix::fs::openat(&cur, comp, flags, Mode::empty()).at(&walked)?
                }
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                    return Err(bad(format!(
                        "'{}' is a symlink or not a directory in this layer: refusing to go through it",
                        walked.display()
                    )));
                }
                Err(e) => return Err(e).at(&walked),
            };
        }
        self.parent = Some((rel.to_path_buf(), cur.try_clone().at(rel)?));
        Ok(cur)
    }

    /// Makes room for a new entry at `parent/name`. An existing directory is kept when
    /// `keep_dir` (returns true); anything else there is removed.
    fn clear(&mut self, parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> Result<bool> {
        let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e).at(name),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if keep_dir {
                return Ok(true);
            }
            // std's remove_dir_all does not follow symlinks inside the tree.
            let path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
            std::fs::remove_dir_all(&path).at(name)?;
            self.parent = None;
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty()).at(name)?;
        }
        Ok(false)
    }

    fn set_owner_mode(&self, parent: &OwnedFd, name: Option<&OsStr>, attrs: &Attrs, chmod: bool) -> Result<()> {
        let shown = name.map(Path::new).unwrap_or(Path::new("."));
        let name = name.unwrap_or(OsStr::new(""));
        let flags = if name.is_empty() { AtFlags::EMPTY_PATH } else { AtFlags::SYMLINK_NOFOLLOW };
        let (uid, gid) = (Some(rustix::fs::Uid::from_raw(attrs.uid)), Some(rustix::fs::Gid::from_raw(attrs.gid)));
        rustix::fs::chownat(parent, name, uid, gid, flags).at(shown)?;
        let mode = Mode::from_raw_mode(attrs.mode);
        if name.is_empty() {
            rustix::fs::fchmod(parent, mode).at(shown)?;
        } else if chmod {
            rustix::fs::chmodat(parent, name, mode, AtFlags::empty()).at(shown)?;
        }
        let path = sys_path(parent, name);
        // lsetxattr: never through a symlink the layer holds; the root is reached by its
        // /proc/self/fd name, which must be followed.
        let flags = rustix::fs::XattrFlags::empty();
        set_xattrs(attrs, shown, |k, v| {
            if name.is_empty() {
                rustix::fs::setxattr(&path, k, v, flags)
            } else {
                rustix::fs::lsetxattr(&path, k, v, flags)
            }
        });
        Ok(())
    }

    fn write_content<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, file: &File) -> io::Result<u64> {
        let mut off = 0u64;
        let mut hole_at_end = false;
        loop {
            let n = read_full(entry, &mut self.buf)?;
            if n == 0 {
                break;
            }
            // All-zero blocks stay holes: sparse files stay sparse, whatever tar wrote them.
            if self.buf[..n].iter().all(|b| *b == 0) {
                hole_at_end = true;
            } else {
                file.write_all_at(&self.buf[..n], off)?;
                hole_at_end = false;
            }
            off += n as u64;
        }
        if hole_at_end {
            file.set_len(off)?;
        }
        Ok(off)
    }

    fn finish(&mut self) -> Result<()> {
        // A name whited out and re-created as a directory in the same layer replaces the
        // lower directory: nothing below may show through it.
        for rel in std::mem::take(&mut self.whiteouts) {
            let Ok(parent) = self.open_dir(rel.parent().unwrap_or(Path::new("")), false) else { continue };
            let st = rustix::fs::statat(&parent, rel.file_name().unwrap_or_default(), AtFlags::SYMLINK_NOFOLLOW);
            if matches!(st, Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR) {
                let dir = self.open_dir(&rel, false)?;
                let fd = rustix::fs::openat(
                    &dir,
                    AUFS_OPAQUE,
                    OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .at(rel.join(AUFS_OPAQUE))?;
                drop(fd);
            }
        }
        for (rel, t) in std::mem::take(&mut self.dir_times) {
            let res = match &rel {
                None => rustix::fs::futimens(&self.root, &times(t)),
                Some(rel) => {
                    let parent = match self.open_dir(rel.parent().unwrap_or(Path::new("")), false) {
                        Ok(p) => p,
                        Err(_) => continue, // replaced later in the layer
                    };
                    set_times_at(&parent, rel.file_name().unwrap_or_default(), t)
                }
            };
            match res {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e).at(rel.unwrap_or_default()),
            }
        }
        Ok(())
    }
}

fn times(t: Timespec) -> Timestamps {
    Timestamps { last_access: t, last_modification: t }
}

fn set_times_at(parent: &OwnedFd, name: &OsStr, t: Timespec) -> rustix::io::Result<()> {
    rustix::fs::utimensat(parent, name, &times(t), AtFlags::SYMLINK_NOFOLLOW)
}

/// The `/proc/self/fd` name of `parent/name`: reaches the entry itself, symlink or not.
fn sys_path(parent: &OwnedFd, name: &OsStr) -> PathBuf {
    let base = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
    if name.is_empty() { base } else { base.join(name) }
}

fn fchown_mode(file: &File, attrs: &Attrs) -> rustix::io::Result<()> {
    rustix::fs::fchown(file, Some(rustix::fs::Uid::from_raw(attrs.uid)), Some(rustix::fs::Gid::from_raw(attrs.gid)))?;
    // After chown, which clears setuid and setgid.
    rustix::fs::fchmod(file, Mode::from_raw_mode(attrs.mode))
}

/// Xattrs that would change what the union shows (overlay opaque and redirect marks, our
/// own state) are never taken from a layer.
fn checked_xattr(name: &OsStr) -> std::result::Result<(), String> {
    if is_private_xattr(name) {
        return Err("private to the union; refused from a layer".into());
    }
    Ok(())
}

/// Applies the entry's xattrs with `set`, best effort: one the filesystem refuses (or
/// one private to the union) is reported and skipped.
fn set_xattrs(attrs: &Attrs, rel: &Path, set: impl Fn(&OsStr, &[u8]) -> rustix::io::Result<()>) {
    for (key, value) in &attrs.xattrs {
        if let Err(e) = checked_xattr(key).and_then(|()| set(key, value).map_err(|e| e.to_string())) {
            tracing::warn!(entry = %rel.display(), "xattr {} not applied: {e}", key.to_string_lossy());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_and_contained() {
        let ok = |s: &str| clean_path(s.as_bytes()).unwrap().map(|p| p.to_string_lossy().into_owned());
        assert_eq!(ok("./etc/passwd"), Some("etc/passwd".into()));
        assert_eq!(ok("/etc//passwd"), Some("etc/passwd".into()));
        assert_eq!(ok("a/../b"), Some("b".into()));
        assert_eq!(ok("./"), None);
        for bad in ["../x", "a/../../x", "/../etc/passwd", ".."] {
            assert!(clean_path(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time("946684800").map(|t| t.tv_sec), Some(946684800));
        assert_eq!(pax_time("1.5").map(|t| t.tv_nsec), Some(500_000_000));
        assert!(pax_time("x").is_none());
    }
}
