//! Union semantics over opened branches: name resolution, merged listings, copy-up,
//! whiteouts. Knows nothing of FUSE replies; every function answers with an errno.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fuser::{Errno, FileType};
use parking_lot::RwLock;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Stat};
use tracing::warn;

use crate::branch::{Branch, Perm};
use crate::copyup::{self, Data};
use crate::inode::{Ino, Links, Node, Orphan, Part, ROOT, Table};
use crate::links::BranchLinks;
use crate::names::{Hint, INDEX_MIN_BRANCHES, NameIndexes};
use crate::persist;
use crate::sys::{self, errno};
use crate::whiteout::{self, Format};

pub use crate::whiteout::NAME_MAX;

/// Where a name resolved.
#[derive(Debug)]
pub struct Found {
    pub branch: u16,
    pub stat: Stat,
    /// Where the entry lives in `branch`, when not at its path in the union.
    pub src: Option<Arc<Path>>,
    /// Directories: the merged parts, top first.
    pub dirs: Box<[Part]>,
    /// A metadata-only copy (`metacopy=on`): the branch and path of its data.
    pub data: Option<(u16, Arc<Path>)>,
}

/// One entry of a merged directory listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: FileType,
    /// Index into the directory's `dirs` of the branch the entry came from.
    pub pos: u16,
}

/// The daemon's user and group, which every entry it makes starts with (they never
/// change while it runs: asked once, not on every create).
static DAEMON_IDS: std::sync::LazyLock<(u32, u32)> =
    std::sync::LazyLock::new(|| (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()));

#[derive(Debug)]
pub struct Union {
    /// The branches, top first, and the topmost writable one; replaced whole (under `ns`
    /// held alone) when branches change on the live mount.
    stack: RwLock<Arc<Stack>>,
    pub format: Format,
    /// A 0/0 character device is a whiteout (see `MountSpec::overlay_whiteouts`).
    pub overlay_whiteouts: bool,
    /// Reads through the union leave the writable branch's access times alone: of files
    /// and directories (`noatime`), of directories (`nodiratime`). See [`Self::read_flags`].
    pub noatime_files: bool,
    pub noatime_dirs: bool,
    /// Every listing of a directory reaches the branches (`strictatime`): none is served
    /// from the kernel's cache, where it would update no access time.
    pub strictatime: bool,
    /// Metadata-only copy-up (`metacopy=on`, see [`Data::Meta`]); also the only mounts
    /// that read such copies, as kernel overlayfs.
    pub metacopy: bool,
    /// Scratch dir on the writable branch's filesystem for atomic copy-up and replace.
    work: Option<OwnedFd>,
    pub table: RwLock<Table>,
    /// Namespace lock: lookups and listings share it; changes to names take it alone.
    pub ns: RwLock<()>,
    /// Name indexes of directories merged from many branches.
    names: NameIndexes,
    /// The names of multiply-linked files, per branch.
    branch_links: BranchLinks,
    scratch: AtomicU64,
    /// The mount's id, as AUFS's `si_*`.
    pub id: String,
    /// Where inode numbers are kept across mounts.
    inode_map: Option<PathBuf>,
    /// The branch the work dir belongs to (writable at mount time).
    work_branch: Option<PathBuf>,
}

/// The branch stack of a union.
#[derive(Debug)]
pub struct Stack {
    pub branches: Vec<Branch>,
    /// Topmost writable branch; `None` for a read-only union.
    pub wb: Option<u16>,
}

/// The stat of a resolution when it is the stat of the node it is indexed as: not for a
/// multiply-linked file, which may join a node that lives elsewhere (after a copy-up).
pub fn own_stat(found: &Found) -> Option<Stat> {
    (sys::is_dir(&found.stat) || found.stat.st_nlink <= 1).then_some(found.stat)
}

/// The error a name check gives, if any: meta names are reserved, long ones refused.
pub fn check_new_name(name: &OsStr) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else if whiteout::is_meta_name(name) {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

pub fn file_type(st: &Stat) -> FileType {
    match sys::file_type_bits(st) {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

impl Union {
    pub fn new(
        branches: Vec<Branch>,
        format: Format,
        wb: Option<u16>,
        work: Option<OwnedFd>,
        id: String,
        inode_map: Option<PathBuf>,
    ) -> Union {
        let all: Box<[Part]> = (0..branches.len() as u16).map(Part::at).collect();
        let root = Node::new(ROOT, OsString::new(), FileType::Directory, 0, None, all);
        let hints = match (&inode_map, persist::fingerprint(&branches)) {
            (Some(p), Ok(f)) => persist::load(p, &f),
            _ => Default::default(),
        };
        let work_branch = wb.map(|w| branches[w as usize].path.clone());
        Union {
            stack: RwLock::new(Arc::new(Stack { branches, wb })),
            format,
            overlay_whiteouts: true,
            noatime_files: false,
            strictatime: false,
            noatime_dirs: false,
            metacopy: false,
            work,
            table: RwLock::new(Table::with_hints(root, hints)),
            ns: RwLock::new(()),
            names: NameIndexes::default(),
            branch_links: BranchLinks::default(),
            scratch: AtomicU64::new(0),
            id,
            inode_map,
            work_branch,
        }
    }

    /// Is `st` a whiteout: a character device 0/0, unless the mount reads AUFS whiteouts only?
    fn is_whiteout_device(&self, st: &Stat) -> bool {
        self.overlay_whiteouts && whiteout::is_overlay_whiteout(st)
    }

    /// A whiteout for `name` can be made: always, but on a mount that reads AUFS whiteouts
    /// only, a name too long for `.wh.NAME` has none (AUFS says ENAMETOOLONG too).
    fn check_whiteout_fits(&self, name: &OsStr) -> Result<(), Errno> {
        if self.overlay_whiteouts || whiteout::aufs_name_fits(name) { Ok(()) } else { Err(Errno::ENAMETOOLONG) }
    }

    /// Keeps this mount's inode numbers for the next mount of the same branches.
    pub fn save_inode_numbers(&self) -> std::io::Result<()> {
        let Some(path) = &self.inode_map else { return Ok(()) };
        let fingerprint = persist::fingerprint(&self.stack().branches)?;
        persist::save(path, &fingerprint, self.table.read().names())
    }

    /// Applies a change to the branch stack. Callers hold `ns` exclusively and have made
    /// sure no open file stands in the way. Returns the changed branch's path, and where
    /// each old branch number went (`None`: removed).
    pub fn change_branches(
        &self,
        change: &crate::restack::BranchChange,
        mountpoint: &Path,
    ) -> Result<(PathBuf, Vec<Option<u16>>), String> {
        let old = self.stack();
        let new = crate::restack::restack(&old.branches, change, mountpoint, self.work_branch.as_deref())?;
        let count = new.branches.len() as u16;
        *self.stack.write() = Arc::new(Stack { branches: new.branches, wb: new.wb });
        self.table.write().restack(&new.moved, count);
        self.names.clear();
        self.branch_links.clear();
        Ok((new.changed, new.moved))
    }

    /// The current branch stack.
    pub fn stack(&self) -> Arc<Stack> {
        self.stack.read().clone()
    }

    pub fn root(&self, b: u16) -> Arc<OwnedFd> {
        self.stack.read().branches[b as usize].root.clone()
    }

    pub fn branch_count(&self) -> u16 {
        self.stack.read().branches.len() as u16
    }

    pub fn wb_opt(&self) -> Option<u16> {
        self.stack.read().wb
    }

    pub fn perm(&self, b: u16) -> Perm {
        self.stack.read().branches[b as usize].perm
    }

    fn wb(&self) -> Result<u16, Errno> {
        self.wb_opt().ok_or(Errno::EROFS)
    }

    fn work(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.work.as_ref().map(|w| w.as_fd()).ok_or(Errno::EROFS)
    }

    fn scratch_name(&self) -> OsString {
        OsString::from(format!("#{}", self.scratch.fetch_add(1, Ordering::Relaxed)))
    }

    /// Resolves `name` in directory `dir` across `candidates` (the directory's parts):
    /// the first branch holding the name wins, a whiteout stops the search, and a
    /// directory keeps merging lower directories until one is opaque. A renamed
    /// directory's redirect sends the search below it to the directory's old path.
    pub fn resolve(&self, dir: &Path, candidates: &[Part], name: &OsStr) -> Result<Option<Found>, Errno> {
        let own = sys::join(dir, name);
        let mut places: Vec<(u16, PathBuf)> =
            candidates.iter().map(|p| (p.branch, sys::join(p.path_or(dir), name))).collect();
        let mut found: Option<Found> = None;
        let mut dirs: Vec<Part> = Vec::new();
        // A metadata-only copy was found: the next regular file below holds its data.
        let mut seeking_data = false;
        let mut data = None;
        let mut i = 0;
        while i < places.len() {
            let (b, rel) = places[i].clone();
            i += 1;
            let honours = self.perm(b).honours_whiteouts();
            let here = (rel != own).then(|| Arc::<Path>::from(rel.as_path()));
            match sys::lstat_opt(self.root(b), &rel).map_err(errno)? {
                Some(st) if self.is_whiteout_device(&st) => {
                    if honours {
                        break;
                    }
                }
                Some(st) if seeking_data => {
                    if sys::file_type_bits(&st) != libc::S_IFREG {
                        break;
                    }
                    match self.metacopy_redirect(b, &rel)? {
                        None => {
                            data = Some((b, Arc::<Path>::from(rel.as_path())));
                            break;
                        }
                        Some(redirect) => self.follow_file_redirect(&mut places, i, b, redirect),
                    }
                }
                Some(st) => {
                    let st_is_dir = sys::is_dir(&st);
                    if found.is_none() {
                        let meta = match sys::file_type_bits(&st) == libc::S_IFREG && st.st_size > 0 {
                            true => self.metacopy_redirect(b, &rel)?,
                            false => None,
                        };
                        found = Some(Found { branch: b, stat: st, src: here.clone(), dirs: Box::new([]), data: None });
                        if let Some(redirect) = meta {
                            seeking_data = true;
                            self.follow_file_redirect(&mut places, i, b, redirect);
                            continue;
                        }
                        if !st_is_dir {
                            break;
                        }
                    } else if !st_is_dir {
                        break; // a non-directory below a directory ends the merge
                    }
                    dirs.push(Part { branch: b, path: here });
                    if !honours {
                        continue;
                    }
                    let marks = whiteout::dir_marks(self.root(b), &rel).map_err(errno)?;
                    if marks.opaque {
                        break;
                    }
                    if let Some(target) = marks.redirect {
                        let target = match target.strip_prefix("/") {
                            Ok(abs) => abs.to_path_buf(),
                            Err(_) => sys::join(rel.parent().unwrap_or(Path::new(".")), target.as_os_str()),
                        };
                        if target.as_os_str().is_empty() {
                            continue;
                        }
                        places.truncate(i);
                        places.extend(
                            (b + 1..self.branch_count())
                                .filter(|&l| self.plain_dirs_along(l, &target))
                                .map(|l| (l, target.clone())),
                        );
                    }
                }
                // A whiteout hides what is below it: in the last place there is nothing.
                None if i == places.len() => {}
                None => {
                    let (parent, base) = (rel.parent().unwrap_or(Path::new(".")), rel.file_name().unwrap_or(name));
                    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                    if honours && whiteout::has_aufs_whiteout(self.root(b), parent, base).map_err(errno)? {
                        break;
                    }
                }
            }
        }
        if let Some(f) = found.as_mut() {
            f.dirs = dirs.into_boxed_slice();
            if seeking_data {
                if data.is_none() {
                    warn!(path = %own.display(), "metadata-only copy whose data no lower branch holds");
                    return Err(Errno::EIO);
                }
                f.data = data;
            }
        }
        Ok(found)
    }

    /// On a `metacopy=on` mount: is regular file `rel` of branch `b` a metadata-only copy,
    /// and where was it renamed from (its redirect, `None` when at its own path)? Other
    /// mounts do not look (a lookup more per file widened a race that fails opens with
    /// ESTALE, see tests/stress.rs): they show such a file as it is on disk.
    fn metacopy_redirect(&self, b: u16, rel: &Path) -> Result<Option<Option<PathBuf>>, Errno> {
        if !self.metacopy {
            return Ok(None);
        }
        whiteout::metacopy_marks(self.root(b), rel).map_err(errno)
    }

    /// After a metadata-only copy in branch `b`: the places still to search (from `next`)
    /// become those of its redirect, when it has one. A relative redirect is a sibling
    /// name: looked for in each lower part of the same directory (as the kernel does);
    /// an absolute one from the lower branches' roots.
    fn follow_file_redirect(&self, places: &mut Vec<(u16, PathBuf)>, next: usize, b: u16, to: Option<PathBuf>) {
        let Some(target) = to else { return };
        let Ok(abs) = target.strip_prefix("/") else {
            for (_, place) in &mut places[next..] {
                place.set_file_name(&target);
            }
            return;
        };
        let parent = abs.parent().unwrap_or(Path::new("")).to_path_buf();
        places.truncate(next);
        places.extend(
            (b + 1..self.branch_count()).filter(|&l| self.plain_dirs_along(l, &parent)).map(|l| (l, abs.to_path_buf())),
        );
    }

    /// Is every component of `path` in branch `b` a real directory (no symlink, no
    /// whiteout)? A redirect target is only followed through such a path.
    fn plain_dirs_along(&self, b: u16, path: &Path) -> bool {
        let mut prefix = PathBuf::new();
        for c in path.components() {
            prefix.push(c);
            match sys::lstat_opt(self.root(b), &prefix) {
                Ok(Some(st)) if sys::is_dir(&st) => {}
                _ => return false,
            }
        }
        true
    }

    /// Re-resolves a node marked stale (an ancestor was renamed while parts of it stay in
    /// lower branches), keeping its number.
    fn refresh(&self, ino: Ino) -> Result<(), Errno> {
        // Asked on every location and listing: only a stale node costs more than a look.
        let (parent, name) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            if !n.stale || ino == ROOT {
                return Ok(());
            }
            (n.parent(), n.name().to_os_string())
        };
        let (dir, parts) = self.dir_info(parent)?;
        let found = self.resolve(&dir, &parts, &name)?.ok_or(Errno::ENOENT)?;
        let mut t = self.table.write();
        let n = t.get_mut(ino)?;
        n.branch = found.branch;
        n.set_src(found.src);
        n.set_data(found.data);
        if n.is_dir() {
            n.dirs = found.dirs;
        }
        n.stale = false;
        Ok(())
    }

    /// Path and merged branches of a directory node.
    pub fn dir_info(&self, ino: Ino) -> Result<(PathBuf, Box<[Part]>), Errno> {
        self.refresh(ino)?;
        let t = self.table.read();
        let n = t.get(ino)?;
        if !n.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok((t.path(ino)?, n.dirs.clone()))
    }

    /// Finds the node for `name` in `parent`, resolving and indexing it if new.
    /// Callers hold `ns` (shared or exclusive).
    pub fn child(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.child_with_stat(parent, name).map(|(ino, _)| ino)
    }

    /// [`Union::child`], with the stat its resolution just took when that is the node's
    /// own (a fresh, singly-linked entry): a lookup need not stat it again.
    pub fn child_with_stat(&self, parent: Ino, name: &OsStr) -> Result<(Ino, Option<Stat>), Errno> {
        let known = self.table.read().child(parent, name);
        if let Some(ino) = known {
            self.refresh(ino)?;
            return Ok((ino, None));
        }
        let (dir, dirs) = self.dir_info(parent)?;
        let from = self.first_candidate(parent, &dir, &dirs, name)?.ok_or(Errno::ENOENT)?;
        let found = self.resolve(&dir, &dirs[from..], name)?.ok_or(Errno::ENOENT)?;
        let own = own_stat(&found);
        Ok((self.index(parent, name, found), own))
    }

    /// The node numbered `ino`, for a file handle (`open_by_handle_at`, NFS export): a
    /// node the table holds under a name, or one the previous mount numbered so, looked up
    /// again by its name (and its parents' first). A removed file's number is `ESTALE`.
    pub fn node_by_number(&self, ino: Ino) -> Result<Ino, Errno> {
        let hinted = {
            let t = self.table.read();
            match t.get(ino) {
                Ok(n) if n.linked => return Ok(ino),
                Ok(_) => return Err(Errno::ESTALE),
                Err(_) => t.hinted_name(ino).ok_or(Errno::ESTALE)?,
            }
        };
        let (parent, name) = hinted;
        let parent = self.node_by_number(parent)?;
        match self.child_with_stat(parent, &name) {
            Ok((found, _)) if found == ino => Ok(ino),
            Ok(_) | Err(Errno::ENOENT) => Err(Errno::ESTALE),
            Err(e) => Err(e),
        }
    }

    /// Where in `dirs` a lookup of `name` must start; `None` when the directory's name
    /// index knows the name is absent. Builds the index for many-branch directories.
    fn first_candidate(&self, parent: Ino, dir: &Path, dirs: &[Part], name: &OsStr) -> Result<Option<usize>, Errno> {
        if dirs.len() < INDEX_MIN_BRANCHES {
            return Ok(Some(0));
        }
        let mut hint = self.names.hint(parent, name);
        if hint == Hint::Unknown {
            self.names.build(parent, dirs, &self.list(dir, dirs)?);
            hint = self.names.hint(parent, name);
        }
        Ok(match hint {
            Hint::Absent => None,
            Hint::In(b) => Some(dirs.iter().position(|d| d.branch == b).unwrap_or(0)),
            Hint::Unknown => Some(0),
        })
    }

    /// A fresh merged listing of `dir` doubles as its name index.
    pub fn listed(&self, dir: Ino, dirs: &[Part], entries: &[DirEntry]) {
        if dirs.len() >= INDEX_MIN_BRANCHES {
            self.names.build(dir, dirs, entries);
        }
    }

    /// Keeps the name index of `dir` exact after a change made through the union.
    fn name_changed(&self, dir: Ino, name: &OsStr, now_in: Option<u16>) {
        self.names.set(dir, name, now_in);
    }

    /// Like [`Union::child`], `None` when the name does not exist.
    pub fn child_opt(&self, parent: Ino, name: &OsStr) -> Result<Option<Ino>, Errno> {
        match self.child(parent, name) {
            Ok(i) => Ok(Some(i)),
            Err(e) if e == Errno::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Indexes a resolved entry, unless a concurrent lookup already did.
    /// Every name of a multiply-linked file shares one node.
    pub fn index(&self, parent: Ino, name: &OsStr, found: Found) -> Ino {
        let mut t = self.table.write();
        if let Some(ino) = t.child(parent, name) {
            return ino;
        }
        let multi = sys::file_type_bits(&found.stat) == libc::S_IFREG && found.stat.st_nlink > 1;
        let key = (found.stat.st_dev, found.stat.st_ino);
        if multi && let Some(g) = t.group(key) {
            t.add_alias(g, parent, name);
            return g;
        }
        let mut node =
            Node::new(parent, name.to_os_string(), file_type(&found.stat), found.branch, found.src, found.dirs);
        node.set_data(found.data);
        let ino = t.insert(node);
        if multi {
            t.set_links(ino, Some(Links { key, discovered: false }));
        }
        ino
    }

    /// The node a path (relative to the union root) resolves to.
    fn resolve_path(&self, rel: &Path) -> Result<Ino, Errno> {
        let mut cur = ROOT;
        for c in rel.components() {
            if let std::path::Component::Normal(n) = c {
                cur = self.child(cur, n)?;
            }
        }
        Ok(cur)
    }

    /// Finds every visible name of a multiply-linked lower file, so that they all are
    /// names of its node (walking the branch's link map once).
    fn discover_links(&self, ino: Ino) -> Result<(), Errno> {
        let (branch, links) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            (n.branch, n.links())
        };
        let Some(l) = links.filter(|l| !l.discovered) else { return Ok(()) };
        for path in self.branch_links.names(branch, self.root(branch), l.key).map_err(errno)? {
            // Names whited out or shadowed in the union do not resolve to this node.
            let _ = self.resolve_path(&path);
        }
        let mut t = self.table.write();
        if let Ok(n) = t.get_mut(ino)
            && let Some(l) = n.links_mut()
        {
            l.discovered = true;
        }
        Ok(())
    }

    /// The link count the union shows: for a multiply-linked file still in a read-only
    /// branch, the number of its names that are visible; otherwise the file's own.
    pub fn nlink(&self, ino: Ino, st: &Stat) -> Result<u32, Errno> {
        let (branch, links) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            (n.branch, n.links())
        };
        if links.is_none() || self.perm(branch).is_writable() {
            return Ok(st.st_nlink as u32);
        }
        self.discover_links(ino)?;
        Ok(self.table.read().names_of(ino).len().max(1) as u32)
    }

    /// Extra flags for opening an entry of branch `b` to read it: `O_NOATIME` for the
    /// read-only branches always (as overlayfs, reading never changes a lower branch),
    /// and for the writable one under `noatime` (or `nodiratime`, for directories). Else
    /// the branch's own mount decides (`relatime` mostly): with passthrough, the reads
    /// never reach the daemon, and the kernel asks for the atime again after them.
    pub fn read_flags(&self, b: u16, dir: bool) -> OFlags {
        let quiet = !self.perm(b).is_writable() || if dir { self.noatime_dirs } else { self.noatime_files };
        if quiet { OFlags::NOATIME } else { OFlags::empty() }
    }

    /// The link count of directory `ino` as a single directory has it: 2, plus one for
    /// each subdirectory the union shows in it.
    pub fn dir_nlink(&self, ino: Ino) -> Result<u32, Errno> {
        let (dir, dirs) = self.dir_info(ino)?;
        let subdirs = self.list(&dir, &dirs)?.iter().filter(|e| e.kind == FileType::Directory).count();
        Ok(2 + subdirs as u32)
    }

    /// The backing branch, path and stat of a node.
    pub fn stat(&self, ino: Ino) -> Result<(u16, PathBuf, Stat), Errno> {
        let (b, rel) = self.location(ino)?;
        let st = sys::lstat(self.root(b), &rel).map_err(errno)?;
        Ok((b, rel, st))
    }

    /// Where a node's data is read: below it for a metadata-only copy, else its location.
    pub fn data_location(&self, ino: Ino) -> Result<(u16, PathBuf), Errno> {
        self.refresh(ino)?;
        let t = self.table.read();
        match t.get(ino)?.data() {
            Some((b, rel)) => Ok((*b, rel.to_path_buf())),
            None => Self::located(&t, ino),
        }
    }

    pub fn location(&self, ino: Ino) -> Result<(u16, PathBuf), Errno> {
        self.refresh(ino)?;
        Self::located(&self.table.read(), ino)
    }

    /// The branch and path of node `ino`'s own entry.
    fn located(t: &Table, ino: Ino) -> Result<(u16, PathBuf), Errno> {
        let n = t.get(ino)?;
        match n.src() {
            Some(src) => Ok((n.branch, src.to_path_buf())),
            None => Ok((n.branch, t.path(ino)?)),
        }
    }

    /// Merged listing of a directory: shadowed names once, whiteouts and meta files hidden.
    pub fn list(&self, dir: &Path, dirs: &[Part]) -> Result<Vec<DirEntry>, Errno> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for (pos, part) in dirs.iter().enumerate() {
            let b = part.branch;
            let honours = self.perm(b).honours_whiteouts();
            let fd = match sys::open_at(
                self.root(b),
                part.path_or(dir),
                OFlags::RDONLY | OFlags::DIRECTORY | self.read_flags(b, true),
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => continue,
                Err(e) => return Err(errno(e)),
            };
            let mut hidden: Vec<OsString> = Vec::new();
            let mut entries = rustix::fs::Dir::read_from(&fd).map_err(errno)?;
            while let Some(ent) = entries.read() {
                let ent = ent.map_err(errno)?;
                let name = OsStr::from_bytes(ent.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                if whiteout::is_meta_name(name) {
                    if let (true, Some(target)) = (honours, whiteout::whited_out_name(name)) {
                        hidden.push(target.to_os_string());
                    }
                    continue;
                }
                let kind = match ent.file_type() {
                    rustix::fs::FileType::RegularFile => FileType::RegularFile,
                    rustix::fs::FileType::Directory => FileType::Directory,
                    rustix::fs::FileType::Symlink => FileType::Symlink,
                    rustix::fs::FileType::Fifo => FileType::NamedPipe,
                    rustix::fs::FileType::Socket => FileType::Socket,
                    rustix::fs::FileType::BlockDevice => FileType::BlockDevice,
                    _ => {
                        let st = sys::lstat(&fd, Path::new(name)).map_err(errno)?;
                        if self.is_whiteout_device(&st) {
                            if honours {
                                hidden.push(name.to_os_string());
                            }
                            continue;
                        }
                        file_type(&st)
                    }
                };
                if seen.insert(name.to_os_string()) {
                    out.push(DirEntry { name: name.to_os_string(), kind, pos: pos as u16 });
                }
            }
            seen.extend(hidden);
        }
        Ok(out)
    }

    /// Is the directory empty as the union shows it?
    pub fn is_empty_dir(&self, ino: Ino) -> Result<bool, Errno> {
        let (dir, dirs) = self.dir_info(ino)?;
        Ok(self.list(&dir, &dirs)?.is_empty())
    }

    /// Would `name` in `parent` still be visible from the branches strictly below `below`?
    fn visible_below(&self, parent: Ino, name: &OsStr, below: u16) -> Result<Option<Found>, Errno> {
        let (dir, dirs) = self.dir_info(parent)?;
        let lower: Vec<Part> = dirs.iter().filter(|p| p.branch > below).cloned().collect();
        self.resolve(&dir, &lower, name)
    }

    /// Makes sure directory `ino` exists in the writable branch (parents first), copying
    /// its metadata. Callers hold `ns` exclusively.
    pub fn copy_up_dir(&self, ino: Ino) -> Result<(), Errno> {
        self.refresh(ino)?;
        let wb = self.wb()?;
        let (parent, has) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            (n.parent(), n.dirs.iter().any(|p| p.branch == wb))
        };
        if has {
            return Ok(());
        }
        if ino != ROOT {
            self.copy_up_dir(parent)?;
        }
        let (src, src_rel, st) = self.stat(ino)?;
        let rel = self.table.read().path(ino)?;
        let work = self.work()?;
        let tmp = self.scratch_name();
        copyup::copy_entry(self.root(src), &src_rel, &st, work, &tmp, Data::Skip, None).map_err(errno)?;
        let placed = self.keeping_parent_times(wb, &rel, || {
            sys::renameat_with(work, &tmp, self.root(wb), &rel, RenameFlags::NOREPLACE)
        });
        if let Err(e) = placed {
            let _ = sys::unlinkat(work, &tmp, AtFlags::REMOVEDIR);
            return Err(errno(e));
        }
        let mut t = self.table.write();
        let n = t.get_mut(ino)?;
        let mut dirs = n.dirs.to_vec();
        dirs.push(Part::at(wb));
        dirs.sort_unstable_by_key(|p| p.branch);
        n.branch = dirs[0].branch;
        n.set_src(dirs[0].path.clone());
        n.dirs = dirs.into_boxed_slice();
        Ok(())
    }

    /// Runs `op`, which puts a copied-up entry at `rel` in the writable branch, and puts
    /// the parent's times back as they were: a copy-up changes nothing the union shows
    /// (kernel overlayfs does the same), and a directory whose mtime moved by itself
    /// makes `tar` report "file changed as we read it".
    fn keeping_parent_times<T>(
        &self,
        wb: u16,
        rel: &Path,
        op: impl FnOnce() -> Result<T, rustix::io::Errno>,
    ) -> Result<T, rustix::io::Errno> {
        let parent = rel.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let before = sys::lstat(self.root(wb), parent).ok();
        let out = op()?;
        if let Some(st) = before {
            let _ = sys::utimensat(self.root(wb), parent, &copyup::times_of(&st), AtFlags::SYMLINK_NOFOLLOW);
        }
        Ok(out)
    }

    /// Copies a lower regular file into the work dir ahead of [`Union::copy_up`]: the slow
    /// data copy needs only a stable namespace, so callers hold `ns` upgradable (other
    /// changes wait, lookups go on) and upgrade it for the copy-up proper.
    pub fn stage_copy_up(&self, ino: Ino, data: Data) -> Result<Option<Staged>, Errno> {
        self.refresh(ino)?;
        let (branch, kind, linked, below, has_links) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            (n.branch, n.kind, n.linked, n.data().cloned(), n.links().is_some())
        };
        // In a writable branch only the completion of a metadata-only copy with its data
        // is staged: whole (its own metadata, the data from below), then swapped in.
        // Completing one whose data is dropped anyway (`Data::Skip`) is quick, and so is
        // making one (`Data::Meta`): both are done under the lock, in `copy_up`.
        let completes = below.is_some() && data == Data::Copy;
        if !linked
            || kind != FileType::RegularFile
            || self.wb_opt().is_none_or(|wb| branch < wb)
            || (self.perm(branch).is_writable() && !completes)
        {
            return Ok(None);
        }
        let (_, rel, st) = self.stat(ino)?;
        let data = self.data_mode(data, &st, has_links);
        if data == Data::Meta {
            return Ok(None);
        }
        let tmp = self.copy_to_work(branch, &rel, &st, data, below.as_ref())?;
        Ok(Some(Staged { ino, tmp }))
    }

    /// What a copy-up asked to do with the data does here. A metadata-only copy
    /// ([`Data::Meta`]) is made only under `metacopy=on`, of a regular file with data and
    /// one name (several would need overlayfs's index); else the data is copied.
    fn data_mode(&self, data: Data, st: &Stat, has_links: bool) -> Data {
        let meta_ok = self.metacopy
            && sys::file_type_bits(st) == libc::S_IFREG
            && st.st_size > 0
            && st.st_nlink == 1
            && !has_links;
        if data == Data::Meta && !meta_ok { Data::Copy } else { data }
    }

    /// Copies entry `rel` of branch `b` (of stat `st`) into the work dir under a new
    /// name, its data from `below` when given (a metadata-only copy's data); nothing is
    /// left behind on failure.
    fn copy_to_work(
        &self,
        b: u16,
        rel: &Path,
        st: &Stat,
        data: Data,
        below: Option<&(u16, Arc<Path>)>,
    ) -> Result<OsString, Errno> {
        let work = self.work()?;
        let tmp = self.scratch_name();
        let below_root = below.map(|(lb, _)| self.root(*lb));
        let data_src = below_root.as_ref().zip(below).map(|(r, (_, p))| (r.as_fd(), &**p));
        if let Err(e) = copyup::copy_entry(self.root(b), rel, st, work, &tmp, data, data_src) {
            let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
            return Err(errno(e));
        }
        Ok(tmp)
    }

    /// Gives metadata-only copy `ino` (in writable branch `b`, data at `below`) its own
    /// data. `Data::Copy`: a whole copy (its own metadata and xattrs, set after the data,
    /// which would clear `security.capability`; the data from below), staged already or
    /// made now, replaces it in one rename. `Data::Skip` (the caller truncates it): it is
    /// emptied, then unmarked. A crash before the end leaves the metadata-only copy.
    fn complete_metacopy(
        &self,
        ino: Ino,
        b: u16,
        below: &(u16, Arc<Path>),
        data: Data,
        staged: Option<OsString>,
    ) -> Result<(), Errno> {
        let work = self.work()?;
        if data == Data::Skip {
            if let Some(tmp) = staged {
                let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
            }
            let (_, rel) = self.location(ino)?;
            let dst = sys::open_at(self.root(b), &rel, OFlags::WRONLY, Mode::empty()).map_err(errno)?;
            rustix::fs::ftruncate(&dst, 0).map_err(errno)?;
            whiteout::clear_metacopy(&dst).map_err(errno)?;
        } else {
            let (_, rel, st) = self.stat(ino)?;
            let tmp = match staged {
                Some(t) => t,
                None => self.copy_to_work(b, &rel, &st, Data::Copy, Some(below))?,
            };
            let swapped = self.keeping_parent_times(b, &rel, || sys::renameat(work, &tmp, self.root(b), &rel));
            if let Err(e) = swapped {
                let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
                return Err(errno(e));
            }
        }
        self.table.write().get_mut(ino)?.set_data(None);
        Ok(())
    }

    /// Makes a node writable: in place when its branch is writable, else by copying it up
    /// into the writable branch (using `staged` if given). Returns `true` when a copy-up
    /// happened. Callers hold `ns` exclusively.
    pub fn copy_up(&self, ino: Ino, data: Data, staged: Option<Staged>) -> Result<bool, Errno> {
        self.refresh(ino)?;
        let (branch, is_dir, parent, linked, below, has_links) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            (n.branch, n.is_dir(), n.parent(), n.linked, n.data().cloned(), n.links().is_some())
        };
        let work = self.work.as_ref().map(|w| w.as_fd());
        let staged = staged.filter(|s| s.ino == ino).map(|s| s.tmp);
        let discard = |tmp: &Option<OsString>| {
            if let (Some(t), Some(w)) = (tmp, work) {
                let _ = sys::unlinkat(w, t, AtFlags::empty());
            }
        };
        // No name to copy up to: a removed file changes through its descriptors (see
        // `Self::orphan`).
        if self.perm(branch).is_writable() || !linked {
            match (linked && data != Data::Meta, &below) {
                (true, Some(below)) => self.complete_metacopy(ino, branch, below, data, staged)?,
                _ => discard(&staged),
            }
            return Ok(false);
        }
        let wb = self.wb()?;
        if branch < wb {
            discard(&staged);
            return Err(Errno::EROFS); // above the writable branch: nowhere to copy it
        }
        if is_dir {
            self.copy_up_dir(ino)?;
            return Ok(true);
        }
        if let Err(e) = self.copy_up_dir(parent).and_then(|()| self.discover_links(ino)) {
            discard(&staged);
            return Err(e);
        }
        let (_, src_rel, st) = self.stat(ino)?;
        let data = self.data_mode(data, &st, has_links);
        let rel = self.table.read().path(ino)?;
        let work = self.work()?;
        let tmp = match staged {
            Some(t) => t,
            None => self.copy_to_work(branch, &src_rel, &st, data, below.as_ref())?,
        };
        let placed = self.keeping_parent_times(wb, &rel, || {
            sys::renameat_with(work, &tmp, self.root(wb), &rel, RenameFlags::NOREPLACE)
        });
        if let Err(e) = placed {
            let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
            return Err(errno(e));
        }
        let mut t = self.table.write();
        let n = t.get_mut(ino)?;
        n.branch = wb;
        n.set_src(None);
        n.set_xattr_names(None);
        n.set_data(match data {
            Data::Meta => Some(below.unwrap_or_else(|| (branch, Arc::from(src_rel.as_path())))),
            _ => None,
        });
        let name = n.name().to_os_string();
        let others: Vec<(Ino, OsString)> = t.names_of(ino).into_iter().skip(1).collect();
        drop(t);
        self.name_changed(parent, &name, Some(wb));
        // The file's other names become links to the copy: one file, as before.
        for (p, other) in &others {
            self.copy_up_dir(*p)?;
            let other_rel = sys::join(&self.table.read().path(*p)?, other);
            self.keeping_parent_times(wb, &other_rel, || {
                sys::linkat(self.root(wb), &rel, self.root(wb), &other_rel, AtFlags::empty())
            })
            .map_err(errno)?;
            self.name_changed(*p, other, Some(wb));
        }
        if !others.is_empty() {
            let up = sys::lstat(self.root(wb), &rel).map_err(errno)?;
            let links = Links { key: (up.st_dev, up.st_ino), discovered: true };
            self.table.write().set_links(ino, Some(links));
        }
        Ok(true)
    }

    /// Can a new entry `name` be made in `parent`? Not with an invalid name, nor on a
    /// union with no writable branch (EROFS), nor where the name exists (EEXIST).
    /// Callers hold `ns` exclusively, and keep it until the entry is made.
    pub fn check_creatable(&self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        check_new_name(name)?;
        self.wb()?;
        match self.child_opt(parent, name)? {
            Some(_) => Err(Errno::EEXIST),
            None => Ok(()),
        }
    }

    /// Where a new entry named `name` goes in `parent`: the parent is copied up, and an
    /// AUFS whiteout for the name in the writable branch is reported. The caller has found
    /// the name absent (see [`Self::check_creatable`]): it is not resolved again.
    fn prepare_new(&self, parent: Ino, name: &OsStr) -> Result<NewEntry, Errno> {
        let wb = self.wb()?;
        self.copy_up_dir(parent)?;
        let dir = self.table.read().path(parent)?;
        let rel = sys::join(&dir, name);
        let aufs_wh = whiteout::has_aufs_whiteout(self.root(wb), &dir, name).map_err(errno)?;
        Ok(NewEntry { wb, dir, rel, aufs_wh })
    }

    /// Whether `rel` in the writable branch `wb` holds an overlayfs whiteout (a name the
    /// union shows as absent, to be replaced); EEXIST when it holds anything else.
    fn ovl_whiteout_at(&self, wb: u16, rel: &Path) -> Result<bool, Errno> {
        match sys::lstat_opt(self.root(wb), rel).map_err(errno)? {
            Some(st) if self.is_whiteout_device(&st) => Ok(true),
            Some(_) => Err(Errno::EEXIST),
            None => Ok(false),
        }
    }

    /// Creates a new entry with `make(dirfd, name, aside)`, owned by `creator`, replacing any
    /// whiteout for the name atomically; returns its node and stat. The caller has found the name
    /// absent (see [`Self::check_creatable`]). `setid`: the set-id bits the
    /// creator asked for (the daemon's `chown` clears a file's; they are put back). `aside` says the entry is made
    /// in the work dir, then moved into place (so the parent's default ACL does not reach
    /// it). Directories created over a whiteout become opaque. Callers hold `ns`
    /// exclusively.
    pub fn create_entry(
        &self,
        parent: Ino,
        name: &OsStr,
        creator: (u32, u32),
        is_dir: bool,
        setid: u32,
        make: impl Fn(BorrowedFd<'_>, &OsStr, bool) -> Result<Option<OwnedFd>, rustix::io::Errno>,
    ) -> Result<(Ino, Stat, Option<OwnedFd>), Errno> {
        let ne = self.prepare_new(parent, name)?;
        let root_fd = self.root(ne.wb);
        let root = root_fd.as_fd();
        // The owner a new entry must get: its creator, with the group of a set-group-id
        // parent as the kernel would. What the daemon makes is the daemon's, so for a
        // creator with the daemon's own user and group (root, nearly always) the branch
        // filesystem gave exactly that already (the parent's group included): neither the
        // parent's stat nor a chown (a journalled change per new entry) is needed.
        let owner = if creator == *DAEMON_IDS {
            None
        } else {
            let parent_st = sys::lstat(root, &ne.dir).map_err(errno)?;
            let gid = if parent_st.st_mode & libc::S_ISGID != 0 { parent_st.st_gid } else { creator.1 };
            Some((creator.0, gid)).filter(|o| o != &*DAEMON_IDS)
        };
        let chown = |dirfd: BorrowedFd<'_>, rel: &Path| {
            let Some((uid, gid)) = owner else { return Ok(()) };
            sys::chownat(
                dirfd,
                rel,
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
            // chown clears a file's set-id bits; the kernel keeps those its creator asked
            // for, set-group-ID only for root or a member of the file's group (the
            // request names the primary group only).
            let setid = if creator.0 != 0 && creator.1 != gid { setid & !libc::S_ISGID } else { setid };
            if setid != 0 {
                let made = sys::lstat(dirfd, rel)?;
                if sys::file_type_bits(&made) == libc::S_IFREG {
                    let mode = made.st_mode & 0o777 | setid;
                    sys::chmod_nofollow(dirfd, rel, Mode::from_raw_mode(mode))?;
                }
            }
            Ok(())
        };
        // Made in place unless a whiteout is in the way: the creation itself tells (EEXIST),
        // so the common case asks nothing first. A directory over an AUFS whiteout is made
        // opaque, aside.
        let (made, ovl_wh) = if is_dir && ne.aufs_wh {
            (None, self.ovl_whiteout_at(ne.wb, &ne.rel)?)
        } else {
            let at = sys::reach(root, &ne.rel).map_err(errno)?;
            match make(at.dir(), at.rel().as_os_str(), false) {
                Ok(fd) => (Some(fd), false),
                Err(rustix::io::Errno::EXIST) if self.ovl_whiteout_at(ne.wb, &ne.rel)? => (None, true),
                Err(e) => return Err(errno(e)),
            }
        };
        let opaque = is_dir && (ne.aufs_wh || ovl_wh);
        let fd = match made {
            Some(fd) => {
                if let Err(e) = chown(root, &ne.rel) {
                    let _ = sys::unlinkat(root, &ne.rel, if is_dir { AtFlags::REMOVEDIR } else { AtFlags::empty() });
                    return Err(errno(e));
                }
                fd
            }
            None => {
                // Build it aside, then swap it in: never a moment with neither or both.
                let work = self.work()?;
                let tmp = self.scratch_name();
                let fd = make(work, &tmp, true).map_err(errno)?;
                let placed = (|| {
                    chown(work, Path::new(&tmp))?;
                    if opaque {
                        whiteout::set_opaque(self.format, work, Path::new(&tmp))?;
                    }
                    if ovl_wh && is_dir {
                        sys::renameat_with(work, &tmp, root, &ne.rel, RenameFlags::EXCHANGE)?;
                        sys::unlinkat(work, &tmp, AtFlags::empty())
                    } else if ovl_wh {
                        sys::renameat(work, &tmp, root, &ne.rel)
                    } else {
                        sys::renameat_with(work, &tmp, root, &ne.rel, RenameFlags::NOREPLACE)
                    }
                })();
                if let Err(e) = placed {
                    let _ = sys::unlinkat(work, &tmp, if is_dir { AtFlags::REMOVEDIR } else { AtFlags::empty() });
                    return Err(errno(e));
                }
                fd
            }
        };
        if ne.aufs_wh {
            whiteout::remove_aufs_whiteout(root, &ne.dir, name).map_err(errno)?;
        }
        let st = match &fd {
            Some(f) => rustix::fs::fstat(f),
            None => sys::lstat(root, &ne.rel),
        }
        .map_err(errno)?;
        let dirs: Box<[Part]> = if is_dir { Box::new([Part::at(ne.wb)]) } else { Box::new([]) };
        let mut node = Node::new(parent, name.to_os_string(), file_type(&st), ne.wb, None, dirs);
        // The caller's first write asks for `security.capability` (and `ls -l` for more):
        // the names are one call away on the new descriptor (a failure leaves them to be
        // read when first asked for).
        if let Some(names) = fd.as_ref().and_then(|f| sys::list_xattrs_of(f).ok()) {
            node.set_xattr_names(Some(names.into()));
        }
        let ino = self.table.write().insert(node);
        self.name_changed(parent, name, Some(ne.wb));
        Ok((ino, st, fd))
    }

    /// Removes `name` from `parent` as the union shows it: the entry goes from its branch
    /// if that is writable, and a whiteout hides whatever lower branches still hold.
    /// Callers hold `ns` exclusively.
    pub fn remove(&self, parent: Ino, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        let (branch, is_dir) = {
            let t = self.table.read();
            let n = t.get(ino)?;
            (n.branch, n.is_dir())
        };
        match (want_dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            _ => {}
        }
        if is_dir && !self.is_empty_dir(ino)? {
            return Err(Errno::ENOTEMPTY);
        }
        let target = if self.perm(branch).is_writable() { branch } else { self.wb()? };
        if target > branch {
            return Err(Errno::EROFS); // above the writable branch: no whiteout could hide it
        }
        let needs_whiteout = self.visible_below(parent, name, target)?.is_some();
        if needs_whiteout || target != branch {
            self.check_whiteout_fits(name)?;
        }
        if target != branch {
            self.copy_up_dir(parent)?;
        }
        if !is_dir {
            self.keep_orphan(ino)?;
        }
        let dir = self.table.read().path(parent)?;
        let rel = sys::join(&dir, name);
        let root_fd = self.root(target);
        let root = root_fd.as_fd();
        let rm_flags = if is_dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        let aufs_fits = whiteout::aufs_name_fits(name);

        if target != branch {
            whiteout::create_whiteout(self.format, root, &dir, name).map_err(errno)?;
        } else if !needs_whiteout {
            if is_dir {
                self.clear_meta(root, &rel)?;
            }
            sys::unlinkat(root, &rel, rm_flags).map_err(errno)?;
        } else if self.format == Format::Aufs && aufs_fits {
            // Whiteout first: if removing then fails, the entry is still hidden, never lost.
            whiteout::create_whiteout(Format::Aufs, root, &dir, name).map_err(errno)?;
            let removed = if is_dir { self.clear_meta(root, &rel) } else { Ok(()) }
                .and_then(|()| sys::unlinkat(root, &rel, rm_flags).map_err(errno));
            if let Err(e) = removed {
                let _ = whiteout::remove_aufs_whiteout(root, &dir, name);
                return Err(e);
            }
        } else {
            // The whiteout is built aside and swapped with the entry in one rename.
            let work = self.work()?;
            let tmp = self.scratch_name();
            sys::mknodat(work, &tmp, rustix::fs::FileType::CharacterDevice, Mode::empty(), 0).map_err(errno)?;
            let swapped = sys::renameat_with(work, &tmp, root, &rel, RenameFlags::EXCHANGE);
            if let Err(e) = swapped {
                let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
                return Err(errno(e));
            }
            if is_dir {
                self.clear_meta(work, Path::new(&tmp))?;
            }
            sys::unlinkat(work, &tmp, rm_flags).map_err(errno)?;
        }
        self.table.write().remove_name(parent, name);
        self.name_changed(parent, name, None);
        if is_dir {
            self.names.forget(ino);
        }
        Ok(())
    }

    /// Before the last name of file `ino` goes: keeps its backing file open if the kernel
    /// still references the node (see [`crate::inode::Table::set_orphan`]).
    fn keep_orphan(&self, ino: Ino) -> Result<(), Errno> {
        {
            let t = self.table.read();
            let n = t.get(ino)?;
            if n.lookups == 0 || t.names_of(ino).len() > 1 || !t.room_for_orphan() {
                return Ok(());
            }
        }
        // A metadata-only copy keeps its own file (its metadata) and its data location:
        // reads go below (`data_location`), a writer fills it first (`Self::orphan`).
        let (b, rel) = self.location(ino)?;
        let root = self.root(b);
        let orphan = if self.perm(b).is_writable() {
            Orphan::Open(b, Arc::new(sys::open_at(&*root, &rel, OFlags::PATH, Mode::empty()).map_err(errno)?))
        } else {
            // It stays where it is (a whiteout hides it): no descriptor until asked.
            Orphan::Below(b, root, Arc::from(rel.as_path()))
        };
        self.table.write().set_orphan(ino, orphan);
        Ok(())
    }

    /// The kept backing file of a removed file (see [`Self::keep_orphan`]), made writable
    /// when asked: one in a read-only branch is copied, unnamed, into the writable branch
    /// first, as a copy-up would. Callers hold `ns` exclusively when `write` is set.
    pub fn orphan(&self, ino: Ino, write: bool) -> Result<Option<(u16, Arc<OwnedFd>)>, Errno> {
        let Some(orphan) = self.table.read().get(ino)?.orphan() else { return Ok(None) };
        let (b, file) = match orphan {
            Orphan::Open(b, file) => (b, file),
            Orphan::Below(b, root, rel) => {
                (b, Arc::new(sys::open_at(&*root, &*rel, OFlags::PATH, Mode::empty()).map_err(errno)?))
            }
        };
        let below = self.table.read().get(ino)?.data().cloned();
        if let (true, Some(below)) = (write && self.perm(b).is_writable(), &below) {
            self.fill_orphan_metacopy(&file, below)?;
            self.table.write().get_mut(ino)?.set_data(None);
        }
        if !write || self.perm(b).is_writable() {
            return Ok(Some((b, file)));
        }
        let wb = self.wb()?;
        // A metadata-only copy in a read-only branch (the kernel's) is copied from its data.
        let src = match &below {
            Some((db, rel)) => sys::open_at(self.root(*db), &**rel, OFlags::RDONLY, Mode::empty()),
            None => rustix::fs::open(sys::proc_path(&*file), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()),
        }
        .map_err(errno)?;
        let copy = Arc::new(copyup::copy_unnamed(&src, self.work()?).map_err(errno)?);
        let mut t = self.table.write();
        t.set_orphan(ino, Orphan::Open(wb, copy.clone()));
        t.get_mut(ino)?.set_data(None);
        Ok(Some((wb, copy)))
    }

    /// Gives the kept file of a removed metadata-only copy its data from `below`, in
    /// place (it has no name to rename over): its times and `security.capability`
    /// (which the write clears) are put back.
    fn fill_orphan_metacopy(&self, file: &OwnedFd, below: &(u16, Arc<Path>)) -> Result<(), Errno> {
        let proc = sys::proc_path(file);
        let dst = rustix::fs::open(&proc, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(errno)?;
        let st = rustix::fs::fstat(&dst).map_err(errno)?;
        let cap = OsStr::new("security.capability");
        let caps = sys::get_xattr(&proc, cap).map_err(errno)?;
        let how = OFlags::RDONLY | self.read_flags(below.0, false);
        let src = sys::open_at(self.root(below.0), &*below.1, how, Mode::empty()).map_err(errno)?;
        copyup::copy_data(&src, &dst, st.st_size as u64).map_err(errno)?;
        if let Some(v) = caps {
            rustix::fs::setxattr(&proc, cap, &v, rustix::fs::XattrFlags::empty()).map_err(errno)?;
        }
        rustix::fs::futimens(&dst, &copyup::times_of(&st)).map_err(errno)?;
        Ok(())
    }

    /// Renames within the union. Files from lower branches are copied up first; a
    /// directory is renamed only when it lives wholly in the writable branch (else EXDEV,
    /// as AUFS and overlayfs without redirect_dir). Callers hold `ns` exclusively.
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: fuser::RenameFlags,
    ) -> Result<(), Errno> {
        check_new_name(new_name)?;
        let exchange = flags.contains(fuser::RenameFlags::RENAME_EXCHANGE);
        let noreplace = flags.contains(fuser::RenameFlags::RENAME_NOREPLACE);
        if flags.contains(fuser::RenameFlags::RENAME_WHITEOUT) || (exchange && noreplace) {
            return Err(Errno::EINVAL);
        }
        let wb = self.wb()?;
        let src = self.child(parent, name)?;
        let dst = self.child_opt(new_parent, new_name)?;
        if src == dst.unwrap_or(0) {
            return Ok(()); // the same file under both names: POSIX says do nothing
        }
        match (dst, noreplace, exchange) {
            (Some(_), true, _) => return Err(Errno::EEXIST),
            (None, _, true) => return Err(Errno::ENOENT),
            _ => {}
        }
        let src_dir = self.is_dir(src)?;
        let dst_dir = dst.map(|d| self.is_dir(d)).transpose()?;
        if !exchange {
            match dst_dir {
                Some(true) if !src_dir => return Err(Errno::EISDIR),
                Some(false) if src_dir => return Err(Errno::ENOTDIR),
                _ => {}
            }
        }
        // A directory with parts in lower branches moves by redirect (see below); swapping
        // one with RENAME_EXCHANGE is not supported.
        let redirect = src_dir && !self.is_upper_only(src, wb)?;
        if exchange
            && (redirect
                || (dst_dir == Some(true) && dst.map(|d| self.is_upper_only(d, wb)).transpose()? == Some(false)))
        {
            return Err(Errno::EXDEV);
        }
        // As overlayfs: a directory that cannot move is EXDEV before its target is checked.
        if let (false, Some(true), Some(d)) = (exchange, dst_dir, dst)
            && !self.is_empty_dir(d)?
        {
            return Err(Errno::ENOTEMPTY);
        }
        self.copy_up(src, Data::Copy, None)?;
        if let (true, Some(d)) = (exchange, dst) {
            self.copy_up(d, Data::Copy, None)?;
        }
        // A file in another writable branch than the top one stays where it is (AUFS).
        if !src_dir && self.location(src)?.0 != wb {
            return Err(Errno::EXDEV);
        }
        self.copy_up_dir(parent)?;
        self.copy_up_dir(new_parent)?;
        let (dir, new_dir) = {
            let t = self.table.read();
            (t.path(parent)?, t.path(new_parent)?)
        };
        let (rel, new_rel) = (sys::join(&dir, name), sys::join(&new_dir, new_name));
        let root_fd = self.root(wb);
        let root = root_fd.as_fd();
        let lower_src = self.visible_below(parent, name, wb)?;
        if lower_src.is_some() {
            self.check_whiteout_fits(name)?;
        }
        let lower_dst = self.visible_below(new_parent, new_name, wb)?;
        let lower_is_dir = |f: &Option<Found>| f.as_ref().is_some_and(|f| sys::is_dir(&f.stat));
        // Renaming a directory whose content lies partly in lower branches: only the
        // directory itself moves in the writable branch, with a redirect (overlayfs's
        // `trusted.overlay.redirect`) naming where its lower parts are; the old name gets a
        // whiteout. O(1) in the size of the tree, and kept on disk for the next mount.
        let lower_path = if redirect {
            let t = self.table.read();
            let parts = &t.get(src)?.dirs;
            let first_lower = parts.iter().find(|p| p.branch != wb).ok_or(Errno::EXDEV)?;
            let target = first_lower.path_or(&rel).to_path_buf();
            drop(t);
            whiteout::set_redirect(root, &rel, &target).map_err(errno)?;
            Some(rel.clone())
        } else {
            None
        };

        if exchange {
            sys::renameat_with(root, &rel, root, &new_rel, RenameFlags::EXCHANGE).map_err(errno)?;
            // A directory that now sits over a lower directory must not merge with it.
            if src_dir && lower_is_dir(&lower_dst) {
                whiteout::set_opaque(self.format, root, &new_rel).map_err(errno)?;
            }
            if dst_dir == Some(true) && lower_is_dir(&lower_src) {
                whiteout::set_opaque(self.format, root, &rel).map_err(errno)?;
            }
            self.table.write().exchange((parent, name), (new_parent, new_name));
            self.name_changed(parent, name, Some(wb));
            self.name_changed(new_parent, new_name, Some(wb));
            return Ok(());
        }

        if let (Some(d), Some(false)) = (dst, dst_dir) {
            self.keep_orphan(d)?;
        }
        let aufs_wh_dst = whiteout::has_aufs_whiteout(root, &new_dir, new_name).map_err(errno)?;
        match sys::lstat_opt(root, &new_rel).map_err(errno)? {
            Some(st) if self.is_whiteout_device(&st) && src_dir => {
                sys::unlinkat(root, &new_rel, AtFlags::empty()).map_err(errno)?;
            }
            Some(st) if sys::is_dir(&st) => self.clear_meta(root, &new_rel)?,
            _ => {}
        }
        if src_dir && !redirect && lower_is_dir(&lower_dst) {
            whiteout::set_opaque(self.format, root, &rel).map_err(errno)?;
        }
        let aufs_fits = whiteout::aufs_name_fits(name);
        if lower_src.is_none() {
            sys::renameat(root, &rel, root, &new_rel).map_err(errno)?;
        } else if self.format == Format::Aufs && aufs_fits {
            whiteout::create_whiteout(Format::Aufs, root, &dir, name).map_err(errno)?;
            if let Err(e) = sys::renameat(root, &rel, root, &new_rel) {
                let _ = whiteout::remove_aufs_whiteout(root, &dir, name);
                return Err(errno(e));
            }
        } else {
            match sys::renameat_with(root, &rel, root, &new_rel, RenameFlags::WHITEOUT) {
                Ok(()) => {}
                Err(rustix::io::Errno::INVAL) => {
                    sys::renameat(root, &rel, root, &new_rel).map_err(errno)?;
                    whiteout::create_whiteout(Format::Overlay, root, &dir, name).map_err(errno)?;
                }
                Err(e) => return Err(errno(e)),
            }
        }
        if aufs_wh_dst {
            whiteout::remove_aufs_whiteout(root, &new_dir, new_name).map_err(errno)?;
        }
        let mut t = self.table.write();
        t.rename(parent, name, new_parent, new_name);
        if let Some(old) = lower_path {
            // The lower parts stay where they were: say so, and let everything below
            // resolve again from the new place.
            let old: Arc<Path> = Arc::from(old.as_path());
            let n = t.get_mut(src)?;
            let parts: Box<[Part]> = n
                .dirs
                .iter()
                .map(|p| {
                    if p.branch != wb && p.path.is_none() {
                        Part { branch: p.branch, path: Some(old.clone()) }
                    } else {
                        p.clone()
                    }
                })
                .collect();
            n.dirs = parts;
            t.mark_stale_below(src);
        }
        drop(t);
        self.name_changed(parent, name, None);
        self.name_changed(new_parent, new_name, Some(wb));
        Ok(())
    }

    /// A new name for an existing file. Callers hold `ns` exclusively.
    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<(), Errno> {
        if self.is_dir(ino)? {
            return Err(Errno::EPERM);
        }
        self.check_creatable(new_parent, new_name)?;
        let ne = self.prepare_new(new_parent, new_name)?;
        let ovl_wh = self.ovl_whiteout_at(ne.wb, &ne.rel)?;
        self.copy_up(ino, Data::Copy, None)?;
        let (b, rel) = self.location(ino)?;
        if b != ne.wb {
            return Err(Errno::EXDEV); // a link must live in the same branch as its file
        }
        let root_fd = self.root(ne.wb);
        let root = root_fd.as_fd();
        if ovl_wh {
            // Link aside, then one rename replaces the whiteout: never neither.
            let work = self.work()?;
            let tmp = self.scratch_name();
            sys::linkat(root, &rel, work, &tmp, AtFlags::empty()).map_err(errno)?;
            if let Err(e) = sys::renameat(work, &tmp, root, &ne.rel) {
                let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
                return Err(errno(e));
            }
        } else {
            sys::linkat(root, &rel, root, &ne.rel, AtFlags::empty()).map_err(errno)?;
        }
        if ne.aufs_wh {
            whiteout::remove_aufs_whiteout(root, &ne.dir, new_name).map_err(errno)?;
        }
        self.table.write().add_alias(ino, new_parent, new_name);
        self.name_changed(new_parent, new_name, Some(ne.wb));
        Ok(())
    }

    fn is_dir(&self, ino: Ino) -> Result<bool, Errno> {
        Ok(self.table.read().get(ino)?.is_dir())
    }

    /// A directory whose whole content lives in the writable branch.
    fn is_upper_only(&self, ino: Ino, wb: u16) -> Result<bool, Errno> {
        self.refresh(ino)?;
        let t = self.table.read();
        let n = t.get(ino)?;
        Ok(*n.dirs == [Part::at(wb)])
    }

    /// `statvfs` of the branch that receives writes (or the top one).
    pub fn statvfs(&self) -> Result<rustix::fs::StatVfs, Errno> {
        rustix::fs::fstatvfs(self.root(self.wb_opt().unwrap_or(0))).map_err(errno)
    }

    /// Empties the work dir left by an earlier mount (crash leftovers).
    pub fn clean_work(&self) -> Result<(), Errno> {
        let Some(work) = &self.work else { return Ok(()) };
        for n in sys::dir_names(work).map_err(errno)? {
            remove_tree(work.as_fd(), Path::new(&n))?;
        }
        Ok(())
    }

    /// Can the writable branch hold the marks of a metadata-only copy (`trusted.*`
    /// xattrs: a filesystem with xattrs, and `CAP_SYS_ADMIN`)? Tried on a scratch file.
    pub fn holds_metacopy_marks(&self) -> Result<(), Errno> {
        let Some(work) = &self.work else { return Ok(()) };
        let tmp = self.scratch_name();
        let how = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let f = rustix::fs::openat(work, &tmp, how, Mode::from_raw_mode(0o600)).map_err(errno)?;
        let marked = whiteout::set_metacopy(&f);
        let _ = sys::unlinkat(work, &tmp, AtFlags::empty());
        marked.map_err(errno)
    }

    /// Removes the union's meta entries (whiteouts, opaque marker) from a directory that
    /// the union shows as empty, so it can be removed or replaced.
    fn clear_meta(&self, root: BorrowedFd<'_>, rel: &Path) -> Result<(), Errno> {
        let fd = sys::open_at(root, rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).map_err(errno)?;
        let names = sys::dir_names(&fd).map_err(errno)?;
        // All checked before anything is removed.
        for name in &names {
            let st = sys::lstat(&fd, Path::new(name)).map_err(errno)?;
            if !(whiteout::is_meta_name(name) && !sys::is_dir(&st) || self.is_whiteout_device(&st)) {
                return Err(Errno::ENOTEMPTY);
            }
        }
        for n in names {
            sys::unlinkat(&fd, &n, AtFlags::empty()).map_err(errno)?;
        }
        Ok(())
    }
}

/// A copy-up prepared in the work dir by [`Union::stage_copy_up`].
#[derive(Debug)]
pub struct Staged {
    ino: Ino,
    tmp: OsString,
}

struct NewEntry {
    wb: u16,
    dir: PathBuf,
    rel: PathBuf,
    aufs_wh: bool,
}

/// `rm -rf` relative to a directory fd, never following symlinks.
fn remove_tree(dirfd: BorrowedFd<'_>, rel: &Path) -> Result<(), Errno> {
    let st = sys::lstat(dirfd, rel).map_err(errno)?;
    if sys::is_dir(&st) {
        let fd = sys::open_at(dirfd, rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).map_err(errno)?;
        for n in sys::dir_names(&fd).map_err(errno)? {
            remove_tree(fd.as_fd(), Path::new(&n))?;
        }
        sys::unlinkat(dirfd, rel, AtFlags::REMOVEDIR).map_err(errno)
    } else {
        sys::unlinkat(dirfd, rel, AtFlags::empty()).map_err(errno)
    }
}
