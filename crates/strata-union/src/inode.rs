//! The inode table: the union's own inode numbers, one per name the kernel has seen.
//!
//! fuser sends a node id as `st_ino`, so these numbers are what users see. A node keeps
//! its number for the life of the mount: across copy-up (which changes the backing file,
//! not the node) and rename (which moves the node). Nodes are found by (parent, name) and
//! hold no file descriptor; paths are rebuilt from the parent chain when needed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, RandomState};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use fuser::{Errno, FileType};

use crate::reply::Backing;
use hashbrown::HashTable;

pub type Ino = u64;
pub const ROOT: Ino = 1;

/// Removed files whose backing file is kept for the kernel's remaining references (see
/// [`Table::set_orphan`]); beyond this an open racing with a removal gets ESTALE.
const MAX_ORPHANS: usize = 4096;

/// A directory's part in one branch. `path` says where the part lives in that branch
/// when it is not at the directory's own path (below a renamed lower directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub branch: u16,
    pub path: Option<Arc<Path>>,
}

impl Part {
    pub fn at(branch: u16) -> Part {
        Part { branch, path: None }
    }

    /// The part's path, given the directory's own path in the union.
    pub fn path_or<'a>(&'a self, own: &'a Path) -> &'a Path {
        self.path.as_deref().unwrap_or(own)
    }
}

/// One name the kernel has seen. Kept small: a walk of a large tree makes one per entry.
#[derive(Debug)]
pub struct Node {
    /// The node's own name, which the table indexes it by (see [`Table`]): only the table
    /// changes it.
    parent: Ino,
    name: Box<OsStr>,
    /// Directories only: the parts merged into it, top first, cut at the first opaque one.
    pub dirs: Box<[Part]>,
    /// References the kernel holds (lookups minus forgets).
    pub lookups: u64,
    /// What few nodes need, out of line: a node is one of tens of thousands.
    extra: Option<Box<Extra>>,
    /// Open file handles.
    pub opens: u32,
    /// Topmost branch holding this entry.
    pub branch: u16,
    pub kind: FileType,
    /// The cached resolution may be out of date (an ancestor directory was renamed while
    /// parts of it live in lower branches): resolve again before use.
    pub stale: bool,
    /// False once the last name is gone; the node lives on while looked up or open.
    pub linked: bool,
    /// The entry's xattr names are known: none, or those in [`Extra::xattr_names`]. The
    /// kernel asks for `security.capability` before writes and `ls -l` for ACLs and SELinux
    /// labels on every file, and most files have none. Forgotten whenever the entry's
    /// xattrs may change.
    xattrs_known: bool,
}

#[derive(Debug, Default)]
struct Extra {
    /// Where the entry lives in `branch` when that is not its path in the union.
    src: Option<Arc<Path>>,
    /// The passthrough backing file registered for this node, and its branch: the kernel
    /// allows one backing file per inode at a time.
    backing: Option<(u16, Weak<Backing>)>,
    /// Regular files with several names: the backing inode's identity, which every name
    /// of it shares this node by, and whether all its names in the branch were found.
    links: Option<Links>,
    /// The xattr names of an entry that has some.
    xattr_names: Option<Box<[OsString]>>,
    /// The backing file once its last name went while the kernel still referenced the
    /// node (see [`Table::set_orphan`]).
    orphan: Option<Orphan>,
    /// A metadata-only copy (`metacopy=on`): the branch and path of the file holding the
    /// data, below the one holding the metadata.
    data: Option<(u16, Arc<Path>)>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.src.is_none()
            && self.backing.is_none()
            && self.links.is_none()
            && self.xattr_names.is_none()
            && self.orphan.is_none()
            && self.data.is_none()
    }
}

/// The file behind a node whose names are all gone, kept for the kernel's references.
#[derive(Clone, Debug)]
pub enum Orphan {
    /// Held open (`O_PATH`), in this branch: its last name is gone from the disk.
    Open(u16, Arc<OwnedFd>),
    /// Still at this path in this read-only branch (only a whiteout hides it), reached
    /// through the branch's root: opened only if it is asked for.
    Below(u16, Arc<OwnedFd>, Arc<Path>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    pub key: (u64, u64),
    pub discovered: bool,
}

impl Node {
    pub fn new(
        parent: Ino,
        name: OsString,
        kind: FileType,
        branch: u16,
        src: Option<Arc<Path>>,
        dirs: Box<[Part]>,
    ) -> Node {
        let mut n = Node {
            parent,
            name: name.into_boxed_os_str(),
            kind,
            branch,
            dirs,
            stale: false,
            lookups: 0,
            opens: 0,
            linked: true,
            xattrs_known: false,
            extra: None,
        };
        n.set_src(src);
        n
    }

    /// The directory holding the node's own name.
    pub fn parent(&self) -> Ino {
        self.parent
    }

    /// The node's own name (a node with hard links made through the union has more).
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// Frees the out-of-line part once it holds nothing.
    fn trim(&mut self) {
        if self.extra.as_ref().is_some_and(|e| e.is_empty()) {
            self.extra = None;
        }
    }

    /// Where the entry lives in `branch` when that is not its path in the union.
    pub fn src(&self) -> Option<&Arc<Path>> {
        self.extra.as_ref().and_then(|e| e.src.as_ref())
    }

    pub fn set_src(&mut self, src: Option<Arc<Path>>) {
        if src.is_some() || self.extra.is_some() {
            self.extra_mut().src = src;
            self.trim();
        }
    }

    /// Where the data of a metadata-only copy lives (see [`Extra::data`]); `None` when the
    /// data is in the node's own file.
    pub fn data(&self) -> Option<&(u16, Arc<Path>)> {
        self.extra.as_ref().and_then(|e| e.data.as_ref())
    }

    pub fn set_data(&mut self, data: Option<(u16, Arc<Path>)>) {
        if data.is_some() || self.extra.is_some() {
            self.extra_mut().data = data;
            self.trim();
        }
    }

    /// The passthrough backing file registered for this node, and its branch.
    pub fn backing(&self) -> Option<&(u16, Weak<Backing>)> {
        self.extra.as_ref().and_then(|e| e.backing.as_ref())
    }

    pub fn set_backing(&mut self, backing: Option<(u16, Weak<Backing>)>) {
        if backing.is_some() || self.extra.is_some() {
            self.extra_mut().backing = backing;
            self.trim();
        }
    }

    /// The backing file of an unlinked node, when it was kept (see [`Table::set_orphan`]).
    pub fn orphan(&self) -> Option<Orphan> {
        self.extra.as_ref().and_then(|e| e.orphan.clone()).filter(|_| !self.linked)
    }

    /// Regular files with several names: see [`Links`].
    pub fn links(&self) -> Option<Links> {
        self.extra.as_ref().and_then(|e| e.links)
    }

    pub fn links_mut(&mut self) -> Option<&mut Links> {
        self.extra.as_mut().and_then(|e| e.links.as_mut())
    }

    fn replace_links(&mut self, links: Option<Links>) -> Option<Links> {
        let old = self.links();
        if links.is_some() || self.extra.is_some() {
            self.extra_mut().links = links;
            self.trim();
        }
        old
    }

    /// The entry's xattr names, when known.
    pub fn xattr_names(&self) -> Option<&[OsString]> {
        self.xattrs_known.then(|| self.extra.as_ref().and_then(|e| e.xattr_names.as_deref()).unwrap_or(&[]))
    }

    /// Records the entry's xattr names (`None`: no longer known).
    pub fn set_xattr_names(&mut self, names: Option<Box<[OsString]>>) {
        self.xattrs_known = names.is_some();
        let kept = names.filter(|n| !n.is_empty());
        if kept.is_some() || self.extra.is_some() {
            self.extra_mut().xattr_names = kept;
            self.trim();
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

/// The nodes, and the index of names to nodes.
///
/// Each linked node is found under its own `(parent, name)` through `own`, a hash table of
/// node numbers whose keys are the nodes' own fields: a name is stored once, in its node.
/// The further names of nodes hard-linked through the union (rare) are in `alias_index`.
#[derive(Default)]
pub struct Table {
    nodes: HashMap<Ino, Box<Node>>,
    own: HashTable<Ino>,
    hasher: RandomState,
    /// Further names of nodes with hard links made through the union, by name and by node.
    alias_index: HashMap<(Ino, OsString), Ino>,
    aliases: HashMap<Ino, Vec<(Ino, OsString)>>,
    next: Ino,
    /// Numbers the previous mount gave to names (see `persist`).
    hints: HashMap<(Ino, OsString), Ino>,
    /// The node of each multiply-linked backing file, by (device, inode).
    groups: HashMap<(u64, u64), Ino>,
    /// Nodes holding an orphan: bounded, as most are open files.
    orphans: usize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("nodes", &self.nodes.len()).field("next", &self.next).finish()
    }
}

/// Whether `node` is linked under its own name `(parent, name)`.
fn owns(node: Option<&Node>, parent: Ino, name: &OsStr) -> bool {
    node.is_some_and(|n| n.parent == parent && *n.name == *name)
}

impl Table {
    pub fn new(root: Node) -> Table {
        Self::with_hints(root, crate::persist::Hints::default())
    }

    /// A table that gives names the numbers they had in a previous mount.
    pub fn with_hints(root: Node, hints: crate::persist::Hints) -> Table {
        let mut t = Table { next: hints.next.max(ROOT + 1), hints: hints.by_name, ..Table::default() };
        t.nodes.insert(ROOT, Box::new(root));
        t
    }

    fn hash(&self, parent: Ino, name: &OsStr) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    /// Indexes node `ino` under its own name.
    fn index_own(&mut self, ino: Ino) {
        let Some(n) = self.nodes.get(&ino) else { return };
        let hash = self.hash(n.parent, &n.name);
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        // A node missing from `nodes` cannot be in `own`: the 0 is never used.
        let rehash = |i: &Ino| nodes.get(i).map_or(0, |n| hasher.hash_one((n.parent, &*n.name)));
        self.own.insert_unique(hash, ino, rehash);
    }

    /// Takes the name `(parent, name)` out of the index: the node, and whether it was the
    /// node's own name (else an alias).
    fn unindex(&mut self, parent: Ino, name: &OsStr) -> Option<(Ino, bool)> {
        let hash = self.hash(parent, name);
        let nodes = &self.nodes;
        if let Ok(entry) = self.own.find_entry(hash, |i| owns(nodes.get(i).map(|n| &**n), parent, name)) {
            return Some((entry.remove().0, true));
        }
        if self.alias_index.is_empty() {
            return None;
        }
        self.alias_index.remove(&(parent, name.to_os_string())).map(|ino| (ino, false))
    }

    /// Every linked name with its number, for `persist::save`; also the numbers of the
    /// previous mount that this one never needed (names it did not touch keep theirs).
    pub fn names(&self) -> impl Iterator<Item = (Ino, Ino, OsString)> + '_ {
        let own = self.own.iter().filter_map(|i| self.nodes.get(i).map(|n| (*i, n.parent, n.name.to_os_string())));
        let aliases = self.alias_index.iter().map(|((parent, name), ino)| (*ino, *parent, name.clone()));
        let kept = self
            .hints
            .iter()
            .filter(|((parent, name), ino)| self.child(*parent, name).is_none() && !self.nodes.contains_key(ino))
            .map(|((parent, name), ino)| (*ino, *parent, name.clone()));
        own.chain(aliases).chain(kept)
    }

    pub fn get(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).map(|n| &**n).ok_or(Errno::ESTALE)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).map(|n| &mut **n).ok_or(Errno::ESTALE)
    }

    /// The node named `name` in directory `parent`.
    pub fn child(&self, parent: Ino, name: &OsStr) -> Option<Ino> {
        let hash = self.hash(parent, name);
        if let Some(ino) = self.own.find(hash, |i| owns(self.nodes.get(i).map(|n| &**n), parent, name)) {
            return Some(*ino);
        }
        if self.alias_index.is_empty() {
            return None;
        }
        self.alias_index.get(&(parent, name.to_os_string())).copied()
    }

    /// Path of a node relative to a branch root (`.` for the root).
    pub fn path(&self, ino: Ino) -> Result<PathBuf, Errno> {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = self.get(cur)?;
            if !n.linked {
                return Err(Errno::ESTALE);
            }
            parts.push(&n.name);
            cur = n.parent;
        }
        if parts.is_empty() {
            return Ok(PathBuf::from("."));
        }
        let mut p = PathBuf::with_capacity(parts.iter().map(|s| s.len() + 1).sum());
        for part in parts.iter().rev() {
            p.push(part);
        }
        Ok(p)
    }

    /// Adds a node under `(node.parent, node.name)`, replacing whatever was indexed there.
    pub fn insert(&mut self, node: Node) -> Ino {
        let hinted = if self.hints.is_empty() {
            None
        } else {
            self.hints.remove(&(node.parent, node.name.to_os_string())).filter(|i| !self.nodes.contains_key(i))
        };
        let ino = hinted.unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.remove_name(node.parent, &node.name);
        self.nodes.insert(ino, Box::new(node));
        self.index_own(ino);
        ino
    }

    /// The name the previous mount gave number `ino`, while no node has it yet (see
    /// `persist`): how a file handle from before a remount finds its file again.
    pub fn hinted_name(&self, ino: Ino) -> Option<(Ino, OsString)> {
        self.hints.iter().find(|(_, i)| **i == ino).map(|(k, _)| k.clone())
    }

    /// The node standing for backing file `key`, if one is alive.
    pub fn group(&self, key: (u64, u64)) -> Option<Ino> {
        self.groups.get(&key).copied().filter(|i| self.nodes.get(i).is_some_and(|n| n.linked))
    }

    /// Sets (or clears) the backing identity a node is found by.
    pub fn set_links(&mut self, ino: Ino, links: Option<Links>) {
        let Some(n) = self.nodes.get_mut(&ino) else { return };
        if let Some(old) = n.replace_links(links) {
            self.groups.remove(&old.key);
        }
        if let Some(l) = links {
            self.groups.insert(l.key, ino);
        }
    }

    /// Every node number, with whether it is a directory.
    pub fn inos(&self) -> impl Iterator<Item = (Ino, bool)> + '_ {
        self.nodes.iter().map(|(i, n)| (*i, n.is_dir()))
    }

    /// Every name of a node: its own, then its aliases.
    pub fn names_of(&self, ino: Ino) -> Vec<(Ino, OsString)> {
        let Some(n) = self.nodes.get(&ino).filter(|n| n.linked) else { return Vec::new() };
        let mut out = vec![(n.parent, n.name.to_os_string())];
        out.extend(self.aliases.get(&ino).into_iter().flatten().cloned());
        out
    }

    /// Moves every name of `old` to a fresh node (same place, new number); `old` lives on
    /// unlinked for whoever still holds it.
    pub fn replace_node(&mut self, old: Ino) -> Option<Ino> {
        let names = self.names_of(old);
        let n = self.nodes.get(&old)?;
        let mut fresh = Node::new(n.parent, n.name.to_os_string(), n.kind, n.branch, n.src().cloned(), n.dirs.clone());
        fresh.replace_links(n.links());
        fresh.set_data(n.data().cloned());
        let new = self.insert(fresh);
        for (p, name) in names.iter().skip(1) {
            self.add_alias(new, *p, name);
        }
        if let Some(l) = self.nodes.get(&new).and_then(|n| n.links()) {
            self.groups.insert(l.key, new);
        }
        Some(new)
    }

    /// Records a further name for an existing node (a hard link made through the union).
    pub fn add_alias(&mut self, ino: Ino, parent: Ino, name: &OsStr) {
        self.remove_name(parent, name);
        self.alias_index.insert((parent, name.to_os_string()), ino);
        self.aliases.entry(ino).or_default().push((parent, name.to_os_string()));
    }

    /// Forgets the name `(parent, name)`; the node moves to another of its names or,
    /// having none, becomes unlinked (and is freed once nobody references it).
    pub fn remove_name(&mut self, parent: Ino, name: &OsStr) {
        if let Some((ino, own)) = self.unindex(parent, name) {
            self.drop_name(ino, own, parent, name);
        }
    }

    /// After `(parent, name)` of node `ino` left the index: a node that lost its own name
    /// takes one of its aliases as its own, or is unlinked.
    fn drop_name(&mut self, ino: Ino, own: bool, parent: Ino, name: &OsStr) {
        if own {
            let next = self.aliases.get_mut(&ino).and_then(|a| a.pop());
            let Some(node) = self.nodes.get_mut(&ino) else { return };
            match next {
                Some((p, n)) => {
                    self.alias_index.remove(&(p, n.clone()));
                    node.parent = p;
                    node.name = n.into_boxed_os_str();
                    self.index_own(ino);
                }
                None => node.linked = false,
            }
        } else if let Some(a) = self.aliases.get_mut(&ino) {
            a.retain(|(p, n)| !(*p == parent && n == name));
        }
        if self.aliases.get(&ino).is_some_and(Vec::is_empty) {
            self.aliases.remove(&ino);
        }
        self.collect(ino);
    }

    /// Gives node `ino` the name `to`, in place of `from` (its own name when `own`, else
    /// one of its aliases); `to` must be free in the index.
    fn put_name(&mut self, ino: Ino, own: bool, from: (Ino, &OsStr), to: (Ino, &OsStr)) {
        if own {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = to.0;
                node.name = to.1.into();
                self.index_own(ino);
            }
        } else {
            self.alias_index.insert((to.0, to.1.to_os_string()), ino);
            if let Some(a) = self.aliases.get_mut(&ino) {
                for entry in a.iter_mut().filter(|(p, n)| *p == from.0 && n == from.1) {
                    *entry = (to.0, to.1.to_os_string());
                }
            }
        }
    }

    /// Moves the name `(parent, name)` to `(new_parent, new_name)`, replacing any node there.
    pub fn rename(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        let Some((ino, own)) = self.unindex(parent, name) else { return };
        self.remove_name(new_parent, new_name);
        self.put_name(ino, own, (parent, name), (new_parent, new_name));
    }

    /// Swaps the nodes behind two names (RENAME_EXCHANGE).
    pub fn exchange(&mut self, a: (Ino, &OsStr), b: (Ino, &OsStr)) {
        if self.child(a.0, a.1).is_none() || self.child(b.0, b.1).is_none() {
            return;
        }
        let (Some((ia, own_a)), Some((ib, own_b))) = (self.unindex(a.0, a.1), self.unindex(b.0, b.1)) else {
            return;
        };
        self.put_name(ia, own_a, a, b);
        self.put_name(ib, own_b, b, a);
    }

    /// After the branch stack changed: every node resolves again, branch numbers of open
    /// passthrough files follow `moved`, and the root merges all `count` branches.
    pub fn restack(&mut self, moved: &[Option<u16>], count: u16) {
        for (ino, n) in self.nodes.iter_mut() {
            if let Some((b, w)) = n.backing().cloned() {
                n.set_backing(moved.get(b as usize).copied().flatten().map(|nb| (nb, w)));
            }
            if *ino == ROOT {
                n.dirs = (0..count).map(Part::at).collect();
                n.branch = 0;
            } else {
                n.stale = true;
            }
        }
    }

    /// Marks every node below `dir` for re-resolution.
    pub fn mark_stale_below(&mut self, dir: Ino) {
        let below: Vec<Ino> = self
            .nodes
            .keys()
            .copied()
            .filter(|&ino| {
                let mut cur = ino;
                while cur != ROOT {
                    let Some(n) = self.nodes.get(&cur) else { return false };
                    if n.parent == dir {
                        return true;
                    }
                    cur = n.parent;
                }
                false
            })
            .collect();
        for ino in below {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.stale = true;
            }
        }
    }

    /// The kernel dropped `n` references.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.collect(ino);
    }

    /// Frees an unlinked node nobody references any more.
    pub fn collect(&mut self, ino: Ino) {
        if ino == ROOT {
            return;
        }
        if !self.nodes.get(&ino).is_some_and(|n| !n.linked && n.lookups == 0 && n.opens == 0) {
            return;
        }
        let Some(n) = self.nodes.remove(&ino) else { return };
        if n.extra.as_ref().is_some_and(|e| e.orphan.is_some()) {
            self.orphans -= 1;
        }
        if let Some(l) = n.links()
            && self.groups.get(&l.key) == Some(&ino)
        {
            self.groups.remove(&l.key);
        }
    }

    /// Whether another orphan may be kept: each is an open file.
    pub fn room_for_orphan(&self) -> bool {
        self.orphans < MAX_ORPHANS
    }

    /// Holds `file`, the backing file of node `ino` in `branch`, for when its last name is
    /// removed while the kernel still references it: an open that raced with the removal
    /// then opens the file, as on a local filesystem, instead of failing with ESTALE. It
    /// is closed with the node (at the kernel's last FORGET).
    pub fn set_orphan(&mut self, ino: Ino, orphan: Orphan) {
        let Some(n) = self.nodes.get_mut(&ino) else { return };
        if n.extra_mut().orphan.replace(orphan).is_none() {
            self.orphans += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new(Node::new(ROOT, OsString::new(), FileType::Directory, 0, None, Box::new([Part::at(0)])))
    }

    fn file(parent: Ino, name: &str) -> Node {
        Node::new(parent, name.into(), FileType::RegularFile, 0, None, Box::new([]))
    }

    #[test]
    fn paths_follow_renames() {
        let mut t = table();
        let d = t.insert(Node::new(ROOT, "d".into(), FileType::Directory, 0, None, Box::new([Part::at(0)])));
        let f = t.insert(file(d, "f"));
        assert_eq!(t.path(f).unwrap(), PathBuf::from("d/f"));
        t.rename(d, OsStr::new("f"), ROOT, OsStr::new("g"));
        assert_eq!(t.path(f).unwrap(), PathBuf::from("g"));
        assert_eq!(t.child(ROOT, OsStr::new("g")), Some(f));
        assert_eq!(t.child(d, OsStr::new("f")), None);
        assert_eq!(t.path(ROOT).unwrap(), PathBuf::from("."));
    }

    #[test]
    fn unlinked_nodes_live_while_referenced() {
        let mut t = table();
        let f = t.insert(file(ROOT, "f"));
        t.get_mut(f).unwrap().lookups = 1;
        t.remove_name(ROOT, OsStr::new("f"));
        assert!(!t.get(f).unwrap().linked);
        assert_eq!(t.path(f), Err(Errno::ESTALE));
        t.forget(f, 1);
        assert!(t.get(f).is_err());
    }

    #[test]
    fn aliases_take_over_the_primary_name() {
        let mut t = table();
        let f = t.insert(file(ROOT, "a"));
        t.add_alias(f, ROOT, OsStr::new("b"));
        t.remove_name(ROOT, OsStr::new("a"));
        assert!(t.get(f).unwrap().linked);
        assert_eq!(t.path(f).unwrap(), PathBuf::from("b"));
        t.remove_name(ROOT, OsStr::new("b"));
        assert!(t.get(f).is_err());
    }

    #[test]
    fn every_name_is_found_once_through_renames_of_own_names_and_aliases() {
        let mut t = table();
        let d = t.insert(Node::new(ROOT, "d".into(), FileType::Directory, 0, None, Box::new([Part::at(0)])));
        let f = t.insert(file(ROOT, "f"));
        let g = t.insert(file(ROOT, "g"));
        t.add_alias(f, d, OsStr::new("f2"));
        // An alias moves; the own name moves; a name lands on another node's name.
        t.rename(d, OsStr::new("f2"), d, OsStr::new("f3"));
        t.rename(ROOT, OsStr::new("f"), d, OsStr::new("own"));
        t.rename(ROOT, OsStr::new("g"), d, OsStr::new("f3"));
        assert_eq!(t.child(d, OsStr::new("own")), Some(f));
        assert_eq!(t.child(d, OsStr::new("f3")), Some(g));
        assert_eq!(t.child(d, OsStr::new("f2")), None);
        assert_eq!(t.child(ROOT, OsStr::new("f")), None);
        assert_eq!(t.names_of(f), vec![(d, OsString::from("own"))]);
        // An exchange of an own name with an alias.
        t.add_alias(f, ROOT, OsStr::new("a"));
        t.exchange((ROOT, OsStr::new("a")), (d, OsStr::new("f3")));
        assert_eq!(t.child(ROOT, OsStr::new("a")), Some(g));
        assert_eq!(t.child(d, OsStr::new("f3")), Some(f));
        assert_eq!(t.path(g).unwrap(), PathBuf::from("a"));
        let mut names: Vec<(Ino, Ino, OsString)> = t.names().collect();
        names.sort();
        let mut want = vec![(d, ROOT, "d".into()), (f, d, "own".into()), (f, d, "f3".into()), (g, ROOT, "a".into())];
        want.sort();
        assert_eq!(names, want);
    }

    #[test]
    fn a_large_table_finds_every_name_after_growing() {
        let mut t = table();
        let inos: Vec<Ino> = (0..5000).map(|i| t.insert(file(ROOT, &format!("n{i}")))).collect();
        for (i, ino) in inos.iter().enumerate().step_by(7) {
            t.rename(ROOT, OsStr::new(&format!("n{i}")), ROOT, OsStr::new(&format!("m{i}")));
            assert_eq!(t.child(ROOT, OsStr::new(&format!("m{i}"))), Some(*ino));
        }
        for (i, ino) in inos.iter().enumerate() {
            let name = if i % 7 == 0 { format!("m{i}") } else { format!("n{i}") };
            assert_eq!(t.child(ROOT, OsStr::new(&name)), Some(*ino), "{name}");
        }
    }

    #[test]
    fn exchange_swaps_names() {
        let mut t = table();
        let a = t.insert(file(ROOT, "a"));
        let b = t.insert(file(ROOT, "b"));
        t.exchange((ROOT, OsStr::new("a")), (ROOT, OsStr::new("b")));
        assert_eq!(t.path(a).unwrap(), PathBuf::from("b"));
        assert_eq!(t.path(b).unwrap(), PathBuf::from("a"));
    }
}
