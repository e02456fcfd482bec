//! Whiteouts and opaque directories, in both on-disk formats.
//!
//! AUFS: a whiteout for `NAME` is an empty file `.wh.NAME` beside it; an opaque directory
//! holds `.wh..wh..opq`; names starting `.wh..wh.` are the union's own meta files.
//! OverlayFS: a whiteout is a character device 0/0 at `NAME`; an opaque directory carries
//! `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`).
//! Both formats are always read; the mount's [`Format`] decides which one is written.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Aufs,
    Overlay,
}

pub const WH_PREFIX: &[u8] = b".wh.";
pub const AUFS_OPAQUE: &str = ".wh..wh..opq";
pub const OVL_OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
/// The longest name a branch filesystem takes (and the union).
pub const NAME_MAX: usize = 255;

/// Is `name` short enough for an AUFS whiteout (`.wh.` + name)? Longer ones get an
/// overlay-format whiteout instead.
pub fn aufs_name_fits(name: &OsStr) -> bool {
    name.len() + WH_PREFIX.len() <= NAME_MAX
}

/// Any name starting with `.wh.`: never listed, never creatable by users.
pub fn is_meta_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// The name an AUFS whiteout file hides (`.wh.foo` -> `foo`); `None` for other names and
/// for the union's own `.wh..wh.*` meta files.
pub fn whited_out_name(name: &OsStr) -> Option<&OsStr> {
    let rest = name.as_bytes().strip_prefix(WH_PREFIX)?;
    if rest.starts_with(WH_PREFIX) || rest.is_empty() { None } else { Some(OsStr::from_bytes(rest)) }
}

pub fn aufs_whiteout_name(name: &OsStr) -> OsString {
    let mut n = OsString::from(".wh.");
    n.push(name);
    n
}

/// A character device with device number 0/0 is an OverlayFS whiteout.
pub fn is_overlay_whiteout(st: &Stat) -> bool {
    sys::file_type_bits(st) == libc::S_IFCHR && st.st_rdev == 0
}

/// Private xattrs of the overlay format: hidden from users, never copied up as-is.
pub fn is_private_xattr(name: &OsStr) -> bool {
    let n = name.as_bytes();
    n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.") || n.starts_with(b"trusted.strata.")
}

/// Does branch directory `dir` (relative to `root`) hold an AUFS whiteout for `name`?
pub fn has_aufs_whiteout(root: impl AsFd, dir: &Path, name: &OsStr) -> Result<bool, Errno> {
    if !aufs_name_fits(name) {
        return Ok(false);
    }
    Ok(sys::lstat_opt(root, sys::join(dir, &aufs_whiteout_name(name)))?.is_some())
}

/// Only the trusted form: a `user.*` redirect could be set by anyone who owns a directory.
pub const OVL_REDIRECT_XATTRS: [&str; 1] = ["trusted.overlay.redirect"];

/// Marks a metadata-only copy of a regular file (kernel overlayfs `metacopy=on`): the data
/// is in the file of the same name (or of the file's redirect) in a lower layer.
pub const OVL_METACOPY_XATTR: &str = "trusted.overlay.metacopy";

/// Is regular file `rel` a metadata-only copy, and where did it come from if it was
/// renamed (its redirect, as for directories)? `None` when it holds its own data.
pub fn metacopy_marks(root: impl AsFd, rel: &Path) -> Result<Option<Option<std::path::PathBuf>>, Errno> {
    let root = root.as_fd();
    if !sys::has_xattr(root, rel, OsStr::new(OVL_METACOPY_XATTR))? {
        return Ok(None);
    }
    let redirect = sys::get_xattr_at(root, rel, OsStr::new(OVL_REDIRECT_XATTRS[0]))?;
    Ok(Some(redirect.and_then(|v| valid_redirect(OsStr::from_bytes(&v)))))
}

/// Marks the open file `file` a metadata-only copy.
pub fn set_metacopy(file: impl AsFd) -> Result<(), Errno> {
    rustix::fs::setxattr(sys::proc_path(&file.as_fd()), OVL_METACOPY_XATTR, b"", rustix::fs::XattrFlags::empty())
}

/// Takes the marks of a metadata-only copy (and any redirect) off the open file `file`,
/// once it holds its own data.
pub fn clear_metacopy(file: impl AsFd) -> Result<(), Errno> {
    let path = sys::proc_path(&file.as_fd());
    for mark in [OVL_METACOPY_XATTR, OVL_REDIRECT_XATTRS[0]] {
        match rustix::fs::removexattr(&path, mark) {
            Ok(()) | Err(Errno::NODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a branch directory says about the directories below it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DirMarks {
    /// Nothing below shows through.
    pub opaque: bool,
    /// The directory was renamed: its lower parts are at this path (absolute from the
    /// branch root when it starts with `/`, else a sibling name), as overlayfs records it.
    pub redirect: Option<std::path::PathBuf>,
}

/// Reads the opaque marker (either format) and the redirect of directory `rel`. Asked
/// of every directory a lookup merges: one listing of its xattr names says which
/// markers there are to read (most directories have none), where reading each marker
/// took a descriptor and a call apiece.
pub fn dir_marks(root: impl AsFd, rel: &Path) -> Result<DirMarks, Errno> {
    let names = match sys::list_xattrs_at(&root, rel) {
        Ok(names) => names,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(DirMarks::default()),
        Err(e) => return Err(e),
    };
    if sys::lstat_opt(&root, sys::join(rel, OsStr::new(AUFS_OPAQUE)))?.is_some() {
        return Ok(DirMarks { opaque: true, redirect: None });
    }
    let marked = |attr: &str| names.iter().any(|n| n == attr);
    for attr in OVL_OPAQUE_XATTRS.into_iter().filter(|a| marked(a)) {
        if sys::get_xattr_at(&root, rel, OsStr::new(attr))?.as_deref() == Some(b"y") {
            return Ok(DirMarks { opaque: true, redirect: None });
        }
    }
    for attr in OVL_REDIRECT_XATTRS.into_iter().filter(|a| marked(a)) {
        if let Some(v) = sys::get_xattr_at(&root, rel, OsStr::new(attr))?.filter(|v| !v.is_empty()) {
            return Ok(DirMarks { opaque: false, redirect: valid_redirect(OsStr::from_bytes(&v)) });
        }
    }
    Ok(DirMarks::default())
}

/// A redirect as overlayfs accepts it: absolute (`/a/b`) with only plain components, or a
/// single plain name. Anything else (`..`, `.`, empty components) is ignored, so a layer
/// cannot point the union outside the branches.
fn valid_redirect(v: &OsStr) -> Option<std::path::PathBuf> {
    let bytes = v.as_bytes();
    let (absolute, rest) = match bytes.strip_prefix(b"/") {
        Some(r) => (true, r),
        None => (false, bytes),
    };
    let parts: Vec<&[u8]> = rest.split(|b| *b == b'/').collect();
    let plain = |p: &&[u8]| !p.is_empty() && *p != b"." && *p != b"..";
    if parts.is_empty() || !parts.iter().all(plain) || (!absolute && parts.len() != 1) {
        return None;
    }
    Some(std::path::PathBuf::from(v))
}

/// Records on directory `rel` that its lower parts live at `target` (relative to the
/// branch roots), in the overlayfs form (`/` + path), which kernel overlayfs reads too.
pub fn set_redirect(root: impl AsFd, rel: &Path, target: &Path) -> Result<(), Errno> {
    let p = sys::PathFd::open(root, rel)?;
    let mut value = b"/".to_vec();
    value.extend_from_slice(target.as_os_str().as_bytes());
    rustix::fs::setxattr(&p.proc, OVL_REDIRECT_XATTRS[0], &value, rustix::fs::XattrFlags::empty())
}

/// Marks directory `rel` opaque in `format`.
pub fn set_opaque(format: Format, root: impl AsFd, rel: &Path) -> Result<(), Errno> {
    match format {
        Format::Aufs => {
            let fd = sys::open_at(
                &root,
                sys::join(rel, OsStr::new(AUFS_OPAQUE)),
                OFlags::CREATE | OFlags::WRONLY,
                Mode::empty(),
            )?;
            drop(fd);
            Ok(())
        }
        Format::Overlay => {
            let p = sys::PathFd::open(root, rel)?;
            rustix::fs::setxattr(&p.proc, OVL_OPAQUE_XATTRS[0], b"y", rustix::fs::XattrFlags::empty())
        }
    }
}

/// Creates a whiteout for `name` in branch directory `dir`. Names too long for the
/// `.wh.` prefix get an OverlayFS whiteout instead, which every Strata mount reads too;
/// the caller must then make sure nothing else sits at `dir/name`.
pub fn create_whiteout(format: Format, root: impl AsFd, dir: &Path, name: &OsStr) -> Result<(), Errno> {
    if format == Format::Aufs && aufs_name_fits(name) {
        let fd = sys::open_at(
            &root,
            sys::join(dir, &aufs_whiteout_name(name)),
            OFlags::CREATE | OFlags::WRONLY,
            Mode::empty(),
        )?;
        drop(fd);
        Ok(())
    } else {
        sys::mknodat(root, sys::join(dir, name), rustix::fs::FileType::CharacterDevice, Mode::empty(), 0)
    }
}

/// Removes an AUFS whiteout for `name` in `dir`, if there is one.
pub fn remove_aufs_whiteout(root: impl AsFd, dir: &Path, name: &OsStr) -> Result<bool, Errno> {
    if !aufs_name_fits(name) {
        return Ok(false);
    }
    match sys::unlinkat(root, sys::join(dir, &aufs_whiteout_name(name)), AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_inside_the_branches() {
        assert_eq!(valid_redirect(OsStr::new("/a/b")), Some("/a/b".into()));
        assert_eq!(valid_redirect(OsStr::new("name")), Some("name".into()));
        for bad in ["/../etc", "/a/../../x", "a/b", "/a//b", "/", "", "/./a", ".."] {
            assert_eq!(valid_redirect(OsStr::new(bad)), None, "{bad}");
        }
    }
}
