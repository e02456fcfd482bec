//! What a container changed, as `docker diff` shows it: every entry of its read-write
//! layer, `A` added (not below), `C` changed (below too), `D` deleted (a whiteout), against the layers below (the init layer
//! included, so its placeholders never show). Both sides are read through the union's own
//! rules ([`View`]), so renamed directories, opaque directories and whiteouts of either
//! format come out right.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use strata_union::view::{View, ViewDir, ViewEntry};

use crate::container::Container;
use crate::error::{IoContext, Result};
use crate::store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// The container's changes, sorted by path.
pub fn changes(store: &Store, c: &Container) -> Result<Vec<(Kind, PathBuf)>> {
    let dirs = c.layer_dirs(store);
    let full = View::open(&dirs).at(&dirs[0])?;
    let lower = View::open(&dirs[1..]).at(&dirs[1])?;
    let mut out = Vec::new();
    walk(&full, &lower, &full.root(), Some(&lower.root()), Path::new("/"), &mut out).at(&dirs[0])?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Compares directory `fdir` of the full view with `ldir` of the lower view (`None`:
/// the directory is new, so is everything in it).
fn walk(
    full: &View,
    lower: &View,
    fdir: &ViewDir,
    ldir: Option<&ViewDir>,
    path: &Path,
    out: &mut Vec<(Kind, PathBuf)>,
) -> std::io::Result<()> {
    if ldir.is_some() && !fdir.has_layer(0) {
        return Ok(()); // the read-write layer has nothing here: nothing changed below
    }
    let entries = full.entries(fdir)?;
    // What was there before, resolved once: the names found again are compared, those
    // left over at the end are deletions.
    let mut before: HashMap<OsString, ViewEntry> = match ldir {
        Some(ld) => lower.entries(ld)?.into_iter().map(|e| (e.name.clone(), e)).collect(),
        None => HashMap::new(),
    };
    for e in entries {
        let p = path.join(&e.name);
        match before.remove(&e.name) {
            None => {
                out.push((Kind::Added, p.clone()));
                if let Some(d) = &e.dir {
                    walk(full, lower, d, None, &p, out)?;
                }
            }
            Some(b) => {
                let mark = out.len();
                if let (Some(fd), Some(bd)) = (&e.dir, &b.dir) {
                    walk(full, lower, fd, Some(bd), &p, out)?;
                }
                let changed_below = out.len() > mark;
                // Everything the read-write layer holds is what `commit` commits, and is
                // reported (a file rewritten with the same content too, as Docker does);
                // a directory holding changes is reported changed.
                if e.layer == 0 || changed_below {
                    out.insert(mark, (Kind::Changed, p));
                }
            }
        }
    }
    // `changes` sorts the whole list by path.
    out.extend(before.into_keys().map(|n| (Kind::Deleted, path.join(n))));
    Ok(())
}
