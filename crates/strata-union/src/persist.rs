//! Inode numbers that survive unmount and remount.
//!
//! At unmount the table's names are written to a file in the mount's state directory
//! (`WORKDIR/strata/inodes` for overlay-style mounts, `UPPER/.wh..wh.strata/inodes` for
//! AUFS-style ones), headed by the identity of every branch. The next mount over the same
//! branches reads it back: a name then gets the number it had, and new numbers start
//! above every old one. Any difference in the branch list, or a damaged file, means a
//! fresh start; the file is never trusted beyond giving numbers back.
//!
//! Format: the text header `strata-inodes 1\n`, one `branch PERM DEV INO MTIME PATH\n`
//! line per branch, `end\n`; then records of `ino: u64 LE, parent: u64 LE,
//! name length: u16 LE, name bytes`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tracing::warn;

use crate::branch::Branch;
use crate::inode::Ino;

const MAGIC: &str = "strata-inodes 1";

/// Numbers handed back by name: `(parent, name) -> ino`, and the first number never used.
#[derive(Debug, Default)]
pub struct Hints {
    pub by_name: HashMap<(Ino, OsString), Ino>,
    pub next: Ino,
}

/// The identity of the branch list: paths, permissions, and the root directories' device,
/// inode and (for read-only branches) modification time.
pub fn fingerprint(branches: &[Branch]) -> io::Result<String> {
    let mut s = String::new();
    for b in branches {
        let md = std::fs::metadata(&b.path)?;
        let mtime = if b.perm.is_writable() { 0 } else { md.mtime() };
        s.push_str(&format!("branch {} {} {} {} {}\n", b.perm, md.dev(), md.ino(), mtime, b.path.display()));
    }
    Ok(s)
}

/// Reads the hints saved by the previous mount of the same branches.
pub fn load(path: &Path, fingerprint: &str) -> Hints {
    match read_hints(path, fingerprint) {
        Ok(Some(h)) => h,
        Ok(None) => Hints::default(),
        Err(e) => {
            warn!(path = %path.display(), "inode numbers not restored: {e}");
            Hints::default()
        }
    }
}

fn read_hints(path: &Path, fingerprint: &str) -> io::Result<Option<Hints>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut r = BufReader::new(file);
    let mut header = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::other("truncated header"));
        }
        if line == "end\n" {
            break;
        }
        header.push_str(&line);
    }
    let Some(branches) = header.strip_prefix(MAGIC).and_then(|h| h.strip_prefix('\n')) else {
        return Err(io::Error::other("not a Strata inode map"));
    };
    if branches != fingerprint {
        return Ok(None); // other branches: other numbers
    }
    let mut hints = Hints::default();
    let mut fixed = [0u8; 18];
    loop {
        match r.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let ino = u64::from_le_bytes(fixed[0..8].try_into().map_err(io::Error::other)?);
        let parent = u64::from_le_bytes(fixed[8..16].try_into().map_err(io::Error::other)?);
        let len = u16::from_le_bytes(fixed[16..18].try_into().map_err(io::Error::other)?) as usize;
        let mut name = vec![0u8; len];
        r.read_exact(&mut name)?;
        hints.next = hints.next.max(ino + 1);
        hints.by_name.insert((parent, OsStr::from_bytes(&name).to_os_string()), ino);
    }
    Ok(Some(hints))
}

/// Writes the names of the live table atomically (temporary file, fsync, rename).
pub fn save(path: &Path, fingerprint: &str, names: impl Iterator<Item = (Ino, Ino, OsString)>) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = path.with_extension("tmp");
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let mut w = io::BufWriter::new(file);
    write!(w, "{MAGIC}\n{fingerprint}end\n")?;
    for (ino, parent, name) in names {
        let bytes = name.as_bytes();
        let Ok(len) = u16::try_from(bytes.len()) else { continue };
        w.write_all(&ino.to_le_bytes())?;
        w.write_all(&parent.to_le_bytes())?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(bytes)?;
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fingerprint_check() {
        let dir = std::env::temp_dir().join(format!("strata-persist-{}", std::process::id()));
        let path = dir.join("inodes");
        let names = vec![(2, 1, OsString::from("a")), (9, 2, OsString::from("b\u{e9}"))];
        save(&path, "branch rw 1 2 0 /x\n", names.into_iter()).unwrap();
        let h = load(&path, "branch rw 1 2 0 /x\n");
        assert_eq!(h.by_name.get(&(1, OsString::from("a"))), Some(&2));
        assert_eq!(h.by_name.get(&(2, OsString::from("b\u{e9}"))), Some(&9));
        assert_eq!(h.next, 10);
        assert!(load(&path, "branch rw 1 3 0 /x\n").by_name.is_empty());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load(&path, "branch rw 1 2 0 /x\n").by_name.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
