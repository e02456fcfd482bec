//! A read-only union of directories walked without FUSE, by the very rules a mount uses
//! (whiteouts of both formats, opaque directories, redirects): what the store reads when
//! it diffs or commits a container's layer against the layers below it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, Stat};

use crate::branch::{Branch, Perm};
use crate::inode::Part;
use crate::union::Union;
use crate::whiteout::Format;

pub struct View {
    union: Union,
    layers: Vec<PathBuf>,
}

/// A directory of the view: its path in the union and the layer parts it merges.
#[derive(Clone, Debug)]
pub struct ViewDir {
    pub path: PathBuf,
    parts: Box<[Part]>,
}

impl ViewDir {
    /// Does layer `layer` contribute to this directory?
    pub fn has_layer(&self, layer: usize) -> bool {
        self.parts.iter().any(|p| p.branch as usize == layer)
    }
}

/// A name of the view.
pub struct ViewEntry {
    pub name: OsString,
    /// The layer the entry comes from (0 = the top).
    pub layer: usize,
    pub stat: Stat,
    /// The entry's file on disk.
    pub disk_path: PathBuf,
    /// For a metadata-only copy (`metacopy=on`): the file below that holds its data.
    pub data_path: Option<PathBuf>,
    /// For a directory: the merged directory.
    pub dir: Option<ViewDir>,
}

fn io_err(e: fuser::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.code())
}

impl View {
    /// The union of `layers`, top first, every one honouring whiteouts.
    pub fn open(layers: &[PathBuf]) -> io::Result<View> {
        let mut branches = Vec::with_capacity(layers.len());
        for path in layers {
            let root = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))?;
            branches.push(Branch { path: path.clone(), perm: Perm::RoWh, root: Arc::new(root) });
        }
        let mut union = Union::new(branches, Format::Aufs, None, None, String::new(), None);
        // The store's containers copy up with `metacopy=on`: their data is read below.
        union.metacopy = true;
        Ok(View { union, layers: layers.to_vec() })
    }

    pub fn root(&self) -> ViewDir {
        let parts = (0..self.layers.len() as u16).map(Part::at).collect();
        ViewDir { path: PathBuf::new(), parts }
    }

    /// `name` in `dir`, as the union resolves it.
    pub fn lookup(&self, dir: &ViewDir, name: &OsStr) -> io::Result<Option<ViewEntry>> {
        let dir_path = if dir.path.as_os_str().is_empty() { Path::new(".") } else { dir.path.as_path() };
        let Some(found) = self.union.resolve(dir_path, &dir.parts, name).map_err(io_err)? else { return Ok(None) };
        let own = dir.path.join(name);
        let rel = found.src.as_deref().map(Path::to_path_buf).unwrap_or_else(|| own.clone());
        let is_dir = found.stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
        Ok(Some(ViewEntry {
            name: name.to_os_string(),
            layer: found.branch as usize,
            stat: found.stat,
            disk_path: self.layers[found.branch as usize].join(rel),
            data_path: found.data.map(|(b, rel)| self.layers[b as usize].join(rel)),
            dir: is_dir.then_some(ViewDir { path: own, parts: found.dirs }),
        }))
    }

    /// The names `dir` shows, sorted, resolved.
    pub fn entries(&self, dir: &ViewDir) -> io::Result<Vec<ViewEntry>> {
        let dir_path = if dir.path.as_os_str().is_empty() { Path::new(".") } else { dir.path.as_path() };
        let mut names: Vec<OsString> =
            self.union.list(dir_path, &dir.parts).map_err(io_err)?.into_iter().map(|e| e.name).collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(e) = self.lookup(dir, &n)? {
                out.push(e);
            }
        }
        Ok(out)
    }
}
