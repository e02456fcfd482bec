//! Name indexes for directories merged from many branches.
//!
//! Looking a name up walks the directory's branches top-down, two `lstat`s per branch that
//! lacks it (the name, then its AUFS whiteout). With hundreds of branches that walk is
//! the cost of every lookup, and of every miss. So a directory merged from at least
//! [`INDEX_MIN_BRANCHES`] branches gets, at its first lookup, an index built from one
//! merged listing: each visible name and the topmost branch holding it. A lookup then
//! costs a hash probe, plus the walk from that branch down for directories. The daemon
//! is the only writer, so the index is kept exact by the changes it makes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

use parking_lot::Mutex;

use crate::inode::{Ino, Part};
use crate::union::DirEntry;

/// Directories merged from fewer branches than this are looked up directly.
pub const INDEX_MIN_BRANCHES: usize = 8;

#[derive(Debug, Default)]
pub struct NameIndexes {
    dirs: Mutex<HashMap<Ino, HashMap<OsString, u16>>>,
}

/// What an index says about a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Hint {
    /// No index for this directory: resolve across all its branches.
    Unknown,
    /// The union has no such name.
    Absent,
    /// The topmost branch holding the name.
    In(u16),
}

impl NameIndexes {
    pub fn hint(&self, dir: Ino, name: &OsStr) -> Hint {
        match self.dirs.lock().get(&dir) {
            None => Hint::Unknown,
            Some(names) => names.get(name).map_or(Hint::Absent, |b| Hint::In(*b)),
        }
    }

    /// Records a directory's merged listing; `dirs` maps listing positions to branches.
    pub fn build(&self, dir: Ino, dirs: &[Part], entries: &[DirEntry]) {
        let names = entries.iter().map(|e| (e.name.clone(), dirs[e.pos as usize].branch)).collect();
        self.dirs.lock().insert(dir, names);
    }

    /// A name appeared in (`Some(branch)`) or left (`None`) an indexed directory.
    pub fn set(&self, dir: Ino, name: &OsStr, branch: Option<u16>) {
        if let Some(names) = self.dirs.lock().get_mut(&dir) {
            match branch {
                Some(b) => {
                    names.insert(name.to_os_string(), b);
                }
                None => {
                    names.remove(name);
                }
            }
        }
    }

    /// The branches changed: every index is out of date.
    pub fn clear(&self) {
        self.dirs.lock().clear();
    }

    /// The directory is gone.
    pub fn forget(&self, dir: Ino) {
        self.dirs.lock().remove(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuser::FileType;

    #[test]
    fn hints_follow_changes() {
        let idx = NameIndexes::default();
        assert_eq!(idx.hint(5, OsStr::new("a")), Hint::Unknown);
        let entries = vec![DirEntry { name: "a".into(), kind: FileType::RegularFile, pos: 1 }];
        idx.build(5, &[Part::at(0), Part::at(7)], &entries);
        assert_eq!(idx.hint(5, OsStr::new("a")), Hint::In(7));
        assert_eq!(idx.hint(5, OsStr::new("b")), Hint::Absent);
        idx.set(5, OsStr::new("b"), Some(0));
        idx.set(5, OsStr::new("a"), None);
        assert_eq!(idx.hint(5, OsStr::new("b")), Hint::In(0));
        assert_eq!(idx.hint(5, OsStr::new("a")), Hint::Absent);
        idx.forget(5);
        assert_eq!(idx.hint(5, OsStr::new("b")), Hint::Unknown);
    }
}
