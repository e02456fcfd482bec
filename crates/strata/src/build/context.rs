//! The build context: `.dockerignore`, COPY sources (globs, never outside the context),
//! and copying files, read where they lie, into a container's root.
//!
//! Sources are opened relative to the context's root descriptor with `RESOLVE_BENEATH`,
//! so neither `../x` nor a symlink leading out of the context is followed; destinations
//! are resolved with `RESOLVE_IN_ROOT` in the container's root, as the container itself
//! would see them.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

/// `.dockerignore` rules, in order; the last one matching decides.
#[derive(Debug, Default)]
pub struct Ignore(Vec<(bool, String)>);

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let pat = clean(pat);
            if !pat.is_empty() {
                rules.push((neg, pat));
            }
        }
        Ignore(rules)
    }

    /// Is `rel` (relative to the context, `/`-separated) excluded? A rule matching a
    /// parent directory matches everything under it.
    pub fn ignored(&self, rel: &str) -> bool {
        let mut out = false;
        for (neg, pat) in &self.0 {
            let mut p = rel;
            let hit = loop {
                if glob(pat, p) {
                    break true;
                }
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break false,
                }
            };
            if hit {
                out = !neg;
            }
        }
        out
    }

    /// Could an exception re-include something under an ignored directory?
    fn has_exceptions(&self) -> bool {
        self.0.iter().any(|(neg, _)| *neg)
    }
}

/// A path cleaned lexically, relative, `/`-separated, no `.`; `..` kept only at the start.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            _ => parts.push(c),
        }
    }
    parts.join("/")
}

/// Go's `filepath.Match` (`*`, `?`, `[a-z]`, `[^a]`, `\x`), plus `**` for any number of
/// directories, as `.dockerignore` has it.
pub fn glob(pat: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                // `**/x` also matches `x`.
                if rest.first() == Some(&b'/') && m(&rest[1..], n) {
                    return true;
                }
                (0..=n.len()).any(|i| m(rest, &n[i..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                for i in 0..=n.len() {
                    if m(rest, &n[i..]) {
                        return true;
                    }
                    if n.get(i) == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            Some(b'?') => n.first().is_some_and(|c| *c != b'/') && m(&p[1..], &n[1..]),
            Some(b'[') => {
                let Some(&c) = n.first() else { return false };
                let mut i = 1;
                let neg = matches!(p.get(1), Some(b'^' | b'!'));
                if neg {
                    i += 1;
                }
                let mut hit = false;
                let mut first = true;
                while i < p.len() && (p[i] != b']' || first) {
                    first = false;
                    let lo = if p[i] == b'\\' && i + 1 < p.len() {
                        i += 1;
                        p[i]
                    } else {
                        p[i]
                    };
                    if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|h| *h != b']') {
                        let hi = p[i + 2];
                        hit |= lo <= c && c <= hi;
                        i += 3;
                    } else {
                        hit |= lo == c;
                        i += 1;
                    }
                }
                if i >= p.len() {
                    return false; // unterminated class: no match, as Go's ErrBadPattern
                }
                hit != neg && c != b'/' && m(&p[i + 1..], &n[1..])
            }
            Some(b'\\') if p.len() > 1 => n.first() == Some(&p[1]) && m(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    m(pat.as_bytes(), name.as_bytes())
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Errors of the context, as the user should read them.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{0}: outside the build context")]
    Outside(String),
    #[error("{0}: no such file or directory in the build context (or excluded by .dockerignore)")]
    Missing(String),
    #[error("{path}: {cause}")]
    Io { path: String, cause: io::Error },
}

fn io_at(path: &str) -> impl FnOnce(Errno) -> ContextError + '_ {
    move |e| match e {
        Errno::XDEV | Errno::LOOP => ContextError::Outside(path.to_string()),
        Errno::NOENT | Errno::NOTDIR => ContextError::Missing(path.to_string()),
        e => ContextError::Io { path: path.to_string(), cause: e.into() },
    }
}

/// A directory whose files are read in place: the build context, or the root of a
/// stage or image (`COPY --from`).
pub struct Source {
    pub root: OwnedFd,
    pub ignore: Ignore,
    /// In a container root, absolute symlinks lead to its root (`RESOLVE_IN_ROOT`); in
    /// the context, they are refused (`RESOLVE_BENEATH`).
    in_root: bool,
}

/// One thing to copy: its path in the source and whether it was named as a directory.
#[derive(Debug)]
pub struct Item {
    pub rel: String,
    pub is_dir: bool,
}

impl Source {
    pub fn context(dir: &Path) -> Result<Source, ContextError> {
        let root = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io_at(&dir.display().to_string()))?;
        let text = match openat_beneath(&root, ".dockerignore", OFlags::RDONLY, false) {
            Ok(fd) => {
                let mut s = String::new();
                File::from(fd)
                    .read_to_string(&mut s)
                    .map_err(|cause| ContextError::Io { path: ".dockerignore".into(), cause })?;
                s
            }
            Err(Errno::NOENT) => String::new(),
            Err(e) => return Err(io_at(".dockerignore")(e)),
        };
        Ok(Source { root, ignore: Ignore::parse(&text), in_root: false })
    }

    pub fn root_of(dir: &Path) -> Result<Source, ContextError> {
        let root = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io_at(&dir.display().to_string()))?;
        Ok(Source { root, ignore: Ignore::default(), in_root: true })
    }

    fn open(&self, rel: &str, flags: OFlags, follow: bool) -> Result<OwnedFd, ContextError> {
        let r = if self.in_root {
            let f = if follow { flags } else { flags | OFlags::NOFOLLOW };
            strata_union::sys::openat2(
                &self.root,
                nonempty(rel),
                f | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            )
        } else {
            openat_beneath(&self.root, rel, flags, follow)
        };
        r.map_err(io_at(rel))
    }

    /// The items a COPY source names: a path, or a glob matched against the context.
    pub fn items(&self, src: &str) -> Result<Vec<Item>, ContextError> {
        let rel = clean(src.trim_start_matches('/'));
        if rel == ".." || rel.starts_with("../") {
            return Err(ContextError::Outside(src.to_string()));
        }
        let mut out = Vec::new();
        if has_glob(&rel) {
            let mut all = Vec::new();
            self.walk("", &mut all)?;
            for (path, is_dir) in all {
                if glob(&rel, &path) && !self.ignore.ignored(&path) {
                    out.push(Item { rel: path, is_dir });
                }
            }
            // A glob matching a directory and a file in it copies the file once, with the directory.
            let dirs: Vec<String> = out.iter().filter(|i| i.is_dir).map(|i| format!("{}/", i.rel)).collect();
            out.retain(|i| !dirs.iter().any(|d| i.rel.starts_with(d.as_str())));
            if out.is_empty() {
                return Err(ContextError::Missing(src.to_string()));
            }
            return Ok(out);
        }
        if !rel.is_empty() && self.ignore.ignored(&rel) {
            return Err(ContextError::Missing(src.to_string()));
        }
        // The named path itself is followed (Docker copies what a named link points at),
        // but only within the source.
        let fd = self.open(&rel, OFlags::PATH, true).map_err(|e| match e {
            ContextError::Missing(_) => ContextError::Missing(src.to_string()),
            ContextError::Outside(_) => ContextError::Outside(src.to_string()),
            e => e,
        })?;
        let st = rustix::fs::fstat(&fd).map_err(io_at(&rel))?;
        let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        out.push(Item { rel, is_dir });
        Ok(out)
    }

    /// Every path under `dir` (relative), not following links, skipping ignored ones
    /// unless an exception could bring back something below.
    fn walk(&self, dir: &str, out: &mut Vec<(String, bool)>) -> Result<(), ContextError> {
        let fd = self.open(dir, OFlags::RDONLY | OFlags::DIRECTORY, false)?;
        let mut names: Vec<(String, bool)> = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).map_err(io_at(dir))? {
            let e = e.map_err(io_at(dir))?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = String::from_utf8_lossy(name).into_owned();
            let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
            let st = rustix::fs::statat(&fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW).map_err(io_at(&rel))?;
            let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
            names.push((rel, is_dir));
        }
        names.sort();
        for (rel, is_dir) in names {
            let ignored = self.ignore.ignored(&rel);
            if ignored && !(is_dir && self.ignore.has_exceptions()) {
                continue;
            }
            if !ignored {
                out.push((rel.clone(), is_dir));
            }
            if is_dir {
                self.walk(&rel, out)?;
            }
        }
        Ok(())
    }

    /// Everything one item copies: the item itself and, for a directory, what is under it
    /// (ignored paths left out), as paths relative to the item ("" is the item).
    pub fn tree(&self, item: &Item) -> Result<Vec<String>, ContextError> {
        let mut v = vec![String::new()];
        if item.is_dir {
            let mut all = Vec::new();
            self.walk(&item.rel, &mut all)?;
            let skip = if item.rel.is_empty() { 0 } else { item.rel.len() + 1 };
            v.extend(all.into_iter().map(|(p, _)| p[skip..].to_string()));
        }
        Ok(v)
    }

    /// Hashes what COPY would read: names, types, modes, owners, sizes, mtimes, link
    /// targets and file contents. A change to any of them changes the hash.
    pub fn hash(&self, items: &[Item], h: &mut Sha256) -> Result<(), ContextError> {
        for item in items {
            for sub in self.tree(item)? {
                let rel = join(&item.rel, &sub);
                let fd = self.open(&rel, OFlags::PATH, sub.is_empty())?;
                let st = rustix::fs::fstat(&fd).map_err(io_at(&rel))?;
                h.update(format!(
                    "{rel}\0{:o}\0{}\0{}\0{}\0{}.{}\0",
                    st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime, st.st_mtime_nsec
                ));
                match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                    rustix::fs::FileType::RegularFile => {
                        let mut f = File::from(self.open(&rel, OFlags::RDONLY, sub.is_empty())?);
                        io::copy(&mut f, h).map_err(|cause| ContextError::Io { path: rel.clone(), cause })?;
                    }
                    rustix::fs::FileType::Symlink => {
                        let t = rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(io_at(&rel))?;
                        h.update(t.as_bytes());
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn nonempty(rel: &str) -> &str {
    if rel.is_empty() { "." } else { rel }
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn openat_beneath(root: &OwnedFd, rel: &str, flags: OFlags, follow: bool) -> rustix::io::Result<OwnedFd> {
    let f = if follow { flags } else { flags | OFlags::NOFOLLOW };
    strata_union::sys::openat2(root, nonempty(rel), f | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::BENEATH)
}

/// How copied files are owned and moded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attrs {
    /// `--chown`: else root, or the source's owners with `keep_owner` (ADD of an archive).
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    pub keep_owner: bool,
}

/// Where copies go: a directory tree (a container's root), resolved in its root.
pub struct Dest {
    root: OwnedFd,
}

impl Dest {
    pub fn new(dir: &Path) -> io::Result<Dest> {
        let root = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Dest { root })
    }

    fn open(&self, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        strata_union::sys::openat2(
            &self.root,
            nonempty(rel),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
    }

    /// Is `rel` a directory (links followed in the root)?
    pub fn is_dir(&self, rel: &str) -> bool {
        self.open(rel, OFlags::PATH | OFlags::DIRECTORY).is_ok()
    }

    /// Opens directory `rel`, creating what is missing (root-owned 0755, or `owner`).
    pub fn mkdirs(&self, rel: &str, owner: Option<(u32, u32)>) -> io::Result<OwnedFd> {
        let mut cur = String::new();
        let mut fd = self.open("", OFlags::PATH | OFlags::DIRECTORY)?;
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            let next = join(&cur, comp);
            fd = match self.open(&next, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(f) => f,
                Err(Errno::NOENT) => {
                    let parent = self.open(&cur, OFlags::RDONLY | OFlags::DIRECTORY)?;
                    rustix::fs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755))?;
                    let (u, g) = owner.unwrap_or((0, 0));
                    rustix::fs::chownat(
                        &parent,
                        comp,
                        Some(rustix::fs::Uid::from_raw(u)),
                        Some(rustix::fs::Gid::from_raw(g)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )?;
                    rustix::fs::chmodat(&parent, comp, Mode::from_raw_mode(0o755), AtFlags::empty())?;
                    self.open(&next, OFlags::PATH | OFlags::DIRECTORY)?
                }
                Err(e) => return Err(e.into()),
            };
            cur = next;
        }
        drop(fd);
        Ok(self.open(&cur, OFlags::RDONLY | OFlags::DIRECTORY)?)
    }
}

/// Copies `item`'s tree from `src` to `dest_rel` in `dest`: a file to that path, a
/// directory's contents into that directory. Returns the number of entries copied.
pub fn copy_item(src: &Source, item: &Item, dest: &Dest, dest_rel: &str, attrs: Attrs) -> Result<u64, ContextError> {
    let err = |p: &str| {
        let p = p.to_string();
        move |cause: io::Error| ContextError::Io { path: p, cause }
    };
    let mut n = 0;
    let mut dir_times = Vec::new();
    // The directory last made or opened, by its path: the files in it that follow are
    // made through it instead of resolving it again from the root.
    let mut last_dir: Option<(String, OwnedFd)> = None;
    for sub in src.tree(item)? {
        let from = join(&item.rel, &sub);
        let to = join(dest_rel, &sub);
        let follow = sub.is_empty();
        let sfd = src.open(&from, OFlags::PATH, follow)?;
        let st = rustix::fs::fstat(&sfd).map_err(io_at(&from))?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let (parent_rel, name) = match to.rfind('/') {
            Some(i) => (&to[..i], &to[i + 1..]),
            None => ("", to.as_str()),
        };
        let owner = attrs.owner.unwrap_or(if attrs.keep_owner { (st.st_uid, st.st_gid) } else { (0, 0) });
        let mode = attrs.chmod.unwrap_or(st.st_mode & 0o7777);
        let times = Timestamps {
            last_access: Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
            last_modification: Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
        };
        if kind == rustix::fs::FileType::Directory {
            // A directory's contents go into the destination, which keeps its attributes
            // or, new, is 0755 (as buildah makes it); directories below take the source's.
            let d = dest.mkdirs(&to, attrs.owner).map_err(err(&to))?;
            if !sub.is_empty() {
                rustix::fs::fchown(&d, Some(uid(owner.0)), Some(gid(owner.1))).map_err(io_at(&to))?;
                rustix::fs::fchmod(&d, Mode::from_raw_mode(mode)).map_err(io_at(&to))?;
                dir_times.push((to.clone(), times));
            }
            last_dir = Some((to.clone(), d));
            n += 1;
            continue;
        }
        let parent = match &mut last_dir {
            Some((rel, fd)) if rel == parent_rel => &*fd,
            slot => {
                &slot.insert((parent_rel.to_string(), dest.mkdirs(parent_rel, attrs.owner).map_err(err(parent_rel))?)).1
            }
        };
        // Whatever is there (a file, a link) is replaced, never written through.
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(old) if rustix::fs::FileType::from_raw_mode(old.st_mode) == rustix::fs::FileType::Directory => {
                return Err(ContextError::Io {
                    path: to.clone(),
                    cause: io::Error::other("cannot copy a file over a directory"),
                });
            }
            Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(io_at(&to))?,
            Err(_) => {}
        }
        match kind {
            rustix::fs::FileType::RegularFile => {
                let mut from_f = File::from(src.open(&from, OFlags::RDONLY, follow)?);
                let out = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_at(&to))?;
                let mut out = File::from(out);
                io::copy(&mut from_f, &mut out).map_err(err(&to))?;
                rustix::fs::fchown(&out, Some(uid(owner.0)), Some(gid(owner.1))).map_err(io_at(&to))?;
                rustix::fs::fchmod(&out, Mode::from_raw_mode(mode)).map_err(io_at(&to))?;
                rustix::fs::futimens(&out, &times).map_err(io_at(&to))?;
            }
            rustix::fs::FileType::Symlink => {
                let target = rustix::fs::readlinkat(&sfd, "", Vec::new()).map_err(io_at(&from))?;
                rustix::fs::symlinkat(OsStr::from_bytes(target.as_bytes()), parent, name).map_err(io_at(&to))?;
                rustix::fs::chownat(parent, name, Some(uid(owner.0)), Some(gid(owner.1)), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_at(&to))?;
                rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io_at(&to))?;
            }
            _ => {
                // Devices, fifos and sockets are not build inputs.
                tracing::warn!("{from}: not a regular file, directory or symlink; skipped");
                continue;
            }
        }
        n += 1;
    }
    // Directory times last: creating entries in them changed them.
    for (rel, times) in dir_times.into_iter().rev() {
        if let Ok(d) = dest.open(&rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            rustix::fs::futimens(&d, &times).map_err(io_at(&rel))?;
        }
    }
    Ok(n)
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// Is the file at `rel` in the source a tar archive, plain or compressed (gzip, zstd:
/// what the store's decoders read)? Told by the tar magic of the decoded start, so a
/// compressed file that holds no tar is copied as it is, as Docker does.
pub fn is_archive(src: &Source, rel: &str) -> bool {
    let Ok(fd) = src.open(rel, OFlags::RDONLY, true) else { return false };
    let Ok(mut r) = strata_store::compress::decompress(io::BufReader::new(File::from(fd))) else { return false };
    let mut head = [0u8; 512];
    r.read_exact(&mut head).is_ok() && &head[257..262] == b"ustar"
}

/// Opens a file of the source for reading.
pub fn open_file(src: &Source, rel: &str) -> Result<File, ContextError> {
    Ok(File::from(src.open(rel, OFlags::RDONLY, true)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_and_double_star() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "d/a.txt"));
        assert!(glob("d/*", "d/a"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("**/*.go", "a/b/c.go"));
        assert!(glob("**/*.go", "c.go"));
        assert!(glob("a/**", "a/b/c"));
        assert!(glob("\\*", "*"));
        assert!(!glob("[a", "a"));
    }

    #[test]
    fn dockerignore_examples() {
        // The reference's example.
        let ig = Ignore::parse("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(ig.ignored("somedir/temporary.txt"));
        assert!(ig.ignored("somedir/temp"));
        assert!(ig.ignored("somedir/subdir/temporary.txt"));
        assert!(ig.ignored("tempa"));
        assert!(!ig.ignored("temporary.txt"));
        // Exceptions: the last matching line wins.
        let ig = Ignore::parse("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(ig.ignored("a.md"));
        assert!(!ig.ignored("README.md"));
        assert!(ig.ignored("README-secret.md"));
        // A directory rule covers what is under it; leading / and ./ are cleaned away.
        let ig = Ignore::parse("/build\n./node_modules\n");
        assert!(ig.ignored("build/x/y"));
        assert!(ig.ignored("node_modules/a"));
        assert!(!ig.ignored("src/build"));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("a/../../x"), "../x");
        assert_eq!(clean("/"), "");
    }
}
