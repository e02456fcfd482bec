//! Hard links in branches: which names each multiply-linked file has.
//!
//! Every name of one backing file shares one node (and so one inode number), found by the
//! file's (device, inode). To show an exact link count before copy-up, and to keep all
//! names one file after it, the union must know all of a file's names in its branch. That
//! map is built once per branch, on first need, by one walk of the branch (only regular
//! files with more than one link are kept).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::sys;
use crate::whiteout;

type LinkMap = HashMap<(u64, u64), Vec<PathBuf>>;

#[derive(Debug, Default)]
pub struct BranchLinks {
    maps: Mutex<HashMap<u16, Arc<LinkMap>>>,
}

impl BranchLinks {
    /// The paths (relative to the branch root) of every name of file `key` in `branch`.
    pub fn names(&self, branch: u16, root: impl AsFd, key: (u64, u64)) -> Result<Vec<PathBuf>, Errno> {
        let known = self.maps.lock().get(&branch).cloned();
        let map = match known {
            Some(m) => m,
            None => {
                let m = Arc::new(walk(root)?);
                self.maps.lock().insert(branch, m.clone());
                m
            }
        };
        Ok(map.get(&key).cloned().unwrap_or_default())
    }

    /// The branches changed: forget every map.
    pub fn clear(&self) {
        self.maps.lock().clear();
    }
}

fn walk(root: impl AsFd) -> Result<LinkMap, Errno> {
    let root = root.as_fd();
    let mut map = LinkMap::new();
    let mut dirs = vec![PathBuf::from(".")];
    while let Some(dir) = dirs.pop() {
        let fd = match sys::open_at(root, &dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::ACCESS) => continue,
            Err(e) => return Err(e),
        };
        let mut entries = rustix::fs::Dir::read_from(&fd)?;
        while let Some(ent) = entries.read() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            if name == "." || name == ".." || whiteout::is_meta_name(name) {
                continue;
            }
            match ent.file_type() {
                rustix::fs::FileType::Directory => dirs.push(sys::join(&dir, name)),
                rustix::fs::FileType::RegularFile | rustix::fs::FileType::Unknown => {
                    let st = sys::lstat(&fd, Path::new(name))?;
                    if sys::file_type_bits(&st) == libc::S_IFREG && st.st_nlink > 1 {
                        map.entry((st.st_dev, st.st_ino)).or_default().push(sys::join(&dir, name));
                    } else if sys::is_dir(&st) {
                        dirs.push(sys::join(&dir, name));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(map)
}
