//! The inode table: the union's own inode numbers, one per name the kernel has seen.
//!
//! fuser sends a node id as `st_ino`, so these numbers are what users see. A node keeps
//! its number for the life of the mount: across copy-up (which changes the backing file,
//! not the node) and rename (which moves the node). Nodes are found by (parent, name) and
//! hold no file descriptor; paths are rebuilt from the parent chain when needed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use fuser::{BackingId, Errno, FileType};

pub type Ino = u64;
pub const ROOT: Ino = 1;

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

#[derive(Debug)]
pub struct Node {
    pub parent: Ino,
    pub name: OsString,
    pub kind: FileType,
    /// Topmost branch holding this entry.
    pub branch: u16,
    /// Directories only: the parts merged into it, top first, cut at the first opaque one.
    pub dirs: Box<[Part]>,
    /// The cached resolution may be out of date (an ancestor directory was renamed while
    /// parts of it live in lower branches): resolve again before use.
    pub stale: bool,
    /// References the kernel holds (lookups minus forgets).
    pub lookups: u64,
    /// Open file handles.
    pub opens: u32,
    /// False once the last name is gone; the node lives on while looked up or open.
    pub linked: bool,
    /// The entry's xattr names, once read: the kernel asks for `security.capability` on
    /// every write and `ls -l` for ACLs and SELinux labels on every file, and most files
    /// have none. Dropped whenever the entry's xattrs may change.
    pub xattr_names: Option<Box<[OsString]>>,
    /// What few nodes need, out of line: a node is one of tens of thousands.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    /// Where the entry lives in `branch` when that is not its path in the union.
    src: Option<Arc<Path>>,
    /// The passthrough backing file registered for this node, and its branch: the kernel
    /// allows one backing file per inode at a time.
    backing: Option<(u16, Weak<BackingId>)>,
    /// Regular files with several names: the backing inode's identity, which every name
    /// of it shares this node by, and whether all its names in the branch were found.
    links: Option<Links>,
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
            name,
            kind,
            branch,
            dirs,
            stale: false,
            lookups: 0,
            opens: 0,
            linked: true,
            xattr_names: None,
            extra: None,
        };
        n.set_src(src);
        n
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// Frees the out-of-line part once it holds nothing.
    fn trim(&mut self) {
        if self.extra.as_ref().is_some_and(|e| e.src.is_none() && e.backing.is_none() && e.links.is_none()) {
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

    /// The passthrough backing file registered for this node, and its branch.
    pub fn backing(&self) -> Option<&(u16, Weak<BackingId>)> {
        self.extra.as_ref().and_then(|e| e.backing.as_ref())
    }

    pub fn set_backing(&mut self, backing: Option<(u16, Weak<BackingId>)>) {
        if backing.is_some() || self.extra.is_some() {
            self.extra_mut().backing = backing;
            self.trim();
        }
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

    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

#[derive(Debug, Default)]
pub struct Table {
    nodes: HashMap<Ino, Node>,
    children: HashMap<(Ino, OsString), Ino>,
    /// Further names of nodes with hard links made through the union.
    aliases: HashMap<Ino, Vec<(Ino, OsString)>>,
    next: Ino,
    /// Numbers the previous mount gave to names (see `persist`).
    hints: HashMap<(Ino, OsString), Ino>,
    /// The node of each multiply-linked backing file, by (device, inode).
    groups: HashMap<(u64, u64), Ino>,
}

impl Table {
    pub fn new(root: Node) -> Table {
        Self::with_hints(root, crate::persist::Hints::default())
    }

    /// A table that gives names the numbers they had in a previous mount.
    pub fn with_hints(root: Node, hints: crate::persist::Hints) -> Table {
        let mut t = Table { next: hints.next.max(ROOT + 1), hints: hints.by_name, ..Table::default() };
        t.nodes.insert(ROOT, root);
        t
    }

    /// Every linked name with its number, for `persist::save`; also the numbers of the
    /// previous mount that this one never needed (names it did not touch keep theirs).
    pub fn names(&self) -> impl Iterator<Item = (Ino, Ino, OsString)> + '_ {
        let live = self.children.iter().map(|((parent, name), ino)| (*ino, *parent, name.clone()));
        let kept = self
            .hints
            .iter()
            .filter(|(key, ino)| !self.children.contains_key(key) && !self.nodes.contains_key(ino))
            .map(|((parent, name), ino)| (*ino, *parent, name.clone()));
        live.chain(kept)
    }

    pub fn get(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ESTALE)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ESTALE)
    }

    pub fn child(&self, parent: Ino, name: &OsStr) -> Option<Ino> {
        self.children.get(&(parent, name.to_os_string())).copied()
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
        let hinted = self.hints.remove(&(node.parent, node.name.clone())).filter(|i| !self.nodes.contains_key(i));
        let ino = hinted.unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        if let Some(old) = self.children.insert((node.parent, node.name.clone()), ino) {
            self.drop_name(old, node.parent, &node.name);
        }
        self.nodes.insert(ino, node);
        ino
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
        let mut out = vec![(n.parent, n.name.clone())];
        out.extend(self.aliases.get(&ino).into_iter().flatten().cloned());
        out
    }

    /// Moves every name of `old` to a fresh node (same place, new number); `old` lives on
    /// unlinked for whoever still holds it.
    pub fn replace_node(&mut self, old: Ino) -> Option<Ino> {
        let names = self.names_of(old);
        let n = self.nodes.get(&old)?;
        let mut fresh = Node::new(n.parent, n.name.clone(), n.kind, n.branch, n.src().cloned(), n.dirs.clone());
        fresh.replace_links(n.links());
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
        if let Some(old) = self.children.insert((parent, name.to_os_string()), ino) {
            self.drop_name(old, parent, name);
        }
        self.aliases.entry(ino).or_default().push((parent, name.to_os_string()));
    }

    /// Forgets the name `(parent, name)`; the node moves to another of its names or,
    /// having none, becomes unlinked (and is freed once nobody references it).
    pub fn remove_name(&mut self, parent: Ino, name: &OsStr) {
        if let Some(ino) = self.children.remove(&(parent, name.to_os_string())) {
            self.drop_name(ino, parent, name);
        }
    }

    fn drop_name(&mut self, ino: Ino, parent: Ino, name: &OsStr) {
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        if node.parent == parent && node.name == name {
            match self.aliases.get_mut(&ino).and_then(|a| a.pop()) {
                Some((p, n)) => {
                    node.parent = p;
                    node.name = n;
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

    /// Moves the name `(parent, name)` to `(new_parent, new_name)`, replacing any node there.
    pub fn rename(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        let Some(ino) = self.children.remove(&(parent, name.to_os_string())) else { return };
        self.remove_name(new_parent, new_name);
        self.children.insert((new_parent, new_name.to_os_string()), ino);
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        if node.parent == parent && node.name == name {
            node.parent = new_parent;
            node.name = new_name.to_os_string();
        } else if let Some(a) = self.aliases.get_mut(&ino) {
            for entry in a.iter_mut().filter(|(p, n)| *p == parent && n == name) {
                *entry = (new_parent, new_name.to_os_string());
            }
        }
    }

    /// Swaps the nodes behind two names (RENAME_EXCHANGE).
    pub fn exchange(&mut self, a: (Ino, &OsStr), b: (Ino, &OsStr)) {
        let ka = (a.0, a.1.to_os_string());
        let kb = (b.0, b.1.to_os_string());
        let (Some(ia), Some(ib)) = (self.children.get(&ka).copied(), self.children.get(&kb).copied()) else { return };
        self.children.insert(ka.clone(), ib);
        self.children.insert(kb.clone(), ia);
        for (ino, from, to) in [(ia, &ka, &kb), (ib, &kb, &ka)] {
            if let Some(node) = self.nodes.get_mut(&ino)
                && node.parent == from.0
                && node.name == from.1
            {
                node.parent = to.0;
                node.name = to.1.clone();
            } else if let Some(names) = self.aliases.get_mut(&ino) {
                for entry in names.iter_mut().filter(|(p, n)| *p == from.0 && *n == from.1) {
                    *entry = to.clone();
                }
            }
        }
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
        if self.nodes.get(&ino).is_some_and(|n| !n.linked && n.lookups == 0 && n.opens == 0)
            && let Some(n) = self.nodes.remove(&ino)
            && let Some(l) = n.links()
            && self.groups.get(&l.key) == Some(&ino)
        {
            self.groups.remove(&l.key);
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
    fn exchange_swaps_names() {
        let mut t = table();
        let a = t.insert(file(ROOT, "a"));
        let b = t.insert(file(ROOT, "b"));
        t.exchange((ROOT, OsStr::new("a")), (ROOT, OsStr::new("b")));
        assert_eq!(t.path(a).unwrap(), PathBuf::from("b"));
        assert_eq!(t.path(b).unwrap(), PathBuf::from("a"));
    }
}
